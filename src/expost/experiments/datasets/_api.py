"""The data-set registry: three small functions and an option lister."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..._validation import _error, check_int, describe
from ._base import DataSplits
from ._registry import Registry

DatasetFactory = Callable[..., DataSplits]

_DATASETS: Registry[DatasetFactory] = Registry("dataset", reserved=("seed",))


def register_dataset(
    name: str | None = None, *, overwrite: bool = False, check: Callable[..., Any] | None = None
) -> Callable[[DatasetFactory], DatasetFactory]:
    """Register a data-set factory under ``name`` (default: the function's name).

    The factory is a function ``f(*, seed, **options) -> DataSplits`` whose
    options are keyword-only arguments with type hints and defaults; they
    become the options :func:`load_dataset` accepts and checks. ``check(**options)``,
    optional, checks their values when the config loads (before any data is read).

    Examples
    --------
    >>> import numpy as np
    >>> from expost.experiments.datasets import DataSplits, register_dataset, load_dataset
    >>> from expost.experiments.datasets._base import tensor_dataset
    >>> @register_dataset("two_points", overwrite=True)
    ... def two_points(*, seed: int, n: int = 4) -> DataSplits:
    ...     x, y = np.eye(2)[np.arange(n) % 2], np.arange(n) % 2
    ...     ds = tensor_dataset(x, y)
    ...     return DataSplits("two_points", ds, ds, ds, y, y, y, 2, ["a", "b"], (2,))
    >>> load_dataset("two_points", n=6)
    DataSplits('two_points', train=6, val=6, test=6, n_classes=2, input_shape=(2,))
    """
    return _DATASETS.register(name, overwrite=overwrite, check=check)


def list_datasets() -> list[str]:
    """Names of the registered data sets, sorted.

    >>> {"digits", "synthetic", "medmnist", "cifar10"} <= set(list_datasets())
    True
    """
    return _DATASETS.names()


def dataset_options(name: str) -> dict[str, tuple[Any, Any]]:
    """The options of data set ``name``: ``{option: (type hint, default)}``.

    The pairs are what :func:`pydantic.create_model` takes, so a config layer
    can validate options before loading anything.

    >>> dataset_options("digits")
    {'flatten': (<class 'bool'>, False)}
    """
    return _DATASETS.options(name)


def load_dataset(name: str, *, seed: int = 0, **options: Any) -> DataSplits:
    """Load the registered data set ``name`` with its ``options``.

    Parameters
    ----------
    name : str
        One of :func:`list_datasets`.
    seed : int, default 0
        Fixes every random choice of the data set (splits, synthetic draws,
        subsets): the same name, seed and options give the same splits.
    **options
        The data set's options (:func:`dataset_options`). An unknown option
        raises TypeError listing the allowed ones; a value of the wrong type
        raises TypeError, an invalid value ValueError, each naming the option.

    Returns
    -------
    DataSplits

    Examples
    --------
    >>> data = load_dataset("digits", seed=1, flatten=True)
    >>> data.input_shape, data.n_classes, data.train_labels.dtype
    ((64,), 10, dtype('int64'))
    >>> load_dataset("digits", flaten=True)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    TypeError: Unknown option 'flaten' for the dataset 'digits'; ... Did you mean 'flatten'?
    """
    factory = _DATASETS.get(name)
    seed = check_int(seed, "seed", minimum=0, expected="a nonnegative integer", wrong_type=TypeError)
    _DATASETS.check_options(name, options)
    data = factory(seed=seed, **options)
    if not isinstance(data, DataSplits):
        raise TypeError(_error(f"{name} factory result", "a DataSplits", describe(data)))
    return data
