"""``expost evaluate`` on a CIFAR-100-sized store: time per interval and per utility, memory.

A synthetic store is built here (10,000 test samples x 100 classes, float16
log-probabilities as the harness stores them; two trainings, ``weighted`` and
``unweighted``, giving three runs: Weighted Training, Ex Post Weighting and
Unweighted Raw), then ``expost evaluate`` runs on it with K class-weight
utilities (``--emphasize`` one class at K ratios), writing the CSV, each K in a
fresh process (its peak resident memory is its own). Every K runs on a store of
2 intervals, then again on it and on one of ``--intervals`` (default 8): the
difference of the last two gives the time per stored interval, the first call less
two intervals the fixed cost (the command's imports and first calls, reading the
utilities, Table 1 per utility at the end); the time for 1,000 stored intervals is
extrapolated from them (a store of 1,000 such intervals is 2 GB; each interval is
scored on its own). The store's trainings are finished and hold the metrics the
harness would have stored (Table 1 reads them). Goal (issue 14): 1,000 class-weight
utilities over 1,000 intervals in under 5 minutes on 2 cores, memory independent of K.

Then the metric engine alone on one interval, K = 1,000 emphasis-style class
weights, side by side: its fast path for them and its general exact path for
class weights (chosen by the utilities' structure; forced here), per utility.

Run: ``python benchmarks/evaluate.py [--intervals 8] [--k 10 1000] [--samples 10000]
[--classes 100]``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import expost._batched_metrics as _engine
from expost import Utility
from expost.cli import main as expost_main
from expost.experiments.evaluate import (
    IntervalScorer,
    decode_probabilities,
    encode_log_probs,
    one_blas_thread,
)
from expost.experiments.metrics import METRICS
from expost.experiments.store import ResultStore

N, M = 10_000, 100  # CIFAR-100's test set
EMPHASIZED = 7


def build_store(run_dir: Path, n_intervals: int, n: int = N, m: int = M) -> None:
    """A store of ``n_intervals`` intervals of n x m log-probabilities, its trainings
    finished (``expost evaluate`` reads finished runs only)."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, m, n)
    prior = np.bincount(y, minlength=m) / n
    u = np.eye(m)
    info = {"config_hash": "bench", "utility": u.tolist(), "class_names": [str(c) for c in range(m)],
            "inverse_prior_utility": None, "emphasized": 0, "objective_note": "synthetic",
            "recall_class": 0, "train_prior": prior.tolist()}
    keys = ("weighted", "unweighted")
    runs = {"weighted": [("weighted-s0", "weighted")],
            "unweighted": [("expost-s0", "expost"), ("unweighted_raw-s0", "unweighted_raw")]}
    # the metrics the harness would store (Table 1 reads them), test and validation alike
    scorer = IntervalScorer(Utility(u), {"test": y, "val": y}, recall_of=0)
    with ResultStore.create(run_dir, info, arrays={"test_labels": y, "train_prior": prior}) as st:
        per_key = {"weighted": -(-n_intervals // 2), "unweighted": n_intervals // 2}  # alternating
        st.register([{"train_key": k, "kind": k, "seed": 0, "n_intervals": per_key[k],
                      "total_steps": per_key[k]} for k in keys],
                    [{"run_id": rid, "regime": r, "seed": 0, "train_key": k}
                     for k in keys for rid, r in runs[k]])
        for t in range(n_intervals):
            key = keys[t % 2]
            logits = rng.normal(0, 1.5, (n, m))
            logits[np.arange(n), y] += 2.5 + 0.1 * t
            lp = encode_log_probs(logits - np.log(np.exp(logits).sum(axis=1, keepdims=True)))
            q = decode_probabilities(lp)
            metrics = [(rid, split, scorer(q, split, r)) for rid, r in runs[key] for split in ("test", "val")]
            st.commit_interval(key, {"interval": t // 2, "step": t // 2, "epoch": t // 2,
                                     "lr": 0.1, "train_loss": 1.0, "val_loss": 1.0,
                                     "train_seconds": 0.0, "eval_seconds": 0.0},
                               lp, metrics, checkpoint=None, timings={})
        for key in keys:
            st.finish_training(key)


def evaluate(run_dir: Path, k: int, out: Path) -> float:
    ratios = [f"{r:.6g}" for r in np.geomspace(1.01, 1000.0, k)]
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        rc = expost_main(["evaluate", str(run_dir), "--emphasize", str(EMPHASIZED), "--ratio", *ratios,
                          "--out", str(out), "--bootstrap", "0"])
    if rc != 0:
        raise SystemExit(f"expost evaluate failed with status {rc}")
    with open(out) as fh:
        rows = sum(1 for _ in fh) - 1
    n_intervals = len(list(ResultStore(run_dir).iter_probabilities()))
    assert rows == k * (n_intervals + n_intervals // 2), rows  # weighted: 1 run, unweighted: 2
    return time.perf_counter() - t0


def child(k: int, small: Path, big: Path, tmp: Path) -> None:
    """One K in this (fresh) process: wall times on both stores and the peak RSS."""
    walls = [evaluate(small, k, tmp / f"k{k}f.csv"), evaluate(small, k, tmp / f"k{k}s.csv"),
             evaluate(big, k, tmp / f"k{k}b.csv")]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"walls": walls, "rss": rss}))


def engine_side_by_side(k: int = 1000, n: int = N, m: int = M) -> None:
    """The engine on one interval: the emphasis fast path vs the general exact path."""
    rng = np.random.default_rng(1)
    y = rng.integers(0, m, n)
    logits = rng.normal(0, 1.5, (n, m))
    logits[np.arange(n), y] += 2.5
    q = decode_probabilities(encode_log_probs(logits - logits.max(axis=1, keepdims=True)))
    w = np.ones((k, m))
    w[:, EMPHASIZED] = np.geomspace(1.01, 1000.0, k)
    recall = np.full(k, EMPHASIZED, dtype=np.intp)
    times = {}
    for path in ("fast", "general"):
        saved = _engine._emphasis_form
        if path == "general":
            _engine._emphasis_form = lambda w: None
        try:
            t0 = time.perf_counter()
            with one_blas_thread():  # as expost evaluate runs it
                got = _engine.batched_metrics(q, y, w, view="ex_post", recall_of=recall)
            times[path] = time.perf_counter() - t0
        finally:
            _engine._emphasis_form = saved
        times[path + "_utility"] = got["classification_utility"]
    same = np.array_equal(times["fast_utility"], times["general_utility"])
    print(f"engine, one interval ({n} x {m}), K = {k} class weights, 'ex_post' view: fast path "
          f"{times['fast']:.3f} s ({1e3 * times['fast'] / k:.3f} ms/utility), general path "
          f"{times['general']:.3f} s ({1e3 * times['general'] / k:.3f} ms/utility): "
          f"{times['general'] / times['fast']:.1f}x; decisions identical: {same}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--intervals", type=int, default=8)
    ap.add_argument("--k", type=int, nargs="+", default=[10, 1000])
    ap.add_argument("--samples", type=int, default=N, help="test samples per interval")
    ap.add_argument("--classes", type=int, default=M, help=f"classes (more than {EMPHASIZED})")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(int(args.child[0]), *map(Path, args.child[1:]))
        return
    if args.classes <= EMPHASIZED or args.intervals <= 2:
        ap.error(f"--classes must exceed {EMPHASIZED} and --intervals 2")
    print(f"{os.cpu_count()} CPUs, python {sys.version.split()[0]}; store {args.samples} x {args.classes}; "
          f"stores of 2 and {args.intervals} intervals (3 runs)")
    with tempfile.TemporaryDirectory() as tmp:
        small, big = Path(tmp) / "small", Path(tmp) / "big"
        build_store(small, 2, args.samples, args.classes)
        build_store(big, args.intervals, args.samples, args.classes)
        print(f"{'K':>6} {'s/interval':>11} {'ms/(interval, utility)':>23} {'fixed s':>8} "
              f"{'peak RSS MiB':>13} {'1,000 intervals':>16}")
        for k in args.k:
            res = subprocess.run([sys.executable, __file__, "--child", str(k), str(small),
                                  str(big), tmp], capture_output=True, text=True, check=False)
            if res.returncode != 0:
                raise SystemExit(f"K = {k} failed:\n{res.stdout[-2000:]}{res.stderr[-2000:]}")
            got = json.loads(res.stdout.strip().splitlines()[-1])
            (w_first, w_small, w_big), rss = got["walls"], got["rss"]
            per = (w_big - w_small) / (args.intervals - 2)
            fixed = w_first - 2 * per
            print(f"{k:>6} {per:11.3f} {1e3 * per / k:23.3f} {fixed:8.2f} {rss:13.0f} "
                  f"{fixed + 1000 * per:14.0f} s")
    print(f"(the CSV: utility, run, interval, {len(METRICS)} metrics per row; goal for K = 1,000 "
          "over 1,000 intervals: 300 s)")
    engine_side_by_side(max(args.k), args.samples, args.classes)


if __name__ == "__main__":
    main()
