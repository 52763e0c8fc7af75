"""The local process pool (--backend local --jobs N): same results as a sequential run, the
driver as the only writer, a killed worker retried, a killed driver recovered by a rerun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from backend_cases import LONG, TINY, committed, dump, integrity, wait_for
from expost.experiments.backends import BackendOptions
from expost.experiments.runners import run_experiment
from expost.experiments.store import WORKER_ENV, ResultStore

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sequential(tmp_path_factory):
    """The reference: TINY run one after another in this process."""
    return dump(run_experiment(TINY, output_dir=tmp_path_factory.mktemp("seq") / "r",
                               progress=False))


def test_two_jobs_give_the_sequential_results(sequential, tmp_path, monkeypatch):
    run_dir = run_experiment(TINY, output_dir=tmp_path / "r", progress=False,
                             backend=BackendOptions(jobs=2))
    assert dump(run_dir) == sequential
    assert integrity(run_dir) == "ok"
    assert not list((run_dir / "spool").rglob("*.json"))  # every record ingested, then deleted
    # The workers ran with this guard set (any writer there would have failed the run):
    monkeypatch.setenv(WORKER_ENV, "1")
    with pytest.raises(RuntimeError, match="only the driver writes the results store"):
        ResultStore(run_dir)
    with pytest.raises(RuntimeError, match="only the driver"):
        ResultStore.create(tmp_path / "other", {"config_hash": "x"})
    with ResultStore(run_dir, readonly=True) as store:  # reading stays possible
        assert {t["status"] for t in store.trainings()} == {"finished"}


def kill_worker_mid_training(storage_root: Path, key: str, after: int) -> dict:
    """Start a thread that SIGKILLs the worker of ``key`` once its checkpoint of interval
    ``after`` is written, then notes the pid of the worker that takes over."""
    seen: dict = {}

    def run():
        info = storage_root / "workers" / f"{key}.json"
        ckpts = storage_root / "checkpoints" / key
        wait_for(lambda: info.is_file() and any(
            int(p.stem.split("-")[1]) >= after for p in ckpts.glob("ckpt-*.pt")), 120,
            "the worker's checkpoint")
        seen["killed"] = json.loads(info.read_text())["pid"]
        os.kill(seen["killed"], signal.SIGKILL)

        def retried():
            try:
                return json.loads(info.read_text())["pid"] != seen["killed"]
            except (OSError, ValueError):
                return False
        try:
            wait_for(retried, 120, "the retried worker")
            seen["retried"] = json.loads(info.read_text())["pid"]
        except (AssertionError, OSError, ValueError):
            pass  # the run may have finished and removed the file first

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    seen["thread"] = thread
    return seen


@pytest.mark.parametrize("every", [1, 3], ids=["checkpoint-every-interval", "checkpoint-every-3"])
def test_a_killed_worker_is_retried_from_its_checkpoint(tmp_path, capsys, every):
    """With ``checkpoint_every`` 3 the kill falls between checkpoints: the retried worker
    redoes the intervals after the last one, and the driver still records each once."""
    config = {**LONG, "training": {**LONG["training"], "checkpoint_every": every}}
    run_dir = tmp_path / "r"
    seen = kill_worker_mid_training(run_dir, "weighted-s0", after=4)
    run_experiment(config, output_dir=run_dir, progress=False,
                   backend=BackendOptions(jobs=1, retries=2))
    seen["thread"].join(5)
    assert "killed" in seen
    assert "weighted-s0 died (exit code -9); retry 1 of 2" in capsys.readouterr().err
    got = dump(run_dir)
    n = LONG["training"]["epochs"]
    assert [i for _, i, *_ in got["intervals"]] == list(range(n))  # none twice, none missing
    assert got == dump(run_experiment(config, output_dir=tmp_path / "seq", progress=False))
    assert integrity(run_dir) == "ok"
    assert sorted(p.name for p in (run_dir / "checkpoints" / "weighted-s0").iterdir()) == [
        f"ckpt-{n - 1:05d}.pt"]


def test_a_killed_driver_is_recovered_by_rerunning_the_command(sequential, tmp_path):
    """SIGKILL the `expost run --jobs 2` process mid-run; the same command finishes the
    experiment with the store an uninterrupted run gives."""
    config = tmp_path / "tiny.json"  # JSON is YAML
    config.write_text(json.dumps(TINY))
    out = tmp_path / "r"
    cmd = [sys.executable, "-m", "expost", "run", str(config), "--out", str(out), "--jobs",
           "2", "--quiet", "--no-report"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    driver = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: committed(out) >= 2 or driver.poll() is not None, 240,
                 "the first intervals")
        assert driver.poll() is None, "the driver ended before it could be killed"
        driver.send_signal(signal.SIGKILL)
    finally:
        driver.wait(60)
    partial = dump(out)
    assert 0 < len(partial["intervals"]) < len(sequential["intervals"])
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert dump(out) == sequential
    assert integrity(out) == "ok"


def test_a_run_that_fails_before_its_first_interval_leaves_nothing_behind(tmp_path):
    bad = {**TINY, "seeds": [0], "regimes": ["weighted"], "dataset": {"name": "digits"},
           "model": {"name": "densenet_small", "options": {"weights": str(tmp_path / "no.pt")}}}
    for backend in (None, BackendOptions(jobs=1)):
        with pytest.raises((FileNotFoundError, RuntimeError), match=r"no\.pt"):
            run_experiment(bad, output_dir=tmp_path / "r", progress=False, backend=backend)
        assert not (tmp_path / "r" / "results.sqlite").exists()
        assert not (tmp_path / "r" / "checkpoints").exists()
    good = {**bad, "model": TINY["model"], "training": {"epochs": 1, "batch_size": 256}}
    run_dir = run_experiment(good, output_dir=tmp_path / "r", progress=False)  # no --force-new
    assert [t[1] for t in dump(run_dir)["trainings"]] == ["finished"]


def test_a_failed_creation_keeps_the_folders_it_did_not_make(tmp_path):
    """A folder whose results.sqlite was lost still held the checkpoints; a run there that
    failed before its first interval removed them with what it had made itself. And a
    results.sqlite that is a folder or a broken link was taken for no experiment."""
    bad = {**TINY, "seeds": [0], "regimes": ["weighted"], "dataset": {"name": "digits"},
           "model": {"name": "densenet_small", "options": {"weights": str(tmp_path / "no.pt")}}}
    run = tmp_path / "r"
    (run / "checkpoints" / "weighted-s0").mkdir(parents=True)
    (run / "checkpoints" / "weighted-s0" / "ckpt-00003.pt").write_bytes(b"the user's")
    for backend in (None, BackendOptions(jobs=1)):
        with pytest.raises((FileNotFoundError, RuntimeError), match=r"no\.pt"):
            run_experiment(bad, output_dir=run, progress=False, backend=backend)
        assert not (run / "results.sqlite").exists()
        assert (run / "checkpoints" / "weighted-s0" / "ckpt-00003.pt").read_bytes() == b"the user's"
    (run / "results.sqlite").symlink_to(run / "moved.sqlite")
    with pytest.raises(ValueError, match="is a link to nothing"):
        run_experiment(bad, output_dir=run, progress=False)
    (run / "results.sqlite").unlink()
    (run / "results.sqlite").mkdir()
    with pytest.raises(ValueError, match="is a folder, not an expost results database"):
        run_experiment(bad, output_dir=run, progress=False)
    assert (run / "checkpoints" / "weighted-s0" / "ckpt-00003.pt").read_bytes() == b"the user's"


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"backend": "spark"}, "--backend"),
    ({"jobs": 0}, "--jobs"),
    ({"backend": "ray", "jobs": 2}, "--jobs"),
    ({"address": "auto"}, "--address"),
    ({"cpus_per_run": -1}, "--cpus-per-run"),
    ({"cpus_per_run": 0}, "--cpus-per-run"),
    ({"retries": -1}, "--retries"),
    ({"storage": "s3://bucket/x"}, "--storage"),
])
def test_bad_backend_options_name_the_option(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BackendOptions(**kwargs)


def test_a_shared_storage_path_holds_the_checkpoints(tmp_path):
    from expost.experiments.config import config_hash, load_config

    cfg = {**TINY, "seeds": [0], "regimes": ["weighted"],
           "training": {"epochs": 1, "batch_size": 256}}
    run_dir = run_experiment(cfg, output_dir=tmp_path / "r", progress=False,
                             backend=BackendOptions(storage=str(tmp_path / "shared")))
    root = tmp_path / "shared" / config_hash(load_config(cfg))[:16]
    assert [p.name for p in (root / "checkpoints" / "weighted-s0").iterdir()] == ["ckpt-00000.pt"]
    assert not (run_dir / "checkpoints").exists()
    with ResultStore(run_dir, readonly=True) as store:
        assert store.training("weighted-s0")["checkpoint"] == "checkpoints/weighted-s0/ckpt-00000.pt"
