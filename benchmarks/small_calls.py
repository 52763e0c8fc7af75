"""Per-call cost of the core on small inputs, with and without the cached preparation of U.

A one-row (or few-row) call of ``decide``, ``weighted_prediction`` or
``recover_posterior`` is mostly per-call work: scaling U for the kernels, looking
for identical actions, building the kernel's constant matrices and, for
``recover_posterior``, inverting U (an SVD for its condition number, then the
inverse). For a U of at most ``_decisions.PREPARED_ENTRIES`` entries these are
cached, keyed by U's bytes. This script times each function side by side, in
one run, with the cache as shipped ("cached") and with it off (the threshold
set to -1, so every call prepares U again, as before the cache: "uncached"),
and prints the median time per call of each and their ratio.

Run: ``OPENBLAS_NUM_THREADS=1 python benchmarks/small_calls.py [--rows 1] [--m 15] [--repeat 15]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

import expost
from expost import _decisions


def _per_call(fn: Callable[[], object], number: int) -> float:
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t0) / number


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1)
    ap.add_argument("--m", type=int, default=15)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--number", type=int, default=300, help="calls per timing")
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    m = args.m
    q = rng.dirichlet(np.ones(m), args.rows)
    utilities = {
        "class weights": expost.Utility.from_class_weights(np.arange(1.0, m + 1.0)),
        "dense": expost.Utility(rng.uniform(0.1, 2.0, (m, m)) + 5 * np.eye(m)),
    }
    shipped = _decisions.PREPARED_ENTRIES
    print(f"q: {args.rows} x {m} float64; median of {args.repeat} rounds of {args.number} calls, "
          "cached and uncached alternating")
    print(f"{'function':22s}{'utility':>15s}{'cached us':>12s}{'uncached us':>14s}{'uncached/cached':>17s}")
    for uname, u in utilities.items():
        p = expost.weighted_prediction(q, u)
        fns = {"decide": lambda u=u: expost.decide(q, u),
               "weighted_prediction": lambda u=u: expost.weighted_prediction(q, u),
               "recover_posterior": lambda u=u, p=p: expost.recover_posterior(p, u)}
        for fname, fn in fns.items():
            times: dict[bool, list[float]] = {True: [], False: []}
            fn()  # warm-up (and the cache's first entry)
            for _ in range(args.repeat):
                for cached in (True, False):
                    _decisions.PREPARED_ENTRIES = shipped if cached else -1
                    try:
                        times[cached].append(_per_call(fn, args.number))
                    finally:
                        _decisions.PREPARED_ENTRIES = shipped
            c, n = float(np.median(times[True])), float(np.median(times[False]))
            print(f"{fname:22s}{uname:>15s}{1e6 * c:12.1f}{1e6 * n:14.1f}{n / c:16.2f}x")


if __name__ == "__main__":
    main()
