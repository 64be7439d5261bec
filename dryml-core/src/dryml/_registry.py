"""Cached lookups over plugin records: codecs and serializers by type and name, trusted modules.

Who handles a value's type, whatever order plugins come in (docs/plugins.md, "Who handles a
type"):

* Core's types are reserved for core, in every hook: no plugin record may name a type of
  numpy or of dryml, or a builtin core saves itself (``object``, ``int``, ``dict``...); such
  a record is left out with a :class:`DrymlPluginWarning`. A type core's records claim
  counts as claimed by core in every hook, so a plugin's record for a class farther along a
  value's MRO (``builtins:complex`` for ``numpy.complex128``) never takes core's values.
* A name or a type that two plugins claim in one hook is used by neither: saving a value of
  that type, or loading a file that names that serializer or codec, raises
  :class:`PluginError` naming both and how to disable one. Against core, core keeps it.
* Otherwise the nearest class of a value's MRO that a record claims decides, as with
  ``functools.singledispatch``: a backend for a subclass (xgboost's ``XGBModel``, a
  scikit-learn estimator; an ndarray subclass, which core refuses to save) handles its own
  classes. When the nearest class and a class farther along the MRO that another plugin
  claims come from one top-level package (a plugin claims part of a framework another
  plugin handles), a warning names both.

Reserved types and claims of one name or type are known without importing anything, so
``dryml plugins`` lists them (:func:`conflicts`) and ``--check`` fails on them.
"""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from dryml._forksafe import ForkSafeLock
from dryml.errors import BackendUnavailableError, DrymlPluginWarning, PluginError
from dryml.records import ArgCodecRecord, SerializerRecord, load_ref

__all__ = [
    "Conflict",
    "Resolved",
    "arg_codec_by_name",
    "arg_codec_for",
    "clear_caches",
    "conflicts",
    "missing_backend",
    "serializer_by_name",
    "serializer_for",
    "trusted_modules",
    "type_path",
]

_lock = ForkSafeLock()

_Record = ArgCodecRecord | SerializerRecord

#: The hooks whose records claim types, and what their records are called in messages.
_TYPED_HOOKS = {"dryml_serializers": "serializer", "dryml_arg_codecs": "argument codec"}

#: Builtins that core saves itself (and ``object``, the base of every value).
_CORE_BUILTINS = frozenset(
    f"builtins:{tp.__qualname__}"
    for tp in (object, type, type(None), bool, int, float, str, bytes, list, tuple, dict))

#: Only core's records may name types of these packages (and of the packages its records name).
_CORE_PACKAGES = frozenset({"dryml"})


@attrs.frozen
class Resolved:
    """A record together with its loaded implementation."""

    name: str
    package: str
    impl: Any


@attrs.frozen
class Conflict:
    """A claim of plugins on one name or type that is not used as made (``dryml plugins``)."""

    hook: str
    plugins: tuple[str, ...]
    message: str


@attrs.frozen
class _Index:
    by_name: dict[str, tuple[str, _Record]]  # usable records: name -> (plugin, record)
    by_type: dict[str, str]  # type path -> name of the record that handles it
    contested_names: dict[str, str]  # a name two plugins claim -> why it is not used
    contested_types: dict[str, str]  # a type path two plugins claim -> why it is not used
    conflicts: tuple[Conflict, ...]


def type_path(tp: type) -> str:
    """``"module:QualName"`` of a class, the form records and files use."""
    return f"{tp.__module__}:{tp.__qualname__}"


def _top(path: str) -> str:
    return path.partition(":")[0].split(".")[0]


#: Bumped by :func:`clear_caches`: a lookup built while plugins changed (a plugin found
#: broken while its records of another hook were read) is built again, never cached.
_generation = 0
_built: dict[Any, Any] = {}


def _once(key: Any, build: Any) -> Any:
    """``build()``, cached under ``key`` unless the plugins changed while it ran."""
    try:
        return _built[key]
    except KeyError:
        pass
    while True:
        seen = _generation
        value = build()
        with _lock:
            if seen == _generation:
                _built[key] = value
                return value


def plugin_package(module: str) -> str | None:
    """The distribution whose dryml plugin (entry point) lives in the top-level package of
    ``module`` (``dryml_sklearn.models`` -> ``dryml-sklearn``), or None (core, the caller's
    modules): a file holding a plugin's classes names the package to install, also when none
    of the plugin's serializers wrote into it, and when this process blocks the plugin."""
    packages: dict[str, str] = _once("plugin-packages", _read_plugin_packages)
    return packages.get(module.partition(".")[0])


def _read_plugin_packages() -> dict[str, str]:
    """Top-level package -> distribution of every ``dryml`` entry point, read from the
    installed metadata: no plugin is imported, blocked and broken ones count too."""
    import importlib.metadata as md

    from dryml.hookspecs import PROJECT_NAME

    out: dict[str, str] = {}
    for ep in md.entry_points(group=PROJECT_NAME):
        top = ep.module.partition(".")[0]
        if ep.dist is not None and top != "dryml":
            out.setdefault(top, ep.dist.name)
    return out


def _core_types() -> frozenset[str]:
    """The type paths core's own records claim, in any hook."""
    return _once("core-types", _read_core_types)  # type: ignore[no-any-return]


def _read_core_types() -> frozenset[str]:
    from dryml.plugins import CORE_PLUGIN, get_plugin_manager

    manager = get_plugin_manager()
    # every typed hook's records are read here, first: a plugin found broken while they are
    # read is dropped from all hooks before any index is built
    records = [(plugin, record) for hook in _TYPED_HOOKS
               for plugin, record in manager.records(hook)]
    return frozenset(tp for plugin, record in records if plugin == CORE_PLUGIN
                     for tp in record.types)


def _reserved(path: str) -> bool:
    core = _core_types()
    return (path in core or path in _CORE_BUILTINS
            or _top(path) in _CORE_PACKAGES | {_top(tp) for tp in core})


def _who(plugin: str) -> str:
    from dryml.plugins import get_plugin_manager

    return f"{get_plugin_manager().distribution_of(plugin)} (plugin {plugin!r})"


def _neither(hook: str, what: str, plugins: tuple[str, ...], effect: str) -> Conflict:
    from dryml.plugins import _SEE_TABLE

    names = " and ".join(_who(p) for p in plugins)
    switches = " or ".join(f"DRYML_DISABLED_PLUGINS={p}" for p in plugins)
    return Conflict(hook, plugins, (
        f"{hook}: {what} is claimed by both {names}, so neither is used: {effect} is an "
        f"error until one of them is uninstalled or its plugin disabled ({switches})"
        + _SEE_TABLE))


def _build(hook: str) -> _Index:
    """Every record of ``hook`` by name and by type, and the claims that are not used."""
    from dryml.plugins import CORE_PLUGIN, get_plugin_manager

    _core_types()  # reads every typed hook first (see _read_core_types)
    manager = get_plugin_manager()
    found: list[Conflict] = []
    claims: dict[str, list[tuple[str, _Record]]] = {}
    for plugin, record in manager.records(hook):
        reserved = [tp for tp in record.types if plugin != CORE_PLUGIN and _reserved(tp)]
        if reserved:
            what = f"the type {reserved[0]!r}" + ("" if reserved[0] in _core_types() else (
                " (reserved: only dryml-core handles types of numpy and dryml, and the "
                "builtins it saves itself)"))
            found.append(Conflict(hook, (CORE_PLUGIN, plugin), manager.claimed_message(
                hook, CORE_PLUGIN, plugin, what)))
            continue
        claims.setdefault(record.name, []).append((plugin, record))
    by_name: dict[str, tuple[str, _Record]] = {}
    contested_names: dict[str, str] = {}
    owners: dict[str, dict[str, str | None]] = {}  # type path -> plugin -> record name
    for name, entries in claims.items():
        plugins = tuple(dict.fromkeys(plugin for plugin, _ in entries))
        if len(plugins) > 1 and plugins[0] != CORE_PLUGIN:
            conflict = _neither(hook, f"the name {name!r}", plugins, "loading a file that "
                                "names it, or saving a value of its types,")
            found.append(conflict)
            contested_names[name] = conflict.message
            for plugin, record in entries:
                for tp in record.types:
                    owners.setdefault(tp, {}).setdefault(plugin, None)
            continue
        by_name[name] = entries[0]
        found.extend(Conflict(hook, (plugins[0], other), manager.claimed_message(
            hook, plugins[0], other, f"the name {name!r}")) for other in plugins[1:])
        for tp in entries[0][1].types:
            owners.setdefault(tp, {}).setdefault(plugins[0], name)
    by_type: dict[str, str] = {}
    contested_types: dict[str, str] = {}
    for tp, named in owners.items():
        handler = next(iter(named.values()))
        if len(named) == 1 and handler is not None:
            by_type[tp] = handler
        elif len(named) == 1:  # only a record whose name two plugins claim
            contested_types[tp] = next(contested_names[n] for n, entries in claims.items()
                                       if n in contested_names
                                       and any(tp in r.types for _, r in entries))
        else:
            conflict = _neither(hook, f"the type {tp!r}", tuple(named),
                                "saving a value of that type")
            found.append(conflict)
            contested_types[tp] = conflict.message
    for conflict in found:
        warnings.warn(conflict.message, DrymlPluginWarning, stacklevel=4)
    return _Index(by_name, by_type, contested_names, contested_types, tuple(found))


def _index(hook: str) -> _Index:
    return _once(("index", hook), lambda: _build(hook))  # type: ignore[no-any-return]


def conflicts() -> list[Conflict]:
    """Every claim of a plugin that is not used as made: a serializer or codec name or type
    that two plugins claim or that only core may handle, and a sampler or executor name
    that an earlier plugin registered (it keeps it)."""
    from dryml.plugins import get_plugin_manager

    manager = get_plugin_manager()
    out = [c for hook in _TYPED_HOOKS for c in _index(hook).conflicts]
    for hook in ("dryml_samplers", "dryml_executors"):
        first: dict[str, str] = {}
        for plugin, record in manager.records(hook):
            owner = first.setdefault(record.name, plugin)
            if owner != plugin:
                out.append(Conflict(hook, (owner, plugin), manager.claimed_message(
                    hook, owner, plugin, f"the name {record.name!r}")))
    return out


@functools.cache
def _load(hook: str, name: str) -> Resolved:
    from dryml.plugins import _NOT_ISOLATED

    plugin, record = _index(hook).by_name[name]
    try:
        impl = load_ref(record.impl)
    except BaseException as exc:  # noqa: BLE001 - any failure of a plugin's module
        if isinstance(exc, _NOT_ISOLATED):
            raise
        raise BackendUnavailableError(
            f"the {_TYPED_HOOKS[hook]} {record.name!r} of {_who(plugin)} cannot be loaded: "
            f"importing {record.impl} failed: {type(exc).__name__}: {exc}. Install what it "
            f"needs (pip install --upgrade {record.package}) or disable the plugin "
            f"(DRYML_DISABLED_PLUGINS={plugin})") from exc
    return Resolved(record.name, record.package, impl)


def _for_type(hook: str, tp: type) -> Resolved | None:
    index = _index(hook)
    mro = [type_path(klass) for klass in tp.__mro__]
    for nearest in mro:
        if nearest in index.contested_types:
            raise PluginError(f"no {_TYPED_HOOKS[hook]} can be chosen for values of type "
                              f"{type_path(tp)!r}: " + index.contested_types[nearest])
        if nearest in index.by_type:
            break
        if nearest in _core_types():  # core handles it, through its records of another hook
            return None
    else:
        return None
    name = index.by_type[nearest]
    plugin = index.by_name[name][0]
    for path in mro[mro.index(nearest) + 1:]:
        other = index.by_name[index.by_type[path]][0] if path in index.by_type else plugin
        if other != plugin and _top(path) == _top(nearest):
            warnings.warn(
                f"{hook}: values of type {type_path(tp)!r} are handled by {_who(plugin)}, "
                f"whose record claims {nearest!r}, and not by {_who(other)}, whose record "
                f"claims {path!r} farther along its MRO; if that is wrong, disable one of "
                f"them (DRYML_DISABLED_PLUGINS={plugin} or ={other})",
                DrymlPluginWarning, stacklevel=4)
    return _load(hook, name)


# Per-type caches (plain dicts: functools.cache cannot be typed for `type` keys).
_codec_cache: dict[type, Resolved | None] = {}
_serializer_cache: dict[type, Resolved | None] = {}


def arg_codec_for(tp: type) -> Resolved | None:
    """The argument codec for values of type ``tp`` (see the module docstring), or None."""
    try:
        return _codec_cache[tp]
    except KeyError:
        found = _codec_cache[tp] = _for_type("dryml_arg_codecs", tp)
        return found


def serializer_for(tp: type) -> Resolved | None:
    """The store serializer for values of type ``tp`` (see the module docstring), or None."""
    try:
        return _serializer_cache[tp]
    except KeyError:
        found = _serializer_cache[tp] = _for_type("dryml_serializers", tp)
        return found


def _require(hook: str, name: str, package: str, what: str) -> None:
    index = _index(hook)
    if name in index.contested_names:
        raise PluginError(f"this file's {what} {name!r} cannot be loaded: "
                          + index.contested_names[name])
    if name not in index.by_name:
        inactive = _inactive([package])
        if inactive:
            raise BackendUnavailableError(
                f"this file needs the package {package!r} (for its {what} {name!r}), which is "
                f"installed but {inactive[package]}")
        raise BackendUnavailableError(
            f"this file needs the package {package!r} (for its {what} {name!r}), which is "
            f"not installed or not active here: pip install {package} (`dryml plugins` lists "
            "the active plugins)"
        )


def missing_backend(cls_paths: Iterable[str], plugins: Mapping[str, Any]
                    ) -> BackendUnavailableError | None:
    """Why a file's classes cannot be found, as one error naming the package to install or
    enable: when a plugin the file was written with (``plugins``: distribution -> version,
    from its manifest) is installed but its dryml plugin is blocked or unavailable, and the
    module of one of ``cls_paths`` belongs to it; or when that module is not installed and a
    plugin the file was written with is not installed either. None otherwise (the caller's
    own error then stands).

    Finding out imports nothing: only whether a top-level module exists is asked."""
    import importlib.util
    import sys

    written = {str(p): str(v) for p, v in plugins.items()}
    inactive = _inactive(written)
    missing = {p: v for p, v in written.items() if p not in inactive and not _installed(p)}
    if not missing and not inactive:
        return None
    for cls_path in cls_paths:
        top = str(cls_path).partition(":")[0].split(".")[0]
        if not top.isidentifier():
            continue
        off = [p for p in inactive if _provides(p, top)]
        if off:
            return BackendUnavailableError(
                f"this file needs the package {off[0]!r} (it holds {cls_path!r}, written with "
                f"{off[0]} {written[off[0]]}), which is installed but {inactive[off[0]]}")
        if not missing or top in sys.modules or importlib.util.find_spec(top):
            continue
        named = [p for p in missing if _provides(p, top)] or list(missing)
        versions = ", ".join(f"{p} {missing[p]}" for p in named)
        many = len(named) > 1
        return BackendUnavailableError(
            f"this file needs the package{'s' if many else ''} "
            f"{', '.join(repr(p) for p in named)} (it holds {cls_path!r}, written with "
            f"{versions}), which {'are' if many else 'is'} not installed here: "
            f"pip install {' '.join(named)}")
    return None


def _normal(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


def _inactive(distributions: Iterable[str]) -> dict[str, str]:
    """Those of ``distributions`` whose dryml plugins are all blocked or unavailable here,
    with why (``DRYML_DISABLED_PLUGINS=mypkg`` shows what users without mypkg see)."""
    from dryml.plugins import get_plugin_manager

    infos = get_plugin_manager().infos()
    out: dict[str, str] = {}
    for dist in distributions:
        mine = [i for i in infos if i.distribution and _normal(i.distribution) == _normal(dist)]
        if mine and all(i.status != "active" for i in mine):
            remedy = ("enable it to load this file" if mine[0].status == "blocked" else
                      f"`dryml plugins` shows why (pip install --upgrade {dist} may fix it)")
            out[dist] = (f"its dryml plugin {mine[0].name!r} is {mine[0].status} here "
                         f"({mine[0].reason}): {remedy}")
    return out


def _provides(distribution: str, top: str) -> bool:
    """Whether the installed (or named alike) ``distribution`` provides the module ``top``."""
    if _normal(distribution) == _normal(top):
        return True
    providers = _module_providers().get(top, [])
    return any(_normal(p) == _normal(distribution) for p in providers)


@functools.cache
def _module_providers() -> Mapping[str, list[str]]:
    """Top-level module -> the installed distributions providing it (reading every
    distribution's file list takes a fifth of a second: once)."""
    import importlib.metadata

    return importlib.metadata.packages_distributions()


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
    global _generation
    with _lock:
        _generation += 1
        _built.clear()
    for fn in (_load, trusted_modules, _module_providers, _installed):
        fn.cache_clear()
    _codec_cache.clear()
    _serializer_cache.clear()
