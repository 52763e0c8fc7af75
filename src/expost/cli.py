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
import io
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["build_parser", "main", "read_csv_matrix"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _fail(command: str, message: Any, code: int = EXIT_ERROR) -> int:
    print(f"expost {command}: error: {message}", file=sys.stderr)
    return code


# ---------------------------------------------------------------- CSV input
def read_csv_matrix(path: str | Path, name: str, *, class_names: Sequence[str] | None = None
                    ) -> tuple[np.ndarray, list[str] | None]:
    """A numeric matrix from a CSV file with an optional header row.

    The first row is a header when any of its cells is not a number, or when it
    equals ``class_names`` (so numeric class names such as ``0,1,...,9`` work).
    Returns the float64 matrix and the header (None without one). Errors name
    the argument, the file, the row and the cell.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"`{name}`: the file {str(p)!r} does not exist.")
    text = p.read_text(encoding="utf-8-sig")
    rows = [r for r in csv.reader(io.StringIO(text)) if r and any(c.strip() for c in r)]
    if not rows:
        raise ValueError(f"`{name}`: {str(p)!r} is empty.")

    def number(cell: str) -> float | None:
        try:
            return float(cell)
        except ValueError:
            return None

    header = None
    first = [c.strip() for c in rows[0]]
    if any(number(c) is None for c in first) or (
            class_names is not None and first == [str(c) for c in class_names]):
        header = [c.strip() for c in rows[0]]
        rows = rows[1:]
    if not rows:
        raise ValueError(f"`{name}`: {str(p)!r} has a header but no rows of numbers.")
    width = len(header) if header is not None else len(rows[0])
    out = np.empty((len(rows), width))
    for i, row in enumerate(rows):
        line = i + 1 + (header is not None)
        if len(row) != width:
            raise ValueError(f"`{name}`: row {line} of {str(p)!r} has {len(row)} cells, "
                             f"expected {width}.")
        for j, cell in enumerate(row):
            v = number(cell)
            if v is None:
                raise ValueError(f"`{name}`: row {line}, column {j + 1} of {str(p)!r} is not "
                                 f"a number: {cell!r}.")
            out[i, j] = v
    return out, header


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
def _utilities_from_args(args: argparse.Namespace, info: dict[str, Any]
                         ) -> tuple[list[Any], list[str]]:
    from ._utility import Utility

    class_names = list(info["class_names"])
    m = len(class_names)
    prior = np.asarray(info["train_prior"], dtype=np.float64)
    utilities, labels = [], []
    for path in args.utility or ():
        mat, header = read_csv_matrix(path, "--utility", class_names=class_names)
        if header is not None and header != class_names:
            raise ValueError(f"`--utility`: the header of {path!r} names the classes {header}, "
                             f"the experiment's classes are {class_names} (in this order).")
        utilities.append(Utility(mat))
        labels.append(Path(path).stem)
    if args.emphasize is not None:
        e = args.emphasize
        if e in class_names:
            idx = class_names.index(e)
        elif e.isdigit() and int(e) < m:
            idx = int(e)
        else:
            raise ValueError(f"`--emphasize`: {e!r} is neither a class name nor an index of the "
                             f"experiment's classes ({', '.join(class_names)}).")
        for r in args.ratio or [99.0]:
            utilities.append(Utility.emphasize(m, idx, r))
            labels.append(f"emphasize {class_names[idx]} {r:g}:1")
    if not utilities:
        raise ValueError("give --utility U.csv or --emphasize CLASS [--ratio R ...].")
    for u in utilities:
        if u.matrix.shape != (m, m):
            raise ValueError(f"`--utility`: expected a {m} x {m} matrix (one row per action, one "
                             f"column per class), got {u.matrix.shape[0]} x {u.matrix.shape[1]}.")
    if not args.no_normalize:
        utilities = [u.normalized(prior) for u in utilities]
    return utilities, labels


def evaluate_run_dir(run_dir: str | Path, utilities: Sequence[Any]) -> list[list[dict[str, Any]]]:
    """Per utility, the per-interval test records of every run under that utility.

    Computed from the stored probabilities with :func:`expost.experiments.frontier.frontier`
    (all utilities at once); each run is scored through its regime's view
    (``as_is``, ``ex_post``, or ``recovered_ex_post`` for ``inverse_prior``). With at most
    16 utilities the calibration error is computed too; otherwise it is NaN.
    """
    from ._decisions import weighted_prediction
    from ._recalibration import recover_posterior
    from ._reliability import calibration_error
    from ._utility import Utility
    from .experiments.frontier import frontier, stack_utilities
    from .experiments.regimes import REGIME_SPECS
    from .experiments.store import ResultStore

    stack = stack_utilities(list(utilities))
    with ResultStore(run_dir) as store:
        info = store.experiment_info()
        y = store.array("test_labels")
        runs = store.runs()
        by_key: dict[str, list[dict[str, Any]]] = {}
        for r in runs:
            by_key.setdefault(r["train_key"], []).append(r)
        u_ip = Utility(info["inverse_prior_utility"]) if info.get(
            "inverse_prior_utility") else None
        out: list[list[dict[str, Any]]] = [[] for _ in range(stack.shape[0])]
        for key, interval, step, epoch, q in store.iter_probabilities():
            for run in by_key.get(key, []):
                view = REGIME_SPECS[run["regime"]].view
                qv = recover_posterior(q, u_ip) if view == "recovered_ex_post" else q
                f = frontier(qv, y, stack, view="as_is" if view == "as_is" else "ex_post")
                for k in range(stack.shape[0]):
                    ce = float("nan")
                    if stack.shape[0] <= 16:
                        p = qv if view == "as_is" else weighted_prediction(qv, stack[k])
                        ce = float(calibration_error(p, y, norm="l1", n_bins=15))
                    out[k].append({"run_id": run["run_id"], "regime": run["regime"],
                                   "seed": run["seed"], "interval": interval, "step": step,
                                   "epoch": epoch, **{m: float(v[k]) for m, v in f.items()},
                                   "calibration_error": ce})
    return out


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .experiments.metrics import METRICS
    from .experiments.store import ResultStore

    try:
        with ResultStore(args.run_dir) as store:
            info = store.experiment_info()
        utilities, labels = _utilities_from_args(args, info)
        per_utility = evaluate_run_dir(args.run_dir, utilities)
    except (FileNotFoundError, ValueError, TypeError, KeyError) as exc:
        return _fail("evaluate", exc.args[0] if isinstance(exc, KeyError) else exc)
    cols = ["utility", "run_id", "regime", "seed", "interval", "step", "epoch", *METRICS]
    rows = [{"utility": lab, **rec} for lab, recs in zip(labels, per_utility, strict=True)
            for rec in recs]
    if args.out:
        with open(args.out, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=cols)
            w.writeheader()
            w.writerows(rows)
        print(f"{len(rows)} records written to {args.out}")
    from .report import best_intervals, table1

    regimes = [r for r in dict.fromkeys(rec["regime"] for rec in per_utility[0])]
    for lab, recs in zip(labels, per_utility, strict=True):
        print(f"\n## Utility: {lab}")
        if "weighted" in regimes and "expost" in regimes:
            print(table1(recs, n_boot=args.bootstrap).to_markdown())
        else:
            for metric in ("weighted_loss", "classification_utility"):
                best = best_intervals(recs, metric)
                for reg in regimes:
                    vals = [b[metric] for b in best if b["regime"] == reg]
                    print(f"{metric:<24} {reg:<16} mean of best {np.mean(vals):.4f} "
                          f"over {len(vals)} runs")
    return EXIT_OK


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
def build_parser() -> argparse.ArgumentParser:
    from .report.cli import positive_float, register

    """The ``expost`` argument parser with every subcommand."""
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
    p.add_argument("--bootstrap", type=int, default=2000, metavar="N",
                   help="bootstrap resamples for Table 1's interval (default 2000)")
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

    register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``expost`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(None if argv is None else list(argv))
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
