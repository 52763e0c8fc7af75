"""The experiment harness: data sets, models, regimes, training, evaluation and storage.

>>> from expost.experiments import load_config, run_experiment, ResultStore

:func:`run_experiment` runs (or resumes) the regimes of a config side by side
over seeds; :class:`ResultStore` reads the results; :func:`frontier` evaluates
stored predictions under many objectives at once, through the harness's one
metric engine (:mod:`~expost.experiments.evaluate`). Names are imported lazily,
so ``expost.experiments.metrics`` (shared with the report layer) does not pull
in torch; no submodule shares the name of an exported function.
"""

from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    "ConfigError": "config",
    "ExperimentConfig": "config",
    "config_hash": "config",
    "default_config": "config",
    "load_config": "config",
    "resolve_objective": "objective",
    "decode_probabilities": "evaluate",
    "interval_metrics": "evaluate",
    "FRONTIER_METRICS": "evaluate",
    "frontier": "evaluate",
    "stack_utilities": "evaluate",
    "METRICS": "metrics",
    "REGIME_SPECS": "regimes",
    "regime_view": "regimes",
    "ExperimentMismatchError": "runners",
    "LocalRunner": "runners",
    "BackendOptions": "backends",
    "run_experiment": "runners",
    "run_experiments": "runners",
    "ResultStore": "store",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
