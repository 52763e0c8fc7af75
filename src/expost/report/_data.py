"""Everything a report shows, read once from an experiment's result store."""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from .._validation import _error, check_choice, describe
from ..experiments.metrics import METRICS
from .diagnostics import reliability_by_regime, risk_rows
from .figures import draw_ahead, drawn_ahead, plot_curves, plot_theory
from .flags import Flag, diverged_flag, diverged_runs, late_best_flags, one_class_flags
from .records import METRIC_LABELS, best_intervals, regime_label, regimes_present
from .table import DEFAULT_N_BOOT, PROTOCOLS, Table1, table1
from .verdict import VerdictLine, verdict_lines

__all__ = [
    "FigureSpec",
    "ReportData",
    "add_why",
    "default_pair",
    "emphasis_ratio",
    "figure_specs",
    "finished_records",
    "gather",
    "make_figures",
    "open_store",
    "theory_figure",
    "warm_report",
]

_STORE_METHODS = ("experiment_info", "runs", "interval_records")


@contextmanager
def open_store(run_dir: Any) -> Iterator[tuple[Any, Path | None]]:
    """Open RUN_DIR's result store (closed on exit), or pass an open store-like object through.

    Yields the store and the experiment directory (None when a store object
    without a ``run_dir`` attribute was given).
    """
    if all(hasattr(run_dir, m) for m in _STORE_METHODS):
        where = getattr(run_dir, "run_dir", None)
        yield run_dir, None if where is None else Path(where)
        return
    if not isinstance(run_dir, (str, Path)):
        raise TypeError(_error("run_dir", "an experiment directory (str or Path) or a "
                               "ResultStore", describe(run_dir)))
    path = Path(run_dir)
    if not path.is_dir():
        raise FileNotFoundError(f"RUN_DIR {str(path)!r} is not a directory; run an experiment "
                                "first (`expost run CONFIG --out RUN_DIR`).")
    from ..experiments.store import ResultStore  # the harness owns the store

    store = ResultStore(path, readonly=True)
    try:
        yield store, path
    finally:
        store.close()


def default_pair(present: list[str]) -> tuple[str, str] | None:
    """The regimes Table 1 compares: Ex Post Weighting against the weighted training present.

    ``("weighted", "expost")`` when both ran; with inverse-prior weighting
    instead of class weights (Figure 7), ``("inverse_prior", "expost")``;
    otherwise the first two regimes present, or None.
    """
    if "expost" in present:
        for b in ("weighted", "inverse_prior", "resampled", "metacost", "unweighted_raw"):
            if b in present:
                return b, "expost"
    return (present[0], present[1]) if len(present) >= 2 else None


@dataclass
class ReportData:
    """The store's contents, filtered to finished runs, with the tables computed."""

    run_dir: Path | None
    info: dict[str, Any]
    runs: list[dict[str, Any]]
    records: list[dict[str, Any]]
    regimes: list[str]
    table: Table1 | None
    table_note: str
    comparisons: list[Table1] = field(default_factory=list)
    summary: list[dict[str, Any]] = field(default_factory=list)
    tables: dict[str, Table1] = field(default_factory=dict)
    val_records: list[dict[str, Any]] = field(default_factory=list)
    flags: list[Flag] = field(default_factory=list)
    diverged: dict[str, str] = field(default_factory=dict)
    headline: str = ""
    verdict: list[VerdictLine] = field(default_factory=list)
    store: Any = None
    risk: list[Any] = field(default_factory=list)
    reliability: dict[str, Any] = field(default_factory=dict)
    n_boot: int = DEFAULT_N_BOOT
    seed: int = 0
    primary: str = "test"

    @property
    def partial(self) -> str:
        """"" when every run ended; otherwise "partial: k of n runs finished (...)"."""
        return partial_note(self.runs)

    @property
    def metrics(self) -> list[str]:
        """Metrics with at least one defined value in the records."""
        return [m for m in METRICS
                if any(r.get(m) is not None and not _isnan(r.get(m)) for r in self.records)]

    @property
    def title(self) -> str:
        cfg = self.info.get("config") or {}
        parts = []
        for key in ("name", "dataset", "model"):
            v = cfg.get(key) if isinstance(cfg, dict) else None
            if isinstance(v, dict):
                v = v.get("name")
            if v:
                parts.append(str(v))
        if not parts and self.run_dir is not None:
            parts.append(self.run_dir.name)
        title = " / ".join(parts) if parts else "experiment"
        return f"{title} ({self.partial})" if self.partial else title


def _isnan(v: Any) -> bool:
    try:
        return math.isnan(float(v))
    except (TypeError, ValueError):
        return True


def finished_records(store: Any, run_dir: Path | None, *, split: str = "test",
                     runs: list[dict[str, Any]] | None = None,
                     exclude: Any = ()) -> list[dict[str, Any]]:
    """The per-interval records of the store's finished runs (less the run ids in
    ``exclude``); ValueError when none finished."""
    runs = list(store.runs()) if runs is None else runs
    finished = {str(r["run_id"]) for r in runs
                if r.get("status") == "finished" and str(r["run_id"]) not in exclude}
    if not finished:
        counts = Counter(str(r.get("status")) for r in runs)
        have = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no runs"
        where = f" in {str(run_dir)!r}" if run_dir is not None else ""
        raise ValueError(f"No finished runs{where} ({have}); Table 1 and the figures need at "
                         "least one. Run (or resume) the experiment first.")
    return [r for r in store.interval_records(split=split) if str(r["run_id"]) in finished]


def partial_note(runs: list[dict[str, Any]]) -> str:
    """"" when every run ended; otherwise "partial: k of n runs finished (...)"."""
    counts = Counter(str(r.get("status")) for r in runs)
    ended = counts.get("finished", 0) + counts.get("diverged", 0)
    if ended == len(runs):
        return ""
    rest = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()) if s != "finished")
    return f"partial: {counts.get('finished', 0)} of {len(runs)} runs finished ({rest})"


def table_runs(store: Any, run_dir: Path | None) -> tuple[set[str], list[str]]:
    """The runs Table 1 counts (finished, not diverged), and the notes that say which were
    left out (the partial note, the diverged flag): for a command that scores the store's
    runs again (``expost evaluate``), so that its tables count the runs ``expost table``
    counts. ValueError when no run finished, or every finished run diverged."""
    runs = list(store.runs())
    records, _, diverged = _split_records(store, run_dir, runs)
    notes = [f"P{note[1:]}; only the finished runs are counted." for note in [partial_note(runs)]
             if note]
    notes += [f"Flag: {f.text}" for f in diverged_flag(diverged)]
    return {str(r["run_id"]) for r in records}, notes


def _split_records(store: Any, run_dir: Path | None, runs: list[dict[str, Any]]
                   ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, str]]:
    """Test and validation records of the finished runs that did not diverge, and those that did."""
    everything = finished_records(store, run_dir, runs=runs)
    intervals = store.intervals() if hasattr(store, "intervals") else []
    diverged = diverged_runs(runs, everything, intervals)
    records = [r for r in everything if str(r["run_id"]) not in diverged]
    if not records:
        raise ValueError(f"Every finished run diverged ({', '.join(sorted(diverged))}); "
                         "Table 1 and the figures need at least one that did not.")
    keep = {str(r["run_id"]) for r in records}
    val = [r for r in store.interval_records(split="val") if str(r["run_id"]) in keep]
    return records, val, diverged


def gather(store: Any, run_dir: Path | None, *, n_boot: int = DEFAULT_N_BOOT, seed: int = 0,
           baseline: str | None = None, treatment: str | None = None,
           metrics: Any = ("weighted_loss", "classification_utility"),
           protocols: Any = tuple(PROTOCOLS), why: bool = True, primary: str = "test"
           ) -> ReportData:
    """Read the store once: Table 1 under each protocol (best interval chosen on test, and on
    validation when the store has validation metrics), the other comparisons, the flags,
    the verdict and (``why``) the risk decomposition and reliability per regime, on finished
    runs that did not diverge."""
    info = dict(store.experiment_info())
    runs = list(store.runs())
    records, val, diverged = _split_records(store, run_dir, runs)
    present = regimes_present(records)
    pair = default_pair(present)
    if pair is not None or (baseline and treatment):
        pair = (baseline or pair[0], treatment or pair[1])  # type: ignore[index]
    data = ReportData(run_dir, info, runs, records, present, None, "", val_records=val,
                      diverged=diverged, store=store)
    data.flags = _flags(data, store, metrics, pair)
    notes = tuple(f"Flag: {f.text}" for f in data.flags)  # Table 1's footnotes carry them too
    if pair is None:
        data.table_note = (f"Table 1 compares two regimes; only "
                           f"{', '.join(map(regime_label, present))} has finished runs.")
    else:
        for p in protocols:
            if p == "val" and not val:
                continue
            data.tables[p] = table1(records, baseline=pair[0], treatment=pair[1],
                                    metrics=metrics, n_boot=n_boot, seed=seed, select=p,
                                    val_records=val or None, notes=notes)
        data.primary = check_choice(primary, "select", tuple(PROTOCOLS))
        data.table = data.tables.get(data.primary) or next(iter(data.tables.values()), None)
        for other in present:  # Appendix C: the other regimes against the same baseline
            if other not in pair:
                data.comparisons.append(table1(records, baseline=pair[0], treatment=other,
                                               n_boot=n_boot, seed=seed))
        if data.tables:
            data.headline, data.verdict = verdict_lines(data.tables, info)
    data.summary = _summary(data)
    data.n_boot, data.seed = n_boot, seed
    if why:
        add_why(data, store)
    return data


def warm_report(run_dir: str | Path) -> None:
    """What of ``run_dir``'s report can be done before its runs end, done in this process,
    which remembers it: the theory figure's PNG (:func:`theory_figure`) and the risk
    decomposition of the runs finished so far
    (:func:`~expost.report.diagnostics.risk_rows`). For ``expost run``'s report helper,
    between trainings."""
    with open_store(run_dir) as (store, where):
        info = dict(store.experiment_info())
        ratio = emphasis_ratio(info)
        if ratio is not None and not drawn_ahead(("theory", ratio)):
            theory_figure(ratio, ahead=True)
        runs = list(store.runs())
        if any(r.get("status") == "finished" for r in runs):
            records = _split_records(store, where, runs)[0]
            risk_rows(store, info, runs, records)


def theory_figure(ratio: float, *, ahead: bool = False) -> Figure:
    """The report's Figure 2 for weight ratio ``ratio`` (:func:`plot_theory`), keyed by the
    ratio so that a PNG drawn ahead (``ahead``: drawn now, once) is the one saved."""
    fig, key = plot_theory(ratio), ("theory", float(ratio))
    if ahead:
        return draw_ahead(fig, key)
    fig.expost_key = key  # type: ignore[attr-defined]
    return fig


def add_why(data: ReportData, store: Any) -> None:
    """The risk decomposition and reliability per regime (the report's "why", most of
    :func:`gather`'s time), read from ``store`` into ``data``."""
    data.risk = risk_rows(store, data.info, data.runs, data.records)
    data.reliability = reliability_by_regime(store, data.info, data.runs, data.records)


def _flags(data: ReportData, store: Any, metrics: Any,
           pair: tuple[str, str] | None = None) -> list[Flag]:
    """The late-best-interval, one-class and diverged flags of the finished runs.

    The late-best flag counts the runs Table 1 compares (``pair``'s regimes): counted
    over every regime, the runs of a third one (Unweighted Raw) diluted it, and 6 of
    Table 1's 10 runs late went unflagged as 6 of 15."""
    shown = [m for m in metrics if m in data.metrics]
    compared = data.records if pair is None else [r for r in data.records
                                                  if r["regime"] in pair]
    flags = late_best_flags(compared, shown)
    decide_on = "classification_utility" if "classification_utility" in data.metrics else None
    if decide_on is not None:
        flags += one_class_flags(store, data.info, data.runs,
                                 best_intervals(data.records, decide_on))
    return flags + diverged_flag(data.diverged)


def _summary(data: ReportData) -> list[dict[str, Any]]:
    """Mean (min, max) over runs of each run's best interval, per regime and metric."""
    from .records import best_intervals

    out = []
    for m in data.metrics:
        best = best_intervals(data.records, m)
        for g in data.regimes:
            vals = [r[m] for r in best if r["regime"] == g and not math.isnan(r[m])]
            if vals:
                out.append({"metric": m, "regime": g, "n": len(vals),
                            "mean": sum(vals) / len(vals), "min": min(vals), "max": max(vals)})
    return out


def make_figures(data: ReportData) -> list[tuple[str, str, Figure]]:
    """The figures of a report: (file stem, caption, Figure)."""
    return [(name, caption, build()) for name, caption, build in figure_specs(data)]


#: A figure of the report, not yet drawn: (file stem, caption, a function that draws it).
FigureSpec = tuple[str, str, Callable[[], Figure]]


def figure_specs(data: ReportData) -> list[FigureSpec]:
    """The figures of a report, each drawn only when its function is called (so that
    several processes can each draw some of them)."""
    specs: list[FigureSpec] = []
    if "weighted_loss" in data.metrics:
        specs.append(("mean_weighted_loss",
                      "Weighted loss on the test set, mean over runs at each interval; dots mark "
                      "the best interval and dotted lines its loss (Figure 1).",
                      lambda: plot_curves(data.records, "weighted_loss", average=True,
                                          title="Weighted Loss, mean over runs")))
    captions = {
        "weighted_loss": "Weighted loss on the test set of every run; each dot marks the run's "
                         "minimum, the interval Table 1 uses (Figures 4, 6-9).",
        "classification_utility": "Classification utility on the test set of every run; each "
                                  "dot marks the run's maximum (Figure 5).",
    }
    for m in data.metrics:
        cap = captions.get(m, f"{METRIC_LABELS[m]} on the test set of every run; each dot marks "
                              "the run's best interval.")
        specs.append((f"curves_{m}", cap, functools.partial(plot_curves, data.records, m,
                                                             separate=SEPARATE)))
    specs += _why_figures(data)
    ratio = emphasis_ratio(data.info)
    if ratio is not None:
        specs.append(("theory", f"Incentives to choose and to learn in the binary case with this "
                      f"experiment's weight ratio {ratio:g}: optimal prediction, marginal learning "
                      "loss and learning loss (Figure 2).", lambda: theory_figure(ratio)))
    return specs


#: Regimes the report's curve plots draw in a panel of their own (their scale would hide
#: the difference between the others).
SEPARATE = ("unweighted_raw",)


def _why_figures(data: ReportData) -> list[FigureSpec]:
    """The gain over intervals with its paired band, the risk decomposition, reliability."""
    from .diagnostics import gain_over_intervals, plot_gain, plot_reliability, plot_risk

    specs: list[FigureSpec] = []
    if data.table is not None:
        t = data.table

        def gain() -> Figure:
            curves = {m: gain_over_intervals(data.records, t.baseline, t.treatment, m,
                                             n_boot=min(data.n_boot, 500), seed=data.seed)
                      for m in t.metrics}
            return plot_gain(curves, t.baseline, t.treatment)

        specs.append(("gain_over_intervals",
                      f"% gain of {regime_label(t.treatment)} over {regime_label(t.baseline)} at "
                      "every interval (means over seeds), with its paired bootstrap band (seeds "
                      "resampled jointly, at most 500 resamples per interval). Where the band "
                      "leaves zero, the gain is significant at that interval.", gain))
    if data.risk:
        specs.append(("risk_decomposition",
                      "Weighted loss at each run's best interval split by the learning identity "
                      "(Proposition 1): what was learned (coloured) and the remainder lost to "
                      "miscalibration (hatched); means over runs.", lambda: plot_risk(data.risk)))
    if data.reliability:
        binary = len(data.info.get("class_names") or []) == 2
        specs.append(("reliability",
                      "Reliability of each regime's prediction at each run's best interval, runs "
                      "pooled: observed frequency against predicted probability (binary: the "
                      "positive class; otherwise the top label). Weighted Training reports P^u, "
                      "miscalibrated by design.",
                      lambda: plot_reliability(data.reliability, binary=binary)))
    return specs


def emphasis_ratio(info: dict[str, Any]) -> float | None:
    """The weight ratio w_e / w_other of a class-emphasis objective (Eq 14), else None.

    Read from the stored config's objective (``kind: emphasize``): the ratio the
    user asked for, which Eq 21's normalisation leaves unchanged.
    """
    cfg = info.get("config")
    objective = cfg.get("objective") if isinstance(cfg, dict) else None
    if not isinstance(objective, dict) or objective.get("kind") != "emphasize":
        return None
    ratio = objective.get("ratio")
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)):
        return None
    return float(ratio) if math.isfinite(ratio) and ratio > 0 else None
