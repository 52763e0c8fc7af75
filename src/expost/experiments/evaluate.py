r"""Per-interval evaluation: the stored probabilities and the six metrics computed from them.

At every training interval the harness stores the test-set predictions of the
model compactly and computes every metric **from the stored copy**, so that the
stored predictions reproduce the stored metrics bit for bit, and any other
objective can be evaluated later without retraining (``expost evaluate``).

Storage format
--------------
Predictions are stored as float16 *log*-probabilities (``log_softmax`` of the
logits, floored at :data:`LOG_PROB_FLOOR`). float16 probabilities would
underflow to exactly zero below about 6e-8, turning the log loss of a
confidently wrong prediction into ``inf``; float16 log-probabilities keep a
relative precision of about 0.05 % on every probability instead. Decoding casts
back to float64 and renormalises each row (a softmax of the stored values):

.. math:: q_{ik} = \frac{\exp(s_{ik})}{\sum_j \exp(s_{ij})}, \qquad s = \mathrm{float16}(\log p).
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._scoring import classification_utility, log_loss, weighted_loss
from .._utility import Utility, as_utility
from .._validation import _error, check_labels, describe
from .regimes import regime_view

__all__ = [
    "LOG_PROB_FLOOR",
    "decode_probabilities",
    "encode_log_probs",
    "interval_metrics",
    "recall_class",
]

#: Stored log-probabilities are floored here: exp(-700) is still a normal float64.
LOG_PROB_FLOOR: Final[float] = -700.0


def encode_log_probs(log_probs: ArrayLike) -> NDArray[np.float16]:
    """Compact storage of predictions: float16 log-probabilities floored at -700.

    Parameters
    ----------
    log_probs : array-like of shape (n_samples, n_classes)
        Log-probabilities (``log_softmax`` of the logits), any floating dtype.

    Returns
    -------
    ndarray of float16, a new array.

    Examples
    --------
    >>> import numpy as np
    >>> encode_log_probs(np.log([[0.75, 0.25]])).dtype
    dtype('float16')
    """
    arr = np.asarray(log_probs)
    if arr.ndim != 2 or arr.dtype.kind != "f":
        raise ValueError(_error("log_probs", "a 2-D floating array", describe(arr)))
    if np.isnan(arr).any() or np.isposinf(arr).any():
        raise ValueError(_error("log_probs", "log-probabilities (no NaN or +inf)", describe(arr)))
    return np.maximum(arr, LOG_PROB_FLOOR).astype(np.float16)


def decode_probabilities(stored: ArrayLike) -> NDArray[np.float64]:
    r"""Float64 probability rows from stored float16 log-probabilities.

    .. math:: q_{ik} = \exp(s_{ik} - \max_j s_{ij}) \,/\, \sum_j \exp(s_{ij} - \max_j s_{ij})

    Deterministic: the same stored bytes always decode to the same float64 rows.

    Examples
    --------
    >>> import numpy as np
    >>> decode_probabilities(encode_log_probs(np.log([[0.75, 0.25]]))).round(3)
    array([[0.75, 0.25]])
    """
    s = np.asarray(stored).astype(np.float64)
    if s.ndim != 2:
        raise ValueError(_error("stored", "a 2-D array of log-probabilities", describe(s)))
    s -= s.max(axis=1, keepdims=True)
    np.exp(s, out=s)
    s /= s.sum(axis=1, keepdims=True)
    return s


def recall_class(utility: Utility | ArrayLike, emphasized: int | None = None) -> int:
    r"""The class whose recall is reported as ``emphasized_recall``.

    The emphasised class when there is one, else the class with the largest
    total utility weight :math:`\sum_a u(a, y)` (for class weights, the largest
    weight); ties go to the lowest index.

    >>> import expost
    >>> recall_class(expost.Utility.from_class_weights([1.0, 3.0, 3.0]))
    1
    """
    u = as_utility(utility)
    if emphasized is not None:
        if not isinstance(emphasized, (int, np.integer)) or not 0 <= emphasized < u.n_classes:
            raise ValueError(
                _error("emphasized", f"a class index in [0, {u.n_classes})", describe(emphasized))
            )
        return int(emphasized)
    return int(np.argmax(u.matrix.sum(axis=0)))


def interval_metrics(
    q: NDArray[np.float64],
    y: ArrayLike,
    utility: Utility,
    regime: str,
    *,
    recall_of: int,
    training_utility: Utility | None = None,
) -> dict[str, float]:
    r"""The six metrics of one regime at one interval (the values the store holds).

    With :math:`(p_i, d_i)` the regime's evaluated prediction and decision
    (:func:`~expost.experiments.regimes.regime_view`) and :math:`u` the
    normalised objective (Eq 21):

    .. math::

        \text{weighted\_loss} = \tfrac1n \sum_i \ell^u(p_i, y_i) \;\text{(Eq 6)},\quad
        \text{classification\_utility} = \tfrac1n \sum_i u(d_i, y_i),

        \text{log\_loss} = \tfrac1n \sum_i -\log p_{i y_i},\quad
        \text{accuracy} = \tfrac1n \sum_i 1\{d_i = y_i\},

    ``emphasized_recall`` is the recall of class ``recall_of`` among the
    decisions, and ``calibration_error`` the top-label l1 calibration error of
    :math:`p` with 15 bins (:func:`expost.calibration_error`).

    Parameters
    ----------
    q : ndarray of shape (n_samples, n_classes)
        Decoded model probabilities (:func:`decode_probabilities`).
    y : array-like of shape (n_samples,)
        True classes.
    utility : Utility
        The experiment's normalised objective.
    regime : str
        The regime whose view of ``q`` is scored.
    recall_of : int
        The class of ``emphasized_recall`` (:func:`recall_class`).
    training_utility : Utility, optional
        For ``inverse_prior``: the utility its model was trained with.

    Returns
    -------
    dict
        One float per name of :data:`~expost.experiments.metrics.METRICS`.

    Examples
    --------
    >>> import numpy as np, expost
    >>> u = expost.Utility.from_class_weights([1.0, 9.0])
    >>> q = np.array([[0.8, 0.2], [0.3, 0.7], [0.95, 0.05]])
    >>> m = interval_metrics(q, [0, 1, 1], u, "expost", recall_of=1)
    >>> m["classification_utility"], m["emphasized_recall"]
    (3.0, 0.5)
    """
    from .. import calibration_error  # the core's top-label calibration error

    labels = check_labels(y, "y", n_classes=utility.n_classes, n_samples=q.shape[0])
    p, decisions = regime_view(regime, q, utility, training_utility=training_utility)
    member = labels == recall_of
    if not member.any():
        raise ValueError(
            _error("y", f"at least one sample of the recall class {recall_of}", "none")
        )
    out = {
        "weighted_loss": float(weighted_loss(p, labels, utility, reduction="mean")),
        "classification_utility": float(
            classification_utility(decisions, labels, utility, reduction="mean")
        ),
        "log_loss": float(log_loss(p, labels, reduction="mean")),
        "accuracy": float(np.mean(decisions == labels)),
        "emphasized_recall": float(np.mean(decisions[member] == recall_of)),
        "calibration_error": float(calibration_error(p, labels, norm="l1", n_bins=15)),
    }
    return out
