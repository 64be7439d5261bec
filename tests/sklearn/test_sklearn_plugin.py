"""dryml-sklearn is discovered from its installed distribution, and listing it imports no framework."""

from __future__ import annotations

from backend_checks import (
    assert_listing_imports_no_framework,
    assert_plugin_active,
    require_backend,
)

NAME = "sklearn"


def test_plugin_is_active_from_its_distribution() -> None:
    require_backend(NAME)
    info = assert_plugin_active(NAME)
    assert "dryml_serializers" in info.hooks


def test_import_and_listing_plugins_import_no_framework() -> None:
    require_backend(NAME)
    assert_listing_imports_no_framework(["core", NAME])
