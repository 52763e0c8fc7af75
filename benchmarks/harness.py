"""Speed of the experiment harness (issue 5's goals), measured side by side in one run.

1. The embedded default end to end (``python -m expost run``: digits, 5 seeds x 2
   trainings x 40 intervals, Table 1, figures and the HTML report), wall time
   (goal <= 60 s on 2 CPU cores), and the share of that wall time spent in
   evaluation (goal <= 15 %).
2. The ex post frontier: 1,000 utilities on 20,000 x 15 stored predictions
   (goal <= 1 s), for class-weight utilities (an emphasis-ratio sweep: the
   paper's kind of objective) and for general dense matrices, on one thread and
   on two (``n_jobs=2``), against the core's one-utility-at-a-time loop on the
   same data (ratio, one thread).

Run: ``python benchmarks/harness.py`` (add ``--skip-default`` for the frontier only).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import expost
from expost.experiments import frontier
from expost.experiments.evaluate import decode_probabilities, encode_log_probs
from expost.experiments.store import ResultStore


def bench_default() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "default"
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "expost", "run", "--out", str(out),
                               "--quiet"], capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"expost run failed:\n{proc.stderr}")
        with ResultStore(out) as store:
            rows = store.trainings()
            n_intervals = sum(r["done_intervals"] for r in rows)
        train = sum(r["train_seconds"] for r in rows)
        evaluation = sum(r["eval_seconds"] for r in rows)
        io = sum(r["io_seconds"] for r in rows)
        loop = sum(r["wall_seconds"] for r in rows)
        gain = [ln for ln in proc.stdout.splitlines() if ln.startswith("| Mean |")]
    return {"wall": wall, "train": train, "eval": evaluation, "io": io, "loop": loop,
            "n_trainings": len(rows), "n_intervals": n_intervals,
            "mean_row": gain[0] if gain else ""}


def stored_predictions(n: int, m: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Predictions as the harness stores them: a softmax with some signal, float16 log-probs."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, m, n)
    logits = rng.normal(0, 1.5, (n, m))
    logits[np.arange(n), y] += 2.5
    lp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return decode_probabilities(encode_log_probs(lp)), y


def core_loop(q: np.ndarray, y: np.ndarray, us: list[expost.Utility]) -> None:
    for u in us:
        p = expost.weighted_prediction(q, u)
        expost.weighted_loss(p, y, u, reduction="mean")
        expost.classification_utility(expost.decide(q, u), y, u, reduction="mean")
        expost.log_loss(p, y, reduction="mean")


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench_frontier(n: int = 20_000, m: int = 15, k: int = 1_000, repeat: int = 7
                   ) -> list[tuple[str, dict[int, list[float]], float]]:
    """(name, {n_jobs: seconds of each run}, core loop seconds) per kind of utility.

    The runs of both kinds and both thread counts are interleaved, so that a busy
    spell on a shared machine hits them all alike.
    """
    q, y = stored_predictions(n, m)
    prior = np.bincount(y, minlength=m) / n
    rng = np.random.default_rng(1)
    ratios = np.geomspace(1.0, 1000.0, k // m + 1)
    weights = [expost.Utility.emphasize(m, c, r).normalized(prior)
               for r in ratios for c in range(m)][:k]
    dense = [expost.Utility(rng.uniform(0, 1, (m, m))).normalized(prior) for _ in range(k)]
    kinds = (("class weights (emphasis sweep)", weights), ("dense matrices", dense))
    times: dict[str, dict[int, list[float]]] = {name: {1: [], 2: []} for name, _ in kinds}
    for _ in range(repeat):
        for name, us in kinds:
            for n_jobs in (1, 2):
                t0 = time.perf_counter()
                frontier(q, y, us, n_jobs=n_jobs)
                times[name][n_jobs].append(time.perf_counter() - t0)
    out = []
    for name, us in kinds:
        sub = us[:50]
        t_core = best_of(lambda sub=sub: core_loop(q, y, sub), 1) * (k / len(sub))
        out.append((name, times[name], t_core))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-default", action="store_true")
    args = ap.parse_args()
    print(f"expost {expost.__version__}, {os.cpu_count()} CPUs, python {sys.version.split()[0]}")
    if not args.skip_default:
        d = bench_default()
        print("\n1. Embedded default end to end (`python -m expost run`, report included)")
        print(f"   {d['n_trainings']} trainings, {d['n_intervals']} evaluated intervals")
        print(f"   wall {d['wall']:.1f} s (goal <= 60 s: {d['wall'] / 60:.2f} of the budget)")
        print(f"   training loops {d['loop']:.1f} s = optimizer steps {d['train']:.1f} s "
              f"+ evaluation {d['eval']:.2f} s + checkpoints/commits {d['io']:.2f} s")
        share = d["eval"] / d["wall"]
        print(f"   evaluation share of wall time {100 * share:.1f} % (goal <= 15 %); "
              f"of the training loops {100 * d['eval'] / d['loop']:.1f} %")
        print(f"   Table 1 {d['mean_row']}")
    print("\n2. Ex post frontier: 1,000 utilities on 20,000 x 15 stored predictions "
          "(goal <= 1 s; best and median of 7 interleaved runs)")
    for name, runs, t_core in bench_frontier():
        best = min(runs[1])
        print(f"   {name:<32} frontier best {best:5.2f} s, median {np.median(runs[1]):5.2f} s"
              f" | n_jobs=2: best {min(runs[2]):5.2f} s, median {np.median(runs[2]):5.2f} s"
              f" | core, one utility at a time {t_core:5.1f} s (ratio {t_core / best:4.1f}x)")


if __name__ == "__main__":
    main()
