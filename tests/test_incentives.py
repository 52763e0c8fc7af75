"""Learning incentives: Proposition 2 (Eq 12, 13), class weights (Eq 16-18), Figure 2."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import expost
from strategies import n_classes, simplex, utilities

BASES = st.sampled_from(["log", "brier"])


def _entropy(p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(p > 0, p * np.log(p), 0.0).sum(axis=-1)


def _reference_residual(q: np.ndarray, u: np.ndarray, base: str) -> float:
    """Closed forms derived by hand from Eq 12 (independent of the library's loss code).

    With S = 1'Uq and p = Uq / S: log loss gives S * H(p); Brier gives S * (1 - ||p||^2).
    """
    uq = u @ q
    s = uq.sum()
    p = uq / s
    return float(s * _entropy(p)) if base == "log" else float(s * (1.0 - p @ p))


@st.composite
def problem(draw):
    m = draw(n_classes)
    n_actions = draw(st.sampled_from([None, 2, m + 1]))
    u = draw(utilities(m, n_actions))
    q = draw(simplex(m, min_mass=1e-2))
    return q, u


@st.composite
def tangent(draw, m: int) -> np.ndarray:
    d = draw(hnp.arrays(np.float64, (m,), elements=st.floats(-1.0, 1.0)))
    d = d - d.mean()
    if np.abs(d).max() < 1e-3:
        d = np.zeros(m)
        d[0], d[-1] = 1.0, -1.0
    return d / np.abs(d).max()


# ---------------------------------------------------------------- Proposition 2
@given(problem(), BASES, st.data())
def test_gradient_is_the_derivative_on_the_simplex(prob, base, data):
    q, u = prob
    d = data.draw(tangent(q.size))
    h = 1e-3 * q.min()
    f = lambda x: float(expost.residual_learning_loss(x, u, base=base))  # noqa: E731
    fd = (f(q + h * d) - f(q - h * d)) / (2.0 * h)
    g = expost.learning_gradient(q, u, base=base)
    scale = max(1.0, float(np.abs(g * d).sum()), abs(f(q)))
    assert fd == pytest.approx(float(g @ d), abs=1e-5 * scale)


@given(problem(), BASES)
def test_gradient_satisfies_euler_and_residual_matches_closed_form(prob, base):
    # tilde-l is homogeneous of degree one in q, so <grad, q> = tilde-l(q)
    q, u = prob
    g = expost.learning_gradient(q, u, base=base)
    r = float(expost.residual_learning_loss(q, u, base=base))
    assert float(g @ q) == pytest.approx(r, rel=1e-9, abs=1e-12)
    assert r == pytest.approx(_reference_residual(q, u.matrix, base), rel=1e-9, abs=1e-12)


@given(problem(), BASES, st.data(), st.floats(0.0, 1.0))
def test_residual_learning_loss_is_concave_along_segments(prob, base, data, alpha):
    q, u = prob
    q2 = data.draw(simplex(q.size, min_mass=1e-2))
    f = lambda x: float(expost.residual_learning_loss(x, u, base=base))  # noqa: E731
    mid = f(alpha * q + (1 - alpha) * q2)
    chord = alpha * f(q) + (1 - alpha) * f(q2)
    assert mid >= chord - 1e-9 * max(1.0, abs(chord))


def test_concavity_is_strict_for_an_informative_segment():
    # A test that would also pass for a linear function is no test: check the gap is real.
    u = expost.Utility.from_class_weights([1.0, 3.0, 2.0])
    q, q2 = np.array([0.8, 0.1, 0.1]), np.array([0.1, 0.2, 0.7])
    f = lambda x: float(expost.residual_learning_loss(x, u))  # noqa: E731
    assert f(0.5 * q + 0.5 * q2) - 0.5 * (f(q) + f(q2)) > 0.1


@given(n_classes, st.data())
def test_class_weighted_gradient_is_eq17(m, data):
    w = data.draw(hnp.arrays(np.float64, (m,), elements=st.floats(1e-2, 1e2)))
    q = data.draw(simplex(m, min_mass=1e-3))
    g = expost.learning_gradient(q, expost.Utility.from_class_weights(w))
    pw = w * q / (w @ q)  # Eq 16
    np.testing.assert_allclose(g, -w * np.log(pw), rtol=1e-10, atol=1e-12)


def test_unweighted_residual_is_entropy_and_gradient_is_surprisal(rng):
    q = rng.dirichlet(np.ones(4), size=50)
    eye = np.eye(4)
    np.testing.assert_allclose(expost.residual_learning_loss(q, eye), _entropy(q), rtol=1e-12)
    np.testing.assert_allclose(expost.learning_gradient(q, eye), -np.log(q), rtol=1e-12)
    # Brier: 1 - ||q||^2 and, at the optimum p = q, the Brier loss of q for each class
    np.testing.assert_allclose(
        expost.residual_learning_loss(q, eye, base="brier"), 1 - (q * q).sum(1), rtol=1e-12
    )
    np.testing.assert_allclose(
        expost.learning_gradient(q, eye, base="brier"),
        np.stack([expost.brier_loss(q, np.full(50, y)) for y in range(4)], axis=1),
        rtol=1e-12,
    )


def test_rows_reduction_and_1d_input(rng):
    u = expost.Utility.emphasize(3, 0, ratio=9.0)
    q = rng.dirichlet(np.ones(3), size=7)
    rows = expost.residual_learning_loss(q, u)
    assert rows.shape == (7,)
    assert expost.residual_learning_loss(q, u, reduction="mean") == pytest.approx(rows.mean())
    assert expost.residual_learning_loss(q, u, reduction="sum") == pytest.approx(rows.sum())
    assert np.ndim(expost.residual_learning_loss(q[2], u)) == 0
    assert float(expost.residual_learning_loss(q[2], u)) == pytest.approx(rows[2])
    np.testing.assert_allclose(expost.learning_gradient(q[2], u), expost.learning_gradient(q, u)[2])


def test_zero_probability_classes_cost_nothing_but_have_infinite_marginal_value():
    u = expost.Utility.from_class_weights([1.0, 2.0, 3.0])
    q = np.array([0.5, 0.5, 0.0])
    r = float(expost.residual_learning_loss(q, u))
    assert np.isfinite(r)
    assert r == pytest.approx(_reference_residual(q, u.matrix, "log"))
    g = expost.learning_gradient(q, u)
    assert np.isfinite(g[:2]).all() and g[2] == np.inf


def test_float32_in_float32_out(rng):
    q = rng.dirichlet(np.ones(3), size=5).astype(np.float32)
    u = expost.Utility.from_class_weights([1.0, 5.0, 2.0])
    assert expost.learning_gradient(q, u).dtype == np.float32
    assert expost.residual_learning_loss(q, u).dtype == np.float32


# ---------------------------------------------------------------- Figure 2, Eq 16 and 18
def test_binary_curves_match_eq16_and_eq18():
    c = expost.binary_incentive_curves(99.0, grid=np.linspace(0.01, 0.99, 99))
    w0, w1 = c.weights
    assert w0 + w1 == pytest.approx(1.0) and w1 / w0 == pytest.approx(99.0)  # footnote 12
    q1 = c.q1
    p1 = w1 * q1 / (w1 * q1 + w0 * (1 - q1))  # Eq 16
    np.testing.assert_allclose(c.prediction, p1, rtol=1e-12)
    np.testing.assert_allclose(c.marginal, -w1 * np.log(p1) + w0 * np.log(1 - p1), rtol=1e-10)
    np.testing.assert_allclose(c.reference_prediction, q1, rtol=1e-12)
    np.testing.assert_allclose(c.reference_marginal, 0.5 * np.log((1 - q1) / q1), atol=1e-12)
    # the loss panel is Eq 12 and its derivative is the marginal panel
    q = np.column_stack([1 - q1, q1])
    np.testing.assert_allclose(
        c.loss, expost.residual_learning_loss(q, np.diag(c.weights)), rtol=1e-12
    )
    np.testing.assert_allclose(c.reference_loss, 0.5 * _entropy(q), rtol=1e-12)
    h = 1e-6
    up = expost.binary_incentive_curves(99.0, grid=q1 + h).loss
    down = expost.binary_incentive_curves(99.0, grid=q1 - h).loss
    np.testing.assert_allclose((up - down) / (2 * h), c.marginal, rtol=1e-5, atol=1e-7)


def test_figure2_qualitative_facts():
    c = expost.binary_incentive_curves(99.0, grid=np.linspace(0.001, 0.999, 999))
    # left panel: above 0.9 for every q1 above about 0.1 (exactly: q1 > 0.0833...)
    assert (c.prediction[c.q1 >= 0.09] > 0.9).all()
    assert (c.prediction[c.q1 <= 0.08] < 0.9).all()
    # right panel: learning is worth less at every posterior
    assert (c.loss < c.reference_loss).all()
    # middle panel: the marginal learning loss is smaller in absolute value on most of the
    # interior. On the even grid 0.01, 0.02, ..., 0.99 the fraction is 96/99 = 0.9697; the
    # three exceptions are q1 = 0.49, 0.50, 0.51, where the unweighted marginal crosses 0.
    g = expost.binary_incentive_curves(99.0, grid=np.linspace(0.01, 0.99, 99))
    smaller = np.abs(g.marginal) < np.abs(g.reference_marginal)
    assert smaller.mean() >= 0.95
    assert smaller.sum() == 96
    assert set(np.round(g.q1[~smaller], 2)) == {0.49, 0.5, 0.51}


def test_unit_ratio_reproduces_the_reference_and_curves_are_read_only():
    c = expost.binary_incentive_curves(1.0, grid=25)
    np.testing.assert_allclose(c.q1, np.arange(1, 26) / 26)
    np.testing.assert_allclose(c.prediction, c.reference_prediction)
    np.testing.assert_allclose(c.marginal, c.reference_marginal)
    np.testing.assert_allclose(c.loss, c.reference_loss)
    with pytest.raises(ValueError):
        c.loss[0] = 1.0
    assert c.weight_ratio == 1.0 and c.base == "log"


def test_grid_endpoints_give_infinite_marginals_and_zero_loss():
    c = expost.binary_incentive_curves(99.0, grid=[0.0, 1.0])
    assert c.marginal[0] == np.inf and c.marginal[1] == -np.inf
    np.testing.assert_array_equal(c.loss, [0.0, 0.0])


def test_brier_curves():
    c = expost.binary_incentive_curves(9.0, grid=[0.25, 0.5], base="brier")
    w0, w1 = c.weights
    q1 = c.q1
    s = w0 * (1 - q1) + w1 * q1
    p1 = w1 * q1 / s
    np.testing.assert_allclose(c.loss, s * (1 - p1**2 - (1 - p1) ** 2), rtol=1e-12)
    # Brier gradient: l^w(p, y) = w_y ||p - e_y||^2, so d/dq1 = w1 * 2(1-p1)^2 - w0 * 2 p1^2
    np.testing.assert_allclose(
        c.marginal, w1 * 2 * (1 - p1) ** 2 - w0 * 2 * p1**2, rtol=1e-12, atol=1e-15
    )
    assert c.marginal[0] == pytest.approx(0.0, abs=1e-15)  # q1 = 1/4: p1 = 1/2, no incentive


# ---------------------------------------------------------------- bad input, no mutation
U3 = expost.Utility.from_class_weights([1.0, 2.0, 3.0])
Q3 = np.array([[0.2, 0.3, 0.5]])

BAD = [
    (lambda: expost.residual_learning_loss([[0.5, 0.6, 0.1]], U3), ValueError, "`q`"),
    (lambda: expost.residual_learning_loss([[0.5, 0.5]], U3), ValueError, "`q`"),
    (lambda: expost.residual_learning_loss([[np.nan, 0.5, 0.5]], U3), ValueError, "`q`"),
    (lambda: expost.residual_learning_loss("abc", U3), TypeError, "`q`"),
    (lambda: expost.residual_learning_loss(Q3, U3, base="hinge"), ValueError, "`base`"),
    (lambda: expost.residual_learning_loss(Q3, U3, reduction="avg"), ValueError, "`reduction`"),
    (lambda: expost.residual_learning_loss(Q3, [[-1.0, 0, 0], [0, 1, 0], [0, 0, 1]]),
     ValueError, "`utility`"),
    (lambda: expost.residual_learning_loss(Q3, None), TypeError, "`utility`"),
    (lambda: expost.learning_gradient(np.ones((2, 2, 3)) / 3, U3), ValueError, "`q`"),
    (lambda: expost.learning_gradient(Q3, U3, base=None), ValueError, "`base`"),
    (lambda: expost.binary_incentive_curves(-1.0), ValueError, "`weight_ratio`"),
    (lambda: expost.binary_incentive_curves(np.inf), ValueError, "`weight_ratio`"),
    (lambda: expost.binary_incentive_curves("99"), TypeError, "`weight_ratio`"),
    (lambda: expost.binary_incentive_curves(99.0, grid=0), ValueError, "`grid`"),
    (lambda: expost.binary_incentive_curves(99.0, grid=[0.5, 1.5]), ValueError, "`grid`"),
    (lambda: expost.binary_incentive_curves(99.0, grid=[[0.5]]), ValueError, "`grid`"),
    (lambda: expost.binary_incentive_curves(99.0, grid=True), TypeError, "`grid`"),
    (lambda: expost.binary_incentive_curves(99.0, base="l2"), ValueError, "`base`"),
]


@pytest.mark.parametrize("call, exc, name", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_input_is_named(call, exc, name):
    with pytest.raises(exc, match=name) as info:
        call()
    assert "must be" in str(info.value)


def test_inputs_are_not_mutated_and_read_only_inputs_work(rng):
    q = rng.dirichlet(np.ones(3), size=10)
    u = np.diag([1.0, 5.0, 2.0])
    q_copy, u_copy = q.copy(), u.copy()
    q.setflags(write=False)
    u.setflags(write=False)
    expost.residual_learning_loss(q, u)
    expost.learning_gradient(q, u, base="brier")
    grid = np.linspace(0.1, 0.9, 9)
    grid_copy = grid.copy()
    c = expost.binary_incentive_curves(3.0, grid=grid)
    np.testing.assert_array_equal(q, q_copy)
    np.testing.assert_array_equal(u, u_copy)
    np.testing.assert_array_equal(grid, grid_copy)
    assert c.q1 is not grid
