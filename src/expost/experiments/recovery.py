"""What a training does when something goes wrong: divergence and lost checkpoints.

A non-finite or exploding loss ends a training as ``diverged``
(:func:`check_divergence`); a resumed training whose recorded checkpoint is
missing or unreadable continues from its latest good checkpoint, or from the
start, with a warning (:func:`restore`), and the checkpoints a killed process
left behind are removed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .checkpoint import (
    CheckpointError,
    TrainingState,
    checkpoint_file,
    load_checkpoint,
    remove_orphans,
    resume_candidates,
)

__all__ = ["DIVERGENCE_FACTOR", "TrainingDiverged", "check_divergence", "restore", "warn"]


#: A loss above ``DIVERGENCE_FACTOR * log(n_classes)`` (that of a uniform prediction) counts
#: as exploding: the true class then gets a probability below exp(-1000 log m).
DIVERGENCE_FACTOR = 1000.0


class TrainingDiverged(RuntimeError):
    """A training's loss became non-finite or exploded; the training is marked ``diverged``."""


def warn(message: str) -> None:
    print(f"expost: warning: {message}", file=sys.stderr, flush=True)


def check_divergence(train_key: str, interval: int, n_classes: int, losses: dict[str, float]
                     ) -> None:
    """Raise :class:`TrainingDiverged` when a loss is non-finite or exploding.

    >>> check_divergence("weighted-s0", 0, 10, {"train_loss": 2.3, "val_loss": 2.2})
    >>> try:
    ...     check_divergence("weighted-s0", 3, 10, {"train_loss": 7e27, "val_loss": float("inf")})
    ... except TrainingDiverged as exc:
    ...     print(str(exc)[:77])
    training 'weighted-s0' diverged at interval 4: train_loss 7e+27, val_loss inf
    """
    bound = DIVERGENCE_FACTOR * max(float(np.log(n_classes)), 1.0)
    if all(np.isfinite(v) and v <= bound for v in losses.values()):
        return
    shown = ", ".join(f"{k} {v:.3g}" for k, v in losses.items())
    raise TrainingDiverged(f"training {train_key!r} diverged at interval {interval + 1}: {shown} "
                           f"(a loss above {bound:.0f} or not finite); lower optimizer.lr or "
                           "set training.grad_clip.")


def restore(build: Callable[[], Any], key: str, run_dir: Path, row: dict[str, Any], *,
            checkpoint_every: int | str = 1) -> tuple[Any, TrainingState]:
    """The training's pieces (``build()``, train.py's ``_Training``) at its last good
    checkpoint (parts and generators restored) and its state.

    The checkpoint the store records comes first; when it is missing or
    unreadable, the latest other checkpoint at or before the committed interval
    (the intervals after it are trained again, identically), else a fresh start,
    with a warning. Then every other checkpoint and temporary file of the
    training is removed (orphans of a kill between commit and deletion).

    With ``checkpoint_every`` k, the intervals after the last multiple of k are
    committed without a checkpoint: resuming from that multiple is expected, not
    warned about; with ``"auto"``, resuming from the recorded checkpoint, or from
    the start when none was recorded, is.
    """
    done = row["done_intervals"]
    recorded = checkpoint_file(run_dir, row["checkpoint"], key) if row["checkpoint"] \
        else None
    if checkpoint_every == "auto":  # the interval the recorded checkpoint is after
        expected = 0 if recorded is None else _checkpoint_interval(recorded, done)
    else:
        expected = done - done % int(checkpoint_every)
    training = build()
    for path in resume_candidates(training.checkpoint_dir, recorded):
        try:
            checkpoint = load_checkpoint(path)
            if checkpoint["train_key"] != key or int(checkpoint["interval"]) > done:
                continue  # another training's, or written but never committed
            state = TrainingState.from_checkpoint(checkpoint, key, training.parts)
        except (CheckpointError, KeyError, TypeError, ValueError, RuntimeError) as exc:
            warn(f"{exc} Resuming {key!r} from an earlier checkpoint or from the start.")
            training = build()  # parts may be half restored
            continue
        if state.interval not in (done, expected):
            warn(f"resuming {key!r} from interval {state.interval} (the store is at {done}).")
        remove_orphans(training.checkpoint_dir, keep=path)
        training.sampler.resume(state)
        return training, state
    if expected:
        warn(f"no usable checkpoint of {key!r}: training it again from the start.")
    remove_orphans(training.checkpoint_dir, keep=None)
    state = TrainingState()
    training.sampler.resume(state)
    return training, state


def _checkpoint_interval(path: Path, default: int) -> int:
    """The intervals done at the checkpoint ``ckpt-<last interval, 0-based>.pt``.

    >>> _checkpoint_interval(Path("checkpoints/k/ckpt-00004.pt"), 9)
    5
    """
    digits = path.stem.removeprefix("ckpt-")
    return int(digits) + 1 if digits.isdigit() else default
