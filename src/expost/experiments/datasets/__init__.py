"""Data sets for the experiments, by name.

>>> from expost.experiments.datasets import load_dataset, list_datasets
>>> sorted({"chestxray14", "cifar10", "cifar100", "digits", "imagefolder", "medmnist", "npz",
...         "synthetic"} & set(list_datasets()))
['chestxray14', 'cifar10', 'cifar100', 'digits', 'imagefolder', 'medmnist', 'npz', 'synthetic']
>>> load_dataset("digits", seed=0)
DataSplits('digits', train=1258, val=180, test=359, n_classes=10, input_shape=(1, 8, 8))

Every loader returns :class:`DataSplits`; :func:`dataset_options` lists a data
set's options with their types and defaults, and :func:`register_dataset` adds
a new one.
"""

from . import chestxray14, cifar, digits, medmnist, synthetic, user_data  # noqa: F401  (register)
from ._api import dataset_options, list_datasets, load_dataset, register_dataset
from ._base import DataSplits
from .describe import data_provenance, describe_dataset, format_description

__all__ = [
    "DataSplits",
    "data_provenance",
    "dataset_options",
    "describe_dataset",
    "format_description",
    "list_datasets",
    "load_dataset",
    "register_dataset",
]
