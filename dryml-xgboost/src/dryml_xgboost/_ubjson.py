"""A strict, bounded decoder for the UBJSON dialect XGBoost writes (``save_raw("ubj")``).

XGBoost's own reader trusts every length and count in the bytes it is given; this decoder
reads the same grammar and refuses anything else, so a model member reaches XGBoost only
after every byte of it was accounted for:

- objects ``{`` (keys: ``L`` + big-endian int64 length + bytes) ... ``}``;
- arrays ``[#L n`` (n values), ``[$T#L n`` (n big-endian numbers of type ``T`` in ``d i U I
  l L``) or ``[`` ... ``]``;
- scalars ``S`` (string), ``d`` (float32), ``i U I l L`` (integers), ``T F Z``.

Lengths and counts must fit in the bytes that follow (a count can never make the decoder,
or XGBoost after it, allocate more than the member holds), nesting is at most
``MAX_DEPTH`` deep, keys are unique, strings are UTF-8, and the document ends exactly at
the end of the member. Typed arrays come back as read-only numpy views of the member's bytes.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from dryml.errors import FormatError

__all__ = ["MAX_DEPTH", "decode"]

MAX_DEPTH = 32
_TYPED = {ord("d"): np.dtype(">f4"), ord("i"): np.dtype("i1"), ord("U"): np.dtype("u1"),
          ord("I"): np.dtype(">i2"), ord("l"): np.dtype(">i4"), ord("L"): np.dtype(">i8")}
_CONSTANTS = {ord("T"): True, ord("F"): False, ord("Z"): None}
_SCALAR = {ord("i"): struct.Struct(">b"), ord("U"): struct.Struct(">B"),
           ord("I"): struct.Struct(">h"), ord("l"): struct.Struct(">i"),
           ord("L"): struct.Struct(">q"), ord("d"): struct.Struct(">f")}
_I64 = struct.Struct(">q")


class _Decoder:
    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self.view = memoryview(data).toreadonly()
        self.data = bytes(self.view) if not isinstance(data, bytes) else data
        self.pos = 0
        self.end = len(self.data)
        self.strings: dict[bytes, str] = {}
        # typed arrays are views of this (a slice and a view cost less than np.frombuffer)
        self.bytes_array = np.frombuffer(self.view, dtype=np.uint8)

    def fail(self, what: str) -> FormatError:
        return FormatError(f"the XGBoost model is not valid UBJSON: {what} at byte {self.pos}")

    def length(self, size: int, what: str) -> int:
        """An ``L`` int64 count of ``size``-byte items that must fit in what is left."""
        pos, data = self.pos, self.data
        if pos + 9 > self.end or data[pos] != 76:  # "L"
            raise self.fail("expected an 'L' length")
        n = _I64.unpack_from(data, pos + 1)[0]
        self.pos = pos = pos + 9
        if n < 0 or n * size > self.end - pos:
            raise self.fail(f"{what} of {n} does not fit in the remaining {self.end - pos} "
                            "bytes")
        return int(n)

    def string(self) -> str:
        n = self.length(1, "string length")
        pos = self.pos
        raw = self.data[pos:pos + n]
        self.pos = pos + n
        text = self.strings.get(raw)
        if text is None:
            try:
                text = self.strings[raw] = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise self.fail("a string is not UTF-8") from None
        return text

    def value(self, depth: int) -> Any:
        pos = self.pos
        if pos >= self.end:
            raise self.fail("unexpected end")
        marker = self.data[pos]
        self.pos = pos + 1
        if marker == 91 or marker == 123:  # "[" or "{"
            if depth >= MAX_DEPTH:
                raise self.fail(f"nesting deeper than {MAX_DEPTH}")
            return self.array(depth + 1) if marker == 91 else self.object(depth + 1)
        scalar = _SCALAR.get(marker)
        if scalar is not None:
            if pos + 1 + scalar.size > self.end:
                raise self.fail("unexpected end")
            self.pos = pos + 1 + scalar.size
            return scalar.unpack_from(self.data, pos + 1)[0]
        if marker == 83:  # "S"
            return self.string()
        if marker in _CONSTANTS:
            return _CONSTANTS[marker]
        self.pos = pos
        raise self.fail(f"unsupported marker {chr(marker)!r}")

    def object(self, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        data, end, strings, value = self.data, self.end, self.strings, self.value
        while True:
            pos = self.pos
            if pos >= end:
                raise self.fail("unterminated object")
            if data[pos] == 125:  # "}"
                self.pos = pos + 1
                return out
            # a key: "L", big-endian int64 length, UTF-8 bytes (inlined: the hot path)
            if pos + 9 > end or data[pos] != 76:
                raise self.fail("expected an 'L' key length")
            n = _I64.unpack_from(data, pos + 1)[0]
            pos += 9
            if n < 0 or n > end - pos:
                raise self.fail(f"key length {n} does not fit in the remaining {end - pos} "
                                "bytes")
            raw = data[pos:pos + n]
            self.pos = pos + n
            key = strings.get(raw)
            if key is None:
                try:
                    key = strings[raw] = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise self.fail("a key is not UTF-8") from None
            if key in out:
                raise self.fail(f"duplicate key {key!r}")
            out[key] = value(depth)

    def array(self, depth: int) -> Any:
        pos, data, end = self.pos, self.data, self.end
        if pos >= end:
            raise self.fail("unterminated array")
        head = data[pos]
        if head == 36:  # "$": a typed array "$", type, "#L", int64 count, big-endian items
            if pos + 12 > end or data[pos + 2] != 35 or data[pos + 3] != 76:
                raise self.fail("expected '$' type '#L' count")
            dtype = _TYPED.get(data[pos + 1])
            if dtype is None:
                raise self.fail(f"unsupported typed-array type {chr(data[pos + 1])!r}")
            n = _I64.unpack_from(data, pos + 4)[0]
            pos += 12
            if n < 0 or n * dtype.itemsize > end - pos:
                raise self.fail(f"typed array count {n} does not fit in the remaining "
                                f"{end - pos} bytes")
            self.pos = pos + n * dtype.itemsize
            return self.bytes_array[pos:self.pos].view(dtype)
        if head == 35:  # "#": a counted array
            self.pos = pos + 1
            n = self.length(1, "array count")
            return [self.value(depth) for _ in range(n)]
        items: list[Any] = []
        while True:
            if self.pos >= end:
                raise self.fail("unterminated array")
            if data[self.pos] == 93:  # "]"
                self.pos += 1
                return items
            items.append(self.value(depth))


def decode(data: bytes | bytearray | memoryview) -> Any:
    """The document in ``data``; FormatError unless it is exactly one well-formed value."""
    decoder = _Decoder(data)
    result = decoder.value(0)
    if decoder.pos != decoder.end:
        raise decoder.fail("trailing bytes after the document")
    return result
