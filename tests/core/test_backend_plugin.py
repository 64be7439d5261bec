"""dryml.backend.BackendPlugin reads a backend's records modules through the real hooks."""

from __future__ import annotations

import sys
import warnings
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


def test_a_misspelt_records_module_or_name_warns_instead_of_silently_giving_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # found by review: `_records_serializer` (no s) or `ADAPTER = [...]` left the backend
    # without those records and said nothing
    _package(tmp_path, "typobackend", {
        "_records_serializer": "SERIALIZERS = []\n",
        "_records_data": "PACKAGE = 'typo-backend'\nADAPTER = []\n",
    })
    monkeypatch.syspath_prepend(str(tmp_path))
    with (fresh_plugin_manager() as manager,
          temporary_plugin(BackendPlugin("typobackend"), "typo"),
          pytest.warns(DrymlPluginWarning) as caught):
        manager.records("dryml_dataset_adapters")
    messages = [str(w.message) for w in caught]
    assert any("typobackend' has a module _records_serializer, which dryml never reads "
               "(did you mean _records_serializers?)" in m for m in messages), messages
    assert any("typobackend._records_data defines ADAPTER, which dryml does not read (did "
               "you mean ADAPTERS?)" in m for m in messages), messages
    assert not any("PACKAGE" in m for m in messages)  # a helper constant is no typo


@pytest.mark.parametrize("package", ["dryml_torch", "dryml_tf", "dryml_sklearn",
                                     "dryml_xgboost"])
def test_the_dryml_backends_records_modules_raise_no_typo_warning(package: str) -> None:
    pytest.importorskip(package)
    plugin = BackendPlugin(package)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DrymlPluginWarning)
        for hook in ("dryml_serializers", "dryml_arg_codecs", "dryml_trusted_modules",
                     "dryml_dataset_adapters", "dryml_contexts", "dryml_trainers"):
            getattr(plugin, hook)()
