"""Datasets: one lazy, re-iterable API over numpy arrays, ``tf.data`` and PyTorch data.

:class:`NumpyDataset` lives here; ``TFDataset`` (``dryml.data.tf``, from ``dryml-tf``) and
``TorchDataset`` (``dryml.data.torch``, from ``dryml-torch``) come from the backends, which
also provide the conversions ``ds.tf()`` and ``ds.torch()`` through the
``dryml_dataset_adapters`` hook. This package imports no framework.
"""

from __future__ import annotations

from dryml.data._adapters import DatasetAdapter
from dryml.data._base import Dataset
from dryml.data._numpy import NumpyDataset
from dryml.errors import DatasetError, NotIndexedError, NotSupervisedError, UnknownLengthError

__all__ = [
    "Dataset",
    "DatasetAdapter",
    "DatasetError",
    "NotIndexedError",
    "NotSupervisedError",
    "NumpyDataset",
    "UnknownLengthError",
]
