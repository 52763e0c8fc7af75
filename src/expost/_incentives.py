r"""Learning incentives: residual learning loss, its gradient, and Figure 2's binary curves.

Section 2.7 of the paper treats the machine "as if" it first learns a posterior
:math:`q` and then reports the optimal utility-weighted prediction
:math:`p^u(q)` (Theorem 1). What is left of the weighted loss after that
optimal report is the *residual learning loss* (Eq 12); its gradient
(Proposition 2, Eq 13) is the marginal value of learning, i.e. what the
weighted loss pays for moving a posterior.

Everything here is built from the core's :func:`~expost._decisions._weighted_prediction`
(:math:`p^u`) and :func:`~expost._scoring._weighted_loss` (:math:`\ell^u`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._decisions import _weighted_prediction
from ._scoring import BASES, _loss_dtype, _weighted_loss
from ._utility import Utility, as_utility
from ._validation import (
    _error,
    as_float_array,
    check_choice,
    check_probabilities,
    check_reduction,
    describe,
    reduce,
)

__all__ = [
    "IncentiveCurves",
    "binary_incentive_curves",
    "learning_gradient",
    "residual_learning_loss",
]


# ---------------------------------------------------------------- private cores
def _loss_matrix(
    p: NDArray[np.floating], u: NDArray[np.float64], base: str
) -> NDArray[np.floating]:
    """``L[i, y] = l^u(p_i, y)`` for every class ``y`` (Eq 6), one core call per class."""
    n = p.shape[0]
    out = np.empty((n, u.shape[1]), dtype=_loss_dtype(p.dtype, u))
    for y in range(u.shape[1]):
        out[:, y] = _weighted_loss(p, np.full(n, y, dtype=np.intp), u, base)
    return out


def _expected_loss(
    q: NDArray[np.floating], losses: NDArray[np.floating]
) -> NDArray[np.floating]:
    """``sum_y q_y L[i, y]`` with ``0 * inf = 0``: a class of zero probability costs nothing."""
    with np.errstate(invalid="ignore"):
        terms = np.where(q > 0, q * losses, 0.0)
    return terms.sum(axis=1)


def _residual(
    q: NDArray[np.floating], u: NDArray[np.float64], base: str
) -> NDArray[np.floating]:
    """Eq 12: the expected weighted loss of ``q`` at its optimal report ``p^u(q)``."""
    p = _weighted_prediction(q, u)
    return _expected_loss(q, _loss_matrix(p, u, base))


def _gradient(
    q: NDArray[np.floating], u: NDArray[np.float64], base: str
) -> NDArray[np.floating]:
    """Eq 13: the weighted losses of the optimal report, one per class."""
    return _loss_matrix(_weighted_prediction(q, u), u, base)


def _prepare(
    q: ArrayLike, utility: Utility | ArrayLike, base: str
) -> tuple[NDArray[np.floating], bool, Utility, str]:
    base = check_choice(base, "base", BASES)
    u = as_utility(utility)
    arr, was_1d = check_probabilities(q, "q", n_columns=u.n_classes, column_name="class")
    return arr, was_1d, u, base


# ---------------------------------------------------------------- public API
def residual_learning_loss(
    q: ArrayLike,
    utility: Utility | ArrayLike,
    *,
    base: Literal["log", "brier"] = "log",
    reduction: str = "none",
) -> Any:
    r"""Residual learning loss :math:`\tilde\ell^u(q)` of posteriors ``q`` (Eq 12).

    The expected utility-weighted loss of a posterior once it is optimally
    post-processed with Theorem 1:

    .. math:: \tilde\ell^u(q) = \bar\ell^u(p^u(q), q)
              = \sum_y q_y\, \ell^u(p^u(q), y)
              = \min_{p} \langle \ell^u(p, \cdot), q \rangle

    It is concave in ``q`` (Proposition 2). With the log loss it equals
    :math:`(\iota^\top U q)\, H(p^u(q))`; unweighted (``U = I``) it is the entropy
    :math:`H(q)`, the loss that remains after perfect calibration. A class with
    :math:`q_y = 0` contributes nothing (``0 * inf = 0``).

    Parameters
    ----------
    q : array-like of shape (n_samples, n_classes) or (n_classes,)
        Posterior class distributions.
    utility : Utility or array-like of shape (n_actions, n_classes)
    base : {"log", "brier"}
        The strictly proper base loss.
    reduction : {"none", "mean", "sum"}

    Returns
    -------
    ndarray of shape (n_samples,) (a scalar for 1-D ``q``), or the reduced value.

    Examples
    --------
    >>> import expost
    >>> u = expost.Utility.from_class_weights([0.5, 0.5])
    >>> float(residual_learning_loss([0.5, 0.5], u))  # half the entropy, log(2) / 2
    0.34657359
    >>> u99 = expost.Utility.from_class_weights([0.01, 0.99])
    >>> round(float(residual_learning_loss([0.5, 0.5], u99)), 6)  # learning is worth far less
    0.028001
    """
    check_reduction(reduction)
    arr, was_1d, u, checked = _prepare(q, utility, base)
    out = _residual(arr, u.matrix, checked)
    if was_1d and reduction == "none":
        return out[0]
    return reduce(out, reduction)


def learning_gradient(
    q: ArrayLike,
    utility: Utility | ArrayLike,
    *,
    base: Literal["log", "brier"] = "log",
) -> NDArray[np.floating]:
    r"""Gradient of the residual learning loss: the marginal value of learning (Proposition 2, Eq 13).

    .. math:: \frac{\partial \tilde\ell^u}{\partial q_y}(q) = \ell^u(p^u(q), y)

    For class weights (Eq 14) and the log loss this is Eq 17,
    :math:`-w_y \log p^w_y(q)`. The derivative is that of the formula
    :math:`\sum_y q_y \ell^u(p^u(q), y)` on :math:`\mathbb{R}^m_+`, which is
    homogeneous of degree one, so :math:`\langle \nabla, q \rangle = \tilde\ell^u(q)`;
    on the simplex only directions :math:`d` with :math:`\sum_y d_y = 0` matter, and
    :math:`\langle \nabla, d \rangle` is the directional derivative. A component is
    ``inf`` where :math:`p^u_y(q) = 0` (learning about an impossible class is
    infinitely valuable under the log loss).

    Parameters
    ----------
    q : array-like of shape (n_samples, n_classes) or (n_classes,)
    utility : Utility or array-like of shape (n_actions, n_classes)
    base : {"log", "brier"}

    Returns
    -------
    ndarray of shape (n_samples, n_classes) (or (n_classes,)), in q's floating dtype.

    Examples
    --------
    >>> import expost
    >>> u = expost.Utility.from_class_weights([0.01, 0.99])
    >>> g = learning_gradient([0.5, 0.5], u)
    >>> g.round(6)  # Eq 17: -w_y log p^w_y(q), with p^w(q) = (0.01, 0.99)
    array([0.046052, 0.00995 ])
    >>> round(float(g[1] - g[0]), 6)  # Eq 18, the binary marginal learning loss
    -0.036102
    """
    arr, was_1d, u, checked = _prepare(q, utility, base)
    out = _gradient(arr, u.matrix, checked)
    return out[0] if was_1d else out


@dataclass(frozen=True, eq=False)
class IncentiveCurves:
    r"""Figure 2's three panels for a binary problem, weighted and unweighted.

    Class 1 is the positive (emphasised) class; arrays are read-only and indexed
    like ``q1``. ``weights = (w_0, w_1)`` with :math:`w_1 / w_0` = ``weight_ratio`` and
    :math:`w_0 + w_1 = 1` (footnote 12); the reference uses :math:`w_0 = w_1 = 1/2`.

    Attributes
    ----------
    q1 : ndarray
        Posterior probability of the positive class.
    prediction, reference_prediction : ndarray
        Optimal report :math:`p^{w}_1(q_1)` (Eq 16); the reference is :math:`q_1`.
    marginal, reference_marginal : ndarray
        Marginal learning loss :math:`d\tilde\ell^{w}/dq_1` (Eq 18).
    loss, reference_loss : ndarray
        Residual learning loss :math:`\tilde\ell^{w}(q_1)` (Eq 12).
    weight_ratio : float
    weights : tuple of float
    base : str
    """

    q1: NDArray[np.floating]
    prediction: NDArray[np.floating]
    marginal: NDArray[np.floating]
    loss: NDArray[np.floating]
    reference_prediction: NDArray[np.floating]
    reference_marginal: NDArray[np.floating]
    reference_loss: NDArray[np.floating]
    weight_ratio: float
    weights: tuple[float, float]
    base: str


def _check_grid(grid: int | ArrayLike) -> NDArray[np.float64]:
    if isinstance(grid, (int, np.integer)) and not isinstance(grid, bool):
        if grid < 1:
            raise ValueError(_error("grid", "a positive number of points", describe(grid)))
        return np.arange(1, int(grid) + 1, dtype=np.float64) / (int(grid) + 1)
    if isinstance(grid, bool):
        raise TypeError(
            _error("grid", "a number of points or an array of q1 values", describe(grid))
        )
    arr = as_float_array(grid, "grid").astype(np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(_error("grid", "a non-empty 1-D array of q1 values", describe(arr)))
    if not np.isfinite(arr).all() or arr.min() < 0.0 or arr.max() > 1.0:
        raise ValueError(
            _error("grid", "probabilities of the positive class in [0, 1]",
                   f"values from {arr.min():.6g} to {arr.max():.6g}")
        )
    return arr.copy()


def _check_weight_ratio(weight_ratio: Any) -> float:
    if isinstance(weight_ratio, bool) or not isinstance(weight_ratio, (int, float, np.number)):
        raise TypeError(
            _error("weight_ratio", "a positive number w_1 / w_0", describe(weight_ratio))
        )
    ratio = float(weight_ratio)
    if not (np.isfinite(ratio) and ratio > 0):
        raise ValueError(
            _error("weight_ratio", "a positive finite number w_1 / w_0", describe(weight_ratio))
        )
    return ratio


def _binary_panels(
    q: NDArray[np.float64], weights: tuple[float, float], base: str
) -> tuple[NDArray[np.floating], NDArray[np.floating], NDArray[np.floating]]:
    """Figure 2's panels (read-only) for class weights ``(w_0, w_1)``: the optimal report
    p^w_1 (Eq 16), the marginal learning loss (Eq 18) and the learning loss (Eq 12)."""
    u = np.diag(np.asarray(weights, dtype=np.float64))
    pred = _weighted_prediction(q, u)[:, 1]
    grad = _gradient(q, u, base)
    marginal = grad[:, 1] - grad[:, 0]  # +inf at q1 = 0, -inf at q1 = 1
    loss = _residual(q, u, base)
    for a in (pred, marginal, loss):
        a.setflags(write=False)
    return pred, marginal, loss


def binary_incentive_curves(
    weight_ratio: float = 99.0,
    *,
    grid: int | ArrayLike = 199,
    base: Literal["log", "brier"] = "log",
) -> IncentiveCurves:
    r"""Figure 2: optimal prediction, marginal learning loss and learning loss, binary case.

    With class weights :math:`w_1 = r\, w_0`, normalised as in the theory section
    (footnote 12) to :math:`w_0 + w_1 = 1`, on a grid of posteriors :math:`q_1`:

    .. math::
        p^{w}_1(q_1) = \frac{w_1 q_1}{w_1 q_1 + w_0 (1 - q_1)} \quad \text{(Eq 16)}

        \frac{d\tilde\ell^{w}}{dq_1}(q_1) = -w_1 \log p^{w}_1(q_1) + w_0 \log(1 - p^{w}_1(q_1))
        \quad \text{(Eq 18)}

        \tilde\ell^{w}(q_1) = \bar\ell^{w}(p^{w}(q_1), q_1) \quad \text{(Eq 12)}

    together with the unweighted reference :math:`w_0 = w_1` ("Ex Post
    Weighting"), where the prediction is :math:`q_1` itself. Computed with
    :func:`learning_gradient` and :func:`residual_learning_loss`; this function
    only draws the arrays, plotting lives in the report layer.

    Parameters
    ----------
    weight_ratio : float, default 99
        :math:`w_1 / w_0 > 0`; the paper's Figure 2 uses 99.
    grid : int or array-like, default 199
        Either a number ``n`` of evenly spaced interior points ``k / (n + 1)``,
        ``k = 1..n``, or the values of :math:`q_1` in ``[0, 1]`` (at 0 and 1 the
        marginal learning loss is infinite).
    base : {"log", "brier"}, default "log"

    Returns
    -------
    IncentiveCurves

    Examples
    --------
    >>> c = binary_incentive_curves(99.0, grid=[0.1, 0.5])
    >>> c.weights
    (0.01, 0.99)
    >>> c.prediction.round(4), c.reference_prediction
    (array([0.9167, 0.99  ]), array([0.1, 0.5]))
    >>> c.marginal.round(4), c.reference_marginal.round(4)
    (array([ 0.0613, -0.0361]), array([1.0986, 0.    ]))
    """
    checked = check_choice(base, "base", BASES)
    ratio = _check_weight_ratio(weight_ratio)
    q1 = _check_grid(grid)
    q = np.column_stack([1.0 - q1, q1])
    weights = (1.0 / (1.0 + ratio), ratio / (1.0 + ratio))
    pred, marginal, loss = _binary_panels(q, weights, checked)
    ref_pred, ref_marginal, ref_loss = _binary_panels(q, (0.5, 0.5), checked)
    q1.setflags(write=False)
    return IncentiveCurves(
        q1=q1,
        prediction=pred,
        marginal=marginal,
        loss=loss,
        reference_prediction=ref_pred,
        reference_marginal=ref_marginal,
        reference_loss=ref_loss,
        weight_ratio=ratio,
        weights=weights,
        base=checked,
    )
