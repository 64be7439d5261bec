""":class:`NumpyDataset`: numpy arrays in memory, or a generator of numpy elements."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import attrs
import numpy as np

from dryml.data._base import Dataset, check_count, check_flags, warn_if_reshuffled
from dryml.data._gen import Meta
from dryml.data._nest import LEAF, TreeDef, check_same, flatten
from dryml.data._table import ShuffleOp, SliceOp, Table
from dryml.errors import DatasetError

__all__ = ["NumpyDataset"]


def _column(value: Any, where: str) -> np.ndarray:
    try:
        arr = np.asarray(value)
    except ValueError as exc:
        raise DatasetError(
            f"ragged data: {where} cannot be made into one array ({exc}); every example of a "
            "leaf must have the same shape (pad it, or pass a list of elements)."
        ) from exc
    if arr.dtype == object and isinstance(value, list):
        raise DatasetError(f"ragged data: {where} holds sequences of different lengths.")
    return arr


def _batch_table(data: Any) -> Table:
    flat, td = flatten(data)
    cols = [_column(leaf, f"leaf {j} of {td.describe()}") for j, leaf in enumerate(flat)]
    for j, col in enumerate(cols):
        if col.ndim == 0:
            sparse = hasattr(flat[j], "toarray")  # a scipy sparse matrix is no array to numpy
            raise DatasetError(
                f"leaf {j} of {td.describe()} is a scalar; a batch needs arrays with a first "
                "(example) dimension." + (" It is a sparse matrix: pass x.toarray() (dryml "
                                          "Datasets hold dense arrays)." if sparse else ""))
    sizes = [len(col) for col in cols]
    if len(set(sizes)) > 1:
        raise DatasetError(f"mismatched lengths: the leaves of {td.describe()} have "
                           f"{sizes} examples; every leaf of one batch needs the same number.")
    return Table(sizes[0] if sizes else 0, tuple(cols), td)


def _list_table(items: list[Any]) -> Table:
    first, td = flatten(items[0])
    columns: list[list[Any]] = [[leaf] for leaf in first]
    for k, item in enumerate(items[1:], 1):
        lv, other = flatten(item)
        if other != td:
            check_same(td, other, f"element {k}")
        for col, leaf in zip(columns, lv, strict=True):
            col.append(leaf)
    stacked = []
    for j, col in enumerate(columns):
        try:
            stacked.append(np.stack([np.asarray(v) for v in col]))
        except ValueError as exc:
            raise DatasetError(
                f"ragged elements: leaf {j} of {td.describe()} has different shapes across the "
                f"list ({exc}); every element must have the same shapes."
            ) from exc
    return Table(len(items), tuple(stacked), td)


def _batches_table(batches: Iterator[Any]) -> Table:
    """The examples of every batch, concatenated into one column per leaf."""
    parts: list[list[np.ndarray]] = []
    td = LEAF
    for k, batch in enumerate(batches):
        flat, other = flatten(batch)
        if k == 0:
            td, parts = other, [[] for _ in flat]
        elif other != td:
            check_same(td, other, f"batch {k}")
        for part, leaf in zip(parts, flat, strict=True):
            part.append(np.asarray(leaf))
    if not parts:
        return Table(0, (), LEAF)
    try:
        cols = tuple(np.concatenate(part) for part in parts)
    except ValueError as exc:
        raise DatasetError(f"ragged batches: the leaves of {td.describe()} differ in shape "
                           f"from batch to batch ({exc}).") from exc
    sizes = {len(col) for col in cols}
    if len(sizes) > 1:
        raise DatasetError(f"mismatched lengths: the leaves of {td.describe()} have "
                           f"{sorted(sizes)} examples in total.")
    return Table(sizes.pop(), cols, td)


class _Reiterable:
    """Calls a user factory for every iteration and refuses one that hands back the same
    exhausted iterator (the same re-iterable, a list, is read again)."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self.factory = factory
        self.last: Any = None

    def __call__(self) -> Iterator[Any]:
        it = self.factory()
        if it is self.last and isinstance(it, Iterator):
            raise DatasetError("the callable given to NumpyDataset returned the same iterator "
                               "twice; it must return a fresh iterator on every call.")
        self.last = it
        return iter(it)


class NumpyDataset(Dataset):
    """A Dataset of numpy arrays.

    ``data`` is one batch, an array or a nested tuple/dict of arrays with equal first
    dimensions (``(x, y)`` with ``supervised=True``); or a list of elements; or a callable
    returning a fresh iterator of elements (of batches with ``batch_size``). ``batch_size``
    given with in-memory data splits it into batches of that size.

    >>> ds = NumpyDataset((np.zeros((10, 3)), np.arange(10)), supervised=True)
    >>> [x.shape for x, y in ds.batch(4)]
    [(4, 3), (4, 3), (2, 3)]
    """

    _table: Table | None
    _factory: Callable[[], Iterator[Any]] | None

    def __init__(self, data: Any, supervised: bool = False, indexed: bool = False,
                 batch_size: int | None = None) -> None:
        if batch_size is not None:
            batch_size = check_count(batch_size, "batch_size", minimum=1)
        self._factory = None
        if isinstance(data, Dataset):
            raise DatasetError("NumpyDataset(data) got a Dataset; use ds.numpy() instead.")
        if isinstance(data, (np.ndarray, tuple, dict)) or hasattr(data, "__array__"):
            self._table = _batch_table(data)
            check_flags(self._table.td, indexed, supervised, "the data")
            n = self._table.n
            meta = Meta(indexed, supervised, None, False, n, n)
            self._meta = meta.batched(batch_size or max(n, 1), False)
        elif isinstance(data, list):
            self._table = _list_table(data) if data else Table(0, (), LEAF)
            if data:
                check_flags(self._table.td, indexed, supervised, "the elements")
            meta = Meta(indexed, supervised, None, False, len(data), len(data))
            self._meta = meta.batched(batch_size, False) if batch_size else meta
        elif isinstance(data, Iterator) or hasattr(data, "__next__"):
            raise DatasetError(
                f"NumpyDataset got a one-shot iterator ({type(data).__name__}) that can be read "
                "only once; pass a list, or a callable returning a fresh iterator, e.g. "
                "NumpyDataset(lambda: make_generator())."
            )
        elif callable(data) or hasattr(data, "__iter__"):
            self._table = None
            factory = data if callable(data) else data.__iter__
            self._factory = _Reiterable(factory)
            self._meta = Meta(indexed, supervised, batch_size, False, None, None)
        else:
            raise DatasetError(f"NumpyDataset cannot read {type(data).__name__}: pass an array, "
                               "a tuple/dict of arrays, a list of elements or a callable.")

    @classmethod
    def _generic(cls, factory: Callable[[], Iterator[Any]], meta: Meta) -> NumpyDataset:
        out = cls.__new__(cls)
        out._table, out._factory, out._meta = None, factory, meta
        return out

    @classmethod
    def _of_table(cls, table: Table, meta: Meta) -> NumpyDataset:
        out = cls.__new__(cls)
        out._table, out._factory, out._meta = table, None, meta
        return out

    def _derive(self, factory: Callable[[], Iterator[Any]], meta: Meta) -> Dataset:
        return NumpyDataset._generic(factory, meta)

    def __iter__(self) -> Iterator[Any]:
        if self._table is not None:
            return self._table.iterate(self._meta.batch_size, self._meta.drop_remainder)
        assert self._factory is not None
        return iter(self._factory())

    def _iter_converted(self, convert: Callable[[Any], Any]) -> Iterator[Any]:
        if self._table is not None:
            return self._table.iterate(self._meta.batch_size, self._meta.drop_remainder, convert)
        return super()._iter_converted(convert)

    def _arrays(self) -> Any | None:
        """All selected rows as one structure of arrays when that is the same on every
        iteration (in memory, no unseeded shuffle), else None; adapters' fast path."""
        table = self._cut()
        if table is None or not table.deterministic:
            return None
        return table.arrays()

    # ---- in-memory fast paths (index arithmetic on the table) -----------------------------

    def _cut(self) -> Table | None:
        """The table with a pending ``drop_remainder`` applied."""
        t, m = self._table, self._meta
        if t is None or not m.drop_remainder or m.examples is None:
            return t
        return t.with_op(SliceOp(0, m.examples))

    def batch(self, batch_size: int, drop_remainder: bool = False) -> Dataset:
        """Group examples into batches of ``batch_size`` (re-batches batched data).

        The last, smaller batch is kept unless ``drop_remainder=True``.
        """
        table = self._cut()
        if table is None:
            return super().batch(batch_size, drop_remainder)
        n = check_count(batch_size, "batch(batch_size)", minimum=1)
        return self._of_table(table, self._meta.unbatched().batched(n, drop_remainder))

    def unbatch(self) -> Dataset:
        """The examples of a batched dataset, in order (unbatched data is returned as is)."""
        table = self._cut()
        if table is None or not self.batched:
            return super().unbatch()
        return self._of_table(table, self._meta.unbatched())

    def _rows_of(self, n: int) -> int:
        return n * (self._meta.batch_size or 1)

    def take(self, n: int) -> Dataset:
        """The first ``n`` top-level elements (batches when batched)."""
        if self._table is None:
            return super().take(n)
        n = check_count(n, "take(n)", minimum=0)
        table = self._table.with_op(SliceOp(0, self._rows_of(n)))
        return self._of_table(table, self._meta.taken(n))

    def skip(self, n: int) -> Dataset:
        """Everything after the first ``n`` top-level elements (batches when batched)."""
        if self._table is None:
            return super().skip(n)
        n = check_count(n, "skip(n)", minimum=0)
        warn_if_reshuffled(self._meta)
        table = self._table.with_op(SliceOp(self._rows_of(n), self._table.n))
        return self._of_table(table, self._meta.skipped(n))

    def shuffle(self, buffer_size: int | None = None, seed: int | None = None) -> Dataset:
        """Shuffle the examples through a buffer of ``buffer_size`` (None: all of them).

        Batched data is unbatched, shuffled and re-batched with the same batch size. With a
        ``seed`` every iteration gives the same order; without one, a new order each time.
        """
        table = self._cut()
        if table is None:
            return super().shuffle(buffer_size, seed)
        if buffer_size is not None:
            buffer_size = check_count(buffer_size, "shuffle(buffer_size)", minimum=1)
        if seed is not None:
            seed = check_count(seed, "shuffle(seed)", minimum=0)
        m = self._meta
        meta = m.unbatched()
        meta = meta.batched(m.batch_size, m.drop_remainder) if m.batch_size else meta
        if seed is None:
            meta = attrs.evolve(meta, reshuffled=True)
        return self._of_table(table.with_op(ShuffleOp(buffer_size, seed)), meta)

    def as_indexed(self, start: int = 0) -> Dataset:
        """Elements become ``(i, element)`` counting examples from ``start`` (index arrays
        when batched); an indexed dataset is returned as is."""
        if self._table is None or self.indexed:
            return super().as_indexed(start)
        start = check_count(start, "as_indexed(start)", minimum=0)
        return self._of_table(self._table.with_index(start), self._with(indexed=True))

    def _pick(self, body_part: int | None, **changes: Any) -> NumpyDataset:
        """Keep the body (``None``) or one part of an ``(a, b)`` body, dropping any index."""
        assert self._table is not None
        td, offset = self._table.td, 0
        if not td.children and not self._table.n:  # no element: no parts to pick from
            return self._of_table(self._table, self._with(**changes))
        if self.indexed:
            offset, td = td.children[0].num_leaves, td.children[1]
        if body_part is not None:
            offset += sum(c.num_leaves for c in td.children[:body_part])
            td = td.children[body_part]
        picks = list(range(offset, offset + td.num_leaves))
        if self.indexed and "indexed" not in changes:  # keep the index in front
            itd = self._table.td.children[0]
            td = TreeDef("tuple", tuple, (), (itd, td), itd.num_leaves + td.num_leaves)
            picks = [*range(itd.num_leaves), *picks]
        table = self._table.restructure(td, picks)
        return self._of_table(table, self._with(**changes))

    def as_not_indexed(self) -> Dataset:
        """Drop the index: ``(i, x)`` becomes ``x`` (unindexed data is returned as is)."""
        if self._table is None or not self.indexed:
            return super().as_not_indexed()
        return self._pick(None, indexed=False)

    def as_supervised(self) -> Dataset:
        """Treat ``(a, b)`` elements as supervised ``(x, y)``."""
        if self._table is None or self.supervised:
            return super().as_supervised()
        body = self._table.td.children[1] if self.indexed else self._table.td
        check_flags(body, False, True, "as_supervised() elements")
        return self._of_table(self._table, self._with(supervised=True))

    def as_not_supervised(self) -> Dataset:
        """Keep only ``x``: ``(x, y)`` becomes ``x`` (unsupervised data is returned as is)."""
        if self._table is None or not self.supervised:
            return super().as_not_supervised()
        return self._pick(0, supervised=False)

    def numpy(self) -> NumpyDataset:
        """This dataset itself."""
        return self

    def in_memory(self) -> NumpyDataset:
        """Every element read once, now, into numpy arrays in memory (in-memory data is
        returned as is); see :meth:`Dataset.in_memory`."""
        if self._table is not None:
            return self
        m = self._meta
        if m.batch_size is None:
            items = list(self)
            table = _list_table(items) if items else Table(0, (), LEAF)
        else:
            table = _batches_table(iter(self))
        meta = Meta(m.indexed, m.supervised, None, False, table.n, table.n)
        return self._of_table(table, meta.batched(m.batch_size, False) if m.batch_size else meta)

