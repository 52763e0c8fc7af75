"""Draw and save a report's figures, sharing them among forked processes where that helps.

Drawing and saving a PNG with matplotlib's Agg canvas is pure CPU work of about
0.2 s a figure (the default report has eleven). On Linux with more than one CPU
this process and up to ``processes - 1`` forked children take the figures one at
a time from a shared queue (a pipe), each saving what it takes (atomically, like
every file of a report) and the children reporting each one saved. The children
start at once: a process's first figure costs it about 0.03 s more (loading the
fonts), less than drawing one here before forking, which every child would wait
for. While the children draw, this process can do other work first (the report's
risk decomposition) and then join them, so the two overlap.

A figure taken by a child that fails, is killed or takes far longer than this
process took for its own work, and not reported saved, is drawn again here; so
an error in a figure surfaces here, with its traceback, as it would without
children, and the files are the same either way.
"""

from __future__ import annotations

import contextlib
import os
import signal
import struct
import sys
import time
from collections.abc import Callable
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
                   processes: int | None = None,
                   late: Callable[[], list[FigureSpec]] | None = None
                   ) -> list[tuple[str, str, list[Path]]]:
    """Draw every figure of ``specs`` and save it in ``folder``; (name, caption, paths
    written) in the order of ``specs``, then of ``late``'s. ``processes``: see
    :func:`report_processes`.

    ``late``: work for this process once the children are drawing (the report's risk
    decomposition), returning more figures, which this process draws. The children take
    the figures of ``specs`` one at a time from a shared queue, and so does this process
    after ``late``'s; so a process that is slowed, or busy with ``late``, draws fewer.
    """
    from .figures import save_figure

    n = min(report_processes(processes), max(len(specs), 1))
    if len(specs) > _QUEUE_LIMIT:  # a queue that would not fit in a pipe's buffer
        n = 1

    def draw(i: int) -> None:
        name, _, build = specs[i]
        save_figure(build(), folder / name, pdf=pdf)

    def draw_late() -> list[FigureSpec]:
        more = late() if late is not None else []
        for name, _, build in more:
            save_figure(build(), folder / name, pdf=pdf)
        return more

    if n == 1:
        for i in range(len(specs)):
            draw(i)
        more = draw_late()
    else:
        more = _render_shared(list(range(len(specs))), n, draw, draw_late, folder, specs)
    return [(name, caption, figure_paths(folder / name, pdf)) for name, caption, _ in
            [*specs, *more]]


#: More figures than this are drawn by one process: the queue, and the children's reports,
#: each 4 bytes a figure, fit in the 4 KiB that any pipe holds (a full one would block).
_QUEUE_LIMIT = 1024

_INDEX = struct.Struct("<i")


def _take(fd: int) -> int | None:
    """The next figure from the queue ``fd``; None once it is empty."""
    raw = os.read(fd, _INDEX.size)  # the queue was written whole: whole records or nothing
    return _INDEX.unpack(raw)[0] if len(raw) == _INDEX.size else None


def _render_shared(queue: list[int], n: int, draw: Callable[[int], None],
                   draw_late: Callable[[], list[FigureSpec]], folder: Path,
                   specs: list[FigureSpec]) -> list[FigureSpec]:
    """Figures ``queue`` drawn by this process and ``n - 1`` forked children, which take
    them one at a time from a pipe and report each one saved on another; this process
    runs ``draw_late`` first, then takes from the queue too, then draws again whatever a
    failed, killed or hung child took and did not report."""
    todo_r, todo_w = os.pipe()
    done_r, done_w = os.pipe()
    try:
        os.write(todo_w, b"".join(_INDEX.pack(i) for i in queue))  # fits: see _QUEUE_LIMIT
    finally:
        os.close(todo_w)  # so that an empty queue reads as its end
    children: list[int] = []
    drawn: set[int] = set()
    try:
        try:
            for _ in range(n - 1):
                pid = os.fork()
                if pid == 0:  # the child: figures until the queue is empty, then out
                    code = 1
                    try:
                        while (i := _take(todo_r)) is not None:
                            draw(i)
                            os.write(done_w, _INDEX.pack(i))
                        code = 0
                    finally:
                        os._exit(code)
                children.append(pid)
        finally:
            os.close(done_w)  # the children hold theirs: the reports end when they do
        started = time.perf_counter()
        more = draw_late()
        while (i := _take(todo_r)) is not None:
            draw(i)
            drawn.add(i)
        patience = max(CHILD_PATIENCE_SECONDS, 10 * (time.perf_counter() - started))
        _reap(children, time.perf_counter() + patience)
        drawn.update(_reports(done_r))
        for i in queue:
            if i not in drawn:  # taken by a child that failed, was killed or hung
                _remove_partial(folder, specs[i][0])  # a killed child's unfinished temp files
                draw(i)
    finally:
        for pid in children:  # only on an error here (KeyboardInterrupt included)
            stop_child(pid)
        os.close(todo_r)
        os.close(done_r)
    return more


def _reports(fd: int) -> set[int]:
    """The figures the children reported saved (read once they have all exited)."""
    raw = b""
    while chunk := os.read(fd, 1 << 16):
        raw += chunk
    return {_INDEX.unpack_from(raw, k)[0] for k in range(0, len(raw) - len(raw) % 4, 4)}


def _reap(children: list[int], deadline: float) -> None:
    """Wait for the children until ``deadline``, then kill those still running; each is
    removed from ``children`` once it is reaped (whether it succeeded or not)."""
    while children:
        for pid in list(children):
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done == 0 and time.perf_counter() < deadline:
                continue
            if done == 0:
                stop_child(pid)
            children.remove(pid)
        if children:
            time.sleep(0.005)


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
