r"""Weighted Training as a scikit-learn meta-estimator: the utility-weighted loss, by expansion."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, clone
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import get_tags, indexable
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d

from .._utility import Utility
from .._validation import _error
from ._common import align_proba_columns, align_utility, check_sample_utility
from ._compat import HasMethods, check_sample_weight, fit_context, safe_indexing

__all__ = ["UtilityWeightedClassifier"]


class UtilityWeightedClassifier(ClassifierMixin, MetaEstimatorMixin, BaseEstimator):
    r"""Weighted Training: fit a classifier that takes ``sample_weight`` on the weighted loss.

    The model is trained to minimise the sample mean of the utility-weighted
    loss (Eq 6),

    .. math:: \ell^u(p, y) = \sum_a u(a, y)\, \ell(p, a),

    by *data expansion*: sample :math:`i` is repeated once per action
    :math:`a` with :math:`u(a, y_i) > 0`, labelled :math:`a`, with sample
    weight :math:`u(a, y_i)`. For a learner whose weighted objective is
    :math:`\sum_i w_i \ell(p(x_i), y_i)` this *is* the utility-weighted loss
    (for the log loss, the doubly-weighted cross-entropy, Eq 24). Class
    weights (a diagonal utility, Eq 14) need no expansion: they become the
    sample weights :math:`w_{y_i}` (Eq 15). With ``normalize=True`` the
    utility is first rescaled on the training prior :math:`\mu` (Eq 21,
    :meth:`expost.Utility.normalized`), which keeps the loss of predicting
    :math:`\mu` unchanged.

    Decisions are the argmax of the weighted model's own predictions (Eq 9),
    :math:`\arg\max_a P^u_a`, as Weighted Training prescribes.

    Parameters
    ----------
    estimator : classifier with ``fit(X, y, sample_weight=...)`` and ``predict_proba``
        A learner with a proper loss (e.g. LogisticRegression); for it the
        expansion optimises exactly the utility-weighted loss.
    utility : Utility, array-like of shape (n_classes, n_classes) or None, default=None
        Square: the actions are the classes. Columns follow ``classes_`` by
        position, or by label for a :class:`~expost.Utility` with class
        labels. ``None`` is the identity (plain training).
    normalize : bool, default=True
        Rescale the utility on the (sample-weighted) training prior, Eq 21.
        Scaling leaves :math:`\arg\max` decisions unchanged but changes the
        effective regularisation of a penalised learner.

    Attributes
    ----------
    estimator_ : estimator
        The clone of ``estimator`` fitted on the expanded data.
    classes_ : ndarray of shape (n_classes,)
        The class labels (columns of ``predict_proba``).
    utility_ : Utility or None
        The (normalised) utility that defined the training weights, aligned to
        ``classes_``; ``None`` after a fit with ``sample_utility``.
    normalization_ : float
        The Eq 21 factor the utilities were multiplied by (1.0 without ``normalize``).
    n_features_in_ : int
        Number of features seen during fit (when the estimator reports it).
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Feature names seen during fit (when the estimator reports them).

    See Also
    --------
    ExPostClassifier : Ex Post Weighting, which trains unweighted and applies
        the utility afterwards (Theorem 1).

    Examples
    --------
    >>> import numpy as np
    >>> import expost
    >>> from expost.estimators import UtilityWeightedClassifier
    >>> from sklearn.linear_model import LogisticRegression
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0], [4.0], [5.0]])
    >>> y = np.array([0, 0, 0, 1, 0, 1])
    >>> u = expost.Utility.from_class_weights([1.0, 9.0])
    >>> clf = UtilityWeightedClassifier(LogisticRegression(), utility=u).fit(X, y)
    >>> clf.predict(X)
    array([0, 1, 1, 1, 1, 1])
    >>> clf.utility_.class_weights.round(4)  # Eq 21 on the prior (2/3, 1/3)
    array([0.1785, 1.6064])
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "estimator": [HasMethods(["fit", "predict_proba"])],
        "utility": [Utility, "array-like", None],
        "normalize": ["boolean"],
    }

    def __init__(
        self,
        estimator: Any,
        *,
        utility: Utility | ArrayLike | None = None,
        normalize: bool = True,
    ) -> None:
        self.estimator = estimator
        self.utility = utility
        self.normalize = normalize

    @staticmethod
    def _normalization(
        u: NDArray[np.float64], prior: NDArray[np.float64], classes: NDArray[Any]
    ) -> float:
        """The Eq 21 factor k for utility matrix ``u`` on ``prior`` (via Utility.normalized)."""
        if (prior <= 0).any():
            j = int(np.flatnonzero(prior <= 0)[0])
            raise ValueError(
                _error(
                    "sample_weight",
                    "positive total weight on every class for Eq 21 normalisation "
                    "(or pass normalize=False)",
                    f"zero total weight on class {classes[j]!r}",
                )
            )
        normalized = Utility(u).normalized(prior)
        return float(normalized.matrix.sum() / u.sum())

    @fit_context(prefer_skip_nested_validation=False)  # the inner estimator is not validated
    def fit(
        self,
        X: Any,
        y: Any,
        sample_weight: ArrayLike | None = None,
        sample_utility: ArrayLike | None = None,
    ) -> UtilityWeightedClassifier:
        r"""Fit the estimator on the utility-weighted loss.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), optional
            Frequency weights; they multiply the utility weights.
        sample_utility : array-like of shape (n_samples, n_classes, n_classes), optional
            Example-dependent utilities :math:`u_i(a, y)` (Appendix A.3:
            :math:`c(x, y, a)`); sample :math:`i` is expanded with weights
            :math:`u_i(a, y_i)`, columns and rows in ``classes_`` order. Replaces
            ``utility`` (pass one of the two). With ``normalize`` the Eq 21
            factor is that of their class-conditional mean
            :math:`\bar u(a, y) = \operatorname{mean}_{i: y_i = y} u_i(a, y)`
            (weighted by ``sample_weight``),
            which gives the same mean training loss at the prior as Eq 21.
            Request it with ``set_fit_request(sample_utility=True)`` inside
            meta-estimators when metadata routing is enabled.

        Returns
        -------
        self : UtilityWeightedClassifier
        """
        X, y = indexable(X, y)
        classes, y_idx = _encode_labels(y)
        sw = check_sample_weight(sample_weight, X, dtype=np.float64)
        prior = _training_prior(y_idx, sw, classes)
        if sample_utility is None:
            utility, k = self._training_utility(classes, prior)
            weights = utility.matrix.T[y_idx]  # (n, n_actions): u(a, y_i)
            self.utility_: Utility | None = Utility(
                utility.matrix * k, actions=utility.actions, classes=utility.classes)
        else:
            weights, k = self._sample_utility_weights(sample_utility, y_idx, sw, prior, classes)
            self.utility_ = None
        weights = sw[:, None] * weights * k  # weight of the copy (sample i, action a)
        self.estimator_ = self._fit_expanded(X, classes, weights)
        self.classes_ = classes
        self.normalization_ = float(k)
        for attr in ("n_features_in_", "feature_names_in_"):
            if hasattr(self.estimator_, attr):
                setattr(self, attr, getattr(self.estimator_, attr))
        return self

    def _training_utility(
        self, classes: NDArray[Any], prior: NDArray[np.float64]
    ) -> tuple[Utility, float]:
        """The utility aligned to ``classes`` and its Eq 21 factor (1.0 without ``normalize``)."""
        utility, _ = align_utility(self.utility, classes, actions_are_classes=True)
        use_eq21 = self.normalize and len(classes) > 1
        k = self._normalization(utility.matrix, prior, classes) if use_eq21 else 1.0
        return utility, k

    def _sample_utility_weights(
        self,
        sample_utility: ArrayLike,
        y_idx: NDArray[np.intp],
        sw: NDArray[np.float64],
        prior: NDArray[np.float64],
        classes: NDArray[Any],
    ) -> tuple[NDArray[np.floating], float]:
        """``u_i(a, y_i)`` per sample and action, and the Eq 21 factor of their class means."""
        if self.utility is not None:
            raise ValueError(
                _error(
                    "sample_utility",
                    "None when the estimator has a `utility` (pass one of the two)",
                    "an array while utility is set",
                )
            )
        n, m = len(y_idx), len(classes)
        su = check_sample_utility(sample_utility, n_samples=n, n_actions=m, n_classes=m)
        weights = su[np.arange(n), :, y_idx]  # (n, n_actions): u_i(a, y_i)
        if not (self.normalize and m > 1):
            return weights, 1.0
        mean_u = np.zeros((m, m))
        for c in range(m):  # class-conditional (sample-weighted) mean utility
            mask = y_idx == c
            total = sw[mask].sum()
            if total > 0:
                mean_u[:, c] = sw[mask] @ su[mask, :, c] / total
        return weights, self._normalization(mean_u, prior, classes)

    def _fit_expanded(self, X: Any, classes: NDArray[Any], weights: NDArray[np.floating]) -> Any:
        """Fit a clone on the expanded data: a copy of sample i labelled a, weight ``weights[i, a]``."""
        rows, acts = np.nonzero(weights)  # sample-major: copies of a sample stay together
        if rows.size == 0:
            raise ValueError(
                _error("utility", "positive utility u(a, y_i) for some sample", "all zero weights")
            )
        X_fit = X if np.array_equal(rows, np.arange(len(weights))) else safe_indexing(X, rows)
        return clone(self.estimator).fit(X_fit, classes[acts], sample_weight=weights[rows, acts])

    def predict_proba(self, X: Any) -> NDArray[np.floating]:
        r"""The weighted model's predictions :math:`P^u` (columns follow ``classes_``).

        Trained on the utility-weighted loss, they estimate :math:`p^u(q)`
        (Theorem 1), not the class probabilities :math:`q`; recover those with
        :func:`expost.recover_posterior` (Theorem 2).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        check_is_fitted(self)
        proba = np.asarray(self.estimator_.predict_proba(X))
        # an action with zero weight everywhere is never a training label: probability 0
        return align_proba_columns(proba, self.estimator_.classes_, self.classes_)

    def predict(self, X: Any) -> NDArray[Any]:
        r"""Weighted Training's decisions, :math:`\arg\max_a P^u_a(x)` (Eq 9).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = get_tags(self.estimator).input_tags.sparse
        return tags


def _encode_labels(y: Any) -> tuple[NDArray[Any], NDArray[np.intp]]:
    """The sorted class labels and each sample's class index."""
    check_classification_targets(y)
    y = column_or_1d(y, warn=True)
    encoder = LabelEncoder().fit(y)
    return encoder.classes_, encoder.transform(y)


def _training_prior(
    y_idx: NDArray[np.intp], sw: NDArray[np.float64], classes: NDArray[Any]
) -> NDArray[np.float64]:
    r"""The sample-weighted class frequencies :math:`\mu` of the training data."""
    prior = np.bincount(y_idx, weights=sw, minlength=len(classes))
    if prior.sum() <= 0:
        raise ValueError(_error("sample_weight", "a positive total weight", "all zeros"))
    return prior / prior.sum()
