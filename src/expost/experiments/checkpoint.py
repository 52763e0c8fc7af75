"""Where a training stands, and its checkpoint: tensors and plain values only.

:class:`TrainingState` is the position of a training (interval, optimizer
step, epoch, batch within the epoch) and its best validation model. With the
live objects of the training (:class:`TrainingParts`: model, optimizer,
schedule and the data-order generator) and every global generator's state it
converts to a checkpoint, a dict that :func:`torch.load` reads back with
``weights_only=True``, and from one, restoring those objects and generators,
so that a resumed training continues bit for bit like an uninterrupted one on
CPU.

Generator states are stored as tensors: Python's ``random`` state as its
version, its 625 words (an int64 tensor) and the cached Gaussian; numpy's
legacy global generator as the parts of its ``get_state(legacy=False)`` dict;
torch's (and CUDA's) states are byte tensors already.

On disk (format 3) the checkpoint's small tensors are packed: one flat tensor
per dtype and device holds them, and each one's place in the nest of dicts and
lists holds a small tuple naming its slice and shape (:func:`pack_tensors`).
Pickling a tensor costs about twenty objects, so the default run's checkpoint
(20 tensors) takes 2.2 ms to serialise unpacked and 1.3 ms packed
(benchmarks/checkpoint.py); tensors of 256 KiB and more are left as they are,
since copying them would cost more than it saves. The values are copied
exactly, and :func:`load_checkpoint` unpacks them into the same nest as before
(format 2 files, unpacked, still load).
"""

from __future__ import annotations

import math
import pickle
import random
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "TrainingParts",
    "TrainingState",
    "checkpoint_file",
    "load_checkpoint",
    "pack_tensors",
    "remove_orphans",
    "resume_candidates",
    "save_atomic",
    "unpack_tensors",
]

#: 3: tensors packed into one flat tensor per dtype and device (:func:`pack_tensors`);
#: 2: generator states as tensors (weights_only=True), each tensor pickled on its own;
#: 1 pickled the generator states. Formats 2 and 3 load.
CHECKPOINT_FORMAT = 3
_READABLE_FORMATS = (2, 3)
#: Tensors below this size are packed; a larger one is pickled on its own (its twenty
#: objects cost less than copying it into the flat tensor would).
_PACK_BYTES = 1 << 18
#: Marks a packed tensor's place: ``(_TENSOR, group, offset, shape)``.
_TENSOR = "\x00expost.tensor"


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated, unsafe or of another format or training."""


@dataclass
class TrainingParts:
    """The live objects of one training that a checkpoint saves and restores."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any  # a torch LR scheduler, or None for a constant rate
    data_order: torch.Generator  # draws each epoch's order of the training examples


@dataclass
class TrainingState:
    """Where a training stands between two optimizer steps.

    Attributes
    ----------
    interval : int
        Intervals done (evaluated and committed).
    step : int
        Optimizer steps taken.
    epoch : int
        Whole passes over the training set done.
    pos : int
        Batches of the current epoch done.
    epoch_order_state : Tensor or None
        The data-order generator's state at the start of the current epoch (the
        epoch's order is redrawn from it on resume); None before the first epoch.
    best_val_loss : float
        The lowest validation loss so far (``inf`` until the best model is kept).
    best_model : dict or None
        The model's state at that loss, for trainings that keep it (MetaCost's base).
    """

    interval: int = 0
    step: int = 0
    epoch: int = 0
    pos: int = 0
    epoch_order_state: torch.Tensor | None = None
    best_val_loss: float = math.inf
    best_model: dict[str, torch.Tensor] | None = None

    def to_checkpoint(self, train_key: str, parts: TrainingParts, device: torch.device
                      ) -> dict[str, Any]:
        """This state, the parts' states and every generator's state as one checkpoint."""
        return {
            "format": CHECKPOINT_FORMAT, "train_key": train_key,
            "interval": self.interval, "step": self.step, "epoch": self.epoch, "pos": self.pos,
            "epoch_gen_state": self.epoch_order_state,
            "gen_state": parts.data_order.get_state(), "rng": global_rng_states(device),
            "model": parts.model.state_dict(), "optimizer": parts.optimizer.state_dict(),
            "scheduler": None if parts.scheduler is None else parts.scheduler.state_dict(),
            "best": {"val_loss": self.best_val_loss, "model": self.best_model},
        }

    @classmethod
    def from_checkpoint(cls, checkpoint: dict[str, Any], train_key: str, parts: TrainingParts
                        ) -> TrainingState:
        """Restore ``parts`` and every generator from ``checkpoint``; return the state.

        Raises RuntimeError when the checkpoint belongs to another training.
        """
        if checkpoint["train_key"] != train_key:
            raise RuntimeError(f"The checkpoint of {checkpoint['train_key']!r} does not belong "
                               f"to {train_key!r}.")
        parts.model.load_state_dict(checkpoint["model"])
        parts.optimizer.load_state_dict(checkpoint["optimizer"])
        if parts.scheduler is not None:
            parts.scheduler.load_state_dict(checkpoint["scheduler"])
        set_global_rng_states(checkpoint["rng"])
        parts.data_order.set_state(checkpoint["gen_state"])
        best = checkpoint["best"]
        return cls(interval=int(checkpoint["interval"]), step=int(checkpoint["step"]),
                   epoch=int(checkpoint["epoch"]), pos=int(checkpoint["pos"]),
                   epoch_order_state=checkpoint["epoch_gen_state"],
                   best_val_loss=float(best["val_loss"]), best_model=best["model"])


# ---------------------------------------------------------------- global generators
def global_rng_states(device: torch.device) -> dict[str, Any]:
    """Python's, numpy's, torch's (and on CUDA the GPUs') global generator states.

    >>> s = global_rng_states(torch.device("cpu"))
    >>> a = (random.random(), np.random.rand(), torch.rand(1))
    >>> set_global_rng_states(s)
    >>> (random.random(), np.random.rand(), torch.rand(1)) == a
    True
    """
    version, words, gauss_next = random.getstate()
    np_state = np.random.get_state(legacy=False)  # noqa: NPY002 - saved for an exact resume
    return {
        "python": {"version": version, "state": torch.tensor(words, dtype=torch.int64),
                   "gauss_next": gauss_next},
        "numpy": {"bit_generator": np_state["bit_generator"],
                  "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                  "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                  "gauss": float(np_state["gauss"])},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else None,
    }


def set_global_rng_states(states: dict[str, Any]) -> None:
    """Set the global generators to the states of :func:`global_rng_states`."""
    py = states["python"]
    random.setstate((py["version"], tuple(py["state"].tolist()), py["gauss_next"]))
    npy = states["numpy"]
    np.random.set_state({  # noqa: NPY002
        "bit_generator": npy["bit_generator"],
        "state": {"key": npy["key"].numpy().astype(np.uint32), "pos": npy["pos"]},
        "has_gauss": npy["has_gauss"], "gauss": npy["gauss"],
    })
    torch.set_rng_state(states["torch"])
    if states.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


# ---------------------------------------------------------------- files
def pack_tensors(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """``checkpoint`` with its small tensors packed, one flat tensor per dtype and device.

    Every tensor under 256 KiB in the nest of dicts (ordered ones keep their
    ``_metadata``), lists and tuples is replaced by ``(marker, group, offset,
    shape)`` and its values copied into the flat tensor ``packed[group]`` from
    ``offset`` on; larger ones stay where they are. :func:`unpack_tensors`
    reverses it exactly.

    >>> ck = {"a": torch.arange(6).reshape(2, 3), "b": [torch.ones(()), 7]}
    >>> back = unpack_tensors(pack_tensors(ck))
    >>> torch.equal(back["a"], ck["a"]), back["b"][0].shape, back["b"][1]
    (True, torch.Size([]), 7)
    """
    groups: dict[str, list[torch.Tensor]] = {}
    sizes: dict[str, int] = {}

    def walk(obj: Any) -> Any:
        if isinstance(obj, torch.Tensor) and obj.numel() * obj.element_size() < _PACK_BYTES:
            group = f"{obj.dtype}|{obj.device}"
            flat = obj.detach().reshape(-1)
            offset = sizes.get(group, 0)
            groups.setdefault(group, []).append(flat)
            sizes[group] = offset + flat.numel()
            return (_TENSOR, group, offset, tuple(obj.shape))
        return _rebuilt(obj, walk)

    nest = walk({k: v for k, v in checkpoint.items() if k != "format"})
    packed = {g: ts[0] if len(ts) == 1 else torch.cat(ts) for g, ts in groups.items()}
    return {"format": CHECKPOINT_FORMAT, "packed": packed, "nest": nest}


def unpack_tensors(stored: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint :func:`pack_tensors` packed, each tensor a copy of its slice (no tensor
    shares memory with another, nor keeps the flat ones alive)."""
    packed = stored["packed"]

    def walk(obj: Any) -> Any:
        if isinstance(obj, tuple) and len(obj) == 4 and isinstance(obj[0], str) \
                and obj[0] == _TENSOR:
            _, group, offset, shape = obj
            return packed[group][offset:offset + math.prod(shape)].view(shape).clone()
        return _rebuilt(obj, walk)

    return {"format": stored["format"], **walk(stored["nest"])}


def _rebuilt(obj: Any, walk: Callable[[Any], Any]) -> Any:
    """``obj`` with ``walk`` applied to each item of a dict, list or tuple (an ordered dict
    stays one and keeps its ``_metadata``, a state dict's module versions); else ``obj``."""
    if isinstance(obj, dict):
        out = {k: walk(v) for k, v in obj.items()}
        if not isinstance(obj, OrderedDict):
            return out
        ordered = OrderedDict(out)
        if hasattr(obj, "_metadata"):
            ordered._metadata = obj._metadata  # type: ignore[attr-defined]
        return ordered
    if isinstance(obj, list):
        return [walk(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(walk(v) for v in obj)
    return obj


def save_atomic(checkpoint: dict[str, Any], path: Path) -> None:
    """Write ``checkpoint`` to ``path`` whole or not at all (temporary file, fsync, rename),
    its tensors packed (:func:`pack_tensors`)."""
    from .._atomic import atomic_open

    stored = pack_tensors(checkpoint)
    with atomic_open(path, "wb") as fh:
        torch.save(stored, fh)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint onto the CPU with ``weights_only=True`` (no code runs on load).

    Raises :class:`CheckpointError` (a RuntimeError) for a missing or unreadable
    file, and for one that is not a checkpoint of this format (e.g. one written
    by an older expost, which pickled generator states).
    """
    if not Path(path).is_file():
        raise CheckpointError(f"the checkpoint {str(path)!r} is missing.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # torch's message (chained) names what it refused
        raise CheckpointError(
            f"{str(path)!r} is not a checkpoint of tensors and plain values only (torch.load "
            "with weights_only=True refused it); it was probably written by an older expost: "
            "start the experiment afresh (--force-new)."
        ) from exc
    except Exception as exc:  # torch raises anything on a truncated file
        raise CheckpointError(f"the checkpoint {str(path)!r} cannot be read ({exc}).") from None
    found = checkpoint.get("format") if isinstance(checkpoint, dict) else None
    if found not in _READABLE_FORMATS:
        raise CheckpointError(f"{str(path)!r} is a checkpoint of format {found!r}, expected "
                              f"{CHECKPOINT_FORMAT}: start the experiment afresh (--force-new).")
    if found == 3:
        try:
            checkpoint = unpack_tensors(checkpoint)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"the checkpoint {str(path)!r} cannot be read (its packed "
                                  f"tensors do not match their layout: {exc}).") from None
    return checkpoint


# ---------------------------------------------------------------- where checkpoints live
def checkpoint_file(run_dir: Path, relative: str, train_key: str) -> Path:
    """The file of a checkpoint path read from the store, confined to ``RUN_DIR/checkpoints``.

    Raises ValueError for a path that leads elsewhere (``..``, an absolute
    path, a symbolic link out): such a path is never loaded nor deleted.

    >>> checkpoint_file(Path("r"), "checkpoints/k/ckpt-00001.pt", "k").name
    'ckpt-00001.pt'
    """
    from .._atomic import confined

    return confined(Path(run_dir) / relative, Path(run_dir) / "checkpoints",
                    what=f"the checkpoint path stored for training {train_key!r}")


def resume_candidates(directory: Path, recorded: Path | None) -> list[Path]:
    """The checkpoints to try when resuming: the one the store records first, then every
    other ``ckpt-*.pt`` of the training's folder, latest interval first."""
    others = sorted(directory.glob("ckpt-*.pt"), reverse=True) if directory.is_dir() else []
    first = [] if recorded is None else [recorded]
    return first + [p for p in others if p != recorded]


def remove_orphans(directory: Path, keep: Path | None) -> list[Path]:
    """Delete the checkpoints and temporary files in ``directory`` other than ``keep``
    (left by a process killed between a commit and the deletion); return those removed."""
    if not directory.is_dir():
        return []
    removed = []
    for path in [*directory.glob("ckpt-*.pt"), *directory.glob(".*.tmp")]:
        if keep is None or path.name != keep.name:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
