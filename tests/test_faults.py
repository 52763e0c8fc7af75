"""The fault surface on real experiment directories: unsafe files never run code, damaged or
missing state is detected or recovered, outputs are atomic, divergence is flagged."""

from __future__ import annotations

import errno
import os
import pickle
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from expost.cli import main
from expost.experiments.checkpoint import CheckpointError, load_checkpoint
from expost.experiments.config import ConfigError, load_config
from expost.experiments.runners import run_experiment
from expost.experiments.store import ResultStore

SMALL = {
    "name": "faults",
    "dataset": {"name": "digits", "options": {"flatten": True}},
    "model": {"name": "mlp", "options": {"hidden": [16]}},
    "objective": {"kind": "emphasize", "emphasized": 3, "ratio": 9},
    "regimes": ["weighted", "expost", "metacost"],
    "seeds": [0],
    "optimizer": {"name": "adam", "lr": 0.01},
    "training": {"epochs": 2, "batch_size": 256},
    "num_threads": 1,
}


class Payload:
    """Unpickling this creates ``marker``: proof that code from a file ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _write(path: Path, cfg: dict) -> None:
    path.write_text(yaml.safe_dump(cfg))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished experiment: weighted, expost and MetaCost (on the unweighted training)."""
    d = tmp_path_factory.mktemp("faults") / "run"
    run_experiment(SMALL, output_dir=d, progress=False)
    return d


@pytest.fixture
def cfg_file(tmp_path):
    """The config of ``finished`` as a YAML file (for ``expost run``)."""
    path = tmp_path / "c.yaml"
    _write(path, SMALL)
    return path


@pytest.fixture
def run_dir(finished, tmp_path):
    """A private copy of the finished experiment."""
    d = tmp_path / "run"
    shutil.copytree(finished, d)
    return d


def _sql(run_dir: Path, statement: str, *args) -> None:
    conn = sqlite3.connect(run_dir / "results.sqlite", isolation_level=None)
    conn.execute(statement, args)
    conn.close()


def _probs(run_dir: Path) -> dict:
    with ResultStore(run_dir, readonly=True) as s:
        return {(k, i): q.tobytes() for k, i, _, _, q in s.iter_probabilities()}


def _statuses(run_dir: Path) -> dict:
    with ResultStore(run_dir, readonly=True) as s:
        return {t["train_key"]: t["status"] for t in s.trainings()}


def _cli(argv, capsys):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------- no code runs from a file
def test_a_malicious_checkpoint_does_not_execute(run_dir, tmp_path, capsys, cfg_file):
    marker = tmp_path / "pwned"
    ckpt = run_dir / "checkpoints" / "weighted-s0" / "ckpt-00001.pt"
    torch.save({"format": 2, "model": Payload(marker)}, ckpt)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_checkpoint(ckpt)
    _sql(run_dir, "UPDATE trainings SET status='failed' WHERE train_key='weighted-s0'")
    before = _probs(run_dir)
    code, _, err = _cli(["run", cfg_file, "--out", run_dir, "--no-report"], capsys)
    assert not marker.exists()
    assert code == 0, err
    assert "weights_only" in err and "from the start" in err  # refused, then retrained
    assert _probs(run_dir) == before  # the retraining gives the same numbers
    assert _statuses(run_dir)["weighted-s0"] == "finished"


def test_a_malicious_cifar_pickle_does_not_execute(tmp_path, monkeypatch):
    from expost.experiments.datasets import load_dataset

    marker = tmp_path / "pwned"
    folder = tmp_path / "cifar10"
    folder.mkdir()
    (folder / "data_batch_1").write_bytes(pickle.dumps(Payload(marker), protocol=2))
    for name in ("data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch",
                 "batches.meta"):
        (folder / name).write_bytes(pickle.dumps({b"data": np.zeros((1, 3072), np.uint8)}))
    with pytest.raises(ValueError, match=r"(builtins|io)\.open.*only numpy arrays"):
        load_dataset("cifar10", root=folder)
    assert not marker.exists()
    # found by searching ($EXPOST_DATA), not named: not even opened
    monkeypatch.setenv("EXPOST_DATA", str(tmp_path))
    with pytest.raises(ValueError, match="only from a folder you name"):
        load_dataset("cifar10")
    assert not marker.exists()


def test_a_store_path_outside_the_run_directory_is_refused(run_dir, tmp_path, capsys, cfg_file):
    marker = tmp_path / "pwned"
    outside = tmp_path / "outside.pt"
    torch.save({"format": 2, "model": Payload(marker)}, outside)
    _sql(run_dir, "UPDATE trainings SET status='failed', checkpoint=? WHERE "
                  "train_key='weighted-s0'", "../../outside.pt")
    code, _, err = _cli(["run", cfg_file, "--out", run_dir, "--no-report"], capsys)
    assert code == 1 and "leads outside" in err and "Traceback" not in err
    assert outside.is_file() and not marker.exists()  # neither loaded nor deleted


# ---------------------------------------------------------------- damaged stores
def _corrupt_page(run_dir: Path) -> None:
    """Random bytes over the root page of the ``intervals`` table."""
    conn = sqlite3.connect(run_dir / "results.sqlite")
    root, = conn.execute("SELECT rootpage FROM sqlite_master WHERE name='intervals'").fetchone()
    size, = conn.execute("PRAGMA page_size").fetchone()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    with open(run_dir / "results.sqlite", "r+b") as fh:
        fh.seek((root - 1) * size)
        fh.write(np.random.default_rng(0).bytes(size))


def _change_blob(run_dir: Path) -> None:
    """One stored prediction changed in place (its checksum left as it was)."""
    conn = sqlite3.connect(run_dir / "results.sqlite", isolation_level=None)
    blob, = conn.execute("SELECT test_log_probs FROM intervals WHERE train_key='weighted-s0'"
                         " AND interval=1").fetchone()
    lp = np.frombuffer(blob, dtype=np.float16).copy()
    lp[0] = lp[0] - 1.0
    conn.execute("UPDATE intervals SET test_log_probs=? WHERE train_key='weighted-s0' AND "
                 "interval=1", (lp.tobytes(),))
    conn.close()


@pytest.mark.parametrize("damage", [_corrupt_page, _change_blob], ids=["page", "blob"])
@pytest.mark.parametrize("command", [["table"], ["report"], ["evaluate", "--emphasize", "3"]])
def test_a_damaged_store_is_reported_never_tabled(run_dir, capsys, damage, command):
    damage(run_dir)
    code, out, err = _cli([command[0], run_dir, *command[1:]], capsys)
    assert code == 1 and out == ""
    assert err.startswith(f"expost {command[0]}: error: the results database")
    assert "is damaged" in err and "Traceback" not in err and err.count("\n") == 1


def test_a_read_only_run_directory_is_tabled(run_dir, capsys):
    for name in ("results.sqlite-wal", "results.sqlite-shm"):
        (run_dir / name).unlink(missing_ok=True)
    listing = sorted(p.name for p in run_dir.iterdir())
    mode = run_dir.stat().st_mode
    os.chmod(run_dir / "results.sqlite", 0o444)
    os.chmod(run_dir, 0o555)
    try:
        code, out, err = _cli(["table", run_dir, "--bootstrap", "0"], capsys)
        assert code == 0, err
        assert "| Mean |" in out
        with ResultStore(run_dir, readonly=True) as s, pytest.raises(sqlite3.OperationalError,
                                                                      match="readonly"):
            s._conn.execute("DELETE FROM meta")  # the readers' connection cannot write
    finally:
        os.chmod(run_dir, mode)
        os.chmod(run_dir / "results.sqlite", 0o644)
    assert sorted(p.name for p in run_dir.iterdir()) == listing  # no WAL files created


# ---------------------------------------------------------------- lost checkpoints
def test_a_missing_checkpoint_of_an_unfinished_training_is_recovered(run_dir, tmp_path, capsys, cfg_file):
    before = _probs(run_dir)
    (run_dir / "checkpoints" / "weighted-s0" / "ckpt-00001.pt").unlink()
    _sql(run_dir, "UPDATE trainings SET status='failed' WHERE train_key='weighted-s0'")
    code, _, err = _cli(["run", cfg_file, "--out", run_dir, "--no-report"], capsys)
    assert code == 0, err
    assert "is missing" in err and "from the start" in err
    assert _probs(run_dir) == before and set(_statuses(run_dir).values()) == {"finished"}


def test_a_missing_final_model_needed_by_metacost_is_retrained(run_dir, tmp_path, capsys, cfg_file):
    before = _probs(run_dir)
    (run_dir / "checkpoints" / "unweighted-s0" / "ckpt-00001.pt").write_bytes(b"trunc")
    _sql(run_dir, "UPDATE trainings SET status='failed', done_intervals=0, step=0, "
                  "checkpoint=NULL WHERE train_key='metacost-s0'")
    shutil.rmtree(run_dir / "checkpoints" / "metacost-s0")
    code, _, err = _cli(["run", cfg_file, "--out", run_dir, "--no-report"], capsys)
    assert code == 0, err
    assert "cannot be read" in err and "retraining it" in err
    assert _probs(run_dir) == before and set(_statuses(run_dir).values()) == {"finished"}


def test_orphan_checkpoints_are_removed_on_resume(run_dir, tmp_path, capsys, cfg_file):
    folder = run_dir / "checkpoints" / "weighted-s0"
    assert sorted(p.name for p in folder.iterdir()) == ["ckpt-00001.pt"]  # one per training
    shutil.copy(folder / "ckpt-00001.pt", folder / "ckpt-00000.pt")  # a kill before unlink
    (folder / ".ckpt-00002.pt.123.tmp").write_bytes(b"half")
    _sql(run_dir, "UPDATE trainings SET status='interrupted' WHERE train_key='weighted-s0'")
    code, _, err = _cli(["run", cfg_file, "--out", run_dir, "--no-report"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in folder.iterdir()) == ["ckpt-00001.pt"]


# ---------------------------------------------------------------- atomic outputs
def test_a_full_disk_during_the_report_leaves_the_previous_report(run_dir, capsys, monkeypatch):
    assert _cli(["report", run_dir, "--bootstrap", "0"], capsys)[0] == 0
    report = run_dir / "report" / "report.html"
    previous = report.read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    code, _, err = _cli(["report", run_dir, "--bootstrap", "0"], capsys)
    assert code == 1 and "the disk is full" in err and "Traceback" not in err
    assert report.read_bytes() == previous
    assert sorted(p.name for p in report.parent.iterdir()) == ["report.html"]  # no temp file


def test_a_symlinked_report_folder_is_not_followed(run_dir, tmp_path, capsys, cfg_file):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "report.html").write_text("keep me")
    (run_dir / "report").symlink_to(elsewhere)
    code, _, err = _cli(["run", cfg_file, "--out", run_dir], capsys)
    assert code == 1 and "leads outside" in err
    assert (elsewhere / "report.html").read_text() == "keep me"


# ---------------------------------------------------------------- divergence
def test_a_diverging_run_is_flagged_and_exits_non_zero(tmp_path, capsys):
    cfg = {**SMALL, "regimes": ["weighted", "expost", "unweighted_raw"],
           "optimizer": {"name": "adam", "lr": 1e30}}
    _write(tmp_path / "c.yaml", cfg)
    code, _, err = _cli(["run", tmp_path / "c.yaml", "--out", tmp_path / "d", "--quiet"],
                        capsys)
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("expost run: error: 2 training(s) diverged")
    assert "weighted-s0" in last and "optimizer.lr" in last
    assert set(_statuses(tmp_path / "d").values()) == {"diverged"}
    with ResultStore(tmp_path / "d", readonly=True) as s:
        assert {r["status"] for r in s.runs()} == {"diverged"}
        assert s.interval_records() == []  # nothing of a diverged interval is committed


# ---------------------------------------------------------------- configs
def test_the_yaml_alias_bomb_is_refused_with_a_short_message(tmp_path):
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{k}: &a{k} [{', '.join([f'*a{k - 1}'] * 9)}]" for k in range(1, 10)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\nname: *a9\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "aliases are not allowed" in str(info.value) and len(str(info.value)) < 300


def test_duplicate_keys_and_long_inputs(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("name: a\nseeds: 2\nname: b\n")
    with pytest.raises(ConfigError, match="duplicate key 'name' on line 3"):
        load_config(path)
    with pytest.raises(ConfigError) as info:
        load_config({**SMALL, "device": "x" * 100_000})
    assert len(str(info.value)) < 1000


# ---------------------------------------------------------------- interruption and data
class _Interrupting:
    """A runner whose reporter presses Ctrl-C after the first interval."""

    def run(self, setup, jobs, reporter=None):
        from types import SimpleNamespace

        from expost.experiments.train import run_training

        def stop(job, row):
            raise KeyboardInterrupt

        run_training(setup, jobs[0], SimpleNamespace(start=lambda *a: None, interval=stop,
                                                     finish=lambda job: None))


def test_an_interrupted_training_is_recorded_as_interrupted(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        run_experiment(SMALL, output_dir=tmp_path / "r", progress=False, runner=_Interrupting())
    statuses = _statuses(tmp_path / "r")
    assert statuses["weighted-s0"] == "interrupted"
    run_experiment(SMALL, output_dir=tmp_path / "r", progress=False)  # resumes
    assert set(_statuses(tmp_path / "r").values()) == {"finished"}


def test_data_errors_name_the_file_and_key(tmp_path):
    from expost.experiments.datasets import load_dataset

    arrays = {}
    for split, n in (("train", 20), ("val", 10), ("test", 10)):
        arrays[f"{split}_images"] = np.zeros((n, 28, 28), np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2).reshape(-1, 1).astype(np.float64)
    arrays["val_labels"][3] = 0.5
    np.savez(tmp_path / "pneumoniamnist.npz", **arrays)
    with pytest.raises(ValueError, match=r"pneumoniamnist\.npz, key 'val_labels'.*whole.*0\.5"):
        load_dataset("medmnist", root=tmp_path)
    (tmp_path / "pneumoniamnist.npz").write_bytes(b"PK\x03\x04truncated")
    with pytest.raises(ValueError, match=r"pneumoniamnist\.npz.*cannot be read"):
        load_dataset("medmnist", root=tmp_path)
    cifar = tmp_path / "cifar"
    cifar.mkdir()
    np.savez(cifar / "train_0.npz", images=np.zeros((20, 32, 32, 3), np.uint8),
             labels=np.arange(20) % 10)
    np.savez(cifar / "test.npz", images=np.zeros((10, 32, 32), np.uint8),  # grayscale
             labels=np.arange(10) % 10)
    with pytest.raises(ValueError, match=r"\(n, 32, 32, 3\).*test\.npz"):
        load_dataset("cifar10", root=cifar)
