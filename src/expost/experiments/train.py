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
   transaction (:meth:`~expost.experiments.store.ResultStore.commit_interval`);
   with ``training.checkpoint_every`` k, only every k-th and the last interval
   write a checkpoint, with ``auto`` (the default) the last one and one at least
   every :data:`~expost.experiments._schema.AUTO_CHECKPOINT_SECONDS`, and the
   others are committed with the pointer unmoved.

Reproducibility. The seed fixes, in this order, Python's, numpy's and torch's
global generators, the model's initial weights (so every regime of one seed
starts from the same weights: a paired comparison), and a dedicated generator
for the data order. A checkpoint (:mod:`~expost.experiments.checkpoint`) holds
the model, optimizer and scheduler states, every generator's state and the
position in the epoch (the generator state at the start of the epoch, from
which the epoch's order is redrawn), so that a resumed training continues bit
for bit like an uninterrupted one on CPU (from its last checkpoint: the
intervals committed after it are trained again and their rows replaced).

Losses. ``weighted`` and ``inverse_prior`` train with
:class:`expost.nn.UtilityWeightedCrossEntropy` (``reduction="mean"``, the
paper's plain mean, Eq 24); the other kinds with plain cross-entropy
(``resampled`` on cost-proportionately resampled epochs, its validation loss
weighted with the class weights the resampling implements). The loss module
is built once per training.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from numpy.typing import NDArray

from .._decisions import decide
from .._scoring import _weighted_loss
from .._utility import Utility
from .._validation import _error, check_labels, reduce
from ._schema import AUTO_CHECKPOINT_SECONDS
from .batches import BatchSource, EpochSampler, autocast, predict_log_probs
from .checkpoint import (
    CheckpointError,
    TrainingParts,
    TrainingState,
    checkpoint_file,
    load_checkpoint,
    save_atomic,
)
from .config import ExperimentConfig
from .evaluate import IntervalScorer, decode_probabilities, encode_log_probs
from .objective import ResolvedObjective
from .recovery import DIVERGENCE_FACTOR, TrainingDiverged, check_divergence, restore, warn
from .regimes import TRAININGS, train_key
from .schedule import build_optimizer, build_scheduler, eval_steps

if TYPE_CHECKING:
    from .datasets import DataSplits

__all__ = [
    "DIVERGENCE_FACTOR",
    "BatchSource",
    "TrainingDiverged",
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


def resampling_weights(objective: ResolvedObjective) -> NDArray[np.float64]:
    r"""The class weights cost-proportionate resampling draws with, :math:`\sum_a u(a, y)`."""
    return objective.utility.matrix.sum(axis=0)


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
        return Utility.from_class_weights(resampling_weights(objective)).normalized(
            objective.prior)
    return None


# ---------------------------------------------------------------- jobs and setup
@dataclass(frozen=True)
class TrainingJob:
    """One training of an experiment and the runs evaluated from it."""

    train_key: str
    kind: str
    seed: int
    runs: tuple[tuple[str, str], ...]  # (run_id, regime)
    keep_best: bool = False  # keep the best-validation model (MetaCost relabels with it)


class StoreSink(Protocol):
    """Where the loop reads its training rows and writes its intervals: the driver's
    :class:`~expost.experiments.store.ResultStore` (a sequential run), or a worker's
    :class:`~expost.experiments.spool.SpoolSink` that ships records to the driver."""

    def training(self, train_key: str) -> dict[str, Any]: ...
    def runs(self) -> list[dict[str, Any]]: ...
    def start_training(self, train_key: str) -> None: ...
    def commit_interval(self, train_key: str, interval: Any, test_log_probs: Any, metrics: Any,
                        *, checkpoint: str | None, timings: Any) -> None: ...
    def finish_training(self, train_key: str, *, extra_wall: float = 0.0) -> None: ...
    def fail_training(self, train_key: str, error: str, *, status: str = "failed") -> None: ...
    def reopen_training(self, train_key: str) -> None: ...


@dataclass
class TrainingSetup:
    """Everything shared by the trainings of one experiment (``run_dir``: where the
    ``checkpoints/`` folder is, the experiment directory or a worker's storage)."""

    config: ExperimentConfig
    data: DataSplits
    objective: ResolvedObjective
    recall_of: int
    store: StoreSink
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
    """The config's model on the device; channels last for a convolutional net on a GPU,
    where TF32 matrix products and convolutions are allowed too."""
    from .models import build_model

    cfg = setup.config.model
    model = build_model(cfg.name, n_classes=setup.n_classes,
                        input_shape=tuple(setup.data.input_shape), **cfg.options)
    if setup.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    model = model.to(setup.device)
    if _memory_format(setup, model) == torch.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return model


def _memory_format(setup: TrainingSetup, model: torch.nn.Module) -> torch.memory_format:
    """``channels_last`` for a convolutional net on image batches on a GPU (cuDNN's fast
    layout); contiguous otherwise (on a CPU it was measured faster for some nets, slower
    for others: benchmarks/throughput.py)."""
    convolutional = any(isinstance(m, torch.nn.modules.conv._ConvNd) for m in model.modules())
    if setup.device.type == "cuda" and convolutional and len(setup.data.input_shape) == 3:
        return torch.channels_last
    return torch.contiguous_format


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - third-party code may use the global RNG
    torch.manual_seed(seed)


def _relabel(setup: TrainingSetup, base_key: str) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """MetaCost's labels: the expected-utility decisions (Eq 5) of the base model.

    The base model is the best-validation model of the unweighted training of
    the same seed; training and validation sets are relabelled (the validation
    labels feed the schedule's validation loss).
    """
    checkpoint = _base_checkpoint(setup, base_key)
    model = _build_model(setup)
    best = checkpoint["best"]["model"]
    model.load_state_dict(checkpoint["model"] if best is None else best)
    labels = []
    t = setup.config.training
    for split in ("train", "val"):
        src = BatchSource(getattr(setup.data, split), setup.data.labels(split), setup.device,
                          num_workers=t.num_workers).without_augmentation()
        lp = predict_log_probs(model, src, precision=setup.config.precision,
                               batch_size=t.eval_batch_size_on(setup.device.type, src.row_bytes))
        labels.append(decide(decode_probabilities(lp), setup.objective.utility).astype(np.int64))
    return labels[0], labels[1]


def _base_checkpoint(setup: TrainingSetup, base_key: str) -> dict[str, Any]:
    """The final checkpoint of the finished training MetaCost relabels with; retrained (with a
    message) when it is missing or unreadable."""
    row = setup.store.training(base_key)
    if row["status"] == "diverged":
        raise TrainingDiverged(f"MetaCost's base training {base_key!r} diverged.")
    if row["status"] != "finished" or not row["checkpoint"]:
        raise RuntimeError(f"MetaCost needs the finished training {base_key!r} first.")
    path = checkpoint_file(setup.run_dir, row["checkpoint"], base_key)
    try:
        return load_checkpoint(path)
    except CheckpointError as exc:
        warn(f"{exc} MetaCost needs that final model of {base_key!r}: retraining it.")
    setup.store.reopen_training(base_key)
    runs = tuple((r["run_id"], r["regime"]) for r in setup.store.runs()
                 if r["train_key"] == base_key)
    run_training(setup, TrainingJob(base_key, row["kind"], row["seed"], runs, keep_best=True))
    row = setup.store.training(base_key)
    return load_checkpoint(checkpoint_file(setup.run_dir, row["checkpoint"], base_key))


# ---------------------------------------------------------------- one training's pieces
class _ValidationLoss:
    """The mean weighted loss (Eq 6) of validation predictions under the utility trained
    with (the identity for unweighted training): ``weighted_loss(q, labels, utility,
    reduction="mean")`` with the labels and the utility checked once, not every interval."""

    def __init__(self, utility: Utility | None, labels: NDArray[np.int64], n_classes: int) -> None:
        self.matrix = np.eye(n_classes) if utility is None else utility.matrix
        self.labels = check_labels(labels, "val_labels", n_classes=self.matrix.shape[1])

    def __call__(self, q: NDArray[np.float64]) -> float:
        """The loss of ``q``, probability rows (decoded, so valid), one per label."""
        if q.shape != (self.labels.shape[0], self.matrix.shape[0]):
            raise ValueError(_error("q", f"shape {(self.labels.shape[0], self.matrix.shape[0])}",
                                    f"shape {q.shape}"))
        return float(reduce(_weighted_loss(q, self.labels, self.matrix, "log"), "mean"))


@dataclass
class _Training:
    """The pieces of one training, built once before its first interval."""

    setup: TrainingSetup
    job: TrainingJob
    steps: list[int]  # the optimizer steps after which it is evaluated
    steps_per_epoch: int
    utility: Utility | None  # training_utility(kind): of the validation loss too
    train: BatchSource
    val: BatchSource
    test: BatchSource
    val_loss: _ValidationLoss  # of the loss being trained (MetaCost's labels are relabelled)
    sampler: EpochSampler
    parts: TrainingParts
    loss: torch.nn.Module
    schedule_when: str  # "step", "interval", "plateau" or "none"
    forward: torch.nn.Module  # parts.model, or its torch.compile wrapper (training.compile)
    scorer: IntervalScorer  # the metrics of its runs, test and validation labels checked once
    #: the checkpoint the store records (its path relative to the run directory)
    recorded_checkpoint: str | None = None
    #: ``time.perf_counter()`` at the last checkpoint (or the training's start) and the
    #: seconds it took to write, for ``checkpoint_every: auto``
    last_checkpoint: tuple[float, float] = (0.0, 0.0)

    @property
    def checkpoint_dir(self) -> Path:
        return self.setup.run_dir / "checkpoints" / self.job.train_key


@dataclass(frozen=True)
class _Evaluation:
    """One interval's evaluation: the stored test predictions and what they score."""

    test_log_probs: NDArray[np.float16]  # as stored
    metrics: list[tuple[str, str, dict[str, float]]]  # (run_id, split, metrics)
    val_loss: float  # of the loss being trained, from the unrounded predictions


def _build_sources(setup: TrainingSetup, job: TrainingJob
                   ) -> tuple[BatchSource, BatchSource, BatchSource, NDArray[np.int64]]:
    """The train, validation and test batch sources, and the validation loss's labels."""
    data, workers = setup.data, setup.config.training.num_workers
    train_labels, val_labels = data.train_labels, data.val_labels
    relabel_from = TRAININGS[job.kind].relabel_from
    if relabel_from is not None:
        train_labels, val_labels = _relabel(setup, train_key(relabel_from, job.seed))
    return (BatchSource(data.train, train_labels, setup.device, num_workers=workers),
            BatchSource(data.val, data.val_labels, setup.device, num_workers=workers),
            BatchSource(data.test, data.test_labels, setup.device, num_workers=workers),
            val_labels)


def _build_sampler(setup: TrainingSetup, job: TrainingJob) -> EpochSampler:
    """Shuffled epochs, or cost-proportionate resampling with replacement."""
    n = len(setup.data.train_labels)
    if TRAININGS[job.kind].sampler != "cost_proportionate":
        return EpochSampler(lambda gen: torch.randperm(n, generator=gen), job.seed)
    per_class = resampling_weights(setup.objective)
    per_example = torch.as_tensor(per_class[setup.data.train_labels], dtype=torch.float64)
    return EpochSampler(
        lambda gen: torch.multinomial(per_example, n, replacement=True, generator=gen), job.seed)


def _build_loss(utility: Utility | None, kind: str, device: torch.device) -> torch.nn.Module:
    """The training loss: utility-weighted cross-entropy (plain mean, Eq 24) or plain CE."""
    if utility is not None and TRAININGS[kind].weighted is not None:
        from ..nn import UtilityWeightedCrossEntropy

        return UtilityWeightedCrossEntropy(utility, reduction="mean", validate=False).to(device)
    return torch.nn.CrossEntropyLoss()


def _build_training(setup: TrainingSetup, job: TrainingJob) -> _Training:
    """Data, sampler, then (seeded) model, optimizer, schedule and loss."""
    steps, total_steps, spe = eval_steps(setup.config, len(setup.data.train_labels))
    utility = training_utility(job.kind, setup.objective)
    train, val, test, val_labels = _build_sources(setup, job)
    sampler = _build_sampler(setup, job)
    _seed_everything(job.seed)  # the model's initial weights depend on the seed only
    model = _build_model(setup)
    for source in (train, val, test):
        source.memory_format = _memory_format(setup, model)
    optimizer = build_optimizer(setup.config, model.parameters())
    scheduler, when = build_scheduler(setup.config, optimizer, total_steps)
    parts = TrainingParts(model, optimizer, scheduler, sampler.generator)
    # checkpoints hold parts.model's own state dict; the compiled wrapper only runs it
    forward = torch.compile(model) if setup.config.training.compile else model
    scorer = IntervalScorer(setup.objective.utility, {"test": setup.data.test_labels,
                                                      "val": setup.data.val_labels},
                            recall_of=setup.recall_of, training_utility=utility)
    val_loss = _ValidationLoss(utility, val_labels, setup.n_classes)
    return _Training(setup, job, steps, spe, utility, train, val, test, val_loss, sampler,
                     parts, _build_loss(utility, job.kind, setup.device), when,
                     forward, scorer)  # type: ignore[arg-type]


# ---------------------------------------------------------------- the loop
def run_training(setup: TrainingSetup, job: TrainingJob, reporter: Reporter | None = None) -> None:
    """Train one job to the end, resuming from its last committed checkpoint if any.

    A finished training returns at once. Every interval is committed to the
    store with its checkpoint. A non-finite or exploding loss marks the training
    ``diverged`` (:func:`check_divergence`; nothing of that interval is
    committed) and returns; Ctrl-C marks it ``interrupted`` and any other
    exception ``failed``, and is raised again. A rerun resumes all three from
    the last committed interval.
    """
    store = setup.store
    row = store.training(job.train_key)
    if row["status"] == "finished":
        return
    store.start_training(job.train_key)
    try:
        _train(setup, job, row, reporter)
    except TrainingDiverged as exc:
        store.fail_training(job.train_key, str(exc), status="diverged")
        warn(str(exc))
        return
    except BaseException as exc:
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        store.fail_training(job.train_key, f"{type(exc).__name__}: {exc}", status=status)
        raise
    if reporter is not None:
        reporter.finish(job)


def _train(setup: TrainingSetup, job: TrainingJob, row: dict[str, Any],
           reporter: Reporter | None) -> None:
    training, state = restore(lambda: _build_training(setup, job), job.train_key,
                              setup.run_dir, row,
                              checkpoint_every=setup.config.training.checkpoint_every)
    training.recorded_checkpoint = setup.store.training(job.train_key)["checkpoint"]
    training.last_checkpoint = (time.perf_counter(), 0.0)
    if reporter is not None:
        reporter.start(job, len(training.steps), state.interval)
    training.parts.model.train()
    while state.interval < len(training.steps):
        started = time.perf_counter()
        train_loss = _run_interval(training, state)
        check_divergence(job.train_key, state.interval, setup.n_classes,
                         {"train_loss": train_loss})
        trained = time.perf_counter()
        evaluation = _evaluate(training)
        evaluated = time.perf_counter()
        check_divergence(job.train_key, state.interval, setup.n_classes,
                         {"train_loss": train_loss, "val_loss": evaluation.val_loss})
        lr = _end_interval(training, state, evaluation.val_loss)
        rec = {"interval": state.interval - 1, "step": state.step,
               "epoch": state.step / training.steps_per_epoch, "lr": lr,
               "train_loss": train_loss, "val_loss": evaluation.val_loss,
               "train_seconds": trained - started, "eval_seconds": evaluated - trained}
        io_seconds = _commit(training, state, rec, evaluation, (started, evaluated))
        if reporter is not None:
            reporter.interval(job, _progress_row(training, rec, evaluation, io_seconds))
    setup.store.finish_training(job.train_key)


def _progress_row(training: _Training, rec: dict[str, Any], evaluation: _Evaluation,
                  io_seconds: float) -> dict[str, Any]:
    """What a reporter shows of an interval: its record and the first run's test metrics."""
    runs = training.job.runs
    test_first = next((m for _, split, m in evaluation.metrics if split == "test"), {})
    return {**rec, "n_intervals": len(training.steps), "io_seconds": io_seconds,
            "regime": runs[0][1] if runs else None, **test_first}


def _run_interval(training: _Training, state: TrainingState) -> float:
    """Optimizer steps up to the interval's evaluation step; the mean training loss."""
    device, batch_size = training.setup.device, training.setup.config.training.batch_size
    target, spe = training.steps[state.interval], training.steps_per_epoch
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    n_batches = 0
    while state.step < target:
        order = training.sampler.epoch_order(state)
        n_take = min(spe - state.pos, target - state.step)
        indices = order[state.pos * batch_size:(state.pos + n_take) * batch_size]
        loader_seed = training.job.seed * 1_000_003 + state.epoch
        for x, y in training.train.batches(indices, batch_size, loader_seed=loader_seed):
            loss_sum += _optimizer_step(training, x, y)
            n_batches += 1
            state.step += 1
            state.pos += 1
        if state.pos >= spe:
            state.pos = 0
            state.epoch += 1
            training.sampler.next_epoch()
    train_loss = float(loss_sum) / max(n_batches, 1)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return train_loss


def _optimizer_step(training: _Training, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """One step on one batch; the batch's loss (detached)."""
    cfg, parts = training.setup.config, training.parts
    with autocast(training.setup.device, cfg.precision):
        logits = training.forward(x)
    loss = training.loss(logits.float(), y)
    parts.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.training.grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(parts.model.parameters(), cfg.training.grad_clip)
    parts.optimizer.step()
    if training.schedule_when == "step":
        parts.scheduler.step()
    return loss.detach()


def _evaluate(training: _Training) -> _Evaluation:
    """Metrics of every run of this training, from the stored float16 copy, and the
    validation loss of the loss being trained."""
    setup, model = training.setup, training.forward
    t, precision = setup.config.training, setup.config.precision
    test_lp = predict_log_probs(model, training.test, precision=precision,
                                batch_size=t.eval_batch_size_on(setup.device.type,
                                                                training.test.row_bytes))
    val_lp = predict_log_probs(model, training.val, precision=precision,
                               batch_size=t.eval_batch_size_on(setup.device.type,
                                                               training.val.row_bytes))
    if not (np.isfinite(test_lp).all() and np.isfinite(val_lp).all()):
        raise TrainingDiverged(f"training {training.job.train_key!r} diverged: its predictions "
                               "are not finite; lower optimizer.lr or set training.grad_clip.")
    test_stored = encode_log_probs(test_lp)
    q_test = decode_probabilities(test_stored)
    q_val = decode_probabilities(encode_log_probs(val_lp))
    metrics = []
    for run_id, regime in training.job.runs:  # interval_metrics, labels checked once
        for split, q in (("test", q_test), ("val", q_val)):
            metrics.append((run_id, split, training.scorer(q, split, regime)))
    return _Evaluation(test_stored, metrics, training.val_loss(decode_probabilities(val_lp)))


def _end_interval(training: _Training, state: TrainingState, val_loss: float) -> float:
    """Step an interval schedule, keep the best model, count the interval; the next lr."""
    scheduler = training.parts.scheduler
    if training.schedule_when == "plateau":
        scheduler.step(val_loss)
    elif training.schedule_when == "interval":
        scheduler.step()
    if training.job.keep_best and val_loss < state.best_val_loss:
        state.best_val_loss = val_loss
        state.best_model = {k: v.detach().clone()
                            for k, v in training.parts.model.state_dict().items()}
    state.interval += 1
    return float(training.parts.optimizer.param_groups[0]["lr"])


def _commit(training: _Training, state: TrainingState, rec: dict[str, Any],
            evaluation: _Evaluation, clock: tuple[float, float]) -> float:
    """Write the checkpoint, then commit the interval with it (the database is the source
    of truth) and delete the previous checkpoint; the seconds spent writing the checkpoint.

    With ``training.checkpoint_every`` k > 1 only every k-th interval and the last one
    write a checkpoint, with ``auto`` those :func:`_checkpoint_due` picks by time; the
    others are committed with the pointer left at the previous checkpoint (a resumed
    training redoes them, and its commits replace their rows).
    ``clock`` is the ``time.perf_counter()`` at the interval's start and after its evaluation.
    """
    setup, key = training.setup, training.job.train_key
    started, evaluated = clock
    previous = training.recorded_checkpoint
    relative: str | None
    if _checkpoint_due(training, state, evaluated):
        name = f"ckpt-{state.interval - 1:05d}.pt"
        relative = f"checkpoints/{key}/{name}"
        begun = time.perf_counter()
        save_atomic(state.to_checkpoint(key, training.parts, setup.device),
                    training.checkpoint_dir / name)
        done = time.perf_counter()
        training.last_checkpoint = (done, done - begun)
    else:
        relative = previous
    io_seconds = time.perf_counter() - evaluated
    setup.store.commit_interval(
        key, rec, evaluation.test_log_probs, evaluation.metrics, checkpoint=relative,
        timings={"wall": time.perf_counter() - started, "train": rec["train_seconds"],
                 "eval": rec["eval_seconds"], "io": time.perf_counter() - evaluated},
    )
    training.recorded_checkpoint = relative
    if previous and previous != relative:
        checkpoint_file(setup.run_dir, previous, key).unlink(missing_ok=True)
    return io_seconds


def _checkpoint_due(training: _Training, state: TrainingState, now: float) -> bool:
    """Whether the interval just done ends with a checkpoint (``training.checkpoint_every``)."""
    if state.interval == len(training.steps):
        return True
    every = training.setup.config.training.checkpoint_every
    if every != "auto":
        return state.interval % every == 0
    at, cost = training.last_checkpoint
    return now - at >= max(AUTO_CHECKPOINT_SECONDS, 20.0 * cost)
