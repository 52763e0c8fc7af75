"""The report subcommands of ``expost``: table, plot, report, theory.

:func:`register` adds them to the ``expost`` command's argparse subparsers;
each sets ``func``, which takes the parsed arguments and returns an exit code
(0 success, 1 a clear error message on stderr). The report modules are imported
inside the commands that use them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .._argtypes import bootstrap_resamples, nonnegative_int, positive_float
from .._atomic import check_not_input, check_output, confined
from ..experiments.metrics import METRICS
from ..experiments.regimes import REGIME_SPECS
from .table import DEFAULT_N_BOOT

__all__ = ["register"]

FORMATS = {"md": "table1.md", "csv": "table1.csv", "latex": "table1.tex", "json": "table1.json"}
#: What ``--format all`` prints.
ALL_FORMATS = ("md", "csv", "latex")
# ---------------------------------------------------------------- commands
def _cmd_table(args: argparse.Namespace) -> int:
    check_output(args.out, "--out", folder=True)
    _not_in_state(args)
    from ..experiments.store import MANIFEST, sweep_points

    if not (Path(args.run_dir) / MANIFEST).is_file():
        return _table(args, args.run_dir, args.out)
    # a sweep folder (expost sweep): one Table 1 per point, in the grid's order
    points = sweep_points(args.run_dir)  # each point's folder a name inside the sweep's
    for point in points:
        values = ", ".join(f"{k}={v}" for k, v in point["values"].items())
        print(f"\n## {point['dir']} ({values})\n", flush=True)
        out = None if args.out is None else confined(Path(args.out) / point["dir"], args.out,
                                                      what="a point's output folder")
        _table(args, Path(args.run_dir) / point["dir"], out)
    return 0


def _table(args: argparse.Namespace, run_dir: Any, out_dir: Any) -> int:
    """Table 1 of one experiment directory on stdout (and its files in ``out_dir``)."""
    import json

    from ._data import gather, open_store
    from .summary import summary_dict, summary_text

    metrics = args.metric or ("weighted_loss", "classification_utility")
    with open_store(run_dir) as (store, where):
        data = gather(store, where, n_boot=args.bootstrap, seed=args.seed,
                      baseline=args.baseline, treatment=args.treatment, metrics=metrics,
                      protocols=(args.select,), why=False)
    if args.select not in data.tables:
        raise ValueError(data.table_note or f"--select {args.select}: the store holds no "
                         "validation metrics for these runs.")
    tab = data.tables[args.select]
    texts = {"md": tab.to_markdown(), "csv": tab.to_csv(), "latex": tab.to_latex(),
             "json": json.dumps(summary_dict(data, tab), indent=2) + "\n"}
    chosen = list(ALL_FORMATS) if args.format == "all" else [args.format]
    if args.format != "json":  # the table alone on stdout; what it means on stderr
        sys.stderr.write(summary_text(data, tab))
    sys.stdout.write("\n".join(texts[f] for f in chosen))
    sys.stdout.flush()
    if out_dir is not None:
        from .._atomic import atomic_write

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for f in chosen:
            atomic_write(out / FORMATS[f], texts[f])
            print(f"wrote {out / FORMATS[f]}", file=sys.stderr)
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from ._data import SEPARATE, finished_records, open_store
    from .figures import plot_curves, save_figure

    check_output(args.out, "--out", folder=True)
    _not_in_state(args)

    with open_store(args.run_dir) as (store, where):
        records = finished_records(store, where)
    out = Path(args.out) if args.out is not None else Path(args.run_dir) / "report" / "figures"
    separate = () if args.together else SEPARATE
    for metric in args.metric or ("weighted_loss", "classification_utility"):
        fig = plot_curves(records, metric, x=args.x, average=args.average, logy=args.logy,
                          regimes=args.regimes, separate=separate)
        stem = f"{'mean' if args.average else 'curves'}_{metric}"
        for p in save_figure(fig, out / stem, pdf=args.pdf):
            print(p)
    return 0


def _not_in_state(args: argparse.Namespace) -> None:
    """``--out`` (a file, or a folder of files) neither is nor lies in what holds the
    experiment's results and state (``results.sqlite``, its checkpoints, ...)."""
    from ..experiments.store import experiment_state

    check_not_input(args.out, "--out", experiment_state(args.run_dir))


def _cmd_report(args: argparse.Namespace) -> int:
    from .html import write_report

    check_output(args.out, "--out", folder=False)
    _not_in_state(args)
    path = write_report(args.run_dir, args.out, n_boot=args.bootstrap, seed=args.seed,
                        select=args.select)
    print(path)
    return 0


def _cmd_theory(args: argparse.Namespace) -> int:
    from .figures import plot_theory, save_figure

    check_output(args.out, "--out", folder=False)
    fig = plot_theory(args.ratio)
    out = Path(args.out) if args.out is not None else Path(f"figure2_ratio{args.ratio:g}.png")
    for p in save_figure(fig, out, pdf=args.pdf):
        print(p)
    return 0


# ---------------------------------------------------------------- registration
def register(subparsers: Any) -> None:
    """Add ``table``, ``plot``, ``report`` and ``theory`` to ``expost``'s subparsers.

    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="expost")
    >>> register(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["table", "runs/demo", "--format", "csv"])
    >>> args.command, args.format, args.bootstrap, callable(args.func)
    ('table', 'csv', 2000, True)
    """
    from .records import X_AXES

    metrics = tuple(METRICS)

    p = subparsers.add_parser(
        "table", help="Table 1 of an experiment (markdown, CSV or LaTeX)",
        description="Table 1 as the paper defines it: per run the best test-set interval of "
                    "each metric (or, with --select val, the best validation interval), mean / "
                    "min / max over runs, % gain row by row, plus a paired bootstrap interval "
                    "for the mean gain, the seeds won and a sign test. Prints the table to "
                    "stdout; the title, the verdict and the flags go to stderr (into the "
                    "output with --format json).")
    p.add_argument("run_dir", metavar="RUN_DIR", help="experiment directory (results.sqlite)")
    p.add_argument("--format", choices=[*FORMATS, "all"], default="md",
                   help="output format (default md; json: rows, gains, intervals, protocol, "
                        "runs counted, flags and verdict; all prints md, csv and latex)")
    p.add_argument("--select", choices=("test", "val"), default="test",
                   help="the split that picks each run's best interval: test (the paper's "
                        "protocol, default) or val (reported on test)")
    p.add_argument("--baseline", default=None, metavar="REGIME",
                   help="baseline regime (default weighted, or the weighted training present)")
    p.add_argument("--treatment", default=None, metavar="REGIME",
                   help="treatment regime (default expost)")
    p.add_argument("--metric", action="append", choices=metrics, default=None,
                   help="a column group (repeatable; default weighted_loss and "
                        "classification_utility)")
    p.add_argument("--bootstrap", type=bootstrap_resamples, default=DEFAULT_N_BOOT, metavar="N",
                   help="bootstrap resamples (seeds resampled jointly) for the mean gain's "
                        "interval (0: none; default %(default)s)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="also write table1.md / .csv / .tex (those printed) into DIR")
    p.set_defaults(func=_cmd_table)

    p = subparsers.add_parser(
        "plot", help="per-interval curves of every run (Figures 1, 4-9)",
        description="Per-interval test-set curves of every run by regime, each run's best "
                    "interval marked. Writes PNG files and prints their paths.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="experiment directory (results.sqlite)")
    p.add_argument("--metric", action="append", choices=metrics, default=None,
                   help="metric to plot (repeatable; default weighted_loss and "
                        "classification_utility)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (default RUN_DIR/report/figures)")
    p.add_argument("--x", choices=X_AXES, default="auto",
                   help="x axis (default auto: epochs when intervals are whole epochs)")
    p.add_argument("--average", action="store_true",
                   help="one mean curve per regime (Figure 1) instead of one per run")
    p.add_argument("--logy", action="store_true", help="logarithmic y axis")
    p.add_argument("--regimes", nargs="+", choices=tuple(REGIME_SPECS), default=None,
                   metavar="REGIME", help="regimes to draw (default: every one that ran)")
    p.add_argument("--together", action="store_true",
                   help="draw Unweighted Raw on the same axes (default: a panel of its own, "
                        "so its scale does not hide the others' difference)")
    p.add_argument("--pdf", action="store_true", help="also write PDF files")
    p.set_defaults(func=_cmd_plot)

    p = subparsers.add_parser(
        "report", help="one self-contained HTML report of an experiment",
        description="Writes one HTML page (figures inlined) with the config, Table 1, the "
                    "figures and the provenance; prints its path.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="experiment directory (results.sqlite)")
    p.add_argument("--out", default=None, metavar="FILE",
                   help="HTML file (default RUN_DIR/report/report.html)")
    p.add_argument("--bootstrap", type=bootstrap_resamples, default=DEFAULT_N_BOOT, metavar="N",
                   help="bootstrap resamples for Table 1 (default %(default)s)")
    p.add_argument("--select", choices=("test", "val"), default="test",
                   help="the protocol shown first (both are shown side by side): test, the "
                        "paper's, or val (interval chosen on validation, reported on test)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="bootstrap seed (default 0)")
    p.set_defaults(func=_cmd_report)

    p = subparsers.add_parser(
        "theory", help="Figure 2: incentives to choose and to learn, binary case",
        description="Figure 2 of the paper for a weight ratio w1 / w2: the optimal "
                    "prediction, the marginal learning loss and the learning loss, "
                    "weighted against unweighted. Writes a PNG and prints its path.")
    p.add_argument("--ratio", type=positive_float, default=99.0,
                   help="weight ratio w1 / w2 of the emphasised class (default 99)")
    p.add_argument("--out", default=None, metavar="FILE",
                   help="PNG file (default figure2_ratio<R>.png in the current folder)")
    p.add_argument("--pdf", action="store_true", help="also write a PDF")
    p.set_defaults(func=_cmd_theory)
