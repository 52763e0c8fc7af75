"""How the block size of the decision layer moves its speed, against ``q @ U.T``.

``weighted_prediction``, ``recover_posterior`` and ``decide`` run over q in row blocks
(``_decisions._blockwise``): each block's product, check and row pass run while the
block is in cache. This runs the three with the block forced to each of several row
counts, and with the default (``_decisions._block_rows``: about ``BLOCK_BYTES`` of q,
within ``MIN_BLOCK_ROWS`` and ``BLOCK_ROWS`` rows), all in the same rounds, each as
the median ratio to the bare ``q @ U.T`` of its round, for class weights and a dense U.
Too large a block spills the product and the output out of L2; too small a one pays
more per block in Python than it saves.

    OPENBLAS_NUM_THREADS=1 python benchmarks/block_rows.py [--n 1000000] [--m 15]
        [--dtype float32] [--rows 2048,4096,8192,16384] [--repeat 21]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from unittest import mock

import numpy as np
from core import _dense_utility, _interleaved, _probabilities  # benchmarks/core.py

import expost
from expost import _decisions, _rows


def _at_block(rows: int | None, fn: Callable[[], object]) -> Callable[[], object]:
    """``fn`` with every block ``rows`` rows long (None: the default rule)."""
    if rows is None:
        return fn

    def run() -> object:
        with mock.patch.object(_decisions, "_block_rows", lambda *_: rows):
            return fn()

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--m", type=int, default=15)
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--rows", default="2048,4096,8192,16384", help="block sizes to force, comma-separated")
    ap.add_argument("--repeat", type=int, default=21)
    args = ap.parse_args()
    sizes = [int(r) for r in args.rows.split(",")]
    rng = np.random.default_rng(0)
    q = _probabilities(rng, args.n, args.m).astype(args.dtype)
    default = _decisions._block_rows(args.m, q.dtype)
    compiled = "yes" if _rows.is_compiled() else "no"
    kib = default * q.shape[1] * q.itemsize / 2**10
    print(f"q: {args.n:,} x {args.m} {args.dtype}; compiled row passes: {compiled}; "
          f"default block {default:,} rows ({kib:,.0f} KiB of q); "
          f"{args.repeat} interleaved rounds")
    print("median over rounds of (function / q @ U.T in the same round)")
    columns: list[tuple[str, int | None]] = [(f"{r:,}", r) for r in sizes]
    columns.append((f"default ({default:,})", None))
    print(f"{'function':<22}{'utility':>10}" + "".join(f"{name:>18}" for name, _ in columns))
    utilities = {"weights": expost.Utility.from_class_weights(rng.uniform(0.5, 5.0, args.m)),
                 "dense": _dense_utility(rng, args.m, args.m)}
    for label, u in utilities.items():
        ut = u.matrix.T.astype(q.dtype)
        p = expost.weighted_prediction(q, u)
        calls: dict[str, Callable[[], object]] = {
            "weighted_prediction": lambda u=u: expost.weighted_prediction(q, u),
            "recover_posterior": lambda u=u, p=p: expost.recover_posterior(p, u),
            "decide": lambda u=u: expost.decide(q, u),
        }
        fns: dict[str, Callable[[], object]] = {"base": lambda ut=ut: q @ ut}
        for fname, fn in calls.items():
            for name, rows in columns:
                fns[f"{fname}|{name}"] = _at_block(rows, fn)
        times = _interleaved(fns, args.repeat)
        base = times["base"]
        for fname in calls:
            cells = "".join(f"{np.median(times[f'{fname}|{name}'] / base):>17.2f}x" for name, _ in columns)
            print(f"{fname:<22}{label:>10}{cells}")


if __name__ == "__main__":
    main()
