r"""The building blocks of the experiment config: the error, the base section, and the
sections that describe data, model, optimizer, schedule and training length.

The whole config (:class:`~expost.experiments.config.ExperimentConfig`) and the
objective sections (:mod:`expost.experiments.objective`) are built from these.
Every section is frozen and rejects unknown keys, naming the allowed ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .._validation import describe

__all__ = [
    "ConfigError",
    "DatasetConfig",
    "ModelConfig",
    "Optimizer",
    "Schedule",
    "TrainingConfig",
    "check_registry_options",
    "named_section",
]


class ConfigError(ValueError):
    """An invalid experiment config; ``errors`` lists ``(key path, message)`` pairs."""

    def __init__(self, message: str, errors: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.errors = list(errors)


# ---------------------------------------------------------------- base model
class _Section(BaseModel):
    """Frozen, and unknown keys are rejected naming the allowed ones."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            allowed = list(cls.model_fields)
            unknown = [k for k in data if k not in allowed]
            if unknown:
                import difflib

                close = difflib.get_close_matches(str(unknown[0]), allowed, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ValueError(
                    f"unknown key {unknown[0]!r} (allowed keys: {', '.join(allowed)}){hint}"
                )
        elif data is not None and not isinstance(data, BaseModel):
            raise ValueError(f"must be a mapping of {', '.join(cls.model_fields)}, got "
                             f"{describe(data)}")
        return data


def named_section(data: Any, key: str = "name") -> Any:
    """Allow the short form ``optimizer: adam`` for ``optimizer: {name: adam}``."""
    return {key: data} if isinstance(data, str) else data


def check_registry_options(kind: str, name: str, options: Mapping[str, Any]) -> None:
    """Check the ``options`` of a registered data set or model before anything is loaded.

    The registry's own validator (:meth:`~expost.experiments.datasets._registry.Registry.
    check_options`) is the one that runs, here and when the data set or model is built.
    """
    if kind == "dataset":
        from .datasets._api import _DATASETS as registry
    else:
        from .models._api import _MODELS as registry  # type: ignore[assignment]
    if name not in registry.names():
        raise ValueError(f"unknown {kind} {name!r} (available: {', '.join(registry.names())})")
    try:
        registry.check_options(name, options)
    except (TypeError, ValueError) as exc:
        raise ValueError(str(exc)) from None


# ---------------------------------------------------------------- sections
class DatasetConfig(_Section):
    """``name`` from :func:`~expost.experiments.datasets.list_datasets`; ``seed`` fixes the
    split (the same for every run); ``options`` as
    :func:`~expost.experiments.datasets.dataset_options` lists them."""

    name: str
    seed: int = Field(0, ge=0)
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _options(self) -> DatasetConfig:
        check_registry_options("dataset", self.name, self.options)
        return self


class ModelConfig(_Section):
    """``name`` from :func:`~expost.experiments.models.list_models`; ``options`` as
    :func:`~expost.experiments.models.model_options` lists them."""

    name: str
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _options(self) -> ModelConfig:
        check_registry_options("model", self.name, self.options)
        return self


class AdamConfig(_Section):
    """Adam (AdamW: decoupled weight decay). ``fused`` (default true) uses torch's fused
    kernel, one pass over all parameters per step, where their device has it (CPU,
    CUDA); false, the for-loop implementation (one small operation per parameter
    tensor). The two agree to rounding, not bit for bit; the fused one took 0.74-0.88 ms
    per step of the default run's MLP on one CPU thread against 0.98-1.04 ms."""

    name: Literal["adam"]
    lr: float = Field(1e-3, gt=0, allow_inf_nan=False)
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = (
        0.9, 0.999)
    eps: float = Field(1e-8, gt=0, allow_inf_nan=False)  # inf: no step ever moves
    weight_decay: float = Field(0.0, ge=0, allow_inf_nan=False)
    fused: bool = True


class AdamWConfig(AdamConfig):
    name: Literal["adamw"]  # type: ignore[assignment]
    weight_decay: float = Field(0.01, ge=0, allow_inf_nan=False)


class SGDConfig(_Section):
    name: Literal["sgd"]
    lr: float = Field(0.01, gt=0, allow_inf_nan=False)
    momentum: float = Field(0.0, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(0.0, ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _nesterov(self) -> SGDConfig:
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov needs a positive momentum")
        return self


Optimizer = Annotated[AdamConfig | AdamWConfig | SGDConfig, Field(discriminator="name")]


class NoSchedule(_Section):
    """A constant learning rate."""

    name: Literal["none"]


class StepSchedule(_Section):
    """Multiply the learning rate by ``gamma`` every ``step_size`` evaluation intervals."""

    name: Literal["step"]
    step_size: int = Field(gt=0)
    gamma: float = Field(0.1, gt=0, le=1)


class CosineSchedule(_Section):
    """Linear warm-up over ``warmup_steps`` optimizer steps, then cosine decay to
    ``final_lr_ratio * lr`` at the last step (per optimizer step)."""

    name: Literal["cosine"]
    warmup_steps: int = Field(0, ge=0)
    final_lr_ratio: float = Field(0.0, ge=0, le=1)


class PlateauSchedule(_Section):
    """ReduceLROnPlateau on the validation loss *of the loss being trained*, checked at every
    evaluation interval (the CheXNeXt recipe: ``factor`` 0.1)."""

    name: Literal["plateau"]
    factor: float = Field(0.1, gt=0, lt=1)
    patience: int = Field(0, ge=0)
    threshold: float = Field(1e-4, ge=0)
    cooldown: int = Field(0, ge=0)
    min_lr: float = Field(0.0, ge=0)


Schedule = Annotated[
    NoSchedule | StepSchedule | CosineSchedule | PlateauSchedule, Field(discriminator="name")
]


#: The evaluation batch size when the config gives none, by device type.
EVAL_BATCH_SIZE = {"cpu": 128, "cuda": 1024}

#: On a CPU, a split held in memory is evaluated this many bytes of input at a time
#: when that is more than 128 rows: for small rows (tabular data) each model call's
#: fixed cost, not its arithmetic, is what a batch of 128 pays for.
EVAL_CPU_BATCH_BYTES = 4 * 2**20

#: ``checkpoint_every: auto`` writes a checkpoint at the end of the first interval at
#: least this many seconds (or 20 times the last checkpoint's writing time) after the
#: previous one, and at the last interval.
AUTO_CHECKPOINT_SECONDS = 30.0

#: Bounds on a training's length (a typo such as ``epochs: 1e12`` is refused at load).
MAX_EPOCHS, MAX_STEPS, MAX_INTERVALS = 100_000, 100_000_000, 1_000_000


class TrainingConfig(_Section):
    """Length (``epochs`` or ``steps``, exactly one), batch sizes and the evaluation interval.

    ``eval_every`` is ``"epoch"`` or a number of optimizer steps; the last step is
    always evaluated too. ``eval_batch_size`` defaults to 128 on a CPU (no slower
    per image than 1024 there: benchmarks/throughput.py), or 4 MiB of input for a
    split held in memory if that is more rows (tabular data), and 1024 on a GPU.
    ``num_workers`` > 0 uses DataLoader worker processes (persistent, one set
    per training) for data sets without a batch fast path (resumed runs are
    then reproducible in distribution, not bit for bit). ``checkpoint_every``
    k writes a checkpoint every k evaluation intervals and at the last one
    (the intervals in between are committed without one; a resumed training
    redoes them, identically on a CPU); ``"auto"`` (the default) writes one at
    the last interval and at the end of any interval at least
    :data:`AUTO_CHECKPOINT_SECONDS` (or 20 times the last checkpoint's
    writing time, if longer) after the previous one, so that checkpoints cost
    at most a few percent of a training's time and a kill loses at most about
    that much training. ``compile: true`` runs the model through
    :func:`torch.compile`.
    """

    epochs: int | None = Field(None, gt=0, le=MAX_EPOCHS)
    steps: int | None = Field(None, gt=0, le=MAX_STEPS)
    batch_size: int = Field(64, gt=0)
    eval_every: Literal["epoch"] | Annotated[int, Field(gt=0)] = "epoch"
    eval_batch_size: int | None = Field(None, gt=0)
    grad_clip: float | None = Field(None, gt=0)
    num_workers: int = Field(0, ge=0)
    checkpoint_every: Literal["auto"] | Annotated[int, Field(gt=0)] = "auto"
    compile: bool = False

    @field_validator("eval_every", mode="before")
    @classmethod
    def _every(cls, v: Any) -> Any:
        if v == "epoch" or (isinstance(v, int) and not isinstance(v, bool) and v > 0):
            return v
        raise ValueError(f"must be 'epoch' or a positive number of steps, got {describe(v)}")

    @field_validator("checkpoint_every", mode="before")
    @classmethod
    def _checkpoints(cls, v: Any) -> Any:
        if v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and v > 0):
            return v
        raise ValueError(f"must be 'auto' or a positive number of evaluation intervals, got "
                         f"{describe(v)}")

    @model_validator(mode="after")
    def _length(self) -> TrainingConfig:
        if (self.epochs is None) == (self.steps is None):
            raise ValueError("give exactly one of 'epochs' and 'steps'")
        if (self.steps is not None and isinstance(self.eval_every, int)
                and self.steps // self.eval_every > MAX_INTERVALS):
            raise ValueError(f"steps / eval_every must be at most {MAX_INTERVALS} evaluation "
                             f"intervals, got {self.steps} / {self.eval_every}")
        return self

    def eval_batch_size_on(self, device_type: str, row_bytes: int | None = None) -> int:
        """``eval_batch_size``, or the default for ``device_type`` (:data:`EVAL_BATCH_SIZE`);
        on a CPU, for a split in memory whose rows take ``row_bytes``, at least as many
        rows as fill :data:`EVAL_CPU_BATCH_BYTES`."""
        if self.eval_batch_size is not None:
            return self.eval_batch_size
        size = EVAL_BATCH_SIZE.get(device_type, EVAL_BATCH_SIZE["cuda"])
        if device_type == "cpu" and row_bytes:
            size = max(size, EVAL_CPU_BATCH_BYTES // row_bytes)
        return size
