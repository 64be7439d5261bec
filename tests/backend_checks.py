"""Checks every backend's tests and the integration tests share: discovery and import hygiene,
and importing a script or test file by its path.

Importable from any test module because pytest puts ``tests/`` on ``sys.path`` when it loads
``tests/conftest.py`` (the default ``prepend`` import mode).
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import json
import os
import subprocess
import sys
from types import ModuleType

import pytest

from dryml.plugins import PluginInfo, get_plugin_manager

__all__ = [
    "BACKENDS",
    "FRAMEWORKS",
    "FRAMEWORK_MODULES",
    "assert_listing_imports_no_framework",
    "assert_plugin_active",
    "import_file",
    "require_backend",
]

def import_file(name: str, path: os.PathLike[str] | str) -> ModuleType:
    """The Python file at ``path`` imported as a module called ``name`` (not put in
    ``sys.modules``): a script or a test file that is not on the import path."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, f"cannot import {path}"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: entry-point name -> distribution that must provide it
BACKENDS = {
    "tf": "dryml-tf",
    "torch": "dryml-torch",
    "sklearn": "dryml-sklearn",
    "xgboost": "dryml-xgboost",
}
#: entry-point name -> the framework's top-level module
FRAMEWORKS = {"tf": "tensorflow", "torch": "torch", "sklearn": "sklearn", "xgboost": "xgboost"}
#: top-level modules that importing dryml or listing plugins must never import
FRAMEWORK_MODULES = ("torch", "tensorflow", "keras", "sklearn", "xgboost", "jax")

_LIST_PLUGINS = """
import json, sys
import dryml
from dryml.plugins import get_plugin_manager
pm = get_plugin_manager()
infos = pm.infos()
for info in infos:
    for hook in info.hooks:
        pm.records(hook)
frameworks = {frameworks!r}
print(json.dumps({{
    "active": sorted(i.name for i in infos if i.status == "active"),
    "imported": sorted(m for m in sys.modules if m.split(".")[0] in frameworks),
}}))
"""


def require_backend(name: str) -> None:
    """Skip when backend ``name`` or its framework is not installed, unless
    DRYML_REQUIRE_BACKENDS lists it: then fail. Never imports the framework."""
    required = {part.strip() for part in os.environ.get("DRYML_REQUIRE_BACKENDS", "").split(",")}
    missing = []
    try:
        md.distribution(BACKENDS[name])
    except md.PackageNotFoundError:
        missing.append(BACKENDS[name])
    # `tests/` is on sys.path, so `tests/torch` alone would pass for a `torch` namespace
    # package: a real framework has a file behind it.
    spec = importlib.util.find_spec(FRAMEWORKS[name])
    if spec is None or spec.origin is None:
        missing.append(f"the {FRAMEWORKS[name]} module")
    if not missing:
        return
    what = f"{' and '.join(missing)} not installed"
    if name in required:
        pytest.fail(f"{what}, but DRYML_REQUIRE_BACKENDS lists {name!r}: "
                    f"pip install {BACKENDS[name]}")
    pytest.skip(what)


def assert_plugin_active(name: str) -> PluginInfo:
    """The backend ``name`` is listed active, from its installed distribution and version."""
    infos = {info.name: info for info in get_plugin_manager().infos()}
    assert name in infos, f"plugin {name!r} not discovered; found {sorted(infos)}"
    info = infos[name]
    assert info.status == "active", f"{name}: {info.status} ({info.reason})"
    assert info.distribution == BACKENDS[name]
    assert info.version == md.version(BACKENDS[name])
    assert info.hooks, f"{name} implements no hook"
    entry_points = md.distribution(BACKENDS[name]).entry_points.select(group="dryml")
    assert [ep.name for ep in entry_points] == [name]
    return info


def assert_listing_imports_no_framework(expected_active: list[str]) -> None:
    """In a fresh interpreter, importing dryml and listing plugins (and their records) imports
    no framework module, while the ``expected_active`` plugins are active."""
    script = _LIST_PLUGINS.format(frameworks=FRAMEWORK_MODULES)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(expected_active) <= set(result["active"]), result
    assert result["imported"] == [], f"framework modules imported: {result['imported']}"
