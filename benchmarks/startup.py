"""Start-up time of the command line, side by side with the interpreter and numpy.

Each command runs in a fresh interpreter (the same ``python`` as this script),
round-robin, ``--repeat`` rounds; printed: the median wall time of each, its
ratio to ``python -c "import numpy"`` (the floor for anything numpy-based), and
the time above that floor. Goals (issue 14): ``import expost`` under 0.25 s,
``expost --help`` and ``expost decide`` (100 rows) under 0.5 s on this machine.

Run: ``python benchmarks/startup.py [--repeat 15]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

GOALS = {"import expost": 0.25, "expost --help": 0.5, "expost decide (100 rows)": 0.5}


def commands(tmp: Path) -> dict[str, list[str]]:
    rng = np.random.default_rng(0)
    np.savetxt(tmp / "p.csv", rng.dirichlet(np.ones(3), 100), delimiter=",")
    np.savetxt(tmp / "u.csv", np.diag([1.0, 2.0, 3.0]), delimiter=",")
    py = sys.executable
    return {
        "python -c pass": [py, "-c", "pass"],
        "import numpy": [py, "-c", "import numpy"],
        "import expost": [py, "-c", "import expost"],
        "expost --help": [py, "-m", "expost", "--help"],
        "expost decide (100 rows)": [py, "-m", "expost", "decide", "--utility",
                                     str(tmp / "u.csv"), "--probs", str(tmp / "p.csv")],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cmds = commands(Path(tmp))
        times: dict[str, list[float]] = {k: [] for k in cmds}
        for _ in range(args.repeat):
            for name, cmd in cmds.items():
                t0 = time.perf_counter()
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=os.environ)
                times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    floor = med["import numpy"]
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; median of "
          f"{args.repeat} interleaved runs")
    print(f"{'command':<26} {'median s':>9} {'x numpy':>8} {'above numpy':>12}  goal")
    for name, t in med.items():
        goal = GOALS.get(name)
        verdict = "" if goal is None else f"< {goal} s: {'met' if t < goal else 'NOT met'}"
        print(f"{name:<26} {t:9.3f} {t / floor:8.2f} {t - floor:11.3f}s  {verdict}")


if __name__ == "__main__":
    main()
