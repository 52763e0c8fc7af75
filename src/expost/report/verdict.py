"""The verdict: what an experiment found, in sentences, for the terminal and the report.

One line says what was compared (the emphasised class by name and the
objective), then one sentence per protocol and metric: the Mean row's % gain
with its paired interval and the seeds won, or "no significant difference"
when the interval covers zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ._format import fmt as _fmt
from .records import METRIC_LABELS, regime_label
from .table import Table1

__all__ = ["PROTOCOL_NAMES", "VerdictLine", "objective_text", "verdict_lines"]

#: How a protocol is named in a verdict.
PROTOCOL_NAMES = {"test": "interval chosen on test (the paper's protocol)",
                  "val": "interval chosen on validation, reported on test"}


@dataclass(frozen=True)
class VerdictLine:
    """One sentence of the verdict and its significance (``pos``, ``neg`` or ``ns``)."""

    protocol: str
    metric: str
    significance: str
    text: str


def objective_text(info: dict[str, Any]) -> str:
    """The objective in words, the emphasised class by name.

    >>> objective_text({"config": {"objective": {"kind": "emphasize", "ratio": 99.0}},
    ...                 "class_names": ["benign", "malignant"], "emphasized": 1})
    "emphasised class 'malignant' (class 1), weight ratio 99:1"
    """
    cfg = info.get("config")
    objective = cfg.get("objective") if isinstance(cfg, dict) else None
    kind = objective.get("kind") if isinstance(objective, dict) else None
    emph, names = info.get("emphasized"), list(info.get("class_names") or [])
    parts = []
    if isinstance(emph, int) and not isinstance(emph, bool):
        name = names[emph] if 0 <= emph < len(names) else str(emph)
        parts.append(f"emphasised class {name!r} (class {emph})")
    ratio = objective.get("ratio") if isinstance(objective, dict) else None
    if isinstance(ratio, (int, float)) and not isinstance(ratio, bool) and math.isfinite(ratio):
        parts.append(f"weight ratio {ratio:g}:1")
    if not parts:
        parts.append(f"objective {kind!r}" if kind else "the experiment's objective")
    return ", ".join(parts)


def _signed(x: float) -> str:
    """``x`` to one decimal with its sign; one that rounds to zero is "0.0" (not "-0.0",
    which read as a loss)."""
    text = f"{x:+.1f}"
    return "0.0" if text in ("+0.0", "-0.0") else text


def _sentence(tab: Table1, metric: str) -> VerdictLine:
    row = tab.cell(metric, "Mean")
    pg = tab.paired.get(metric)
    ci = tab.bootstrap.get(metric) if tab.bootstrap is not None else None
    sig = tab.significance(metric)
    t = regime_label(tab.treatment)
    gain = f"{_signed(row.pct_gain)}%"
    interval = (f" [{_signed(ci[0])}, {_signed(ci[1])}] ({100 * tab.level:g}% paired CI)"
                if ci is not None
                else f" (no interval: {pg.reason})" if pg is not None and pg.reason else "")
    if not math.isfinite(row.pct_gain):  # B = 0 (or not a number): a gain would divide by it
        gain = (f"no % gain, {regime_label(tab.baseline)}'s mean being "
                f"{'0' if row.baseline == 0 else _fmt(row.baseline, 3)}")
        interval = ""
    seeds = f", better in {pg.wins_text()}" if pg is not None else ""
    if sig == "pos":
        lead = f"{t} better by {row.pct_gain:.1f}%"
        body = f"{lead}{interval}{seeds}"
    elif sig == "neg":
        body = f"{t} worse by {-row.pct_gain:.1f}%{interval}{seeds}"
    elif ci is not None:
        body = f"no significant difference: {gain}{interval}{seeds}"
    else:
        body = f"{gain}{interval}{seeds}; significance not assessed"
    text = f"{METRIC_LABELS[metric]}, {PROTOCOL_NAMES[tab.protocol]}: {body}."
    return VerdictLine(tab.protocol, metric, sig, text)


def verdict_lines(tables: dict[str, Table1], info: dict[str, Any]) -> tuple[str, list[VerdictLine]]:
    """The headline (what was compared, under which objective) and one line per protocol and metric.

    Examples
    --------
    >>> from expost.report import table1
    >>> recs = [{"run_id": f"{g}{s}", "regime": g, "seed": s, "interval": 0,
    ...          "weighted_loss": v + 0.1 * s, "classification_utility": 0.5}
    ...         for g, v in (("weighted", 0.8), ("expost", 0.7)) for s in range(5)]
    >>> head, lines = verdict_lines({"test": table1(recs)}, {})
    >>> head
    "Ex Post Weighting against Weighted Training, the experiment's objective"
    >>> lines[0].significance, lines[1].text.split(": ")[1]
    ('pos', 'no significant difference')
    """
    first = next(iter(tables.values()))
    head = (f"{regime_label(first.treatment)} against {regime_label(first.baseline)}, "
            f"{objective_text(info)}")
    lines = [_sentence(tab, m) for tab in tables.values() for m in tab.metrics]
    return head, lines
