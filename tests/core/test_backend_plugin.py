"""dryml.backend.BackendPlugin reads a backend's records modules through the real hooks."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from dryml.backend import BackendPlugin
from dryml.errors import DrymlPluginWarning
from dryml.testing import fresh_plugin_manager, temporary_plugin


def _package(root: Path, name: str, files: dict[str, str]) -> None:
    pkg = root / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for module, text in files.items():
        (pkg / f"{module}.py").write_text(text)


def test_records_come_from_the_records_modules(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    _package(tmp_path, "fakebackend", {
        "_records_serializers": (
            "from dryml.records import SerializerRecord\n"
            "SERIALIZERS = [SerializerRecord('fake.thing', types=['fakefw:Thing'],"
            " impl='fakebackend.impl:X', package='fake-backend')]\n"
            "TRUSTED_MODULES = ['fakefw.layers']\n"),
        "_records_models": "TRAINERS = []\n",
    })
    monkeypatch.syspath_prepend(str(tmp_path))
    with fresh_plugin_manager() as manager, temporary_plugin(BackendPlugin("fakebackend"),
                                                             "fake"):
        names = [r.name for _, r in manager.records("dryml_serializers")]
        trusted = [t for p, t in manager.records("dryml_trusted_modules") if p == "fake"]
        adapters = [r for p, r in manager.records("dryml_dataset_adapters") if p == "fake"]
    assert names == ["fake.thing"]
    assert trusted == ["fakebackend", "fakebackend.models", "fakebackend.data", "fakefw.layers"]
    assert adapters == []  # no _records_data module: no records, no error
    assert "fakefw" not in sys.modules


def test_a_records_module_that_fails_makes_the_plugin_unavailable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _package(tmp_path, "brokenbackend", {"_records_data": "import no_such_framework_here\n"})
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("DRYML_STRICT_PLUGINS", raising=False)
    with fresh_plugin_manager() as manager, temporary_plugin(BackendPlugin("brokenbackend"),
                                                             "broken"):
        with pytest.warns(DrymlPluginWarning, match="no_such_framework_here"):
            manager.records("dryml_dataset_adapters")
        assert manager.info("broken").status == "unavailable"
