r"""Per-sample losses, the utility-weighted loss, classification utility and alignment gains.

Every scoring function returns per-sample values (``reduction="none"``, the
default) or their mean or sum; the caller chooses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._batched_metrics import batched_metrics, weighted_losses
from ._log_ratios import _xlogy_sum
from ._utility import Utility, as_utility, is_diagonal_matrix
from ._validation import (
    _error,
    as_float_array,
    check_choice,
    check_labels,
    check_number,
    check_probabilities,
    check_reduction,
    describe,
    reduce,
)

__all__ = [
    "AlignmentGain",
    "brier_loss",
    "classification_utility",
    "cost_vector_weights",
    "external_alignment_gain",
    "internal_alignment_gain",
    "log_loss",
    "percent_gain",
    "weighted_loss",
    "zhou_liu_weights",
]

BASES = ("log", "brier")


# ---------------------------------------------------------------- private cores
def _log_loss(p: NDArray[np.floating], y: NDArray[np.intp]) -> NDArray[np.floating]:
    with np.errstate(divide="ignore"):
        return -np.log(p[np.arange(p.shape[0]), y])


def _brier_loss(p: NDArray[np.floating], y: NDArray[np.intp]) -> NDArray[np.floating]:
    # sum_k (p_k - 1{k=y})^2 on the difference itself: no cancellation near p = e_y
    d = p.copy()
    d[np.arange(p.shape[0]), y] -= 1.0
    return np.einsum("ij,ij->i", d, d)


def _loss_dtype(dtype: np.dtype[Any], u: NDArray[np.float64]) -> np.dtype[Any]:
    """The dtype weighted losses of ``dtype`` probabilities are computed and returned in:
    ``dtype``, or float64 where U has an entry beyond its range (1e39 cast to float32 is
    inf, and inf times a zero loss made NaN)."""
    dtype = np.dtype(dtype)
    if dtype.itemsize < 8 and u.size and float(np.abs(u).max()) > float(np.finfo(dtype).max):
        return np.dtype(np.float64)
    return dtype


def _weighted_loss(
    p: NDArray[np.floating], y: NDArray[np.intp], u: NDArray[np.float64], base: str
) -> NDArray[np.floating]:
    """l^u(p, y) = sum_a l(p, a) u(a, y) for p over actions, y a class (Eq 6)."""
    p = p.astype(_loss_dtype(p.dtype, u), copy=False)
    if is_diagonal_matrix(u):  # Eq 15 (log) / class-weighted Brier: w_y l(p, y)
        w = np.diagonal(u).astype(p.dtype)[y]
        return w * (_log_loss(p, y) if base == "log" else _brier_loss(p, y))
    cols = u.T.astype(p.dtype)[y]  # (n, n_actions): u(., y_i)
    if base == "log":  # Eq 24, doubly-weighted cross-entropy; 0 * log 0 = 0
        with np.errstate(divide="ignore", invalid="ignore"):
            return -_xlogy_sum(cols, np.log(p))
    # Brier (footnote 19): sum_a u(a,y) (||p||^2 + 1 - 2 p_a)
    sq = np.einsum("ij,ij->i", p, p)
    return cols.sum(axis=1) * (sq + 1.0) - 2.0 * np.einsum("ij,ij->i", cols, p)


def _classification_utility(
    actions: NDArray[np.intp], y: NDArray[np.intp], u: NDArray[np.float64]
) -> NDArray[np.float64]:
    return u[actions, y]


# ---------------------------------------------------------------- public losses
def _per_sample(kernel: Any, p: ArrayLike, y: ArrayLike, reduction: str) -> Any:
    """Check ``p`` (rows on the simplex) and ``y``, apply the per-sample ``kernel``, reduce."""
    check_reduction(reduction)
    arr, _ = check_probabilities(p, "p")
    labels = check_labels(y, "y", n_classes=arr.shape[1], n_samples=arr.shape[0])
    return reduce(kernel(arr, labels), reduction)


def log_loss(p: ArrayLike, y: ArrayLike, *, reduction: str = "none") -> Any:
    r"""Log loss :math:`\ell(p, y) = -\log p_y` per sample (Section 2.4).

    A zero probability on the true class gives ``inf`` (no clipping).

    >>> log_loss([[0.5, 0.5], [0.9, 0.1]], [0, 0])
    array([0.69314718, 0.10536052])
    """
    return _per_sample(_log_loss, p, y, reduction)


def brier_loss(p: ArrayLike, y: ArrayLike, *, reduction: str = "none") -> Any:
    r"""Multi-class Brier score :math:`\ell(p, y) = \sum_k (p_k - 1\{k = y\})^2` per sample.

    Summed over classes (range [0, 2]), not averaged.

    >>> brier_loss([[0.5, 0.5], [1.0, 0.0]], [0, 1])
    array([0.5, 2. ])
    """
    return _per_sample(_brier_loss, p, y, reduction)


def weighted_loss(
    p: ArrayLike,
    y: ArrayLike,
    utility: Utility | ArrayLike,
    *,
    base: Literal["log", "brier"] = "log",
    reduction: str = "none",
) -> Any:
    r"""The utility-weighted loss :math:`\ell^u(p, y)` (Eq 6).

    .. math:: \ell^u(p, y) = \langle \ell(p, \cdot), u(\cdot, y) \rangle = \sum_a u(a, y)\, \ell(p, a)

    With the log loss this is the doubly-weighted cross-entropy (Eq 24),
    :math:`-\langle \log p, u(\cdot, y)\rangle`; for class weights it is
    :math:`-w_y \log p_y` (Eq 15). ``reduction="mean"`` is the plain sample mean,
    the paper's objective (not a mean weighted by :math:`w_y`).

    Parameters
    ----------
    p : array-like of shape (n_samples, n_actions)
        Predictions over actions (for classification, actions are classes).
    y : array-like of shape (n_samples,)
        True class indices in ``[0, n_classes)``.
    utility : Utility or array-like of shape (n_actions, n_classes)
    base : {"log", "brier"}
        The strictly proper base loss.
    reduction : {"none", "mean", "sum"}

    Examples
    --------
    >>> import expost
    >>> u = expost.Utility.from_class_weights([1.0, 99.0])
    >>> weighted_loss([[0.5, 0.5]], [1], u)
    array([68.62157088])
    """
    check_reduction(reduction)
    check_choice(base, "base", BASES)
    uu = as_utility(utility)
    arr, _ = check_probabilities(p, "p", n_columns=uu.n_actions, column_name="action")
    labels = check_labels(y, "y", n_classes=uu.n_classes, n_samples=arr.shape[0])
    return reduce(_weighted_loss(arr, labels, uu.matrix, base), reduction)


def classification_utility(
    actions: ArrayLike, y: ArrayLike, utility: Utility | ArrayLike, *, reduction: str = "none"
) -> Any:
    r"""Realised utility :math:`u(a_i, y_i)` of decisions (Eq 20's classification utility).

    The mean (``reduction="mean"``) is the *classification utility* of Table 1;
    use the same normalised utility that defines the weighted loss.

    >>> import expost
    >>> classification_utility([1, 0], [1, 1], expost.Utility.from_class_weights([1, 99]))
    array([99.,  0.])
    """
    check_reduction(reduction)
    uu = as_utility(utility)
    a = check_labels(actions, "actions", n_classes=uu.n_actions)
    labels = check_labels(y, "y", n_classes=uu.n_classes, n_samples=a.shape[0])
    return reduce(_classification_utility(a, labels, uu.matrix), reduction)


# ---------------------------------------------------------------- alignment (Eq 19, 20)
# Both gains are computed by the metric engine the harness and `expost evaluate` use.
def _float64(p: NDArray[np.floating]) -> NDArray[np.float64]:
    return np.asarray(p, dtype=np.float64)


@dataclass(frozen=True)
class AlignmentGain:
    """Weighted Training against Ex Post Weighting on one metric.

    ``gain`` is positive when Ex Post Weighting is better (lower loss, higher
    utility); ``pct_gain`` is Table 1's "% Gain", ``100 * gain / |weighted_training|``.
    """

    metric: str
    weighted_training: float
    ex_post: float
    gain: float
    pct_gain: float


def percent_gain(weighted_training: Any, ex_post: Any, *, higher_is_better: bool) -> Any:
    r"""Table 1's % gain of Ex Post Weighting over Weighted Training.

    .. math:: 100 \cdot \frac{EPW - WT}{|WT|}, \text{ sign flipped for losses}

    Works elementwise on arrays (Table 1 computes it row by row; footnote 15: (0.749 -
    0.805) / 0.805 for the loss, sign flipped).

    >>> round(float(percent_gain(0.805, 0.749, higher_is_better=False)), 2)
    6.96
    """
    wt = np.asarray(weighted_training, dtype=np.float64)
    ep = np.asarray(ex_post, dtype=np.float64)
    diff = ep - wt if higher_is_better else wt - ep
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 100.0 * diff / np.abs(wt)
    return out[()] if out.ndim == 0 else out


def _alignment_inputs(p_weighted: ArrayLike, p_unweighted: ArrayLike, y: ArrayLike,
                      utility: Utility | ArrayLike) -> tuple[Utility, Any, Any, Any]:
    """The checked inputs of the alignment gains (Eq 19-20): utility, both predictions, labels."""
    uu = as_utility(utility)
    pw, _ = check_probabilities(
        p_weighted, "p_weighted", n_columns=uu.n_actions, column_name="action"
    )
    pu, _ = check_probabilities(p_unweighted, "p_unweighted", n_columns=uu.n_classes)
    if pw.shape[0] != pu.shape[0]:
        raise ValueError(
            _error("p_unweighted", f"{pw.shape[0]} rows like `p_weighted`", f"{pu.shape[0]} rows")
        )
    labels = check_labels(y, "y", n_classes=uu.n_classes, n_samples=pw.shape[0])
    return uu, pw, pu, labels


def internal_alignment_gain(
    p_weighted: ArrayLike,
    p_unweighted: ArrayLike,
    y: ArrayLike,
    utility: Utility | ArrayLike,
    *,
    base: Literal["log", "brier"] = "log",
) -> AlignmentGain:
    r"""Internal alignment (Eq 19): weighted loss of Weighted Training vs Ex Post Weighting.

    .. math:: \mathbb{E}[\ell^u(p^u(P), Y)] \;\text{vs}\; \mathbb{E}[\ell^u(P^u, Y)]

    ``p_weighted`` are the predictions :math:`P^u` of a model trained with the
    weighted loss, taken as they are; ``p_unweighted`` are the predictions
    :math:`P` of a model trained unweighted, adjusted ex post with Theorem 1.

    >>> import expost
    >>> u = expost.Utility.from_class_weights([1.0, 9.0])
    >>> g = internal_alignment_gain([[0.2, 0.8]], [[0.5, 0.5]], [1], u)
    >>> g.metric, round(g.weighted_training, 4), round(g.ex_post, 4)
    ('weighted_loss', 2.0083, 0.9482)
    """
    check_choice(base, "base", BASES)
    uu, pw, pu, labels = _alignment_inputs(p_weighted, p_unweighted, y, utility)
    u = uu.matrix[None]  # the metric engine's weighted loss, as the harness reports it
    wt = float(weighted_losses(_float64(pw), labels, u, view="as_is", base=base)[0])
    ep = float(weighted_losses(_float64(pu), labels, u, view="ex_post", base=base)[0])
    return AlignmentGain(
        "weighted_loss", wt, ep, wt - ep, float(percent_gain(wt, ep, higher_is_better=False))
    )


def external_alignment_gain(
    p_weighted: ArrayLike,
    p_unweighted: ArrayLike,
    y: ArrayLike,
    utility: Utility | ArrayLike,
) -> AlignmentGain:
    r"""External alignment (Eq 20): classification utility of the two regimes.

    .. math:: \mathbb{E}[u(\delta(p^u(P)), Y)] \;\text{vs}\; \mathbb{E}[u(\delta(P^u), Y)]

    Weighted Training decides by :math:`\arg\max_a P^u_a` (Eq 9); Ex Post
    Weighting decides by the expected-utility rule on :math:`P` (Eq 5).

    >>> import expost
    >>> u = expost.Utility.from_class_weights([1.0, 9.0])
    >>> external_alignment_gain([[0.6, 0.4]], [[0.5, 0.5]], [1], u).gain
    9.0
    """
    uu, pw, pu, labels = _alignment_inputs(p_weighted, p_unweighted, y, utility)
    u, recall_of = uu.matrix[None], np.zeros(1, dtype=np.intp)  # through the metric engine
    wt, ep = (float(batched_metrics(_float64(p), labels, u, view=view, recall_of=recall_of)
                    ["classification_utility"][0])
              for p, view in ((pw, "as_is"), (pu, "ex_post")))
    return AlignmentGain(
        "classification_utility",
        wt,
        ep,
        ep - wt,
        float(percent_gain(wt, ep, higher_is_better=True)),
    )


# ---------------------------------------------------------------- Appendix A comparators
def _check_costs(costs: ArrayLike) -> NDArray[np.float64]:
    c = as_float_array(costs, "costs").astype(np.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1] or c.shape[0] < 2:
        raise ValueError(
            _error("costs", "a square cost matrix c[predicted, true] of size >= 2", describe(c))
        )
    if not np.isfinite(c).all():
        raise ValueError(_error("costs", "finite", "a NaN or inf entry"))
    if (c < 0).any():
        a, y = np.argwhere(c < 0)[0]
        raise ValueError(_error("costs", "nonnegative", f"{c[a, y]:.6g} at ({a}, {y})"))
    return c


def cost_vector_weights(costs: ArrayLike) -> NDArray[np.float64]:
    r"""Breiman et al.'s reduction of a cost matrix to class weights (Appendix A.2).

    .. math:: w_y = c(y) = \sum_{a} c(a, y)

    The resulting incentives differ from the utility-weighted loss:
    :math:`\ell(p, y) \sum_a c(a, y) \ne \sum_a \ell(p, a) c(a, y)`.

    >>> cost_vector_weights([[0, 1, 1], [5, 0, 1], [2, 2, 0]])
    array([7., 3., 2.])
    """
    c = _check_costs(costs)
    w = c.sum(axis=0)
    if (w <= 0).any():
        j = int(np.flatnonzero(w <= 0)[0])
        raise ValueError(
            _error("costs", "a positive total cost for every true class", f"0 for class {j}")
        )
    return w


def zhou_liu_weights(costs: ArrayLike, *, rtol: float = 1e-8) -> NDArray[np.float64]:
    r"""Zhou and Liu's (2010) class weights for a cost matrix (Appendix A.2).

    Solves :math:`w_y / w_{y'} = c(y', y) / c(y, y')` for all pairs, i.e. the
    homogeneous system :math:`w_y c(y, y') - w_{y'} c(y', y) = 0`. A positive
    solution exists for every binary matrix but for a multi-class one only when
    the system has rank :math:`m - 1`; otherwise a ValueError says so (Zhou and
    Liu then decompose into binary problems). Weights are scaled to sum to m.

    >>> zhou_liu_weights([[0, 1], [4, 0]])
    array([1.6, 0.4])
    """
    c = _check_costs(costs)
    rtol = check_number(rtol, "rtol", minimum=0.0, strict=False)
    m = c.shape[0]
    off = ~np.eye(m, dtype=bool)
    if (c[off] <= 0).any():
        raise ValueError(
            _error("costs", "positive misclassification costs off the diagonal", "a zero")
        )
    rows = []
    for i in range(m):
        for j in range(i + 1, m):
            r = np.zeros(m)
            r[i], r[j] = c[i, j], -c[j, i]
            rows.append(r)
    a = np.asarray(rows)
    vt = np.linalg.svd(a)[2]
    w = vt[-1]
    residual = np.linalg.norm(a @ w) / np.linalg.norm(a)
    if residual > rtol or not (np.all(w > 0) or np.all(w < 0)):
        raise ValueError(
            "`costs`: no Zhou-Liu class weights exist for this cost matrix (the pairwise "
            f"ratio constraints are inconsistent, relative residual {residual:.2e}); "
            "decompose into binary problems, or use Utility.from_costs with the "
            "utility-weighted loss, which always exists."
        )
    w = np.abs(w)
    return w * (m / w.sum())
