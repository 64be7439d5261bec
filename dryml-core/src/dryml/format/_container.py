"""The byte layout of a ``.dry`` file: header, aligned members, manifest, trailer.

::

    0      header   64 bytes: b"DRYML\\0\\r\\n", u32 format version, zero padding
    64     members  each starts on a 64-byte boundary; raw or zstd; .npy members are whole
                    .npy files (read and written with allow_pickle=False)
    ...    manifest JSON (zstd-compressed) naming every member with offset, sizes, checksum
    end-48 trailer  u64 manifest offset, u64 stored size, u64 raw size, u64 xxh3 of the stored
                    manifest, u32 format version, u32 flags, b"DRYMLEND"

The trailer makes writing a single forward pass (so any binary stream works) and reading a
seek to the end. Checksums are xxh3-64: an integrity check at ~30 GB/s, not authentication.
"""

from __future__ import annotations

import functools
import io
import json
import math
import os
import queue
import re
import struct
import threading
from typing import IO, Any

import attrs
import numpy as np
import xxhash
import zstandard

from dryml.errors import ChecksumError, FormatError, FormatVersionError, LimitExceededError

__all__ = [
    "FORMAT_VERSION",
    "ContainerReader",
    "ContainerWriter",
    "Limits",
    "MemberInfo",
]

FORMAT_VERSION = 1
MAGIC = b"DRYML\x00\r\n"
TRAILER_MAGIC = b"DRYMLEND"
HEADER_SIZE = 64
_TRAILER = struct.Struct("<QQQQII8s")
ALIGN = 64
_MEMBER_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*(/[A-Za-z0-9_][A-Za-z0-9_.\-]*)*$")
_SAMPLE = 64 * 1024
# Level 1: a 200-tree forest's members compress to a fifth at ~0.5 GB/s; level 3 shrinks
# them ~10% more at ~60% of the speed (measured with benchmarks/bench_serializers_tf_sklearn).
_LEVEL = 1
# Only to decide whether a large member is worth compressing: a negative ("fast") level
# answers in ~4 us per sample (level 1: ~200 us), and data that it cannot shrink by 20% is
# not worth level 1's time either (trained float weights: ~0.9 at any level).
_PROBE_LEVEL = -1
# The probe's sample: 16 KiB answers as 64 KiB did for weights, trees and zeros alike, at a
# quarter of the cost (~4 us instead of ~14 us per member, a tenth of a 1 MB save's overhead).
_PROBE = 16 * 1024
# A ZstdCompressor must not be used by two threads at once (it releases the GIL while it
# works; sharing one crashed the process when threads saved concurrently): one per thread.
_local = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    found: dict[int, zstandard.ZstdCompressor] | None = getattr(_local, "compressors", None)
    if found is None:
        found = _local.compressors = {}
    if level not in found:
        found[level] = zstandard.ZstdCompressor(level=level)
    return found[level]

# Pieces smaller than this are gathered and written with the next large one (one writev).
_GATHER = 1 << 20
_WRITEV = hasattr(os, "writev")  # not on Windows: one write per piece there
_PIECES = 64  # at most this many gathered pieces (IOV_MAX is 1024)
# Members at least this large are checksummed in a thread while they are written: xxhash and
# numpy's tofile both release the GIL, so on two cores the checksum costs no wall time.
_OVERLAP = 8 << 20
# Members at least this large are compressed piece by piece straight into a real file, so
# that saving never holds a whole large member (or its compressed copy) in memory.
_STREAM = 32 << 20
_PIECE = 4 << 20
#: At most this many elements in an array whose elements take no bytes (dtype ``V0``): such
#: an array's data is empty whatever its length, so its shape is all that bounds it.
MAX_EMPTY_ITEMS = 1 << 16
# Large raw members are read in pieces of this size, each checksummed (in a second thread)
# while the next is read: small enough to still be in the CPU cache when it is hashed.
_READ_PIECE = 2 << 20


@attrs.frozen
class Limits:
    """Bounds a reader enforces, so a hostile file cannot exhaust memory (zip/zstd bombs).

    Peak memory while reading stays within a small multiple of the bytes the file really holds:
    a raw member is exactly as large as its stored bytes; a compressed member (or the manifest)
    may decompress to at most ``max_ratio`` times its stored size, or to ``ratio_floor`` bytes
    whatever its ratio, and never to more than ``max_member_bytes`` (``max_manifest_bytes``); the
    floor is an allowance of the whole file: all compressed members together may expand past
    ``max_ratio`` times their stored bytes by ``max_beyond_ratio`` bytes at most (a 97 KB file
    of 150 members of 600 bytes, each at the floor, stood for 2.4 GB; 1 GiB lets files an
    earlier writer made with many all-zero members load); the manifest may hold
    at most ``max_manifest_elements`` JSON values. Writers never produce a file these defaults
    refuse (a member that would compress beyond what is left is stored raw).
    Raise them for a legitimately larger file: ``load_object(path, limits=Limits(...))``.
    """

    max_manifest_bytes: int = 64 * 2**20
    max_member_bytes: int = 32 * 2**30
    max_members: int = 1_000_000
    max_header_bytes: int = 65536
    max_manifest_elements: int = 2_000_000
    max_ratio: int = 200
    ratio_floor: int = 16 * 2**20
    max_beyond_ratio: int = 2**30

    def allowed_raw(self, stored: int, cap: int) -> int:
        """The most bytes ``stored`` compressed bytes may decompress to."""
        return min(cap, max(self.ratio_floor, self.max_ratio * stored))

    def beyond_ratio(self, stored: int, raw: int) -> int:
        """How far ``raw`` decompressed bytes go past ``max_ratio`` times ``stored``: what a
        member takes of the file's ``max_beyond_ratio``."""
        return max(0, raw - self.max_ratio * stored)


_DEFAULT = Limits()

@attrs.frozen
class MemberInfo:
    """Where a member lies and how to check it."""

    offset: int
    size: int
    raw_size: int
    compression: str
    checksum: str
    kind: str


def check_member_name(name: Any) -> str:
    """A member name is a relative path of safe parts: no '..', no absolute path, no '\\'."""
    if (
        not isinstance(name, str)
        or len(name) > 512
        or not _MEMBER_NAME.match(name)
        or any(part in (".", "..") for part in name.split("/"))
    ):
        raise FormatError(
            f"invalid member name {name!r}: names are relative paths of letters, digits and "
            "'._-' (no '..', no absolute path)"
        )
    return name


def _write_all(fd: int, pieces: list[bytes | memoryview]) -> None:
    """Write every piece to ``fd`` in order (``os.writev``; partial writes continued)."""
    views = [memoryview(p).cast("B") for p in pieces if len(p)]
    while views:
        done = os.writev(fd, views) if _WRITEV else os.write(fd, views[0])
        if done <= 0:
            raise OSError("writing the .dry file made no progress")
        while views and done >= len(views[0]):
            done -= len(views.pop(0))
        if done:
            views[0] = views[0][done:]


def _checksum(*chunks: bytes | memoryview) -> str:
    hasher = xxhash.xxh3_64()
    for chunk in chunks:
        hasher.update(chunk)
    return _hexdigest(hasher)


def _hexdigest(hasher: Any) -> str:
    return f"xxh3_64:{hasher.hexdigest()}"


def _as_bytes(array: np.ndarray) -> np.ndarray:
    """A flat uint8 view of a C- or Fortran-contiguous array's buffer (no copy)."""
    flat = array.T if array.flags.f_contiguous and not array.flags.c_contiguous else array
    return flat.reshape(-1).view(np.uint8)


def _covered(dtype: np.dtype[Any], offset: int, mask: np.ndarray) -> None:
    """Mark the bytes of ``dtype`` at ``offset`` that hold data (not padding) in ``mask``."""
    if dtype.fields:
        for field in dtype.fields.values():
            _covered(field[0], offset + field[1], mask)
    elif dtype.subdtype is not None:
        base, shape = dtype.subdtype
        for i in range(int(np.prod(shape))):
            _covered(base, offset + i * base.itemsize, mask)
    else:
        mask[offset:offset + dtype.itemsize] = 0xFF


def _padding_mask(dtype: np.dtype[Any]) -> np.ndarray | None:
    """A byte mask (0xFF for data, 0 for padding) of a structured dtype with padding, or None
    when every byte of an element holds data."""
    if not dtype.fields and dtype.subdtype is None:
        return None
    mask = np.zeros(dtype.itemsize, dtype=np.uint8)
    _covered(dtype, 0, mask)
    return None if mask.all() else mask


def zero_padding(array: np.ndarray) -> np.ndarray:
    """``array`` itself, or a copy whose padding bytes are zero when its (structured) dtype has
    padding: never write the heap bytes that sit between a record's fields."""
    mask = _padding_mask(array.dtype)
    if mask is None:
        return array
    if not (array.flags.c_contiguous or array.flags.f_contiguous):
        array = array.copy(order="C")
    zeroed = (_as_bytes(array).reshape(-1, array.dtype.itemsize) & mask).reshape(-1)
    if array.flags.f_contiguous and not array.flags.c_contiguous:
        return zeroed.view(array.dtype).reshape(array.shape[::-1]).T  # type: ignore[no-any-return]
    return zeroed.view(array.dtype).reshape(array.shape)  # type: ignore[no-any-return]


def _pays(stored: int, raw_size: int) -> bool:
    """Compressed data is kept when it saves 10% and readers' default ratio cap accepts it."""
    return stored < 0.9 * raw_size and raw_size <= _DEFAULT.allowed_raw(
        stored, _DEFAULT.max_member_bytes)


def _worth_compressing(data: bytes | memoryview) -> bool:
    sample = memoryview(data).cast("B")[:_PROBE]  # zstd reads the buffer itself: no copy
    return len(_compressor(_PROBE_LEVEL).compress(sample)) < 0.8 * len(sample)


@functools.lru_cache(maxsize=256)
def _npy_header(dtype: np.dtype[Any], shape: tuple[int, ...], fortran: bool) -> bytes:
    """numpy's own version 2.0 ``.npy`` header (the same shapes are saved again and again:
    numpy formats it in Python each time)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_2_0(
        header, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": fortran,
                 "shape": shape})
    return header.getvalue()


class ContainerWriter:
    """Writes a ``.dry`` container to a binary stream in one forward pass.

    On a real file the writer bypasses the stream's buffer: small pieces (headers, padding,
    the manifest) are gathered and go out with the next large piece in one ``os.writev``, so a
    one-array file takes two system calls; the stream is flushed first and its position set
    after the last piece when :meth:`finish` returns."""

    def __init__(self, stream: IO[bytes], compress: bool = True) -> None:
        self.stream = stream
        self.compress = compress
        self.members: dict[str, MemberInfo] = {}
        #: what the compressed members so far take of Limits.max_beyond_ratio
        self._beyond = 0
        self._fd = -1
        try:
            fd = stream.fileno()
            self._real_file = stream.seekable()
        except (AttributeError, OSError, ValueError):
            self._real_file = False
        if self._real_file:
            stream.flush()
            self._fd = fd
        self._base = stream.tell() if self._real_file else 0
        self._pending: list[bytes] = []
        self._pending_size = 0
        self.pos = 0
        #: the xxh3-64 of the stored manifest (the trailer's), once :meth:`finish` returned
        self.digest = 0
        self._write(MAGIC + struct.pack("<I", FORMAT_VERSION) + bytes(HEADER_SIZE - 12))

    def _write(self, data: bytes | memoryview) -> None:
        self.pos += len(data)
        if self._fd < 0:
            self.stream.write(data)
            return
        if len(data) < _GATHER:
            # bytes cannot change before they are written; anything else (a view of an array
            # a serializer may reuse) is copied, which costs little at this size
            self._pending.append(data if type(data) is bytes else bytes(data))
            self._pending_size += len(data)
            if self._pending_size < _GATHER and len(self._pending) < _PIECES:
                return
            data = b""
        pieces: list[bytes | memoryview] = [*self._pending, data] if data else [*self._pending]
        self._pending, self._pending_size = [], 0
        _write_all(self._fd, pieces)

    def _flush(self) -> None:
        """Write the gathered small pieces (real files)."""
        if self._pending:
            pieces: list[bytes | memoryview] = [*self._pending]
            self._pending, self._pending_size = [], 0
            _write_all(self._fd, pieces)

    def _align(self) -> None:
        pad = -self.pos % ALIGN
        if pad:
            self._write(bytes(pad))

    def _add(self, name: str, chunks: list[bytes | memoryview], kind: str,
             compress: bool = True) -> None:
        check_member_name(name)
        if name in self.members:
            raise FormatError(f"member {name!r} written twice")
        raw_size = sum(len(c) for c in chunks)
        self._align()
        offset = self.pos
        if self.compress and compress and raw_size >= 512 and (raw_size <= _SAMPLE
                                                  or _worth_compressing(chunks[-1])):
            if raw_size >= _STREAM and self._real_file:
                if self._compress_streaming(name, chunks, raw_size, kind, offset):
                    return
            else:  # small members: one try, no sample
                payload = _compressor(_LEVEL).compress(b"".join(chunks))
                if self._keeps(len(payload), raw_size):
                    self._write(payload)
                    self.members[name] = MemberInfo(offset, len(payload), raw_size, "zstd",
                                                    _checksum(payload), kind)
                    return
        if raw_size >= _OVERLAP:
            hasher = xxhash.xxh3_64()

            def digest() -> None:
                for chunk in chunks:
                    hasher.update(chunk)

            thread = threading.Thread(target=digest)
            thread.start()
            try:
                for chunk in chunks:
                    self._write(chunk)
            finally:
                thread.join()
            checksum = _hexdigest(hasher)
        else:
            # hashed first: the write then copies bytes the hash just brought into the cache
            checksum = _checksum(*chunks)
            for chunk in chunks:
                self._write(chunk)
        self.members[name] = MemberInfo(offset, raw_size, raw_size, "none", checksum, kind)

    def _keeps(self, stored: int, raw_size: int) -> bool:
        """Whether a member compressed to ``stored`` bytes is kept so (else it is written
        raw): it pays, and readers' default limits accept it, the file's other members too."""
        beyond = _DEFAULT.beyond_ratio(stored, raw_size)
        if not _pays(stored, raw_size) or self._beyond + beyond > _DEFAULT.max_beyond_ratio:
            return False
        self._beyond += beyond
        return True

    def _compress_streaming(self, name: str, chunks: list[bytes | memoryview], raw_size: int,
                            kind: str, offset: int) -> bool:
        """Compress a large member piece by piece straight into the file (never the whole
        member in memory: its source may be a memory map larger than RAM). When it does not
        pay after all, what was written is cut off again and False returned."""
        compressor = _compressor(_LEVEL).compressobj(size=raw_size)
        hasher = xxhash.xxh3_64()
        written = 0

        def emit(out: bytes) -> None:
            nonlocal written
            if out:
                hasher.update(out)
                self._write(out)
                written += len(out)

        for chunk in chunks:
            view = memoryview(chunk).cast("B")
            for start in range(0, len(view), _PIECE):
                emit(compressor.compress(view[start:start + _PIECE]))
                if written >= 0.9 * raw_size:
                    break
            if written >= 0.9 * raw_size:
                break
        else:
            emit(compressor.flush())
            if self._keeps(written, raw_size):
                self.members[name] = MemberInfo(offset, written, raw_size, "zstd",
                                                _hexdigest(hasher), kind)
                return True
        self._flush()
        os.ftruncate(self._fd, self._base + offset)
        os.lseek(self._fd, self._base + offset, os.SEEK_SET)
        self.pos = offset
        return False

    def add_bytes(self, name: str, data: bytes | memoryview, compress: bool = True) -> None:
        """Add a member holding ``data`` (``compress=False``: never compressed); a memoryview
        is consumed before this returns."""
        if type(data) is memoryview:
            # a view is written as is only to a real file, before this returns; a stream may
            # keep what it is given (XGBoost reuses the buffer behind the view), and a view
            # that is not C-contiguous cannot be cast to bytes: both are copied
            data = (data.cast("B") if data.c_contiguous and self._fd >= 0 else bytes(data))
        self._add(name, [data], "bytes", compress)

    def add_array(self, name: str, array: np.ndarray, compress: bool = True) -> None:
        """Add a member holding ``array`` as a whole ``.npy`` file (never pickled)."""
        if array.dtype.hasobject:
            raise FormatError("arrays of Python objects would need pickle; refused")
        if array.dtype.itemsize == 0 and array.size > MAX_EMPTY_ITEMS:
            raise FormatError(f"an array of more than {MAX_EMPTY_ITEMS} zero-size elements "
                              "(readers refuse them: a file's few bytes would stand for "
                              "endless elements)")
        if not (array.flags.c_contiguous or array.flags.f_contiguous):
            array = array.copy(order="C")  # np.ascontiguousarray would make 0-d arrays 1-d
        array = zero_padding(array)
        fortran = array.flags.f_contiguous and not array.flags.c_contiguous
        data = _as_bytes(array).data
        self._add(name, [_npy_header(array.dtype, array.shape, fortran), data], "npy", compress)

    def finish(self, manifest: dict[str, Any]) -> None:
        """Write the manifest (with the member table) and the trailer."""
        manifest = {**manifest, "members": {
            k: {"offset": v.offset, "size": v.size, "raw_size": v.raw_size,
                "compression": v.compression, "checksum": v.checksum, "kind": v.kind}
            for k, v in self.members.items()}}
        try:
            raw = _JSON.encode(manifest).encode()
        except RecursionError:
            raise FormatError("the manifest is nested too deeply: flatten the metadata, or store "
                              "deep values through store.put") from None
        except ValueError as exc:
            if "ircular reference" not in str(exc):
                raise
            raise FormatError("circular reference: the metadata (or a value a serializer "
                              "returned) contains itself; save values without cycles") from None
        if len(raw) > _DEFAULT.max_manifest_bytes:
            raise LimitExceededError(
                f"the manifest would be {len(raw)} bytes, over the {_DEFAULT.max_manifest_bytes} "
                "that readers accept by default: store large values through store.put (members) "
                "rather than as constructor arguments")
        # a small manifest (one object's) at the fast level: half the time of level 1,
        # a hundred bytes more
        stored = _compressor(_LEVEL if len(raw) > _SAMPLE else _PROBE_LEVEL).compress(raw)
        _check_readable(raw, stored)
        self._align()
        offset = self.pos
        self._write(stored)
        digest = self.digest = xxhash.xxh3_64_intdigest(stored)
        self._write(_TRAILER.pack(offset, len(stored), len(raw), digest, FORMAT_VERSION, 0,
                                  TRAILER_MAGIC))
        if self._fd >= 0:
            self._flush()
            self.stream.seek(self._base + self.pos)  # the stream's own position, after ours


# check_circular stays on: a caller's metadata dict goes into the manifest as given, and a
# cycle in it must be a clean error (without the check, a high recursion limit lets the
# encoder overflow the C stack and kill the process).
_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def file_of(stream: Any) -> io.FileIO | None:
    """The file object under ``stream`` when it reads a file opened with ``open()`` (buffered
    or not), else None: a gzip, bz2 or lzma stream has a descriptor too, of its compressed
    file, and other streams have none (or, as a SpooledTemporaryFile, make one on asking)."""
    raw = stream if isinstance(stream, io.FileIO) else getattr(stream, "raw", None)
    return raw if isinstance(raw, io.FileIO) else None


def _decompress(data: bytes, raw_size: int, what: str) -> bytearray:
    """Decompress exactly ``raw_size`` bytes into one buffer (no chunk list, no join, so the
    peak is the result itself); one byte more, or fewer, is an error."""
    out = bytearray(raw_size)
    view = memoryview(out)
    got = 0
    try:
        with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)) as stream:
            while got < raw_size:
                n = stream.readinto(view[got:got + (1 << 24)])
                if not n:
                    break
                got += n
            extra = stream.read(1) if got == raw_size else b""
    except zstandard.ZstdError as exc:
        raise FormatError(f"{what}: corrupt zstd data ({exc})") from None
    if got != raw_size or extra:
        amount = f"more than {raw_size}" if extra else str(got)
        raise LimitExceededError(f"{what}: decompresses to {amount} bytes, but declares {raw_size}")
    return out


# The header numpy (and so dryml's writer) writes for a plain dtype, matched exactly; anything
# else (records, datetimes, other spacing) goes through numpy's parser, which compiles the
# header with ast.literal_eval (~0.3 ms: a quarter of loading a 1 MB array).
_NPY_HEADER = re.compile(
    rb"\{'descr': '([<>|=]?[A-Za-z][0-9]{0,4})', 'fortran_order': (True|False), "
    rb"'shape': \(((?:[0-9]{1,19}, ?){0,64}[0-9]{0,19})\), \} *\n")


def _simple_npy_header(buf: memoryview, limit: int
                       ) -> tuple[tuple[int, ...], bool, np.dtype[Any], int] | None:
    """(shape, fortran order, dtype, header length) of a ``.npy`` header in numpy's own plain
    layout (version 1 or 2), or None to let numpy's parser decide."""
    head = bytes(buf[:12])
    if len(head) < 12 or head[:6] != b"\x93NUMPY" or head[6] not in (1, 2):
        return None
    start = 10 if head[6] == 1 else 12
    size = int.from_bytes(head[8:start], "little")
    if size > limit or start + size > len(buf):
        return None
    found = _NPY_HEADER.fullmatch(bytes(buf[start:start + size]))
    if found is None:
        return None
    try:
        dtype = np.dtype(found[1].decode())
    except (TypeError, ValueError):
        return None
    shape = tuple(int(dim) for dim in found[3].split(b",") if dim.strip())
    return shape, found[2] == b"True", dtype, start + size


def _read_hashing(stream: IO[bytes], target: memoryview, hasher: Any) -> int:
    """Read into ``target`` piece by piece while a second thread checksums the pieces read
    so far (readinto and xxhash both release the GIL): a large member loads in about the time
    of the read alone. Returns the bytes read (fewer at the end of the file)."""
    pieces: queue.SimpleQueue[memoryview | None] = queue.SimpleQueue()

    def digest() -> None:
        while (piece := pieces.get()) is not None:
            hasher.update(piece)

    thread = threading.Thread(target=digest, name="dryml-checksum", daemon=True)
    thread.start()
    got = 0
    try:
        while got < len(target):
            n = stream.readinto(target[got:got + _READ_PIECE])  # type: ignore[attr-defined]
            if not n:
                break
            pieces.put(target[got:got + n])
            got += n
    finally:
        pieces.put(None)
        thread.join()
    return got


def _check_readable(raw: bytes, stored: bytes) -> None:
    """Refuse to write a manifest that readers with the default limits would refuse (30
    million zeros as JSON saved fine, into a file no default load would read)."""
    advice = ("store large lists as numpy arrays (store.put, or writer.add_array in a "
              "serializer) rather than as JSON values")
    elements = _count_elements(raw)
    if elements > _DEFAULT.max_manifest_elements:
        raise LimitExceededError(
            f"the manifest would hold {elements} JSON values, over the "
            f"{_DEFAULT.max_manifest_elements} that readers accept by default: {advice}")
    if len(raw) > _DEFAULT.allowed_raw(len(stored), _DEFAULT.max_manifest_bytes):
        raise LimitExceededError(
            f"the manifest would be {len(raw)} bytes compressed to {len(stored)}, a ratio "
            f"readers refuse by default (a compression bomb to them): {advice}")


def _count_elements(raw: bytes | bytearray) -> int:
    """An upper bound of the JSON values in ``raw`` (structural characters), counted before
    parsing: json.loads of 64 MiB of ``[{},{},...]`` would take gigabytes."""
    return raw.count(b",") + raw.count(b"[") + raw.count(b"{") + raw.count(b":")


class ContainerReader:
    """Reads a ``.dry`` container from a seekable binary stream, checking every bound."""

    def __init__(self, stream: IO[bytes], limits: Limits | None = None) -> None:
        self.stream = stream
        self.limits = limits or Limits()
        self.size = stream.seek(0, io.SEEK_END)
        if self.size == 0:
            raise FormatError("the file is empty; it is not a .dry file")
        if self._read_at(0, min(self.size, len(MAGIC))) != MAGIC[:min(self.size, len(MAGIC))]:
            raise FormatError("not a .dry file: it does not start with dryml's marker")
        if self.size < HEADER_SIZE + _TRAILER.size:
            raise FormatError(f"the file is truncated ({self.size} bytes); not a whole .dry file")
        header = self._read_at(0, HEADER_SIZE)
        self.version = struct.unpack_from("<I", header, 8)[0]
        trailer = self._read_at(self.size - _TRAILER.size, _TRAILER.size)
        offset, stored_size, raw_size, digest, version, _, magic = _TRAILER.unpack(trailer)
        if magic != TRAILER_MAGIC:
            raise FormatError("the file is truncated or damaged: no end-of-file marker")
        if version != self.version:
            raise FormatError("header and trailer disagree on the format version")
        if offset < HEADER_SIZE or offset + stored_size > self.size - _TRAILER.size:
            raise FormatError(
                f"manifest bounds out of range (offset {offset}, {stored_size} bytes stored, "
                f"in a file of {self.size} bytes): the file is damaged")
        allowed = self.limits.allowed_raw(stored_size, self.limits.max_manifest_bytes)
        if raw_size > allowed:
            raise LimitExceededError(
                f"the manifest declares {raw_size} bytes from {stored_size} stored, over the "
                f"limit of {allowed} (Limits.max_manifest_bytes / max_ratio)")
        stored = self._read_at(offset, stored_size)
        if xxhash.xxh3_64_intdigest(stored) != digest:
            raise ChecksumError("the manifest does not match its checksum: the file is damaged")
        self.manifest_end = offset
        raw = _decompress(stored, raw_size, "manifest")
        elements = _count_elements(raw)
        if elements > self.limits.max_manifest_elements:
            raise LimitExceededError(
                f"the manifest holds up to {elements} JSON values, over the limit of "
                f"{self.limits.max_manifest_elements} (Limits.max_manifest_elements)")
        try:
            self.manifest = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise FormatError(f"the manifest is not valid JSON ({exc})") from None
        except MemoryError:
            raise LimitExceededError("the manifest does not fit in memory") from None
        del raw
        if not isinstance(self.manifest, dict):
            raise FormatError("the manifest is not a JSON object")
        if self.version > FORMAT_VERSION:
            needs = self.manifest.get("dryml_version", "a newer version")
            raise FormatVersionError(
                f"the file uses .dry format version {self.version}; this dryml-core reads up "
                f"to version {FORMAT_VERSION}. It was written by dryml-core {needs}: upgrade "
                f"with pip install -U 'dryml-core>={needs}'"
            )
        self.members: dict[str, MemberInfo] = {}
        self._unread = 0
        self.mapped = ""  # "", or the np.memmap mode of raw array members
        self.verify_mapped = True
        self._whole: np.memmap[Any, Any] | None = None  # the file, once mapped

    def map_arrays(self, verify: bool = True, mode: str = "r") -> None:
        """Return raw ``.npy`` members as ``np.memmap`` arrays backed by the file (when the
        stream is a file opened with ``open()``; other streams, compressed ones included, are
        read as usual): read-only with ``mode="r"``,
        copy-on-write with ``mode="c"`` (writable; a write makes a private copy of that page
        and never reaches the file). ``verify``: stream each mapped member's checksum
        through the mapping when it is read (no copy); without it only the member's bounds
        and ``.npy`` header are checked (see ``dryml.format.verify``)."""
        if mode not in ("r", "c"):
            raise ValueError(f"mmap mode {mode!r}: use 'r' (read-only) or 'c' (copy-on-write)")
        if not self._plain_file():
            return
        self.mapped = mode
        self.verify_mapped = verify

    def _plain_file(self) -> bool:
        """Whether the stream reads the bytes of the file its descriptor names, as they are:
        a file opened with ``open()`` (buffered or not). A gzip, bz2 or lzma stream has a
        descriptor too, of its compressed file: mapped, that gave other bytes than the stream
        read, returned as arrays with no error."""
        raw = file_of(self.stream)
        if raw is None:
            return False
        try:
            fd = raw.fileno()
            if os.fstat(fd).st_size != self.size:
                return False
            if hasattr(os, "pread"):  # the very bytes this reader read through the stream
                end = self.size - _TRAILER.size
                return bool(os.pread(fd, _TRAILER.size, end) == self._read_at(end, _TRAILER.size)
                            and os.pread(fd, HEADER_SIZE, 0) == self._read_at(0, HEADER_SIZE))
        except (OSError, ValueError):
            return False
        return True

    def _read_at(self, offset: int, size: int) -> bytes:
        self.stream.seek(offset)
        data = self.stream.read(size)
        if len(data) != size:
            raise FormatError(f"the file is truncated: wanted {size} bytes at {offset}")
        return data

    def set_members(self, members: dict[str, MemberInfo]) -> None:
        """Install the validated member table (see :mod:`dryml.format._manifest`)."""
        if len(members) > self.limits.max_members:
            raise LimitExceededError(
                f"{len(members)} members, over the limit of {self.limits.max_members}")
        for name, info in members.items():
            check_member_name(name)
            if info.compression not in ("none", "zstd"):
                raise FormatError(f"member {name!r}: unknown compression {info.compression!r}")
            if (info.offset < HEADER_SIZE or info.size < 0
                    or info.offset + info.size > self.manifest_end):
                raise FormatError(f"member {name!r} lies outside the file's data area")
            allowed = (info.size if info.compression == "none" else
                       self.limits.allowed_raw(info.size, self.limits.max_member_bytes))
            if info.raw_size > allowed or info.raw_size < 0 or (
                    info.compression == "none" and info.raw_size != info.size):
                raise LimitExceededError(
                    f"member {name!r} declares {info.raw_size} bytes from {info.size} stored, "
                    f"over the limit of {allowed} (Limits.max_member_bytes / max_ratio) or "
                    "inconsistent with its stored size")
        # Members never share bytes: a writer writes each once, one after another. Overlapping
        # entries would let a tiny file hold many large members backed by the same bytes.
        end, last = HEADER_SIZE, ""
        for name, info in sorted(members.items(), key=lambda m: (m[1].offset, m[1].size)):
            if info.offset < end and info.size:
                raise FormatError(f"members {last!r} and {name!r} overlap: the file was altered")
            if info.size:
                end, last = info.offset + info.size, name
        # after the overlap check (a file altered so is said to be that)
        beyond = sum(self.limits.beyond_ratio(info.size, info.raw_size)
                     for info in members.values() if info.compression == "zstd")
        if beyond > self.limits.max_beyond_ratio:
            raise LimitExceededError(
                f"the file's compressed members together decompress to {beyond} bytes more "
                f"than {self.limits.max_ratio} times their stored size, over the limit of "
                f"{self.limits.max_beyond_ratio} (Limits.max_beyond_ratio): a compression bomb "
                "of many members, or a file written by an older dryml; if you trust it, load "
                "it with load_object(path, limits=Limits(max_beyond_ratio=...)) and save it "
                "again")
        self.members = members
        # Reading is bounded by what the members hold: a writer refers to each member once, so
        # a file that makes the loader read one member again and again (each read a fresh
        # decompressed copy) is refused before it takes memory.
        self._unread = sum(info.raw_size for info in members.values())

    def _charge(self, name: str, info: MemberInfo) -> None:
        self._unread -= info.raw_size
        if self._unread < 0:
            raise LimitExceededError(
                f"member {name!r} is read more often than the file holds it: the manifest "
                "refers to its members repeatedly (a writer refers to each once), so the file "
                "was altered, or a serializer reads one of its members twice (a load may read "
                "each member once: keep what it returned)")

    def info(self, name: str) -> MemberInfo:
        """The member table entry for ``name`` (FormatError when absent)."""
        if not isinstance(name, str) or name not in self.members:
            raise FormatError(f"the manifest refers to a member {name!r} the file does not have")
        return self.members[name]

    def read_bytes(self, name: str) -> bytes:
        """The raw content of a member, checksum verified."""
        info = self.info(name)
        self._charge(name, info)
        stored = self._read_at(info.offset, info.size)
        self._verify(name, info, stored)
        if info.compression == "zstd":
            return bytes(_decompress(stored, info.raw_size, f"member {name!r}"))
        return stored

    def _verify(self, name: str, info: MemberInfo, *chunks: bytes | memoryview) -> None:
        if _checksum(*chunks) != info.checksum:
            raise ChecksumError(
                f"member {name!r} does not match its checksum: the file is damaged")

    def verify_member(self, name: str) -> None:
        """Check one member's checksum by streaming its stored bytes (ChecksumError)."""
        self._verify_stored(name, self.info(name))

    def _verify_stored(self, name: str, info: MemberInfo) -> None:
        """Check a member's checksum by streaming its stored bytes."""
        hasher = xxhash.xxh3_64()
        self.stream.seek(info.offset)
        left = info.size
        while left > 0:
            chunk = self.stream.read(min(left, 1 << 22))
            if not chunk:
                break
            hasher.update(chunk)
            left -= len(chunk)
        if left or _hexdigest(hasher) != info.checksum:
            raise ChecksumError(
                f"member {name!r} does not match its checksum: the file is damaged")

    def read_array(self, name: str) -> np.ndarray:
        """A ``.npy`` member as an array, read straight into its buffer (no pickle)."""
        info = self.info(name)
        if info.kind != "npy":
            raise FormatError(f"member {name!r} is {info.kind!r}, not an array")
        self._charge(name, info)
        if info.compression == "zstd":
            stored = self._read_at(info.offset, info.size)
            self._verify(name, info, stored)
            raw = _decompress(stored, info.raw_size, f"member {name!r}")
            del stored
            return self._parse_npy(name, memoryview(raw), None)
        self.stream.seek(info.offset)
        prefix = self.stream.read(min(info.size, self.limits.max_header_bytes))
        if len(prefix) == info.size:  # a small member: check it whole before reading its header
            self._verify(name, info, prefix)
        try:
            return self._parse_npy(name, memoryview(prefix), info)
        except FormatError:
            self._verify_stored(name, info)  # damage is a ChecksumError, not a parse error
            raise

    def _parse_npy(self, name: str, buf: memoryview, info: MemberInfo | None) -> np.ndarray:
        header = _simple_npy_header(buf, self.limits.max_header_bytes)
        if header is not None:
            shape, fortran, dtype, header_len = header
        else:
            fp = io.BytesIO(buf)
            try:
                major, _ = np.lib.format.read_magic(fp)
                reader = {1: np.lib.format.read_array_header_1_0,
                          2: np.lib.format.read_array_header_2_0}.get(major)
                if reader is None:
                    raise ValueError(f"unsupported .npy version {major}")
                shape, fortran, dtype = reader(fp, max_header_size=self.limits.max_header_bytes)
            except Exception as exc:  # noqa: BLE001 - numpy's header parser raises many kinds
                raise FormatError(f"member {name!r} is not a valid .npy array ({exc})") from None
            header_len = fp.tell()
        if dtype.hasobject:
            raise FormatError(f"member {name!r} holds Python objects, which need pickle; refused")
        count = 1
        for dim in shape:
            count *= dim
        if dtype.itemsize == 0 and count > MAX_EMPTY_ITEMS:
            # otherwise 642 bytes would load as 2**62 elements, whose first copy (in
            # definition()) would run for centuries
            raise FormatError(f"member {name!r} holds {count} elements of zero size, more "
                              f"than the {MAX_EMPTY_ITEMS} a writer stores: the file was altered")
        nbytes = count * dtype.itemsize
        total = (info.size if info is not None else len(buf)) - header_len
        if nbytes != total:
            raise FormatError(f"member {name!r}: the array needs {nbytes} bytes, the member "
                              f"holds {total}")
        if info is None:  # a decompressed buffer of our own: the array keeps it, no copy
            array = np.frombuffer(buf[header_len:], dtype=dtype)
            return array.reshape(shape, order="F" if fortran else "C")
        if self.mapped and nbytes:
            return self._map_array(name, info, buf[:header_len], shape, fortran, dtype)
        array = np.empty(shape, dtype=dtype, order="F" if fortran else "C")
        target = _as_bytes(array).data
        self.stream.seek(info.offset + header_len)
        hasher = xxhash.xxh3_64(buf[:header_len])
        if nbytes >= _OVERLAP:
            got = _read_hashing(self.stream, target, hasher)
        else:
            got = self.stream.readinto(target) if nbytes else 0  # type: ignore[attr-defined]
            hasher.update(target)
        if got != nbytes:
            raise FormatError(f"member {name!r} is truncated")
        if _hexdigest(hasher) != info.checksum:
            raise ChecksumError(
                f"member {name!r} does not match its checksum: the file is damaged")
        return array

    def _mapping(self) -> np.memmap[Any, Any]:
        """The whole file, mapped once for all its members (a mapping, and a descriptor, per
        member took every descriptor the process had: a 300-tensor model loaded three times
        failed with 'Too many open files')."""
        if self._whole is None:
            size = os.fstat(self.stream.fileno()).st_size
            self._whole = np.memmap(self.stream, dtype=np.uint8, shape=(size,),
                                    mode="c" if self.mapped == "c" else "r")
        return self._whole

    def _map_array(self, name: str, info: MemberInfo, header: memoryview, shape: Any,
                   fortran: bool, dtype: np.dtype[Any]) -> np.ndarray:
        """A read-only array over the member's bytes in the file (pages shared with every
        process that maps the same file), its checksum streamed through the mapping."""
        start = info.offset + len(header)
        flat = self._mapping()[start:start + math.prod(shape) * dtype.itemsize].view(dtype)
        array: np.ndarray = flat.reshape(shape[::-1]).T if fortran else flat.reshape(shape)
        array.offset = start  # type: ignore[attr-defined]  # np.memmap's own attribute
        if self.verify_mapped and info.size > self.limits.max_header_bytes:  # else checked
            self._verify(name, info, header, _as_bytes(array).data)
        return array
