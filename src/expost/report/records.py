"""Per-interval records: checks, grouping by run, and the best interval of each run.

A *record* is one evaluation of one run at one training interval, as
:meth:`expost.experiments.store.ResultStore.interval_records` returns it: a
mapping with the keys ``run_id``, ``regime``, ``seed``, ``interval``, ``step``,
``epoch`` and one float per metric of :data:`expost.experiments.metrics.METRICS`.

:func:`best_intervals` is the one place that decides which interval of a run
counts (Table 1 and the figures both call it).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from .._validation import _error, describe
from ..experiments.metrics import METRICS, higher_is_better
from ..experiments.regimes import regime_colour, regime_label, regime_order

__all__ = [
    "METRIC_LABELS",
    "as_records",
    "best_intervals",
    "check_metric",
    "group_runs",
    "regime_colour",
    "regime_label",
    "regimes_present",
]

#: metric name -> axis / column label.
METRIC_LABELS: dict[str, str] = {
    "weighted_loss": "Weighted Loss",
    "classification_utility": "Classification Utility",
    "log_loss": "Log Loss",
    "accuracy": "Accuracy",
    "emphasized_recall": "Recall (emphasized class)",
    "calibration_error": "Calibration Error",
}

#: The x axes of the curve plots (here, not in figures.py: the parser needs no matplotlib).
X_AXES = ("auto", "step", "epoch", "interval")

_REQUIRED = ("run_id", "regime", "interval")

RunKey = tuple[str, str]  # (regime, run_id)


def _as_value(v: Any, where: str) -> float:
    if v is None:
        return math.nan
    if isinstance(v, (str, bytes, bool)):
        raise TypeError(_error(where, "a number (or None when undefined)", describe(v)))
    try:
        return float(v)
    except (TypeError, ValueError):
        raise TypeError(_error(where, "a number (or None when undefined)", describe(v))) from None


def _is_integral(x: Any) -> bool:
    if isinstance(x, (bool, str, bytes)):
        return False
    try:
        return float(x).is_integer()
    except (TypeError, ValueError):
        return False


def as_records(records: Any) -> list[Mapping[str, Any]]:
    if hasattr(records, "to_dict") and not isinstance(records, Mapping):  # a pandas DataFrame
        records = records.to_dict("records")
    if isinstance(records, (str, bytes, Mapping)) or not isinstance(records, Iterable):
        raise TypeError(
            _error("records", "a list of per-interval record mappings", describe(records))
        )
    out = list(records)
    for i, r in enumerate(out):
        if not isinstance(r, Mapping):
            raise TypeError(
                _error(f"records[{i}]", "a mapping (one interval of one run)", describe(r))
            )
    return out


def group_runs(records: Any, metric: str) -> dict[RunKey, list[dict[str, Any]]]:
    """Check ``records`` and group them by run, each run's records ordered by interval.

    Parameters
    ----------
    records : list of mappings (or a pandas DataFrame)
        Per-interval records with at least ``run_id``, ``regime``, ``interval`` and ``metric``.
    metric : str
        A name from :data:`~expost.experiments.metrics.METRICS`.

    Returns
    -------
    dict
        ``(regime, run_id) -> list of record copies`` (the metric as a float, None
        as NaN), keys ordered by regime (the order of ``REGIME_SPECS``), then seed, then run id.

    Examples
    --------
    >>> recs = [{"run_id": "a", "regime": "weighted", "interval": 1, "weighted_loss": 0.5},
    ...         {"run_id": "a", "regime": "weighted", "interval": 0, "weighted_loss": 0.7}]
    >>> [r["interval"] for r in group_runs(recs, "weighted_loss")[("weighted", "a")]]
    [0, 1]
    """
    check_metric(metric)
    rows = as_records(records)
    runs: dict[RunKey, dict[int, dict[str, Any]]] = {}
    for i, r in enumerate(rows):
        missing = [k for k in (*_REQUIRED, metric) if k not in r]
        if missing:
            raise ValueError(
                _error(
                    f"records[{i}]",
                    f"a record with the keys {(*_REQUIRED, metric)}",
                    f"one without {', '.join(map(repr, missing))}",
                )
            )
        interval = r["interval"]
        if not _is_integral(interval):
            raise ValueError(_error(f"records[{i}]['interval']", "an integer", describe(interval)))
        rec = dict(r)
        rec["interval"] = int(interval)
        rec[metric] = _as_value(r[metric], f"records[{i}][{metric!r}]")
        key = (str(r["regime"]), str(r["run_id"]))
        per_run = runs.setdefault(key, {})
        if rec["interval"] in per_run:
            raise ValueError(
                _error(
                    "records",
                    "one record per (regime, run_id, interval)",
                    f"two for regime {key[0]!r}, run {key[1]!r}, interval {rec['interval']}",
                )
            )
        per_run[rec["interval"]] = rec

    def order(key: RunKey) -> tuple[Any, ...]:
        first = next(iter(runs[key].values()))
        seed = first.get("seed")
        numeric = isinstance(seed, (int, float)) and not isinstance(seed, bool)
        seed_key = (0, seed) if numeric else (1, 0)
        return (*regime_order(key[0]), seed_key, key[1])

    return {k: [runs[k][j] for j in sorted(runs[k])] for k in sorted(runs, key=order)}


def _best_of_run(run: list[dict[str, Any]], metric: str, maximize: bool) -> dict[str, Any]:
    best = None
    for rec in run:  # ordered by interval: strict comparison keeps the earliest on ties
        v = rec[metric]
        if math.isnan(v):
            continue
        if best is None or (v > best[metric] if maximize else v < best[metric]):
            best = rec
    return run[0] if best is None else best  # every value NaN: the run shows as NaN


def best_intervals(records: Any, metric: str, *, select_by: Any = None) -> list[dict[str, Any]]:
    r"""The best interval of every run on ``metric`` (the Table 1 protocol).

    For run :math:`r` with values :math:`v_{r,t}` over intervals :math:`t`,

    .. math:: t^*_r = \arg\min_t v_{r,t} \text{ (losses)}, \qquad
              t^*_r = \arg\max_t v_{r,t} \text{ (utility, accuracy, recall)},

    ties going to the earliest interval. Each metric picks its own best
    interval (Section 3.1: the interval minimising the weighted loss need not
    maximise classification utility). NaN (undefined) values are skipped; a run
    with no defined value returns its first record, whose value is NaN.

    Parameters
    ----------
    records : list of mappings (or a pandas DataFrame)
        Per-interval records (see :func:`group_runs`).
    metric : str
        A name from :data:`~expost.experiments.metrics.METRICS`; its direction
        says whether the minimum or the maximum is best.
    select_by : list of mappings, optional
        Records of the same runs on another split (the validation set): each
        run's interval is then the best one *there*, and the record returned is
        that interval's record of ``records`` (select on validation, report on
        test). None (default): select on ``records`` themselves, the paper's
        protocol.

    Returns
    -------
    list of dict
        One record copy per run, ordered by regime, seed and run id.

    Raises
    ------
    ValueError
        With ``select_by``: a run without a defined value there, or whose
        selected interval ``records`` lacks.

    Examples
    --------
    >>> recs = [{"run_id": "a", "regime": "weighted", "interval": t,
    ...          "weighted_loss": v, "classification_utility": u}
    ...         for t, (v, u) in enumerate([(0.9, 0.1), (0.6, 0.3), (0.6, 0.2), (0.7, 0.4)])]
    >>> best_intervals(recs, "weighted_loss")[0]["interval"]
    1
    >>> best_intervals(recs, "classification_utility")[0]["interval"]
    3
    """
    maximize = higher_is_better(check_metric(metric))
    runs = group_runs(records, metric)
    if select_by is None:
        return [_best_of_run(run, metric, maximize) for run in runs.values()]
    chooser = group_runs(select_by, metric)
    out = []
    for key, run in runs.items():
        pick = _best_of_run(chooser.get(key, [{"interval": None, metric: math.nan}]), metric,
                            maximize)
        if math.isnan(pick[metric]):
            raise ValueError(_error("select_by", f"a defined {metric!r} for every run",
                                    f"none for regime {key[0]!r}, run {key[1]!r}"))
        chosen = [r for r in run if r["interval"] == pick["interval"]]
        if not chosen:
            raise ValueError(_error("records", f"interval {pick['interval']} of regime "
                                    f"{key[0]!r}, run {key[1]!r} (selected on select_by)",
                                    "no such record"))
        out.append(chosen[0])
    return out


def regimes_present(records: Any) -> list[str]:
    """Regimes that have at least one record, in the order of ``REGIME_SPECS``.

    >>> regimes_present([{"regime": "expost"}, {"regime": "weighted"}])
    ['weighted', 'expost']
    """
    rows = as_records(records)
    names = {str(r["regime"]) for r in rows if "regime" in r}
    return sorted(names, key=regime_order)


def check_metric(metric: Any, name: str = "metric") -> str:
    """Check a metric name; ValueError naming the known ones."""
    if not isinstance(metric, str) or metric not in METRICS:
        raise ValueError(_error(name, f"one of {tuple(METRICS)}", describe(metric)))
    return metric
