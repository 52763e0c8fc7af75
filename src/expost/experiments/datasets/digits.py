"""scikit-learn's handwritten digits (1,797 images of 8 x 8 pixels, 10 classes).

Ships with scikit-learn (no download), so it powers the offline default run.
"""

from __future__ import annotations

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
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = np.asarray(bunch.data, dtype=np.float32) / np.float32(16.0)
    y = np.asarray(bunch.target, dtype=np.int64)
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
