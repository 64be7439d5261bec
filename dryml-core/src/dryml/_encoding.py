"""Lossless, readable JSON for argument values and stored state.

JSON keeps None, bool, int, str, lists, finite floats and str-keyed dicts as they are; every
other value is a small tagged dict ``{"__dry__": kind, ...}``:

=========  ============================================================================
kind       fields
=========  ============================================================================
float      ``value``: ``"nan"``, ``"inf"`` or ``"-inf"``
bytes      ``b64`` (inline) or ``member`` (a binary member of the .dry file)
tuple      ``items``
dict       ``items``: ``[[key, value], ...]`` (non-str keys, or a key named ``__dry__``)
class      ``path``: ``"module:QualName"``
def        ``cls``, ``dry_mut``, ``dry_args``, ``dry_kwargs`` (a nested ObjectDef)
object     ``id``: the ``dry_id`` of another node of the file's object graph
codec      ``codec``, ``package``, ``data``: a plugin's argument codec
=========  ============================================================================
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dryml import _registry
from dryml.errors import DrymlError, FormatError, SerializationError

if TYPE_CHECKING:
    from dryml._object import Object
    from dryml._trust import TrustPolicy
    from dryml.format import MemberReader, MemberWriter

__all__ = ["TAG", "Decoder", "Encoder"]

TAG = "__dry__"
INLINE_BYTES = 4096
_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


class Encoder:
    """Turns argument values into JSON; binary data goes to ``writer`` when one is given."""

    def __init__(
        self, writer: MemberWriter | None = None,
        on_object: Callable[[Object], Any] | None = None,
    ) -> None:
        self.writer = writer
        self.on_object = on_object

    def encode(self, value: Any) -> Any:
        tp = type(value)
        if value is None or tp is bool or tp is int or tp is str:
            return value
        if tp is float:
            if math.isfinite(value):
                return value
            return {TAG: "float", "value": "nan" if value != value else repr(value)}
        if tp is list:
            return [self.encode(v) for v in value]
        if tp is tuple:
            return {TAG: "tuple", "items": [self.encode(v) for v in value]}
        if tp is dict:
            if all(type(k) is str for k in value) and TAG not in value:
                return {k: self.encode(v) for k, v in value.items()}
            return {TAG: "dict", "items": [[self.encode(k), self.encode(v)]
                                           for k, v in value.items()]}
        # The imports (cycles at module level) only past the plain JSON values above: they
        # cost about a microsecond each, and this runs once per argument value of every save.
        return self._encode_other(value, tp)

    def _encode_other(self, value: Any, tp: type) -> Any:
        from dryml._object import Object
        from dryml._objectdef import ObjectDef
        from dryml._trust import class_path

        if tp is bytes:
            if self.writer is not None and len(value) > INLINE_BYTES:
                return {TAG: "bytes", "member": self.writer.add_bytes(value)}
            return {TAG: "bytes", "b64": base64.b64encode(value).decode("ascii")}
        if isinstance(value, type):
            return {TAG: "class", "path": class_path(value)}
        if isinstance(value, ObjectDef):
            return {TAG: "def", "cls": class_path(value.cls), "dry_mut": value.dry_mut,
                    "dry_args": [self.encode(v) for v in value.args],
                    "dry_kwargs": self.encode(dict(value.kwargs))}
        if isinstance(value, Object):
            if self.on_object is not None:
                return {TAG: "object", "id": self.on_object(value)}
            return self.encode(value.definition())
        codec = _registry.arg_codec_for(tp)
        if codec is None:
            raise FormatError(f"no argument codec for {tp.__module__}.{tp.__qualname__}")
        record = getattr(self.writer, "record_version", None)
        if record is not None:  # the file names the package it needs (see missing_backend)
            record(codec.package)
        return {TAG: "codec", "codec": codec.name, "package": codec.package,
                "data": codec.impl.encode(value, self.writer)}


class Decoder:
    """Reads what :class:`Encoder` wrote; malformed input raises FormatError, never more."""

    def __init__(
        self, trust: TrustPolicy, reader: MemberReader | None = None,
        objects: dict[str, Object] | None = None,
    ) -> None:
        self.trust = trust
        self.reader = reader
        self.objects = objects

    def decode(self, data: Any, path: str = "") -> Any:
        tp = type(data)
        if data is None or tp is bool or tp is int or tp is str or tp is float:
            return data
        if tp is list:
            return [self.decode(v, f"{path}[{i}]") for i, v in enumerate(data)]
        if tp is not dict:
            raise FormatError(f"unexpected {tp.__name__} at {path or 'top level'}")
        kind = data.get(TAG)
        if kind is None:
            return {k: self.decode(v, f"{path}[{k!r}]") for k, v in data.items()}
        method = getattr(self, f"_decode_{kind}", None) if isinstance(kind, str) else None
        if method is None:
            raise FormatError(f"unknown value kind {kind!r} at {path or 'top level'}")
        try:
            return method(data, path)
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise FormatError(
                f"malformed {kind!r} value at {path or 'top level'}: {type(exc).__name__}: {exc}"
            ) from None

    def _decode_float(self, data: dict[str, Any], path: str) -> float:
        return _NONFINITE[data["value"]]

    def _decode_tuple(self, data: dict[str, Any], path: str) -> tuple[Any, ...]:
        return tuple(self.decode(_list(data["items"]), path))

    def _decode_dict(self, data: dict[str, Any], path: str) -> dict[Any, Any]:
        out = {}
        for i, pair in enumerate(_list(data["items"])):
            key, value = _list(pair)
            out[self.decode(key, f"{path}<key {i}>")] = self.decode(value, f"{path}[{key!r}]")
        return out

    def _decode_bytes(self, data: dict[str, Any], path: str) -> bytes:
        if "member" in data:
            return self._reader(path).get_bytes(_str(data["member"]))
        return base64.b64decode(_str(data["b64"]), validate=True)

    def _decode_class(self, data: dict[str, Any], path: str) -> type:
        return self.trust.resolve_arg_class(data["path"])

    def _decode_def(self, data: dict[str, Any], path: str) -> Any:
        from dryml._objectdef import ObjectDef

        cls = self.trust.resolve_object_class(data["cls"])
        args = self.decode(_list(data.get("dry_args", [])), f"{path}.dry_args")
        kwargs = self.decode(_dict(data.get("dry_kwargs", {})), f"{path}.dry_kwargs")
        if not all(isinstance(k, str) for k in kwargs):
            raise FormatError(f"dry_kwargs keys must be str at {path or 'top level'}")
        mut = data.get("dry_mut", False)
        if type(mut) is not bool:  # bool("false") is True
            raise FormatError(f"dry_mut must be true or false at {path or 'top level'}, got "
                              f"{mut!r:.40}")
        return ObjectDef(cls, *args, dry_mut=mut, **kwargs)

    def _decode_object(self, data: dict[str, Any], path: str) -> Any:
        if self.objects is None:
            raise FormatError(f"an object reference at {path} is only valid inside a .dry file")
        dry_id = _str(data["id"])
        if dry_id not in self.objects:
            raise FormatError(f"reference at {path} to object {dry_id!r}, which is not "
                              "defined before it in the file")
        return self.objects[dry_id]

    def _decode_codec(self, data: dict[str, Any], path: str) -> Any:
        codec = _registry.arg_codec_by_name(_str(data["codec"]), _str(data["package"]))
        try:
            return codec.impl.decode(data["data"], self.reader)
        except DrymlError:
            raise
        except Exception as exc:  # noqa: BLE001 - a plugin's decode: a dryml error, located
            # (a crafted value made a plugin's codec raise ZeroDivisionError out of load_object)
            raise SerializationError(
                f"the {codec.name!r} argument codec of {codec.package} could not read the "
                f"value at {path or 'top level'}: {type(exc).__name__}: {exc}") from exc

    def _reader(self, path: str) -> MemberReader:
        if self.reader is None:
            raise FormatError(f"a member reference at {path} is only valid inside a .dry file")
        return self.reader


def _list(value: Any) -> list[Any]:
    if type(value) is not list:
        raise TypeError(f"expected a list, got {type(value).__name__}")
    return value


def _dict(value: Any) -> dict[str, Any]:
    if type(value) is not dict:
        raise TypeError(f"expected a dict, got {type(value).__name__}")
    return value


def _str(value: Any) -> str:
    if type(value) is not str:
        raise TypeError(f"expected a str, got {type(value).__name__}")
    return value
