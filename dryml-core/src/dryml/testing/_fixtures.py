"""pytest fixtures for plugin isolation (see :mod:`dryml.testing` for how to enable them)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

import pytest

from dryml.plugins import PluginInfo, PluginManager

__all__ = ["RegisterPlugin", "plugin_manager", "register_plugin"]


class RegisterPlugin(Protocol):
    """The ``register_plugin`` fixture's call signature."""

    def __call__(
        self, plugin: object | Mapping[str, Callable[..., Any]], name: str | None = None, *,
        distribution: str | None = None, version: str | None = None,
    ) -> PluginInfo:
        """Register ``plugin`` until the test ends; returns its info."""


@pytest.fixture
def plugin_manager() -> Iterator[PluginManager]:
    """A fresh plugin manager (core's built-ins only) installed as the process's manager.

    The previous manager is restored after the test, and cached registry lookups are cleared
    both ways, so a test can register, break or block plugins freely. Call
    ``plugin_manager.load_entry_points()`` to also load the installed ``dryml`` entry points.

    Example::

        def test_only_core(plugin_manager):
            assert [info.name for info in plugin_manager.infos()] == ["core"]
    """
    from dryml.testing import fresh_plugin_manager

    with fresh_plugin_manager() as manager:
        yield manager


@pytest.fixture
def register_plugin() -> Iterator[RegisterPlugin]:
    """A function that registers a temporary in-process plugin; unregistered after the test.

    ``register_plugin(plugin, name=None, *, distribution=None, version=None)`` takes a
    module, an object with ``@dryml.hookimpl`` methods, or ``{"dryml_hook": function}``,
    registers it on the current manager (the ``plugin_manager`` fixture's, when the test
    uses it) and returns its :class:`~dryml.plugins.PluginInfo`.

    Example::

        from dryml.records import ArgCodecRecord

        def test_codec_found(plugin_manager, register_plugin):
            record = ArgCodecRecord("my.type", types=["mypkg:MyType"], impl="mypkg:CODEC",
                                    package="mypkg")
            info = register_plugin({"dryml_arg_codecs": lambda: [record]}, "mypkg")
            assert info.status == "active"
            assert ("mypkg", record) in plugin_manager.records("dryml_arg_codecs")
    """
    from dryml.testing import temporary_plugin

    with contextlib.ExitStack() as stack:

        def register(
            plugin: object | Mapping[str, Callable[..., Any]], name: str | None = None, *,
            distribution: str | None = None, version: str | None = None,
        ) -> PluginInfo:
            return stack.enter_context(temporary_plugin(
                plugin, name, distribution=distribution, version=version))

        yield register
