"""Data expansion is the utility-weighted loss: UtilityWeightedClassifier vs a direct minimiser.

LogisticRegression minimises ``C * sum_i s_i l(p_i, y_i) + 1/2 ||W||^2`` (intercepts
unpenalised). On the expanded data (sample i repeated per action a, label a,
weight u(a, y_i)) that is ``C * n * mean_i l^u(p_i, y_i) + 1/2 ||W||^2`` (Eq 6). We
minimise the latter directly, with the objective computed by
``expost.weighted_loss``, and compare the optima.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import expit, log_softmax
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

import expost
from expost.estimators import UtilityWeightedClassifier

C = 0.7


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    with threadpool_limits(limits=1):
        yield


def _objective(theta, X, y, u, *, binary):
    """C * sum_i l^u(p(x_i), y_i) + ||W||^2 / 2, and its gradient."""
    d = X.shape[1]
    m = u.n_actions
    if binary:
        w, b = theta[:d], theta[d]
        z1 = X @ w + b
        logp = np.column_stack([-np.logaddexp(0.0, z1), -np.logaddexp(0.0, -z1)])
        W = w[None, :]
    else:
        W = theta[: m * d].reshape(m, d)
        b = theta[m * d :]
        logp = log_softmax(X @ W.T + b, axis=1)
    p = np.exp(logp)
    p /= p.sum(axis=1, keepdims=True)  # exact simplex rows for the checked public API
    value = C * expost.weighted_loss(p, y, u, reduction="sum") + 0.5 * np.sum(W**2)
    # gradient of sum_a u(a, y_i) (-log p_a) w.r.t. the logits: s_i p_i - u(., y_i)
    cols = u.matrix.T[y]  # (n, m)
    g_logits = cols.sum(axis=1, keepdims=True) * p - cols
    if binary:
        g1 = g_logits[:, 1]  # d/dz1 with logits (0, z1)
        grad = np.concatenate([C * X.T @ g1 + w, [C * g1.sum()]])
    else:
        grad = np.concatenate([(C * g_logits.T @ X + W).ravel(), C * g_logits.sum(axis=0)])
    return value, grad


@pytest.mark.parametrize(
    ("n_classes", "utility"),
    [
        (3, expost.Utility([[4.0, 0.0, 0.5], [0.3, 1.0, 0.0], [1.0, 0.2, 6.0]])),
        (3, expost.Utility.from_costs(np.abs(np.subtract.outer(np.arange(3), np.arange(3))) ** 2)),
        (2, expost.Utility([[3.0, 1.0], [0.5, 5.0]])),
    ],
    ids=["full-3", "costs-3", "full-2"],
)
def test_expansion_optimum_equals_direct_weighted_loss_optimum(n_classes, utility):
    X, y = make_classification(
        n_samples=300, n_features=4, n_informative=3, n_redundant=0, n_classes=n_classes,
        random_state=7,
    )
    uwc = UtilityWeightedClassifier(
        LogisticRegression(C=C, tol=1e-12, max_iter=10_000), utility=utility
    ).fit(X, y)
    u = uwc.utility_  # Eq 21-normalised on the training prior
    assert not u.is_diagonal  # a real expansion, not plain sample weights

    binary = n_classes == 2
    d = X.shape[1]
    size = d + 1 if binary else n_classes * (d + 1)
    res = minimize(
        lambda t: _objective(t, X, y, u, binary=binary), np.zeros(size), jac=True,
        method="L-BFGS-B", options={"gtol": 1e-10, "ftol": 1e-15, "maxiter": 10_000},
    )
    assert res.success, res.message

    est = uwc.estimator_
    if binary:
        theta_sk = np.concatenate([est.coef_[0], est.intercept_])
        np.testing.assert_allclose(est.coef_[0], res.x[:d], rtol=1e-5, atol=1e-6)
    else:
        theta_sk = np.concatenate([est.coef_.ravel(), est.intercept_])
        np.testing.assert_allclose(est.coef_, res.x[: n_classes * d].reshape(n_classes, d),
                                   rtol=1e-5, atol=1e-6)
    # same objective value at both optima, and a vanishing gradient at sklearn's
    f_sk, g_sk = _objective(theta_sk, X, y, u, binary=binary)
    assert f_sk == pytest.approx(res.fun, rel=1e-9)
    assert np.abs(g_sk).max() < 1e-4 * max(1.0, abs(f_sk))
    # the predictions agree (intercepts of a softmax are identified only up to a shift)
    if binary:
        p_direct = expit(X @ res.x[:d] + res.x[d])
        np.testing.assert_allclose(uwc.predict_proba(X)[:, 1], p_direct, atol=1e-6)
    else:
        W = res.x[: n_classes * d].reshape(n_classes, d)
        p_direct = np.exp(log_softmax(X @ W.T + res.x[n_classes * d :], axis=1))
        np.testing.assert_allclose(uwc.predict_proba(X), p_direct, atol=1e-6)

