r"""scikit-learn scorers for the human objective: classification utility and the weighted loss.

Both read labels, not positions: ``y`` values are matched to the Utility's
class labels (default ``0..m-1``) and predicted actions (or probability
columns) to its action labels (a square Utility with default action labels
uses its class labels). Name string classes with
``Utility(..., classes=[...])``.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.metrics import make_scorer

from .._scoring import BASES, classification_utility, weighted_loss
from .._utility import Utility, as_utility
from .._validation import check_choice
from ._common import action_labels, align_proba_columns, label_indices
from ._compat import Scorer

__all__ = ["make_utility_scorer", "make_weighted_loss_scorer"]


def _mean(values: NDArray[np.floating], sample_weight: ArrayLike | None) -> float:
    if sample_weight is None:
        return float(np.mean(values, dtype=np.float64))
    return float(np.average(values, weights=np.asarray(sample_weight, dtype=np.float64)))


def _utility_score(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    *,
    utility: Utility,
    sample_weight: ArrayLike | None = None,
) -> float:
    """Mean realised utility u(y_pred_i, y_true_i), by label."""
    y_idx = label_indices(_column(y_true), list(utility.classes), "y_true", "class")
    a_idx = label_indices(_column(y_pred), action_labels(utility), "y_pred", "action")
    values = classification_utility(a_idx, y_idx, utility, reduction="none")
    return _mean(values, sample_weight)


def _column(y: ArrayLike) -> NDArray[Any]:
    arr = np.asarray(y)
    return arr.ravel() if arr.ndim == 2 and arr.shape[1] == 1 else arr


def make_utility_scorer(utility: Utility | ArrayLike) -> Any:
    r"""A scorer: the mean classification utility of ``predict`` (higher is better).

    .. math:: \text{score} = \frac1n \sum_i u(\hat a_i, y_i)

    the *classification utility* of Table 1 (external alignment, Eq 20), with
    :func:`expost.classification_utility`. Built with
    :func:`sklearn.metrics.make_scorer`, so it works in ``cross_val_score``,
    ``GridSearchCV`` and ``TunedThresholdClassifierCV`` (and takes
    ``sample_weight`` through ``set_score_request``).

    Parameters
    ----------
    utility : Utility or array-like of shape (n_actions, n_classes)
        Predictions are matched to its action labels, ``y`` to its class labels.

    Returns
    -------
    scorer : callable ``scorer(estimator, X, y)``

    Examples
    --------
    >>> import numpy as np
    >>> import expost
    >>> from expost.estimators import ExPostClassifier, make_utility_scorer
    >>> from sklearn.linear_model import LogisticRegression
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0], [4.0], [5.0]])
    >>> y = np.array([0, 0, 0, 1, 0, 1])
    >>> u = expost.Utility.from_class_weights([1.0, 9.0])
    >>> scorer = make_utility_scorer(u)
    >>> clf = ExPostClassifier(LogisticRegression(), utility=u).fit(X, y)
    >>> round(scorer(clf, X, y), 4)  # (1 + 9 + 9) / 6
    3.1667
    """
    u = as_utility(utility)
    return make_scorer(_utility_score, response_method="predict", utility=u)


def _weighted_loss_score(
    y_true: ArrayLike,
    y_pred: NDArray[np.floating],
    *,
    utility: Utility,
    base: Literal["log", "brier"],
    sample_weight: ArrayLike | None = None,
) -> float:
    """Mean utility-weighted loss (Eq 6) of predictions over the utility's actions, by label."""
    y_idx = label_indices(_column(y_true), list(utility.classes), "y_true", "class")
    values = weighted_loss(y_pred, y_idx, utility, base=base, reduction="none")
    return _mean(values, sample_weight)


def _predictions_over_actions(estimator: Any, X: Any) -> tuple[NDArray[np.floating], NDArray[Any]]:
    """The estimator's predictions over actions and their labels.

    ``predict_weighted_proba`` (columns ``actions_``) of the estimator or of a
    Pipeline's last step, else ``predict_proba`` (columns ``classes_``).
    """
    final, Xt = estimator, X
    steps = getattr(estimator, "steps", None)
    if not hasattr(estimator, "predict_weighted_proba") and steps:  # a Pipeline
        if hasattr(steps[-1][1], "predict_weighted_proba"):
            final, Xt = steps[-1][1], estimator[:-1].transform(X)
    if hasattr(final, "predict_weighted_proba"):
        labels = getattr(final, "actions_", final.classes_)
        return np.asarray(final.predict_weighted_proba(Xt)), np.asarray(labels)
    return np.asarray(estimator.predict_proba(X)), np.asarray(estimator.classes_)


class _WeightedLossScorer(Scorer):
    """``make_scorer(_weighted_loss_score, response_method="predict_proba", greater_is_better=False)``
    whose predictions are labelled.

    scikit-learn's scorer hands the score function bare columns (for a binary
    ``predict_proba``, one column); this one reads the predictions with their
    labels (:func:`_predictions_over_actions`) and aligns them to the utility's
    actions before scoring. Everything else -- the sign, ``sample_weight``
    through ``set_score_request`` and metadata routing -- is scikit-learn's.
    """

    def __init__(self, utility: Utility, base: str) -> None:
        super().__init__(
            _weighted_loss_score,
            sign=-1,
            kwargs={"utility": utility, "base": base},
            response_method="predict_proba",
        )

    def __repr__(self) -> str:
        kw = self._kwargs
        return f"make_weighted_loss_scorer({kw['utility']!r}, base={kw['base']!r})"

    def _score(
        self, method_caller: Any, estimator: Any, X: Any, y_true: ArrayLike, **kwargs: Any
    ) -> float:
        u = self._kwargs["utility"]
        p, labels = _predictions_over_actions(estimator, X)
        p = align_proba_columns(
            p, labels, action_labels(u),  # an action the model never predicts has probability 0
            name="estimator's prediction columns", what="action", owner="the utility's",
        )
        return float(self._sign * self._score_func(y_true, p, **{**self._kwargs, **kwargs}))


def make_weighted_loss_scorer(
    utility: Utility | ArrayLike, *, base: Literal["log", "brier"] = "log"
) -> Any:
    r"""A scorer: minus the mean utility-weighted loss of the predictions (greater is better).

    .. math:: \text{score} = -\frac1n \sum_i \ell^u(p_i, y_i), \qquad
              \ell^u(p, y) = \sum_a u(a, y)\, \ell(p, a) \quad \text{(Eq 6)}

    the internal alignment metric of Table 1 (Eq 19), with
    :func:`expost.weighted_loss`. Like scikit-learn's ``neg_log_loss`` it is
    negated (``greater_is_better=False``). The predictions are
    ``predict_weighted_proba`` when the estimator (or a Pipeline's last step)
    has it, the Ex Post prediction :math:`p^u(q)` of :class:`ExPostClassifier`,
    and ``predict_proba`` otherwise (for :class:`UtilityWeightedClassifier`, its
    weighted :math:`P^u`). Columns are matched to the utility's actions by label.

    Parameters
    ----------
    utility : Utility or array-like of shape (n_actions, n_classes)
    base : {"log", "brier"}, default="log"
        The strictly proper base loss.

    Returns
    -------
    scorer : callable ``scorer(estimator, X, y, sample_weight=None)``
        A scikit-learn scorer (``sklearn.metrics.make_scorer`` with
        ``response_method="predict_proba"``, ``greater_is_better=False``) that
        reads the predictions with their labels: ``sample_weight`` is
        requested with ``set_score_request`` and routed by ``cross_validate``
        and ``GridSearchCV`` under metadata routing.

    Examples
    --------
    >>> import numpy as np
    >>> import expost
    >>> from expost.estimators import ExPostClassifier, make_weighted_loss_scorer
    >>> from sklearn.dummy import DummyClassifier
    >>> X, y = np.zeros((4, 1)), np.array([0, 0, 0, 1])
    >>> u = expost.Utility.from_class_weights([1.0, 3.0])
    >>> clf = ExPostClassifier(DummyClassifier(strategy="prior"), utility=u).fit(X, y)
    >>> clf.predict_weighted_proba(X[:1])  # p^u of q = (3/4, 1/4)
    array([[0.5, 0.5]])
    >>> round(make_weighted_loss_scorer(u)(clf, X, y), 4)  # -mean(w_y log 2)
    -1.0397
    """
    u = as_utility(utility)
    return _WeightedLossScorer(u, check_choice(base, "base", BASES))
