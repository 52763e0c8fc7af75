"""The optimizer, the learning-rate schedule and the steps at which a training is evaluated."""

from __future__ import annotations

import math
from typing import Any

import torch

from .config import ExperimentConfig

__all__ = ["build_optimizer", "build_scheduler", "eval_steps", "steps_per_epoch"]


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Optimizer steps in one pass over ``n_train`` examples (the last batch may be short)."""
    return max(1, math.ceil(n_train / batch_size))


def eval_steps(config: ExperimentConfig, n_train: int) -> tuple[list[int], int, int]:
    """The optimizer steps after which the model is evaluated.

    Returns ``(steps, total_steps, steps_per_epoch)``: every epoch or every N steps,
    and always the last step.

    >>> from expost.experiments.config import load_config
    >>> eval_steps(load_config(overrides=["training={steps: 10, eval_every: 4}"]), 100)
    ([4, 8, 10], 10, 2)
    """
    t = config.training
    spe = steps_per_epoch(n_train, t.batch_size)
    if t.epochs is not None:
        total = t.epochs * spe
    else:
        assert t.steps is not None  # the config holds exactly one of epochs and steps
        total = int(t.steps)
    every = spe if t.eval_every == "epoch" else int(t.eval_every)
    steps = list(range(every, total + 1, every))
    if not steps or steps[-1] != total:
        steps.append(total)
    return steps, total, spe


def build_optimizer(config: ExperimentConfig, params: Any) -> torch.optim.Optimizer:
    """The optimizer of the config (Adam, AdamW or SGD with their hyperparameters); Adam
    and AdamW fused where ``optimizer.fused`` and the parameters' device allow it."""
    o = config.optimizer
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov,
                               weight_decay=o.weight_decay)
    cls = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
    params = list(params)
    fused = True if o.fused and fused_supported(params) else None  # None: torch's default
    return cls(params, lr=o.lr, betas=(o.betas[0], o.betas[1]), eps=o.eps,
               weight_decay=o.weight_decay, fused=fused)


#: Devices whose parameters torch's fused Adam and AdamW update.
FUSED_DEVICES = ("cpu", "cuda")


def fused_supported(params: list[Any]) -> bool:
    """Whether torch's fused Adam can update ``params`` (floating, all on one device it has)."""
    tensors = [p["params"] if isinstance(p, dict) else [p] for p in params]
    flat = [t for group in tensors for t in group]
    return bool(flat) and len({t.device for t in flat}) == 1 and all(
        t.device.type in FUSED_DEVICES and t.is_floating_point() for t in flat)


def build_scheduler(config: ExperimentConfig, optimizer: torch.optim.Optimizer, total_steps: int
                    ) -> tuple[Any, str]:
    """The LR schedule and when it steps: ``"step"`` (every optimizer step), ``"interval"``
    (after every evaluation) or ``"plateau"`` (after every evaluation, on the validation loss)."""
    s = config.schedule
    if s.name == "none":
        return None, "none"
    if s.name == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, s.step_size, s.gamma), "interval"
    if s.name == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=s.factor, patience=s.patience, threshold=s.threshold,
            cooldown=s.cooldown, min_lr=s.min_lr), "plateau"
    warm, final = s.warmup_steps, s.final_lr_ratio

    def factor(step: int) -> float:  # the factor of the lr used by optimizer step `step`
        if step < warm:
            return (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, total_steps - warm))
        return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor), "step"
