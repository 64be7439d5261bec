"""The ``.dry`` file format: stores for Object state, and the interfaces plugins implement.

See ``docs/format.md`` for the byte layout and the manifest. Plugins that put framework values
into files implement :class:`Serializer` (for ``store.put``) or :class:`ArgCodec` (for
constructor arguments) and register them with the ``dryml_serializers`` /
``dryml_arg_codecs`` hooks.
"""

from __future__ import annotations

from typing import Any, Protocol

from dryml.format._container import FORMAT_VERSION, Limits, MemberInfo
from dryml.format._manifest import Manifest, NodeRecord
from dryml.format._store import LoadStore, SaveStore, read_manifest, verify
from dryml.format._stored import Deferred, StoredValue

__all__ = [
    "FORMAT_VERSION",
    "ArgCodec",
    "Deferred",
    "Limits",
    "LoadStore",
    "Manifest",
    "MemberInfo",
    "MemberReader",
    "MemberWriter",
    "NodeRecord",
    "SaveStore",
    "Serializer",
    "StoredValue",
    "read_manifest",
    "verify",
]


class MemberWriter(Protocol):
    """Where serializers and codecs put binary data while a file is written."""

    def add_array(self, array: Any, *, compress: bool = True) -> str:
        """Store a numpy array as a ``.npy`` member; returns the member name.

        ``compress=False`` stores it as it is even when compressing would pay (for data whose
        owner prefers save speed to size); ``True`` lets the file decide."""

    def add_bytes(self, data: bytes | memoryview, *, compress: bool = True) -> str:
        """Store raw bytes as a member; returns the member name (``compress`` as above).
        A ``memoryview`` is read before this returns and never kept, so it may view memory
        its owner reuses afterwards (a framework's own output buffer: no copy)."""

    def record_version(self, package: str, version: str | None = None,
                       framework: tuple[str, str] | None = None) -> None:
        """Record a plugin's version (and a framework's, e.g. ``("torch", "2.13.0")``)."""


class MemberReader(Protocol):
    """Where serializers and codecs read binary members back (checksums verified).

    A reader is valid only during the call it is passed to: the file is closed when the load
    returns, so read every member the value needs before returning, and do not keep the
    reader (nor ask it for members later). Read each member once: a load reads at most what
    the members hold, so a second read of one is refused (``LimitExceededError``) as a file
    that names a member again and again would be."""

    def get_array(self, name: str) -> Any:
        """A ``.npy`` member as a numpy array."""

    def get_bytes(self, name: str) -> bytes:
        """A member's raw bytes."""

    def member_size(self, name: str) -> int:
        """Bytes a member holds once read (a ``.npy`` member: its header and data), without
        reading it: a bound on what a value rebuilt from the file needs, to check before
        allocating (a crafted file's arguments may ask for far more than it stores)."""

    def framework_version(self, framework: str) -> str | None:
        """The framework version recorded when the file was written, if any."""


class Serializer(Protocol):
    """Puts values of some types into a store (``store.put``) and reads them back."""

    def dump(self, value: Any, writer: MemberWriter) -> Any:
        """Write ``value``; return JSON-able metadata that :meth:`load` receives."""

    def load(self, meta: Any, reader: MemberReader) -> Any:
        """Rebuild the value from ``meta`` and members; raise dryml errors on bad input."""


class ArgCodec(Protocol):
    """Lets a type be an Object constructor argument."""

    def check(self, value: Any) -> None:
        """Raise ValueError (with the reason) when this particular value cannot be recorded."""

    def encode(self, value: Any, writer: MemberWriter | None) -> Any:
        """JSON for ``value``; large data goes to ``writer`` when it is not None."""

    def decode(self, data: Any, reader: MemberReader | None) -> Any:
        """The value back from :meth:`encode`'s JSON."""

    def copy(self, value: Any) -> Any:
        """An independent copy (used by ``definition()`` and ``build()``)."""

    def equal(self, a: Any, b: Any) -> bool:
        """Structural equality (used by ``ObjectDef.__eq__``)."""
