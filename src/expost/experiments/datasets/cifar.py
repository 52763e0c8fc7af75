"""CIFAR-10 and CIFAR-100 (Krizhevsky 2009), the official train/test split.

Two on-disk formats are read for CIFAR-10: the ``.npz`` shards of the shared
data folder (``train_0.npz`` ... ``train_4.npz``, ``test.npz``; keys
``images`` (n, 32, 32, 3) uint8, ``labels``, ``label_names``) and the official
Python pickle folder ``cifar-10-batches-py`` (``data_batch_1`` ...
``data_batch_5``, ``test_batch``, ``batches.meta``). CIFAR-100 is read from
the official ``cifar-100-python`` folder (``train``, ``test``, ``meta``).

Images stay uint8 in memory (:class:`ImageArrayDataset`); conversion,
augmentation, resizing and normalisation happen per batch.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import NDArray

from ..._validation import _error, describe
from ._api import register_dataset
from ._base import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Augment,
    DataSplits,
    ImageArrayDataset,
    channels_last,
    check_augment,
    check_positive_int,
    find_root,
    stratified_split,
    subsample,
    whole_labels,
)

#: Published per-channel training-set statistics.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)

Normalize = Literal["dataset", "imagenet", "half", "none"]

_TORONTO = "https://www.cs.toronto.edu/~kriz/"


def _norm(normalize: str, dataset_mean: tuple[float, ...], dataset_std: tuple[float, ...]
          ) -> tuple[tuple[float, ...], tuple[float, ...]]:
    return {
        "dataset": (dataset_mean, dataset_std),
        "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
        "half": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
        "none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
    }[normalize]


#: The only globals a CIFAR pickle may name: numpy's array reconstruction.
_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("_codecs", "encode"),  # bytes in protocol-2 pickles written by Python 3
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: any other global (a function a
    crafted file would call) is refused, so loading runs no code from the file."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _PICKLE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it names {module}.{name}, which a CIFAR batch never "
                                     "does (only numpy arrays are allowed)")


def _unpickle(path: Path, named: bool) -> dict[str, Any]:
    """One official CIFAR batch file (a Python 2 pickle: keys and names arrive as bytes).

    Pickles are read only from a folder the user named (``root``), never from
    one found by searching, and only with :class:`_ArrayUnpickler`.
    """
    if not named:
        raise ValueError(
            f"CIFAR in the Python pickle format was found in {str(path.parent)!r}, a folder "
            "found by searching; expost reads pickle files only from a folder you name: "
            "pass the option root=<that folder> (for files you trust), or use .npz shards."
        )
    try:
        with open(path, "rb") as f:
            raw = _ArrayUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise ValueError(f"{str(path)!r} is not a CIFAR batch file ({exc}).") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{str(path)!r} is not a CIFAR batch file (it holds "
                         f"{type(raw).__name__}, expected a dict).")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in raw.items()}


def _names(values: Any) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def _pickle_images(d: dict[str, Any]) -> NDArray[np.uint8]:
    # rows of 3072 bytes: the red, green and blue 32 x 32 planes in turn
    data = np.asarray(d["data"], dtype=np.uint8)
    return np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def _shard_index(p: Path) -> int:
    m = re.fullmatch(r"train_(\d+)\.npz", p.name)
    return int(m.group(1)) if m else -1


def _read_shard(path: Path) -> tuple[NDArray[np.uint8], NDArray[np.int64], list[str]]:
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("images", "labels") if k not in z.files]
            if missing:
                raise ValueError(f"the CIFAR shard {str(path)!r} lacks the key(s) {missing}.")
            names = _names(z["label_names"]) if "label_names" in z.files else []
            images, labels = z["images"], z["labels"]
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"the CIFAR shard {str(path)!r} cannot be read (truncated or not an "
                         f".npz: {exc}).") from None
    images = channels_last(images)
    labels = whole_labels(labels, f"{path}, key 'labels'")
    if images.shape[0] != labels.size:
        raise ValueError(f"the CIFAR shard {str(path)!r} has {images.shape[0]} images and "
                         f"{labels.size} labels.")
    return images, labels, names


def _read_cifar10(folder: Path, named: bool) -> tuple[NDArray[np.uint8], NDArray[np.int64], NDArray[np.uint8],
                                         NDArray[np.int64], list[str], str]:
    """(train images (n, 32, 32, 3), train labels, test images, test labels, names, format)."""
    if (folder / "test.npz").is_file():
        shards = sorted((p for p in folder.glob("train_*.npz") if _shard_index(p) >= 0),
                        key=_shard_index)
        # zlib releases the GIL: the shards decompress in parallel
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            parts = list(pool.map(_read_shard, [*shards, folder / "test.npz"]))
        xs, ys, names = zip(*parts, strict=True)
        shapes = {tuple(x.shape[1:]) for x in xs}
        if len(shapes) > 1 or next(iter(shapes))[-1] != 3:
            files = [p.name for p in [*shards, folder / "test.npz"]]
            raise ValueError(f"the CIFAR shards in {str(folder)!r} must all hold (n, 32, 32, 3) "
                             "RGB images; their image shapes are "
                             f"{dict(zip(files, (x.shape[1:] for x in xs), strict=True))}.")
        return (np.concatenate(xs[:-1]), np.concatenate(ys[:-1]), xs[-1], ys[-1],
                next((n for n in names if n), [str(k) for k in range(10)]), "npz")
    d = folder / "cifar-10-batches-py" if (folder / "cifar-10-batches-py").is_dir() else folder
    batches = [_unpickle(d / f"data_batch_{k}", named) for k in range(1, 6)]
    test = _unpickle(d / "test_batch", named)
    meta = _unpickle(d / "batches.meta", named)
    return (
        np.concatenate([_pickle_images(b) for b in batches]),
        np.concatenate([np.asarray(b["labels"], dtype=np.int64) for b in batches]),
        _pickle_images(test),
        np.asarray(test["labels"], dtype=np.int64),
        _names(meta["label_names"]),
        "pickle",
    )


def _cifar10_present(p: Path) -> bool:
    return (
        ((p / "test.npz").is_file() and (p / "train_0.npz").is_file())
        or (p / "data_batch_1").is_file()
        or (p / "cifar-10-batches-py" / "data_batch_1").is_file()
    )


def _cifar100_present(p: Path) -> bool:
    return (p / "train").is_file() or (p / "cifar-100-python" / "train").is_file()


def _splits(
    name: str,
    train_x: NDArray[np.uint8],
    train_y: NDArray[np.int64],
    test_x: NDArray[np.uint8],
    test_y: NDArray[np.int64],
    class_names: list[str],
    *,
    seed: int,
    val_fraction: float,
    val_from: str,
    augment: Augment,
    image_size: int | None,
    normalize: str,
    limit: int | None,
    train_limit: int | None,
    stats: tuple[tuple[float, ...], tuple[float, ...]],
    meta: dict[str, Any],
) -> DataSplits:
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(_error("val_fraction", "a number in (0, 1)", describe(val_fraction)))
    check_positive_int(image_size, "image_size")
    check_positive_int(limit, "limit")
    check_positive_int(train_limit, "train_limit")
    check_augment(augment)
    if val_from == "stratified":
        train, val = stratified_split(train_y, (1.0 - val_fraction, val_fraction), seed=seed)
    elif val_from == "tail":  # TFDS's train[:98%] / train[98%:] for val_fraction 0.02
        cut = round(train_y.size * (1.0 - val_fraction))
        train, val = np.arange(cut, dtype=np.int64), np.arange(cut, train_y.size, dtype=np.int64)
    else:
        raise ValueError(_error("val_from", "'stratified' or 'tail'", describe(val_from)))
    train = train[subsample(train_y[train], limit, seed=seed)]
    train = train[subsample(train_y[train], train_limit, seed=seed + 3)]
    val = val[subsample(train_y[val], limit, seed=seed + 1)]
    test = subsample(test_y, limit, seed=seed + 2)
    mean, std = _norm(normalize, *stats)

    def make(x: NDArray[np.uint8], idx: NDArray[np.int64], y: NDArray[np.int64],
             aug: Augment) -> ImageArrayDataset:
        # fancy indexing copies: the datasets never alias the arrays read from disk
        return ImageArrayDataset(torch.from_numpy(x[idx]), torch.from_numpy(y[idx]),
                                 mean=mean, std=std, augment=aug, image_size=image_size)

    tr = make(train_x, train, train_y, augment)
    return DataSplits(
        name=name,
        train=tr,
        val=make(train_x, val, train_y, False),
        test=make(test_x, test, test_y, False),
        train_labels=train_y[train].copy(),
        val_labels=train_y[val].copy(),
        test_labels=test_y[test].copy(),
        n_classes=len(class_names),
        class_names=class_names,
        input_shape=tr.item_shape,
        meta={**meta, "mean": mean, "std": std, "augment": augment, "val_from": val_from,
              "indices": {"train": train, "val": val, "test": test}},
    )


@register_dataset("cifar10")
def cifar10(
    *,
    seed: int,
    root: Path | None = None,
    val_fraction: float = 0.1,
    val_from: Literal["stratified", "tail"] = "stratified",
    augment: bool | Literal["inception_crop"] = False,
    image_size: int | None = None,
    normalize: Normalize = "dataset",
    limit: int | None = None,
    train_limit: int | None = None,
) -> DataSplits:
    """CIFAR-10: 50,000 training and 10,000 test images of 32 x 32 pixels, 10 classes.

    The official test set is the test split; the validation split is a
    stratified ``val_fraction`` of the official training set (fixed by
    ``seed``). Read from ``root``, else ``$EXPOST_DATA/cifar10``, else
    ``../shared/data/cifar10``, in either the ``.npz``-shard or the official
    pickle format (see the module docstring). Pickle files are read only from
    ``root`` (a folder you name), and only plain values and numpy arrays are
    unpickled: a crafted file cannot run code, but read pickles only from
    sources you trust.

    Parameters
    ----------
    seed : int
        Fixes the validation split and ``limit``'s subsets.
    root : path, optional
    val_fraction : float, default 0.1
    val_from : {"stratified", "tail"}, default "stratified"
        Where the validation split comes from: a stratified random
        ``val_fraction`` (fixed by ``seed``), or the last ``val_fraction`` of the
        official training order (``tail``: TFDS's ``train[98%:]`` for 0.02, as
        google-research/vision_transformer validates its CIFAR fine-tuning).
    augment : bool or "inception_crop", default False
        Training split only, drawn from torch's global generator per batch:
        ``true`` is a random crop after zero padding by 4 pixels and a random
        horizontal flip; ``"inception_crop"`` an Inception-style random resized
        crop (5% to 100% of the area, aspect ratio 3/4 to 4/3) straight to
        ``image_size`` and a random horizontal flip (the ViT repository's CIFAR
        fine-tuning).
    image_size : int, optional
        Resize (bilinear) to ``image_size`` x ``image_size``, e.g. 224 or 384 for
        a ViT-B/16.
    normalize : {"dataset", "imagenet", "half", "none"}, default "dataset"
        Per-channel ``(x - mean) / std`` with the published CIFAR-10 statistics,
        ImageNet's, mean = std = 0.5 (the ViT recipe, [-1, 1]) or none ([0, 1]).
    limit : int, optional
        At most this many images in each split (stratified), for smoke runs.
    train_limit : int, optional
        At most this many training images (stratified); validation and test
        untouched (the CPU row ``configs/cifar10_cpu.yaml``).

    Examples
    --------
    Two tiny shards in the ``.npz`` format:

    >>> import pathlib, tempfile
    >>> import numpy as np
    >>> from expost.experiments.datasets import load_dataset
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
    ...          "horse", "ship", "truck"]
    >>> for file, n in [("train_0.npz", 100), ("test.npz", 50)]:
    ...     np.savez(root / file, images=np.zeros((n, 32, 32, 3), np.uint8),
    ...              labels=np.arange(n) % 10, label_names=names)
    >>> data = load_dataset("cifar10", root=root, image_size=64)
    >>> data
    DataSplits('cifar10', train=90, val=10, test=50, n_classes=10, input_shape=(3, 64, 64))
    >>> data.class_names[3], tuple(data.train[0][0].shape)
    ('cat', (3, 64, 64))
    """
    folder = find_root(
        root, "cifar10", exists=_cifar10_present,
        what="CIFAR-10 (train_0.npz ... test.npz, or cifar-10-batches-py/)",
        how_to_get=f"Download cifar-10-python.tar.gz from {_TORONTO}cifar.html and extract it.",
    )
    train_x, train_y, test_x, test_y, names, fmt = _read_cifar10(folder, named=root is not None)
    return _splits(
        "cifar10", train_x, train_y, test_x, test_y, names, seed=seed,
        val_fraction=val_fraction, val_from=val_from, augment=augment, image_size=image_size,
        normalize=normalize, limit=limit, train_limit=train_limit, stats=(CIFAR10_MEAN, CIFAR10_STD),
        meta={"root": str(folder.resolve()), "format": fmt},
    )


@register_dataset("cifar100")
def cifar100(
    *,
    seed: int,
    root: Path | None = None,
    val_fraction: float = 0.1,
    val_from: Literal["stratified", "tail"] = "stratified",
    augment: bool | Literal["inception_crop"] = False,
    image_size: int | None = None,
    normalize: Normalize = "dataset",
    limit: int | None = None,
    train_limit: int | None = None,
    label_kind: Literal["fine", "coarse"] = "fine",
) -> DataSplits:
    """CIFAR-100 from the official ``cifar-100-python`` folder: 100 fine classes.

    Same options as ``cifar10`` (with the published CIFAR-100 statistics for
    ``normalize="dataset"``), plus ``label_kind``: the 100 fine labels
    (default; "maple_tree" is the paper's emphasised class) or the 20 coarse
    superclasses. Read from ``root`` only (the official format is a pickle:
    see ``cifar10``); a folder found in ``$EXPOST_DATA/cifar100`` or
    ``../shared/data/cifar100`` is named in the error.

    Examples
    --------
    A tiny folder in the official pickle format:

    >>> import pathlib, pickle, tempfile
    >>> import numpy as np
    >>> from expost.experiments.datasets import load_dataset
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> for split, n in [("train", 300), ("test", 100)]:
    ...     batch = {b"data": np.zeros((n, 3072), np.uint8),
    ...              b"fine_labels": [k % 100 for k in range(n)],
    ...              b"coarse_labels": [k % 20 for k in range(n)]}
    ...     _ = (root / split).write_bytes(pickle.dumps(batch))
    >>> meta = {b"fine_label_names": [f"fine{k}".encode() for k in range(100)],
    ...         b"coarse_label_names": [f"coarse{k}".encode() for k in range(20)]}
    >>> _ = (root / "meta").write_bytes(pickle.dumps(meta))
    >>> data = load_dataset("cifar100", root=root, label_kind="coarse")
    >>> data.n_classes, data.class_names[:2], len(data.train), len(data.val)
    (20, ['coarse0', 'coarse1'], 270, 30)
    """
    folder = find_root(
        root, "cifar100", exists=_cifar100_present,
        what="CIFAR-100 (cifar-100-python/ with train, test, meta)",
        how_to_get=f"Download cifar-100-python.tar.gz from {_TORONTO}cifar.html and extract it.",
    )
    d = folder / "cifar-100-python" if (folder / "cifar-100-python").is_dir() else folder
    train, test, meta = (_unpickle(d / f, named=root is not None) for f in ("train", "test",
                                                                             "meta"))
    key = f"{label_kind}_labels"
    return _splits(
        "cifar100", _pickle_images(train), np.asarray(train[key], dtype=np.int64),
        _pickle_images(test), np.asarray(test[key], dtype=np.int64),
        _names(meta[f"{label_kind}_label_names"]), seed=seed,
        val_fraction=val_fraction, val_from=val_from, augment=augment, image_size=image_size,
        normalize=normalize, limit=limit, train_limit=train_limit, stats=(CIFAR100_MEAN, CIFAR100_STD),
        meta={"root": str(d.resolve()), "format": "pickle", "label_kind": label_kind},
    )
