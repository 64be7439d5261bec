"""Conformance suite for backends that put framework objects into ``.dry`` files.

Every backend (and any third-party one) runs the same checks against its own serializers and
argument codecs: a backend describes a few :class:`SerializerCase` s and either subclasses
:class:`SerializerConformance` in its pytest tests or calls the ``check_*`` functions itself.

What is checked for each case
-----------------------------
``check_round_trip``
    save, load in this process: the loaded object's output is bit-identical (same dtype,
    shape and bytes) to the original's, and saving did not change the original.
``check_mmap_load``
    load with ``mmap=True`` (read-only arrays over the file) and ``mmap="c"``
    (copy-on-write): outputs bit-identical to the original's.
``check_fresh_process_load``
    save here, load in a fresh ``python`` subprocess (same interpreter, so the same venv: the
    nox ``tests`` session of a backend installs only ``dryml-core`` and that backend), and
    compare the output computed there with the one computed here, bit for bit.
``check_backend_missing``
    load in a subprocess where the backend's plugin is switched off
    (``DRYML_DISABLED_PLUGINS=<plugin>``, which is what a missing package looks like to dryml):
    :class:`~dryml.errors.BackendUnavailableError` whose message names the pip package.
``check_corrupted_member``
    flip the last byte of each binary member in turn: loading raises
    :class:`~dryml.errors.ChecksumError` (this also proves every member is read through the
    checksummed reader).
``check_inspect_without_framework``
    in a subprocess where importing the framework fails, :func:`dryml.format.read_manifest`
    and ``dryml inspect FILE`` still read the file, which names the backend's package and the
    framework versions; no framework module was imported.
``check_version_skew``
    the manifest records each framework's version; a file claiming a different major version
    loads with a :class:`~dryml.errors.DrymlVersionWarning` that names the framework.

How a backend uses it
---------------------
Write, in an importable test module (pytest's default import modes both work), module-level
functions that build an Object holding framework values and compute a comparable output::

    # tests/torch/test_serializers_torch.py
    import numpy as np
    from dryml import Object
    from dryml.testing.serializers import SerializerCase, SerializerConformance

    class Net(Object):
        def __init__(self, width):
            import torch
            self.net = torch.nn.Linear(width, 2)
        def save_object_imp(self, store):
            store.put("net", self.net)
        def load_object_imp(self, store):
            self.net.load_state_dict(store.get("net"))

    def build_net() -> Net:
        import torch
        torch.manual_seed(0)
        return Net(4)

    def net_output(obj: Net) -> np.ndarray:
        import torch
        with torch.no_grad():
            return obj.net(torch.ones(3, 4)).numpy()

    class TestTorchConformance(SerializerConformance):
        cases = (SerializerCase("linear", build=build_net, output=net_output,
                                plugin="torch", package="dryml-torch",
                                frameworks=("torch",), framework_modules=("torch",)),)

``build`` and ``output`` must be module-level functions (no lambdas, no closures) and the
Object classes must be module-level classes: the subprocess checks import them by name from
the same file. ``output`` returns a numpy array, or a dict or list of numpy arrays (convert
framework tensors with ``.numpy()``). Import the framework inside functions where you can:
the module is imported in the subprocess whose plugin is switched off. A case's Object must
hold at least one value that needs the backend's serializers or codecs; a framework *class*
passed as an argument is not enough (with the plugin off, its trusted modules are gone too
and loading stops earlier, at the class, with ``UntrustedClassError``).

Each subclass gets one test per check and case (``test_round_trip[linear]`` ...). Set
``DRYML_REQUIRE_BACKENDS`` in CI so that a missing framework fails instead of skipping
(the suite itself never skips). Without pytest, call the ``check_*`` functions with a case
and a temporary directory.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import attrs
import numpy as np

from dryml._object import Object

__all__ = [
    "SerializerCase",
    "SerializerConformance",
    "assert_bit_identical",
    "check_backend_missing",
    "check_corrupted_member",
    "check_fresh_process_load",
    "check_inspect_without_framework",
    "check_round_trip",
    "check_version_skew",
    "rewrite_frameworks",
    "rewrite_manifest",
]

#: Seconds a subprocess check may take (importing a framework is the slow part).
SUBPROCESS_TIMEOUT = 300
#: At most this many members are corrupted one at a time by :func:`check_corrupted_member`.
MAX_CORRUPTED_MEMBERS = 12


def _ref(fn: Callable[..., Any], what: str) -> str:
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", "")
    if not module or "<" in qualname or module == "__main__":
        raise ValueError(
            f"SerializerCase.{what} must be a module-level function of an importable module "
            f"(the subprocess checks import it by name), got {fn!r}")
    return f"{module}:{qualname}"


@attrs.frozen
class SerializerCase:
    """One thing a backend saves, described for the conformance checks.

    ``name``: the test id. ``build()``: a new Object holding framework values (as arguments
    and/or stored state). ``output(obj)``: a numpy array (or a dict or list of them) computed
    from the object, e.g. predictions; compared bit for bit. ``plugin``: the backend's
    entry-point name in the ``dryml`` group (``"torch"``). ``package``: its pip distribution
    (``"dryml-torch"``), which errors must name. ``frameworks``: framework names the backend
    records in the manifest (``("torch",)``). ``framework_modules``: top-level modules that
    inspecting a file must not import (``("torch",)``). ``trust``: extra modules to trust when
    loading (the module of ``build`` is always trusted).
    """

    name: str
    build: Callable[[], Object]
    output: Callable[[Any], Any]
    plugin: str
    package: str
    frameworks: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    framework_modules: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    trust: tuple[str, ...] = attrs.field(default=(), converter=tuple)

    def __attrs_post_init__(self) -> None:
        _ref(self.build, "build")
        _ref(self.output, "output")

    def trusted(self, obj: Object | None = None) -> list[str]:
        """Modules passed as ``trust=`` when loading: the case's module, the Object's, extras."""
        out = [self.build.__module__, *self.trust]
        if obj is not None:
            out.append(type(obj).__module__)
        return sorted(set(out))

    def import_path(self) -> list[str]:
        """``sys.path`` entries a subprocess needs to import this case's modules."""
        out: list[str] = []
        for name in dict.fromkeys((self.build.__module__, self.output.__module__)):
            file = getattr(sys.modules.get(name), "__file__", None)
            if not file:
                continue
            path = Path(file).resolve()
            depth = len(name.split(".")) + (path.name == "__init__.py")
            root = str(path.parents[depth - 1])
            if root not in out:
                out.append(root)
        return out


# -- comparing outputs -------------------------------------------------------------------------

def _arrays(value: Any) -> dict[str, np.ndarray]:
    if isinstance(value, dict):
        return {str(k): np.asarray(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) and value and all(
            isinstance(v, np.ndarray) for v in value):
        return {f"arr_{i}": np.asarray(v) for i, v in enumerate(value)}
    return {"output": np.asarray(value)}


def _save_output(value: Any, path: str | Path) -> None:
    arrays = _arrays(value)
    for key, arr in arrays.items():
        if arr.dtype.hasobject:
            raise TypeError(f"output {key!r} has dtype=object; return numeric arrays")
    np.savez(path, **arrays)  # type: ignore[arg-type]


def _load_output(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def assert_bit_identical(expected: Any, actual: Any, what: str = "output") -> None:
    """Assert two outputs have the same keys, dtypes, shapes and bytes."""
    exp = expected if isinstance(expected, dict) and all(
        isinstance(v, np.ndarray) for v in expected.values()) else _arrays(expected)
    act = actual if isinstance(actual, dict) and all(
        isinstance(v, np.ndarray) for v in actual.values()) else _arrays(actual)
    assert sorted(exp) == sorted(act), f"{what}: keys differ: {sorted(exp)} != {sorted(act)}"
    for key in exp:
        a, b = exp[key], act[key]
        assert a.dtype == b.dtype, f"{what}[{key}]: dtype {a.dtype} became {b.dtype}"
        assert a.shape == b.shape, f"{what}[{key}]: shape {a.shape} became {b.shape}"
        assert np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes(), (
            f"{what}[{key}]: values differ after loading (not bit-identical)")


# -- subprocesses ------------------------------------------------------------------------------

_CHILD = textwrap.dedent("""
    import json, sys
    spec = json.loads(sys.argv[1])
    sys.path[:0] = spec["path"]

    class _Blocker:
        # Makes the framework look uninstalled: importing it fails like a missing package.
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in spec["block"]:
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
            return None

    sys.meta_path.insert(0, _Blocker())
    result = {"ok": False}
    try:
        if spec["mode"] == "manifest":
            from dryml.format import read_manifest
            m = read_manifest(spec["file"])
            result["plugins"] = dict(m.plugins)
            result["frameworks"] = dict(m.frameworks)
            result["classes"] = [node.cls for node in m.objects]
            import contextlib, io
            from dryml.cli import main
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                result["inspect_rc"] = main(["inspect", spec["file"]])
            result["inspect_out"] = out.getvalue()
            from dryml.plugins import _RECORD_TYPES, get_plugin_manager
            manager = get_plugin_manager()
            for hook in _RECORD_TYPES:  # what listing the plugins asks of each
                manager.records(hook)
        else:
            from dryml import load_object
            from dryml.records import load_ref
            from dryml.testing.serializers import _save_output
            obj = load_object(spec["file"], trust=spec["trust"])
            if spec["output"]:
                _save_output(load_ref(spec["output"])(obj), spec["out"])
        result["ok"] = True
    except BaseException as exc:
        result["error"] = type(exc).__name__
        result["mro"] = [c.__name__ for c in type(exc).__mro__]
        result["message"] = str(exc)
    result["imported"] = sorted({m.split(".")[0] for m in sys.modules} & set(spec["watch"]))
    with open(spec["result"], "w") as f:
        json.dump(result, f)
""")


def _run_child(spec: dict[str, Any], tmp: Path, env: dict[str, str] | None = None
               ) -> dict[str, Any]:
    result = tmp / f"result-{spec['mode']}.json"
    spec = {"block": [], "watch": [], "trust": [], "output": None, "path": [], **spec,
            "result": str(result)}
    child_env = {**os.environ, **(env or {})}
    proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(spec)],
                          env=child_env, capture_output=True, text=True,
                          timeout=SUBPROCESS_TIMEOUT, check=False)
    if not result.exists():
        raise AssertionError(f"the subprocess check died (exit {proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    out: dict[str, Any] = json.loads(result.read_text())
    out["stderr"] = proc.stderr[-3000:]
    return out


def _saved(case: SerializerCase, tmp: Path) -> tuple[Object, Path]:
    from dryml._io import save_object

    obj = case.build()
    path = tmp / f"{case.name}.dry"
    save_object(obj, path)
    return obj, path


# -- the checks --------------------------------------------------------------------------------

def check_round_trip(case: SerializerCase, tmp: Path) -> Object:
    """Save and load in this process; outputs bit-identical; returns the loaded Object."""
    from dryml._io import load_object, save_object

    obj = case.build()
    before = _arrays(case.output(obj))
    path = tmp / f"{case.name}.dry"
    assert save_object(obj, path) is True
    assert_bit_identical(before, case.output(obj), "output of the original after saving")
    loaded = load_object(path, trust=case.trusted(obj))
    assert type(loaded) is type(obj), f"loaded a {type(loaded)}, saved a {type(obj)}"
    assert loaded.dry_id == obj.dry_id
    # the constructor arguments too (through the argument codecs): an output that does not
    # use one would not show a codec that reads it back wrong
    assert loaded.definition() == obj.definition(), (
        f"the loaded object's definition differs from the saved one's:\n{loaded.definition()!r}"
        f"\n!=\n{obj.definition()!r}")
    assert_bit_identical(before, case.output(loaded), "output after loading")
    return loaded


def check_mmap_load(case: SerializerCase, tmp: Path) -> None:
    """Load with ``mmap=True`` (read-only arrays over the file) and ``mmap="c"``
    (copy-on-write): outputs bit-identical to the original's."""
    from dryml._io import load_object, save_object

    obj = case.build()
    before = _arrays(case.output(obj))
    path = tmp / f"{case.name}-mmap.dry"
    save_object(obj, path)
    for mode in (True, "c"):
        loaded = load_object(path, trust=case.trusted(obj), mmap=mode)
        assert type(loaded) is type(obj), f"mmap={mode!r}: loaded a {type(loaded)}"
        assert_bit_identical(before, case.output(loaded), f"output after mmap={mode!r} load")


def check_fresh_process_load(case: SerializerCase, tmp: Path) -> None:
    """Load in a fresh subprocess; its output is bit-identical to this process's."""
    obj, path = _saved(case, tmp)
    expected = _arrays(case.output(obj))
    out_file = tmp / f"{case.name}-child.npz"
    result = _run_child({"mode": "load", "file": str(path), "trust": case.trusted(obj),
                         "output": _ref(case.output, "output"), "out": str(out_file),
                         "path": case.import_path()}, tmp)
    assert result["ok"], (f"loading in a fresh process failed: {result.get('error')}: "
                          f"{result.get('message')}\n{result['stderr']}")
    assert_bit_identical(expected, _load_output(out_file), "output in a fresh process")


def check_backend_missing(case: SerializerCase, tmp: Path) -> None:
    """Without the backend, loading fails with BackendUnavailableError naming the package and
    what to do: the backend is disabled here (``DRYML_DISABLED_PLUGINS``), so the error says
    its plugin is blocked and to enable it, where an uninstalled one says ``pip install``."""
    obj, path = _saved(case, tmp)
    result = _run_child({"mode": "load", "file": str(path), "trust": case.trusted(obj),
                         "path": case.import_path()}, tmp,
                        env={"DRYML_DISABLED_PLUGINS": case.plugin})
    assert not result["ok"], (f"the file loaded with the plugin {case.plugin!r} disabled; "
                              "it should need the backend")
    assert "BackendUnavailableError" in result["mro"], (
        f"expected BackendUnavailableError, got {result['error']}: {result['message']}")
    assert case.package in result["message"], (
        f"the error must name the pip package {case.package!r}: {result['message']}")
    assert f"its dryml plugin {case.plugin!r} is blocked here" in result["message"] and (
        "enable it to load this file" in result["message"]), result["message"]


def _corrupt(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 0xFF]) + data[offset + 1:]


def check_corrupted_member(case: SerializerCase, tmp: Path) -> None:
    """Corrupting any member's last byte makes loading raise ChecksumError."""
    from dryml._io import load_object
    from dryml.errors import ChecksumError
    from dryml.format import read_manifest

    obj, path = _saved(case, tmp)
    data = path.read_bytes()
    members = read_manifest(path).members
    assert members, (f"case {case.name!r} wrote no binary member; make its framework value "
                     "big enough to need one")
    # every member is read by a load (the corruptions below are a sample of them: a member
    # never read back went unnoticed among 30)
    unread = sorted(set(members) - _members_read(lambda: load_object(
        path, trust=case.trusted(obj))))
    assert not unread, (f"loading never read the members {unread}: is the serializer reading "
                        "everything it wrote back through the MemberReader?")
    names = sorted(members)
    step = max(1, len(names) // MAX_CORRUPTED_MEMBERS)
    for name in names[::step]:
        info = members[name]
        if info.size == 0:
            continue
        bad = tmp / f"{case.name}-bad.dry"
        bad.write_bytes(_corrupt(data, info.offset + info.size - 1))
        try:
            load_object(bad, trust=case.trusted(obj))
        except ChecksumError:
            continue
        except Exception as exc:  # noqa: BLE001 - the assertion says what came instead
            raise AssertionError(f"corrupting member {name!r} gave {type(exc).__name__}: "
                                 f"{exc}, not ChecksumError") from exc
        raise AssertionError(f"corrupting member {name!r} went unnoticed: is it read back "
                             "through the MemberReader?")


def _members_read(load: Callable[[], Any]) -> set[str]:
    """The names of the members ``load()`` reads (through any ContainerReader)."""
    from unittest import mock

    from dryml.format._container import ContainerReader

    read: set[str] = set()
    charge = ContainerReader._charge

    def counting(self: ContainerReader, name: str, info: Any) -> None:
        read.add(name)
        charge(self, name, info)

    with mock.patch.object(ContainerReader, "_charge", counting):
        load()
    return read


def check_inspect_without_framework(case: SerializerCase, tmp: Path) -> None:
    """``read_manifest`` and ``dryml inspect`` work without the framework, importing none."""
    _, path = _saved(case, tmp)
    # the framework installed but never imported: inspecting, listing the plugins and asking
    # their hooks import none of it (with it blocked, as below, nothing could show up here)
    present = _run_child({"mode": "manifest", "file": str(path),
                          "watch": list(case.framework_modules)}, tmp)
    assert present["ok"], f"inspecting failed: {present.get('error')}: {present.get('message')}"
    assert present["imported"] == [], (
        f"inspecting the file or listing the plugins imported {present['imported']}: a plugin "
        "module and its hooks must not import the framework (import it inside the serializer)")
    result = _run_child({"mode": "manifest", "file": str(path),
                         "block": list(case.framework_modules),
                         "watch": list(case.framework_modules)}, tmp)
    assert result["ok"], f"read_manifest failed: {result.get('error')}: {result.get('message')}"
    assert result["imported"] == [], f"inspecting the file imported {result['imported']}"
    assert result["inspect_rc"] == 0, f"dryml inspect failed:\n{result['inspect_out']}"
    assert case.package in result["inspect_out"], result["inspect_out"]
    assert case.package in result["plugins"], (
        f"the manifest must record {case.package!r}; it records {result['plugins']}")
    for framework in case.frameworks:
        assert result["frameworks"].get(framework), (
            f"the manifest must record the {framework} version; it records "
            f"{result['frameworks']}")


def rewrite_manifest(data: bytes, edit: Callable[[dict[str, Any]], None]) -> bytes:
    """A copy of a ``.dry`` file whose manifest ``edit`` changed in place (members kept).

    The new manifest gets a valid checksum, so a loader sees exactly the edited manifest:
    useful to test what a file written elsewhere (another version, a CUDA machine) does.
    """
    import xxhash
    import zstandard

    from dryml.format._container import _TRAILER, ContainerReader

    reader = ContainerReader(io.BytesIO(data))
    manifest = json.loads(json.dumps(reader.manifest))
    edit(manifest)
    raw = json.dumps(manifest, separators=(",", ":")).encode()
    stored = zstandard.ZstdCompressor().compress(raw)
    offset = reader.manifest_end
    trailer = _TRAILER.pack(offset, len(stored), len(raw), xxhash.xxh3_64_intdigest(stored),
                            reader.version, 0, b"DRYMLEND")
    return data[:offset] + stored + trailer


def rewrite_frameworks(data: bytes, frameworks: dict[str, str]) -> bytes:
    """A copy of a ``.dry`` file whose manifest records other framework versions."""

    def edit(manifest: dict[str, Any]) -> None:
        manifest["frameworks"] = {**manifest.get("frameworks", {}), **frameworks}

    return rewrite_manifest(data, edit)


def _other_major(version: str) -> str:
    head = version.split(".")[0]
    return f"{int(head) + 1 if head.isdigit() else 1}.0.0"


def check_version_skew(case: SerializerCase, tmp: Path) -> None:
    """A file claiming another major framework version loads with DrymlVersionWarning."""
    from dryml._io import load_object
    from dryml.errors import DrymlVersionWarning
    from dryml.format import read_manifest

    obj, path = _saved(case, tmp)
    recorded = read_manifest(path).frameworks
    for framework in case.frameworks:
        assert recorded.get(framework), (
            f"the manifest must record the {framework} version (writer.record_version(..., "
            f"framework=({framework!r}, version))); it records {recorded}")
        skewed = tmp / f"{case.name}-{framework}-skew.dry"
        skewed.write_bytes(rewrite_frameworks(
            path.read_bytes(), {framework: _other_major(recorded[framework])}))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loaded = load_object(skewed, trust=case.trusted(obj))
        messages = [str(w.message) for w in caught
                    if issubclass(w.category, DrymlVersionWarning)]
        assert any(framework in m for m in messages), (
            f"loading a file written with another major {framework} version must warn "
            f"DrymlVersionWarning naming {framework!r}; warnings: {messages}")
        assert_bit_identical(case.output(obj), case.output(loaded), "output after skew load")


CHECKS: dict[str, Callable[[SerializerCase, Path], Any]] = {
    "round_trip": check_round_trip,
    "mmap_load": check_mmap_load,
    "fresh_process_load": check_fresh_process_load,
    "backend_missing": check_backend_missing,
    "corrupted_member": check_corrupted_member,
    "inspect_without_framework": check_inspect_without_framework,
    "version_skew": check_version_skew,
}


class SerializerConformance:
    """Subclass in a pytest module and set ``cases``: one test per check and case.

    See the module docstring for a complete example.
    """

    cases: ClassVar[Sequence[SerializerCase]] = ()

    def pytest_generate_tests(self, metafunc: Any) -> None:
        """Parametrize ``case`` over :attr:`cases` (pytest calls this for each test)."""
        if "case" in metafunc.fixturenames:
            metafunc.parametrize("case", list(self.cases), ids=[c.name for c in self.cases])

    def test_round_trip(self, case: SerializerCase, tmp_path: Path) -> None:
        """Outputs are bit-identical after a save/load in this process."""
        check_round_trip(case, tmp_path)

    def test_mmap_load(self, case: SerializerCase, tmp_path: Path) -> None:
        """Outputs are bit-identical when loaded with ``mmap=True`` and ``mmap="c"``."""
        check_mmap_load(case, tmp_path)

    def test_fresh_process_load(self, case: SerializerCase, tmp_path: Path) -> None:
        """Outputs are bit-identical when the file is loaded in a fresh process."""
        check_fresh_process_load(case, tmp_path)

    def test_backend_missing(self, case: SerializerCase, tmp_path: Path) -> None:
        """Without the backend: BackendUnavailableError naming the pip package."""
        check_backend_missing(case, tmp_path)

    def test_corrupted_member(self, case: SerializerCase, tmp_path: Path) -> None:
        """A damaged member: ChecksumError."""
        check_corrupted_member(case, tmp_path)

    def test_inspect_without_framework(self, case: SerializerCase, tmp_path: Path) -> None:
        """The manifest reads without the framework, importing none."""
        check_inspect_without_framework(case, tmp_path)

    def test_version_skew(self, case: SerializerCase, tmp_path: Path) -> None:
        """Another major framework version in the file: DrymlVersionWarning."""
        check_version_skew(case, tmp_path)
