"""scikit-learn's handwritten digits (1,797 images of 8 x 8 pixels, 10 classes).

Ships with scikit-learn (no download), so it powers the offline default run.
The loader reads scikit-learn's own data file (``sklearn/datasets/data/digits.csv.gz``)
without importing scikit-learn, whose import (SciPy's statistics, pandas) costs
1-2.5 s of every default run; where that file is missing or not the expected
1,797 x 65 table of integers, it calls :func:`sklearn.datasets.load_digits`.
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np

from ._api import register_dataset
from ._base import PAPER_FRACTIONS, DataSplits, stratified_split


@register_dataset("digits")
def digits(*, seed: int, flatten: bool = False) -> DataSplits:
    """The UCI handwritten digits of :func:`sklearn.datasets.load_digits`.

    Pixel intensities (0 to 16) are divided by 16, so inputs lie in [0, 1].
    The split is the paper's 70/20/10 train/test/validation (Appendix D.1),
    stratified by class and fixed by ``seed``.

    Parameters
    ----------
    seed : int
        Fixes the split.
    flatten : bool, default False
        Inputs of shape ``(64,)`` (for an MLP) instead of ``(1, 8, 8)``.

    Examples
    --------
    >>> from expost.experiments.datasets import load_dataset
    >>> data = load_dataset("digits", seed=0)
    >>> x, y = data.train[0]
    >>> tuple(x.shape), x.dtype, y.dtype, float(x.max()) <= 1.0
    ((1, 8, 8), torch.float32, torch.int64, True)
    """
    pixels, y = digits_arrays()
    x = pixels.astype(np.float32) / np.float32(16.0)
    shape: tuple[int, ...] = (64,) if flatten else (1, 8, 8)
    x = x.reshape((-1, *shape))
    train, test, val = stratified_split(y, PAPER_FRACTIONS, seed=seed)
    return DataSplits.from_arrays(
        "digits", x, y, (train, val, test),
        class_names=[str(d) for d in range(10)],
        meta={
            "source": "sklearn.datasets.load_digits",
            "indices": {"train": train, "val": val, "test": test},
        },
    )


#: Rows and columns (64 pixels and the label) of scikit-learn's ``digits.csv.gz``.
_TABLE_SHAPE = (1797, 65)


def digits_file() -> Path | None:
    """scikit-learn's ``datasets/data/digits.csv.gz``, found without importing scikit-learn."""
    try:
        spec = importlib.util.find_spec("sklearn")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        path = Path(root) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            return path
    return None


def _read_table(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """(pixels, labels) of the file, or None unless it is the expected table of integers."""
    try:
        with gzip.open(path, "rt", encoding="ascii") as fh:
            table = np.loadtxt(fh, delimiter=",", dtype=np.float64, ndmin=2)
    except (OSError, ValueError, EOFError, UnicodeDecodeError):
        return None
    if table.shape != _TABLE_SHAPE or not np.array_equal(table, np.round(table)):
        return None
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 16 or labels.min() < 0 or labels.max() > 9:
        return None
    return pixels, labels.astype(np.int64)


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The digits' pixels (1,797 x 64, float64, 0 to 16) and labels (int64, 0 to 9).

    The values of :func:`sklearn.datasets.load_digits` (``data``, ``target``), read
    from its file directly when it is there (see the module docstring).
    """
    path = digits_file()
    read = _read_table(path) if path is not None else None
    if read is not None:
        return read
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return np.asarray(bunch.data, dtype=np.float64), np.asarray(bunch.target, dtype=np.int64)
