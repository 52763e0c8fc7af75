"""Calibration maps, what is learned (Proposition 1), loss calibration (Eq 28), ECE."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.special import softmax

import expost


def draw_labels(q: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One label per row of class distributions ``q``."""
    return (q.cumsum(axis=1) > rng.uniform(size=(q.shape[0], 1))).argmax(axis=1)


def mean_l1(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).sum(axis=1).mean())


# ---------------------------------------------------------------- temperature / vector scaling
@pytest.mark.parametrize("t0", [0.5, 2.0])
def test_fit_temperature_recovers_a_known_temperature(t0):
    rng = np.random.default_rng(7)
    z = rng.normal(0.0, 2.0, size=(20_000, 5))
    y = draw_labels(softmax(z / t0, axis=1), rng)
    t = expost.fit_temperature(z, y)
    assert t == pytest.approx(t0, rel=0.05)
    # the fit is the NLL minimiser: nudging T either way does worse
    nll = lambda tt: expost.log_loss(expost.apply_scaling(z, tt), y, reduction="mean")  # noqa: E731
    assert nll(t) < nll(t * 1.02) and nll(t) < nll(t / 1.02)


def test_fit_vector_scaling_recovers_a_known_map():
    rng = np.random.default_rng(3)
    a0 = np.array([0.5, 1.0, 1.5, 2.0])
    b0 = np.array([0.3, -0.2, 0.5, -0.6])
    z = rng.normal(0.0, 1.5, size=(20_000, 4))
    y = draw_labels(softmax(a0 * z + b0, axis=1), rng)
    a, b = expost.fit_vector_scaling(z, y)
    np.testing.assert_allclose(a, a0, atol=0.1)
    np.testing.assert_allclose(b, b0 - b0.mean(), atol=0.1)  # b is identified up to a constant
    assert abs(b.mean()) < 1e-9


def test_vector_scaling_of_log_p_undoes_class_weights():
    # Eq 27: q is proportional to p / w, i.e. a = 1 and b = -log w (+ const) on log p.
    rng = np.random.default_rng(11)
    w = np.array([1.0, 2.0, 20.0])
    q = softmax(rng.normal(0.0, 1.5, size=(20_000, 3)), axis=1)
    y = draw_labels(q, rng)
    p = expost.weighted_prediction(q, expost.Utility.from_class_weights(w))
    a, b = expost.fit_vector_scaling(np.log(p), y)
    np.testing.assert_allclose(a, 1.0, atol=0.05)
    np.testing.assert_allclose(b, -np.log(w) + np.log(w).mean(), atol=0.1)


def test_fit_vector_scaling_is_the_penalised_minimiser_reached_by_newton():
    # The fit is a stationary point of its documented objective to Newton precision
    # (first-order methods stop orders of magnitude earlier), and the docstring names
    # the method that runs.
    rng = np.random.default_rng(13)
    z = rng.normal(0.0, 2.0, size=(3_000, 4))
    y = draw_labels(softmax(np.array([0.7, 1.0, 1.3, 1.6]) * z, axis=1), rng)
    for reg in (1e-4, 0.5):
        a, b = expost.fit_vector_scaling(z, y, reg=reg)
        r = softmax(a * z + b, axis=1)
        r[np.arange(y.size), y] -= 1.0
        grad_a = (r * z).mean(axis=0) + reg * (a - 1.0)
        grad_b = r.mean(axis=0) + reg * b  # sum(grad_b) = reg * sum(b) = 0: b is centred
        assert np.abs(np.concatenate([grad_a, grad_b])).max() < 1e-9
    doc = expost.fit_vector_scaling.__doc__
    assert "Newton" in doc and "L-BFGS" not in doc


def test_apply_scaling_is_a_stable_softmax():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(6, 4))
    np.testing.assert_allclose(expost.apply_scaling(z, 1.7), softmax(z / 1.7, axis=1), rtol=1e-12)
    a, b = rng.uniform(0.5, 2, 4), rng.normal(size=4)
    np.testing.assert_allclose(
        expost.apply_scaling(z, (a, b)), softmax(a * z + b, axis=1), rtol=1e-12
    )
    np.testing.assert_allclose(
        expost.apply_scaling(z, 2.0), expost.apply_scaling(z, (np.full(4, 0.5), np.zeros(4)))
    )
    huge = np.array([[1e4, -1e4, 0.0], [-5e3, -5e3 + 1.0, -1e4]])
    out = expost.apply_scaling(huge, 0.5)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out.sum(axis=1), 1.0)
    np.testing.assert_allclose(out[1, :2], softmax([0.0, 2.0]), rtol=1e-12)
    # and temperature fitting works at that scale: logits 1000 times too large
    rng = np.random.default_rng(1)
    z = rng.normal(0.0, 2e3, size=(4_000, 3))
    t = expost.fit_temperature(z, draw_labels(softmax(z / 1e3, axis=1), rng), bounds=(1e-2, 1e5))
    assert t == pytest.approx(1e3, rel=0.1)


def test_fit_temperature_warns_at_the_bound_for_separable_data():
    z = np.array([[3.0, 0.0], [0.0, 3.0]] * 5)
    y = np.array([0, 1] * 5)
    with pytest.warns(RuntimeWarning, match="edge of `bounds`"):
        t = expost.fit_temperature(z, y, bounds=(0.05, 50.0))
    assert t == pytest.approx(0.05, rel=1e-3)


# ---------------------------------------------------------------- Proposition 1
def _discrete_joint(rng: np.random.Generator, k: int, m: int):
    """A discrete joint distribution of (P, Y) with k prediction values, as replicated rows."""
    preds = rng.dirichlet(np.ones(m), size=k)
    counts = rng.integers(1, 12, size=(k, m))
    q_exact = counts / counts.sum(axis=1, keepdims=True)
    rows = np.repeat(np.arange(k), counts.sum(axis=1))
    y = np.concatenate([np.repeat(np.arange(m), c) for c in counts])
    return preds[rows], y, q_exact[rows]


@pytest.mark.parametrize("base", ["log", "brier"])
def test_learning_identity_holds_exactly_on_a_discrete_joint(base):
    rng = np.random.default_rng(5)
    p, y, q = _discrete_joint(rng, k=6, m=3)
    r = expost.risk_decomposition(p, y, base=base, posteriors=q)
    loss = expost.log_loss if base == "log" else expost.brier_loss
    assert r.total == pytest.approx(float(loss(p, y, reduction="mean")), rel=1e-12)
    assert r.expected == pytest.approx(r.total, rel=1e-12)  # Eq 10, exactly
    assert r.learned + r.remainder == pytest.approx(r.total, rel=1e-12)
    # learned part: E[lbar(Q, Q)], by hand: entropy (log) or 1 - ||Q||^2 (Brier)
    by_hand = -(q * np.log(q)).sum(1).mean() if base == "log" else (1 - (q * q).sum(1)).mean()
    assert r.learned == pytest.approx(by_hand, rel=1e-12)
    assert r.remainder > 0 and r.method == "given" and not r.weighted
    # weighted: E[l^u(P, Y)] = E[lbar^u(P, Q)], P over actions (a non-square utility)
    u = expost.Utility(rng.uniform(0.0, 3.0, size=(4, 3)))
    pa = rng.dirichlet(np.ones(4), size=p.shape[0])[np.searchsorted(np.unique(p[:, 0]), p[:, 0])]
    rw = expost.risk_decomposition(pa, y, base=base, utility=u, posteriors=q)
    assert rw.total == pytest.approx(
        float(expost.weighted_loss(pa, y, u, base=base, reduction="mean")), rel=1e-12
    )
    assert rw.expected == pytest.approx(rw.total, rel=1e-12)
    assert rw.learned == pytest.approx(
        float(expost.residual_learning_loss(q, u, base=base, reduction="mean")), rel=1e-12
    )
    assert rw.remainder >= 0 and rw.weighted


def test_in_sample_binning_recovers_a_discrete_q_exactly():
    rng = np.random.default_rng(2)
    p1 = np.array([0.1, 0.35, 0.6, 0.85])  # one per uniform bin of 4
    counts = rng.integers(1, 30, size=(4, 2))
    rows = np.repeat(np.arange(4), counts.sum(axis=1))
    y = np.concatenate([np.repeat([0, 1], c) for c in counts])
    p = np.column_stack([1 - p1[rows], p1[rows]])
    q = expost.learned_posteriors(p, y, method="binning", n_bins=4, strategy="uniform", n_folds=1)
    np.testing.assert_allclose(q, (counts / counts.sum(1, keepdims=True))[rows], rtol=1e-14)
    r = expost.risk_decomposition(p, y, posteriors=q)
    assert r.expected == pytest.approx(r.total, rel=1e-12)


def _binary_sample(n: int, seed: int):
    rng = np.random.default_rng(seed)
    p1 = rng.uniform(0.02, 0.98, n)
    q1 = 1.0 / (1.0 + ((1 - p1) / p1) ** 2)  # Q = P(Y=1 | P): an overconfident-looking map
    y = (rng.uniform(size=n) < q1).astype(int)
    return np.column_stack([1 - p1, p1]), y, np.column_stack([1 - q1, q1])


def test_binning_recovers_known_posteriors_with_error_shrinking_like_n_to_minus_one_third():
    # Stated tolerance 0.6 * n^(-1/3): 0.048 at n = 2,000 and 0.016 at n = 50,000.
    errors = {}
    for n in (2_000, 50_000):
        p, y, q = _binary_sample(n, seed=n)
        errors[n] = mean_l1(expost.learned_posteriors(p, y), q) / 2  # |q1_hat - q1|
        assert errors[n] < 0.6 * n ** (-1 / 3), errors
    assert errors[50_000] < errors[2_000]


@pytest.mark.parametrize("method", ["temperature", "vector"])
def test_parametric_maps_recover_known_posteriors_at_root_n(method):
    # temperature: P = softmax(z), Q = softmax(z / 2); vector: P = p^w(Q) (Weighted Training
    # at its optimum). Stated tolerance 3.5 / sqrt(n): 0.11 at n = 1,000, 0.025 at 20,000.
    errors = {}
    for n in (1_000, 20_000):
        rng = np.random.default_rng(n + 1)
        z = rng.normal(0.0, 2.0, size=(n, 4))
        q = softmax(z / 2.0, axis=1)
        y = draw_labels(q, rng)
        if method == "temperature":
            p = softmax(z, axis=1)
        else:
            p = expost.weighted_prediction(q, expost.Utility.from_class_weights([1, 1, 1, 20]))
        qhat = expost.learned_posteriors(p, y, method=method)
        np.testing.assert_allclose(qhat.sum(axis=1), 1.0)
        errors[n] = mean_l1(qhat, q)
        assert errors[n] < 3.5 / np.sqrt(n), errors
    assert errors[20_000] < errors[1_000]


@pytest.mark.parametrize("method", ["binning", "temperature", "vector"])
def test_cross_fitting_never_scores_a_row_with_its_own_label(method):
    rng = np.random.default_rng(4)
    m = 2 if method == "binning" else 3
    p = rng.dirichlet(np.ones(m), size=300)
    y = draw_labels(p, rng)
    flipped = y.copy()
    flipped[17] = (y[17] + 1) % m
    q = expost.learned_posteriors(p, y, method=method)
    q_flip = expost.learned_posteriors(p, flipped, method=method)
    np.testing.assert_array_equal(q[17], q_flip[17])  # row 17's map never saw its label
    assert not np.allclose(q, q_flip)  # other folds' maps did
    q_in = expost.learned_posteriors(p, y, method=method, n_folds=1)
    q_in_flip = expost.learned_posteriors(p, flipped, method=method, n_folds=1)
    assert not np.allclose(q_in[17], q_in_flip[17])  # in-sample: it does


def test_learned_posteriors_options():
    rng = np.random.default_rng(9)
    p2 = rng.dirichlet(np.ones(2), size=200)
    y2 = draw_labels(p2, rng)
    np.testing.assert_array_equal(
        expost.learned_posteriors(p2, y2), expost.learned_posteriors(p2, y2, method="binning")
    )
    a = expost.learned_posteriors(p2, y2, random_state=1)
    np.testing.assert_array_equal(a, expost.learned_posteriors(p2, y2, random_state=1))
    assert not np.array_equal(a, expost.learned_posteriors(p2, y2, random_state=2))
    # three actions, two classes: only the matrix map fits (and "auto" picks it)
    pa = rng.dirichlet(np.ones(3), size=200)
    qa = expost.learned_posteriors(pa, y2, n_classes=2)
    assert qa.shape == (200, 2)
    np.testing.assert_allclose(qa.sum(axis=1), 1.0)
    np.testing.assert_array_equal(qa, expost.learned_posteriors(pa, y2, n_classes=2,
                                                                method="matrix"))
    p3 = rng.dirichlet(np.ones(3), size=200)
    y3 = draw_labels(p3, rng)
    np.testing.assert_array_equal(
        expost.learned_posteriors(p3, y3), expost.learned_posteriors(p3, y3, method="vector")
    )


def test_decomposition_tells_learning_apart_from_reporting():
    # A: calibrated unweighted model (reports q); B: Weighted Training at its optimum (reports
    # p^u(q): the same information); C: a model that learned less (only whether q1 > 1/2).
    rng = np.random.default_rng(21)
    n = 40_000
    q1 = rng.uniform(0.0, 1.0, n)
    q = np.column_stack([1 - q1, q1])
    y = draw_labels(q, rng)
    u = expost.Utility.from_class_weights([1.0, 9.0]).normalized([0.5, 0.5])
    coarse1 = np.where(q1 > 0.5, 0.75, 0.25)
    coarse = np.column_stack([1 - coarse1, coarse1])
    a = expost.risk_decomposition(q, y, utility=u)
    b = expost.risk_decomposition(expost.weighted_prediction(q, u), y, utility=u)
    c = expost.risk_decomposition(expost.weighted_prediction(coarse, u), y, utility=u)
    d = expost.risk_decomposition(np.full((n, 2), 0.5), y, utility=u)  # D learned nothing
    assert a.learned == pytest.approx(b.learned, rel=0.02)  # same information ...
    assert abs(b.remainder) < 0.01 < 0.2 < a.remainder  # ... only A reports it the wrong way
    assert a.learned + 0.02 < c.learned < d.learned - 0.02  # C learned less, D least
    assert b.total < a.total and b.total < c.total
    # with the true posteriors the learned parts of A and B coincide exactly
    a_true = expost.risk_decomposition(q, y, utility=u, posteriors=q)
    b_true = expost.risk_decomposition(expost.weighted_prediction(q, u), y, utility=u,
                                       posteriors=q)
    assert a_true.learned == b_true.learned
    assert a.q.flags.writeable is False


# ---------------------------------------------------------------- loss calibration, Eq 28
def test_loss_calibration_gap_zero_for_weighted_reports_positive_for_raw():
    rng = np.random.default_rng(8)
    n = 20_000
    q = softmax(rng.normal(0.0, 1.5, size=(n, 3)), axis=1)
    y = draw_labels(q, rng)
    u = expost.Utility.from_class_weights([1.0, 1.0, 10.0])
    pu = expost.weighted_prediction(q, u)
    true_gap = mean_l1(q, pu)
    assert expost.loss_calibration_gap(pu, y, u, method="vector") < 0.03
    raw = expost.loss_calibration_gap(q, y, u, method="vector")
    assert raw > 0.5 and raw == pytest.approx(true_gap, abs=0.03)
    # binary, histogram binning (the "auto" method for two columns)
    q1 = rng.beta(2.0, 2.0, n)
    qb = np.column_stack([1 - q1, q1])
    yb = draw_labels(qb, rng)
    ub = expost.Utility.from_class_weights([1.0, 9.0])
    pb = expost.weighted_prediction(qb, ub)
    assert expost.loss_calibration_gap(pb, yb, ub) < 0.05
    assert expost.loss_calibration_gap(qb, yb, ub) > 0.5


def test_loss_calibration_gap_with_known_posteriors_and_distances(rng):
    q = rng.dirichlet(np.ones(3), size=40)
    y = draw_labels(q, rng)
    u = expost.Utility([[1.0, 0.2, 0.0], [0.0, 1.0, 0.5], [0.3, 0.0, 2.0]])
    pu = expost.weighted_prediction(q, u)
    assert expost.loss_calibration_gap(pu, y, u, posteriors=q) == pytest.approx(0.0, abs=1e-14)
    rows = {d: expost.loss_calibration_gap(q, y, u, posteriors=q, distance=d, reduction="none")
            for d in ("l1", "l2", "max")}
    np.testing.assert_allclose(rows["l1"], np.abs(q - pu).sum(1), rtol=1e-12)
    assert (rows["max"] <= rows["l2"] + 1e-15).all() and (rows["l2"] <= rows["l1"] + 1e-15).all()
    assert expost.loss_calibration_gap(q, y, u, posteriors=q, reduction="sum") == pytest.approx(
        rows["l1"].sum()
    )
    # identity utility: Eq 28 collapses to classical calibration, q_hat(P) = P
    assert expost.loss_calibration_gap(q, y, np.eye(3), posteriors=q) == pytest.approx(0.0,
                                                                                      abs=1e-15)


# ---------------------------------------------------------------- calibration error
P_BIN = np.array([[0.9, 0.1], [0.85, 0.15], [0.3, 0.7], [0.35, 0.65], [0.55, 0.45]])
Y_BIN = np.array([0, 1, 1, 1, 1])
P_3 = np.array([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8]])
Y_3 = np.array([0, 0, 2])


def test_calibration_error_hand_computed():
    # Top label, 5 even bins: {0.55 miss} gap .55; {0.7, 0.65 hits} gap .325; {0.9 hit,
    # 0.85 miss} gap .375; weights 1/5, 2/5, 2/5.
    ce = lambda p, y, **kw: expost.calibration_error(p, y, n_bins=5, **kw)  # noqa: E731
    assert ce(P_BIN, Y_BIN) == pytest.approx(0.11 + 0.13 + 0.15)
    assert ce(P_BIN, Y_BIN, norm="l2") == pytest.approx(np.sqrt(0.0605 + 0.04225 + 0.05625))
    assert ce(P_BIN, Y_BIN, norm="max") == pytest.approx(0.55)
    # Classwise, 2 bins [0, .5), [.5, 1]: per-class l1 errors 1.1/3, 1.1/3, 0.4/3
    ce3 = lambda **kw: expost.calibration_error(P_3, Y_3, n_bins=2, **kw)  # noqa: E731
    assert ce3(kind="classwise") == pytest.approx(2.6 / 9)
    assert ce3(kind="classwise", norm="l2") == pytest.approx(np.sqrt((0.135 + 0.19 + 0.02) / 3))
    assert ce3(kind="classwise", norm="max") == pytest.approx(0.7)
    assert ce3() == pytest.approx(0.7 - 2 / 3)  # top label: one bin, conf .7, accuracy 2/3


def _reference_ece(p, y, n_bins, norm, strategy="uniform", kind="top_label"):
    """Loop-and-mask reference of the binned calibration error (torchmetrics' definition for
    top label and uniform bins: bins [lo, hi), a confidence of exactly 1 in a bin of its own)."""
    if kind == "top_label":
        pairs = [(p.max(axis=1), (p.argmax(axis=1) == y).astype(float))]
    else:
        pairs = [(p[:, k], (y == k).astype(float)) for k in range(p.shape[1])]
    vals = []
    for conf, hit in pairs:
        if strategy == "uniform":
            edges = [*np.linspace(0, 1, n_bins + 1), np.inf]
        else:
            edges = list(np.quantile(conf, np.linspace(0, 1, n_bins + 1)))
            edges[-1] = np.inf
        tot, gaps = 0.0, []
        for lo, hi in itertools.pairwise(edges):
            inside = (conf >= lo) & (conf < hi)
            if not inside.any():
                continue
            gap = abs(hit[inside].mean() - conf[inside].mean())
            gaps.append(gap)
            tot += (gap if norm == "l1" else gap**2) * inside.mean()
        vals.append(tot if norm != "max" else max(gaps))
    if norm == "l1":
        return float(np.mean(vals))
    return float(np.sqrt(np.mean(vals))) if norm == "l2" else float(np.max(vals))


@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
@pytest.mark.parametrize("kind", ["top_label", "classwise"])
@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
def test_calibration_error_matches_an_independent_reference(norm, kind, strategy):
    rng = np.random.default_rng(13)
    p = softmax(rng.normal(0.0, 2.0, size=(500, 4)), axis=1)
    y = draw_labels(softmax(rng.normal(0.0, 1.0, size=(500, 4)) + np.log(p), axis=1), rng)
    got = expost.calibration_error(p, y, norm=norm, kind=kind, strategy=strategy, n_bins=10)
    assert got == pytest.approx(_reference_ece(p, y, 10, norm, strategy, kind), rel=1e-10)


@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
def test_calibration_error_matches_torchmetrics(norm):
    torch = pytest.importorskip("torch")
    tmf = pytest.importorskip("torchmetrics.functional.classification")
    rng = np.random.default_rng(17)
    p = softmax(rng.normal(0.0, 2.0, size=(2_000, 5)), axis=1).astype(np.float32)
    y = draw_labels(p.astype(np.float64) ** 0.8 / (p.astype(np.float64) ** 0.8).sum(1,
                                                                                   keepdims=True),
                    rng)
    assert p.max() < 1.0
    want = tmf.multiclass_calibration_error(
        torch.from_numpy(p), torch.from_numpy(y), num_classes=5, n_bins=15, norm=norm
    ).item()
    got = expost.calibration_error(p, y, norm=norm, n_bins=15)
    assert got == pytest.approx(want, rel=1e-5, abs=1e-6)


def test_calibration_error_small_when_calibrated_large_when_overconfident():
    rng = np.random.default_rng(19)
    z = rng.normal(0.0, 2.0, size=(20_000, 4))
    q = softmax(z, axis=1)
    y = draw_labels(q, rng)
    assert expost.calibration_error(q, y) < 0.02
    assert expost.calibration_error(softmax(2.0 * z, axis=1), y) > 0.05


def test_reliability_curve_is_consistent_with_the_error():
    rng = np.random.default_rng(23)
    p = softmax(rng.normal(0.0, 2.0, size=(400, 3)), axis=1)
    y = draw_labels(p, rng)
    c = expost.reliability_curve(p, y, n_bins=8)
    assert c.counts.sum() == 400 and c.edges.shape == (9,) and c.confidence.shape == (8,)
    ne = c.counts > 0
    assert np.isnan(c.confidence[~ne]).all() and np.isnan(c.accuracy[~ne]).all()
    ece = np.sum(c.counts[ne] / 400 * np.abs(c.accuracy[ne] - c.confidence[ne]))
    assert ece == pytest.approx(expost.calibration_error(p, y, n_bins=8))
    assert ((c.confidence[ne] >= c.edges[:-1][ne]) & (c.confidence[ne] <= c.edges[1:][ne])).all()
    cw = expost.reliability_curve(p, y, n_bins=5, kind="classwise", strategy="quantile")
    assert cw.confidence.shape == (3, 5) and cw.edges.shape == (3, 6)
    np.testing.assert_array_equal(cw.counts.sum(axis=1), [400, 400, 400])
    # quantile bins hold (about) equal counts
    assert cw.counts.min() >= 79 and cw.counts.max() <= 81


def test_confidence_of_one_falls_in_the_last_bin():
    c = expost.reliability_curve([[1.0, 0.0], [0.95, 0.05]], [0, 1], n_bins=10)
    assert c.counts[-1] == 2 and c.counts.sum() == 2
    assert expost.calibration_error([[1.0, 0.0], [0.95, 0.05]], [0, 1], n_bins=10) == (
        pytest.approx(abs(0.5 - 0.975))
    )


# ---------------------------------------------------------------- bad input, no mutation
Z = np.array([[1.0, 0.0, -1.0], [0.0, 2.0, 0.5]])
Y2 = np.array([0, 1])
P2 = np.array([[0.7, 0.3], [0.2, 0.8], [0.6, 0.4], [0.1, 0.9]])
Y4 = np.array([0, 1, 0, 1])
U2 = expost.Utility.from_class_weights([1.0, 4.0])
P3 = softmax(Z, axis=1)

BAD = [
    (lambda: expost.fit_temperature([[1.0, np.nan, 0.0], [0, 1, 2]], Y2), ValueError, "`logits`"),
    (lambda: expost.fit_temperature([1.0, 2.0, 3.0], Y2), ValueError, "`logits`"),
    (lambda: expost.fit_temperature([["a", "b"]], [0]), TypeError, "`logits`"),
    (lambda: expost.fit_temperature(Z, [0, 3]), ValueError, "`y`"),
    (lambda: expost.fit_temperature(Z, [0, 1, 1]), ValueError, "`y`"),
    (lambda: expost.fit_temperature(Z, Y2, bounds=(2.0, 1.0)), ValueError, "`bounds`"),
    (lambda: expost.fit_temperature(Z, Y2, bounds=3.0), TypeError, "`bounds`"),
    (lambda: expost.fit_vector_scaling(Z, Y2, reg=-1.0), ValueError, "`reg`"),
    (lambda: expost.fit_vector_scaling(np.ones((2, 1)), Y2), ValueError, "`logits`"),
    (lambda: expost.apply_scaling(Z, -1.0), ValueError, "`scaling`"),
    (lambda: expost.apply_scaling(Z, "2"), TypeError, "`scaling`"),
    (lambda: expost.apply_scaling(Z, (np.ones(2), np.zeros(3))), ValueError, "`scaling`"),
    (lambda: expost.learned_posteriors(P3, Y2, method="binning"), ValueError, "`method`"),
    (lambda: expost.learned_posteriors(P3, Y2, method="isotonic"), ValueError, "`method`"),
    (lambda: expost.learned_posteriors(P2, Y4, n_classes=3, method="temperature"),
     ValueError, "`method`"),
    (lambda: expost.learned_posteriors(P2, Y4, n_folds=0), ValueError, "`n_folds`"),
    (lambda: expost.learned_posteriors(P2, Y4, n_folds=5), ValueError, "`n_folds`"),
    (lambda: expost.learned_posteriors(P2, Y4, n_bins=0), ValueError, "`n_bins`"),
    (lambda: expost.learned_posteriors(P2, Y4, strategy="kmeans"), ValueError, "`strategy`"),
    (lambda: expost.learned_posteriors(P2, Y4, random_state="seed"), TypeError, "`random_state`"),
    (lambda: expost.learned_posteriors(P2[0], Y4[:1]), ValueError, "`p`"),
    (lambda: expost.learned_posteriors([[0.7, 0.4], [0.2, 0.8]], Y2), ValueError, "`p`"),
    (lambda: expost.risk_decomposition(P2, Y4, base="hinge"), ValueError, "`base`"),
    (lambda: expost.risk_decomposition(P2, Y4, posteriors=P2[:3]), ValueError, "`posteriors`"),
    (lambda: expost.risk_decomposition(P2, Y4, posteriors=P3), ValueError, "`posteriors`"),
    (lambda: expost.risk_decomposition(P3, Y2, utility=U2), ValueError, "`p`"),
    (lambda: expost.loss_calibration_gap(P2, Y4, U2, distance="cosine"), ValueError, "`distance`"),
    (lambda: expost.loss_calibration_gap(P2, Y4, U2, reduction="avg"), ValueError, "`reduction`"),
    (lambda: expost.loss_calibration_gap(P2, Y4, None), TypeError, "`utility`"),
    (lambda: expost.calibration_error(P2, Y4, norm="l3"), ValueError, "`norm`"),
    (lambda: expost.calibration_error(P2, Y4, n_bins=0), ValueError, "`n_bins`"),
    (lambda: expost.calibration_error(P2, Y4, n_bins=2.5), ValueError, "`n_bins`"),
    (lambda: expost.calibration_error(P2, Y4, kind="marginal"), ValueError, "`kind`"),
    (lambda: expost.calibration_error(P2, [0, 1, 2, 1]), ValueError, "`y`"),
    (lambda: expost.reliability_curve(P2, Y4, strategy="log"), ValueError, "`strategy`"),
    (lambda: expost.reliability_curve(-P2, Y4), ValueError, "`p`"),
    # the shared checks of _validation: integers (bool excluded) and seeds
    (lambda: expost.learned_posteriors(P2, Y4, n_bins=2.5), ValueError, "`n_bins`"),
    (lambda: expost.learned_posteriors(P2, Y4, n_bins="many"), ValueError, "`n_bins`"),
    (lambda: expost.learned_posteriors(P2, Y4, n_folds=True), ValueError, "`n_folds`"),
    (lambda: expost.learned_posteriors(P2, Y4, n_folds=2.0), ValueError, "`n_folds`"),
    (lambda: expost.learned_posteriors(P2, Y4, n_classes=1), ValueError, "`n_classes`"),
    (lambda: expost.learned_posteriors(P2, Y4, random_state=True), TypeError, "`random_state`"),
    (lambda: expost.learned_posteriors(P2, Y4, reg=np.nan), ValueError, "`reg`"),
    (lambda: expost.risk_decomposition(P2, Y4, n_folds=0), ValueError, "`n_folds`"),
    (lambda: expost.loss_calibration_gap(P2, Y4, U2, random_state=1.5), TypeError, "`random_state`"),
    (lambda: expost.calibration_error(P2, Y4, n_bins="auto"), ValueError, "`n_bins`"),
    (lambda: expost.reliability_curve(P2, Y4, n_bins=True), ValueError, "`n_bins`"),
]


@pytest.mark.parametrize("call, exc, name", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_input_is_named(call, exc, name):
    with pytest.raises(exc, match=name) as info:
        call()
    assert "must be" in str(info.value)


def test_inputs_are_not_mutated_and_read_only_inputs_work():
    rng = np.random.default_rng(29)
    z = rng.normal(size=(60, 3))
    p = softmax(z, axis=1)
    y = draw_labels(p, rng)
    u = np.diag([1.0, 2.0, 5.0])
    originals = [a.copy() for a in (z, p, y, u)]
    for a in (z, p, y, u):
        a.setflags(write=False)
    expost.fit_temperature(z, y)
    expost.fit_vector_scaling(z, y)
    expost.apply_scaling(z, 1.5)
    for method in ("temperature", "vector", "matrix"):
        expost.learned_posteriors(p, y, method=method)
    expost.risk_decomposition(p, y, utility=u)
    expost.loss_calibration_gap(p, y, u)
    expost.loss_calibration_gap(p, y, u, posteriors=p)
    expost.calibration_error(p, y, kind="classwise", strategy="quantile")
    expost.reliability_curve(p, y)
    for a, b in zip((z, p, y, u), originals, strict=True):
        np.testing.assert_array_equal(a, b)
