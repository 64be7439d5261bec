"""How calls travel between the caller and a worker.

Messages are length-prefixed pickles on a pipe. Inside a message, every ``dryml.Object`` travels
as ``.dry`` bytes (never pickled): the pickler replaces it by a persistent id. Functions travel
by reference when importable and by value (cloudpickle) when defined in ``__main__``, the REPL
or a function body. Classes of Objects that the worker could not import are sent by value too.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import pickle
import struct
import sys
from collections.abc import Callable, Iterable
from typing import Any

import cloudpickle

from dryml._object import Object

__all__ = [
    "Channel",
    "ChannelClosed",
    "classes_in",
    "dumps",
    "exception_from_state",
    "function_payload",
    "load_function",
    "loads",
    "local_classes",
    "register_classes",
]

_HEADER = struct.Struct("!Q")
PROTOCOL = 5


class ChannelClosed(EOFError):
    """The other end of a channel went away."""


class Channel:
    """Length-prefixed messages over a pair of pipe file descriptors.

    Reads are unbuffered so that ``select`` on :attr:`read_fd` tells the truth.
    """

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self.read_fd = read_fd
        self.write_fd = write_fd
        self.closed = False

    def send_bytes(self, data: bytes) -> None:
        """Write one message (blocking); ChannelClosed once :meth:`close` ran (its numbers
        may name other files by now)."""
        if self.closed:
            raise ChannelClosed("the channel was closed")
        view = memoryview(_HEADER.pack(len(data)) + data) if len(data) < 1 << 16 else None
        try:
            if view is None:
                self._write_all(memoryview(_HEADER.pack(len(data))))
                view = memoryview(data)
            self._write_all(view)
        except OSError as exc:
            raise ChannelClosed(f"the other end is gone ({exc})") from exc

    def _write_all(self, view: memoryview) -> None:
        while view:
            view = view[os.write(self.write_fd, view):]

    def _read_exact(self, size: int) -> bytes:
        buf = bytearray(size)
        view = memoryview(buf)
        got = 0
        while got < size:
            n = os.readv(self.read_fd, [view[got:]])
            if n == 0:
                raise ChannelClosed("the other end closed the channel")
            got += n
        return bytes(buf)

    def recv_bytes(self) -> bytes:
        """Read one message (blocking); ChannelClosed at end of file or once closed."""
        if self.closed:
            raise ChannelClosed("the channel was closed")
        try:
            (size,) = _HEADER.unpack(self._read_exact(_HEADER.size))
            return self._read_exact(size)
        except OSError as exc:
            raise ChannelClosed(str(exc)) from exc

    def close(self) -> None:
        """Close both ends (idempotent)."""
        if not self.closed:
            self.closed = True
            for fd in (self.read_fd, self.write_fd):
                with contextlib.suppress(OSError):
                    os.close(fd)


class _Bundle(Object):
    """Every Object of one message as one ``.dry`` graph, so that shared children stay shared
    (a model passed next to the trainable that holds it arrives as one model, not two)."""

    def __init__(self, *objs: Object) -> None:
        pass


def exception_from_state(cls: type[BaseException], args: tuple[Any, ...]) -> BaseException:
    """An exception of class ``cls`` with ``args``, built without calling its ``__init__``
    (pickle then sets its attributes): one whose ``__init__`` formats its message would
    otherwise format it twice."""
    exc = cls.__new__(cls, *args)
    exc.args = args
    return exc


class _Pickler(cloudpickle.Pickler):  # type: ignore[misc]
    def __init__(self, file: io.BytesIO,
                 buffer_callback: Callable[[pickle.PickleBuffer], bool] | None = None,
                 exceptions_by_state: bool = False) -> None:
        super().__init__(file, protocol=PROTOCOL, buffer_callback=buffer_callback)
        self.objects: list[Object] = []
        self.seen: dict[int, int] = {}
        self.exceptions_by_state = exceptions_by_state

    def reducer_override(self, obj: Any) -> Any:  # noqa: D102
        if (self.exceptions_by_state and isinstance(obj, BaseException)
                and type(obj).__reduce__ is BaseException.__reduce__):  # not its own pickling
            return exception_from_state, (type(obj), obj.args), obj.__dict__ or None
        return super().reducer_override(obj)

    def persistent_id(self, obj: Any) -> Any:  # noqa: D102
        if isinstance(obj, Object):
            index = self.seen.get(id(obj))
            if index is None:
                index = self.seen[id(obj)] = len(self.objects)
                self.objects.append(obj)
            return ("dry", index)
        return None


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, blobs: list[bytes], trust: Iterable[str],
                 buffers: Iterable[Any] | None = None) -> None:
        super().__init__(file, buffers=buffers)
        self.blobs = blobs
        self.trust = tuple(trust)
        self.objects: tuple[Any, ...] | None = None

    def persistent_load(self, pid: Any) -> Any:  # noqa: D102
        kind, index = pid
        if kind != "dry":
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
        if self.objects is None:
            from dryml._io import load_object

            bundle = load_object(io.BytesIO(self.blobs[0]), trust=self.trust)
            if not isinstance(bundle, _Bundle):
                raise pickle.UnpicklingError("the message's .dry member is not a bundle")
            self.objects = bundle.dry_args
        return self.objects[index]


def dumps(value: Any, buffers: list[pickle.PickleBuffer] | None = None,
          min_size: int = 0, exceptions_by_state: bool = False,
          found: list[Object] | None = None) -> tuple[bytes, list[bytes], list[str]]:
    """``(pickle, dry blobs, modules to trust)`` of a value whose Objects travel as .dry.

    With ``buffers`` (a list to fill), buffers of at least ``min_size`` bytes that support
    pickle protocol 5 (contiguous numpy arrays) travel out of band: they are appended to
    ``buffers`` instead of being copied into the pickle (see :func:`loads`).
    ``exceptions_by_state``: exceptions that use the default pickling travel as class, args
    and attributes (see :func:`exception_from_state`). ``found`` (a list to fill): the
    Objects the value holds, wherever (in a dataclass or any other pickled instance too).
    """
    buf = io.BytesIO()
    callback = None
    if buffers is not None:
        def callback(pb: pickle.PickleBuffer) -> bool:
            if pb.raw().nbytes < min_size:
                return True  # small: in band
            buffers.append(pb)
            return False
    pickler = _Pickler(buf, callback, exceptions_by_state)
    pickler.dump(value)
    if found is not None:
        found.extend(pickler.objects)
    if not pickler.objects:
        return buf.getvalue(), [], []
    from dryml._io import save_object  # only here: a worker's cold start skips the format

    dry = io.BytesIO()
    save_object(_Bundle(*pickler.objects), dry, compress=False)
    modules = sorted({c.__module__ for c in classes_in([value])} - {"builtins"})
    return buf.getvalue(), [dry.getvalue()], modules


def classes_in(values: Iterable[Any]) -> list[type]:
    """Classes the values name: of Objects, of ObjectDefs, and classes passed as values.

    The caller has them all imported, so the worker may trust their modules.
    """
    from dryml._objectdef import ObjectDef

    found: dict[type, None] = {}
    seen: set[int] = set()
    stack = list(values)
    while stack:
        value = stack.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, type):
            found[value] = None
        elif isinstance(value, Object):
            found[type(value)] = None
            stack.extend((*value.dry_args, *value._dry_kwargs.values()))
        elif isinstance(value, ObjectDef):
            found[value.cls] = None
            stack.extend((*value.args, *value.kwargs.values()))
        elif isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, (list, tuple, set, frozenset)):
            stack.extend(value)
    return list(found)


def loads(data: bytes, blobs: list[bytes], trust: Iterable[str],
          buffers: Iterable[Any] | None = None, found: list[Object] | None = None) -> Any:
    """Inverse of :func:`dumps`; ``buffers``: the out-of-band buffers, in order (writable
    ones, such as ``bytearray``, give writable arrays); ``found`` (a list to fill): the
    Objects the value holds, as :func:`dumps` gives them."""
    unpickler = _Unpickler(io.BytesIO(data), blobs, trust, buffers)
    value = unpickler.load()
    if found is not None:
        found.extend(unpickler.objects or ())
    return value


def _importable(module: str) -> bool:
    return module not in ("__main__", "__mp_main__", "__console__") and module in sys.modules \
        and getattr(sys.modules[module], "__spec__", None) is not None


def _resolve(module: str, qualname: str) -> Any:
    value: Any = importlib.import_module(module)
    for part in qualname.split("."):
        value = getattr(value, part)
    return value


def _unwrap(value: Any) -> Any:
    while getattr(value, "__dry_context_wrapped__", False):
        value = value.__wrapped__
    return value


# How often each module a function was sent from by reference was reloaded in this process:
# importlib.reload (and a notebook's %autoreload, which patches the old functions' code) gives
# the module a new __spec__, and a warm worker, which imported the module once, would go on
# running the old code (the caller's answer() said v2, the worker's v1).
# module name -> (its __spec__ when last seen, generation)
_sent: dict[str, tuple[Any, int]] = {}
# In a worker: the generation of each module as the caller last sent it.
_synced: dict[str, int] = {}


def _generation(module: str) -> int:
    spec = getattr(sys.modules[module], "__spec__", None)
    known = _sent.get(module)
    generation = 0 if known is None else known[1] + (known[0] is not spec)
    _sent[module] = (spec, generation)  # held: an id could be reused, an object cannot
    return generation


def function_payload(fn: Callable[..., Any]) -> tuple[str, Any]:
    """``("ref", (module, qualname, generation))`` for an importable function, else
    ``("val", bytes)``; the generation counts how often this process reloaded the module,
    so that a worker reloads it too."""
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", "")
    if module and _importable(module) and "<" not in qualname:
        try:
            if _unwrap(_resolve(module, qualname)) is fn:
                return "ref", (module, qualname, _generation(module))
        except AttributeError:
            pass
    return "val", cloudpickle.dumps(fn, protocol=PROTOCOL)


def load_function(payload: tuple[str, Any]) -> Callable[..., Any]:
    """Inverse of :func:`function_payload` (in the worker): a module its caller reloaded
    since this worker imported it is reloaded here first."""
    kind, data = payload
    if kind != "ref":
        return pickle.loads(data)  # type: ignore[no-any-return]
    module, qualname, generation = data
    if module in sys.modules and _synced.get(module, 0) < generation:
        importlib.reload(sys.modules[module])
    _synced[module] = generation
    return _unwrap(_resolve(module, qualname))  # type: ignore[no-any-return]


def local_classes(values: Iterable[Any]) -> list[bytes]:
    """Object classes named among ``values`` that a worker could not import, cloudpickled."""
    out = []
    for cls in classes_in(values):
        if not issubclass(cls, Object):
            continue
        if not _importable(cls.__module__) or "<" in cls.__qualname__:
            out.append(cloudpickle.dumps((cls.__module__, cls.__qualname__, cls),
                                         protocol=PROTOCOL))
    return out


def register_classes(payloads: Iterable[bytes]) -> None:
    """Define classes sent by :func:`local_classes` in this process (the worker)."""
    from dryml._object import class_registry

    for data in payloads:
        module, qualname, cls = pickle.loads(data)
        cls.__module__, cls.__qualname__ = module, qualname  # cloudpickle may shorten these
        class_registry()[f"{module}:{qualname}"] = cls
        _KEEP.append(cls)  # the registry holds classes weakly


_KEEP: list[type] = []
