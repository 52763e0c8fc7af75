"""Draw and save a report's figures, sharing them among forked processes where that helps.

Drawing and saving a PNG with matplotlib's Agg canvas is pure CPU work of about
0.2 s a figure (the default report has eleven). On Linux with more than one CPU
the figures are dealt round-robin to this process and up to
``processes - 1`` forked children, each of which saves its share (atomically,
like every file of a report) and exits. The first figure is drawn here before
any fork: it loads the fonts and fills matplotlib's caches, which the children
then share instead of filling their own.

A child that fails, is killed or takes far longer than this process took for
its own share leaves its figures to this process, which draws them again; so an
error in a figure surfaces here, with its traceback, as it would without
children, and the files are the same either way.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # this module is imported by report/helper.py, which loads no matplotlib
    from ._data import FigureSpec

__all__ = ["MAX_PROCESSES", "figure_paths", "render_figures", "report_processes", "stop_child"]

#: At most this many processes draw a report's figures.
MAX_PROCESSES = 4

#: A child is given up (killed, its share drawn here) after this many seconds, or after
#: ten times what this process took for its own share, whichever is longer.
CHILD_PATIENCE_SECONDS = 60.0


def report_processes(requested: int | None = None) -> int:
    """How many processes draw the figures: ``requested``, or by default the CPUs this
    process may run on, at most :data:`MAX_PROCESSES`; 1 where there is no ``fork`` (or
    off Linux, where forking a process that has loaded GUI or BLAS frameworks is unsafe)."""
    if requested is not None:
        if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
            raise ValueError(f"`processes` must be a positive integer or None, got {requested!r}")
        wanted = requested
    else:
        try:
            wanted = min(len(os.sched_getaffinity(0)), MAX_PROCESSES)
        except AttributeError:  # not on Linux
            wanted = 1
    if not sys.platform.startswith("linux") or not hasattr(os, "fork"):
        return 1
    return wanted


def figure_paths(path: str | Path, pdf: bool) -> list[Path]:
    """The files :func:`~expost.report.figures.save_figure` writes for ``path``: its PNG
    (the suffix forced to ``.png``), and beside it the PDF if asked."""
    png = Path(path).with_suffix(".png")
    return [png, png.with_suffix(".pdf")] if pdf else [png]


def render_figures(specs: list[FigureSpec], folder: Path, *, pdf: bool = False,
                   processes: int | None = None) -> list[tuple[str, str, list[Path]]]:
    """Draw every figure of ``specs`` and save it in ``folder``; (name, caption, paths
    written) in the order of ``specs``. ``processes``: see :func:`report_processes`."""
    from .figures import save_figure

    n = min(report_processes(processes), max(len(specs) - 1, 1))

    def draw(i: int) -> None:
        name, _, build = specs[i]
        save_figure(build(), folder / name, pdf=pdf)

    if specs:
        draw(0)
    rest = list(range(1, len(specs)))
    shares = [rest[k::n] for k in range(n)]
    children: dict[int, list[int]] = {}
    try:
        for share in shares[1:]:
            pid = os.fork()
            if pid == 0:  # the child: its share, then out without Python's exit handlers
                code = 1
                try:
                    for i in share:
                        draw(i)
                    code = 0
                finally:
                    os._exit(code)
            children[pid] = share
        started = time.perf_counter()
        for i in shares[0]:
            draw(i)
        patience = max(CHILD_PATIENCE_SECONDS, 10 * (time.perf_counter() - started))
        for i in _reap(children, time.perf_counter() + patience):
            _remove_partial(folder, specs[i][0])  # a killed child's unfinished temp files
            draw(i)  # what a failed child left
    finally:
        for pid in children:  # only on an error here (KeyboardInterrupt included)
            stop_child(pid)
    return [(name, caption, figure_paths(folder / name, pdf)) for name, caption, _ in specs]


def _reap(children: dict[int, list[int]], deadline: float) -> list[int]:
    """Wait for the children until ``deadline``; the figures of those that did not succeed.

    Each child is removed from ``children`` once it is reaped (or killed and reaped).
    """
    left: list[int] = []
    while children:
        for pid in list(children):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done == 0 and time.perf_counter() < deadline:
                continue
            if done == 0:
                stop_child(pid)
            elif os.waitstatus_to_exitcode(status) == 0:
                children.pop(pid)
                continue
            left += children.pop(pid)
        if children:
            time.sleep(0.005)
    return sorted(left)


def _remove_partial(folder: Path, name: str) -> None:
    """The temp files :func:`~expost._atomic.atomic_open` leaves when its process is killed."""
    for path in figure_paths(folder / name, pdf=True):
        for tmp in folder.glob(f".{path.name}.*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


def stop_child(pid: int) -> None:
    """Kill a child and reap it (it may have exited already)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
