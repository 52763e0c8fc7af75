"""Import hygiene of the numpy core: ``import expost`` stays light."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import expost

HEAVY = ("scipy.optimize", "torch", "sklearn", "matplotlib")


def loaded_after(code: str) -> list[str]:
    """The HEAVY modules in sys.modules after running ``code`` in a fresh interpreter."""
    src = str(Path(expost.__file__).resolve().parent.parent)  # this checkout's expost
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    check_same = f"assert sys.modules['expost'].__file__ == {expost.__file__!r}"
    report = f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    script = "\n".join(["import json, sys", code, check_same, report])
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_import_expost_loads_neither_scipy_optimize_nor_torch_sklearn_matplotlib():
    assert loaded_after("import expost") == []


def test_scipy_optimize_is_loaded_by_the_first_fit_that_needs_it():
    # the lazy import is real: the fit works in a fresh interpreter and only then loads it
    code = ("import expost\n"
            "assert 'scipy.optimize' not in sys.modules\n"
            "t = expost.fit_temperature([[2.0, 0.0], [2.0, 0.0], [2.0, 0.0], [0.0, 2.0]], [0, 0, 1, 1])\n"
            "assert abs(t - 1.8205) < 1e-3, t")
    assert loaded_after(code) == ["scipy.optimize"]


def test_vector_scaling_runs_without_scipy_optimize():
    # fit_vector_scaling is plain Newton in numpy (its docstring says so): no scipy optimiser
    code = ("import numpy as np, expost\n"
            "z = np.log(np.repeat([[0.8, 0.2], [0.3, 0.7]], 10, axis=0))\n"
            "expost.fit_vector_scaling(z, [0] * 6 + [1] * 4 + [0] * 2 + [1] * 8)")
    assert loaded_after(code) == []


def test_expost_help_loads_no_report_layer_optimiser_or_framework():
    # `expost --help` lists every command, the report's too, without importing them
    code = ("import contextlib, io\n"
            "from expost.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
            "    try:\n"
            "        main(['--help'])\n"
            "    except SystemExit as exc:\n"
            "        assert exc.code == 0, exc.code\n"
            "assert 'report' in out.getvalue() and 'decide' in out.getvalue()\n"
            "assert 'expost.report.figures' not in sys.modules")
    assert loaded_after(code) == []


def test_expost_decide_loads_no_torch_matplotlib_sklearn_or_optimiser(tmp_path):
    (tmp_path / "u.csv").write_text("1,0\n0,4\n")
    (tmp_path / "p.csv").write_text("0.7,0.3\n0.9,0.1\n")
    code = ("import contextlib, io\n"
            "from expost.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
            f"    rc = main(['decide', '--utility', {str(tmp_path / 'u.csv')!r}, "
            f"'--probs', {str(tmp_path / 'p.csv')!r}])\n"
            "assert rc == 0 and out.getvalue().splitlines()[1:] == ['1,1.2', '0,0.9'], "
            "out.getvalue()")
    assert loaded_after(code) == []


def test_scipy_special_is_not_needed_by_the_core():
    # the core's losses use numpy's log with the xlogy convention, not scipy.special
    code = ("import numpy as np, expost\n"
            "u = expost.Utility([[1.0, 0.5], [0.0, 2.0]])\n"
            "v = expost.weighted_loss([[1.0, 0.0], [0.25, 0.75]], [0, 1], u)\n"
            "assert np.allclose(v, [0.0, -0.5 * np.log(0.25) - 2 * np.log(0.75)]), v\n"
            "assert 'scipy.special' not in sys.modules and 'scipy' not in sys.modules")
    assert loaded_after(code) == []
