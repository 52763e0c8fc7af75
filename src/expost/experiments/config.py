r"""The typed experiment config: YAML in, a validated, frozen :class:`ExperimentConfig` out.

Every section rejects unknown keys, and every error names the key path, what
is allowed and what arrived, all errors at once in one message
(:class:`ConfigError`, a ValueError)::

    Invalid experiment config (tiny.yaml):
      - optimizer.lr: Input should be greater than 0 (got -0.1)
      - training: unknown key 'epoch' (allowed keys: epochs, steps, batch_size, ...)

The sections live in :mod:`._schema` (data, model, optimizer, schedule,
training) and :mod:`.objective` (the objective, resolved into the normalised
utility by :func:`~expost.experiments.objective.resolve_objective` once the data
set is loaded). Use :func:`load_config` (a path, a mapping, or None for the
shipped default).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator

from .._validation import _error, describe
from ._schema import (
    AdamConfig,
    ConfigError,
    DatasetConfig,
    ModelConfig,
    NoSchedule,
    Optimizer,
    Schedule,
    TrainingConfig,
    _Section,
    named_section,
)
from .objective import EmphasizeObjective, Objective
from .regimes import REGIME_NAMES

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "ConfigError",
    "ExperimentConfig",
    "config_hash",
    "default_config",
    "default_config_text",
    "load_config",
]

#: The shipped default config, package data beside this module.
DEFAULT_CONFIG_FILE = "default.yaml"

#: At most this many seeds (runs per regime) in one experiment.
MAX_SEEDS = 1000

#: At most this many characters of an input value are echoed in an error message.
MAX_ECHO = 200


RegimeName = Literal[REGIME_NAMES]  # type: ignore[valid-type]


class ExperimentConfig(_Section):
    """A whole experiment. See the shipped default (``configs/default.yaml``) for an example."""

    name: str = "experiment"
    dataset: DatasetConfig
    model: ModelConfig
    objective: Objective = Field(
        default_factory=lambda: EmphasizeObjective(kind="emphasize"))  # type: ignore[call-arg]
    regimes: list[RegimeName] = Field(
        default_factory=lambda: ["weighted", "expost", "unweighted_raw"], min_length=1)
    seeds: list[Annotated[int, Field(ge=0, lt=2**32)]] = Field(
        default_factory=lambda: list(range(5)), max_length=MAX_SEEDS)
    optimizer: Optimizer = Field(
        default_factory=lambda: AdamConfig(name="adam"))  # type: ignore[call-arg]
    schedule: Schedule = Field(default_factory=lambda: NoSchedule(name="none"))
    training: TrainingConfig
    device: str = "auto"
    precision: Literal["fp32", "bf16"] = "fp32"
    output_dir: str | None = None
    num_threads: int | None = Field(None, gt=0)

    @field_validator("optimizer", "schedule", mode="before")
    @classmethod
    def _short(cls, v: Any) -> Any:
        return named_section(v)

    @field_validator("objective", mode="before")
    @classmethod
    def _short_objective(cls, v: Any) -> Any:
        return named_section(v, "kind")

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds(cls, v: Any) -> Any:
        if isinstance(v, bool):
            raise ValueError(f"must be a number of seeds or a list of seeds, got {describe(v)}")
        if isinstance(v, int):
            if not 1 <= v <= MAX_SEEDS:
                raise ValueError(f"must be a positive number of seeds (at most {MAX_SEEDS}), "
                                 f"got {v}")
            return list(range(v))
        if isinstance(v, (list, tuple)):
            if not v:
                raise ValueError("must list at least one seed")
            for i, seed in enumerate(v):  # not coerced: true would be seed 1, '0' and 0.0 seed 0
                if isinstance(seed, bool) or not isinstance(seed, int):
                    raise ValueError(f"must list whole numbers, got {describe(seed)} at "
                                     f"position {i}")
            if len(set(v)) != len(v):
                raise ValueError(f"must not repeat a seed, got {list(v)}")
        return v

    @field_validator("name", mode="after")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        import re

        if not re.fullmatch(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,99}", v):
            raise ValueError("must be a plain name matching the pattern "
                             "[A-Za-z0-9_-][A-Za-z0-9_.-]* (at most 100 characters; no '/', "
                             f"no leading '.': it names runs/<name>), got {_echo(v)}")
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

        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d{1,4})?", v):  # torch cannot parse cuda:1e20
            raise ValueError(f"must be 'auto', 'cpu', 'cuda', 'cuda:N' (N below 10000) or "
                             f"'mps', got {_echo(v)}")
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


def _echo(value: Any) -> str:
    """``repr(value)``, cut to :data:`MAX_ECHO` characters."""
    text = repr(value)
    return text if len(text) <= MAX_ECHO else text[:MAX_ECHO] + "..."


class _ConfigLoader(yaml.SafeLoader):
    """YAML's safe loader without aliases (``*name``: an alias bomb expands exponentially)
    and without duplicate keys (YAML would keep the last silently)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            line = event.start_mark.line + 1
            raise ConfigError(f"YAML aliases are not allowed in an experiment config "
                              f"(*{event.anchor} on line {line}); write the value out.")
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                raise ConfigError(f"a key on line {key_node.start_mark.line + 1} is a "
                                  f"{type(key).__name__}; keys are names.")
            if isinstance(key, str) and key in seen:
                raise ConfigError(f"duplicate key {_echo(key)} on line "
                                  f"{key_node.start_mark.line + 1}; give each key once.")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, where: str) -> Any:
    """Parse config YAML safely (no aliases, no duplicate keys); errors name ``where``.

    >>> parse_yaml("{a: 1, b: [2, 3]}", "x.yaml")
    {'a': 1, 'b': [2, 3]}
    """
    try:
        return yaml.load(text, Loader=_ConfigLoader)
    except ConfigError as exc:
        raise ConfigError(f"Invalid experiment config ({where}): {exc}") from None
    except RecursionError:  # [[[[...]]]] thousands deep
        raise ConfigError(f"Invalid experiment config ({where}): nested too deeply to be a "
                          "config.") from None
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise ConfigError(f"Invalid experiment config ({where}): not valid YAML: "
                          f"{detail[:2 * MAX_ECHO]}") from None


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
            msg = f"needs a {key!r} key, one of {tags} (got {_echo(err.get('input'))})"
        elif kind not in ("value_error", "assertion_error") and "input" in err:
            msg = f"{msg} (got {_echo(err['input'])})"
        msg = msg if len(msg) <= 2 * MAX_ECHO else msg[:2 * MAX_ECHO] + "..."
        out.append((path, msg))
    # one message per path is enough (unions repeat themselves)
    return list(dict.fromkeys(out))


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
        value = parse_yaml(raw, f"override {item[:MAX_ECHO]!r}") if raw.strip() else None
        out.append((path, value))
    return out


def _apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    try:
        data = json.loads(json.dumps(data))  # a deep copy: never mutate the caller's mapping
    except (TypeError, ValueError) as exc:  # a YAML date or !!binary value: no config holds one
        raise ConfigError(f"Invalid experiment config: a value that is not text, a number, a "
                          f"list or a mapping ({exc}).") from None
    for path, value in _parse_overrides(overrides):
        node = data
        for depth, key in enumerate(path[:-1]):
            nxt = node.get(key)
            if nxt is None and depth == 0 and key in _UNION_TAGS:
                # an absent section with a default (optimizer: adam, ...): edit the default,
                # unless the override names another kind: then that kind with its own
                # defaults (the default's keys, adam's betas, were no key of sgd's)
                tag = "kind" if key == "objective" else "name"
                default = ExperimentConfig.model_fields[key].get_default(call_default_factory=True)
                nxt = {} if path[1:] == [tag] else default.model_dump(mode="json")
            if not isinstance(nxt, dict):
                nxt = named_section(nxt, "kind" if key == "objective" else "name")
                nxt = dict(nxt) if isinstance(nxt, dict) else {}
            node[key] = nxt
            node = nxt
        node[path[-1]] = value
    return data


def _read_yaml(source: str | Path) -> tuple[Any, str]:
    path = Path(source)
    if path.is_dir():
        raise ConfigError(f"Config file {str(path)!r} is a folder; expected a YAML file.")
    if not path.exists():
        raise FileNotFoundError(f"Config file {str(path)!r} does not exist.")
    with path.open("rb") as fh:  # a pipe (<(...)) is read too, as far as the limit
        raw = fh.read(1_000_001)
    if len(raw) > 1_000_000:
        raise ConfigError(f"Invalid experiment config ({path}): larger than 1 MB; is it a "
                          "config?")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"Invalid experiment config ({path}): not UTF-8 text (byte "
                          f"{exc.start}).") from None
    return parse_yaml(text, str(path)), str(path)


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
        shipped default (:func:`default_config_text`, the offline digits run).
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
    expost.experiments._schema.ConfigError: Invalid experiment config (embedded default):
      - optimizer.lr: Input should be greater than 0 (got -1)
    """
    where = "embedded default"
    if isinstance(source, ExperimentConfig):
        if not overrides:
            return source
        data: Any = source.model_dump(mode="json")
        where = "config object"
    elif source is None:
        data = yaml.safe_load(default_config_text())
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


def default_config_text() -> str:
    """The shipped default config's YAML (package data ``expost/experiments/default.yaml``,
    also at ``configs/default.yaml`` in the repository)."""
    return resources.files(__package__).joinpath(DEFAULT_CONFIG_FILE).read_text(encoding="utf-8")


def default_config() -> ExperimentConfig:
    """The shipped default (:func:`default_config_text`), validated."""
    return load_config(None)


def unfused_hash(config: ExperimentConfig) -> str | None:
    """The hash ``config`` would have with ``optimizer.fused: false`` (that of an experiment
    made before the option existed); None where it is not fused Adam."""
    if not getattr(config.optimizer, "fused", False):
        return None
    optimizer = config.optimizer.model_copy(update={"fused": False})
    return config_hash(config.model_copy(update={"optimizer": optimizer}))


def config_hash(config: ExperimentConfig) -> str:
    """SHA-256 of the canonical JSON of the config, ``output_dir`` and
    ``training.checkpoint_every`` excluded, and ``optimizer.fused`` where it is false
    (so that experiments made before the option existed, which ran the for-loop Adam,
    keep their hash under ``optimizer.fused: false``).

    Two configs with the same hash describe the same experiment; a directory
    holding one refuses the other. Neither of the first two keys changes a number
    of the results (where the run is written, how often it is checkpointed), so a
    run may be resumed with another checkpoint interval. ``fused`` does (to
    rounding): true and false hash differently, false as the key's absence.
    """
    payload = config.model_dump(mode="json",
                                exclude={"output_dir": True, "training": {"checkpoint_every": True}})
    if payload["optimizer"].get("fused") is False:
        del payload["optimizer"]["fused"]  # the hash of every config before the option existed
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
