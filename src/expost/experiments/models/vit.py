"""Vision transformers (Dosovitskiy et al. 2021): a native small one, and torchvision's ViT-B/16.

The paper's CIFAR model is ViT-B/16 pretrained on ImageNet-21k, fine-tuned with
the recipe of google-research/vision_transformer (Appendix D.2; the paper gives
no image size: that repository fine-tunes CIFAR at 384 x 384). The native
:class:`VisionTransformer` builds the same architecture from
:class:`torch.nn.TransformerEncoder` at any size.

ImageNet-21k checkpoints come in three layouts, all loaded into torchvision's
``vit_b_16`` by :func:`vit_key_map`: torchvision's own key names, timm's
(``cls_token``, ``blocks.0.attn.qkv.weight``, ...; e.g. ``vit_base_patch16_224.
augreg_in21k`` or ``.orig_in21k``), and the original Flax ``.npz`` files of
google-research/vision_transformer (``Transformer/encoderblock_0/...``; e.g.
``imagenet21k/ViT-B_16.npz``). Their 21k-class head is replaced by a new one
for ``n_classes``, and their pre-logits layer (the original 21k checkpoints
have one) is dropped with a note, as that repository does when it fine-tunes.
"""

from __future__ import annotations

import math
import re
import warnings
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..._validation import _error, describe
from ._api import register_model
from ._weights import StateDict, import_torchvision, load_weights, pretrained_check

POS_KEY = "encoder.pos_embedding"

#: The ViT-B/16 checkpoint the paper's CIFAR recipe wants, and how to get it (no download here).
PAPER_VIT_WEIGHTS = (
    "The paper wants ViT-B/16 pretrained on ImageNet-21k (not 1k): the original ViT-B_16.npz or "
    "timm's vit_base_patch16_224.orig_in21k; see docs/datasets-models.md."
)

_TV_BLOCK = r"encoder.layers.encoder_layer_\1."

#: timm's ViT names -> torchvision's (``blocks.N`` -> ``encoder.layers.encoder_layer_N``).
_TIMM_RULES = [(re.compile(a), b) for a, b in [
    (r"^cls_token$", "class_token"),
    (r"^pos_embed$", POS_KEY),
    (r"^patch_embed\.proj\.", "conv_proj."),
    (r"^blocks\.(\d+)\.norm1\.", _TV_BLOCK + "ln_1."),
    (r"^blocks\.(\d+)\.attn\.qkv\.(weight|bias)$", _TV_BLOCK + r"self_attention.in_proj_\2"),
    (r"^blocks\.(\d+)\.attn\.proj\.", _TV_BLOCK + "self_attention.out_proj."),
    (r"^blocks\.(\d+)\.norm2\.", _TV_BLOCK + "ln_2."),
    (r"^blocks\.(\d+)\.mlp\.fc1\.", _TV_BLOCK + "mlp.0."),
    (r"^blocks\.(\d+)\.mlp\.fc2\.", _TV_BLOCK + "mlp.3."),
    (r"^norm\.", "encoder.ln."),
    (r"^head\.", "heads.head."),
    (r"^pre_logits\.fc\.", "heads.pre_logits."),
]]
#: torchvision's older names of the MLP layers (before its MLP block became ``torchvision.ops.MLP``).
_TV_LEGACY = [(re.compile(r"\.mlp\.linear_1\."), ".mlp.0."),
              (re.compile(r"\.mlp\.linear_2\."), ".mlp.3.")]


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


def _rename(state: StateDict, rules: list[tuple[re.Pattern[str], str]]) -> StateDict:
    out = {}
    for k, v in state.items():
        for pattern, repl in rules:
            k = pattern.sub(repl, k)
        out[k] = v
    return out


def _flax_to_torchvision(state: StateDict) -> StateDict:
    """The original Flax checkpoint's arrays (``embedding/kernel`` ...) in torchvision's layout.

    Flax stores dense kernels as (in, out) and the attention's as (dim, heads,
    head_dim) / (heads, head_dim, dim); torch stores (out, in). Names this does
    not know are kept, so that the strict check reports them.
    """
    flat = {k.removeprefix("opt/target/"): v for k, v in state.items()}
    out: StateDict = {}
    names = {"cls": "class_token", "Transformer/posembed_input/pos_embedding": POS_KEY,
             "embedding/bias": "conv_proj.bias", "Transformer/encoder_norm/scale": "encoder.ln.weight",
             "Transformer/encoder_norm/bias": "encoder.ln.bias", "head/bias": "heads.head.bias",
             "pre_logits/bias": "heads.pre_logits.bias"}
    dense = {"head/kernel": "heads.head.weight", "pre_logits/kernel": "heads.pre_logits.weight"}
    qkv: dict[str, dict[str, dict[str, torch.Tensor]]] = {}
    for k, v in flat.items():
        m = re.fullmatch(r"Transformer/encoderblock_(\d+)/(.+)", k)
        if k in names:
            out[names[k]] = v
        elif k in dense:
            out[dense[k]] = v.T
        elif k == "embedding/kernel":  # (patch, patch, in, dim) -> (dim, in, patch, patch)
            out["conv_proj.weight"] = v.permute(3, 2, 0, 1)
        elif m is None:
            out[k] = v
        else:
            block, rest = f"encoder.layers.encoder_layer_{m.group(1)}.", m.group(2)
            layer = re.fullmatch(r"(LayerNorm_0|LayerNorm_2)/(scale|bias)", rest)
            mlp = re.fullmatch(r"MlpBlock_3/Dense_([01])/(kernel|bias)", rest)
            att = re.fullmatch(r"MultiHeadDotProductAttention_1/(query|key|value|out)/(kernel|bias)",
                               rest)
            if layer:
                ln = "ln_1" if layer.group(1) == "LayerNorm_0" else "ln_2"
                out[f"{block}{ln}.{'weight' if layer.group(2) == 'scale' else 'bias'}"] = v
            elif mlp:
                idx = "0" if mlp.group(1) == "0" else "3"
                out[f"{block}mlp.{idx}.{'weight' if mlp.group(2) == 'kernel' else 'bias'}"] = (
                    v.T if mlp.group(2) == "kernel" else v)
            elif att and att.group(1) == "out":  # (heads, head_dim, dim) -> (dim, heads*head_dim)
                key = f"{block}self_attention.out_proj.{'weight' if att.group(2) == 'kernel' else 'bias'}"
                out[key] = v.reshape(-1, v.shape[-1]).T if att.group(2) == "kernel" else v
            elif att:  # q, k, v: (dim, heads, head_dim) -> one (3 * dim, dim) in_proj
                qkv.setdefault(block, {}).setdefault(att.group(2), {})[att.group(1)] = v
            else:
                out[k] = v
    for block, parts in qkv.items():
        for kind, qkv_parts in parts.items():
            if set(qkv_parts) != {"query", "key", "value"}:
                out.update({f"{block}{n}/{kind}": t for n, t in qkv_parts.items()})  # reported
                continue
            ordered = [qkv_parts[n] for n in ("query", "key", "value")]
            if kind == "kernel":
                out[f"{block}self_attention.in_proj_weight"] = torch.cat(
                    [t.reshape(t.shape[0], -1).T for t in ordered])
            else:
                out[f"{block}self_attention.in_proj_bias"] = torch.cat([t.reshape(-1) for t in ordered])
    return out


def checkpoint_layout(state: StateDict) -> str:
    """``"flax"``, ``"timm"`` or ``"torchvision"``: the layout of a ViT checkpoint.

    >>> checkpoint_layout({"cls_token": None, "blocks.0.norm1.weight": None})
    'timm'
    >>> checkpoint_layout({"Transformer/encoder_norm/scale": None})
    'flax'
    """
    if any("/" in k for k in state):
        return "flax"
    if "cls_token" in state or any(k.startswith(("blocks.", "patch_embed.")) for k in state):
        return "timm"
    return "torchvision"


def vit_key_map(state: StateDict, target: StateDict) -> StateDict:
    """A ViT checkpoint of any supported layout, adapted to torchvision's ``vit_b_16``.

    Converts timm's and the original Flax layout to torchvision's names,
    drops a pre-logits layer the model lacks (with a note, as the original
    repository does when it fine-tunes without one) and interpolates the
    position embedding to the model's image size (:func:`resize_pos_embedding`).
    The classification head is left to :func:`~._weights.load_weights`: a
    21k-class head does not fit ``n_classes`` and the model keeps its new head.
    """
    layout = checkpoint_layout(state)
    if layout == "flax":
        state = _flax_to_torchvision(state)
    elif layout == "timm":
        state = _rename(state, _TIMM_RULES)
    state = _rename(state, _TV_LEGACY)
    pre = [k for k in state if k.startswith("heads.pre_logits.") and k not in target]
    if pre:
        w = state.get("heads.pre_logits.weight")
        size = " x ".join(map(str, w.shape)) if w is not None else "?"
        warnings.warn(
            f"weights: dropped the pre-logits layer ({size}) of this {layout}-layout checkpoint "
            "(an original ImageNet-21k ViT has one); the new head reads the class token directly, "
            "as google-research/vision_transformer fine-tunes", UserWarning, stacklevel=2)
        state = {k: v for k, v in state.items() if k not in pre}
    return resize_pos_embedding(state, target)


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


@register_model("vit", check=pretrained_check("vit", PAPER_VIT_WEIGHTS))
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
    command otherwise). The image side must be a multiple of 16 (the paper's
    configs: CIFAR resized to 384, the ViT repository's fine-tuning size; 224
    in the faster variants; the dataset option ``image_size``).

    Parameters
    ----------
    weights : path, optional
        A ViT-B/16 checkpoint: a state_dict in torchvision's or timm's layout,
        or an original ``.npz`` of google-research/vision_transformer (read
        with ``allow_pickle=False``); see :func:`vit_key_map`. Loaded strictly
        except the head (replaced when its size differs from ``n_classes``)
        and a pre-logits layer (dropped with a note); the position embedding
        is interpolated to the image size (e.g. 224 -> 384).
        :data:`PAPER_VIT_WEIGHTS` says which file the paper's recipe wants.
    pretrained : bool, default False
        Require ``weights`` (nothing is ever downloaded); ``pretrained: true``
        without ``weights`` is refused when the config loads.
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
    pretrained_check("vit", PAPER_VIT_WEIGHTS)(pretrained=pretrained, weights=weights)
    tv = import_torchvision("vit")
    model = tv.models.vit_b_16(weights=None, image_size=h, num_classes=n_classes,
                               dropout=float(dropout), attention_dropout=float(attention_dropout))
    if weights is not None:
        load_weights(model, weights, head="heads.head", key_map=vit_key_map,
                     layouts="torchvision's, timm's or the original .npz layout",
                     pretrained_option=True)
    return model
