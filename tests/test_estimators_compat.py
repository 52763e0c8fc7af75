"""expost.estimators against scikit-learn's moving parts: private names, routed scorers, temperature.

* Private scikit-learn names are imported in ``_compat`` only.
* The weighted-loss scorer is a scikit-learn scorer: ``sample_weight`` is routed to it.
* ``calibration="temperature"`` delegates to ``CalibratedClassifierCV`` on
  scikit-learn >= 1.8 and falls back to :func:`expost.fit_temperature`; the two agree.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import sklearn
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold, cross_validate
from threadpoolctl import threadpool_limits

import expost
import expost.estimators._compat as compat
from expost.estimators import ExPostClassifier, make_utility_scorer, make_weighted_loss_scorer
from expost.estimators._common import align_proba_columns

U3 = expost.Utility([[4.0, 0.0, 0.5], [0.0, 1.0, 0.0], [1.0, 0.2, 6.0]])
PACKAGE = Path(expost.estimators.__file__).parent
needs_temperature = pytest.mark.skipif(
    not compat.TEMPERATURE_CALIBRATION,
    reason="CalibratedClassifierCV(method='temperature') needs scikit-learn >= 1.8",
)


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def multi():
    return make_classification(
        n_samples=450, n_features=6, n_informative=4, n_classes=3, random_state=1
    )


@pytest.fixture(scope="module")
def binary():
    return make_classification(
        n_samples=400, n_features=5, n_informative=3, weights=[0.8, 0.2], random_state=0
    )


# ---------------------------------------------------------------- private names
def _private_sklearn_imports(path: Path) -> list[str]:
    """``module:name`` for each private scikit-learn name a module imports."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sklearn"):
            private_module = any(part.startswith("_") for part in node.module.split("."))
            for alias in node.names:
                if private_module or alias.name.startswith("_"):
                    found.append(f"{node.module}:{alias.name}")
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("sklearn") and "._" in a.name]
    return found


def test_private_sklearn_names_are_imported_in_compat_only():
    modules = sorted(PACKAGE.glob("*.py"))
    assert PACKAGE / "_compat.py" in modules
    offenders = {
        p.name: names for p in modules if p.name != "_compat.py" and (names := _private_sklearn_imports(p))
    }
    assert offenders == {}
    # the scan sees what it is meant to see
    assert "sklearn.base:_fit_context" in _private_sklearn_imports(PACKAGE / "_compat.py")


# ---------------------------------------------------------------- one column aligner
def test_align_proba_columns_fills_missing_labels_with_zero():
    p = np.array([[0.2, 0.8], [0.6, 0.4]])
    out = align_proba_columns(p, ["c", "a"], ["a", "b", "c"])
    np.testing.assert_array_equal(out, [[0.8, 0.0, 0.2], [0.4, 0.0, 0.6]])
    assert align_proba_columns(p, [0, 1], [0, 1]) is p  # already in order: no copy
    np.testing.assert_array_equal(p, [[0.2, 0.8], [0.6, 0.4]])  # input untouched
    with pytest.raises(ValueError, match=r"`cols` must be class labels among .* got the label 'z'"):
        align_proba_columns(p, ["a", "z"], ["a", "b"], name="cols")


# ---------------------------------------------------------------- routed sample_weight
def test_both_scorers_receive_routed_sample_weight(multi):
    X, y = multi
    w = np.random.default_rng(7).uniform(0.05, 4.0, len(y))
    cv = KFold(3)
    with sklearn.config_context(enable_metadata_routing=True):
        est = ExPostClassifier(LogisticRegression().set_fit_request(sample_weight=False), utility=U3)
        scoring = {
            "utility": make_utility_scorer(U3).set_score_request(sample_weight=True),
            "loss": make_weighted_loss_scorer(U3).set_score_request(sample_weight=True),
        }
        weighted = cross_validate(est, X, y, cv=cv, scoring=scoring, params={"sample_weight": w})
        plain = cross_validate(est, X, y, cv=cv, scoring=scoring)
    for key in ("test_utility", "test_loss"):
        assert np.all(np.abs(weighted[key] - plain[key]) > 1e-6)
    # fold 0 by hand: the weighted means of Eq 20 and Eq 6 over the test fold
    train, test = next(cv.split(X))
    fold = clone(est).fit(X[train], y[train])
    util = expost.classification_utility(fold.predict(X[test]), y[test], U3)
    loss = expost.weighted_loss(fold.predict_weighted_proba(X[test]), y[test], U3)
    assert weighted["test_utility"][0] == pytest.approx(np.average(util, weights=w[test]))
    assert weighted["test_loss"][0] == pytest.approx(-np.average(loss, weights=w[test]))
    assert plain["test_loss"][0] == pytest.approx(-np.mean(loss))


def test_weighted_loss_scorer_takes_sample_weight_directly(multi):
    X, y = multi
    ep = ExPostClassifier(LogisticRegression(), utility=U3).fit(X, y)
    w = np.linspace(0.1, 2.0, len(y))
    loss = expost.weighted_loss(ep.predict_weighted_proba(X), y, U3)
    scorer = make_weighted_loss_scorer(U3, base="log")
    assert scorer(ep, X, y, sample_weight=w) == pytest.approx(-np.average(loss, weights=w))
    assert repr(scorer).startswith("make_weighted_loss_scorer(")


# ---------------------------------------------------------------- temperature: two paths
def _temperature_fit(X, y, *, fallback, monkeypatch, **kwargs):
    with monkeypatch.context() as m:
        if fallback:
            m.setattr(compat, "TEMPERATURE_CALIBRATION", False)
        return ExPostClassifier(LogisticRegression(), calibration="temperature", **kwargs).fit(X, y)


def test_temperature_fallback_is_fit_temperature(multi, monkeypatch):
    X, y = multi
    ep = _temperature_fit(X, y, fallback=True, monkeypatch=monkeypatch, cv=3)
    assert ep.calibrator_ is None
    q = expost.apply_scaling(np.log(ep.estimator_.predict_proba(X)), ep.temperature_)
    np.testing.assert_allclose(ep.predict_proba(X), q, rtol=1e-10, atol=1e-12)


@needs_temperature
def test_temperature_delegates_to_calibrated_classifier_cv(multi):
    X, y = multi
    ep = ExPostClassifier(LogisticRegression(), calibration="temperature", cv=3).fit(X, y)
    ref = CalibratedClassifierCV(
        LogisticRegression(), method="temperature", cv=3, ensemble=False
    ).fit(X, y)
    assert isinstance(ep.calibrator_, CalibratedClassifierCV)
    np.testing.assert_allclose(ep.predict_proba(X), ref.predict_proba(X))
    np.testing.assert_allclose(ep.estimator_.coef_, LogisticRegression().fit(X, y).coef_)
    assert ep.temperature_ == pytest.approx(1.0 / compat.calibrated_temperature(ref))


# Tolerance: both paths minimise the same out-of-fold NLL over one scalar (same
# folds, same refit; softmax ignores the row constant between LogisticRegression's
# logits and log p). They differ only in the optimiser's stopping rule: the
# fallback stops at xatol = 1e-5 in log T, scikit-learn at 64 eps in log(1/T).
# So T agrees to a relative ~1e-5 (rel=1e-4 leaves room) and the probabilities,
# smooth in T, to ~1e-6 (atol=1e-5). A wrong binary conversion is off by 2x.
@needs_temperature
@pytest.mark.parametrize("data", ["multi", "binary"])
def test_temperature_paths_agree(data, request, monkeypatch):
    X, y = request.getfixturevalue(data)
    delegated = _temperature_fit(X, y, fallback=False, monkeypatch=monkeypatch, cv=4)
    fallback = _temperature_fit(X, y, fallback=True, monkeypatch=monkeypatch, cv=4)
    assert delegated.calibrator_ is not None and fallback.calibrator_ is None
    assert delegated.temperature_ == pytest.approx(fallback.temperature_, rel=1e-4)
    np.testing.assert_allclose(delegated.predict_proba(X), fallback.predict_proba(X), atol=1e-5)
    np.testing.assert_allclose(delegated.estimator_.coef_, fallback.estimator_.coef_)


@needs_temperature
def test_temperature_falls_back_where_calibrated_classifier_cv_refuses(multi):
    X, y = multi
    y = y.copy()
    y[:2] = 3  # a class with 2 samples: fewer than the 3 folds CalibratedClassifierCV needs
    ep = ExPostClassifier(LogisticRegression(), calibration="temperature", cv=3).fit(X, y)
    assert ep.calibrator_ is None
    np.testing.assert_array_equal(ep.classes_, [0, 1, 2, 3])
    assert np.isfinite(ep.temperature_) and ep.predict_proba(X).shape == (len(y), 4)
