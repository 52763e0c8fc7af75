"""The report layer: Table 1, the paper's figures and a self-contained HTML report.

>>> from expost.report import table1, best_intervals, plot_curves, write_report

Works on the per-interval records of the experiment harness's result store
(:class:`expost.experiments.store.ResultStore`) or on any list of record
mappings with the keys ``run_id``, ``regime``, ``seed``, ``interval``,
``step``, ``epoch`` and the metrics of :data:`expost.experiments.metrics.METRICS`.
"""

from __future__ import annotations

import importlib
from typing import Any

# Names are imported lazily: ``expost.report.table`` (numpy only) must not pull in
# matplotlib, which the figures, the HTML report and build_outputs need.
_EXPORTS = {
    "METRIC_LABELS": "records",
    "Table1": "table",
    "Table1Row": "table",
    "best_intervals": "records",
    "build_outputs": "build",
    "plot_curves": "figures",
    "plot_theory": "figures",
    "save_figure": "figures",
    "table1": "table",
    "write_report": "html",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'expost.report' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
