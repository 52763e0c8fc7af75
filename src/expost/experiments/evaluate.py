r"""The one metric engine of the harness: stored probabilities and the metrics computed from them.

At every training interval the harness stores the test-set predictions of the
model compactly and computes every metric **from the stored copy**, so that the
stored predictions reproduce the stored metrics bit for bit, and any other
objective can be evaluated later without retraining (``expost evaluate``,
:mod:`~expost.experiments.reevaluate`).

Every metric goes through one function, :func:`score_regime`: the harness's
:func:`interval_metrics` (one utility), ``expost evaluate`` and the ex post
:func:`frontier` (many utilities at once) all score through it, on the batched
implementation :func:`expost._batched_metrics.batched_metrics`, with the class
whose recall is reported passed in (:func:`recall_class`).

Storage format
--------------
Predictions are stored as float16 *log*-probabilities (``log_softmax`` of the
logits, floored at :data:`LOG_PROB_FLOOR`). float16 probabilities would
underflow to exactly zero below about 6e-8, turning the log loss of a
confidently wrong prediction into ``inf``. Rounding :math:`\log p` to float16
moves it by at most half a float16 spacing, so the relative error of :math:`p`
grows with :math:`|\log p|`: measured at most 0.024 % for :math:`\log p \in [-1, 0)`,
0.39 % in :math:`[-10, -5)`, 3.2 % in :math:`[-100, -20)` and 28 % in
:math:`[-700, -100)` (docs/experiments.md has the table). Decoding casts
back to float64 and renormalises each row (a softmax of the stored values):

.. math:: q_{ik} = \frac{\exp(s_{ik})}{\sum_j \exp(s_{ij})}, \qquad s = \mathrm{float16}(\log p).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Final, Literal, cast

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._batched_metrics import BATCHED_METRICS, _class_weights, batched_metrics, metrics_given
from .._decisions import _weighted_prediction_by
from .._recalibration import recover_posterior
from .._reliability import _calibration_error
from .._utility import Utility, as_utility, is_diagonal_matrix
from .._validation import _error, check_int, check_labels, check_probabilities, describe
from .regimes import REGIME_SPECS

__all__ = [
    "FRONTIER_METRICS",
    "LOG_PROB_FLOOR",
    "IntervalScorer",
    "decode_probabilities",
    "encode_log_probs",
    "frontier",
    "interval_metrics",
    "recall_class",
    "score_regime",
    "stack_utilities",
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


#: The metrics :func:`frontier` returns (the harness's metrics but the calibration error).
FRONTIER_METRICS: Final[tuple[str, ...]] = BATCHED_METRICS

#: The metrics :func:`score_regime` returns, in the order of ``METRICS``.
_REGIME_METRICS: Final[tuple[str, ...]] = (*BATCHED_METRICS, "calibration_error")


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


def stack_utilities(utilities: Utility | ArrayLike | Sequence[Utility | ArrayLike], *,
                    class_weights: bool = False) -> NDArray[np.float64]:
    """Stack utilities into a (K, n_actions, n_classes) float64 array, checking each.

    Accepts one utility, a sequence of utilities or matrices, or a 3-D array.
    Every matrix must be finite, nonnegative and nondegenerate (Eq 1). With
    ``class_weights``, utilities that are all diagonal (class weights, Eq 14) come
    back as their (K, n_classes) weights, the form the metric engine takes without
    K square matrices.

    >>> import expost
    >>> stack_utilities([expost.Utility.from_class_weights([1, 2]), [[1, 0], [0, 3]]]).shape
    (2, 2, 2)
    >>> stack_utilities([expost.Utility.from_class_weights([1, 2]), [[1, 0], [0, 3]]],
    ...                 class_weights=True)
    array([[1., 2.],
           [1., 3.]])
    """
    if isinstance(utilities, Utility):
        return utilities.matrix[None].copy()
    if isinstance(utilities, np.ndarray) and utilities.ndim == 3:
        items: Sequence[Utility | ArrayLike] = list(utilities)
    elif isinstance(utilities, np.ndarray) and utilities.ndim == 2:
        items = [utilities]
    elif isinstance(utilities, (list, tuple)):
        items = utilities
        if items and not isinstance(items[0], Utility) and np.ndim(items[0]) == 1:
            items = [utilities]  # one matrix given as a list of rows
    else:
        raise TypeError(_error("utilities", "a utility, a sequence of utilities or a 3-D array",
                               describe(utilities)))
    if len(items) == 0:
        raise ValueError(_error("utilities", "at least one utility", "none"))
    mats = [checked_matrix(u, k) for k, u in enumerate(items)]
    shapes = {m.shape for m in mats}
    if len(shapes) != 1:
        raise ValueError(_error("utilities", "matrices of one shape", f"shapes {sorted(shapes)}"))
    if class_weights and all(is_diagonal_matrix(m) for m in mats):
        return np.stack([np.diagonal(m) for m in mats]).astype(np.float64, copy=False)
    return np.stack(mats).astype(np.float64, copy=False)


def checked_matrix(utility: Utility | ArrayLike, k: int) -> NDArray[np.float64]:
    """The matrix of ``utilities[k]``, checked (Eq 1); an error names ``utilities[k]``."""
    try:
        return utility.matrix if isinstance(utility, Utility) else Utility(utility).matrix
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"`utilities[{k}]`: {exc}") from None


def as_matrix(utilities: NDArray[np.float64], k: int) -> NDArray[np.float64]:
    """Utility k of a stack (K, A, m) or of class weights (K, m) as its matrix."""
    return utilities[k] if utilities.ndim == 3 else np.diag(utilities[k])


def _engine_input(regime: str, q: NDArray[np.floating], training_utility: Utility | None
                  ) -> tuple[Literal["as_is", "ex_post"], NDArray[np.floating]]:
    """The engine's view of a regime and the probabilities it scores.

    ``inverse_prior`` is Ex Post Weighting of the beliefs recovered by Theorem 2
    (see :mod:`~expost.experiments.regimes`).
    """
    try:
        view = REGIME_SPECS[regime].view
    except KeyError:
        raise ValueError(_error("regime", f"one of {tuple(REGIME_SPECS)}", describe(regime))) from None
    if view == "as_is":
        return "as_is", q
    if view == "recovered_ex_post":
        if training_utility is None:
            raise ValueError(_error("training_utility",
                                    f"the utility the {regime!r} model was trained with", "None"))
        q = recover_posterior(q, training_utility)
    return "ex_post", q


def score_regime(
    q: NDArray[np.float64],
    labels: NDArray[np.intp],
    utilities: NDArray[np.float64],
    regime: str,
    *,
    recall_of: NDArray[np.intp],
    training_utility: Utility | None = None,
    calibration: bool = True,
    n_jobs: int = 1,
) -> dict[str, NDArray[np.float64]]:
    r"""Every metric of one regime's predictions under K utilities: the harness's one route.

    The regime's view (:mod:`~expost.experiments.regimes`) of ``q`` is scored by
    :func:`expost._batched_metrics.batched_metrics` (Eq 5, 6, 8);
    ``calibration_error`` is the top-label l1 calibration error of the view's
    prediction with 15 bins (:func:`expost.calibration_error`), NaN without
    ``calibration``. Inputs are the checked arrays of :func:`interval_metrics`;
    ``utilities`` is a (K, n_actions, n_classes) stack or (K, n_classes) class
    weights (:func:`stack_utilities` with ``class_weights=True``); ``n_jobs``
    threads share the utilities of the ex post view (the results do not depend on it).

    Returns
    -------
    dict
        ``{metric: ndarray of shape (K,)}`` in the order of
        :data:`~expost.experiments.metrics.METRICS`.

    Examples
    --------
    >>> import numpy as np
    >>> q = np.array([[0.8, 0.2], [0.3, 0.7]])
    >>> u = np.array([np.diag([1.0, 9.0]), np.eye(2)])
    >>> score_regime(q, np.array([0, 1]), u, "expost", recall_of=np.array([1, 1]))["accuracy"]
    array([0.5, 1. ])
    """
    return _Prepared(utilities, labels).score(q, regime, recall_of=recall_of,
                                              training_utility=training_utility,
                                              calibration=calibration, n_jobs=n_jobs)


class _Prepared:
    """:func:`score_regime`'s set-up for one stack of utilities and one set of labels,
    made once (the utilities' class weights, the labels' counts, each utility's
    :math:`p^u` kernel) and reused by every :meth:`score`: the harness scores the same
    utility and split at every interval. The values are the same, bit for bit."""

    def __init__(self, utilities: NDArray[np.float64], labels: NDArray[np.intp]) -> None:
        self.utilities, self.labels = utilities, labels
        self.weights = _class_weights(utilities)
        self.counts = np.bincount(labels, minlength=utilities.shape[-1])
        self._kernels: dict[tuple[int, np.dtype[Any]], Any] = {}

    def _weighted_prediction(self, q: NDArray[np.floating], k: int) -> NDArray[np.floating]:
        key = (k, q.dtype)
        if key not in self._kernels:
            self._kernels[key] = _weighted_prediction_by(as_matrix(self.utilities, k), q.dtype)
        return cast("NDArray[np.floating]", self._kernels[key](q))

    def score(self, q: NDArray[np.float64], regime: str, *, recall_of: NDArray[np.intp],
              training_utility: Utility | None = None, calibration: bool = True,
              n_jobs: int = 1) -> dict[str, NDArray[np.float64]]:
        """:func:`score_regime` of ``q`` (rows of these labels) under these utilities."""
        labels, utilities = self.labels, self.utilities
        view, qv = _engine_input(regime, q, training_utility)
        out = metrics_given(cast("NDArray[np.float64]", qv), labels, utilities, view=view,
                            recall_of=recall_of, weights=self.weights, counts=self.counts,
                            n_jobs=n_jobs)
        errors = np.full(utilities.shape[0], np.nan)
        for k in range(utilities.shape[0] if calibration else 0):
            p = qv if view == "as_is" else self._weighted_prediction(qv, k)
            # calibration_error(p, labels, norm="l1", n_bins=15) of arrays already checked
            errors[k] = _calibration_error(p, labels, "l1", 15, "uniform", "top_label")
        out["calibration_error"] = errors
        return {name: out[name] for name in _REGIME_METRICS}


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
    :math:`p` with 15 bins (:func:`expost.calibration_error`). Computed by
    :func:`score_regime`, the route ``expost evaluate`` takes too.

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
    qa, was_1d = check_probabilities(q, "q", n_columns=utility.n_classes)
    if was_1d:
        raise ValueError(_error("q", "a 2-D array (one row per sample)", describe(q)))
    q64: NDArray[np.float64] = qa.astype(np.float64, copy=False)
    scorer = IntervalScorer(utility, {"y": y}, recall_of=recall_of,
                            training_utility=training_utility)
    return scorer(q64, "y", regime)


class IntervalScorer:
    """:func:`interval_metrics` of one training, its arguments checked once.

    ``labels`` maps each split's name to its true classes (each must hold a sample of
    the recall class); a call then scores the regime's view of one split's predictions
    (decoded, so valid: they are not checked again) through :func:`score_regime`. The
    harness makes one per training and calls it at every interval, for every run and
    split; the values are :func:`interval_metrics`'s, bit for bit.

    >>> import numpy as np, expost
    >>> u = expost.Utility.from_class_weights([1.0, 9.0])
    >>> scorer = IntervalScorer(u, {"test": [0, 1, 1]}, recall_of=1)
    >>> scorer(np.array([[0.8, 0.2], [0.3, 0.7], [0.95, 0.05]]), "test", "expost")["accuracy"]
    0.3333333333333333
    """

    def __init__(self, utility: Utility, labels: Mapping[str, ArrayLike], *, recall_of: int,
                 training_utility: Utility | None = None) -> None:
        self.utility, self.training_utility = utility, training_utility
        self._recall = check_labels([recall_of], "recall_of", n_classes=utility.n_classes)
        self._prepared: dict[str, _Prepared] = {}
        for split, y in labels.items():
            name = "y" if split == "y" else f"labels[{split!r}]"
            checked = check_labels(y, name, n_classes=utility.n_classes)
            if not np.any(checked == self._recall[0]):
                raise ValueError(
                    _error(name, f"at least one sample of the recall class {recall_of}", "none")
                )
            self._prepared[split] = _Prepared(utility.matrix[None], checked)

    def __call__(self, q: NDArray[np.float64], split: str, regime: str) -> dict[str, float]:
        """The six metrics (:data:`~expost.experiments.metrics.METRICS`) of ``regime``'s
        view of ``q``, float64 probabilities of the rows of ``split``."""
        prepared = self._prepared[split]
        n = prepared.labels.shape[0]
        if q.shape[0] != n:
            raise ValueError(_error("q", f"one row per label of {split!r} ({n})",
                                    f"{q.shape[0]} rows"))
        out = prepared.score(q, regime, recall_of=self._recall,
                             training_utility=self.training_utility)
        return {name: float(values[0]) for name, values in out.items()}


def frontier(
    q: ArrayLike,
    y: ArrayLike,
    utilities: Utility | ArrayLike | Sequence[Utility | ArrayLike],
    *,
    view: Literal["ex_post", "as_is"] = "ex_post",
    recall_of: int | ArrayLike | None = None,
    n_jobs: int = 1,
) -> dict[str, NDArray[np.float64]]:
    r"""Metrics of K objectives at once on one set of predictions (the ex post frontier).

    An unweighted model is trained once; Ex Post Weighting then serves *any*
    objective :math:`u` by Theorem 1, :math:`p^u(q) = Uq / \iota^\top U q` (Eq 8).
    For every utility :math:`u_k`: the weighted loss (Eq 6) of the view's
    prediction, the classification utility of its decisions (Eq 5), the log
    loss, the accuracy and the recall of ``recall_of`` -- the metrics the harness
    stores but the calibration error, through the same engine
    (:func:`expost._batched_metrics.batched_metrics`).

    Parameters
    ----------
    q : array-like of shape (n_samples, n_classes)
        Predicted probabilities (e.g. :meth:`ResultStore.probabilities
        <expost.experiments.store.ResultStore.probabilities>`).
    y : array-like of shape (n_samples,)
        True classes.
    utilities : Utility, sequence of utilities, or array of shape (K, n_actions, n_classes)
        The objectives; scale matters for the weighted loss (normalise them with
        :meth:`expost.Utility.normalized` first, as the harness does).
    view : {"ex_post", "as_is"}
        ``"ex_post"`` scores :math:`p^{u_k}(q)` and the decisions of Eq 5 (Ex
        Post Weighting); ``"as_is"`` scores ``q`` itself with ``argmax q``
        decisions (a model trained for one objective, judged by others).
    recall_of : int or array-like of K ints, optional
        The class whose recall is ``emphasized_recall``, for all utilities or one
        per utility; by default each utility's :func:`recall_class`.
    n_jobs : int, default 1
        Threads for the ``"ex_post"`` view, each over its own share of the utilities
        (``-1``: one per CPU). The results do not depend on it.

    Returns
    -------
    dict
        ``{metric: ndarray of shape (K,)}`` for the metrics of :data:`FRONTIER_METRICS`.

    Examples
    --------
    >>> import numpy as np, expost
    >>> q = np.array([[0.9, 0.1], [0.4, 0.6], [0.7, 0.3]])
    >>> us = [expost.Utility.from_class_weights([1.0, r]) for r in (1.0, 9.0)]
    >>> f = frontier(q, [0, 1, 1], us)
    >>> f["classification_utility"].round(3)
    array([0.667, 6.333])
    >>> round(float(f["weighted_loss"][1]), 6) == round(float(expost.weighted_loss(
    ...     expost.weighted_prediction(q, us[1]), [0, 1, 1], us[1], reduction="mean")), 6)
    True
    """
    if view not in ("ex_post", "as_is"):
        raise ValueError(_error("view", "'ex_post' or 'as_is'", describe(view)))
    jobs = check_int(n_jobs, "n_jobs", wrong_type=TypeError)
    if jobs < 1 and jobs != -1:
        raise ValueError(_error("n_jobs", "a positive number of threads or -1", describe(n_jobs)))
    u = stack_utilities(utilities)
    n_k, n_a, m = u.shape
    arr, _ = check_probabilities(q, "q", n_columns=m)
    labels = check_labels(y, "y", n_classes=m, n_samples=arr.shape[0])
    if view == "as_is" and n_a != m:
        raise ValueError(_error("utilities", "square matrices for the 'as_is' view "
                                "(q is over classes)", f"shape {u.shape[1:]}"))
    if recall_of is None:
        recall = np.argmax(u.sum(axis=1), axis=1)
    else:
        per_utility: Any = [recall_of] * n_k if np.ndim(recall_of) == 0 else recall_of
        recall = check_labels(per_utility, "recall_of", n_classes=m, n_samples=n_k)
    with one_blas_thread():
        return batched_metrics(np.asarray(arr, dtype=np.float64), labels, u, view=view,
                               recall_of=recall,
                               n_jobs=(os.cpu_count() or 1) if jobs == -1 else jobs)


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """The engine's products are small: BLAS threads only spin. Limit them while computing."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield
