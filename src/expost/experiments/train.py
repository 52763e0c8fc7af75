r"""One training: the loop, per-interval evaluation, checkpoints and exact resume.

A training (one ``train_key``: a training kind and a seed) runs for a fixed
number of optimizer steps and is evaluated at fixed steps (every epoch or
every N steps, and at the last step). At each evaluation it

1. predicts the validation and test sets, stores the test predictions as
   float16 log-probabilities and computes the six metrics of every regime that
   is a view of this training **from the stored copy**
   (:mod:`~expost.experiments.evaluate`);
2. steps an interval-based schedule (ReduceLROnPlateau on the validation loss
   of the loss being trained, or a step decay);
3. writes a checkpoint atomically (temporary file + ``os.replace``) and then
   commits the interval's rows and the pointer to that checkpoint in one
   transaction (:meth:`~expost.experiments.store.ResultStore.commit_interval`).

Reproducibility. The seed fixes, in this order, Python's, numpy's and torch's
global generators, the model's initial weights (so every regime of one seed
starts from the same weights: a paired comparison), and a dedicated generator
for the data order. A checkpoint holds the model, optimizer and scheduler
states, every generator's state and the position in the epoch (the generator
state at the start of the epoch, from which the epoch's order is redrawn), so
that a resumed training continues bit for bit like an uninterrupted one on CPU.

Losses. ``weighted`` and ``inverse_prior`` train with
:func:`expost.nn.functional.utility_weighted_cross_entropy` (``reduction="mean"``,
the paper's plain mean, Eq 24); the other kinds with plain cross-entropy.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from numpy.typing import NDArray

from .._decisions import decide
from .._scoring import weighted_loss
from .._utility import Utility
from .config import ExperimentConfig
from .evaluate import decode_probabilities, encode_log_probs, interval_metrics
from .objective import ResolvedObjective
from .regimes import TRAININGS
from .store import ResultStore

__all__ = [
    "TrainingJob",
    "TrainingSetup",
    "build_optimizer",
    "build_scheduler",
    "eval_steps",
    "predict_log_probs",
    "resolve_device",
    "run_training",
    "training_utility",
]

CHECKPOINT_FORMAT = 1


# ---------------------------------------------------------------- small pieces
def resolve_device(device: str) -> torch.device:
    """``"auto"`` is CUDA when available, else CPU; anything else as torch reads it."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} was asked for but CUDA is not available; "
                           "use device: auto or cpu.")
    return dev


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
    total = t.epochs * spe if t.epochs is not None else int(t.steps)  # type: ignore[operator]
    every = spe if t.eval_every == "epoch" else int(t.eval_every)
    steps = list(range(every, total + 1, every))
    if not steps or steps[-1] != total:
        steps.append(total)
    return steps, total, spe


def training_utility(kind: str, objective: ResolvedObjective) -> Utility | None:
    r"""The utility a training kind's loss is weighted with (None: plain cross-entropy).

    For ``resampled`` it is the class weights the resampling implements,
    :math:`w_y \propto \sum_a u(a, y)` (normalised with Eq 21): the validation
    loss that the plateau schedule watches is the resampled loss in expectation.
    """
    spec = TRAININGS[kind]
    if spec.weighted == "objective":
        return objective.utility
    if spec.weighted == "inverse_prior":
        return objective.inverse_prior_utility
    if spec.sampler == "cost_proportionate":
        return Utility.from_class_weights(objective.utility.matrix.sum(axis=0)).normalized(
            objective.prior)
    return None


def build_optimizer(config: ExperimentConfig, params: Any) -> torch.optim.Optimizer:
    """The optimizer of the config (Adam, AdamW or SGD with their hyperparameters)."""
    o = config.optimizer
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov,
                               weight_decay=o.weight_decay)
    cls = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
    return cls(params, lr=o.lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay)


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


# ---------------------------------------------------------------- batches
class BatchSource:
    """Batches of one split, with labels that may differ from the data set's (MetaCost).

    Three paths: a :class:`~torch.utils.data.TensorDataset` is indexed directly
    (moved to the GPU once when it fits); a data set with ``get_batch(indices)``
    builds whole batches itself; anything else goes through a
    :class:`~torch.utils.data.DataLoader` over our own index batches.
    """

    def __init__(self, dataset: Any, labels: NDArray[np.int64], device: torch.device, *,
                 num_workers: int = 0) -> None:
        self.dataset = dataset
        self.n = len(dataset)
        self.labels = torch.as_tensor(np.asarray(labels, dtype=np.int64))
        self.device = device
        self.num_workers = num_workers
        self.x: torch.Tensor | None = None
        if isinstance(dataset, torch.utils.data.TensorDataset):
            x = dataset.tensors[0]
            if device.type != "cpu" and x.element_size() * x.nelement() < 2 * 1024**3:
                x = x.to(device)
            self.x = x
            if x.device == device:
                self.labels = self.labels.to(device)

    def without_augmentation(self) -> BatchSource:
        """The same split with the data set's ``augment`` flag off (for inference)."""
        if not getattr(self.dataset, "augment", False):
            return self
        ds = copy.copy(self.dataset)
        ds.augment = False
        return BatchSource(ds, self.labels.cpu().numpy(), self.device,
                           num_workers=self.num_workers)

    def batches(self, order: torch.Tensor, batch_size: int, *, loader_seed: int = 0
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(x, y)`` on the device for consecutive slices of ``order`` (CPU int64 indices)."""
        nb = self.device.type != "cpu"
        if self.x is not None:
            for i in range(0, order.numel(), batch_size):
                idx = order[i:i + batch_size]
                if self.x.device != idx.device:
                    idx = idx.to(self.x.device)
                x = self.x[idx]
                y = self.labels[idx]
                yield x.to(self.device, non_blocking=nb), y.to(self.device, non_blocking=nb)
            return
        chunks = [order[i:i + batch_size] for i in range(0, order.numel(), batch_size)]
        if hasattr(self.dataset, "get_batch"):
            for idx in chunks:
                x, _ = self.dataset.get_batch(idx)
                yield x.to(self.device, non_blocking=nb), self.labels[idx].to(self.device,
                                                                              non_blocking=nb)
            return
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_sampler=[c.tolist() for c in chunks],
            num_workers=self.num_workers, pin_memory=nb,
            generator=torch.Generator().manual_seed(int(loader_seed)),
        )
        for idx, (x, _) in zip(chunks, loader, strict=True):
            yield x.to(self.device, non_blocking=nb), self.labels[idx].to(self.device,
                                                                          non_blocking=nb)


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def predict_log_probs(model: torch.nn.Module, source: BatchSource, *, batch_size: int,
                      precision: str = "fp32") -> NDArray[np.float32]:
    """``log_softmax`` of the model's logits on a whole split, in order, as float32 numpy.

    The model is put in eval mode (no dropout: evaluation consumes no random numbers).
    """
    was_training = model.training
    model.eval()
    out = []
    try:
        for x, _ in source.batches(torch.arange(source.n), batch_size):
            with _autocast(source.device, precision):
                logits = model(x)
            out.append(torch.log_softmax(logits.float(), dim=1).cpu())
    finally:
        model.train(was_training)
    return torch.cat(out).numpy()


# ---------------------------------------------------------------- jobs and setup
@dataclass(frozen=True)
class TrainingJob:
    """One training of an experiment and the runs evaluated from it."""

    train_key: str
    kind: str
    seed: int
    runs: tuple[tuple[str, str], ...]  # (run_id, regime)
    keep_best: bool = False  # keep the best-validation model (MetaCost relabels with it)


@dataclass
class TrainingSetup:
    """Everything shared by the trainings of one experiment."""

    config: ExperimentConfig
    data: Any  # DataSplits
    objective: ResolvedObjective
    recall_of: int
    store: ResultStore
    run_dir: Path
    device: torch.device
    n_classes: int = field(init=False)

    def __post_init__(self) -> None:
        self.n_classes = int(self.data.n_classes)


class Reporter(Protocol):
    def start(self, job: TrainingJob, n_intervals: int, done: int) -> None: ...
    def interval(self, job: TrainingJob, row: dict[str, Any]) -> None: ...
    def finish(self, job: TrainingJob) -> None: ...


def _build_model(setup: TrainingSetup) -> torch.nn.Module:
    from .models import build_model

    cfg = setup.config.model
    model = build_model(cfg.name, n_classes=setup.n_classes,
                        input_shape=tuple(setup.data.input_shape), **cfg.options)
    return model.to(setup.device)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - third-party code may use the global RNG
    torch.manual_seed(seed)


def _rng_states(device: torch.device) -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),  # noqa: NPY002 - saved for an exact resume
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else None,
    }


def _set_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])  # noqa: NPY002
    torch.set_rng_state(states["torch"])
    if states.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _save_atomic(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        torch.save(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _relabel(setup: TrainingSetup, base_key: str) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """MetaCost's labels: the expected-utility decisions (Eq 5) of the base model.

    The base model is the best-validation model of the unweighted training of
    the same seed; training and validation sets are relabelled (the validation
    labels feed the schedule's validation loss).
    """
    row = setup.store.training(base_key)
    if row["status"] != "finished" or not row["checkpoint"]:
        raise RuntimeError(f"MetaCost needs the finished training {base_key!r} first.")
    state = torch.load(setup.run_dir / row["checkpoint"], map_location=setup.device,
                       weights_only=False)
    model = _build_model(setup)
    model.load_state_dict(state["best"]["model"] or state["model"])
    labels = []
    t = setup.config.training
    for split in ("train", "val"):
        src = BatchSource(getattr(setup.data, split), setup.data.labels(split), setup.device,
                          num_workers=t.num_workers).without_augmentation()
        lp = predict_log_probs(model, src, batch_size=t.eval_batch_size,
                               precision=setup.config.precision)
        labels.append(decide(decode_probabilities(lp), setup.objective.utility).astype(np.int64))
    return labels[0], labels[1]


# ---------------------------------------------------------------- the loop
def run_training(setup: TrainingSetup, job: TrainingJob, reporter: Reporter | None = None) -> None:
    """Train one job to the end, resuming from its last committed checkpoint if any.

    A finished training returns at once. Every interval is committed to the
    store with its checkpoint; an exception marks the training failed (a rerun
    resumes it from the last committed interval).
    """
    store = setup.store
    row = store.training(job.train_key)
    if row["status"] == "finished":
        return
    store.start_training(job.train_key)
    try:
        _train(setup, job, row, reporter)
    except BaseException as exc:
        store.fail_training(job.train_key, f"{type(exc).__name__}: {exc}")
        raise
    if reporter is not None:
        reporter.finish(job)


def _train(setup: TrainingSetup, job: TrainingJob, row: dict[str, Any],
           reporter: Reporter | None) -> None:
    cfg, data, store, device = setup.config, setup.data, setup.store, setup.device
    t = cfg.training
    spec = TRAININGS[job.kind]
    steps, total_steps, spe = eval_steps(cfg, len(data.train))
    u_train = training_utility(job.kind, setup.objective)

    # ---- data: labels (MetaCost relabels), batch sources, sampler
    train_labels, val_labels = data.train_labels, data.val_labels
    if spec.relabel_from is not None:
        train_labels, val_labels = _relabel(setup, f"{spec.relabel_from}-s{job.seed}")
    train_src = BatchSource(data.train, train_labels, device, num_workers=t.num_workers)
    val_src = BatchSource(data.val, data.val_labels, device, num_workers=t.num_workers)
    test_src = BatchSource(data.test, data.test_labels, device, num_workers=t.num_workers)
    n = len(data.train)
    if spec.sampler == "cost_proportionate":
        col = setup.objective.utility.matrix.sum(axis=0)
        sample_w = torch.as_tensor(col[np.asarray(data.train_labels)], dtype=torch.float64)

        def draw(gen: torch.Generator) -> torch.Tensor:
            return torch.multinomial(sample_w, n, replacement=True, generator=gen)
    else:
        def draw(gen: torch.Generator) -> torch.Tensor:
            return torch.randperm(n, generator=gen)

    # ---- model, optimizer, schedule, loss
    _seed_everything(job.seed)
    model = _build_model(setup)
    optimizer = build_optimizer(cfg, model.parameters())
    scheduler, sched_when = build_scheduler(cfg, optimizer, total_steps)
    gen = torch.Generator().manual_seed(job.seed)
    if u_train is not None and spec.weighted is not None:
        from ..nn.functional import utility_weighted_cross_entropy

        def loss_fn(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return utility_weighted_cross_entropy(logits, y, u_train, reduction="mean",
                                                  validate=False)
    else:
        def loss_fn(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.cross_entropy(logits, y)

    state = {"interval": 0, "step": 0, "epoch": 0, "pos": 0, "epoch_gen_state": None,
             "best_val": math.inf, "best_model": None}
    ckpt_rel = row["checkpoint"]
    if ckpt_rel:
        ck = torch.load(setup.run_dir / ckpt_rel, map_location=device, weights_only=False)
        if ck["format"] != CHECKPOINT_FORMAT or ck["train_key"] != job.train_key:
            raise RuntimeError(f"Checkpoint {ckpt_rel!r} does not belong to {job.train_key!r}.")
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(ck["scheduler"])
        _set_rng_states(ck["rng"])
        gen.set_state(ck["gen_state"])
        state.update(interval=ck["interval"], step=ck["step"], epoch=ck["epoch"], pos=ck["pos"],
                     epoch_gen_state=ck["epoch_gen_state"], best_val=ck["best"]["val_loss"],
                     best_model=ck["best"]["model"])
        if ck["interval"] != row["done_intervals"]:
            raise RuntimeError(f"Checkpoint {ckpt_rel!r} is at interval {ck['interval']}, the "
                               f"database at {row['done_intervals']}.")
    ckdir = setup.run_dir / "checkpoints" / job.train_key
    for stale in ckdir.glob(".*.tmp") if ckdir.is_dir() else ():
        stale.unlink(missing_ok=True)
    if reporter is not None:
        reporter.start(job, len(steps), state["interval"])

    order: torch.Tensor | None = None
    if state["pos"] > 0:  # resume mid-epoch: redraw this epoch's order
        gen.set_state(state["epoch_gen_state"])
        order = draw(gen)
    regimes = list(job.runs)
    model.train()
    while state["interval"] < len(steps):
        t0 = time.perf_counter()
        target = steps[state["interval"]]
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        n_batches = 0
        while state["step"] < target:
            if order is None:
                state["epoch_gen_state"] = gen.get_state()
                order = draw(gen)
            pos = state["pos"]
            n_take = min(spe - pos, target - state["step"])
            sub = order[pos * t.batch_size:(pos + n_take) * t.batch_size]
            seed = job.seed * 1_000_003 + state["epoch"]
            for x, y in train_src.batches(sub, t.batch_size, loader_seed=seed):
                with _autocast(device, cfg.precision):
                    logits = model(x)
                loss = loss_fn(logits.float(), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if t.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
                optimizer.step()
                if sched_when == "step":
                    scheduler.step()
                loss_sum += loss.detach()
                n_batches += 1
                state["step"] += 1
                state["pos"] += 1
            if state["pos"] >= spe:
                state["pos"] = 0
                state["epoch"] += 1
                order = None
        train_loss = float(loss_sum) / max(n_batches, 1)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t1 = time.perf_counter()

        # ---- evaluation, from the stored float16 copy
        test_lp = predict_log_probs(model, test_src, batch_size=t.eval_batch_size,
                                    precision=cfg.precision)
        val_lp = predict_log_probs(model, val_src, batch_size=t.eval_batch_size,
                                   precision=cfg.precision)
        test_stored = encode_log_probs(test_lp)
        q_test = decode_probabilities(test_stored)
        q_val = decode_probabilities(encode_log_probs(val_lp))
        metrics = []
        for run_id, regime in regimes:
            for split, q, y in (("test", q_test, data.test_labels),
                                ("val", q_val, data.val_labels)):
                metrics.append((run_id, split, interval_metrics(
                    q, y, setup.objective.utility, regime, recall_of=setup.recall_of,
                    training_utility=u_train)))
        p_val = decode_probabilities(val_lp)  # the loss being trained, on validation
        u_val = np.eye(setup.n_classes) if u_train is None else u_train
        val_loss = float(weighted_loss(p_val, val_labels, u_val, reduction="mean"))
        t2 = time.perf_counter()

        if sched_when == "plateau":
            scheduler.step(val_loss)
        elif sched_when == "interval":
            scheduler.step()
        if job.keep_best and val_loss < state["best_val"]:
            state["best_val"] = val_loss
            state["best_model"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        interval = state["interval"]
        state["interval"] += 1
        lr = float(optimizer.param_groups[0]["lr"])

        # ---- checkpoint, then commit (the database is the source of truth)
        name = f"ckpt-{interval:05d}.pt"
        _save_atomic({
            "format": CHECKPOINT_FORMAT, "train_key": job.train_key,
            "interval": state["interval"], "step": state["step"], "epoch": state["epoch"],
            "pos": state["pos"], "epoch_gen_state": state["epoch_gen_state"],
            "gen_state": gen.get_state(), "rng": _rng_states(device),
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": None if scheduler is None else scheduler.state_dict(),
            "best": {"val_loss": state["best_val"], "model": state["best_model"]},
        }, ckdir / name)
        previous = store.training(job.train_key)["checkpoint"]
        t3 = time.perf_counter()
        rec = {"interval": interval, "step": state["step"], "epoch": state["step"] / spe,
               "lr": lr, "train_loss": train_loss, "val_loss": val_loss,
               "train_seconds": t1 - t0, "eval_seconds": t2 - t1}
        store.commit_interval(
            job.train_key, rec, test_stored, metrics,
            checkpoint=f"checkpoints/{job.train_key}/{name}",
            timings={"wall": time.perf_counter() - t0, "train": t1 - t0, "eval": t2 - t1,
                     "io": time.perf_counter() - t2},
        )
        if previous and previous != f"checkpoints/{job.train_key}/{name}":
            (setup.run_dir / previous).unlink(missing_ok=True)
        if reporter is not None:
            test_first = next((m for _, s, m in metrics if s == "test"), {})
            reporter.interval(job, {**rec, "n_intervals": len(steps), "io_seconds": t3 - t2,
                                    "regime": regimes[0][1] if regimes else None, **test_first})
    store.finish_training(job.train_key)


def run_trainings(setup: TrainingSetup, jobs: Sequence[TrainingJob],
                  reporter: Reporter | None = None,
                  on_done: Callable[[TrainingJob], None] | None = None) -> None:
    """Run jobs one after another (the local runner's loop)."""
    for job in jobs:
        run_training(setup, job, reporter)
        if on_done is not None:
            on_done(job)
