"""Named-member stores handed to ``save_object_imp`` / ``load_object_imp``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any

from dryml.errors import FormatError, SerializationError

if TYPE_CHECKING:
    from dryml._io import LoadSession, SaveSession
    from dryml.format._container import Limits
    from dryml.format._manifest import Manifest
    from dryml.format._stored import StoredValue

__all__ = ["LoadStore", "SaveStore", "read_manifest", "verify"]


class SaveStore:
    """Named values of one Object being saved.

    ``put(name, value)`` takes numpy arrays, bytes, JSON-able values (tuples and non-str keys
    kept), other Objects, any type a plugin registers a serializer for, and a
    :class:`~dryml.format.StoredValue` from ``LoadStore.get_deferred`` (written back as read).
    """

    def __init__(self, session: SaveSession, state: dict[str, Any], owner: str) -> None:
        self._session = session
        self._state = state
        self._owner = owner

    def put(self, name: str, value: Any) -> None:
        """Store ``value`` under ``name`` (each name once per object)."""
        if not isinstance(name, str) or not name:
            raise SerializationError(f"{self._owner}: store names are non-empty str, got {name!r}")
        if name in self._state:
            raise SerializationError(
                f"{self._owner}: the name {name!r} was already put by this object (a base "
                "class's save_object_imp may use it too; choose another name). dryml calls "
                "every class's save_object_imp itself, base class first: one that calls "
                "super().save_object_imp() puts the base's names twice")
        self._state[name] = self._session.encode_state(value, f"{self._owner}: store[{name!r}]")

    def __contains__(self, name: object) -> bool:
        return name in self._state

    def names(self) -> list[str]:
        """Names put so far."""
        return list(self._state)


class LoadStore:
    """Named values of one Object being loaded (the mirror of :class:`SaveStore`)."""

    def __init__(self, session: LoadSession, state: dict[str, Any], owner: str) -> None:
        self._session = session
        self._state = state
        self._owner = owner

    def get(self, name: str, default: Any = ...) -> Any:
        """The value put under ``name``; KeyError-like FormatError if absent and no default."""
        if name not in self._state:
            if default is not ...:
                return default
            raise FormatError(f"{self._owner}: the file has no stored value {name!r} "
                              f"(it has {sorted(self._state)})")
        return self._session.decode_state(self._state[name], f"{self._owner}: store[{name!r}]")

    def get_deferred(self, name: str) -> StoredValue:
        """The value put under ``name``, read but not decoded: :meth:`StoredValue.load`
        decodes it (importing its framework only then), and ``SaveStore.put`` writes it back
        unchanged. For framework state that a process may hold without using it."""
        if name not in self._state:
            raise FormatError(f"{self._owner}: the file has no stored value {name!r} "
                              f"(it has {sorted(self._state)})")
        return self._session.stored_state(self._state[name], f"{self._owner}: store[{name!r}]")

    def __contains__(self, name: object) -> bool:
        return name in self._state

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._state))

    def names(self) -> list[str]:
        """Every stored name."""
        return list(self._state)


def read_manifest(source: str | os.PathLike[str] | IO[bytes]) -> Manifest:
    """The checked manifest of a ``.dry`` file; imports no class it names."""
    from dryml._io import open_container

    with open_container(source, None) as (_, manifest):
        return manifest


def verify(source: str | os.PathLike[str] | IO[bytes], limits: Limits | None = None) -> int:
    """Check every member of a ``.dry`` file against its checksum, streaming the stored
    bytes (nothing is decoded or imported); returns the number of members checked.

    Raises :class:`~dryml.errors.ChecksumError` naming the first damaged member. Use it after
    ``load_object(path, mmap=True, verify=False)``, which checks only bounds and headers.
    """
    from dryml._io import open_container

    with open_container(source, limits) as (reader, manifest):
        for name in manifest.members:
            reader.verify_member(name)
        return len(manifest.members)
