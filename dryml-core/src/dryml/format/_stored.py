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

from collections.abc import Mapping
from typing import Any

import numpy as np

from dryml.errors import DrymlError, FormatError, SerializationError

__all__ = ["RenamingReader", "StoredValue", "member_map"]


class StoredValue:
    """A value from a file, still in its serializer's encoding (see the module docstring).

    ``serializer`` and ``package`` name what decodes it; ``frameworks`` holds the framework
    versions the file recorded. Build one through ``LoadStore.get_deferred``.
    """

    __slots__ = ("_decoded", "_entry", "_members", "frameworks", "where")

    def __init__(self, entry: Mapping[str, Any] | None, members: dict[str, Any],
                 frameworks: Mapping[str, str], where: str, decoded: Any = ...) -> None:
        self._entry = dict(entry) if entry is not None else None
        self._members = members
        self.frameworks = dict(frameworks)
        self.where = where
        self._decoded = decoded

    @classmethod
    def ready(cls, value: Any, where: str) -> StoredValue:
        """A stored value that was decoded already (plain values need no framework)."""
        return cls(None, {}, {}, where, decoded=value)

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
        from dryml import _registry

        serializer = _registry.serializer_by_name(str(self._entry.get("serializer")),
                                                  str(self._entry.get("package")))
        try:
            return serializer.impl.load(self._entry.get("meta"), _MemoryReader(self))
        except DrymlError:
            raise
        except Exception as exc:  # noqa: BLE001 - say which value failed
            raise SerializationError(f"{self.where}: serializer {serializer.name!r} could not "
                                     f"read its data: {type(exc).__name__}: {exc}") from exc

    def write(self, session: Any) -> dict[str, Any]:
        """The entry for a new file: members added to ``session`` (a SaveSession), renamed."""
        if self._entry is None:
            return session.encode_state(self._decoded, self.where)  # type: ignore[no-any-return]
        renamed = {}
        for original, data in self._members.items():
            renamed[original] = (session.add_array(data) if isinstance(data, np.ndarray)
                                 else session.add_bytes(data))
        session.record_version(str(self._entry.get("package")))
        for framework, version in self.frameworks.items():
            session.frameworks.setdefault(framework, version)
        return {"serializer": self._entry.get("serializer"), "package": self._entry.get("package"),
                "meta": self._entry.get("meta"), "members": renamed}

    def __repr__(self) -> str:
        if self._entry is None:
            return f"StoredValue(ready {type(self._decoded).__name__})"
        return (f"StoredValue(serializer={self.serializer!r}, package={self.package!r}, "
                f"{len(self._members)} members, {self.nbytes} bytes)")


def member_map(entry: Mapping[str, Any], where: str) -> dict[str, str] | None:
    """An entry's ``"members"`` map (original name -> name in this file), checked."""
    found = entry.get("members")
    if found is None:
        return None
    if not isinstance(found, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in found.items()):
        raise FormatError(f"{where}: 'members' must map member names to member names")
    return found


class RenamingReader:
    """A reader that translates a serializer's original member names into this file's."""

    def __init__(self, reader: Any, names: Mapping[str, str]) -> None:
        self._reader = reader
        self._names = names

    def _name(self, name: str) -> str:
        return self._names.get(name, name)

    def get_array(self, name: str) -> Any:
        return self._reader.get_array(self._name(name))

    def get_bytes(self, name: str) -> bytes:
        return self._reader.get_bytes(self._name(name))  # type: ignore[no-any-return]

    def framework_version(self, framework: str) -> str | None:
        return self._reader.framework_version(framework)  # type: ignore[no-any-return]


class _MemoryReader:
    """Serves a stored value's members (by their original names) to its serializer."""

    def __init__(self, stored: StoredValue) -> None:
        self._stored = stored

    def _member(self, name: str) -> Any:
        try:
            return self._stored._members[name]
        except (KeyError, TypeError):
            raise FormatError(f"{self._stored.where}: the value refers to a member {name!r} "
                              "it does not hold") from None

    def get_array(self, name: str) -> Any:
        data = self._member(name)
        if not isinstance(data, np.ndarray):
            raise FormatError(f"{self._stored.where}: member {name!r} is not an array")
        return data

    def get_bytes(self, name: str) -> bytes:
        data = self._member(name)
        if isinstance(data, np.ndarray):
            raise FormatError(f"{self._stored.where}: member {name!r} is an array, not bytes")
        return data  # type: ignore[no-any-return]

    def framework_version(self, framework: str) -> str | None:
        return self._stored.frameworks.get(framework)
