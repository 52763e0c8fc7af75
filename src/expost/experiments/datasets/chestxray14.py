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
import io
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch.utils.data import Dataset

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


def find_images(root: Path, names: Sequence[str]) -> list[Path]:
    """Paths of the image files ``names`` under ``root``.

    Looks in ``root``, ``root/images``, ``root/images_*/`` and
    ``root/images_*/images`` (the layouts of the NIH download). FileNotFoundError
    saying how many are missing otherwise.
    """
    dirs = [root, root / "images"]
    for sub in sorted(root.glob("images_*")):
        dirs += [sub, sub / "images"]
    where: dict[str, Path] = {}
    for d in dirs:
        if d.is_dir():
            with os.scandir(d) as it:
                for entry in it:
                    if entry.name not in where and entry.is_file():
                        where[entry.name] = Path(entry.path)
    missing = [n for n in names if n not in where]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of {len(names)} ChestX-ray14 images are not under {root} "
            f"(looked in images/ and images_*/images/), e.g. {missing[:3]}. Download and "
            f"extract the image archives from {_NIH}."
        )
    return [where[n] for n in names]


def random_hflip(x: torch.Tensor) -> torch.Tensor:
    """Flip an image (C, H, W) left-right with probability 1/2 (torch's global generator)."""
    return x.flip(-1) if bool(torch.rand(()) < 0.5) else x


class ChestXray14Dataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """PNG files read on access: grayscale -> 3 channels, resized, ImageNet-normalised.

    ``transform`` (e.g. :func:`random_hflip` on the training split) is applied
    to the normalised tensor while ``augment`` is True (set it False, e.g. on a
    copy, to read the training images as they are).
    """

    def __init__(self, paths: Sequence[str | os.PathLike[str]], labels: NDArray[np.int64], *,
                 image_size: int,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        self.paths = [str(p) for p in paths]
        self.labels = torch.from_numpy(np.array(labels, dtype=np.int64, copy=True))
        self.image_size = image_size
        self.transform = transform
        self.augment = transform is not None
        self._mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> torch.Tensor:
        """The normalised image ``index`` (3, S, S), without ``transform``."""
        image = _pil().open(self.paths[index])
        with image:
            gray = image.convert("L").resize((self.image_size, self.image_size),
                                             _pil().Resampling.BILINEAR)
            arr = np.asarray(gray, dtype=np.float32) / np.float32(255.0)
        x = torch.from_numpy(arr).expand(3, -1, -1)
        return (x - self._mean) / self._std

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.load(index)
        if self.transform is not None and self.augment:
            x = self.transform(x)
        return x, self.labels[index]


def _pil() -> Any:
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - pillow is in the experiments extra
        raise ImportError(
            "Reading ChestX-ray14 images needs Pillow: pip install pillow "
            "(or pip install 'expost[experiments]')."
        ) from exc
    return Image


@register_dataset("chestxray14")
def chestxray14(
    *,
    seed: int,
    root: Path | None = None,
    csv: Path | None = None,
    image_size: int = 224,
    limit: int | None = None,
    augment: bool = True,
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
        The metadata file (default: the first of :data:`CSV_NAMES` in ``root``).
    image_size : int, default 224
        Side of the resized images (the paper: 224).
    limit : int, optional
        Keep about this many images, whole patients drawn at random, before
        splitting (for smoke runs).
    augment : bool, default True
        Random horizontal flip on the training split.

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
    >>> data = load_dataset("chestxray14", root=root, image_size=32)
    >>> data
    DataSplits('chestxray14', train=28, val=4, test=8, n_classes=15, input_shape=(3, 32, 32))
    """
    check_positive_int(image_size, "image_size")
    check_positive_int(limit, "limit")

    def present(p: Path) -> bool:
        return p.is_dir() and (csv is not None or any((p / n).is_file() for n in CSV_NAMES))

    folder = find_root(
        root, "chestxray14", exists=present,
        what="ChestX-ray14 (Data_Entry_2017[_v2020].csv and images/)",
        how_to_get=f"Download the metadata CSV and the image archives from {_NIH}.",
    )
    csv_path = Path(csv) if csv is not None else next(
        folder / n for n in CSV_NAMES if (folder / n).is_file())
    if not csv_path.is_file():
        raise FileNotFoundError(_error("csv", "an existing metadata file", str(csv_path)))
    meta = read_metadata(csv_path)
    keep = np.arange(len(meta.images))
    if limit is not None and limit < keep.size:
        keep = group_split(meta.patients, (limit / keep.size, 1 - limit / keep.size),
                           seed=seed + 1)[0]
    patients = meta.patients[keep]
    labels = meta.labels[keep]
    paths = find_images(folder, [meta.images[i] for i in keep])
    train, test, val = group_split(patients, PAPER_FRACTIONS, seed=seed)

    def make(idx: NDArray[np.int64], transform: Any) -> ChestXray14Dataset:
        return ChestXray14Dataset([paths[i] for i in idx], labels[idx],
                                  image_size=image_size, transform=transform)

    return DataSplits(
        name="chestxray14",
        train=make(train, random_hflip if augment else None),
        val=make(val, None),
        test=make(test, None),
        train_labels=labels[train],
        val_labels=labels[val],
        test_labels=labels[test],
        n_classes=len(CHESTXRAY14_CLASSES),
        class_names=list(CHESTXRAY14_CLASSES),
        input_shape=(3, image_size, image_size),
        meta={
            "csv": str(csv_path.resolve()),
            "root": str(folder.resolve()),
            "n_rows": meta.n_rows,
            "patients": {"train": patients[train], "val": patients[val],
                         "test": patients[test]},
            "train_transform": "random_hflip" if augment else None,
        },
    )
