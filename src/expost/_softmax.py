r"""The numpy core's softmax, its mean NLL and log-probability features, written once.

Numerical stability: every softmax and log-softmax subtracts the row maximum
before exponentiating; probabilities are never recovered by logging a softmax.
Used by the calibration maps (:mod:`expost._scaling`), what is learned
(:mod:`expost._learning`) and the scikit-learn estimators.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

_TINY = float(np.finfo(np.float64).tiny)


def _shift(z: NDArray[np.float64]) -> NDArray[np.float64]:
    """Subtract the row maximum: every entry <= 0, the largest exactly 0 (stable exp)."""
    return z - z.max(axis=1, keepdims=True)


def _softmax(z: NDArray[np.float64]) -> NDArray[np.float64]:
    e = np.exp(_shift(z))
    e /= e.sum(axis=1, keepdims=True)
    return e


def _softmax_affine(z: NDArray[np.float64], a: NDArray[np.float64] | float = 1.0,
                    b: NDArray[np.float64] | float = 0.0, t: float = 1.0) -> NDArray[np.float64]:
    """``softmax(z / t * a + b)`` for finite z, a, b and t > 0, also where that overflows.

    Logits near 1e308 divided by a temperature below 1 (or scaled by a large a)
    overflowed to inf, and the shift made NaN of them. There, the map is computed
    on ``z / t * a + b`` times the power of two 2^-k that keeps it finite (each
    factor's exponent taken out exactly), the row maximum is subtracted, and the
    result is multiplied back by 2^k (exact, and only ever towards -inf, whose
    exp is 0).
    """
    with np.errstate(over="ignore", invalid="ignore"):
        u = z / t * a + b if t != 1.0 else z * a + b
    if np.isfinite(u).all():
        return _softmax(u)
    ez, ea, eb = (int(np.frexp(np.abs(np.asarray(x, dtype=np.float64)).max())[1]) for x in (z, a, b))
    et = math.frexp(t)[1]
    k = max(ez + ea - et, eb) + 1
    # |v| < 4: (z / t * a + b) / 2^k, each factor brought near 1 first
    v = (np.ldexp(z, -ez) / math.ldexp(t, -et)) * np.ldexp(a, ez - et - k) + np.ldexp(b, -k)
    with np.errstate(over="ignore"):  # to -inf: exp gives 0
        e = np.exp(np.ldexp(_shift(v), k))
    e /= e.sum(axis=1, keepdims=True)
    return e


def _log_probabilities(p: NDArray[np.floating]) -> NDArray[np.float64]:
    """``log p`` as calibration features; an exact zero becomes log(tiny) ~ -708, not -inf."""
    return np.log(np.maximum(p.astype(np.float64, copy=False), _TINY))


def _mean_nll(
    logits: NDArray[np.float64], y: NDArray[np.intp]
) -> tuple[float, NDArray[np.float64], NDArray[np.float64]]:
    """Mean NLL of softmax(logits) at ``y``, with exp(shifted logits) and their row sums.

    On row-max-shifted logits, ``log sum exp >= 0`` cannot overflow; the exponentials are
    returned so that a gradient reuses them (``softmax = e / total``).
    """
    sh = _shift(logits)
    e = np.exp(sh)
    total = e.sum(axis=1)
    return float((np.log(total) - sh[np.arange(sh.shape[0]), y]).mean()), e, total
