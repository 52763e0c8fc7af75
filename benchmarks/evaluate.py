"""``expost evaluate`` on a CIFAR-100-sized store: time per interval and per utility, memory.

A synthetic store is built here (10,000 test samples x 100 classes, float16
log-probabilities as the harness stores them; two trainings, ``weighted`` and
``unweighted``, giving three runs: Weighted Training, Ex Post Weighting and
Unweighted Raw), then ``expost evaluate`` runs in this process on it with K
class-weight utilities (``--emphasize`` one class at K ratios), writing the CSV.
Printed side by side in one run, for K = 10 and K = 1,000: wall time, seconds
per stored interval and per (interval, utility), the peak resident memory the
evaluation added, and the time extrapolated to 1,000 stored intervals (goal,
issue 14: 1,000 class-weight utilities in under 5 minutes on 2 cores). A
store of 1,000 such intervals is 2 GB, so ``--intervals`` (default 6) are
built and the time scales linearly in them (each interval is scored on its own).

Run: ``python benchmarks/evaluate.py [--intervals 6] [--k 10 1000]``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from expost.cli import main as expost_main
from expost.experiments.evaluate import encode_log_probs
from expost.experiments.metrics import METRICS
from expost.experiments.store import ResultStore

N, M = 10_000, 100


def build_store(run_dir: Path, n_intervals: int) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, M, N)
    prior = np.bincount(y, minlength=M) / N
    u = np.eye(M)
    info = {"config_hash": "bench", "utility": u.tolist(), "class_names": [str(c) for c in range(M)],
            "inverse_prior_utility": None, "emphasized": 0, "objective_note": "synthetic",
            "recall_class": 0, "train_prior": prior.tolist()}
    keys = ("weighted", "unweighted")
    with ResultStore.create(run_dir, info, arrays={"test_labels": y, "train_prior": prior}) as st:
        per_key = -(-n_intervals // 2)
        st.register([{"train_key": k, "kind": k, "seed": 0, "n_intervals": per_key,
                      "total_steps": per_key} for k in keys],
                    [{"run_id": f"{r}-s0", "regime": r, "seed": 0, "train_key": k}
                     for r, k in (("weighted", "weighted"), ("expost", "unweighted"),
                                  ("unweighted_raw", "unweighted"))])
        for t in range(n_intervals):
            key = keys[t % 2]
            logits = rng.normal(0, 1.5, (N, M))
            logits[np.arange(N), y] += 2.5 + 0.1 * t
            lp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
            st.commit_interval(key, {"interval": t // 2, "step": t // 2, "epoch": t // 2,
                                     "lr": 0.1, "train_loss": 1.0, "val_loss": 1.0,
                                     "train_seconds": 0.0, "eval_seconds": 0.0},
                               encode_log_probs(lp), [], checkpoint=None, timings={})


def evaluate(run_dir: Path, k: int, out: Path) -> float:
    ratios = [f"{r:.6g}" for r in np.geomspace(1.01, 1000.0, k)]
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        rc = expost_main(["evaluate", str(run_dir), "--emphasize", "7", "--ratio", *ratios,
                          "--out", str(out), "--bootstrap", "0"])
    if rc != 0:
        raise SystemExit(f"expost evaluate failed with status {rc}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--intervals", type=int, default=6)
    ap.add_argument("--k", type=int, nargs="+", default=[10, 1000])
    args = ap.parse_args()
    print(f"{os.cpu_count()} CPUs, python {sys.version.split()[0]}; store {N} x {M}, "
          f"{args.intervals} stored intervals (3 runs: {args.intervals * 3 // 2} scorings)")
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "store"
        build_store(run_dir, args.intervals)
        print(f"{'K':>6} {'wall s':>8} {'s/interval':>11} {'ms/(interval, utility)':>23} "
              f"{'peak RSS MiB':>13} {'rows':>8} {'1,000 intervals':>16}")
        for k in args.k:
            wall = evaluate(run_dir, k, Path(tmp) / f"k{k}.csv")
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            with open(Path(tmp) / f"k{k}.csv") as fh:
                rows = sum(1 for _ in fh) - 1
            assert rows == k * args.intervals * 3 // 2, rows
            per = wall / args.intervals
            print(f"{k:>6} {wall:8.2f} {per:11.3f} {1e3 * per / k:23.3f} "
                  f"{rss / 1024:13.0f} {rows:>8} {1000 * per:14.0f} s")
    print(f"(columns of the CSV: utility, run, interval, {len(METRICS)} metrics; peak RSS is the "
          "process's maximum so far: it grows from one K to the next only if that K needs more; "
          "goal for K = 1,000 over 1,000 intervals: 300 s)")


if __name__ == "__main__":
    main()
