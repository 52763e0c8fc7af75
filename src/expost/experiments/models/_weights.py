"""Pretrained weights from a file the user has, and the optional torchvision import.

expost never downloads: ``weights`` is the path of a ``state_dict`` saved with
:func:`torch.save` (torchvision key names for the torchvision architectures).
Everything but the classification head must match the model; the head is
loaded when its shape fits ``n_classes`` and kept freshly initialised (i.e.
replaced) otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..._validation import _error, describe

#: The command that installs the optional dependency of "densenet121" and "vit": the pins
#: live once, in scripts/setup (torchvision 0.29.1 needs torch 2.14.1, so this replaces the
#: CPU build that a plain ``bash scripts/setup`` installs).
TORCHVISION_INSTALL = "bash scripts/setup --vision (pip install torch==2.14.1 torchvision==0.29.1)"

StateDict = dict[str, torch.Tensor]


def import_torchvision(model: str) -> Any:
    """Import torchvision, or raise ImportError naming the install command."""
    try:
        import torchvision
    except ImportError as exc:
        raise ImportError(
            f"The model {model!r} is built by torchvision, which is not installed. "
            f"Install it with: {TORCHVISION_INSTALL} "
            "(or use the native models 'densenet_small' / 'vit_tiny', which need only torch)."
        ) from exc
    return torchvision


def no_weights_message(model: str, tv_builder: str) -> str:
    return _error(
        "weights",
        "the path of a state_dict file when pretrained=True (expost never downloads weights)",
        "None",
    ) + (
        " Save one on a machine with internet access, e.g. python -c \"import torch, "
        f"torchvision; torch.save(torchvision.models.{tv_builder}(weights='DEFAULT')"
        f".state_dict(), '{model}.pth')\", then pass weights='{model}.pth'."
    )


def read_state_dict(path: str | os.PathLike[str]) -> StateDict:
    """A state_dict from ``path`` (unwrapping ``{"state_dict": ...}`` / ``{"model": ...}``
    and the ``module.`` prefix of DataParallel checkpoints)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(_error("weights", "the path of an existing state_dict file",
                                       f"{str(p)!r}, which does not exist"))
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(_error("weights", "a file saved with torch.save(model.state_dict())",
                                f"{str(p)!r}, which torch.load cannot read ({exc})")) from exc
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        raise TypeError(_error("weights", "a state_dict (a mapping of names to tensors)",
                               f"{describe(obj)} in {str(p)!r}"))
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_weights(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    head: str,
    key_map: Callable[[StateDict, StateDict], StateDict] | None = None,
) -> nn.Module:
    """Load a state_dict file into ``model``, strictly except the head.

    Parameters
    ----------
    model : nn.Module
        The freshly built model (its head already sized for ``n_classes``).
    path : path
        A file saved with ``torch.save(state_dict)``.
    head : str
        Prefix of the head's parameters (``"classifier"``, ``"heads"``,
        ``"head"``). A head whose shapes differ from the model's is skipped
        (the model keeps its new head); every other parameter and buffer
        must be present with the model's shape, and the file must hold
        nothing else.
    key_map : callable, optional
        ``key_map(state, target) -> state`` adapting the file (legacy key
        names, a position embedding for another image size) before the check.

    Examples
    --------
    >>> import tempfile, pathlib, torch
    >>> from torch import nn
    >>> src = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 10))
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "w.pth"
    >>> torch.save(src.state_dict(), f)
    >>> dst = load_weights(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)), f, head="2")
    >>> torch.equal(dst[0].weight, src[0].weight), dst[2].weight.shape
    (True, torch.Size([3, 8]))
    """
    state = read_state_dict(path)
    target = model.state_dict()
    if key_map is not None:
        state = key_map(state, target)

    def is_head(k: str) -> bool:
        return k == head or k.startswith(head + ".")

    unexpected = [k for k in state if k not in target]
    # BatchNorm's step counter is absent from files older than PyTorch 0.4.1; it is not a weight
    missing = [k for k in target if k not in state and not is_head(k)
               and not k.endswith("num_batches_tracked")]
    wrong = [
        f"{k} {tuple(state[k].shape)} (model: {tuple(target[k].shape)})"
        for k in state if k in target and not is_head(k) and state[k].shape != target[k].shape
    ]
    if unexpected or missing or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")
        if wrong:
            parts.append(f"{len(wrong)} of another shape (e.g. {wrong[:2]})")
        raise ValueError(
            _error("weights", f"a state_dict of this architecture ({type(model).__name__}, "
                   "torchvision key names) except possibly the head",
                   f"{str(path)!r} with keys " + "; ".join(parts))
        )
    head_fits = all(state[k].shape == target[k].shape for k in target if is_head(k) and k in state)
    keep = {k: v for k, v in state.items() if head_fits or not is_head(k)}
    model.load_state_dict(keep, strict=False)
    return model
