"""The row passes of Eq 5, Eq 8 and Eq 26, compiled where ``expost._rowops`` was built, numpy otherwise.

numpy has no fast way to scale each short row of a block by its own number (at 15
classes that step costs a third to a half of the matrix product before it), and its
reductions over a block's bits or entries pay for their generality. The compiled
module (``src/expost/_rowops.c``, built at install when a C compiler is at hand) runs
these passes as plain loops over the block while it is in cache. Each function here
calls it for C-contiguous float32 or float64 arrays and computes the same in numpy for
anything else, or where the module was not built: the two agree entry for entry
(``divide_rows`` rounds the reciprocal, then the product, in the arrays' dtype, as the
numpy code does; the reductions are exact).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import numpy as np
from numpy.typing import NDArray

_compiled: ModuleType | None
try:
    from . import _rowops as _compiled
except ImportError:  # installed without a C compiler: numpy computes the same
    _compiled = None

__all__ = ["COMPILED_DTYPES", "any_sign_bit", "argmax_rows", "divide_rows", "is_compiled", "min_or_nan",
           "numpy_only", "value_range"]

#: The dtypes the compiled module takes.
COMPILED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_SIGN_BITS: dict[int, tuple[np.dtype[Any], int]] = {4: (np.dtype(np.uint32), 1 << 31),
                                                   8: (np.dtype(np.uint64), 1 << 63)}


def is_compiled() -> bool:
    """Was ``expost._rowops`` built and imported (else numpy does its work)?"""
    return _compiled is not None


@contextmanager
def numpy_only() -> Iterator[None]:
    """Within it, everything here computes in numpy, as without the compiled module (the
    tests and benchmarks compare the two routes). Not thread-safe: it swaps a global."""
    global _compiled
    saved, _compiled = _compiled, None
    try:
        yield
    finally:
        _compiled = saved


def _compiled_for(*arrays: NDArray[Any]) -> ModuleType | None:
    """The compiled module, if it was built and takes these arrays (one of its dtypes, all
    C-contiguous); else None."""
    dtype = arrays[0].dtype
    if dtype in COMPILED_DTYPES and all(a.dtype == dtype and a.flags.c_contiguous for a in arrays):
        return _compiled
    return None


def divide_rows(z: NDArray[np.floating], dest: NDArray[np.floating], *,
                clip_tol: float | None = None) -> float | None:
    """``dest[i, a] = z[i, a] * (1 / z[i, k])`` for ``a < k``, ``k`` being ``dest``'s width.

    ``z`` is (n, w) with w > k, ``dest`` (n, k) of ``z``'s dtype, not overlapping it.
    The reciprocal is rounded once in the dtype, then the product once: Eq 8's
    normalisation, given the product ``[Uq | 1'Uq | ...]`` in ``z``. With ``clip_tol``
    (Eq 26's rounding-level negatives), then ``min_or_nan(dest, clip=True,
    tol=clip_tol)``, whose result it returns: the entries in [-clip_tol, 0) become 0.
    """
    k = dest.shape[1]
    compiled = _compiled_for(z, dest)
    if compiled is not None and z.shape[1] > k and dest.shape[0] == z.shape[0]:
        if clip_tol is None:
            compiled.divide_rows(z, dest)
            return None
        return float(compiled.divide_rows(z, dest, True, clip_tol))
    # column by column (dest.T): one long loop per column, where dividing by an (n, 1)
    # column would pay a short loop per row
    np.multiply(z[:, :k].T, np.reciprocal(z[:, k]), out=dest.T)
    if clip_tol is None:
        return None
    return min_or_nan(dest, clip=True, tol=clip_tol)


def argmax_rows(z: NDArray[np.floating], out: NDArray[np.intp], k: int) -> None:
    """``out[i]`` = the lowest ``a < k`` at which row ``i`` of ``z`` attains its maximum over
    its first ``k`` entries (Eq 5's tie rule). ``z`` holds no NaN there (the simplex check
    has run: a NaN would not win the compiled pass, and would win numpy's argmax)."""
    compiled = _compiled_for(z)
    if (compiled is not None and out.dtype == np.int64 and out.flags.c_contiguous
            and out.flags.writeable and out.shape == (z.shape[0],) and 1 <= k <= z.shape[1]):
        compiled.argmax_rows(z, out, k)
        return
    np.argmax(z[:, :k], axis=1, out=out)


def any_sign_bit(a: NDArray[np.floating]) -> bool:
    """Does any entry of ``a`` (float32 or float64) have its sign bit set (-0.0 and -NaN too)?"""
    compiled = _compiled_for(a)
    if compiled is not None:
        return bool(compiled.any_sign_bit(a))
    view, bit = _SIGN_BITS[a.dtype.itemsize]
    return bool(int(np.bitwise_or.reduce(a.view(view), axis=None)) & bit)


def value_range(v: NDArray[np.floating]) -> tuple[float, float]:
    """(least, greatest) entry of the 1-D ``v``, of any stride (a column of a product: the
    row sums the simplex check tests), NaN in both where an entry is NaN; (inf, -inf)
    where ``v`` is empty. numpy's two reductions over a strided column cost about 30 us
    per 16,384 rows each; the compiled pass a few."""
    if _compiled is not None and v.dtype in COMPILED_DTYPES and v.ndim == 1:
        return _compiled.value_range(v)
    if v.size == 0:
        return float("inf"), float("-inf")
    return float(np.minimum.reduce(v, axis=None)), float(np.maximum.reduce(v, axis=None))


def min_or_nan(a: NDArray[np.floating], *, clip: bool = False, tol: float = 0.0) -> float:
    """The least entry of ``a``, or NaN where any entry is NaN or infinite.

    With ``clip``, the entries in [-tol, 0) (Eq 26's rounding-level negatives) become 0,
    in place (-0.0 may become 0.0); the least is that before clipping. An empty ``a``
    gives inf.
    """
    compiled = _compiled_for(a)
    if compiled is not None and (not clip or a.flags.writeable):
        return float(compiled.min_or_nan(a, clip, tol))
    if a.size == 0:
        return float("inf")
    least = float(np.minimum.reduce(a, axis=None))
    finite = np.isfinite(least) and np.isfinite(np.maximum.reduce(a, axis=None))
    if clip and not least >= 0:  # some entry negative, or NaN
        _clip(a, least if finite else -np.inf, tol)
    return least if finite else float("nan")


def _clip(a: NDArray[np.floating], least: float, tol: float) -> None:
    """The entries of ``a`` in [-tol, 0) become 0, given its least entry, in numpy."""
    if -tol <= least:  # every entry >= -tol: all negatives (and -0.0) go
        # against an array: numpy's maximum with a scalar operand has no vector loop
        # (5.8x slower, 16 ms per million rows at 15 classes)
        np.maximum(a, np.zeros_like(a), out=a)
    else:  # entries below -tol stay: a rare path (a row outside Eq 26's image), bool temporaries
        np.copyto(a, 0.0, where=(a < 0) & (a >= -tol))
