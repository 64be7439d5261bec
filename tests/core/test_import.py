"""`import dryml` stays framework-free and light."""

from __future__ import annotations

import json
import subprocess
import sys

FRAMEWORKS = ("torch", "tensorflow", "keras", "sklearn", "xgboost", "jax")

SCRIPT = """
import json, sys, io
import dryml
first = sorted(m for m in sys.modules if m.split('.')[0] in {fw!r})
from dryml import Object, save_object, load_object
from dryml.plugins import get_plugin_manager
class A(Object):
    def __init__(self, x):
        pass
buf = io.BytesIO(); save_object(A([1]), buf); buf.seek(0); load_object(buf)
infos = get_plugin_manager().infos()
from dryml import _registry
_registry.trusted_modules()
after = sorted(m for m in sys.modules if m.split('.')[0] in {fw!r})
print(json.dumps([first, after]))
"""


def test_import_dryml_and_listing_plugins_import_no_framework() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT.format(fw=FRAMEWORKS)],
                         capture_output=True, text=True, check=True).stdout
    first, after = json.loads(out)
    assert first == [] and after == []


def test_import_dryml_does_not_load_numpy_or_the_plugin_manager() -> None:
    script = ("import sys, dryml; print(sorted(m for m in ('numpy', 'dryml.plugins', "
              "'dryml._io', 'zstandard') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_a_worker_does_not_import_the_callers_side_of_dryml_context() -> None:
    """A worker process imports the package for its own modules; the decorator, the scheduler
    and the worker handles belong to the caller (importing them slowed every worker's start)."""
    script = ("import sys, dryml.context._worker, dryml.context._calls, dryml.context._state; "
              "print(sorted(m for m in ('dryml.context._decorator', 'dryml.context._scheduler', "
              "'dryml.context._handle', 'dryml.context._runtime') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_dryml_context_still_offers_every_name_it_lists() -> None:
    import dryml.context

    missing = [name for name in dryml.context.__all__ if not hasattr(dryml.context, name)]
    assert missing == []
    assert callable(dryml.context.compute_context) and "compute_context" in dir(dryml.context)
