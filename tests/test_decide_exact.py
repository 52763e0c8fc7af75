"""The fast decision layer is exact: decisions, p^u and Eq 26 against independent references.

``decide`` computes utilities with one product laid out by sample and takes each
row's argmax in compiled code (``_decide_compiled``, where ``expost._rowops`` was
built); or, in numpy, with one product laid out by action and the argmax in
whole-row passes, or, for a large U (``_by_sample``), with the product laid out by
sample and numpy's argmax along each row. These tests drive all three paths
(``THRESHOLDS``: the compiled route, every utility by sample, or none) and hold them to
``argmax(q @ U.T)`` with ties to the lowest index. On *dyadic* inputs (q in
sixteenths, small integer utilities) every product and sum is exact in float32
and float64 whatever the summation order, so the reference is exact integer
arithmetic and exact ties are common. On general floats, two actions within rounding of each other may be
ordered either way by any product, so there the chosen action must attain the
maximum up to rounding.
"""

from __future__ import annotations

import contextlib
import tracemalloc
from unittest import mock

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from threadpoolctl import threadpool_limits

import expost
from expost import _decisions, _rows
from strategies import simplex_rows, utilities

DTYPES = [np.float32, np.float64]

#: What sends every utility down one path of ``decide``: the compiled route where it
#: was built (the numpy routes otherwise: the default rule), or, with the compiled
#: passes switched off, products by sample and np.argmax along rows (1), or products
#: by action (never rows).
THRESHOLDS = ["compiled", 1, 10**9]


@contextlib.contextmanager
def _route(rows_from: int | str):
    """Patch all of ``decide``'s size thresholds (dense U, class weights) to ``rows_from``,
    with the compiled passes off; or nothing, for ``"compiled"``."""
    if rows_from == "compiled":
        yield
        return
    with mock.patch.multiple(_decisions, **dict.fromkeys(_decisions._LAYOUT_THRESHOLDS, rows_from)), \
            _rows.numpy_only():
        yield


def _route_for_test(monkeypatch: pytest.MonkeyPatch, rows_from: int | str) -> None:
    """:func:`_route` for the rest of a test."""
    if rows_from == "compiled":
        return
    monkeypatch.setattr(_rows, "_compiled", None)
    for name in _decisions._LAYOUT_THRESHOLDS:
        monkeypatch.setattr(_decisions, name, rows_from)


def _sixteenths(cuts: np.ndarray) -> np.ndarray:
    """Integer counts summing to 16 per row, from cut points in [0, 16] (n x m-1)."""
    n = cuts.shape[0]
    edges = np.hstack([np.zeros((n, 1), np.int64), np.sort(cuts, axis=1), np.full((n, 1), 16)])
    return np.diff(edges, axis=1)


@st.composite
def dyadic_problem(draw, n: int, max_actions: int = 9):
    """Counts (n x m, each row summing to 16) and integer utilities (a x m, nondegenerate)."""
    m = draw(st.integers(1, 6))
    a = draw(st.integers(1, max_actions))
    counts = _sixteenths(draw(hnp.arrays(np.int64, (n, m - 1), elements=st.integers(0, 16))))
    u_int = draw(hnp.arrays(np.int64, (a, m), elements=st.integers(0, 3)))
    for y in np.flatnonzero(~(u_int > 0).any(axis=0)):
        u_int[draw(st.integers(0, a - 1)), y] = draw(st.integers(1, 3))
    return counts, u_int


def _exact_reference(counts: np.ndarray, u_int: np.ndarray) -> np.ndarray:
    """argmax over actions of integer expected utilities (x16); np.argmax keeps the first maximum."""
    return np.argmax(counts @ u_int.T, axis=1)


@given(
    data=st.data(),
    block=st.integers(1, 9),
    dtype=st.sampled_from(DTYPES),
    order=st.sampled_from("CF"),
    rows_from=st.sampled_from(THRESHOLDS),
)
def test_decide_equals_exact_argmax_with_lowest_index_ties(data, block, dtype, order, rows_from):
    n = data.draw(st.sampled_from([1, block - 1, block, block + 1, 2 * block, 2 * block + 1, 3 * block + 2]))
    counts, u_int = data.draw(dyadic_problem(max(n, 1)))
    q = np.asarray(counts / 16.0, dtype=dtype, order=order)
    expected = _exact_reference(counts, u_int)
    with mock.patch.object(_decisions, "BLOCK_ROWS", block), _route(rows_from):
        got = expost.decide(q, u_int.astype(float))
    np.testing.assert_array_equal(got, expected)
    # The naive product is exact here too, so it agrees bit for bit.
    np.testing.assert_array_equal(got, np.argmax(q @ u_int.T.astype(dtype), axis=1))
    assert got.dtype == np.intp


@pytest.mark.parametrize("rows_from", THRESHOLDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_actions", [1, 2, 3, 15, 16, 17, 31, 32, 47, 48, 127, 128, 130, 255, 256, 300])
def test_decide_exact_for_one_to_hundreds_of_actions(n_actions, dtype, rows_from, monkeypatch):
    _route_for_test(monkeypatch, rows_from)
    rng = np.random.default_rng(n_actions)
    m = 5
    counts = _sixteenths(rng.integers(0, 17, size=(2000, m - 1)))
    u_int = rng.integers(0, 4, size=(n_actions, m))
    u_int[0] += 1  # nondegenerate
    got = expost.decide((counts / 16.0).astype(dtype), u_int.astype(float))
    np.testing.assert_array_equal(got, _exact_reference(counts, u_int))


@pytest.mark.parametrize("rows_from", THRESHOLDS)
@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [4, 40])  # blocks of BLOCK_ROWS rows; of BLOCK_BYTES
def test_decide_exact_at_the_default_block_size(m, dtype, order, rows_from, monkeypatch):
    """Row counts just below, at and above the block size (and a lone row in a last block)."""
    _route_for_test(monkeypatch, rows_from)
    rng = np.random.default_rng(1)
    big = _decisions._block_rows(m, np.dtype(dtype))
    # the cap, the byte budget (2**18 bytes of q), the byte budget, the floor
    assert big == {(4, 4): 16384, (4, 8): 8192, (40, 4): 1638, (40, 8): 1024}[m, np.dtype(dtype).itemsize]
    a = 6
    u_int = rng.integers(0, 4, size=(a, m))
    u_int[1] += 1
    for n in (big - 1, big, big + 1, 2 * big + 1):
        counts = _sixteenths(rng.integers(0, 17, size=(n, m - 1)))
        q = np.asarray(counts / 16.0, dtype=dtype, order=order)
        np.testing.assert_array_equal(expost.decide(q, u_int.astype(float)), _exact_reference(counts, u_int))


def test_the_default_layouts_for_the_papers_sizes():
    """By action for ChestX-ray14's 15 classes and CIFAR-10's 10; by sample for CIFAR-100's
    100 classes, for class weights from ROW_ARGMAX_WEIGHTS classes, and for many actions."""
    rng = np.random.default_rng(0)

    def dense(a: int, c: int) -> np.ndarray:
        return _decisions._scaled(rng.uniform(0.1, 2.0, (a, c)))

    def weights(m: int) -> np.ndarray:
        return _decisions._scaled(np.diag(rng.uniform(1.0, 5.0, m)))

    assert not any(_decisions._by_sample(u) for u in (dense(15, 15), dense(10, 10), dense(16, 15),
                                                       dense(44, 100), dense(64, 15), weights(15)))
    assert all(_decisions._by_sample(u) for u in (dense(100, 100), dense(48, 48), dense(100, 15),
                                                   weights(_decisions.ROW_ARGMAX_WEIGHTS), weights(100)))
    assert not _decisions._by_sample(weights(_decisions.ROW_ARGMAX_WEIGHTS - 1))


@pytest.mark.parametrize("rows_from", THRESHOLDS)
@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("m", [6, 50])
def test_decide_exact_for_class_weights(m, order, rows_from, monkeypatch):
    """A diagonal U, on both layouts without a matrix product: by action, the block
    copied transposed and scaled by w; by sample, ``w * q`` with w broadcast. Exact
    integer reference with frequent ties."""
    _route_for_test(monkeypatch, rows_from)
    monkeypatch.setattr(_decisions, "BLOCK_ROWS", 1000)
    monkeypatch.setattr(_decisions, "FLAT_ROWS", 500)
    rng = np.random.default_rng(m)
    counts = _sixteenths(rng.integers(0, 17, size=(2300, m - 1)))
    w = rng.integers(1, 4, size=m)
    for dtype in DTYPES:
        q = np.asarray(counts / 16.0, dtype=dtype, order=order)
        got = expost.decide(q, expost.Utility.from_class_weights(w.astype(float)))
        np.testing.assert_array_equal(got, np.argmax(counts * w, axis=1))


@pytest.mark.parametrize("rows_from", THRESHOLDS)
def test_fully_tied_rows_go_to_action_zero_and_ties_to_the_lowest_tied_action(rows_from, monkeypatch):
    _route_for_test(monkeypatch, rows_from)
    q = np.full((40, 3), 1 / 3)
    np.testing.assert_array_equal(expost.decide(q, np.ones((5, 3))), np.zeros(40))
    # actions 0 and 1 are dominated; 2 and 4 tie (identical rows) above 3
    u = np.array([[0.0, 0, 1], [0, 1, 0], [1, 1, 1], [1, 1, 0.5], [1, 1, 1]])
    np.testing.assert_array_equal(expost.decide(q, u), np.full(40, 2))
    np.testing.assert_array_equal(expost.decide(q.astype(np.float32), u), np.full(40, 2))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("rows_from", THRESHOLDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("n_actions", "n_classes"), [(60, 15), (50, 50), (40, 40)])
def test_identical_actions_tie_to_the_lowest_on_general_floats(n_actions, n_classes, dtype, rows_from,
                                                                threads, monkeypatch):
    """Identical rows of U have equal expected utilities under every q, but a product may
    round them apart: ``decide`` chose a higher identical action for up to 28% of these
    rows in float32 until it took one action of each group. (In float64 it did for an
    all-ones U with two BLAS threads: ``test_harness_frontier``.)"""
    _route_for_test(monkeypatch, rows_from)
    rng = np.random.default_rng(n_actions)
    u = rng.uniform(0.1, 1.0, (n_actions, n_classes))
    groups = [[3, 17, n_actions - 1], [5, 29]]  # the first of each group is kept
    for g in groups:
        u[g] = u[g[0]] + 0.5  # often the best
    q = rng.dirichlet(np.full(n_classes, 0.5), size=30000).astype(dtype)
    with threadpool_limits(threads, user_api="blas"):
        got = expost.decide(q, u)
        keep = np.setdiff1d(np.arange(n_actions), [a for g in groups for a in g[1:]])
        without_repeats = keep[expost.decide(q, u[keep])]
    assert np.isin(got, [g[0] for g in groups]).mean() > 0.3  # the groups do win often
    assert np.isin(got, keep).all()
    np.testing.assert_array_equal(got, without_repeats)


def test_first_identical_actions():
    from expost._utility import first_identical_actions

    u = np.array([[1.0, 2], [0, 1], [1, 2], [0, 1], [3, 3], [1, 2]])
    np.testing.assert_array_equal(first_identical_actions(u), [0, 1, 0, 1, 4, 0])
    np.testing.assert_array_equal(first_identical_actions(np.asfortranarray(u)), [0, 1, 0, 1, 4, 0])
    assert first_identical_actions(np.eye(3)) is None
    assert first_identical_actions(np.ones((1, 4))) is None
    np.testing.assert_array_equal(first_identical_actions(np.array([[0.0, 1], [-0.0, 1]])), [0, 0])
    # rows equal only after rounding to float32 are identical in float32
    close = np.array([[1.0, 1.0], [1.0, 1.0 + 1e-12]])
    assert first_identical_actions(close) is None
    np.testing.assert_array_equal(first_identical_actions(close.astype(np.float32)), [0, 0])


@given(data=st.data(), m=st.integers(2, 6), a=st.integers(1, 8), dtype=st.sampled_from(DTYPES),
       rows_from=st.sampled_from(THRESHOLDS))
def test_decide_attains_the_maximum_on_general_inputs(data, m, a, dtype, rows_from):
    u = data.draw(utilities(m, n_actions=a))
    q = data.draw(simplex_rows(12, m)).astype(dtype)
    with mock.patch.object(_decisions, "BLOCK_ROWS", 5), _route(rows_from):
        got = expost.decide(q, u)
    eu = q.astype(np.float64) @ u.matrix.T
    top = eu.max(axis=1)
    slack = 64 * np.finfo(dtype).eps * (q.astype(np.float64) @ u.matrix.max(axis=0))
    assert np.all(eu[np.arange(len(q)), got] >= top - slack)
    clear = np.sort(eu, axis=1)[:, -2:] if a > 1 else None
    if clear is not None:
        unique = clear[:, 1] - clear[:, 0] > slack
        np.testing.assert_array_equal(got[unique], np.argmax(eu, axis=1)[unique])


@pytest.mark.parametrize("diagonal", [False, True])
@pytest.mark.parametrize("m", [15, 60])  # products by action / by sample (the default thresholds)
def test_decide_keeps_one_temporary_of_the_block_size(m, diagonal):
    """Peak extra memory: the output plus about one block of products (and byte-sized flags)."""
    rng = np.random.default_rng(0)
    q = rng.dirichlet(np.ones(m), size=4 * _decisions.BLOCK_ROWS).astype(np.float32)
    u = np.diag(rng.uniform(0.1, 2.0, size=m)) if diagonal else rng.uniform(0.1, 2.0, size=(m, m))
    expost.decide(q[:10], u)  # warm up imports and caches
    tracemalloc.start()
    out = expost.decide(q, u)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    block_bytes = _decisions._block_rows(m, q.dtype) * m * q.itemsize
    assert peak - out.nbytes < 2 * block_bytes


# ---------------------------------------------------------------- accuracy of p^u and Eq 26


def _eq8_long(q: np.ndarray, u: np.ndarray) -> np.ndarray:
    z = q.astype(np.longdouble) @ u.astype(np.longdouble).T
    return z / z.sum(axis=1, keepdims=True)


@pytest.mark.parametrize(("dtype", "rtol"), [(np.float32, 1e-6), (np.float64, 1e-12)])
@pytest.mark.parametrize("kind", ["diagonal", "dense", "wide"])
def test_weighted_prediction_is_accurate(dtype, rtol, kind):
    rng = np.random.default_rng(7)
    m = 15
    z = rng.normal(size=(3000, m)) * 3
    q = np.exp(z - z.max(axis=1, keepdims=True))
    q = (q / q.sum(axis=1, keepdims=True)).astype(dtype)
    if kind == "diagonal":
        u = np.diag(rng.uniform(0.01, 100.0, size=m))
    elif kind == "dense":
        u = rng.uniform(0.1, 2.0, size=(m, m)) + 5 * np.eye(m)
    else:
        u = rng.uniform(0.0, 3.0, size=(40, m))
    with mock.patch.object(_decisions, "BLOCK_ROWS", 1000):
        got = expost.weighted_prediction(q, u)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, _eq8_long(q, u).astype(np.float64), rtol=rtol, atol=0)


@pytest.mark.parametrize(("dtype", "rtol"), [(np.float32, 1e-6), (np.float64, 1e-12)])
@pytest.mark.parametrize("layout", ["C", "F", "strided"])
@pytest.mark.parametrize("n_rows", [1, 999, 2200])
def test_diagonal_u_takes_the_elementwise_path_accurately(dtype, rtol, layout, n_rows):
    """Class weights: w * q over a flat block (C order, from FLAT_ROWS rows) or broadcast (any
    other layout, and short blocks: 2200 rows are blocks of 1000, 1000 and 200)."""
    rng = np.random.default_rng(11)
    m = 7
    w = rng.uniform(0.01, 100.0, size=m)
    full = rng.dirichlet(np.ones(m), size=2 * n_rows).astype(dtype)
    q = {"C": full[:n_rows], "F": np.asfortranarray(full[:n_rows]), "strided": full[::2]}[layout]
    before = q.copy()
    with mock.patch.object(_decisions, "BLOCK_ROWS", 1000), mock.patch.object(_decisions, "FLAT_ROWS", 500):
        got = expost.weighted_prediction(q, expost.Utility.from_class_weights(w))
        back = expost.recover_posterior(got, expost.Utility.from_class_weights(w))
    np.testing.assert_array_equal(q, before)
    assert got.dtype == dtype and got.flags.c_contiguous
    np.testing.assert_allclose(got, _eq8_long(q, np.diag(w)).astype(np.float64), rtol=rtol, atol=0)
    np.testing.assert_allclose(back, q, rtol=20 * rtol, atol=0)  # Eq 27 is Eq 16 with 1/w



@pytest.mark.parametrize("diagonal", [True, False])
def test_a_weighted_prediction_kernel_made_once_serves_arrays_of_any_size(diagonal):
    """``_weighted_prediction_by``: one utility's set-up reused on arrays that grow and
    shrink (the w tiled for the flat path is grown for a longer block, not overrun), each
    result the one-off function's, bit for bit."""
    rng = np.random.default_rng(5)
    m = 5
    u = np.diag(rng.uniform(0.1, 9.0, m)) if diagonal else rng.uniform(0.1, 2.0, (m, m))
    apply = _decisions._weighted_prediction_by(u, np.dtype(np.float64))
    with mock.patch.object(_decisions, "BLOCK_ROWS", 1000), mock.patch.object(_decisions, "FLAT_ROWS", 500):
        for n in (600, 2500, 3, 999, 1700):  # blocks of 600; 1000; 3; 999; 1000 and 700
            q = rng.dirichlet(np.ones(m), size=n)
            np.testing.assert_array_equal(apply(q), _decisions._weighted_prediction(q, u))
            np.testing.assert_allclose(apply(q), _eq8_long(q, u), rtol=1e-12, atol=0)

def test_a_nearly_diagonal_u_is_not_taken_for_a_diagonal_one():
    """One off-diagonal entry of 1e-30 must still count: the product, not w * q."""
    q = np.array([[0.0, 1.0], [1.0, 0.0]])
    u = np.array([[2.0, 1e-30], [0.0, 3.0]])
    got = expost.weighted_prediction(q, u)
    assert got[0, 0] > 0  # 1e-30 / (1e-30 + 3) survives in float64
    np.testing.assert_allclose(got, _eq8_long(q, u).astype(np.float64), rtol=1e-12, atol=0)


@pytest.mark.parametrize(("dtype", "tol"), [(np.float32, 1e-6), (np.float64, 1e-12)])
def test_recover_posterior_is_accurate(dtype, tol):
    rng = np.random.default_rng(8)
    m = 6
    q = rng.dirichlet(np.ones(m), size=2000)
    w = rng.uniform(0.1, 10.0, size=m)
    p = (q * w / (q @ w)[:, None]).astype(dtype)
    expected = p.astype(np.longdouble) / w
    expected /= expected.sum(axis=1, keepdims=True)
    got = expost.recover_posterior(p, expost.Utility.from_class_weights(w))
    np.testing.assert_allclose(got, expected.astype(np.float64), rtol=tol, atol=0)  # Eq 27
    u = rng.uniform(0.0, 0.5, size=(m, m)) + 2 * np.eye(m)  # dense, well conditioned
    p = expost.weighted_prediction(q.astype(dtype), u)
    np.testing.assert_allclose(expost.recover_posterior(p, u), q, atol=20 * tol, rtol=0)


# ---------------------------------------------------------------- the float range


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [1e308, 1e300, 1e-300, 1e-320, 5e-324])
def test_results_do_not_depend_on_the_scale_of_u(scale, dtype):
    """p^u, decisions and Eq 26 are invariant to scaling U; extreme scales must not overflow or underflow."""
    rng = np.random.default_rng(3)
    q = rng.dirichlet(np.ones(3), size=50).astype(dtype)
    base = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.0], [0.0, 0.25, 1.0]])
    u = base * scale if scale > 1e-320 else (base > 0) * scale  # subnormal scales: one value
    ref_u = base if scale > 1e-320 else (base > 0) * 1.0
    pu = expost.weighted_prediction(q, u)
    assert np.isfinite(pu).all()
    np.testing.assert_allclose(pu, expost.weighted_prediction(q, ref_u), rtol=1e-6 if dtype == np.float32 else 1e-12)
    np.testing.assert_array_equal(expost.decide(q, u), expost.decide(q, ref_u))
    np.testing.assert_allclose(expost.recover_posterior(pu, u), q, atol=1e-5 if dtype == np.float32 else 1e-12)


def test_weighted_prediction_near_the_ends_of_the_float_range():
    """The hardening issue's cases: [0, 0] near 1e308 and NaN near 5e-324, before U was scaled."""
    np.testing.assert_allclose(expost.weighted_prediction([0.25, 0.75], np.diag([1e308, 1e308])), [0.25, 0.75])
    np.testing.assert_allclose(expost.weighted_prediction([0.25, 0.75], np.diag([5e-324, 5e-324])), [0.25, 0.75])
    # float32 probabilities with float64-only utilities: not cast to inf or 0
    q32 = np.array([0.25, 0.75], dtype=np.float32)
    np.testing.assert_allclose(expost.weighted_prediction(q32, np.diag([1e308, 1e308])), [0.25, 0.75])
    # a range of utilities wider than float32's: computed in float64, returned in float32
    wide = expost.weighted_prediction(np.array([[1.0, 0.0], [0.5, 0.5]], np.float32), np.diag([1e-300, 1.0]))
    assert wide.dtype == np.float32
    np.testing.assert_array_equal(wide, [[1.0, 0.0], [0.0, 1.0]])  # 1e-300 rounds to 0 in float32


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("dtype", DTYPES)
def test_utilities_spanning_more_than_the_float_range_from_one(dtype):
    """1e200 beside 1e-200: scaled so that the largest is 1, the small ones underflowed to 0
    and p^u of a row on class 1 was 0 / 0 (NaN); scaled as high as overflow allows, they stay."""
    u = np.array([[1e200, 1e-200, 3e-200], [0.0, 1e-200, 0.0], [1e199, 0.0, 1e-199]])
    q = np.array([[0.0, 1.0, 0.0], [0.5, 0.5, 0.0], [0.0, 0.25, 0.75], [0.1, 0.2, 0.7]], dtype=dtype)
    v = q.astype(np.longdouble) @ u.astype(np.longdouble).T
    want = (v / v.sum(axis=1, keepdims=True)).astype(dtype)
    got = expost.weighted_prediction(q, u)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, want, rtol=1e-6 if dtype == np.float32 else 1e-14, atol=0)
    np.testing.assert_array_equal(expost.decide(q, u), np.argmax(v, axis=1))


def test_utilities_beyond_float64_from_one_another_are_refused():
    """Entries 1e308 and 5e-324 apart: no power of two keeps class 1's utility and the sums."""
    u = np.array([[1e308, 5e-324], [0.0, 5e-324]])
    for fn in (expost.weighted_prediction, expost.decide):
        with pytest.raises(ValueError, match=r"^`utility` must be .*got class 1's largest utility 4.94e-324"):
            fn([[0.5, 0.5]], u)


@pytest.mark.filterwarnings("error")
def test_long_double_probabilities_are_computed_in_long_double():
    rng = np.random.default_rng(11)
    q = rng.dirichlet(np.ones(4), size=30)
    u = rng.uniform(0.1, 2.0, (5, 4))
    got = expost.weighted_prediction(q.astype(np.longdouble), u)
    assert got.dtype == np.longdouble
    np.testing.assert_allclose(got.astype(np.float64), expost.weighted_prediction(q, u), rtol=1e-14)
    np.testing.assert_array_equal(expost.decide(q.astype(np.longdouble), u), expost.decide(q, u))


# ---------------------------------------------------------------- the cached preparation of U
def test_the_cached_preparation_is_keyed_by_content_and_read_only(monkeypatch):
    """A small U's preparation (scaled U, identical actions, the kernels' constant matrices,
    U^-1) is cached by its bytes. Utilities of one shape that differ in one entry, or only
    in the sign of a zero, each get their own answers; the results equal those of a fresh
    preparation bit for bit; and nothing cached can be written to."""
    from expost import _recalibration

    rng = np.random.default_rng(5)
    q = rng.dirichlet(np.ones(4), 500)
    base = rng.uniform(0.1, 1.0, (4, 4)) + 2 * np.eye(4)
    other = base.copy()
    other[2, 1] += 3.0  # makes action 2 win where class 1 is likely
    signed = np.diag([1.0, 2.0, 3.0, 4.0])
    signed_neg = signed.copy()
    signed_neg[0, 1] = -0.0  # equal to signed (Utility makes it 0.0): the same answers
    fns = {"decide": lambda u: expost.decide(q, u),
           "weighted_prediction": lambda u: expost.weighted_prediction(q, u),
           "recover_posterior": lambda u: expost.recover_posterior(expost.weighted_prediction(q, u), u)}
    mats = [base, other, signed, signed_neg, base.T.copy()]
    cached = {k: [fn(u) for u in mats * 2] for k, fn in fns.items()}  # the second round from the cache
    monkeypatch.setattr(_decisions, "PREPARED_ENTRIES", -1)  # every call prepares U afresh
    for k, fn in fns.items():
        fresh = [fn(u) for u in mats]
        for got, want in zip(cached[k], fresh * 2, strict=True):
            np.testing.assert_array_equal(got, want, err_msg=k)
    assert not np.array_equal(cached["decide"][0], cached["decide"][1])
    np.testing.assert_array_equal(cached["decide"][1], np.argmax(q @ other.T, axis=1))
    monkeypatch.undo()
    p = _decisions._prepared(base, np.dtype(np.float32))
    assert p is _decisions._prepared(base.copy(), np.dtype(np.float32))  # one entry per content
    assert p is not _decisions._prepared(base, np.dtype(np.float64))  # and per dtype
    for a in (p.us, p.ut, p.w, p.totals, p.ua, _recalibration._inverse(expost.Utility(base))):
        assert not a.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            a[0] = 1.0


def test_a_large_utility_is_prepared_at_each_call_not_cached():
    n = int(np.sqrt(_decisions.PREPARED_ENTRIES)) + 1
    u = np.eye(n) + 0.01
    before = _decisions._prepared_by_bytes.cache_info()
    expost.decide(np.full((3, n), 1.0 / n), u)
    assert _decisions._prepared_by_bytes.cache_info() == before
