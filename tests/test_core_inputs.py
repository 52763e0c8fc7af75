"""Bad inputs get clear errors naming the argument; inputs are never mutated; Utility is a value."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

import expost

Q = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
Y = np.array([0, 2])
W = expost.Utility.from_class_weights([1.0, 2.0, 3.0])
FULL = expost.Utility([[1.0, 0.5, 0.0], [0.0, 2.0, 0.0], [0.25, 0.0, 3.0]])
SINGULAR = expost.Utility([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
PRIOR = np.array([0.5, 0.3, 0.2])

# (id, function, args, kwargs, exception type, regex the message must match)
CATALOGUE = [
    (
        "q-nan",
        expost.weighted_prediction,
        (np.array([[np.nan, 0.5, 0.5]]), W),
        {},
        ValueError,
        r"`q`.*finite",
    ),
    ("q-inf", expost.decide, (np.array([[np.inf, 0.0, 0.0]]), W), {}, ValueError, r"`q`.*finite"),
    (
        "q-negative",
        expost.expected_utility,
        (np.array([[1.2, -0.2, 0.0]]), W),
        {},
        ValueError,
        r"`q`.*nonnegative.*-0\.2",
    ),
    (
        "q-off-simplex",
        expost.weighted_prediction,
        (np.array([[0.5, 0.5, 0.5]]), W),
        {},
        ValueError,
        r"`q`.*simplex.*1\.5",
    ),
    ("q-3d", expost.decide, (np.ones((2, 2, 3)) / 3, W), {}, ValueError, r"`q`.*2-D"),
    (
        "q-empty",
        expost.weighted_prediction,
        (np.empty((0, 3)), W),
        {},
        ValueError,
        r"`q`.*non-empty",
    ),
    (
        "q-shape-vs-U",
        expost.weighted_prediction,
        (np.full((2, 4), 0.25), W),
        {},
        ValueError,
        r"`q` must be an array with 3 columns \(one per class\), got 4 columns",
    ),
    ("q-strings", expost.decide, (np.array([["a", "b", "c"]]), W), {}, TypeError, r"`q`.*numeric"),
    ("q-none", expost.decide, (None, W), {}, TypeError, r"`q`.*numeric.*None"),
    (
        "y-out-of-range",
        expost.weighted_loss,
        (Q, np.array([0, 3]), W),
        {},
        ValueError,
        r"`y`.*\[0, 3\).*3",
    ),
    ("y-negative", expost.log_loss, (Q, np.array([-1, 0])), {}, ValueError, r"`y`.*-1"),
    (
        "y-non-integer",
        expost.weighted_loss,
        (Q, np.array([0.5, 1.0]), W),
        {},
        ValueError,
        r"`y`.*integer.*0\.5",
    ),
    ("y-strings", expost.brier_loss, (Q, np.array(["a", "b"])), {}, TypeError, r"`y`.*integer"),
    (
        "y-length",
        expost.weighted_loss,
        (Q, np.array([0, 1, 2]), W),
        {},
        ValueError,
        r"`y`.*one label per row \(2\).*3 labels",
    ),
    ("y-2d", expost.log_loss, (Q, np.array([[0], [1]])), {}, ValueError, r"`y`.*1-D"),
    (
        "y-empty",
        expost.classification_utility,
        (np.array([], dtype=int), np.array([], dtype=int), W),
        {},
        ValueError,
        r"`actions`.*non-empty",
    ),
    (
        "actions-out-of-range",
        expost.classification_utility,
        (np.array([0, 5]), Y, W),
        {},
        ValueError,
        r"`actions`.*\[0, 3\)",
    ),
    (
        "p-wrong-actions",
        expost.weighted_loss,
        (np.full((2, 2), 0.5), Y, W),
        {},
        ValueError,
        r"`p` must be an array with 3 columns \(one per action\)",
    ),
    (
        "base-unknown",
        expost.weighted_loss,
        (Q, Y, W),
        {"base": "hinge"},
        ValueError,
        r"`base`.*'log', 'brier'",
    ),
    (
        "reduction-unknown",
        expost.log_loss,
        (Q, Y),
        {"reduction": "avg"},
        ValueError,
        r"`reduction`.*'none', 'mean', 'sum'",
    ),
    (
        "utility-negative",
        expost.Utility,
        (np.array([[1.0, -1.0], [0.0, 1.0]]),),
        {},
        ValueError,
        r"`utility`.*nonnegative.*-1 at action 0, class 1",
    ),
    (
        "utility-degenerate",
        expost.Utility,
        (np.array([[1.0, 0.0], [2.0, 0.0]]),),
        {},
        ValueError,
        r"`utility`.*nondegenerate.*class 1",
    ),
    (
        "utility-nan",
        expost.Utility,
        (np.array([[1.0, np.nan], [0.0, 1.0]]),),
        {},
        ValueError,
        r"`utility`.*finite.*action 0, class 1",
    ),
    ("utility-1d", expost.Utility, (np.array([1.0, 2.0]),), {}, ValueError, r"`utility`.*2-D"),
    ("utility-empty", expost.Utility, (np.empty((0, 0)),), {}, ValueError, r"`utility`.*non-empty"),
    ("utility-string", expost.Utility, ("diag",), {}, TypeError, r"`utility`.*numeric"),
    ("utility-none", expost.decide, (Q, None), {}, TypeError, r"`utility`.*None"),
    (
        "weights-zero",
        expost.Utility.from_class_weights,
        (np.array([1.0, 0.0]),),
        {},
        ValueError,
        r"`weights`.*strictly positive.*class 1",
    ),
    (
        "weights-2d",
        expost.Utility.from_class_weights,
        (np.eye(2),),
        {},
        ValueError,
        r"`weights`.*1-D",
    ),
    (
        "costs-degenerate",
        expost.Utility.from_costs,
        (np.array([[1.0, 0.0], [1.0, 1.0]]),),
        {},
        ValueError,
        r"`costs`.*degenerate",
    ),
    (
        "costs-shift-unknown",
        expost.Utility.from_costs,
        (np.eye(2),),
        {"shift": "row"},
        ValueError,
        r"`shift`.*'column' or 'global'",
    ),
    (
        "prior-zero",
        W.normalized,
        (np.array([0.5, 0.5, 0.0]),),
        {},
        ValueError,
        r"`prior`.*strictly positive.*class 2",
    ),
    (
        "prior-not-summing",
        W.normalized,
        (np.array([0.5, 0.5, 0.5]),),
        {},
        ValueError,
        r"`prior`.*summing to 1",
    ),
    ("prior-length", W.normalized, (np.array([0.5, 0.5]),), {}, ValueError, r"`prior`.*3 entries"),
    (
        "normalize-nonsquare",
        expost.Utility(np.ones((2, 3))).normalized,
        (PRIOR,),
        {},
        ValueError,
        r"as many actions as classes",
    ),
    (
        "inverse-prior-zero",
        expost.Utility.inverse_prior,
        (np.array([1.0, 0.0]),),
        {},
        ValueError,
        r"`prior`.*strictly positive",
    ),
    (
        "singular-inversion",
        expost.recover_posterior,
        (Q, SINGULAR),
        {},
        ValueError,
        r"singular.*empirically",
    ),
    (
        "nonsquare-inversion",
        expost.recover_posterior,
        (Q, np.ones((2, 3))),
        {},
        ValueError,
        r"square.*empirically",
    ),
    (
        "invalid-option",
        expost.recover_posterior,
        (Q, W),
        {"invalid": "ignore"},
        ValueError,
        r"`invalid`",
    ),
    (
        "source-prior-zero",
        expost.adjust_prior,
        (Q, np.array([1.0, 0.0, 0.0]), PRIOR),
        {},
        ValueError,
        r"`source_prior`.*strictly positive",
    ),
    (
        "target-prior-negative",
        expost.adjust_prior,
        (Q, PRIOR, np.array([1.2, -0.2, 0.0])),
        {},
        ValueError,
        r"`target_prior`.*nonnegative",
    ),
    (
        "em-max-iter",
        expost.estimate_target_prior,
        (Q, PRIOR),
        {"max_iter": 0},
        ValueError,
        r"`max_iter`.*positive integer",
    ),
    ("elkan-multiclass", expost.elkan_threshold, (W,), {}, ValueError, r"`utility`.*2 x 2"),
    (
        "elkan-unreasonable",
        expost.elkan_threshold,
        (np.array([[1.0, 2.0], [0.0, 1.0]]),),
        {},
        ValueError,
        r"reasonable",
    ),
    (
        "gain-row-mismatch",
        expost.internal_alignment_gain,
        (Q, Q[:1], Y, W),
        {},
        ValueError,
        r"`p_unweighted`.*2 rows",
    ),
    (
        "costs-nonsquare",
        expost.cost_vector_weights,
        (np.ones((2, 3)),),
        {},
        ValueError,
        r"`costs`.*square",
    ),
    (
        "zhou-liu-zero-cost",
        expost.zhou_liu_weights,
        (np.array([[0.0, 0.0], [1.0, 0.0]]),),
        {},
        ValueError,
        r"`costs`.*positive misclassification",
    ),
    ("emphasize-bad-class", expost.Utility.emphasize, (3, 5), {}, ValueError, r"`emphasized`"),
]


@pytest.mark.parametrize(
    ("func", "args", "kwargs", "exc", "match"),
    [c[1:] for c in CATALOGUE],
    ids=[c[0] for c in CATALOGUE],
)
def test_bad_input_raises_clear_error_and_mutates_nothing(func, args, kwargs, exc, match):
    before = copy.deepcopy(args)
    with pytest.raises(exc, match=match):
        func(*args, **kwargs)
    for a, b in zip(args, before, strict=True):
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b)


def test_catalogue_is_large_enough():
    assert len(CATALOGUE) >= 20


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_valid_calls_never_mutate_inputs(dtype):
    q = Q.astype(dtype)
    frozen = q.copy()
    for u in (W, FULL):
        expost.weighted_prediction(q, u)
        expost.decide(q, u)
        expost.expected_utility(q, u)
        expost.recover_posterior(q, u)
        expost.weighted_loss(q, Y, u, base="brier")
        expost.weighted_loss(q, Y, u)
        expost.internal_alignment_gain(q, q, Y, u)
        expost.external_alignment_gain(q, q, Y, u)
    expost.adjust_prior(q, PRIOR, [0.2, 0.3, 0.5])
    expost.estimate_target_prior(q, PRIOR)
    expost.brier_loss(q, Y)
    np.testing.assert_array_equal(q, frozen)


def test_float32_rows_from_softmax_pass_the_simplex_check():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(10_000, 15)).astype(np.float32) * 5
    q = np.exp(z - z.max(1, keepdims=True))
    q /= q.sum(1, keepdims=True)
    assert expost.decide(q, np.eye(15)).shape == (10_000,)


def test_float16_rows_are_checked_at_float16_rounding_and_renormalised():
    """float16 probabilities are off the simplex by their rounding, more than float32's
    tolerance allows (they were refused until the check used float16's): accepted within
    8 float16 epsilons, renormalised in the float32 copy, the caller's array untouched."""
    rng = np.random.default_rng(3)
    q16 = rng.dirichlet(np.full(15, 0.5), size=2000).astype(np.float16)
    assert np.abs(q16.astype(np.float64).sum(axis=1) - 1).max() > 1e-4
    frozen = q16.copy()
    q32 = q16.astype(np.float32)
    q32 /= q32 @ np.ones((15, 1), dtype=np.float32)
    y = rng.integers(0, 15, 2000)
    u = expost.Utility(rng.uniform(0.1, 2.0, (15, 15)))
    for fn in (expost.weighted_prediction, expost.expected_utility, expost.decide):
        np.testing.assert_array_equal(fn(q16, u), fn(q32, u))
    assert expost.weighted_prediction(q16[0], u).dtype == np.float32  # one row, 1-D
    np.testing.assert_allclose(expost.recover_posterior(expost.weighted_prediction(q16, u), u), q32,
                               atol=1e-5)
    np.testing.assert_array_equal(expost.log_loss(q16, y), expost.log_loss(q32, y))
    np.testing.assert_array_equal(q16, frozen)
    off = q16.copy()
    off[7] *= np.float16(0.98)  # 2% short: refused, with the row and the tolerance
    with pytest.raises(ValueError, match=r"within 7\.8e-03\), got row 7 summing to 0\.97\d+\.$"):
        expost.decide(off, u)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
def test_big_endian_probabilities_are_checked_and_computed_as_native(dtype):
    """Data of the other byte order (a big-endian file read on this machine): the simplex
    check reads sign bits, so it must see native bits. A row with -0.5 (all its low bits
    zero) passed the check as big-endian until the input was converted: decide chose
    from it and weighted_prediction returned a negative probability."""
    rng = np.random.default_rng(5)
    u = expost.Utility(rng.uniform(0.1, 2.0, (4, 4)) + 3 * np.eye(4))
    y = rng.integers(0, 4, 50)
    q = rng.dirichlet(np.ones(4), size=50).astype(dtype)
    big = q.astype(q.dtype.newbyteorder(">"))
    frozen = big.copy()
    for fn in (expost.weighted_prediction, expost.expected_utility, expost.decide):
        got, native = fn(big, u), fn(q, u)
        assert got.dtype == native.dtype and got.dtype.isnative, fn.__name__
        np.testing.assert_array_equal(got, native)
    p = expost.weighted_prediction(q, u)
    np.testing.assert_array_equal(expost.recover_posterior(p.astype(p.dtype.newbyteorder(">")), u),
                                  expost.recover_posterior(p, u))
    np.testing.assert_array_equal(expost.log_loss(big, y), expost.log_loss(q, y))
    np.testing.assert_array_equal(big, frozen)
    bad = big.copy()
    bad[3, :2] = [-0.5, 1.5]
    bad[3, 2:] = 0
    for fn in (expost.weighted_prediction, expost.expected_utility, expost.decide):
        with pytest.raises(ValueError, match=r"`q` must be nonnegative probabilities, got -0\.5 at row 3"):
            fn(bad, u)
    with pytest.raises(ValueError, match=r"`p` must be nonnegative"):
        expost.recover_posterior(bad, u)


def test_tolerance_is_tight_for_float64():
    q = np.array([[0.5, 0.5 + 1e-4]])
    with pytest.raises(ValueError, match="simplex"):
        expost.weighted_prediction(q, np.eye(2))


def test_utility_is_immutable_and_copied():
    m = np.array([[1.0, 0.0], [0.0, 2.0]])
    u = expost.Utility(m)
    m[0, 0] = 100.0
    assert u.matrix[0, 0] == 1.0
    with pytest.raises(ValueError):
        u.matrix[0, 0] = 5.0
    with pytest.raises(ValueError):
        u.class_weights[0] = 5.0
    with pytest.raises(AttributeError):
        u.foo = 1  # type: ignore[attr-defined]


def test_utility_labels_of_the_wrong_count_are_counted_in_the_message():
    with pytest.raises(ValueError, match=r"^`classes` must be 2 labels, got 1 label\.$"):
        expost.Utility(np.eye(2), classes=["a"])
    with pytest.raises(ValueError, match=r"^`actions` must be 2 labels, got 3 labels\.$"):
        expost.Utility(np.eye(2), actions=["a", "b", "c"])


def test_utility_value_semantics():
    u = expost.Utility(
        [[1.0, 0.0], [0.0, 2.0]], classes=["neg", "pos"], actions=["treat-no", "treat"]
    )
    assert u == pickle.loads(pickle.dumps(u))
    assert hash(u) == hash(copy.deepcopy(u))
    assert u != expost.Utility([[1.0, 0.0], [0.0, 2.0]])
    assert u.classes == ("neg", "pos") and u.actions == ("treat-no", "treat")
    np.testing.assert_array_equal(np.asarray(u), u.matrix)
    assert "from_class_weights" in repr(expost.Utility.from_class_weights([1, 2]))
    assert u.n_actions == 2 and u.n_classes == 2 and u.is_diagonal
    assert not FULL.is_diagonal
    with pytest.raises(ValueError, match=r"class_weights.*diagonal"):
        _ = FULL.class_weights
    with pytest.raises(ValueError, match=r"`classes`.*distinct"):
        expost.Utility(np.eye(2), classes=["a", "a"])
    with pytest.raises(ValueError, match=r"`actions`.*2 labels"):
        expost.Utility(np.eye(2), actions=["a"])


def test_utility_accepts_arrays_everywhere_and_non_square_shapes():
    u = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])  # 2 actions, 3 classes
    pu = expost.weighted_prediction(Q, u)
    assert pu.shape == (2, 2)
    np.testing.assert_allclose(pu, [[0.7, 0.3], [0.1, 0.9]])
    np.testing.assert_array_equal(expost.decide(Q, u), [0, 1])
    np.testing.assert_allclose(expost.classification_utility([0, 1], Y, u), [1.0, 1.0])


@pytest.mark.parametrize("by_sample", ["compiled", False, True])
@pytest.mark.parametrize("u", [FULL, W], ids=["dense", "class-weights"])
def test_blocks_check_every_row_and_name_it_globally(u, by_sample, monkeypatch):
    """Inputs are processed in row blocks; a bad row in a later block is found and named by
    its index, on each of decide's paths (compiled; in numpy by action, with and without a
    product, and by sample)."""
    from expost import _decisions, _rows

    monkeypatch.setattr(_decisions, "BLOCK_ROWS", 7)
    if by_sample != "compiled":
        monkeypatch.setattr(_rows, "_compiled", None)
    if by_sample is True:
        for name in _decisions._LAYOUT_THRESHOLDS:
            monkeypatch.setattr(_decisions, name, 1)
    rng = np.random.default_rng(3)
    q = rng.dirichlet(np.ones(3), size=50)
    np.testing.assert_allclose(expost.weighted_prediction(q, u), (q @ u.matrix.T) / (q @ u.matrix.T).sum(1, keepdims=True))
    np.testing.assert_array_equal(expost.decide(q, u), np.argmax(q @ u.matrix.T, axis=1))
    np.testing.assert_allclose(expost.expected_utility(q, u), q @ u.matrix.T)
    np.testing.assert_allclose(expost.recover_posterior(expost.weighted_prediction(q, u), u), q, atol=1e-12)
    for func in (expost.weighted_prediction, expost.decide, expost.expected_utility):
        bad = q.copy()
        bad[38, 1] = np.nan
        with pytest.raises(ValueError, match=r"`q` must be finite \(no NaN or inf\), got nan at row 38, column 1\.$"):
            func(bad, u)
        bad = q.copy()
        bad[45] = [1.2, -0.2, 0.0]
        with pytest.raises(ValueError, match=r"`q`.*-0\.2 at row 45, column 1"):
            func(bad, u)
        bad = q.copy()
        bad[22] *= 2
        with pytest.raises(ValueError, match=r"`q`.*row 22 summing to 2"):
            func(bad, u)
    bad = q.copy()
    bad[30, 0] = np.inf
    with pytest.raises(ValueError, match=r"`p`.*row 30"):
        expost.recover_posterior(bad, u)


def test_a_check_names_the_first_bad_row_not_the_worst():
    """Rows 3 and 10 are off in sum, 6 and 12 have negatives, 8 a NaN: each error names the
    first bad row in the array, and says what is wrong with that one."""
    q = np.full((14, 2), 0.5)
    q[10] = [0.5, 2.5]
    q[3] = [0.5, 0.6]
    with pytest.raises(ValueError, match=r"got row 3 summing to 1\.1\.$"):
        expost.decide(q, FULL.matrix[:2, :2])
    q[12] = [1.9, -0.9]
    q[6] = [1.1, -0.1]
    q[8] = [np.nan, 0.5]
    q[3] = [0.5, 0.5]
    with pytest.raises(ValueError, match=r"nonnegative probabilities, got -0\.1 at row 6, column 1\.$"):
        expost.log_loss(q, np.zeros(14, dtype=int))
    q[6] = [0.5, 0.5]
    with pytest.raises(ValueError, match=r"finite \(no NaN or inf\), got nan at row 8, column 0\.$"):
        expost.weighted_prediction(q, FULL.matrix[:2, :2])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_blockwise_check_passes_what_check_rows_passes(dtype, monkeypatch):
    """The block check's fast pass (no entry's sign bit set, row sums near 1) sends
    -0.0 and negatives within the tolerance to the exact check, which accepts them;
    a NaN (sign bit clear) is caught by its row's sum."""
    from expost import _decisions

    monkeypatch.setattr(_decisions, "BLOCK_ROWS", 7)
    rng = np.random.default_rng(4)
    q = rng.dirichlet(np.ones(3), size=30).astype(dtype)
    tol = float(np.finfo(dtype).eps) * 8
    q[9] = [0.5, 0.5, -0.0]
    q[17] = [0.75 + tol, 0.25, -tol]
    want = np.argmax(q.astype(np.float64) @ FULL.matrix.T, axis=1)
    np.testing.assert_array_equal(expost.decide(q, FULL), want)
    assert expost.weighted_prediction(q, FULL).shape == (30, 3)
    nan = q.copy()
    nan[24, 2] = np.float64(np.nan)
    assert not np.signbit(nan[24, 2])
    for func in (expost.weighted_prediction, expost.decide):
        with pytest.raises(ValueError, match=r"`q` must be finite \(no NaN or inf\), got nan at row 24, column 2\.$"):
            func(nan, FULL)
