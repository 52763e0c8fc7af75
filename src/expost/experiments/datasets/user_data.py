"""A user's own data without writing Python: ``imagefolder`` and ``npz``.

- ``imagefolder``: torchvision's ImageFolder layout, one folder per split and one
  subfolder per class (``train/0_normal/*.png``, ``train/1_pneumonia/*.png``,
  ``test/...``). Read through the image cache, like ChestX-ray14.
- ``npz``: one ``.npz`` file with ``train_images``/``train_labels``/``val_*``/``test_*``
  (the MedMNIST keys) or ``x_train``/``y_train``/``x_val``/``y_val``/``x_test``/``y_test``.

Without a validation split, a stratified ``val_fraction`` of the training
split becomes it (fixed by ``seed``); an image folder with a ``train/`` folder
only is split 70/20/10 train/test/validation, stratified, as the paper does
for data without an official split.
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from ..._validation import _error, describe
from ._api import register_dataset
from ._base import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PAPER_FRACTIONS,
    DataSplits,
    ImageArrayDataset,
    channels_last,
    check_positive_int,
    stratified_split,
    tensor_dataset,
    whole_labels,
)
from .image_cache import cache_folder, image_splits

#: File name endings read as images (torchvision's ``IMG_EXTENSIONS``).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

#: Folder names recognised for each split (compared in lower case).
SPLIT_FOLDERS: dict[str, tuple[str, ...]] = {
    "train": ("train", "training"),
    "val": ("val", "valid", "validation"),
    "test": ("test", "testing"),
}

Normalize = Literal["imagenet", "half", "none"]


def _stats(normalize: str, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    mean, std = {"imagenet": (IMAGENET_MEAN, IMAGENET_STD),
                 "half": ((0.5,) * 3, (0.5,) * 3),
                 "none": ((0.0,) * 3, (1.0,) * 3)}[normalize]
    if channels == 1:  # one grey channel: the mean of the three
        return (float(np.mean(mean)),), (float(np.mean(std)),)
    return mean, std


def _check_fraction(value: float) -> None:
    if not 0.0 < value < 1.0:
        raise ValueError(_error("val_fraction", "a number in (0, 1)", describe(value)))


def _split_folders(root: Path) -> dict[str, Path]:
    """The folder of each split found under ``root``; two folders for one split (train/
    and Training/) are refused, since one of them would be left out unseen."""
    found: dict[str, Path] = {}
    for entry in sorted(root.iterdir()) if root.is_dir() else []:
        if not entry.is_dir():
            continue
        for split, names in SPLIT_FOLDERS.items():
            if entry.name.lower() in names:
                if split in found:
                    raise ValueError(f"{str(root)!r} has two folders for the {split} split, "
                                     f"{found[split].name!r} and {entry.name!r}; keep one.")
                found[split] = entry
    return found


def _class_files(folder: Path) -> dict[str, list[Path]]:
    out = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        out[sub.name] = sorted(p for p in sub.rglob("*")
                               if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    return out


def _val_from_train(labels: NDArray[np.int64], train: NDArray[np.int64], val_fraction: float,
                    seed: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """A stratified ``val_fraction`` of ``train`` (indices into ``labels``) as validation."""
    keep, val = stratified_split(labels[train], (1.0 - val_fraction, val_fraction), seed=seed)
    return train[keep], train[val]


@register_dataset("imagefolder")
def imagefolder(
    *,
    seed: int,
    root: Path,
    image_size: int = 224,
    channels: Literal[1, 3] = 3,
    normalize: Normalize = "imagenet",
    val_fraction: float = 0.1,
    augment: bool = True,
    cache: bool = True,
    cache_dir: Path | None = None,
    cache_workers: int | None = None,
) -> DataSplits:
    """Images in the torchvision ImageFolder layout: ``root/<split>/<class>/<file>``.

    Split folders: ``train`` (or ``training``), ``val``/``valid``/``validation`` and
    ``test`` (or ``testing``), in any case. Classes are the subfolder names of all
    splits, sorted (as ImageFolder does), so prefix them (``0_normal``, ``1_tumour``)
    to fix their order. Files ending in :data:`IMAGE_EXTENSIONS` are read, in sorted
    order. Without a validation folder, a stratified ``val_fraction`` of ``train``
    becomes the validation split; with ``train`` alone, it is split 70/20/10
    train/test/validation, stratified. A test folder without a training folder is
    an error.

    Parameters
    ----------
    seed : int
        Fixes the splits made from ``train``.
    root : path
        The folder holding the split folders.
    image_size : int, default 224
        Images are resized (bilinear) to ``image_size`` x ``image_size``.
    channels : {1, 3}, default 3
        Colour (grayscale files repeated to 3 channels) or one grey channel.
    normalize : {"imagenet", "half", "none"}, default "imagenet"
        Per-channel ``(x - mean) / std``: ImageNet's statistics, 0.5 / 0.5 or none
        ([0, 1]); with one channel, the mean of the three.
    val_fraction : float, default 0.1
    augment : bool, default True
        Random horizontal flip on the training split.
    cache, cache_dir, cache_workers
        The one-time image cache, as for ``chestxray14``.
    """
    check_positive_int(image_size, "image_size")
    check_positive_int(cache_workers, "cache_workers")
    _check_fraction(val_fraction)
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(_error("root", "a folder holding train/ (and val/, test/)",
                                       str(root)))
    folders = _split_folders(root)
    if "train" not in folders:
        raise FileNotFoundError(
            f"root ({root}): expected a folder train/ (or training/) with one subfolder per "
            f"class, and val/ and test/ beside it; found {sorted(p.name for p in root.iterdir())}.")
    files = {s: _class_files(f) for s, f in folders.items()}
    class_names = sorted(set().union(*(set(f) for f in files.values())))
    empty = [c for c in class_names if not any(by_class.get(c) for by_class in files.values())]
    if empty:
        raise ValueError(f"root ({root}): the class folder(s) {empty} hold no image files "
                         f"(ending in {', '.join(IMAGE_EXTENSIONS)}).")
    if len(class_names) < 2:
        raise ValueError(f"root ({root}): expected at least 2 class folders under "
                         f"{folders['train'].name}/, found {class_names}.")
    paths: list[str] = []
    labels_l: list[int] = []
    split_of: list[str] = []
    for split, by_class in files.items():
        for c, found in by_class.items():
            paths += [str(p) for p in found]
            labels_l += [class_names.index(c)] * len(found)
            split_of += [split] * len(found)
    labels = np.asarray(labels_l, dtype=np.int64)
    where = np.asarray(split_of)
    parts = {s: np.flatnonzero(where == s).astype(np.int64) for s in ("train", "val", "test")}
    if parts["train"].size == 0:
        raise ValueError(f"root ({root}): no image files ({', '.join(IMAGE_EXTENSIONS)}) under "
                         f"{folders['train']}.")
    layout = {s: f.name for s, f in folders.items()}
    if "test" not in folders:
        if "val" in folders:
            raise FileNotFoundError(
                f"root ({root}): a val folder but no test/ folder; add test/, or put all "
                "images under train/ for the paper's 70/20/10 split.")
        tr, te, va = stratified_split(labels[parts["train"]], PAPER_FRACTIONS, seed=seed)
        base = parts["train"]
        parts = {"train": base[tr], "val": base[va], "test": base[te]}
        layout = {s: f"{folders['train'].name} (70/20/10 stratified split, seed {seed})"
                  for s in ("train", "val", "test")}
    elif "val" not in folders:
        parts["train"], parts["val"] = _val_from_train(labels, parts["train"], val_fraction,
                                                       seed)
        layout["val"] = (f"{folders['train'].name} (stratified {val_fraction:g} of it, "
                         f"seed {seed})")
    mode: Literal["L", "RGB"] = "L" if channels == 1 else "RGB"
    mean, std = _stats(normalize, channels)
    datasets, cache_meta = image_splits(
        paths, parts, labels, image_size=image_size, mode=mode, mean=mean, std=std,
        augment=augment, cache=cache, folder=cache_folder(cache_dir, root),
        prefix=f"imagefolder-{image_size}-{mode}", workers=cache_workers, stream=sys.stderr)
    return DataSplits(
        name="imagefolder",
        train=datasets["train"], val=datasets["val"], test=datasets["test"],
        train_labels=labels[parts["train"]], val_labels=labels[parts["val"]],
        test_labels=labels[parts["test"]],
        n_classes=len(class_names), class_names=class_names,
        input_shape=(channels, image_size, image_size),
        meta={"root": str(root.resolve()), "layout": layout,
              "files": {"found": len(paths), "used": len(paths)},
              "mean": mean, "std": std, **cache_meta},
    )


# ---------------------------------------------------------------- npz
#: The two key styles of a user's ``.npz`` file: (images key, labels key) per split.
NPZ_KEYS: dict[str, dict[str, tuple[str, str]]] = {
    "medmnist": {s: (f"{s}_images", f"{s}_labels") for s in ("train", "val", "test")},
    "xy": {s: (f"x_{s}", f"y_{s}") for s in ("train", "val", "test")},
}


def _npz_array(npz: Any, key: str, path: Path) -> NDArray[Any]:
    """``npz[key]``; an object array (Python objects, which load only by unpickling) is
    refused naming the file and the key."""
    try:
        return np.asarray(npz[key])
    except ValueError as exc:  # "Object arrays cannot be loaded when allow_pickle=False", or damage
        got = "one that needs unpickling" if "allow_pickle" in str(exc) else "a damaged array"
        raise ValueError(_error(f"{key} of {path}", "an array of numbers or strings (expost "
                                "never unpickles)", f"{got} ({exc})")) from None


def _numeric_inputs(x: NDArray[Any], key: str, path: Path) -> None:
    """Inputs are real numbers (bool, integers or floats), and finite floats."""
    if x.dtype.kind not in "biuf":
        raise ValueError(_error(f"{key} of {path}", "inputs of numbers (feature vectors or "
                                "images)", f"an array of dtype {x.dtype}"))
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        at = tuple(int(i) for i in np.argwhere(~np.isfinite(x))[0])
        raise ValueError(_error(f"{key} of {path}", "finite inputs (no NaN or inf)",
                                f"{x[at]} at index {at}"))


def _read_npz(path: Path) -> tuple[dict[str, NDArray[Any]], str]:
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):  # a .npy array, whatever its name
            raise ValueError(_error(f"the file {path}", "an .npz archive of named arrays (np.savez)",
                                    f"a single .npy array of shape {np.shape(loaded)}"))
        with loaded as npz:
            keys = list(npz.files)
            style = next((s for s, k in NPZ_KEYS.items() if k["train"][0] in keys), None)
            if style is None:
                raise ValueError(_error(
                    f"the file {path}", "an .npz with the keys train_images, train_labels, "
                    "test_images, test_labels (val_* optional) or x_train, y_train, x_test, "
                    "y_test (x_val, y_val optional)", f"one with the keys {keys[:12]}"))
            want = [k for s in ("train", "test") for k in NPZ_KEYS[style][s]]
            absent = [k for k in want if k not in keys]
            if absent:
                raise ValueError(_error(f"the file {path}", f"the keys {want}",
                                        f"one lacking {absent}"))
            names = [k for k in ("class_names", "label_names") if k in keys]
            read = want + [k for k in NPZ_KEYS[style]["val"] if k in keys] + names[:1]
            arrays = {k: _npz_array(npz, k, path) for k in read}
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"the file {str(path)!r} cannot be read as an .npz (truncated or "
                         f"another format: {exc}).") from None
    except ValueError as exc:
        if str(exc).startswith("`"):  # ours, above
            raise
        # numpy's guess for bytes it cannot read (it suggests unpickling): not ours to follow
        raise ValueError(f"the file {str(path)!r} cannot be read as an .npz (not a zip "
                         "archive of arrays; expost never unpickles).") from None
    return arrays, style


@register_dataset("npz")
def npz(
    *,
    seed: int,
    file: Path,
    val_fraction: float = 0.1,
    image_size: int | None = None,
    normalize: Literal["dataset", "imagenet", "half", "none"] = "none",
    augment: bool = False,
) -> DataSplits:
    """One ``.npz`` file with the splits: ``train_images``, ``train_labels``,
    ``test_images``, ``test_labels`` and optionally ``val_images``, ``val_labels`` (the
    MedMNIST keys), or ``x_train``, ``y_train``, ``x_test``, ``y_test`` and optionally
    ``x_val``, ``y_val``. Read with ``allow_pickle=False``.

    Labels: whole numbers >= 0, shape ``(n,)`` or ``(n, 1)``. An optional
    ``class_names`` (or ``label_names``) array of strings names the classes; else
    they are ``"0"``, ``"1"``, ... Inputs are numbers (bool, integers or floats; no
    NaN or inf, no strings or Python objects, which would need unpickling):

    - 2-D ``(n, features)``: feature vectors, float32, as they are.
    - uint8 images ``(n, H, W)`` or ``(n, H, W, C)``: kept as uint8 and converted per
      batch (:class:`~expost.experiments.datasets._base.ImageArrayDataset`): scaled to
      [0, 1], resized to ``image_size`` when given, normalised (``dataset``: the
      training split's per-channel mean and std), ``augment`` (training only): random
      crop with zero padding 4 and horizontal flip.
    - float images ``(n, H, W[, C])``: float32, channels first, as they are.

    Without validation keys, a stratified ``val_fraction`` of the training split
    (fixed by ``seed``) becomes the validation split.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> import numpy as np
    >>> from expost.experiments.datasets import load_dataset
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "mine.npz"
    >>> np.savez(f, x_train=np.random.rand(50, 4), y_train=np.arange(50) % 2,
    ...          x_test=np.random.rand(10, 4), y_test=np.arange(10) % 2)
    >>> load_dataset("npz", file=f)
    DataSplits('npz', train=45, val=5, test=10, n_classes=2, input_shape=(4,))
    """
    _check_fraction(val_fraction)
    check_positive_int(image_size, "image_size")
    path = Path(file).expanduser()
    if not path.is_file():
        raise FileNotFoundError(_error("file", "an existing .npz file", str(path)))
    arrays, style = _read_npz(path)
    keys = NPZ_KEYS[style]
    xs: dict[str, NDArray[Any]] = {}
    ys: dict[str, NDArray[np.int64]] = {}
    for split in ("train", "val", "test"):
        kx, ky = keys[split]
        if kx not in arrays:
            if ky in arrays:  # labels without inputs were ignored
                raise ValueError(_error(f"the file {path}", f"{kx} beside {ky}", f"no {kx}"))
            continue
        if ky not in arrays:
            raise ValueError(_error(f"the file {path}", f"{ky} beside {kx}", f"no {ky}"))
        lab = arrays[ky]
        if lab.ndim == 2 and lab.shape[1] != 1:
            raise ValueError(_error(f"{ky} of {path}", "one label per example",
                                    f"shape {lab.shape} (multi-label?)"))
        ys[split] = whole_labels(lab, f"{path}, key {ky!r}")
        _numeric_inputs(arrays[kx], kx, path)
        xs[split] = arrays[kx]
        if xs[split].shape[0] != ys[split].size:
            raise ValueError(_error(f"{kx} of {path}", f"{ys[split].size} rows (as {ky})",
                                    f"{xs[split].shape[0]}"))
    shapes = {xs[s].shape[1:] for s in xs}
    dtypes = {xs[s].dtype for s in xs}
    if len(shapes) > 1:
        raise ValueError(f"{path}: the splits' inputs differ in shape: {sorted(shapes)}.")
    if len(dtypes) > 1 and next(iter(xs.values())).ndim >= 3:  # uint8 is scaled, floats not
        raise ValueError(f"{path}: the splits' images differ in dtype "
                         f"({', '.join(f'{keys[s][0]}: {xs[s].dtype}' for s in xs)}); uint8 "
                         "images are scaled to [0, 1] and float ones kept as they are, so the "
                         "splits would differ in scale. Give every split one dtype.")
    for s in xs:
        top = float(np.abs(xs[s]).max()) if xs[s].dtype.kind == "f" and xs[s].size else 0.0
        if top > float(np.finfo(np.float32).max):
            raise ValueError(_error(f"{keys[s][0]} of {path}", "inputs within float32's range "
                                    "(about 3.4e38; inputs are float32)", f"values up to {top:.3g}"))
    n_classes = max(int(y.max()) + 1 for y in ys.values() if y.size)
    names_key = next((k for k in ("class_names", "label_names") if k in arrays), None)
    if names_key is not None:
        class_names = [str(c) for c in arrays[names_key].reshape(-1)]
        if len(set(class_names)) != len(class_names):
            twice = next(c for c in class_names if class_names.count(c) > 1)
            raise ValueError(_error(f"{names_key} of {path}", "distinct class names",
                                    f"{twice!r} more than once"))
        if len(class_names) < n_classes:
            raise ValueError(_error(f"{names_key} of {path}", f"at least {n_classes} names",
                                    f"{len(class_names)}"))
    else:
        class_names = [str(k) for k in range(max(n_classes, 2))]
    if "val" not in xs:
        train, val = _val_from_train(ys["train"], np.arange(ys["train"].size), val_fraction,
                                     seed)
        xs["val"], ys["val"] = xs["train"][val], ys["train"][val]
        xs["train"], ys["train"] = xs["train"][train], ys["train"][train]
    meta: dict[str, Any] = {"file": str(path.resolve()), "keys": style,
                            "val": "file" if keys["val"][0] in arrays else
                            f"stratified {val_fraction:g} of train, seed {seed}"}
    x0 = xs["train"]
    if x0.ndim >= 3 and dtypes == {np.dtype(np.uint8)}:
        imgs = {s: channels_last(xs[s]) for s in xs}
        c = imgs["train"].shape[-1]
        if c not in (1, 3):
            raise ValueError(_error(f"{keys['train'][0]} of {path}", "images with 1 (gray) or 3 "
                                    "(RGB) channels, last or alone", f"shape {xs['train'].shape}"))
        if normalize == "dataset":
            flat = imgs["train"].reshape(-1, c).astype(np.float64) / 255.0
            mean, std = tuple(flat.mean(0).tolist()), tuple(flat.std(0).tolist())
            if min(std) < 1e-9:  # 0 to rounding: a constant channel (pixels step by 1/255)
                raise ValueError(_error("normalize", "'dataset' only for training images whose "
                                        "pixels vary (it divides by their standard deviation)",
                                        f"'dataset' for {keys['train'][0]} of {path}, every "
                                        "pixel of a channel the same"))
        else:
            mean, std = _stats(normalize, 1 if c == 1 else 3)
        import torch

        def make(s: str) -> ImageArrayDataset:
            return ImageArrayDataset(torch.from_numpy(np.array(imgs[s])),
                                     torch.from_numpy(ys[s]), mean=mean, std=std,
                                     augment=augment and s == "train", image_size=image_size)

        ds: dict[str, Any] = {s: make(s) for s in ("train", "val", "test")}
        shape: tuple[int, ...] = ds["train"].item_shape
        meta.update(mean=mean, std=std, augment=augment)
    else:
        if image_size is not None or augment:
            raise ValueError(_error("image_size/augment", "unset for inputs that are not uint8 "
                                    "images (n, H, W[, C])",
                                    f"inputs of dtype {x0.dtype} and shape {x0.shape}"))
        conv = {s: (np.moveaxis(channels_last(xs[s]), -1, 1) if x0.ndim >= 3 else xs[s])
                for s in xs}
        ds = {s: tensor_dataset(conv[s], ys[s]) for s in ("train", "val", "test")}
        shape = tuple(conv["train"].shape[1:])
    return DataSplits(
        name="npz", train=ds["train"], val=ds["val"], test=ds["test"],
        train_labels=ys["train"], val_labels=ys["val"], test_labels=ys["test"],
        n_classes=len(class_names), class_names=class_names, input_shape=shape, meta=meta,
    )


__all__ = ["IMAGE_EXTENSIONS", "SPLIT_FOLDERS", "imagefolder", "npz"]
