"""With all five distributions installed: every backend is discovered from its real installed
distribution, they coexist, and importing dryml and listing plugins imports no framework."""

from __future__ import annotations

import importlib.metadata as md

import pytest
from backend_checks import (
    BACKENDS,
    assert_listing_imports_no_framework,
    assert_plugin_active,
    require_backend,
)

from dryml.plugins import get_plugin_manager


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_backend_discovered_from_installed_distribution(name: str) -> None:
    require_backend(name)
    assert_plugin_active(name)


def test_core_plugin_comes_from_dryml_core() -> None:
    core = next(info for info in get_plugin_manager().infos() if info.name == "core")
    assert (core.distribution, core.status) == ("dryml-core", "active")
    assert core.version == md.version("dryml-core")


def test_listing_all_plugins_imports_no_framework() -> None:
    for name in BACKENDS:
        require_backend(name)
    assert_listing_imports_no_framework(["core", *sorted(BACKENDS)])
