"""Iterator building blocks behind the generic (generator-backed) Dataset operations."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any

import attrs
import numpy as np

from dryml.data._nest import TreeDef, check_same, compile_builder, flatten
from dryml.errors import DatasetError

__all__ = ["Meta", "batcher", "buffer_shuffle", "shared_shuffle_seeds", "shuffle_indices",
           "shuffle_rng", "unbatcher"]

_CHUNK = 1024


@attrs.frozen
class Meta:
    """What a Dataset knows about its elements.

    ``length`` counts top-level elements (batches when batched) and ``examples`` counts
    examples; either is None when unknown.
    """

    indexed: bool = False
    supervised: bool = False
    batch_size: int | None = None
    drop_remainder: bool = False
    length: int | None = None
    examples: int | None = None
    #: an unseeded shuffle is upstream: every pass gives the examples in another order (a
    #: take/skip split of it overlaps, and predictions of one pass cannot meet the targets
    #: of another)
    reshuffled: bool = False

    def batched(self, n: int, drop: bool) -> Meta:
        """The meta of this (unbatched) data grouped in batches of ``n``."""
        ex = self.examples
        length = None if ex is None else (ex // n if drop else -(-ex // n))
        if ex is not None and drop:
            ex = (ex // n) * n
        return attrs.evolve(self, batch_size=n, drop_remainder=drop, length=length, examples=ex)

    def unbatched(self) -> Meta:
        """The meta of the examples of this data."""
        return attrs.evolve(self, batch_size=None, drop_remainder=False, length=self.examples)

    def taken(self, n: int) -> Meta:
        """The meta of the first ``n`` top-level elements."""
        length = None if self.length is None else min(n, self.length)
        ex = self.examples
        if self.batch_size is None:
            ex = length
        elif ex is not None and self.length is not None and n < self.length:
            ex = n * self.batch_size
        return attrs.evolve(self, length=length, examples=ex)

    def skipped(self, n: int) -> Meta:
        """The meta of everything after the first ``n`` top-level elements."""
        length = None if self.length is None else max(self.length - n, 0)
        ex = self.examples
        if self.batch_size is None:
            ex = length
        elif ex is not None:
            ex = max(ex - n * self.batch_size, 0)
        return attrs.evolve(self, length=length, examples=ex)


def batcher(
    it: Iterator[Any], n: int, drop: bool, stack: Callable[[list[Any]], Any]
) -> Iterator[Any]:
    """Group elements into batches of ``n``, stacking every leaf with ``stack``."""
    first: TreeDef | None = None
    build: Callable[[Any], Any] | None = None
    pos = 0
    while True:
        chunk = list(islice(it, n))
        if not chunk or (drop and len(chunk) < n):
            return
        flat = []
        for k, el in enumerate(chunk):
            lv, td = flatten(el)
            if first is None:
                first, build = td, compile_builder(td)
            elif td != first:
                check_same(first, td, f"element {pos + k}")
            flat.append(lv)
        try:
            cols = [stack(list(col)) for col in zip(*flat, strict=True)]
        except (ValueError, RuntimeError, TypeError) as exc:
            raise DatasetError(
                f"ragged elements: elements {pos}..{pos + len(chunk) - 1} cannot be stacked into "
                f"one batch ({exc}); every leaf must have the same shape and dtype in all "
                "elements (pad them, or keep the data unbatched)."
            ) from exc
        pos += len(chunk)
        yield tuple(cols) if build is None else build(cols)


def _size(leaf: Any) -> int:
    try:
        return len(leaf)
    except TypeError as exc:
        raise DatasetError(
            f"cannot unbatch: a leaf of type {type(leaf).__name__} has no batch dimension "
            "(was this dataset really batched? check batch_size=)."
        ) from exc


def unbatcher(it: Iterable[Any], rows: Callable[[Any], Iterable[Any]]) -> Iterator[Any]:
    """Split every batch into its examples, in order."""
    last_td: TreeDef | None = None
    build: Callable[[Any], Any] | None = None
    for batch in it:
        lv, td = flatten(batch)
        if td.kind == "leaf":
            _size(lv[0])
            yield from rows(lv[0])
            continue
        if td != last_td:
            last_td, build = td, compile_builder(td)
        sizes = {_size(leaf) for leaf in lv}
        if len(sizes) > 1:
            raise DatasetError(
                f"cannot unbatch: the leaves of one batch have different lengths {sorted(sizes)}."
            )
        zipped = zip(*[rows(leaf) for leaf in lv], strict=True)
        yield from (zipped if build is None else map(build, zipped))


def buffer_shuffle(
    it: Iterable[Any], buffer_size: int | None, rng: np.random.Generator
) -> Iterator[Any]:
    """Shuffle through a buffer of ``buffer_size`` elements (None: everything).

    Every buffered element is equally likely to be emitted next (the seed's version never
    picked the newest slot); with a buffer at least as large as the data the result is a
    uniform random permutation.
    """
    buf: list[Any] = []
    if buffer_size is not None:
        draws: Iterator[int] = iter(())
        source = iter(it)
        for el in islice(source, buffer_size):
            buf.append(el)
        for el in source:
            j: int | None = next(draws, None)
            if j is None:
                draws = iter(rng.integers(0, len(buf), size=_CHUNK).tolist())
                j = next(draws)
            yield buf[j]
            buf[j] = el
    else:
        buf = list(it)
    for j in rng.permutation(len(buf)).tolist():
        yield buf[j]


def shuffle_indices(n: int, buffer_size: int | None, rng: np.random.Generator) -> np.ndarray:
    """The order ``buffer_shuffle`` gives ``range(n)``, as an index array (vectorized when the
    buffer holds everything)."""
    if buffer_size is None or buffer_size >= n:
        return rng.permutation(n)
    return np.fromiter(buffer_shuffle(range(n), buffer_size, rng), dtype=np.int64, count=n)


class _SharedSeeds:
    """Seeds for the unseeded shuffles of one pass, from one base every reader agrees on."""

    def __init__(self, base: int | tuple[int, ...]) -> None:
        self.base = (base,) if isinstance(base, int) else tuple(base)
        self.drawn = 0


_shared_seeds: contextvars.ContextVar[_SharedSeeds | None] = contextvars.ContextVar(
    "dryml_shared_shuffle_seeds", default=None)


def shuffle_rng(seed: int | None) -> np.random.Generator:
    """The generator of a shuffle: from ``seed``; without one, fresh entropy, or inside
    :func:`shared_shuffle_seeds` the next seed of that pass."""
    shared = _shared_seeds.get()
    if seed is None and shared is not None:
        shared.drawn += 1
        return np.random.default_rng([*shared.base, shared.drawn])
    return np.random.default_rng(seed)


@contextlib.contextmanager
def shared_shuffle_seeds(state: _SharedSeeds | int | tuple[int, ...]
                         ) -> Iterator[_SharedSeeds]:
    """Make the unseeded shuffles started inside draw their orders from ``state`` (a base
    seed, or the state a previous ``with`` returned, to go on drawing in that pass).

    Several readers that each iterate the whole pipeline and keep their share (the workers
    of a torch ``DataLoader``) must see one order: with fresh entropy each drew its own
    permutation and kept its share of it, so examples came twice or never.
    """
    shared = state if isinstance(state, _SharedSeeds) else _SharedSeeds(state)
    token = _shared_seeds.set(shared)
    try:
        yield shared
    finally:
        _shared_seeds.reset(token)
