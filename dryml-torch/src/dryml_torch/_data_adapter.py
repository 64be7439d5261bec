"""The ``dryml_dataset_adapters`` implementation of dryml-torch: anything to ``TorchDataset``."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from dryml.data import Dataset
from dryml_torch.data import TorchDataset

__all__ = ["ADAPTER", "TorchAdapter", "to_torch_leaf"]


def _from_numpy(array: np.ndarray) -> Any:
    """``torch.from_numpy`` (no copy), after a copy for the numeric arrays it refuses
    (``x[::-1]``, ``np.flip`` views and big-endian ``>f4`` data raised) and for read-only
    ones: torch ignores the flag, so an in-place op on a batch of an array loaded with
    ``mmap=True`` wrote to read-only pages and killed the process."""
    if not array.dtype.isnative or any(step < 0 for step in array.strides):
        array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("="))
    elif not array.flags.writeable:
        array = np.array(array)  # a plain, writable copy (np.memmap too)
    return torch.from_numpy(array)


def _numeric(dtype: Any) -> bool:
    """Whether a tensor dtype (numpy's, or another framework's) holds numbers DLPack can
    share: a TensorFlow string tensor through DLPack aborted the process."""
    if isinstance(dtype, np.dtype):
        return dtype.kind in "biufc"
    return getattr(dtype, "name", str(dtype)) not in ("string", "variant", "resource")


def _to_torch_leaf(leaf: Any) -> Any:
    if isinstance(leaf, np.ndarray):  # np.memmap too (through DLPack it kept its pages)
        if leaf.dtype.kind in "biufc":
            return _from_numpy(leaf)
        return leaf  # strings, objects: torch has no such dtype
    if isinstance(leaf, torch.Tensor):
        return leaf
    if isinstance(leaf, np.generic):
        return torch.from_numpy(np.asarray(leaf)) if leaf.dtype.kind in "biufc" else leaf
    if hasattr(leaf, "__dlpack__"):
        if _numeric(getattr(leaf, "dtype", None)):
            return torch.from_dlpack(leaf)
        return np.asarray(leaf.numpy() if hasattr(leaf, "numpy") else leaf)
    if isinstance(leaf, (float, complex)):
        # double precision, as a numpy Dataset gives them (torch.as_tensor made a Python float
        # float32: 16777217.0 came back as 16777216)
        return torch.as_tensor(leaf, dtype=torch.float64 if isinstance(leaf, float)
                               else torch.complex128)
    if isinstance(leaf, (bool, int)):
        return torch.as_tensor(leaf)  # bool, int64
    return leaf


def _for_column(column: Any) -> Any:
    """Slices of a writable numeric array column go straight to ``torch.from_numpy``."""
    if (type(column) is np.ndarray and column.dtype.kind in "biufc" and column.dtype.isnative
            and column.flags.writeable and all(step >= 0 for step in column.strides)):
        return torch.from_numpy
    return _to_torch_leaf


class _ToTorch:
    """One leaf as a tensor, sharing memory where possible: ``torch.from_numpy`` for arrays,
    DLPack for tensors of other frameworks (TensorFlow, JAX, CuPy)."""

    __call__ = staticmethod(_to_torch_leaf)
    for_column = staticmethod(_for_column)


to_torch_leaf = _ToTorch()


class TorchAdapter:
    """Converts any dryml Dataset to a :class:`TorchDataset` (lazily, per element)."""

    framework = "torch"

    @property
    def dataset_class(self) -> type[TorchDataset]:
        """``TorchDataset``."""
        return TorchDataset

    def convert(self, ds: Dataset) -> TorchDataset:
        """``ds`` as a TorchDataset; numpy and CPU TensorFlow data are shared, not copied."""
        if isinstance(ds, TorchDataset):
            return ds
        return TorchDataset._generic(lambda: ds._iter_converted(to_torch_leaf), ds._meta)


ADAPTER = TorchAdapter()
