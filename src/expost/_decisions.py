r"""Ex post decisions: expected utility, the optimal weighted prediction, argmax rules.

Rows of ``q`` are class distributions (calibrated probabilities). All functions
accept any floating dtype and compute in it (float16 is checked at its own
rounding, then promoted to float32 and renormalised; integers become float64;
float32 is computed in float64 where U's entries span more than float32's
range); they never modify their inputs.

The cores run over blocks of rows. Each block's product (or a second, skinny
one) also yields the row sums of ``q``, so the simplex check
costs one OR over the block's bits (no sign bit set) and one pass over its
sums for their least and greatest. The kernel runs the check right after its
product, while the block is still in cache, before the argmax or the
normalisation. The passes after the product (each row's argmax or its scaling by
the denominator, the OR, the sums' range, Eq 26's minimum) run in compiled code
where ``expost._rowops`` was built, in numpy otherwise (``_rows``).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from functools import cache, cached_property, lru_cache, partial
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._rows import COMPILED_DTYPES, argmax_rows, divide_rows, is_compiled, min_or_nan
from ._utility import Utility, as_utility, first_identical_actions, is_diagonal_matrix
from ._validation import _error, check_probabilities, check_rows_given_sums, probability_atol

__all__ = ["decide", "elkan_threshold", "expected_utility", "weighted_prediction"]


# ---------------------------------------------------------------- private cores
#: Rows per block (``_block_rows``): a block of q, its product and its output stay in
#: cache between the product, the check and the normalisation or argmax, so q is read
#: from memory once and no temporary grows with the input. A block holds about
#: ``BLOCK_BYTES`` of q, within ``MIN_BLOCK_ROWS`` and ``BLOCK_ROWS`` rows: the three
#: then fit a 2 MB L2 cache with room, where 16,384 rows of 15 float32 classes (3 MB)
#: spill to L3. ``benchmarks/block_rows.py`` on 2 Xeon cores (2 MB of L2 each; median
#: ratios to ``q @ U.T``, one BLAS thread, dense U): ``recover_posterior`` of 1e6 x 15
#: float32 1.40x by default (4,369 rows) against 1.53x in 16,384; of 5e5 x 15 float64
#: 1.21x (2,184 rows) against 1.55x; at 100 classes 1.41x (1,024 rows) against 1.57x,
#: with 512 rows no faster. ``weighted_prediction`` and ``decide`` move alike. Fewer than
#: ``MIN_BLOCK_ROWS`` rows pay more per block in Python than they save.
BLOCK_ROWS = 16384
BLOCK_BYTES = 1 << 18
MIN_BLOCK_ROWS = 1024

#: ``decide`` takes the product by sample (``q_block @ U'``, the layout OpenBLAS computes
#: fastest) and numpy's argmax along each row, which is then long enough for its vector
#: loop, for a U with at least ``ROW_ARGMAX_ACTIONS`` actions and ``ROW_ARGMAX_ENTRIES``
#: entries; for smaller ones the product by action and the argmax in whole-row passes
#: (``_argmax_rows``) are faster. ``benchmarks/decide_routes.py`` measures both layouts
#: over sizes. On 2 Zen 1 cores by action wins at 44 actions whatever the classes; the
#: two tie at 64 x 15 and 100 x 5; by sample wins at 48 x 48, 64 x 60 and 100 x 15 and
#: above (by 7-15% at 100 x 15 to 100 x 100).
ROW_ARGMAX_ACTIONS = 48
ROW_ARGMAX_ENTRIES = 1500

#: For class weights (a diagonal U) neither layout needs a matrix product; by sample
#: wins from about this many classes: 1.5x slower at 30, 7% faster at 36, 1.1-1.25x
#: faster at 40-44 and 1.6x at 100 (``benchmarks/decide_routes.py``).
ROW_ARGMAX_WEIGHTS = 36

#: ``weighted_prediction`` (and ``recover_posterior``) for class weights takes the one
#: product of a dense U (``q @ [U' | U'1 | 1]``, exact for a diagonal U: its zeros add
#: nothing) up to this many classes, and ``w * q`` with a second, skinny product above:
#: the product's cost grows with the classes squared. On 2 Xeon cores (1e6 x 15 float32,
#: ratios to ``q @ U.T``) the product route gives 1.55x against 1.99x at 15 classes and
#: 1.78x against 1.90x at 32; ``w * q`` wins from 48 (1.43x against 1.67x).
DIAGONAL_PRODUCT_CLASSES = 40

#: The thresholds ``_by_sample`` reads: setting all to 1 sends every U by sample, and to
#: a huge number every U by action (the tests and ``benchmarks/decide_routes.py`` do).
_LAYOUT_THRESHOLDS = ("ROW_ARGMAX_ACTIONS", "ROW_ARGMAX_ENTRIES", "ROW_ARGMAX_WEIGHTS")

#: From this many rows a diagonal U's ``w * q`` runs over the flattened block against a
#: tiled ``w`` (one long loop, not a short one per row); below it, tiling costs more.
FLAT_ROWS = 1024

#: ``check(sums)``: the simplex check of the current block given its row sums.
Check = Callable[[NDArray[np.floating]], None]

#: ``kernel(q_block, out_block, check)`` fills ``out_block``. Its product (a column or
#: row of ones in it, or a second, skinny product) gives the block's row sums, and it
#: calls ``check`` with them while the block is still in cache, before the argmax or
#: the normalisation. It returns None, or what its caller asked it to report of the
#: block (``_wp_kernel`` with ``clip_tol``: the block's least entry).
Kernel = Callable[[NDArray[np.floating], NDArray[Any], Check], "float | None"]


def _no_check(sums: NDArray[np.floating]) -> None:
    """The ``check`` of a call that asked for none."""


def _blockwise(
    q: NDArray[np.floating],
    out: NDArray[Any],
    kernel: Kernel,
    *,
    check_as: str | None = None,
) -> NDArray[Any]:
    """Run ``kernel(q_block, out_block, check)`` over row blocks; check each block if asked.

    The check uses the row sums of the kernel's product; a block with a bad row
    raises before the next block runs (what the kernel wrote for it is discarded
    with the error, and so are its floating-point warnings).
    """
    tol = probability_atol(q) if check_as is not None else 0.0
    rows = _block_rows(q.shape[1], q.dtype)
    with np.errstate(divide="ignore", invalid="ignore"):
        for start in range(0, q.shape[0], rows):
            block = q[start : start + rows]
            check = _no_check if check_as is None else partial(
                check_rows_given_sums, block, name=check_as, tol=tol, offset=start)
            kernel(block, out[start : start + rows], check)
    return out


def _block_rows(n_columns: int, dtype: np.dtype[Any]) -> int:
    """Rows per block of a q with ``n_columns`` entries of ``dtype`` per row: about
    ``BLOCK_BYTES`` of q, within [``MIN_BLOCK_ROWS``, ``BLOCK_ROWS``] (``BLOCK_ROWS``
    wins where it is smaller: the tests set it to a few rows)."""
    row_bytes = max(1, n_columns * dtype.itemsize)
    return min(BLOCK_ROWS, max(MIN_BLOCK_ROWS, BLOCK_BYTES // row_bytes))


def _scaled(u: NDArray[np.float64]) -> NDArray[np.float64]:
    """``u`` times the power of two that brings its largest magnitude into [0.5, 1).

    Exact (a power of two only moves exponents), and p^u, the decisions and
    Eq 26 are invariant to scaling U; so utilities near 1e308 do not overflow,
    nor near 5e-324 underflow, in the products and sums that follow.
    """
    top = float(np.abs(u).max())
    return u if top == 0.0 else np.ldexp(u, -np.frexp(top)[1])


_FLOAT64 = np.dtype(np.float64)


@cache
def _range(work: np.dtype[Any]) -> tuple[int, float]:
    """(largest exponent, smallest normal) of ``work`` for a U held in float64: a long
    double's range is float64's here."""
    info, f64 = np.finfo(work), np.finfo(np.float64)
    return min(int(info.maxexp), int(f64.maxexp)), max(float(info.tiny), float(f64.tiny))


#: A U of at most this many entries has its preparation for the kernels (``_prepared``)
#: cached, keyed by its bytes: a one-row call then costs a quarter to a half as much
#: (``benchmarks/small_calls.py``). Larger ones are prepared at each call, which their
#: products dwarf; the cache holds at most ``PREPARED_CACHE`` of them (about 10 MB at
#: most, for 64 utilities of 4096 entries).
PREPARED_ENTRIES = 4096
PREPARED_CACHE = 64


def _read_only(a: NDArray[Any]) -> NDArray[Any]:
    a.flags.writeable = False
    return a


class _Prepared:
    """What the kernels need of one U and dtype, each part computed when first asked for
    (a kernel asks for its own: ``weighted_prediction`` never for the identical actions,
    a large U's ``decide`` by sample never for ``ua``), then kept; arrays read-only."""

    def __init__(self, u: NDArray[np.float64], dtype: np.dtype[Any]) -> None:
        us, self.work = _for_kernels(u, dtype)  # U scaled for the kernels, the dtype they use
        self.us = _read_only(us)
        self.diagonal = is_diagonal_matrix(us)  # class weights

    @cached_property
    def first(self) -> NDArray[np.intp] | None:
        """``first_identical_actions`` of ``us`` in ``work``."""
        first = first_identical_actions(self.us.astype(self.work))
        return None if first is None else _read_only(first)

    @cached_property
    def ut(self) -> NDArray[Any]:
        """us', in work (the product by sample)."""
        return _read_only(self.us.T.astype(self.work))

    @cached_property
    def w(self) -> NDArray[Any]:
        """The diagonal of us, in work (class weights)."""
        return _read_only(np.diag(self.us).astype(self.work))

    @cached_property
    def totals(self) -> NDArray[Any]:
        """[us'1 | 1], in work: 1'Uq and 1'q (Eq 8's denominator, the check)."""
        ones = np.ones(self.us.shape[1])
        return _read_only(np.column_stack([self.us.sum(axis=0), ones]).astype(self.work))

    @cached_property
    def augmented(self) -> NDArray[Any]:
        """[us' | us'1 | 1], in work: Uq, 1'Uq and 1'q from one product (Eq 8, the check)."""
        ones = np.ones(self.us.shape[1])
        return _read_only(np.column_stack([self.us.T, self.us.sum(axis=0), ones]).astype(self.work))

    @cached_property
    def ut1(self) -> NDArray[Any]:
        """[us' | 1], in work: Uq and 1'q from one product (Eq 5, the check)."""
        ones = np.ones(self.us.shape[1])
        return _read_only(np.column_stack([self.us.T, ones]).astype(self.work))

    @cached_property
    def ua(self) -> NDArray[Any] | None:
        """[us; 1'], in work (the product by action); None for class weights."""
        if self.diagonal:
            return None
        ones = np.ones((1, self.us.shape[1]))
        return _read_only(np.vstack([self.us, ones]).astype(self.work))


@lru_cache(maxsize=PREPARED_CACHE)
def _prepared_by_bytes(shape: tuple[int, ...], data: bytes, dtype: np.dtype[Any]) -> _Prepared:
    return _Prepared(np.frombuffer(data, dtype=np.float64).reshape(shape), dtype)


def _prepared(u: NDArray[np.float64], dtype: np.dtype[Any]) -> _Prepared:
    """``_Prepared`` for U (float64) and ``dtype``: from the cache for a small U."""
    dtype = np.dtype(dtype)
    if u.size > PREPARED_ENTRIES:
        return _Prepared(u, dtype)
    return _prepared_by_bytes(u.shape, np.ascontiguousarray(u, dtype=np.float64).tobytes(), dtype)


def _for_kernels(u: NDArray[np.float64], dtype: np.dtype[Any]) -> tuple[NDArray[np.float64], np.dtype[Any]]:
    """U scaled by a power of two for the kernels of Eq 5 and Eq 8, and the dtype they compute in.

    The largest magnitude goes just below 2^E, E being the work dtype's largest
    exponent less the bits that a sum over the actions needs (1'Uq is at most
    n_actions times the largest utility for q on the simplex). Exact, as in
    :func:`_scaled`; and every utility is kept as far above underflow as overflow
    allows, so a U whose entries span more than the dtype's range from 1 (1e200
    beside 1e-200, say) keeps all of them. The work dtype is ``dtype``, or float64
    where some class's largest utility, so scaled, is below ``dtype``'s normal
    range. Where it is below float64's too (some 613 orders of magnitude below the
    largest entry), p^u for q on that class would be 0 / 0: a ValueError says so.
    """
    class_max = np.abs(u).max(axis=0)
    top, lowest = float(class_max.max()), float(class_max.min())
    headroom = 2 + u.shape[0].bit_length()  # bits for 1'Uq: ceil(log2(n_actions + 1)), and 2
    for work in dict.fromkeys([np.dtype(dtype), _FLOAT64]):
        max_exponent, tiny = _range(work)
        shift = max_exponent - headroom - math.frexp(top)[1]
        if math.ldexp(lowest, shift) >= tiny:
            return np.ldexp(u, shift), work
    c = int(np.argmin(class_max))
    raise ValueError(_error(
        "utility", "a matrix in which every class's largest utility is at least about 1e-613 "
        "times the largest entry (float64's range)",
        f"class {c}'s largest utility {class_max[c]:.3g} beside a largest entry of {top:.3g}"))


def _scratch(bufs: list[NDArray[Any]], sizes: list[tuple[int, Any]]) -> list[NDArray[Any]]:
    """Buffers of the given (size, dtype), allocated at the first (largest) block, then reused."""
    if not bufs:
        bufs.extend(np.empty(size, dtype=dt) for size, dt in sizes)
    return bufs


class _ThreadScratch:
    """A kernel's scratch block of ``width`` columns, one per thread (a kernel may serve
    many calls: ``_weighted_prediction_by``), grown when a call's blocks are larger."""

    def __init__(self, width: int, dtype: np.dtype[Any]) -> None:
        self.width, self.dtype, self.local = width, dtype, threading.local()

    def rows(self, n: int) -> NDArray[Any]:
        """The first ``n`` rows of this thread's block."""
        block = getattr(self.local, "block", None)
        if block is None or block.shape[0] < n:
            block = self.local.block = np.empty((n, self.width), dtype=self.dtype)
        return block[:n]


def _eu_kernel(u: NDArray[np.float64], dtype: np.dtype[Any]) -> Kernel:
    ut = u.T.astype(dtype)
    ones = np.ones(u.shape[1], dtype=dtype)

    def kernel(block: NDArray[np.floating], out: NDArray[Any], check: Check) -> None:
        check(block @ ones)
        np.matmul(block, ut, out=out)

    return kernel


def _uq_by_rows(p: _Prepared, *, tile: bool = True) -> Callable[[NDArray[Any], NDArray[Any]], None]:
    """``product(q_block, dest)``: ``q_block @ U'`` into ``dest`` (a row per sample).

    For a diagonal U (class weights, Eq 16, and their inverses, Eq 27) it is the
    elementwise product ``w * q``: a third of the matrix product's time at 15
    classes, and less the more classes. Each entry is then ``w_y q_y`` rounded
    once, as the matrix product computes it. With ``tile``, a contiguous block
    is multiplied as one flat array against w tiled once over a block's rows
    (a temporary of the block's size, worth it for short rows); without it, w
    is broadcast over the rows.
    """
    ut, w, diagonal = p.ut, p.w, p.diagonal
    tiled: list[NDArray[Any]] = []

    def product(block: NDArray[Any], dest: NDArray[Any]) -> None:
        if not diagonal:
            np.matmul(block, ut, out=dest)
        elif (tile and block.shape[0] >= FLAT_ROWS and block.flags.c_contiguous
              and dest.flags.c_contiguous):
            if not tiled or tiled[0].size < block.size:  # a call's first block is its largest
                tiled[:] = [np.tile(w, block.shape[0])]
            flat = block.reshape(-1)
            np.multiply(flat, tiled[0][: flat.size], out=dest.reshape(-1))
        else:
            np.multiply(block, w, out=dest)

    return product


def _wp_kernel(u: NDArray[np.float64], dtype: np.dtype[Any], *,
               clip_tol: float | None = None) -> Kernel:
    """Eq 8 blockwise; with ``clip_tol`` (Eq 26, ``recover_posterior``), the kernel also
    returns the least entry it wrote (NaN where one is NaN or infinite) and writes the
    entries in [-clip_tol, 0) as 0 (``_rows.min_or_nan``).

    A dense U: one product ``q @ [U' | U'1 | 1]`` into a scratch block gives Uq, the
    denominator 1'Uq (as q . (1'U), equal to 1'(Uq) up to rounding) and the row sums of q
    for the check; then each row of Uq times its denominator's reciprocal into the output
    (``_rows.divide_rows``, compiled where it was built: numpy's row-by-row scaling of
    15-wide rows costs a third of the product). One pass over q, and the product's width
    of A + 2 columns costs no more than A's: at 15 classes less, 12 against 18 ms per
    million float32 rows on 2 Xeon cores with OpenBLAS's Haswell kernels.

    Class weights, up to ``DIAGONAL_PRODUCT_CLASSES`` classes and where the compiled
    row pass was built (numpy's row scaling would cost more than the product saves):
    the same. Otherwise:
    ``w * q`` into the output (``_uq_by_rows``), then one product ``q @ [U'1 | 1]``
    for 1'Uq and 1'q, and the output multiplied by the reciprocal column by column.
    """
    p = _prepared(u, dtype)
    work, n_act = p.work, u.shape[0]
    if not p.diagonal or (n_act <= DIAGONAL_PRODUCT_CLASSES and is_compiled()):
        augmented = p.augmented
        scratch = _ThreadScratch(n_act + 2, work)

        def dense(block: NDArray[np.floating], out: NDArray[Any], check: Check) -> float | None:
            z = scratch.rows(block.shape[0])
            np.matmul(block.astype(work, copy=False), augmented, out=z)
            check(z[:, n_act + 1])
            dest = out if out.dtype == work and out.flags.c_contiguous else np.empty(out.shape, work)
            least = divide_rows(z, dest, clip_tol=clip_tol)
            if dest is not out:
                out[...] = dest
            return least

        return dense

    totals = p.totals
    product = _uq_by_rows(p)

    def kernel(block: NDArray[np.floating], out: NDArray[Any], check: Check) -> float | None:
        work_block = block.astype(work, copy=False)
        dest = out if out.dtype == work else np.empty(out.shape, dtype=work)  # wide U: float64
        product(work_block, dest)
        z = work_block @ totals
        check(z[:, 1])
        # times the reciprocal, column by column (dest.T): one long loop per column where
        # dividing by a (n, 1) column pays a short loop per row (one more rounding)
        np.multiply(dest.T, np.reciprocal(z[:, 0]), out=dest.T)
        least = None if clip_tol is None else min_or_nan(dest, clip=True, tol=clip_tol)
        if dest is not out:
            out[...] = dest
        return least

    return kernel


def _argmax_rows(
    v: NDArray[np.floating], best: NDArray[np.floating], hits: NDArray[np.unsignedinteger],
    out: NDArray[Any], weights: NDArray[np.unsignedinteger],
) -> None:
    """Row of each column's maximum of ``v``, ties to the lowest row, into ``out``.

    Exact, in four whole-array passes along axis 0 (each row contiguous, where
    ``np.argmax(axis=1)`` pays a call per short row): the maximum ``best``; the
    rows that attain it, weighted ``n - a`` for row ``a`` (``hits``, scratch of
    ``v``'s shape; ``weights``, the column ``n, ..., 1`` of its dtype); their largest
    weight, which is the lowest attaining row's.
    """
    n = v.shape[0]
    if n == 1:
        out[:] = 0
        return
    np.maximum.reduce(v, axis=0, out=best)
    if hits.itemsize == 1:
        np.equal(v, best, out=hits.view(np.bool_))
    else:
        np.equal(v, best, out=hits)
    np.multiply(hits, weights, out=hits)
    np.subtract(n, np.maximum.reduce(hits, axis=0), out=out)


def _decide_kernel(u: NDArray[np.float64], dtype: np.dtype[Any]) -> Kernel:
    """Eq 5 blockwise: ``[U; 1'] @ q_block.T`` (one row per action, and the row sums), then the argmax.

    For class weights, no product: the block is copied transposed, its rows summed
    (the row sums of q) and multiplied by w in place, which gives each ``w_y q_y``
    rounded once, as the product does, in about 87% of the product's time. For a
    large U (``_by_sample``): ``_decide_by_rows``.
    """
    p = _prepared(u, dtype)
    us, work = p.us, p.work
    if p.first is not None:
        return _on_distinct_actions(us, dtype, p.first)
    n_act = u.shape[0]
    if _compiled_decide(p):
        return _decide_compiled(p)
    if _by_sample(us, p.diagonal):
        return _decide_by_rows(p)
    # the product's utilities and row sums; class weights need no product, only w
    ua, w = p.ua, p.w[:, None]
    hit_dtype = np.min_scalar_type(n_act)
    weights = np.arange(n_act, 0, -1, dtype=hit_dtype)[:, None]
    bufs: list[NDArray[Any]] = []
    views: dict[int, tuple[NDArray[Any], ...]] = {}  # by block size: every full block shares one

    def kernel(block: NDArray[np.floating], out: NDArray[Any], check: Check) -> None:
        nb = block.shape[0]
        if nb not in views:
            zbuf, best, hits = _scratch(
                bufs, [(nb * (n_act + 1), work), (nb, work), (nb * n_act, hit_dtype)])
            z = zbuf[: nb * (n_act + 1)].reshape(n_act + 1, nb)
            views[nb] = (z, z[:n_act], best[:nb], hits[: nb * n_act].reshape(n_act, nb))
        z, v, best, hits = views[nb]
        if ua is not None:
            np.matmul(ua, block.T.astype(work, copy=False), out=z)
            check(z[n_act])
        else:
            np.copyto(v, block.T)
            np.add.reduce(v, axis=0, out=z[n_act])
            check(z[n_act])
            np.multiply(v, w, out=v)
        _argmax_rows(v, best, hits, out, weights)

    return kernel


#: ``decide`` takes the compiled route (``_decide_compiled``) up to this many actions.
#: On 2 Xeon cores (float32, ratios to ``q @ U.T``) it gives 0.95x against 1.41x for
#: the numpy route at 15 x 15, 1.31x against 1.47x at 65 x 65, 1.23x against 1.28x at
#: 100 x 100 and 1.13x against 1.17x at 300 x 100; 1.34x against 1.29x at 1000 x 50.
COMPILED_ARGMAX_ACTIONS = 512


def _compiled_decide(p: _Prepared) -> bool:
    """Does ``decide`` take ``_decide_compiled`` for this U: the compiled row passes were
    built, the work dtype is theirs, and U has at most ``COMPILED_ARGMAX_ACTIONS``
    actions (class weights: at most ``DIAGONAL_PRODUCT_CLASSES``, as their product
    grows with the classes squared where ``w * q`` grows with the classes)?"""
    n_act = p.us.shape[0]
    limit = DIAGONAL_PRODUCT_CLASSES if p.diagonal else COMPILED_ARGMAX_ACTIONS
    return is_compiled() and p.work in COMPILED_DTYPES and n_act <= limit


def _decide_compiled(p: _Prepared) -> Kernel:
    """Eq 5 blockwise with the compiled row pass: one product ``q_block @ [U' | 1]`` (a
    row per sample: the utilities and, last, the row sums for the check) into a scratch
    block, then each row's argmax over its utilities, ties to the lowest action
    (``_rows.argmax_rows``: the row's maximum, then the first entry equal to it).

    For class weights the product is ``w_y q_y`` rounded once, as ``q @ U.T`` computes
    it (the zeros add nothing)."""
    n_act, work, ut1 = p.us.shape[0], p.work, p.ut1
    scratch = _ThreadScratch(n_act + 1, work)

    def kernel(block: NDArray[np.floating], out: NDArray[Any], check: Check) -> None:
        z = scratch.rows(block.shape[0])
        np.matmul(block.astype(work, copy=False), ut1, out=z)
        check(z[:, n_act])
        argmax_rows(z, out, n_act)

    return kernel


def _on_distinct_actions(us: NDArray[np.float64], dtype: np.dtype[Any],
                         first: NDArray[np.intp]) -> Kernel:
    """Eq 5 over the first action of each group of identical rows of U, numbered as in U.

    A product may round identical actions apart (``first_identical_actions``); with
    one of each, their tie goes to the lowest index, and the product is smaller.
    """
    keep = np.flatnonzero(first == np.arange(first.size))
    inner = _decide_kernel(us[keep], dtype)

    def kernel(block: NDArray[np.floating], out: NDArray[Any], check: Check) -> None:
        inner(block, out, check)
        out[...] = keep[out]

    return kernel


def _by_sample(us: NDArray[np.float64], diagonal: bool | None = None) -> bool:
    """Does ``decide`` lay out this U's products by sample (``_decide_by_rows``)?
    (``diagonal``: whether U is, if the caller knows.)"""
    n_act, n_cls = us.shape
    if is_diagonal_matrix(us) if diagonal is None else diagonal:
        return n_act >= ROW_ARGMAX_WEIGHTS
    return n_act >= ROW_ARGMAX_ACTIONS and n_act * n_cls >= ROW_ARGMAX_ENTRIES


def _decide_by_rows(p: _Prepared) -> Kernel:
    """Eq 5 blockwise for many actions: ``q_block @ U'`` (a row per sample; for class
    weights ``w * q`` with w broadcast, see ``_uq_by_rows``: rows this long need no
    tiling) into one scratch block, then ``np.argmax`` along each row, which keeps
    the first maximum: ties go to the lowest action, exactly. The row sums for the
    check come from ``q_block @ 1``."""
    n_act, work = p.us.shape[0], p.work
    product = _uq_by_rows(p, tile=False)
    ones = np.ones(p.us.shape[1], dtype=work)
    scratch = _ThreadScratch(n_act, work)

    def kernel(block: NDArray[np.floating], out: NDArray[Any], check: Check) -> None:
        work_block = block.astype(work, copy=False)
        check(work_block @ ones)
        z = scratch.rows(block.shape[0])
        product(work_block, z)
        np.argmax(z, axis=1, out=out)

    return kernel


def _expected_utility(
    q: NDArray[np.floating], u: NDArray[np.float64], *, check_as: str | None = None
) -> NDArray[np.floating]:
    out = np.empty((q.shape[0], u.shape[0]), dtype=q.dtype)
    return _blockwise(q, out, _eu_kernel(u, q.dtype), check_as=check_as)


def _weighted_prediction(
    q: NDArray[np.floating], u: NDArray[np.float64], *, check_as: str | None = None
) -> NDArray[np.floating]:
    return _weighted_prediction_by(u, q.dtype)(q, check_as=check_as)


def _weighted_prediction_by(u: NDArray[np.float64], dtype: np.dtype[Any]) -> Callable[..., Any]:
    """``_weighted_prediction(q, u)`` for any q of ``dtype``, its per-utility set-up done
    once: for a caller that applies one utility to many small arrays (the harness's
    scorer, every interval)."""
    kernel = _wp_kernel(u, np.dtype(dtype))

    def apply(q: NDArray[np.floating], *, check_as: str | None = None) -> NDArray[np.floating]:
        out = np.empty((q.shape[0], u.shape[0]), dtype=q.dtype)
        return _blockwise(q, out, kernel, check_as=check_as)

    return apply


def _decide(
    q: NDArray[np.floating], u: NDArray[np.float64], *, check_as: str | None = None
) -> NDArray[np.intp]:
    out = np.empty(q.shape[0], dtype=np.intp)
    return _blockwise(q, out, _decide_kernel(u, q.dtype), check_as=check_as)


def _prepare(
    q: ArrayLike, utility: Utility | ArrayLike, name: str = "q"
) -> tuple[NDArray[np.floating], bool, Utility]:
    """Type and shape checks; the values are checked block by block by the caller's kernel."""
    u = as_utility(utility)
    arr, was_1d = check_probabilities(q, name, n_columns=u.n_classes, values=False)
    return arr, was_1d, u


# ---------------------------------------------------------------- public API
def expected_utility(q: ArrayLike, utility: Utility | ArrayLike) -> NDArray[np.floating]:
    r"""Expected utility of every action under class distribution ``q`` (Eq 3).

    .. math:: \bar u(a, q) = \langle u(a, \cdot), q \rangle = (U q)_a

    Parameters
    ----------
    q : array-like of shape (n_samples, n_classes) or (n_classes,)
        Class distributions.
    utility : Utility or array-like of shape (n_actions, n_classes)

    Returns
    -------
    ndarray of shape (n_samples, n_actions) (or (n_actions,)), in q's floating dtype.

    Examples
    --------
    >>> import expost
    >>> expost.expected_utility([0.9, 0.1], expost.Utility.from_class_weights([1, 99]))
    array([0.9, 9.9])
    """
    arr, was_1d, u = _prepare(q, utility)
    out = _expected_utility(arr, u.matrix, check_as="q")
    return out[0] if was_1d else out


def weighted_prediction(q: ArrayLike, utility: Utility | ArrayLike) -> NDArray[np.floating]:
    r"""The optimal utility-weighted prediction :math:`p^u(q)` (Theorem 1, Eq 8).

    .. math:: p^u_a(q) = \frac{\bar u(a, q)}{\sum_{a'} \bar u(a', q)} = \frac{(Uq)_a}{\iota^\top U q}

    It minimises the expected utility-weighted loss (Eq 7) for every strictly
    proper base loss. For class weights it is Eq 16,
    :math:`p^w_y(q) = w_y q_y / \langle w, q \rangle`. This is *Ex Post
    Weighting*: apply it to the calibrated predictions of an unweighted model.

    Computed as :math:`Uq` times the reciprocal of :math:`\langle \iota^\top U, q \rangle`,
    with U first scaled by a power of two (exact; :math:`p^u` is invariant to
    scaling U) that brings its largest entry as high as the sums allow, so
    utilities near 1e308 or 5e-324 neither overflow nor underflow, nor do the
    small ones of a U whose entries lie far apart (1e200 beside 1e-200). A U
    whose entries lie further apart than float64 can hold after any such scaling
    (1e308 beside a class whose utilities are all below 1e-307) raises a ValueError.
    The result agrees with the naive formula to a few roundings (a few 1e-7
    relative in float32, 1e-15 in float64; tested to 1e-6 and 1e-12) but is not
    bit-identical to it. Where U's entries span more
    than float32's range, float32 ``q`` is computed in float64 and returned in
    float32.

    Parameters
    ----------
    q : array-like of shape (n_samples, n_classes) or (n_classes,)
    utility : Utility or array-like of shape (n_actions, n_classes)

    Returns
    -------
    ndarray of shape (n_samples, n_actions) (or (n_actions,)), rows on the
    simplex, in q's floating dtype.

    Examples
    --------
    >>> import expost
    >>> expost.weighted_prediction([0.9, 0.1], expost.Utility.from_class_weights([1, 99]))
    array([0.08333333, 0.91666667])
    """
    arr, was_1d, u = _prepare(q, utility)
    out = _weighted_prediction(arr, u.matrix, check_as="q")
    return out[0] if was_1d else out


def decide(q: ArrayLike, utility: Utility | ArrayLike) -> NDArray[np.intp]:
    r"""Expected-utility-maximising actions (Eq 5); equal to :math:`\arg\max_a p^u_a(q)` (Eq 9).

    .. math:: \delta^u(q) = \arg\max_a \bar u(a, q)

    Ties go to the lowest action index. Returns action *indices*; map them
    through ``utility.actions`` for labels.

    The argmax is exact: the largest expected utility, then the lowest action
    attaining it. The expected utilities come from one matrix product (laid
    out by sample with a compiled argmax where ``expost._rowops`` was built, for up
    to 512 actions, or 40 classes of class weights; otherwise in numpy, by action, or
    by sample for a large U; U scaled by a power of two),
    whose summation order may differ from ``q @ U.T``'s; so two actions whose
    utilities differ only by rounding (an ulp) may be ordered differently than
    by ``argmax(q @ U.T)``, as between any two products. Utilities that are
    exactly equal tie. Identical actions (equal rows of U) always tie, to the
    lowest: a product can round them apart (``q @ U.T`` does, in float32), so
    the argmax runs over the first action of each group of identical rows. For
    class weights the utilities are the products :math:`w_y q_y`, each rounded
    once, as in ``q @ U.T``.

    Parameters
    ----------
    q : array-like of shape (n_samples, n_classes) or (n_classes,)
    utility : Utility or array-like of shape (n_actions, n_classes)

    Returns
    -------
    ndarray of intp of shape (n_samples,) (a scalar for 1-D ``q``).

    Examples
    --------
    >>> import expost
    >>> expost.decide([[0.9, 0.1], [0.999, 0.001]], expost.Utility.from_class_weights([1, 99]))
    array([1, 0])
    """
    arr, was_1d, u = _prepare(q, utility)
    out = _decide(arr, u.matrix, check_as="q")
    return out[0] if was_1d else out


def elkan_threshold(utility: Utility | ArrayLike) -> float:
    r"""Elkan's (2001) threshold on :math:`q_1` for a binary decision (Appendix A.1).

    The probability of class 1 at which both actions have equal expected utility;
    action 1 is optimal for :math:`q_1 \ge q_1^c`:

    .. math:: q_1^c = \frac{u(0,0) - u(1,0)}{u(0,0) - u(1,0) + u(1,1) - u(0,1)}

    For class weights :math:`(w_0, w_1)` it is :math:`w_0 / (w_0 + w_1)`. In cost
    terms (``Utility.from_costs``) it is Elkan's
    :math:`(c_{10} - c_{00}) / (c_{10} - c_{00} + c_{01} - c_{11})`.

    Parameters
    ----------
    utility : Utility or array-like of shape (2, 2)
        Must be "reasonable": each correct action strictly better than the
        wrong one for its class.

    Examples
    --------
    >>> import expost
    >>> expost.elkan_threshold(expost.Utility.from_class_weights([1, 99]))
    0.01
    """
    u = as_utility(utility)
    if u.matrix.shape != (2, 2):
        raise ValueError(_error("utility", "a 2 x 2 (binary) utility", f"shape {u.matrix.shape}"))
    m = u.matrix
    with np.errstate(over="ignore"):
        gain0 = m[0, 0] - m[1, 0]  # value of acting correctly when the class is 0
        gain1 = m[1, 1] - m[0, 1]
        total = gain0 + gain1
    if not np.isfinite(total):  # utilities near 1e308: the same ratio on U / 2^k (exact)
        m = np.ldexp(_scaled(m), -2)
        gain0, gain1 = m[0, 0] - m[1, 0], m[1, 1] - m[0, 1]
        total = gain0 + gain1
    if gain0 <= 0 or gain1 <= 0:
        raise ValueError(
            _error(
                "utility",
                "a reasonable binary utility (u[0,0] > u[1,0] and u[1,1] > u[0,1])",
                f"{m.tolist()}",
            )
        )
    return float(gain0 / total)
