r"""The numpy core's softmax, its mean NLL and log-probability features, written once.

Numerical stability: every softmax and log-softmax subtracts the row maximum
before exponentiating; probabilities are never recovered by logging a softmax.
Used by the calibration maps (:mod:`expost._scaling`), what is learned
(:mod:`expost._learning`) and the scikit-learn estimators.
"""

from __future__ import annotations

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
