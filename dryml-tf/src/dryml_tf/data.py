"""``TFDataset``: a dryml Dataset over a ``tf.data.Dataset``; operations delegate to tf.data
(parallel ``map``, ``shuffle``, ``batch``...), so pipelines stay in TensorFlow."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import attrs
import numpy as np
import tensorflow as tf

from dryml.data import Dataset, NumpyDataset
from dryml.data._base import check_callable, check_count, warn_if_reshuffled
from dryml.data._gen import Meta
from dryml.errors import DatasetError

__all__ = ["TFDataset"]

AUTOTUNE = tf.data.AUTOTUNE


def _cardinality(tf_ds: tf.data.Dataset) -> int | None:
    n = int(tf_ds.cardinality())
    return n if n >= 0 else None


# tf.data's own classes (private: one this does not know reads as "not batched"): the batching
# steps, and the steps after which a batched pipeline still yields batches, element by element
_BATCHING = frozenset({"_BatchDataset", "_ParallelBatchDataset", "_PaddedBatchDataset"})
_ELEMENTWISE = frozenset({
    "_MapDataset", "_ParallelMapDataset", "_PrefetchDataset", "CacheDataset", "_OptionsDataset",
    "_ShuffleDataset", "_RepeatDataset", "_TakeDataset", "_SkipDataset", "_FilterDataset",
    "_ShardDataset", "_IgnoreErrorsDataset", "_TakeWhileDataset"})


def batched_by(tf_ds: tf.data.Dataset) -> int | None:
    """The batch size of a pipeline whose last batching step is ``batch`` (or
    ``padded_batch``), maybe followed by element-wise steps (map, prefetch, shuffle...); 0 when
    its size is not a constant, None when the pipeline is not known to be batched."""
    ds: Any = tf_ds
    for _ in range(1000):
        name = type(ds).__name__
        if name in _BATCHING:
            try:
                return int(ds._batch_size)
            except (AttributeError, TypeError, ValueError):
                return 0
        if name not in _ELEMENTWISE:
            return None
        ds = getattr(ds, "_input_dataset", None)
    return None


def _check_batching(tf_ds: tf.data.Dataset, batch_size: int | None) -> None:
    """Warn when ``batch_size=`` does not say what the pipeline's last ``batch`` does: each
    batch read as one example is batched again into batches of batches (silently, when the
    sizes divide evenly), and a wrong size miscounts examples."""
    found = batched_by(tf_ds)
    if found is None or found == batch_size or (found == 0 and batch_size is not None):
        return
    shapes = [getattr(leaf, "shape", None) for leaf in tf.nest.flatten(tf_ds.element_spec)]
    if any(shape is not None and shape.rank is not None
           and (shape.rank == 0 or shape[0] not in (None, found or None)) for shape in shapes):
        return  # a map after the batch made something else of it (a mean, a window); a
        # leaf of unknown rank (py_function) cannot tell
    import warnings

    from dryml.errors import DrymlWarning

    size = found or "N"
    if batch_size is None:
        said = ("without batch_size=, so each batch counts as one example (batching it again "
                "makes batches of batches)")
        unless = (" If each of its elements really is one example (a window of a sequence), "
                  "ignore this DrymlWarning.")
    else:
        said, unless = f"with batch_size={batch_size}, which miscounts its examples", ""
    warnings.warn(f"the tf.data pipeline batches by {size}, but was wrapped {said}: "
                  f"say TFDataset(tf_ds, batch_size={size}).{unless}", DrymlWarning,
                  stacklevel=3)


def _one_arg(fn: Callable[[Any], Any], spec: Any) -> Callable[..., Any]:
    """tf.data calls ``fn(*element)`` for tuples; dryml functions take the element. Whether
    the element is a tuple comes from ``spec`` (the dataset's ``element_spec``): one argument
    is also what tf.data passes for a 1-tuple ``(x,)``, which ``fn`` must get as ``(x,)`` (it
    got ``x``, so ``el[0]`` took x's first column). tf.data unpacks plain tuples only: a
    namedtuple comes as one argument (otherwise map would wrap it in a 1-tuple)."""
    is_tuple = type(spec) is tuple

    def call(*args: Any) -> Any:
        return fn(args if is_tuple else args[0])

    return call


def to_numpy_leaf(leaf: Any) -> Any:
    """A tensor as a numpy array: a read-only view of a CPU tensor's memory (``.numpy()``
    would copy), a copy to the host for device tensors."""
    return np.asarray(leaf) if isinstance(leaf, tf.Tensor) else leaf


def _from_memory(data: Dataset) -> Dataset:
    """A pickled TFDataset again (see ``TFDataset.__reduce__``)."""
    return data.tf()


class TFDataset(Dataset):
    """A Dataset over a ``tf.data.Dataset`` whose elements follow dryml's conventions.

    ``TFDataset(tf_ds, supervised=True)`` for ``(x, y)`` elements; say ``batch_size=`` when
    ``tf_ds`` is already batched. ``tf_data`` is the wrapped ``tf.data.Dataset`` (for
    ``model.fit``).
    """

    def __init__(self, tf_ds: tf.data.Dataset, supervised: bool = False, indexed: bool = False,
                 batch_size: int | None = None) -> None:
        if not isinstance(tf_ds, tf.data.Dataset):
            raise DatasetError(f"TFDataset needs a tf.data.Dataset, got {type(tf_ds).__name__}; "
                               "use NumpyDataset(...).tf() for arrays.")
        if batch_size is not None:
            batch_size = check_count(batch_size, "batch_size", minimum=1)
        _check_batching(tf_ds, batch_size)
        n = _cardinality(tf_ds)
        meta = Meta(indexed, supervised, batch_size, False, n, n if batch_size is None else None)
        self._init(tf_ds, meta)
        if supervised:
            self._check_pair(tf_ds.element_spec, "supervised=True")

    def _init(self, tf_ds: tf.data.Dataset, meta: Meta) -> None:
        self.tf_data = tf_ds
        n = _cardinality(tf_ds)
        self._meta = meta if n is None else attrs.evolve(meta, length=n)

    def _wrap(self, tf_ds: tf.data.Dataset, meta: Meta) -> TFDataset:
        out = TFDataset.__new__(TFDataset)
        out._init(tf_ds, meta)
        return out

    def _check_pair(self, spec: Any, what: str) -> None:
        body = spec[1] if self.indexed and isinstance(spec, tuple) else spec
        if not isinstance(body, tuple) or len(body) != 2:
            raise DatasetError(f"{what} needs (x, y) elements, but the tf.data elements are "
                               f"{body}.")

    def _derive(self, factory: Callable[[], Iterator[Any]], meta: Meta) -> Dataset:
        return NumpyDataset._generic(factory, meta).tf()

    def __iter__(self) -> Iterator[Any]:
        return iter(self.tf_data)

    _to_numpy_leaf = staticmethod(to_numpy_leaf)

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as its elements read into numpy (:meth:`in_memory`) and rebuilt with
        ``from_tensor_slices``: a ``tf.data`` pipeline itself cannot be pickled, and this lets a
        TFDataset be an argument of a ``compute_context`` call."""
        return (_from_memory, (self.in_memory(),))

    # ---- delegated to tf.data ------------------------------------------------------------

    def batch(self, batch_size: int, drop_remainder: bool = False) -> Dataset:
        """Group examples into batches (``tf.data`` batch; the remainder is kept by default)."""
        n = check_count(batch_size, "batch(batch_size)", minimum=1)
        src = self.unbatch()
        assert isinstance(src, TFDataset)
        return self._wrap(src.tf_data.batch(n, drop_remainder=drop_remainder),
                          src._meta.batched(n, drop_remainder))

    def unbatch(self) -> Dataset:
        """The examples of a batched dataset (``tf.data`` unbatch)."""
        if not self.batched:
            return self
        return self._wrap(self.tf_data.unbatch(), self._meta.unbatched())

    def _map_top(self, fn: Callable[[Any], Any], meta: Meta | None = None) -> Dataset:
        mapped = self.tf_data.map(_one_arg(fn, self.tf_data.element_spec),
                                  num_parallel_calls=AUTOTUNE, deterministic=True)
        return self._wrap(mapped, meta or self._meta)

    def map(self, fn: Callable[[Any], Any]) -> Dataset:
        """Apply ``fn`` (traced by tf.data, run in parallel) to every example."""
        check_callable(fn, "map()")
        if self.batched:
            m = self._meta
            return self.unbatch().map(fn).batch(m.batch_size or 1, m.drop_remainder)
        return self._map_top(fn)

    def take(self, n: int) -> Dataset:
        """The first ``n`` top-level elements."""
        n = check_count(n, "take(n)", minimum=0)
        return self._wrap(self.tf_data.take(n), self._meta.taken(n))

    def skip(self, n: int) -> Dataset:
        """Everything after the first ``n`` top-level elements."""
        n = check_count(n, "skip(n)", minimum=0)
        warn_if_reshuffled(self._meta)
        return self._wrap(self.tf_data.skip(n), self._meta.skipped(n))

    def shuffle(self, buffer_size: int | None = None, seed: int | None = None) -> Dataset:
        """Shuffle the examples with ``tf.data`` (a seed fixes the order of every iteration;
        ``buffer_size=None`` shuffles everything and needs a known size)."""
        seed = None if seed is None else check_count(seed, "shuffle(seed)", minimum=0)
        src = self.unbatch()
        assert isinstance(src, TFDataset)
        if buffer_size is None:
            known = src._meta.length
            if known is None and self._meta.length is not None and self._meta.batch_size:
                # batches of a known count: at most count x size examples (a full shuffle)
                known = self._meta.length * self._meta.batch_size
            if known is None:
                raise DatasetError("shuffle() of a TFDataset of unknown size needs a buffer_size.")
            buffer_size = max(known, 1)
        buf = check_count(buffer_size, "shuffle(buffer_size)", minimum=1)
        shuffled = src.tf_data.shuffle(buf, seed=seed, reshuffle_each_iteration=seed is None)
        out = self._wrap(shuffled, attrs.evolve(src._meta, reshuffled=src._meta.reshuffled
                                                or seed is None))
        m = self._meta
        return out.batch(m.batch_size, m.drop_remainder) if m.batch_size else out

    def as_indexed(self, start: int = 0) -> Dataset:
        """Elements become ``(i, element)`` (``tf.data`` enumerate over the examples)."""
        start = check_count(start, "as_indexed(start)", minimum=0)
        if self.indexed:
            return self
        src = self.unbatch()
        assert isinstance(src, TFDataset)
        out = self._wrap(src.tf_data.enumerate(start), attrs.evolve(src._meta, indexed=True))
        m = self._meta
        return out.batch(m.batch_size, m.drop_remainder) if m.batch_size else out

    def as_supervised(self) -> Dataset:
        """Treat ``(a, b)`` elements as supervised ``(x, y)``."""
        if self.supervised:
            return self
        self._check_pair(self.tf_data.element_spec, "as_supervised()")
        return self._wrap(self.tf_data, self._with(supervised=True))

    def prefetch(self, buffer_size: int = AUTOTUNE) -> TFDataset:
        """Prepare the next elements while the current ones are used (``tf.data`` prefetch)."""
        return self._wrap(self.tf_data.prefetch(buffer_size), self._meta)

    def tf(self) -> TFDataset:
        """This dataset itself."""
        return self
