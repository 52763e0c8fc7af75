"""The paper's results, checked numerically on the numpy core (hypothesis property tests)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from scipy.optimize import minimize
from scipy.special import softmax

import expost
from strategies import class_weights, n_classes, simplex, simplex_rows, utilities

# ---------------------------------------------------------------- Theorem 1


def _expected_weighted_loss(p: np.ndarray, q: np.ndarray, u: expost.Utility, base: str) -> float:
    """lbar^u(p, q) = sum_y q_y l^u(p, y), straight from Eq 6 (no vectorised shortcut)."""
    total = 0.0
    for y in range(u.n_classes):
        for a in range(u.n_actions):
            if base == "log":
                la = -np.log(p[a]) if u.matrix[a, y] > 0 else 0.0
            else:
                e = np.zeros(u.n_actions)
                e[a] = 1.0
                la = float(np.sum((p - e) ** 2))
            total += q[y] * u.matrix[a, y] * la
    return total


@pytest.mark.parametrize("base", ["log", "brier"])
@given(data=st.data(), m=n_classes, a=st.integers(2, 5))
def test_theorem1_weighted_prediction_minimises_expected_weighted_loss(data, m, a, base):
    u = data.draw(utilities(m, n_actions=a))
    q = data.draw(simplex(m, min_mass=0.05))
    pu = expost.weighted_prediction(q, u)
    assert pu.shape == (u.n_actions,)
    np.testing.assert_allclose(pu.sum(), 1.0)

    def objective(z: np.ndarray) -> float:
        return _expected_weighted_loss(softmax(z), q, u, base)

    best = None
    for start in (np.zeros(u.n_actions), np.log(np.clip(pu, 1e-12, None))):
        res = minimize(objective, start, method="BFGS", options={"gtol": 1e-10, "maxiter": 2000})
        best = res if best is None or res.fun < best.fun else best
    value_pu = _expected_weighted_loss(np.clip(pu, 1e-300, None), q, u, base)
    scale = max(1.0, abs(best.fun))
    # p^u is at least as good as anything the optimiser finds ...
    assert value_pu <= best.fun + 1e-7 * scale
    # ... and no random point of the simplex beats it.
    rng = np.random.default_rng(0)
    for p in rng.dirichlet(np.ones(u.n_actions), size=20):
        assert value_pu <= _expected_weighted_loss(p, q, u, base) + 1e-9 * scale


@given(data=st.data(), m=n_classes)
def test_eq16_equals_eq8_for_class_weights(data, m):
    w = data.draw(class_weights(m))
    q = data.draw(simplex_rows(4, m))
    eq16 = w * q / (q @ w)[:, None]
    np.testing.assert_allclose(
        expost.weighted_prediction(q, expost.Utility.from_class_weights(w)),
        eq16,
        rtol=1e-12,
        atol=1e-15,
    )


@given(data=st.data(), m=n_classes, a=st.integers(2, 5))
def test_decide_is_argmax_of_expected_utility_and_of_weighted_prediction(data, m, a):
    u = data.draw(utilities(m, n_actions=a))
    q = data.draw(simplex_rows(6, m))
    eu = expost.expected_utility(q, u)
    np.testing.assert_allclose(eu, q @ u.matrix.T)
    top2 = np.sort(eu, axis=1)[:, -2:]
    assume(np.all(top2[:, 1] - top2[:, 0] > 1e-9 * (1 + top2[:, 1])))
    d = expost.decide(q, u)
    np.testing.assert_array_equal(d, np.argmax(eu, axis=1))  # Eq 5
    np.testing.assert_array_equal(d, np.argmax(expost.weighted_prediction(q, u), axis=1))  # Eq 9


# ---------------------------------------------------------------- Theorem 2, Lemma 1


@given(data=st.data(), m=n_classes)
def test_theorem2_round_trip(data, m):
    u = data.draw(utilities(m, square=True))
    assume(np.linalg.cond(u.matrix) < 1e6)
    q = data.draw(simplex_rows(5, m))
    back = expost.recover_posterior(expost.weighted_prediction(q, u), u)
    np.testing.assert_allclose(back, q, atol=1e-8 * np.linalg.cond(u.matrix))


@given(data=st.data(), m=n_classes)
def test_eq27_is_theorem2_for_class_weights(data, m):
    w = data.draw(class_weights(m))
    p = data.draw(simplex_rows(3, m))
    eq27 = (p / w) / (p / w).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(
        expost.recover_posterior(p, expost.Utility.from_class_weights(w)),
        eq27,
        rtol=1e-10,
        atol=1e-14,
    )


def test_recover_posterior_outside_the_image_clips_raises_or_keeps():
    u = expost.Utility([[2.0, 1.0], [1.0, 2.0]])  # image of p^u is p_0 in [1/3, 2/3]
    p = np.array([[0.9, 0.1]])
    clipped = expost.recover_posterior(p, u)
    np.testing.assert_allclose(clipped, [[1.0, 0.0]])
    kept = expost.recover_posterior(p, u, invalid="keep")
    assert kept[0, 1] < 0 and np.isclose(kept.sum(), 1.0)
    with pytest.raises(ValueError, match=r"`p`.*image of p\^u"):
        expost.recover_posterior(p, u, invalid="raise")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_recover_posterior_clips_rounding_negatives_in_every_block(dtype, monkeypatch):
    """Posteriors with exact zeros: U^-1 p^u(q) rounds some of them below zero, in several
    blocks (of 7 rows, the last of 2); each is clipped to 0, whatever the block's size."""
    from expost import _decisions

    rng = np.random.default_rng(3)
    m = 6
    u = expost.Utility(rng.uniform(0.1, 2.0, (m, m)) + 5 * np.eye(m))
    q = rng.dirichlet(np.ones(m), size=30)
    q[rng.random(q.shape) < 0.4] = 0.0
    q[:, 0] += q.sum(axis=1) == 0
    q = (q / q.sum(axis=1, keepdims=True)).astype(dtype)
    p = expost.weighted_prediction(q, u)
    kept = expost.recover_posterior(p, u, invalid="keep")
    negative_rows = np.flatnonzero((kept < 0).any(axis=1))
    # about half the zeros round below 0 here, in every block; another BLAS may round fewer
    assert np.unique(negative_rows // 7).size >= 3
    monkeypatch.setattr(_decisions, "BLOCK_ROWS", 7)
    got = expost.recover_posterior(p, u)
    assert got.dtype == dtype and (got >= 0).all()
    np.testing.assert_array_equal(got, np.maximum(kept, 0))
    np.testing.assert_allclose(got, q, atol=10 * np.finfo(dtype).eps)


@given(data=st.data(), m=st.integers(3, 6), t=st.floats(0.0, 1.0), alpha=st.floats(0.0, 1.0))
def test_lemma1_level_sets_are_convex(data, m, t, alpha):
    # Fewer actions than classes: U has a null space, so level sets are non-trivial.
    u = data.draw(utilities(m, n_actions=2))
    q = data.draw(simplex(m, min_mass=0.1))
    v = np.linalg.svd(u.matrix)[2][-1]  # U v = 0
    assert np.allclose(u.matrix @ v, 0, atol=1e-9 * (1 + np.abs(u.matrix).max()))
    # largest step keeping q + s v >= 0, then normalise: U q' is proportional to U q
    neg = v < 0
    s_max = np.min(q[neg] / -v[neg]) if neg.any() else 1.0
    q2 = q + t * s_max * v
    assume(q2.sum() > 1e-3)
    q2 = np.clip(q2, 0, None) / q2.sum()
    p1, p2 = expost.weighted_prediction(np.vstack([q, q2]), u)
    np.testing.assert_allclose(p1, p2, atol=1e-9)
    mix = expost.weighted_prediction(alpha * q + (1 - alpha) * q2, u)
    np.testing.assert_allclose(mix, p1, atol=1e-9)


# ---------------------------------------------------------------- Proposition 3, EM


@given(data=st.data(), m=n_classes, k=st.integers(2, 8))
def test_proposition3_is_bayes_rule(data, m, k):
    lik = np.vstack([data.draw(simplex(k, min_mass=0.01)) for _ in range(m)])  # P(x | y), (m, k)
    src = data.draw(simplex(m, min_mass=0.05))
    tgt = data.draw(simplex(m, min_mass=0.0))
    post_src = (src[:, None] * lik).T
    post_src /= post_src.sum(axis=1, keepdims=True)
    post_tgt = (tgt[:, None] * lik).T
    post_tgt /= post_tgt.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(expost.adjust_prior(post_src, src, tgt), post_tgt, atol=1e-12)
    # and it is Eq 16 with w = target / source
    w_adj = expost.weighted_prediction(
        post_src, expost.Utility.from_class_weights(tgt / src + 1e-300)
    )
    np.testing.assert_allclose(w_adj, post_tgt, atol=1e-9)


@pytest.mark.parametrize("n", [2_000, 50_000])
def test_em_recovers_a_known_target_prior(n):
    rng = np.random.default_rng(n)
    means = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]])
    src = np.array([1 / 3, 1 / 3, 1 / 3])
    tgt = np.array([0.6, 0.3, 0.1])
    y = rng.choice(3, size=n, p=tgt)
    x = means[y] + rng.standard_normal((n, 2))
    # exact posteriors under the source prior (unit-variance Gaussians)
    logits = -0.5 * ((x[:, None, :] - means[None]) ** 2).sum(-1) + np.log(src)
    q = softmax(logits, axis=1)
    est = expost.estimate_target_prior(q, src)
    assert est.converged
    prior, posteriors = est  # unpacks as (prior, posteriors)
    np.testing.assert_allclose(prior.sum(), 1.0)
    # sampling error of a proportion is about sqrt(p(1-p)/n); EM's is a small multiple of it
    tol = 6 * np.sqrt(0.25 / n)
    assert np.max(np.abs(prior - tgt)) < tol
    truth = softmax(-0.5 * ((x[:, None, :] - means[None]) ** 2).sum(-1) + np.log(tgt), axis=1)
    assert np.abs(posteriors - truth).mean() < 5 * tol


# ---------------------------------------------------------------- Eq 21 and affine shifts


@given(data=st.data(), m=n_classes)
def test_eq21_normalisation_holds_and_keeps_decisions(data, m):
    u = data.draw(utilities(m, square=True))
    mu = data.draw(simplex(m, min_mass=0.05))
    un = u.normalized(mu)
    # expected weighted log loss of predicting mu equals the entropy of mu
    p = np.tile(mu, (m, 1))
    per_class = expost.weighted_loss(p, np.arange(m), un)
    np.testing.assert_allclose(per_class @ mu, -(mu @ np.log(mu)), rtol=1e-10)
    q = data.draw(simplex_rows(8, m))
    np.testing.assert_allclose(
        expost.weighted_prediction(q, un), expost.weighted_prediction(q, u), rtol=1e-9, atol=1e-14
    )
    eu = expost.expected_utility(q, u)
    top2 = np.sort(eu, axis=1)[:, -2:]
    assume(np.all(top2[:, 1] - top2[:, 0] > 1e-9 * (1 + top2[:, 1])))
    np.testing.assert_array_equal(expost.decide(q, un), expost.decide(q, u))


def test_eq21_class_weights_sum_to_m_on_balanced_data():
    """Footnote 14: for a uniform prior normalised class weights sum to m."""
    u = expost.Utility.emphasize(10, 3, ratio=99).normalized(np.full(10, 0.1))
    np.testing.assert_allclose(u.class_weights.sum(), 10.0)
    np.testing.assert_allclose(u.class_weights[3] / u.class_weights[0], 99.0)


@given(data=st.data(), m=n_classes, c=st.floats(0.1, 50.0), column=st.booleans())
def test_affine_shift_keeps_decisions_changes_weighted_prediction(data, m, c, column):
    u = data.draw(utilities(m, square=True))
    shift = np.linspace(c, 2 * c, m)[None, :] if column else c
    shifted = expost.Utility(u.matrix + shift)
    q = data.draw(simplex_rows(8, m))
    eu = expost.expected_utility(q, u)
    top2 = np.sort(eu, axis=1)[:, -2:]
    assume(np.all(top2[:, 1] - top2[:, 0] > 1e-7 * (1 + top2[:, 1] + c)))
    np.testing.assert_array_equal(expost.decide(q, shifted), expost.decide(q, u))
    pu, ps = expost.weighted_prediction(q, u), expost.weighted_prediction(q, shifted)
    # A shift adds the same c' to every action's expected utility e_a (c' = c, or s.q for
    # the column shift s), so p^u moves by exactly c' (m e_a - S) / (S (S + m c')), S = sum e:
    # it changes except where all actions have equal expected utility.
    c_row = (q @ shift[0]) if column else np.full(q.shape[0], c)
    total = eu.sum(axis=1)
    moved = c_row[:, None] * (m * eu - total[:, None]) / (total * (total + m * c_row))[:, None]
    np.testing.assert_allclose(pu - ps, moved, rtol=1e-6, atol=1e-13)
    spread = np.ptp(eu, axis=1) / eu.max(axis=1)
    assert np.all(np.abs(pu - ps).max(axis=1)[spread > 1e-6] > 0)


# ---------------------------------------------------------------- losses from their definitions


@pytest.mark.parametrize("base", ["log", "brier"])
@given(data=st.data(), m=n_classes, a=st.integers(2, 5))
def test_weighted_loss_matches_eq6_definition(data, m, a, base):
    u = data.draw(utilities(m, n_actions=a))
    p = data.draw(simplex_rows(5, u.n_actions))
    y = np.array(data.draw(st.lists(st.integers(0, m - 1), min_size=5, max_size=5)))
    got = expost.weighted_loss(p, y, u, base=base)
    want = []
    for i in range(5):
        one_hot = np.zeros(m)
        one_hot[y[i]] = 1.0
        want.append(_expected_weighted_loss(p[i], one_hot, u, base))
    scale = 1e-12 * max(1.0, float(u.matrix.sum()))
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=scale)
    np.testing.assert_allclose(
        expost.weighted_loss(p, y, u, base=base, reduction="mean"), np.mean(want)
    )
    np.testing.assert_allclose(
        expost.weighted_loss(p, y, u, base=base, reduction="sum"), np.sum(want)
    )


def test_eq15_and_eq24_on_hand_values():
    p = np.array([[0.2, 0.5, 0.3]])
    w = expost.Utility.from_class_weights([1.0, 2.0, 3.0])
    np.testing.assert_allclose(expost.weighted_loss(p, [2], w), [-3 * np.log(0.3)])
    full = expost.Utility([[1.0, 0.0, 0.5], [0.0, 2.0, 0.0], [0.25, 0.0, 3.0]])
    want = -(0.5 * np.log(0.2) + 3.0 * np.log(0.3))
    np.testing.assert_allclose(expost.weighted_loss(p, [2], full), [want])
    # zero probability on an action of zero utility contributes nothing (0 log 0 = 0)
    np.testing.assert_allclose(
        expost.weighted_loss([[0.0, 0.4, 0.6]], [1], full), [-2 * np.log(0.4)]
    )
    assert np.isinf(expost.log_loss([[0.0, 1.0]], [0])[0])


def test_brier_and_log_loss_hand_values():
    p = [[0.7, 0.2, 0.1]]
    np.testing.assert_allclose(expost.brier_loss(p, [0]), [0.09 + 0.04 + 0.01])
    np.testing.assert_allclose(expost.log_loss(p, [1]), [-np.log(0.2)])


# ---------------------------------------------------------------- Eq 19, 20 and Table 1's gain


def test_alignment_gains_match_their_definitions(rng):
    m, n = 4, 300
    u = expost.Utility.emphasize(m, 2, ratio=99).normalized(np.full(m, 0.25))
    q = rng.dirichlet(np.ones(m), size=n)
    y = np.array([rng.choice(m, p=row) for row in q])
    p_w = rng.dirichlet(np.ones(m), size=n)
    g = expost.internal_alignment_gain(p_w, q, y, u)
    wt = expost.weighted_loss(p_w, y, u, reduction="mean")
    ep = expost.weighted_loss(expost.weighted_prediction(q, u), y, u, reduction="mean")
    assert g.metric == "weighted_loss"
    np.testing.assert_allclose([g.weighted_training, g.ex_post, g.gain], [wt, ep, wt - ep])
    np.testing.assert_allclose(g.pct_gain, 100 * (wt - ep) / wt)
    e = expost.external_alignment_gain(p_w, q, y, u)
    wt_u = expost.classification_utility(np.argmax(p_w, 1), y, u, reduction="mean")
    ep_u = expost.classification_utility(expost.decide(q, u), y, u, reduction="mean")
    np.testing.assert_allclose([e.weighted_training, e.ex_post, e.gain], [wt_u, ep_u, ep_u - wt_u])
    np.testing.assert_allclose(e.pct_gain, 100 * (ep_u - wt_u) / wt_u)


def test_percent_gain_reproduces_table1_footnote15():
    assert round(float(expost.percent_gain(0.805, 0.749, higher_is_better=False)), 2) == 6.96
    assert round(float(expost.percent_gain(0.292, 0.309, higher_is_better=True)), 2) == 5.82
    rows = expost.percent_gain([0.805, 0.796], [0.749, 0.743], higher_is_better=False)
    np.testing.assert_allclose(rows, [6.956521739, 6.658291457])


# ---------------------------------------------------------------- Appendix A


@given(data=st.data(), m=n_classes)
def test_elkan_threshold_agrees_with_decide(data, m):
    w = data.draw(class_weights(2))
    u = expost.Utility.from_class_weights(w)
    t = expost.elkan_threshold(u)
    np.testing.assert_allclose(t, w[0] / w.sum())
    q1 = np.linspace(0, 1, 501)
    q1 = q1[np.abs(q1 - t) > 1e-9]
    q = np.column_stack([1 - q1, q1])
    np.testing.assert_array_equal(expost.decide(q, u), (q1 >= t).astype(int))


def test_elkan_threshold_in_cost_terms():
    c00, c01, c10, c11 = 0.0, 10.0, 1.0, 0.5  # c[predicted, true]
    u = expost.Utility.from_costs([[c00, c01], [c10, c11]])
    np.testing.assert_allclose(expost.elkan_threshold(u), (c10 - c00) / (c10 - c00 + c01 - c11))


def test_from_costs_shifts():
    costs = np.array([[0.0, 4.0, 1.0], [2.0, 0.0, 1.0], [3.0, 5.0, 0.0]])
    col = expost.Utility.from_costs(costs)
    np.testing.assert_allclose(col.matrix, costs.max(0) - costs)
    glob = expost.Utility.from_costs(costs, shift="global")
    np.testing.assert_allclose(glob.matrix, 5.0 - costs)
    # zero-diagonal costs w_y 1{a != y} are exactly the class weights of Eq 14
    w = np.array([1.0, 7.0, 3.0])
    zero_diag = w[None, :] * (1 - np.eye(3))
    assert expost.Utility.from_costs(zero_diag) == expost.Utility.from_class_weights(w)
    q = np.random.default_rng(1).dirichlet(np.ones(3), size=50)
    np.testing.assert_array_equal(expost.decide(q, col), expost.decide(q, glob))


def test_cost_vector_and_zhou_liu_weights():
    costs = np.array([[0.0, 2.0, 6.0], [1.0, 0.0, 3.0], [1.0, 1.0, 0.0]])
    np.testing.assert_allclose(expost.cost_vector_weights(costs), [2.0, 3.0, 9.0])
    # a consistent cost matrix: c(a, y) = w_y / v_a ... built from weights w
    w = np.array([1.0, 2.0, 4.0])
    consistent = np.array([[0.0 if a == y else w[y] * (a + 1) for y in range(3)] for a in range(3)])
    got = expost.zhou_liu_weights(consistent)
    for y in range(3):
        for a in range(3):
            if a != y:
                np.testing.assert_allclose(got[y] / got[a], consistent[a, y] / consistent[y, a])
    np.testing.assert_allclose(got.sum(), 3.0)
    inconsistent = np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 5.0], [1.0, 1.0, 0.0]])
    with pytest.raises(ValueError, match="no Zhou-Liu class weights exist"):
        expost.zhou_liu_weights(inconsistent)


# ---------------------------------------------------------------- dtypes


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [(np.float64, np.float64), (np.float32, np.float32), (np.float16, np.float32)],
)
def test_output_dtype_follows_input(dtype, expected):
    q = np.array([[0.25, 0.75], [0.5, 0.5]], dtype=dtype)
    u = expost.Utility.from_class_weights([1.0, 3.0])
    assert expost.weighted_prediction(q, u).dtype == expected
    assert expost.expected_utility(q, u).dtype == expected
    assert expost.recover_posterior(q, u).dtype == expected
    assert expost.decide(q, u).dtype == np.intp
    np.testing.assert_allclose(
        expost.weighted_prediction(q, u), [[0.1, 0.9], [0.25, 0.75]], rtol=1e-3
    )


def test_integer_input_is_float64():
    out = expost.weighted_prediction(np.array([[0, 1], [1, 0]]), [[1, 0], [0, 2]])
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, [[0.0, 1.0], [1.0, 0.0]])


def test_one_dimensional_input_gives_one_dimensional_output():
    u = expost.Utility.from_class_weights([1.0, 1.0, 2.0])
    assert expost.weighted_prediction([0.2, 0.3, 0.5], u).shape == (3,)
    assert expost.decide([0.2, 0.3, 0.5], u) == 2
