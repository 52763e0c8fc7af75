"""Speed and memory of the core's decision layer against a bare matrix product.

Measured side by side in one run on 1,000,000 x 15 float32 probabilities:
``weighted_prediction``, ``decide`` and ``recover_posterior`` (all with their
input checks; ``recover_posterior`` on ``p^u(q)``, and as ``recover_posterior_0``
on ``p^u`` of a q with exact zeros, whose inversion has rounding-level negatives
to clip) against two baselines, the
bare product ``q @ U.T`` and the copy floor (``np.copyto`` of a q-sized array,
the least any pass over q costs). Goals: ``decide`` within 1.3x of the bare
product, ``weighted_prediction`` and ``recover_posterior`` within 1.6x, for
diagonal and dense U; no more than two temporaries of the input's size (peak
extra memory measured with tracemalloc, which numpy reports its buffers to).

Where the compiled row passes (``expost._rowops``, built at install with a C compiler)
are present, ``weighted_prediction`` and ``recover_posterior`` also run with them
switched off (``[numpy]``), in the same rounds: what an install without a compiler gets.

Run it with one BLAS thread, as the goals are stated::

    OPENBLAS_NUM_THREADS=1 python benchmarks/core.py [--n 1000000] [--m 15] [--repeat 21]

Each ratio is the median over rounds of (function / baseline in the same
round); the functions run round-robin, so load on a shared machine hits all alike.
The quartiles of the per-round ratio against ``q @ U.T`` are printed beside it: on
a shared machine they are the honest uncertainty of the median.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from collections.abc import Callable
from functools import partial

import numpy as np

import expost
from expost import _rows


def _interleaved(fns: dict[str, Callable[[], object]], repeat: int) -> dict[str, np.ndarray]:
    """Seconds per call of each function, run round-robin so load drifts hit all alike."""
    for fn in fns.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: np.asarray(v) for k, v in times.items()}


def _probabilities(rng: np.random.Generator, n: int, m: int) -> np.ndarray:
    """``n`` x ``m`` float32 rows on the simplex: a softmax of standard normals."""
    q = np.exp(rng.standard_normal((n, m), dtype=np.float32))
    q /= q.sum(axis=1, keepdims=True)
    return q


def _dense_utility(rng: np.random.Generator, n_act: int, n_cls: int) -> expost.Utility:
    """A dense U: uniform entries in [0.1, 2) with 5 added on the diagonal."""
    return expost.Utility(rng.uniform(0.1, 2.0, (n_act, n_cls)) + 5 * np.eye(n_act, n_cls))


def _without_compiled(fn: Callable[[], object]) -> object:
    """``fn()`` with expost's compiled row passes switched off (numpy computes them)."""
    with _rows.numpy_only():
        return fn()


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
    ap.add_argument("--repeat", type=int, default=21)
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    q = _probabilities(rng, args.n, args.m)
    w = np.ones(args.m)
    w[3] = 99.0
    u_diag = expost.Utility.from_class_weights(w)
    u_full = _dense_utility(rng, args.m, args.m)
    nbytes = q.nbytes

    # a third of q's entries zero: U^-1 p^u(q) then has rounding-level negatives, clipped
    q0 = np.where(q < np.quantile(q, 1 / 3), np.float32(0), q)
    q0 /= q0.sum(axis=1, keepdims=True)
    floor = np.empty_like(q)
    print(f"compiled row passes (expost._rowops): {'yes' if _rows.is_compiled() else 'no (numpy)'}")
    print(f"q: {args.n:,} x {args.m} float32 ({nbytes / 2**20:.1f} MiB); {args.repeat} interleaved rounds")
    print("x q@U.T, x copy = median over rounds of (function / baseline in the same round);")
    print("q25-q75 = the quartiles of the per-round ratio to q@U.T; recover_posterior_0: on p^u(q0),")
    print("q0 = q with its lowest third of entries set to 0 (posteriors with exact zeros)")
    # one space between fields, so that a ratio wider than its column (a tiny input on a
    # busy machine) still reads as a number of its own
    print(
        f"{'function':<29} {'utility':>8} {'best s':>8} {'median s':>9} "
        f"{'x q@U.T':>8} {'q25-q75':>11} {'x copy':>7} {'peak/input':>11}"
    )
    for name, u in (("diagonal", u_diag), ("dense", u_full)):
        ut = u.matrix.T.astype(np.float32)
        p = expost.weighted_prediction(q, u)  # what a weighted model reports: in the image of p^u
        p0 = expost.weighted_prediction(q0, u)  # ... of a q with exact zeros
        fns: dict[str, Callable[[], object]] = {
            "q @ U.T": lambda ut=ut: q @ ut,
            "copy floor": lambda: np.copyto(floor, q),
            "weighted_prediction": lambda u=u: expost.weighted_prediction(q, u),
            "decide": lambda u=u: expost.decide(q, u),
            "recover_posterior": lambda u=u, p=p: expost.recover_posterior(p, u),
            "recover_posterior_0": lambda u=u, p0=p0: expost.recover_posterior(p0, u),
        }
        if _rows.is_compiled():
            for label in ("weighted_prediction", "recover_posterior", "recover_posterior_0"):
                fns[f"{label}[numpy]"] = partial(_without_compiled, fns[label])
        times = _interleaved(fns, args.repeat)
        for label, fn in fns.items():
            t = times[label]
            ratios = t / times["q @ U.T"]
            vs_product = float(np.median(ratios))
            q25, q75 = np.quantile(ratios, [0.25, 0.75])
            vs_copy = float(np.median(t / times["copy floor"]))
            mem = _peak_extra(fn) / nbytes
            print(
                f"{label:<29} {name:>8} {t.min():>8.4f} {np.median(t):>9.4f} "
                f"{vs_product:>8.2f} {f'{q25:.2f}-{q75:.2f}':>11} {vs_copy:>7.1f} {mem:>11.2f}"
            )


if __name__ == "__main__":
    main()
