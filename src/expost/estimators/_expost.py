r"""Ex Post Weighting as a scikit-learn meta-estimator.

Train (and calibrate) a classifier with its plain loss; apply the human
objective afterwards (Theorem 1 of "Misaligned by Design"): decisions are the
expected-utility maximisers (Eq 5) of the calibrated class probabilities.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import LeaveOneOut, check_cv
from sklearn.utils import Bunch, get_tags, indexable
from sklearn.utils.metadata_routing import MetadataRouter, MethodMapping, process_routing
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d

from .._decisions import decide, expected_utility, weighted_prediction
from .._scaling import apply_scaling, fit_temperature
from .._softmax import _log_probabilities
from .._utility import Utility
from .._validation import _error
from . import _compat
from ._common import (
    align_proba_columns,
    align_utility,
    check_sample_utility,
    label_indices,
    sample_expected_utility,
)
from ._compat import (
    HasMethods,
    StrOptions,
    check_method_params,
    fit_context,
    raise_for_params,
    routing_enabled,
    safe_indexing,
)

__all__ = ["ExPostClassifier"]

_CALIBRATIONS = ("temperature", "sigmoid", "isotonic")


class ExPostClassifier(ClassifierMixin, MetaEstimatorMixin, BaseEstimator):
    r"""Ex Post Weighting: calibrated probabilities, then expected-utility decisions.

    The estimator is fitted with its own (unweighted) loss, optionally
    calibrated with cross-fitting, and the human objective enters only at
    prediction time (Theorem 1):

    .. math::

        \delta^u(q) = \arg\max_a \sum_y u(a, y)\, q_y \quad \text{(Eq 5)}, \qquad
        p^u(q) = \frac{U q}{\iota^\top U q} \quad \text{(Eq 8)}

    where :math:`q` are the (calibrated) class probabilities of ``X``.
    Changing the objective needs no retraining: set ``utility`` and call
    ``predict`` again (a fitted model can be wrapped in
    :class:`sklearn.frozen.FrozenEstimator`, which ``fit`` leaves as it is).

    Parameters
    ----------
    estimator : classifier with ``fit`` and ``predict_proba``
        The probability model. Wrap an already fitted classifier in
        :class:`~sklearn.frozen.FrozenEstimator`; ``fit`` then only reads the
        classes (and, with ``calibration``, uses all of ``X, y`` to calibrate).
    utility : Utility, array-like of shape (n_actions, n_classes) or None, default=None
        The human objective :math:`u(a, y)`. Columns follow ``classes_``
        (sorted labels) by position, or by label when the :class:`~expost.Utility`
        has class labels. Actions may differ from classes; ``actions_`` names
        them. ``None`` is the identity (accuracy-maximising decisions).
    calibration : {"temperature", "sigmoid", "isotonic"} or None, default=None
        How to calibrate the probabilities before deciding. ``"sigmoid"`` and
        ``"isotonic"`` use :class:`~sklearn.calibration.CalibratedClassifierCV`
        (with ``cv``). ``"temperature"`` fits one temperature :math:`T` on
        cross-fitted (out-of-fold) logits, refits the estimator on all data and
        predicts :math:`\operatorname{softmax}(\log p / T)`: with
        ``CalibratedClassifierCV(method="temperature", ensemble=False)`` where
        scikit-learn has it (1.8), which scales the estimator's
        ``decision_function`` when it has one (for a logistic regression, its
        logits: the same as :math:`\log p`) and :math:`\log(p + 10^{-12})`
        otherwise, and weights the fit by a routed ``sample_weight``; on older
        scikit-learn (and for data it refuses: a class with fewer samples than
        folds, leave-one-out) with :func:`expost.fit_temperature` on :math:`\log p`.
    cv : int, cross-validation generator or iterable, default=5
        The cross-fitting splits for ``calibration`` (ignored without it). With
        a :class:`~sklearn.frozen.FrozenEstimator` all data calibrate.

    Attributes
    ----------
    estimator_ : estimator
        The fitted probability model: the fitted clone of ``estimator``, or the
        fitted :class:`~sklearn.calibration.CalibratedClassifierCV` for
        ``"sigmoid"`` / ``"isotonic"``. With ``"temperature"``, the estimator
        refitted on all data (scikit-learn fits it on encoded labels
        ``0..m-1`` when ``y`` holds strings).
    calibrator_ : CalibratedClassifierCV or None
        The fitted ``CalibratedClassifierCV(method="temperature")`` that
        ``predict_proba`` uses; ``None`` for the other calibrations and for the
        fallback on scikit-learn < 1.8.
    temperature_ : float
        The fitted temperature :math:`T` on the scale of :math:`\log p` (only
        with ``calibration="temperature"``; a binary ``decision_function``
        :math:`d`, which scikit-learn scales as the logits :math:`(-d, d)`, is
        converted: :math:`T = 1 / (2\beta)`).
    classes_ : ndarray of shape (n_classes,)
        The class labels (columns of ``predict_proba`` and of the utility).
    actions_ : ndarray of shape (n_actions,)
        The action labels ``predict`` returns: the Utility's action labels, or
        ``classes_`` when the actions are the classes.
    utility_ : Utility
        The utility aligned to ``classes_`` (columns) and ``actions_`` (rows).
    n_features_in_ : int
        Number of features seen during fit (when the estimator reports it).
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Feature names seen during fit (when the estimator reports them).

    See Also
    --------
    UtilityWeightedClassifier : Weighted Training, the alternative the paper compares.
    sklearn.model_selection.FixedThresholdClassifier : the binary special case
        at the Elkan threshold (:func:`expost.elkan_threshold`).

    Examples
    --------
    >>> import numpy as np
    >>> import expost
    >>> from expost.estimators import ExPostClassifier
    >>> from sklearn.linear_model import LogisticRegression
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0], [4.0], [5.0]])
    >>> y = np.array([0, 0, 0, 1, 0, 1])
    >>> u = expost.Utility.from_class_weights([1.0, 9.0])
    >>> clf = ExPostClassifier(LogisticRegression(), utility=u).fit(X, y)
    >>> clf.predict(X)
    array([0, 1, 1, 1, 1, 1])
    >>> LogisticRegression().fit(X, y).predict(X)  # accuracy decisions
    array([0, 0, 0, 0, 1, 1])
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "estimator": [HasMethods(["fit", "predict_proba"])],
        "utility": [Utility, "array-like", None],
        "calibration": [StrOptions(set(_CALIBRATIONS)), None],
        "cv": ["cv_object"],
    }

    def __init__(
        self,
        estimator: Any,
        *,
        utility: Utility | ArrayLike | None = None,
        calibration: str | None = None,
        cv: Any = 5,
    ) -> None:
        self.estimator = estimator
        self.utility = utility
        self.calibration = calibration
        self.cv = cv

    # ------------------------------------------------------------------ fit
    def _calibrator(self) -> CalibratedClassifierCV:
        cal = CalibratedClassifierCV(estimator=self.estimator, method=self.calibration, cv=self.cv)
        if routing_enabled():
            # sample_weight passed to fit weights the calibration too.
            cal.set_fit_request(sample_weight=True)
        return cal

    def _delegates_temperature(self, y: NDArray[Any]) -> bool:
        """Whether ``CalibratedClassifierCV(method="temperature")`` can fit these labels.

        It needs scikit-learn 1.8 and refuses what the fallback handles: no
        samples, leave-one-out, and a class with fewer samples than folds.
        """
        if not _compat.TEMPERATURE_CALIBRATION or len(y) == 0 or isinstance(self.cv, LeaveOneOut):
            return False
        n_folds = self.cv if isinstance(self.cv, int) else getattr(self.cv, "n_splits", None)
        return n_folds is None or int(np.unique(y, return_counts=True)[1].min()) >= n_folds

    @fit_context(prefer_skip_nested_validation=False)  # the inner estimator is not validated
    def fit(self, X: Any, y: Any, **params: Any) -> ExPostClassifier:
        """Fit (and calibrate) the probability model.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data, as the estimator accepts it.
        y : array-like of shape (n_samples,)
            Class labels.
        **params : dict
            Metadata for the estimator's ``fit`` (e.g. ``sample_weight``) and
            the splitter, routed with scikit-learn's metadata routing
            (``sklearn.set_config(enable_metadata_routing=True)``).

        Returns
        -------
        self : ExPostClassifier
        """
        raise_for_params(params, self, "fit")
        X, y = indexable(X, y)
        check_classification_targets(y)
        y = column_or_1d(y, warn=True)
        if routing_enabled():
            routed = process_routing(self, "fit", **params)
        else:
            routed = Bunch(estimator=Bunch(fit={}), splitter=Bunch(split={}))

        self.calibrator_ = None
        if self.calibration == "temperature" and self._delegates_temperature(y):
            self._fit_temperature_calibrator(X, y, routed)
        elif self.calibration == "temperature":
            self._fit_temperature(X, y, routed)
        elif self.calibration is not None:
            self.estimator_ = self._calibrator().fit(X, y, **routed.estimator.fit)
        else:
            self.estimator_ = clone(self.estimator).fit(X, y, **routed.estimator.fit)

        if self.calibrator_ is None:
            self.classes_ = np.asarray(self.estimator_.classes_)
        else:
            self.classes_ = np.asarray(self.calibrator_.classes_)
        self.utility_, self.actions_ = align_utility(self.utility, self.classes_)
        for attr in ("n_features_in_", "feature_names_in_"):
            if hasattr(self.estimator_, attr):
                setattr(self, attr, getattr(self.estimator_, attr))
        return self

    def _fit_temperature_calibrator(self, X: Any, y: NDArray[Any], routed: Bunch) -> None:
        """Temperature scaling by ``CalibratedClassifierCV(method="temperature")``.

        One calibrator on out-of-fold predictions, then a refit on all data
        (``ensemble=False``): the cross-fitting of the fallback. It gets the
        metadata routed to the estimator and the splitter (the routing of both
        paths is the fallback's), and weights its fit by a routed ``sample_weight``.
        """
        cal = CalibratedClassifierCV(
            estimator=self.estimator, method="temperature", cv=self.cv, ensemble=False
        )
        if routing_enabled():
            cal.set_fit_request(sample_weight=True)
        params = {**routed.estimator.fit, **routed.splitter.split}
        self.calibrator_ = cal = cal.fit(X, y, **params)
        (pair,) = cal.calibrated_classifiers_
        self.estimator_ = pair.estimator  # fitted on all data
        beta = _compat.calibrated_temperature(self.calibrator_)
        # scikit-learn scales the decision function when there is one, and makes
        # a binary one (n,) the logits (-d, d): softmax(beta * (-d, d)) is
        # softmax((0, d) / T) for T = 1 / (2 beta), with (0, d) ~ log p for log-odds d.
        binary_decision = len(cal.classes_) == 2 and hasattr(
            self.estimator_, "decision_function"
        )
        self.temperature_ = 1.0 / (2.0 * beta) if binary_decision else 1.0 / beta

    def _fit_temperature(self, X: Any, y: NDArray[Any], routed: Bunch) -> None:
        """The fallback: one :func:`expost.fit_temperature` on out-of-fold log probabilities."""
        fit_params = routed.estimator.fit
        if isinstance(self.estimator, FrozenEstimator):  # all data calibrate
            estimator = self.estimator
            classes = np.asarray(estimator.classes_)
            proba = self._proba_in_order(estimator, X, classes)
        else:  # cross-fitting: out-of-fold probabilities, then a refit on all data
            estimator = clone(self.estimator).fit(X, y, **fit_params)
            classes = np.asarray(estimator.classes_)
            cv = check_cv(self.cv, y, classifier=True)
            proba = np.zeros((len(y), len(classes)))
            for train, test in cv.split(X, y, **routed.splitter.split):
                fold = clone(self.estimator).fit(
                    safe_indexing(X, train),
                    y[train],
                    **check_method_params(X, params=fit_params, indices=train),
                )
                proba[test] = self._proba_in_order(fold, safe_indexing(X, test), classes)
        y_idx = label_indices(y, classes.tolist(), "y", "class", owner="the estimator's")
        # logits log p (softmax(log p) = p); an exact zero (a tree leaf, a class a
        # fold missed) becomes log(tiny), a large finite negative logit
        self.temperature_ = float(fit_temperature(_log_probabilities(proba), y_idx))
        self.estimator_ = estimator

    @staticmethod
    def _proba_in_order(estimator: Any, X: Any, classes: NDArray[Any]) -> NDArray[np.floating]:
        # A training fold may miss a class: put its columns where they belong.
        proba = np.asarray(estimator.predict_proba(X), dtype=np.float64)
        return align_proba_columns(proba, estimator.classes_, classes)

    # ------------------------------------------------------------------ predictions
    def predict_proba(self, X: Any) -> NDArray[np.floating]:
        """Calibrated class probabilities :math:`q` (columns follow ``classes_``).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        check_is_fitted(self)
        if self.calibrator_ is not None:
            return np.asarray(self.calibrator_.predict_proba(X))
        proba = np.asarray(self.estimator_.predict_proba(X))
        if self.calibration == "temperature":
            proba = apply_scaling(_log_probabilities(proba), self.temperature_)
        return proba

    def _sample_utility(self, sample_utility: ArrayLike, n_samples: int) -> NDArray[np.floating]:
        return check_sample_utility(
            sample_utility,
            n_samples=n_samples,
            n_actions=len(self.actions_),
            n_classes=len(self.classes_),
        )

    def decision_utility(self, X: Any, sample_utility: ArrayLike | None = None) -> NDArray[Any]:
        r"""Expected utility of every action (Eq 3): :math:`\bar u(a, q) = (Uq)_a`.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        sample_utility : array-like of shape (n_samples, n_actions, n_classes), optional
            Example-dependent utilities :math:`u_i(a, y)` (Appendix A.3), rows
            in ``actions_`` order, columns in ``classes_`` order; they replace
            ``utility_`` for these samples.

        Returns
        -------
        ndarray of shape (n_samples, n_actions), columns in ``actions_`` order.
        """
        q = self.predict_proba(X)
        if sample_utility is None:
            return expected_utility(q, self.utility_)
        return sample_expected_utility(q, self._sample_utility(sample_utility, q.shape[0]))

    def predict(self, X: Any, sample_utility: ArrayLike | None = None) -> NDArray[Any]:
        r"""Expected-utility-maximising actions (Eq 5), as labels from ``actions_``.

        .. math:: \delta^u(q) = \arg\max_a \sum_y u(a, y)\, q_y

        With ``sample_utility`` each sample is decided with its own
        :math:`u_i` (Appendix A.3). Ties go to the first action.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        sample_utility : array-like of shape (n_samples, n_actions, n_classes), optional
            Routed with ``set_predict_request(sample_utility=True)`` inside
            meta-estimators when metadata routing is enabled.

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        if sample_utility is None:
            idx = decide(self.predict_proba(X), self.utility_)
        else:
            idx = np.argmax(self.decision_utility(X, sample_utility), axis=1)
        return self.actions_[idx]

    def predict_weighted_proba(
        self, X: Any, sample_utility: ArrayLike | None = None
    ) -> NDArray[np.floating]:
        r"""The optimal utility-weighted prediction :math:`p^u(q)` (Theorem 1, Eq 8).

        .. math:: p^u_a(q) = \frac{(Uq)_a}{\iota^\top U q}

        This is what Ex Post Weighting reports; it is the prediction to score
        with the utility-weighted loss (:func:`make_weighted_loss_scorer`).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        sample_utility : array-like of shape (n_samples, n_actions, n_classes), optional

        Returns
        -------
        ndarray of shape (n_samples, n_actions), columns in ``actions_`` order.
        """
        if sample_utility is None:
            return weighted_prediction(self.predict_proba(X), self.utility_)
        eu = self.decision_utility(X, sample_utility)
        total = eu.sum(axis=1, keepdims=True)
        if (total <= 0).any():
            i = int(np.flatnonzero(total[:, 0] <= 0)[0])
            raise ValueError(
                _error(
                    "sample_utility",
                    "positive expected utility for every sample (Eq 1, nondegenerate)",
                    f"zero expected utility for every action at sample {i}",
                )
            )
        return eu / total

    # ------------------------------------------------------------------ sklearn protocol
    def get_metadata_routing(self) -> MetadataRouter:
        """Get metadata routing of this object.

        ``predict`` consumes ``sample_utility`` (request it with
        ``set_predict_request``); ``fit`` routes metadata to the estimator's
        ``fit`` (and, with calibration, to the cross-validation splitter).

        Returns
        -------
        routing : MetadataRouter
        """
        router = MetadataRouter(owner=self).add_self_request(self)
        fit_to_fit = MethodMapping().add(caller="fit", callee="fit")
        if self.calibration in ("sigmoid", "isotonic"):
            router.add(estimator=self._calibrator(), method_mapping=fit_to_fit)
        else:
            router.add(estimator=self.estimator, method_mapping=fit_to_fit)
            if self.calibration == "temperature":
                fit_to_split = MethodMapping().add(caller="fit", callee="split")
                router.add(splitter=self.cv, method_mapping=fit_to_split)
        return router

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = get_tags(self.estimator).input_tags.sparse
        return tags
