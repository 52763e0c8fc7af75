"""The model registry: three small functions and an option lister."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from torch import nn

from ..._validation import _error, check_int, describe
from ..datasets._registry import Registry

ModelFactory = Callable[..., nn.Module]

_MODELS: Registry[ModelFactory] = Registry("model", reserved=("n_classes", "input_shape"))


def register_model(
    name: str | None = None, *, overwrite: bool = False, check: Callable[..., Any] | None = None
) -> Callable[[ModelFactory], ModelFactory]:
    """Register a model factory under ``name`` (default: the function's name).

    The factory is ``f(*, n_classes, input_shape, **options) -> nn.Module``
    returning logits of shape ``(N, n_classes)``; its keyword-only options
    (with type hints and defaults) become the options :func:`build_model`
    accepts and checks. ``check(**options)``, optional, checks their values when
    the config loads (before any data is read).

    Examples
    --------
    >>> import math
    >>> from torch import nn
    >>> from expost.experiments.models import build_model, register_model
    >>> @register_model("logistic", overwrite=True)
    ... def logistic(*, n_classes: int, input_shape: tuple[int, ...], bias: bool = True):
    ...     return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), n_classes, bias=bias))
    >>> build_model("logistic", n_classes=3, input_shape=(4,), bias=False)
    Sequential(
      (0): Flatten(start_dim=1, end_dim=-1)
      (1): Linear(in_features=4, out_features=3, bias=False)
    )
    """
    return _MODELS.register(name, overwrite=overwrite, check=check)


def list_models() -> list[str]:
    """Names of the registered models, sorted.

    >>> {"cnn", "densenet121", "densenet_small", "mlp", "vit", "vit_tiny"} <= set(list_models())
    True
    """
    return _MODELS.names()


def model_options(name: str) -> dict[str, tuple[Any, Any]]:
    """The options of model ``name``: ``{option: (type hint, default)}``.

    >>> model_options("mlp")["hidden"]
    (tuple[int, ...], (128, 64))
    """
    return _MODELS.options(name)


def _check_shape(input_shape: Any) -> tuple[int, ...]:
    ok = (
        isinstance(input_shape, (tuple, list))
        and len(input_shape) in (1, 3)
        and all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0
                for s in input_shape)
    )
    if not ok:
        raise ValueError(
            _error("input_shape", "(n_features,) or (channels, height, width) of positive ints",
                   describe(input_shape))
        )
    return tuple(int(s) for s in input_shape)


def build_model(
    name: str, *, n_classes: int, input_shape: Sequence[int], **options: Any
) -> nn.Module:
    """Build the registered model ``name`` for inputs of ``input_shape``.

    Parameters
    ----------
    name : str
        One of :func:`list_models`.
    n_classes : int
        Number of classes (>= 2): the model returns logits of shape ``(N, n_classes)``.
    input_shape : sequence of int
        Shape of one input, ``(n_features,)`` or ``(channels, height, width)``
        (:attr:`DataSplits.input_shape <expost.experiments.datasets.DataSplits>`).
    **options
        The model's options (:func:`model_options`). Unknown options raise
        TypeError listing the allowed ones.

    Returns
    -------
    torch.nn.Module
        Initialised from torch's global generator: the same
        :func:`torch.manual_seed` gives the same parameters.

    Examples
    --------
    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> model = build_model("cnn", n_classes=10, input_shape=(1, 8, 8))
    >>> model(torch.zeros(5, 1, 8, 8)).shape
    torch.Size([5, 10])
    """
    factory = _MODELS.get(name)
    n_classes = check_int(n_classes, "n_classes", minimum=2, wrong_type=TypeError)
    shape = _check_shape(input_shape)
    _MODELS.check_options(name, options)
    model = factory(n_classes=int(n_classes), input_shape=shape, **options)
    if not isinstance(model, nn.Module):
        raise TypeError(_error(f"{name} factory result", "a torch.nn.Module", describe(model)))
    return model
