"""A plugin that exits, returns malformed records or has a broken implementation makes only
itself unavailable, saying why; a disabled plugin looks like a missing one to files."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from test_plugins import _clean, make_distribution, site  # noqa: F401 - fixtures

from dryml import Object, save_object
from dryml.cli import main
from dryml.errors import BackendUnavailableError, DrymlPluginWarning
from dryml.plugins import PluginManager
from dryml.records import ExecutorRecord, SamplerRecord, SerializerRecord
from dryml.testing import fresh_plugin_manager, temporary_plugin

EXITING_HOOK = '''
from dryml import hookimpl

@hookimpl
def dryml_trusted_modules():
    raise SystemExit(3)
'''


@pytest.mark.parametrize(("source", "reason"), [
    ("import sys\nsys.exit('dp_exit needs myframework')\n",
     "importing dp_exit failed: SystemExit: dp_exit needs myframework"),
    ("import argparse\nargparse.ArgumentParser().parse_args(['--nope'])\n",
     "importing dp_exit failed: SystemExit: 2"),
])
def test_a_plugin_exiting_at_import_is_unavailable_not_the_end_of_dryml(
        site: Path, source: str, reason: str) -> None:  # noqa: F811 - the site fixture
    make_distribution(site, "dp-exit", {"exit": "dp_exit"}, {"dp_exit": source})
    with pytest.warns(DrymlPluginWarning, match="'exit' .*is unavailable"):
        manager = PluginManager()
    info = manager.info("exit")
    assert info is not None and info.status == "unavailable"
    assert reason in str(info.reason)
    assert manager.info("core").status == "active"  # type: ignore[union-attr]


def test_a_plugin_exiting_in_a_hook_or_as_a_module_plugin_is_unavailable(
        site: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    make_distribution(site, "dp-exit", {"exit": "dp_exit"}, {"dp_exit": EXITING_HOOK})
    (site / "dp_exit_module.py").write_text("raise SystemExit('no')\n")
    monkeypatch.setenv("DRYML_LOAD_PLUGINS", "dp_exit_module")
    with pytest.warns(DrymlPluginWarning, match="dp_exit_module"):
        manager = PluginManager()
    assert "SystemExit: no" in str(manager.info("dp_exit_module").reason)  # type: ignore[union-attr]
    with pytest.warns(DrymlPluginWarning, match="hook dryml_trusted_modules raised SystemExit"):
        trusted = [t for _, t in manager.records("dryml_trusted_modules")]
    assert "dryml" in trusted
    assert manager.info("exit").status == "unavailable"  # type: ignore[union-attr]


def test_a_keyboard_interrupt_in_a_plugin_still_interrupts(site: Path) -> None:  # noqa: F811
    make_distribution(site, "dp-kbi", {"kbi": "dp_kbi"},
                      {"dp_kbi": "raise KeyboardInterrupt\n"})
    with pytest.raises(KeyboardInterrupt):
        PluginManager()


def test_dryml_plugins_survives_a_plugin_that_exits_and_check_fails(
        site: Path) -> None:  # noqa: F811
    make_distribution(site, "dp-exit", {"exit": "dp_exit"}, {"dp_exit": EXITING_HOOK})
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRYML_")}
    result = subprocess.run([sys.executable, "-m", "dryml.cli", "plugins", "--check"],
                            capture_output=True, text=True, env={**env, "PYTHONPATH": str(site)})
    assert result.returncode == 1, result.stderr
    assert "unavailable: hook dryml_trusted_modules raised SystemExit: 3" in result.stdout
    assert "core" in result.stdout and "Traceback" not in result.stderr


@pytest.mark.parametrize(("make", "message"), [
    (lambda: SerializerRecord(["x"], types=["a:B"], impl="m:X"),  # type: ignore[arg-type]
     "SerializerRecord.name must be a non-empty string, not ['x']"),
    (lambda: SerializerRecord(5, types=["a:B"], impl="m:X"),  # type: ignore[arg-type]
     "SerializerRecord.name must be a non-empty string"),
    (lambda: SerializerRecord("s", types=["a:B"], impl="m.X"),
     "SerializerRecord.impl must be a 'module:attr' reference"),
    (lambda: SerializerRecord("s", types=["a:B"], impl="m:X", package=None),  # type: ignore[arg-type]
     "SerializerRecord.package must be a non-empty string"),
    (lambda: ExecutorRecord(None, impl="m:X"),  # type: ignore[arg-type]
     "ExecutorRecord.name must be a non-empty string, not None"),
    (lambda: ExecutorRecord("remote", impl="m:X", requires=".rel"),
     "ExecutorRecord.requires must be an absolute module name"),
    (lambda: ExecutorRecord("remote", impl="m:X", requires=""),
     "ExecutorRecord.requires must be an absolute module name"),
    (lambda: SamplerRecord("", impl="m:X"), "SamplerRecord.name must be a non-empty string"),
])
def test_a_malformed_record_is_refused_when_it_is_made(make: Any, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        make()
    assert message in str(caught.value)


def test_a_plugin_returning_a_malformed_record_is_unavailable_saying_why() -> None:
    hooks = {"dryml_executors": lambda: [ExecutorRecord(None, impl="m:X")]}  # type: ignore[arg-type]
    with fresh_plugin_manager() as manager, temporary_plugin(hooks, "zz"):
        with pytest.warns(DrymlPluginWarning, match="ExecutorRecord.name must be"):
            names = [r.name for r in manager.iter_records("dryml_executors")]
        assert names == ["local", "ray"]
        info = manager.info("zz")
        assert info is not None and info.status == "unavailable"
        assert "hook dryml_executors raised ValueError" in str(info.reason)


MISSING_PARENT = '''
from dryml import hookimpl
from dryml.records import ExecutorRecord

@hookimpl
def dryml_executors():
    return [ExecutorRecord("remote", impl="dp_exec:X", requires="dp_nopkg_zz.sub",
                           package="dp-exec")]
'''


def test_dryml_plugins_shows_an_executor_whose_required_package_is_missing(
        site: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    make_distribution(site, "dp-exec", {"exec": "dp_exec"}, {"dp_exec": MISSING_PARENT})
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "remote (from exec, needs pip install 'dp-exec')" in out


class _Stamp:
    def __init__(self, text: str) -> None:
        self.text = text


class _Stamped(Object):
    def __init__(self) -> None:
        self.stamp = _Stamp("now")

    def save_object_imp(self, store: Any) -> None:
        store.put("stamp", self.stamp)


def test_a_serializer_whose_module_fails_names_the_serializer_and_its_plugin(
        site: Path) -> None:  # noqa: F811
    (site / "dp_broken_impl.py").write_text("raise RuntimeError('framework init failed')\n")
    hooks = {"dryml_serializers": lambda: [SerializerRecord(
        "zz.stamp", types=[f"{__name__}:_Stamp"], impl="dp_broken_impl:SER",
        package="zz-stamps")]}
    with fresh_plugin_manager(), temporary_plugin(hooks, "zz", distribution="zz-stamps"), \
            pytest.raises(BackendUnavailableError) as caught:
        save_object(_Stamped(), io.BytesIO())
    assert str(caught.value) == (
        "the serializer 'zz.stamp' of zz-stamps (plugin 'zz') cannot be loaded: importing "
        "dp_broken_impl:SER failed: RuntimeError: framework init failed. Install what it needs "
        "(pip install --upgrade zz-stamps) or disable the plugin (DRYML_DISABLED_PLUGINS=zz)")


STAMPS = '''
import datetime
from dryml import Object, hookimpl
from dryml.records import ArgCodecRecord, SerializerRecord

class Serializer:
    def dump(self, value, writer):
        return value.isoformat()

    def load(self, meta, reader):
        return datetime.date.fromisoformat(meta)

SER = Serializer()

class Dated(Object):
    def __init__(self):
        self.day = datetime.date(2024, 1, 2)

    def save_object_imp(self, store):
        store.put("day", self.day)

    def load_object_imp(self, store):
        self.day = store.get("day")

@hookimpl
def dryml_trusted_modules():
    return ["dp_stamps"]

@hookimpl
def dryml_serializers():
    return [SerializerRecord("dp.date", types=["datetime:date"], impl="dp_stamps:SER",
                             package="dp-stamps")]

class Codec:
    def check(self, value):
        pass

    def encode(self, value, writer):
        return value.isoformat()

    def decode(self, data, reader):
        return datetime.time.fromisoformat(data)

    def equal(self, a, b):
        return a == b

CODEC = Codec()

class Timed(Object):
    """An argument of the plugin's codec only: no store.put."""
    def __init__(self, at):
        self.day = at.isoformat()

@hookimpl
def dryml_arg_codecs():
    return [ArgCodecRecord("dp.time", types=["datetime:time"], impl="dp_stamps:CODEC",
                           package="dp-stamps")]
'''


def _script_runner(folder: Path, script: str) -> Any:
    """``run(*args, **environment)``: the stdout of ``script`` in a new Python that sees
    ``folder`` and no DRYML_ switch but those given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRYML_")}
    env["PYTHONPATH"] = str(folder)

    def run(*args: str, **extra: str) -> str:
        return subprocess.run([sys.executable, "-c", script, *args], capture_output=True,
                              text=True, env={**env, **extra}, check=True).stdout.strip()

    return run


def test_a_disabled_plugin_looks_missing_to_a_file_that_needs_it(site: Path) -> None:  # noqa: F811
    """What docs/plugins.md promises: DRYML_DISABLED_PLUGINS=mypkg shows what users without
    mypkg see, a BackendUnavailableError naming it."""
    make_distribution(site, "dp-stamps", {"stamps": "dp_stamps"}, {"dp_stamps": STAMPS})
    script = textwrap.dedent(f'''
        import sys
        from dryml import load_object, save_object
        if sys.argv[1] == "save":
            import datetime
            import dp_stamps
            save_object(dp_stamps.Dated(), {str(site / "dated.dry")!r})
            save_object(dp_stamps.Timed(datetime.time(12, 30)), {str(site / "timed.dry")!r})
        else:
            name = "timed.dry" if sys.argv[2:] == ["timed"] else "dated.dry"
            try:
                print(load_object({str(site)!r} + "/" + name).day)
            except Exception as exc:
                print(type(exc).__name__, exc)
    ''')
    run = _script_runner(site, script)

    run("save")
    assert run("load") == "2024-01-02"
    assert run("load", "timed") == "12:30:00"  # a file that holds only a codec's value
    assert run("load", "timed", DRYML_DISABLED_PLUGINS="stamps") == (
        "BackendUnavailableError this file needs the package 'dp-stamps' (it holds "
        "'dp_stamps:Timed', written with dp-stamps 1.0), which is installed but its dryml "
        "plugin 'stamps' is blocked here (listed in DRYML_DISABLED_PLUGINS): enable it to load "
        "this file")
    assert run("load", DRYML_DISABLED_PLUGINS="stamps") == (
        "BackendUnavailableError this file needs the package 'dp-stamps' (it holds "
        "'dp_stamps:Dated', written with dp-stamps 1.0), which is installed but its dryml "
        "plugin 'stamps' is blocked here (listed in DRYML_DISABLED_PLUGINS): enable it to load "
        "this file")


class _Thing:
    """A type only the half-broken plugin below claims."""


def _broken_codec_hook() -> list[Any]:
    raise RuntimeError("broken codec hook")


@pytest.mark.parametrize("first", ["serializer", "codec"])
def test_a_plugin_broken_in_one_hook_is_unused_in_every_hook_whatever_is_looked_up_first(
        first: str) -> None:
    """A plugin whose serializers hook was fine but whose codecs hook raised kept its
    serializer when a serializer was looked up first: the index was built from records read
    before the other hook marked the plugin unavailable, and was cached so."""
    from dryml import _registry

    path = f"{_Thing.__module__}:{_Thing.__qualname__}"
    plugin = {"dryml_serializers": lambda: [SerializerRecord(
                  "half.thing", types=[path], impl="builtins:object", package="half")],
              "dryml_arg_codecs": _broken_codec_hook}
    with (fresh_plugin_manager() as manager,
          pytest.warns(DrymlPluginWarning, match="broken codec hook"),
          temporary_plugin(plugin, "half", manager=manager)):
        if first == "codec":
            _registry.arg_codec_for(int)
        assert _registry.serializer_for(_Thing) is None
        assert manager.info("half").status == "unavailable"  # type: ignore[union-attr]


def test_a_file_needing_a_disabled_plugins_serializer_says_it_is_blocked(
        site: Path) -> None:  # noqa: F811
    """A file that names a blocked plugin's serializer said "not installed ... pip install"
    (only files naming its classes said the plugin is blocked)."""
    make_distribution(site, "dp-stamps", {"stamps": "dp_stamps"}, {"dp_stamps": STAMPS})
    script = textwrap.dedent(f'''
        import datetime, sys
        from dryml import Object, load_object, save_object

        class Plain(Object):  # a class of no plugin, holding a plugin's value
            def __init__(self):
                self.day = datetime.date(2024, 1, 2)

            def save_object_imp(self, store):
                store.put("day", self.day)

            def load_object_imp(self, store):
                self.day = store.get("day")

        if sys.argv[1] == "save":
            import dp_stamps  # noqa: F401
            save_object(Plain(), {str(site / "plain.dry")!r})
        else:
            try:
                print(load_object({str(site / "plain.dry")!r}, trust=["__main__"]).day)
            except Exception as exc:
                print(type(exc).__name__, exc)
    ''')
    run = _script_runner(site, script)

    run("save")
    assert run("load") == "2024-01-02"
    assert run("load", DRYML_DISABLED_PLUGINS="stamps") == (
        "BackendUnavailableError this file needs the package 'dp-stamps' (for its serializer "
        "'dp.date'), which is installed but its dryml plugin 'stamps' is blocked here (listed "
        "in DRYML_DISABLED_PLUGINS): enable it to load this file")
