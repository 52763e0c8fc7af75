"""The harness on a CUDA device with bf16 autocast: a tiny experiment, end to end, and its store.

Skipped without CUDA (CI has no GPU); run it on a GPU machine with ``pytest -m gpu``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import expost
from expost.experiments.evaluate import interval_metrics
from expost.experiments.metrics import METRICS
from expost.experiments.runners import run_experiment
from expost.experiments.store import ResultStore

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none here)"),
]

SMOKE = {
    "name": "cuda-smoke",
    "dataset": {"name": "digits"},
    "model": {"name": "cnn", "options": {"channels": [16, 32]}},
    "objective": {"kind": "emphasize", "emphasized": "hardest", "ratio": 99},
    "regimes": ["weighted", "expost", "unweighted_raw"],
    "seeds": [0, 1],
    "optimizer": {"name": "adam", "lr": 0.003},
    "training": {"epochs": 3, "batch_size": 64},
    "device": "cuda",
    "precision": "bf16",
}


def test_tiny_experiment_on_cuda_with_bf16(tmp_path):
    run_dir = run_experiment(SMOKE, output_dir=tmp_path / "exp", progress=False)
    with ResultStore(run_dir) as s:
        info = s.experiment_info()
        runs, trainings, recs = s.runs(), s.trainings(), s.interval_records()
        y = s.array("test_labels")
        u = expost.Utility(info["utility"])
        u_ip = expost.Utility(info["inverse_prior_utility"])
        key = {r["run_id"]: r["train_key"] for r in runs}
        probs = {(r["run_id"], r["interval"]): s.probabilities(key[r["run_id"]], r["interval"])
                 for r in recs}
    assert info["device"].startswith(SMOKE["device"]) and info["config"]["precision"] == "bf16"
    assert len(runs) == 6 and {r["status"] for r in runs} == {"finished"}
    assert all(t["done_intervals"] == t["n_intervals"] == 3 for t in trainings)
    assert len(recs) == 6 * 3 and all(np.isfinite([r[m] for m in METRICS]).all() for r in recs)
    # stored probabilities are distributions and reproduce the stored metrics
    for rec in recs:
        q = probs[rec["run_id"], rec["interval"]]
        np.testing.assert_allclose(q.sum(axis=1), 1.0, atol=1e-3)
        again = interval_metrics(q, y, u, rec["regime"], recall_of=info["recall_class"],
                                 training_utility=u_ip)
        for m in METRICS:
            assert again[m] == rec[m], (rec["run_id"], rec["interval"], m)
    # it learned: the unweighted model's last interval beats chance by far on 10 digits
    last = [r for r in recs if r["regime"] == "unweighted_raw" and r["interval"] == 2]
    assert min(r["accuracy"] for r in last) > 0.6
    # a rerun finds everything done and changes nothing
    again_dir = run_experiment(SMOKE, output_dir=tmp_path / "exp", progress=False)
    with ResultStore(again_dir) as s:
        assert s.interval_records() == recs
