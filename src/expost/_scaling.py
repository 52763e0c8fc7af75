r"""Calibration maps of logits: temperature, vector and matrix scaling (Guo et al. 2017).

The public fits (:func:`fit_temperature`, :func:`fit_vector_scaling`) and
:func:`apply_scaling`, and the private fitters they share with
:func:`~expost._learning.learned_posteriors` (which applies them to
:math:`\log p`). Every softmax and NLL comes from :mod:`expost._softmax`.

``scipy.optimize`` is imported inside the fitters that use it, so that
``import expost`` does not pay for it.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._softmax import _mean_nll, _shift, _softmax, _softmax_affine
from ._validation import _error, as_float_array, check_labels, describe

__all__ = ["apply_scaling", "fit_temperature", "fit_vector_scaling"]

_TEMPERATURE_BOUNDS = (1e-2, 1e2)


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


def _check_reg(reg: Any) -> float:
    if isinstance(reg, bool) or not isinstance(reg, (int, float, np.number)) or not (
        np.isfinite(reg) and reg >= 0
    ):
        raise ValueError(_error("reg", "a finite number >= 0", describe(reg)))
    return float(reg)


def _check_bounds(bounds: Any) -> tuple[float, float]:
    try:
        lo, hi = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise TypeError(
            _error("bounds", "a pair (low, high) of temperatures", describe(bounds))
        ) from None
    if not (np.isfinite(lo) and np.isfinite(hi) and 0 < lo < hi):
        raise ValueError(_error("bounds", "finite temperatures 0 < low < high", f"({lo}, {hi})"))
    return lo, hi


# ---------------------------------------------------------------- temperature
def _fit_temperature_shifted(
    s: NDArray[np.float64], y: NDArray[np.intp], bounds: tuple[float, float]
) -> tuple[float, bool]:
    """Minimise the NLL of softmax(z / T) over log T; ``s`` are row-max-shifted logits.

    With ``beta = 1 / T`` and ``s <= 0`` (row max 0), ``log sum exp(beta s) >= 0`` cannot
    overflow and ``beta * max(z)`` cancels: NLL(beta) = mean(lse(beta s)) - beta mean(s_y).
    Returns the temperature and whether it is at (or next to) an end of ``bounds``.
    """
    from scipy.optimize import minimize_scalar

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
    full = _TEMPERATURE_BOUNDS
    if t_prev is not None:
        window = (max(full[0], t_prev / 1.25), min(full[1], t_prev * 1.25))
        t, at_edge = _fit_temperature_shifted(s, y, window)
        if not at_edge:
            return t
    return _fit_temperature_shifted(s, y, full)[0]


# ---------------------------------------------------------------- vector scaling (Newton)
def _vector_objective(
    z: NDArray[np.float64], y: NDArray[np.intp], a: NDArray[np.float64],
    b: NDArray[np.float64], reg: float, scale: float = 1.0,
) -> float:
    """Mean NLL of softmax(a * z + b) + reg / 2 (||a / scale - 1||^2 + ||b||^2).

    ``z`` are the logits divided by ``scale`` (a power of two) and ``a`` the scales of
    those: the fit's own scales are ``a / scale`` (see :func:`_fit_vector`).
    """
    nll = _mean_nll(z * a + b, y)[0]
    d = a / scale - 1
    return nll + 0.5 * reg * (float(d @ d) + float(b @ b))


def _vector_newton_step(
    z: NDArray[np.float64], y: NDArray[np.intp], a: NDArray[np.float64],
    b: NDArray[np.float64], reg: float, scale: float = 1.0,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The Newton step for (a, b) and the gradient it was solved from.

    With s the fitted probabilities and r = s - onehot(y), the gradient is
    (mean r z, mean r) and the Hessian blocks are mean(diag(s) - s s') weighted by z z',
    z and 1 (plus the ridge's, in the coordinates of :func:`_vector_objective`). The
    Hessian is singular along b + const when reg = 0 (softmax ignores the constant):
    the minimum-norm step (lstsq) keeps mean(b) unchanged.
    """
    n, m = z.shape
    s = _softmax(z * a + b)
    r = s.copy()
    r[np.arange(n), y] -= 1.0
    g = np.concatenate([(r * z).sum(axis=0) / n + reg * (a / scale - 1) / scale,
                        r.sum(axis=0) / n + reg * b])
    xs = z * s
    h_bb = np.diag(s.sum(axis=0)) - s.T @ s
    h_ab = np.diag(xs.sum(axis=0)) - xs.T @ s
    h_aa = np.diag((z * xs).sum(axis=0)) - xs.T @ xs
    ridge = np.concatenate([np.full(m, reg / scale / scale), np.full(m, reg)])
    h = np.block([[h_aa, h_ab], [h_ab.T, h_bb]]) / n + np.diag(ridge)
    return np.linalg.lstsq(h, -g, rcond=None)[0], g


def _fit_vector(
    z: NDArray[np.float64], y: NDArray[np.intp], reg: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Vector scaling softmax(a * z + b) by damped Newton on the convex mean NLL.

    Objective: :func:`_vector_objective`. The logits are first divided by the power of
    two that brings their largest magnitude into [0.5, 1) (exact; the scales found are
    divided back), so that no product or Hessian entry overflows however large the
    logits (at 1e160 an overflowed Hessian hung LAPACK). Newton's method is affine
    invariant, but its start is not: from a = 1, logits of a few hundred saturate the
    softmax, the Hessian vanishes to rounding and the line search stalls (at ±2000 it
    stopped at 19 times the least objective). So it starts, with b = 0, from the
    better of a = 1 and the a that brings the largest logit to 1. A step is halved
    until the objective falls by a quarter of the step times the Newton decrement
    (Armijo); where no Newton step does, a gradient step is tried the same way. It
    stops after 100 steps, when the decrement is below 1e-15, or when neither step
    lowers the objective.
    """
    m = z.shape[1]
    top = float(np.abs(z).max())
    scale = 1.0 if top == 0.0 else math.ldexp(1.0, math.frexp(top)[1])
    zs = z / scale  # exact: a power of two
    b = np.zeros(m)
    starts = [np.full(m, scale), np.full(m, scale / top if top else 1.0)]
    values = [_vector_objective(zs, y, a0, b, reg, scale) for a0 in starts]
    a, f = (starts[0], values[0]) if values[0] <= values[1] else (starts[1], values[1])
    for _ in range(100):
        step, g = _vector_newton_step(zs, y, a, b, reg, scale)
        decrement = -float(g @ step)  # Newton decrement squared: ~2 (f - min f)
        if not decrement > 1e-15:
            break
        found = _armijo(zs, y, a, b, reg, scale, f, step, decrement)
        if found is None:  # the Newton step fails where the softmax saturates: descend
            found = _armijo(zs, y, a, b, reg, scale, f, -g, float(g @ g))
        if found is None:
            break
        a, b, f = found
    return a / scale, b


def _armijo(
    z: NDArray[np.float64], y: NDArray[np.intp], a: NDArray[np.float64],
    b: NDArray[np.float64], reg: float, scale: float, f: float, step: NDArray[np.float64],
    slope: float,
) -> tuple[NDArray[np.float64], NDArray[np.float64], float] | None:
    """(a, b, objective) after the longest of step, step / 2, ... (down to 1e-8 of it)
    that lowers the objective by a quarter of its length times ``slope``; None if none does."""
    m, t = a.size, 1.0
    while t >= 1e-8:
        a_new, b_new = a + t * step[:m], b + t * step[m:]
        f_new = _vector_objective(z, y, a_new, b_new, reg, scale)
        if f_new <= f - 0.25 * t * slope:
            return a_new, b_new, f_new
        t *= 0.5
    return None


# ---------------------------------------------------------------- matrix scaling (L-BFGS)
def _matrix_to_original(
    v: NDArray[np.float64], c: NDArray[np.float64], mu: NDArray[np.float64],
    sd: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(W raveled, b) of the map whose standardised-coordinates parameters are (V, c)."""
    w = v.reshape(c.size, mu.size) / sd
    return w.ravel(), c - w @ mu


def _matrix_objective(
    theta: NDArray[np.float64], x: NDArray[np.float64], y: NDArray[np.intp],
    mu: NDArray[np.float64], sd: NDArray[np.float64], w0: NDArray[np.float64], reg: float,
) -> tuple[float, NDArray[np.float64]]:
    """Penalised mean NLL of softmax(V x + c) and its gradient in theta = (V raveled, c).

    The penalty reg / 2 (||W - W0||^2 + ||b||^2) is on the original (W, b); its gradient
    reaches (V, c) by the chain rule through W = V / sd, b = c - W mu.
    """
    n, d = x.shape
    m = w0.size // d
    v, c = theta[:w0.size], theta[w0.size:]
    nll, e, total = _mean_nll(x @ v.reshape(m, d).T + c, y)
    g = e / total[:, None]
    g[np.arange(n), y] -= 1.0
    g /= n
    gv = (g.T @ x).ravel()
    gc = g.sum(axis=0)
    if reg > 0:
        w, b = _matrix_to_original(v, c, mu, sd)
        dw, db = reg * (w - w0), reg * b
        nll += 0.5 * (float((w - w0) @ (w - w0)) + float(b @ b)) * reg
        gv = gv + ((dw.reshape(m, d) - np.outer(db, mu)) / sd).ravel()
        gc = gc + db
    return nll, np.concatenate([gv, gc])


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
    from scipy.optimize import minimize

    d = z.shape[1]
    m = n_classes
    mu = z.mean(axis=0)
    sd = z.std(axis=0)
    sd = np.where(sd > 1e-12 * np.maximum(1.0, np.abs(mu)), sd, 1.0)  # constant column
    x = (z - mu) / sd
    w0 = (np.eye(m, d) if m == d else np.zeros((m, d))).ravel()
    # start at the identity map (W = W0, b = 0) expressed in standardised coordinates
    v0 = (w0.reshape(m, d) * sd).ravel()
    c0 = w0.reshape(m, d) @ mu
    res = minimize(_matrix_objective, np.concatenate([v0, c0]), args=(x, y, mu, sd, w0, reg),
                   jac=True, method="L-BFGS-B", options={"maxiter": 1000, "gtol": 1e-7})
    return _matrix_to_original(res.x[:w0.size], res.x[w0.size:], mu, sd)


def _fit_affine(
    z: NDArray[np.float64], y: NDArray[np.intp], n_classes: int, kind: str, reg: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Fit softmax(W z + b): W diagonal ("vector", Newton) or full ("matrix", L-BFGS)."""
    if kind == "vector":
        return _fit_vector(z, y, reg)
    return _fit_matrix(z, y, n_classes, reg)


def _apply_affine(
    z: NDArray[np.float64], w: NDArray[np.float64], b: NDArray[np.float64], kind: str
) -> NDArray[np.float64]:
    if kind == "vector":
        return _softmax_affine(z, w, b)
    return _softmax(z @ w.reshape(b.size, -1).T + b)


# ---------------------------------------------------------------- public API
def fit_temperature(
    logits: ArrayLike, y: ArrayLike, *, bounds: tuple[float, float] = _TEMPERATURE_BOUNDS
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
    lo, hi = _check_bounds(bounds)
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

    Fitted by damped Newton's method on this convex objective, with :math:`b = 0`
    and from the better of :math:`a = 1` and the :math:`a` that brings the largest
    logit to 1 (from :math:`a = 1`, logits in the thousands saturate the softmax):
    the exact gradient and Hessian, on the logits divided by a power of two (so that
    none overflows, whatever their size), the minimum-norm solution of the Newton
    system (the Hessian is singular along :math:`b` + const when :math:`\lambda = 0`),
    a backtracking (Armijo) line search, and a gradient step where no Newton step
    descends; at most 100 steps. No scipy optimiser is involved. The small ridge
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
    a, b = _fit_vector(z, labels, _check_reg(reg))
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
    return _softmax_affine(z, t=t)
