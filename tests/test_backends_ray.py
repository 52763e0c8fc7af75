"""--backend ray on a real local Ray cluster (one per module, 2 CPUs): a sweep's tables equal
the sequential ones number for number, a SIGKILLed worker is retried from its checkpoint on
an fsspec ``file://`` storage, and a worker cannot open the store for writing."""

from __future__ import annotations

import io
import os
import sys
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from backend_cases import LONG, TINY, dump, integrity
from expost.cli import main
from expost.experiments.backends import BackendOptions, run_job
from expost.experiments.runners import run_experiment
from expost.experiments.store import ResultStore
from expost.experiments.sweep import run_sweep
from test_backends_local import kill_worker_mid_training

ray = pytest.importorskip("ray")
# Two tests share the module's cluster (with `--dist loadgroup` both run on one xdist worker).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]

GRID = ["objective.ratio=3,9"]


@pytest.fixture(scope="module")
def cluster():
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(
                 p for p in sys.path if p)}})
    yield
    ray.shutdown()


def tables(sweep_dir: Path) -> str:
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["table", str(sweep_dir), "--format", "csv", "--bootstrap", "50"]) == 0
    return out.getvalue()


def test_a_ray_sweep_gives_the_sequential_tables(cluster, tmp_path):
    seq = run_sweep(TINY, GRID, output_dir=tmp_path / "seq", progress=False)
    on_ray = run_sweep(TINY, GRID, output_dir=tmp_path / "ray", progress=False,
                       backend=BackendOptions(backend="ray"))
    points = sorted(p.name for p in seq.iterdir() if p.is_dir())
    assert len(points) == 2
    for point in points:
        assert dump(on_ray / point) == dump(seq / point)
        assert integrity(on_ray / point) == "ok"
    text = tables(on_ray)
    assert text == tables(seq)
    assert text.count("## p00") == 2 and "ratio=9" in text
    worker_cannot_open_the_store_for_writing(on_ray / points[0])


def test_a_killed_ray_worker_is_retried_from_its_checkpoint_on_fsspec_storage(cluster,
                                                                             tmp_path):
    from expost.experiments.config import config_hash, load_config

    storage = tmp_path / "bucket"
    root = storage / config_hash(load_config(LONG))[:16]
    seen = kill_worker_mid_training(root, "weighted-s0", after=3)
    run_dir = run_experiment(LONG, output_dir=tmp_path / "r", progress=False,
                             backend=BackendOptions(backend="ray", retries=2,
                                                    storage=f"file://{storage}"))
    seen["thread"].join(5)
    assert "killed" in seen
    assert seen.get("retried", seen["killed"]) != seen["killed"]
    reference = run_experiment(LONG, output_dir=tmp_path / "seq", progress=False)
    got = dump(run_dir)
    n = LONG["training"]["epochs"]
    assert [i for _, i, *_ in got["intervals"]] == list(range(n))  # none twice, none missing
    assert got == dump(reference)
    assert integrity(run_dir) == "ok"
    assert not (run_dir / "checkpoints").exists()  # they went to the storage
    assert [p.name for p in (root / "checkpoints" / "weighted-s0").iterdir()] == [
        f"ckpt-{n - 1:05d}.pt"]
    assert not list((root / "spool").rglob("*.json"))


def _probe(spec: dict, run_dir: str) -> str:
    outcome = run_job(spec)  # a finished training: returns at once
    try:
        ResultStore(run_dir)
    except RuntimeError as exc:
        return f"{outcome['status']}: {exc}"
    return "opened"


def worker_cannot_open_the_store_for_writing(run_dir: Path) -> None:
    """A Ray task running a (finished) training cannot then open the store for writing."""
    with ResultStore(run_dir, readonly=True) as store:
        row = store.training("weighted-s0")
        config = store.experiment_info()["config"]
    spec = {"config": config, "storage": str(run_dir), "threads": 1,
            "rows": {"weighted-s0": row},
            "job": {"train_key": "weighted-s0", "kind": "weighted", "seed": 0,
                    "runs": [["weighted-s0", "weighted"]], "keep_best": False}}
    text = ray.get(ray.remote(num_cpus=1)(_probe).remote(spec, str(run_dir)))
    assert text.startswith("finished: a worker process")
    assert "only the driver writes the results store" in text


def test_ray_missing_says_how_to_install(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    assert main(["run", "--backend", "ray", "--out", str(tmp_path / "r"), "--no-report"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("expost run: error: --backend ray needs Ray: pip install 'expost[ray]'")
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r" / "results.sqlite").exists()
