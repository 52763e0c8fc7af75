"""Sweeps: one config expanded over a grid of values, one experiment per grid point.

``expost sweep CONFIG --grid objective.emphasized=Pneumonia,Cardiomegaly
--grid objective.ratio=9,99 --out DIR`` writes ``DIR/sweep.json`` (the base
config, the grid, and each point's values and folder) and runs every point's
experiment in its own folder ``DIR/p000-emphasized=Pneumonia-ratio=9`` ... as
one pool of trainings on the chosen backend (:func:`run_sweep`). Rerunning the
same command resumes every point. ``expost table DIR`` prints one Table 1 per
point.

Grid values are comma-separated and parsed like ``--set`` values (YAML:
``9`` is a number, ``[0, 1]`` a list, ``Pneumonia`` a string).
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from .backends import BackendOptions
from .config import ConfigError, ExperimentConfig, config_hash, load_config
from .store import MANIFEST, sweep_points

__all__ = ["MANIFEST", "expand_grid", "parse_grid", "run_sweep", "sweep_points"]

_RESERVED = ("output_dir",)


def parse_grid(items: Sequence[str]) -> list[tuple[str, list[str]]]:
    """``["a.b=1,2", "c=x"]`` as ``[("a.b", ["1", "2"]), ("c", ["x"])]``.

    A comma inside brackets, braces or quotes belongs to its value, so a value can be a
    YAML list (``seeds=[0,1],[2]``: two values; it split at every comma before).

    >>> parse_grid(["objective.ratio=9,99"])
    [('objective.ratio', ['9', '99'])]
    >>> parse_grid(["seeds=[0, 1],[2]"])
    [('seeds', ['[0, 1]', '[2]'])]
    """
    grid: list[tuple[str, list[str]]] = []
    for item in items:
        key, sep, rest = item.partition("=")
        key = key.strip()
        values = [v.strip() for v in _top_level_split(rest)]
        if not sep or not key or any(not v for v in values):
            raise ValueError(f"--grid {item!r}: expected KEY=VALUE1,VALUE2,... (e.g. "
                             "objective.ratio=9,99), with no empty key or value.")
        if key in _RESERVED:
            raise ValueError(f"--grid {item!r}: {key!r} cannot vary (the sweep gives each point "
                             "its own folder under --out).")
        if key in [k for k, _ in grid]:
            raise ValueError(f"--grid {item!r}: the key {key!r} is given twice; list all its "
                             "values in one --grid.")
        if len(set(values)) != len(values):
            raise ValueError(f"--grid {item!r}: a value is repeated.")
        grid.append((key, values))
    if not grid:
        raise ValueError("--grid: expected at least one KEY=VALUE1,VALUE2,...")
    return grid


def _top_level_split(text: str) -> list[str]:
    """``text`` split at the commas outside brackets, braces and quotes."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", text)[:60]


def expand_grid(base: ExperimentConfig, grid: Sequence[tuple[str, Sequence[str]]]
                ) -> list[tuple[str, dict[str, str]]]:
    """The grid's points in order (cartesian product): ``(folder name, {key: value})``.
    Each value is checked against the config first (one line naming ``--grid``)."""
    source = base.model_dump(mode="json")
    for key, values in grid:
        for value in values:
            try:
                load_config(source, overrides=[f"{key}={value}"])
            except ConfigError as exc:
                detail = "; ".join(f"{p}: {m}" for p, m in exc.errors) or str(exc)
                raise ValueError(f"--grid {key}={value}: {detail}") from None
            except ValueError as exc:
                raise ValueError(f"--grid {key}={value}: {exc}") from None
    points: list[tuple[str, dict[str, str]]] = []
    for n, combo in enumerate(itertools.product(*(values for _, values in grid))):
        point = dict(zip([k for k, _ in grid], combo, strict=True))
        label = "-".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in point.items())
        points.append((f"p{n:03d}-{_slug(label)}", point))
    return points


def run_sweep(
    config: str | Path | Mapping[str, Any] | ExperimentConfig | None,
    grid: Sequence[str],
    *,
    output_dir: str | Path | None = None,
    overrides: Sequence[str] = (),
    backend: BackendOptions | None = None,
    quiet: bool = False,
    progress: bool = True,
    stream: TextIO | None = None,
) -> Path:
    """Expand ``config`` over ``grid`` (``--grid`` items) and run (or resume) every point's
    experiment as one pool of trainings; return the sweep folder.

    The folder (default ``runs/<name>-sweep``) holds ``sweep.json`` and one experiment
    folder per point. A folder holding another sweep (another base config or grid) is
    refused.
    """
    from .._atomic import atomic_write
    from .runners import run_experiments

    base = load_config(config, overrides=overrides)
    parsed = parse_grid(grid)
    points = expand_grid(base, parsed)
    out = Path(output_dir) if output_dir is not None else Path("runs") / f"{base.name}-sweep"
    source = base.model_dump(mode="json", exclude={"output_dir"})
    configs = []
    for folder, values in points:
        grid_point = " ".join(f"{k}={v}" for k, v in values.items())
        try:  # values valid one at a time may not be together (nesterov without momentum)
            cfg = load_config(source, overrides=[f"{k}={v}" for k, v in values.items()])
        except ConfigError as exc:
            detail = "; ".join(f"{p}: {m}" for p, m in exc.errors) or str(exc)
            raise ValueError(f"--grid: the point {grid_point} ({folder}) is not a valid "
                             f"config: {detail}") from None
        configs.append(cfg.model_copy(update={"output_dir": str(out / folder)}))
    manifest = {
        "format": 1, "config": source, "config_hash": config_hash(base),
        "grid": [{"key": k, "values": v} for k, v in parsed],
        "points": [{"dir": folder, "values": values, "config_hash": config_hash(cfg)}
                   for (folder, values), cfg in zip(points, configs, strict=True)],
    }
    path = out / MANIFEST
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            old = None
        if not isinstance(old, dict) or (old.get("config_hash"), old.get("grid")) != (
                manifest["config_hash"], manifest["grid"]):
            raise ValueError(f"--out {str(out)!r} holds another sweep (its {MANIFEST} has "
                             "another config or grid); use another --out.")
    else:
        atomic_write(path, json.dumps(manifest, indent=2) + "\n")
    run_experiments(configs, names=[folder for folder, _ in points], backend=backend,
                    quiet=quiet, progress=progress, stream=stream)
    return out
