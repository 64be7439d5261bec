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

Speed (issue 16): read value by value, a 500-tree model takes longer than XGBoost's whole
``load_model``. The checks read the ``trees`` array by columns instead (:class:`Records`):
tree 0 is read value by value and gives the layout, every other tree is found where that
layout's first bytes occur, and all trees are then read at once with numpy (every constant
byte compared, every count bounded, the trees tiling the array exactly), so what is
accepted is exactly what the value-by-value reader returns; anything else falls back to it.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from dryml.errors import FormatError

__all__ = ["MAX_DEPTH", "Records", "decode"]

MAX_DEPTH = 32
_TYPED = {ord("d"): np.dtype(">f4"), ord("i"): np.dtype("i1"), ord("U"): np.dtype("u1"),
          ord("I"): np.dtype(">i2"), ord("l"): np.dtype(">i4"), ord("L"): np.dtype(">i8")}
_CONSTANTS = {ord("T"): True, ord("F"): False, ord("Z"): None}
_SCALAR = {ord("i"): struct.Struct(">b"), ord("U"): struct.Struct(">B"),
           ord("I"): struct.Struct(">h"), ord("l"): struct.Struct(">i"),
           ord("L"): struct.Struct(">q"), ord("d"): struct.Struct(">f")}
_I64 = struct.Struct(">q")
_MIN_FAST = 16  # shorter arrays are read value by value
_MAX_RUN = 1 << 16  # longer arrays of scalars too (the doubling needs ~30 bytes per byte)
#: bytes after the marker of each integer scalar
_WIDTHS = {ord("i"): 1, ord("U"): 1, ord("I"): 2, ord("l"): 4, ord("L"): 8}
_WIDTH_OF = np.zeros(256, dtype=np.int64)
for _marker, _width in _WIDTHS.items():
    _WIDTH_OF[_marker] = _width + 1
_INT_DTYPES = {ord("i"): np.dtype("i1"), ord("U"): np.dtype("u1"), ord("I"): np.dtype(">i2"),
               ord("l"): np.dtype(">i4"), ord("L"): np.dtype(">i8")}
_CODE_OF = {dtype: bytes([code]) for code, dtype in _TYPED.items()}
_MAX_DIGITS = 10  # decimal strings read by columns (longer ones: the value-by-value path)


class _Decoder:
    def __init__(self, data: bytes | bytearray | memoryview,
                 records: frozenset[str] = frozenset(),
                 int_arrays: frozenset[str] = frozenset()) -> None:
        self.view = memoryview(data).toreadonly()
        self.data = bytes(self.view) if not isinstance(data, bytes) else data
        self.pos = 0
        self.end = len(self.data)
        self.strings: dict[bytes, str] = {}
        # typed arrays are views of this (a slice and a view cost less than np.frombuffer)
        self.bytes_array = np.frombuffer(self.view, dtype=np.uint8)
        self.records = records
        self.int_arrays = int_arrays

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
            if key in self.records:
                out[key] = self.record_array(depth)
                continue
            if key in self.int_arrays:
                out[key] = self.int_array(depth)
                continue
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


    def int_array(self, depth: int) -> Any:
        """A counted array of integer scalars as int64 (vectorised), else as written."""
        start, data = self.pos, self.data
        if start + 11 <= self.end and data[start] == 91 and data[start + 1] == 35:
            self.pos = start + 2
            n = self.length(1, "array count")
            if _MIN_FAST <= n <= _MAX_RUN and self.pos < self.end and data[self.pos] in _WIDTHS:
                ints = _int_run(self.bytes_array, self.pos, n)
                if ints is not None:
                    self.pos = ints[1]
                    return ints[0]
            self.pos = start
        return self.value(depth)

    def record_array(self, depth: int) -> Any:
        """The value of a ``records`` key: an array of same-layout objects comes back as
        :class:`Records` when :func:`_records` can read it by columns, else as a list."""
        start, data = self.pos, self.data
        if (depth + 1 < MAX_DEPTH and start + 11 <= self.end and data[start] == 91
                and data[start + 1] == 35 and data[start + 2] == 76):
            self.pos = start + 2
            n = self.length(1, "array count")
            if n >= 2 and self.pos < self.end and data[self.pos] == 123:
                body = self.pos
                self.pos += 1
                first = self.object(depth + 2)
                found = _records(data, self.bytes_array, body, n, first)
                if found is not None:
                    self.pos = found.end
                    return found
            self.pos = start
        return self.value(depth)


def decode(data: bytes | bytearray | memoryview, records: frozenset[str] = frozenset(),
           int_arrays: frozenset[str] = frozenset()) -> Any:
    """The document in ``data``; FormatError unless it is exactly one well-formed value.

    Arrays of objects under a key in ``records`` may come back as :class:`Records` (read by
    columns, vectorised), and long arrays of integer scalars under a key in ``int_arrays`` as
    int64 arrays; otherwise every array is a list or a typed-array view, as written.
    """
    decoder = _Decoder(data, records, int_arrays)
    result = decoder.value(0)
    if decoder.pos != decoder.end:
        raise decoder.fail("trailing bytes after the document")
    return result


def _view(buf: np.ndarray, dtype: np.dtype[Any]) -> np.ndarray:
    """``buf`` seen as one ``dtype`` value starting at every byte (unaligned, no copy)."""
    size = dtype.itemsize
    if buf.size < size:
        return np.zeros(0, dtype=dtype)
    return np.ndarray((buf.size - size + 1,), dtype=dtype, buffer=buf, strides=(1,))


def _read(buf: np.ndarray, pos: np.ndarray, dtype: np.dtype[Any]) -> np.ndarray:
    """The ``dtype`` value at each byte position as int64 (callers checked the bounds)."""
    return _view(buf, dtype)[pos].astype(np.int64)


def _int_run(buf: np.ndarray, start: int, n: int) -> tuple[np.ndarray, int] | None:
    """``n`` integer scalars from ``start`` as int64 (and the end), or None where anything
    else is there. Each element's position comes from pointer doubling over the bytes."""
    span = min(buf.size - start, 9 * n)
    seg = buf[start:start + span]
    width = _WIDTH_OF[seg]
    jump = np.where(width > 0, np.arange(span) + width, span)
    jump = np.append(np.minimum(jump, span), span)  # ``span``: past the end / not a scalar
    known = np.zeros(1, dtype=np.int64)
    while known.size < n:
        known = np.concatenate([known, jump[known]])
        jump = jump[jump]
    known = known[:n]
    last = int(known[-1])
    if last >= span or not width[last] or last + int(width[last]) > span:
        return None
    markers = seg[known]
    values = np.empty(n, dtype=np.int64)
    for code, dtype in _INT_DTYPES.items():
        hit = markers == code
        if hit.any():
            values[hit] = _read(seg, known[hit] + 1, dtype)
    return values, start + last + int(width[last])


class Records:
    """An array of objects that all have the first one's layout, read by columns.

    ``first`` is element 0 as decoded value by value; for every other field the columns
    hold, per element, a typed array's payload position and count (``typed``), an integer
    (``ints``) or a decimal string's value (``decimals``). Keys are tuples (``("id",)``,
    ``("tree_param", "num_nodes")``).
    """

    def __init__(self, data: bytes, buf: np.ndarray, first: dict[str, Any], count: int,
                 end: int) -> None:
        self.data = data
        self.buf = buf
        self.first = first
        self.count = count
        self.end = end
        self.typed: dict[tuple[str, ...], tuple[np.dtype[Any], np.ndarray, np.ndarray]] = {}
        self.ints: dict[tuple[str, ...], np.ndarray] = {}
        self.decimals: dict[tuple[str, ...], np.ndarray] = {}

    def __len__(self) -> int:
        return self.count

    def column(self, key: tuple[str, ...]) -> np.ndarray:
        """Every element's typed array ``key`` end to end (int64 for integers)."""
        dtype, pos, counts = self.typed[key]
        data, size = self.data, dtype.itemsize
        joined = b"".join([data[p:p + c] for p, c in zip(pos.tolist(), (counts * size).tolist(),
                                                         strict=True)])
        values = np.frombuffer(joined, dtype=dtype)
        return values.astype(np.int64) if dtype.kind in "iu" else values

    def element(self, i: int) -> dict[str, Any]:
        """Element ``i`` as the value-by-value decoder returns it."""
        if i == 0:
            return self.first

        def build(node: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for key, value in node.items():
                at = (*path, key)
                if isinstance(value, dict):
                    out[key] = build(value, at)
                elif at in self.typed:
                    dtype, pos, counts = self.typed[at]
                    start = int(pos[i])
                    out[key] = self.buf[start:start + int(counts[i]) * dtype.itemsize
                                        ].view(dtype)
                elif at in self.ints:
                    out[key] = int(self.ints[at][i])
                else:
                    out[key] = str(int(self.decimals[at][i]))
            return out

        return build(self.first, ())


def _template(node: dict[str, Any], path: tuple[str, ...], out: list[Any]) -> bool:
    """The byte layout of ``node``: constants and the variable fields between them."""
    out.append(b"{")
    for key, value in node.items():
        raw = key.encode()
        out.append(b"L" + _I64.pack(len(raw)) + raw)
        at = (*path, key)
        if isinstance(value, np.ndarray) and value.dtype in _CODE_OF:
            out.append(b"[$" + _CODE_OF[value.dtype] + b"#L")
            out.append(("typed", at, value.dtype))
        elif type(value) is int:
            out.append(("int", at))
        elif type(value) is str and value.isdecimal() and value.isascii():
            out.append(b"SL")
            out.append(("decimal", at))
        elif type(value) is dict:
            if not _template(value, at, out):
                return False
        else:
            return False
    out.append(b"}")
    return True


def _merged(parts: list[Any]) -> list[Any]:
    out: list[Any] = []
    for part in parts:
        if isinstance(part, bytes) and out and isinstance(out[-1], bytes):
            out[-1] += part
        else:
            out.append(part)
    return out


def _starts(data: bytes, body: int, n: int, head: bytes) -> np.ndarray | None:
    """Where each of ``n`` elements would begin: the first ``n`` places ``head`` occurs
    (checked later: element ``k`` must end exactly where element ``k + 1`` begins)."""
    starts = np.empty(n, dtype=np.int64)
    find, at = data.find, body
    for k in range(n):
        at = find(head, at)
        if at < 0:
            return None
        starts[k] = at
        at += 1
    return starts if starts[0] == body else None


def _records(data: bytes, buf: np.ndarray, body: int, n: int, first: dict[str, Any]
             ) -> Records | None:
    """The ``n`` objects from ``body`` read by columns, or None where any of them departs
    from ``first``'s layout (the caller then reads them value by value).

    Every byte outside the typed arrays' payloads is compared with the layout, every
    count and length is bounded by the bytes left, and the elements tile the array
    exactly, so what is accepted is what the value-by-value decoder would return.
    """
    parts: list[Any] = []
    if not _template(first, (), parts):
        return None
    parts = _merged(parts)
    if not isinstance(parts[0], bytes) or len(parts[0]) < 8:
        return None
    starts = _starts(data, body, n, parts[0])
    if starts is None:
        return None
    end = buf.size
    out = Records(data, buf, first, n, 0)
    pos = starts
    constants: list[np.ndarray] = []  # where each constant begins, per element
    i64 = np.dtype(">i8")
    for part in parts:
        if isinstance(part, bytes):
            if int(pos.max()) + len(part) > end:
                return None
            constants.append(pos)
            pos = pos + len(part)
            continue
        kind, at = part[0], part[1]
        if kind == "int":
            if int(pos.max()) >= end:
                return None
            width = _WIDTH_OF[buf[pos]]
            if not width.all() or int((pos + width).max()) > end:
                return None
            markers, values = buf[pos], np.empty(n, dtype=np.int64)
            for code, dtype in _INT_DTYPES.items():
                hit = markers == code
                if hit.any():
                    values[hit] = _read(buf, pos[hit] + 1, dtype)
            out.ints[at] = values
            pos = pos + width
            continue
        if int(pos.max()) + 8 > end:
            return None
        count = _read(buf, pos, i64)
        pos = pos + 8
        if kind == "typed":
            size = part[2].itemsize
            if (count < 0).any() or ((end - pos) // size < count).any():
                return None
            out.typed[at] = (part[2], pos, count)
            pos = pos + count * size
        else:  # a decimal string
            if (count < 1).any() or (count > _MAX_DIGITS).any() or int(
                    (pos + count).max()) > end:
                return None
            # digit by digit, as many rounds as the longest string (tree counts: 1 to 4)
            value = np.zeros(n, dtype=np.int64)
            for d in range(int(count.max())):
                live = count > d
                digit = buf[np.minimum(pos + d, end - 1)].astype(np.int64) - 48
                if (live & (digit.view(np.uint64) > 9)).any():  # not 0-9 (below wraps)
                    return None
                value = np.where(live, value * 10 + digit, value)
            out.decimals[at] = value
            pos = pos + count
    if not np.array_equal(pos[:-1], starts[1:]):
        return None
    # every constant of every element (one unaligned fixed-size view per constant)
    for where, const in zip(constants, (p for p in parts if isinstance(p, bytes)), strict=True):
        # the constant's bytes of every element gathered end to end, compared as bytes
        # (a third of the time of comparing np.void values; never more bytes than the file)
        if _view(buf, np.dtype(f"V{len(const)}"))[where].tobytes() != const * n:
            return None
    out.end = int(pos[-1])
    return out
