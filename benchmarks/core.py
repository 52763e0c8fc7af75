"""Speed and memory of the core's decision layer against a bare matrix product.

Measured side by side in one run on 1,000,000 x 15 float32 probabilities:
``weighted_prediction``, ``decide`` and ``recover_posterior`` (all with their
input checks) against ``q @ U.T``. Goal: each within 2x of the bare product,
with no more than two temporaries of the input's size (peak extra memory
measured with tracemalloc, which numpy reports its buffers to).

    python benchmarks/core.py [--n 1000000] [--m 15] [--repeat 15]
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from collections.abc import Callable

import numpy as np

import expost


def _median_time(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _peak_extra(fn: Callable[[], object]) -> int:
    tracemalloc.start()
    tracemalloc.reset_peak()
    out = fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del out
    return peak


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--m", type=int, default=15)
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    z = rng.standard_normal((args.n, args.m), dtype=np.float32)
    q = np.exp(z)
    q /= q.sum(axis=1, keepdims=True)
    del z
    w = np.ones(args.m)
    w[3] = 99.0
    u_diag = expost.Utility.from_class_weights(w)
    u_full = expost.Utility(rng.uniform(0.1, 2.0, size=(args.m, args.m)) + np.eye(args.m) * 5)
    nbytes = q.nbytes

    print(f"q: {args.n:,} x {args.m} float32 ({nbytes / 2**20:.1f} MiB); median of {args.repeat}")
    print(f"{'function':<34}{'utility':>9}{'seconds':>10}{'ratio':>8}{'peak/input':>12}")
    for name, u in (("diagonal", u_diag), ("full", u_full)):
        ut = u.matrix.T.astype(np.float32)
        base = _median_time(lambda ut=ut: q @ ut, args.repeat)
        base_mem = _peak_extra(lambda ut=ut: q @ ut)
        print(
            f"{'q @ U.T (baseline)':<34}{name:>9}{base:>10.4f}{1.0:>8.2f}{base_mem / nbytes:>12.2f}"
        )
        for label, fn in (
            ("weighted_prediction", lambda u=u: expost.weighted_prediction(q, u)),
            ("decide", lambda u=u: expost.decide(q, u)),
            ("recover_posterior", lambda u=u: expost.recover_posterior(q, u)),
        ):
            t = _median_time(fn, args.repeat)
            mem = _peak_extra(fn)
            print(f"{label:<34}{name:>9}{t:>10.4f}{t / base:>8.2f}{mem / nbytes:>12.2f}")


if __name__ == "__main__":
    main()
