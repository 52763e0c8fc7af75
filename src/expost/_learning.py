r"""What is learned: learned posteriors and the learning identity, loss calibration.

* :func:`learned_posteriors` estimates *what is learned*,
  :math:`Q = \mathbb{P}(Y \mid P)` (Proposition 1, Eq 11), with a calibration map
  of :math:`\log p` (:mod:`expost._scaling`) or histogram binning
  (:mod:`expost._reliability`), cross-fitted so that no row's :math:`Q` is fitted
  on that row.
* :func:`risk_decomposition` splits the learning identity (Proposition 1, Eq 10)
  into what is learned and what is lost to miscalibration, valued with or without a
  utility by the residual learning loss of :mod:`expost._incentives` (Eq 12).
* :func:`loss_calibration_gap` measures loss calibration (Appendix A.5, Eq 28).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._decisions import _weighted_prediction
from ._incentives import _expected_loss, _loss_matrix, _residual
from ._reliability import NORMS, STRATEGIES, _apply_bins, _check_n_bins, _fit_bins
from ._scaling import _apply_affine, _check_reg, _cross_fitted_temperature, _fit_affine
from ._scoring import BASES, _weighted_loss
from ._softmax import _log_probabilities, _shift, _softmax
from ._utility import Utility, as_utility
from ._validation import (
    _error,
    check_choice,
    check_int,
    check_labels,
    check_probabilities,
    check_random_state,
    check_reduction,
    describe,
    reduce,
)

__all__ = ["RiskDecomposition", "learned_posteriors", "loss_calibration_gap", "risk_decomposition"]

METHODS = ("auto", "binning", "temperature", "vector", "matrix")


# ---------------------------------------------------------------- cross-fitting
def _folds(n: int, n_folds: int, rng: np.random.Generator) -> list[NDArray[np.intp]]:
    if n_folds == 1:
        return [np.arange(n)]
    return [np.sort(f) for f in np.array_split(rng.permutation(n), n_folds)]


def _training_rows(n: int, test: NDArray[np.intp], n_folds: int) -> NDArray[np.intp]:
    """The rows a fold's map is fitted on: all the others (all rows when ``n_folds == 1``)."""
    if n_folds == 1:
        return test
    mask = np.ones(n, dtype=bool)
    mask[test] = False
    return np.flatnonzero(mask)


def _check_method(method: Any, n_columns: int, n_classes: int) -> str:
    """One of METHODS that fits ``n_columns`` predictions of ``n_classes``; "auto" resolved."""
    method = check_choice(method, "method", METHODS)
    if method == "auto":
        if n_columns == 2:
            return "binning"
        return "vector" if n_columns == n_classes else "matrix"
    if method == "binning" and n_columns != 2:
        raise ValueError(
            _error("method", "'binning' only for binary predictions (2 columns of `p`; "
                   "use 'temperature', 'vector' or 'matrix' for more)", f"{n_columns} columns")
        )
    if method in ("temperature", "vector") and n_columns != n_classes:
        raise ValueError(
            _error("method", f"'{method}' only when `p` has one column per class ({n_classes}); "
                   "use 'matrix'", f"{n_columns} columns")
        )
    return method


def _calibration_feature(p: NDArray[np.floating], method: str) -> NDArray[np.float64]:
    """What the map sees: p_1 (binning), row-max-shifted log p (temperature) or log p."""
    if method == "binning":
        return p[:, 1].astype(np.float64)
    feature = _log_probabilities(p)
    return _shift(feature) if method == "temperature" else feature


def _learned_posteriors(
    p: NDArray[np.floating],
    y: NDArray[np.intp],
    n_classes: int,
    method: str,
    n_folds: int,
    rng: np.random.Generator,
    n_bins: int | str = "auto",
    strategy: str = "quantile",
    reg: float = 1e-4,
) -> NDArray[np.float64]:
    """Cross-fitted Q: each fold scored by a map fitted on the other folds (checked input)."""
    n = p.shape[0]
    if n_folds > n:
        raise ValueError(_error("n_folds", f"at most the number of rows ({n})", describe(n_folds)))
    out = np.empty((n, n_classes))
    feature = _calibration_feature(p, method)
    t_prev = None
    for test in _folds(n, n_folds, rng):
        train = _training_rows(n, test, n_folds)
        f_tr, y_tr, f_te = feature[train], y[train], feature[test]
        if method == "binning":
            inner, freq = _fit_bins(f_tr, y_tr, n_classes, n_bins, strategy)
            out[test] = _apply_bins(inner, freq, f_te)
        elif method == "temperature":
            t_prev = _cross_fitted_temperature(f_tr, y_tr, t_prev)
            out[test] = _softmax(f_te / t_prev)
        else:
            w, b = _fit_affine(f_tr, y_tr, n_classes, method, reg)
            out[test] = _apply_affine(f_te, w, b, method)
    return out


# ---------------------------------------------------------------- public: what is learned
def learned_posteriors(
    p: ArrayLike,
    y: ArrayLike,
    *,
    method: Literal["auto", "binning", "temperature", "vector", "matrix"] = "auto",
    n_classes: int | None = None,
    n_folds: int = 5,
    random_state: int | np.random.Generator | None = 0,
    n_bins: int | Literal["auto"] = "auto",
    strategy: Literal["uniform", "quantile"] = "quantile",
    reg: float = 1e-4,
) -> NDArray[np.float64]:
    r"""Estimate what is learned, :math:`Q = \mathbb{P}(Y \mid P)` (Proposition 1, Eq 11).

    .. math:: \hat q_y(p) \approx \mathbb{P}(Y = y \mid P = p)

    A calibration map is fitted on evaluation data :math:`(P, Y)` and
    cross-fitted: the rows are split into ``n_folds`` folds and each fold's
    :math:`\hat Q` comes from a map fitted on the other folds, so no row is
    scored by a map that saw its label (``n_folds=1`` fits and predicts in
    sample, which is biased toward overfitting).

    Methods:

    * ``"binning"`` (binary ``p``): histogram binning of :math:`p_1`; a bin's
      :math:`\hat Q` is its class frequencies (an empty bin gets the prior).
      ``n_bins="auto"`` uses ``round(n_train ** (1/3))`` bins, so bias and noise
      both shrink as :math:`n` grows (error of order :math:`n^{-1/3}`).
    * ``"temperature"``: :math:`\operatorname{softmax}(\log p / T)`.
    * ``"vector"``: :math:`\operatorname{softmax}(a \odot \log p + b)`; exact for
      class-weighted predictions (Eq 27).
    * ``"matrix"``: :math:`\operatorname{softmax}(W \log p + b)`, the family of
      Dirichlet calibration (Kull et al. 2019), here with a ridge ``reg`` toward
      the identity map instead of its tuned ODIR penalty. Works when ``p`` is over
      actions and ``n_classes`` differs.
    * ``"auto"``: binning for 2 columns, else vector (matrix if ``p`` is not one
      column per class).

    Parameters
    ----------
    p : array-like of shape (n_samples, n_columns)
        Predictions (over classes, or over actions for a weighted model).
    y : array-like of shape (n_samples,)
        Class labels in ``[0, n_classes)``.
    method : str, default "auto"
    n_classes : int, optional
        Number of classes of ``Q``; default ``p``'s number of columns.
    n_folds : int, default 5
    random_state : int, Generator or None, default 0
        Seeds the fold assignment.
    n_bins : int or "auto", default "auto"
        Bins for ``"binning"``.
    strategy : {"uniform", "quantile"}, default "quantile"
        Bin edges for ``"binning"``: even in [0, 1], or quantiles of the training rows.
    reg : float, default 1e-4
        Ridge toward the identity map for ``"vector"`` and ``"matrix"``.

    Returns
    -------
    ndarray of shape (n_samples, n_classes), float64, rows on the simplex.

    Examples
    --------
    >>> import numpy as np
    >>> p = np.repeat([[0.8, 0.2], [0.3, 0.7]], 10, axis=0)
    >>> y = [0] * 6 + [1] * 4 + [0] * 2 + [1] * 8
    >>> q = learned_posteriors(p, y, method="binning", n_bins=2, strategy="uniform", n_folds=1)
    >>> q[[0, -1]]
    array([[0.6, 0.4],
           [0.2, 0.8]])
    """
    arr, was_1d = check_probabilities(p, "p")
    if was_1d:
        raise ValueError(
            _error("p", "a 2-D array of predictions (one row per sample)", describe(p))
        )
    m = arr.shape[1] if n_classes is None else check_int(n_classes, "n_classes", minimum=2)
    labels = check_labels(y, "y", n_classes=m, n_samples=arr.shape[0])
    resolved = _check_method(method, arr.shape[1], m)
    return _learned_posteriors(
        arr, labels, m, resolved,
        check_int(n_folds, "n_folds", minimum=1), check_random_state(random_state),
        _check_n_bins(n_bins, allow_auto=True), check_choice(strategy, "strategy", STRATEGIES),
        _check_reg(reg),
    )


def _posteriors_or_estimate(
    posteriors: ArrayLike | None,
    arr: NDArray[np.floating],
    labels: NDArray[np.intp],
    n_classes: int,
    method: str,
    n_folds: int,
    random_state: Any,
) -> tuple[NDArray[np.float64], str]:
    """A given ``posteriors`` (checked against ``arr``) or the cross-fitted estimate of Q."""
    if posteriors is not None:
        q, _ = check_probabilities(posteriors, "posteriors", n_columns=n_classes)
        if q.shape[0] != arr.shape[0]:
            raise ValueError(
                _error("posteriors", f"one row per row of `p` ({arr.shape[0]})",
                       f"{q.shape[0]} rows")
            )
        return q.astype(np.float64), "given"
    method = _check_method(method, arr.shape[1], n_classes)
    q = _learned_posteriors(arr, labels, n_classes, method, check_int(n_folds, "n_folds", minimum=1),
                            check_random_state(random_state))
    return q, method


def _predictions_and_labels(
    p: ArrayLike, y: ArrayLike, utility: Utility | None
) -> tuple[NDArray[np.float64], NDArray[np.intp], NDArray[np.float64]]:
    """Checked predictions (over actions with a utility, else classes), labels and U."""
    if utility is None:
        arr, _ = check_probabilities(p, "p")
        u = np.eye(arr.shape[1])
    else:
        arr, _ = check_probabilities(p, "p", n_columns=utility.n_actions, column_name="action")
        u = utility.matrix
    labels = check_labels(y, "y", n_classes=u.shape[1], n_samples=arr.shape[0])
    return arr.astype(np.float64, copy=False), labels, u


@dataclass(frozen=True, eq=False)
class RiskDecomposition:
    r"""The learning identity split into what is learned and what is lost to miscalibration.

    ``total = learned + remainder`` exactly. ``expected`` is
    :math:`\mathbb{E}[\bar\ell^u(P, Q)]`, equal to ``total`` when ``q`` is the true
    :math:`\mathbb{P}(Y \mid P)` (Proposition 1); the gap is the estimation error of ``q``.

    Attributes
    ----------
    total : float
        Empirical risk :math:`\mathbb{E}[\ell^u(P, Y)]`
        (unweighted: :math:`\mathbb{E}[\ell(P, Y)]`).
    learned : float
        :math:`\mathbb{E}[\tilde\ell^u(Q)]`, the risk left after optimal post-processing of
        what is learned (unweighted: :math:`\mathbb{E}[\bar\ell(Q, Q)]`).
    remainder : float
        ``total - learned``: the cost of reporting :math:`P` instead of :math:`p^u(Q)`.
    expected : float
    q : ndarray of shape (n_samples, n_classes)
        The :math:`Q` used (read-only).
    base : str
    method : str
        How ``q`` was obtained ("given" when passed in).
    weighted : bool
        Whether a utility was given.
    """

    total: float
    learned: float
    remainder: float
    expected: float
    q: NDArray[np.float64]
    base: str
    method: str
    weighted: bool


def risk_decomposition(
    p: ArrayLike,
    y: ArrayLike,
    *,
    base: Literal["log", "brier"] = "log",
    utility: Utility | ArrayLike | None = None,
    method: Literal["auto", "binning", "temperature", "vector", "matrix"] = "auto",
    posteriors: ArrayLike | None = None,
    n_folds: int = 5,
    random_state: int | np.random.Generator | None = 0,
) -> RiskDecomposition:
    r"""Split the risk by the learning identity (Proposition 1, Eq 10) into learned and remainder.

    Unweighted:

    .. math:: \mathbb{E}[\ell(P, Y)] = \mathbb{E}[\bar\ell(P, Q)]
              = \underbrace{\mathbb{E}[\bar\ell(Q, Q)]}_{\text{learned}}
              + \underbrace{\mathbb{E}[\bar\ell(P, Q) - \bar\ell(Q, Q)]}_{\text{miscalibration}}

    With a utility the risk is the weighted risk and what is learned is valued by
    the residual learning loss (Eq 12):

    .. math:: \mathbb{E}[\ell^u(P, Y)] = \mathbb{E}[\tilde\ell^u(Q)]
              + \mathbb{E}[\bar\ell^u(P, Q) - \bar\ell^u(p^u(Q), Q)]

    By propriety the remainder is nonnegative up to the estimation error of
    :math:`Q`. Comparing the ``learned`` parts of a weighted model (its :math:`P^u`)
    and an unweighted one (its :math:`P`) under the same utility tells whether
    Weighted Training learned less or only reported differently.

    Parameters
    ----------
    p : array-like of shape (n_samples, n_actions)
        Predictions (over classes when unweighted).
    y : array-like of shape (n_samples,)
    base : {"log", "brier"}
    utility : Utility or array-like, optional
    method : str, default "auto"
        How to estimate :math:`Q` (see :func:`learned_posteriors`); cross-fitted.
    posteriors : array-like of shape (n_samples, n_classes), optional
        A known :math:`Q` (e.g. from a simulation) used instead of an estimate.
    n_folds, random_state
        Cross-fitting of :math:`Q` (see :func:`learned_posteriors`).

    Returns
    -------
    RiskDecomposition

    Examples
    --------
    >>> import numpy as np
    >>> p = np.repeat([[0.8, 0.2], [0.3, 0.7]], 10, axis=0)
    >>> y = [0] * 6 + [1] * 4 + [0] * 2 + [1] * 8
    >>> q = np.repeat([[0.6, 0.4], [0.2, 0.8]], 10, axis=0)  # the exact P(Y | P)
    >>> r = risk_decomposition(p, y, posteriors=q)
    >>> round(r.total, 4), round(r.expected, 4), round(r.learned, 4), round(r.remainder, 4)
    (0.6519, 0.6519, 0.5867, 0.0652)
    """
    loss = check_choice(base, "base", BASES)
    uu = None if utility is None else as_utility(utility)
    arr, labels, u = _predictions_and_labels(p, y, uu)
    q, used = _posteriors_or_estimate(posteriors, arr, labels, u.shape[1], method,
                                      n_folds, random_state)
    total = float(_weighted_loss(arr, labels, u, loss).mean())
    expected = float(_expected_loss(q, _loss_matrix(arr, u, loss)).mean())
    learned = float(_residual(q, u, loss).mean())
    q.setflags(write=False)
    return RiskDecomposition(total, learned, total - learned, expected, q, loss, used,
                             utility is not None)


def loss_calibration_gap(
    p: ArrayLike,
    y: ArrayLike,
    utility: Utility | ArrayLike,
    *,
    method: Literal["auto", "binning", "temperature", "vector", "matrix"] = "auto",
    distance: Literal["l1", "l2", "max"] = "l1",
    posteriors: ArrayLike | None = None,
    n_folds: int = 5,
    random_state: int | np.random.Generator | None = 0,
    reduction: str = "mean",
) -> Any:
    r"""How far predictions are from being loss-calibrated (Appendix A.5, Eq 28).

    Predictions :math:`P` are loss-calibrated when they are the optimal weighted
    report of what they reveal, :math:`p^u(\hat q(P)) = P` (Eq 28), with
    :math:`\hat q(P)` the cross-fitted learned posteriors (:func:`learned_posteriors`).
    This returns the distance

    .. math:: \mathbb{E}\,\lVert P - p^u(\hat q(P)) \rVert

    which is zero (up to estimation error) for a loss-calibrated model, e.g. one
    trained with the weighted loss of ``utility`` that reached its optimum; a
    calibrated *unweighted* model reports :math:`q`, not :math:`p^u(q)`, and has a
    positive gap under any utility that moves :math:`p^u` away from the identity.
    With the identity utility it is a calibration check, :math:`\hat q(P) = P`.
    Eq 28 needs no invertible utility (Lemma 1: level sets of :math:`p^u` are convex).

    Parameters
    ----------
    p : array-like of shape (n_samples, n_actions)
    y : array-like of shape (n_samples,)
    utility : Utility or array-like of shape (n_actions, n_classes)
    method : str, default "auto"
        See :func:`learned_posteriors`.
    distance : {"l1", "l2", "max"}, default "l1"
        Row distance: sum of absolute differences, Euclidean, or largest.
    posteriors : array-like, optional
        A known :math:`\hat q(P)` to use instead of the estimate.
    n_folds, random_state
        Cross-fitting of :math:`\hat q`.
    reduction : {"none", "mean", "sum"}, default "mean"

    Examples
    --------
    >>> import expost, numpy as np
    >>> u = expost.Utility.from_class_weights([1.0, 9.0])
    >>> q = np.repeat([[0.9, 0.1], [0.5, 0.5]], 10, axis=0)
    >>> y = [0] * 9 + [1] + [0] * 5 + [1] * 5
    >>> round(float(loss_calibration_gap(expost.weighted_prediction(q, u), y, u, posteriors=q)), 6)
    0.0
    >>> round(float(loss_calibration_gap(q, y, u, posteriors=q)), 4)  # reports q, not p^u(q)
    0.8
    """
    check_reduction(reduction)
    dist = check_choice(distance, "distance", NORMS)
    uu = as_utility(utility)
    arr, labels, u = _predictions_and_labels(p, y, uu)
    q, _ = _posteriors_or_estimate(posteriors, arr, labels, uu.n_classes, method,
                                   n_folds, random_state)
    diff = np.abs(arr - _weighted_prediction(q, u))
    if dist == "l1":
        out = diff.sum(axis=1)
    elif dist == "l2":
        out = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    else:
        out = diff.max(axis=1)
    return reduce(out, reduction)
