"""Progress of a running experiment: one reporter per run of ``expost run``.

This module owns how training progress is shown: :class:`LogReporter` (fixed-column,
timestamped log lines, one per interval, for ``--quiet`` and for a stderr that is not
a terminal), :class:`RichReporter` (the live rich view: a bar per training with its
regimes, seed, ETA and metrics) and the choice between them (``_reporter``). The
runners (:mod:`expost.experiments.runners`) call a reporter's ``start``, ``interval``,
``finish`` and ``close``; with worker processes (:mod:`expost.experiments.backends`) the
driver calls them as the workers' records arrive, and ``status`` with the count of
trainings done / running / pending / failed and the ETA. rich is imported only when the
live view is used.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

__all__ = ["LogReporter", "RichReporter"]


class LogReporter:
    """Plain, fixed-column log lines, one per interval, each ending with the wall-clock time
    (``--quiet``, and whenever stderr is not a terminal: a pipe, a log file, nohup)."""

    HEADER = (f"{'training':<18} {'interval':>9} {'step':>7} {'epoch':>7} {'lr':>9} "
              f"{'train_loss':>10} {'val_loss':>9} {'test_wloss':>10} {'test_util':>9} "
              f"{'sec':>6} {'time':>8}")

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self._header = False
        self._status: tuple[int, int, int, int] | None = None

    def _print(self, line: str) -> None:
        print(line, file=self.stream, flush=True)

    def start(self, job: Any, n_intervals: int, done: int) -> None:
        if not self._header:
            self._print(self.HEADER)
            self._header = True
        if done:
            self._print(f"{job.train_key:<18} resumed after interval {done}/{n_intervals}")

    def interval(self, job: Any, row: Mapping[str, Any]) -> None:
        wl = row.get("weighted_loss", float("nan"))
        cu = row.get("classification_utility", float("nan"))
        sec = row["train_seconds"] + row["eval_seconds"] + row.get("io_seconds", 0.0)
        self._print(
            f"{job.train_key:<18} {row['interval'] + 1:>4d}/{row['n_intervals']:<4d} "
            f"{row['step']:>7d} {row['epoch']:>7.2f} {row['lr']:>9.2e} {row['train_loss']:>10.4f} "
            f"{row['val_loss']:>9.4f} {wl:>10.4f} {cu:>9.4f} {sec:>6.2f} "
            f"{time.strftime('%H:%M:%S')}"
        )

    def finish(self, job: Any) -> None:
        pass

    def status(self, *, done: int, running: int, pending: int, failed: int,
               eta: float | None) -> None:
        """A line whenever the count of trainings done / running / pending / failed changes."""
        counts = (done, running, pending, failed)
        if counts != self._status:
            self._status = counts
            self._print(f"trainings: {_status_text(done, running, pending, failed, eta)}  "
                        f"{time.strftime('%H:%M:%S')}")

    def close(self) -> None:
        pass


def _status_text(done: int, running: int, pending: int, failed: int, eta: float | None) -> str:
    """>>> _status_text(3, 2, 1, 0, 75.0)
    '3 done, 2 running, 1 pending, 0 failed; ETA 0:01:15'
    """
    left = "--"
    if eta is not None:
        minutes, sec = divmod(round(eta), 60)
        left = f"{minutes // 60}:{minutes % 60:02d}:{sec:02d}"
    return f"{done} done, {running} running, {pending} pending, {failed} failed; ETA {left}"


class RichReporter:
    """A rich progress bar per training: training k of N, its regimes and seed in full, the
    elapsed time, an ETA and live metrics (interval, losses)."""

    def __init__(self, console: Any = None, *, n_trainings: int | None = None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = console if console is not None else Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            TextColumn("{task.fields[metrics]}"),
            console=self.console,
        )
        self.progress.start()
        self._tasks: dict[str, Any] = {}
        self._overall: Any = None
        self.n_trainings = n_trainings

    def start(self, job: Any, n_intervals: int, done: int) -> None:
        k = len(self._tasks) + 1
        of = f"/{self.n_trainings}" if self.n_trainings else ""
        regimes = ", ".join(regime for _, regime in getattr(job, "runs", ()))
        seed = getattr(job, "seed", None)
        what = f"{regimes}, seed {seed}" if regimes and seed is not None else job.train_key
        self._tasks[job.train_key] = self.progress.add_task(
            f"training {k}{of}: {job.train_key} ({what})", total=n_intervals, completed=done,
            metrics="resumed" if done else "")

    def interval(self, job: Any, row: Mapping[str, Any]) -> None:
        wl = row.get("weighted_loss", float("nan"))
        text = (f"interval {row['interval'] + 1}/{row['n_intervals']}  "
                f"train {row['train_loss']:.4f}  val {row['val_loss']:.4f}  "
                f"test wloss ({row.get('regime')}) {wl:.4f}  lr {row['lr']:.1e}")
        self.progress.update(self._tasks[job.train_key], completed=row["interval"] + 1,
                             metrics=text)

    def finish(self, job: Any) -> None:
        pass

    def status(self, *, done: int, running: int, pending: int, failed: int,
               eta: float | None) -> None:
        """The overall line of a run with workers: trainings done / running / pending /
        failed and the ETA."""
        text = _status_text(done, running, pending, failed, eta)
        if self._overall is None:
            self._overall = self.progress.add_task("trainings", total=None, metrics=text)
        self.progress.update(self._overall, description=f"trainings {done}/"
                             f"{done + running + pending + failed}", metrics=text)

    def close(self) -> None:
        self.progress.stop()


def _reporter(quiet: bool, stream: TextIO | None, n_trainings: int) -> Any:
    """``--quiet``: log lines to ``stream`` (stdout); stderr not a terminal (a pipe, a file,
    nohup): the same lines to stderr, as they happen; else the live rich view on stderr."""
    if quiet:
        return LogReporter(stream)
    if not _is_terminal(sys.stderr):
        return LogReporter(sys.stderr)
    return RichReporter(n_trainings=n_trainings)


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
