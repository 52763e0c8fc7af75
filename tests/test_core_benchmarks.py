"""The core's benchmark scripts still run against the core as it is now.

They reach into private names (``_decisions._block_rows``, ``_argmax_rows``, the layout
thresholds), so a refactor of the core can break them without breaking any other test.
Each runs here on a tiny input; what is asserted is that every row it prints carries a
ratio, not what the ratio is (speed lives in the benchmarks, never in tests).
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from expost import _decisions, _rows

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _run(script: str, *args: str) -> list[str]:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, script, *args], cwd=BENCHMARKS, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def _ratio(line: str, after: str) -> float:
    """The number followed by ``x`` in ``line``, after the text ``after``."""
    found = re.search(re.escape(after) + r".*?(\d+\.\d+)x", line)
    assert found, line
    value = float(found.group(1))
    assert math.isfinite(value) and value > 0, line
    return value


def test_core_steps_prints_every_step_and_both_bounds():
    lines = _run("core_steps.py", "--n", "3000", "--m", "7", "--repeat", "2")
    steps = [ln for ln in lines if ln.startswith(("wp:", "decide:", "check given"))]
    assert len(steps) == 11
    for ln in steps:
        assert float(ln.split()[-1]) > 0
    bounds = {ln.split()[0]: ln for ln in lines if ln.startswith(("weighted_prediction ", "decide "))}
    assert set(bounds) == {"weighted_prediction", "decide"}
    for name, ln in bounds.items():
        assert _ratio(ln, "steps") > 0 and _ratio(ln, "function") > 0, name


def test_core_prints_each_function_for_both_utilities():
    lines = _run("core.py", "--n", "3000", "--m", "6", "--repeat", "2")
    functions = ("decide", "weighted_prediction", "recover_posterior", "recover_posterior_0")
    rows = [ln.split() for ln in lines if ln.split()[:1] in ([f] for f in functions)]
    assert sorted((r[0], r[1]) for r in rows) == sorted(
        (f, u) for f in functions for u in ("diagonal", "dense"))
    if _rows.is_compiled():  # the same functions with the compiled row passes switched off
        numpy_rows = [ln.split() for ln in lines if ln.split()[:1] in ([f"{f}[numpy]"] for f in functions)]
        assert sorted((r[0], r[1]) for r in numpy_rows) == sorted(
            (f"{f}[numpy]", u) for f in functions[1:] for u in ("diagonal", "dense"))
        rows += numpy_rows
    for r in rows:  # 8 fields, even where a ratio is wider than its column (CI saw 94.8152.11-137.50)
        assert len(r) == 8, r
        assert float(r[4]) > 0  # x q@U.T
        assert re.fullmatch(r"\d+\.\d\d-\d+\.\d\d", r[5]), r  # its quartiles
        assert float(r[6]) > 0 and float(r[7]) >= 0  # x copy, peak/input


def test_decide_routes_names_the_layout_the_rule_picks():
    lines = _run("decide_routes.py", "--mib", "0.02", "--repeat", "1")
    rows = [ln.split() for ln in lines if ln.split()[-1:] in (["action"], ["sample"])]
    assert len(rows) == 19
    for actions, classes, kind, _n, by_action, by_sample, picked in rows:
        assert by_action.endswith("x") and by_sample.endswith("x")
        a, c = int(actions), int(classes)
        shape = np.eye(a) if kind == "weights" else np.ones((a, c))  # diagonal, or dense
        assert picked == ("sample" if _decisions._by_sample(shape) else "action"), (a, c, kind)


def test_decide_csv_prints_each_reader_and_the_command():
    lines = _run("decide_csv.py", "--rows", "300", "--classes", "4", "--repeat", "1")
    rows = {ln.split("  ")[0].strip(): ln for ln in lines if ln.endswith("x")}
    assert set(rows) == {"numpy parser", "cell by cell", "expost decide"}
    for name, ln in rows.items():
        assert _ratio(ln, name) > 0


def test_small_calls_prints_each_function_cached_and_uncached():
    lines = _run("small_calls.py", "--rows", "2", "--m", "4", "--repeat", "1", "--number", "3")
    rows = [ln.split() for ln in lines if ln.endswith("x")]
    assert sorted((r[0], r[-4]) for r in rows) == sorted(
        (f, u) for f in ("decide", "weighted_prediction", "recover_posterior") for u in ("weights", "dense"))
    for r in rows:  # microseconds cached, uncached, and their ratio
        assert float(r[-3]) > 0 and float(r[-2]) > 0 and float(r[-1].rstrip("x")) > 0


def test_block_rows_prints_each_block_size_and_the_default():
    lines = _run("block_rows.py", "--n", "3000", "--m", "7", "--repeat", "1", "--rows", "500,2000")
    default = _decisions._block_rows(7, np.dtype(np.float32))
    assert f"default block {default:,} rows" in lines[0]
    rows = [ln.split() for ln in lines if ln.endswith("x")]
    assert sorted((r[0], r[1]) for r in rows) == sorted(
        (f, u) for f in ("weighted_prediction", "recover_posterior", "decide") for u in ("weights", "dense"))
    for r in rows:  # forced 500, forced 2000, the default
        assert len(r) == 5 and all(float(c.rstrip("x")) > 0 for c in r[2:])


def test_evaluate_benchmark_runs_expost_evaluate_on_its_store():
    """The synthetic store is one ``expost evaluate`` accepts (finished trainings, stored
    metrics), and every K gets its row of times and memory."""
    lines = _run("evaluate.py", "--samples", "200", "--classes", "9", "--intervals", "4", "--k", "3", "7")
    rows = [ln.split() for ln in lines if ln.endswith(" s") and ln.split()[0].isdigit()]
    assert [r[0] for r in rows] == ["3", "7"]
    for r in rows:  # s/interval, ms per (interval, utility), fixed s, peak RSS MiB, extrapolation
        assert len(r) == 7 and float(r[3]) > 0 and float(r[4]) > 0
    assert any(ln.startswith("engine, one interval (200 x 9), K = 7") and "identical: True" in ln
               for ln in lines)
