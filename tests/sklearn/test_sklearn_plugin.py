"""dryml-sklearn is discovered from its installed distribution, and listing it imports no framework."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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


def _native_threads(set_to: int | None = None) -> list[int]:
    from threadpoolctl import threadpool_info, threadpool_limits

    import dryml.context

    granted = dryml.context.current_context().cpu_threads("sklearn")  # type: ignore[union-attr]
    seen = sorted({pool["num_threads"] for pool in threadpool_info()} | {granted})
    if set_to is not None:
        threadpool_limits(limits=set_to)  # left in place, as library code may leave it
    return seen


def test_each_call_starts_with_the_native_threads_granted() -> None:
    """A call's ``threadpool_limits(limits=4)`` left in place in a one-CPU worker stayed for
    every later call on that warm worker (found by review)."""
    import numpy  # noqa: F401 - its BLAS is one of the pools

    from dryml.context import compute_context

    call = compute_context({"sklearn": {}})(_native_threads)
    assert call(set_to=4) == [1]
    assert call() == [1]


LOAD_DISABLED = """
import sys
from dryml import load_object
try:
    load_object(sys.argv[1])
except Exception as exc:
    print(type(exc).__name__, exc)
"""


def test_a_file_of_the_backends_classes_alone_names_the_package_it_needs(tmp_path: Path) -> None:
    """An untrained trainable holds no value a dryml-sklearn serializer writes: its file named
    no package, and a process without the backend got only 'not imported and not trusted'."""
    require_backend(NAME)
    from dryml import save_object
    from dryml.format import read_manifest
    from dryml_sklearn.models import Estimator, SklearnTrainable

    path = tmp_path / "untrained.dry"
    save_object(SklearnTrainable(Estimator("sklearn.linear_model.LogisticRegression")), path)
    assert "dryml-sklearn" in read_manifest(path).plugins
    done = subprocess.run([sys.executable, "-c", LOAD_DISABLED, str(path)], capture_output=True,
                          text=True, timeout=120,
                          env={**os.environ, "DRYML_DISABLED_PLUGINS": NAME})
    assert done.stdout.startswith("BackendUnavailableError this file needs the package "
                                  "'dryml-sklearn'"), done.stdout + done.stderr
    assert "its dryml plugin 'sklearn' is blocked here" in done.stdout


SAVE_DISABLED = """
import sys
from dryml import save_object
from dryml_sklearn.models import Estimator, SklearnTrainable
save_object(SklearnTrainable(Estimator("sklearn.linear_model.LogisticRegression")), sys.argv[1])
"""


def test_a_process_that_blocks_the_backend_still_names_it_in_the_files_it_saves(
        tmp_path: Path) -> None:
    require_backend(NAME)
    from dryml.format import read_manifest

    path = tmp_path / "saved-while-blocked.dry"
    done = subprocess.run([sys.executable, "-c", SAVE_DISABLED, str(path)], capture_output=True,
                          text=True, timeout=120,
                          env={**os.environ, "DRYML_DISABLED_PLUGINS": NAME})
    assert done.returncode == 0, done.stderr
    assert "dryml-sklearn" in read_manifest(path).plugins
