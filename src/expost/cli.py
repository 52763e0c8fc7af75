"""The ``expost`` command.

::

    expost run [CONFIG.yaml] [--out DIR] [--set key=value ...] [--quiet] [--force-new]
    expost evaluate RUN_DIR (--utility U.csv | --emphasize CLASS [--ratio R ...]) [--out F.csv]
    expost decide --utility U.csv --probs P.csv [--out D.csv]
    expost table | plot | report | theory ...      (the report layer, expost.report.cli)

``expost run`` with no config runs the embedded default (scikit-learn digits,
offline, about a minute on 2 CPU cores), then writes Table 1, the figures and
the HTML report with :func:`expost.report.build_outputs` and prints Table 1.
Re-running the same command resumes an interrupted experiment.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._argtypes import nonnegative_int, positive_float
from ._csv_input import read_csv_matrix
from .report.table import DEFAULT_N_BOOT

__all__ = ["build_parser", "main", "read_csv_matrix"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

#: The commands of this module; the others (table, plot, report, theory) are the report
#: layer's, registered only when asked for, so that these never import matplotlib.
CORE_COMMANDS = ("run", "evaluate", "decide")


def _fail(command: str, message: Any, code: int = EXIT_ERROR) -> int:
    print(f"expost {command}: error: {message}", file=sys.stderr)
    return code


# ---------------------------------------------------------------- run
def _cmd_run(args: argparse.Namespace) -> int:
    from .experiments.config import ConfigError
    from .experiments.runners import ExperimentMismatchError, RayRunner, run_experiment

    try:
        runner = RayRunner() if args.runner == "ray" else None
        run_dir = run_experiment(args.config, output_dir=args.out, overrides=args.set or (),
                                 force_new=args.force_new, quiet=args.quiet, runner=runner)
    except ConfigError as exc:
        return _fail("run", exc, EXIT_USAGE)
    except (FileNotFoundError, ExperimentMismatchError, ImportError) as exc:
        return _fail("run", exc)
    except KeyboardInterrupt:
        return _fail("run", "interrupted; run the same command again to resume.",
                     EXIT_INTERRUPTED)
    if args.no_report:
        print(f"Results: {run_dir}")
        return EXIT_OK
    from .report import build_outputs

    try:
        outputs = build_outputs(run_dir, quiet=args.quiet)
    except (ValueError, TypeError, KeyError, FileNotFoundError, ImportError) as exc:
        return _fail("run", f"the runs are done and stored in {str(run_dir)!r}, but the report "
                            f"could not be written: {exc}")
    print(outputs.get("table1_markdown", ""))
    for key, path in outputs.items():
        if key != "table1_markdown":
            print(f"{key}: {path}")
    return EXIT_OK


# ---------------------------------------------------------------- evaluate
_TABLE_METRICS = ("weighted_loss", "classification_utility")


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .experiments.metrics import METRICS
    from .experiments.reevaluate import (
        BestIntervals,
        experiment_info,
        is_own_objective,
        iter_scores,
        utilities_for_run,
    )

    cols = ["utility", "run_id", "regime", "seed", "interval", "step", "epoch", *METRICS]
    fh = None
    n_rows = 0
    try:
        info = experiment_info(args.run_dir)
        utilities, labels, recall = utilities_for_run(
            info, utility_files=args.utility or (), emphasize=args.emphasize, ratios=args.ratio,
            normalize=not args.no_normalize)
        best = BestIntervals(len(utilities), _TABLE_METRICS)
        if args.out:
            fh = open(args.out, "w", newline="")
            w = csv.writer(fh)
            w.writerow(cols)
        for run, metrics in iter_scores(args.run_dir, utilities, recall_of=recall):
            best.add(run, metrics)
            if fh is not None:  # rows stream out: one interval of one run, every utility
                fixed = [run[c] for c in cols[1:7]]
                values = np.column_stack([metrics[m] for m in METRICS]).tolist()
                w.writerows([lab, *fixed, *vals] for lab, vals in zip(labels, values, strict=True))
                n_rows += len(labels)
    except (FileNotFoundError, ValueError, TypeError, KeyError, OSError) as exc:
        return _fail("evaluate", exc.args[0] if isinstance(exc, KeyError) else exc)
    finally:
        if fh is not None:
            fh.close()
    if args.out:
        print(f"{n_rows} records written to {args.out}")
    own = [is_own_objective(info, u.matrix) for u in utilities]
    for k, lab in enumerate(labels):
        _print_evaluation(info, f"{lab}", best.records(k), own[k], args.bootstrap)
    return EXIT_OK


def _print_evaluation(info: dict[str, Any], label: str, records: list[dict[str, Any]],
                      own: bool, n_boot: int) -> None:
    """Table 1 under one utility; a regime trained for another objective is labelled so."""
    from .experiments.reevaluate import trained_for_label
    from .report import best_intervals, table1

    regimes = list(dict.fromkeys(rec["regime"] for rec in records))
    names = {reg: trained_for_label(info, reg, own) for reg in regimes}
    print(f"\n## Utility: {label}" + ("" if own else " (not the run's objective: models "
          "trained for the objective were trained for the run's, not for this one; "
          "a new `expost run` with this objective trains for it)"))
    if "weighted" in regimes and "expost" in regimes:
        shown = [{**r, "regime": names[r["regime"]]} for r in records]
        print(table1(shown, baseline=names["weighted"], treatment=names["expost"],
                     metrics=_TABLE_METRICS, n_boot=n_boot).to_markdown())
        return
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

    try:
        umat, uhead = read_csv_matrix(args.utility, "--utility")
        probs, phead = read_csv_matrix(args.probs, "--probs")
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
        probs, _ = check_probabilities(probs, "--probs")
        d = decide(probs, u)
        eu = expected_utility(probs, u)[np.arange(d.size), d]
        pu = weighted_prediction(probs, u) if args.with_probs else None
    except (FileNotFoundError, ValueError, TypeError) as exc:
        return _fail("decide", exc)
    names = uhead if (uhead is not None and u.n_actions == u.n_classes) else None
    names = names or (phead if (phead is not None and u.n_actions == u.n_classes) else None)
    header = ["decision"] + (["label"] if names else []) + ["expected_utility"]
    if pu is not None:
        header += [f"p_{names[a] if names else a}" for a in range(u.n_actions)]
    fh = open(args.out, "w", newline="") if args.out else sys.stdout
    try:
        w = csv.writer(fh)
        w.writerow(header)
        for i in range(d.size):
            row: list[Any] = [int(d[i])]
            if names:
                row.append(names[int(d[i])])
            row.append(repr(float(eu[i])))
            if pu is not None:
                row += [repr(float(v)) for v in pu[i]]
            w.writerow(row)
    finally:
        if args.out:
            fh.close()
    if args.out:
        print(f"{d.size} decisions written to {args.out}", file=sys.stderr)
    return EXIT_OK


# ---------------------------------------------------------------- parser
def build_parser(*, report_commands: bool = True) -> argparse.ArgumentParser:
    """The ``expost`` argument parser with every subcommand.

    ``report_commands=False`` leaves out the report layer's commands (and its
    imports: matplotlib); :func:`main` does so when another command is run.
    """
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="expost",
        description="Align classifiers with a human objective: train the regimes of "
                    "'Misaligned by Design' side by side, evaluate, decide, report.",
    )
    parser.add_argument("--version", action="version", version=f"expost {__version__}")
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
    p.add_argument("--runner", choices=("local", "ray"), default="local",
                   help="run trainings in this process (default) or in parallel with Ray")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("evaluate", help="re-evaluate stored predictions under other utilities "
                                        "(the ex post frontier)",
                       description="Recompute every run's metrics at every interval under "
                                   "another utility, from the stored test probabilities.")
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
    p.add_argument("--bootstrap", type=nonnegative_int, default=DEFAULT_N_BOOT, metavar="N",
                   help="bootstrap resamples for Table 1's interval (default %(default)s)")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("decide", help="expected-utility decisions for a CSV of probabilities",
                       description="The decision layer (Eq 5) on probabilities from any model.")
    p.add_argument("--utility", required=True, metavar="U.csv",
                   help="utility matrix u[action, class] (optional header of class names)")
    p.add_argument("--probs", required=True, metavar="P.csv",
                   help="rows of class probabilities (optional header of class names)")
    p.add_argument("--out", metavar="D.csv", help="output CSV (default: stdout)")
    p.add_argument("--with-probs", action="store_true",
                   help="also write the optimal weighted prediction p^u (Theorem 1)")
    p.set_defaults(func=_cmd_decide)

    if report_commands:
        from .report.cli import register

        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``expost`` command; returns the exit code."""
    words = sys.argv[1:] if argv is None else list(argv)
    command = next((w for w in words if not w.startswith("-")), None)
    parser = build_parser(report_commands=command not in CORE_COMMANDS)
    args = parser.parse_args(words)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
