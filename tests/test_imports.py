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
