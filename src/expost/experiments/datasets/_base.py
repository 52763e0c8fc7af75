"""What every data set returns (:class:`DataSplits`) and the pieces they share.

- :class:`DataSplits`: train / validation / test datasets with their labels.
- :func:`stratified_split` and :func:`group_split`: the paper's 70/20/10
  train/test/validation split, by class or keeping groups (patients) whole.
- :class:`ImageArrayDataset`: uint8 images kept in memory, converted,
  augmented, resized and normalised per batch (``__getitems__``).
- :func:`find_root`: where a file-based data set lives.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import NDArray
from torch.utils.data import Dataset

from ..._validation import _error, check_int, describe

#: The paper's split of a data set without an official one (Appendix D.1):
#: 70% training, 20% test, 10% validation, in that order.
PAPER_FRACTIONS: tuple[float, float, float] = (0.7, 0.2, 0.1)

#: Environment variable naming the folder that holds the data sets
#: (``$EXPOST_DATA/medmnist``, ``$EXPOST_DATA/cifar10``, ...).
DATA_ENV = "EXPOST_DATA"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

SPLITS = ("train", "val", "test")

#: Bytes of uint8 images that :meth:`ImageArrayDataset.to_device` moves onto a GPU
#: (larger sets stay in pinned CPU memory and are copied a batch at a time).
DEVICE_COPY_LIMIT = 8 * 1024**3


@dataclass(repr=False)
class DataSplits:
    """A data set's training, validation and test splits.

    Every split yields ``(x, y)`` with ``x`` a float32 tensor of shape
    ``input_shape`` and ``y`` an int64 class index. In-memory data sets are
    :class:`torch.utils.data.TensorDataset` (batch by indexing
    ``dataset.tensors``); image sets kept as uint8 or read from files are
    map-style datasets that also implement ``__getitems__`` (a whole batch at
    once; :class:`torch.utils.data.DataLoader` uses it).

    Attributes
    ----------
    name : str
        The registry name.
    train, val, test : torch.utils.data.Dataset
        The splits. Training-time augmentation, when any, applies to ``train`` only.
    train_labels, val_labels, test_labels : ndarray of int64
        The labels of the splits, in the datasets' order (to compute priors and
        to evaluate without iterating the data).
    n_classes : int
        Number of classes; labels are in ``[0, n_classes)``.
    class_names : list of str
        One name per class.
    input_shape : tuple of int
        Shape of one ``x``: ``(channels, height, width)`` or ``(n_features,)``.
    meta : dict
        Anything else: the source files, the normalisation, and for the
        synthetic set the exact posteriors ``meta["test_posteriors"]``.

    Examples
    --------
    >>> from expost.experiments.datasets import load_dataset
    >>> data = load_dataset("digits", seed=0)
    >>> data
    DataSplits('digits', train=1258, val=180, test=359, n_classes=10, input_shape=(1, 8, 8))
    >>> data.class_prior().round(3)[:3]
    array([0.099, 0.102, 0.099])
    """

    name: str
    train: Dataset[Any]
    val: Dataset[Any]
    test: Dataset[Any]
    train_labels: NDArray[np.int64]
    val_labels: NDArray[np.int64]
    test_labels: NDArray[np.int64]
    n_classes: int
    class_names: list[str]
    input_shape: tuple[int, ...]
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.n_classes, (int, np.integer)) or self.n_classes < 2:
            raise ValueError(_error("n_classes", "an integer >= 2", describe(self.n_classes)))
        self.n_classes = int(self.n_classes)
        if len(self.class_names) != self.n_classes:
            raise ValueError(
                _error("class_names", f"{self.n_classes} names (one per class)",
                       describe(self.class_names))
            )
        self.class_names = [str(c) for c in self.class_names]
        self.input_shape = tuple(int(s) for s in self.input_shape)
        for split in SPLITS:
            labels = getattr(self, f"{split}_labels")
            name = f"{split}_labels"
            if not isinstance(labels, np.ndarray) or labels.dtype != np.int64 or labels.ndim != 1:
                raise TypeError(_error(name, "a 1-D int64 numpy array", describe(labels)))
            n = len(getattr(self, split))
            if labels.shape[0] != n:
                raise ValueError(_error(name, f"one label per example of `{split}` ({n})",
                                        f"{labels.shape[0]} labels"))
            if n and (labels.min() < 0 or labels.max() >= self.n_classes):
                raise ValueError(_error(name, f"labels in [0, {self.n_classes})",
                                        f"labels in [{labels.min()}, {labels.max()}]"))

    def labels(self, split: str = "train") -> NDArray[np.int64]:
        """The labels of ``split`` ('train', 'val' or 'test')."""
        if split not in SPLITS:
            raise ValueError(_error("split", f"one of {SPLITS}", describe(split)))
        return getattr(self, f"{split}_labels")

    def class_counts(self, split: str = "train") -> NDArray[np.int64]:
        """Number of examples of each class in ``split``."""
        return np.bincount(self.labels(split), minlength=self.n_classes).astype(np.int64)

    def class_prior(self, split: str = "train") -> NDArray[np.float64]:
        r"""Empirical class frequencies :math:`\hat\mu_y = n_y / n` of ``split``.

        The training prior is what Eq 21 normalises the utility with.
        """
        counts = self.class_counts(split)
        return counts / max(int(counts.sum()), 1)

    @classmethod
    def from_arrays(cls, name: str, x: NDArray[Any], y: NDArray[np.int64],
                    parts: tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]], *,
                    class_names: Sequence[str], meta: dict[str, Any]) -> DataSplits:
        """In-memory splits of ``(x, y)``: ``parts`` are the train, val and test indices."""
        train, val, test = parts
        return cls(
            name=name,
            train=tensor_dataset(x[train], y[train]),
            val=tensor_dataset(x[val], y[val]),
            test=tensor_dataset(x[test], y[test]),
            train_labels=y[train],
            val_labels=y[val],
            test_labels=y[test],
            n_classes=len(class_names),
            class_names=list(class_names),
            input_shape=tuple(x.shape[1:]),
            meta=meta,
        )

    def __repr__(self) -> str:
        return (
            f"DataSplits({self.name!r}, train={len(self.train)}, "  # type: ignore[arg-type]
            f"val={len(self.val)}, test={len(self.test)}, "  # type: ignore[arg-type]
            f"n_classes={self.n_classes}, input_shape={self.input_shape})"
        )


# --------------------------------------------------------------------------- splits


def _largest_remainder(n: int, fractions: Sequence[float]) -> NDArray[np.int64]:
    """Integer sizes summing to ``n`` as close as possible to ``n * fractions``."""
    exact = np.asarray(fractions, dtype=np.float64) * n
    sizes = np.floor(exact).astype(np.int64)
    short = n - int(sizes.sum())
    if short > 0:
        order = np.argsort(-(exact - sizes), kind="stable")
        sizes[order[:short]] += 1
    return sizes


def check_fractions(fractions: Sequence[float], name: str = "fractions") -> NDArray[np.float64]:
    arr = np.asarray(fractions, dtype=np.float64)
    if arr.ndim != 1 or arr.size < 2 or (arr < 0).any() or abs(arr.sum() - 1.0) > 1e-9:
        raise ValueError(_error(name, "nonnegative split fractions summing to 1", describe(fractions)))
    return arr


def stratified_split(
    labels: NDArray[np.integer[Any]],
    fractions: Sequence[float] = PAPER_FRACTIONS,
    *,
    seed: int,
) -> list[NDArray[np.int64]]:
    """Split indices into parts of the given fractions, stratified by class.

    The examples are ordered class by class, shuffled within each class with
    ``seed``, and dealt in that order, each to the part furthest below its
    share so far (largest deficit :math:`(i + 1) f_k - n_k`). So every part
    holds ``n * f_k`` examples up to one, and every class is split in the
    same proportions up to about one example per part, without the bias of
    rounding each class on its own. Returns sorted index arrays, one per part.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.repeat(np.arange(20), 15)  # 20 classes of 15
    >>> parts = stratified_split(labels, (0.7, 0.2, 0.1), seed=0)
    >>> [len(p) for p in parts]
    [210, 60, 30]
    >>> np.unique(np.bincount(labels[parts[2]]))  # each class: 1 or 2 of its 15
    array([1, 2])
    """
    fr = [float(f) for f in check_fractions(fractions)]
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    order = np.concatenate([
        rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)
    ]) if labels.size else np.zeros(0, dtype=np.int64)
    parts = np.empty(order.size, dtype=np.int64)
    counts = [0] * len(fr)
    for i in range(order.size):
        deficits = [(i + 1) * f - c for f, c in zip(fr, counts, strict=True)]
        k = deficits.index(max(deficits))
        counts[k] += 1
        parts[i] = k
    return [np.sort(order[parts == k]).astype(np.int64) for k in range(len(fr))]


def group_split(
    groups: NDArray[Any],
    fractions: Sequence[float] = PAPER_FRACTIONS,
    *,
    seed: int,
) -> list[NDArray[np.int64]]:
    """Split indices into parts of about the given fractions, keeping groups whole.

    The groups (e.g. patient IDs) are shuffled with ``seed`` and dealt in that
    order: a group goes to the first part whose cumulative target of examples
    its middle has not reached, so every group lies in exactly one part and
    the parts' sizes are within one group of ``n * fractions``.

    Examples
    --------
    >>> import numpy as np
    >>> groups = np.repeat(np.arange(100), 3)  # 100 patients, 3 images each
    >>> parts = group_split(groups, (0.7, 0.2, 0.1), seed=0)
    >>> [len(p) for p in parts]
    [210, 60, 30]
    >>> len(set(groups[parts[0]]) & set(groups[parts[1]]))
    0
    """
    fr = check_fractions(fractions)
    groups = np.asarray(groups)
    uniq, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    order = np.random.default_rng(seed).permutation(uniq.size)
    # middle of each group's block of examples, in the shuffled order
    ends = np.cumsum(counts[order])
    middles = ends - counts[order] / 2.0
    targets = np.cumsum(fr)[:-1] * groups.size
    part_of_shuffled = np.searchsorted(targets, middles, side="right")
    part_of_group = np.empty(uniq.size, dtype=np.int64)
    part_of_group[order] = part_of_shuffled
    part_of_example = part_of_group[inverse.reshape(-1)]
    return [np.flatnonzero(part_of_example == k).astype(np.int64) for k in range(fr.size)]


# --------------------------------------------------------------------------- files


def find_root(
    root: str | os.PathLike[str] | None,
    subdir: str,
    *,
    exists: Callable[[Path], bool],
    what: str,
    how_to_get: str,
) -> Path:
    """The folder of a file-based data set.

    ``root`` when given; otherwise the first of ``$EXPOST_DATA/<subdir>``,
    ``$EXPOST_DATA`` itself and ``../shared/data/<subdir>`` (relative to the
    working directory) for which ``exists`` holds. FileNotFoundError saying where it looked, what it needs
    there and how to get it otherwise.
    """
    if root is not None:
        candidates = [Path(root).expanduser()]
    else:
        candidates = []
        env = os.environ.get(DATA_ENV)
        if env:
            candidates += [Path(env).expanduser() / subdir, Path(env).expanduser()]
        candidates.append(Path("..") / "shared" / "data" / subdir)
    for c in candidates:
        if exists(c):
            return c
    looked = ", ".join(str(c.resolve()) for c in candidates)
    raise FileNotFoundError(
        f"{what} not found (looked in: {looked}). {how_to_get} Then pass the folder as the "
        f"option root=... or set ${DATA_ENV} to a folder holding {subdir}/. "
        "expost never downloads data."
    )


def subsample(
    labels: NDArray[np.integer[Any]], limit: int | None, *, seed: int
) -> NDArray[np.int64]:
    """Sorted indices of ``min(limit, n)`` examples, stratified by class (all when None).

    Each class keeps its share of ``limit`` (largest-remainder rounding), drawn
    at random with ``seed``.
    """
    labels = np.asarray(labels)
    n = len(labels)
    if limit is None or limit >= n:
        return np.arange(n, dtype=np.int64)
    classes, counts = np.unique(labels, return_counts=True)
    sizes = _largest_remainder(limit, counts / n)
    rng = np.random.default_rng(seed)
    keep = [rng.choice(np.flatnonzero(labels == c), size=k, replace=False)
            for c, k in zip(classes, sizes, strict=True)]
    return np.sort(np.concatenate(keep)).astype(np.int64)


def check_positive_int(value: int | None, name: str, *, minimum: int = 1) -> None:
    """An optional option that, when given, is an integer >= ``minimum`` (and, for
    ``image_size``, at most :data:`MAX_IMAGE_SIZE`)."""
    if value is not None:
        check_int(value, name, minimum=minimum)
        if name == "image_size" and value > MAX_IMAGE_SIZE:
            raise ValueError(_error(name, f"a side of at most {MAX_IMAGE_SIZE} pixels (the "
                                    "images are resized to image_size x image_size)",
                                    describe(value)))


#: The largest ``image_size``: 50,000 made a 180 GB cache file and 7.5 GB per decoded image.
MAX_IMAGE_SIZE = 4096


# --------------------------------------------------------------------------- images


def random_crop_flip(x: torch.Tensor, *, pad: int, flip: bool) -> torch.Tensor:
    """Per-image random crop after zero padding by ``pad``, and random horizontal flip.

    ``x`` is a batch (B, C, H, W) of any dtype; uses torch's global generator,
    so the augmentation is reproducible under :func:`torch.manual_seed`.
    """
    b, _, h, w = x.shape
    dev = x.device
    if pad > 0:
        padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
        # offsets come from the CPU generator wherever x lives: same draws on every device
        oy = torch.randint(0, 2 * pad + 1, (b,)).to(dev)
        ox = torch.randint(0, 2 * pad + 1, (b,)).to(dev)
        rows = (oy[:, None] + torch.arange(h, device=dev))[:, :, None]  # (B, H, 1)
        cols = (ox[:, None] + torch.arange(w, device=dev))[:, None, :]  # (B, 1, W)
        # advanced indices around a slice: result is (B, H, W, C)
        x = padded[torch.arange(b, device=dev)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)
    if flip:
        mask = (torch.rand(b) < 0.5).to(dev)
        x = torch.where(mask[:, None, None, None], x.flip(-1), x)
    return x.contiguous()


#: The Inception crop of google-research/vision_transformer (``inception_crop``: TF's
#: ``sample_distorted_bounding_box`` with ``area_range=(0.05, 1)``, aspect ratios 3/4 to 4/3).
INCEPTION_AREA = (0.05, 1.0)
INCEPTION_RATIO = (3.0 / 4.0, 4.0 / 3.0)


def inception_boxes(b: int, h: int, w: int, *, area: tuple[float, float] = INCEPTION_AREA,
                    ratio: tuple[float, float] = INCEPTION_RATIO, tries: int = 10
                    ) -> torch.Tensor:
    """``b`` random crop boxes ``(x0, y0, width, height)`` in pixels, float64 (b, 4).

    Each box covers a uniform share ``area`` of the image with a log-uniform
    aspect ratio (width / height) in ``ratio``; the first of ``tries`` draws
    that fits is kept, else the whole image (as TF and torchvision do). Drawn
    on the CPU from torch's global generator, whatever device the images are on.
    """
    target = torch.empty(b, tries, dtype=torch.float64).uniform_(*area) * (h * w)
    log_r = torch.empty(b, tries, dtype=torch.float64).uniform_(math.log(ratio[0]),
                                                                 math.log(ratio[1]))
    cw = torch.sqrt(target * torch.exp(log_r)).round()
    ch = torch.sqrt(target / torch.exp(log_r)).round()
    fits = (cw >= 1) & (ch >= 1) & (cw <= w) & (ch <= h)
    first = fits.to(torch.int8).argmax(dim=1, keepdim=True)  # the first draw that fits
    found = fits.any(dim=1)
    cw = torch.where(found, cw.gather(1, first).squeeze(1), float(w))
    ch = torch.where(found, ch.gather(1, first).squeeze(1), float(h))
    x0 = (torch.rand(b, dtype=torch.float64) * (w - cw + 1)).floor()
    y0 = (torch.rand(b, dtype=torch.float64) * (h - ch + 1)).floor()
    return torch.stack([x0, y0, cw, ch], dim=1)


def inception_crop_flip(x: torch.Tensor, size: int) -> torch.Tensor:
    """Inception-style random resized crop to ``size`` x ``size`` and random horizontal flip.

    ``x`` is a float batch (B, C, H, W) on any device. Every image gets its own box
    (:func:`inception_boxes`), resampled bilinearly (no antialiasing, as
    ``tf.image.resize``) in one :func:`torch.nn.functional.grid_sample`; a flip
    mirrors the sampling grid. All random draws come from the CPU generator, so
    a batch is the same on every device up to floating-point rounding.
    """
    b, _, h, w = x.shape
    x0, y0, cw, ch = inception_boxes(b, h, w).unbind(1)
    flip = torch.rand(b) < 0.5
    # output pixel u in [-1, 1] samples input coordinate a u + t (align_corners=False)
    theta = torch.zeros(b, 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = torch.where(flip, -cw / w, cw / w)
    theta[:, 0, 2] = (2 * x0 + cw) / w - 1
    theta[:, 1, 1] = ch / h
    theta[:, 1, 2] = (2 * y0 + ch) / h - 1
    grid = torch.nn.functional.affine_grid(theta.to(x.device, x.dtype), [b, x.shape[1], size, size],
                                           align_corners=False)
    return torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="border",
                                           align_corners=False)


#: The values of ``augment``: False (none), True (pad-4 crop and flip), "inception_crop".
Augment = bool | Literal["inception_crop"]


def check_augment(augment: Any) -> None:
    if not (isinstance(augment, bool) or augment == "inception_crop"):
        raise ValueError(_error("augment", "true, false or 'inception_crop'", describe(augment)))


class ImageArrayDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """In-memory uint8 images, converted to normalised float32 a batch at a time.

    Storing uint8 keeps CIFAR-10's 50,000 training images at 150 MB instead of
    600 MB (and 7.5 GB at 224 x 224). The images are kept as they are stored
    on disk, channels last; ``__getitems__`` transforms a whole batch at once
    (vectorised), and :class:`torch.utils.data.DataLoader` calls it instead of
    ``__getitem__`` one index at a time. The harness keeps the uint8 images on
    the training device (:meth:`to_device`) and builds every batch there
    (:meth:`get_batch` with ``device``): on a GPU the augmentation and the resize
    run on the GPU, and the same code runs on the CPU.

    Per batch: channels first, scale to [0, 1], then the augmentation (training
    split only) and the resize to ``image_size`` (bilinear), then
    ``(x - mean) / std`` per channel. ``augment=True`` is a random crop after
    zero padding by ``pad`` and a random horizontal flip, before the resize;
    ``augment="inception_crop"`` is an Inception-style random resized crop
    straight to ``image_size`` and a random flip (:func:`inception_crop_flip`).

    Parameters
    ----------
    images : uint8 tensor of shape (n, H, W, C)
    labels : int64 tensor of shape (n,)
    mean, std : sequence of C floats
    augment : bool or "inception_crop"
    image_size : int or None
        Output side length (None keeps H x W).

    Examples
    --------
    >>> import torch
    >>> images = torch.zeros((4, 32, 32, 3), dtype=torch.uint8)
    >>> ds = ImageArrayDataset(images, torch.arange(4), mean=(0.5,) * 3, std=(0.5,) * 3,
    ...                        image_size=48)
    >>> x, y = ds.get_batch([0, 2])
    >>> tuple(x.shape), x.dtype, float(x.min()), y.tolist()
    ((2, 3, 48, 48), torch.float32, -1.0, [0, 2])
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        mean: Sequence[float],
        std: Sequence[float],
        augment: Augment = False,
        image_size: int | None = None,
        pad: int = 4,
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise TypeError(_error("images", "a uint8 tensor (n, H, W, C)",
                                   f"{images.dtype} of shape {tuple(images.shape)}"))
        check_augment(augment)
        self.images = images
        self.labels = labels
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self.augment = augment
        self.image_size = image_size
        self.pad = pad

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def item_shape(self) -> tuple[int, ...]:
        """Shape of one transformed image, (C, S, S)."""
        h, w, c = self.images.shape[1:]
        s = self.image_size
        return (int(c), s, s) if s is not None else (int(c), int(h), int(w))

    def to_device(self, device: torch.device | str, *,
                  limit: int = DEVICE_COPY_LIMIT) -> ImageArrayDataset:
        """A shallow copy whose uint8 images (and labels) live on ``device``.

        On a GPU, images of ``limit`` bytes or more stay in CPU memory and each
        batch is copied over from pinned memory, asynchronously.
        """
        device = torch.device(device)
        if self.images.device == device or (device.type != "cpu"
                                            and self.images.nelement() >= limit):
            return self
        out = copy.copy(self)
        out.images, out.labels = self.images.to(device), self.labels.to(device)
        return out

    def transform(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 (B, H, W, C) -> normalised float32 (B, C, S, S), on ``batch``'s device."""
        batch = batch.permute(0, 3, 1, 2)
        if self.augment is True:
            batch = random_crop_flip(batch, pad=self.pad, flip=True)
        x = batch.to(torch.float32).div_(255.0)
        s = self.image_size
        if self.augment == "inception_crop":
            x = inception_crop_flip(x, s if s is not None else int(x.shape[-1]))
        elif s is not None and (x.shape[-2], x.shape[-1]) != (s, s):
            x = torch.nn.functional.interpolate(x, size=(s, s), mode="bilinear",
                                                align_corners=False)
        mean, std = self.mean.to(x.device), self.std.to(x.device)
        return ((x - mean) / std).contiguous()

    def get_batch(
        self, indices: Sequence[int] | torch.Tensor, device: torch.device | str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The transformed batch ``(x, y)`` of ``indices`` as two stacked tensors.

        With ``device`` (e.g. "cuda"), the uint8 batch is on or moves to ``device``
        first and is transformed there (4 x less to copy, and the augmentation
        and resize run on the GPU); without, it is built where the images are.
        """
        idx = torch.as_tensor(indices, dtype=torch.long)
        if idx.device != self.images.device:
            idx = idx.to(self.images.device)
        images, labels = self.images[idx], self.labels[idx]
        if device is not None:
            device = torch.device(device)
            if images.device != device:
                copy_async = device.type == "cuda"
                if copy_async:
                    images = images.pin_memory()
                images = images.to(device, non_blocking=copy_async)
                labels = labels.to(device, non_blocking=copy_async)
        return self.transform(images), labels

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        x, y = self.get_batch(indices)
        return list(zip(x.unbind(0), y.unbind(0), strict=True))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.get_batch([index])
        return x[0], y[0]


def whole_labels(labels: Any, where: str) -> NDArray[np.int64]:
    """Class labels as int64, refusing what a cast would silently truncate.

    Float labels must be finite whole numbers >= 0 (0.5 is an error, not 0); ``where``
    names the file and key in the ValueError.

    >>> whole_labels(np.array([0.0, 2.0]), "x.npz, key 'labels'")
    array([0, 2])
    """
    arr = np.asarray(labels).reshape(-1)
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{where}: class labels must be whole numbers, got {arr[i]!r} at "
                             f"position {i}.")
    elif arr.dtype.kind not in "iub":
        raise ValueError(f"{where}: class labels must be numbers, got dtype {arr.dtype}.")
    if arr.size and arr.min() < 0:
        raise ValueError(f"{where}: class labels must be >= 0, got {arr.min()!r}.")
    if arr.size and arr.max() >= MAX_CLASSES:  # before the cast: 1e20 or 2**64 - 1 wrapped
        raise ValueError(f"{where}: class labels must be below {MAX_CLASSES:,} (class indices "
                         f"0, 1, ...), got {arr.max()!r}.")
    return arr.astype(np.int64)


#: The most classes a data set may have: a label of 10**9 made a billion class names.
MAX_CLASSES = 1_000_000


def channels_last(images: NDArray[Any]) -> NDArray[Any]:
    """(n, H, W) or (n, H, W, C) image array -> (n, H, W, C) (a view when possible)."""
    arr = np.asarray(images)
    if arr.ndim == 3:
        return arr[:, :, :, None]
    if arr.ndim != 4:
        raise ValueError(_error("images", "an array (n, H, W) or (n, H, W, C)", describe(arr)))
    return arr


def tensor_dataset(
    x: NDArray[Any], y: NDArray[Any], *, copy: bool = True
) -> torch.utils.data.TensorDataset:
    """A TensorDataset of float32 inputs and int64 labels.

    Copies by default, so the dataset never aliases the caller's arrays;
    ``copy=False`` shares memory with ``x`` when it is already float32 (for
    arrays the loader just made).
    """
    xa = np.array(x, dtype=np.float32, copy=True) if copy else np.asarray(x, dtype=np.float32)
    ya = np.array(y, dtype=np.int64, copy=True)
    return torch.utils.data.TensorDataset(
        torch.from_numpy(np.ascontiguousarray(xa)), torch.from_numpy(ya)
    )
