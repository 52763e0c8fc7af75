"""Input checks of :mod:`expost.nn`, run before any kernel.

Shapes, dtypes and target ranges of logits and targets, and the reduction name,
with the messages of :func:`expost._validation._error`. The kernels
(:mod:`expost.nn._kernels`) assume inputs that passed these checks.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .._validation import _error, check_choice
from .._validation import describe as _describe_array

REDUCTIONS = ("mean", "sum", "none", "weighted_mean")


def describe(x: Any) -> str:
    """Say briefly what ``x`` is (tensors included), for error messages."""
    if isinstance(x, Tensor):
        where = "" if x.device.type == "cpu" else f" on {x.device}"
        return f"a tensor of shape {tuple(x.shape)} and dtype {x.dtype}{where}"
    return _describe_array(x)


def check_reduction(reduction: Any) -> str:
    return check_choice(reduction, "reduction", REDUCTIONS)


_COMPUTE_DTYPES = {torch.float32: torch.float32, torch.float64: torch.float64}


def compute_dtype(logits: Tensor) -> torch.dtype:
    """The logits' dtype promoted to at least float32 (half and bfloat16 accumulate in float32)."""
    dtype = _COMPUTE_DTYPES.get(logits.dtype)  # (a dict lookup: this runs on every call)
    return torch.promote_types(logits.dtype, torch.float32) if dtype is None else dtype


# ---------------------------------------------------------------- inputs
_SINGULAR = {"classes": "class", "actions": "action"}


def check_logits(logits: Any, n_columns: int, what: str, name: str = "logits") -> None:
    if not isinstance(logits, Tensor):
        raise TypeError(_error(name, "a torch.Tensor of logits", describe(logits)))
    if not logits.is_floating_point():
        raise TypeError(
            _error(
                name,
                "a floating-point tensor of logits (float16, bfloat16, float32 or float64)",
                describe(logits),
            )
        )
    if logits.ndim < 2:
        raise ValueError(
            _error(
                name,
                f"a tensor of shape (N, {n_columns}) or (N, {n_columns}, d1, ...) "
                f"with the {what} along dim 1",
                describe(logits),
            )
        )
    if logits.shape[1] != n_columns:
        raise ValueError(
            _error(
                name,
                f"{n_columns} entries along dim 1 (one per {_SINGULAR[what]} of the utility)",
                f"{logits.shape[1]} ({describe(logits)})",
            )
        )
    if logits.numel() == 0:
        raise ValueError(_error(name, "a non-empty batch", describe(logits)))


_INTEGER_DTYPES = frozenset({torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64})


def check_target(target: Any, logits: Tensor, n_classes: int, validate: bool) -> Tensor:
    """Integer class indices shaped like ``logits`` without dim 1; returned as int64.

    With ``validate`` the range is checked with one ``aminmax`` (a device sync on CUDA).
    """
    if not isinstance(target, Tensor):
        raise TypeError(_error("target", "a torch.Tensor of class indices", describe(target)))
    if target.dtype not in _INTEGER_DTYPES:
        raise TypeError(
            _error(
                "target", "an integer tensor of class indices (e.g. torch.long)", describe(target)
            )
        )
    shape = logits.shape
    if (
        target.ndim != len(shape) - 1
        or target.shape[0] != shape[0]
        or (len(shape) > 2 and target.shape[1:] != shape[2:])
    ):
        raise ValueError(
            _error(
                "target",
                f"a tensor of shape {tuple(shape[:1] + shape[2:])} (the logits' shape "
                "without dim 1)",
                describe(target),
            )
        )
    if target.get_device() != logits.get_device():  # ints: cheaper than comparing devices
        raise ValueError(
            _error("target", f"a tensor on the logits' device ({logits.device})", describe(target))
        )
    if validate:
        bounds = torch.aminmax(target)
        if target.is_cuda:  # one device sync for both
            lo, hi = torch.stack(bounds).tolist()
        else:
            lo, hi = bounds.min.item(), bounds.max.item()
        if lo < 0 or hi >= n_classes:
            raise ValueError(
                _error(
                    "target",
                    f"class indices in [0, {n_classes})",
                    f"the index {lo if lo < 0 else hi}",
                )
            )
    return target if target.dtype == torch.long else target.long()


def check_inputs(
    logits: Any, target: Any, n_actions: int, n_classes: int, validate: bool
) -> Tensor:
    """Logits over actions and targets over classes; returns the targets as int64."""
    if (  # the common valid case in one test, then the detailed checks for a message
        not isinstance(logits, Tensor)
        or not logits.is_floating_point()
        or logits.ndim < 2
        or logits.shape[1] != n_actions
        or logits.numel() == 0
    ):
        check_logits(logits, n_actions, "actions")
    return check_target(target, logits, n_classes, validate)
