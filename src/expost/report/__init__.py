"""The report layer: Table 1, the paper's figures and a self-contained HTML report.

>>> from expost.report import table1, best_intervals, plot_curves, write_report

Works on the per-interval records of the experiment harness's result store
(:class:`expost.experiments.store.ResultStore`) or on any list of record
mappings with the keys ``run_id``, ``regime``, ``seed``, ``interval``,
``step``, ``epoch`` and the metrics of :data:`expost.experiments.metrics.METRICS`.
"""

from __future__ import annotations

from .._lazy import lazy_exports
from ._mpl import settle

settle()  # before any module here imports matplotlib: where it keeps its cache

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


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
