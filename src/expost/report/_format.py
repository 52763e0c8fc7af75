"""Formatting shared by Table 1's renderings: numbers, intervals, LaTeX escapes, JSON rows."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["fmt", "fmt_ci", "md", "plain", "table_dict", "tex"]


def fmt(x: float, digits: int) -> str:
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if abs(x) >= 1e9:  # a fixed-point number this large is unreadable (1e308: 309 digits)
        return f"{x:.{digits}e}"
    s = f"{x:.{digits}f}"
    return "0." + "0" * digits if s == "-0." + "0" * digits else s


def plain(x: float) -> float | None:
    return None if not math.isfinite(x) else float(x)


def fmt_ci(ci: tuple[float, float], digits: int) -> str:
    return f"[{fmt(ci[0], digits)}, {fmt(ci[1], digits)}]"


_TEX = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
        "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}"}


def md(text: str, *, cell: bool = True) -> str:
    r"""``text`` for a markdown table cell (or, ``cell=False``, a heading or footnote): a '|'
    would split a cell and a line break a row, and '<' would start raw HTML (a class
    named '<script>...' in a footnote); they are escaped with backslashes (which
    terminals show and renderers drop), a line break becomes a space. Outside a cell
    '|' is left as it is (the footnote's "100 (T - B) / |B|").

    >>> print(md("a|b <i>\nc"))
    a\|b \<i> c
    """
    out = str(text).replace("\\", "\\\\").replace("<", "\\<")
    if cell:
        out = out.replace("|", "\\|")
    return out.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")


def tex(text: str) -> str:
    return "".join(_TEX.get(c, c) for c in str(text))


def table_dict(tab: Any, protocols: dict[str, str]) -> dict[str, Any]:
    """Machine-readable: protocol, regimes, runs counted, rows, and per metric the paired
    evidence (seeds, wins, sign test, interval or why none). Plain JSON types; NaN as None."""
    runs = {g: [str(r["run_id"]) for r in tab.best[tab.metrics[0]] if r["regime"] == g]
            for g in (tab.baseline, tab.treatment)}
    gains = {}
    for m in tab.metrics:
        pg = tab.paired.get(m)
        ci = tab.bootstrap.get(m) if tab.bootstrap is not None else None
        gains[m] = {
            "mean_pct_gain": plain(tab.cell(m, "Mean").pct_gain),
            "ci": None if ci is None else [plain(ci[0]), plain(ci[1])],
            "level": tab.level if tab.bootstrap is not None else None,
            "n_seeds": None if pg is None else pg.n_seeds,
            "wins": None if pg is None else pg.wins,
            "losses": None if pg is None else pg.losses,
            "ties": None if pg is None else pg.ties,
            "sign_test_p": None if pg is None else pg.sign_p,
            "no_interval_because": (pg.reason if pg is not None and ci is None else None),
        }
    return {
        "protocol": tab.protocol, "protocol_text": protocols[tab.protocol],
        "baseline": tab.baseline, "treatment": tab.treatment,
        "metrics": list(tab.metrics), "n_runs": dict(tab.n_runs), "runs": runs,
        "rows": [{"metric": r.metric, "statistic": r.statistic,
                  "baseline": plain(r.baseline), "treatment": plain(r.treatment),
                  "pct_gain": plain(r.pct_gain)} for r in tab.rows],
        "gains": gains,
        "bootstrap": None if tab.bootstrap is None else {
            "n_boot": tab.n_boot, "seed": tab.seed, "paired": tab.paired_bootstrap},
    }
