"""The ``dryml_dataset_adapters`` implementation of dryml-tf: anything to ``TFDataset``."""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from dryml.data import Dataset, NumpyDataset
from dryml.data._nest import map_structure
from dryml.errors import DatasetError
from dryml_tf.data import TFDataset

__all__ = ["ADAPTER", "TFAdapter"]

_EMPTY = object()


def _spec(leaf: Any, batched: bool) -> tf.TensorSpec:
    arr = np.asarray(leaf)
    shape = (None, *arr.shape[1:]) if batched else arr.shape
    return tf.TensorSpec(shape, tf.as_dtype(arr.dtype))


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
        arrays = ds._arrays() if isinstance(ds, NumpyDataset) else None
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
            tf_ds = tf.data.Dataset.from_generator(lambda: iter(src), output_signature=spec)
            if m.length is not None:
                tf_ds = tf_ds.apply(tf.data.experimental.assert_cardinality(m.length))
        out = TFDataset.__new__(TFDataset)
        out._init(tf_ds, m)
        return out


ADAPTER = TFAdapter()
