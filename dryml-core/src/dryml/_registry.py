"""Cached lookups over plugin records: codecs and serializers by type, trusted modules."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from dryml._forksafe import ForkSafeLock
from dryml.errors import BackendUnavailableError
from dryml.records import ArgCodecRecord, SerializerRecord, load_ref

__all__ = [
    "Resolved",
    "arg_codec_by_name",
    "arg_codec_for",
    "clear_caches",
    "missing_backend",
    "serializer_by_name",
    "serializer_for",
    "trusted_modules",
    "type_path",
]

_lock = ForkSafeLock()


@attrs.frozen
class Resolved:
    """A record together with its loaded implementation."""

    name: str
    package: str
    impl: Any


def type_path(tp: type) -> str:
    """``"module:QualName"`` of a class, the form records and files use."""
    return f"{tp.__module__}:{tp.__qualname__}"


def _index(hook: str) -> dict[str, tuple[str, ArgCodecRecord | SerializerRecord]]:
    """Every record of ``hook`` by name. Plugins come in a fixed order (core first, then the
    installed ones by entry-point name); when two claim one name, or one type, the first keeps
    it and the other record is left out with a warning naming both. Before, a second name
    failed every save of anything, and a second type silently replaced the first: any
    installed package could take over how numpy arrays are saved (found by review)."""
    from dryml.plugins import get_plugin_manager

    manager = get_plugin_manager()
    by_name: dict[str, tuple[str, ArgCodecRecord | SerializerRecord]] = {}
    owner: dict[str, str] = {}  # type path -> record name
    for plugin, record in manager.records(hook):
        taken = [tp for tp in record.types if tp in owner and by_name[owner[tp]][0] != plugin]
        if record.name in by_name and by_name[record.name][0] != plugin:
            manager.warn_claimed(hook, by_name[record.name][0], plugin,
                                 f"the name {record.name!r}")
            continue
        if taken:
            manager.warn_claimed(hook, by_name[owner[taken[0]]][0], plugin,
                                 f"the type {taken[0]!r}")
            continue
        by_name[record.name] = (plugin, record)
        for tp in record.types:
            owner.setdefault(tp, record.name)
    return by_name


@functools.cache
def _by_name(hook: str) -> dict[str, tuple[str, ArgCodecRecord | SerializerRecord]]:
    with _lock:
        return _index(hook)


@functools.cache
def _by_type_path(hook: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, (_, rec) in _by_name(hook).items():
        for tp in rec.types:
            found.setdefault(tp, name)
    return found


@functools.cache
def _load(hook: str, name: str) -> Resolved:
    _, record = _by_name(hook)[name]
    try:
        impl = load_ref(record.impl)
    except ImportError as exc:
        raise BackendUnavailableError(
            f"{record.name!r} from {record.package} cannot be loaded ({exc}); install what it "
            f"needs, e.g. pip install --upgrade {record.package}") from exc
    return Resolved(record.name, record.package, impl)


def _for_type(hook: str, tp: type) -> Resolved | None:
    paths = _by_type_path(hook)
    for klass in tp.__mro__:
        name = paths.get(type_path(klass))
        if name is not None:
            return _load(hook, name)
    return None


# Per-type caches (plain dicts: functools.cache cannot be typed for `type` keys).
_codec_cache: dict[type, Resolved | None] = {}
_serializer_cache: dict[type, Resolved | None] = {}


def arg_codec_for(tp: type) -> Resolved | None:
    """The argument codec for values of type ``tp`` (matched over its MRO), or None."""
    try:
        return _codec_cache[tp]
    except KeyError:
        found = _codec_cache[tp] = _for_type("dryml_arg_codecs", tp)
        return found


def serializer_for(tp: type) -> Resolved | None:
    """The store serializer for values of type ``tp`` (matched over its MRO), or None."""
    try:
        return _serializer_cache[tp]
    except KeyError:
        found = _serializer_cache[tp] = _for_type("dryml_serializers", tp)
        return found


def _require(hook: str, name: str, package: str, what: str) -> None:
    if name not in _by_name(hook):
        raise BackendUnavailableError(
            f"this file needs the package {package!r} (for its {what} {name!r}), which is "
            f"not installed or not active here: pip install {package} (`dryml plugins` lists "
            "the active plugins)"
        )


def missing_backend(cls_paths: Iterable[str], plugins: Mapping[str, Any]
                    ) -> BackendUnavailableError | None:
    """Why a file's classes cannot be found, as one error naming the package to install:
    when the module of one of ``cls_paths`` is not installed and a plugin the file was
    written with (``plugins``: distribution -> version, from its manifest) is not installed
    either. None otherwise (the caller's own error then stands).

    Finding out imports nothing: only whether a top-level module exists is asked."""
    import importlib.util
    import sys

    missing = {str(p): str(v) for p, v in plugins.items() if not _installed(str(p))}
    if not missing:
        return None
    for cls_path in cls_paths:
        top = str(cls_path).partition(":")[0].split(".")[0]
        if not top.isidentifier() or top in sys.modules or importlib.util.find_spec(top):
            continue
        named = [p for p in missing if p.replace("-", "_").lower() == top.lower()]
        named = named or list(missing)
        written = ", ".join(f"{p} {missing[p]}" for p in named)
        many = len(named) > 1
        return BackendUnavailableError(
            f"this file needs the package{'s' if many else ''} "
            f"{', '.join(repr(p) for p in named)} (it holds {cls_path!r}, written with "
            f"{written}), which {'are' if many else 'is'} not installed here: "
            f"pip install {' '.join(named)}")
    return None


@functools.cache
def _installed(distribution: str) -> bool:
    import importlib.metadata

    try:
        importlib.metadata.distribution(distribution)
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return False
    return True


def _by_name_or_missing(hook: str, name: str, package: str, what: str) -> Resolved:
    _require(hook, name, package, what)
    return _load(hook, name)


def arg_codec_by_name(name: str, package: str) -> Resolved:
    """The argument codec a file names; BackendUnavailableError naming ``package`` if absent."""
    return _by_name_or_missing("dryml_arg_codecs", name, package, "argument codec")


def require_serializer(name: str, package: str) -> None:
    """BackendUnavailableError naming ``package`` when no active plugin has the serializer
    ``name``; its implementation (and so its framework) is not imported."""
    _require("dryml_serializers", name, package, "serializer")


def serializer_by_name(name: str, package: str) -> Resolved:
    """The serializer a file names; BackendUnavailableError naming ``package`` if absent."""
    return _by_name_or_missing("dryml_serializers", name, package, "serializer")


@functools.cache
def trusted_modules() -> tuple[str, ...]:
    """Module prefixes every plugin trusts (``dryml_trusted_modules``)."""
    from dryml.plugins import get_plugin_manager

    out: list[str] = []
    for _, entry in get_plugin_manager().records("dryml_trusted_modules"):
        out.append(str(entry))
    return tuple(out)


def clear_caches() -> None:
    """Forget every cached lookup (after plugins change)."""
    for fn in (_by_name, _by_type_path, _load, trusted_modules):
        fn.cache_clear()
    _codec_cache.clear()
    _serializer_cache.clear()
