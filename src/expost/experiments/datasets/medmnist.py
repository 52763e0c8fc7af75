"""MedMNIST v2 / MedMNIST+ from the official ``.npz`` files, with the official splits."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from ..._validation import _error, describe
from ._api import register_dataset
from ._base import DataSplits, ImageArrayDataset, channels_last, find_root, whole_labels

#: Class names of the single-label 2-D MedMNIST sets (the ``label`` fields of
#: the medmnist package's ``INFO``).
MEDMNIST_LABELS: dict[str, list[str]] = {
    "pathmnist": ["adipose", "background", "debris", "lymphocytes", "mucus", "smooth muscle",
                  "normal colon mucosa", "cancer-associated stroma",
                  "colorectal adenocarcinoma epithelium"],
    "dermamnist": ["actinic keratoses and intraepithelial carcinoma", "basal cell carcinoma",
                   "benign keratosis-like lesions", "dermatofibroma", "melanoma",
                   "melanocytic nevi", "vascular lesions"],
    "octmnist": ["choroidal neovascularization", "diabetic macular edema", "drusen", "normal"],
    "pneumoniamnist": ["normal", "pneumonia"],
    "retinamnist": ["0", "1", "2", "3", "4"],
    "breastmnist": ["malignant", "normal, benign"],
    "bloodmnist": ["basophil", "eosinophil", "erythroblast",
                   "immature granulocytes(myelocytes, metamyelocytes and promyelocytes)",
                   "lymphocyte", "monocyte", "neutrophil", "platelet"],
    "tissuemnist": ["Collecting Duct, Connecting Tubule", "Distal Convoluted Tubule",
                    "Glomerular endothelial cells", "Interstitial endothelial cells",
                    "Leukocytes", "Podocytes", "Proximal Tubule Segments",
                    "Thick Ascending Limb"],
    "organamnist": ["bladder", "femur-left", "femur-right", "heart", "kidney-left",
                    "kidney-right", "liver", "lung-left", "lung-right", "pancreas", "spleen"],
}
for _view in ("organcmnist", "organsmnist"):
    MEDMNIST_LABELS[_view] = MEDMNIST_LABELS["organamnist"]

_KEYS = tuple(f"{s}_{k}" for s in ("train", "val", "test") for k in ("images", "labels"))


def medmnist_filename(flag: str, size: int) -> str:
    """The official file name: ``pneumoniamnist.npz`` (28 px) or ``pneumoniamnist_224.npz``."""
    return f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"


@register_dataset("medmnist")
def medmnist(
    *,
    seed: int,
    flag: str = "pneumoniamnist",
    root: Path | None = None,
    size: Literal[28, 64, 128, 224] = 28,
    as_rgb: bool = False,
) -> DataSplits:
    """A MedMNIST data set from its official ``.npz`` file, with the official splits.

    The file (keys ``train_images``, ``train_labels``, ``val_images``,
    ``val_labels``, ``test_images``, ``test_labels``; labels of shape
    ``(n, 1)``) is read from ``root``, else ``$EXPOST_DATA/medmnist``, else
    ``../shared/data/medmnist``. The images stay uint8 in memory
    (:class:`~expost.experiments.datasets._base.ImageArrayDataset`); each batch
    is scaled to [0, 1], channels first. Multi-label sets (ChestMNIST) are rejected.

    Parameters
    ----------
    seed : int
        Unused (the splits are the official ones); kept for the common interface.
    flag : str, default "pneumoniamnist"
        The data set: ``pneumoniamnist``, ``breastmnist``, ``retinamnist``,
        ``dermamnist``, ... (any single-label 2-D MedMNIST file).
    root : path, optional
        Folder holding the file.
    size : {28, 64, 128, 224}, default 28
        Image side; sizes above 28 are the MedMNIST+ files ``<flag>_<size>.npz``.
        The images are held as uint8: 224 px needs 50 KB per grey image.
    as_rgb : bool, default False
        Repeat grayscale images to 3 channels (for ImageNet-style models).

    Examples
    --------
    A tiny file in the official layout:

    >>> import pathlib, tempfile
    >>> import numpy as np
    >>> from expost.experiments.datasets import load_dataset
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> arrays = {}
    >>> for split, n in [("train", 8), ("val", 2), ("test", 4)]:
    ...     arrays[f"{split}_images"] = np.zeros((n, 28, 28), np.uint8)
    ...     arrays[f"{split}_labels"] = (np.arange(n) % 2).reshape(-1, 1).astype(np.uint8)
    >>> np.savez(root / "breastmnist.npz", **arrays)
    >>> data = load_dataset("medmnist", flag="breastmnist", root=root)
    >>> data.class_names, data.input_shape, len(data.train)
    (['malignant', 'normal, benign'], (1, 28, 28), 8)
    """
    if not isinstance(flag, str) or not re.fullmatch(r"[a-z0-9]+", flag):
        raise ValueError(_error("flag", "a MedMNIST name such as 'pneumoniamnist' "
                                f"(known: {tuple(MEDMNIST_LABELS)})", describe(flag)))
    fname = medmnist_filename(flag, size)
    folder = find_root(
        root, "medmnist",
        exists=lambda p: (p / fname).is_file(),
        what=f"The MedMNIST file {fname!r}",
        how_to_get=(
            f"Download {fname} from the official release (MedMNIST v2: "
            f"https://zenodo.org/records/6496656; 64/128/224 px: "
            "https://zenodo.org/records/10519652), or `pip install medmnist` and "
            f"`python -m medmnist download`, which saves it under ~/.medmnist."
        ),
    )
    path = folder / fname
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in _KEYS if k not in npz.files]
            if missing:
                raise ValueError(_error(f"the file {path}", f"an .npz with the keys {_KEYS}",
                                        f"one lacking {missing}"))
            arrays = {k: np.asarray(npz[k]) for k in _KEYS}
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"the MedMNIST file {str(path)!r} cannot be read (truncated or not an "
                         f".npz: {exc}); download it again.") from None
    labels = {}
    for split in ("train", "val", "test"):
        lab = arrays[f"{split}_labels"]
        if lab.ndim == 2 and lab.shape[1] != 1:
            raise ValueError(_error(f"{split}_labels of {fname}",
                                    "one label per image (single-label MedMNIST)",
                                    f"{lab.shape[1]} labels per image (a multi-label set)"))
        labels[split] = whole_labels(lab, f"{path}, key '{split}_labels'")
    names = MEDMNIST_LABELS.get(flag)
    if names is None:
        top = max(int(v.max()) for v in labels.values() if v.size)
        names = [str(k) for k in range(top + 1)]
    sets = {}
    for split in ("train", "val", "test"):
        x = channels_last(np.asarray(arrays[f"{split}_images"]))
        if x.dtype != np.uint8:
            raise ValueError(_error(f"{split}_images of {fname}", "uint8 pixels (0 to 255)",
                                    f"dtype {x.dtype}"))
        if as_rgb and x.shape[-1] == 1:
            x = np.repeat(x, 3, axis=-1)
        c = x.shape[-1]
        # uint8 in memory (on the training device in the harness); [0, 1] per batch
        sets[split] = ImageArrayDataset(
            torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(labels[split].copy()),
            mean=(0.0,) * c, std=(1.0,) * c)
    return DataSplits(
        name="medmnist",
        train=sets["train"],
        val=sets["val"],
        test=sets["test"],
        train_labels=labels["train"],
        val_labels=labels["val"],
        test_labels=labels["test"],
        n_classes=len(names),
        class_names=list(names),
        input_shape=sets["train"].item_shape,
        meta={"flag": flag, "file": str(path.resolve()), "size": size},
    )
