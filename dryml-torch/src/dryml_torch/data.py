"""``TorchDataset``: a dryml Dataset over a torch ``Dataset``, ``IterableDataset`` or
``DataLoader``; it is itself a torch ``IterableDataset``, so it goes straight into a
``DataLoader`` (``DataLoader(ds, batch_size=None)`` for batched data)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from dryml.data import Dataset
from dryml.data._base import check_count
from dryml.data._gen import Meta
from dryml.errors import DatasetError

__all__ = ["TorchDataset"]


def _tuplify(value: Any) -> Any:
    """torch collates tuples into lists; dryml elements nest through tuples."""
    if type(value) is list or type(value) is tuple:
        return tuple(_tuplify(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuplify(v) for k, v in value.items()}
    return value


def _length(source: Any) -> int | None:
    try:
        return len(source)
    except (TypeError, NotImplementedError):
        return None


def to_numpy_leaf(leaf: Any) -> Any:
    """A tensor as a numpy array: no copy for CPU tensors, a copy to the CPU otherwise."""
    if isinstance(leaf, torch.Tensor):
        return leaf.detach().cpu().resolve_conj().resolve_neg().numpy()
    return np.asarray(leaf)


class TorchDataset(Dataset, IterableDataset):  # type: ignore[misc]
    """A Dataset of torch tensors.

    ``data`` is a torch ``DataLoader`` (batched with its ``batch_size`` unless ``batch_size``
    says otherwise), a map-style ``Dataset`` (read in index order), an ``IterableDataset`` or
    any re-iterable of elements. Lists in elements (as ``DataLoader`` collates them) become
    tuples. In a ``DataLoader`` with several workers each worker reads every n-th element.
    """

    def __init__(self, data: Any, supervised: bool = False, indexed: bool = False,
                 batch_size: int | None = None) -> None:
        if isinstance(data, Dataset):
            raise DatasetError("TorchDataset(data) got a dryml Dataset; use ds.torch() instead.")
        if isinstance(data, Iterator):
            raise DatasetError(
                f"TorchDataset got a one-shot iterator ({type(data).__name__}); pass a torch "
                "Dataset, IterableDataset, DataLoader or another re-iterable source."
            )
        if batch_size is not None:
            batch_size = check_count(batch_size, "batch_size", minimum=1)
        factory: Callable[[], Iterable[Any]]
        if isinstance(data, DataLoader):
            batch_size = batch_size or data.batch_size
            factory = data.__iter__
        elif not isinstance(data, IterableDataset) and hasattr(data, "__getitem__") \
                and _length(data) is not None:
            factory = lambda: (data[i] for i in range(len(data)))  # noqa: E731
        elif hasattr(data, "__iter__"):
            factory = data.__iter__
        else:
            raise DatasetError(f"TorchDataset cannot read {type(data).__name__}: pass a torch "
                               "Dataset, IterableDataset or DataLoader.")
        length = _length(data)
        meta = Meta(indexed, supervised, batch_size, False, length,
                    length if batch_size is None else None)
        self._factory: Callable[[], Iterator[Any]] = lambda: map(_tuplify, factory())
        self._meta = meta
        self.source = data
        """The wrapped torch object (None for datasets derived by dryml operations)."""

    @classmethod
    def _generic(cls, factory: Callable[[], Iterator[Any]], meta: Meta) -> TorchDataset:
        out = cls.__new__(cls)
        out._factory, out._meta, out.source = factory, meta, None
        return out

    def _derive(self, factory: Callable[[], Iterator[Any]], meta: Meta) -> Dataset:
        return TorchDataset._generic(factory, meta)

    def __iter__(self) -> Iterator[Any]:
        it = iter(self._factory())
        info = get_worker_info()
        if info is not None and info.num_workers > 1:
            return islice(it, info.id, None, info.num_workers)
        return it

    def _stack(self, items: list[Any]) -> Any:
        if all(isinstance(t, torch.Tensor) for t in items):
            return torch.stack(items)
        return torch.as_tensor(np.stack([np.asarray(t) for t in items]))

    def _rows(self, leaf: Any) -> Iterable[Any]:
        return leaf.unbind(0) if isinstance(leaf, torch.Tensor) else iter(leaf)

    def _index_batch(self, start: int, n: int) -> Any:
        return torch.arange(start, start + n, dtype=torch.int64)

    _to_numpy_leaf = staticmethod(to_numpy_leaf)

    def torch(self) -> TorchDataset:
        """This dataset itself."""
        return self
