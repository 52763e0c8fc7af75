"""Wall time of one tiny sweep on each backend, side by side in one run.

The sweep: digits, an MLP with 16 hidden units, classes 3 emphasised at ratios 3
and 9 (two grid points), regimes weighted, expost and metacost, two seeds: 12
trainings of 2 epochs, each a fraction of a second of work. So this measures
the backends' overhead, not their parallel speed-up (a real training takes
minutes to hours, and the overhead is paid once per worker):

* ``sequential``: in this process, after one warm-up sweep (imports and first
  data load are out of the timing);
* ``--jobs 2``: a cold pool of two spawned worker processes (each imports
  torch and expost and loads the data), then the same again;
* ``ray``: ``ray.init(num_cpus=2)``, then a first sweep (Ray starts its worker
  processes) and a second one on the warm workers.

Every store must hold the same number of intervals; the script says so. Run:
``python benchmarks/backends.py`` (needs ``pip install 'expost[ray]'`` for the
Ray rows; without Ray they are skipped).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# the tiny experiment the backend tests run (one definition for both)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from backend_cases import TINY

GRID = ["objective.ratio=3,9"]


def _intervals(sweep_dir: Path) -> int:
    total = 0
    for db in sorted(sweep_dir.glob("*/results.sqlite")):
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            total += conn.execute("SELECT count(*) FROM intervals").fetchone()[0]
        finally:
            conn.close()
    return total


def main() -> None:
    import torch  # noqa: F401 - imported before the timings, as a warm process has it

    from expost.experiments.backends import BackendOptions
    from expost.experiments.sweep import run_sweep

    root = Path(tempfile.mkdtemp(prefix="expost-backends-"))
    rows: list[tuple[str, float, int]] = []

    def timed(label: str, out: str, backend: Any = None) -> None:
        t0 = time.perf_counter()
        run_sweep(TINY, GRID, output_dir=root / out, progress=False, backend=backend)
        rows.append((label, time.perf_counter() - t0, _intervals(root / out)))

    try:
        timed("sequential, first (imports, data)", "warm")
        timed("sequential", "seq")
        timed("--jobs 2, cold pool", "j2", BackendOptions(jobs=2))
        timed("--jobs 2, again (new pool)", "j2b", BackendOptions(jobs=2))
        try:
            import ray
        except ImportError:
            print("ray is not installed: pip install 'expost[ray]'; the Ray rows are skipped")
        else:
            t0 = time.perf_counter()
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
            rows.append(("ray.init(num_cpus=2)", time.perf_counter() - t0, 0))
            try:
                timed("ray, first sweep (workers start)", "ray", BackendOptions(backend="ray"))
                timed("ray, second sweep (warm workers)", "ray2", BackendOptions(backend="ray"))
            finally:
                ray.shutdown()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    base = next(s for label, s, _ in rows if label == "sequential")
    print(f"{'backend':<36} {'wall s':>8} {'x sequential':>13} {'intervals':>10}")
    for label, seconds, n in rows:
        print(f"{label:<36} {seconds:8.2f} {seconds / base:13.2f} {n if n else '':>10}")
    counts = {n for label, _, n in rows if n}
    print("every store holds the same intervals" if len(counts) == 1
          else f"the stores differ in their interval counts: {sorted(counts)}")
    print(f"load average: {os.getloadavg()[0]:.2f} (2 cores here)")


if __name__ == "__main__":
    main()
