r"""The typed experiment config: YAML in, a validated, frozen :class:`ExperimentConfig` out.

Every section rejects unknown keys, and every error names the key path, what
is allowed and what arrived, all errors at once in one message
(:class:`ConfigError`, a ValueError)::

    Invalid experiment config (tiny.yaml):
      - optimizer.lr: Input should be greater than 0 (got -0.1)
      - training: unknown key 'epoch' (allowed keys: epochs, steps, batch_size, ...)

The objective is always normalised with Eq 21 on the training prior
:math:`\mu` (:meth:`expost.Utility.normalized`):

.. math:: k \sum_y \mu_y \sum_a u(a, y) (-\log \mu_a) = \sum_y \mu_y (-\log \mu_y).

Use :func:`load_config` (a path, a YAML string's mapping, or None for the
embedded default) and :func:`resolve_objective` (the normalised utility once
the data set is loaded).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import yaml
from numpy.typing import NDArray
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .._utility import Utility
from .._validation import _error, describe

__all__ = [
    "DEFAULT_CONFIG_YAML",
    "ConfigError",
    "ExperimentConfig",
    "ResolvedObjective",
    "config_hash",
    "default_config",
    "load_config",
    "resolve_objective",
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


def _named(data: Any, key: str = "name") -> Any:
    """Allow the short form ``optimizer: adam`` for ``optimizer: {name: adam}``."""
    return {key: data} if isinstance(data, str) else data


def _hint_text(hint: Any) -> str:
    text = getattr(hint, "__name__", None) if isinstance(hint, type) else None
    return text or str(hint).replace("typing.", "")


def _check_registry(kind: str, name: str, options: Mapping[str, Any]) -> None:
    """Check ``options`` of a registered data set or model before anything is loaded.

    The registries describe a factory's options as ``{option: (type, default)}``,
    the pairs :func:`pydantic.create_model` takes; unknown options are rejected.
    """
    from pydantic import create_model

    if kind == "dataset":
        from .datasets import dataset_options, list_datasets

        names, opts = list_datasets(), dataset_options
    else:
        from .models import list_models, model_options

        names, opts = list_models(), model_options
    if name not in names:
        raise ValueError(f"unknown {kind} {name!r} (available: {', '.join(names)})")
    allowed = opts(name)
    listing = ", ".join(
        f"{k}: {_hint_text(h)}" + ("" if d is ... else f" = {d!r}") for k, (h, d) in allowed.items()
    ) or "none"
    model = create_model(  # type: ignore[call-overload]
        f"{kind}_{name}_options",
        __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=True),
        **{k: (h, d) for k, (h, d) in allowed.items()},
    )
    try:
        model.model_validate(dict(options))
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        key = err["loc"][0] if err["loc"] else "?"
        if err["type"] == "extra_forbidden":
            msg = f"unknown option {key!r} for the {kind} {name!r}"
        elif err["type"] == "missing":
            msg = f"the {kind} {name!r} needs the option {key!r}"
        else:
            msg = (f"option {key!r} of the {kind} {name!r}: {err['msg']} "
                   f"(got {err.get('input')!r})")
        raise ValueError(f"{msg} (allowed options: {listing})") from None


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
        _check_registry("dataset", self.name, self.options)
        return self


class ModelConfig(_Section):
    """``name`` from :func:`~expost.experiments.models.list_models`; ``options`` as
    :func:`~expost.experiments.models.model_options` lists them."""

    name: str
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _options(self) -> ModelConfig:
        _check_registry("model", self.name, self.options)
        return self


class EmphasizeObjective(_Section):
    """The paper's objective: one class weighted ``ratio`` : 1 (Section 3).

    ``emphasized`` is a class index, a class name, or ``"hardest"``: the class
    with the lowest validation recall of a quick multinomial logistic-regression
    probe on the (flattened) training inputs, unless the data set names its
    hardest class in ``meta["hardest_class"]``.
    """

    kind: Literal["emphasize"]
    emphasized: int | str = "hardest"
    ratio: float = Field(99.0, gt=0, allow_inf_nan=False)

    @field_validator("emphasized", mode="before")
    @classmethod
    def _class(cls, v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, (int, str)):
            raise ValueError(f"must be a class index, a class name or 'hardest', got {describe(v)}")
        if isinstance(v, int) and v < 0:
            raise ValueError(f"must be a nonnegative class index, got {v}")
        return v


class ClassWeightsObjective(_Section):
    """Class weights (Eq 14): a list (one per class, in order) or ``{class name: weight}``
    (classes not named get weight 1)."""

    kind: Literal["class_weights"]
    weights: list[float] | dict[str, float]

    @field_validator("weights", mode="before")
    @classmethod
    def _weights(cls, v: Any) -> Any:
        if isinstance(v, Mapping):
            items = [(f"[{k!r}]", k, x) for k, x in v.items()]
        elif isinstance(v, (list, tuple)):
            items = [(f"[{i}]", i, x) for i, x in enumerate(v)]
        else:
            raise ValueError("must be a list of class weights (one per class) or a mapping "
                             f"class name -> weight, got {describe(v)}")
        if not items:
            raise ValueError("must give at least one weight")
        for where, key, x in items:
            if isinstance(key, Mapping) or not isinstance(key, (str, int)):
                raise ValueError(f"class names must be strings, got {describe(key)}")
            ok = isinstance(x, (int, float)) and not isinstance(x, bool)
            if not ok or not np.isfinite(x) or x <= 0:
                raise ValueError(f"{where} must be a positive finite weight, got {describe(x)}")
        return dict(v) if isinstance(v, Mapping) else [float(x) for x in v]


class MatrixObjective(_Section):
    """A full utility matrix ``utility[a][y]``, or a cost matrix ``costs[a][y]`` turned into
    utilities by ``shift`` (:meth:`expost.Utility.from_costs`)."""

    kind: Literal["matrix"]
    utility: list[list[float]] | None = None
    costs: list[list[float]] | None = None
    shift: Literal["column", "global"] = "column"

    @model_validator(mode="after")
    def _one(self) -> MatrixObjective:
        if (self.utility is None) == (self.costs is None):
            raise ValueError("give exactly one of 'utility' and 'costs'")
        try:
            u = (Utility(self.utility) if self.utility is not None
                 else Utility.from_costs(self.costs, shift=self.shift))  # type: ignore[arg-type]
        except (TypeError, ValueError) as exc:
            raise ValueError(str(exc)) from None
        if u.n_actions != u.n_classes:
            raise ValueError(f"must be square (one action per class), got shape {u.matrix.shape}")
        return self


class InversePriorObjective(_Section):
    """Inverse training-prior class weights :math:`w_y = 1/\\mu_y` (footnote 13)."""

    kind: Literal["inverse_prior"]


Objective = Annotated[
    EmphasizeObjective | ClassWeightsObjective | MatrixObjective | InversePriorObjective,
    Field(discriminator="kind"),
]


class AdamConfig(_Section):
    name: Literal["adam"]
    lr: float = Field(1e-3, gt=0, allow_inf_nan=False)
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = (
        0.9, 0.999)
    eps: float = Field(1e-8, gt=0)
    weight_decay: float = Field(0.0, ge=0, allow_inf_nan=False)


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


class TrainingConfig(_Section):
    """Length (``epochs`` or ``steps``, exactly one), batch sizes and the evaluation interval.

    ``eval_every`` is ``"epoch"`` or a number of optimizer steps; the last step is
    always evaluated too. ``num_workers`` > 0 uses DataLoader worker processes
    for data sets without a batch fast path (resumed runs are then reproducible
    in distribution, not bit for bit).
    """

    epochs: int | None = Field(None, gt=0)
    steps: int | None = Field(None, gt=0)
    batch_size: int = Field(64, gt=0)
    eval_every: Literal["epoch"] | Annotated[int, Field(gt=0)] = "epoch"
    eval_batch_size: int = Field(1024, gt=0)
    grad_clip: float | None = Field(None, gt=0)
    num_workers: int = Field(0, ge=0)

    @field_validator("eval_every", mode="before")
    @classmethod
    def _every(cls, v: Any) -> Any:
        if v == "epoch" or (isinstance(v, int) and not isinstance(v, bool) and v > 0):
            return v
        raise ValueError(f"must be 'epoch' or a positive number of steps, got {describe(v)}")

    @model_validator(mode="after")
    def _length(self) -> TrainingConfig:
        if (self.epochs is None) == (self.steps is None):
            raise ValueError("give exactly one of 'epochs' and 'steps'")
        return self


RegimeName = Literal["weighted", "expost", "unweighted_raw", "inverse_prior", "resampled",
                     "metacost"]


class ExperimentConfig(_Section):
    """A whole experiment. See ``configs/default.yaml`` for an annotated example."""

    name: str = Field("experiment", min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    dataset: DatasetConfig
    model: ModelConfig
    objective: Objective = Field(default_factory=lambda: EmphasizeObjective(kind="emphasize"))
    regimes: list[RegimeName] = Field(
        default_factory=lambda: ["weighted", "expost", "unweighted_raw"], min_length=1)
    seeds: list[Annotated[int, Field(ge=0)]] = Field(default_factory=lambda: list(range(5)))
    optimizer: Optimizer = Field(default_factory=lambda: AdamConfig(name="adam"))
    schedule: Schedule = Field(default_factory=lambda: NoSchedule(name="none"))
    training: TrainingConfig
    device: str = "auto"
    precision: Literal["fp32", "bf16"] = "fp32"
    output_dir: str | None = None
    num_threads: int | None = Field(None, gt=0)

    @field_validator("optimizer", "schedule", mode="before")
    @classmethod
    def _short(cls, v: Any) -> Any:
        return _named(v)

    @field_validator("objective", mode="before")
    @classmethod
    def _short_objective(cls, v: Any) -> Any:
        return _named(v, "kind")

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds(cls, v: Any) -> Any:
        if isinstance(v, bool):
            raise ValueError(f"must be a number of seeds or a list of seeds, got {describe(v)}")
        if isinstance(v, int):
            if v < 1:
                raise ValueError(f"must be a positive number of seeds, got {v}")
            return list(range(v))
        if isinstance(v, (list, tuple)):
            if not v:
                raise ValueError("must list at least one seed")
            if len(set(map(repr, v))) != len(v):
                raise ValueError(f"must not repeat a seed, got {list(v)}")
        return v

    @field_validator("regimes", mode="after")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"must not repeat a regime, got {v}")
        return v

    @field_validator("device", mode="after")
    @classmethod
    def _device(cls, v: str) -> str:
        import re

        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", v):
            raise ValueError(f"must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {v!r}")
        return v

    @property
    def run_dir(self) -> Path:
        """``output_dir``, or ``runs/<name>`` when it is not set."""
        return Path(self.output_dir) if self.output_dir else Path("runs") / self.name


# ---------------------------------------------------------------- loading
_UNION_TAGS = {
    "objective": {"emphasize", "class_weights", "matrix", "inverse_prior"},
    "optimizer": {"adam", "adamw", "sgd"},
    "schedule": {"none", "step", "cosine", "plateau"},
}


def _format_errors(exc: ValidationError) -> list[tuple[str, str]]:
    out = []
    for err in exc.errors(include_url=False):
        parts: list[str] = []
        for i, part in enumerate(err["loc"]):
            prev = err["loc"][i - 1] if i else None
            if isinstance(prev, str) and prev in _UNION_TAGS and part in _UNION_TAGS[prev]:
                continue  # pydantic's discriminated-union tag: not a key the user wrote
            if isinstance(part, str) and ("[" in part or part.startswith("function-")):
                continue  # pydantic's label of a union member, e.g. "list[int]"
            parts.append(f"[{part}]" if isinstance(part, int) else str(part))
        path = ".".join(parts).replace(".[", "[") or "(top level)"
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        kind = err["type"]
        if kind == "missing":
            msg = "required key missing"
        elif kind == "union_tag_not_found" and parts and parts[-1] in _UNION_TAGS:
            key = "kind" if parts[-1] == "objective" else "name"
            tags = ", ".join(repr(t) for t in sorted(_UNION_TAGS[parts[-1]]))
            msg = f"needs a {key!r} key, one of {tags} (got {err.get('input')!r})"
        elif kind not in ("value_error", "assertion_error") and "input" in err:
            msg = f"{msg} (got {err['input']!r})"
        out.append((path, msg))
    # one message per path is enough (unions repeat themselves)
    seen: set[tuple[str, str]] = set()
    return [e for e in out if not (e in seen or seen.add(e))]


def _parse_overrides(overrides: Sequence[str]) -> list[tuple[list[str], Any]]:
    out = []
    for item in overrides:
        if not isinstance(item, str) or "=" not in item:
            raise ConfigError(_error("overrides", "items of the form key.path=value",
                                     describe(item)))
        key, _, raw = item.partition("=")
        path = [p for p in key.strip().split(".") if p]
        if not path:
            raise ConfigError(_error("overrides", "a non-empty key path", describe(item)))
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"Override {item!r}: the value is not valid YAML ({exc}).") from None
        out.append((path, value))
    return out


def _apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    data = json.loads(json.dumps(data))  # a deep copy: never mutate the caller's mapping
    for path, value in _parse_overrides(overrides):
        node = data
        for depth, key in enumerate(path[:-1]):
            nxt = node.get(key)
            if nxt is None and depth == 0 and key in _UNION_TAGS:
                # an absent section with a default (optimizer: adam, ...): edit the default
                default = ExperimentConfig.model_fields[key].get_default(call_default_factory=True)
                nxt = default.model_dump(mode="json")
            if not isinstance(nxt, dict):
                nxt = _named(nxt, "kind" if key == "objective" else "name")
                nxt = dict(nxt) if isinstance(nxt, dict) else {}
            node[key] = nxt
            node = nxt
        node[path[-1]] = value
    return data


def _read_yaml(source: str | Path) -> tuple[Any, str]:
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"Config file {str(path)!r} does not exist.")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")), str(path)
    except yaml.YAMLError as exc:
        raise ConfigError(f"Invalid experiment config ({path}): not valid YAML: {exc}") from None


def load_config(
    source: str | Path | Mapping[str, Any] | ExperimentConfig | None = None,
    *,
    overrides: Sequence[str] = (),
) -> ExperimentConfig:
    """Validate an experiment config.

    Parameters
    ----------
    source : path, mapping, ExperimentConfig or None
        A YAML file, an already-parsed mapping, a config, or None for the
        embedded default (:data:`DEFAULT_CONFIG_YAML`, the offline digits run).
    overrides : sequence of str
        ``"key.path=value"`` items applied before validation, the value parsed
        as YAML (``"training.epochs=3"``, ``"seeds=[0, 1]"``).

    Raises
    ------
    ConfigError
        Listing every invalid key path with what is allowed and what arrived.

    Examples
    --------
    >>> cfg = load_config(overrides=["seeds=2", "training.epochs=3"])
    >>> cfg.dataset.name, cfg.seeds, cfg.training.epochs
    ('digits', [0, 1], 3)
    >>> load_config(overrides=["optimizer.lr=-1"])
    Traceback (most recent call last):
    ...
    expost.experiments.config.ConfigError: Invalid experiment config (embedded default):
      - optimizer.lr: Input should be greater than 0 (got -1)
    """
    where = "embedded default"
    if isinstance(source, ExperimentConfig):
        if not overrides:
            return source
        data: Any = source.model_dump(mode="json")
        where = "config object"
    elif source is None:
        data = yaml.safe_load(DEFAULT_CONFIG_YAML)
    elif isinstance(source, Mapping):
        data, where = source, "mapping"
    elif isinstance(source, (str, Path)):
        data, where = _read_yaml(source)
    else:
        raise TypeError(_error("source", "a path, a mapping, an ExperimentConfig or None",
                               describe(source)))
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"Invalid experiment config ({where}): the top level must be a mapping of "
            f"{', '.join(ExperimentConfig.model_fields)}, got {describe(data)}."
        )
    data = _apply_overrides(dict(data), overrides) if overrides else data
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        errors = _format_errors(exc)
        lines = "\n".join(f"  - {p}: {m}" for p, m in errors)
        raise ConfigError(f"Invalid experiment config ({where}):\n{lines}", errors) from None


def default_config() -> ExperimentConfig:
    """The embedded default (:data:`DEFAULT_CONFIG_YAML`), validated."""
    return load_config(None)


def config_hash(config: ExperimentConfig) -> str:
    """SHA-256 of the canonical JSON of the config, ``output_dir`` excluded.

    Two configs with the same hash describe the same experiment; a directory
    holding one refuses the other.
    """
    payload = config.model_dump(mode="json", exclude={"output_dir"})
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


# ---------------------------------------------------------------- the objective
@dataclass(frozen=True)
class ResolvedObjective:
    """The objective of one experiment once the data set is known.

    Attributes
    ----------
    utility : Utility
        The normalised utility (Eq 21 on ``prior``) used for training the
        ``weighted`` regime and for every evaluation.
    inverse_prior_utility : Utility
        Normalised inverse-prior weights (the ``inverse_prior`` regime's training).
    prior : ndarray
        The training prior :math:`\\mu`.
    emphasized : int or None
        The emphasised class (``emphasize`` objectives).
    note : str
        How the objective was resolved (e.g. how "hardest" was chosen).
    """

    utility: Utility
    inverse_prior_utility: Utility
    prior: NDArray[np.float64]
    emphasized: int | None
    note: str


def _class_index(value: int | str, class_names: Sequence[str], where: str) -> int:
    if isinstance(value, int):
        if value >= len(class_names):
            raise ConfigError(
                f"Invalid experiment config: {where}: class index {value} is out of range "
                f"(the data set has {len(class_names)} classes: 0..{len(class_names) - 1})."
            )
        return value
    if value in class_names:
        return list(class_names).index(value)
    raise ConfigError(
        f"Invalid experiment config: {where}: {value!r} is not a class of the data set "
        f"(classes: {', '.join(class_names)})."
    )


def hardest_class(data: Any, *, max_rows: int = 5000) -> tuple[int, str]:
    """The class a quick probe finds hardest: lowest validation recall.

    A multinomial logistic regression on standardised, flattened training
    inputs (at most ``max_rows``, stratified, fixed seed) scored on the
    validation split; deterministic. ``data.meta["hardest_class"]`` wins when set.
    Needs in-memory inputs (a TensorDataset).
    """
    if "hardest_class" in data.meta:
        c = data.meta["hardest_class"]
        idx = _class_index(c, data.class_names, "objective.emphasized")
        return idx, f"hardest class {data.class_names[idx]!r} as named by the data set"
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    if not isinstance(data.train, torch.utils.data.TensorDataset) or not isinstance(
            data.val, torch.utils.data.TensorDataset):
        raise ConfigError(
            "Invalid experiment config: objective.emphasized: 'hardest' needs an in-memory "
            f"data set to probe; name the class for {data.name!r} instead "
            f"(classes: {', '.join(data.class_names)})."
        )
    rng = np.random.default_rng(0)
    ytr = data.train_labels
    keep = np.arange(ytr.size) if ytr.size <= max_rows else np.sort(
        rng.choice(ytr.size, max_rows, replace=False))
    xtr = data.train.tensors[0][torch.as_tensor(keep)].reshape(keep.size, -1).double().numpy()
    xva = data.val.tensors[0].reshape(len(data.val), -1).double().numpy()
    scaler = StandardScaler().fit(xtr)
    probe = LogisticRegression(max_iter=300).fit(scaler.transform(xtr), ytr[keep])
    pred = probe.predict(scaler.transform(xva))
    yva = data.val_labels
    recall = np.array([np.mean(pred[yva == c] == c) if np.any(yva == c) else np.inf
                       for c in range(data.n_classes)])
    idx = int(np.argmin(recall))
    return idx, (f"hardest class {data.class_names[idx]!r}: lowest validation recall "
                 f"({recall[idx]:.3f}) of a logistic-regression probe")


def resolve_objective(objective: Any, data: Any) -> ResolvedObjective:
    """The normalised utility (Eq 21 on the training prior) of a config's objective.

    Parameters
    ----------
    objective : an objective section of :class:`ExperimentConfig`
    data : DataSplits
        Supplies the class names, the training prior and (for "hardest") the data.

    Examples
    --------
    >>> from expost.experiments.datasets import load_dataset
    >>> cfg = load_config(overrides=["objective={kind: emphasize, emphasized: 3}"])
    >>> r = resolve_objective(cfg.objective, load_dataset("digits"))
    >>> r.emphasized, bool(r.utility.is_diagonal)
    (3, True)
    """
    counts = np.bincount(data.train_labels, minlength=data.n_classes)
    if (counts == 0).any():
        missing = [data.class_names[i] for i in np.flatnonzero(counts == 0)]
        raise ConfigError(
            f"The training split of {data.name!r} has no example of the class(es) {missing}; "
            "Eq 21 needs a strictly positive training prior."
        )
    prior = counts / counts.sum()
    m = data.n_classes
    emphasized: int | None = None
    note = ""
    if objective.kind == "emphasize":
        if objective.emphasized == "hardest":
            emphasized, note = hardest_class(data)
        else:
            emphasized = _class_index(objective.emphasized, data.class_names,
                                      "objective.emphasized")
            note = f"emphasized class {data.class_names[emphasized]!r}"
        raw = Utility.emphasize(m, emphasized, objective.ratio)
        note += f", ratio {objective.ratio:g}:1"
    elif objective.kind == "class_weights":
        w = objective.weights
        if isinstance(w, dict):
            vec = np.ones(m)
            for name, value in w.items():
                vec[_class_index(name, data.class_names, "objective.weights")] = value
        else:
            if len(w) != m:
                raise ConfigError(
                    f"Invalid experiment config: objective.weights: expected {m} weights (one "
                    f"per class: {', '.join(data.class_names)}), got {len(w)}."
                )
            vec = np.asarray(w, dtype=np.float64)
        raw = Utility.from_class_weights(vec)
        note = "class weights"
    elif objective.kind == "matrix":
        raw = (Utility(objective.utility) if objective.utility is not None
               else Utility.from_costs(objective.costs, shift=objective.shift))
        if raw.n_classes != m:
            raise ConfigError(
                f"Invalid experiment config: objective: the matrix is {raw.matrix.shape[0]} x "
                f"{raw.matrix.shape[1]}, the data set has {m} classes."
            )
        note = "utility matrix" if objective.utility is not None else (
            f"costs with the {objective.shift!r} shift")
    else:
        raw = Utility.inverse_prior(prior)
        note = "inverse training prior"
    inverse = Utility.inverse_prior(prior).normalized(prior)
    return ResolvedObjective(raw.normalized(prior), inverse, prior, emphasized,
                             note + ", normalised with Eq 21 on the training prior")


# ---------------------------------------------------------------- the embedded default
DEFAULT_CONFIG_YAML = """\
# The offline default: scikit-learn's handwritten digits, a small MLP, the
# hardest class emphasised 99:1, Weighted Training against Ex Post Weighting
# (and the unweighted model as it is), 5 seeds, 30 epochs (one evaluation
# interval each). `expost run` with no config runs exactly this (about a
# minute end to end on 2 CPU cores, report included).
name: digits-default
dataset:
  name: digits
  seed: 0
  options: {flatten: true}
model:
  name: mlp
  options: {hidden: [128]}
objective:
  kind: emphasize
  emphasized: hardest
  ratio: 99
regimes: [weighted, expost, unweighted_raw]
seeds: 5
optimizer:
  name: adam
  lr: 0.001
schedule: none
training:
  epochs: 30
  batch_size: 64
  eval_every: epoch
device: auto
precision: fp32
output_dir: null
# A model this small trains fastest on one thread (2 threads spin at barriers).
num_threads: 1
"""
