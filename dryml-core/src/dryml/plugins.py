"""The plugin manager: discovers backends through the ``dryml`` entry-point group.

The manager is created on first use (never at import). A plugin that fails to import, whose
hook implementations are invalid, or whose hooks raise or return something other than records
(anything it raises but ``KeyboardInterrupt``, a ``SystemExit`` included) is recorded as
*unavailable* with its reason and a :class:`DrymlPluginWarning`, and the rest
keep working; ``DRYML_STRICT_PLUGINS=1`` turns that into a :class:`PluginError`. Two
distributions declaring the same entry-point name is always a :class:`PluginError` naming both.

Environment switches (read when the manager is created):

``DRYML_DISABLE_PLUGIN_AUTOLOAD=1``
    load no entry point except those named in ``DRYML_LOAD_PLUGINS``; the others show as
    *blocked* in ``dryml plugins``.
``DRYML_LOAD_PLUGINS=a,b``
    entry-point names to load when autoload is disabled; a name that is no entry point is
    imported as a module path and registered as an in-process plugin (with or without autoload).
``DRYML_DISABLED_PLUGINS=a,b``
    entry-point (or module-plugin) names to block; they show as *blocked*. Core cannot be
    blocked.
``DRYML_STRICT_PLUGINS=1``
    a broken plugin is an error, not a warning (tests and CI set it).
``DRYML_TRACE_PLUGINS=1``
    print to stderr what the manager finds, loads, blocks and collects, and every pluggy hook
    call.

Records are collected per hook in plugin registration order (core first, then entry points
sorted by name, then in-process plugins), each plugin's records in the order it returned them.
Which serializer or codec handles a type does not depend on that order (see
:mod:`dryml._registry`).
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import os
import sys
import threading
import warnings
from collections.abc import Iterator
from typing import Any, Literal

import attrs
import pluggy

from dryml import hookspecs
from dryml.errors import DrymlPluginWarning, PluginError
from dryml.records import (
    ArgCodecRecord,
    ContextRecord,
    DatasetAdapterRecord,
    ExecutorRecord,
    ResourceProviderRecord,
    SamplerRecord,
    SerializerRecord,
    TrainerRecord,
)

__all__ = [
    "CORE_PLUGIN",
    "PluginInfo",
    "PluginManager",
    "get_plugin_manager",
    "reset_plugin_manager",
]

#: The end of the warning for an unavailable plugin: ``dryml plugins`` shows those in its table.
_SEE_TABLE = "; see `dryml plugins`"

CORE_PLUGIN = "core"
Status = Literal["active", "unavailable", "blocked"]

# What each registration hook must return a list of; a plugin returning anything else is broken.
_RECORD_TYPES: dict[str, type] = {
    "dryml_serializers": SerializerRecord,
    "dryml_arg_codecs": ArgCodecRecord,
    "dryml_dataset_adapters": DatasetAdapterRecord,
    "dryml_trainers": TrainerRecord,
    "dryml_resource_providers": ResourceProviderRecord,
    "dryml_contexts": ContextRecord,
    "dryml_trusted_modules": str,
    "dryml_samplers": SamplerRecord,
    "dryml_executors": ExecutorRecord,
}


@attrs.frozen
class PluginInfo:
    """What ``dryml plugins`` shows about one plugin.

    ``status`` is ``"active"``, ``"unavailable"`` (``reason`` says why) or ``"blocked"``
    (``reason`` names the switch that blocked it); ``hooks`` are the hooks it implements.
    """

    name: str
    distribution: str | None
    version: str | None
    status: Status
    reason: str | None = None
    hooks: tuple[str, ...] = ()


#: What a plugin may raise without being isolated: an interrupt. Anything else, a SystemExit
#: included, makes only that plugin unavailable instead of ending every dryml command.
_NOT_ISOLATED = (KeyboardInterrupt, GeneratorExit)


def _env_list(name: str) -> list[str]:
    return [part.strip() for part in os.environ.get(name, "").split(",") if part.strip()]


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no", "off")


def _clear_registry_caches() -> None:
    from dryml import _registry

    _registry.clear_caches()


class PluginManager:
    """dryml's view of its plugins: pluggy underneath, plus status and record collection.

    ``PluginManager()`` registers core's built-ins and loads the ``dryml`` entry points;
    ``PluginManager(autoload=False)`` registers only core (call :meth:`load_entry_points`
    later, or :meth:`register` in-process plugins).
    """

    def __init__(self, *, autoload: bool = True) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self._infos: dict[str, PluginInfo] = {}
        self._records: dict[str, list[tuple[str, Any]]] = {}
        self._lock = threading.RLock()
        self._entry_points_loaded = False
        self._tracing = _env_flag("DRYML_TRACE_PLUGINS")
        if self._tracing:
            self.pm.trace.root.setwriter(sys.stderr.write)
            self.pm.enable_tracing()
        from dryml import _builtins

        self.register(_builtins, CORE_PLUGIN, distribution="dryml-core")
        if autoload:
            self.load_entry_points()

    def _trace(self, message: str) -> None:
        if self._tracing:
            sys.stderr.write(f"[dryml plugins] {message}\n")
            sys.stderr.flush()

    # -- registration -------------------------------------------------------------------------
    def register(
        self, plugin: object, name: str, *, distribution: str | None = None,
        version: str | None = None,
    ) -> PluginInfo:
        """Register an in-process plugin object or module under ``name``; returns its info.

        Invalid hook implementations (a misspelt ``dryml_`` hook, wrong arguments, a wrapper)
        leave it *unavailable* with a warning (:class:`PluginError` in strict mode). A name or
        object that is already registered is a :class:`PluginError`.
        """
        with self._lock:
            if version is None and distribution is not None:
                version = _dist_version(distribution)
            self._check_free(plugin, name, distribution)
            if name != CORE_PLUGIN and name in _env_list("DRYML_DISABLED_PLUGINS"):
                self.pm.set_blocked(name)  # in-process plugins honour the switch too
            if self.pm.is_blocked(name):
                return self._set_info(PluginInfo(
                    name, distribution, version, "blocked", "listed in DRYML_DISABLED_PLUGINS"))
            try:
                self.pm.register(plugin, name=name)
                problem = self._invalid_hooks(plugin)
            except BaseException as exc:  # noqa: BLE001 - pluggy reads arbitrary attributes
                if isinstance(exc, _NOT_ISOLATED):
                    raise
                problem = f"invalid hooks: {type(exc).__name__}: {exc}"
            if problem is not None:
                return self._mark_unavailable(name, distribution, version, problem)
            hooks = tuple(sorted(c.name for c in self.pm.get_hookcallers(plugin) or ()))
            self._trace(f"registered {name!r} ({distribution or 'in-process'}"
                        f"{' ' + version if version else ''}): hooks {', '.join(hooks) or '-'}")
            return self._set_info(PluginInfo(name, distribution, version, "active", None, hooks))

    def _check_free(self, plugin: object, name: str, distribution: str | None) -> None:
        owner = self.pm.get_name(plugin) if self.pm.is_registered(plugin) else None
        if owner is not None:
            raise PluginError(f"this plugin object is already registered as {owner!r}; "
                              f"unregister it before registering it as {name!r}")
        if self.pm.has_plugin(name):
            other = self.distribution_of(name)
            raise PluginError(
                f"two plugins are named {name!r}: one from {other} and one from "
                f"{distribution or 'an in-process registration'}; uninstall one of them or "
                "use another name")

    def _invalid_hooks(self, plugin: object) -> str | None:
        """Why a just-registered plugin's hooks are unusable (it is unregistered), or None."""
        for caller in self.pm.get_hookcallers(plugin) or ():
            problem = None
            if not caller.has_spec():
                known = ", ".join(sorted(n for n in dir(hookspecs) if n.startswith("dryml_")))
                problem = f"implements {caller.name!r}, which is no dryml hook (known: {known})"
            elif any(i.plugin is plugin and (i.hookwrapper or i.wrapper)
                     for i in caller.get_hookimpls()):
                problem = f"{caller.name} is a hook wrapper; dryml hooks take plain hookimpls"
            if problem is not None:
                self.pm.unregister(plugin)
                return f"invalid hooks: {problem}"
        return None

    def unregister(self, name: str) -> None:
        """Remove a plugin (active, unavailable or blocked), e.g. a test's temporary plugin."""
        with self._lock:
            if self.pm.has_plugin(name):
                self.pm.unregister(name=name)
            self._infos.pop(name, None)
            self._changed()

    def _set_info(self, info: PluginInfo) -> PluginInfo:
        self._infos[info.name] = info
        self._changed()
        return info

    def _changed(self) -> None:
        self._records.clear()
        _clear_registry_caches()

    def _mark_unavailable(
        self, name: str, dist: str | None, version: str | None, reason: str
    ) -> PluginInfo:
        """Record ``name`` as unavailable (its hooks no longer run); warn, or raise if strict."""
        if self.pm.has_plugin(name):
            self.pm.unregister(name=name)
        info = self._set_info(PluginInfo(name, dist, version, "unavailable", reason))
        message = f"dryml plugin {name!r} ({dist or 'no distribution'}) is unavailable: {reason}"
        self._trace(message)
        if _env_flag("DRYML_STRICT_PLUGINS"):
            raise PluginError(message + " (DRYML_STRICT_PLUGINS is set)")
        warnings.warn(message + _SEE_TABLE, DrymlPluginWarning, stacklevel=3)
        return info

    def _block(self, name: str, dist: str | None, version: str | None, reason: str) -> None:
        self._trace(f"blocked {name!r} ({dist or 'module'}): {reason}")
        self._set_info(PluginInfo(name, dist, version, "blocked", reason))

    # -- discovery -----------------------------------------------------------------------------
    def load_entry_points(self) -> None:
        """Load the ``dryml`` entry-point group, honouring the environment switches (once)."""
        with self._lock:
            if self._entry_points_loaded:
                return
            self._entry_points_loaded = True
            disabled = set(_env_list("DRYML_DISABLED_PLUGINS")) - {CORE_PLUGIN}
            wanted = [n for n in _env_list("DRYML_LOAD_PLUGINS") if n != CORE_PLUGIN]
            only = set(wanted) if _env_flag("DRYML_DISABLE_PLUGIN_AUTOLOAD") else None
            self._trace("loading entry points " + ("(all)" if only is None else
                                                   f"(autoload off; only {sorted(only)})"))
            by_name: dict[str, list[md.EntryPoint]] = {}
            for ep in md.entry_points(group=hookspecs.PROJECT_NAME):
                by_name.setdefault(ep.name, []).append(ep)
            for name in sorted(by_name):
                self._load_entry_point(name, by_name[name], disabled, only)
            for name in wanted:
                if name not in by_name:
                    self._load_module_plugin(name, blocked=name in disabled)

    def _load_entry_point(self, name: str, eps: list[md.EntryPoint], disabled: set[str],
                          only: set[str] | None) -> None:
        ep = eps[0]
        dist = ep.dist.name if ep.dist is not None else None
        version = ep.dist.version if ep.dist is not None else None
        self._trace(f"found entry point {name} = {ep.value} in {dist} {version}")
        if name in disabled:
            self.pm.set_blocked(name)
            return self._block(name, dist, version, "listed in DRYML_DISABLED_PLUGINS")
        if only is not None and name not in only:
            return self._block(name, dist, version, "not loaded: DRYML_DISABLE_PLUGIN_AUTOLOAD"
                               " is set and DRYML_LOAD_PLUGINS does not name it")
        dists = sorted({e.dist.name if e.dist is not None else "?" for e in eps})
        if len(dists) > 1:
            raise PluginError(
                f"the distributions {' and '.join(dists)} both declare the dryml plugin "
                f"{name!r} (entry-point group 'dryml'); uninstall one of them, or block the name "
                "with DRYML_DISABLED_PLUGINS")
        try:
            plugin = ep.load()
        except BaseException as exc:  # noqa: BLE001 - isolate any failure of a plugin
            if isinstance(exc, _NOT_ISOLATED):
                raise
            self._mark_unavailable(name, dist, version,
                                   f"importing {ep.value} failed: {type(exc).__name__}: {exc}")
            return None
        self.register(plugin, name, distribution=dist, version=version)
        return None

    def _load_module_plugin(self, module_name: str, *, blocked: bool) -> None:
        if blocked:
            return self._block(module_name, None, None, "listed in DRYML_DISABLED_PLUGINS")
        try:
            module = importlib.import_module(module_name)
        except BaseException as exc:  # noqa: BLE001
            if isinstance(exc, _NOT_ISOLATED):
                raise
            self._mark_unavailable(module_name, None, None, f"DRYML_LOAD_PLUGINS names "
                                   f"{module_name!r}, which is no entry point and cannot be "
                                   f"imported: {type(exc).__name__}: {exc}")
            return None
        if self.pm.is_registered(module):
            self._trace(f"{module_name!r} is already registered as {self.pm.get_name(module)!r}")
            return None
        self.register(module, module_name)
        return None

    # -- queries -------------------------------------------------------------------------------
    def infos(self) -> list[PluginInfo]:
        """Every plugin known: active, unavailable (with the reason) and blocked; core first."""
        with self._lock:
            return sorted(self._infos.values(),
                          key=lambda info: (info.name != CORE_PLUGIN, info.name))

    def info(self, name: str) -> PluginInfo | None:
        """What is known about the plugin ``name``, or None."""
        return self._infos.get(name)

    def distribution_of(self, plugin_name: str) -> str:
        """The distribution that provides a plugin, or the plugin's name if unknown."""
        info = self._infos.get(plugin_name)
        return info.distribution if info and info.distribution else plugin_name

    def records(self, hook_name: str) -> list[tuple[str, Any]]:
        """``(plugin name, record)`` for every record every active plugin returns from a hook.

        Plugins come in registration order, each plugin's records in its own order. A plugin
        whose hook raises, or returns anything but a list of the hook's record type, is marked
        unavailable and all its records (of every hook) are left out.
        """
        caller = getattr(self.pm.hook, hook_name, None)
        if caller is None or not hook_name.startswith("dryml_"):
            raise PluginError(f"there is no dryml hook named {hook_name!r}")
        with self._lock:
            while hook_name not in self._records:
                out = self._collect(hook_name, caller)
                if out is not None:
                    self._records[hook_name] = out
            return list(self._records[hook_name])

    def _collect(self, hook_name: str, caller: Any) -> list[tuple[str, Any]] | None:
        """Every plugin's records, or None when a plugin broke (and was marked unavailable)."""
        out: list[tuple[str, Any]] = []
        expected = _RECORD_TYPES.get(hook_name, object)
        for impl in caller.get_hookimpls():
            try:
                result = impl.function()
                problem = _check_result(result, expected)
            except BaseException as exc:  # noqa: BLE001 - isolate any failure of a plugin
                if isinstance(exc, _NOT_ISOLATED):
                    raise
                result, problem = None, f"raised {type(exc).__name__}: {exc}"
            if problem is not None:
                info = self._infos.get(impl.plugin_name)
                self._mark_unavailable(impl.plugin_name, info.distribution if info else None,
                                       info.version if info else None,
                                       f"hook {hook_name} {problem}")
                return None
            self._trace(f"{hook_name}: {impl.plugin_name!r} gave {len(result or ())} record(s)")
            out.extend((impl.plugin_name, record) for record in result or ())
        return out

    def iter_records(self, hook_name: str) -> Iterator[Any]:
        """The records of one hook, without the plugin names."""
        return (record for _, record in self.records(hook_name))

    def records_by_name(self, hook_name: str) -> dict[str, Any]:
        """The records of one hook by name. When plugins register one name twice the first
        keeps it (core first, then plugins by entry-point name) and a DrymlPluginWarning names
        both: a later plugin never silently replaces core's ``local`` executor or a sampler."""
        found: dict[str, tuple[str, Any]] = {}
        for plugin, record in self.records(hook_name):
            if record.name not in found:
                found[record.name] = (plugin, record)
            elif found[record.name][0] != plugin:
                self.warn_claimed(hook_name, found[record.name][0], plugin,
                                  f"the name {record.name!r}")
        return {name: record for name, (_, record) in found.items()}

    def warn_claimed(self, hook_name: str, first: str, second: str, what: str) -> None:
        """Warn that plugins ``first`` and ``second`` both claim ``what`` in a hook, and that
        ``first`` (registered earlier) keeps it."""
        warnings.warn(self.claimed_message(hook_name, first, second, what),
                      DrymlPluginWarning, stacklevel=3)

    def claimed_message(self, hook_name: str, first: str, second: str, what: str) -> str:
        """What :meth:`warn_claimed` says: ``first`` keeps ``what``, ``second``'s record is not
        used, and how to uninstall or disable ``second``."""
        keeps, other = self.distribution_of(first), self.distribution_of(second)
        return (f"{hook_name}: {what} is claimed by both {keeps} and {other}; {keeps} keeps it "
                f"and this record of {other} is not used. Uninstall {other} or disable its "
                f"plugin (DRYML_DISABLED_PLUGINS={second})" + _SEE_TABLE)


def _check_result(result: Any, expected: type) -> str | None:
    if result is None:
        return None
    if not isinstance(result, (list, tuple)):
        return f"returned a {type(result).__name__}, not a list of {expected.__name__}"
    bad = [item for item in result if not isinstance(item, expected)]
    if bad:
        return f"returned {bad[0]!r}, which is not a {expected.__name__}"
    return None


def _dist_version(distribution: str) -> str | None:
    try:
        return md.version(distribution)
    except md.PackageNotFoundError:
        return None


_manager: PluginManager | None = None
_manager_lock = threading.Lock()
_creating = threading.local()


def get_plugin_manager() -> PluginManager:
    """The process-wide plugin manager, created (and entry points loaded) on first use.

    A plugin that uses the plugin registry while it is being imported gets a
    :class:`PluginError` (and so shows as unavailable) instead of a deadlock.
    """
    global _manager
    if _manager is None:
        if getattr(_creating, "active", False):
            raise PluginError("a dryml plugin used the plugin registry while being loaded; "
                              "plugin modules must not look up records at import time")
        with _manager_lock:
            if _manager is None:
                _creating.active = True
                try:
                    _manager = PluginManager()
                finally:
                    _creating.active = False
                _clear_registry_caches()
    return _manager


def reset_plugin_manager(manager: PluginManager | None = None) -> PluginManager | None:
    """Replace the process-wide manager (``None``: rebuild on next use); returns the old one."""
    global _manager
    with _manager_lock:
        old, _manager = _manager, manager
    _clear_registry_caches()
    return old
