"""The harness's default run beside the bare PyTorch loop doing the same trainings.

Both run as fresh processes, alternately (``--repeat`` rounds, so that a busy spell
on a shared machine hits both alike): ``python -m expost run`` with the embedded
default config (ten trainings, per-epoch test evaluation and metrics, the store,
checkpoints, Table 1, figures and the HTML report) and ``benchmarks/bare_loop.py``
(the same ten trainings and per-epoch test and validation log-probabilities,
nothing else).
Printed side by side: wall and CPU seconds (the children's user + system time,
imports included) of each, and the ratio harness / bare, per round and the median.
Goal (issue 14): at most 1.15x.

The harness runs torch's fused Adam by default (``optimizer.fused``), the bare loop
the for-loop Adam a plain script gets; ``--fused-adam`` gives the bare loop the fused
one too, which leaves only the harness's own overhead in the ratio. The bare loop
loads the digits with ``sklearn.datasets.load_digits`` (importing scikit-learn, 1-2.5 s),
as a plain script does; the harness reads the same file without that import.

``--also-src DIR`` adds a third contestant: ``expost run`` from another checkout's
``src`` (put first on ``PYTHONPATH``), e.g. an earlier commit's
(``git worktree add /tmp/before REV``, then ``--also-src /tmp/before/src``); the
three then run in an order that turns round every round, and the paired ratio of
this checkout to that one is printed too.

``expost`` ends without the interpreter's teardown (:func:`expost.cli.exit_now`,
most of a second with torch loaded), which the bare loop, a plain script, pays;
``--normal-exit`` runs the harness with it, to measure the harness without that saving.

Run: ``python benchmarks/harness_vs_bare.py [--repeat 2] [--fused-adam] [--also-src DIR]
[--normal-exit]``.
"""

from __future__ import annotations

import argparse
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BARE = Path(__file__).with_name("bare_loop.py")


def expost_command(normal_exit: bool) -> list[str]:
    """How the harness is started: the ``expost`` command (``normal_exit``: its ``main`` in
    a plain script, which exits with the interpreter's teardown as the bare loop does)."""
    if normal_exit:
        return [sys.executable, "-c", "import sys; from expost.cli import main; sys.exit(main())"]
    return [sys.executable, "-m", "expost"]


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """(wall, CPU) seconds of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--fused-adam", action="store_true",
                    help="the bare loop also runs torch's fused Adam, as the harness does by "
                         "default (without: the for-loop Adam a plain script gets)")
    ap.add_argument("--also-src", metavar="DIR",
                    help="also time `expost run` from this src folder of another checkout")
    ap.add_argument("--normal-exit", action="store_true",
                    help="run the harness with the interpreter's teardown at exit, as the bare "
                         "loop has it (`expost` itself skips it: expost.cli.exit_now)")
    args = ap.parse_args()
    if args.also_src:
        also(args)
        return
    print(f"{os.cpu_count()} CPUs, python {sys.version.split()[0]}")
    print(f"{'round':>5} {'harness wall':>13} {'bare wall':>10} {'ratio':>6} "
          f"{'harness CPU':>12} {'bare CPU':>9} {'ratio':>6}")
    ratios: dict[str, list[float]] = {"wall": [], "cpu": []}
    seconds: dict[str, list[float]] = {"harness": [], "bare": []}
    parts: list[dict[str, float]] = []
    for r in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            h = timed([*expost_command(args.normal_exit), "run", "--out", str(Path(tmp) / "run"), "--quiet"])
            parts.append(harness_parts(Path(tmp) / "run", h[0]))
        b = timed([sys.executable, str(BARE), *(["--fused-adam"] if args.fused_adam else [])])
        seconds["harness"].append(h[0])
        seconds["bare"].append(b[0])
        ratios["wall"].append(h[0] / b[0])
        ratios["cpu"].append(h[1] / b[1])
        print(f"{r:>5} {h[0]:12.2f}s {b[0]:9.2f}s {h[0] / b[0]:6.2f} {h[1]:11.2f}s "
              f"{b[1]:8.2f}s {h[1] / b[1]:6.2f}")
    print(f"median ratio harness / bare loop: wall {statistics.median(ratios['wall']):.2f}x, "
          f"CPU {statistics.median(ratios['cpu']):.2f}x (goal: at most 1.15x)")
    # the fastest round of each: what a load spell that hit one of them more cannot inflate
    print(f"fastest harness / fastest bare loop (wall): {min(seconds['harness']):.2f} s / "
          f"{min(seconds['bare']):.2f} s = {min(seconds['harness']) / min(seconds['bare']):.2f}x")
    print("where the harness's wall time went (median over rounds, from its store's timings):")
    for name in parts[0]:
        print(f"  {name:<58} {statistics.median(p[name] for p in parts):6.2f} s")


def also(args: argparse.Namespace) -> None:
    """This checkout's harness, another checkout's and the bare loop, in turned orders."""
    src = Path(args.also_src).resolve()
    if not (src / "expost" / "__init__.py").is_file():
        raise SystemExit(f"--also-src: expected a src folder holding expost/, got {str(src)!r}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(src), *filter(None, [os.environ.get("PYTHONPATH")])])}
    bare = [sys.executable, str(BARE), *(["--fused-adam"] if args.fused_adam else [])]
    walls: dict[str, list[float]] = {"this": [], "other": [], "bare": []}
    print(f"{os.cpu_count()} CPUs, python {sys.version.split()[0]}; other: {src}")
    print(f"{'round':>5} {'this':>8} {'other':>8} {'bare':>8}   this/bare other/bare this/other")
    for r in range(args.repeat):
        order = ["this", "other", "bare"]
        order = order[r % 3:] + order[:r % 3]
        for who in order if r % 2 == 0 else order[::-1]:
            with tempfile.TemporaryDirectory() as tmp:
                run = [*expost_command(args.normal_exit), "run", "--out", str(Path(tmp) / "run"), "--quiet"]
                wall = timed(bare if who == "bare" else run,
                             env if who == "other" else None)[0]
            walls[who].append(wall)
        t, o, b = (walls[k][-1] for k in ("this", "other", "bare"))
        print(f"{r:>5} {t:7.2f}s {o:7.2f}s {b:7.2f}s   {t / b:9.2f} {o / b:10.2f} {t / o:10.2f}")
    med = {k: statistics.median(x / y for x, y in zip(walls[a], walls[c], strict=True))
           for k, (a, c) in {"this": ("this", "bare"), "other": ("other", "bare"),
                             "pair": ("this", "other")}.items()}
    print(f"median ratios: this / bare {med['this']:.2f}x, other / bare {med['other']:.2f}x "
          f"(goal: at most 1.15x), this / other {med['pair']:.2f}x")


def harness_parts(run_dir: Path, wall: float) -> dict[str, float]:
    """The harness's wall time split by what its store records of every interval."""
    conn = sqlite3.connect(f"file:{run_dir / 'results.sqlite'}?mode=ro", uri=True)
    try:
        train, evaluation, io, intervals = conn.execute(
            "SELECT SUM(train_seconds), SUM(eval_seconds), SUM(io_seconds), SUM(wall_seconds)"
            " FROM trainings").fetchone()
    finally:
        conn.close()
    return {"training loops (optimizer steps and batches)": train,
            "evaluation (predictions, metrics, validation loss)": evaluation,
            "checkpoints and commits": io,
            "the rest of the intervals (divergence checks, schedule, best model)":
                intervals - train - evaluation - io,
            "outside the intervals (start-up, set-up, progress, Table 1, report)":
                wall - intervals}


if __name__ == "__main__":
    main()
