"""The plugin manager: discovers backends through the ``dryml`` entry-point group.

The manager is created on first use (never at import). A plugin that fails to import or whose
hooks fail is recorded as *unavailable* with its reason and a :class:`DrymlPluginWarning`, and
the rest keep working; ``DRYML_STRICT_PLUGINS=1`` turns that into a :class:`PluginError`.

Environment switches:

``DRYML_DISABLE_PLUGIN_AUTOLOAD=1``
    load no entry point except those named in ``DRYML_LOAD_PLUGINS``.
``DRYML_LOAD_PLUGINS=a,b``
    entry-point names (or importable module paths) to load when autoload is disabled.
``DRYML_DISABLED_PLUGINS=a,b``
    entry-point names to block; they show as *blocked* in ``dryml plugins``.
``DRYML_STRICT_PLUGINS=1``
    a broken plugin is an error, not a warning (tests and CI set it).
``DRYML_TRACE_PLUGINS=1``
    print every hook call to stderr.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import os
import sys
import threading
import warnings
from collections.abc import Iterator
from types import ModuleType
from typing import Any, Literal

import attrs
import pluggy

from dryml import hookspecs
from dryml.errors import DrymlPluginWarning, PluginError

__all__ = [
    "CORE_PLUGIN",
    "PluginInfo",
    "PluginManager",
    "get_plugin_manager",
    "reset_plugin_manager",
]

CORE_PLUGIN = "core"
Status = Literal["active", "unavailable", "blocked"]


@attrs.frozen
class PluginInfo:
    """What ``dryml plugins`` shows about one plugin."""

    name: str
    distribution: str | None
    version: str | None
    status: Status
    reason: str | None = None
    hooks: tuple[str, ...] = ()


def _env_list(name: str) -> list[str]:
    return [part.strip() for part in os.environ.get(name, "").split(",") if part.strip()]


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


class PluginManager:
    """dryml's view of its plugins: pluggy underneath, plus status and record collection."""

    def __init__(self, *, autoload: bool = True) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self._infos: dict[str, PluginInfo] = {}
        self._records: dict[str, list[tuple[str, Any]]] = {}
        self._lock = threading.RLock()
        if _env_flag("DRYML_TRACE_PLUGINS"):
            self.pm.trace.root.setwriter(sys.stderr.write)
            self.pm.enable_tracing()
        from dryml import _builtins

        self.register(_builtins, CORE_PLUGIN, distribution="dryml-core")
        if autoload:
            self._load_entry_points()

    # -- registration -------------------------------------------------------------------------
    def register(
        self, plugin: object, name: str, *, distribution: str | None = None,
        version: str | None = None,
    ) -> None:
        """Register an in-process plugin object or module under ``name``."""
        with self._lock:
            if version is None and distribution is not None:
                version = _dist_version(distribution)
            try:
                self.pm.register(plugin, name=name)
            except (pluggy.PluginValidationError, ValueError) as exc:
                self._mark_unavailable(name, distribution, version, f"invalid hooks: {exc}")
                return
            hooks = tuple(sorted(c.name for c in self.pm.get_hookcallers(plugin) or ()))
            self._infos[name] = PluginInfo(name, distribution, version, "active", None, hooks)
            self._records.clear()

    def unregister(self, name: str) -> None:
        """Remove a plugin (used by tests' temporary plugins)."""
        with self._lock:
            if self.pm.has_plugin(name):
                self.pm.unregister(name=name)
            self._infos.pop(name, None)
            self._records.clear()

    def _load_entry_points(self) -> None:
        disabled = set(_env_list("DRYML_DISABLED_PLUGINS"))
        only = _env_list("DRYML_LOAD_PLUGINS") if _env_flag("DRYML_DISABLE_PLUGIN_AUTOLOAD") else None
        seen: dict[str, str] = {}
        found: set[str] = set()
        for ep in md.entry_points(group=hookspecs.PROJECT_NAME):
            dist = ep.dist.name if ep.dist is not None else None
            version = ep.dist.version if ep.dist is not None else None
            if ep.name in seen and seen[ep.name] != dist:
                raise PluginError(
                    f"two distributions register the dryml plugin {ep.name!r}: "
                    f"{seen[ep.name]} and {dist}. Uninstall one of them."
                )
            seen[ep.name] = dist or "?"
            if only is not None and ep.name not in only:
                continue
            found.add(ep.name)
            if ep.name in disabled:
                self.pm.set_blocked(ep.name)
                self._infos[ep.name] = PluginInfo(
                    ep.name, dist, version, "blocked", "listed in DRYML_DISABLED_PLUGINS"
                )
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # noqa: BLE001 - isolate any failure of a plugin
                self._mark_unavailable(ep.name, dist, version, f"{type(exc).__name__}: {exc}")
                continue
            self.register(plugin, ep.name, distribution=dist, version=version)
        for name in (only or []):
            if name not in found and name not in disabled:
                self._load_module_plugin(name)

    def _load_module_plugin(self, module_name: str) -> None:
        try:
            module: ModuleType = importlib.import_module(module_name)
        except Exception as exc:  # noqa: BLE001
            self._mark_unavailable(module_name, None, None, f"{type(exc).__name__}: {exc}")
            return
        self.register(module, module_name)

    def _mark_unavailable(
        self, name: str, dist: str | None, version: str | None, reason: str
    ) -> None:
        if self.pm.has_plugin(name):
            self.pm.unregister(name=name)
        self._infos[name] = PluginInfo(name, dist, version, "unavailable", reason)
        self._records.clear()
        message = f"dryml plugin {name!r} ({dist or 'no distribution'}) is unavailable: {reason}"
        if _env_flag("DRYML_STRICT_PLUGINS"):
            raise PluginError(message + " (DRYML_STRICT_PLUGINS is set)")
        warnings.warn(message, DrymlPluginWarning, stacklevel=3)

    # -- queries -------------------------------------------------------------------------------
    def infos(self) -> list[PluginInfo]:
        """Every plugin known: active, unavailable (with the reason) and blocked."""
        return sorted(self._infos.values(), key=lambda info: (info.name != CORE_PLUGIN, info.name))

    def distribution_of(self, plugin_name: str) -> str:
        """The distribution that provides a plugin, or the plugin's name if unknown."""
        info = self._infos.get(plugin_name)
        return (info.distribution if info and info.distribution else plugin_name)

    def records(self, hook_name: str) -> list[tuple[str, Any]]:
        """``(plugin name, record)`` for every record every active plugin returns from a hook.

        A plugin whose hook raises is marked unavailable and its records are left out.
        """
        with self._lock:
            if hook_name in self._records:
                return self._records[hook_name]
            out: list[tuple[str, Any]] = []
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                try:
                    result = impl.function()
                except Exception as exc:  # noqa: BLE001
                    info = self._infos.get(impl.plugin_name)
                    self._mark_unavailable(
                        impl.plugin_name, info.distribution if info else None,
                        info.version if info else None,
                        f"hook {hook_name} raised {type(exc).__name__}: {exc}",
                    )
                    continue
                out.extend((impl.plugin_name, record) for record in result or [])
            out.reverse()  # pluggy calls last-registered first; keep registration order
            self._records[hook_name] = out
            return out

    def iter_records(self, hook_name: str) -> Iterator[Any]:
        """The records of one hook, without the plugin names."""
        return (record for _, record in self.records(hook_name))


def _dist_version(distribution: str) -> str | None:
    try:
        return md.version(distribution)
    except md.PackageNotFoundError:
        return None


_manager: PluginManager | None = None
_manager_lock = threading.Lock()


def get_plugin_manager() -> PluginManager:
    """The process-wide plugin manager, created (and entry points loaded) on first use."""
    global _manager
    if _manager is None:
        with _manager_lock:
            if _manager is None:
                _manager = PluginManager()
    return _manager


def reset_plugin_manager(manager: PluginManager | None = None) -> PluginManager | None:
    """Replace the process-wide manager (``None``: rebuild on next use); returns the old one."""
    global _manager
    with _manager_lock:
        old, _manager = _manager, manager
    from dryml import _registry

    _registry.clear_caches()
    return old
