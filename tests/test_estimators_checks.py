"""scikit-learn's own estimator checks for the two meta-estimators (LogisticRegression inside)."""

from __future__ import annotations

import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.utils.estimator_checks import parametrize_with_checks
from threadpoolctl import threadpool_limits

from expost.estimators import ExPostClassifier, UtilityWeightedClassifier


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    # The checks fit hundreds of tiny models; BLAS threads only contend on them.
    with threadpool_limits(limits=1):
        yield


@parametrize_with_checks(
    [
        ExPostClassifier(LogisticRegression()),
        UtilityWeightedClassifier(LogisticRegression()),
        # the cross-fitted calibrations are estimators in good standing too
        ExPostClassifier(LogisticRegression(), calibration="temperature"),
        ExPostClassifier(LogisticRegression(), calibration="sigmoid", cv=3),
    ]
)
# random-label checks: the NLL-optimal temperature of pure noise is at the bound
@pytest.mark.filterwarnings("ignore:fit_temperature. the optimal temperature:RuntimeWarning")
def test_sklearn_compatible(estimator, check):
    check(estimator)
