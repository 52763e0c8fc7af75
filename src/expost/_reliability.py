r"""Calibration error and reliability-diagram data, and histogram binning of a score.

Rows are binned by a confidence in [0, 1]: :func:`calibration_error` (ECE and its
l2 / max variants, top-label, classwise or binary positive-class) and :func:`reliability_curve` share one
binning, and :func:`~expost._learning.learned_posteriors`'s ``"binning"`` method
uses the same bin edges for its class frequencies.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._validation import _error, check_choice, check_int, check_labels, check_probabilities

__all__ = ["ReliabilityCurve", "calibration_error", "reliability_curve"]

STRATEGIES = ("uniform", "quantile")
NORMS = ("l1", "l2", "max")
KINDS = ("top_label", "classwise", "positive")


class ReliabilityCurve(NamedTuple):
    """Reliability-diagram data (:func:`reliability_curve`).

    ``confidence`` and ``accuracy`` are bin means (NaN for an empty bin),
    ``counts`` the rows per bin, ``edges`` the bin edges. Top-label: 1-D, one entry
    per bin (``edges`` one longer); positive (binary) likewise. Classwise: one row per class.
    """

    confidence: NDArray[np.float64]
    accuracy: NDArray[np.float64]
    counts: NDArray[np.intp]
    edges: NDArray[np.float64]


def _edges(conf: NDArray[np.float64], n_bins: int, strategy: str) -> NDArray[np.float64]:
    if strategy == "uniform":
        return _uniform_edges(n_bins).copy()
    return np.quantile(conf, np.linspace(0.0, 1.0, n_bins + 1))


@lru_cache(maxsize=16)
def _uniform_edges(n_bins: int) -> NDArray[np.float64]:
    """``linspace(0, 1, n_bins + 1)``, made once per ``n_bins`` (the harness bins every
    interval's predictions alike); callers get a copy."""
    return np.linspace(0.0, 1.0, n_bins + 1)


def _bin_stats(
    conf: NDArray[np.float64], hit: NDArray[np.float64], edges: NDArray[np.float64]
) -> tuple[NDArray[np.intp], NDArray[np.float64], NDArray[np.float64]]:
    """Counts, summed confidence and summed hits per bin; bins [e_k, e_k+1), the last closed."""
    b = edges.size - 1
    idx = np.searchsorted(edges[1:-1], conf, side="right")
    counts = np.bincount(idx, minlength=b).astype(np.intp)
    sum_conf = np.bincount(idx, weights=conf, minlength=b).astype(np.float64, copy=False)
    sum_hit = np.bincount(idx, weights=hit, minlength=b).astype(np.float64, copy=False)
    return counts, sum_conf, sum_hit


def _binned(
    p: NDArray[np.floating], y: NDArray[np.intp], n_bins: int, strategy: str, kind: str
) -> list[tuple[NDArray[np.intp], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]]:
    """One (counts, sum_conf, sum_hit, edges) per class (classwise) or one (top label)."""
    p64 = p.astype(np.float64, copy=False)
    if kind == "top_label":
        pred = np.argmax(p64, axis=1)
        pairs = [(p64[np.arange(p64.shape[0]), pred], (pred == y).astype(np.float64))]
    elif kind == "positive":
        pairs = [(p64[:, 1], (y == 1).astype(np.float64))]
    else:
        pairs = [(p64[:, k], (y == k).astype(np.float64)) for k in range(p64.shape[1])]
    out = []
    for conf, hit in pairs:
        edges = _edges(conf, n_bins, strategy)
        out.append((*_bin_stats(conf, hit, edges), edges))
    return out


def _fit_bins(
    score: NDArray[np.float64], y: NDArray[np.intp], m: int, n_bins: int | str, strategy: str
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Histogram binning of a scalar score: class frequencies per bin (empty: the prior)."""
    b = max(1, round(score.size ** (1.0 / 3.0))) if n_bins == "auto" else int(n_bins)
    edges = _edges(score, b, strategy)
    inner = edges[1:-1]
    idx = np.searchsorted(inner, score, side="right")
    counts = np.bincount(idx * m + y, minlength=b * m).reshape(b, m).astype(np.float64)
    tot = counts.sum(axis=1, keepdims=True)
    prior = np.bincount(y, minlength=m) / y.size
    with np.errstate(invalid="ignore", divide="ignore"):
        freq = np.where(tot > 0, counts / tot, prior)
    return inner, freq


def _apply_bins(
    inner: NDArray[np.float64], freq: NDArray[np.float64], score: NDArray[np.float64]
) -> NDArray[np.float64]:
    """The class frequencies of the bin of each score (``inner``, ``freq`` from _fit_bins)."""
    return freq[np.searchsorted(inner, score, side="right")]


def _check_n_bins(n_bins: Any, *, allow_auto: bool = False) -> int | str:
    """A positive number of bins (or ``"auto"`` where ``allow_auto``)."""
    if allow_auto:
        if isinstance(n_bins, str) and n_bins == "auto":
            return "auto"
        return check_int(n_bins, "n_bins", minimum=1,
                         expected="a positive integer (or 'auto' for binning)")
    return check_int(n_bins, "n_bins", minimum=1, expected="a positive integer")


def _check_binning_args(
    p: ArrayLike, y: ArrayLike, n_bins: Any, strategy: str, kind: str
) -> tuple[NDArray[np.floating], NDArray[np.intp], int, str, str]:
    arr, _ = check_probabilities(p, "p")
    labels = check_labels(y, "y", n_classes=arr.shape[1], n_samples=arr.shape[0])
    kd = check_choice(kind, "kind", KINDS)
    if kd == "positive" and arr.shape[1] != 2:
        raise ValueError(_error("p", "two columns (a binary problem) for kind='positive'",
                                f"{arr.shape[1]} columns"))
    return (arr, labels, int(_check_n_bins(n_bins)), check_choice(strategy, "strategy", STRATEGIES),
            kd)


def _binned_gap(
    counts: NDArray[np.intp], sum_conf: NDArray[np.float64], sum_hit: NDArray[np.float64],
    norm: str,
) -> float:
    """One binning's calibration error: count-weighted mean |acc - conf| (l1), mean square
    (l2, the root is taken after combining classes) or the largest gap (max)."""
    ne = counts > 0
    gap = np.abs(sum_hit[ne] - sum_conf[ne]) / counts[ne]
    w = counts[ne] / counts.sum()
    if norm == "l1":
        return float(w @ gap)
    if norm == "l2":
        return float(w @ gap**2)
    return float(gap.max())


def calibration_error(
    p: ArrayLike,
    y: ArrayLike,
    *,
    norm: Literal["l1", "l2", "max"] = "l1",
    n_bins: int = 15,
    strategy: Literal["uniform", "quantile"] = "uniform",
    kind: Literal["top_label", "classwise", "positive"] = "top_label",
) -> float:
    r"""Binned calibration error (ECE for ``norm="l1"``; Naeini et al. 2015, Guo et al. 2017).

    Rows are binned by confidence :math:`c_i`; with :math:`B_b` the rows of bin
    :math:`b`, :math:`\text{conf}_b` and :math:`\text{acc}_b` their mean confidence and
    hit rate:

    .. math:: \text{l1} = \sum_b \frac{|B_b|}{n} |\text{acc}_b - \text{conf}_b|,\quad
              \text{l2} = \Big(\sum_b \frac{|B_b|}{n}
              (\text{acc}_b - \text{conf}_b)^2\Big)^{1/2},\quad
              \text{max} = \max_{b: B_b \neq \emptyset} |\text{acc}_b - \text{conf}_b|

    ``kind="top_label"``: :math:`c_i = \max_k p_{ik}`, a hit when
    :math:`\arg\max_k p_{ik} = y_i` (torchmetrics' ``multiclass_calibration_error``,
    which differs only in giving a confidence of exactly 1.0 a bin of its own).
    ``kind="classwise"``: every class :math:`k` separately with :math:`c_i = p_{ik}`, a
    hit when :math:`y_i = k`, then combined over classes: mean (l1), root mean square
    (l2) or max (Kull et al. 2019's classwise-ECE for l1).
    ``kind="positive"`` (binary problems only): :math:`c_i = p_{i1}`, the
    probability of the positive class (column 1), a hit when :math:`y_i = 1`: what
    netcal's ECE and torchmetrics' ``binary_calibration_error`` report for a
    binary problem. It differs from ``top_label`` (whose confidence is
    :math:`\max(p_{i0}, p_{i1}) \ge 0.5`): a prediction of 0.1 for the positive
    class lands in the 0.1 bin here, in the 0.9 bin there.

    Bins are :math:`[e_b, e_{b+1})`, the last one closed; ``strategy="uniform"``
    spaces the edges evenly on [0, 1], ``"quantile"`` puts them at quantiles of the
    confidences (equal-mass bins). This measures classical calibration,
    :math:`\hat q(P) = P`; see :func:`loss_calibration_gap` for Eq 28.

    Parameters
    ----------
    p : array-like of shape (n_samples, n_classes)
    y : array-like of shape (n_samples,)
    norm : {"l1", "l2", "max"}, default "l1"
    n_bins : int, default 15
    strategy : {"uniform", "quantile"}, default "uniform"
    kind : {"top_label", "classwise", "positive"}, default "top_label"
        ``"positive"`` needs two columns.

    Returns
    -------
    float

    Examples
    --------
    >>> p = [[0.9, 0.1], [0.85, 0.15], [0.3, 0.7], [0.35, 0.65]]
    >>> round(calibration_error(p, [0, 1, 1, 1], n_bins=5), 4)  # (|1-0.675| + |0.5-0.875|) / 2
    0.35
    >>> q = [[0.9, 0.1], [0.1, 0.9]]  # both rows class 0: one top-label bin, two positive bins
    >>> calibration_error(q, [0, 0], n_bins=5), calibration_error(q, [0, 0], n_bins=5, kind="positive")
    (0.4, 0.5)
    """
    arr, labels, b, strat, kd = _check_binning_args(p, y, n_bins, strategy, kind)
    return _calibration_error(arr, labels, check_choice(norm, "norm", NORMS), b, strat, kd)


def _calibration_error(arr: NDArray[np.floating], labels: NDArray[np.intp], nrm: str,
                       b: int, strat: str, kd: str) -> float:
    """:func:`calibration_error` of checked arguments (the harness's per-interval route)."""
    vals = np.asarray([_binned_gap(counts, s_conf, s_hit, nrm)
                       for counts, s_conf, s_hit, _ in _binned(arr, labels, b, strat, kd)])
    if nrm == "l1":
        return float(vals.mean())
    if nrm == "l2":
        return float(np.sqrt(vals.mean()))
    return float(vals.max())


def reliability_curve(
    p: ArrayLike,
    y: ArrayLike,
    *,
    n_bins: int = 15,
    strategy: Literal["uniform", "quantile"] = "uniform",
    kind: Literal["top_label", "classwise", "positive"] = "top_label",
) -> ReliabilityCurve:
    r"""Data for a reliability diagram: per-bin mean confidence, accuracy and count.

    .. math:: \text{conf}_b = \frac{1}{|B_b|}\sum_{i \in B_b} c_i, \qquad
              \text{acc}_b = \frac{1}{|B_b|}\sum_{i \in B_b} 1\{\text{hit}_i\}

    Same binning as :func:`calibration_error` (which it is consistent with:
    ``sum(counts / n * |accuracy - confidence|)`` over non-empty bins is the
    top-label l1 error). Empty bins have NaN confidence and accuracy.

    Parameters
    ----------
    p : array-like of shape (n_samples, n_classes)
    y : array-like of shape (n_samples,)
    n_bins : int, default 15
    strategy : {"uniform", "quantile"}, default "uniform"
    kind : {"top_label", "classwise", "positive"}, default "top_label"
        Classwise returns arrays with one row per class; positive (binary only)
        bins the positive class's probability against its frequency.

    Returns
    -------
    ReliabilityCurve
        ``(confidence, accuracy, counts, edges)``.

    Examples
    --------
    >>> c = reliability_curve([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6]],
    ...                       [0, 1, 1, 1], n_bins=2)
    >>> c.confidence, c.accuracy, c.counts
    (array([ nan, 0.75]), array([ nan, 0.75]), array([0, 4]))
    """
    arr, labels, b, strat, kd = _check_binning_args(p, y, n_bins, strategy, kind)
    conf, acc, cnt, edg = [], [], [], []
    for counts, s_conf, s_hit, edges in _binned(arr, labels, b, strat, kd):
        with np.errstate(invalid="ignore", divide="ignore"):
            conf.append(np.where(counts > 0, s_conf / counts, np.nan))
            acc.append(np.where(counts > 0, s_hit / counts, np.nan))
        cnt.append(counts.astype(np.intp))
        edg.append(edges)
    if kd != "classwise":
        return ReliabilityCurve(conf[0], acc[0], cnt[0], edg[0])
    return ReliabilityCurve(np.stack(conf), np.stack(acc), np.stack(cnt), np.stack(edg))
