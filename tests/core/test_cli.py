"""The ``dryml`` command line: ``dryml plugins`` and ``dryml inspect FILE``, run for real."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dryfiles import rewrite_manifest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_plugins import GOOD, RAISING, SWITCHES, make_distribution

from dryml import save_object
from dryml.cli import main

MODELS = '''
import os
import numpy as np
from dryml import Object

if os.environ.get("DP_CANARY"):
    open(os.environ["DP_CANARY"], "w").write("dp_models was imported")


class Leaf(Object):
    def __init__(self, value=None):
        self.value = value


class Net(Object):
    def __init__(self, *layers, name="net", config=None):
        self.weights = np.arange(20000, dtype=np.float32)

    def save_object_imp(self, store):
        store.put("weights", self.weights)
        store.put("history", {"epochs": 3, "loss": [0.5, 0.25]})

    def load_object_imp(self, store):
        self.weights = store.get("weights")
'''


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None
            ) -> subprocess.CompletedProcess[str]:
    """``python -m dryml.cli ARGS`` in a fresh interpreter."""
    full_env = {k: v for k, v in os.environ.items() if k not in SWITCHES}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "dryml.cli", *args], capture_output=True,
                          text=True, env=full_env, cwd=cwd)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, Any]]:
    """A file holding ``dp_models.Net`` with nested and shared Leafs and arrays."""
    root = tmp_path_factory.mktemp("models")
    (root / "dp_models.py").write_text(MODELS)
    sys.path.insert(0, str(root))
    try:
        import dp_models  # type: ignore[import-not-found]
        import numpy as np

        shared = dp_models.Leaf(np.arange(3, dtype=np.int64))
        big = dp_models.Leaf(np.ones((64, 32), dtype=np.float64))
        net = dp_models.Net(shared, [shared, big], name="tiny", config={"lr": 0.1, "beta": (1, 2)})
        path = root / "net.dry"
        save_object(net, path)
        yield path, root, net
    finally:
        sys.path.remove(str(root))
        sys.modules.pop("dp_models", None)


def test_help_lists_the_commands_and_imports_nothing_heavy() -> None:
    script = Path(sys.executable).with_name("dryml")
    assert script.exists(), "the dryml console script is installed with dryml-core"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=True)
    assert "plugins" in result.stdout and "inspect" in result.stdout
    probe = ("import sys; from dryml.cli import build_parser; build_parser()\n"
             "print(sorted(m for m in ('numpy', 'zstandard', 'dryml.plugins', 'dryml._io')"
             " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: dryml" in capsys.readouterr().err


def test_plugins_shows_status_reason_distribution_and_hooks(tmp_path: Path) -> None:
    make_distribution(tmp_path, "dp-good", {"good": "dp_good"}, {"dp_good": GOOD}, "1.2")
    make_distribution(tmp_path, "dp-broken", {"broken": "dp_broken"},
                      {"dp_broken": "raise ImportError('needs libfoo')\n"}, "0.1")
    make_distribution(tmp_path, "dp-off", {"off": "dp_off"}, {"dp_off": GOOD}, "3.0")
    env = {"PYTHONPATH": str(tmp_path), "DRYML_DISABLED_PLUGINS": "off"}
    result = run_cli("plugins", env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "DISTRIBUTION", "VERSION", "STATUS", "HOOKS"]
    rows = {line.split()[0]: line for line in lines[1:] if not line.startswith(" ")}
    assert rows["core"].split()[:4] == ["core", "dryml-core", _core_version(), "active"]
    assert rows["good"].split() == ["good", "dp-good", "1.2", "active", "serializers,",
                                    "trusted_modules"]
    assert rows["broken"].split()[:4] == ["broken", "dp-broken", "0.1", "unavailable"]
    assert rows["off"].split()[:4] == ["off", "dp-off", "3.0", "blocked"]
    after_broken = lines[lines.index(rows["broken"]) + 1]
    assert after_broken.strip() == ("unavailable: importing dp_broken failed: "
                                    "ImportError: needs libfoo")
    assert "blocked: listed in DRYML_DISABLED_PLUGINS" in result.stdout
    assert "Warning" not in result.stderr

    assert run_cli("plugins", "--check", env=env).returncode == 1
    data = json.loads(run_cli("plugins", "--json", env=env).stdout)
    by_name = {entry["name"]: entry for entry in data}
    assert by_name["good"] == {"name": "good", "distribution": "dp-good", "version": "1.2",
                               "status": "active", "reason": None,
                               "hooks": ["dryml_serializers", "dryml_trusted_modules"]}
    assert by_name["broken"]["status"] == "unavailable"
    assert "needs libfoo" in by_name["broken"]["reason"]


def test_plugins_in_strict_mode_fails_with_the_message(tmp_path: Path) -> None:
    make_distribution(tmp_path, "dp-broken", {"broken": "dp_broken"},
                      {"dp_broken": "raise ImportError('needs libfoo')\n"})
    result = run_cli("plugins", env={"PYTHONPATH": str(tmp_path), "DRYML_STRICT_PLUGINS": "1"})
    assert result.returncode == 1
    assert result.stderr.startswith("dryml: error: dryml plugin 'broken' (dp-broken)")
    assert "Traceback" not in result.stderr


def test_a_broken_plugin_is_one_warning_line_and_inspect_still_works(
        model_file: tuple[Path, Path, Any], tmp_path: Path) -> None:
    path, _, _ = model_file
    make_distribution(tmp_path, "dp-broken", {"broken": "dp_broken"},
                      {"dp_broken": "raise ImportError('needs libfoo')\n"})
    result = run_cli("inspect", str(path), env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0
    assert result.stderr == ("dryml: warning: dryml plugin 'broken' (dp-broken) is unavailable: "
                             "importing dp_broken failed: ImportError: needs libfoo; see "
                             "`dryml plugins`\n")
    assert "objects (3, root first):" in result.stdout


def _core_version() -> str:
    from dryml import __version__

    return __version__


def test_inspect_shows_manifest_tree_classes_and_members(
        model_file: tuple[Path, Path, Any], capsys: pytest.CaptureFixture[str]) -> None:
    path, _, net = model_file
    shared, big = net.dry_args[0], net.dry_args[1][1]
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert f".dry version 1, written by dryml-core {_core_version()}" in out
    lines = out.splitlines()
    start = lines.index("objects (3, root first):")
    tree = lines[start + 1:lines.index("classes:") - 1]
    headers = [line for line in tree if "dp_models:" in line]
    # root first, children indented below it, the shared leaf shown once
    assert headers[0].startswith("  dp_models:Net  [trusted: an Object class already loaded")
    assert headers[1].startswith("    dp_models:Leaf  [trusted")
    assert headers[2].startswith("    dp_models:Leaf  [trusted")
    assert f"    dry_id:  {net.dry_id}" in tree
    assert (f"    args:    <Leaf {shared.dry_id[:8]}>, [<Leaf {shared.dry_id[:8]}>, "
            f"<Leaf {big.dry_id[:8]}>]") in tree
    assert "    kwargs:  name='tiny', config={'lr': 0.1, 'beta': (1, 2)}" in tree
    assert any(line.startswith("    state:   weights=<ndarray float32 (20000,) in m")
               and "history={'epochs': 3, 'loss': [0.5, 0.25]}" in line for line in tree)
    assert "      args:    <ndarray int64 (3,)>" in tree
    assert any(line.startswith("      args:    <ndarray float64 (64, 32) in m") for line in tree)
    members = lines[lines.index(next(x for x in lines if x.startswith("members (2,"))) + 1:]
    assert members[0].split() == ["NAME", "CONTENT", "STORED", "RAW", "COMPRESSION",
                                  "CHECKSUM", "USED", "BY"]
    weights = next(line for line in members if "float32 (20000,)" in line)
    assert "ok" in weights.split() and "state['weights']" in weights


def test_inspect_json_is_complete_and_machine_readable(
        model_file: tuple[Path, Path, Any], capsys: pytest.CaptureFixture[str]) -> None:
    path, _, net = model_file
    assert main(["inspect", "--json", str(path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["root"] == net.dry_id and report["format_version"] == 1
    assert report["dryml_version"] == _core_version() and report["created"]
    root, first, second = report["objects"]
    assert (root["id"], root["cls"], root["trusted"]) == (net.dry_id, "dp_models:Net", True)
    assert root["children"] == [first["id"], second["id"]]
    assert root["kwargs"] == {"name": "'tiny'", "config": "{'lr': 0.1, 'beta': (1, 2)}"}
    assert sorted(root["state"]) == ["history", "weights"]
    assert root["encoded"]["kwargs"]["name"] == "tiny"
    assert [c["path"] for c in report["classes"]] == ["dp_models:Leaf", "dp_models:Net"]
    by_content = {m["content"]: m for m in report["members"]}
    weights = by_content["float32 (20000,)"]
    assert weights["raw_size"] > 80000 and weights["kind"] == "npy"
    assert weights["compression"] in ("zstd", "none") and weights["checksum_ok"] is True
    assert weights["used_by"] == [f"Net {net.dry_id[:8]}: state['weights']"]
    assert by_content["float64 (64, 32)"]["raw_size"] >= 64 * 32 * 8


def test_inspect_of_an_untrusted_file_imports_nothing_from_it(
        model_file: tuple[Path, Path, Any], tmp_path: Path) -> None:
    path, models_dir, _ = model_file
    canary = tmp_path / "canary"
    env = {"PYTHONPATH": str(models_dir), "DP_CANARY": str(canary)}
    result = run_cli("inspect", str(path), env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "dp_models:Net  [NOT TRUSTED: module 'dp_models' is not imported and not trusted]" \
        in result.stdout
    assert "dp_models:Leaf  Object   NOT TRUSTED" in result.stdout
    assert not canary.exists()
    probe = (f"import sys; from dryml.cli import main; rc = main(['inspect', '--json', "
             f"{str(path)!r}]); print('dp_models' in sys.modules, rc)")
    check = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                           env={**os.environ, **env}, cwd=tmp_path)
    assert check.stdout.splitlines()[-1] == "False 0"
    assert not canary.exists()
    trusted = run_cli("inspect", "--trust", "dp_models", str(path), env=env, cwd=tmp_path)
    assert "dp_models:Net  [trusted: from a trusted module]" in trusted.stdout
    assert not canary.exists()


def test_inspect_of_a_hostile_class_path_shows_it_untrusted(
        model_file: tuple[Path, Path, Any], tmp_path: Path) -> None:
    path, _, _ = model_file

    def edit(manifest: dict[str, Any]) -> None:
        manifest["objects"][-1]["cls"] = "os:system"
        manifest["objects"][0]["args"] = [{"__dry__": "class", "path": "subprocess:Popen"}]

    hostile = tmp_path / "hostile.dry"
    hostile.write_bytes(rewrite_manifest(path.read_bytes(), edit))
    result = run_cli("inspect", str(hostile))
    assert result.returncode == 0, result.stderr
    assert "os:system  [NOT TRUSTED" in result.stdout
    assert "<class subprocess:Popen>" in result.stdout
    assert "subprocess:Popen  argument class  NOT TRUSTED" in result.stdout


@pytest.mark.parametrize(("damage", "message"), [
    (lambda data: data[: len(data) // 2], "the file is truncated or damaged"),
    (lambda data: b"", "the file is empty"),
    (lambda data: b"PK\x03\x04" + bytes(200), "not a .dry file"),
    (lambda data: data[:-60] + bytes([data[-60] ^ 0xFF]) + data[-59:],
     "the manifest does not match its checksum"),
])
def test_inspect_of_a_damaged_file_fails_with_the_message(
        model_file: tuple[Path, Path, Any], tmp_path: Path, damage: Any, message: str) -> None:
    path, _, _ = model_file
    bad = tmp_path / "bad.dry"
    bad.write_bytes(damage(path.read_bytes()))
    result = run_cli("inspect", str(bad))
    assert result.returncode == 1
    assert result.stderr.startswith(f"dryml: error: {message}")
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_inspect_of_a_damaged_member_reports_it_and_fails(
        model_file: tuple[Path, Path, Any], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    from dryml.format import read_manifest

    path, _, _ = model_file
    manifest = read_manifest(path)
    name, info = next((n, i) for n, i in manifest.members.items() if i.kind == "npy")
    data = bytearray(path.read_bytes())
    data[info.offset + info.size - 1] ^= 0x01
    bad = tmp_path / "bad.dry"
    bad.write_bytes(bytes(data))
    assert main(["inspect", str(bad)]) == 1
    captured = capsys.readouterr()
    row = next(line for line in captured.out.splitlines() if line.strip().startswith(name))
    assert "DAMAGED" in row.split()
    assert captured.err == (f"dryml: error: 1 member(s) do not match their checksum: {name}; "
                            "the file is damaged\n")
    assert main(["inspect", "--no-verify", str(bad)]) == 0


def test_inspect_of_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(tmp_path / "nope.dry")]) == 1
    assert capsys.readouterr().err == f"dryml: error: no .dry file at '{tmp_path / 'nope.dry'}'\n"


def test_a_new_command_module_plugs_in_with_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "dp_cli_hello.py").write_text(textwrap.dedent('''
        def register(subparsers):
            parser = subparsers.add_parser("hello", help="say hello")
            parser.add_argument("who")
            parser.set_defaults(run=lambda args: print(f"hello {args.who}") or 0)
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    from dryml import cli

    monkeypatch.setattr(cli, "COMMANDS", [*cli.COMMANDS, "dp_cli_hello"])
    assert main(["hello", "world"]) == 0
    assert capsys.readouterr().out == "hello world\n"


_KINDS = ["tuple", "dict", "float", "bytes", "class", "def", "object", "codec", "nonsense"]
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8) | st.sampled_from(["m000001.npy", "os:system", "a" * 100]),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    | st.fixed_dictionaries({"__dry__": st.sampled_from(_KINDS)},
                            optional={"items": inner, "member": inner, "path": inner,
                                      "cls": inner, "id": inner, "data": inner,
                                      "dry_args": inner, "dry_kwargs": inner, "b64": inner,
                                      "value": inner, "codec": inner}),
    max_leaves=12)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(args=st.lists(_JSON, max_size=3), kwargs=st.dictionaries(st.text(max_size=5), _JSON,
                                                                max_size=3),
       state=st.dictionaries(st.text(min_size=1, max_size=5), _JSON, max_size=3))
def test_inspect_never_crashes_on_odd_values(
        model_file: tuple[Path, Path, Any], tmp_path: Path, args: list[Any],
        kwargs: dict[str, Any], state: dict[str, Any]) -> None:
    path, _, _ = model_file

    def edit(manifest: dict[str, Any]) -> None:
        node = manifest["objects"][0]
        node["args"], node["kwargs"], node["state"] = args, kwargs, state

    odd = tmp_path / "odd.dry"
    odd.write_bytes(rewrite_manifest(path.read_bytes(), edit))
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(["inspect", str(odd)]) in (0, 1)
        assert main(["inspect", "--json", str(odd)]) in (0, 1)


# -- what a user sees when a file needs a backend that is not installed ----------------------

FAKE = "dryml_fakefw.models:Net"
NEEDS_FAKEFW = ("this file needs the package 'dryml-fakefw' (it holds "
                "'dryml_fakefw.models:Net', written with dryml-fakefw 1.0), which is not "
                "installed here: pip install dryml-fakefw")


def _fakefw_file(tmp_path: Path) -> tuple[Path, str]:
    """A file written by a backend that is not installed here (``dryml-fakefw``)."""
    from dryfiles import Leaf

    from dryml import save_object

    leaf = Leaf(3)
    path = tmp_path / f"{leaf.dry_id}.dry"
    save_object(leaf, path)

    def edit(manifest: dict[str, Any]) -> None:
        manifest["objects"][0]["cls"] = FAKE
        manifest["classes"] = {FAKE: [FAKE, "dryml._object:Object"]}
        manifest["plugins"] = {"dryml-fakefw": "1.0"}

    path.write_bytes(rewrite_manifest(path.read_bytes(), edit))
    return path, leaf.dry_id


def test_loading_a_file_of_a_missing_backend_says_which_package_to_install(
        tmp_path: Path) -> None:
    from dryml import load_object
    from dryml.errors import BackendUnavailableError

    path, _ = _fakefw_file(tmp_path)
    with pytest.raises(BackendUnavailableError) as caught:
        load_object(path)
    assert str(caught.value) == NEEDS_FAKEFW
    assert "dryml_fakefw" not in sys.modules


def test_repo_get_of_a_missing_backend_says_the_same(tmp_path: Path) -> None:
    from dryml.errors import BackendUnavailableError
    from dryml.repo import Repo

    folder = tmp_path / "repo"
    folder.mkdir()
    _, dry_id = _fakefw_file(folder)
    repo = Repo(folder)
    assert repo.ids() == [dry_id]
    for call in (lambda: repo.get(dry_id), lambda: repo.load(dry_id), lambda: list(repo)):
        with pytest.raises(BackendUnavailableError) as caught:
            call()
        assert str(caught.value) == NEEDS_FAKEFW


def test_a_codec_of_a_missing_backend_says_which_package_to_install(tmp_path: Path) -> None:
    from dryfiles import Holder

    from dryml import load_object
    from dryml.errors import BackendUnavailableError

    path = tmp_path / "holder.dry"
    save_object(Holder(), path)

    def edit(manifest: dict[str, Any]) -> None:
        value = manifest["objects"][0]["state"]["weights"]["value"]
        value["codec"], value["package"] = "fakefw.tensor", "dryml-fakefw"

    path.write_bytes(rewrite_manifest(path.read_bytes(), edit))
    with pytest.raises(BackendUnavailableError) as caught:
        load_object(path, trust=["dryfiles"])
    assert str(caught.value) == (
        "this file needs the package 'dryml-fakefw' (for its argument codec 'fakefw.tensor'), "
        "which is not installed or not active here: pip install dryml-fakefw (`dryml plugins` "
        "lists the active plugins)")


def test_inspect_of_a_directory_or_a_text_file_says_it_is_not_a_dry_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    assert main(["inspect", str(folder)]) == 1
    assert capsys.readouterr().err == (
        f"dryml: error: {str(folder)!r} is a directory, not a .dry file (a folder of .dry "
        "files is opened with dryml.Repo)\n")
    text = tmp_path / "x.dry"
    text.write_text("just some text, not a model\n")
    assert main(["inspect", str(text)]) == 1
    assert capsys.readouterr().err == (
        "dryml: error: not a .dry file: it does not start with dryml's marker\n")


def test_plugins_check_asks_every_hook_so_a_raising_one_shows_unavailable(tmp_path: Path
                                                                         ) -> None:
    """Found by review: a plugin whose hook raises showed 'active' and --check passed; it
    became unavailable only at its first use, which then told users to look at 'dryml
    plugins'."""
    make_distribution(tmp_path, "dp-raising", {"raising": "dp_raising"},
                      {"dp_raising": RAISING.format(module="dp_raising")}, "1.0")
    result = run_cli("plugins", "--check", env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 1, result.stdout
    row = next(line for line in result.stdout.splitlines() if line.startswith("raising"))
    assert row.split()[:4] == ["raising", "dp-raising", "1.0", "unavailable"]
    assert "the dp_raising serializers exploded" in result.stdout


def test_plugins_names_a_disabled_plugin_name_that_matches_no_plugin() -> None:
    """Found by review: a misspelt name (the distribution's, 'dryml-torch' for 'torch')
    blocked nothing and nothing said so."""
    result = run_cli("plugins", env={"DRYML_DISABLED_PLUGINS": "dryml-nothing"})
    assert result.returncode == 0
    assert ("dryml: warning: DRYML_DISABLED_PLUGINS names dryml-nothing, which no plugin is "
            "called (the names are the NAME column: core") in result.stderr


def test_plugins_names_a_misspelt_records_module_of_an_active_backend(tmp_path: Path) -> None:
    """Found by review: a backend whose `_records_serializer` (no s) module dryml never read
    showed 'active' and nothing said why it had no serializers."""
    make_distribution(tmp_path, "dp-typo", {"typo": "dp_typo:plugin"})
    package = tmp_path / "dp_typo"
    package.mkdir()
    (package / "__init__.py").write_text(
        "from dryml.backend import BackendPlugin\nplugin = BackendPlugin('dp_typo')\n")
    (package / "_records_serializer.py").write_text("SERIALIZERS = []\n")
    result = run_cli("plugins", "--check", env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith("typo"))
    assert row.split()[:4] == ["typo", "dp-typo", "1.0", "active"]
    assert ("dryml: warning: the backend 'dp_typo' has a module _records_serializer, which "
            "dryml never reads (did you mean _records_serializers?)") in result.stderr
