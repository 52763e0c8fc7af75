"""What a data set holds: split sizes, classes and their rates, files, cache (``expost data``).

:func:`describe_dataset` loads a registered data set (never building an image
cache: it reports the cache's state instead) and summarises it from its
:class:`~expost.experiments.datasets.DataSplits`; :func:`format_description`
prints that summary; :func:`data_provenance` is the part stored with a run.
"""

from __future__ import annotations

import os
from typing import Any

from ._api import dataset_options, load_dataset
from ._base import DATA_ENV, SPLITS, DataSplits
from .image_cache import CACHE_ENV, CacheSpec, cache_status

#: ``meta`` keys naming where a data set was read from, in the order shown.
SOURCE_KEYS = ("root", "file", "csv")


def data_provenance(data: DataSplits) -> dict[str, Any]:
    """Where the data came from and how many files were used (JSON-safe), for a run's info.

    ``source`` (the folder or file read), ``files`` (for file-backed sets: how many
    were listed, found, missing and used) and ``cache`` (the image cache read).

    >>> from expost.experiments.datasets import load_dataset
    >>> data_provenance(load_dataset("digits"))
    {}
    """
    meta = data.meta
    out: dict[str, Any] = {}
    source = {k: str(meta[k]) for k in SOURCE_KEYS if isinstance(meta.get(k), str)}
    if source:
        out["source"] = source
    if isinstance(meta.get("files"), dict):
        out["files"] = {k: int(v) for k, v in meta["files"].items()}
    cache = meta.get("cache")
    if isinstance(cache, dict) and cache.get("path"):
        out["cache"] = str(cache["path"])
    return out


def describe_dataset(name: str, *, seed: int = 0, **options: Any) -> dict[str, Any]:
    """A summary of the data set ``name`` loaded with ``options`` (JSON-safe).

    Keys: ``name``, ``options``, ``n`` (examples in the three splits together),
    ``splits`` (per split: ``n``, and per class its ``counts`` and ``rates``),
    ``class_names``, ``input_shape``, ``files`` (found / missing / used, or None for
    data held in memory), ``source`` (where it was read from, with ``$EXPOST_DATA``),
    ``layout`` (where each split came from, when the set says), ``cache`` (the image
    cache's state, or None) and ``warnings`` (classes without test or validation
    examples). A data set with a ``cache`` option is loaded with ``cache=False``
    unless the option is given, so describing never builds a cache.

    >>> d = describe_dataset("digits")
    >>> d["n"], d["splits"]["val"]["n"], d["input_shape"]
    (1797, 180, [1, 8, 8])
    """
    load_options = dict(options)
    if "cache" in dataset_options(name) and "cache" not in options:
        load_options["cache"] = False
    data = load_dataset(name, seed=seed, **load_options)
    splits: dict[str, dict[str, Any]] = {}
    for split in SPLITS:
        counts = data.class_counts(split)
        n = int(counts.sum())
        splits[split] = {
            "n": n,
            "counts": {c: int(k) for c, k in zip(data.class_names, counts, strict=True)},
            "rates": {c: (float(k) / n if n else 0.0)
                      for c, k in zip(data.class_names, counts, strict=True)},
        }
    warnings = [f"class {c!r} has no {'validation' if s == 'val' else s} example"
                for s in ("test", "val") for c, k in splits[s]["counts"].items() if k == 0]
    provenance = data_provenance(data)
    spec = data.meta.get("cache_spec")
    cache = None
    if isinstance(spec, CacheSpec):
        status = cache_status(spec)
        cache = {"path": status["path"], "images": status["n"], "done": status["done"],
                 "complete": status["complete"],
                 "used_by_this_load": bool(load_options.get("cache"))}
    source = dict(provenance.get("source", {}))
    if source:
        source[f"${DATA_ENV}"] = os.environ.get(DATA_ENV)
        if cache is not None:
            source[f"${CACHE_ENV}"] = os.environ.get(CACHE_ENV)
    return {
        "name": name,
        "seed": seed,
        "options": {k: (str(v) if isinstance(v, os.PathLike) else v) for k, v in options.items()},
        "n": sum(s["n"] for s in splits.values()),
        "splits": splits,
        "class_names": list(data.class_names),
        "input_shape": list(data.input_shape),
        "files": provenance.get("files"),
        "source": source or None,
        "layout": data.meta.get("layout"),
        "cache": cache,
        "warnings": warnings,
    }


def format_description(d: dict[str, Any]) -> str:
    """:func:`describe_dataset`'s summary as text: a header, then one row per class with its
    count and rate in each split.

    >>> print(format_description(describe_dataset("digits")).splitlines()[0])
    digits (seed 0): 1797 examples, train 1258 / val 180 / test 359, 10 classes, input (1, 8, 8)
    """
    sizes = " / ".join(f"{s} {d['splits'][s]['n']}" for s in SPLITS)
    lines = [f"{d['name']} (seed {d['seed']}): {d['n']} examples, {sizes}, "
             f"{len(d['class_names'])} classes, input {tuple(d['input_shape'])}"]
    if d["options"]:
        lines.append("options: " + ", ".join(f"{k}={v!r}" for k, v in d["options"].items()))
    if d["source"]:
        lines.append("read from: " + ", ".join(f"{k} {v}" for k, v in d["source"].items()))
    if d["layout"]:
        lines.append("splits from: " + ", ".join(f"{k} <- {v}" for k, v in d["layout"].items()))
    if d["files"] is not None:
        lines.append("files: " + ", ".join(f"{k} {v}" for k, v in d["files"].items()))
    elif d["source"]:
        lines.append("files: the source above, read whole into memory")
    else:
        lines.append("files: none (generated in memory)")
    c = d["cache"]
    if c is not None:
        state = ("complete" if c["complete"] else
                 f"{c['done']} of {c['images']} images (a build resumes there)" if c["done"]
                 else "not built (built on first use, or by `expost data cache CONFIG`)")
        lines.append(f"image cache: {state}; {c['path']}")
    width = max(12, *(len(n) for n in d["class_names"]))
    lines.append("")
    lines.append(f"{'class':<{width}} " + " ".join(f"{s:>16}" for s in SPLITS))
    for name in d["class_names"]:
        cells = [f"{d['splits'][s]['counts'][name]:>7} ({d['splits'][s]['rates'][name]:6.2%})"
                 for s in SPLITS]
        lines.append(f"{name:<{width}} " + " ".join(f"{c:>16}" for c in cells))
    for w in d["warnings"]:
        lines.append(f"warning: {w}")
    return "\n".join(lines)


__all__ = ["data_provenance", "describe_dataset", "format_description"]
