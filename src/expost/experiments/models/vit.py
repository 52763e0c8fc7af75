"""Vision transformers (Dosovitskiy et al. 2021): a native small one, and torchvision's ViT-B/16.

The paper's CIFAR model is ViT-B/16 pretrained on ImageNet-21k and fine-tuned
at 224 x 224 (Appendix D.2). The native :class:`VisionTransformer` builds the
same architecture from :class:`torch.nn.TransformerEncoder` at any size.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..._validation import _error, describe
from ._api import register_model
from ._weights import StateDict, import_torchvision, load_weights, no_weights_message

POS_KEY = "encoder.pos_embedding"


class _Encoder(nn.Module):
    def __init__(self, n_tokens: int, dim: int, depth: int, heads: int, mlp_dim: int,
                 dropout: float) -> None:
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.empty(1, n_tokens, dim).normal_(std=0.02))
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(dim, heads, mlp_dim, dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, depth, norm=nn.LayerNorm(dim),
                                            enable_nested_tensor=False)
        # TransformerEncoder deep-copies one layer: draw every layer's weights anew
        for block in self.layers.layers:
            for lin in (block.linear1, block.linear2, block.self_attn.out_proj):
                nn.init.xavier_uniform_(lin.weight)
                nn.init.normal_(lin.bias, std=1e-6)
            block.self_attn._reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(self.dropout(x + self.pos_embedding))


class VisionTransformer(nn.Module):
    """Patch embedding, class token, learned positions, pre-norm transformer, linear head.

    Parameters
    ----------
    image_size : tuple (H, W)
    in_channels, n_classes : int
    patch_size : int
        Side of the square patches; must divide H and W.
    dim, depth, heads, mlp_dim : int
        Token width, number of blocks, attention heads, MLP width.
    dropout : float
    """

    def __init__(self, image_size: tuple[int, int], in_channels: int, n_classes: int, *,
                 patch_size: int, dim: int, depth: int, heads: int, mlp_dim: int,
                 dropout: float = 0.0) -> None:
        super().__init__()
        h, w = image_size
        self.patch_size = patch_size
        self.conv_proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)
        fan_in = in_channels * patch_size**2
        nn.init.trunc_normal_(self.conv_proj.weight, std=math.sqrt(1.0 / fan_in))
        nn.init.zeros_(self.conv_proj.bias)  # type: ignore[arg-type]  # bias=True above
        self.class_token = nn.Parameter(torch.zeros(1, 1, dim))
        n_tokens = (h // patch_size) * (w // patch_size) + 1
        self.encoder = _Encoder(n_tokens, dim, depth, heads, mlp_dim, dropout)
        self.heads = nn.Sequential(OrderedDict(head=nn.Linear(dim, n_classes)))

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.conv_proj(x).flatten(2).transpose(1, 2)  # (N, patches, dim)
        cls = self.class_token.expand(tokens.shape[0], -1, -1)
        z = self.encoder(torch.cat([cls, tokens], dim=1))
        return self.heads(z[:, 0])


def resize_pos_embedding(state: StateDict, target: StateDict) -> StateDict:
    """Interpolate the file's position embedding to the model's grid (bicubic).

    Lets weights trained at one image size (e.g. 224) initialise a model for
    another (e.g. 384, or 32 for a native model); the class-token position is
    kept as is. A no-op when the shapes agree.
    """
    if POS_KEY not in state or POS_KEY not in target or state[POS_KEY].shape == target[POS_KEY].shape:
        return state
    old, new = state[POS_KEY], target[POS_KEY]
    g_old, g_new = math.isqrt(old.shape[1] - 1), math.isqrt(new.shape[1] - 1)
    if g_old**2 != old.shape[1] - 1 or g_new**2 != new.shape[1] - 1 or old.shape[2] != new.shape[2]:
        return state  # not square grids or another width: load_weights reports the mismatch
    grid = old[:, 1:].reshape(1, g_old, g_old, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(g_new, g_new), mode="bicubic", align_corners=True)
    grid = grid.permute(0, 2, 3, 1).reshape(1, g_new * g_new, -1)
    return {**state, POS_KEY: torch.cat([old[:, :1], grid], dim=1)}


def _square_image(input_shape: tuple[int, ...], patch_size: int, model: str) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise ValueError(_error("input_shape", f"(channels, height, width) for the model {model!r}",
                                describe(input_shape)))
    c, h, w = input_shape
    if patch_size < 1 or h % patch_size or w % patch_size:
        raise ValueError(_error("patch_size", f"a divisor of the image height and width ({h}, {w})"
                                f" for {model!r}", describe(patch_size)))
    return c, h, w


@register_model("vit_tiny")
def vit_tiny(
    *,
    n_classes: int,
    input_shape: tuple[int, ...],
    patch_size: int = 4,
    dim: int = 64,
    depth: int = 4,
    heads: int = 4,
    mlp_ratio: float = 2.0,
    dropout: float = 0.0,
    weights: Path | None = None,
) -> nn.Module:
    """A small vision transformer in plain torch (no torchvision).

    Parameters
    ----------
    patch_size : int, default 4
        Must divide the image height and width (4 fits 8, 28 and 32 pixels).
    dim, depth, heads : int, default 64, 4, 4
        ``heads`` must divide ``dim``.
    mlp_ratio : float, default 2.0
        MLP width as a multiple of ``dim``.
    dropout : float, default 0.0
    weights : path, optional
        A state_dict file of the same architecture (its position embedding is
        interpolated to this image size); the head is replaced when its size
        differs from ``n_classes``.

    Examples
    --------
    >>> import torch
    >>> from expost.experiments.models import build_model
    >>> model = build_model("vit_tiny", n_classes=10, input_shape=(1, 28, 28), depth=2)
    >>> model(torch.zeros(3, 1, 28, 28)).shape
    torch.Size([3, 10])
    """
    c, h, w = _square_image(input_shape, patch_size, "vit_tiny")
    if dim < 1 or depth < 1 or heads < 1 or dim % heads:
        raise ValueError(_error("heads", f"a positive divisor of dim={dim} (and depth >= 1)",
                                describe(heads)))
    if not 0.0 <= dropout < 1.0:
        raise ValueError(_error("dropout", "a probability in [0, 1)", describe(dropout)))
    if mlp_ratio <= 0:
        raise ValueError(_error("mlp_ratio", "a positive number", describe(mlp_ratio)))
    model = VisionTransformer((h, w), c, n_classes, patch_size=patch_size, dim=dim, depth=depth,
                              heads=heads, mlp_dim=max(1, round(mlp_ratio * dim)),
                              dropout=float(dropout))
    if weights is not None:
        load_weights(model, weights, head="heads", key_map=resize_pos_embedding)
    return model


@register_model("vit")
def vit(
    *,
    n_classes: int,
    input_shape: tuple[int, ...],
    weights: Path | None = None,
    pretrained: bool = False,
    dropout: float = 0.0,
    attention_dropout: float = 0.0,
) -> nn.Module:
    """torchvision's ViT-B/16 (the paper's CIFAR model) for square 3-channel images.

    Needs torchvision (imported only here; ImportError naming the install
    command otherwise). The image side must be a multiple of 16 (the paper:
    CIFAR resized to 224, the dataset option ``image_size=224``).

    Parameters
    ----------
    weights : path, optional
        A ViT-B/16 state_dict file (torchvision key names); loaded strictly
        except the ``heads`` head (replaced when its size differs from
        ``n_classes``), the position embedding interpolated to the image size.
    pretrained : bool, default False
        Require ``weights`` (nothing is ever downloaded).
    dropout, attention_dropout : float, default 0.0

    Examples
    --------
    >>> from expost.experiments.models import build_model
    >>> build_model("vit", n_classes=10, input_shape=(3, 224, 224))  # doctest: +SKIP
    """
    c, h, w = _square_image(input_shape, 16, "vit")
    if c != 3 or h != w:
        raise ValueError(_error("input_shape", "square 3-channel images for 'vit' (e.g. the "
                                "dataset option image_size=224)", describe(input_shape)))
    if pretrained and weights is None:
        raise ValueError(no_weights_message("vit", "vit_b_16"))
    tv = import_torchvision("vit")
    model = tv.models.vit_b_16(weights=None, image_size=h, num_classes=n_classes,
                               dropout=float(dropout), attention_dropout=float(attention_dropout))
    if weights is not None:
        load_weights(model, weights, head="heads", key_map=resize_pos_embedding)
    return model
