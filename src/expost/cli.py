"""The ``expost`` command.

::

    expost run [CONFIG.yaml] [--out DIR] [--set key=value ...] [--quiet] [--force-new]
               [--backend local|ray] [--jobs N] [--address A] [--storage PATH|URL] ...
    expost sweep CONFIG.yaml --grid KEY=V1,V2 [--grid ...] [--out DIR] [backend options]
    expost evaluate RUN_DIR (--utility U.csv | --emphasize CLASS [--ratio R ...]) [--out F.csv]
    expost decide --utility U.csv --probs P.csv [--out D.csv]
    expost data describe NAME [--set dataset.options.KEY=VALUE ...] | data cache CONFIG
    expost table | plot | report | theory ...      (the report layer, expost.report.cli)

``expost run`` with no config runs the embedded default (scikit-learn digits,
offline, about a minute on 2 CPU cores), then writes Table 1, the figures and
the HTML report with :func:`expost.report.build_outputs` and prints Table 1.
Re-running the same command resumes an interrupted experiment.

Errors. :func:`main` is the one error boundary: every expected failure (a
missing or unreadable file, permissions, a full disk, a locked or damaged
experiment directory, bad data or options, a missing device) prints one line
``expost <command>: error: ...`` naming the file or option, and the exit status
is 1 (an invalid experiment config lists every invalid key on its line; 130
when interrupted; 141, with no message, when the reader of its output went away,
as in ``expost decide ... | head``). ``--debug`` (anywhere on the line) shows the traceback too.
Arguments are checked before any work is done; an ``--out`` file that would
replace one of the command's inputs (the ``--probs`` or a ``--utility`` file, an
experiment's ``results.sqlite`` or its checkpoints) is refused then.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import csv
import difflib
import errno
import importlib
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ._argtypes import bootstrap_resamples, positive_float
from ._atomic import atomic_open, check_not_input, check_output
from ._csv_input import CsvMatrix, read_csv_matrix, read_csv_rows
from .report.table import DEFAULT_N_BOOT

__all__ = ["build_parser", "main", "read_csv_matrix"]

EXIT_OK, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_PIPE = 0, 1, 130, 141

#: The commands of this module; the others (table, plot, report, theory) are the report
#: layer's, registered only when asked for, so that these never import matplotlib.
CORE_COMMANDS = ("run", "sweep", "evaluate", "decide", "data")


def _fail(command: str, message: Any, code: int = EXIT_ERROR) -> int:
    print(f"expost {command}: error: {message}", file=sys.stderr)
    return code


_OS_ERRORS = {
    errno.ENOSPC: "the disk is full; free some space and run the command again",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "the file system is read-only",
    errno.ENOENT: "no such file or folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "is a folder, expected a file",
    errno.EEXIST: "already exists",
    errno.EDQUOT: "the disk quota is exceeded; free some space and run the command again",
}

#: Failures a user can cause and fix; anything else is reported as unexpected.
_EXPECTED = (OSError, ValueError, TypeError, KeyError, RuntimeError, ImportError, MemoryError,
             EOFError)


def failure_message(exc: BaseException, limit: int = 600) -> str:
    """One line describing an exception for the command line (the error boundary's text).

    >>> failure_message(PermissionError(13, "Permission denied", "runs/x/report.html"))
    "'runs/x/report.html': permission denied"
    >>> failure_message(KeyError("No interval 3 of training 'w-s0' is stored."))
    "No interval 3 of training 'w-s0' is stored."
    """
    import sqlite3

    if isinstance(exc, OSError) and (exc.filename is not None or exc.errno in _OS_ERRORS):
        what = _OS_ERRORS.get(exc.errno or 0, exc.strerror or str(exc))
        where = f"{str(exc.filename)!r}: " if exc.filename is not None else ""
        text = f"{where}{what}"
    elif isinstance(exc, KeyError) and exc.args:
        text = str(exc.args[0])
    elif isinstance(exc, ValueError) and getattr(exc, "errors", None):  # ConfigError
        head = str(exc).splitlines()[0].rstrip(":")
        text = f"{head}: " + "; ".join(f"{path}: {msg}" for path, msg in exc.errors)  # type: ignore[attr-defined]
    elif isinstance(exc, MemoryError):
        text = "out of memory; use a smaller config (fewer seeds, smaller batches)"
    elif isinstance(exc, sqlite3.Error):
        text = f"the results database cannot be read ({exc})"
    else:
        text = str(exc) or type(exc).__name__
    if not isinstance(exc, (*_EXPECTED, sqlite3.Error)):
        text = (f"unexpected {type(exc).__name__}: {text} (rerun with --debug for the "
                "traceback)")
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


# ---------------------------------------------------------------- run
def _cmd_run(args: argparse.Namespace) -> int:
    check_output(args.out, "--out", folder=True)
    helper = None
    if not args.no_report:  # imports the report layer beside the run (report/helper.py)
        from .experiments._probe import PROBE_MODULES, probe_recall
        from .report.helper import ReportHelper

        # it also runs the "hardest" probe, whose scikit-learn it imports beside torch
        helper = ReportHelper.start(preload=PROBE_MODULES, tasks={"probe": probe_recall})
    try:
        return _run_and_report(args, helper)
    finally:
        if helper is not None:
            helper.close()


def _run_and_report(args: argparse.Namespace, helper: Any) -> int:
    from .experiments._probe import probe_runner
    from .experiments.backends import options_from_args
    from .experiments.config import ConfigError
    from .experiments.runners import LocalRunner, diverged_trainings, run_experiment

    backend = options_from_args(args)
    runner = None
    if helper is not None and backend.sequential:  # between trainings, the helper reads
        runner = LocalRunner(between=lambda setup: helper.warm(setup.store.run_dir))
    try:
        with probe_runner(_helper_probe(helper) if helper is not None else None):
            run_dir = run_experiment(args.config, output_dir=args.out, overrides=args.set or (),
                                     force_new=args.force_new, quiet=args.quiet,
                                     backend=backend, runner=runner)
    except ConfigError as exc:  # every invalid key on one line, exit 1 like every failure
        return _fail("run", failure_message(exc))
    except KeyboardInterrupt:
        return _fail("run", "interrupted; run the same command again to resume.",
                     EXIT_INTERRUPTED)
    diverged = diverged_trainings(run_dir)
    note = (f"{len(diverged)} training(s) diverged and were not tabled: {', '.join(diverged)} "
            "(a non-finite or exploding loss; lower optimizer.lr or set training.grad_clip, "
            "then rerun)") if diverged else ""
    if args.no_report:
        print(f"Results: {run_dir}")
        return _fail("run", note) if note else EXIT_OK
    try:  # the title line, verdict and flags are printed with or without --quiet, which
        # only turns the progress bars into log lines
        outputs = helper.build(run_dir, quiet=False) if helper is not None else None
        if outputs is None:  # no helper, or it failed: built here (an error surfaces here)
            from .report import build_outputs

            outputs = build_outputs(run_dir, quiet=False)
    except (*_EXPECTED, KeyboardInterrupt) as exc:
        return _fail("run", f"{note + '; ' if note else ''}the runs are stored in "
                            f"{str(run_dir)!r}, but the report could not be written: "
                            f"{failure_message(exc)}")
    print(outputs.get("table1_markdown", ""))
    for key, path in outputs.items():
        if key != "table1_markdown":
            print(f"{key}: {path}")
    return _fail("run", note) if note else EXIT_OK


def _helper_probe(helper: Any) -> Any:
    """A probe runner (:func:`~expost.experiments._probe.probe_runner`) that asks ``helper``,
    and meanwhile imports what the first training will need (:func:`_import_for_training`)."""
    def runner(xtr: Any, ytr: Any, xva: Any, yva: Any, n_classes: int) -> Any:
        return helper.ask("probe", [xtr, ytr, xva, yva], meanwhile=_import_for_training,
                          n_classes=n_classes)
    return runner


def _import_for_training() -> None:
    """Import ``torch._dynamo``, which the constructor of every ``torch.optim`` optimizer
    imports (1.5-2.5 s on 2 cores): done while the report helper fits the probe, the first
    training does not wait for it. Should it fail, the optimizer fails as it would have."""
    with contextlib.suppress(Exception):
        importlib.import_module("torch._dynamo")


def _cmd_sweep(args: argparse.Namespace) -> int:
    from .experiments.backends import options_from_args
    from .experiments.sweep import run_sweep

    check_output(args.out, "--out", folder=True)
    out = run_sweep(args.config, args.grid or (), output_dir=args.out, overrides=args.set or (),
                    backend=options_from_args(args), quiet=args.quiet)
    print(f"Sweep: {out} (Table 1 of every point: expost table {out})")
    return EXIT_OK


# ---------------------------------------------------------------- evaluate
_TABLE_METRICS = ("weighted_loss", "classification_utility")


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        code = _evaluate(args)
    beyond = [w for w in caught if issubclass(w.category, RuntimeWarning)
              and any(k in str(w.message) for k in ("overflow", "invalid value"))]
    for w in caught:  # anything else is shown as it came
        if not any(w is b for b in beyond):
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    if beyond:
        print("expost evaluate: note: some metrics or gains are beyond float64's range (utility "
              "entries near 1e308?) and are shown as inf or –; without --no-normalize the "
              "utilities are rescaled (Eq 21).", file=sys.stderr)
    return code


def _evaluate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .experiments.evaluate import as_matrix
    from .experiments.metrics import METRICS
    from .experiments.reevaluate import (
        BestIntervals,
        experiment_info,
        is_own_objective,
        iter_scores,
        utility_stack,
    )
    from .experiments.store import ResultStore, experiment_state
    from .report._data import table_runs

    check_output(args.out, "--out", folder=False)
    check_not_input(args.out, "--out", [*experiment_state(args.run_dir),
                                        *(("a --utility file", f) for f in args.utility or ())])
    cols = ["utility", "run_id", "regime", "seed", "interval", "step", "epoch", *METRICS]
    info = experiment_info(args.run_dir)  # errors: main's boundary
    stack = utility_stack(  # checked once; class weights held as weights, not matrices
        info, utility_files=args.utility or (), emphasize=args.emphasize, ratios=args.ratio,
        normalize=not args.no_normalize)
    labels = stack.labels
    # the runs `expost table` counts; experiment_info above has verified the store's
    # checksums already (each check reads every stored prediction), so not again here
    with ResultStore(args.run_dir, readonly=True, check=False) as store:
        keep, notes = table_runs(store, Path(args.run_dir))
    best = BestIntervals(len(labels), _TABLE_METRICS)
    n_rows = 0
    with contextlib.ExitStack() as outputs:
        w = None
        if args.out:  # the CSV replaces --out only when every row was written
            w = csv.writer(outputs.enter_context(atomic_open(args.out, "w", newline="")))
            w.writerow(cols)
        for run, metrics in iter_scores(args.run_dir, stack, run_ids=keep):
            best.add(run, metrics)
            if w is not None:  # rows stream out: one interval of one run, every utility
                fixed = [run[c] for c in cols[1:7]]
                values = np.column_stack([metrics[m] for m in METRICS]).tolist()
                w.writerows([lab, *fixed, *vals] for lab, vals in zip(labels, values, strict=True))
                n_rows += len(labels)
    if args.out:
        print(f"{n_rows} records written to {args.out}")
    for k, lab in enumerate(labels):
        own = is_own_objective(info, as_matrix(stack.values, k))
        _print_evaluation(info, f"{lab}", best.records(k), own, args.bootstrap, notes)
    return EXIT_OK


def _print_evaluation(info: dict[str, Any], label: str, records: list[dict[str, Any]],
                      own: bool, n_boot: int, notes: Sequence[str] = ()) -> None:
    """Table 1 under one utility; a regime trained for another objective is labelled so."""
    from .experiments.reevaluate import trained_for_label
    from .report import best_intervals, table1

    regimes = list(dict.fromkeys(rec["regime"] for rec in records))
    names = {reg: trained_for_label(info, reg, own) for reg in regimes}
    from .report._format import md

    print(f"\n## Utility: {md(label, cell=False)}" + ("" if own else " (not the run's objective: models "
          "trained for the objective were trained for the run's, not for this one; "
          "a new `expost run` with this objective trains for it)"))
    if "weighted" in regimes and "expost" in regimes:
        shown = [{**r, "regime": names[r["regime"]]} for r in records]
        print(table1(shown, baseline=names["weighted"], treatment=names["expost"],
                     metrics=_TABLE_METRICS, n_boot=n_boot, notes=notes).to_markdown())
        return
    for note in notes:
        print(note)
    for metric in _TABLE_METRICS:
        top = best_intervals(records, metric)
        for reg in regimes:
            vals = [b[metric] for b in top if b["regime"] == reg]
            print(f"{metric:<24} {names[reg]:<16} mean of best {np.mean(vals):.4f} "
                  f"over {len(vals)} runs")


# ---------------------------------------------------------------- decide
def _cmd_decide(args: argparse.Namespace) -> int:
    from ._decisions import decide, expected_utility, weighted_prediction
    from ._utility import Utility
    from ._validation import _error, check_probabilities

    check_output(args.out, "--out", folder=False)
    check_not_input(args.out, "--out", [("the --probs file", args.probs),
                                        ("the --utility file", args.utility)])
    umat, uhead = read_csv_matrix(args.utility, "--utility", header=args.header)  # errors: main
    data = read_csv_rows(args.probs, "--probs", header=args.header)
    probs, phead = data.values, data.header
    if uhead is not None and phead is not None and uhead != phead:
        raise ValueError(f"`--probs` names the classes {phead} and `--utility` {uhead}; "
                         "they must be the same classes in the same order.")
    try:
        u = Utility(umat)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"`--utility` ({args.utility}): {exc}") from None
    if probs.shape[1] != u.n_classes:
        raise ValueError(_error("--probs", f"{u.n_classes} columns (one per class of "
                                "--utility)", f"{probs.shape[1]} columns"))
    if args.renormalize:
        probs = _renormalized(data)
    try:  # an error names the first bad row as the file numbers it
        probs, _ = check_probabilities(probs, "--probs", at=data.row)
    except ValueError as exc:
        if args.renormalize or _row_sums(probs)[1].size:
            raise
        raise ValueError(f"{exc} --renormalize divides each row by its sum.") from None
    d = decide(probs, u)
    eu = expected_utility(probs, u)[np.arange(d.size), d]
    pu = weighted_prediction(probs, u) if args.with_probs else None
    names = uhead if (uhead is not None and u.n_actions == u.n_classes) else None
    names = names or (phead if (phead is not None and u.n_actions == u.n_classes) else None)
    header = ["decision"] + (["label"] if names else []) + ["expected_utility"]
    if pu is not None:
        header += [f"p_{names[a] if names else a}" for a in range(u.n_actions)]

    def rows() -> Iterator[list[Any]]:  # one at a time: a large file is never held as strings
        yield header
        for i, (a, e) in enumerate(zip(d.tolist(), eu.tolist(), strict=True)):
            yield ([a] + ([names[a]] if names else []) + [repr(e)]
                   + ([repr(v) for v in pu[i].tolist()] if pu is not None else []))

    if not args.out:
        csv.writer(sys.stdout).writerows(rows())
        return EXIT_OK
    with atomic_open(args.out, "w", newline="") as fh:
        csv.writer(fh).writerows(rows())
    print(f"{d.size} decisions written to {args.out}", file=sys.stderr)
    return EXIT_OK


def _row_sums(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows' sums, and the rows ``--renormalize`` cannot fix (not finite and
    nonnegative with a positive sum)."""
    sums = probs.sum(axis=1)
    return sums, np.flatnonzero(~(np.isfinite(sums) & (sums > 0)) | (probs < 0).any(axis=1))


def _renormalized(data: CsvMatrix) -> np.ndarray:
    """``--renormalize``: each row divided by its sum (finite, nonnegative, positive sum)."""
    sums, bad = _row_sums(data.values)
    if bad.size:
        raise ValueError(f"`--probs`: {data.row(int(bad[0]))} cannot be renormalised: it needs "
                         "finite nonnegative values with a positive sum, got "
                         f"{data.values[bad[0]].tolist()[:10]}.")
    return data.values / sums[:, None]


# ---------------------------------------------------------------- parser
def build_parser(*, report_commands: bool = True) -> argparse.ArgumentParser:
    """The ``expost`` argument parser with every subcommand.

    ``report_commands=False`` leaves out the report layer's commands (and its
    imports: matplotlib); :func:`main` does so when another command is run.
    """
    from . import __version__
    from .experiments.backends import add_backend_arguments

    parser = _Parser(
        prog="expost",
        description="Align classifiers with a human objective: train the regimes of "
                    "'Misaligned by Design' side by side, evaluate, decide, report.",
    )
    parser.add_argument("--version", action="version", version=f"expost {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error (anywhere on the line)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("run", help="run (or resume) an experiment, then write Table 1, the "
                                   "figures and the report",
                       description="Run an experiment config (the embedded offline default "
                                   "without one). Rerunning resumes.")
    p.add_argument("config", nargs="?", help="experiment YAML (default: the embedded default)")
    p.add_argument("--out", metavar="DIR", help="experiment directory (default: the config's "
                   "output_dir, else runs/<name>)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config key, e.g. --set training.epochs=5 (repeatable)")
    p.add_argument("--force-new", action="store_true",
                   help="if DIR holds a different experiment, move it aside and start afresh")
    p.add_argument("--quiet", action="store_true",
                   help="plain fixed-column log lines instead of progress bars")
    p.add_argument("--no-report", action="store_true", help="skip Table 1, figures and report")
    add_backend_arguments(p)
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("sweep", help="run a config over a grid of values, one experiment per "
                                     "point, as one pool of trainings",
                       description="Expand CONFIG over --grid values into one sweep folder "
                                   "(sweep.json + one experiment per point). Rerunning resumes; "
                                   "`expost table DIR` prints Table 1 of every point.")
    p.add_argument("config", help="experiment YAML")
    p.add_argument("--grid", action="append", metavar="KEY=V1,V2",
                   help="a config key and its values, comma-separated, parsed like --set "
                        "values (repeatable: the cartesian product)")
    p.add_argument("--out", metavar="DIR", help="sweep folder (default runs/<name>-sweep)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config key of every point (repeatable)")
    p.add_argument("--quiet", action="store_true",
                   help="plain fixed-column log lines instead of progress bars")
    add_backend_arguments(p)
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser("evaluate", help="re-evaluate stored predictions under other utilities "
                                        "(the ex post frontier)",
                       description="Recompute every run's metrics at every interval under "
                                   "another utility, from the stored test probabilities. Like "
                                   "`expost table`, it counts the finished runs that did not "
                                   "diverge, and says which it left out.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--utility", action="append", metavar="U.csv",
                   help="utility matrix u[action, class] as CSV (optional header of class "
                        "names); repeatable")
    p.add_argument("--emphasize", metavar="CLASS", help="emphasise one class (name or index)")
    p.add_argument("--ratio", type=positive_float, nargs="+", metavar="R",
                   help="emphasis ratio(s) R:1 for --emphasize (default 99)")
    p.add_argument("--no-normalize", action="store_true",
                   help="use the utilities as given (default: Eq 21 on the training prior)")
    p.add_argument("--out", metavar="F.csv", help="write every per-interval record here")
    p.add_argument("--bootstrap", type=bootstrap_resamples, default=DEFAULT_N_BOOT, metavar="N",
                   help="bootstrap resamples for Table 1's interval (default %(default)s)")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("decide", help="expected-utility decisions for a CSV of probabilities",
                       description="The decision layer (Eq 5) on probabilities from any model.")
    p.add_argument("--utility", required=True, metavar="U.csv",
                   help="utility matrix u[action, class] (optional header of class names)")
    p.add_argument("--probs", required=True, metavar="P.csv",
                   help="rows of class probabilities (optional header of class names), or a "
                        ".npy array")
    p.add_argument("--out", metavar="D.csv", help="output CSV (default: stdout)")
    p.add_argument("--with-probs", action="store_true",
                   help="also write the optimal weighted prediction p^u (Theorem 1)")
    p.add_argument("--header", action=argparse.BooleanOptionalAction, default=None,
                   help="the CSV files' first row is (--header) or is not (--no-header) a "
                        "header of class names (default: told apart when unambiguous)")
    p.add_argument("--renormalize", action="store_true",
                   help="divide each row of --probs by its sum (rows off the simplex by more "
                        "than the tolerance are an error otherwise)")
    p.set_defaults(func=_cmd_decide)

    from .experiments.data_cli import register as register_data  # expost data describe|cache

    register_data(sub)
    if report_commands:
        from .report.cli import register

        register(sub)
    return parser


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit status 1 (the usage is in ``--help``)."""

    def error(self, message: str) -> Any:
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def entry() -> None:
    """The ``expost`` command (and ``python -m expost``): :func:`main`, then :func:`exit_now`."""
    exit_now(main())


def exit_now(code: int) -> None:
    """End the process with exit status ``code``, skipping only the interpreter's teardown.

    Once :func:`main` returns, every file a command wrote is closed (the store, the
    report, the outputs). What a normal exit would still do is done here: the
    ``atexit`` handlers run (logging's flush, Ray's shutdown, temporary folders, a
    multiprocessing pool's join) and stdout and stderr are flushed. What is
    skipped is freeing every module's objects and the native libraries'
    destructors: with torch loaded, most of a second after the work is done. While a
    thread that is not a daemon still runs (its work would be cut short), the
    exit is the normal one.
    """
    if any(t is not threading.main_thread() and not t.daemon and t.is_alive()
           for t in threading.enumerate()):
        sys.exit(code)
    try:
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # a closed pipe: nothing more to say
                stream.flush()
        os._exit(code)


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit does not raise again (the
    pipe it wrote to is closed)."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
    except (OSError, ValueError, AttributeError):  # no real stdout (a test's capture)
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``expost`` command; returns the exit code.

    The one error boundary of the command line (see the module's docstring).
    """
    words = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in words
    words = [w for w in words if w != "--debug"]
    command = next((w for w in words if not w.startswith("-")), None)
    parser = build_parser(report_commands=command not in CORE_COMMANDS)
    if not words:
        parser.print_help()
        return EXIT_OK
    choices: dict[str, Any] = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr,assignment]
    if command is not None and command not in choices:
        close = difflib.get_close_matches(command, list(choices), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        print(f"expost: error: unknown command {command!r}{hint} (commands: "
              f"{', '.join(choices)}; see `expost --help`)", file=sys.stderr)
        return EXIT_ERROR
    args = parser.parse_args(words)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        if debug:
            raise
        return _fail(args.command, "interrupted.", EXIT_INTERRUPTED)
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as `cat` does
        if debug:
            raise
        _quiet_stdout()
        return EXIT_PIPE
    except Exception as exc:
        if debug:
            import traceback

            traceback.print_exc()
        return _fail(args.command, failure_message(exc))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
