"""Forward + backward time of the utility-weighted cross-entropy against F.cross_entropy.

Measured side by side in one run on the same tensors: the variants alternate round by
round after a warm-up, timed as the calling thread's CPU time on CPU (one torch thread)
and as synchronised wall time on CUDA. Prints the median time and the median per-round
ratio to the plain ``F.cross_entropy(logits, target)``. Goals (CPU): class weights <= 1.3x,
full utility matrix <= 2x. A "sparse" matrix (zeros off the diagonal) is timed without a
goal: it pays the guard that makes 0 * log 0 = 0 (a -inf logit on an action of zero
utility gives a finite loss); a matrix with no zero skips the guard.

The converted utility is kept in one cache only (per Utility, dtype and device, in
``expost.nn._convert``); a module converts through it too.

    python benchmarks/losses.py                 # CPU: 256 x 15 and 512 x 100
    python benchmarks/losses.py --device cuda   # also 4096 x 100
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

import expost
from expost.nn import UtilityWeightedCrossEntropy
from expost.nn.functional import utility_weighted_cross_entropy

GOALS = {"diagonal": 1.3, "full": 2.0}


def _case(n: int, m: int, kind: str, device: str) -> dict[str, object]:
    gen = torch.Generator().manual_seed(n * 1000 + m)
    logits = (3 * torch.randn(n, m, generator=gen)).to(device).requires_grad_()
    target = torch.randint(0, m, (n,), generator=gen).to(device)
    rng = np.random.default_rng(m)
    if kind == "diagonal":
        u = expost.Utility.emphasize(m, 1, ratio=99).normalized(np.full(m, 1.0 / m))
    elif kind == "full":
        u = expost.Utility(rng.uniform(0.0, 1.0, (m, m)) + 5.0 * np.eye(m))
    else:  # sparse: about 70% of the off-diagonal entries are zero
        keep = rng.uniform(size=(m, m)) < 0.3
        u = expost.Utility(rng.uniform(0.0, 1.0, (m, m)) * keep + 5.0 * np.eye(m))
    return {
        "logits": logits,
        "target": target,
        "u": u,
        "w": torch.as_tensor(np.array(u.matrix.diagonal()), dtype=torch.float32, device=device),
        "module": UtilityWeightedCrossEntropy(u).to(device),
        "module_nv": UtilityWeightedCrossEntropy(u, validate=False).to(device),
        "F": F,
        "uwce": utility_weighted_cross_entropy,
    }


def _per_call(fn: Callable[[], None], number: int, device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        torch.cuda.synchronize()
        return (time.perf_counter() - t0) / number
    # CPU: this thread's CPU time, so that time the scheduler gives to other
    # processes on a shared machine is not counted (torch runs on this one thread).
    t0 = time.thread_time()
    for _ in range(number):
        fn()
    return (time.thread_time() - t0) / number


def _time_side_by_side(
    stmts: dict[str, str], env: dict[str, object], device: str, rounds: int, number: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Median seconds per call and median per-round ratio to the first variant.

    The variants alternate round by round, so slow phases of a shared machine hit
    all of them alike; the ratio is taken within each round before the median.
    """
    fns = {
        name: eval(f"lambda: {stmt}.backward()", {**env, "torch": torch})
        for name, stmt in stmts.items()
    }
    for fn in fns.values():  # warm-up: allocator, caches, lazy CUDA init
        _per_call(fn, max(20, number // 2), device)
    samples: dict[str, list[float]] = {name: [] for name in stmts}
    for _ in range(rounds):
        for name, fn in fns.items():
            samples[name].append(_per_call(fn, number, device))
    base = np.asarray(samples[next(iter(stmts))])
    times = {name: float(np.median(s)) for name, s in samples.items()}
    ratios = {name: float(np.median(np.asarray(s) / base)) for name, s in samples.items()}
    return times, ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--rounds", type=int, default=31, help="alternating rounds (median)")
    parser.add_argument("--number", type=int, default=50, help="calls per round and variant")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda needs a CUDA device")
    sizes = [(256, 15), (512, 100)] + ([(4096, 100)] if args.device == "cuda" else [])
    print(f"torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}")
    print(f"{'N x m':>10} {'utility':>8} {'variant':>30} {'us':>9} {'ratio':>6}")
    for n, m in sizes:
        for kind in ("diagonal", "full", "sparse"):
            env = _case(n, m, kind, args.device)
            stmts = {
                "F.cross_entropy": "F.cross_entropy(logits, target)",
                "F.cross_entropy(weight=w)": "F.cross_entropy(logits, target, weight=w)",
                "ours: module": "module(logits, target)",
                "ours: functional(Utility)": "uwce(logits, target, u)",
                "ours: module validate=False": "module_nv(logits, target)",
            }
            if kind != "diagonal":
                del stmts["F.cross_entropy(weight=w)"]
            times, ratios = _time_side_by_side(stmts, env, args.device, args.rounds, args.number)
            for name, t in times.items():
                ratio = ratios[name]
                goal = ""
                if name.startswith("ours") and "validate=False" not in name and kind in GOALS:
                    ok = ratio <= GOALS[kind]
                    goal = f"  goal <= {GOALS[kind]}x: {'met' if ok else 'NOT met'}"
                print(f"{n:>5} x {m:<3} {kind:>8} {name:>30} {t * 1e6:9.1f} {ratio:6.2f}{goal}")


if __name__ == "__main__":
    main()
