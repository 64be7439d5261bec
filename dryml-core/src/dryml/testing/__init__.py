"""Test helpers for dryml and for anyone writing a dryml backend.

Plugin isolation, as context managers (no pytest needed) and as pytest fixtures:

:func:`fresh_plugin_manager` / fixture ``plugin_manager``
    a new :class:`~dryml.plugins.PluginManager` holding only core's built-ins (no entry point
    is loaded unless you call ``manager.load_entry_points()``), installed as the process-wide
    manager for the duration and the previous one restored afterwards.
:func:`temporary_plugin` / fixture ``register_plugin``
    registers an in-process plugin (a module, an object with ``@hookimpl`` methods, or a
    ``{"dryml_hook": function}`` mapping) on the current manager and unregisters it after.

Use the fixtures by listing this module as a pytest plugin in the top-level ``conftest.py``::

    pytest_plugins = ["dryml.testing"]

or by importing them into a ``conftest.py``::

    from dryml.testing import plugin_manager, register_plugin  # noqa: F401

Then, in a test::

    from dryml.records import TrainerRecord

    def test_my_trainer_is_listed(plugin_manager, register_plugin):
        record = TrainerRecord("my.trainer", framework="numpy", impl="mypkg:Trainer",
                               package="mypkg")
        register_plugin({"dryml_trainers": lambda: [record]}, name="mypkg")
        assert ("mypkg", record) in plugin_manager.records("dryml_trainers")

Conformance suites that backends run against their own records live in submodules
(``dryml.testing.serializers``, ...).
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from dryml.plugins import PluginInfo, PluginManager, get_plugin_manager, reset_plugin_manager

__all__ = ["as_plugin", "fresh_plugin_manager", "temporary_plugin"]


@contextlib.contextmanager
def fresh_plugin_manager(*, autoload: bool = False) -> Iterator[PluginManager]:
    """Install a new plugin manager for the ``with`` block; the previous one comes back after.

    ``autoload=False`` (the default) gives core's built-ins only, whatever is installed;
    ``autoload=True`` also loads the ``dryml`` entry points, honouring the environment
    switches. Cached registry lookups are cleared on the way in and out.

    Example::

        with fresh_plugin_manager() as manager:
            assert [i.name for i in manager.infos()] == ["core"]
    """
    manager = PluginManager(autoload=autoload)
    previous = reset_plugin_manager(manager)
    try:
        yield manager
    finally:
        reset_plugin_manager(previous)


def as_plugin(hooks: Mapping[str, Callable[..., Any]], name: str = "plugin") -> object:
    """An in-process plugin object from ``{"dryml_hook_name": function}``.

    Example::

        plugin = as_plugin({"dryml_trusted_modules": lambda: ["mypkg"]})
    """
    from dryml.hookspecs import hookimpl

    namespace = types.SimpleNamespace()
    namespace.__name__ = name
    for hook_name, function in hooks.items():
        setattr(namespace, hook_name, hookimpl(function))
    return namespace


def _plugin_name(plugin: object) -> str:
    name = getattr(plugin, "__name__", None)
    if isinstance(plugin, types.ModuleType) and isinstance(name, str):
        return name
    return f"{type(plugin).__name__.lower()}-{id(plugin):x}"


@contextlib.contextmanager
def temporary_plugin(
    plugin: object | Mapping[str, Callable[..., Any]], name: str | None = None, *,
    distribution: str | None = None, version: str | None = None,
    manager: PluginManager | None = None,
) -> Iterator[PluginInfo]:
    """Register ``plugin`` for the ``with`` block (on ``manager``, default the current one).

    ``plugin`` is a module, an object with ``@dryml.hookimpl`` methods, or a mapping of hook
    names to functions (see :func:`as_plugin`). ``name`` defaults to a module's name or a
    unique name. Yields the plugin's :class:`~dryml.plugins.PluginInfo`; an invalid plugin
    shows as ``"unavailable"`` there (or raises :class:`~dryml.errors.PluginError` under
    ``DRYML_STRICT_PLUGINS``).

    Example::

        from dryml.records import ResourceProviderRecord

        record = ResourceProviderRecord("tpu", impl="mypkg.tpu:provider", package="mypkg")
        with temporary_plugin({"dryml_resource_providers": lambda: [record]}, "mypkg"):
            ...
    """
    if isinstance(plugin, Mapping):
        plugin = as_plugin(plugin, name or "plugin")
    name = name or _plugin_name(plugin)
    manager = manager or get_plugin_manager()
    info = manager.register(plugin, name, distribution=distribution, version=version)
    try:
        yield info
    finally:
        manager.unregister(name)


try:
    from dryml.testing._fixtures import plugin_manager, register_plugin
except ModuleNotFoundError as _exc:  # pytest is not installed: the fixtures need it
    if _exc.name != "pytest":
        raise
else:
    __all__ += ["plugin_manager", "register_plugin"]
