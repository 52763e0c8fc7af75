"""Small models trained from scratch: a multilayer perceptron and a convolutional net."""

from __future__ import annotations

import math
from typing import Any, Literal

from torch import Tensor, nn

from ..._validation import _error, describe
from ._api import register_model

_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


class MLP(nn.Module):
    """Flatten, then ``Linear -> activation -> dropout`` per hidden layer, then a linear head."""

    def __init__(self, n_inputs: int, n_classes: int, hidden: tuple[int, ...],
                 dropout: float, activation: str) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = n_inputs
        for h in hidden:
            layers += [nn.Linear(width, h), _ACTIVATIONS[activation]()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


class CNN(nn.Module):
    """``Conv3x3 -> BatchNorm -> ReLU -> MaxPool2`` stages, flatten, dropout, linear head.

    A stage pools only while the feature map is at least 4 pixels on its
    shorter side, so the same net works on 8 x 8, 28 x 28 and 32 x 32 inputs.
    """

    def __init__(self, input_shape: tuple[int, int, int], n_classes: int,
                 channels: tuple[int, ...], dropout: float, batch_norm: bool) -> None:
        super().__init__()
        c, h, w = input_shape
        layers: list[nn.Module] = []
        for out in channels:
            layers.append(nn.Conv2d(c, out, kernel_size=3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out))
            layers.append(nn.ReLU(inplace=True))
            if min(h, w) >= 4:
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
            c = out
        layers += [nn.Flatten(), nn.Dropout(dropout)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c * h * w, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def _check_dropout(dropout: float) -> None:
    if not 0.0 <= dropout < 1.0:
        raise ValueError(_error("dropout", "a probability in [0, 1)", describe(dropout)))


def _check_widths(widths: tuple[int, ...], name: str) -> tuple[int, ...]:
    if any(w < 1 for w in widths):
        raise ValueError(_error(name, "positive layer widths", describe(widths)))
    return tuple(int(w) for w in widths)


def _check_mlp(*, hidden: tuple[int, ...], dropout: float, **_: Any) -> None:
    _check_dropout(dropout)
    _check_widths(tuple(hidden), "hidden")


def _check_cnn(*, channels: tuple[int, ...], dropout: float, **_: Any) -> None:
    if not channels:
        raise ValueError(_error("channels", "at least one stage width", describe(channels)))
    _check_dropout(dropout)
    _check_widths(tuple(channels), "channels")


@register_model("mlp", check=_check_mlp)
def mlp(
    *,
    n_classes: int,
    input_shape: tuple[int, ...],
    hidden: tuple[int, ...] = (128, 64),
    dropout: float = 0.0,
    activation: Literal["relu", "gelu", "tanh"] = "relu",
) -> nn.Module:
    r"""A multilayer perceptron on the flattened input.

    .. math:: z = W_{L} \, \phi(\cdots \phi(W_1 \operatorname{vec}(x) + b_1) \cdots) + b_{L}

    Parameters
    ----------
    hidden : sequence of int, default (128, 64)
        Hidden layer widths; ``()`` gives multinomial logistic regression
        (well specified for the synthetic data set with equal class variances).
    dropout : float, default 0.0
    activation : {"relu", "gelu", "tanh"}, default "relu"

    Examples
    --------
    >>> import torch
    >>> from expost.experiments.models import build_model
    >>> model = build_model("mlp", n_classes=3, input_shape=(2,), hidden=())
    >>> model(torch.zeros(4, 2)).shape
    torch.Size([4, 3])
    """
    _check_mlp(hidden=hidden, dropout=dropout)
    return MLP(math.prod(input_shape), n_classes, _check_widths(tuple(hidden), "hidden"),
               float(dropout), activation)


@register_model("cnn", check=_check_cnn)
def cnn(
    *,
    n_classes: int,
    input_shape: tuple[int, ...],
    channels: tuple[int, ...] = (32, 64),
    dropout: float = 0.0,
    batch_norm: bool = True,
) -> nn.Module:
    """A small convolutional net for images of any size from 4 x 4 (see :class:`CNN`).

    Parameters
    ----------
    channels : sequence of int, default (32, 64)
        Output channels of the stages.
    dropout : float, default 0.0
        Before the head.
    batch_norm : bool, default True

    Examples
    --------
    >>> import torch
    >>> from expost.experiments.models import build_model
    >>> model = build_model("cnn", n_classes=10, input_shape=(3, 32, 32))
    >>> model(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    """
    if len(input_shape) != 3:
        raise ValueError(_error("input_shape", "(channels, height, width) for the model 'cnn' "
                                "(use 'mlp' for flat features)", describe(input_shape)))
    _check_cnn(channels=channels, dropout=dropout)
    return CNN(input_shape, n_classes, _check_widths(tuple(channels), "channels"),
               float(dropout), batch_norm)
