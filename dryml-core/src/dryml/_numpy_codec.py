"""numpy arrays and scalars as Object arguments and stored values (never pickled)."""

from __future__ import annotations

import base64
import math
import sys
from typing import TYPE_CHECKING, Any

import numpy as np

from dryml.errors import FormatError
from dryml.format._container import MAX_EMPTY_ITEMS, zero_padding

if TYPE_CHECKING:
    from dryml.format import MemberReader, MemberWriter

__all__ = ["ARRAY", "SCALAR"]

INLINE_BYTES = 4096


def _as_tuples(descr: Any, depth: int = 0) -> Any:
    """A structured dtype's descr read from JSON (lists) as numpy wants it (tuples). A field's
    name is a str, or a ``[title, name]`` pair (a titled field)."""
    if depth > 16:
        raise FormatError("a numpy dtype is nested too deeply")
    if isinstance(descr, str):
        return descr
    if not isinstance(descr, list) or len(descr) > 10_000:
        raise FormatError(f"bad numpy dtype description {descr!r:.80}")
    fields = []
    for field in descr:
        if not (isinstance(field, list) and len(field) in (2, 3) and _field_name(field[0])):
            raise FormatError(f"bad numpy dtype field {field!r:.80}")
        shape = () if len(field) == 2 else field[2]
        if not (isinstance(shape, list | tuple) and all(type(d) is int and 0 <= d < 2**31
                                                         for d in shape)):
            raise FormatError(f"bad numpy dtype field shape {shape!r:.80}")
        name = field[0] if isinstance(field[0], str) else tuple(field[0])
        fields.append((name, _as_tuples(field[1], depth + 1), tuple(shape)))
    return fields


def _field_name(name: Any) -> bool:
    return isinstance(name, str) or (isinstance(name, list) and len(name) == 2
                                     and all(isinstance(part, str) for part in name))


def _as_lists(descr: Any) -> Any:
    """numpy's descr (tuples) as plain JSON (lists): a definition's ``to_dict()`` is then
    the JSON a Repo stores and compares (tuples there made ``from_dict`` refuse it and Repo
    queries miss the object)."""
    if isinstance(descr, (list, tuple)):
        return [_as_lists(part) for part in descr]
    return descr


def _descr(dtype: np.dtype[Any]) -> Any:
    """JSON form of a dtype: its ``str``, or for records the full description (field names and
    titles, offsets and padding), which ``dtype.str`` (``|V24``) would lose."""
    if dtype.fields is None and dtype.subdtype is None:
        return dtype.str
    return _as_lists(np.lib.format.dtype_to_descr(dtype))


def _dtype(descr: Any) -> np.dtype[Any]:
    if isinstance(descr, list):
        try:
            dtype = np.lib.format.descr_to_dtype(_as_tuples(descr))
        except FormatError:
            raise
        except Exception as exc:  # noqa: BLE001 - numpy raises several kinds here
            raise FormatError(f"bad numpy dtype description ({exc})") from None
    elif not isinstance(descr, str):
        raise FormatError(f"a numpy dtype must be a str, got {type(descr).__name__}")
    else:
        try:
            dtype = np.dtype(descr)
        except TypeError as exc:
            raise FormatError(f"unknown numpy dtype {descr!r}") from exc
    if dtype.hasobject:
        raise FormatError("numpy object dtypes need pickle; refused")
    return dtype


def _check_plain(value: np.ndarray) -> None:
    """Refuse an ndarray subclass that would come back as a plain ndarray without what it adds
    (a masked array's mask: its masked entries would come back as the fill value; a matrix's
    products; a recarray's field attributes). ``np.memmap`` (what ``mmap=True`` loads) is an
    ndarray over a file and is saved as one; a numpy scalar (which a backend's codec may
    hand over, as ``tensor.numpy()`` of a 0-d tensor) is saved as a 0-d array, as before."""
    if type(value) is not np.ndarray and not isinstance(value, (np.memmap, np.generic)):
        kind = f"{type(value).__module__}.{type(value).__qualname__}"
        raise ValueError(
            f"a {kind} (a numpy array subclass) would load back as a plain ndarray, losing "
            "what the subclass adds (a mask, matrix products, record attributes); store "
            "np.asarray(value) if that is what you mean, or its parts (a masked array's "
            "value.data and value.mask)")


class ArrayCodec:
    """ndarray: inline base64 when small or outside a file, else a ``.npy`` member."""

    def check(self, value: np.ndarray) -> None:
        _check_plain(value)
        if value.dtype.hasobject:
            raise ValueError("numpy arrays of Python objects (dtype=object) need pickle; "
                             "convert to a numeric or string dtype")
        if value.dtype.itemsize == 0 and value.size > MAX_EMPTY_ITEMS:
            raise ValueError(f"an array of more than {MAX_EMPTY_ITEMS} zero-size elements "
                             "(readers refuse them: a file's few bytes would stand for "
                             "endless elements)")

    def encode(self, value: np.ndarray, writer: MemberWriter | None) -> Any:
        _check_plain(value)
        if writer is not None and value.nbytes > INLINE_BYTES:
            return {"member": writer.add_array(value)}
        data = value if value.flags.c_contiguous else value.copy(order="C")
        data = zero_padding(data)
        return {"dtype": _descr(data.dtype), "shape": list(data.shape),
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
        count = math.prod(shape)  # exact: a crafted shape cannot overflow it
        if count * dtype.itemsize != len(raw):
            raise FormatError(f"array data holds {len(raw)} bytes; shape {shape} needs "
                              f"{count * dtype.itemsize}")
        if dtype.itemsize == 0:  # elements of no bytes (dtype V0): numpy cannot view those
            if count > MAX_EMPTY_ITEMS:
                raise FormatError(f"an array of {count} elements of zero size, more than the "
                                  f"{MAX_EMPTY_ITEMS} a writer stores: the data was altered")
            return np.zeros(tuple(shape), dtype=dtype)
        # bytearray: a writable buffer of our own (ndarray.copy would not copy record padding)
        return np.frombuffer(bytearray(raw), dtype=dtype).reshape(tuple(shape))

    def copy(self, value: np.ndarray) -> np.ndarray:
        return value.copy(order="K")  # the layout as given (a Fortran array stays one)

    def equal(self, a: np.ndarray, b: np.ndarray) -> bool:
        # NaN equals NaN, and NaT equals NaT; the same bytes are equal whatever they hold (a
        # record holding NaN): a definition equals its own copy
        return a.dtype == b.dtype and a.shape == b.shape and bool(
            np.array_equal(a, b, equal_nan=a.dtype.kind in "fcmM")
            or a.tobytes() == b.tobytes())


class ScalarCodec:
    """numpy scalars (np.float32(1.5), np.int64(3), np.bool_(True)...) keep their dtype."""

    def check(self, value: np.generic) -> None:
        if value.dtype.hasobject:
            raise ValueError("numpy object scalars need pickle")

    def encode(self, value: np.generic, writer: MemberWriter | None) -> Any:
        # np.str_("") is <U0 but np.asarray makes it <U1: the scalar's own size is written
        raw = zero_padding(np.asarray(value)).tobytes()[:value.dtype.itemsize]
        return {"dtype": _descr(value.dtype), "b64": base64.b64encode(raw).decode()}

    def decode(self, data: Any, reader: MemberReader | None) -> np.generic:
        if not isinstance(data, dict):
            raise FormatError("a numpy scalar entry must be an object")
        dtype = _dtype(data.get("dtype"))
        raw = base64.b64decode(str(data.get("b64", "")), validate=True)
        if len(raw) != dtype.itemsize:
            raise FormatError(f"numpy scalar of {dtype} needs {dtype.itemsize} bytes")
        if dtype.itemsize == 0:  # np.str_(""), np.bytes_(b""), np.void(b""): numpy cannot
            empty: np.generic = np.zeros(1, dtype)[0]  # view no bytes
            return empty
        # built whole: an element taken out of an array loses trailing NULs (b"ab\0", dtype
        # S3, came back b"ab", S2)
        if dtype.kind == "S":
            return np.bytes_(raw)
        if dtype.kind == "U":
            big = dtype.byteorder == ">" or (dtype.byteorder == "=" and sys.byteorder == "big")
            try:
                return np.str_(raw.decode("utf-32-be" if big else "utf-32-le",
                                          "surrogatepass"))
            except UnicodeDecodeError as exc:
                raise FormatError(f"a numpy {dtype} scalar holds no text: {exc}") from None
        return np.frombuffer(raw, dtype=dtype)[0]  # type: ignore[no-any-return]

    def copy(self, value: np.generic) -> np.generic:
        return value

    def equal(self, a: np.generic, b: np.generic) -> bool:
        # as arrays compare (ArrayCodec.equal): -0.0 equals 0.0, NaN NaN and NaT NaT
        return ARRAY.equal(np.asarray(a), np.asarray(b))


ARRAY = ArrayCodec()
SCALAR = ScalarCodec()
