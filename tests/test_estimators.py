"""expost.estimators: Ex Post Weighting and Weighted Training as scikit-learn meta-estimators."""

from __future__ import annotations

import pickle
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
import sklearn
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import make_classification
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import (
    FixedThresholdClassifier,
    GridSearchCV,
    KFold,
    StratifiedKFold,
    TunedThresholdClassifierCV,
    cross_val_score,
    cross_validate,
)
from sklearn.naive_bayes import GaussianNB
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError
from threadpoolctl import threadpool_limits

import expost
import expost.estimators._compat
from expost.estimators import (
    ExPostClassifier,
    UtilityWeightedClassifier,
    make_utility_scorer,
    make_weighted_loss_scorer,
)
from strategies import class_weights, utilities

U3 = expost.Utility([[4.0, 0.0, 0.5], [0.0, 1.0, 0.0], [1.0, 0.2, 6.0]])  # full 3 x 3


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    # Many tiny fits: BLAS threads only contend on them (2-core CI).
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def binary():
    return make_classification(
        n_samples=400, n_features=5, n_informative=3, weights=[0.8, 0.2], random_state=0
    )


@pytest.fixture(scope="module")
def multi():
    return make_classification(
        n_samples=450, n_features=6, n_informative=4, n_classes=3, random_state=1
    )


@pytest.fixture(scope="module")
def frozen_multi(multi):
    X, y = multi
    return FrozenEstimator(LogisticRegression().fit(X, y))


@pytest.fixture
def temperature_fallback(monkeypatch):
    """Force the fallback temperature scaling (expost.fit_temperature), as on scikit-learn < 1.8."""
    monkeypatch.setattr(expost.estimators._compat, "TEMPERATURE_CALIBRATION", False)


def _margin_mask(eu: np.ndarray, tol: float = 1e-9) -> np.ndarray:
    """Samples whose best action wins by more than ``tol`` (no floating-point near-ties)."""
    top2 = np.sort(eu, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0] > tol


# ---------------------------------------------------------------- import hygiene
def test_import_expost_does_not_import_sklearn():
    code = "import sys, expost; print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------- binary: Elkan threshold
@pytest.mark.parametrize(
    "utility",
    [
        expost.Utility.from_class_weights([1.0, 7.0]),
        expost.Utility([[3.0, 1.0], [0.0, 5.0]]),  # full: threshold 3 / 7
        expost.Utility.from_costs([[0.0, 1.0], [20.0, 0.0]]),
    ],
    ids=["class-weights", "full", "costs"],
)
def test_binary_decisions_equal_fixed_threshold_at_elkan(binary, utility):
    X, y = binary
    t = expost.elkan_threshold(utility)
    ep = ExPostClassifier(LogisticRegression(), utility=utility).fit(X, y)
    ftc = FixedThresholdClassifier(
        LogisticRegression(), threshold=t, response_method="predict_proba"
    ).fit(X, y)
    q1 = ep.predict_proba(X)[:, 1]
    away = np.abs(q1 - t) > 1e-12  # exact ties: >= vs argmax's first index
    assert away.all()
    np.testing.assert_array_equal(ep.predict(X), ftc.predict(X))
    # not vacuous: the objective moves decisions away from plain accuracy
    assert (ep.predict(X) != LogisticRegression().fit(X, y).predict(X)).sum() > 0


def test_binary_string_labels_and_frozen_match_fixed_threshold(binary):
    X, y = binary
    ys = np.array(["healthy", "sick"])[y]
    u = expost.Utility.from_class_weights([1.0, 9.0], classes=["healthy", "sick"])
    lr = LogisticRegression().fit(X, ys)
    ep = ExPostClassifier(FrozenEstimator(lr), utility=u).fit(X, ys)
    ftc = FixedThresholdClassifier(
        FrozenEstimator(lr), threshold=expost.elkan_threshold(u), response_method="predict_proba"
    ).fit(X, ys)
    np.testing.assert_array_equal(ep.predict(X), ftc.predict(X))
    assert set(ep.predict(X)) == {"healthy", "sick"}


# ---------------------------------------------------------------- multi-class decisions
def test_multiclass_decisions_equal_core_decide(multi):
    X, y = multi
    ep = ExPostClassifier(LogisticRegression(C=0.5), utility=U3).fit(X, y)
    q = LogisticRegression(C=0.5).fit(X, y).predict_proba(X)
    np.testing.assert_allclose(ep.predict_proba(X), q)
    np.testing.assert_array_equal(ep.predict(X), expost.decide(q, U3))
    np.testing.assert_allclose(ep.decision_utility(X), q @ U3.matrix.T)
    np.testing.assert_allclose(ep.predict_weighted_proba(X), expost.weighted_prediction(q, U3))
    np.testing.assert_array_equal(ep.actions_, [0, 1, 2])
    assert ep.utility_ == expost.Utility(U3.matrix, classes=[0, 1, 2])


def test_identity_utility_is_plain_accuracy_decisions(multi):
    X, y = multi
    ep = ExPostClassifier(LogisticRegression()).fit(X, y)
    np.testing.assert_array_equal(ep.predict(X), LogisticRegression().fit(X, y).predict(X))
    np.testing.assert_array_equal(ep.utility_.matrix, np.eye(3))


def test_string_labels_align_by_label(multi):
    X, y = multi
    names = np.array(["ant", "bee", "cat"])
    ys = names[y]
    # the same objective written in another class order, with labels
    perm = [2, 0, 1]
    labelled = expost.Utility(
        U3.matrix[np.ix_(perm, perm)], actions=names[perm].tolist(), classes=names[perm].tolist()
    )
    ep = ExPostClassifier(LogisticRegression(), utility=labelled).fit(X, ys)
    np.testing.assert_array_equal(ep.classes_, names)
    np.testing.assert_array_equal(ep.actions_, names)
    np.testing.assert_array_equal(ep.utility_.matrix, U3.matrix)
    q = LogisticRegression().fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(ep.predict(X), names[expost.decide(q, U3)])


def test_positional_utility_follows_sorted_classes(multi):
    X, y = multi
    ys = np.array([30, 10, 20])[y]  # sorted classes_ = [10, 20, 30]
    ep = ExPostClassifier(LogisticRegression(), utility=U3).fit(X, ys)
    np.testing.assert_array_equal(ep.classes_, [10, 20, 30])
    q = ep.predict_proba(X)
    np.testing.assert_array_equal(ep.predict(X), ep.classes_[expost.decide(q, U3)])


def test_actions_other_than_classes(multi):
    X, y = multi
    u = expost.Utility([[1.0, 1.0, 0.0], [0.0, 0.3, 5.0]], actions=["treat", "wait"])
    ep = ExPostClassifier(LogisticRegression(), utility=u).fit(X, y)
    np.testing.assert_array_equal(ep.actions_, ["treat", "wait"])
    q = ep.predict_proba(X)
    np.testing.assert_array_equal(ep.predict(X), np.array(["treat", "wait"])[expost.decide(q, u)])
    assert ep.decision_utility(X).shape == (len(y), 2)
    np.testing.assert_allclose(ep.predict_weighted_proba(X).sum(axis=1), 1.0)
    # default action labels for a non-square utility are positions
    ep2 = ExPostClassifier(LogisticRegression(), utility=u.matrix).fit(X, y)
    np.testing.assert_array_equal(ep2.actions_, [0, 1])


@settings(max_examples=25)
@given(data=st.data())
def test_decisions_invariant_to_scale_and_column_shifts(frozen_multi, multi, data):
    """Eq 5 argmax ignores positive scaling and per-class constants (footnote 6)."""
    X, y = multi
    u = data.draw(utilities(3, n_actions=data.draw(st.integers(2, 4))))
    scale = data.draw(st.floats(0.01, 100.0))
    shift = np.array(data.draw(st.lists(st.floats(0.0, 10.0), min_size=3, max_size=3)))
    ep = ExPostClassifier(frozen_multi, utility=u).fit(X, y)
    ep2 = ExPostClassifier(frozen_multi, utility=u.matrix * scale + shift).fit(X, y)
    q = ep.predict_proba(X)
    eu = expost.expected_utility(q, u)
    ok = _margin_mask(eu, 1e-9 * (1 + np.abs(eu).max()))
    np.testing.assert_array_equal(ep.predict(X)[ok], ep2.predict(X)[ok])
    np.testing.assert_array_equal(ep.predict(X), expost.decide(q, u))
    # p^u changes with the shift (it is not invariant), but always sums to one
    np.testing.assert_allclose(ep2.predict_weighted_proba(X).sum(axis=1), 1.0)


# ---------------------------------------------------------------- example-dependent utility
def test_predict_with_sample_utility_decides_per_sample(frozen_multi, multi):
    X, y = multi
    u2 = expost.Utility.from_class_weights([1.0, 1.0, 30.0])
    h = len(y) // 2
    su = np.concatenate(
        [np.broadcast_to(U3.matrix, (h, 3, 3)), np.broadcast_to(u2.matrix, (len(y) - h, 3, 3))]
    )
    ep = ExPostClassifier(frozen_multi, utility=U3).fit(X, y)
    expected = np.concatenate(
        [ep.predict(X[:h]), ExPostClassifier(frozen_multi, utility=u2).fit(X, y).predict(X[h:])]
    )
    np.testing.assert_array_equal(ep.predict(X, sample_utility=su), expected)
    pw = ep.predict_weighted_proba(X, sample_utility=su)
    np.testing.assert_allclose(pw[:h], ep.predict_weighted_proba(X[:h]))
    np.testing.assert_allclose(
        pw[h:], expost.weighted_prediction(ep.predict_proba(X[h:]), u2)
    )


def test_sample_utility_routed_through_pipeline(multi):
    X, y = multi
    rng = np.random.default_rng(0)
    su = rng.uniform(0.0, 5.0, size=(len(y), 3, 3))
    with sklearn.config_context(enable_metadata_routing=True):
        ep = ExPostClassifier(LogisticRegression(), utility=U3).set_predict_request(
            sample_utility=True
        )
        pipe = make_pipeline(StandardScaler(), ep).fit(X, y)
        got = pipe.predict(X, sample_utility=su)
    q = pipe.predict_proba(X)
    np.testing.assert_array_equal(got, np.argmax(np.einsum("iay,iy->ia", su, q), axis=1))


def test_sample_utility_validation(frozen_multi, multi):
    X, y = multi
    ep = ExPostClassifier(frozen_multi, utility=U3).fit(X, y)
    good = np.ones((10, 3, 3))
    with pytest.raises(ValueError, match=r"`sample_utility` must be an array of shape .*\(10, 3, 3\)"):
        ep.predict(X[:10], sample_utility=np.ones((10, 2, 3)))
    bad = good.copy()
    bad[3, 1, 2] = -1.0
    with pytest.raises(ValueError, match=r"`sample_utility` must be nonnegative.*sample 3"):
        ep.predict(X[:10], sample_utility=bad)
    bad[3, 1, 2] = np.nan
    with pytest.raises(ValueError, match="`sample_utility` must be finite"):
        ep.decision_utility(X[:10], sample_utility=bad)
    with pytest.raises(TypeError, match="`sample_utility` must be a numeric"):
        ep.predict(X[:10], sample_utility="U")
    with pytest.raises(ValueError, match="positive expected utility"):
        ep.predict_weighted_proba(X[:10], sample_utility=np.zeros((10, 3, 3)))


# ---------------------------------------------------------------- calibration
def test_sigmoid_and_isotonic_use_calibrated_classifier_cv(multi):
    X, y = multi
    for method in ("sigmoid", "isotonic"):
        ep = ExPostClassifier(LogisticRegression(), utility=U3, calibration=method, cv=3).fit(X, y)
        ref = CalibratedClassifierCV(LogisticRegression(), method=method, cv=3).fit(X, y)
        assert isinstance(ep.estimator_, CalibratedClassifierCV)
        np.testing.assert_allclose(ep.predict_proba(X), ref.predict_proba(X))
        np.testing.assert_array_equal(ep.predict(X), expost.decide(ref.predict_proba(X), U3))


def test_temperature_is_cross_fitted_with_core_fit(multi, temperature_fallback):
    X, y = multi
    model = GaussianNB()  # overconfident on correlated features: T > 1
    ep = ExPostClassifier(model, utility=U3, calibration="temperature", cv=4).fit(X, y)
    oof = np.zeros((len(y), 3))
    for train, test in StratifiedKFold(4).split(X, y):
        oof[test] = clone(model).fit(X[train], y[train]).predict_proba(X[test])
    logits = np.log(np.maximum(oof, np.finfo(float).tiny))
    t = expost.fit_temperature(logits, y)
    assert ep.temperature_ == pytest.approx(t, rel=1e-12)
    assert ep.temperature_ > 1.0
    full = clone(model).fit(X, y).predict_proba(X)
    q = expost.apply_scaling(np.log(np.maximum(full, np.finfo(float).tiny)), t)
    np.testing.assert_allclose(ep.predict_proba(X), q, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(ep.predict(X), expost.decide(q, U3))


def test_temperature_of_an_underconfident_model_is_below_one(multi):
    X, y = multi
    ep = ExPostClassifier(LogisticRegression(C=1e-3), calibration="temperature").fit(X, y)
    assert ep.temperature_ < 1.0


def test_frozen_estimator_is_not_refitted(multi, temperature_fallback):
    X, y = multi
    lr = LogisticRegression().fit(X[:200], y[:200])
    coef = lr.coef_.copy()
    ep = ExPostClassifier(FrozenEstimator(lr), utility=U3).fit(X[200:], y[200:])
    np.testing.assert_array_equal(lr.coef_, coef)
    np.testing.assert_allclose(ep.predict_proba(X), lr.predict_proba(X))
    # with temperature, all the given data calibrate the frozen model
    ept = ExPostClassifier(FrozenEstimator(lr), calibration="temperature").fit(X[200:], y[200:])
    logits = np.log(lr.predict_proba(X[200:]))
    assert ept.temperature_ == pytest.approx(expost.fit_temperature(logits, y[200:]), rel=1e-12)
    np.testing.assert_array_equal(lr.coef_, coef)


# ---------------------------------------------------------------- metadata routing of fit
def test_fit_metadata_is_routed_to_the_estimator(multi):
    X, y = multi
    w = np.random.default_rng(1).uniform(0.1, 3.0, len(y))
    with pytest.raises(ValueError, match="enable_metadata_routing"):
        ExPostClassifier(LogisticRegression()).fit(X, y, sample_weight=w)
    with sklearn.config_context(enable_metadata_routing=True):
        inner = LogisticRegression().set_fit_request(sample_weight=True)
        ep = ExPostClassifier(inner).fit(X, y, sample_weight=w)
        ept = ExPostClassifier(inner, calibration="temperature").fit(X, y, sample_weight=w)
        eps = ExPostClassifier(inner, calibration="sigmoid").fit(X, y, sample_weight=w)
    ref = LogisticRegression().fit(X, y, sample_weight=w)
    np.testing.assert_allclose(ep.estimator_.coef_, ref.coef_)
    np.testing.assert_allclose(ept.estimator_.coef_, ref.coef_)
    assert np.isfinite(eps.predict_proba(X)).all()


def test_uwc_sample_utility_routed_by_cross_validate(multi):
    X, y = multi
    su = np.random.default_rng(2).uniform(0.0, 3.0, size=(len(y), 3, 3))
    cv = KFold(3)
    with sklearn.config_context(enable_metadata_routing=True):
        est = UtilityWeightedClassifier(LogisticRegression()).set_fit_request(
            sample_utility=True, sample_weight=False
        )
        res = cross_validate(
            est, X, y, cv=cv, params={"sample_utility": su}, return_estimator=True
        )
    for (train, _), fitted in zip(cv.split(X), res["estimator"], strict=True):
        ref = UtilityWeightedClassifier(LogisticRegression()).fit(
            X[train], y[train], sample_utility=su[train]
        )
        np.testing.assert_allclose(fitted.estimator_.coef_, ref.estimator_.coef_)


# ---------------------------------------------------------------- Weighted Training
def test_class_weights_become_sample_weights(multi):
    X, y = multi
    w = np.array([1.0, 5.0, 0.5])
    u = expost.Utility.from_class_weights(w)
    uwc = UtilityWeightedClassifier(LogisticRegression(), utility=u).fit(X, y)
    prior = np.bincount(y) / len(y)
    k = u.normalized(prior).class_weights / w
    ref = LogisticRegression().fit(X, y, sample_weight=(w * k)[y])
    np.testing.assert_allclose(uwc.estimator_.coef_, ref.coef_, rtol=1e-10)
    np.testing.assert_allclose(uwc.predict_proba(X), ref.predict_proba(X), rtol=1e-10)
    np.testing.assert_array_equal(uwc.predict(X), np.argmax(ref.predict_proba(X), axis=1))
    assert uwc.normalization_ == pytest.approx(k[0])


def test_full_utility_trains_on_the_expanded_data(multi):
    X, y = multi
    su = np.random.default_rng(3).uniform(0.0, 2.0, size=(len(y), 3, 3))
    su[su < 0.5] = 0.0  # some zero utilities: those copies are dropped
    uwc = UtilityWeightedClassifier(LogisticRegression(), normalize=False).fit(
        X, y, sample_utility=su
    )
    # reference expansion: sample i repeated once per action a, weight u_i(a, y_i)
    idx = np.repeat(np.arange(len(y)), 3)
    acts = np.tile(np.arange(3), len(y))
    wts = su[idx, acts, y[idx]]
    keep = wts > 0
    ref = LogisticRegression().fit(X[idx[keep]], acts[keep], sample_weight=wts[keep])
    np.testing.assert_allclose(uwc.estimator_.coef_, ref.coef_, rtol=1e-8, atol=1e-10)
    assert uwc.utility_ is None


def test_sample_utility_equal_to_utility_trains_the_same(multi):
    X, y = multi
    a = UtilityWeightedClassifier(LogisticRegression(), utility=U3).fit(X, y)
    su = np.broadcast_to(U3.matrix, (len(y), 3, 3))
    b = UtilityWeightedClassifier(LogisticRegression()).fit(X, y, sample_utility=su)
    assert b.normalization_ == pytest.approx(a.normalization_, rel=1e-12)
    np.testing.assert_allclose(b.estimator_.coef_, a.estimator_.coef_, rtol=1e-8)


@settings(max_examples=20)
@given(data=st.data())
def test_eq21_normalisation_of_sample_utilities(data):
    """k makes the (weighted) mean training loss of predicting the prior equal its entropy."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    n, m = 60, 3
    y = np.arange(n) % m
    su = rng.uniform(0.0, 5.0, size=(n, m, m)) * (rng.random((n, m, m)) < 0.7)
    su[np.arange(n), y, y] += 0.1  # nondegenerate
    sw = rng.uniform(0.1, 2.0, n)
    X = rng.normal(size=(n, 2))
    uwc = UtilityWeightedClassifier(LogisticRegression()).fit(
        X, y, sample_weight=sw, sample_utility=su
    )
    mu = np.bincount(y, weights=sw) / sw.sum()
    k = uwc.normalization_
    loss_at_prior = k * np.sum(sw[:, None] * su[np.arange(n), :, y] * -np.log(mu)) / sw.sum()
    assert loss_at_prior == pytest.approx(-np.sum(mu * np.log(mu)), rel=1e-10)


@settings(max_examples=15)
@given(w=class_weights(3))
def test_uwc_predict_is_argmax_of_weighted_model(multi, w):
    """Eq 9: Weighted Training decides by argmax of its own P^u."""
    X, y = multi
    uwc = UtilityWeightedClassifier(LogisticRegression(), utility=expost.Utility.from_class_weights(w))
    uwc.fit(X, y)
    p = uwc.predict_proba(X)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    np.testing.assert_array_equal(uwc.predict(X), uwc.classes_[np.argmax(p, axis=1)])


def test_uwc_zero_weight_action_gets_zero_probability(multi):
    X, y = multi
    u = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 1.0, 1.0]])  # action 1 never pays
    uwc = UtilityWeightedClassifier(LogisticRegression(), utility=u).fit(X, y)
    p = uwc.predict_proba(X)
    assert p.shape == (len(y), 3)
    np.testing.assert_array_equal(p[:, 1], 0.0)
    assert not (uwc.predict(X) == 1).any()


def test_uwc_errors(multi):
    X, y = multi
    with pytest.raises(ValueError, match="square utility whose actions are the classes"):
        UtilityWeightedClassifier(LogisticRegression(), utility=np.ones((2, 3))).fit(X, y)
    with pytest.raises(ValueError, match="`sample_utility` must be None when the estimator has"):
        UtilityWeightedClassifier(LogisticRegression(), utility=U3).fit(
            X, y, sample_utility=np.ones((len(y), 3, 3))
        )
    w = np.where(y == 2, 0.0, 1.0)
    with pytest.raises(ValueError, match="`sample_weight` must be positive total weight"):
        UtilityWeightedClassifier(LogisticRegression()).fit(X, y, sample_weight=w)
    # without normalisation, a zero-weight class is simply never trained on
    uwc = UtilityWeightedClassifier(LogisticRegression(), normalize=False).fit(X, y, sample_weight=w)
    np.testing.assert_array_equal(uwc.predict_proba(X)[:, 2], 0.0)


# ---------------------------------------------------------------- shared input handling
def test_utility_shape_and_label_errors(multi):
    X, y = multi
    with pytest.raises(ValueError, match="`utility` must be 3 columns"):
        ExPostClassifier(LogisticRegression(), utility=np.ones((2, 2))).fit(X, y)
    wrong = expost.Utility(np.eye(3), classes=["x", "y", "z"])
    with pytest.raises(ValueError, match=r"class labels matching classes_.*missing \[0, 1, 2\]"):
        ExPostClassifier(LogisticRegression(), utility=wrong).fit(X, y)
    with pytest.raises(ValueError, match="`utility` must be nonnegative"):
        ExPostClassifier(LogisticRegression(), utility=-np.eye(3)).fit(X, y)
    with pytest.raises(InvalidParameterError, match="calibration"):
        ExPostClassifier(LogisticRegression(), calibration="platt").fit(X, y)
    with pytest.raises(InvalidParameterError, match="normalize"):
        UtilityWeightedClassifier(LogisticRegression(), normalize="yes").fit(X, y)


def test_inputs_are_not_mutated(multi):
    X, y = multi
    su = np.random.default_rng(4).uniform(0.0, 2.0, size=(len(y), 3, 3))
    sw = np.random.default_rng(5).uniform(0.5, 1.5, len(y))
    copies = [a.copy() for a in (X, y, su, sw)]
    u = U3.matrix.copy()
    ep = ExPostClassifier(LogisticRegression(), utility=u, calibration="temperature").fit(X, y)
    ep.predict(X, sample_utility=su)
    ep.predict_weighted_proba(X, sample_utility=su)
    UtilityWeightedClassifier(LogisticRegression()).fit(X, y, sample_weight=sw, sample_utility=su)
    UtilityWeightedClassifier(LogisticRegression(), utility=u).fit(X, y, sample_weight=sw)
    for before, after in zip(copies, (X, y, su, sw), strict=True):
        np.testing.assert_array_equal(before, after)
    np.testing.assert_array_equal(u, U3.matrix)
    assert ep.utility is u  # parameters are stored as given


def test_pandas_inputs(multi):
    X, y = multi
    cols = [f"f{i}" for i in range(X.shape[1])]
    Xd = pd.DataFrame(X, columns=cols)
    ys = pd.Series(np.array(["ant", "bee", "cat"])[y], name="label")
    u = expost.Utility(U3.matrix, classes=["ant", "bee", "cat"], actions=["ant", "bee", "cat"])
    for est in (
        ExPostClassifier(LogisticRegression(), utility=u, calibration="temperature"),
        UtilityWeightedClassifier(LogisticRegression(), utility=u),
    ):
        est.fit(Xd, ys)
        np.testing.assert_array_equal(est.feature_names_in_, cols)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no feature-name warnings
            pred = est.predict(Xd)
        assert set(pred) <= {"ant", "bee", "cat"}
        est_np = clone(est).fit(X, ys.to_numpy())
        np.testing.assert_allclose(est_np.predict_proba(X), est.predict_proba(Xd))


@pytest.mark.parametrize(
    "est",
    [
        ExPostClassifier(LogisticRegression(C=0.3), utility=U3, calibration="temperature", cv=3),
        UtilityWeightedClassifier(LogisticRegression(C=0.3), utility=U3, normalize=False),
    ],
    ids=["expost", "weighted"],
)
def test_clone_and_pickle_round_trip(multi, est):
    X, y = multi
    c = clone(est)
    assert c.get_params()["estimator"].C == 0.3
    assert c.get_params()["utility"] == U3
    assert not hasattr(c, "classes_")
    c.fit(X, y)
    back = pickle.loads(pickle.dumps(c))
    np.testing.assert_array_equal(back.predict(X), c.predict(X))
    np.testing.assert_allclose(back.predict_proba(X), c.predict_proba(X))
    assert repr(back) == repr(est)


# ---------------------------------------------------------------- scorers
def test_utility_scorer_is_mean_classification_utility(multi):
    X, y = multi
    ep = ExPostClassifier(LogisticRegression(), utility=U3).fit(X, y)
    expected = expost.classification_utility(ep.predict(X), y, U3, reduction="mean")
    assert make_utility_scorer(U3)(ep, X, y) == pytest.approx(expected)
    w = np.linspace(0.1, 2.0, len(y))
    values = expost.classification_utility(ep.predict(X), y, U3)
    with sklearn.config_context(enable_metadata_routing=True):
        scorer = make_utility_scorer(U3).set_score_request(sample_weight=True)
        assert scorer(ep, X, y, sample_weight=w) == pytest.approx(np.average(values, weights=w))


def test_scorers_read_labels(multi):
    X, y = multi
    names = np.array(["ant", "bee", "cat"])
    ys = names[y]
    u = expost.Utility(U3.matrix, actions=names.tolist(), classes=names.tolist())
    ep = ExPostClassifier(LogisticRegression(), utility=u).fit(X, ys)
    ep_int = ExPostClassifier(LogisticRegression(), utility=U3).fit(X, y)
    assert make_utility_scorer(u)(ep, X, ys) == pytest.approx(make_utility_scorer(U3)(ep_int, X, y))
    assert make_weighted_loss_scorer(u)(ep, X, ys) == pytest.approx(
        make_weighted_loss_scorer(U3)(ep_int, X, y)
    )
    with pytest.raises(ValueError, match="`y_true` must be class labels among the utility's"):
        make_utility_scorer(U3)(ep, X, ys)


def test_weighted_loss_scorer_scores_the_weighted_prediction(multi):
    X, y = multi
    scorer = make_weighted_loss_scorer(U3)
    ep = ExPostClassifier(LogisticRegression(), utility=U3).fit(X, y)
    pu = ep.predict_weighted_proba(X)
    assert scorer(ep, X, y) == pytest.approx(-expost.weighted_loss(pu, y, U3, reduction="mean"))
    raw = -expost.weighted_loss(ep.predict_proba(X), y, U3, reduction="mean")
    assert scorer(ep, X, y) > raw  # Theorem 1: p^u beats q on the weighted loss
    uwc = UtilityWeightedClassifier(LogisticRegression(), utility=U3).fit(X, y)
    assert scorer(uwc, X, y) == pytest.approx(
        -expost.weighted_loss(uwc.predict_proba(X), y, U3, reduction="mean")
    )
    pipe = make_pipeline(StandardScaler(), ExPostClassifier(LogisticRegression(), utility=U3))
    pipe.fit(X, y)
    pu_pipe = pipe[-1].predict_weighted_proba(pipe[0].transform(X))
    assert scorer(pipe, X, y) == pytest.approx(
        -expost.weighted_loss(pu_pipe, y, U3, reduction="mean")
    )
    brier = make_weighted_loss_scorer(U3, base="brier")(ep, X, y)
    assert brier == pytest.approx(-expost.weighted_loss(pu, y, U3, base="brier", reduction="mean"))
    with pytest.raises(ValueError, match="`base` must be one of"):
        make_weighted_loss_scorer(U3, base="hinge")


def test_weighted_loss_scorer_aligns_actions_by_label(multi):
    X, y = multi
    m = np.array([[1.0, 1.0, 0.0], [0.0, 0.3, 5.0]])
    u = expost.Utility(m, actions=["treat", "wait"])
    flipped = expost.Utility(m[::-1], actions=["wait", "treat"])
    ep = ExPostClassifier(LogisticRegression(), utility=u).fit(X, y)
    a = make_weighted_loss_scorer(u)(ep, X, y)
    assert a == pytest.approx(make_weighted_loss_scorer(flipped)(ep, X, y))
    assert make_utility_scorer(u)(ep, X, y) == pytest.approx(
        make_utility_scorer(flipped)(ep, X, y)
    )


def test_scorers_in_cross_validation_and_grid_search(multi):
    X, y = multi
    cv = KFold(3)
    est = ExPostClassifier(LogisticRegression(), utility=U3)
    scores = cross_val_score(est, X, y, cv=cv, scoring=make_weighted_loss_scorer(U3))
    manual = []
    for train, test in cv.split(X):
        fold = clone(est).fit(X[train], y[train])
        manual.append(
            -expost.weighted_loss(fold.predict_weighted_proba(X[test]), y[test], U3, reduction="mean")
        )
    np.testing.assert_allclose(scores, manual)

    grid = GridSearchCV(
        UtilityWeightedClassifier(LogisticRegression(), utility=U3),
        {"estimator__C": [0.01, 1.0]},
        scoring={"utility": make_utility_scorer(U3), "loss": make_weighted_loss_scorer(U3)},
        refit="loss",
        cv=cv,
    ).fit(X, y)
    best = int(np.argmax(grid.cv_results_["mean_test_loss"]))
    assert grid.best_params_ == grid.cv_results_["params"][best]
    assert np.all(grid.cv_results_["mean_test_loss"] < 0)
    assert np.all(grid.cv_results_["mean_test_utility"] > 0)


def test_tuned_threshold_with_utility_scorer_finds_elkan():
    X, y = make_classification(
        n_samples=3000, n_features=4, n_informative=3, n_redundant=0, weights=[0.7, 0.3],
        random_state=3,
    )
    u = expost.Utility.from_class_weights([1.0, 4.0])
    tuned = TunedThresholdClassifierCV(
        LogisticRegression(), scoring=make_utility_scorer(u), cv=3
    ).fit(X, y)
    assert abs(tuned.best_threshold_ - expost.elkan_threshold(u)) < 0.1
    default = cross_val_score(LogisticRegression(), X, y, cv=3, scoring=make_utility_scorer(u))
    assert tuned.best_score_ > default.mean()
