"""PyTorch training objectives: utility-weighted losses from logits, and ex post predictions.

The utility-weighted loss of "Misaligned by Design" (Eq 6),
:math:`\\ell^u(p, y) = \\sum_a u(a, y)\\, \\ell(p, a)`, for the log loss
(doubly-weighted cross-entropy, Eq 24; class-weighted cross-entropy, Eq 15) and
the Brier score (footnote 19), computed from logits. Functional forms live in
:mod:`expost.nn.functional`; the modules hold the utility as a buffer.

Depends on the numpy core (:class:`expost.Utility` checks and normalises the
utility); ``import expost`` does not import torch.

>>> import torch, expost, expost.nn
>>> loss = expost.nn.UtilityWeightedCrossEntropy(expost.Utility.from_class_weights([1.0, 9.0]))
>>> loss(torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1]))
tensor(1.4731)
"""

try:
    import torch  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without torch
    raise ImportError(
        "expost.nn needs PyTorch; install it with `pip install expost[torch]`."
    ) from exc

from . import functional
from ._modules import UtilityWeightedBrier, UtilityWeightedCrossEntropy
from .functional import (
    decide,
    expost_log_probs,
    utility_weighted_brier,
    utility_weighted_cross_entropy,
)

__all__ = [
    "UtilityWeightedBrier",
    "UtilityWeightedCrossEntropy",
    "decide",
    "expost_log_probs",
    "functional",
    "utility_weighted_brier",
    "utility_weighted_cross_entropy",
]
