"""``save_object`` and ``load_object``: an Object graph to one ``.dry`` file and back."""

from __future__ import annotations

import contextlib
import datetime
import errno
import functools
import io
import os
import stat
import struct
import time
import weakref
from collections.abc import Iterable, Iterator
from typing import IO, Any

from dryml import _registry
from dryml._encoding import Decoder, Encoder
from dryml._metadata import plain_metadata
from dryml._object import Object
from dryml._trust import TrustPolicy, class_path
from dryml._values import rebuilding
from dryml._version import __version__
from dryml.errors import (
    DrymlError,
    FormatError,
    LimitExceededError,
    SerializationError,
    UntrustedClassError,
)
from dryml.format._container import (
    FORMAT_VERSION,
    ContainerReader,
    ContainerWriter,
    Limits,
    file_of,
)
from dryml.format._manifest import Manifest, NodeRecord, parse_manifest
from dryml.format._stale import make_temp, swap_in
from dryml.format._store import LoadStore, SaveStore
from dryml.format._stored import SharedReader, StoredValue, load_entry, member_map

__all__ = ["LoadSession", "SaveSession", "load_object", "open_container", "save_object"]

Source = str | os.PathLike[str] | IO[bytes]


def _interchangeable(a: Object, b: Object) -> bool:
    """Whether two objects with one id are one object as far as a file can tell: built from
    equal definitions, of a class whose objects do not change after construction (for
    ``dry_mut`` classes the state may differ)."""
    return (type(a) is type(b) and not type(a).dry_mut
            and a.definition() == b.definition())


def _hook_chain(cls: type, name: str) -> list[Any]:
    """Every definition of hook ``name`` in ``cls``'s MRO, base class first."""
    return [klass.__dict__[name] for klass in reversed(cls.__mro__) if name in klass.__dict__]


class SaveSession:
    """Writes one object graph: nodes children-first, shared children once."""

    def __init__(self, writer: ContainerWriter) -> None:
        self.writer = writer
        self.nodes: list[dict[str, Any]] = []
        self.done: set[str] = set()
        self.active: set[str] = set()
        self.by_id: dict[str, Object] = {}
        self.plugins: dict[str, str] = {}
        self.frameworks: dict[str, str] = {}
        self.classes: dict[str, list[str]] = {}
        self._count = 0
        self._added: list[str] = []  # member names in order (each entry records its own)
        self._encoder = Encoder(writer=self, on_object=self.add_object)

    # MemberWriter
    def _name(self, suffix: str) -> str:
        self._count += 1
        return f"m{self._count:06d}{suffix}"

    def add_array(self, array: Any, *, compress: bool = True) -> str:
        name = self._name(".npy")
        self.writer.add_array(name, array, compress=compress)
        self._added.append(name)
        return name

    def add_bytes(self, data: bytes | memoryview, *, compress: bool = True) -> str:
        name = self._name(".bin")
        # a memoryview is written (or copied, when small) before this returns: no copy here
        self.writer.add_bytes(name, data if type(data) is memoryview else bytes(data),
                              compress=compress)
        self._added.append(name)
        return name

    def record_version(self, package: str, version: str | None = None,
                       framework: tuple[str, str] | None = None) -> None:
        if package != "dryml-core" and (version is not None or package not in self.plugins):
            self.plugins[package] = version or _dist_version(package)
        if framework is not None:
            self.frameworks[framework[0]] = framework[1]

    # graph
    def add_object(self, obj: Object) -> str:
        dry_id = obj.dry_id
        seen = self.by_id.setdefault(dry_id, obj)
        if seen is not obj and not _interchangeable(seen, obj):
            # a file holds one object per id: the second object (a retrained copy beside its
            # original, or two builds of one ObjectDef with an id) would be dropped without a
            # word, its arguments and state with it
            raise SerializationError(
                f"two different objects in this graph have the dry_id {dry_id!r} "
                f"({type(seen).__qualname__} and {type(obj).__qualname__}); a file holds one "
                "object per id, so one would be lost. Give one of them ids of its own (a "
                "copy: obj.definition().fresh_ids().build())")
        if dry_id in self.done:
            return dry_id
        if dry_id in self.active:
            raise SerializationError(
                f"{type(obj).__qualname__} {dry_id!r} contains itself (a cycle); an object "
                "graph must be a tree or a DAG")
        self.active.add(dry_id)
        owner = f"{type(obj).__qualname__} {dry_id!r}"
        args = [self._encode(v, f"{owner}: dry_args[{i}]") for i, v in enumerate(obj.dry_args)]
        kwargs = {k: self._encode(v, f"{owner}: dry_kwargs[{k!r}]")
                  for k, v in obj._dry_kwargs.items() if k != "dry_id"}
        state: dict[str, Any] = {}
        store = SaveStore(self, state, owner)
        for hook in _hook_chain(type(obj), "save_object_imp"):
            _call_user(hook, obj, store, f"{owner}: save_object_imp", SerializationError)
        _add_classes(self.classes, [type(obj), obj.dry_args, obj._dry_kwargs])
        package = _registry.plugin_package(type(obj).__module__)
        if package is not None:
            self.record_version(package)
        self.nodes.append({"id": dry_id, "cls": class_path(type(obj)),
                           "dry_mut": type(obj).dry_mut, "args": args, "kwargs": kwargs,
                           "state": state})
        self.active.discard(dry_id)
        self.done.add(dry_id)
        return dry_id

    def _encode(self, value: Any, where: str) -> Any:
        try:
            return self._encoder.encode(value)
        except DrymlError:
            raise
        except Exception as exc:  # noqa: BLE001 - a codec failed: say where
            raise SerializationError(f"{where}: {type(exc).__name__}: {exc}") from exc

    def encode_state(self, value: Any, where: str) -> dict[str, Any]:
        if isinstance(value, StoredValue):  # written back as it was read, not decoded
            return value.write(self)
        serializer = _registry.serializer_for(type(value))
        if serializer is None:
            from dryml._values import BadValue, capture

            try:
                capture(value, copy=False)  # a check: encoded right away
            except BadValue as exc:
                raise SerializationError(f"{where}{''.join(exc.path)}: {exc.reason}") from None
            return {"value": self._encode(value, where)}
        first = len(self._added)
        try:
            meta = serializer.impl.dump(value, self)
        except DrymlError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise SerializationError(f"{where}: serializer {serializer.name!r} failed: "
                                     f"{type(exc).__name__}: {exc}") from exc
        self.record_version(serializer.package)
        # The members it wrote, so that the value can be read without decoding it
        # (dryml.format._stored); names map to themselves in the file that first holds them.
        return {"serializer": serializer.name, "package": serializer.package, "meta": meta,
                "members": {name: name for name in self._added[first:]}}


class LoadSession:
    """Rebuilds an object graph from a checked manifest."""

    def __init__(self, reader: ContainerReader, manifest: Manifest, trust: TrustPolicy) -> None:
        self.reader = reader
        self.manifest = manifest
        self.objects: dict[str, Object] = {}
        # A proxy, not self: a session that referenced itself through its decoder lived (with
        # every object it built, their arrays, and the open file) until the cyclic garbage
        # collector ran, so loading a few large files in a loop could run out of memory.
        self._decoder = Decoder(trust, reader=weakref.proxy(self), objects=self.objects)
        self.trust = trust
        # the member names of the entry being decoded (its serializer's names -> this file's)
        self._names: dict[str, str] = {}
        self._shared: SharedReader | None = None

    @property
    def limits(self) -> Limits:
        """The bounds of this load (``load_object(limits=...)``), which a serializer follows
        where its data may stand for more than the bytes it holds."""
        return self.reader.limits

    def get_array(self, name: str) -> Any:
        return self.reader.read_array(self._names.get(name, name))

    def get_bytes(self, name: str) -> bytes:
        return self.reader.read_bytes(self._names.get(name, name))

    def member_size(self, name: str) -> int:
        return self.reader.info(self._names.get(name, name)).raw_size

    def framework_version(self, framework: str) -> str | None:
        return self.manifest.frameworks.get(framework)

    def decode_state(self, entry: Any, where: str) -> Any:
        if not isinstance(entry, dict):
            raise FormatError(f"{where}: a stored entry must be an object")
        if "value" in entry:
            return self._decode(entry["value"], where)
        outer, self._names = self._names, member_map(entry, where) or {}
        try:
            return load_entry(entry, self, where)
        finally:
            self._names = outer

    def stored_state(self, entry: Any, where: str) -> StoredValue:
        """A stored entry read (members checksum-verified) but not decoded."""
        if not isinstance(entry, dict):
            raise FormatError(f"{where}: a stored entry must be an object")
        names = None if "value" in entry else member_map(entry, where)
        if names is None:  # a plain value, or a file that does not list the members
            return StoredValue.ready(self.decode_state(entry, where), where)
        _registry.require_serializer(str(entry.get("serializer")), str(entry.get("package")))
        infos = {original: self.reader.info(name) for original, name in names.items()}
        members = {original: (self.reader.read_array(names[original]) if info.kind == "npy"
                              else self.reader.read_bytes(names[original]))
                   for original, info in infos.items()}
        if self._shared is None:
            self._shared = SharedReader(self.manifest.frameworks, self.trust,
                                        self.reader.limits)
        return StoredValue(entry, members, self._shared, where, compressed=frozenset(
            original for original, info in infos.items() if info.compression != "none"))

    def _decode(self, data: Any, where: str) -> Any:
        try:
            return self._decoder.decode(data, where)
        except RecursionError:
            raise FormatError(f"{where}: values nested too deeply") from None

    def build(self) -> Object:
        try:
            for node in self.manifest.objects:
                self._build_node(node)
        except UntrustedClassError as exc:
            paths = [n.cls for n in self.manifest.objects if n.id not in self.objects]
            missing = _registry.missing_backend([*paths, *self.manifest.classes],
                                                self.manifest.plugins)
            if missing is not None:
                raise missing from exc
            raise
        if self.manifest.root not in self.objects:
            raise FormatError(f"the root object {self.manifest.root!r} is not in the file")
        return self.objects[self.manifest.root]

    def _build_node(self, node: NodeRecord) -> None:
        if node.id in self.objects:
            raise FormatError(f"the object id {node.id!r} appears twice in the file")
        cls = self.trust.resolve_object_class(node.cls)
        owner = f"{cls.__qualname__} {node.id!r}"
        with rebuilding():  # the file's ObjectDefs and Objects, as an earlier dryml made them
            args = self._decode(node.args, f"{owner}: dry_args")
            kwargs = self._decode(node.kwargs, f"{owner}: dry_kwargs")
            if "dry_id" in kwargs:
                raise FormatError(f"{owner}: dry_id belongs to the node, not to its kwargs")
            obj = _call_user(lambda: cls(*args, dry_id=node.id, **kwargs), None, None,
                             f"{owner}: rebuilding from the file", SerializationError)
        store = LoadStore(self, node.state, owner)
        for hook in _hook_chain(cls, "load_object_imp"):
            _call_user(hook, obj, store, f"{owner}: load_object_imp", SerializationError)
        self.objects[node.id] = obj


def _call_user(fn: Any, obj: Any, store: Any, where: str, error: type[DrymlError]) -> Any:
    """Run user code; a non-dryml exception becomes ``error`` naming where it happened."""
    try:
        return fn() if obj is None else fn(obj, store)
    except DrymlError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise error(f"{where} failed: {type(exc).__name__}: {exc}") from exc


@functools.cache
def _dist_version(package: str) -> str:
    import importlib.metadata as md

    try:
        return md.version(package)
    except md.PackageNotFoundError:
        return "unknown"


def _add_classes(out: dict[str, list[str]], values: Any) -> None:
    """The MRO (as class paths) of every class among ``values`` (nested in containers and
    definitions too), so that an index can answer subclass queries without importing."""
    from dryml._objectdef import ObjectDef

    stack = [values]
    while stack:
        value = stack.pop()
        if isinstance(value, type):
            path = class_path(value)
            if path not in out:
                out[path] = [class_path(k) for k in value.__mro__ if k is not object]
        elif isinstance(value, (list, tuple)):
            stack.extend(value)
        elif isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, ObjectDef):
            stack.extend([value.cls, value.args, value.kwargs])


def _write(obj: Object, stream: IO[bytes], compress: bool,
           metadata: dict[str, Any] | None = None,
           created: float | None = None) -> ContainerWriter:
    writer = ContainerWriter(stream, compress=compress)
    session = SaveSession(writer)
    session.add_object(obj)
    writer.finish({
        "format": "dryml",
        "format_version": FORMAT_VERSION,
        "dryml_version": __version__,
        # to the microsecond: a Repo's index orders by it, also when rebuilt from the files
        "created": datetime.datetime.fromtimestamp(
            time.time() if created is None else created, datetime.UTC).isoformat(
            timespec="microseconds"),
        "root": obj.dry_id,
        "plugins": session.plugins,
        "frameworks": session.frameworks,
        "objects": session.nodes,
        "classes": session.classes,
        **({} if metadata is None else {"metadata": metadata}),
    })
    return writer


def save_object(obj: Object, dest: Source, *, compress: bool = True, durable: bool = True,
                metadata: dict[str, Any] | None = None) -> bool:
    """Save ``obj`` (and every Object it holds, once each) to ``dest``; returns True.

    ``dest`` is a path or a writable binary file. Writing to a path is atomic: a temporary file
    in the same directory is written, flushed to disk (``fsync``) and renamed over ``dest``, so
    a crash never leaves a half-written file there. ``durable=False`` skips the two ``fsync``
    calls and swaps the file in where one is already at the path (Linux): the file at the
    path is still the old one or the new one whatever moment a process is killed, but not
    after a power loss or a kernel crash, when it may be empty (it saves about 30 ms per
    100 MB on a typical disk, and ext4's flush on a rename over an existing file).
    ``compress=False`` skips zstd for every member. ``metadata`` (plain JSON; numpy numbers
    are stored as Python ones, non-string keys as strings) is kept in the manifest, where a
    Repo's index is rebuilt from; a value JSON cannot hold (NaN, an object) or two keys that
    JSON would make one (``2`` and ``"2"``) are a SerializationError.
    """
    if not isinstance(obj, Object):
        raise SerializationError(f"save_object saves dryml Objects, got {type(obj).__name__}")
    if metadata is not None:  # stored as a Repo's index would store it, or refused
        metadata = plain_metadata(metadata, SerializationError)[1]
    if not isinstance(dest, (str, os.PathLike)):
        _write(obj, dest, compress, metadata)
        return True
    path = os.fspath(dest)
    fd, tmp = make_temp(path)  # named after this process; drops dead writers' temps
    try:
        with open(fd, "wb", buffering=0) as stream:  # the writer gathers its own writes
            _write(obj, stream, compress, metadata)
            if durable:
                os.fsync(fd)  # the data is on disk before the name points to it
        _put_in_place(tmp, path, durable)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_directory(os.path.dirname(path) or ".")  # and the name itself
    return True


def _put_in_place(tmp: str, path: str, durable: bool) -> None:
    """Put the complete temporary ``tmp`` at ``path``: durable, renamed (the rename's flush is
    free after the fsync, and keeps ext4's guard); else swapped in, sparing ext4's flush of the
    new data (docs/format.md). A path no rename can replace says what to do instead."""
    try:
        (os.replace if durable else swap_in)(tmp, path)
    except OSError as exc:
        if exc.errno not in (errno.EBUSY, errno.EXDEV):
            raise
        raise OSError(exc.errno, (
            f"cannot put the saved file at {path!r}, which is a mount point or on another "
            "mount than its folder (a file bind-mounted on its own, as docker's -v FILE:FILE "
            "does): save_object renames a complete temporary file over the path, so that a "
            "crash never leaves half a file there, and the kernel refuses that rename "
            f"({os.strerror(exc.errno)}). Mount the folder instead, or write into the file "
            "itself, without that guarantee: with open(path, 'wb') as f: save_object(obj, f)"
        )) from None


def fsync_directory(directory: str | os.PathLike[str]) -> None:
    """Flush a directory's entries (a rename into it) to disk; skipped where unsupported."""
    with contextlib.suppress(OSError):
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


#: Streams are copied once into a temporary file that stays in memory up to this size.
_SPOOL_IN_MEMORY = 64 << 20


def _real_file(source: Any) -> bool:
    """Whether ``source`` reads an open regular file as it is (seeks are cheap): a file
    opened with ``open()`` (:func:`~dryml.format._container.file_of`; ``gzip.open(path)``,
    with its compressed file's descriptor, was read directly, its seeks decompressing again)."""
    raw = file_of(source)
    if raw is None:
        return False
    try:
        return stat.S_ISREG(os.fstat(raw.fileno()).st_mode) and bool(source.seekable())
    except (OSError, ValueError):
        return False


def _spooled(source: Any) -> IO[bytes]:
    """``source`` copied once, forward, into a temporary file (in memory up to
    :data:`_SPOOL_IN_MEMORY`): a reader seeks back and forth, which a gzip, bz2 or lzma stream
    does by decompressing again from the start (a load took time growing with the square of
    its members), and a pipe cannot do at all (it was read whole into memory, before even
    its first bytes were checked)."""
    import tempfile

    from dryml.format._container import MAGIC

    with contextlib.suppress(AttributeError, OSError, ValueError):
        if source.seekable():  # a file is read from its start, as a path or a BytesIO is
            source.seek(0)
    head = b""
    while len(head) < len(MAGIC):  # an unbuffered pipe or socket may give fewer at a time
        more = source.read(len(MAGIC) - len(head))
        if not more:
            break
        head += more
    if head != MAGIC:
        raise FormatError("the stream is not a .dry file (it does not start with the .dry "
                          "header)")
    copy = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)  # noqa: SIM115 - returned
    try:
        copy.write(head)
        while chunk := source.read(1 << 20):
            copy.write(chunk)
        copy.seek(0)
    except BaseException:
        copy.close()
        raise
    return copy


def open_regular(path: str | os.PathLike[str]) -> IO[bytes]:
    """``open(path, "rb")`` of a regular file; a FormatError for anything else, found before
    anything is read (a FIFO put in place of a ``.dry`` file blocked every load; a device
    would be read without end)."""
    nonblocking = getattr(os, "O_NONBLOCK", 0)  # POSIX: a pipe's open would wait for a writer
    fd = os.open(path, os.O_RDONLY | nonblocking | getattr(os, "O_CLOEXEC", 0)
                 | getattr(os, "O_BINARY", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise FormatError(f"{os.fspath(path)!r} is not a regular file (a pipe, a device or "
                              "a socket), so not a .dry file")
        if nonblocking:
            os.set_blocking(fd, True)
        stream = open(fd, "rb")  # noqa: SIM115 - the caller closes it
        stream.raw.name = os.fspath(path)  # type: ignore[attr-defined]  # as open(path) names it
        return stream
    except BaseException:
        os.close(fd)
        raise


@contextlib.contextmanager
def open_container(source: Source, limits: Limits | None) -> Iterator[
    tuple[ContainerReader, Manifest]
]:
    """Open and check a ``.dry`` file's container and manifest."""
    if isinstance(source, (str, os.PathLike)):
        if os.path.isdir(source):
            raise FormatError(f"{os.fspath(source)!r} is a directory, not a .dry file (a folder "
                              "of .dry files is opened with dryml.Repo)")
        try:
            stream: IO[bytes] = open_regular(source)
        except FileNotFoundError:
            raise FileNotFoundError(f"no .dry file at {os.fspath(source)!r}") from None
    elif isinstance(source, io.BytesIO) or _real_file(source):
        stream = source
    else:
        stream = _spooled(source)  # a pipe, a socket, gzip/bz2/lzma (their seeks decompress)
    try:
        reader = ContainerReader(stream, limits)
        manifest = parse_manifest(reader.manifest)
        if manifest.format_version != reader.version:
            raise FormatError(
                f"the manifest says format version {manifest.format_version} but the file's "
                f"header and trailer say {reader.version}: the file was altered")
        reader.set_members(manifest.members)
        yield reader, manifest
    except DrymlError:
        raise
    except MemoryError:
        raise LimitExceededError(
            "the file needs more memory than this process has; if it is a legitimately large "
            "model, raise the limits (dryml.format.Limits) and make room") from None
    except _FILE_DRIVEN as exc:
        # Whatever a file's bytes can make go wrong while reading it is a dryml error.
        raise FormatError(f"the file could not be read: {type(exc).__name__}: {exc}") from exc
    finally:
        if stream is not source:
            stream.close()


_FILE_DRIVEN = (ValueError, TypeError, OverflowError, KeyError, IndexError, AttributeError,
                RecursionError, UnicodeError, struct.error)


def load_object(source: Source, *, trust: Iterable[str] = (), limits: Limits | None = None,
                allow_code: bool = False, mmap: bool | str = False,
                verify: bool = True) -> Object:
    """Load the Object saved in ``source`` (a path or a readable binary file).

    Nothing is unpickled. Classes resolve only as described in :mod:`dryml._trust`: Object
    subclasses already in this process or from trusted modules (plugins' and ``trust=``).
    Shared children come back shared. Errors are :class:`dryml.errors.DrymlError` subclasses.
    ``allow_code=True`` is the explicit opt-in for a file that carries code of its own (a Keras
    ``Lambda`` layer): only pass it for a file you wrote or otherwise trust to run code.

    ``mmap=True`` (for a path or a real file) returns every uncompressed array member as a
    read-only ``numpy.memmap`` over the file instead of a copy: nothing is read until used,
    and processes that load the same file share its pages. With ``verify=True`` (the default)
    each mapped member's checksum is streamed through the mapping while loading (no copy);
    ``verify=False`` checks only bounds and ``.npy`` headers, so that opening a huge model
    takes milliseconds; check the data later with :func:`dryml.format.verify`. Members that
    are compressed, and non-array members, are read and verified as usual. ``mmap="c"`` maps
    them copy-on-write instead: writable arrays whose pages stay shared until written (a
    write changes this process's copy only, never the file), which frameworks that need
    writable memory (``torch.from_numpy``) take without copying.
    """
    if mmap not in (False, True, "r", "c"):
        raise ValueError(f"mmap={mmap!r}: use True (read-only), 'c' (copy-on-write) or False")
    with open_container(source, limits) as (reader, manifest):
        if mmap:
            reader.map_arrays(verify, "c" if mmap == "c" else "r")
        _warn_version_skew(manifest)
        return LoadSession(reader, manifest, TrustPolicy(trust, allow_code=allow_code)).build()


def _series(version: str) -> tuple[str, ...]:
    """The part of a version that promises compatibility: the major version, or major and
    minor while the major is 0 (a 0.9 file under 0.1 did not warn; the backends pin 0.x minor
    versions as breaking)."""
    parts = version.split(".")
    return tuple(parts[:2]) if parts[0] == "0" else (parts[0],)


def _warn_version_skew(manifest: Manifest) -> None:
    import warnings

    from dryml.errors import DrymlVersionWarning

    for package, version in manifest.plugins.items():
        installed = _dist_version(package)
        if "unknown" not in (installed, version) and _series(installed) != _series(version):
            warnings.warn(
                f"the file was written with {package} {version}; {installed} is installed. "
                "If loading fails, install the version that wrote it.",
                DrymlVersionWarning, stacklevel=3)
