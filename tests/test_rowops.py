"""The compiled row passes (``expost._rowops``) against the numpy code they replace.

``expost._rows`` calls the compiled module where it was built and computes the same in
numpy otherwise (an install without a C compiler). The two must agree exactly: entry
for entry in ``divide_rows`` (one reciprocal, one product, both rounded in the dtype),
and in the reductions; so ``weighted_prediction`` and ``recover_posterior`` give the
same bits either way. Each test runs both by switching the module off (``numpy_rows``).
"""

from __future__ import annotations

import contextlib
import os
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import expost
from expost import _decisions, _rows

compiled = pytest.mark.skipif(not _rows.is_compiled(), reason="expost._rowops was not built")
DTYPES = [np.float32, np.float64]


def test_the_compiled_module_is_built():
    """CI (``EXPOST_REQUIRE_EXTENSION=1``) must not fall back to numpy unnoticed."""
    if not _rows.is_compiled():
        if os.environ.get("EXPOST_REQUIRE_EXTENSION") == "1":
            pytest.fail("expost._rowops was not built: reinstall with a C compiler (pip install -e .)")
        pytest.skip("expost._rowops was not built (no C compiler at install): numpy does its work")
    from expost import _rowops

    assert _rows._compiled is _rowops


numpy_rows = _rows.numpy_only  # within it, ``_rows`` computes in numpy


def _both(fn, *arrays):
    """``fn(*copies)`` with the compiled module, then with numpy; the results and the copies."""
    first = [a.copy() for a in arrays]
    r1 = fn(*first)
    with numpy_rows():
        second = [a.copy() for a in arrays]
        r2 = fn(*second)
    return (r1, first), (r2, second)


finite_or_not = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.sampled_from([0.0, -0.0, 1.0, -1.0, 1e-40, -1e-40, 3e38, float("inf"), float("nan")]),
)


@compiled
@settings(max_examples=150, deadline=None)
@given(data=st.data(), dtype=st.sampled_from(DTYPES), n=st.integers(0, 70), k=st.integers(1, 20),
       extra=st.integers(1, 3))
def test_divide_rows_equals_numpy_entry_for_entry(data, dtype, n, k, extra):
    z = data.draw(hnp.arrays(dtype, (n, k + extra), elements=finite_or_not))
    dest = np.empty((n, k), dtype)
    done = dest.copy()
    _rows._compiled.divide_rows(z, done)
    expected = np.empty((n, k), dtype)
    with np.errstate(all="ignore"):
        np.multiply(z[:, :k].T, np.reciprocal(z[:, k]), out=expected.T)
    np.testing.assert_array_equal(done, expected)  # NaN where NaN, bits otherwise
    assert (np.signbit(done) == np.signbit(expected))[~np.isnan(expected)].all()


@compiled
@settings(max_examples=150, deadline=None)
@given(data=st.data(), dtype=st.sampled_from(DTYPES), n=st.integers(0, 40), k=st.integers(1, 70),
       tol=st.sampled_from([0.0, 1e-30, 1e-6, 1.0]))
def test_divide_rows_with_clipping_equals_numpy(data, dtype, n, k, tol):
    """Eq 26's pass: the same entries, the least of them (NaN where one is not finite)
    and the entries in [-tol, 0) written as 0."""
    z = data.draw(hnp.arrays(dtype, (n, k + 1), elements=finite_or_not))
    dest = np.empty((n, k), dtype)
    with np.errstate(all="ignore"):  # as in the kernels (_blockwise)
        (c, (_, cd)), (nl, (_, nd)) = _both(lambda zz, d: _rows.divide_rows(zz, d, clip_tol=tol), z, dest)
    with np.errstate(all="ignore"):
        plain = z[:, :k] * np.reciprocal(z[:, k : k + 1])
    finite = np.isfinite(plain).all()
    expect = (float(plain.min()) if n else np.inf) if finite else np.nan
    np.testing.assert_array_equal([c, nl], [expect, expect])
    clipped = np.where((plain < 0) & (plain >= dtype(-tol)), 0, plain)
    np.testing.assert_array_equal(cd, clipped)
    np.testing.assert_array_equal(nd, clipped)


@compiled
@settings(max_examples=150, deadline=None)
@given(data=st.data(), dtype=st.sampled_from(DTYPES), size=st.integers(0, 200))
def test_any_sign_bit_and_min_or_nan_equal_numpy(data, dtype, size):
    a = data.draw(hnp.arrays(dtype, (size,), elements=finite_or_not))
    (c, _), (n, _) = _both(_rows.any_sign_bit, a)
    assert c == n == bool(np.signbit(a).any())
    for clip in (False, True):
        tol = data.draw(st.sampled_from([0.0, 1e-30, 1e-6, 1.0]))
        (c, ca), (n, na) = _both(lambda x, clip=clip, tol=tol: _rows.min_or_nan(x, clip=clip, tol=tol), a)
        finite = np.isfinite(a).all()
        assert (c == n == (float(a.min()) if size else np.inf)) if finite else (np.isnan(c) and np.isnan(n))
        np.testing.assert_array_equal(ca[0], na[0])  # clipped alike (-0.0 == 0.0)
        if clip:  # the entries in [-tol, 0) become 0
            np.testing.assert_array_equal(ca[0], np.where((a < 0) & (a >= dtype(-tol)), 0, a))
        else:
            np.testing.assert_array_equal(ca[0], a)  # untouched


@compiled
@settings(max_examples=150, deadline=None)
@given(data=st.data(), dtype=st.sampled_from(DTYPES), n=st.integers(0, 40), w=st.integers(1, 5),
       step=st.sampled_from([1, 2, -1, -3]))
def test_value_range_equals_numpy_on_strided_columns(data, dtype, n, w, step):
    """The sums' test of the simplex check: least and greatest of a column of any stride,
    NaN in both where an entry is NaN (so that the check's comparisons fail)."""
    z = data.draw(hnp.arrays(dtype, (n, w), elements=finite_or_not))
    col = data.draw(st.integers(0, w - 1))
    v = z[::step, col]  # strided (w > 1 or |step| > 1), as it is passed: no copy
    c = _rows.value_range(v)
    with numpy_rows():
        nl = _rows.value_range(v)
    if np.isnan(v).any():
        assert np.isnan(c).all() and np.isnan(nl).all()
    else:
        expect = (float(v.min()), float(v.max())) if v.size else (np.inf, -np.inf)
        assert c == nl == expect
    if v.size:  # every position is read, in the 4 lanes and the tail
        for pos in {0, v.size // 2, v.size - 1}:
            x = v.copy()
            x[pos] = np.nan
            assert np.isnan(_rows.value_range(x[::-1])).all()


@compiled
@pytest.mark.parametrize("dtype", DTYPES)
def test_min_or_nan_clips_in_every_chunk_and_keeps_what_is_below_tol(dtype):
    """The compiled pass clips chunk by chunk (2048 entries): a rounding-level negative in
    any chunk is clipped, one below -tol is kept (and is the least), in any chunk."""
    size = 3 * 2048 + 7
    for where_small in (0, 2047, 2048, 4100, size - 1):
        for where_big in (None, 5, 2049, size - 2):
            a = np.linspace(0.1, 1.0, size).astype(dtype)
            a[where_small] = -1e-9
            if where_big is not None:
                a[where_big] = -0.5
            (least, (x,)), (least_numpy, (y,)) = _both(
                lambda b: _rows.min_or_nan(b, clip=True, tol=1e-6), a)
            assert least == least_numpy == (-0.5 if where_big is not None else dtype(-1e-9))
            expect = a.copy()
            expect[where_small] = 0.0
            np.testing.assert_array_equal(x, expect)
            np.testing.assert_array_equal(y, expect)


@compiled
def test_a_negative_in_the_last_lane_or_the_tail_is_found():
    """Every position of the lanes and the tail is read (sizes around multiples of 32)."""
    for dtype in DTYPES:
        for size in (1, 31, 32, 33, 64, 65, 100):
            for pos in range(size):
                a = np.ones(size, dtype)
                a[pos] = -0.0
                assert _rows.any_sign_bit(a), (dtype, size, pos)
                a[pos] = -2.0
                assert _rows.min_or_nan(a) == -2.0, (dtype, size, pos)
                a[pos] = np.inf
                assert np.isnan(_rows.min_or_nan(a)), (dtype, size, pos)


@compiled
def test_the_compiled_module_refuses_what_it_cannot_take():
    from expost import _rowops

    z = np.ones((4, 3))
    with pytest.raises(TypeError, match="float32 or float64"):
        _rowops.divide_rows(z.astype(np.int64), np.empty((4, 2), np.int64))
    with pytest.raises(TypeError, match="share a dtype"):
        _rowops.divide_rows(z, np.empty((4, 2), np.float32))
    with pytest.raises(ValueError, match="w > k"):
        _rowops.divide_rows(z, np.empty((4, 3)))
    memory = np.ones(12)
    with pytest.raises(ValueError, match="overlap"):
        _rowops.divide_rows(memory.reshape(4, 3), memory[:8].reshape(4, 2))
    with pytest.raises((BufferError, ValueError), match="contiguous"):
        _rowops.divide_rows(np.ones((4, 3), order="F"), np.empty((4, 2)))
    with pytest.raises(TypeError, match="float32 or float64"):
        _rowops.any_sign_bit(np.ones(3, np.float16))
    with pytest.raises(TypeError, match="float32 or float64"):
        _rowops.value_range(np.ones(3, ">f8"))  # not this machine's byte order
    with pytest.raises(ValueError, match="1-D"):
        _rowops.value_range(np.ones((2, 2)))
    assert _rows.value_range(np.arange(4.0, dtype=">f8")) == (0.0, 3.0)  # numpy takes it
    read_only = np.ones(3)
    read_only.flags.writeable = False
    with pytest.raises((BufferError, ValueError), match="read-only"):  # clipping writes
        _rowops.min_or_nan(read_only, True, 0.0)
    assert _rowops.min_or_nan(read_only, False, 0.0) == 1.0


def _skewed_utility(rng, a, m):
    return rng.uniform(0.1, 2.0, (a, m)) + 5 * np.eye(a, m)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), dtype=st.sampled_from(DTYPES), order=st.sampled_from("CF"),
       n=st.sampled_from([1, 2, 7, 300]), m=st.integers(2, 9), zeros=st.booleans())
def test_public_functions_give_the_same_bits_with_and_without_the_compiled_module(
        seed, dtype, order, n, m, zeros):
    rng = np.random.default_rng(seed)
    q = rng.dirichlet(np.ones(m), n)
    if zeros:  # exact zeros: U^-1 p^u(q) has rounding-level negatives, clipped
        q[rng.random(q.shape) < 0.3] = 0.0
        q[q.sum(axis=1) == 0, 0] = 1.0
        q /= q.sum(axis=1, keepdims=True)
    q = np.asarray(q, dtype=dtype, order=order)
    u = _skewed_utility(rng, m, m)
    p = expost.weighted_prediction(q, u)
    for fn, arg in ((lambda x: expost.weighted_prediction(x, u), q),
                    (lambda x: expost.recover_posterior(x, u), p),
                    (lambda x: expost.recover_posterior(x, u, invalid="keep"), p)):
        (c, _), (nres, _) = _both(fn, arg)
        np.testing.assert_array_equal(c, nres)
    # class weights: without the compiled pass numpy takes w * q (another route), to rounding
    w = np.diag(np.diag(u))
    rtol = 1e-6 if dtype == np.float32 else 1e-12
    for fn, arg in ((lambda x: expost.weighted_prediction(x, w), q),
                    (lambda x: expost.recover_posterior(x, w), p)):
        (c, _), (nres, _) = _both(fn, arg)
        np.testing.assert_allclose(c, nres, rtol=rtol, atol=rtol * 1e-3)
    # and both are Eq 8 / Eq 26 to rounding
    q64 = q.astype(np.float64)
    naive = q64 @ u.T
    naive /= naive.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(p, naive, rtol=rtol, atol=rtol * 1e-3)
    back = expost.recover_posterior(p, u)
    np.testing.assert_allclose(back, q64, rtol=1e-4 if dtype == np.float32 else 1e-9, atol=1e-6)


def test_a_row_whose_inverse_sums_to_zero_is_repaired_or_named_never_returned_infinite():
    """Where 1'U^-1 p is 0, U^-1 p / 0 is infinite or NaN: the row is outside the image
    of p^u. Clip mode repairs it (U^-1 p clipped and renormalised), raise mode names it."""
    u = np.array([[1.0, 2.0], [0.0, 1.0]])  # 1'U^-1 = (1, -1): zero at p = (0.5, 0.5)
    p = np.array([[0.8, 0.2], [0.5, 0.5]])  # U^-1 p: (0.4, 0.2), then (-0.5, 0.5)
    for context in (contextlib.nullcontext, numpy_rows):
        with context(), np.errstate(all="ignore"):
            got = expost.recover_posterior(p, u)
            np.testing.assert_allclose(got[0], [2 / 3, 1 / 3])
            np.testing.assert_array_equal(got[1], [0.0, 1.0])  # (-0.5, 0.5), clipped
            with pytest.raises(ValueError, match="row 1, whose inversion leaves the simplex"):
                expost.recover_posterior(p, u, invalid="raise")


def test_one_kernel_shared_by_threads_gives_each_its_own_answer():
    """``_weighted_prediction_by`` hands one kernel to many calls; its scratch block is
    per thread, so concurrent calls (numpy and the compiled passes release the GIL)
    cannot write into each other's."""
    rng = np.random.default_rng(0)
    u = _skewed_utility(rng, 6, 6)
    apply = _decisions._weighted_prediction_by(u, np.dtype(np.float64))
    inputs = [rng.dirichlet(np.ones(6) * (t + 1), 40_000) for t in range(4)]
    expected = [apply(x) for x in inputs]
    errors: list[str] = []

    def work(t):
        for _ in range(15):
            if not np.array_equal(apply(inputs[t]), expected[t]):
                errors.append(f"thread {t}")
                return

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [2, 15, 40, 41, 60])
def test_class_weights_by_either_route_are_eq_16(m, dtype, monkeypatch):
    """Class weights take the one product up to ``DIAGONAL_PRODUCT_CLASSES`` classes and
    ``w * q`` above; each route, forced at every width, gives Eq 16 and its inverse, Eq 27."""
    rng = np.random.default_rng(m)
    q = rng.dirichlet(np.ones(m), 5000).astype(dtype)
    w = rng.uniform(0.5, 50.0, m)
    u = expost.Utility.from_class_weights(w)
    q64 = q.astype(np.float64)
    naive = q64 * w
    naive /= naive.sum(axis=1, keepdims=True)
    rtol = 1e-6 if dtype == np.float32 else 1e-12
    results = []
    for limit in (0, 10**6, _decisions.DIAGONAL_PRODUCT_CLASSES):  # w * q, the product, the rule
        monkeypatch.setattr(_decisions, "DIAGONAL_PRODUCT_CLASSES", limit)
        p = expost.weighted_prediction(q, u)
        np.testing.assert_allclose(p, naive, rtol=rtol, atol=rtol * 1e-3)
        np.testing.assert_allclose(expost.recover_posterior(p, u), q64,
                                   rtol=10 * rtol, atol=rtol * 1e-2)
        results.append(p)
    # the rule picks the product at this width or below, w * q above: the same bits
    np.testing.assert_array_equal(results[2], results[1] if m <= 40 else results[0])


@compiled
@settings(max_examples=150, deadline=None)
@given(data=st.data(), dtype=st.sampled_from(DTYPES), n=st.integers(0, 40), k=st.integers(1, 70),
       extra=st.integers(0, 3))
def test_argmax_rows_takes_the_first_maximum_as_numpy_does(data, dtype, n, k, extra):
    """Small integers: many exact ties, which go to the lowest index; every k from 1 past
    the 64 entries that the SIMD pass compares in one word (beyond: group by group)."""
    z = data.draw(hnp.arrays(dtype, (n, k + extra), elements=st.integers(-3, 3).map(float)))
    if data.draw(st.booleans()):  # infinities are not NaN: they compare as numbers
        z[z == 3] = np.inf
        z[z == -3] = -np.inf
    out = np.full(n, -1, dtype=np.intp)
    _rows._compiled.argmax_rows(z, out, k)
    np.testing.assert_array_equal(out, np.argmax(z[:, :k], axis=1) if n else out)
    # _rows' numpy fallback (not C-contiguous) agrees
    fallback = np.full(n, -1, dtype=np.intp)
    _rows.argmax_rows(np.asfortranarray(z), fallback, k)
    np.testing.assert_array_equal(fallback, out)


@compiled
def test_argmax_rows_refuses_what_it_cannot_take():
    from expost import _rowops

    z = np.ones((4, 3))
    with pytest.raises(TypeError, match="int64"):
        _rowops.argmax_rows(z, np.empty(4, np.int32), 3)
    for k in (0, 4):
        with pytest.raises(ValueError, match="1 <= k <= w"):
            _rowops.argmax_rows(z, np.empty(4, np.int64), k)
    with pytest.raises(ValueError, match="out \\(n,\\)"):
        _rowops.argmax_rows(z, np.empty(5, np.int64), 3)


def _build_portable(tmp_path):
    """``_rowops.c`` built with ``EXPOST_NO_SIMD`` (the loops a machine without SSE2 runs),
    loaded as a module of its own; None where no C compiler is at hand."""
    import importlib.machinery
    import importlib.util
    import shutil
    import subprocess
    import sysconfig
    from pathlib import Path

    source = Path(_decisions.__file__).with_name("_rowops.c")
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if not source.exists() or shutil.which(compiler) is None:
        return None
    target = tmp_path / ("_rowops" + sysconfig.get_config_var("EXT_SUFFIX"))
    flags = (sysconfig.get_config_var("CFLAGS") or "").split()
    cmd = [compiler, "-shared", "-fPIC", *flags, "-DEXPOST_NO_SIMD", f"-I{sysconfig.get_paths()['include']}",
           str(source), "-o", str(target)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    loader = importlib.machinery.ExtensionFileLoader("expost._rowops", str(target))
    spec = importlib.util.spec_from_file_location("expost._rowops", target, loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


@compiled
def test_the_portable_loops_agree_with_the_simd_ones(tmp_path):
    """The build without SIMD (no SSE2 argmax, no AVX2 clones of the other passes) gives
    what the module as built here gives, and numpy."""
    portable = _build_portable(tmp_path)
    if portable is None:
        pytest.skip("no C compiler to build the portable variant")
    rng = np.random.default_rng(5)
    for dtype in DTYPES:
        for size in (0, 1, 31, 33, 2048 * 3 + 5):
            a = rng.standard_normal(size).astype(dtype) * 1e-3 + 0.01
            if size > 3:
                a[size // 2] = -1e-9
            for clip in (False, True):
                x, y = a.copy(), a.copy()
                assert portable.min_or_nan(x, clip, 1e-6) == _rows._compiled.min_or_nan(y, clip, 1e-6)
                np.testing.assert_array_equal(x, y)
            assert portable.any_sign_bit(a) == _rows._compiled.any_sign_bit(a) == bool(np.signbit(a).any())
            if size:
                assert portable.value_range(a[::-2]) == _rows._compiled.value_range(a[::-2]) == (
                    a[::-2].min(), a[::-2].max())
        z = rng.random((300, 17)).astype(dtype)
        d1, d2 = np.empty((300, 15), dtype), np.empty((300, 15), dtype)
        portable.divide_rows(z, d1)
        _rows._compiled.divide_rows(z, d2)
        np.testing.assert_array_equal(d1, d2)
        for k in (1, 2, 3, 5, 15, 16, 64, 65, 130):
            z = rng.integers(-2, 3, (500, k + 2)).astype(dtype)
            got, simd = np.empty(500, np.int64), np.empty(500, np.int64)
            portable.argmax_rows(z, got, k)
            _rows._compiled.argmax_rows(z, simd, k)
            np.testing.assert_array_equal(got, np.argmax(z[:, :k], axis=1))
            np.testing.assert_array_equal(simd, got)
