"""``expost data``: look at a data set, build its image cache.

::

    expost data describe NAME [--set dataset.options.KEY=VALUE ...] [--seed N] [--json]
    expost data cache CONFIG [--set KEY=VALUE ...] [--workers N]

``describe`` prints the subset size, the split sizes, every class's count and
rate per split, the input shape, the files found, missing and used, where the
data was read from and the image cache's state
(:func:`~expost.experiments.datasets.describe_dataset`). ``cache`` builds the
image cache of a config's data set (a resumable, parallel, one-time decode; it
is otherwise built on the first run). Errors go to the command line's one
boundary (``expost.cli.main``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["cmd_cache", "cmd_describe", "parse_dataset_sets", "register"]

_PREFIX = "dataset.options."


def parse_dataset_sets(items: Sequence[str]) -> tuple[dict[str, Any], int | None]:
    """``--set`` items of ``data describe``: ``dataset.options.KEY=VALUE`` (or ``KEY=VALUE``)
    and ``dataset.seed=N``; values are YAML. Returns the options and the seed (None: unset).

    >>> parse_dataset_sets(["dataset.options.limit=200", "on_missing=skip", "dataset.seed=3"])
    ({'limit': 200, 'on_missing': 'skip'}, 3)
    """
    from .config import parse_yaml

    options: dict[str, Any] = {}
    seed = None
    for item in items:
        key, eq, raw = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ValueError(f"--set: expected dataset.options.KEY=VALUE, got {item!r}.")
        value = parse_yaml(raw, f"--set {item!r}") if raw.strip() else None
        if key == "dataset.seed":
            seed = value
        elif key.startswith(_PREFIX) or "." not in key:
            options[key.removeprefix(_PREFIX)] = value
        else:
            raise ValueError(f"--set: expected dataset.options.KEY=VALUE or dataset.seed=N, got "
                             f"{item!r} (data describe reads no other config key).")
    return options, seed


def cmd_describe(args: argparse.Namespace) -> int:
    from .datasets import describe_dataset, format_description

    options, seed = parse_dataset_sets(args.set or ())
    seed = args.seed if seed is None else seed
    d = describe_dataset(args.name, seed=seed, **options)
    print(json.dumps(d, indent=1) if args.json else format_description(d))
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    from .config import load_config
    from .datasets import dataset_options, load_dataset

    config = load_config(args.config, overrides=args.set or ())
    name, options = config.dataset.name, dict(config.dataset.options)
    if "cache" not in dataset_options(name):
        print(f"The data set {name!r} has no image cache (it is read whole into memory); "
              "nothing to build.")
        return 0
    options["cache"] = True
    if args.workers is not None:
        options["cache_workers"] = args.workers
    t0 = time.perf_counter()
    data = load_dataset(name, seed=config.dataset.seed, **options)
    seconds = time.perf_counter() - t0
    info = data.meta["cache"]
    path = Path(info["path"])
    built = int(info["built_now"])
    rate = f", {built / seconds:.1f} images/s" if built else ""
    print(f"Image cache of {name!r}: {info['images']} images {tuple(info['shape'][1:])}, "
          f"{path.stat().st_size / 2**20:.1f} MiB at {path}; decoded {built} now in "
          f"{seconds:.1f} s{rate}" + ("" if built else " (it was complete already)") + ".",
          file=sys.stdout)
    return 0


def _workers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def register(sub: Any) -> None:
    """Add ``data describe`` and ``data cache`` to the ``expost`` subparsers ``sub``."""
    p = sub.add_parser("data", help="describe a data set, build its image cache",
                       description="Look at a registered data set, or build the image cache "
                                   "of a config's data set.")
    inner = p.add_subparsers(dest="data_command", metavar="ACTION")
    inner.required = True
    d = inner.add_parser("describe", help="split sizes, classes and rates, files, cache",
                         description="Load a data set and summarise it (never builds a cache).")
    d.add_argument("name", metavar="NAME", help="a registered data set (digits, medmnist, "
                   "cifar10, chestxray14, imagefolder, npz, ...)")
    d.add_argument("--set", action="append", metavar="dataset.options.KEY=VALUE",
                   help="a data-set option, e.g. --set dataset.options.root=data/xray "
                        "(repeatable; dataset.seed=N sets the seed)")
    d.add_argument("--seed", type=int, default=0, help="the data set's seed (default 0)")
    d.add_argument("--json", action="store_true", help="print the summary as JSON")
    d.set_defaults(func=cmd_describe)
    c = inner.add_parser("cache", help="build the image cache of a config's data set",
                         description="Decode and resize every image of the config's data set "
                                     "once, in parallel, into its cache (resumable).")
    c.add_argument("config", metavar="CONFIG", help="experiment YAML")
    c.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config key, e.g. --set dataset.options.image_size=256")
    c.add_argument("--workers", type=_workers, metavar="N",
                   help="decoding processes (default: the CPU count)")
    c.set_defaults(func=cmd_cache)
