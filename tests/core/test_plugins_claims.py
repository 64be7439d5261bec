"""Which plugin handles a type: core's types are core's, and a type or name two plugins claim
is used by neither, whatever the plugins' names; ``dryml plugins --check`` fails on both."""

from __future__ import annotations

import collections
import io
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_plugins import _clean, make_distribution, site  # noqa: F401 - fixtures

from dryml import Object, _registry, load_object, save_object
from dryml.cli import main
from dryml.errors import DrymlPluginWarning, PluginError
from dryml.plugins import PluginManager, reset_plugin_manager
from dryml.records import ArgCodecRecord, SerializerRecord
from dryml.testing import fresh_plugin_manager, temporary_plugin


class _Zeros:
    """A serializer and argument codec that reads every value back as zeros (what a buggy or
    hostile plugin claiming numpy values would do); it counts its calls."""

    calls = 0

    def dump(self, value: Any, writer: Any) -> Any:
        type(self).calls += 1
        return {"shape": list(np.shape(value))}

    def load(self, meta: Any, reader: Any) -> Any:
        return np.zeros(meta["shape"])

    def check(self, value: Any) -> None:
        pass

    def encode(self, value: Any, writer: Any) -> Any:
        type(self).calls += 1
        return 0

    def decode(self, data: Any, reader: Any) -> Any:
        return np.float64(0.0)

    def copy(self, value: Any) -> Any:
        return value

    def equal(self, a: Any, b: Any) -> bool:
        return a is b


ZEROS = _Zeros()


class _Weights(Object):
    def __init__(self, scale: Any = None) -> None:
        self.w = np.arange(1.0, 4.0)
        self.z = np.complex128(1 + 2j)
        self.extra = {"k": 1, "n": [1, 2.5, "x"]}

    def save_object_imp(self, store: Any) -> None:
        store.put("w", self.w)
        store.put("z", self.z)
        store.put("extra", self.extra)

    def load_object_imp(self, store: Any) -> None:
        self.w = store.get("w")
        self.z = store.get("z")
        self.extra = store.get("extra")


def _round_trip(obj: Object) -> Any:
    buf = io.BytesIO()
    save_object(obj, buf)
    return load_object(io.BytesIO(buf.getvalue()))


@pytest.mark.parametrize(("hook", "types"), [
    ("dryml_serializers", ["numpy:ndarray"]),
    ("dryml_serializers", ["builtins:object"]),
    ("dryml_serializers", ["builtins:dict", "builtins:int"]),
    ("dryml_arg_codecs", ["numpy:float64"]),
    ("dryml_arg_codecs", ["numpy:generic", "zz_mod:Other"]),
])
def test_a_plugin_claiming_types_core_saves_never_changes_what_is_saved(
        hook: str, types: list[str]) -> None:
    record_type = SerializerRecord if hook == "dryml_serializers" else ArgCodecRecord
    record = record_type("zz.zeros", types=types, impl=f"{__name__}:ZEROS", package="zz-zeros")
    _Zeros.calls = 0
    with (fresh_plugin_manager(),
          temporary_plugin({hook: lambda: [record]}, "zz", distribution="zz-zeros"),
          pytest.warns(DrymlPluginWarning, match="claimed by both dryml-core and zz-zeros")):
        loaded = _round_trip(_Weights(np.float64(2.5)))
    np.testing.assert_array_equal(loaded.w, [1.0, 2.0, 3.0])
    assert loaded.z == np.complex128(1 + 2j)
    assert loaded.extra == {"k": 1, "n": [1, 2.5, "x"]}
    assert loaded.dry_args == (np.float64(2.5),)
    assert _Zeros.calls == 0


def test_a_serializer_for_a_base_of_numpy_scalars_does_not_take_them() -> None:
    """``builtins:complex`` is free for plugins, but ``numpy.complex128`` (a subclass of it
    and of core's ``numpy:generic``) stays core's: core's type is nearer in its MRO."""
    record = SerializerRecord("zz.complex", types=["builtins:complex"],
                              impl=f"{__name__}:ZEROS", package="zz-zeros")
    _Zeros.calls = 0
    with (fresh_plugin_manager(),
          temporary_plugin({"dryml_serializers": lambda: [record]}, "zz"),
          warnings.catch_warnings()):
        warnings.simplefilter("error", DrymlPluginWarning)
        loaded = _round_trip(_Weights())
        assert _registry.serializer_for(complex) is not None
    assert loaded.z == np.complex128(1 + 2j) and _Zeros.calls == 0


def test_a_claim_on_a_type_core_reserves_is_a_conflict_even_before_anything_is_saved() -> None:
    record = ArgCodecRecord("zz.f64", types=["numpy:float64"], impl=f"{__name__}:ZEROS",
                            package="zz-zeros")
    with (fresh_plugin_manager(),
          temporary_plugin({"dryml_arg_codecs": lambda: [record]}, "zz",
                           distribution="zz-zeros"),
          pytest.warns(DrymlPluginWarning)):
        found = _registry.conflicts()
    assert [c.plugins for c in found] == [("core", "zz")]
    assert ("the type 'numpy:float64' (reserved: only dryml-core handles types of numpy and "
            "dryml, and the builtins it saves itself) is claimed by both dryml-core and "
            "zz-zeros; dryml-core keeps it") in found[0].message
    assert "DRYML_DISABLED_PLUGINS=zz" in found[0].message


FRAMEWORK = '''
class Model:
    def __init__(self, size):
        self.size = size
'''

SERIALIZER = '''
from dryml import hookimpl
from dryml.records import SerializerRecord

class _Serializer:
    def dump(self, value, writer):
        return {{"size": value.size, "by": "{module}"}}

    def load(self, meta, reader):
        import dp_fw
        model = dp_fw.Model(meta["size"])
        model.by = meta["by"]
        return model

SER = _Serializer()

@hookimpl
def dryml_serializers():
    return [SerializerRecord("{module}.model", types=["dp_fw:Model"], impl="{module}:SER",
                             package="{dist}")]
'''


def _framework_plugin(root: Path, dist: str, entry: str, module: str) -> None:
    make_distribution(root, dist, {entry: module},
                      {module: SERIALIZER.replace("{dist}", dist)})


class _Holder(Object):
    def __init__(self) -> None:
        import dp_fw  # type: ignore[import-not-found]

        self.model = dp_fw.Model(3)

    def save_object_imp(self, store: Any) -> None:
        store.put("model", self.model)

    def load_object_imp(self, store: Any) -> None:
        self.model = store.get("model")


@pytest.fixture
def two_claims(site: Path) -> Path:  # noqa: F811 - the site fixture
    """``dp_fw:Model`` claimed by the backend ``fw`` (dp-fw-backend) and by ``aaa``
    (dp-aaa), whose name sorts first."""
    (site / "dp_fw.py").write_text(FRAMEWORK)
    _framework_plugin(site, "dp-fw-backend", "fw", "dp_fw_backend")
    _framework_plugin(site, "dp-aaa", "aaa", "dp_aaa")
    return site


def test_a_type_two_plugins_claim_is_saved_by_neither_and_the_error_says_what_to_do(
        two_claims: Path) -> None:
    reset_plugin_manager(PluginManager())
    with pytest.warns(DrymlPluginWarning, match="'dp_fw:Model' is claimed by both"), \
            pytest.raises(PluginError) as caught:
        save_object(_Holder(), io.BytesIO())
    message = str(caught.value)
    assert "no serializer can be chosen for values of type 'dp_fw:Model'" in message
    assert "claimed by both dp-aaa (plugin 'aaa') and dp-fw-backend (plugin 'fw')" in message
    assert "DRYML_DISABLED_PLUGINS=aaa" in message and "DRYML_DISABLED_PLUGINS=fw" in message


def test_disabling_one_of_two_claimants_gives_the_type_to_the_other(
        two_claims: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRYML_DISABLED_PLUGINS", "aaa")
    reset_plugin_manager(PluginManager())
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("error", DrymlPluginWarning)
        save_object(_Holder(), buf)
    # A file written while one plugin had the type loads by its serializer's name after
    # another plugin claims the type too.
    monkeypatch.delenv("DRYML_DISABLED_PLUGINS")
    reset_plugin_manager(PluginManager())
    with pytest.warns(DrymlPluginWarning, match="claimed by both"):
        loaded = load_object(io.BytesIO(buf.getvalue()))
    assert (loaded.model.size, loaded.model.by) == (3, "dp_fw_backend")


def test_a_serializer_name_two_plugins_claim_loads_with_neither(two_claims: Path) -> None:
    (two_claims / "dp_aaa.py").write_text(
        (two_claims / "dp_aaa.py").read_text().replace('"dp_aaa.model"', '"dp_fw_backend.model"')
        .replace('["dp_fw:Model"]', '["dp_other:Thing"]'))
    with pytest.warns(DrymlPluginWarning, match="'dp_fw_backend.model' is claimed by both"):
        reset_plugin_manager(PluginManager())
        with pytest.raises(PluginError, match="serializer 'dp_fw_backend.model' cannot be "
                                              "loaded: .*DRYML_DISABLED_PLUGINS=aaa"):
            _registry.serializer_by_name("dp_fw_backend.model", "dp-fw-backend")


def test_dryml_plugins_lists_claims_on_one_type_and_check_fails(
        two_claims: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    conflicts = out[out.index("  conflicts:\n"):].splitlines()
    assert len(conflicts) == 2, out
    assert ("dryml_serializers: the type 'dp_fw:Model' is claimed by both dp-aaa (plugin "
            "'aaa') and dp-fw-backend (plugin 'fw'), so neither is used") in conflicts[1]
    assert not conflicts[1].endswith("see `dryml plugins`")
    reset_plugin_manager(None)
    assert main(["plugins", "--check"]) == 1


def test_dryml_plugins_check_fails_for_a_serializer_of_numpy_arrays(
        site: Path) -> None:  # noqa: F811 - the site fixture
    source = ('from dryml import hookimpl\nfrom dryml.records import SerializerRecord\n'
              '@hookimpl\ndef dryml_serializers():\n'
              '    return [SerializerRecord("np.arr", types=["numpy:ndarray"], '
              'impl="dp_np:X", package="dp-np")]\n')
    make_distribution(site, "dp-np", {"np": "dp_np"}, {"dp_np": source})
    result = subprocess.run([sys.executable, "-m", "dryml.cli", "plugins", "--check"],
                            capture_output=True, text=True,
                            env={"PYTHONPATH": str(site), "PATH": ""})
    assert result.returncode == 1, result.stdout + result.stderr
    assert ("the type 'numpy:ndarray' is claimed by both dryml-core and dp-np; dryml-core "
            "keeps it") in result.stdout
    assert "Traceback" not in result.stderr


class _Ordered(collections.OrderedDict[str, int]):
    """A subclass in this module of a type another plugin claims."""


class _CountedOrdered(collections.Counter[str], collections.OrderedDict[str, int]):
    """A class whose MRO holds two types of one package that two plugins claim."""


def test_a_plugin_specialising_a_type_for_its_own_subclass_handles_it() -> None:
    """The nearest class of a value's MRO decides (a backend for xgboost's XGBModel, which is
    a scikit-learn estimator), with no warning when the classes come from other packages."""
    base = SerializerRecord("zz.base", types=["collections:OrderedDict"],
                            impl=f"{__name__}:ZEROS", package="zz-base")
    sub = SerializerRecord("yy.sub", types=[f"{__name__}:_Ordered"], impl=f"{__name__}:ZEROS",
                           package="yy-sub")
    with (fresh_plugin_manager(),
          temporary_plugin({"dryml_serializers": lambda: [base]}, "zz"),
          temporary_plugin({"dryml_serializers": lambda: [sub]}, "yy"),
          warnings.catch_warnings()):
        warnings.simplefilter("error", DrymlPluginWarning)
        found = _registry.serializer_for(_Ordered)
        assert found is not None and found.name == "yy.sub"
        assert _registry.conflicts() == []


def test_a_plugin_claiming_part_of_another_plugins_framework_is_warned_about() -> None:
    base = SerializerRecord("zz.base", types=["collections:OrderedDict"],
                            impl=f"{__name__}:ZEROS", package="zz-base")
    part = SerializerRecord("yy.part", types=["collections:Counter"],
                            impl=f"{__name__}:ZEROS", package="yy-part")
    with (fresh_plugin_manager(),
          temporary_plugin({"dryml_serializers": lambda: [base]}, "zz", distribution="zz-base"),
          temporary_plugin({"dryml_serializers": lambda: [part]}, "yy", distribution="yy-part"),
          pytest.warns(DrymlPluginWarning, match="handled by yy-part .*'collections:Counter'.* "
                                                 "not by zz-base .*'collections:OrderedDict'")):
        found = _registry.serializer_for(_CountedOrdered)
    assert found is not None and found.name == "yy.part"
