"""End to end: every regime on tiny configs, reproducibility, resume after SIGKILL, the CLI."""

from __future__ import annotations

import copy
import csv
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import expost
from expost.cli import main
from expost.experiments.checkpoint import (
    CHECKPOINT_FORMAT,
    TrainingParts,
    TrainingState,
    load_checkpoint,
    pack_tensors,
    save_atomic,
    unpack_tensors,
)
from expost.experiments.config import ConfigError, load_config
from expost.experiments.evaluate import interval_metrics
from expost.experiments.metrics import METRICS
from expost.experiments.runners import ExperimentMismatchError, run_experiment
from expost.experiments.store import ResultStore
from expost.experiments.train import build_scheduler, eval_steps

TINY = {
    "name": "tiny",
    "dataset": {"name": "digits", "options": {"flatten": True}},
    "model": {"name": "mlp", "options": {"hidden": [16]}},
    "objective": {"kind": "emphasize", "emphasized": "hardest", "ratio": 99},
    "regimes": ["weighted", "expost", "unweighted_raw", "inverse_prior", "resampled",
                "metacost"],
    "seeds": [0, 1],
    "optimizer": {"name": "adam", "lr": 0.01},
    "training": {"epochs": 3, "batch_size": 128},
    "num_threads": 1,
}


def _run(config, out, **kw):
    return run_experiment(config, output_dir=out, progress=False, **kw)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """All six regimes, two seeds, three intervals each."""
    return _run(TINY, tmp_path_factory.mktemp("tiny") / "exp")


def _everything(run_dir):
    """Every stored number of an experiment but the timings."""
    with ResultStore(run_dir) as s:
        drop = {"train_seconds", "eval_seconds"}
        return {
            "test": s.interval_records("test"),
            "val": s.interval_records("val"),
            "intervals": [{k: v for k, v in r.items() if k not in drop} for r in s.intervals()],
            "probs": {(k, i): s.stored_log_probs(k, i).tobytes()
                      for k, i, *_ in s.iter_probabilities()},
            "runs": [(r["run_id"], r["regime"], r["seed"], r["train_key"], r["status"])
                     for r in s.runs()],
        }


# ---------------------------------------------------------------- every regime
def test_every_regime_runs_and_is_stored(tiny):
    with ResultStore(tiny) as s:
        runs = s.runs()
        trainings = s.trainings()
        info = s.experiment_info()
        recs = s.interval_records()
    assert len(runs) == 12 and {r["status"] for r in runs} == {"finished"}
    assert {r["regime"] for r in runs} == set(TINY["regimes"])
    by_run = {r["run_id"]: r for r in runs}
    for seed in (0, 1):  # one unweighted training serves expost and unweighted_raw
        assert by_run[f"expost-s{seed}"]["train_key"] == f"unweighted-s{seed}"
        assert by_run[f"unweighted_raw-s{seed}"]["train_key"] == f"unweighted-s{seed}"
    assert sorted(t["kind"] for t in trainings) == sorted(
        ["weighted", "unweighted", "inverse_prior", "resampled", "metacost"] * 2)
    assert all(t["done_intervals"] == t["n_intervals"] == 3 for t in trainings)
    assert len(recs) == 12 * 3
    assert all(np.isfinite([r[m] for m in METRICS]).all() for r in recs)
    assert info["emphasized"] is not None and info["recall_class"] == info["emphasized"]
    assert info["versions"]["torch"] == torch.__version__
    assert info["config"]["name"] == "tiny" and len(info["config_hash"]) == 64
    u = np.asarray(info["utility"])
    prior = np.asarray(info["train_prior"])
    assert np.isclose(-np.log(prior) @ u @ prior, prior @ -np.log(prior))  # Eq 21
    # the views differ where they should: same model, different predictions scored
    ex = [r for r in recs if r["regime"] == "expost"]
    raw = [r for r in recs if r["regime"] == "unweighted_raw"]
    assert all(a["accuracy"] != b["accuracy"] or a["weighted_loss"] != b["weighted_loss"]
               for a, b in zip(ex, raw, strict=True))


def test_stored_probabilities_reproduce_stored_metrics_exactly(tiny):
    with ResultStore(tiny) as s:
        info = s.experiment_info()
        y = s.array("test_labels")
        u = expost.Utility(info["utility"])
        u_ip = expost.Utility(info["inverse_prior_utility"])
        key = {r["run_id"]: r["train_key"] for r in s.runs()}
        for rec in s.interval_records():
            q = s.probabilities(key[rec["run_id"]], rec["interval"])
            again = interval_metrics(q, y, u, rec["regime"], recall_of=info["recall_class"],
                                     training_utility=u_ip)
            for m in METRICS:
                assert again[m] == rec[m], (rec["run_id"], rec["interval"], m)


def test_table1_recomputed_independently(tiny):
    from expost.report import table1

    with ResultStore(tiny) as s:
        recs = s.interval_records()
    tab = table1(recs, n_boot=50)
    for metric, lower in (("weighted_loss", True), ("classification_utility", False)):
        best = {}
        for reg in ("weighted", "expost"):
            vals = []
            for seed in (0, 1):
                series = sorted((r["interval"], r[metric]) for r in recs
                                if r["regime"] == reg and r["seed"] == seed)
                values = [v for _, v in series]
                vals.append(min(values) if lower else max(values))
            best[reg] = np.array(vals)
        for stat, fn in (("Mean", np.mean), ("Min", np.min), ("Max", np.max)):
            wt, ep = fn(best["weighted"]), fn(best["expost"])
            gain = 100 * ((wt - ep) if lower else (ep - wt)) / abs(wt)
            row = tab.cell(metric, stat)
            assert row.baseline == pytest.approx(wt, rel=1e-12)
            assert row.treatment == pytest.approx(ep, rel=1e-12)
            assert row.pct_gain == pytest.approx(gain, rel=1e-9, abs=1e-12)


def test_a_training_depends_only_on_config_and_seed(tiny, tmp_path):
    # Seed 1's weighted and unweighted trainings, alone in a new experiment, give exactly
    # the numbers they gave next to four other regimes and another seed.
    cfg = copy.deepcopy(TINY)
    cfg.update(regimes=["weighted", "expost"], seeds=[1])
    other = _run(cfg, tmp_path / "alone")
    mine = {(r["run_id"], r["interval"]): r for r in _everything(other)["test"]}
    ref = {(r["run_id"], r["interval"]): r for r in _everything(tiny)["test"]}
    assert set(mine) == {(f"{g}-s1", i) for g in ("weighted", "expost") for i in range(3)}
    for k, rec in mine.items():
        assert rec == ref[k]


def test_rerun_skips_finished_and_changes_nothing(tiny):
    before = _everything(tiny)
    with ResultStore(tiny) as s:
        attempts = [t["attempts"] for t in s.trainings()]
    t0 = time.perf_counter()
    _run(TINY, tiny)
    assert _everything(tiny) == before
    with ResultStore(tiny) as s:
        assert [t["attempts"] for t in s.trainings()] == attempts
    assert time.perf_counter() - t0 < 30


def test_an_experiment_made_with_the_for_loop_adam_says_how_to_resume_it(tmp_path):
    cfg = copy.deepcopy(TINY)
    cfg.update(regimes=["weighted", "expost"], seeds=[0])
    cfg["training"] = {"epochs": 1, "batch_size": 256}
    d = tmp_path / "loop"
    _run(cfg, d, overrides=["optimizer.fused=false"])  # as every run before the option existed
    with pytest.raises(ExperimentMismatchError,
                       match=r"for-loop Adam .* --set optimizer.fused=false"):
        _run(cfg, d)
    _run(cfg, d, overrides=["optimizer.fused=false"])  # resumes (nothing left to do)
    with ResultStore(d) as s:
        assert s.experiment_info()["config"]["optimizer"]["fused"] is False


def test_another_config_in_the_same_directory(tiny, tmp_path):
    with pytest.raises(ExperimentMismatchError, match=r"config hash .* --force-new"):
        _run(TINY, tiny, overrides=["optimizer.lr=0.02"])
    cfg = copy.deepcopy(TINY)
    cfg.update(regimes=["weighted", "expost"], seeds=[0])
    cfg["training"] = {"epochs": 1, "batch_size": 256}
    d = tmp_path / "fresh"
    _run(cfg, d)
    _run(cfg, d, overrides=["training.epochs=2"], force_new=True)
    aside = list(tmp_path.glob("fresh.replaced-*"))
    assert len(aside) == 1 and (aside[0] / "results.sqlite").is_file()
    with ResultStore(d) as s:
        assert {t["done_intervals"] for t in s.trainings()} == {2}


def test_config_input_is_not_mutated(tmp_path):
    cfg = copy.deepcopy(TINY)
    cfg.update(regimes=["weighted"], seeds=[0], training={"epochs": 1, "batch_size": 512})
    before = copy.deepcopy(cfg)
    _run(cfg, tmp_path / "x", overrides=["training.epochs=1"])
    assert cfg == before


# ---------------------------------------------------------------- schedules, steps, paths
def test_step_intervals_cosine_schedule_and_bf16(tmp_path):
    cfg = copy.deepcopy(TINY)
    cfg.update(regimes=["weighted", "expost"], seeds=[0], precision="bf16",
               optimizer={"name": "sgd", "lr": 0.1, "momentum": 0.9},
               schedule={"name": "cosine", "warmup_steps": 3},
               training={"steps": 25, "eval_every": 10, "batch_size": 64, "grad_clip": 1.0})
    d = _run(cfg, tmp_path / "steps")
    with ResultStore(d) as s:
        rows = s.intervals("weighted-s0")
        recs = s.interval_records()
    assert [r["step"] for r in rows] == [10, 20, 25]
    assert [r["interval"] for r in rows] == [0, 1, 2]
    spe = int(np.ceil(1257 / 64))
    assert [r["epoch"] for r in rows] == pytest.approx([10 / spe, 20 / spe, 25 / spe])
    # the lr recorded after step s is the one step s + 1 would use: cosine after warm-up
    for r in rows:
        s = r["step"]
        want = 0.1 * 0.5 * (1 + np.cos(np.pi * min(1.0, (s - 3) / 22)))
        assert r["lr"] == pytest.approx(want, rel=1e-6, abs=1e-12)
    assert all(np.isfinite(r["weighted_loss"]) for r in recs)


def test_eval_steps_and_plateau_schedule():
    cfg = load_config(TINY, overrides=["training={steps: 7, eval_every: 3}"])
    assert eval_steps(cfg, 100) == ([3, 6, 7], 7, 2)  # batch 64: 2 steps per epoch
    cfg = load_config(TINY, overrides=["training={epochs: 2, batch_size: 40}"])
    assert eval_steps(cfg, 100) == ([3, 6], 6, 3)
    cfg = load_config(TINY, overrides=["schedule={name: plateau, factor: 0.5, patience: 0}"])
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched, when = build_scheduler(cfg, opt, 10)
    assert when == "plateau"
    lrs = []
    for loss in (1.0, 0.5, 0.6, 0.4, 0.45):
        sched.step(loss)
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs == [1.0, 1.0, 0.5, 0.5, 0.25]


def _custom_datasets(monkeypatch):
    """A map-style digits (DataLoader path) and one with get_batch (batch path).

    Registered into a copy of the registry table, so other tests never see them.
    """
    from expost.experiments.datasets import DataSplits, load_dataset, register_dataset
    from expost.experiments.datasets._api import _DATASETS

    monkeypatch.setattr(_DATASETS, "_factories", dict(_DATASETS._factories))

    class MapStyle(torch.utils.data.Dataset):
        def __init__(self, tds):
            self.x, self.y = tds.tensors

        def __len__(self):
            return len(self.y)

        def __getitem__(self, i):
            return self.x[i], self.y[i]

    class Batched(MapStyle):
        def get_batch(self, idx):
            idx = torch.as_tensor(idx)
            return self.x[idx], self.y[idx]

    for name, cls in (("digits_map", MapStyle), ("digits_batched", Batched)):
        def factory(*, seed: int, _cls=cls, _name=name) -> DataSplits:
            d = load_dataset("digits", seed=seed, flatten=True)
            return DataSplits(_name, _cls(d.train), _cls(d.val), _cls(d.test), d.train_labels,
                              d.val_labels, d.test_labels, d.n_classes, d.class_names,
                              d.input_shape)

        register_dataset(name, overwrite=True)(factory)


def test_map_style_and_batched_datasets_match_tensor_path(tiny, tmp_path, monkeypatch):
    _custom_datasets(monkeypatch)
    ref = {(r["run_id"], r["interval"]): r for r in _everything(tiny)["test"]
           if r["seed"] == 0 and r["regime"] in ("weighted", "expost")}
    emphasized = ResultStore(tiny).experiment_info()["emphasized"]
    for name in ("digits_map", "digits_batched"):
        cfg = copy.deepcopy(TINY)
        cfg.update(dataset={"name": name}, regimes=["weighted", "expost"], seeds=[0],
                   objective={"kind": "emphasize", "emphasized": emphasized, "ratio": 99})
        got = _everything(_run(cfg, tmp_path / name))["test"]
        assert len(got) == 6
        for r in got:  # same data, same order, same seed: the same numbers on every path
            assert r == ref[(r["run_id"], r["interval"])]


# ---------------------------------------------------------------- SIGKILL and resume
KILL = {
    "name": "killme",
    "dataset": {"name": "digits", "options": {"flatten": True}},
    "model": {"name": "mlp", "options": {"hidden": [64]}},
    "objective": {"kind": "emphasize", "emphasized": 8, "ratio": 99},
    "regimes": ["weighted", "expost", "unweighted_raw"],
    "seeds": [0],
    "optimizer": {"name": "adam", "lr": 0.003},
    "schedule": {"name": "plateau", "factor": 0.5, "patience": 0},
    "training": {"epochs": 12, "batch_size": 32, "eval_every": 25},
    "num_threads": 1,
}


def _committed(db: Path) -> int:
    if not db.is_file():
        return 0
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return int(con.execute("SELECT COUNT(*) FROM intervals").fetchone()[0])
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def _start(cfg_path, out):
    return subprocess.Popen(
        [sys.executable, "-m", "expost", "run", str(cfg_path), "--out", str(out), "--quiet",
         "--no-report"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _kill_after(cfg_path, out, n_committed, deadline=240.0):
    proc = _start(cfg_path, out)
    t0 = time.monotonic()
    while _committed(out / "results.sqlite") < n_committed:
        if proc.poll() is not None:
            pytest.fail(f"the run ended before it could be killed:\n{proc.stderr.read()}")
        if time.monotonic() - t0 > deadline:
            proc.kill()
            pytest.fail("the run made no progress")
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return _committed(out / "results.sqlite")


@pytest.mark.parametrize("checkpoint_every", [1, 3, "auto"])
def test_resume_after_sigkill_is_exact(tmp_path, checkpoint_every):
    """Killed twice mid-experiment; with checkpoints every 3 intervals the resumed run redoes
    the intervals committed after the last checkpoint, and every number is the same. With
    ``auto`` a training this short writes only its last checkpoint: the killed one starts
    again from its first interval, unwarned, and every number is the same too."""
    cfg_path = tmp_path / "kill.yaml"
    cfg = copy.deepcopy(KILL)
    cfg["training"]["checkpoint_every"] = checkpoint_every
    cfg_path.write_text(yaml.safe_dump(cfg))
    steps, _, _ = eval_steps(load_config(cfg_path), 1257)
    total = 2 * len(steps)  # two trainings
    reference = _run(cfg_path, tmp_path / "reference")

    out = tmp_path / "killed"
    first = _kill_after(cfg_path, out, 3)
    second = _kill_after(cfg_path, out, total - len(steps) // 2)
    assert 3 <= first < second < total, "both kills landed mid-experiment"
    con = sqlite3.connect(str(out / "results.sqlite"))
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()

    final = _start(cfg_path, out)
    stdout, stderr = final.communicate(timeout=300)
    assert final.returncode == 0, stderr
    if checkpoint_every != "auto":  # continued from a checkpoint, not from scratch
        assert "resumed after interval" in stdout
    assert "warning" not in stderr  # a rewind to the last checkpoint is expected, not warned
    assert _everything(out) == _everything(reference)
    with ResultStore(out) as s:
        trainings = s.trainings()
    assert {t["status"] for t in trainings} == {"finished"}
    assert max(t["attempts"] for t in trainings) >= 2
    for t in trainings:  # one checkpoint left per training: the last one
        files = sorted((out / "checkpoints" / t["train_key"]).iterdir())
        assert [f.name for f in files] == [Path(t["checkpoint"]).name]


# ---------------------------------------------------------------- checkpoints
def _leaves(obj):
    """Every non-container value in a nest of dicts, lists and tuples."""
    if isinstance(obj, dict):
        assert all(isinstance(k, (str, int)) for k in obj), list(obj)
        return [leaf for v in obj.values() for leaf in _leaves(v)]
    if isinstance(obj, (list, tuple)):
        return [leaf for v in obj for leaf in _leaves(v)]
    return [obj]


def test_checkpoints_hold_tensors_and_plain_values_only(tiny):
    with ResultStore(tiny) as s:
        trainings = {t["train_key"]: t for t in s.trainings()}
    for key, t in trainings.items():
        path = tiny / t["checkpoint"]
        raw = torch.load(path, map_location="cpu", weights_only=True)  # no code runs on load
        assert raw["format"] == CHECKPOINT_FORMAT
        kinds = {type(v) for v in _leaves(raw)}
        assert kinds <= {torch.Tensor, int, float, str, bool, type(None)}
        # packed: one flat tensor per dtype holds every tensor of the checkpoint
        assert sum(isinstance(v, torch.Tensor) for v in _leaves(raw)) == len(raw["packed"]) <= 4
        ck = load_checkpoint(path)
        assert ck["train_key"] == key and ck["interval"] == t["done_intervals"] == 3
        assert {type(v) for v in _leaves(ck)} <= kinds
        assert all(isinstance(v, torch.Tensor) for v in ck["model"].values())
        # only the training MetaCost relabels with keeps its best-validation model
        assert (ck["best"]["model"] is not None) == key.startswith("unweighted")
        if key.startswith("unweighted"):
            assert set(ck["best"]["model"]) == set(ck["model"])
            assert ck["best"]["val_loss"] < float("inf")


def _parts(seed):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=0)
    return TrainingParts(model, optimizer, scheduler, torch.Generator().manual_seed(seed))


def _draws(gen):
    """One draw from every generator a training uses (the Gaussian caches included)."""
    return (random.random(), random.gauss(0, 1), np.random.rand(),  # noqa: NPY002
            np.random.standard_normal(), torch.rand(2).tolist(),  # noqa: NPY002
            torch.randperm(6, generator=gen).tolist())


def test_training_state_round_trips_through_a_checkpoint(tmp_path):
    parts = _parts(0)
    x, y = torch.randn(8, 3), torch.randint(0, 2, (8,))
    for _ in range(3):  # optimizer moments and a plateau schedule with history
        parts.optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(parts.model(x), y)
        loss.backward()
        parts.optimizer.step()
        parts.scheduler.step(loss.item())
    random.gauss(0, 1)  # leave a cached Gaussian in Python's generator and numpy's
    np.random.standard_normal(3)  # noqa: NPY002
    state = TrainingState(interval=2, step=7, epoch=1, pos=3,
                          epoch_order_state=torch.Generator().manual_seed(5).get_state(),
                          best_val_loss=0.25,
                          best_model={k: v.clone() for k, v in parts.model.state_dict().items()})
    save_atomic(state.to_checkpoint("weighted-s0", parts, torch.device("cpu")),
                tmp_path / "ck" / "ckpt-00001.pt")
    assert [p.name for p in (tmp_path / "ck").iterdir()] == ["ckpt-00001.pt"]  # no temporary
    expected = _draws(parts.data_order)

    random.seed(99)
    np.random.seed(99)  # noqa: NPY002
    fresh = _parts(1)
    restored = TrainingState.from_checkpoint(load_checkpoint(tmp_path / "ck" / "ckpt-00001.pt"),
                                             "weighted-s0", fresh)
    assert _draws(fresh.data_order) == expected
    assert (restored.interval, restored.step, restored.epoch, restored.pos) == (2, 7, 1, 3)
    assert torch.equal(restored.epoch_order_state, state.epoch_order_state)
    assert restored.best_val_loss == 0.25
    for name, value in parts.model.state_dict().items():
        assert torch.equal(fresh.model.state_dict()[name], value)
        assert torch.equal(restored.best_model[name], state.best_model[name])
    moments = parts.optimizer.state_dict()["state"]
    for i, s in fresh.optimizer.state_dict()["state"].items():
        assert all(torch.equal(s[k], moments[i][k]) for k in ("step", "exp_avg", "exp_avg_sq"))
    assert fresh.scheduler.state_dict() == parts.scheduler.state_dict()


def test_packed_checkpoints_copy_every_tensor_exactly_and_format_2_still_loads(tmp_path):
    parts = _parts(3)
    parts.model(torch.randn(4, 3)).sum().backward()
    parts.optimizer.step()
    state = TrainingState(interval=1, step=1, best_val_loss=0.5,
                          best_model={k: v.clone() for k, v in parts.model.state_dict().items()})
    ck = state.to_checkpoint("weighted-s0", parts, torch.device("cpu"))
    packed = pack_tensors(ck)
    assert set(packed["packed"]) == {"torch.float32|cpu", "torch.int64|cpu", "torch.uint8|cpu"}
    back = unpack_tensors(packed)
    tensors_in, tensors_out = (
        [v for v in _leaves(c) if isinstance(v, torch.Tensor)] for c in (ck, back))
    assert len(tensors_in) == len(tensors_out) > 10
    for a, b in zip(tensors_in, tensors_out, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    # each a tensor of its own, not a view of the flat one
    assert len({b.untyped_storage().data_ptr() for b in tensors_out}) == len(tensors_out)
    assert back["model"]._metadata == ck["model"]._metadata  # module versions kept
    assert back["optimizer"]["param_groups"] == ck["optimizer"]["param_groups"]
    big = {"small": torch.arange(3), "big": torch.randn(100_000)}  # 400 KB: left as it is
    stored = pack_tensors(big)
    assert stored["nest"]["big"] is big["big"] and isinstance(stored["nest"]["small"], tuple)
    assert torch.equal(unpack_tensors(stored)["big"], big["big"])

    old = tmp_path / "format2.pt"  # written before tensors were packed
    torch.save({**ck, "format": 2}, old)
    fresh = _parts(4)
    restored = TrainingState.from_checkpoint(load_checkpoint(old), "weighted-s0", fresh)
    assert restored.interval == 1 and restored.best_val_loss == 0.5
    assert all(torch.equal(fresh.model.state_dict()[k], v)
               for k, v in parts.model.state_dict().items())

    bad = tmp_path / "bad.pt"  # a layout that points past its flat tensor
    packed["packed"]["torch.float32|cpu"] = packed["packed"]["torch.float32|cpu"][:5]
    torch.save(packed, bad)
    with pytest.raises(RuntimeError, match="packed tensors do not match their layout"):
        load_checkpoint(bad)


def test_a_foreign_or_unsafe_checkpoint_is_refused(tmp_path):
    parts = _parts(0)
    ck = TrainingState().to_checkpoint("weighted-s0", parts, torch.device("cpu"))
    with pytest.raises(RuntimeError, match="'weighted-s0' does not belong to 'unweighted-s0'"):
        TrainingState.from_checkpoint(ck, "unweighted-s0", parts)
    old = tmp_path / "old.pt"  # the first format pickled numpy's generator state
    torch.save({**ck, "format": 1, "rng": {"numpy": np.random.get_state()}}, old)  # noqa: NPY002
    with pytest.raises(RuntimeError, match=r"not a checkpoint of tensors .*--force-new"):
        load_checkpoint(old)
    torch.save({**ck, "format": 1}, old)
    with pytest.raises(RuntimeError, match=f"format 1, expected {CHECKPOINT_FORMAT}"):
        load_checkpoint(old)


def test_the_loss_module_is_built_once_per_training(tmp_path, monkeypatch):
    import expost.nn

    built = []

    class Counted(expost.nn.UtilityWeightedCrossEntropy):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            built.append(self)

    monkeypatch.setattr(expost.nn, "UtilityWeightedCrossEntropy", Counted)
    cfg = {**TINY, "regimes": ["weighted", "inverse_prior", "expost"], "seeds": [0],
           "training": {"epochs": 2, "batch_size": 256}}
    _run(cfg, tmp_path / "losses")
    # two weighted trainings of 2 x 5 steps each; the unweighted one uses plain CE
    assert len(built) == 2
    assert [m.reduction for m in built] == ["mean", "mean"]


# ---------------------------------------------------------------- the command line
def test_cli_run_prints_table1(tmp_path, capsys):
    cfg = copy.deepcopy(TINY)
    cfg.update(regimes=["weighted", "expost"], seeds=[0, 1],
               objective={"kind": "emphasize", "emphasized": 3, "ratio": 99})
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["run", str(path), "--out", str(tmp_path / "r"), "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert "| Mean |" in out and "Weighted Training" in out and "Ex Post Weighting" in out
    assert (tmp_path / "r" / "report" / "report.html").is_file()
    assert "interval" in out.splitlines()[0]  # the quiet log's header line
    # --quiet changes the progress display only: the title line and the verdict stay
    assert "Table 1: " in err and "Verdict: Ex Post Weighting against Weighted Training" in err


def test_cli_run_errors(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**TINY, "optimizer": {"name": "adam", "lr": -1}}))
    assert main(["run", str(bad), "--out", str(tmp_path / "x")]) == 1  # one line, exit 1
    err = capsys.readouterr().err
    assert "expost run: error: Invalid experiment config" in err and "optimizer.lr" in err
    assert len(err.strip().splitlines()) == 1
    assert main(["run", str(tmp_path / "missing.yaml")]) == 1
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(ConfigError):
        run_experiment({**TINY, "seeds": 0}, output_dir=tmp_path / "y", progress=False)


def test_cli_evaluate_reproduces_stored_metrics(tiny, tmp_path, capsys):
    with ResultStore(tiny) as s:
        info = s.experiment_info()
        stored = {(r["run_id"], r["interval"]): r for r in s.interval_records()}
    ucsv = tmp_path / "u.csv"
    with open(ucsv, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(info["class_names"])
        w.writerows(info["utility"])
    out = tmp_path / "ev.csv"
    assert main(["evaluate", str(tiny), "--utility", str(ucsv), "--no-normalize",
                 "--out", str(out), "--bootstrap", "40"]) == 0
    assert "| Mean |" in capsys.readouterr().out
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == len(stored)
    for row in rows:
        ref = stored[(row["run_id"], int(row["interval"]))]
        for m in METRICS:
            assert float(row[m]) == pytest.approx(ref[m], rel=1e-10, abs=1e-12), m
    # many utilities at once: one record per run, interval and utility
    assert main(["evaluate", str(tiny), "--emphasize", info["class_names"][2], "--ratio", "2",
                 "10", "99", "--out", str(out), "--bootstrap", "0"]) == 0
    assert len(list(csv.DictReader(open(out)))) == 3 * len(stored)
    assert capsys.readouterr().out.count("## Utility") == 3
    assert main(["evaluate", str(tiny), "--emphasize", "nope"]) == 1
    assert "neither a class name nor an index" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path)]) == 1
    assert "No experiment in" in capsys.readouterr().err


def test_cli_decide(tmp_path, capsys, rng):
    q = rng.dirichlet(np.ones(3), size=50)
    u = expost.Utility([[1.0, 0.0, 0.2], [0.0, 4.0, 0.0], [0.3, 0.0, 2.0]])
    probs, util, dec = tmp_path / "p.csv", tmp_path / "u.csv", tmp_path / "d.csv"
    np.savetxt(probs, q, delimiter=",", header="a,b,c", comments="", fmt="%.17g")
    np.savetxt(util, u.matrix, delimiter=",", fmt="%.17g")  # no header: optional
    assert main(["decide", "--utility", str(util), "--probs", str(probs), "--out", str(dec),
                 "--with-probs"]) == 0
    rows = list(csv.DictReader(open(dec)))
    q_read = np.loadtxt(probs, delimiter=",", skiprows=1)
    assert [int(r["decision"]) for r in rows] == expost.decide(q_read, u).tolist()
    assert [r["label"] for r in rows] == [["a", "b", "c"][int(r["decision"])] for r in rows]
    pu = expost.weighted_prediction(q_read, u)
    assert np.allclose([[float(r[f"p_{c}"]) for c in "abc"] for r in rows], pu, rtol=1e-15)
    eu = expost.expected_utility(q_read, u).max(axis=1)
    assert np.allclose([float(r["expected_utility"]) for r in rows], eu, rtol=1e-15)
    np.savetxt(util, u.matrix, delimiter=",", header="a,c,b", comments="")
    assert main(["decide", "--utility", str(util), "--probs", str(probs)]) == 1
    assert "same classes in the same order" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("0.5,0.5,0.5\n")
    np.savetxt(util, u.matrix, delimiter=",")
    assert main(["decide", "--utility", str(util), "--probs", str(bad)]) == 1
    assert "`--probs` must be rows on the probability simplex" in capsys.readouterr().err
    bad.write_text("a,b,c\n0.2,0.3,0.5\n0.5,x,0.5\n")
    assert main(["decide", "--utility", str(util), "--probs", str(bad)]) == 1
    assert "row 3, column 2" in capsys.readouterr().err
    bad.write_text("a,b,c\n0.2,0.8\n")
    assert main(["decide", "--utility", str(util), "--probs", str(bad)]) == 1
    assert "row 2 of" in capsys.readouterr().err


def test_progress_reporters():
    import io
    from types import SimpleNamespace

    from rich.console import Console

    from expost.experiments.progress import LogReporter, RichReporter

    job = SimpleNamespace(train_key="weighted-s0")
    row = {"interval": 1, "n_intervals": 30, "step": 40, "epoch": 2.0, "lr": 1e-3,
           "train_loss": 0.51234, "val_loss": 0.6, "weighted_loss": 0.4321,
           "classification_utility": 0.9, "train_seconds": 0.1, "eval_seconds": 0.01,
           "io_seconds": 0.01, "regime": "weighted"}
    buf = io.StringIO()
    log = LogReporter(buf)
    log.start(job, 30, 0)
    log.interval(job, row)
    log.interval(job, {**row, "interval": 2, "step": 60, "train_loss": 12.5})
    header, first, second = buf.getvalue().splitlines()
    assert header.split()[:3] == ["training", "interval", "step"]
    assert len(first) == len(second) == len(header)  # fixed columns
    assert "2/30" in first and "0.5123" in first and "0.4321" in first
    out = io.StringIO()
    rich = RichReporter(console=Console(file=out, width=200, force_terminal=False))
    rich.start(job, 30, 5)
    rich.interval(job, row)
    rich.finish(job)
    rich.close()
    text = out.getvalue()
    assert "weighted-s0" in text and "0.4321" in text and "2/30" in text


def test_one_writer_per_directory(tmp_path):
    fcntl = pytest.importorskip("fcntl")
    d = tmp_path / "locked"
    d.mkdir()
    with open(d / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as if another run were going on
        with pytest.raises(RuntimeError, match="Another expost process is running"):
            _run({**TINY, "regimes": ["weighted"], "seeds": [0]}, d)
    assert not (d / "results.sqlite").exists()


def test_the_local_runner_calls_between_after_each_training_but_the_last(monkeypatch):
    from expost.experiments import train
    from expost.experiments.runners import LocalRunner

    events = []
    monkeypatch.setattr(train, "run_training", lambda setup, job, reporter: events.append(job))
    LocalRunner(between=lambda setup: events.append(("between", setup))).run("S", ["a", "b", "c"])
    assert events == ["a", ("between", "S"), "b", ("between", "S"), "c"]
    events.clear()
    LocalRunner().run("S", ["a", "b"])
    assert events == ["a", "b"]
