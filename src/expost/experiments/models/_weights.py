"""Pretrained weights from a file the user has, and the optional torchvision import.

expost never downloads: ``weights`` is the path of a ``state_dict`` saved with
:func:`torch.save` (torchvision key names for the torchvision architectures;
:mod:`.vit` also converts timm's layout and the original ``.npz`` files of
google-research/vision_transformer). Everything but the classification head
must match the model; the head is loaded when its shape fits ``n_classes`` and
kept freshly initialised (i.e. replaced) otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
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


#: How to fix a weights error on the command line (and in YAML); every weights error ends with it.
WEIGHTS_FIX = "Give the file with --set model.options.weights=PATH"
PRETRAINED_FIX = ", or train from random weights with --set model.options.pretrained=false"


def weights_fix(pretrained_option: bool) -> str:
    """The sentence that ends a weights error: which option to set, and how."""
    return WEIGHTS_FIX + (PRETRAINED_FIX if pretrained_option else "") + "."


def _weights_error(expected: str, got: str, fix: str) -> str:
    """``_error("weights", ...)`` followed by the fix."""
    return _error("weights", expected, got)[:-1] + f". {fix}"


def no_weights_message(model: str, where: str) -> str:
    """The error of ``pretrained: true`` without a ``weights`` file; ``where`` says which
    file the paper's recipe wants and how to save it."""
    return (f"`weights` must be a file when pretrained: true for {model!r} (nothing is "
            f"downloaded), got None. {weights_fix(True)} {where}")


def pretrained_check(model: str, where: str) -> Callable[..., None]:
    """A registry ``check`` refusing ``pretrained: true`` with ``weights: null`` when the
    config loads, before any data is read or any run directory is made."""

    def check(*, pretrained: bool = False, weights: Any = None, **_: Any) -> None:
        if pretrained and weights is None:
            raise ValueError(no_weights_message(model, where))

    return check


def _npz_state(p: Path, fix: str) -> StateDict:
    """The arrays of an ``.npz`` file (no pickled objects) as tensors, by their names."""
    try:
        with np.load(p, allow_pickle=False) as npz:
            return {k: torch.from_numpy(np.array(npz[k])) for k in npz.files}
    except Exception as exc:
        raise ValueError(_weights_error("an .npz file of numeric arrays (no pickled objects)",
                                        f"{str(p)!r}, which numpy cannot read ({exc})", fix)) from exc


def read_state_dict(path: str | os.PathLike[str], *, pretrained_option: bool = False) -> StateDict:
    """A state_dict from ``path`` (unwrapping ``{"state_dict": ...}`` / ``{"model": ...}``
    and the ``module.`` prefix of DataParallel checkpoints).

    A file whose name ends in ``.npz`` is read with ``np.load(allow_pickle=False)``
    (the original ViT checkpoints are such files); anything else with
    ``torch.load(weights_only=True)``. Neither can run code from the file.
    ``pretrained_option`` adds ``pretrained=false`` to the fix an error suggests.
    """
    fix = weights_fix(pretrained_option)
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(_weights_error("the path of an existing state_dict file",
                                               f"{str(p)!r}, which does not exist", fix))
    if p.suffix == ".npz":
        return _npz_state(p, fix)
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(_weights_error("a file saved with torch.save(model.state_dict())",
                                        f"{str(p)!r}, which torch.load cannot read ({exc})", fix)
                         ) from exc
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        raise TypeError(_weights_error("a state_dict (a mapping of names to tensors)",
                                       f"{describe(obj)} in {str(p)!r}", fix))
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_weights(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    head: str,
    key_map: Callable[[StateDict, StateDict], StateDict] | None = None,
    layouts: str = "torchvision key names",
    pretrained_option: bool = False,
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
        names, another library's layout, a position embedding for another
        image size) before the check.
    layouts : str
        The layouts the file may have, for the error message.
    pretrained_option : bool
        Whether the model has a ``pretrained`` option (errors then suggest
        ``pretrained=false`` as well as another file).

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
    state = read_state_dict(path, pretrained_option=pretrained_option)
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
        raise ValueError(_weights_error(
            f"a state_dict of this architecture ({type(model).__name__}, {layouts}) except "
            "possibly the head", f"{str(path)!r} with keys " + "; ".join(parts),
            weights_fix(pretrained_option)))
    head_fits = all(state[k].shape == target[k].shape for k in target if is_head(k) and k in state)
    keep = {k: v for k, v in state.items() if head_fits or not is_head(k)}
    model.load_state_dict(keep, strict=False)
    return model
