"""Hand-made experiment records with known Table 1 answers, and an in-memory result store.

The other test_report_* modules import these helpers. The records mimic
ResultStore.interval_records(): 5 seeds x 3 regimes x 6 intervals, curves built
so that each run's best weighted loss and best classification utility sit at
chosen, *different* intervals, with a tie (to the earliest interval) in one run.
"""

from __future__ import annotations

import copy
import random

import numpy as np
import pytest

import expost
from expost.report import best_intervals

N_INTERVALS = 6
SEEDS = [0, 1, 2, 3, 4]
# Each run's best value (known answers).
WL = {
    "weighted": [0.80, 0.82, 0.79, 0.81, 0.83],
    "expost": [0.75, 0.74, 0.76, 0.73, 0.77],
    "unweighted_raw": [1.10, 1.20, 1.05, 1.15, 1.00],
}
CU = {
    "weighted": [0.29, 0.30, 0.28, 0.31, 0.27],
    "expost": [0.30, 0.32, 0.31, 0.29, 0.33],
    "unweighted_raw": [0.20, 0.22, 0.21, 0.19, 0.18],
}
IW = [2, 3, 4, 1, 5]  # interval of the minimum weighted loss, by seed
IU = [4, 1, 2, 3, 0]  # interval of the maximum classification utility (never IW)
TIE_SEED = 0  # its utility is maximal again at interval 5: the earliest (4) must win


def known_records(*, shuffle: bool = True, epoch_per_interval: float = 1.0,
                  regimes: tuple[str, ...] = ("weighted", "expost", "unweighted_raw")
                  ) -> list[dict]:
    recs = []
    for g in regimes:
        for s in SEEDS:
            for t in range(N_INTERVALS):
                wl = WL[g][s] + (0.0 if t == IW[s] else 0.01 * (1 + abs(t - IW[s])))
                cu = CU[g][s] - (0.0 if t == IU[s] else 0.02 * (1 + abs(t - IU[s])))
                if s == TIE_SEED and t == 5:
                    cu = CU[g][s]
                recs.append({
                    "run_id": f"{g}-s{s}", "regime": g, "seed": s, "interval": t,
                    "step": 50 * (t + 1), "epoch": epoch_per_interval * (t + 1),
                    "weighted_loss": wl, "classification_utility": cu,
                    "log_loss": 0.5 + 0.1 * abs(t - 2), "accuracy": 0.9 - 0.01 * abs(t - 3),
                    "emphasized_recall": None if t == 0 else 0.5 + 0.05 * t,
                    "calibration_error": 0.05 + 0.01 * t,
                })
    if shuffle:
        random.Random(7).shuffle(recs)
    return recs


class FakeStore:
    """The ResultStore interface (experiment_info, runs, interval_records) in memory."""

    def __init__(self, run_dir=None, *, records=None, failed=True, class_names=None,
                 statuses=None, regimes=("weighted", "expost", "unweighted_raw")):
        self.run_dir = run_dir
        self._records = known_records(regimes=regimes) if records is None else records
        self._val_records = []  # no validation metrics unless a test sets them
        self._runs = []
        for g in regimes:
            for s in SEEDS:
                status = (statuses or {}).get((g, s), "finished")
                self._runs.append({
                    "run_id": f"{g}-s{s}", "regime": g, "seed": s, "status": status,
                    "train_key": f"{'weighted' if g == 'weighted' else 'unweighted'}-s{s}",
                    "started_at": "2025-01-01T00:00:00", "finished_at": "2025-01-01T00:01:00",
                    "wall_seconds": 12.5 + s, "train_seconds": 10.0, "eval_seconds": 1.25,
                })
        if failed:  # a failed run with a spectacular loss that must never count
            self._runs.append({
                "run_id": "weighted-s9", "regime": "weighted", "seed": 9, "status": "failed",
                "train_key": "weighted-s9", "started_at": "2025-01-01T00:00:00",
                "finished_at": None, "wall_seconds": None, "train_seconds": None,
                "eval_seconds": None,
            })
            self._records = [*self._records, *[
                {"run_id": "weighted-s9", "regime": "weighted", "seed": 9, "interval": t,
                 "step": 50 * (t + 1), "epoch": float(t + 1), "weighted_loss": 0.01,
                 "classification_utility": 0.99, "log_loss": 0.1, "accuracy": 1.0,
                 "emphasized_recall": 1.0, "calibration_error": 0.0} for t in range(2)]]
        w = np.array([1.0, 99.0, 1.0])
        u = np.diag(w * 3.0 / w.sum())
        self._info = {
            "config": {"name": "demo <b>&", "dataset": {"name": "digits"},
                       "model": {"name": "mlp"}, "seeds": SEEDS,
                       "objective": {"kind": "emphasize", "emphasized": 1, "ratio": 99.0}},
            "config_hash": "abc123",
            "created_at": "2025-01-01T00:00:00+00:00",
            "versions": {"expost": "0.1.0", "python": "3.11", "numpy": np.__version__,
                         "torch": "2.x", "platform": "linux <test>"},
            "git_commit": "0123456789abcdef",
            "utility": u.tolist(),
            "class_names": class_names or ["zero", "<script>alert(1)</script>", "two"],
            "emphasized": 1,
        }

    def experiment_info(self):
        return copy.deepcopy(self._info)

    def runs(self):
        return copy.deepcopy(self._runs)

    def interval_records(self, split="test"):
        assert split in ("test", "val")
        return copy.deepcopy(self._records if split == "test" else self._val_records)


def test_fixture_best_intervals_are_the_constructed_ones():
    recs = known_records()
    for metric, where, values in (("weighted_loss", IW, WL), ("classification_utility", IU, CU)):
        best = best_intervals(recs, metric)
        assert len(best) == 15
        for r in best:
            assert r["interval"] == where[r["seed"]]
            assert r[metric] == pytest.approx(values[r["regime"]][r["seed"]], abs=1e-15)


def test_fixture_each_metric_has_its_own_best_interval():
    assert all(a != b for a, b in zip(IW, IU, strict=True))
    recs = [r for r in known_records() if r["seed"] == TIE_SEED and r["regime"] == "expost"]
    ties = [r["interval"] for r in recs if r["classification_utility"] == CU["expost"][TIE_SEED]]
    assert sorted(ties) == [IU[TIE_SEED], 5]


def test_fake_store_has_a_failed_run():
    s = FakeStore()
    assert [r["status"] for r in s.runs()].count("failed") == 1
    assert any(r["run_id"] == "weighted-s9" for r in s.interval_records())


# ---------------------------------------------------------------- risk decompositions remembered
def test_risk_rows_decompose_each_prediction_once(monkeypatch):
    import warnings

    from expost.report import diagnostics

    calls = []
    real = diagnostics.risk_decomposition

    def counted(p, y, **kwargs):
        calls.append(p.shape)
        if p.shape[0] == 40:
            warnings.warn("a decomposition that warns", UserWarning, stacklevel=2)
        return real(p, y, **kwargs)

    monkeypatch.setattr(diagnostics, "risk_decomposition", counted)
    monkeypatch.setattr(diagnostics, "_DECOMPOSED", {})
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 60)
    p = rng.dirichlet(np.ones(3), size=60)
    u = expost.Utility.from_class_weights([1.0, 5.0, 1.0])
    first = diagnostics._decomposed(p, y, u)
    ref = expost.risk_decomposition(p, y, utility=u)
    assert first == (ref.total, ref.learned, ref.remainder)
    assert diagnostics._decomposed(p.copy(), y.copy(), u) == first and len(calls) == 1
    q = p.copy()
    q[0] = [0.2, 0.3, 0.5]  # other predictions, other labels, another utility: computed
    diagnostics._decomposed(q, y, u)
    diagnostics._decomposed(p, np.roll(y, 1), u)
    diagnostics._decomposed(p, y, expost.Utility.from_class_weights([1.0, 6.0, 1.0]))
    diagnostics._decomposed(p.astype(np.float32), y, u)
    assert len(calls) == 5
    for _ in range(2):  # one that warned is not remembered: it warns every time
        with pytest.warns(UserWarning, match="warns"):
            diagnostics._decomposed(p[:40], y[:40], u)
    assert len(calls) == 7
