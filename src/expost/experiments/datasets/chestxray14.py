"""NIH ChestX-ray14 (Wang et al. 2017), the paper's single-label subset (Appendix D.1).

The metadata file ``Data_Entry_2017.csv`` (or ``Data_Entry_2017_v2020.csv``,
optionally gzipped) lists every image with its ``Finding Labels`` (diseases
joined by ``|``, or ``No Finding``) and ``Patient ID``. The paper keeps the
images with a single label, ``No Finding`` included (91,324 images, 15
classes) and splits them 70/20/10 train/test/validation with each patient in
one split. Images (PNG, in ``images/`` or ``images_001/images/`` ...) are read
with Pillow on access: grayscale to 3 channels, resized, ImageNet-normalised,
flipped at random on the training split.
"""

from __future__ import annotations

import csv as csvlib
import gzip
import importlib.util
import io
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from numpy.typing import NDArray

from ..._validation import _error, describe
from ._api import register_dataset
from ._base import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PAPER_FRACTIONS,
    DataSplits,
    check_positive_int,
    find_root,
    group_split,
)
from .image_cache import ImageFileDataset, cache_folder, image_splits

#: The 14 findings in the CheXNeXt order, then "No Finding": 15 classes.
CHESTXRAY14_CLASSES: tuple[str, ...] = (
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule",
    "Pneumonia", "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis",
    "Pleural_Thickening", "Hernia", "No Finding",
)

#: Metadata file names looked for in ``root``, in order.
CSV_NAMES = (
    "Data_Entry_2017_v2020.csv", "Data_Entry_2017_v2020.csv.gz",
    "Data_Entry_2017.csv", "Data_Entry_2017.csv.gz",
)

_NIH = "https://nihcc.app.box.com/v/ChestXray-NIHCC"


@dataclass(frozen=True)
class ChestXray14Metadata:
    """The rows of the metadata file kept for the task.

    Attributes
    ----------
    images : list of str
        ``Image Index`` (file names such as ``00000001_000.png``).
    labels : ndarray of int64
        Index into :data:`CHESTXRAY14_CLASSES`.
    patients : ndarray of int64
        ``Patient ID``.
    n_rows : int
        Rows in the file before the single-label filter.
    """

    images: list[str]
    labels: NDArray[np.int64]
    patients: NDArray[np.int64]
    n_rows: int

    def class_rates(self) -> dict[str, float]:
        """Share of each class among the kept images."""
        counts = np.bincount(self.labels, minlength=len(CHESTXRAY14_CLASSES))
        return {c: float(k) / len(self.labels) for c, k in zip(CHESTXRAY14_CLASSES, counts, strict=True)}


def read_metadata(path: str | os.PathLike[str]) -> ChestXray14Metadata:
    """Read ``Data_Entry_2017*.csv[.gz]`` and keep the single-label rows.

    A row is kept when its ``Finding Labels`` has no ``|`` (one finding, or
    ``No Finding``). Needs the columns ``Image Index``, ``Finding Labels`` and
    ``Patient ID``; an unknown finding raises ValueError.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "Data_Entry_2017.csv"
    >>> _ = f.write_text("Image Index,Finding Labels,Follow-up #,Patient ID\\n"
    ...                  "1_000.png,No Finding,0,1\\n1_001.png,Mass|Nodule,1,1\\n"
    ...                  "2_000.png,Pneumonia,0,2\\n")
    >>> meta = read_metadata(f)
    >>> meta.images, meta.labels, meta.n_rows
    (['1_000.png', '2_000.png'], array([14,  6]), 3)
    """
    path = Path(path)
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    reader = csvlib.reader(io.StringIO(raw.decode("utf-8-sig")))
    header = [h.strip() for h in next(reader, [])]
    need = ("Image Index", "Finding Labels", "Patient ID")
    missing = [c for c in need if c not in header]
    if missing:
        raise ValueError(_error(f"the metadata file {path}", f"a CSV with the columns {need}",
                                f"one lacking {missing} (columns: {header[:6]})"))
    i_img, i_find, i_pat = (header.index(c) for c in need)
    index = {c: k for k, c in enumerate(CHESTXRAY14_CLASSES)}
    images: list[str] = []
    labels: list[int] = []
    patients: list[int] = []
    n_rows = 0
    for row in reader:
        if not row:
            continue
        n_rows += 1
        finding = row[i_find].strip()
        if "|" in finding:
            continue
        if finding not in index:
            raise ValueError(_error(f"'Finding Labels' of {row[i_img]} in {path}",
                                    f"one of {CHESTXRAY14_CLASSES}", describe(finding)))
        images.append(row[i_img].strip())
        labels.append(index[finding])
        patients.append(int(row[i_pat]))
    return ChestXray14Metadata(images, np.asarray(labels, dtype=np.int64),
                               np.asarray(patients, dtype=np.int64), n_rows)


def locate_images(root: Path, names: Sequence[str]) -> dict[str, Path]:
    """Where each of the image files ``names`` is under ``root`` (absent names: not found).

    Looks in ``root``, ``root/images``, ``root/images_*/`` and
    ``root/images_*/images`` (the layouts of the NIH download).
    """
    dirs = [root, root / "images"]
    for sub in sorted(root.glob("images_*")):
        dirs += [sub, sub / "images"]
    wanted = set(names)
    where: dict[str, Path] = {}
    for d in dirs:
        if d.is_dir():
            with os.scandir(d) as it:
                for entry in it:
                    if entry.name in wanted and entry.name not in where and entry.is_file():
                        where[entry.name] = Path(entry.path)
    return where


def find_images(root: Path, names: Sequence[str]) -> list[Path]:
    """Paths of the image files ``names`` under ``root`` (see :func:`locate_images`);
    FileNotFoundError giving the found and missing counts otherwise."""
    where = locate_images(root, names)
    missing = [n for n in names if n not in where]
    if missing:
        raise FileNotFoundError(_missing_message(root, len(names), missing))
    return [where[n] for n in names]


def _missing_message(root: Path, n: int, missing: Sequence[str]) -> str:
    return (f"{len(missing)} of {n} ChestX-ray14 images are not under {root} (found "
            f"{n - len(missing)}, missing {len(missing)}; looked in images/ and "
            f"images_*/images/), e.g. {list(missing[:3])}. Download and extract the image "
            f"archives from {_NIH}, or pass the option on_missing=skip "
            "(--set dataset.options.on_missing=skip) to use the images present, each in the "
            "split it has under the full metadata.")


def shipped_metadata() -> Path | None:
    """``Data_Entry_2017_v2020.csv.gz`` from an installed ``torchxrayvision`` package, found
    without importing it (its ``__init__`` loads torch and more); None when absent."""
    try:
        spec = importlib.util.find_spec("torchxrayvision")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    dirs = list(spec.submodule_search_locations or [])
    if not dirs and spec.origin:
        dirs = [os.path.dirname(spec.origin)]
    for d in dirs:
        path = Path(d) / "data" / "Data_Entry_2017_v2020.csv.gz"
        if path.is_file():
            return path
    return None


def _has_images(p: Path) -> bool:
    return (p / "images").is_dir() or any(p.glob("images_*"))


def random_hflip(x: torch.Tensor) -> torch.Tensor:
    """Flip an image (C, H, W) left-right with probability 1/2 (torch's global generator)."""
    return x.flip(-1) if bool(torch.rand(()) < 0.5) else x


class ChestXray14Dataset(ImageFileDataset):
    """PNG files read on access: grayscale -> 3 channels, resized, ImageNet-normalised;
    ``augment``: a random horizontal flip (the training split)."""

    def __init__(self, paths: Sequence[str | os.PathLike[str]], labels: NDArray[np.int64], *,
                 image_size: int, augment: bool = False) -> None:
        super().__init__(paths, labels, image_size=image_size, mode="L", mean=IMAGENET_MEAN,
                         std=IMAGENET_STD, augment=augment)


@register_dataset("chestxray14")
def chestxray14(
    *,
    seed: int,
    root: Path | None = None,
    csv: Path | None = None,
    image_size: int = 224,
    limit: int | None = None,
    augment: bool = True,
    on_missing: Literal["error", "skip"] = "error",
    cache: bool = True,
    cache_dir: Path | None = None,
    cache_workers: int | None = None,
) -> DataSplits:
    """ChestX-ray14's single-label images, 15 classes, split by patient.

    Keeps the rows whose ``Finding Labels`` has no ``|`` (``No Finding``
    included; 91,324 images in the full file), with the classes
    :data:`CHESTXRAY14_CLASSES`. Patients are shuffled with ``seed`` and dealt
    70/20/10 to train/test/validation (by images, within one patient), so no
    patient is in two splits (:func:`~expost.experiments.datasets._base.group_split`).

    Parameters
    ----------
    seed : int
        Fixes the patient split and ``limit``'s subset.
    root : path, optional
        Folder with the images (and the metadata file unless ``csv`` is given);
        default ``$EXPOST_DATA/chestxray14``, else ``../shared/data/chestxray14``.
    csv : path, optional
        The metadata file (default: the first of :data:`CSV_NAMES` in ``root``, else
        the ``Data_Entry_2017_v2020.csv.gz`` an installed ``torchxrayvision`` ships).
    image_size : int, default 224
        Side of the resized images (the paper: 224).
    limit : int, optional
        Keep about this many images, whole patients drawn at random, before
        splitting (for smoke runs).
    augment : bool, default True
        Random horizontal flip on the training split.
    on_missing : {"error", "skip"}, default "error"
        Images listed in the metadata but absent from ``root``: an error giving the
        found and missing counts, or skipped. With ``skip`` the patient split is made
        on the full metadata first and the missing images are dropped afterwards, so
        an image keeps its split whatever else is present. ``meta["files"]`` records
        how many were listed, found, missing and used.
    cache : bool, default True
        Read the images from a one-time cache of pre-resized uint8 images
        (:mod:`~expost.experiments.datasets.image_cache`), built on first use in
        parallel; False decodes the PNG files every epoch.
    cache_dir : path, optional
        Folder of the cache (default ``$EXPOST_CACHE``, else ``<root>/.expost-cache``).
    cache_workers : int, optional
        Processes building the cache (default: the CPU count).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from PIL import Image
    >>> from expost.experiments.datasets import load_dataset
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> (root / "images").mkdir()
    >>> rows = ["Image Index,Finding Labels,Patient ID"]
    >>> for k in range(40):
    ...     name = f"{k:08d}_000.png"
    ...     Image.new("L", (16, 16), color=k).save(root / "images" / name)
    ...     rows.append(f"{name},{'No Finding' if k % 2 else 'Effusion'},{k}")
    >>> _ = (root / "Data_Entry_2017.csv").write_text("\\n".join(rows))
    >>> data = load_dataset("chestxray14", root=root, image_size=32, cache=False)
    >>> data
    DataSplits('chestxray14', train=28, val=4, test=8, n_classes=15, input_shape=(3, 32, 32))
    >>> data.meta["files"]
    {'listed': 40, 'found': 40, 'missing': 0, 'used': 40}
    """
    check_positive_int(image_size, "image_size")
    check_positive_int(limit, "limit")
    check_positive_int(cache_workers, "cache_workers")
    shipped = shipped_metadata() if csv is None else None

    def present(p: Path) -> bool:
        return p.is_dir() and (csv is not None or any((p / n).is_file() for n in CSV_NAMES)
                               or (shipped is not None and _has_images(p)))

    folder = find_root(
        root, "chestxray14", exists=present,
        what="ChestX-ray14 (Data_Entry_2017[_v2020].csv and images/)",
        how_to_get=(f"Download the metadata CSV and the image archives from {_NIH} (or "
                    "pip install torchxrayvision, whose wheel ships the metadata CSV)."),
    )
    own = [folder / n for n in CSV_NAMES if (folder / n).is_file()]
    csv_path = Path(csv) if csv is not None else (own[0] if own else shipped)
    if csv_path is None or not csv_path.is_file():
        raise FileNotFoundError(_error("csv", "an existing metadata file", str(csv_path)))
    meta = read_metadata(csv_path)
    keep = np.arange(len(meta.images))
    if limit is not None and limit < keep.size:
        keep = group_split(meta.patients, (limit / keep.size, 1 - limit / keep.size),
                           seed=seed + 1)[0]
    # the split is made on the metadata alone: which images are present cannot move one
    train, test, val = (keep[p] for p in group_split(meta.patients[keep], PAPER_FRACTIONS,
                                                     seed=seed))
    names = [meta.images[i] for i in keep]
    where = locate_images(folder, names)
    missing = [n for n in names if n not in where]
    if missing and (on_missing == "error" or len(missing) == len(names)):
        raise FileNotFoundError(_missing_message(folder, len(names), missing))
    found = np.zeros(len(meta.images), dtype=bool)
    found[[i for i in keep if meta.images[i] in where]] = True
    parts = {"train": train[found[train]], "val": val[found[val]], "test": test[found[test]]}
    used = np.sort(np.concatenate(list(parts.values())))
    position = np.full(len(meta.images), -1, dtype=np.int64)
    position[used] = np.arange(used.size)
    paths = [str(where[meta.images[i]]) for i in used]
    datasets, cache_meta = image_splits(
        paths, {k: position[v] for k, v in parts.items()}, meta.labels[used],
        image_size=image_size, mode="L", mean=IMAGENET_MEAN, std=IMAGENET_STD,
        augment=augment, cache=cache, folder=cache_folder(cache_dir, folder),
        prefix=f"chestxray14-{image_size}", workers=cache_workers, stream=sys.stderr)
    return DataSplits(
        name="chestxray14",
        train=datasets["train"],
        val=datasets["val"],
        test=datasets["test"],
        train_labels=meta.labels[parts["train"]],
        val_labels=meta.labels[parts["val"]],
        test_labels=meta.labels[parts["test"]],
        n_classes=len(CHESTXRAY14_CLASSES),
        class_names=list(CHESTXRAY14_CLASSES),
        input_shape=(3, image_size, image_size),
        meta={
            "csv": str(csv_path.resolve()),
            "root": str(folder.resolve()),
            "n_rows": meta.n_rows,
            "files": {"listed": len(names), "found": len(names) - len(missing),
                      "missing": len(missing), "used": int(used.size)},
            "missing_examples": missing[:5],
            "patients": {k: meta.patients[v] for k, v in parts.items()},
            "images": {k: [meta.images[i] for i in v] for k, v in parts.items()},
            "train_transform": "random_hflip" if augment else None,
            **cache_meta,
        },
    )
