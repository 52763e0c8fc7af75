"""scikit-learn integration: Ex Post Weighting and Weighted Training as meta-estimators.

* :class:`ExPostClassifier` -- fit (and calibrate) any probabilistic classifier
  unweighted; decide by expected utility (Eq 5), report :math:`p^u(q)` (Theorem 1).
* :class:`UtilityWeightedClassifier` -- Weighted Training for any estimator
  with ``sample_weight``, by data expansion (the utility-weighted loss, Eq 6).
* :func:`make_utility_scorer`, :func:`make_weighted_loss_scorer` -- the two
  alignment metrics of Table 1 as scorers for ``cross_val_score``,
  ``GridSearchCV`` and ``TunedThresholdClassifierCV``.

This subpackage needs scikit-learn (``pip install expost[sklearn]``); the core
``import expost`` does not import it.
"""

from ._expost import ExPostClassifier
from ._scorers import make_utility_scorer, make_weighted_loss_scorer
from ._weighted import UtilityWeightedClassifier

__all__ = [
    "ExPostClassifier",
    "UtilityWeightedClassifier",
    "make_utility_scorer",
    "make_weighted_loss_scorer",
]
