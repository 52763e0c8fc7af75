"""One self-contained HTML page per experiment: config, Table 1, figures, provenance.

Figures are inlined as base64 PNG and the CSS is inline: the page needs no
other file and no network. Every value that comes from the user (config,
class names, run ids, versions) is HTML-escaped.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

from .. import __version__
from .._atomic import check_not_input
from ..experiments.store import experiment_state
from ._data import ReportData, gather, make_figures, open_store
from .figures import figure_png
from .records import METRIC_LABELS, regime_label
from .table import DEFAULT_N_BOOT, PROTOCOLS
from .verdict import PROTOCOL_NAMES

__all__ = ["render_html", "write_report"]

_CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0;color:#1d2330;
background:#f6f7f9;line-height:1.45}
main{max-width:1100px;margin:0 auto;padding:24px 28px 48px;background:#fff;
box-shadow:0 0 12px rgba(0,0,0,.06)}
h1{font-size:1.6em;margin:.2em 0 .1em;color:#14213d}h2{font-size:1.25em;margin-top:1.8em;
border-bottom:2px solid #e3e6ea;padding-bottom:.2em;color:#14213d}
h3{font-size:1.05em;margin-top:1.3em}
.sub{color:#5b6472;margin-top:0}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{padding:.3em .7em;border-bottom:1px solid #e3e6ea;text-align:right}
th:first-child,td.l,th.l{text-align:left}thead th{border-bottom:2px solid #9aa3af}
th.group{text-align:center;border-bottom:1px solid #9aa3af}
table.table1{border-top:2px solid #1d2330;border-bottom:2px solid #1d2330}
td.gain.pos{color:#1a7f37;font-weight:600}td.gain.neg{color:#b42318;font-weight:600}
td.gain.ns{color:#5b6472}
.verdict{border:2px solid #14213d;border-radius:6px;padding:.6em 1em;margin:1em 0}
.verdict p{margin:.3em 0}.verdict .pos{color:#1a7f37}.verdict .neg{color:#b42318}
.verdict .ns{color:#5b6472}.verdict strong{color:#14213d}
.protocols{display:flex;gap:1.2em;flex-wrap:wrap}
.protocols>div{flex:1 1 36em;min-width:0;overflow-x:auto}
tr.ci td,tr.ci th{font-style:italic;color:#5b6472}td.ci{font-size:.9em}
.note{color:#5b6472;font-size:.86em;max-width:60em}
figure{margin:1.2em 0;display:inline-block;width:48%;vertical-align:top}
figure.wide{width:97%}figure img{width:100%;border:1px solid #e3e6ea}
figcaption{font-size:.85em;color:#5b6472}
pre{background:#f3f4f6;padding:.8em;overflow:auto;font-size:.85em;border-radius:4px}
.chip{display:inline-block;padding:.05em .55em;border-radius:1em;font-size:.85em;
background:#eef2ff;margin-right:.3em}
.warn{background:#fff4e5;border-left:4px solid #f79009;padding:.5em .8em}
td.hl{background:#fff7d6;font-weight:600}
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _num(x: Any, digits: int = 4) -> str:
    if x is None:
        return "–"
    try:
        v = float(x)
    except (TypeError, ValueError):
        return _e(x)
    if math.isnan(v):
        return "nan"
    return f"{v:.{digits}f}" if abs(v) < 1e5 else f"{v:.4g}"


def _config_text(config: Any) -> str:
    try:
        import yaml

        return str(yaml.safe_dump(config, sort_keys=False, default_flow_style=False))
    except Exception:  # no pyyaml, or values it cannot represent
        return json.dumps(config, indent=2, default=str)


def _kv_table(items: list[tuple[str, Any]]) -> str:
    rows = "".join(f'<tr><th>{_e(k)}</th><td class="l">{_e(v)}</td></tr>' for k, v in items)
    return f'<table class="kv"><tbody>{rows}</tbody></table>'


def _utility_table(info: dict[str, Any]) -> str:
    u = info.get("utility")
    if not u:
        return '<p class="note">No utility matrix recorded.</p>'
    names = list(info.get("class_names") or [])
    n_cls = len(u[0])
    cols = names if len(names) == n_cls else [str(j) for j in range(n_cls)]
    rows_names = cols if len(u) == n_cls else [str(a) for a in range(len(u))]
    emph = info.get("emphasized")
    head = "".join(f"<th>{_e(c)}</th>" for c in cols)
    body = []
    for a, row in enumerate(u):
        cells = "".join(
            f'<td class="{"hl" if emph is not None and a == emph and j == emph else ""}">'
            f"{_num(v, 4)}</td>" for j, v in enumerate(row))
        body.append(f"<tr><th>{_e(rows_names[a])}</th>{cells}</tr>")
    return (f'<table class="utility"><thead><tr><th>action \\ class</th>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>")


def _runs_table(runs: list[dict[str, Any]]) -> str:
    cols = [("run_id", "run"), ("regime", "regime"), ("seed", "seed"), ("status", "status"),
            ("train_key", "training"), ("started_at", "started"), ("finished_at", "finished"),
            ("wall_seconds", "wall s"), ("train_seconds", "train s"), ("eval_seconds", "eval s")]
    head = "".join(f'<th class="{"" if key.endswith("_seconds") or key == "seed" else "l"}">'
                   f"{_e(label)}</th>" for key, label in cols)
    body = []
    for r in runs:
        cells = []
        for key, _ in cols:
            v = r.get(key)
            if key.endswith("_seconds"):
                cells.append(f"<td>{_num(v, 2)}</td>")
            elif key == "seed":
                cells.append(f"<td>{_e('–' if v is None else v)}</td>")
            elif key == "regime":
                cells.append(f'<td class="l">{_e(regime_label(str(v)))}</td>')
            else:
                cells.append(f'<td class="l">{_e("–" if v is None else v)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _summary_table(data: ReportData) -> str:
    if not data.summary:
        return ""
    head = "<tr>" + "".join(f"<th>{c}</th>" for c in ("metric", "regime", "runs", "mean", "min",
                                                       "max")) + "</tr>"
    body = "".join(
        f'<tr><td class="l">{_e(METRIC_LABELS[s["metric"]])}</td>'
        f'<td class="l">{_e(regime_label(s["regime"]))}</td><td>{s["n"]}</td>'
        f"<td>{_num(s['mean'])}</td><td>{_num(s['min'])}</td><td>{_num(s['max'])}</td></tr>"
        for s in data.summary)
    return f"<table><thead>{head}</thead><tbody>{body}</tbody></table>"


_WHY_FIGURES = ("risk_decomposition", "reliability")


def _figure_html(name: str, caption: str, png: bytes) -> str:
    b64 = base64.b64encode(png).decode("ascii")
    wide = ' class="wide"' if name in ("theory", "gain_over_intervals", "reliability") else ""
    return (f'<figure id="fig-{_e(name)}"{wide}><img alt="{_e(caption)}" '
            f'src="data:image/png;base64,{b64}"><figcaption>{_e(caption)}</figcaption></figure>')


def _verdict_html(data: ReportData) -> str:
    """The verdict box: what was compared, then one coloured sentence per protocol and metric."""
    if not data.verdict:
        return ""
    lines = "".join(f'<p class="{_e(v.significance)}">{_e(v.text)}</p>' for v in data.verdict)
    return (f'<div class="verdict" id="verdict"><p><strong>Verdict: {_e(data.headline)}.'
            f"</strong></p>{lines}</div>")


def _flags_html(data: ReportData) -> str:
    if not data.flags:
        return ""
    items = "".join(f"<li>{_e(f.text)}</li>" for f in data.flags)
    return f'<div class="warn" id="flags"><strong>Flags</strong><ul>{items}</ul></div>'


def _why_html(data: ReportData, figures: list[tuple[str, str, bytes]]) -> list[str]:
    """The risk decomposition (numbers and plot) and the reliability diagrams."""
    from .diagnostics import fmt, risk_means

    why_figs = [_figure_html(n, c, p) for n, c, p in figures if n in _WHY_FIGURES]
    if not data.risk:
        return ["<h2>Why: reliability</h2>", *why_figs] if why_figs else []
    out = ["<h2>Why: what was learned, and what was lost</h2>",
           '<p class="note">The learning identity (Proposition 1) splits each run\'s weighted '
           "loss at its best interval into what was <i>learned</i> (the risk left after the best "
           "post-processing of what the model knows) and the <i>remainder</i> lost to reporting "
           "it miscalibrated, from the stored test predictions through each regime's view. "
           "total = learned + remainder; means over runs.</p>",
           "<table><thead><tr><th>regime</th><th>runs</th><th>total</th><th>learned</th>"
           "<th>remainder</th></tr></thead><tbody>"]
    for m in risk_means(data.risk):
        out.append(f'<tr><td class="l">{_e(regime_label(m["regime"]))}</td><td>{m["n"]}</td>'
                   f'<td>{fmt(m["total"])}</td><td>{fmt(m["learned"])}</td>'
                   f'<td>{fmt(m["remainder"])}</td></tr>')
    out.append("</tbody></table>")
    return out + why_figs


def render_html(data: ReportData, figures: list[tuple[str, str, bytes]]) -> str:
    """The report page for ``data`` with ``figures`` given as (name, caption, PNG bytes)."""
    info = data.info
    versions = info.get("versions") or {}
    status = Counter(str(r.get("status")) for r in data.runs)
    chips = "".join(f'<span class="chip">{_e(regime_label(g))}</span>' for g in data.regimes)
    seeds = sorted({r.get("seed") for r in data.runs if r.get("seed") is not None},
                   key=lambda s: (str(type(s)), s))
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>expost report: {_e(data.title)}</title>", f"<style>{_CSS}</style>", "</head>",
        "<body><main>",
        f"<h1>expost report: {_e(data.title)}</h1>",
        f'<p class="sub">Experiment created {_e(info.get("created_at", "–"))}; config hash '
        f'<code>{_e(info.get("config_hash", "–"))}</code>; runs: '
        f'{_e(", ".join(f"{n} {s}" for s, n in sorted(status.items())))}; '
        f"seeds: {_e(', '.join(map(str, seeds)) or '–')}.</p>",
        f"<p>{chips}</p>",
        _verdict_html(data),
        _flags_html(data),
        "<h2>Table 1</h2>",
    ]
    if data.tables:
        t = data.table
        assert t is not None
        parts.append(f'<p class="note">{_e(regime_label(t.treatment))} against '
                     f"{_e(regime_label(t.baseline))}: per run the best interval, "
                     "then mean / min / max over runs; % gain row by row (positive: "
                     f"{_e(regime_label(t.treatment))} better), with the interval chosen on "
                     "the test set (the paper's protocol) and on the validation set (reported on "
                     "the test set) side by side. A gain is coloured only when its paired "
                     "interval excludes zero.</p>")
        parts.append('<div class="protocols">')
        for p in sorted(PROTOCOLS, key=lambda p: p != data.primary):
            if p in data.tables:
                parts.append(f"<div><h3>{_e(PROTOCOL_NAMES[p][0].upper() + PROTOCOL_NAMES[p][1:])}"
                             f"</h3>{data.tables[p].to_html()}</div>")
            else:
                parts.append(f'<div><h3>{_e(PROTOCOL_NAMES[p])}</h3><p class="warn">No '
                             "validation metrics are stored for these runs.</p></div>")
        parts.append("</div>")
    else:
        parts.append(f'<p class="warn">{_e(data.table_note)}</p>')
    if data.comparisons:
        parts.append("<h3>Other regimes against the same baseline</h3>")
        for c in data.comparisons:
            parts.append(f"<h4>{_e(regime_label(c.treatment))} vs "
                         f"{_e(regime_label(c.baseline))}</h4>")
            parts.append(c.to_html())
    if data.summary:
        parts += ["<h3>Best interval of every metric</h3>",
                  '<p class="note">Per run the best test-set interval of each metric; mean, '
                  "min and max over the finished runs of each regime.</p>",
                  _summary_table(data)]
    parts += _why_html(data, figures)
    parts.append("<h2>Figures</h2>")
    for name, caption, png in figures:
        if name in _WHY_FIGURES:
            continue
        parts.append(_figure_html(name, caption, png))
    parts += ["<h2>Objective</h2>",
              '<p class="note">The normalised utility matrix (Eq 21) that defines the weighted '
              "loss and the classification utility; the emphasised class is highlighted.</p>",
              _utility_table(info),
              "<h2>Configuration</h2>", f"<pre>{_e(_config_text(info.get('config')))}</pre>",
              "<h2>Provenance</h2>",
              _kv_table([("experiment directory", data.run_dir if data.run_dir else "–"),
                         ("git commit", info.get("git_commit") or "unknown"),
                         ("config hash", info.get("config_hash", "–")),
                         ("created at", info.get("created_at", "–")),
                         *[(f"version: {k}", v) for k, v in versions.items()],
                         ("report generated", _dt.datetime.now(_dt.timezone.utc)
                          .isoformat(timespec="seconds")),
                         ("report generator", f"expost {__version__}")]),
              "<h3>Runs and timings</h3>", _runs_table(data.runs),
              "</main></body></html>"]
    return "\n".join(parts) + "\n"


def write_report(run_dir: Any, out: str | Path | None = None, *, n_boot: int = DEFAULT_N_BOOT,
                 seed: int = 0, select: str = "test") -> Path:
    """Write the experiment's self-contained HTML report and return its path.

    The page holds the config, Table 1 (with the bootstrap interval of the
    mean gain) and the comparisons of the other regimes, the figures (inlined
    PNG), the normalised utility matrix and the provenance: versions, git
    commit and per-run timings.

    Parameters
    ----------
    run_dir : str, Path or ResultStore
        The experiment directory (holding ``results.sqlite``), or an open store.
    out : str or Path, optional
        The HTML file (default ``RUN_DIR/report/report.html``).
    n_boot, seed : int
        Bootstrap settings of Table 1.
    select : {"test", "val"}
        The protocol shown first and used by the verdict's order (both are shown).

    Returns
    -------
    Path
    """
    with open_store(run_dir) as (store, where):
        path = _default_out(where, out, "report.html")
        if where is not None:
            check_not_input(str(path), "out", experiment_state(where))
        data = gather(store, where, n_boot=n_boot, seed=seed, primary=select)
    figs = [(name, cap, figure_png(fig)) for name, cap, fig in make_figures(data)]
    from .._atomic import atomic_write

    atomic_write(path, render_html(data, figs), root=where if out is None else None)
    return path


def _default_out(where: Path | None, out: str | Path | None, name: str) -> Path:
    if out is not None:
        return Path(out)
    if where is None:
        raise ValueError("`out` must be given when `run_dir` is a store object without a "
                         "run_dir attribute, got None.")
    return where / "report" / name
