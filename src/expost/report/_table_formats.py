"""The text formats of Table 1: markdown, CSV, LaTeX and HTML.

This module owns how a :class:`~expost.report.table.Table1` is written out: the
GitHub-flavoured markdown table, the long full-precision CSV, the booktabs LaTeX
``tabular`` and the HTML ``<table>`` (every label escaped). The numbers, the
footnote and the cell texts come from the table itself; :class:`Table1`'s
``to_markdown``, ``to_csv``, ``to_latex`` and ``to_html`` call these functions,
with the table's row order (``STATISTICS``) passed in.
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ._format import fmt_ci as _fmt_ci
from ._format import md as _md
from ._format import tex as _tex
from .records import METRIC_LABELS

if TYPE_CHECKING:
    from .table import Table1

__all__ = ["csv_text", "html_table", "latex", "markdown"]


def markdown(tab: Table1, statistics: Iterable[str], digits: int, gain_digits: int,
             footnote: bool) -> str:
    """The text of :meth:`Table1.to_markdown`."""
    b, t = (_md(x) for x in tab._headers())
    head = [""]
    for m in tab.metrics:
        name = METRIC_LABELS[m]
        head += [f"{name}: {b}", f"{name}: {t}", f"{name}: % Gain"]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    for stat in statistics:
        cells = [stat] + [c for *cs, _ in tab._cells(stat, digits, gain_digits) for c in cs]
        lines.append("| " + " | ".join(cells) + " |")
    if tab.bootstrap is not None:
        cells = [tab._ci_label()]
        for m in tab.metrics:
            cells += ["", "", _md(tab._ci_cell(m, gain_digits))]
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    if footnote:
        text += "\n" + _md(tab._footnote(), cell=False) + "\n"
    return text


def csv_text(tab: Table1) -> str:
    """The text of :meth:`Table1.to_csv`."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["metric", "statistic", "baseline", "treatment", "baseline_value",
                "treatment_value", "pct_gain", "pct_gain_ci_low", "pct_gain_ci_high",
                "level", "n_baseline", "n_treatment", "protocol", "n_seeds", "wins",
                "losses", "ties", "sign_test_p"])
    for r in tab.rows:
        lo = hi = ""
        ci = tab.bootstrap.get(r.metric) if tab.bootstrap is not None else None
        if ci is not None and r.statistic == "Mean":
            lo, hi = (repr(float(v)) for v in ci)
        pg = tab.paired.get(r.metric)
        seeds = ([pg.n_seeds, pg.wins, pg.losses, pg.ties, repr(pg.sign_p)]
                 if pg is not None else [""] * 5)
        w.writerow([r.metric, r.statistic, tab.baseline, tab.treatment, repr(r.baseline),
                    repr(r.treatment), repr(r.pct_gain), lo, hi,
                    repr(tab.level) if tab.bootstrap is not None else "",
                    tab.n_runs[tab.baseline], tab.n_runs[tab.treatment], tab.protocol,
                    *seeds])
    return buf.getvalue()


def latex(tab: Table1, statistics: Iterable[str], digits: int, gain_digits: int,
          title: str | None, caption: str | None, label: str | None,
          footnote: bool = True) -> str:
    """The text of :meth:`Table1.to_latex`."""
    b, t = (_tex(x) for x in tab._headers())
    k = len(tab.metrics)
    out = [r"\begin{tabular}{l" + "rrr" * k + "}", r"\toprule"]
    out.append(" & " + " & ".join(
        rf"\multicolumn{{3}}{{c}}{{{_tex(METRIC_LABELS[m])}}}" for m in tab.metrics) + r" \\")
    out.append(" ".join(rf"\cmidrule(lr){{{2 + 3 * i}-{4 + 3 * i}}}" for i in range(k)))
    out.append(" & " + " & ".join(
        [rf"\textit{{{b}}} & \textit{{{t}}} & \textit{{\% Gain}}"] * k) + r" \\")
    out.append(r"\midrule")
    if title:
        out.append(rf"\multicolumn{{{1 + 3 * k}}}{{l}}{{{_tex(title)}}} \\")
    for stat in statistics:
        cells = [stat] + [c for *cs, _ in tab._cells(stat, digits, gain_digits) for c in cs]
        out.append(" & ".join(cells) + r" \\")
    if tab.bootstrap is not None:
        out.append(r"\addlinespace")
        cells = [_tex(tab._ci_label())]
        for m in tab.metrics:
            cells += ["", "", _tex(tab._ci_cell(m, gain_digits))]
        out.append(" & ".join(cells) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}"]
    if footnote:  # the protocol, the runs counted, the interval and the flags, as in markdown
        out += [r"\par\smallskip", r"{\footnotesize " + _tex(tab._footnote()) + r"\par}"]
    body = "\n".join(out) + "\n"
    if caption is None and label is None:
        return body
    parts = [r"\begin{table}[t]", r"\centering", body.rstrip("\n")]
    if caption is not None:
        parts.append(rf"\caption{{{_tex(caption)}}}")
    if label is not None:
        parts.append(rf"\label{{{label}}}")
    parts.append(r"\end{table}")
    return "\n".join(parts) + "\n"


def html_table(tab: Table1, statistics: Iterable[str], digits: int, gain_digits: int) -> str:
    """The text of :meth:`Table1.to_html`."""
    b, t = (html.escape(x) for x in tab._headers())
    e = html.escape
    out = ['<table class="table1">', "<thead>", "<tr><th></th>"]
    out += [f'<th colspan="3" class="group">{e(METRIC_LABELS[m])}</th>' for m in tab.metrics]
    out.append("</tr><tr><th></th>")
    out += [f"<th><i>{b}</i></th><th><i>{t}</i></th><th><i>% Gain</i></th>"] * len(tab.metrics)
    out += ["</tr>", "</thead>", "<tbody>"]
    for stat in statistics:
        out.append(f"<tr><th>{stat}</th>")
        for m, (base, treat, gain, _pct) in zip(tab.metrics,
                                               tab._cells(stat, digits, gain_digits),
                                               strict=True):
            cls = "gain " + tab.significance(m) if stat == "Mean" else "gain"
            out.append(f'<td>{base}</td><td>{treat}</td><td class="{cls}">{gain}</td>')
        out.append("</tr>")
    if tab.bootstrap is not None:
        out.append(f'<tr class="ci"><th>{e(tab._ci_label())}</th>')
        for m in tab.metrics:
            ci = tab.bootstrap.get(m)
            pg = tab.paired.get(m)
            wins = "" if pg is None else (f"<br>{pg.wins}/{pg.n_seeds} seeds, "
                                          f"p&nbsp;=&nbsp;{pg.sign_p:.3g}")
            text = "–" if ci is None else _fmt_ci(ci, gain_digits)
            out.append(f'<td></td><td></td><td class="ci">{e(text)}{wins}</td>')
        out.append("</tr>")
    out += ["</tbody>", "</table>", f'<p class="note">{e(tab._footnote())}</p>']
    return "\n".join(out) + "\n"
