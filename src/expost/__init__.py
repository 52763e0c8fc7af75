"""expost: align classifiers with a human objective.

Train with a plain proper loss, then apply the objective afterwards
(Ex Post Weighting, Theorem 1 of "Misaligned by Design", Autor, Caplin,
Martin and Marx 2025), and measure what the weighting would have cost.

The numpy core (this namespace) depends on numpy and scipy only. PyTorch
losses live in :mod:`expost.nn`, scikit-learn estimators in
:mod:`expost.estimators`, the experiment harness in :mod:`expost.experiments`.
"""

from ._decisions import decide, elkan_threshold, expected_utility, weighted_prediction
from ._incentives import (
    IncentiveCurves,
    binary_incentive_curves,
    learning_gradient,
    residual_learning_loss,
)
from ._learning import (
    RiskDecomposition,
    learned_posteriors,
    loss_calibration_gap,
    risk_decomposition,
)
from ._recalibration import PriorEstimate, adjust_prior, estimate_target_prior, recover_posterior
from ._reliability import ReliabilityCurve, calibration_error, reliability_curve
from ._scaling import apply_scaling, fit_temperature, fit_vector_scaling
from ._scoring import (
    AlignmentGain,
    brier_loss,
    classification_utility,
    cost_vector_weights,
    external_alignment_gain,
    internal_alignment_gain,
    log_loss,
    percent_gain,
    weighted_loss,
    zhou_liu_weights,
)
from ._utility import Utility

__version__ = "0.1.0"

__all__ = [
    "AlignmentGain",
    "IncentiveCurves",
    "PriorEstimate",
    "ReliabilityCurve",
    "RiskDecomposition",
    "Utility",
    "__version__",
    "adjust_prior",
    "apply_scaling",
    "binary_incentive_curves",
    "brier_loss",
    "calibration_error",
    "classification_utility",
    "cost_vector_weights",
    "decide",
    "elkan_threshold",
    "estimate_target_prior",
    "expected_utility",
    "external_alignment_gain",
    "fit_temperature",
    "fit_vector_scaling",
    "internal_alignment_gain",
    "learned_posteriors",
    "learning_gradient",
    "log_loss",
    "loss_calibration_gap",
    "percent_gain",
    "recover_posterior",
    "reliability_curve",
    "residual_learning_loss",
    "risk_decomposition",
    "weighted_loss",
    "weighted_prediction",
    "zhou_liu_weights",
]
