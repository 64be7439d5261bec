"""``TorchDataset``: a dryml Dataset over a torch ``Dataset``, ``IterableDataset`` or
``DataLoader``; it is itself a torch ``IterableDataset``, so it goes straight into a
``DataLoader`` (``DataLoader(ds, batch_size=None)`` for batched data)."""

from __future__ import annotations

import contextlib
import contextvars
import random
from collections.abc import Callable, Iterable, Iterator
from itertools import chain, count
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from dryml.data import Dataset
from dryml.data._base import check_count, check_flags
from dryml.data._gen import Meta, shared_shuffle_seeds
from dryml.data._nest import structure_of
from dryml.errors import DatasetError
from dryml_torch._codecs import numpy_of

__all__ = ["TorchDataset"]


def _tuplify(value: Any, batched: bool = False) -> Any:
    """torch collates tuples into lists; dryml elements nest through tuples. In a batch, a
    sequence of strings (how torch collates a string field) is one leaf, a list: made a
    structure, unbatching it cut each string into characters."""
    if type(value) is list or type(value) is tuple:
        if batched and value and all(isinstance(v, (str, bytes)) for v in value):
            return list(value)
        return tuple(_tuplify(v, batched) for v in value)
    if isinstance(value, dict):
        return {k: _tuplify(v, batched) for k, v in value.items()}
    return value


#: Set while a DataLoader worker reads its share: the datasets a TorchDataset is derived from
#: are read whole (sharding each level again kept 1/n**levels of the data: a map() over a
#: TorchDataset in 2 workers gave 10 of 20 examples).
_sharding: contextvars.ContextVar[bool] = contextvars.ContextVar("dryml_torch_sharding",
                                                                 default=False)


def _shard(factory: Callable[[], Iterator[Any]], worker: int, workers: int,
           epoch_seed: tuple[int, int]) -> Iterator[Any]:
    """Every ``workers``-th element from ``worker`` on, of a pass that every worker of this
    epoch makes alike: unseeded shuffles inside draw from ``epoch_seed`` (torch's base seed,
    one per epoch, shared by the workers), so the workers' shares make up the whole."""
    it: Iterator[Any] | None = None
    seeds: Any = epoch_seed
    shared = int(np.random.SeedSequence(list(epoch_seed)).generate_state(1, np.uint64)[0] >> 1)
    for k in count():
        token = _sharding.set(True)
        try:
            with shared_shuffle_seeds(seeds) as seeds, _whole_pass(shared if k == 0 else None):
                if it is None:
                    it = iter(factory())
                element = next(it, _END)
        finally:
            _sharding.reset(token)
        if element is _END:
            return
        if k % workers == worker:
            yield element


_END = object()
#: Rows of a batch made into tensors at a time when it is unbatched.
_ROW_BLOCK = 1024


@contextlib.contextmanager
def _whole_pass(seed: int | None) -> Iterator[None]:
    """Read the wrapped source in a DataLoader worker as one process would, so that the
    workers' shares of it make up the whole: the source is told it is in no worker (an
    IterableDataset that splits itself among workers, as torch's docs show, was split again
    by _shard: 10 of 20 examples arrived), and with ``seed`` (on a pass's first read, where
    a wrapped DataLoader's sampler draws its order) torch's, Python's and numpy's global
    random numbers are the epoch's, shared by the workers (each worker's own order of a
    shuffle=True DataLoader lost and repeated examples), this process's own streams coming
    back after."""
    # torch keeps a worker's info in this module variable (get_worker_info returns it); a
    # release that keeps it elsewhere leaves the source told it is a worker, as before
    try:
        from torch.utils.data._utils import worker as torch_worker
    except ImportError:
        torch_worker = None
    hides = torch_worker is not None and hasattr(torch_worker, "_worker_info")
    saved = torch_worker._worker_info if hides else None
    if hides:
        torch_worker._worker_info = None
    try:
        if seed is None:
            yield
        else:
            # Python's and numpy's global generators too: a source that shuffles with
            # random.shuffle or np.random.permutation lost and repeated examples so
            saved_random, saved_numpy = random.getstate(), np.random.get_state()
            random.seed(seed)
            np.random.seed(seed % 2**32)
            try:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)
                    yield
            finally:
                random.setstate(saved_random)
                np.random.set_state(saved_numpy)
    finally:
        if hides:
            torch_worker._worker_info = saved


def _loader_batch_size(loader: DataLoader) -> int | None:
    """A DataLoader's batch size: its ``batch_size``, or its ``batch_sampler``'s (where
    ``batch_size`` is None although it batches); None for an unbatched loader."""
    if loader.batch_size is not None or loader.batch_sampler is None:
        return loader.batch_size
    size = getattr(loader.batch_sampler, "batch_size", None)
    if type(size) is not int or size < 1:
        raise DatasetError(
            f"TorchDataset cannot tell the batch size of a DataLoader whose batch_sampler "
            f"({type(loader.batch_sampler).__name__}) has no batch_size; pass "
            "TorchDataset(loader, batch_size=N) with the largest batch it makes.")
    return size


def _length(source: Any) -> int | None:
    try:
        return len(source)
    except (TypeError, NotImplementedError):
        return None


def to_numpy_leaf(leaf: Any) -> Any:
    """A tensor as a numpy array: no copy for CPU tensors, a copy to the CPU otherwise;
    dtypes numpy lacks (bfloat16, float8, complex32) widened exactly (float32, complex64)."""
    if isinstance(leaf, torch.Tensor):
        return numpy_of(leaf)
    return np.asarray(leaf)


def _shuffles(data: Any) -> bool:
    """Whether a DataLoader draws another order on every pass (``shuffle=True``: a
    RandomSampler, seeded generator or not, moves on each epoch; so do a SubsetRandomSampler,
    a WeightedRandomSampler and a shuffling DistributedSampler)."""
    from torch.utils.data import (
        DistributedSampler,
        RandomSampler,
        SubsetRandomSampler,
        WeightedRandomSampler,
    )

    if not isinstance(data, DataLoader):
        return False
    sampler = getattr(getattr(data, "batch_sampler", None), "sampler", None) or data.sampler
    if isinstance(sampler, DistributedSampler):
        return bool(getattr(sampler, "shuffle", False))
    return isinstance(sampler, (RandomSampler, SubsetRandomSampler, WeightedRandomSampler))


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
            batch_size = batch_size or _loader_batch_size(data)
            factory = data.__iter__
        elif not isinstance(data, IterableDataset) and hasattr(data, "__getitem__") \
                and _length(data) is not None:
            factory = lambda: (data[i] for i in range(len(data)))  # noqa: E731
            if len(data) and batch_size is None and (supervised or indexed):
                # as NumpyDataset checks its flags: (x, y) taken for (i, x) gave y as x, and a
                # third field (x, y, w) was lost by apply_y
                check_flags(structure_of(_tuplify(data[0], False)), indexed, supervised,
                            "the elements")
        elif hasattr(data, "__iter__"):
            factory = data.__iter__
        else:
            raise DatasetError(f"TorchDataset cannot read {type(data).__name__}: pass a torch "
                               "Dataset, IterableDataset or DataLoader.")
        length = _length(data)
        meta = Meta(indexed, supervised, batch_size, False, length,
                    length if batch_size is None else None,
                    reshuffled=_shuffles(data))
        batched = batch_size is not None
        self._factory: Callable[[], Iterator[Any]] = lambda: (
            _tuplify(el, batched) for el in factory())
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
        info = get_worker_info()
        if info is None or info.num_workers <= 1 or _sharding.get():
            return iter(self._factory())
        # torch seeds worker k of an epoch with base + k, the base shared by the epoch's
        # workers and new each epoch; a persistent worker keeps its seed, so epochs are
        # counted too (each worker counts the same)
        self._epochs = getattr(self, "_epochs", 0) + 1
        return _shard(self._factory, info.id, info.num_workers,
                      ((info.seed - info.id) % 2**64, self._epochs))

    def _stack(self, items: list[Any]) -> Any:
        if all(isinstance(t, torch.Tensor) for t in items):
            return torch.stack(items)
        if all(isinstance(t, (str, bytes)) for t in items):
            return list(items)  # as a DataLoader collates strings
        stacked = np.stack([np.asarray(t) for t in items])
        return torch.as_tensor(stacked) if stacked.dtype.kind in "biufc" else stacked

    def _rows(self, leaf: Any) -> Iterable[Any]:
        if isinstance(leaf, torch.Tensor):
            # unbound a block at a time: unbind(0) of the whole batch made a tensor per row
            # before the first came out (+1.2 GB for a batch of 1M rows)
            return chain.from_iterable(leaf[i:i + _ROW_BLOCK].unbind(0)
                                       for i in range(0, len(leaf), _ROW_BLOCK))
        return iter(leaf)

    def _index_batch(self, start: int, n: int) -> Any:
        return torch.arange(start, start + n, dtype=torch.int64)

    _to_numpy_leaf = staticmethod(to_numpy_leaf)

    def torch(self) -> TorchDataset:
        """This dataset itself."""
        return self
