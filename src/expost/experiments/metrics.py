"""Names shared by the harness (which computes them) and the report layer (which shows them).

Every per-interval metric the harness stores, with its direction; every regime,
with the label and colour the figures use (the paper's: Weighted Training red,
Ex Post Weighting blue, Unweighted Raw black).
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

#: regime name -> (display label, colour).
REGIMES: Final[dict[str, tuple[str, str]]] = {
    "weighted": ("Weighted Training", "tab:red"),
    "expost": ("Ex Post Weighting", "tab:blue"),
    "unweighted_raw": ("Unweighted Raw", "black"),
    "inverse_prior": ("Inverse-Prior Weighting", "tab:purple"),
    "resampled": ("Cost-Proportionate Resampling", "tab:orange"),
    "metacost": ("MetaCost", "tab:green"),
}


def higher_is_better(metric: str) -> bool:
    """Direction of ``metric``; ValueError naming the known metrics otherwise."""
    try:
        return METRICS[metric]
    except KeyError:
        raise ValueError(
            f"`metric` must be one of {tuple(METRICS)}, got {metric!r}."
        ) from None
