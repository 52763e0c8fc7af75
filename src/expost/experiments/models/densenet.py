"""DenseNets (Huang et al. 2017): a native small one, and torchvision's DenseNet-121.

The native :class:`DenseNet` uses torchvision's module names (``features.conv0``,
``features.denseblock1.denselayer1.norm1``, ..., ``classifier``), so state
dicts carry the same key names. The paper's chest X-ray model is DenseNet-121
initialised from ImageNet weights (CheXNeXt recipe, Appendix D.1).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..._validation import _error, describe
from ._api import register_model
from ._weights import StateDict, import_torchvision, load_weights, pretrained_check


class _DenseLayer(nn.Module):
    def __init__(self, n_in: int, growth_rate: int, bn_size: int, drop_rate: float) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(n_in)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(n_in, bn_size * growth_rate, kernel_size=1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, kernel_size=3, padding=1,
                               bias=False)
        self.drop_rate = drop_rate

    def forward(self, features: list[Tensor]) -> Tensor:
        x = self.conv1(self.relu1(self.norm1(torch.cat(features, 1))))
        x = self.conv2(self.relu2(self.norm2(x)))
        return F.dropout(x, p=self.drop_rate, training=self.training) if self.drop_rate else x


class _DenseBlock(nn.ModuleDict):
    def __init__(self, n_layers: int, n_in: int, growth_rate: int, bn_size: int,
                 drop_rate: float) -> None:
        super().__init__()
        for i in range(n_layers):
            self.add_module(f"denselayer{i + 1}",
                            _DenseLayer(n_in + i * growth_rate, growth_rate, bn_size, drop_rate))

    def forward(self, x: Tensor) -> Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class _Transition(nn.Sequential):
    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(n_in)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(n_in, n_out, kernel_size=1, bias=False)
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)


class DenseNet(nn.Module):
    """DenseNet-BC with torchvision's module names.

    Parameters
    ----------
    in_channels, n_classes : int
    growth_rate : int
        Channels each dense layer adds.
    block_config : tuple of int
        Dense layers per block (DenseNet-121: (6, 12, 24, 16)).
    num_init_features : int
        Channels of the stem.
    bn_size : int
        Bottleneck width, in multiples of ``growth_rate``.
    drop_rate : float
        Dropout after each dense layer.
    small_inputs : bool
        A 3 x 3 stride-1 stem without max pooling (for 8 to 32 pixel images)
        instead of the 7 x 7 stride-2 stem and max pooling.
    """

    def __init__(self, in_channels: int, n_classes: int, *, growth_rate: int,
                 block_config: tuple[int, ...], num_init_features: int, bn_size: int = 4,
                 drop_rate: float = 0.0, small_inputs: bool = False) -> None:
        super().__init__()
        if small_inputs:
            stem: list[tuple[str, nn.Module]] = [
                ("conv0", nn.Conv2d(in_channels, num_init_features, 3, padding=1, bias=False)),
                ("norm0", nn.BatchNorm2d(num_init_features)),
                ("relu0", nn.ReLU(inplace=True)),
            ]
        else:
            stem = [
                ("conv0", nn.Conv2d(in_channels, num_init_features, 7, stride=2, padding=3,
                                    bias=False)),
                ("norm0", nn.BatchNorm2d(num_init_features)),
                ("relu0", nn.ReLU(inplace=True)),
                ("pool0", nn.MaxPool2d(kernel_size=3, stride=2, padding=1)),
            ]
        self.features = nn.Sequential(OrderedDict(stem))
        n = num_init_features
        for i, n_layers in enumerate(block_config):
            self.features.add_module(f"denseblock{i + 1}",
                                     _DenseBlock(n_layers, n, growth_rate, bn_size, drop_rate))
            n += n_layers * growth_rate
            if i != len(block_config) - 1:
                self.features.add_module(f"transition{i + 1}", _Transition(n, n // 2))
                n //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(n))
        self.classifier = nn.Linear(n, n_classes)
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.constant_(m.bias, 0)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.features(x))
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


_LEGACY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)


def densenet_key_map(state: StateDict, target: StateDict) -> StateDict:
    """Rename the legacy keys of torchvision's original DenseNet files.

    ``...denselayer1.norm.1.weight`` becomes ``...denselayer1.norm1.weight``
    (as torchvision does when it loads its own download).
    """
    out = {}
    for k, v in state.items():
        m = _LEGACY.match(k)
        out[m.group(1) + m.group(2) if m else k] = v
    return out


def _image_shape(input_shape: tuple[int, ...], model: str) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise ValueError(_error("input_shape", f"(channels, height, width) for the model {model!r}",
                                describe(input_shape)))
    return input_shape


def _check_drop(drop_rate: float) -> None:
    if not 0.0 <= drop_rate < 1.0:
        raise ValueError(_error("drop_rate", "a probability in [0, 1)", describe(drop_rate)))


@register_model("densenet_small")
def densenet_small(
    *,
    n_classes: int,
    input_shape: tuple[int, ...],
    growth_rate: int = 12,
    block_config: tuple[int, ...] = (4, 4, 4),
    num_init_features: int = 24,
    bn_size: int = 4,
    drop_rate: float = 0.0,
    small_inputs: bool | None = None,
    weights: Path | None = None,
) -> nn.Module:
    """A small DenseNet-BC in plain torch (no torchvision), any channels and image size.

    Parameters
    ----------
    growth_rate, block_config, num_init_features, bn_size, drop_rate
        See :class:`DenseNet`.
    small_inputs : bool, optional
        Default: True when the shorter image side is below 64 pixels.
    weights : path, optional
        A state_dict file of the same architecture; the head is replaced
        when its size differs from ``n_classes``.

    Examples
    --------
    >>> import torch
    >>> from expost.experiments.models import build_model
    >>> model = build_model("densenet_small", n_classes=15, input_shape=(3, 32, 32))
    >>> model(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 15])
    """
    c, h, w = _image_shape(input_shape, "densenet_small")
    _check_drop(drop_rate)
    if growth_rate < 1 or num_init_features < 1 or bn_size < 1 or not block_config \
            or min(block_config) < 1:
        raise ValueError(_error("growth_rate / block_config / num_init_features / bn_size",
                                "positive sizes", describe((growth_rate, block_config,
                                                            num_init_features, bn_size))))
    model = DenseNet(c, n_classes, growth_rate=growth_rate, block_config=tuple(block_config),
                     num_init_features=num_init_features, bn_size=bn_size,
                     drop_rate=float(drop_rate),
                     small_inputs=min(h, w) < 64 if small_inputs is None else small_inputs)
    if weights is not None:
        load_weights(model, weights, head="classifier", key_map=densenet_key_map)
    return model


#: The DenseNet-121 checkpoint the paper's chest X-ray recipe wants, and how to get it.
PAPER_DENSENET_WEIGHTS = (
    "The paper wants ImageNet weights: torch.save(torchvision.models.densenet121(weights="
    "'DEFAULT').state_dict(), PATH) where there is internet."
)


@register_model("densenet121", check=pretrained_check("densenet121", PAPER_DENSENET_WEIGHTS))
def densenet121(
    *,
    n_classes: int,
    input_shape: tuple[int, ...],
    weights: Path | None = None,
    pretrained: bool = False,
    drop_rate: float = 0.0,
    memory_efficient: bool = False,
) -> nn.Module:
    """torchvision's DenseNet-121 (CheXNeXt's model), with a head for ``n_classes``.

    Needs torchvision (imported only here; ImportError naming the install
    command otherwise) and 3-channel images of at least 32 x 32 pixels (the
    paper: 224).

    Parameters
    ----------
    weights : path, optional
        A DenseNet-121 state_dict file (torchvision key names, the legacy names
        of torchvision's original download included), e.g. ImageNet weights.
        Loaded strictly except the ``classifier`` head, which is replaced when
        its size differs from ``n_classes``.
    pretrained : bool, default False
        Require ``weights`` (nothing is ever downloaded): ``pretrained: true``
        without ``weights`` is refused when the config loads, with the fix and
        :data:`PAPER_DENSENET_WEIGHTS` (which file the paper's recipe wants).
    drop_rate : float, default 0.0
    memory_efficient : bool, default False
        torchvision's checkpointed dense layers (less memory, slower).

    Examples
    --------
    >>> from expost.experiments.models import build_model
    >>> build_model("densenet121", n_classes=15, input_shape=(3, 224, 224))  # doctest: +SKIP
    """
    c, h, w = _image_shape(input_shape, "densenet121")
    if c != 3 or min(h, w) < 32:
        raise ValueError(_error("input_shape", "3-channel images of at least 32 x 32 for "
                                "'densenet121' (e.g. the option as_rgb=True of 'medmnist', or "
                                "the native 'densenet_small')", describe(input_shape)))
    _check_drop(drop_rate)
    pretrained_check("densenet121", PAPER_DENSENET_WEIGHTS)(pretrained=pretrained, weights=weights)
    tv = import_torchvision("densenet121")
    model = tv.models.densenet121(weights=None, num_classes=n_classes,
                                  drop_rate=float(drop_rate), memory_efficient=memory_efficient)
    if weights is not None:
        load_weights(model, weights, head="classifier", key_map=densenet_key_map,
                     pretrained_option=True)
    return model
