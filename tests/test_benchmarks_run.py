"""The harness-side benchmark scripts still run against the code as it is now.

``benchmarks/evaluate.py`` once stopped running unnoticed (its synthetic store no longer
met ``expost evaluate``'s checks); so each cheap script runs here on a tiny input. What
is asserted is that it prints every row it should, each with its numbers, not what the
numbers are (speed lives in the benchmarks, never in tests). The scripts that train for
minutes (``harness.py``, ``harness_vs_bare.py``, ``throughput.py``, ``backends.py``) are
left to be run by hand.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
NUMBER = r"-?\d+(?:\.\d+)?"


def _run(script: str, *args: str) -> list[str]:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, script, *args], cwd=BENCHMARKS, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.splitlines()


def _numbers(line: str) -> list[float]:
    return [float(x) for x in re.findall(NUMBER, line)]


def test_checkpoint_benchmark_prints_each_model():
    lines = _run("checkpoint.py", "--repeat", "1")
    rows = {ln.split("  ")[0]: ln for ln in lines[1:]}
    assert set(rows) == {"default MLP (64-128-10)", "MLP 784-512-256-10", "CNN on 3x32x32"}
    for name, ln in rows.items():
        values = _numbers(ln[len(name):])  # tensors, MB, two formats' ms, ratio, atomic ms
        assert len(values) == 6 and all(v > 0 for v in values), ln


def test_diagnostics_benchmark_prints_each_step_and_the_goal():
    lines = _run("diagnostics.py", "--n", "400", "--classes", "4", "--repeats", "1")
    text = "\n".join(lines)
    for step in ("risk_decomposition(temperature, 5 folds)", "log_loss (one pass)",
                 "fit_temperature (in sample, all rows)", "risk_decomposition(vector, 5 folds)"):
        (row,) = [ln for ln in lines if ln.strip().startswith(step)]
        assert len(_numbers(row.replace(step, ""))) == 3, row
    assert "heavy modules loaded: none" in text
    assert re.search(r"goal: risk_decomposition\(temperature\) well under 1 s -> wall", text)


def test_ingest_benchmark_prints_both_sizes():
    lines = _run("ingest.py", "--records", "3")
    rows = [ln.split() for ln in lines[1:]]
    assert [r[0] for r in rows] == ["CIFAR-100", "ChestX-ray14"]
    for r in rows:  # n x m, then write, ingest, MB/s, direct, ratio
        assert len(r) == 7 and all(float(v) > 0 for v in r[2:]), r


def test_startup_benchmark_prints_each_command_against_its_goal():
    lines = _run("startup.py", "--repeat", "1")
    rows = {ln[:28].strip(): ln for ln in lines[2:]}
    assert set(rows) == {"python -c pass", "import numpy", "import expost", "expost --help",
                         "expost decide (100 rows)"}
    for name, ln in rows.items():
        seconds, ratio, _above = _numbers(ln[len(name):])[:3]
        assert seconds > 0 and ratio > 0, ln
    for name in ("import expost", "expost --help", "expost decide (100 rows)"):
        assert re.search(r"< 0\.\d+ s: (met|NOT met)$", rows[name]), rows[name]
