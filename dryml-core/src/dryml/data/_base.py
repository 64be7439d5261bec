"""The :class:`Dataset` base class: one lazy, re-iterable API over every framework's data."""

from __future__ import annotations

import abc
import operator
from collections.abc import Callable, Iterable, Iterator
from itertools import count, islice
from typing import Any

import attrs
import numpy as np

from dryml.data import _gen
from dryml.data._gen import Meta
from dryml.data._nest import TreeDef, leaves, map_structure
from dryml.errors import DatasetError, NotSupervisedError, UnknownLengthError

__all__ = ["Dataset"]


def check_count(value: Any, what: str, *, minimum: int) -> int:
    """``value`` as an int >= ``minimum``, or a :class:`DatasetError` naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise DatasetError(f"{what} must be an integer, got {value!r}.")
    if value < minimum:
        raise DatasetError(f"{what} must be >= {minimum}, got {value}.")
    return int(value)


def check_callable(fn: Any, what: str) -> None:
    """Raise a :class:`DatasetError` when ``fn`` is not callable."""
    if not callable(fn):
        raise DatasetError(f"{what} needs a function, got {type(fn).__name__}: {fn!r}.")


def _pair(value: Any, what: str) -> tuple[Any, Any]:
    if not isinstance(value, tuple) or len(value) != 2:
        desc = f"a {len(value)}-tuple" if isinstance(value, tuple) else type(value).__name__
        raise DatasetError(f"{what} elements must be 2-tuples, got {desc}.")
    return value


def check_flags(td: TreeDef, indexed: bool, supervised: bool, what: str) -> None:
    """Raise :class:`DatasetError` unless elements of structure ``td`` fit the flags:
    ``(i, x)`` when ``indexed``, an ``(x, y)`` body when ``supervised``."""
    body = td
    if indexed:
        if td.kind != "tuple" or len(td.children) != 2:
            raise DatasetError(f"indexed=True needs {what} of the form (i, x), got "
                               f"{td.describe()}.")
        body = td.children[1]
    if supervised and (body.kind != "tuple" or len(body.children) != 2):
        raise DatasetError(f"supervised=True needs {what} of the form (x, y), got "
                           f"{body.describe()}.")


def warn_if_reshuffled(meta: Meta) -> None:
    """A take/skip split of data shuffled without a seed overlaps: each pass draws its own
    order (14 of 100 rows were in both parts, 14 in neither)."""
    if meta.reshuffled:
        import warnings

        from dryml.errors import DrymlWarning

        warnings.warn(
            "skip() of a Dataset shuffled without a seed: every pass gives another order, so "
            "a take()/skip() split of it overlaps and changes each epoch; shuffle with a seed, "
            "ds.shuffle(seed=0), before splitting", DrymlWarning, stacklevel=3)


class Dataset(abc.ABC):
    """A lazy, re-iterable sequence of elements: ``x``, ``(x, y)`` when supervised, ``(i, x)`` /
    ``(i, (x, y))`` when indexed, or batches of those (every leaf gains a first dimension).

    Elements nest through tuples and dicts (lists are leaves). Every operation returns a new
    Dataset and reads nothing until iterated; a Dataset can be iterated any number of times.
    Subclasses wrap one framework's data (:class:`NumpyDataset`, ``TFDataset``,
    ``TorchDataset``); conversions between them come from the backends' adapters.
    """

    _meta: Meta

    # ---- what a framework provides -------------------------------------------------------

    @abc.abstractmethod
    def __iter__(self) -> Iterator[Any]:
        """Iterate the top-level elements (batches when batched)."""

    @abc.abstractmethod
    def _derive(self, factory: Callable[[], Iterator[Any]], meta: Meta) -> Dataset:
        """A dataset of this framework over the elements ``factory()`` yields."""

    def _stack(self, items: list[Any]) -> Any:
        """Stack equal-shaped leaves into one batch leaf."""
        return np.stack(items)

    def _rows(self, leaf: Any) -> Iterable[Any]:
        """The examples of one batch leaf, in order."""
        rows: Iterable[Any] = iter(leaf)
        return rows

    def _index_batch(self, start: int, n: int) -> Any:
        """The index leaf of a batch of ``n`` examples starting at ``start``."""
        return np.arange(start, start + n, dtype=np.int64)

    def _iter_converted(self, convert: Callable[[Any], Any]) -> Iterator[Any]:
        """Iterate with ``convert`` applied to every leaf (adapters use it; fast paths override)."""
        return (map_structure(convert, el) for el in self)

    # ---- what a Dataset knows ------------------------------------------------------------

    @property
    def indexed(self) -> bool:
        """Whether elements are ``(i, x)`` / ``(i, (x, y))``."""
        return self._meta.indexed

    @property
    def supervised(self) -> bool:
        """Whether elements (after the index) are ``(x, y)``."""
        return self._meta.supervised

    @property
    def batch_size(self) -> int | None:
        """The number of examples per batch (the last one may be smaller), or None."""
        return self._meta.batch_size

    @property
    def batched(self) -> bool:
        """Whether the top-level elements are batches."""
        return self._meta.batch_size is not None

    def __len__(self) -> int:
        """The number of top-level elements (batches when batched), when it is known."""
        if self._meta.length is None:
            raise UnknownLengthError(
                f"the size of this {type(self).__name__} is not known (it comes from a generator, "
                "a framework pipeline of unknown cardinality or map_batches); use .count() to "
                "iterate and count it."
            )
        return self._meta.length

    def __repr__(self) -> str:
        m = self._meta
        size = "?" if m.length is None else str(m.length)
        return (f"{type(self).__name__}(len={size}, batch_size={m.batch_size}, "
                f"supervised={m.supervised}, indexed={m.indexed})")

    # ---- reading -------------------------------------------------------------------------

    def peek(self) -> Any:
        """The first top-level element (a batch when batched)."""
        for el in self:
            return el
        hint = ""
        if self._meta.drop_remainder:
            hint = " batch(..., drop_remainder=True) dropped a partial last batch;"
        raise DatasetError(f"peek() on an empty {type(self).__name__}:{hint} there is no element.")

    def collect(self) -> list[Any]:
        """All top-level elements in a list."""
        return list(self)

    def count(self) -> int:
        """Iterate and count the top-level elements (works when ``len()`` is unknown)."""
        if self._meta.length is not None:
            return self._meta.length
        return sum(1 for _ in self)

    # ---- batching ------------------------------------------------------------------------

    def batch(self, batch_size: int, drop_remainder: bool = False) -> Dataset:
        """Group examples into batches of ``batch_size`` (re-batches batched data).

        The last, smaller batch is kept unless ``drop_remainder=True``.
        """
        n = check_count(batch_size, "batch(batch_size)", minimum=1)
        src = self.unbatch()
        stack = self._stack
        return self._derive(lambda: _gen.batcher(iter(src), n, drop_remainder, stack),
                            src._meta.batched(n, drop_remainder))

    def unbatch(self) -> Dataset:
        """The examples of a batched dataset, in order (unbatched data is returned as is)."""
        if not self.batched:
            return self
        rows = self._rows
        return self._derive(lambda: _gen.unbatcher(self, rows), self._meta.unbatched())

    # ---- transforming --------------------------------------------------------------------

    def map(self, fn: Callable[[Any], Any]) -> Dataset:
        """Apply ``fn`` to every example (batched data is unbatched, mapped and re-batched)."""
        check_callable(fn, "map()")
        if self.batched:
            m = self._meta
            return self.unbatch().map(fn).batch(m.batch_size or 1, m.drop_remainder)
        return self._map_top(fn)

    def map_batches(self, fn: Callable[[Any], Any]) -> Dataset:
        """Apply ``fn`` to every batch of a batched dataset."""
        check_callable(fn, "map_batches()")
        if not self.batched:
            raise DatasetError("map_batches() needs a batched dataset: call .batch(n) first, or "
                               "use .map(fn) for single examples.")
        return self._map_top(fn, self._with(examples=None))  # fn may change the batch sizes

    def _map_top(self, fn: Callable[[Any], Any], meta: Meta | None = None) -> Dataset:
        """Apply ``fn`` to every top-level element (frameworks override to stay native)."""
        return self._derive(lambda: map(fn, self), meta or self._meta)

    def apply_x(self, fn: Callable[[Any], Any]) -> Dataset:
        """Apply ``fn`` to ``x`` of every top-level element (a batch of ``x`` when batched)."""
        check_callable(fn, "apply_x()")
        if not self.supervised:
            return self._map_body(fn)
        return self._map_body(lambda b: (fn(_pair(b, "apply_x() of supervised")[0]), b[1]))

    def apply_y(self, fn: Callable[[Any], Any]) -> Dataset:
        """Apply ``fn`` to ``y`` of every top-level element (a batch of ``y`` when batched)."""
        check_callable(fn, "apply_y()")
        self._need_supervised("apply_y()")
        # a body of another length (x, y, w) lost its extra fields
        return self._map_body(lambda b: (_pair(b, "apply_y() of supervised")[0], fn(b[1])))

    def _map_body(self, fn: Callable[[Any], Any], meta: Meta | None = None) -> Dataset:
        if self.indexed:
            return self._map_top(lambda el: (_pair(el, "indexed")[0], fn(el[1])), meta)
        return self._map_top(fn, meta)

    def _need_supervised(self, what: str) -> None:
        if not self.supervised:
            raise NotSupervisedError(
                f"{what} needs a supervised dataset with (x, y) elements; build it with "
                "supervised=True or call .as_supervised() on (x, y) data."
            )

    # ---- selecting -----------------------------------------------------------------------

    def take(self, n: int) -> Dataset:
        """The first ``n`` top-level elements (batches when batched)."""
        n = check_count(n, "take(n)", minimum=0)
        return self._derive(lambda: islice(self, n), self._meta.taken(n))

    def skip(self, n: int) -> Dataset:
        """Everything after the first ``n`` top-level elements (batches when batched)."""
        n = check_count(n, "skip(n)", minimum=0)
        warn_if_reshuffled(self._meta)
        return self._derive(lambda: islice(self, n, None), self._meta.skipped(n))

    def shuffle(self, buffer_size: int | None = None, seed: int | None = None) -> Dataset:
        """Shuffle the examples through a buffer of ``buffer_size`` (None: all of them).

        Batched data is unbatched, shuffled and re-batched with the same batch size. With a
        ``seed`` every iteration gives the same order; without one, a new order each time.
        """
        buf = None if buffer_size is None else check_count(buffer_size, "shuffle(buffer_size)",
                                                           minimum=1)
        # as the in-memory shuffle checks it (numpy's bare TypeError of a generator's pass)
        seed = None if seed is None else check_count(seed, "shuffle(seed)", minimum=0)
        src = self.unbatch()

        def factory() -> Iterator[Any]:
            return _gen.buffer_shuffle(src, buf, _gen.shuffle_rng(seed))

        out = self._derive(factory, attrs.evolve(src._meta, reshuffled=src._meta.reshuffled
                                                  or seed is None))
        m = self._meta
        return out.batch(m.batch_size, m.drop_remainder) if m.batch_size else out

    # ---- structure -----------------------------------------------------------------------

    def as_indexed(self, start: int = 0) -> Dataset:
        """Elements become ``(i, element)`` counting examples from ``start`` (index arrays
        when batched); an indexed dataset is returned as is."""
        start = check_count(start, "as_indexed(start)", minimum=0)
        if self.indexed:
            return self
        meta = self._with(indexed=True)
        if not self.batched:
            return self._derive(lambda: zip(count(start), self), meta)
        index_batch = self._index_batch

        def factory() -> Iterator[Any]:
            pos = start
            for batch in self:
                n = len(_first_leaf(batch))
                yield index_batch(pos, n), batch
                pos += n

        return self._derive(factory, meta)

    def as_not_indexed(self) -> Dataset:
        """Drop the index: ``(i, x)`` becomes ``x`` (unindexed data is returned as is)."""
        if not self.indexed:
            return self
        return self._map_top(operator.itemgetter(1), self._with(indexed=False))

    def as_supervised(self) -> Dataset:
        """Treat ``(a, b)`` elements as supervised ``(x, y)`` (checked while iterating)."""
        if self.supervised:
            return self

        def check(body: Any) -> Any:
            return _pair(body, "as_supervised()")

        return self._map_body(check, self._with(supervised=True))

    def as_not_supervised(self) -> Dataset:
        """Keep only ``x``: ``(x, y)`` becomes ``x`` (unsupervised data is returned as is)."""
        if not self.supervised:
            return self
        return self._map_body(operator.itemgetter(0), self._with(supervised=False))

    def _with(self, **changes: Any) -> Meta:
        return attrs.evolve(self._meta, **changes)

    # ---- converting ----------------------------------------------------------------------

    def numpy(self) -> Dataset:
        """This data as a :class:`NumpyDataset` (device tensors move to the CPU)."""
        from dryml.data._adapters import adapter

        return adapter("numpy").convert(self)

    def in_memory(self) -> Dataset:
        """Every element read once, now, into numpy arrays in memory: a ``NumpyDataset`` with
        the same structure (supervised, indexed, batch size) that needs neither this source nor
        its framework, so it can be pickled and sent to another process. ``train`` and ``eval``
        called outside a compute context send their data to the worker this way.

        Batches are cut again at ``batch_size`` (irregular batch sizes, e.g. after
        ``map_batches``, are not kept), and an unseeded shuffle of a framework pipeline is
        frozen into the order this one pass read. In-memory numpy data is returned as is.
        """
        from dryml.data._numpy import NumpyDataset

        src = self.numpy()
        assert isinstance(src, NumpyDataset)
        return src.in_memory()

    def tf(self) -> Dataset:
        """This data as a ``TFDataset`` (needs ``dryml-tf``)."""
        from dryml.data._adapters import adapter

        return adapter("tf").convert(self)

    def torch(self) -> Dataset:
        """This data as a ``TorchDataset``, usable directly in a ``DataLoader``
        (needs ``dryml-torch``)."""
        from dryml.data._adapters import adapter

        return adapter("torch").convert(self)


def _first_leaf(value: Any) -> Any:
    return leaves(value)[0]
