"""The report layer: Table 1, the paper's figures and a self-contained HTML report.

>>> from expost.report import table1, best_intervals, plot_curves, write_report

Works on the per-interval records of the experiment harness's result store
(:class:`expost.experiments.store.ResultStore`) or on any list of record
mappings with the keys ``run_id``, ``regime``, ``seed``, ``interval``,
``step``, ``epoch`` and the metrics of :data:`expost.experiments.metrics.METRICS`.
"""

from .build import build_outputs
from .figures import plot_curves, plot_theory, save_figure
from .html import write_report
from .records import METRIC_LABELS, best_intervals
from .table import Table1, Table1Row, table1

__all__ = [
    "METRIC_LABELS",
    "Table1",
    "Table1Row",
    "best_intervals",
    "build_outputs",
    "plot_curves",
    "plot_theory",
    "save_figure",
    "table1",
    "write_report",
]
