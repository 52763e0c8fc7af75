"""Warnings a reader of Table 1 must not miss, computed from the stored results.

* **late best interval**: at least half of the runs have their best interval
  among their last 10 %: "best over intervals" is then really "last", and the
  gain depends on where training stops (train longer). On a noisy plateau
  about one run in ten is late by chance, which does not fire the flag;
* **one class for everything**: a regime that decides one class for every test
  example at a run's best interval (read from the stored predictions through
  the regime's view, :func:`expost.experiments.regimes.regime_view`);
* **diverged**: a run whose training the store marks ``"diverged"``, or with a
  non-finite stored loss; such runs are left out of Table 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._utility import Utility
from ..experiments.regimes import regime_view
from .records import METRIC_LABELS, best_intervals, group_runs, regime_label

__all__ = ["LATE_FRACTION", "Flag", "diverged_runs", "late_best_flags", "one_class_flags"]

#: A best interval among the last LATE_FRACTION of a run's intervals is "late".
LATE_FRACTION = 0.1

_LOSS_KEYS = ("weighted_loss", "log_loss")


@dataclass(frozen=True)
class Flag:
    """One warning: its kind (``late_best``, ``one_class``, ``diverged``), a sentence, the runs."""

    kind: str
    text: str
    runs: tuple[str, ...]


def late_cutoff(n_intervals: int, fraction: float = LATE_FRACTION) -> int:
    """The first interval index counted as late: the last ``max(1, ceil(fraction n))``.

    >>> late_cutoff(30), late_cutoff(100), late_cutoff(6)
    (27, 90, 5)
    """
    return n_intervals - max(1, math.ceil(fraction * n_intervals))


def late_best_flags(records: Any, metrics: Sequence[str], *, select_by: Any = None,
                    fraction: float = LATE_FRACTION) -> list[Flag]:
    """Per metric, a flag when at least half of the runs have their best interval among
    their last ``fraction`` of intervals (the flag lists those runs).

    Silent when fewer are late (a converged run on a noisy plateau is late with
    probability about ``fraction``); runs with fewer than 2 intervals never count.

    Examples
    --------
    >>> recs = [{"run_id": "a", "regime": "weighted", "interval": t, "weighted_loss": 1 - t / 10}
    ...         for t in range(10)]
    >>> late_best_flags(recs, ["weighted_loss"])[0].runs
    ('a',)
    """
    out = []
    for m in metrics:
        lengths = {k[1]: len(v) for k, v in group_runs(records, m).items()}
        late = [r for r in best_intervals(records, m, select_by=select_by)
                if lengths[str(r["run_id"])] > 1
                and r["interval"] >= late_cutoff(lengths[str(r["run_id"])], fraction)]
        if late and 2 * len(late) >= len(lengths):
            n = max(lengths.values())
            out.append(Flag("late_best", (
                f"{METRIC_LABELS[m]}: {len(late)} of {len(lengths)} runs have their best interval "
                f"among their last {100 * fraction:g}% ({n - late_cutoff(n, fraction)} of {n} "
                "intervals): training may be too short, and the gain depends on where it stops."),
                tuple(str(r["run_id"]) for r in late)))
    return out


def diverged_runs(runs: Sequence[dict[str, Any]], records: Sequence[dict[str, Any]],
                  intervals: Sequence[dict[str, Any]] = ()) -> dict[str, str]:
    """``run_id -> why`` for runs marked ``"diverged"`` or with a non-finite stored loss.

    ``records`` are per-interval metric records, ``intervals`` the store's
    training rows (``train_key``, ``interval``, ``train_loss``, ``val_loss``).

    >>> diverged_runs([{"run_id": "a", "status": "diverged", "train_key": "k"}], [])
    {'a': 'marked diverged by the harness'}
    """
    out: dict[str, str] = {}
    bad_keys: dict[str, str] = {}
    for row in intervals:
        for k in ("train_loss", "val_loss"):
            v = row.get(k)
            if v is not None and not math.isfinite(float(v)):
                bad_keys.setdefault(str(row["train_key"]), f"{k} {v} at interval {row['interval']}")
    for r in records:
        for k in _LOSS_KEYS:
            v = r.get(k)
            if v is not None and not math.isfinite(float(v)):
                out.setdefault(str(r["run_id"]), f"test {k} {v} at interval {r['interval']}")
    for run in runs:
        rid = str(run["run_id"])
        if run.get("status") == "diverged":
            out[rid] = "marked diverged by the harness"
        elif str(run.get("train_key")) in bad_keys and rid not in out:
            out[rid] = f"non-finite {bad_keys[str(run['train_key'])]}"
    return out


def diverged_flag(diverged: dict[str, str]) -> list[Flag]:
    """One flag naming the diverged runs (none when there are none)."""
    if not diverged:
        return []
    listed = "; ".join(f"{rid} ({why})" for rid, why in sorted(diverged.items()))
    return [Flag("diverged", f"{len(diverged)} run{'s' if len(diverged) > 1 else ''} diverged "
                 f"and {'are' if len(diverged) > 1 else 'is'} left out of Table 1: {listed}.",
                 tuple(sorted(diverged)))]


def run_decisions(store: Any, info: dict[str, Any], run: dict[str, Any], interval: int
                  ) -> tuple[np.ndarray, np.ndarray] | None:
    """A run's (prediction, decisions) at one interval from the stored predictions; None when
    the store cannot give them (no utility recorded, a view that needs the training utility)."""
    if not info.get("utility") or not hasattr(store, "probabilities"):
        return None
    utility = Utility(info["utility"])
    training = info.get("inverse_prior_utility")
    q = store.probabilities(str(run["train_key"]), int(interval))
    try:
        return regime_view(str(run["regime"]), q, utility,
                           training_utility=None if training is None else Utility(training))
    except ValueError:
        return None


def one_class_flags(store: Any, info: dict[str, Any], runs: Sequence[dict[str, Any]],
                    best: Sequence[dict[str, Any]]) -> list[Flag]:
    """Regimes that decide one class for every test example at a run's best interval."""
    names = list(info.get("class_names") or [])
    by_id = {str(r["run_id"]): r for r in runs}
    single: dict[str, list[tuple[str, int]]] = {}
    counted: dict[str, int] = {}
    for rec in best:
        run = by_id.get(str(rec["run_id"]))
        if run is None:
            continue
        out = run_decisions(store, info, run, int(rec["interval"]))
        if out is None:
            continue
        g = str(rec["regime"])
        counted[g] = counted.get(g, 0) + 1
        classes = np.unique(out[1])
        if classes.size == 1:
            single.setdefault(g, []).append((str(rec["run_id"]), int(classes[0])))
    flags = []
    for g, hits in single.items():
        cls = sorted({c for _, c in hits})
        shown = ", ".join(repr(names[c]) if c < len(names) else str(c) for c in cls)
        flags.append(Flag("one_class", (
            f"{regime_label(g)} decides one class ({shown}) for every test example in "
            f"{len(hits)} of {counted[g]} runs at their best interval: its utility is that of "
            "a constant decision."), tuple(rid for rid, _ in hits)))
    return flags
