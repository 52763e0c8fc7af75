r"""Table 1 of "Misaligned by Design": best interval per run, then mean / min / max, % gain.

The protocol (Section 3.1, DESIGN.md): for every run, the best test-set value
over training intervals of each metric (:func:`~expost.report.best_intervals`),
then the mean, minimum and maximum over the runs of each regime, and the % gain
of the treatment over the baseline computed *row by row* with
:func:`expost.percent_gain` (the Mean row from the two means, the Min row from
the two minima, the Max row from the two maxima).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._scoring import percent_gain
from .._validation import _error, check_choice, check_int, describe
from ..experiments.metrics import higher_is_better
from . import _table_formats
from ._format import fmt as _fmt
from ._format import fmt_ci as _fmt_ci
from ._format import table_dict
from .paired import PairedGain, paired_gains, unpaired_bootstrap
from .records import (
    METRIC_LABELS,
    as_records,
    best_intervals,
    check_metric,
    regime_label,
    regimes_present,
)

__all__ = ["DEFAULT_N_BOOT", "PROTOCOLS", "STATISTICS", "Table1", "Table1Row", "table1"]

#: A % gain cell whose baseline value is 0 (the gain is undefined) or not a number.
UNDEFINED = "–"

#: Bootstrap resamples for the interval of the mean gain, everywhere a default is needed.
DEFAULT_N_BOOT = 2000

#: The rows of Table 1, in order, with the reduction over runs each one uses.
STATISTICS: dict[str, Any] = {"Mean": np.mean, "Min": np.min, "Max": np.max}

#: Which split picks each run's best interval -> how the table says so.
PROTOCOLS: dict[str, str] = {
    "test": "the best test-set interval of each metric (the paper's protocol; optimistic, "
            "since the test set also picks the interval)",
    "val": "the interval with the best validation value of each metric, reported on the "
           "test set",
}


@dataclass(frozen=True)
class Table1Row:
    """One cell group of Table 1: a statistic of one metric for the two regimes.

    ``pct_gain`` is :func:`expost.percent_gain` of this row's two values:
    positive when the treatment is better (lower loss, higher utility).
    """

    metric: str
    statistic: str
    baseline: float
    treatment: float
    pct_gain: float


@dataclass(frozen=True)
class Table1:
    """Table 1 for one pair of regimes, with a bootstrap interval for the mean % gain.

    Attributes
    ----------
    baseline, treatment : str
        The regimes compared (the paper: ``"weighted"`` and ``"expost"``).
    metrics : tuple of str
        The column groups, in order.
    rows : tuple of Table1Row
        For each metric, the Mean, Min and Max rows (``len(metrics) * 3`` rows).
    n_runs : dict
        Number of runs of each of the two regimes.
    values : dict
        ``metric -> {regime: array of each run's best value}`` (run order of
        :func:`~expost.report.best_intervals`).
    best : dict
        ``metric -> list of the best-interval records`` of both regimes.
    bootstrap : dict or None
        ``metric -> (low, high)``, the percentile interval of the Mean row's %
        gain at ``level`` (seeds resampled jointly unless ``paired=False``), or
        ``metric -> None`` with fewer than 3 seeds (``paired[metric].reason``
        says why); None when ``n_boot == 0``.
    n_boot, level, seed : int, float, int
        The bootstrap's settings.
    protocol : str
        ``"test"`` (the paper's: the test set picks each run's interval) or
        ``"val"`` (the validation set picks it, the test set reports it).
    paired : dict
        ``metric ->`` :class:`~expost.report.paired.PairedGain`: the paired seeds,
        the win count and the sign test.
    paired_bootstrap : bool
        Whether the interval resampled seeds jointly.
    notes : tuple of str
        Further footnotes (runs left out, flags), added by the report.
    """

    baseline: str
    treatment: str
    metrics: tuple[str, ...]
    rows: tuple[Table1Row, ...]
    n_runs: dict[str, int]
    values: dict[str, dict[str, np.ndarray]]
    best: dict[str, list[dict[str, Any]]]
    bootstrap: dict[str, tuple[float, float] | None] | None
    n_boot: int
    level: float
    seed: int
    protocol: str = "test"
    paired: dict[str, PairedGain] = field(default_factory=dict)
    paired_bootstrap: bool = True
    notes: tuple[str, ...] = ()

    # ------------------------------------------------------------------ access
    def cell(self, metric: str, statistic: str) -> Table1Row:
        """The row of ``metric`` and ``statistic`` ("Mean", "Min" or "Max")."""
        for row in self.rows:
            if row.metric == metric and row.statistic == statistic:
                return row
        raise KeyError(
            _error("(metric, statistic)", f"one of the table's metrics {self.metrics} and "
                   f"one of {tuple(STATISTICS)}", repr((metric, statistic)))
        )

    def _headers(self) -> tuple[str, str]:
        return regime_label(self.baseline), regime_label(self.treatment)

    def _footnote(self) -> str:
        b, t = self._headers()
        text = (
            f"Per run, {PROTOCOLS[self.protocol]}; {self.n_runs[self.baseline]} "
            f"{b} and {self.n_runs[self.treatment]} {t} runs. % Gain = 100 (T - B) / |B| with "
            f"T = {t}, B = {b}, sign flipped for losses, computed row by row."
        )
        if self.bootstrap is not None:
            how = ("seeds resampled jointly (paired: both regimes of a seed share initial "
                   "weights and data order)" if self.paired_bootstrap
                   else "runs resampled within each regime (unpaired)")
            text += (
                f" Interval: {100 * self.level:g}% percentile bootstrap of the Mean row's % gain, "
                f"{self.n_boot} resamples, {how}, seed {self.seed}."
            )
            paired_n = {pg.n_seeds for pg in self.paired.values()}
            if self.paired_bootstrap and paired_n and max(paired_n) < max(self.n_runs.values()):
                text += (f" The interval and k/n take the {max(paired_n)} seeds with runs of both "
                         "regimes; the rows take every run.")
            for m in self.metrics:
                if self.bootstrap.get(m) is None and self.paired.get(m) is not None:
                    text += f" No interval for {METRIC_LABELS[m]}: {self.paired[m].reason}."
        if self.paired:
            text += (f" k/n seeds: the seeds in which {t} is better; p: exact two-sided sign "
                     "test (ties dropped).")
        if any(not math.isfinite(r.pct_gain) for r in self.rows):
            text += (f" {UNDEFINED}: no % gain, B being 0 (the gain is undefined, not large) or "
                     "T or B not a finite number.")
        return " ".join((text, *self.notes))

    def _ci_cell(self, metric: str, digits: int) -> str:
        """The CI row's cell: the interval (or a dash) and the win count."""
        assert self.bootstrap is not None
        ci = self.bootstrap.get(metric)
        text = "–" if ci is None else _fmt_ci(ci, digits)
        pg = self.paired.get(metric)
        return text if pg is None else f"{text}; {pg.wins_text()}"

    def _ci_label(self) -> str:
        return f"Mean % gain, {100 * self.level:g}% CI"

    # ------------------------------------------------------------------ formats
    def to_markdown(self, *, digits: int = 3, gain_digits: int = 2, footnote: bool = True) -> str:
        """The paper's layout as a GitHub-flavoured markdown table.

        Rows Mean / Min / Max (and the bootstrap interval of the mean gain);
        for each metric the columns baseline, treatment, % Gain.
        """
        return _table_formats.markdown(self, STATISTICS, digits=digits, gain_digits=gain_digits,
                                       footnote=footnote)

    def to_csv(self) -> str:
        """Long format, full precision: one line per (metric, statistic).

        Columns: metric, statistic, baseline, treatment, baseline_value,
        treatment_value, pct_gain, pct_gain_ci_low, pct_gain_ci_high (Mean rows
        only), level, n_baseline, n_treatment.
        """
        return _table_formats.csv_text(self)

    def to_dict(self) -> dict[str, Any]:
        """Machine-readable: protocol, regimes, runs counted, rows, and per metric the paired
        evidence (seeds, wins, sign test, interval or why none). Plain JSON types; NaN as None."""
        return table_dict(self, PROTOCOLS)

    def to_json(self) -> str:
        """:meth:`to_dict` as indented JSON text."""
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def to_latex(self, *, digits: int = 3, gain_digits: int = 2, title: str | None = None,
                 caption: str | None = None, label: str | None = None,
                 footnote: bool = True) -> str:
        r"""A booktabs ``tabular`` in the paper's layout (needs ``\usepackage{booktabs}``).

        ``title`` adds a panel line such as "Weight: Pneumonia (Chest X-ray)";
        ``caption`` / ``label`` wrap the tabular in a ``table`` environment;
        ``footnote`` (default) adds the markdown's footnote below it, in small type:
        the protocol, the runs counted, how the interval was made, and the flags.
        """
        return _table_formats.latex(self, STATISTICS, digits=digits, gain_digits=gain_digits,
                                    title=title, caption=caption, label=label,
                                    footnote=footnote)

    def to_html(self, *, digits: int = 3, gain_digits: int = 2) -> str:
        """An HTML ``<table>`` with column groups (every label escaped)."""
        return _table_formats.html_table(self, STATISTICS, digits=digits,
                                         gain_digits=gain_digits)

    def significance(self, metric: str) -> str:
        """``"pos"`` / ``"neg"``: the interval of the mean gain excludes zero (treatment better /
        worse); ``"ns"``: it covers zero, or there is none. Colours follow this, not the sign."""
        ci = self.bootstrap.get(metric) if self.bootstrap is not None else None
        if ci is None or not (math.isfinite(ci[0]) and math.isfinite(ci[1])) or ci[0] <= 0 <= ci[1]:
            return "ns"
        return "pos" if ci[0] > 0 else "neg"

    def __str__(self) -> str:
        return self.to_markdown()

    def _cells(
        self, stat: str, digits: int, gain_digits: int
    ) -> list[tuple[str, str, str, float]]:
        """Per metric, the formatted baseline, treatment and % gain of row ``stat`` (and the gain)."""
        out = []
        for m in self.metrics:
            r = self.cell(m, stat)
            gain = _fmt(r.pct_gain, gain_digits) if math.isfinite(r.pct_gain) else UNDEFINED
            out.append((_fmt(r.baseline, digits), _fmt(r.treatment, digits), gain, r.pct_gain))
        return out


def table1(
    records: Any,
    *,
    baseline: str = "weighted",
    treatment: str = "expost",
    metrics: Sequence[str] = ("weighted_loss", "classification_utility"),
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    level: float = 0.95,
    select: str = "test",
    val_records: Any = None,
    paired: bool = True,
    notes: Sequence[str] = (),
) -> Table1:
    r"""Table 1: the best interval per run, mean / min / max over runs, % gain row by row.

    For each metric and each regime :math:`g` with runs :math:`r = 1..n_g`, let
    :math:`v_r` be run :math:`r`'s best test-set value over intervals (minimum
    for losses, maximum for utilities: :func:`~expost.report.best_intervals`).
    Each row :math:`s \in \{\text{mean}, \min, \max\}` reports
    :math:`B_s = s_r(v^{\text{baseline}}_r)`, :math:`T_s = s_r(v^{\text{treatment}}_r)` and

    .. math:: \%\,\text{Gain}_s = 100\,\frac{T_s - B_s}{|B_s|}
              \quad (\text{sign flipped for losses})

    (Table 1; footnote 15: :math:`(0.749 - 0.805)/0.805`). Beyond the paper:
    ``select="val"`` picks each run's interval on the validation set and
    reports its test value; the Mean row's gain gets a paired percentile
    bootstrap interval (seeds resampled jointly, :func:`~expost.report.paired.paired_gains`),
    the number of seeds in which the treatment is better and an exact sign
    test; with fewer than 3 paired seeds no interval is given.

    Parameters
    ----------
    records : list of mappings (or a pandas DataFrame)
        Per-interval test-set records of finished runs (``run_id``, ``regime``,
        ``interval`` and the metrics); other regimes in ``records`` are ignored.
    baseline, treatment : str
        The regimes compared; the paper's Table 1 is Weighted Training
        (``"weighted"``) against Ex Post Weighting (``"expost"``). Any pair
        present works, e.g. ``baseline="unweighted_raw", treatment="weighted"``
        (Appendix C).
    metrics : sequence of str
        Column groups, names from :data:`~expost.experiments.metrics.METRICS`.
    n_boot : int
        Bootstrap resamples; 0 skips the bootstrap.
    seed : int
        Seed of the bootstrap.
    level : float
        Coverage of the bootstrap interval, in (0, 1).
    select : {"test", "val"}
        The split that picks each run's best interval: ``"test"`` is the
        paper's protocol; ``"val"`` needs ``val_records``.
    val_records : list of mappings, optional
        The same runs' validation-set records (``ResultStore.interval_records(split="val")``).
    paired : bool
        Resample seeds jointly (default); False resamples runs within each
        regime independently, as if the regimes were unrelated.
    notes : sequence of str
        Further footnotes (e.g. the runs left out).

    Returns
    -------
    Table1

    Raises
    ------
    ValueError
        No records, a regime with no runs, an unknown metric, or bad settings.

    Examples
    --------
    >>> recs = [{"run_id": f"{g}{s}", "regime": g, "seed": s, "interval": t,
    ...          "weighted_loss": wl + 0.1 * t * t - 0.2 * t, "classification_utility": cu}
    ...         for g, base in [("weighted", 0.805), ("expost", 0.749)]
    ...         for s, wl, cu in [(0, base, 0.3), (1, base + 0.01, 0.31)]
    ...         for t in range(3)]
    >>> tab = table1(recs, n_boot=200)
    >>> row = tab.cell("weighted_loss", "Mean")
    >>> round(row.baseline, 3), round(row.treatment, 3), round(row.pct_gain, 2)
    (0.71, 0.654, 7.89)
    >>> print(tab.to_markdown(footnote=False).splitlines()[2])
    | Mean | 0.710 | 0.654 | 7.89 | 0.305 | 0.305 | 0.00 |
    """
    metrics = _check_metrics(metrics)
    n_boot = check_int(n_boot, "n_boot", minimum=0)
    seed = check_int(seed, "seed", minimum=0)
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise ValueError(_error("level", "a coverage in (0, 1)", describe(level)))
    select = check_choice(select, "select", tuple(PROTOCOLS))
    if select == "val" and val_records is None:
        raise ValueError(_error("val_records", "the validation records when select='val'",
                                "None"))
    pair = _pair_records(records, baseline, treatment)
    chooser = None if select == "test" else [
        r for r in as_records(val_records) if str(r.get("regime")) in (baseline, treatment)]
    rows: list[Table1Row] = []
    values: dict[str, dict[str, np.ndarray]] = {}
    best: dict[str, list[dict[str, Any]]] = {}
    for m in metrics:
        best[m] = best_intervals(pair, m, select_by=chooser)
        values[m] = {g: np.array([r[m] for r in best[m] if r["regime"] == g], dtype=np.float64)
                     for g in (baseline, treatment)}
        hib = higher_is_better(m)
        for stat, reduce_ in STATISTICS.items():
            b = float(reduce_(values[m][baseline]))
            t = float(reduce_(values[m][treatment]))
            rows.append(Table1Row(m, stat, b, t, float(percent_gain(b, t, higher_is_better=hib))))
    # Every record carries every requested metric (group_runs checks it), so every metric
    # sees the same runs in the same order and one resample of run indices serves all.
    n_runs = {g: int(values[metrics[0]][g].size) for g in (baseline, treatment)}
    evidence = paired_gains(best, baseline, treatment, n_boot=n_boot if paired else 0,
                            seed=seed, level=float(level))
    boot: dict[str, tuple[float, float] | None] | None = None
    if n_boot > 0 and paired:
        boot = {m: evidence[m].ci for m in metrics}
    elif n_boot > 0:
        boot = unpaired_bootstrap(values, baseline, treatment, n_boot, seed, float(level))
    return Table1(baseline, treatment, metrics, tuple(rows), n_runs, values, best, boot,
                  n_boot, float(level), seed, select, evidence, paired, tuple(notes))


def _check_metrics(metrics: Sequence[str] | str) -> tuple[str, ...]:
    metrics = tuple(metrics) if not isinstance(metrics, str) else (metrics,)
    if not metrics:
        raise ValueError(_error("metrics", "at least one metric name", "an empty sequence"))
    for i, m in enumerate(metrics):
        check_metric(m, f"metrics[{i}]")
    if len(set(metrics)) != len(metrics):
        raise ValueError(_error("metrics", "distinct metric names", repr(metrics)))
    return metrics


def _pair_records(records: Any, baseline: Any, treatment: Any) -> list[Any]:
    """The records of the two regimes compared, each checked to be present."""
    for name, regime in (("baseline", baseline), ("treatment", treatment)):
        if not isinstance(regime, str):
            raise TypeError(_error(name, "a regime name (str)", describe(regime)))
    if baseline == treatment:
        raise ValueError(_error("treatment", f"a regime other than baseline {baseline!r}",
                                repr(treatment)))
    rows_in = as_records(records)
    present = regimes_present(rows_in)
    if not present:
        raise ValueError(_error("records", "the intervals of at least one finished run",
                                "no records"))
    for name, regime in (("baseline", baseline), ("treatment", treatment)):
        if regime not in present:
            raise ValueError(_error(name, f"a regime with finished runs, one of {tuple(present)}",
                                    repr(regime)))
    return [r for r in rows_in if str(r.get("regime")) in (baseline, treatment)]
