"""The metric names shared by the harness (which computes them) and the report layer.

Every per-interval metric the harness stores, with its direction. Regimes,
their labels and colours live in :mod:`expost.experiments.regimes`.
"""

from __future__ import annotations

from typing import Final

#: metric name -> True when higher is better.
METRICS: Final[dict[str, bool]] = {
    "weighted_loss": False,
    "classification_utility": True,
    "log_loss": False,
    "accuracy": True,
    "emphasized_recall": True,
    "calibration_error": False,
}

def higher_is_better(metric: str) -> bool:
    """Direction of ``metric``; ValueError naming the known metrics otherwise."""
    try:
        return METRICS[metric]
    except KeyError:
        raise ValueError(
            f"`metric` must be one of {tuple(METRICS)}, got {metric!r}."
        ) from None
