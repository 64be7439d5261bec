"""numpy arrays and scalars as Object arguments and stored values (never pickled)."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

import numpy as np

from dryml.errors import FormatError

if TYPE_CHECKING:
    from dryml.format import MemberReader, MemberWriter

__all__ = ["ARRAY", "SCALAR"]

INLINE_BYTES = 4096


def _dtype(descr: Any) -> np.dtype[Any]:
    if not isinstance(descr, str):
        raise FormatError(f"a numpy dtype must be a str, got {type(descr).__name__}")
    try:
        dtype = np.dtype(descr)
    except TypeError as exc:
        raise FormatError(f"unknown numpy dtype {descr!r}") from exc
    if dtype.hasobject:
        raise FormatError("numpy object dtypes need pickle; refused")
    return dtype


class ArrayCodec:
    """ndarray: inline base64 when small or outside a file, else a ``.npy`` member."""

    def check(self, value: np.ndarray) -> None:
        if value.dtype.hasobject:
            raise ValueError("numpy arrays of Python objects (dtype=object) need pickle; "
                             "convert to a numeric or string dtype")

    def encode(self, value: np.ndarray, writer: MemberWriter | None) -> Any:
        if writer is not None and value.nbytes > INLINE_BYTES:
            return {"member": writer.add_array(value)}
        data = value if value.flags.c_contiguous else value.copy(order="C")
        return {"dtype": data.dtype.str, "shape": list(data.shape),
                "b64": base64.b64encode(data.tobytes()).decode("ascii")}

    def decode(self, data: Any, reader: MemberReader | None) -> np.ndarray:
        if not isinstance(data, dict):
            raise FormatError("a numpy array entry must be an object")
        if "member" in data:
            if reader is None:
                raise FormatError("an array member reference outside a .dry file")
            return reader.get_array(data["member"])  # type: ignore[no-any-return]
        dtype = _dtype(data.get("dtype"))
        shape = data.get("shape")
        if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
            raise FormatError(f"bad numpy array shape {shape!r}")
        raw = base64.b64decode(str(data.get("b64", "")), validate=True)
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if count * dtype.itemsize != len(raw):
            raise FormatError(f"array data holds {len(raw)} bytes; shape {shape} needs "
                              f"{count * dtype.itemsize}")
        return np.frombuffer(raw, dtype=dtype).reshape(tuple(shape)).copy()

    def copy(self, value: np.ndarray) -> np.ndarray:
        return value.copy()

    def equal(self, a: np.ndarray, b: np.ndarray) -> bool:
        return a.dtype == b.dtype and a.shape == b.shape and bool(
            np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))


class ScalarCodec:
    """numpy scalars (np.float32(1.5), np.int64(3), np.bool_(True)...) keep their dtype."""

    def check(self, value: np.generic) -> None:
        if value.dtype.hasobject:
            raise ValueError("numpy object scalars need pickle")

    def encode(self, value: np.generic, writer: MemberWriter | None) -> Any:
        return {"dtype": value.dtype.str, "b64": base64.b64encode(value.tobytes()).decode()}

    def decode(self, data: Any, reader: MemberReader | None) -> np.generic:
        if not isinstance(data, dict):
            raise FormatError("a numpy scalar entry must be an object")
        dtype = _dtype(data.get("dtype"))
        raw = base64.b64decode(str(data.get("b64", "")), validate=True)
        if len(raw) != dtype.itemsize:
            raise FormatError(f"numpy scalar of {dtype} needs {dtype.itemsize} bytes")
        return np.frombuffer(raw, dtype=dtype)[0]  # type: ignore[no-any-return]

    def copy(self, value: np.generic) -> np.generic:
        return value

    def equal(self, a: np.generic, b: np.generic) -> bool:
        return a.dtype == b.dtype and a.tobytes() == b.tobytes()


ARRAY = ArrayCodec()
SCALAR = ScalarCodec()
