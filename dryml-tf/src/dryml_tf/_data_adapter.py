"""The ``dryml_dataset_adapters`` implementation of dryml-tf: anything to ``TFDataset``."""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from dryml.data import Dataset, NumpyDataset
from dryml.data._nest import leaves, map_structure
from dryml.errors import DatasetError
from dryml_tf.data import TFDataset

__all__ = ["ADAPTER", "TFAdapter"]

_EMPTY = object()


def _spec(leaf: Any, batched: bool) -> tf.TensorSpec:
    arr = np.asarray(leaf)
    shape = (None, *arr.shape[1:]) if batched else arr.shape
    return tf.TensorSpec(shape, tf.as_dtype(arr.dtype))


def _lossless(values: np.ndarray, want: np.dtype[Any]) -> bool:
    """Whether ``values`` survive a cast to ``want``: numpy's "safe" casts, and int64 into
    float64 (numpy calls it safe; 9007199254740993 becomes ...992) when these values do."""
    got = values.dtype
    if not np.can_cast(got, want, "safe"):
        return False
    if np.issubdtype(got, np.integer) and np.issubdtype(want, np.floating) \
            and np.iinfo(got).bits > np.finfo(want).nmant + 1:
        with np.errstate(all="ignore"):
            back = values.astype(want)
            return bool(np.all(np.abs(back) < 2.0 ** 63)
                        and np.array_equal(back.astype(got), values))
    return True


def _same_dtypes(src: Any, spec: Any) -> Any:
    """The elements of ``src``, each checked against the dtypes of the first (``spec``):
    ``from_generator`` casts a later element to them silently (labels 0, 0.5, 1.7 came out
    as 0, 0, 1). A cast that loses nothing (int32 into int64) is fine."""
    wanted = [np.dtype(s.dtype.as_numpy_dtype) for s in leaves(spec)]
    for k, element in enumerate(src):
        for leaf, want in zip(leaves(element), wanted, strict=False):
            values = np.asarray(leaf)
            got = values.dtype
            if got != want and not _lossless(values, want):
                raise DatasetError(
                    f"element {k} holds {got} where the first element held {want}: "
                    f"converting to tf would cast it to {want}, changing its values. Give "
                    "every element the same dtypes (e.g. np.float32(v) for numbers), or "
                    "read the data into memory first (ds.in_memory().tf())")
        yield element


class TFAdapter:
    """Converts any dryml Dataset to a :class:`TFDataset`.

    In-memory numpy data becomes ``tf.data.Dataset.from_tensor_slices(...).batch(...)`` (one
    copy into TensorFlow, then tf.data speed); anything else streams through
    ``from_generator`` as numpy (CPU tensors of other frameworks are read without copy).
    """

    framework = "tf"

    @property
    def dataset_class(self) -> type[TFDataset]:
        """``TFDataset``."""
        return TFDataset

    def convert(self, ds: Dataset) -> TFDataset:
        """``ds`` as a TFDataset."""
        if isinstance(ds, TFDataset):
            return ds
        m = ds._meta
        # a table without columns (NumpyDataset([])) has no dtypes: the generator path says so
        table = ds._table if isinstance(ds, NumpyDataset) else None
        arrays = ds._arrays() if table is not None and table.columns else None
        if arrays is not None:
            tf_ds = tf.data.Dataset.from_tensor_slices(arrays)
            if m.batch_size is not None:
                tf_ds = tf_ds.batch(m.batch_size, drop_remainder=m.drop_remainder)
        else:
            src = ds.numpy()
            first = next(iter(src), _EMPTY)
            if first is _EMPTY:
                raise DatasetError(
                    "cannot convert an empty dataset from a generator to tf: there is no element "
                    "to learn the dtypes and shapes from."
                )
            spec = map_structure(lambda leaf: _spec(leaf, m.batch_size is not None), first)
            tf_ds = tf.data.Dataset.from_generator(lambda: _same_dtypes(src, spec),
                                                   output_signature=spec)
            if m.length is not None:
                tf_ds = tf_ds.apply(tf.data.experimental.assert_cardinality(m.length))
        out = TFDataset.__new__(TFDataset)
        out._init(tf_ds, m)
        return out


ADAPTER = TFAdapter()
