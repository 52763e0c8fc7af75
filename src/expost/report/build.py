"""All of an experiment's outputs in one call: Table 1 files, figures and the HTML report."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from .._atomic import atomic_write, check_not_input, confined
from .._heap import frozen_heap
from ..experiments.store import experiment_state
from ._data import FigureSpec, add_why, figure_specs, gather, open_store
from ._render import render_figures
from .html import render_html
from .table import DEFAULT_N_BOOT

__all__ = ["build_outputs"]


def build_outputs(
    run_dir: Any,
    *,
    out_dir: str | Path | None = None,
    quiet: bool = False,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    pdf: bool = False,
    processes: int | None = None,
) -> dict[str, Any]:
    """Write Table 1 (markdown, CSV, LaTeX), the figures and the HTML report of an experiment.

    Reads the store once; only finished runs count. Files go to
    ``OUT_DIR = RUN_DIR/report`` by default::

        table1.md  table1.csv  table1.tex  figures/<name>.png  report.html

    Parameters
    ----------
    run_dir : str, Path or ResultStore
        The experiment directory (holding ``results.sqlite``), or an open store.
    out_dir : str or Path, optional
        Where to write (default ``RUN_DIR/report``).
    quiet : bool
        Print nothing (otherwise, on stderr, Table 1's title line, the verdict,
        the flags and one line naming the report).
    n_boot, seed : int
        Bootstrap settings of Table 1.
    pdf : bool
        Also save every figure as PDF.
    processes : int, optional
        Processes that draw the figures (forked; Linux only): by default the CPUs
        available, at most 4. The files are the same with any number.

    Returns
    -------
    dict
        ``"table1_md"``, ``"table1_csv"``, ``"table1_tex"``, ``"report_html"`` and
        ``"figure_<name>"`` -> Path, and ``"table1_markdown"`` -> the markdown
        table (str). When fewer than two regimes have finished runs there is no
        table: the table files are not written and ``"table1_markdown"`` says why.

    Raises
    ------
    FileNotFoundError
        RUN_DIR is not an experiment directory.
    ValueError
        No run has finished.
    """
    result, message = outputs_and_message(run_dir, out_dir=out_dir, n_boot=n_boot, seed=seed,
                                          pdf=pdf, processes=processes)
    if not quiet:
        sys.stderr.write(message)
    return result


def outputs_and_message(run_dir: Any, *, out_dir: str | Path | None = None,
                        n_boot: int = DEFAULT_N_BOOT, seed: int = 0, pdf: bool = False,
                        processes: int | None = None) -> tuple[dict[str, Any], str]:
    """:func:`build_outputs` without printing: its result, and what it prints unless quiet."""
    with frozen_heap():
        return _build(run_dir, out_dir=out_dir, n_boot=n_boot, seed=seed, pdf=pdf,
                      processes=processes)


def _build(run_dir: Any, *, out_dir: str | Path | None, n_boot: int, seed: int,
           pdf: bool, processes: int | None) -> tuple[dict[str, Any], str]:
    with open_store(run_dir) as (store, where):
        if out_dir is not None:
            out = Path(out_dir)
        elif where is not None:
            out = where / "report"
        else:
            raise ValueError("`out_dir` must be given when `run_dir` is a store object without "
                             "a run_dir attribute, got None.")
        if where is not None:
            check_not_input(str(out), "out_dir", experiment_state(where))
        data = gather(store, where, n_boot=n_boot, seed=seed, why=False)
        root = where if out_dir is None else None  # RUN_DIR/report: never through a link out
        if root is not None:
            confined(out, root, what="the report folder")
        out.mkdir(parents=True, exist_ok=True)
        result: dict[str, Any] = {}
        if data.table is not None:
            markdown = data.table.to_markdown()
            for key, name, text in (("table1_md", "table1.md", markdown),
                                    ("table1_csv", "table1.csv", data.table.to_csv()),
                                    ("table1_tex", "table1.tex", data.table.to_latex())):
                atomic_write(out / name, text, root=root)
                result[key] = out / name
            result["table1_markdown"] = markdown
        else:
            result["table1_markdown"] = data.table_note + "\n"
        early = figure_specs(data)  # the figures that need no "why"
        every: list[FigureSpec] = []

        def why() -> list[FigureSpec]:  # here, while other processes draw the early figures
            add_why(data, store)
            every.extend(figure_specs(data))
            have = {name for name, _, _ in early}
            return [spec for spec in every if spec[0] not in have]

        # the slowest figure first, so that no process is left drawing it alone at the end
        queue = sorted(early, key=lambda spec: spec[0] != "theory")
        drawn = {name: (caption, paths) for name, caption, paths in
                 render_figures(queue, out / "figures", pdf=pdf, processes=processes, late=why)}
    pngs = []
    for name, _, _ in every:  # in the report's order
        caption, paths = drawn[name]
        result[f"figure_{name}"] = paths[0]
        pngs.append((name, caption, paths[0].read_bytes()))
    report = out / "report.html"
    atomic_write(report, render_html(data, pngs), root=root)
    result["report_html"] = report
    message = ""
    if data.table is not None:
        from .summary import summary_text

        message = summary_text(data, data.table)
    return result, message + f"expost: report written to {report}\n"
