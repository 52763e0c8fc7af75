"""The core at the edges of float64 and of its argument types: each case here once gave
a wrong, NaN or hanging result, or an error that named no argument."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy.optimize import minimize

import expost
from expost.nn import UtilityWeightedCrossEntropy


def _vector_objective(z, y, a, b, reg=1e-4):
    """fit_vector_scaling's objective, written out (stable log-sum-exp)."""
    v = z * a + b
    v = v - v.max(axis=1, keepdims=True)
    nll = np.log(np.exp(v).sum(axis=1)) - v[np.arange(len(y)), y]
    return nll.mean() + 0.5 * reg * (((a - 1) ** 2).sum() + (b**2).sum())


def _least(z, y):
    """The objective's minimum by Nelder-Mead from two starts (a = 1, and a = 1 / max|z|)."""
    m = z.shape[1]
    best = np.inf
    for a0 in (np.ones(m), np.full(m, 1 / np.abs(z).max())):
        res = minimize(lambda v: _vector_objective(z, y, v[:m], v[m:]), np.r_[a0, np.zeros(m)],
                       method="Nelder-Mead",
                       options={"maxiter": 20000, "maxfev": 20000, "xatol": 1e-12, "fatol": 1e-14})
        best = min(best, res.fun)
    return best


@pytest.mark.parametrize("scale", [1.0, 30.0, 400.0, 3000.0, 2e4, 1e100])
def test_vector_scaling_reaches_the_minimum_at_any_scale_of_the_logits(scale):
    """From a = 1, logits of a few hundred saturate the softmax and Newton's line search
    stalled: at ±2000 the fit stopped at 19 times the least objective."""
    rng = np.random.default_rng(1)
    n = 200
    y = rng.integers(0, 3, n)
    z = rng.normal(0, 1, (n, 3))
    z[np.arange(n), y] += 1.5
    z *= scale / 3
    noisy = rng.random(n) < 0.2
    y[noisy] = rng.integers(0, 3, noisy.sum())
    a, b = expost.fit_vector_scaling(z, y)
    assert _vector_objective(z, y, a, b) <= _least(z, y) + 1e-6


def test_vector_scaling_of_three_rows_at_2000():
    z = np.array([[2000.0, -2000.0], [-2000.0, 2000.0], [2000.0, -2000.0]])
    y = np.array([0, 1, 1])
    a, b = expost.fit_vector_scaling(z, y)
    assert _vector_objective(z, y, a, b) == pytest.approx(0.46271, abs=1e-4)  # was 8.79


def test_vector_scaling_of_huge_logits_returns():
    """At 1e160 the Hessian overflowed and LAPACK's lstsq never returned."""
    code = ("import numpy as np, expost; z = np.array([[1e160, -1e160], [-1e160, 1e160], "
            "[1e160, -1e160]]); a, b = expost.fit_vector_scaling(z, [0, 1, 1]); "
            "assert np.isfinite(a).all() and np.isfinite(b).all(); print(a[0] * 1e160)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert 0.1 < abs(float(proc.stdout)) < 10  # a z of order 1: the fit's scale, not 1e160's


@pytest.mark.parametrize(("logits", "scaling", "want"), [
    ([[1e308, 0.0]], 0.5, [1.0, 0.0]),
    ([[1e308, -1e308, 0.999e308]], 1e-300, [1.0, 0.0, 0.0]),
    ([[3.0, 3.0, 1.0]], 5e-324, [0.5, 0.5, 0.0]),
    ([[1e308, float(np.nextafter(1e308, 0))]], 2.0**973, [1 / (1 + np.exp(-0.25)), 1 / (1 + np.exp(0.25))]),
    ([[2.0, 0.0]], (np.array([1e308, 1.0]), np.zeros(2)), [1.0, 0.0]),
    ([[-1e308, 1e308]], (np.array([1e10, 1e10]), np.array([1e308, -1e308])), [0.0, 1.0]),
])
def test_apply_scaling_where_the_scaled_logits_overflow(logits, scaling, want, recwarn):
    """z / T (or a z + b) overflowed to inf and the softmax's shift made NaN of it."""
    got = expost.apply_scaling(logits, scaling)
    np.testing.assert_allclose(got[0], want, rtol=1e-12, atol=0)
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_elkan_threshold_of_utilities_near_the_float64_maximum(recwarn):
    assert expost.elkan_threshold(expost.Utility.from_class_weights([1e308, 1e308])) == 0.5  # was 0.0
    u = expost.Utility([[1.7e308, 0.0], [1e308, 1.7e308]])
    assert expost.elkan_threshold(u) == pytest.approx(0.7 / 2.4, rel=1e-12)
    assert expost.elkan_threshold(expost.Utility([[1e-300, 0.0], [0.0, 1e300]])) == 0.0  # 1e-600
    assert not recwarn.list


def test_weighted_losses_of_float32_beside_a_utility_beyond_float32():
    """1e39 cast to float32 is inf, and inf times a loss of 0 was NaN."""
    u = expost.Utility.from_class_weights([1e39, 1.0])
    p = np.array([[1.0, 0.0], [0.5, 0.5]])
    for dtype in (np.float32, np.float16):
        got = expost.weighted_loss(p.astype(dtype), [0, 0], u)
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, expost.weighted_loss(p, [0, 0], u), rtol=1e-6)
        np.testing.assert_allclose(expost.residual_learning_loss(p.astype(dtype), u),
                                   expost.residual_learning_loss(p, u), rtol=1e-6)
    assert expost.weighted_loss(p.astype(np.float32), [0, 1], np.eye(2)).dtype == np.float32


def test_equal_utilities_hash_equally():
    a = expost.Utility([[1.0, -0.0], [0.0, 1.0]])
    b = expost.Utility([[1.0, 0.0], [0.0, 1.0]])
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert not np.signbit(a.matrix).any()


def test_a_masked_array_with_masked_entries_is_refused():
    """np.asarray drops the mask: decide used the value under it."""
    q = np.ma.masked_array([[0.9, 0.1], [0.5, 0.5]], mask=[[False, True], [False, False]])
    with pytest.raises(ValueError, match=r"`q` must be an array without masked entries .* got a "
                                         r"masked array with 1 masked of 4 entries"):
        expost.decide(q, expost.Utility.from_class_weights([1.0, 99.0]))
    unmasked = np.ma.masked_array([[0.9, 0.1]])
    assert expost.decide(unmasked, expost.Utility.from_class_weights([1.0, 99.0])).tolist() == [1]


@pytest.mark.parametrize(("call", "exc", "message"), [
    (lambda: expost.Utility(np.eye(2), classes=[[1], [2]]), TypeError,
     "`classes` must be hashable labels (strings, numbers, tuples), got the list [1]."),
    (lambda: expost.Utility.inverse_prior([1e-320, 1 - 1e-320]), ValueError,
     "`prior` must be class probabilities whose inverses are finite"),
    (lambda: expost.Utility.from_costs([[-1e308, 1e308], [1e308, -1e308]]), ValueError,
     "`costs` must be costs whose differences (the 'column' shift) are finite"),
    (lambda: expost.estimate_target_prior([[0.5, 0.5]], [0.5, 0.5], tol="1e-8"), TypeError,
     "`tol` must be a positive number, got the string '1e-8'."),
    (lambda: expost.estimate_target_prior([[0.5, 0.5]], [0.5, 0.5], tol=None), TypeError,
     "`tol` must be a positive number, got None."),
    (lambda: expost.estimate_target_prior([[0.5, 0.5]], [0.5, 0.5], max_iter=True), ValueError,
     "`max_iter` must be a positive integer, got bool True."),
    (lambda: expost.zhou_liu_weights([[0, 1], [4, 0]], rtol="x"), TypeError,
     "`rtol` must be a finite number >= 0, got the string 'x'."),
    (lambda: expost.Utility.emphasize(3, 1, ratio=np.complex128(2 + 5j)), TypeError,
     "`ratio` must be a positive finite number"),
    (lambda: UtilityWeightedCrossEntropy([1.0, 2.0, 3.0], normalize_prior=[0.5, 0.5]), ValueError,
     "`normalize_prior` must be 3 entries"),
])
def test_errors_name_their_argument(call, exc, message, recwarn):
    with pytest.raises(exc) as info:
        call()
    assert str(info.value).startswith(message)
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
