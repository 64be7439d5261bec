"""Stored values kept encoded: framework state that is read but not decoded until needed.

A Trainable loaded in a process that only describes, selects or forwards it (the caller of a
compute context, a Repo query) must not import its framework: TensorFlow would take the GPU,
and TF and torch in one process can crash. ``LoadStore.get_deferred(name)`` therefore returns
a :class:`StoredValue`: the serializer's metadata and the bytes of the members it wrote, read
and checksum-verified, but not decoded. ``load()`` decodes it (importing the framework then);
``SaveStore.put(name, stored)`` writes it back unchanged, without decoding it.

Member names: a serializer refers to its members by the names it was given when it wrote them
(in its metadata, or inside its own members, as skops does). A stored value keeps those
*original* names; written into another file its members get new names, and the entry's
``"members"`` map (original name -> name in this file) lets the reader translate.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from dryml.errors import DrymlError, FormatError, SerializationError

__all__ = ["Deferred", "SharedReader", "StoredValue", "load_entry", "member_map"]


class StoredValue:
    """A value from a file, still in its serializer's encoding (see the module docstring).

    ``serializer`` and ``package`` name what decodes it; ``frameworks`` holds the framework
    versions the file recorded. Build one through ``LoadStore.get_deferred``.
    """

    __slots__ = ("_compressed", "_decoded", "_entry", "_members", "_reader", "where")

    def __init__(self, entry: Mapping[str, Any] | None, members: dict[str, Any],
                 reader: SharedReader | None, where: str, decoded: Any = ...,
                 compressed: frozenset[str] = frozenset()) -> None:
        self._entry = dict(entry) if entry is not None else None
        self._members = members
        self._compressed = compressed  # original names of the members stored compressed
        self._reader = reader if reader is not None else SharedReader({})
        self.where = where
        self._decoded = decoded

    @classmethod
    def ready(cls, value: Any, where: str) -> StoredValue:
        """A stored value that was decoded already (plain values need no framework)."""
        return cls(None, {}, None, where, decoded=value)

    @property
    def frameworks(self) -> dict[str, str]:
        """The framework versions the file it came from recorded."""
        return self._reader.frameworks

    @property
    def serializer(self) -> str | None:
        """The serializer's name (None for a plain value)."""
        return None if self._entry is None else str(self._entry.get("serializer"))

    @property
    def package(self) -> str | None:
        """The plugin distribution that wrote it (None for a plain value)."""
        return None if self._entry is None else str(self._entry.get("package"))

    @property
    def nbytes(self) -> int:
        """Bytes held by its members."""
        return sum(int(m.nbytes) if isinstance(m, np.ndarray) else len(m)
                   for m in self._members.values())

    def load(self) -> Any:
        """Decode the value (its framework is imported now). Each call decodes again."""
        if self._entry is None:
            return self._decoded
        with self._reader.serving(self):
            return load_entry(self._entry, self._reader, self.where)

    def write(self, session: Any) -> dict[str, Any]:
        """The entry for a new file: members added to ``session`` (a SaveSession), renamed,
        each compressed as it was in the file it came from."""
        if self._entry is None:
            return session.encode_state(self._decoded, self.where)  # type: ignore[no-any-return]
        renamed = {}
        for original, data in self._members.items():
            compress = original in self._compressed
            renamed[original] = (session.add_array(data, compress=compress)
                                 if isinstance(data, np.ndarray)
                                 else session.add_bytes(data, compress=compress))
        package = str(self._entry.get("package"))
        session.record_version(package)
        for framework in self._reader.frameworks.items():
            session.record_version(package, framework=framework)
        return {"serializer": self._entry.get("serializer"), "package": self._entry.get("package"),
                "meta": self._entry.get("meta"), "members": renamed}

    def __repr__(self) -> str:
        if self._entry is None:
            return f"StoredValue(ready {type(self._decoded).__name__})"
        return (f"StoredValue(serializer={self.serializer!r}, package={self.package!r}, "
                f"{len(self._members)} members, {self.nbytes} bytes)")


class Deferred:
    """An attribute for framework state that may still be encoded: reading it decodes a
    :class:`StoredValue` (once) and returns the value; :meth:`raw` gives what is held.

    >>> class Model(Object):                                # doctest: +SKIP
    ...     fitted = Deferred()          # stored under the name "fitted"
    ...     def save_object_imp(self, store):
    ...         Model.fitted.save(self, store)   # not decoded to be saved
    ...     def load_object_imp(self, store):
    ...         Model.fitted.load(self, store)   # decoded when self.fitted is first read
    """

    def __init__(self, expect: Callable[[Any], bool] | None = None, what: str = "") -> None:
        #: ``expect(value)`` checks a decoded value (``what`` names what it must be): a file
        #: could hold a plain value in its place, which loaded and then failed at first use
        #: with a raw AttributeError
        self._expect, self._what = expect, what

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name
        self._slot = f"_dry_deferred_{name}"

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        value = obj.__dict__.get(self._slot)
        if isinstance(value, StoredValue):
            decoded = value.load()
            if self._expect is not None and decoded is not None and not self._expect(decoded):
                raise FormatError(f"the stored {self._name!r} of this "
                                  f"{type(obj).__qualname__} is a {type(decoded).__name__}, "
                                  f"not {self._what or 'what it saves'}: the file was altered")
            value = obj.__dict__[self._slot] = decoded
        return value

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self._slot] = value

    def raw(self, obj: Any) -> Any:
        """What ``obj`` holds: the value, a still-encoded StoredValue, or None."""
        return obj.__dict__.get(self._slot)

    def save(self, obj: Any, store: Any) -> None:
        """``store.put`` what ``obj`` holds under the attribute's name (nothing if None);
        a value never used since it was loaded goes back without being decoded."""
        held = self.raw(obj)
        if held is not None:
            store.put(self._name, held)

    def load(self, obj: Any, store: Any) -> None:
        """Set the attribute from ``store`` (still encoded), or to None when it is absent."""
        self.__set__(obj, store.get_deferred(self._name) if self._name in store else None)


def load_entry(entry: Mapping[str, Any], reader: Any, where: str) -> Any:
    """Decode a serializer's entry with ``reader``; any failure is a dryml error naming
    ``where`` (BackendUnavailableError when the serializer's plugin is missing)."""
    from dryml import _registry

    serializer = _registry.serializer_by_name(str(entry.get("serializer")),
                                              str(entry.get("package")))
    try:
        return serializer.impl.load(entry.get("meta"), reader)
    except DrymlError:
        raise
    except Exception as exc:  # noqa: BLE001 - say which value failed
        raise SerializationError(f"{where}: serializer {serializer.name!r} could not read its "
                                 f"data: {type(exc).__name__}: {exc}") from exc


def member_map(entry: Mapping[str, Any], where: str) -> dict[str, str] | None:
    """An entry's ``"members"`` map (original name -> name in this file), checked."""
    found = entry.get("members")
    if found is None:
        return None
    if not isinstance(found, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in found.items()):
        raise FormatError(f"{where}: 'members' must map member names to member names")
    return found


class SharedReader:
    """The reader serializers get for the stored values of one file.

    One per file, so that a serializer's once-per-file checks (version warnings keyed on the
    reader) stay once per file; :meth:`serving` says whose members it serves.
    """

    def __init__(self, frameworks: Mapping[str, str], trust: Any = None,
                 limits: Any = None) -> None:
        self.frameworks = dict(frameworks)
        #: the loading call's trust policy (``load_object(trust=...)``), which serializers
        #: that resolve types themselves (skops) consult when the value is decoded later
        self.trust = trust
        #: the loading call's :class:`~dryml.format.Limits` (None: the defaults)
        self.limits = limits
        self._current: list[StoredValue] = []

    @contextlib.contextmanager
    def serving(self, stored: StoredValue) -> Iterator[None]:
        """Serve ``stored``'s members for the ``with`` block (nests)."""
        self._current.append(stored)
        try:
            yield
        finally:
            self._current.pop()

    def _member(self, name: str) -> Any:
        stored = self._current[-1]
        try:
            return stored._members[name]
        except (KeyError, TypeError):
            raise FormatError(f"{stored.where}: the value refers to a member {name!r} it does "
                              "not hold") from None

    def get_array(self, name: str) -> Any:
        data = self._member(name)
        if not isinstance(data, np.ndarray):
            raise FormatError(f"{self._current[-1].where}: member {name!r} is not an array")
        return data

    def get_bytes(self, name: str) -> bytes:
        data = self._member(name)
        if isinstance(data, np.ndarray):
            raise FormatError(f"{self._current[-1].where}: member {name!r} is an array")
        return data  # type: ignore[no-any-return]

    def member_size(self, name: str) -> int:
        data = self._member(name)
        return int(data.nbytes) if isinstance(data, np.ndarray) else len(data)

    def framework_version(self, framework: str) -> str | None:
        return self.frameworks.get(framework)
