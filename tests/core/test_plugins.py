"""The plugin manager against real installed distributions (``*.dist-info`` on sys.path).

Every distribution here is a real one to ``importlib.metadata``: a directory on ``sys.path``
holding ``<name>-<version>.dist-info/{METADATA,entry_points.txt}`` and the plugin's module.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dryml import Object, _registry
from dryml.errors import DrymlPluginWarning, PluginError
from dryml.plugins import PluginManager, get_plugin_manager, reset_plugin_manager
from dryml.records import SerializerRecord
from dryml.testing import fresh_plugin_manager, temporary_plugin

SWITCHES = ("DRYML_DISABLE_PLUGIN_AUTOLOAD", "DRYML_LOAD_PLUGINS", "DRYML_DISABLED_PLUGINS",
            "DRYML_STRICT_PLUGINS", "DRYML_TRACE_PLUGINS")

GOOD = '''
from dryml import hookimpl
from dryml.records import SerializerRecord

@hookimpl
def dryml_trusted_modules():
    return ["{module}"]

@hookimpl
def dryml_serializers():
    return [SerializerRecord("{module}.c", types=["{module}:C"], impl="{module}:C"),
            SerializerRecord("{module}.a", types=["{module}:A"], impl="{module}:A"),
            SerializerRecord("{module}.b", types=["{module}:B"], impl="{module}:B")]
'''

RAISING = '''
from dryml import hookimpl

@hookimpl
def dryml_trusted_modules():
    return ["{module}"]

@hookimpl
def dryml_serializers():
    raise RuntimeError("the {module} serializers exploded")
'''


def make_distribution(site: Path, dist: str, entry_points: dict[str, str],
                      modules: dict[str, str] | None = None, version: str = "1.0") -> None:
    """Write an installed distribution ``dist`` with ``dryml`` entry points into ``site``."""
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = "".join(f"{name} = {value}\n" for name, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[dryml]\n{lines}")
    for module, source in (modules or {}).items():
        (site / f"{module}.py").write_text(textwrap.dedent(source.format(module=module)))


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No plugin switch from the outside (CI sets strict mode); the process manager restored."""
    for name in SWITCHES:
        monkeypatch.delenv(name, raising=False)
    previous = reset_plugin_manager(None)
    yield
    reset_plugin_manager(previous)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty site directory on sys.path (its modules are forgotten afterwards)."""
    directory = tmp_path / "site"
    directory.mkdir()
    monkeypatch.syspath_prepend(str(directory))
    before = set(sys.modules)
    yield directory
    for name in set(sys.modules) - before:
        if name.startswith("dp_"):
            del sys.modules[name]


def names(manager: PluginManager, status: str | None = None) -> list[str]:
    return [i.name for i in manager.infos() if status is None or i.status == status]


def test_manager_is_created_on_first_use_not_at_import() -> None:
    script = ("import dryml, dryml.plugins, dryml.cli, dryml.testing; "
              "print(dryml.plugins._manager is None)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "True"


def test_entry_point_plugin_is_loaded_with_its_distribution(site: Path) -> None:
    make_distribution(site, "dp-good", {"good": "dp_good"}, {"dp_good": GOOD}, version="2.3")
    manager = PluginManager()
    info = manager.info("good")
    assert info is not None
    assert (info.distribution, info.version, info.status) == ("dp-good", "2.3", "active")
    assert info.hooks == ("dryml_serializers", "dryml_trusted_modules")
    assert names(manager)[0] == "core"


def test_records_keep_each_plugins_order_and_registration_order(site: Path) -> None:
    make_distribution(site, "dp-one", {"one": "dp_one"}, {"dp_one": GOOD})
    make_distribution(site, "dp-two", {"two": "dp_two"}, {"dp_two": GOOD})
    manager = PluginManager()
    mine = [(p, r.name) for p, r in manager.records("dryml_serializers") if p in ("one", "two")]
    assert mine == [("one", "dp_one.c"), ("one", "dp_one.a"), ("one", "dp_one.b"),
                    ("two", "dp_two.c"), ("two", "dp_two.a"), ("two", "dp_two.b")]
    trusted = [r for _, r in manager.records("dryml_trusted_modules")]
    assert trusted[0] == "dryml" and trusted.index("dp_one") < trusted.index("dp_two")


def test_plugin_that_fails_to_import_is_unavailable_and_the_rest_work(site: Path) -> None:
    make_distribution(site, "dp-good", {"good": "dp_good"}, {"dp_good": GOOD})
    make_distribution(site, "dp-broken", {"broken": "dp_broken"},
                      {"dp_broken": "import dp_no_such_module_anywhere\n"})
    with pytest.warns(DrymlPluginWarning, match="'broken' .*dp-broken.* is unavailable"):
        manager = PluginManager()
    info = manager.info("broken")
    assert info is not None and info.status == "unavailable"
    assert "ModuleNotFoundError" in str(info.reason)
    assert "dp_no_such_module_anywhere" in str(info.reason)
    assert manager.info("good").status == "active"  # type: ignore[union-attr]
    assert "good" in {p for p, _ in manager.records("dryml_serializers")}


def test_plugin_whose_hook_raises_is_unavailable_and_the_rest_work(site: Path) -> None:
    make_distribution(site, "dp-good", {"good": "dp_good"}, {"dp_good": GOOD})
    make_distribution(site, "dp-raising", {"raising": "dp_raising"}, {"dp_raising": RAISING})
    manager = PluginManager()
    assert "dp_raising" in [r for _, r in manager.records("dryml_trusted_modules")]
    with pytest.warns(DrymlPluginWarning, match="the dp_raising serializers exploded"):
        plugins = {p for p, _ in manager.records("dryml_serializers")}
    assert "good" in plugins and "raising" not in plugins
    info = manager.info("raising")
    assert info is not None and info.status == "unavailable"
    assert "hook dryml_serializers raised RuntimeError" in str(info.reason)
    # All of a broken plugin's records go, not only the hook that failed.
    assert "dp_raising" not in [r for _, r in manager.records("dryml_trusted_modules")]


@pytest.mark.parametrize(("source", "reason"), [
    ("from dryml import hookimpl\n@hookimpl\ndef dryml_serialisers():\n    return []\n",
     "'dryml_serialisers', which is no dryml hook"),
    ("from dryml import hookimpl\n@hookimpl\ndef dryml_serializers(framework):\n    return []\n",
     "invalid hooks"),
    ("from dryml import hookimpl\n@hookimpl(wrapper=True)\ndef dryml_trainers():\n"
     "    return (yield)\n", "hook wrapper"),
])
def test_invalid_hook_implementations_make_a_plugin_unavailable(
        site: Path, source: str, reason: str) -> None:
    make_distribution(site, "dp-invalid", {"invalid": "dp_invalid"}, {"dp_invalid": source})
    with pytest.warns(DrymlPluginWarning):
        manager = PluginManager()
    info = manager.info("invalid")
    assert info is not None and info.status == "unavailable"
    assert reason in str(info.reason)
    assert all(p != "invalid" for p, _ in manager.records("dryml_trainers"))


@pytest.mark.parametrize(("result", "reason"), [
    ("42", "returned a int, not a list of SerializerRecord"),
    ("['torch.module']", "returned 'torch.module', which is not a SerializerRecord"),
])
def test_hook_returning_something_else_than_records_is_isolated(
        site: Path, result: str, reason: str) -> None:
    source = f"from dryml import hookimpl\n@hookimpl\ndef dryml_serializers():\n    return {result}\n"
    make_distribution(site, "dp-wrong", {"wrong": "dp_wrong"}, {"dp_wrong": source})
    manager = PluginManager()
    with pytest.warns(DrymlPluginWarning, match=reason):
        manager.records("dryml_serializers")
    assert manager.info("wrong").status == "unavailable"  # type: ignore[union-attr]


def test_strict_mode_turns_a_broken_import_into_an_error(
        site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_distribution(site, "dp-broken", {"broken": "dp_broken"},
                      {"dp_broken": "raise ImportError('needs libfoo')\n"})
    monkeypatch.setenv("DRYML_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="'broken' .*needs libfoo.*DRYML_STRICT_PLUGINS"):
        get_plugin_manager()
    monkeypatch.delenv("DRYML_STRICT_PLUGINS")
    with pytest.warns(DrymlPluginWarning):
        assert get_plugin_manager().info("broken").status == "unavailable"  # type: ignore[union-attr]


def test_strict_mode_turns_a_raising_hook_into_an_error(
        site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_distribution(site, "dp-raising", {"raising": "dp_raising"}, {"dp_raising": RAISING})
    monkeypatch.setenv("DRYML_STRICT_PLUGINS", "1")
    manager = PluginManager()
    with pytest.raises(PluginError, match="exploded .*DRYML_STRICT_PLUGINS"):
        manager.records("dryml_serializers")


def test_same_entry_point_name_in_two_distributions_names_both(site: Path) -> None:
    make_distribution(site, "dp-alpha", {"dup": "dp_alpha"}, {"dp_alpha": GOOD})
    make_distribution(site, "dp-beta", {"dup": "dp_beta"}, {"dp_beta": GOOD})
    with pytest.raises(PluginError, match="dp-alpha and dp-beta both declare .*'dup'"):
        PluginManager()
    assert "dp_alpha" not in sys.modules and "dp_beta" not in sys.modules


def test_a_duplicate_name_can_be_blocked(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_distribution(site, "dp-alpha", {"dup": "dp_alpha"}, {"dp_alpha": GOOD})
    make_distribution(site, "dp-beta", {"dup": "dp_beta"}, {"dp_beta": GOOD})
    monkeypatch.setenv("DRYML_DISABLED_PLUGINS", "dup")
    assert PluginManager().info("dup").status == "blocked"  # type: ignore[union-attr]


def test_an_entry_point_cannot_take_cores_name(site: Path) -> None:
    make_distribution(site, "dp-usurper", {"core": "dp_usurper"}, {"dp_usurper": GOOD})
    with pytest.raises(PluginError, match="named 'core': one from dryml-core and one from "
                                          "dp-usurper"):
        PluginManager()


def test_disable_autoload_loads_only_what_is_named(
        site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_distribution(site, "dp-one", {"one": "dp_one"}, {"dp_one": GOOD})
    make_distribution(site, "dp-two", {"two": "dp_two"}, {"dp_two": GOOD})
    monkeypatch.setenv("DRYML_DISABLE_PLUGIN_AUTOLOAD", "1")
    manager = PluginManager()
    assert names(manager, "active") == ["core"]
    info = manager.info("one")
    assert info is not None and info.status == "blocked"
    assert "DRYML_DISABLE_PLUGIN_AUTOLOAD" in str(info.reason)
    assert "dp_one" not in sys.modules and "dp_two" not in sys.modules

    monkeypatch.setenv("DRYML_LOAD_PLUGINS", "two")
    manager = PluginManager()
    assert names(manager, "active") == ["core", "two"]
    assert "dp_one" not in sys.modules


def test_load_plugins_also_takes_module_paths(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (site / "dp_local.py").write_text(GOOD.format(module="dp_local"))
    monkeypatch.setenv("DRYML_LOAD_PLUGINS", "dp_local, dp_missing_module")
    with pytest.warns(DrymlPluginWarning, match="dp_missing_module"):
        manager = PluginManager()
    assert manager.info("dp_local").status == "active"  # type: ignore[union-attr]
    assert manager.info("dp_missing_module").status == "unavailable"  # type: ignore[union-attr]
    assert "dp_local" in [r for _, r in manager.records("dryml_trusted_modules")]


def test_disabled_plugins_are_blocked_and_never_imported(
        site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_distribution(site, "dp-one", {"one": "dp_one"}, {"dp_one": GOOD})
    make_distribution(site, "dp-two", {"two": "dp_two"}, {"dp_two": GOOD})
    monkeypatch.setenv("DRYML_DISABLED_PLUGINS", "one,core")
    manager = PluginManager()
    one = manager.info("one")
    assert one is not None and (one.status, one.distribution) == ("blocked", "dp-one")
    assert "DRYML_DISABLED_PLUGINS" in str(one.reason)
    assert "dp_one" not in sys.modules
    assert {"core", "two"} <= set(names(manager, "active"))  # core cannot be blocked
    assert "one" not in {p for p, _ in manager.records("dryml_serializers")}


def test_trace_reports_discovery_and_hook_calls(
        site: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    make_distribution(site, "dp-good", {"good": "dp_good"}, {"dp_good": GOOD})
    make_distribution(site, "dp-off", {"off": "dp_off"}, {"dp_off": GOOD})
    monkeypatch.setenv("DRYML_TRACE_PLUGINS", "1")
    monkeypatch.setenv("DRYML_DISABLED_PLUGINS", "off")
    manager = PluginManager()
    manager.records("dryml_serializers")
    err = capfd.readouterr().err
    assert "found entry point good = dp_good in dp-good 1.0" in err
    assert "registered 'good' (dp-good 1.0): hooks dryml_serializers, dryml_trusted_modules" in err
    assert "blocked 'off' (dp-off): listed in DRYML_DISABLED_PLUGINS" in err
    assert "dryml_serializers: 'good' gave 3 record(s)" in err


def test_without_trace_nothing_is_printed(site: Path, capfd: pytest.CaptureFixture[str]) -> None:
    make_distribution(site, "dp-good", {"good": "dp_good"}, {"dp_good": GOOD})
    PluginManager().records("dryml_serializers")
    assert capfd.readouterr().err == ""


def test_registry_caches_follow_register_unregister_and_breakage() -> None:
    record = SerializerRecord("dp.thing", types=["dp_mod:Thing"], impl="dp_mod:THING")
    hooks = {"dryml_trusted_modules": lambda: ["dp_mod"], "dryml_serializers": lambda: [record]}
    with fresh_plugin_manager() as manager:
        assert "dp_mod" not in _registry.trusted_modules()
        with temporary_plugin(hooks, "dp"):
            assert "dp_mod" in _registry.trusted_modules()
        assert "dp_mod" not in _registry.trusted_modules()

        def explode() -> list[SerializerRecord]:
            raise ValueError("boom")

        with temporary_plugin({**hooks, "dryml_serializers": explode}, "dp"):
            assert "dp_mod" in _registry.trusted_modules()
            with pytest.warns(DrymlPluginWarning, match="boom"):
                manager.records("dryml_serializers")
            assert "dp_mod" not in _registry.trusted_modules()


def test_register_refuses_a_taken_name_or_a_registered_object() -> None:
    plugin = {"dryml_trusted_modules": lambda: ["x"]}
    with fresh_plugin_manager() as manager, temporary_plugin(plugin, "dp") as info:
        assert info.status == "active"
        with pytest.raises(PluginError, match="two plugins are named 'dp'"):
            manager.register(object(), "dp")
        with pytest.raises(PluginError, match="two plugins are named 'core'"):
            manager.register(object(), "core")
        core_module = sys.modules["dryml._builtins"]
        with pytest.raises(PluginError, match="already registered as 'core'"):
            manager.register(core_module, "again")


def test_records_of_an_unknown_hook_is_an_error() -> None:
    with fresh_plugin_manager() as manager, pytest.raises(PluginError, match="no dryml hook"):
        manager.records("dryml_nonsense")


def test_plugin_using_the_registry_at_import_is_unavailable_not_a_deadlock(site: Path) -> None:
    source = "from dryml import _registry\n_registry.trusted_modules()\n"
    make_distribution(site, "dp-eager", {"eager": "dp_eager"}, {"dp_eager": source})
    with pytest.warns(DrymlPluginWarning, match="used the plugin registry while being loaded"):
        manager = get_plugin_manager()
    assert manager.info("eager").status == "unavailable"  # type: ignore[union-attr]


def test_fixtures_work_from_pytest_plugins_and_restore_the_manager(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["dryml.testing"]\n')
    (tmp_path / "test_backend.py").write_text(textwrap.dedent('''
        from dryml import _registry
        from dryml.plugins import get_plugin_manager
        from dryml.records import TrainerRecord

        RECORD = TrainerRecord("my.trainer", framework="numpy", impl="mypkg:T", package="mypkg")

        def test_a(plugin_manager, register_plugin):
            assert get_plugin_manager() is plugin_manager
            info = register_plugin({"dryml_trainers": lambda: [RECORD],
                                    "dryml_trusted_modules": lambda: ["mypkg"]}, "mypkg",
                                   distribution="mypkg", version="9")
            assert (info.status, info.version) == ("active", "9")
            assert ("mypkg", RECORD) in plugin_manager.records("dryml_trainers")
            assert "mypkg" in _registry.trusted_modules()

        def test_b_nothing_left_behind():
            manager = get_plugin_manager()
            assert manager.info("mypkg") is None
            assert "mypkg" not in _registry.trusted_modules()
    '''))
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             str(tmp_path)], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


class _Zeros:
    """An argument codec that loads every array as zeros (what a hostile or buggy plugin
    claiming numpy arrays would do)."""

    def check(self, value: Any) -> None:
        pass

    def encode(self, value: Any, writer: Any) -> Any:
        return len(value)

    def decode(self, data: Any, reader: Any) -> Any:
        import numpy as np

        return np.zeros(data)

    def copy(self, value: Any) -> Any:
        return value

    def equal(self, a: Any, b: Any) -> bool:
        return a is b


ZEROS = _Zeros()


class _Arr(Object):
    def __init__(self, values: Any) -> None:
        self.values = values


def test_a_plugin_claiming_a_type_or_name_taken_before_does_not_replace_it() -> None:
    """Found by review: the last plugin to claim a type won silently, even over core: an
    installed package decoding numpy arrays as zeros took over every array argument. A
    second serializer name made every save fail. The first claim keeps it, with a warning."""
    import io

    import numpy as np

    from dryml import load_object, save_object
    from dryml.records import ArgCodecRecord

    hijack = {"dryml_arg_codecs": lambda: [
        ArgCodecRecord("zz.arrays", types=["numpy:ndarray"], impl=f"{__name__}:ZEROS",
                       package="zz-hijack"),
        ArgCodecRecord("numpy.ndarray", types=["zz_mod:Other"], impl=f"{__name__}:ZEROS",
                       package="zz-hijack")]}
    with fresh_plugin_manager(), temporary_plugin(hijack, "zz", distribution="zz-hijack"):
        with pytest.warns(DrymlPluginWarning) as caught:
            buf = io.BytesIO()
            save_object(_Arr(np.arange(5.0)), buf)
        messages = " ".join(str(w.message) for w in caught)
        assert "the type 'numpy:ndarray' is claimed by both dryml-core and zz-hijack" in messages
        assert "the name 'numpy.ndarray' is claimed by both dryml-core and zz-hijack" in messages
        loaded = load_object(io.BytesIO(buf.getvalue()))
        np.testing.assert_array_equal(loaded.values, np.arange(5.0))


def sampler_of_another_package(seed: Any) -> Any:
    raise AssertionError("the core sampler of that name must be used")


def test_a_plugin_reusing_a_sampler_or_executor_name_does_not_replace_core_s() -> None:
    """Found by review: the last record of a name won, so a plugin could silently replace
    core's 'local' executor or the 'random' sampler."""
    from dryml.context._executor import _records
    from dryml.records import ExecutorRecord, SamplerRecord
    from dryml.search._samplers import RandomSampler, get_sampler

    hooks = {
        "dryml_samplers": lambda: [SamplerRecord(
            "random", impl=f"{__name__}:sampler_of_another_package", package="zz-evil")],
        "dryml_executors": lambda: [ExecutorRecord(
            "local", impl=f"{__name__}:sampler_of_another_package", package="zz-evil")]}
    with fresh_plugin_manager(), temporary_plugin(hooks, "zz", distribution="zz-evil"):
        with pytest.warns(DrymlPluginWarning, match="'random' is claimed by both dryml-core "
                                                    "and zz-evil; dryml-core keeps it"):
            _, sampler = get_sampler("random", 0)
        assert isinstance(sampler, RandomSampler)
        with pytest.warns(DrymlPluginWarning, match="'local' is claimed by both"):
            assert _records()["local"].package == "dryml-core"


class _Fraction:
    """A codec whose decode divides by what the file says (the docs' FractionCodec)."""

    def __init__(self, n: int, d: int) -> None:
        self.n, self.d = n, d


class _FractionCodec:
    def check(self, value: Any) -> None:
        pass

    def encode(self, value: Any, writer: Any) -> Any:
        return [value.n, value.d]

    def decode(self, data: Any, reader: Any) -> Any:
        return data[0] / data[1]

    def copy(self, value: Any) -> Any:
        return value

    def equal(self, a: Any, b: Any) -> bool:
        return a is b


FRACTIONS = _FractionCodec()


def test_a_codec_that_fails_on_a_crafted_value_raises_a_dryml_error() -> None:
    """Found by review: a file with denominator 0 made the plugin's decode raise a bare
    ZeroDivisionError out of load_object, with no location."""
    import io

    from dryml import load_object, save_object
    from dryml.errors import SerializationError
    from dryml.records import ArgCodecRecord
    from dryml.testing.serializers import rewrite_manifest

    hooks = {"dryml_arg_codecs": lambda: [ArgCodecRecord(
        "zz.fraction", types=[f"{__name__}:_Fraction"], impl=f"{__name__}:FRACTIONS",
        package="zz-fractions")]}
    with fresh_plugin_manager(), temporary_plugin(hooks, "zz", distribution="zz-fractions"):
        buf = io.BytesIO()
        save_object(_Arr(_Fraction(1, 2)), buf)

        def zero(manifest: dict[str, Any]) -> None:
            manifest["objects"][-1]["args"][0]["data"] = [1, 0]

        with pytest.raises(SerializationError, match=r"'zz.fraction' argument codec of "
                           r"zz-fractions could not read the value at .*ZeroDivisionError"):
            load_object(io.BytesIO(rewrite_manifest(buf.getvalue(), zero)))


class _Scale:
    def __init__(self, factor: float) -> None:
        self.factor = factor


class _ForgetfulCodec(_FractionCodec):
    """Reads every scale back as 1.0 (the bug the conformance suite must catch)."""

    def encode(self, value: Any, writer: Any) -> Any:
        return value.factor

    def decode(self, data: Any, reader: Any) -> Any:
        return _Scale(1.0)

    def equal(self, a: Any, b: Any) -> bool:
        return bool(a.factor == b.factor)


FORGETFUL = _ForgetfulCodec()


def _scaled() -> Object:
    return _Arr(_Scale(2.0))


def _scaled_output(obj: Any) -> Any:
    import numpy as np

    return np.zeros(3)  # does not use the scale: only the definition check can see it


def test_the_conformance_round_trip_compares_constructor_arguments(tmp_path: Path) -> None:
    """Found by review: a codec that read a constructor argument back wrong passed the whole
    conformance suite when the case's output did not use that argument."""
    from dryml.records import ArgCodecRecord
    from dryml.testing.serializers import SerializerCase, check_round_trip

    hooks = {"dryml_arg_codecs": lambda: [ArgCodecRecord(
        "zz.scale", types=[f"{__name__}:_Scale"], impl=f"{__name__}:FORGETFUL",
        package="zz-scale")]}
    case = SerializerCase("scale", _scaled, _scaled_output, plugin="zz", package="zz-scale")
    with fresh_plugin_manager(), temporary_plugin(hooks, "zz", distribution="zz-scale"), \
            pytest.raises(AssertionError, match="definition differs from the saved one"):
        check_round_trip(case, tmp_path)


def test_an_in_process_plugin_listed_in_dryml_disabled_plugins_is_blocked(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by review: DRYML_DISABLED_PLUGINS blocked entry points only, so the docs'
    register(MyPlugin(), "mypkg") registered a plugin the user had listed there."""
    monkeypatch.setenv("DRYML_DISABLED_PLUGINS", "mine")
    hooks = {"dryml_trusted_modules": lambda: ["mine_mod"]}
    with fresh_plugin_manager(), temporary_plugin(hooks, "mine") as info:
        assert info.status == "blocked" and "DRYML_DISABLED_PLUGINS" in str(info.reason)
        assert "mine_mod" not in _registry.trusted_modules()


class _Bundle:
    def __init__(self, arrays: list[Any]) -> None:
        self.arrays = arrays


class _Lossy:
    """Writes 30 members and never reads the second back (state silently lost on load)."""

    def dump(self, value: Any, writer: Any) -> Any:
        return [writer.add_array(a) for a in value.arrays]

    def load(self, meta: Any, reader: Any) -> Any:
        import numpy as np

        return _Bundle([reader.get_array(n) if i != 1 else np.zeros(8)
                        for i, n in enumerate(meta)])


LOSSY = _Lossy()


class _BundleHolder(Object):
    def __init__(self) -> None:
        import numpy as np

        rng = np.random.default_rng(1)
        self.bundle = _Bundle([rng.standard_normal(8) for _ in range(30)])

    def save_object_imp(self, store: Any) -> None:
        store.put("bundle", self.bundle)

    def load_object_imp(self, store: Any) -> None:
        self.bundle = store.get("bundle")


def _bundle_output(obj: Any) -> Any:
    import numpy as np

    return np.stack([a for i, a in enumerate(obj.bundle.arrays) if i != 1])


def test_the_conformance_suite_finds_a_member_a_serializer_never_reads(tmp_path: Path) -> None:
    """Found by review: the corruption check damages a sample of at most 12 members, so one
    of 30 that the serializer never read back passed (its state was silently lost)."""
    from dryml.records import SerializerRecord
    from dryml.testing.serializers import SerializerCase, check_corrupted_member

    hooks = {"dryml_serializers": lambda: [SerializerRecord(
        "zz.bundle", types=[f"{__name__}:_Bundle"], impl=f"{__name__}:LOSSY",
        package="zz-bundle")]}
    case = SerializerCase("bundle", _BundleHolder, _bundle_output, plugin="zz",
                          package="zz-bundle")
    with fresh_plugin_manager(), temporary_plugin(hooks, "zz", distribution="zz-bundle"), \
            pytest.raises(AssertionError, match=r"loading never read the members \["):
        check_corrupted_member(case, tmp_path)


def test_a_record_with_a_malformed_type_path_makes_its_plugin_unavailable_saying_why() -> None:
    """Found by review: a type path written 'pkg.Model' (not 'pkg:Model') matched no type,
    so the serializer was never used and nothing said so."""
    hooks = {"dryml_serializers": lambda: [SerializerRecord(
        "zz.model", types=["zz_pkg.Model"], impl="zz_pkg:SER")]}
    with fresh_plugin_manager() as manager, temporary_plugin(hooks, "zz"):
        with pytest.warns(DrymlPluginWarning, match="'zz_pkg.Model' is not 'module:QualName'"):
            manager.records("dryml_serializers")
        info = next(i for i in manager.infos() if i.name == "zz")
        assert info.status == "unavailable" and "module:QualName" in str(info.reason)
