"""The command's exit: the work's outputs and the atexit handlers, without the teardown."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

#: The environment with stdout block-buffered into a pipe, as a shell pipeline has it.
BUFFERED = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}


def _python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args],
                          capture_output=True, text=True, timeout=120, check=False, env=BUFFERED)


def test_a_piped_command_delivers_all_its_output_and_its_status(tmp_path):
    """Block-buffered stdout (a pipe) is flushed before the process ends: every row arrives."""
    rng = np.random.default_rng(0)
    probs, utility = tmp_path / "q.csv", tmp_path / "u.csv"
    np.savetxt(probs, rng.dirichlet(np.ones(3), size=5000), delimiter=",")
    np.savetxt(utility, np.diag([1.0, 2.0, 30.0]), delimiter=",")
    cmd = [sys.executable, "-m", "expost", "decide", "--utility", str(utility), "--probs"]
    done = subprocess.run([*cmd, str(probs)], capture_output=True, text=True, timeout=120,
                          check=False, env=BUFFERED)
    assert done.returncode == 0, done.stderr
    rows = done.stdout.splitlines()
    assert len(rows) == 5001, rows[:2]  # a header and one decision per row
    missing = subprocess.run([*cmd, str(tmp_path / "none.csv")], capture_output=True, text=True,
                             timeout=120, check=False)
    assert missing.returncode == 1 and missing.stderr.startswith("expost decide: error:")


def test_atexit_handlers_and_buffered_writes_still_happen(tmp_path):
    marker, log = tmp_path / "atexit.txt", tmp_path / "log.txt"
    done = _python(f"""
        import atexit, logging, sys
        from expost.cli import entry
        handler = logging.FileHandler({str(log)!r})  # buffered; flushed by logging's atexit
        logging.getLogger("t").addHandler(handler)
        logging.getLogger("t").warning("logged")
        atexit.register(lambda: open({str(marker)!r}, "w").write("ran"))
        print("before")  # still in stdout's buffer
        sys.argv = ["expost"]  # prints the help and returns 0 (no SystemExit)
        entry()
        print("never")
        """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("before\nusage: expost") and "never" not in done.stdout
    assert marker.read_text() == "ran"
    assert log.read_text() == "logged\n"


def test_a_running_thread_gets_the_normal_exit(tmp_path):
    """A non-daemon thread still working is joined, as a normal exit does."""
    marker = tmp_path / "thread.txt"
    done = _python(f"""
        import sys, threading, time
        from expost.cli import entry
        def work():
            time.sleep(0.5)
            open({str(marker)!r}, "w").write("done")
        threading.Thread(target=work).start()
        sys.argv = ["expost", "nonsense"]
        entry()
        """)
    assert done.returncode == 1
    assert "unknown command 'nonsense'" in done.stderr
    assert marker.read_text() == "done"


def test_the_console_script_is_the_fast_exit():
    import tomllib

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["expost"] == "expost.cli:entry"
