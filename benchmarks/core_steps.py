"""What each step of the dense-U decision layer costs, against the bare ``q @ U.T``.

``benchmarks/core.py`` times the public functions; this times the numpy steps they
are made of for a dense U, each over all of q block by block (``_block_rows`` rows, as
the functions run), as a ratio to ``q @ U.T`` in the same rounds. The products
stream all of q from memory; every other step runs on one block already in cache,
once per block. For each function it adds up the cheapest form of each step: a
lower bound for any pipeline made of these numpy steps, beside the function itself.
Run in sequence the steps cost more than each does alone (this script does not say
at which cache level), so the function stays above the bound. Where the bound is
above a goal (``decide`` 1.3x, ``weighted_prediction`` 1.6x), no ordering or choice
among these forms can meet it; where it is just under, what is left to win lies in
the steps' sequence, not in the steps, whose cost is numpy's (a loop per short row,
a skinny product). This bound is why the core runs the row scaling in compiled code
where it can (``expost._rows``); ``benchmarks/core.py`` measures that route.

    OPENBLAS_NUM_THREADS=1 python benchmarks/core_steps.py [--n 1000000] [--m 15] [--repeat 11]

The steps of ``weighted_prediction`` (Eq 8), ``Uq / (1'U q)``:

- product by sample into a new output (``q_block @ U'``; the new output pays its
  first-touch page faults, as the function's and ``q @ U.T``'s do);
- the denominators and row sums, one skinny product ``q_block @ [U'1 | 1]``;
- each row scaled by its reciprocal, in three forms: column by column over the
  transposed view (the core's numpy fallback, and its route for class weights over
  ``DIAGONAL_PRODUCT_CLASSES`` classes), broadcast per row, ``np.repeat`` and one flat multiply;
- the simplex check given the row sums.

The steps of ``decide`` (Eq 5) for a small U: the product by action
``[U; 1'] @ q_block.T`` (its last row is the row sums), the argmax in whole-row passes,
the check; for comparison, the other layout: the product by sample into a reused
block, numpy's argmax along each row and the row sums' own product ``q_block @ 1``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import partial

import numpy as np
from core import _dense_utility, _interleaved, _probabilities  # benchmarks/core.py

import expost
from expost import _decisions
from expost._validation import check_rows_given_sums, probability_atol

Step = Callable[[np.ndarray, np.ndarray, int], None]


def _streamed(q: np.ndarray, step: Step, out_cols: int = 0) -> Callable[[], object]:
    """``step(block, out_block, start)`` over q's row blocks, into a new output of
    ``out_cols`` columns per call (none for 0: the step writes into its own scratch)."""
    rows = _decisions._block_rows(q.shape[1], q.dtype)

    def run() -> object:
        out = np.empty((q.shape[0], out_cols), dtype=q.dtype) if out_cols else q
        for start in range(0, q.shape[0], rows):
            step(q[start : start + rows], out[start : start + rows], start)
        return out

    return run


def _in_cache(q: np.ndarray, step: Step) -> Callable[[], object]:
    """``step(first_block, first_block, 0)`` once per block of q: the step's cost on a
    block already in cache, as it is when it follows the product that read it."""
    rows = _decisions._block_rows(q.shape[1], q.dtype)
    block = q[:rows]
    count = -(-q.shape[0] // rows)

    def run() -> object:
        for _ in range(count):
            step(block, block, 0)
        return None

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--m", type=int, default=15)
    ap.add_argument("--repeat", type=int, default=11)
    args = ap.parse_args()
    n, m = args.n, args.m
    rng = np.random.default_rng(0)
    q = _probabilities(rng, n, m)
    u = _dense_utility(rng, m, m)  # the dense U of benchmarks/core.py
    us = u.matrix
    ut = us.T.astype(np.float32)
    totals = np.column_stack([us.sum(axis=0), np.ones(m)]).astype(np.float32)
    ua = np.vstack([us, np.ones((1, m))]).astype(np.float32)
    rows = min(_decisions._block_rows(m, q.dtype), n)
    tol = probability_atol(q)
    # stands in for each block's reciprocals; near 1, so that scaling one block again and
    # again neither overflows nor reaches subnormals (which would time something else)
    recip = rng.uniform(0.999, 1.001, rows).astype(np.float32)
    by_action = np.empty((m + 1, rows), dtype=np.float32)
    by_sample = np.empty((rows, m), dtype=np.float32)
    best = np.empty(rows, dtype=np.float32)
    hits = np.empty((m, rows), dtype=np.uint8)
    weights = np.arange(m, 0, -1, dtype=np.uint8)[:, None]
    chosen = np.empty(rows, dtype=np.intp)
    ones = np.ones(m, dtype=np.float32)
    scaled = np.empty((rows, m), dtype=np.float32)  # a block already in its output
    scaled[...] = q[:rows] @ ut

    def product_by_sample(b: np.ndarray, o: np.ndarray, s: int) -> None:
        np.matmul(b, ut, out=o)

    def sums(b: np.ndarray, o: np.ndarray, s: int) -> None:
        b @ totals

    def scale_columns(b: np.ndarray, o: np.ndarray, s: int) -> None:
        x = scaled[: len(b)]
        np.multiply(x.T, recip[: len(b)], out=x.T)

    def scale_rows(b: np.ndarray, o: np.ndarray, s: int) -> None:
        x = scaled[: len(b)]
        np.multiply(x, recip[: len(b), None], out=x)

    def scale_flat(b: np.ndarray, o: np.ndarray, s: int) -> None:
        x = scaled[: len(b)].reshape(-1)
        np.multiply(x, np.repeat(recip[: len(b)], m), out=x)

    def row_sums(b: np.ndarray, o: np.ndarray, s: int) -> None:
        b @ ones

    def check_given(b: np.ndarray, o: np.ndarray, s: int) -> None:
        # the check alone: sums from the (unscaled) product's row of ones stand in
        check_rows_given_sums(b, by_action[m, : len(b)], name="q", tol=tol, offset=s)

    def product_by_action(b: np.ndarray, o: np.ndarray, s: int) -> None:
        np.matmul(ua, b.T, out=by_action[:, : len(b)])

    def argmax_passes(b: np.ndarray, o: np.ndarray, s: int) -> None:
        k = len(b)
        _decisions._argmax_rows(by_action[:m, :k], best[:k], hits[:, :k], chosen[:k], weights)

    def product_into_block(b: np.ndarray, o: np.ndarray, s: int) -> None:
        np.matmul(b, ut, out=by_sample[: len(b)])

    def argmax_rows(b: np.ndarray, o: np.ndarray, s: int) -> None:
        np.argmax(by_sample[: len(b)], axis=1, out=chosen[: len(b)])

    np.matmul(ua, q[:rows].T, out=by_action)  # the check's stand-in sums: valid rows
    steps: dict[str, Callable[[], object]] = {
        "q @ U.T": lambda: q @ ut,
        "weighted_prediction": partial(expost.weighted_prediction, q, u),
        "decide": partial(expost.decide, q, u),
        "wp: product by sample, new output": _streamed(q, product_by_sample, m),
        "wp: q @ [U'1 | 1] (sums)": _in_cache(q, sums),
        "wp: scale by column (core)": _in_cache(q, scale_columns),
        "wp: scale per row": _in_cache(q, scale_rows),
        "wp: scale repeat + flat": _in_cache(q, scale_flat),
        "check given sums": _in_cache(q, check_given),
        "decide: product by action": _streamed(q, product_by_action),
        "decide: argmax in row passes": _in_cache(q, argmax_passes),
        "decide: product by sample, reused": _streamed(q, product_into_block),
        "decide: np.argmax along rows": _in_cache(q, argmax_rows),
        "decide: q @ 1 (sums, by sample)": _in_cache(q, row_sums),
    }
    times = _interleaved(steps, args.repeat)
    base = times["q @ U.T"]
    ratio = {k: float(np.median(t / base)) for k, t in times.items()}
    print(f"q: {n:,} x {m} float32, dense U, blocks of {rows:,} rows; {args.repeat} interleaved rounds")
    print("median over rounds of (step over all of q / q @ U.T in the same round)")
    print(f"{'step':<38}{'median ms':>11}{'x q@U.T':>9}")
    for k, t in times.items():
        print(f"{k:<38}{np.median(t) * 1e3:>11.2f}{ratio[k]:>9.2f}")
    wp_bound = (
        ratio["wp: product by sample, new output"] + ratio["wp: q @ [U'1 | 1] (sums)"]
        + min(ratio[k] for k in ratio if k.startswith("wp: scale"))
        + ratio["check given sums"]
    )
    decide_bound = min(
        ratio["decide: product by action"] + ratio["decide: argmax in row passes"],
        ratio["decide: product by sample, reused"] + ratio["decide: np.argmax along rows"]
        + ratio["decide: q @ 1 (sums, by sample)"],  # by sample, the row sums need a product of their own
    ) + ratio["check given sums"]
    print("\nthe sum of the cheapest steps, each alone, against the function (its steps in sequence):")
    for name, bound, goal in (("weighted_prediction", wp_bound, 1.6), ("decide", decide_bound, 1.3)):
        print(f"{name:<21}steps {bound:.2f}x, function {ratio[name]:.2f}x (goal {goal}x)")


if __name__ == "__main__":
    main()
