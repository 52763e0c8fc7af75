"""What Table 1 means, for the terminal and for ``--format json``: title, verdict, flags."""

from __future__ import annotations

from typing import Any

from ._data import ReportData
from .records import regime_label
from .table import Table1
from .verdict import PROTOCOL_NAMES

__all__ = ["summary_dict", "summary_text", "title_line"]


def title_line(data: ReportData, tab: Table1) -> str:
    """``Table 1: <experiment> (partial: ...): <treatment> vs <baseline>, <protocol>``."""
    return (f"Table 1: {data.title}: {regime_label(tab.treatment)} vs "
            f"{regime_label(tab.baseline)}, {PROTOCOL_NAMES[tab.protocol]}")


def summary_text(data: ReportData, tab: Table1) -> str:
    """The title line, the verdict (every protocol computed) and every flag, one per line."""
    lines = [title_line(data, tab), f"Verdict: {data.headline}"]
    lines += [f"  {v.text}" for v in data.verdict]
    lines += [f"Flag: {f.text}" for f in data.flags]
    return "\n".join(lines) + "\n\n"


def summary_dict(data: ReportData, tab: Table1) -> dict[str, Any]:
    """Everything of :func:`summary_text` plus :meth:`Table1.to_dict`, as JSON-ready values."""
    return {
        "title": title_line(data, tab),
        "experiment": data.title,
        "partial": data.partial or None,
        "headline": data.headline,
        "verdict": [{"protocol": v.protocol, "metric": v.metric, "significance": v.significance,
                     "text": v.text} for v in data.verdict],
        "flags": [{"kind": f.kind, "text": f.text, "runs": list(f.runs)} for f in data.flags],
        "excluded_runs": dict(data.diverged),
        "table": tab.to_dict(),
    }
