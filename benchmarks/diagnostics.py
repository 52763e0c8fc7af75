"""Speed of the learning-identity diagnostics on a ChestX-ray14-sized evaluation set.

Times ``expost.risk_decomposition(p, y, method="temperature")`` (five cross-fitted
temperature fits plus the decomposition) on 20,000 x 15 predictions, the goal being
well under a second, and prints it side by side with the pieces it is built from,
measured in the same run, as ratios:

* one pass of the log loss over the same rows (the risk alone),
* one in-sample ``fit_temperature`` on all rows (so the ratio is the price of
  cross-fitting),
* the same decomposition with vector scaling (Newton) for comparison,

and the cost of ``import expost`` in a fresh interpreter (which must not load
``scipy.optimize``; the fits import it when first called).

Run: ``python benchmarks/diagnostics.py [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np
from scipy.special import log_softmax

import expost


def best_of(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Minimum wall time and minimum CPU time over ``repeats`` calls.

    The CPU time (this process, all threads) is the fairer figure on a shared machine,
    where other jobs inflate wall time.
    """
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return min(wall), min(cpu)


def import_cost(repeats: int) -> tuple[float, list[str]]:
    """Best wall time of ``import expost`` in a fresh interpreter, and the heavy modules it loads."""
    code = ("import json, sys, time; t0 = time.perf_counter(); import expost; "
            "t = time.perf_counter() - t0; heavy = ('scipy.optimize', 'torch', 'sklearn', "
            "'matplotlib'); print(json.dumps([t, [m for m in heavy if m in sys.modules]]))")
    runs = [json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True,
                                      text=True, check=True).stdout)
            for _ in range(repeats)]
    return min(r[0] for r in runs), runs[0][1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--classes", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    z = rng.normal(0.0, 2.0, size=(args.n, args.classes))
    q = np.exp(log_softmax(z / 1.5, axis=1))  # truth: the model is overconfident (T0 = 1.5)
    y = (q.cumsum(axis=1) > rng.uniform(size=(args.n, 1))).argmax(axis=1)
    p = np.exp(log_softmax(z, axis=1))

    r = expost.risk_decomposition(p, y, method="temperature")
    timings = {
        "risk_decomposition(temperature, 5 folds)": best_of(
            lambda: expost.risk_decomposition(p, y, method="temperature"), args.repeats
        ),
        "log_loss (one pass)": best_of(lambda: expost.log_loss(p, y, reduction="mean"),
                                       args.repeats),
        "fit_temperature (in sample, all rows)": best_of(
            lambda: expost.fit_temperature(np.log(p), y), args.repeats
        ),
        "risk_decomposition(vector, 5 folds)": best_of(
            lambda: expost.risk_decomposition(p, y, method="vector"), max(1, args.repeats // 2)
        ),
    }
    main_wall, main_cpu = timings["risk_decomposition(temperature, 5 folds)"]
    print(f"expost {expost.__version__}: {args.n} x {args.classes} predictions, "
          f"best of {args.repeats}; load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores")
    print(f"  risk {r.total:.4f} = learned {r.learned:.4f} + remainder {r.remainder:.4f}"
          f"  (E[lbar(P, Q)] = {r.expected:.4f})")
    print(f"  {'':<44s} {'wall ms':>9s} {'cpu ms':>9s}   ratio to temperature decomposition")
    for name, (wall, cpu) in timings.items():
        print(f"  {name:<44s} {wall * 1e3:9.1f} {cpu * 1e3:9.1f}   {wall / main_wall:6.3f}")
    seconds, heavy = import_cost(args.repeats)
    print(f"  import expost (fresh interpreter, best of {args.repeats}): {seconds * 1e3:.0f} ms; "
          f"heavy modules loaded: {', '.join(heavy) or 'none'}")
    goal = 1.0
    verdict = "met" if main_wall < 0.5 * goal else "NOT met"
    print(f"goal: risk_decomposition(temperature) well under {goal:.0f} s -> wall "
          f"{main_wall:.3f} s, cpu {main_cpu:.3f} s ({verdict} at half the goal, wall)")


if __name__ == "__main__":
    main()
