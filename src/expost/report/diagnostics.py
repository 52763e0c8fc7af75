r"""The report's "why": risk decomposition and reliability per regime, from stored predictions.

At each run's best interval (the weighted loss's, as Table 1 picks it) the
stored test-set predictions are read back, put through the regime's view
(:func:`expost.experiments.regimes.regime_view`: the model's output as is for
Weighted Training, :math:`p^u(q)` for Ex Post Weighting) and split by the
learning identity (Proposition 1, :func:`expost.risk_decomposition`) into what
was *learned* and the *remainder* lost to reporting it miscalibrated:
``total = learned + remainder``, where ``total`` is the stored weighted loss.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._learning import risk_decomposition
from .._reliability import reliability_curve
from .._scoring import percent_gain
from .._utility import Utility
from ..experiments.metrics import higher_is_better
from .figures import TITLE_Y, new_figure
from .flags import run_decisions
from .paired import paired_gains, paired_values
from .records import METRIC_LABELS, best_intervals, regime_colour, regime_label

__all__ = ["RiskRow", "gain_over_intervals", "plot_gain", "plot_reliability", "plot_risk",
           "reliability_by_regime", "risk_means", "risk_rows"]


@dataclass(frozen=True)
class RiskRow:
    """One run's risk decomposition at its best interval (Proposition 1)."""

    regime: str
    run_id: str
    interval: int
    total: float
    learned: float
    remainder: float


def _best_views(store: Any, info: dict[str, Any], runs: list[dict[str, Any]],
                records: list[dict[str, Any]]) -> list[tuple[dict[str, Any], np.ndarray]]:
    """(best record, the regime's prediction) per run whose predictions the store gives."""
    by_id = {str(r["run_id"]): r for r in runs}
    out = []
    for rec in best_intervals(records, "weighted_loss"):
        run = by_id.get(str(rec["run_id"]))
        view = None if run is None else run_decisions(store, info, run, int(rec["interval"]))
        if view is not None:
            out.append((rec, view[0]))
    return out


def risk_rows(store: Any, info: dict[str, Any], runs: list[dict[str, Any]],
              records: list[dict[str, Any]]) -> list[RiskRow]:
    """Per run, total = learned + remainder of the weighted risk at its best interval.

    Empty when the store holds no predictions or no test labels (an in-memory
    store, an experiment without a utility).
    """
    if not hasattr(store, "array") or not info.get("utility"):
        return []
    try:
        y = store.array("test_labels")
    except KeyError:
        return []
    utility = Utility(info["utility"])
    out = []
    for rec, p in _best_views(store, info, runs, records):
        try:
            total, learned, remainder = _decomposed(p, y, utility)
        except ValueError:  # too few test rows to cross-fit what is learned
            continue
        out.append(RiskRow(str(rec["regime"]), str(rec["run_id"]), int(rec["interval"]),
                           total, learned, remainder))
    return out


#: Risk decompositions this process has computed, by the digest of their inputs: a run's
#: best-interval predictions do not change once it has finished, so ``expost run``'s report
#: helper computes them while the next training runs (``_data.warm_report``) and the
#: report finds them here. Cleared when full.
_DECOMPOSED: dict[bytes, tuple[float, float, float]] = {}
_DECOMPOSED_LIMIT = 4096


def _decomposed(p: np.ndarray, y: np.ndarray, utility: Utility) -> tuple[float, float, float]:
    """(total, learned, remainder) of :func:`~expost.risk_decomposition` with its defaults
    (deterministic: ``random_state=0``), remembered by the digest of ``p``, ``y`` and U."""
    digest = hashlib.blake2b(digest_size=32)
    for a in (np.asarray(p), np.asarray(y), utility.matrix):
        digest.update(f"{a.dtype.str}{a.shape}".encode())
        digest.update(np.ascontiguousarray(a).tobytes())
    key = digest.digest()
    found = _DECOMPOSED.get(key)
    if found is None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            d = risk_decomposition(p, y, utility=utility)
        for w in caught:  # passed on; and a result that warned is not remembered, so
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)  # warns again
        found = (float(d.total), float(d.learned), float(d.remainder))
        if not caught:
            if len(_DECOMPOSED) >= _DECOMPOSED_LIMIT:
                _DECOMPOSED.clear()
            _DECOMPOSED[key] = found
    return found


def risk_means(rows: list[RiskRow]) -> list[dict[str, Any]]:
    """Per regime (first-seen order): number of runs and the mean total, learned, remainder."""
    groups: dict[str, list[RiskRow]] = {}
    for r in rows:
        groups.setdefault(r.regime, []).append(r)
    return [{"regime": g, "n": len(rs), **{k: float(np.mean([getattr(r, k) for r in rs]))
                                             for k in ("total", "learned", "remainder")}}
            for g, rs in groups.items()]


def plot_risk(rows: list[RiskRow]) -> Any:
    """Stacked bars per regime: mean learned + mean remainder = mean weighted loss."""
    means = risk_means(rows)
    fig = new_figure((6.4, 3.6))
    ax = fig.add_subplot()
    xs = np.arange(len(means))
    learned = [m["learned"] for m in means]
    rest = [m["remainder"] for m in means]
    ax.bar(xs, learned, color=[regime_colour(m["regime"]) for m in means], alpha=0.9,
           label="learned")
    ax.bar(xs, rest, bottom=learned, color="#d0d5dd", hatch="//", edgecolor="#667085",
           label="remainder (miscalibration)")
    for x, m in zip(xs, means, strict=True):
        ax.text(float(x), m["total"], f"{m['total']:.4f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(xs, [regime_label(m["regime"]) for m in means], fontsize=8)
    ax.set_ylabel("Weighted loss (mean over runs)")
    ax.set_title("Risk = learned + remainder (Proposition 1), best interval", y=TITLE_Y)
    ax.legend(frameon=False, fontsize="small")
    ax.grid(True, axis="y", alpha=0.3)
    fig.subplots_adjust(left=0.13, right=0.97, bottom=0.12, top=0.9)
    return fig


def reliability_by_regime(store: Any, info: dict[str, Any], runs: list[dict[str, Any]],
                          records: list[dict[str, Any]], *, n_bins: int = 10
                          ) -> dict[str, Any]:
    """Per regime, the reliability curve of its prediction at each run's best interval,
    runs pooled (binary: the positive class, as netcal reports it; else top label)."""
    if not hasattr(store, "array"):
        return {}
    try:
        y = store.array("test_labels")
    except KeyError:
        return {}
    pooled: dict[str, list[np.ndarray]] = {}
    for rec, p in _best_views(store, info, runs, records):
        pooled.setdefault(str(rec["regime"]), []).append(p)
    out = {}
    for g, ps in pooled.items():
        p = np.concatenate(ps)
        out[g] = reliability_curve(p, np.tile(y, len(ps)), n_bins=n_bins,
                                   kind="positive" if p.shape[1] == 2 else "top_label")
    return out


def plot_reliability(curves: dict[str, Any], *, binary: bool = False) -> Any:
    """One reliability panel per regime: bin accuracy against bin confidence, the diagonal."""
    fig = new_figure((3.0 * max(1, len(curves)) + 0.4, 3.3))
    axes = fig.subplots(1, max(1, len(curves)), squeeze=False)[0]
    for ax, (g, c) in zip(axes, curves.items(), strict=False):
        ax.plot([0, 1], [0, 1], color="#98a2b3", ls="--", lw=0.9)
        ok = c.counts > 0
        ax.plot(c.confidence[ok], c.accuracy[ok], marker="o", ms=3.5, color=regime_colour(g))
        ax.set_title(regime_label(g), fontsize=9, y=TITLE_Y)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("P(positive class)" if binary else "Confidence (top label)", fontsize=8)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("Observed frequency", fontsize=8)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.16, top=0.88, wspace=0.3)
    return fig


def fmt(x: float) -> str:
    """Four decimals, 'nan' for NaN."""
    return "nan" if math.isnan(x) else f"{x:.4f}"


def gain_over_intervals(records: list[dict[str, Any]], baseline: str, treatment: str,
                        metric: str, *, n_boot: int, seed: int, level: float = 0.95
                        ) -> list[dict[str, Any]]:
    """At every interval, the % gain of the mean over seeds and its paired bootstrap interval.

    The same paired bootstrap as Table 1 (:func:`~expost.report.paired.paired_gains`)
    applied to each interval's values instead of each run's best ones.
    """
    by_t: dict[int, list[dict[str, Any]]] = {}
    for r in records:
        if r["regime"] in (baseline, treatment):
            by_t.setdefault(int(r["interval"]), []).append(r)
    out = []
    for t in sorted(by_t):
        recs = by_t[t]
        pg = paired_gains({metric: recs}, baseline, treatment, n_boot=n_boot, seed=seed,
                          level=level)[metric]
        if not pg.seeds:
            continue
        _, b, tr = paired_values(recs, metric, baseline, treatment)
        gain = float(percent_gain(b.mean(), tr.mean(), higher_is_better=higher_is_better(metric)))
        out.append({"interval": t, "epoch": float(np.mean([float(r.get("epoch", t + 1))
                                                           for r in recs])),
                    "gain": gain, "ci": pg.ci, "wins": pg.wins, "n_seeds": pg.n_seeds})
    return out


def plot_gain(curves: dict[str, list[dict[str, Any]]], baseline: str, treatment: str) -> Any:
    """One panel per metric: the % gain at every interval with its paired band, zero marked."""
    fig = new_figure((4.2 * max(1, len(curves)) + 0.6, 3.5))
    axes = fig.subplots(1, max(1, len(curves)), squeeze=False)[0]
    colour = regime_colour(treatment)
    for ax, (m, rows) in zip(axes, curves.items(), strict=False):
        x = [r["epoch"] for r in rows]
        ax.axhline(0.0, color="#667085", lw=0.9)
        ax.plot(x, [r["gain"] for r in rows], color=colour, lw=1.5, label="% gain of the means")
        band = [(xx, r["ci"]) for xx, r in zip(x, rows, strict=True) if r["ci"] is not None]
        if band:
            ax.fill_between([b[0] for b in band], [b[1][0] for b in band],
                            [b[1][1] for b in band], color=colour, alpha=0.2, lw=0,
                            label="paired 95% bootstrap band")
        ax.set_title(METRIC_LABELS[m], fontsize=9, y=TITLE_Y)
        ax.set_xlabel("Training epoch", fontsize=8)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel(f"% gain, {regime_label(treatment)}\nover {regime_label(baseline)}",
                       fontsize=8)
    axes[0].legend(frameon=False, fontsize="x-small")
    fig.subplots_adjust(left=0.12, right=0.98, bottom=0.15, top=0.9, wspace=0.3)
    return fig
