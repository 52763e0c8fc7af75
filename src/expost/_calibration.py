r"""Empirical calibration: what is learned, the learning identity, loss calibration.

* Calibration maps fitted on evaluation data: temperature and vector scaling
  of logits (Guo et al. 2017), and their use on :math:`\log p` to estimate
  *what is learned*, :math:`Q = \mathbb{P}(Y \mid P)` (Proposition 1, Eq 11),
  cross-fitted so that no row's :math:`Q` is fitted on that row.
* The learning identity (Proposition 1, Eq 10) split into what is learned and
  what is lost to miscalibration, with or without a utility (Eq 12).
* Loss calibration (Appendix A.5, Eq 28) and the classical calibration error
  and reliability diagram data.

Numerical stability: every softmax and log-softmax subtracts the row maximum
before exponentiating; probabilities are never recovered by logging a softmax.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize, minimize_scalar

from ._decisions import _weighted_prediction
from ._incentives import _expected_loss, _loss_matrix, _residual
from ._scoring import BASES, _weighted_loss
from ._utility import Utility, as_utility
from ._validation import (
    _error,
    as_float_array,
    check_choice,
    check_labels,
    check_probabilities,
    check_reduction,
    describe,
    reduce,
)

__all__ = [
    "ReliabilityCurve",
    "RiskDecomposition",
    "apply_scaling",
    "calibration_error",
    "fit_temperature",
    "fit_vector_scaling",
    "learned_posteriors",
    "loss_calibration_gap",
    "reliability_curve",
    "risk_decomposition",
]

METHODS = ("auto", "binning", "temperature", "vector", "matrix")
STRATEGIES = ("uniform", "quantile")
NORMS = ("l1", "l2", "max")
KINDS = ("top_label", "classwise")
_TINY = float(np.finfo(np.float64).tiny)


# ---------------------------------------------------------------- input checks
def _check_logits(logits: ArrayLike, name: str = "logits") -> NDArray[np.float64]:
    arr = as_float_array(logits, name)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] < 2:
        raise ValueError(
            _error(name, "a 2-D float array of logits of shape (n_samples, n_classes >= 2)",
                   describe(arr))
        )
    if not np.isfinite(arr).all():
        i, j = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(
            _error(name, "finite logits (no NaN or inf)", f"{arr[i, j]} at row {i}, column {j}")
        )
    return arr.astype(np.float64, copy=False)


def _check_positive_int(value: Any, name: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(_error(name, f"an integer >= {minimum}", describe(value)))
    return int(value)


def _check_reg(reg: Any) -> float:
    if isinstance(reg, bool) or not isinstance(reg, (int, float, np.number)) or not (
        np.isfinite(reg) and reg >= 0
    ):
        raise ValueError(_error("reg", "a finite number >= 0", describe(reg)))
    return float(reg)


def _check_n_bins(n_bins: Any) -> int | str:
    if isinstance(n_bins, str) and n_bins == "auto":
        return "auto"
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(
            _error("n_bins", "a positive integer (or 'auto' for binning)", describe(n_bins))
        )
    return int(n_bins)


def _check_rng(random_state: Any) -> np.random.Generator:
    if random_state is None or isinstance(random_state, (np.random.Generator, int, np.integer)):
        if isinstance(random_state, bool):
            raise TypeError(
                _error("random_state", "None, an integer seed or a Generator", "a bool")
            )
        return np.random.default_rng(random_state)
    raise TypeError(
        _error("random_state", "None, an integer seed or a numpy Generator", describe(random_state))
    )


# ---------------------------------------------------------------- softmax cores
def _shift(z: NDArray[np.float64]) -> NDArray[np.float64]:
    """Subtract the row maximum: every entry <= 0, the largest exactly 0 (stable exp)."""
    return z - z.max(axis=1, keepdims=True)


def _softmax(z: NDArray[np.float64]) -> NDArray[np.float64]:
    e = np.exp(_shift(z))
    e /= e.sum(axis=1, keepdims=True)
    return e


def _log_probabilities(p: NDArray[np.floating]) -> NDArray[np.float64]:
    """``log p`` as calibration features; an exact zero becomes log(tiny) ~ -708, not -inf."""
    return np.log(np.maximum(p.astype(np.float64, copy=False), _TINY))


# ---------------------------------------------------------------- calibration maps
def _fit_temperature_shifted(
    s: NDArray[np.float64], y: NDArray[np.intp], bounds: tuple[float, float]
) -> tuple[float, bool]:
    """Minimise the NLL of softmax(z / T) over log T; ``s`` are row-max-shifted logits.

    With ``beta = 1 / T`` and ``s <= 0`` (row max 0), ``log sum exp(beta s) >= 0`` cannot
    overflow and ``beta * max(z)`` cancels: NLL(beta) = mean(lse(beta s)) - beta mean(s_y).
    """
    sy = float(s[np.arange(s.shape[0]), y].mean())
    buf = np.empty_like(s)  # one scratch array for every evaluation

    def nll(log_t: float) -> float:
        beta = np.exp(-log_t)
        np.multiply(s, beta, out=buf)
        np.exp(buf, out=buf)
        return float(np.log(buf.sum(axis=1)).mean() - beta * sy)

    lo, hi = np.log(bounds[0]), np.log(bounds[1])
    # xatol in log T: T to a relative 1e-5, far below any sampling error.
    res = minimize_scalar(nll, bounds=(lo, hi), method="bounded", options={"xatol": 1e-5})
    x, fx = float(res.x), float(res.fun)
    if min(x - lo, hi - x) < 1e-4 * (hi - lo):
        return float(np.exp(x)), True
    # Separable data: the NLL falls toward 0 as T -> 0 and is flat to rounding before the
    # bound, where the search may stop early. Near an end, an end at least as good wins.
    near = 0.1 * (hi - lo)
    for end in (lo, hi):
        if abs(x - end) < near and nll(end) <= fx:
            return float(np.exp(end)), True
    return float(np.exp(x)), False


def _cross_fitted_temperature(
    s: NDArray[np.float64], y: NDArray[np.intp], t_prev: float | None
) -> float:
    """Temperature of one training part; later folds search near the previous fold's T.

    Training parts overlap by (K - 2) / (K - 1), so their temperatures are close; a search
    in [T / 1.25, 1.25 T] needs fewer evaluations. An optimum at an edge of that window is
    refitted on the full interval, so the result is the same minimiser.
    """
    full = (1e-2, 1e2)
    if t_prev is not None:
        window = (max(full[0], t_prev / 1.25), min(full[1], t_prev * 1.25))
        t, at_edge = _fit_temperature_shifted(s, y, window)
        if not at_edge:
            return t
    return _fit_temperature_shifted(s, y, full)[0]


def _fit_affine(
    z: NDArray[np.float64], y: NDArray[np.intp], n_classes: int, kind: str, reg: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Fit softmax(W z + b): W diagonal ("vector", Newton) or full ("matrix", L-BFGS)."""
    if kind == "vector":
        return _fit_vector(z, y, reg)
    return _fit_matrix(z, y, n_classes, reg)


def _fit_vector(
    z: NDArray[np.float64], y: NDArray[np.intp], reg: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Vector scaling softmax(a * z + b) by damped Newton on the convex mean NLL.

    Objective: mean NLL + reg / 2 (||a - 1||^2 + ||b||^2). With s the fitted
    probabilities, r = s - onehot(y) and x = z, the gradient is (mean r x, mean r) and the
    Hessian blocks are mean(diag(s) - s s') weighted by x x', x and 1. Newton is affine
    invariant, so the scale of the logits does not matter; a step is halved until the
    objective falls enough (Armijo). The Hessian is singular along b + const when
    reg = 0 (softmax ignores the constant): the minimum-norm step (lstsq) keeps mean(b) = 0.
    """
    n, m = z.shape
    rows = np.arange(n)
    a, b = np.ones(m), np.zeros(m)

    def value(a: NDArray[np.float64], b: NDArray[np.float64]) -> float:
        sh = _shift(z * a + b)
        nll = float((np.log(np.exp(sh).sum(axis=1)) - sh[rows, y]).mean())
        return nll + 0.5 * reg * (float((a - 1) @ (a - 1)) + float(b @ b))

    f = value(a, b)
    for _ in range(100):
        s = _softmax(z * a + b)
        r = s.copy()
        r[rows, y] -= 1.0
        g = np.concatenate([(r * z).sum(axis=0) / n + reg * (a - 1), r.sum(axis=0) / n + reg * b])
        xs = z * s
        h_bb = np.diag(s.sum(axis=0)) - s.T @ s
        h_ab = np.diag(xs.sum(axis=0)) - xs.T @ s
        h_aa = np.diag((z * xs).sum(axis=0)) - xs.T @ xs
        h = np.block([[h_aa, h_ab], [h_ab.T, h_bb]]) / n + reg * np.eye(2 * m)
        step = np.linalg.lstsq(h, -g, rcond=None)[0]
        decrement = -float(g @ step)  # Newton decrement squared: ~2 (f - min f)
        if not decrement > 1e-15:
            break
        t = 1.0
        while True:
            a_new, b_new = a + t * step[:m], b + t * step[m:]
            f_new = value(a_new, b_new)
            if f_new <= f - 0.25 * t * decrement or t < 1e-8:
                break
            t *= 0.5
        if not f_new < f:
            break
        a, b, f = a_new, b_new, f_new
    return a, b


def _fit_matrix(
    z: NDArray[np.float64], y: NDArray[np.intp], n_classes: int, reg: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Matrix scaling softmax(W z + b) (W of shape (n_classes, n_features)).

    Minimises mean NLL + reg / 2 (||W - W0||^2 + ||b||^2), W0 the identity (zero when not
    square), by L-BFGS with the analytic gradient. Returns (W raveled, b).

    Conditioning: log-probabilities have large column offsets that the intercept must
    cancel, which makes the problem badly conditioned in (W, b). The optimiser works on
    standardised columns x = (z - mu) / sd with parameters (V, c); the map is the same,
    W = V / sd and b = c - W mu, and the penalty is applied to (W, b) through that change
    of variables, so the minimiser is unchanged.
    """
    n, d = z.shape
    m = n_classes
    rows = np.arange(n)
    mu = z.mean(axis=0)
    sd = z.std(axis=0)
    sd = np.where(sd > 1e-12 * np.maximum(1.0, np.abs(mu)), sd, 1.0)  # constant column
    x = (z - mu) / sd
    w0 = (np.eye(m, d) if m == d else np.zeros((m, d))).ravel()
    n_w = w0.size

    def to_original(v: NDArray[np.float64], c: NDArray[np.float64]
                    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        w = v.reshape(m, d) / sd
        return w.ravel(), c - w @ mu

    def objective(theta: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        v, c = theta[:n_w], theta[n_w:]
        out = x @ v.reshape(m, d).T + c
        sh = _shift(out)
        e = np.exp(sh)
        tot = e.sum(axis=1)
        nll = float((np.log(tot) - sh[rows, y]).mean())
        g = e / tot[:, None]
        g[rows, y] -= 1.0
        g /= n
        gv = (g.T @ x).ravel()
        gc = g.sum(axis=0)
        if reg > 0:
            w, b = to_original(v, c)
            dw, db = reg * (w - w0), reg * b
            nll += 0.5 * (float((w - w0) @ (w - w0)) + float(b @ b)) * reg
            # chain rule through W = V / sd, b = c - W mu
            gv = gv + ((dw.reshape(m, d) - np.outer(db, mu)) / sd).ravel()
            gc = gc + db
        return nll, np.concatenate([gv, gc])

    # start at the identity map (W = W0, b = 0) expressed in standardised coordinates
    v0 = (w0.reshape(m, d) * sd).ravel()
    c0 = w0.reshape(m, d) @ mu
    res = minimize(objective, np.concatenate([v0, c0]), jac=True, method="L-BFGS-B",
                   options={"maxiter": 1000, "gtol": 1e-7})
    return to_original(res.x[:n_w], res.x[n_w:])


def _apply_affine(
    z: NDArray[np.float64], w: NDArray[np.float64], b: NDArray[np.float64], kind: str
) -> NDArray[np.float64]:
    return _softmax(z * w + b if kind == "vector" else z @ w.reshape(b.size, -1).T + b)


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


def _folds(n: int, n_folds: int, rng: np.random.Generator) -> list[NDArray[np.intp]]:
    if n_folds == 1:
        return [np.arange(n)]
    return [np.sort(f) for f in np.array_split(rng.permutation(n), n_folds)]


def _resolve_method(method: str, n_columns: int, n_classes: int) -> str:
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
    n = p.shape[0]
    if n_folds > n:
        raise ValueError(_error("n_folds", f"at most the number of rows ({n})", describe(n_folds)))
    out = np.empty((n, n_classes))
    if method == "binning":
        feature = p[:, 1].astype(np.float64)
    else:
        feature = _log_probabilities(p)
        if method == "temperature":
            feature = _shift(feature)
    folds = _folds(n, n_folds, rng)
    t_prev = None
    for test in folds:
        if n_folds == 1:
            train = test
        else:
            mask = np.ones(n, dtype=bool)
            mask[test] = False
            train = np.flatnonzero(mask)
        f_tr, y_tr, f_te = feature[train], y[train], feature[test]
        if method == "binning":
            inner, freq = _fit_bins(f_tr, y_tr, n_classes, n_bins, strategy)
            out[test] = freq[np.searchsorted(inner, f_te, side="right")]
        elif method == "temperature":
            t = _cross_fitted_temperature(f_tr, y_tr, t_prev)
            t_prev = t
            out[test] = _softmax(f_te / t)
        else:
            w, b = _fit_affine(f_tr, y_tr, n_classes, method, reg)
            out[test] = _apply_affine(f_te, w, b, method)
    return out


# ---------------------------------------------------------------- public: scaling
def fit_temperature(
    logits: ArrayLike, y: ArrayLike, *, bounds: tuple[float, float] = (1e-2, 1e2)
) -> float:
    r"""Temperature scaling (Guo et al. 2017): the :math:`T` that minimises held-out NLL.

    .. math:: \hat T = \arg\min_{T > 0} \frac1n \sum_i -\log \operatorname{softmax}(z_i / T)_{y_i}

    The objective is convex in :math:`1/T`; it is minimised by bounded scalar
    minimisation in :math:`\log T` with a stable log-softmax. Fit on held-out
    data (not the training set), then apply with :func:`apply_scaling`. Use it
    to recalibrate an unweighted model before Ex Post Weighting (Theorem 1
    assumes calibrated :math:`q`); to estimate what a *weighted* model learned,
    use :func:`learned_posteriors` (its miscalibration is not a temperature).

    Parameters
    ----------
    logits : array-like of shape (n_samples, n_classes)
        Finite raw scores (``n_classes >= 2``).
    y : array-like of shape (n_samples,)
        Class labels.
    bounds : (float, float), default (0.01, 100)
        Search interval for :math:`T`. A RuntimeWarning says when the optimum
        is at a bound (e.g. separable data, where the NLL keeps falling as
        :math:`T \to 0`).

    Returns
    -------
    float

    Examples
    --------
    >>> logits = [[2.0, 0.0], [2.0, 0.0], [2.0, 0.0], [0.0, 2.0]]
    >>> round(fit_temperature(logits, [0, 0, 1, 1]), 3)  # softmax(z/T)_0 = 3/4: T = 2/log 3
    1.82
    """
    z = _check_logits(logits)
    labels = check_labels(y, "y", n_classes=z.shape[1], n_samples=z.shape[0])
    try:
        lo, hi = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise TypeError(
            _error("bounds", "a pair (low, high) of temperatures", describe(bounds))
        ) from None
    if not (np.isfinite(lo) and np.isfinite(hi) and 0 < lo < hi):
        raise ValueError(_error("bounds", "finite temperatures 0 < low < high", f"({lo}, {hi})"))
    t, at_bound = _fit_temperature_shifted(_shift(z), labels, (lo, hi))
    if at_bound:
        warnings.warn(
            f"fit_temperature: the optimal temperature {t:.4g} is at the edge of `bounds` "
            f"({lo:g}, {hi:g}); the data may be separable or the bounds too narrow.",
            RuntimeWarning,
            stacklevel=2,
        )
    return t


def fit_vector_scaling(
    logits: ArrayLike, y: ArrayLike, *, reg: float = 1e-4
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    r"""Vector scaling (Guo et al. 2017): per-class scale ``a`` and bias ``b`` of the logits.

    .. math:: (\hat a, \hat b) = \arg\min_{a, b} \frac1n \sum_i
              -\log \operatorname{softmax}(a \odot z_i + b)_{y_i}
              + \frac{\lambda}{2}\left(\lVert a - 1\rVert^2 + \lVert b\rVert^2\right)

    Fitted by L-BFGS with the analytic gradient. The small ridge
    :math:`\lambda` (``reg``) toward the identity map keeps the fit finite when a
    class is absent or separable; ``b`` is centred (softmax ignores a constant).
    Vector scaling of :math:`\log p` exactly undoes class weighting (Eq 27:
    :math:`a = 1`, :math:`b = -\log w` + const).

    Parameters
    ----------
    logits : array-like of shape (n_samples, n_classes)
    y : array-like of shape (n_samples,)
    reg : float, default 1e-4

    Returns
    -------
    (a, b) : two ndarrays of shape (n_classes,)

    Examples
    --------
    >>> import numpy as np
    >>> z = np.log(np.repeat([[0.8, 0.2], [0.3, 0.7]], 10, axis=0))
    >>> y = [0] * 6 + [1] * 4 + [0] * 2 + [1] * 8  # true frequencies 0.6 and 0.2 of class 0
    >>> a, b = fit_vector_scaling(z, y, reg=0.0)
    >>> apply_scaling(z[[0, -1]], (a, b)).round(4)
    array([[0.6, 0.4],
           [0.2, 0.8]])
    """
    z = _check_logits(logits)
    labels = check_labels(y, "y", n_classes=z.shape[1], n_samples=z.shape[0])
    a, b = _fit_affine(z, labels, z.shape[1], "vector", _check_reg(reg))
    return a, b - b.mean()


def apply_scaling(
    logits: ArrayLike, scaling: float | tuple[ArrayLike, ArrayLike]
) -> NDArray[np.float64]:
    r"""Calibrated probabilities from logits: temperature or vector scaling.

    .. math:: \operatorname{softmax}(z / T) \quad\text{or}\quad
              \operatorname{softmax}(a \odot z + b)

    Parameters
    ----------
    logits : array-like of shape (n_samples, n_classes)
    scaling : float or (a, b)
        A temperature from :func:`fit_temperature`, or the pair from
        :func:`fit_vector_scaling`.

    Returns
    -------
    ndarray of shape (n_samples, n_classes), rows on the simplex (float64).

    Examples
    --------
    >>> apply_scaling([[2.0, 0.0]], 2.0).round(4)
    array([[0.7311, 0.2689]])
    >>> apply_scaling([[2.0, 0.0]], ([0.5, 0.5], [0.0, 0.0])).round(4)
    array([[0.7311, 0.2689]])
    """
    z = _check_logits(logits)
    m = z.shape[1]
    if isinstance(scaling, tuple) and len(scaling) == 2:
        a = as_float_array(scaling[0], "scaling").astype(np.float64)
        b = as_float_array(scaling[1], "scaling").astype(np.float64)
        finite = np.isfinite(a).all() and np.isfinite(b).all()
        if a.shape != (m,) or b.shape != (m,) or not finite:
            raise ValueError(
                _error("scaling", f"(a, b): two finite 1-D arrays of length {m}",
                       f"shapes {a.shape} and {b.shape}")
            )
        return _apply_affine(z, a, b, "vector")
    if isinstance(scaling, bool) or not isinstance(scaling, (int, float, np.number)):
        raise TypeError(
            _error("scaling", "a temperature (float) or a pair (a, b) of arrays", describe(scaling))
        )
    t = float(scaling)
    if not (np.isfinite(t) and t > 0):
        raise ValueError(_error("scaling", "a positive finite temperature", describe(scaling)))
    return _softmax(z / t)


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
    m = arr.shape[1] if n_classes is None else _check_positive_int(n_classes, "n_classes",
                                                                   minimum=2)
    labels = check_labels(y, "y", n_classes=m, n_samples=arr.shape[0])
    resolved = _resolve_method(check_choice(method, "method", METHODS), arr.shape[1], m)
    return _learned_posteriors(
        arr, labels, m, resolved,
        _check_positive_int(n_folds, "n_folds"), _check_rng(random_state),
        _check_n_bins(n_bins), check_choice(strategy, "strategy", STRATEGIES), _check_reg(reg),
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
    if posteriors is not None:
        q, _ = check_probabilities(posteriors, "posteriors", n_columns=n_classes)
        if q.shape[0] != arr.shape[0]:
            raise ValueError(
                _error("posteriors", f"one row per row of `p` ({arr.shape[0]})",
                       f"{q.shape[0]} rows")
            )
        return q.astype(np.float64), "given"
    method = _resolve_method(check_choice(method, "method", METHODS), arr.shape[1], n_classes)
    q = _learned_posteriors(arr, labels, n_classes, method,
                            _check_positive_int(n_folds, "n_folds"), _check_rng(random_state))
    return q, method


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
    if utility is None:
        arr, _ = check_probabilities(p, "p")
        u = np.eye(arr.shape[1])
    else:
        uu = as_utility(utility)
        arr, _ = check_probabilities(p, "p", n_columns=uu.n_actions, column_name="action")
        u = uu.matrix
    arr = arr.astype(np.float64, copy=False)
    labels = check_labels(y, "y", n_classes=u.shape[1], n_samples=arr.shape[0])
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
    arr, _ = check_probabilities(p, "p", n_columns=uu.n_actions, column_name="action")
    arr = arr.astype(np.float64, copy=False)
    labels = check_labels(y, "y", n_classes=uu.n_classes, n_samples=arr.shape[0])
    q, _ = _posteriors_or_estimate(posteriors, arr, labels, uu.n_classes, method,
                                   n_folds, random_state)
    diff = np.abs(arr - _weighted_prediction(q, uu.matrix))
    if dist == "l1":
        out = diff.sum(axis=1)
    elif dist == "l2":
        out = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    else:
        out = diff.max(axis=1)
    return reduce(out, reduction)


# ---------------------------------------------------------------- public: calibration error
class ReliabilityCurve(NamedTuple):
    """Reliability-diagram data (:func:`reliability_curve`).

    ``confidence`` and ``accuracy`` are bin means (NaN for an empty bin),
    ``counts`` the rows per bin, ``edges`` the bin edges. Top-label: 1-D, one entry
    per bin (``edges`` one longer). Classwise: one row per class.
    """

    confidence: NDArray[np.float64]
    accuracy: NDArray[np.float64]
    counts: NDArray[np.intp]
    edges: NDArray[np.float64]


def _edges(conf: NDArray[np.float64], n_bins: int, strategy: str) -> NDArray[np.float64]:
    if strategy == "uniform":
        return np.linspace(0.0, 1.0, n_bins + 1)
    return np.quantile(conf, np.linspace(0.0, 1.0, n_bins + 1))


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
    else:
        pairs = [(p64[:, k], (y == k).astype(np.float64)) for k in range(p64.shape[1])]
    out = []
    for conf, hit in pairs:
        edges = _edges(conf, n_bins, strategy)
        out.append((*_bin_stats(conf, hit, edges), edges))
    return out


def _check_binning_args(
    p: ArrayLike, y: ArrayLike, n_bins: Any, strategy: str, kind: str
) -> tuple[NDArray[np.floating], NDArray[np.intp], int, str, str]:
    arr, _ = check_probabilities(p, "p")
    labels = check_labels(y, "y", n_classes=arr.shape[1], n_samples=arr.shape[0])
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(_error("n_bins", "a positive integer", describe(n_bins)))
    return (arr, labels, int(n_bins), check_choice(strategy, "strategy", STRATEGIES),
            check_choice(kind, "kind", KINDS))


def calibration_error(
    p: ArrayLike,
    y: ArrayLike,
    *,
    norm: Literal["l1", "l2", "max"] = "l1",
    n_bins: int = 15,
    strategy: Literal["uniform", "quantile"] = "uniform",
    kind: Literal["top_label", "classwise"] = "top_label",
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
    kind : {"top_label", "classwise"}, default "top_label"

    Returns
    -------
    float

    Examples
    --------
    >>> p = [[0.9, 0.1], [0.85, 0.15], [0.3, 0.7], [0.35, 0.65]]
    >>> round(calibration_error(p, [0, 1, 1, 1], n_bins=5), 4)  # (|1-0.675| + |0.5-0.875|) / 2
    0.35
    """
    arr, labels, b, strat, kd = _check_binning_args(p, y, n_bins, strategy, kind)
    nrm = check_choice(norm, "norm", NORMS)
    per_class = []
    for counts, s_conf, s_hit, _ in _binned(arr, labels, b, strat, kd):
        ne = counts > 0
        gap = np.abs(s_hit[ne] - s_conf[ne]) / counts[ne]
        w = counts[ne] / counts.sum()
        if nrm == "l1":
            per_class.append(float(w @ gap))
        elif nrm == "l2":
            per_class.append(float(w @ gap**2))
        else:
            per_class.append(float(gap.max()))
    vals = np.asarray(per_class)
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
    kind: Literal["top_label", "classwise"] = "top_label",
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
    kind : {"top_label", "classwise"}, default "top_label"
        Classwise returns arrays with one row per class.

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
    if kd == "top_label":
        return ReliabilityCurve(conf[0], acc[0], cnt[0], edg[0])
    return ReliabilityCurve(np.stack(conf), np.stack(acc), np.stack(cnt), np.stack(edg))
