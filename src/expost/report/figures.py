r"""The paper's figures: per-interval curves by regime (Figures 1, 4-9) and Figure 2's incentives.

Library code never touches pyplot's global state: every figure is a
:class:`matplotlib.figure.Figure` drawn with the Agg canvas, returned to the
caller (display it in a notebook, save it, or let it be garbage collected).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .._validation import _error, describe
from .records import (
    METRIC_LABELS,
    X_AXES,
    as_records,
    best_intervals,
    check_metric,
    group_runs,
    regime_colour,
    regime_label,
    regimes_present,
)

__all__ = ["figure_png", "plot_curves", "plot_theory", "save_figure"]

_X_LABELS = {"step": "Training step", "epoch": "Training epoch", "interval": "Training interval"}


#: zlib level 1: saving takes about a sixth less time than at the default level 6 (measured
#: on the default run's figures), files about 4% larger.
_FAST_PNG: dict[str, Any] = {"compress_level": 1}

#: Titles sit just above the axes. Given explicitly, matplotlib does not place them by
#: measuring every tick label first (0.25 s of the default report's 3.1 s of figure
#: saving; these axes have no tick labels on top, so the place, and every pixel, is the same).
TITLE_Y = 1.0

#: Tick steps of the curve plots (times a power of ten): 0.1, 0.2, 0.5, never 0.15 or 0.25.
_STEPS = [1, 2, 5, 10]


def new_figure(figsize: tuple[float, float] = (6.4, 4.2), **kwargs: Any) -> Figure:
    """A Figure on its own Agg canvas (no pyplot, nothing global)."""
    fig = Figure(figsize=figsize, **kwargs)
    FigureCanvasAgg(fig)
    return fig


#: PNGs drawn ahead (``expost run``'s report helper draws the theory figure between
#: trainings), by (the figure's ``expost_key``, dpi): :func:`save_figure` writes the PNG of
#: a figure carrying such a key from here instead of drawing it (the same bytes).
_DRAWN_AHEAD: dict[tuple[Any, int], bytes] = {}


def draw_ahead(fig: Figure, key: Any, *, dpi: int = 130) -> Figure:
    """Mark ``fig`` with ``key`` (hashable, naming everything its pixels depend on) and draw
    its PNG now, which :func:`save_figure` then writes for any figure with that key."""
    fig.expost_key = key  # type: ignore[attr-defined]
    if (key, dpi) not in _DRAWN_AHEAD:
        buf = io.BytesIO()
        fig.savefig(buf, dpi=dpi, format="png", pil_kwargs=_FAST_PNG)
        _DRAWN_AHEAD[(key, dpi)] = buf.getvalue()
    return fig


def drawn_ahead(key: Any, *, dpi: int = 130) -> bool:
    """Whether :func:`draw_ahead` has drawn the figure of ``key`` at ``dpi``."""
    return (key, dpi) in _DRAWN_AHEAD


def save_figure(fig: Figure, path: str | Path, *, pdf: bool = False, dpi: int = 130) -> list[Path]:
    """Save ``fig`` as PNG at ``path`` (suffix forced to ``.png``) and optionally as PDF beside it.

    Returns the paths written.
    """
    from .._atomic import atomic_open
    from ._render import figure_paths

    out = figure_paths(path, pdf)
    key = getattr(fig, "expost_key", None)
    ahead = _DRAWN_AHEAD.get((key, dpi)) if key is not None else None
    with atomic_open(out[0], "wb") as fh:  # whole or not at all
        if ahead is not None:
            fh.write(ahead)
        else:
            fig.savefig(fh, dpi=dpi, format="png", pil_kwargs=_FAST_PNG)
    if pdf:
        with atomic_open(out[1], "wb") as fh:
            fig.savefig(fh, format="pdf")
    return out


def figure_png(fig: Figure, *, dpi: int = 110) -> bytes:
    """The PNG bytes of ``fig`` (for inlining in HTML)."""
    buf = io.BytesIO()
    fig.savefig(buf, dpi=dpi, format="png", pil_kwargs=_FAST_PNG)
    return buf.getvalue()


def _resolve_x(x: str, rows: list[dict[str, Any]]) -> str:
    if not isinstance(x, str) or x not in X_AXES:
        raise ValueError(_error("x", f"one of {X_AXES}", describe(x)))
    if x == "auto":
        epochs = [r.get("epoch") for r in rows]
        integral = all(
            e is not None and not isinstance(e, bool) and float(e).is_integer() for e in epochs
        )
        if integral:
            return "epoch"
        return "step" if all(r.get("step") is not None for r in rows) else "interval"
    missing = [i for i, r in enumerate(rows) if r.get(x) is None]
    if missing:
        raise ValueError(_error("x", "an axis every record has", f"{x!r}, missing from "
                                f"records[{missing[0]}]"))
    return x


def _mean_curves(runs: dict[tuple[str, str], list[dict[str, Any]]], metric: str,
                 xname: str) -> list[dict[str, Any]]:
    """Average the runs of each regime interval by interval (Figure 1) as pseudo-records."""
    acc: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for (regime, _), run in runs.items():
        for r in run:
            acc.setdefault((regime, r["interval"]), []).append((float(r[xname]), r[metric]))
    out = []
    for (regime, interval), pairs in acc.items():
        xs, vs = zip(*pairs, strict=True)
        finite = [v for v in vs if not math.isnan(v)]
        out.append({"run_id": "mean", "regime": regime, "interval": interval,
                    xname: float(np.mean(xs)),
                    metric: float(np.mean(finite)) if finite else math.nan,
                    "n_runs": len(pairs)})
    return out


def plot_curves(
    records: Any,
    metric: str = "weighted_loss",
    *,
    x: str = "auto",
    regimes: Sequence[str] | None = None,
    average: bool = False,
    mark_best: bool = True,
    title: str | None = None,
    ax: Any = None,
    path: str | Path | None = None,
    pdf: bool = False,
    logy: bool = False,
    separate: Sequence[str] = (),
) -> Figure:
    r"""Per-interval test-set curves of every run, coloured by regime, best points marked.

    One line per run (Figures 4-9 for the weighted loss, Figure 5 for the
    classification utility), or with ``average=True`` one line per regime, the
    mean over its runs at each interval (Figure 1). The marked point of a
    curve is its best interval as Table 1 picks it,

    .. math:: t^* = \arg\min_t v_t \;(\text{losses}), \qquad
              t^* = \arg\max_t v_t \;(\text{utilities}),

    found by :func:`~expost.report.best_intervals`; with ``average=True`` a
    dotted line also marks the best value (as in Figure 1).

    Parameters
    ----------
    records : list of mappings (or a pandas DataFrame)
        Per-interval records (``run_id``, ``regime``, ``interval``, ``step``,
        ``epoch`` and the metric).
    metric : str
        A metric of :data:`~expost.experiments.metrics.METRICS`.
    x : {"auto", "step", "epoch", "interval"}
        The x axis; "auto" uses epochs when every interval ends on a whole
        epoch, else optimizer steps.
    regimes : sequence of str, optional
        Regimes to draw (default: all present, in the registry's order).
    average : bool
        Draw each regime's mean curve instead of its runs.
    mark_best : bool
        Mark each curve's best interval.
    title : str, optional
    ax : matplotlib Axes, optional
        Draw into this Axes instead of a new Figure.
    path : str or Path, optional
        Save the figure there as PNG (and as PDF beside it when ``pdf``).
    pdf : bool
    logy : bool
        Logarithmic y axis.
    separate : sequence of str
        Regimes drawn in a panel of their own, to the right, so that their
        scale does not flatten the others (the report puts Unweighted Raw,
        whose weighted loss is several times the others', there). Regimes
        absent from the records are ignored; ignored with ``ax``.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> recs = [{"run_id": f"{g}{s}", "regime": g, "seed": s, "interval": t, "step": 10 * t,
    ...          "epoch": t + 1, "weighted_loss": 1.0 / (t + 1) + 0.05 * t + 0.1 * s}
    ...         for g in ("weighted", "expost") for s in range(2) for t in range(6)]
    >>> fig = plot_curves(recs, "weighted_loss")
    >>> ax = fig.axes[0]
    >>> ax.get_xlabel(), [t.get_text() for t in ax.get_legend().get_texts()]
    ('Training epoch', ['Weighted Training', 'Ex Post Weighting'])
    >>> len(ax.lines)  # 4 runs and their 4 best points
    8
    """
    check_metric(metric)
    rows = as_records(records)
    runs = group_runs(rows, metric)
    if not runs:
        raise ValueError(_error("records", "the intervals of at least one run", "no records"))
    chosen = _chosen_regimes(regimes, regimes_present(rows))
    xname = _resolve_x(x, [r for run in runs.values() for r in run])
    runs = {k: v for k, v in runs.items() if k[0] in chosen}

    own = ax is None
    apart = [g for g in chosen if g in separate] if own else []
    if apart and len(apart) < len(chosen):
        fig = new_figure((10.0, 4.2))
        ax, side = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2, 1]})
        _draw_runs(side, {k: v for k, v in runs.items() if k[0] in apart}, metric, xname,
                   average=average, mark_best=mark_best)
        _style_curve_axes(side, {k: v for k, v in runs.items() if k[0] in apart}, metric,
                          xname, logy=logy, title="on its own scale")
        runs = {k: v for k, v in runs.items() if k[0] not in apart}
        fig.subplots_adjust(left=0.08, right=0.98, bottom=0.12, top=0.92, wspace=0.25)
        own = False
    elif own:
        fig = new_figure()
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    curves = _draw_runs(ax, runs, metric, xname, average=average, mark_best=mark_best)
    _style_curve_axes(ax, curves, metric, xname, logy=logy, title=title)
    if own:  # fixed margins: tight_layout would cost one more full draw per figure
        fig.subplots_adjust(left=0.13, right=0.97, bottom=0.12, top=0.92)
    if path is not None:
        save_figure(fig, path, pdf=pdf)
    return fig


def _draw_runs(ax: Any, runs: dict[Any, list[dict[str, Any]]], metric: str, xname: str, *,
               average: bool, mark_best: bool) -> dict[Any, list[dict[str, Any]]]:
    """Every run's curve (or each regime's mean) into ``ax``, best points marked; the curves."""
    curves = group_runs(_mean_curves(runs, metric, xname), metric) if average else runs
    best = {(str(r["regime"]), str(r["run_id"])): r for r in best_intervals(
        [r for run in curves.values() for r in run], metric)} if mark_best else {}
    seen: set[str] = set()
    for key, run in curves.items():
        _draw_curve(ax, run, metric, xname, best.get(key), first=key[0] not in seen,
                    average=average)
        seen.add(key[0])
    return curves


def _chosen_regimes(regimes: Sequence[str] | str | None, present: list[str]) -> list[str]:
    """The regimes to draw: all present by default, else the ones asked for (each present)."""
    if regimes is None:
        return present
    chosen = [regimes] if isinstance(regimes, str) else list(regimes)
    for i, g in enumerate(chosen):
        if g not in present:
            raise ValueError(_error(f"regimes[{i}]", f"a regime present in the records, one "
                                    f"of {tuple(present)}", describe(g)))
    return chosen


def _draw_curve(ax: Any, run: list[dict[str, Any]], metric: str, xname: str,
                best: dict[str, Any] | None, *, first: bool, average: bool) -> None:
    """One run's (or one regime's mean) curve, labelled once per regime, its best point marked."""
    regime = str(run[0]["regime"])
    colour = regime_colour(regime)
    label = regime_label(regime) if first else None
    if average and label:
        label = f"{label} (mean of {max(r['n_runs'] for r in run)} runs)"
    ax.plot([float(r[xname]) for r in run], [r[metric] for r in run], color=colour,
            lw=1.6 if average else 1.0, alpha=1.0 if average else 0.75, label=label)
    if best is not None and not math.isnan(best[metric]):
        ax.plot([float(best[xname])], [best[metric]], marker="o", ms=6 if average else 4.5,
                color=colour, mec="white", mew=0.6, ls="none", zorder=3)
        if average:
            ax.axhline(best[metric], color=colour, ls=":", lw=1.0)


def _style_curve_axes(ax: Any, curves: dict[Any, list[dict[str, Any]]], metric: str, xname: str,
                      *, logy: bool, title: str | None) -> None:
    ax.set_xlabel(_X_LABELS[xname])
    # at most six ticks an axis (every tick is a handful of artists to build and draw), at
    # round steps; whole epochs or steps only when every interval ends on one
    integral = all(float(r[xname]).is_integer() for run in curves.values() for r in run)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=5, steps=_STEPS, integer=integral))
    ax.yaxis.set_major_locator(MaxNLocator(nbins=5, steps=_STEPS))  # log scale: its own
    ax.set_ylabel(METRIC_LABELS[metric])
    if logy:
        ax.set_yscale("log")
    ax.set_title(title if title is not None else f"{METRIC_LABELS[metric]} on the test set",
                 y=TITLE_Y)
    ax.grid(True, alpha=0.3)
    ax.legend(frameon=False, fontsize="small")


_THEORY_FIELDS = ("q1", "prediction", "marginal", "loss", "reference_prediction",
                  "reference_marginal", "reference_loss", "weight_ratio")


def plot_theory(curves: Any, *, path: str | Path | None = None, pdf: bool = False) -> Figure:
    r"""Figure 2: incentives to choose and to learn, binary case, weighted against unweighted.

    Three panels over the posterior :math:`q_1` of the positive class, from
    :func:`expost.binary_incentive_curves` (weights :math:`w_1 = r\, w_0`,
    :math:`w_0 + w_1 = 1`, footnote 12):

    .. math::
        p^{w}_1(q_1) = \frac{w_1 q_1}{w_1 q_1 + w_0 (1 - q_1)} \;\text{(Eq 16)}, \quad
        \frac{d\tilde\ell^{w}}{dq_1} \;\text{(Eq 18)}, \quad
        \tilde\ell^{w}(q_1) \;\text{(Eq 12)},

    in red for Weighted Training (:math:`w_1 = r\, w_0`) and in blue for Ex Post
    Weighting (:math:`w_1 = w_0`, where the prediction is :math:`q_1` itself).

    Parameters
    ----------
    curves : IncentiveCurves or float
        The output of :func:`expost.binary_incentive_curves`, or a weight ratio
        :math:`r > 0` to compute it with.
    path : str or Path, optional
        Save the figure there as PNG (and as PDF beside it when ``pdf``).
    pdf : bool

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> from expost._incentives import binary_incentive_curves
    >>> fig = plot_theory(binary_incentive_curves(99.0, grid=99))
    >>> [ax.get_title() for ax in fig.axes]
    ['Optimal prediction', 'Marginal learning loss', 'Learning loss']
    """
    from .._incentives import binary_incentive_curves

    if isinstance(curves, (int, float, np.number)) and not isinstance(curves, bool):
        curves = binary_incentive_curves(float(curves))
    missing = [f for f in _THEORY_FIELDS if not hasattr(curves, f)]
    if missing:
        raise TypeError(_error("curves", "the IncentiveCurves of expost.binary_incentive_curves "
                               "(or a weight ratio)", describe(curves)))
    q1 = np.asarray(curves.q1, dtype=np.float64)
    ratio = float(curves.weight_ratio)
    wt_label = f"Weighted Training ($w_1 = {ratio:g}\\, w_2$)"
    ep_label = "Ex Post Weighting ($w_1 = w_2$)"
    panels = [("Optimal prediction", "Prediction $p_1$", curves.prediction,
               curves.reference_prediction),
              ("Marginal learning loss", "Marginal learning loss", curves.marginal,
               curves.reference_marginal),
              ("Learning loss", "Learning loss", curves.loss, curves.reference_loss)]
    fig = new_figure(figsize=(12.0, 3.8))
    axes = fig.subplots(1, 3)
    for ax, (title, ylabel, weighted, reference) in zip(axes, panels, strict=True):
        w = np.where(np.isfinite(weighted), weighted, np.nan)  # +-inf at q1 in {0, 1}
        r = np.where(np.isfinite(reference), reference, np.nan)
        ax.plot(q1, r, color=regime_colour("expost"), lw=1.8, label=ep_label)
        ax.plot(q1, w, color=regime_colour("weighted"), lw=1.8, label=wt_label)
        ax.set_title(title, y=TITLE_Y)
        ax.set_xlabel("Probability $q_1$")
        ax.set_ylabel(ylabel)
        ax.set_xlim(0.0, 1.0)
        ax.grid(True, alpha=0.3)
    axes[0].legend(frameon=False, fontsize="small", loc="lower right")
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.14, top=0.91, wspace=0.28)
    if path is not None:
        save_figure(fig, path, pdf=pdf)
    return fig
