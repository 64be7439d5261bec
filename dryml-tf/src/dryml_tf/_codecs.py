"""TensorFlow tensors, variables and dtypes as Object arguments and stored values.

Values travel as numpy arrays (``.npy`` members, or inline base64 when small or outside a
file) plus the TensorFlow dtype name, so ``bfloat16`` and friends (numpy extension dtypes from
``ml_dtypes``, which ``.npy`` cannot name) survive: they are stored as same-width unsigned ints
and viewed back. String tensors are stored as a list of base64 items. Nothing is pickled.
"""

from __future__ import annotations

import base64
import warnings
import weakref
from typing import Any

import numpy as np
import tensorflow as tf

from dryml._numpy_codec import ARRAY
from dryml.errors import DrymlVersionWarning, FormatError

__all__ = ["DTYPE", "TENSOR", "VARIABLE", "array_from_json", "array_to_json", "check_versions",
           "record_versions"]

PACKAGE = "dryml-tf"
_checked: weakref.WeakSet[Any] = weakref.WeakSet()


def record_versions(writer: Any) -> None:
    """Record dryml-tf's, TensorFlow's and Keras' versions in the file being written."""
    import keras

    writer.record_version(PACKAGE, framework=("tensorflow", tf.__version__))
    writer.record_version(PACKAGE, framework=("keras", keras.__version__))


def check_versions(reader: Any) -> None:
    """Warn DrymlVersionWarning (once per file) for another major TensorFlow/Keras version."""
    import keras

    try:
        if reader in _checked:
            return
        _checked.add(reader)
    except TypeError:  # not weak-referenceable: check every time
        pass
    for name, installed in (("tensorflow", tf.__version__), ("keras", keras.__version__)):
        written = reader.framework_version(name)
        if written and written.split(".")[0] != installed.split(".")[0]:
            warnings.warn(
                f"the file was written with {name} {written}; {installed} is installed. If "
                f"loading fails or results differ, pip install '{name}=={written}'.",
                DrymlVersionWarning, stacklevel=5)

_UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def _tf_dtype(name: Any) -> tf.DType:
    if not isinstance(name, str):
        raise FormatError(f"a TensorFlow dtype must be named by a str, got {name!r}")
    try:
        return tf.as_dtype(name)
    except TypeError as exc:
        raise FormatError(f"unknown TensorFlow dtype {name!r}") from exc


def array_to_json(array: np.ndarray, dtype: tf.DType, writer: Any | None,
                  member: bool = False) -> dict[str, Any]:
    """JSON for ``array`` (numpy data of a TensorFlow value of ``dtype``).

    ``member=True`` always writes a ``.npy`` member (when a writer is given); otherwise the
    numpy codec's rule applies (inline when small).
    """
    if writer is not None:
        record_versions(writer)
    out: dict[str, Any] = {"dtype": dtype.name, "shape": list(array.shape)}
    if dtype == tf.string:
        out["strings"] = [base64.b64encode(bytes(s)).decode("ascii") for s in array.ravel()]
        return out
    if _extension(array.dtype):
        array = array.view(_UINT[array.dtype.itemsize])  # ml_dtypes (bfloat16, fp8...)
    if member and writer is not None:
        out["data"] = {"member": writer.add_array(array)}
    else:
        out["data"] = ARRAY.encode(array, writer)
    return out


def array_from_json(data: Any, reader: Any | None) -> tuple[np.ndarray, tf.DType]:
    """The numpy array and TensorFlow dtype :func:`array_to_json` wrote."""
    if not isinstance(data, dict):
        raise FormatError("a TensorFlow value entry must be an object")
    if reader is not None:
        check_versions(reader)
    dtype = _tf_dtype(data.get("dtype"))
    shape = data.get("shape")
    if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
        raise FormatError(f"bad TensorFlow value shape {shape!r}")
    if dtype == tf.string:
        items = data.get("strings")
        if not isinstance(items, list) or len(items) != int(np.prod(shape, dtype=np.int64)):
            raise FormatError("a string tensor's items do not match its shape")
        raw = [base64.b64decode(str(s), validate=True) for s in items]
        return np.array(raw, dtype=object).reshape(shape), dtype
    array = ARRAY.decode(data.get("data"), reader)
    if list(array.shape) != shape:
        raise FormatError(f"TensorFlow value data has shape {list(array.shape)}, "
                          f"expected {shape}")
    want = np.dtype(dtype.as_numpy_dtype)
    if array.dtype != want:
        if array.dtype.kind != "u" or array.dtype.itemsize != want.itemsize:
            raise FormatError(f"TensorFlow value data is {array.dtype}, expected {want}")
        array = array.view(want)
    return array, dtype


class TensorCodec:
    """``tf.Tensor`` (eager): dtype and shape kept; values as ``.npy`` or inline."""

    def check(self, value: Any) -> None:
        """Only eager tensors have values to record."""
        if not hasattr(value, "numpy"):
            raise ValueError("only eager tensors can be recorded (this is a symbolic tensor)")

    def encode(self, value: Any, writer: Any | None) -> Any:
        """JSON (and maybe a member) for the tensor."""
        return array_to_json(value.numpy(), value.dtype, writer)

    def decode(self, data: Any, reader: Any | None) -> tf.Tensor:
        """The tensor back, on TensorFlow's default device."""
        array, dtype = array_from_json(data, reader)
        return tf.constant(array, dtype=dtype)

    def copy(self, value: Any) -> Any:
        """Eager tensors are immutable: the same tensor."""
        return value

    def equal(self, a: Any, b: Any) -> bool:
        """Same dtype, shape and values (NaNs equal)."""
        return bool(a.dtype == b.dtype and a.shape == b.shape and _same(a.numpy(), b.numpy()))


class VariableCodec(TensorCodec):
    """``tf.Variable``: value, dtype, shape, ``trainable`` and name kept."""

    def check(self, value: Any) -> None:
        """Every variable has a value."""

    def encode(self, value: Any, writer: Any | None) -> Any:
        """JSON for the variable's current value and flags."""
        out = array_to_json(value.numpy(), value.dtype, writer)
        out["trainable"] = bool(value.trainable)
        out["name"] = value.name.split(":")[0]
        return out

    def decode(self, data: Any, reader: Any | None) -> tf.Variable:
        """A new variable with the recorded value."""
        array, dtype = array_from_json(data, reader)
        name = data.get("name")
        return tf.Variable(array, dtype=dtype, trainable=bool(data.get("trainable", True)),
                           name=name if isinstance(name, str) and name else None)

    def copy(self, value: Any) -> tf.Variable:
        """An independent variable with the same value and flags."""
        return tf.Variable(value.read_value(), trainable=value.trainable,
                           name=value.name.split(":")[0])


class DTypeCodec:
    """``tf.float32`` and other ``tf.DType`` values, by name."""

    def check(self, value: Any) -> None:
        """Every DType has a name."""

    def encode(self, value: Any, writer: Any | None) -> Any:
        """The dtype's name."""
        return value.name

    def decode(self, data: Any, reader: Any | None) -> tf.DType:
        """The DType back from its name."""
        return _tf_dtype(data)

    def copy(self, value: Any) -> Any:
        """DTypes are immutable singletons."""
        return value

    def equal(self, a: Any, b: Any) -> bool:
        """Same dtype."""
        return bool(a == b)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype.kind in "fc":
        return bool(np.array_equal(a, b, equal_nan=True))
    if _extension(a.dtype):
        return a.tobytes() == b.tobytes()
    return bool(np.array_equal(a, b))


def _extension(dtype: np.dtype[Any]) -> bool:
    """An ml_dtypes type (bfloat16, float8, int4...): numpy sees it as opaque bytes."""
    return dtype.kind == "V" or dtype.type.__module__.startswith("ml_dtypes")


TENSOR = TensorCodec()
VARIABLE = VariableCodec()
DTYPE = DTypeCodec()
