"""Hostile files, built byte by byte with valid checksums, loaded in a subprocess that has a
canary the payload would create, a memory cap and a timeout: no code runs, nothing is imported
because a file named it, memory stays bounded, every failure is a dryml error."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dryfiles import build_file, explode, rewrite_manifest, sample_bytes, zstd

from dryml import load_object
from dryml.errors import DrymlError, FormatError, LimitExceededError

TESTS = str(Path(__file__).parent)
#: Address-space cap of the loading subprocess: well below what any of the bombs would need.
MEMORY_CAP = 1536 * 2**20


def run_hostile(code: str, cwd: Path, timeout: float = 300) -> dict[str, Any]:
    """Run ``code`` (which sets a dict ``result``) in a fresh interpreter with a memory cap;
    returns ``result`` plus the peak resident memory in MiB and the exit status."""
    script = textwrap.dedent(f"""
        import json, resource, sys
        resource.setrlimit(resource.RLIMIT_AS, ({MEMORY_CAP}, {MEMORY_CAP}))
        sys.path.insert(0, {TESTS!r})
        result = {{}}
    """) + textwrap.dedent(code) + textwrap.dedent("""
        result["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print("RESULT" + json.dumps(result))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=timeout, cwd=cwd,
                         env={"PATH": "/usr/bin:/bin", "OPENBLAS_NUM_THREADS": "1"})
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT")]
    assert out.returncode == 0 and lines, (out.returncode, out.stdout[-2000:], out.stderr[-4000:])
    return json.loads(lines[-1][len("RESULT"):])  # type: ignore[no-any-return]


LOAD = """
    import io, sys
    import dryfiles  # the sample's own Object classes, as a user's script would have them
    from dryml import load_object
    from dryml.errors import DrymlError
    data = open({path!r}, "rb").read()
    before = set(sys.modules)
    try:
        load_object(io.BytesIO(data){extra})
        result["outcome"] = "loaded"
    except DrymlError as exc:
        result["outcome"] = type(exc).__name__
        result["message"] = str(exc)
    except SystemExit:
        result["outcome"] = "SystemExit"
    result["imported"] = sorted(set(sys.modules) - before)
"""


def load_hostile(data: bytes, tmp_path: Path, extra: str = "") -> dict[str, Any]:
    path = tmp_path / "hostile.dry"
    path.write_bytes(data)
    return run_hostile(LOAD.format(path=str(path), extra=extra), tmp_path)


def with_root_class(path: str) -> bytes:
    def edit(m: dict[str, Any]) -> None:
        m["objects"][-1]["cls"] = path
    return rewrite_manifest(sample_bytes(), edit)


# --- 1. nothing is imported because a file named it ----------------------------------------

def test_a_program_entry_point_under_a_trusted_prefix_is_never_imported(tmp_path: Path) -> None:
    # Importing dryml.cli.__main__ runs the CLI with the victim's argv and raises SystemExit.
    result = load_hostile(with_root_class("dryml.cli.__main__:main"), tmp_path)
    assert result["outcome"] == "UntrustedClassError", result
    assert "dryml.cli.__main__" not in result["imported"]
    assert "entry point or test code" in result["message"]


def test_test_code_under_a_trusted_prefix_is_never_imported(tmp_path: Path) -> None:
    # dryml.testing is a pytest plugin: importing it would pull pytest into the loader.
    result = load_hostile(with_root_class("dryml.testing.trainers:TrainerCase"), tmp_path)
    assert result["outcome"] == "UntrustedClassError", result
    assert not [m for m in result["imported"] if m.startswith(("pytest", "dryml.testing"))]


CANARY_PACKAGE = {
    "canarypkg/__init__.py": "",
    "canarypkg/evil.py": "open({marker!r}, 'w').write('ran')\nclass Thing: pass\n",
}


def _canary_package(tmp_path: Path) -> Path:
    marker = tmp_path / "canary-ran"
    for name, text in CANARY_PACKAGE.items():
        target = tmp_path / "pkgs" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text.format(marker=str(marker)))
    return marker


DECLARED = """
    import io
    sys.path.insert(0, {pkgs!r})
    import dryfiles
    from dryml import load_object
    from dryml.errors import DrymlError
    from dryml.testing import temporary_plugin
    data = open({path!r}, "rb").read()
    # A plugin declares the package importable: only the package itself may be imported.
    with temporary_plugin({{"dryml_trusted_modules": lambda: ["canarypkg"]}}, "canary"):
        try:
            load_object(io.BytesIO(data){extra})
            result["outcome"] = "loaded"
        except DrymlError as exc:
            result["outcome"] = type(exc).__name__
    result["evil imported"] = "canarypkg.evil" in sys.modules
"""


@pytest.mark.parametrize("where", ["class", "argument"])
def test_a_submodule_of_a_declared_module_is_not_imported(tmp_path: Path, where: str) -> None:
    marker = _canary_package(tmp_path)

    def edit(m: dict[str, Any]) -> None:
        if where == "class":
            m["objects"][-1]["cls"] = "canarypkg.evil:Thing"
        else:
            m["objects"][0]["args"] = [{"__dry__": "class", "path": "canarypkg.evil:Thing"}]
    path = tmp_path / "hostile.dry"
    path.write_bytes(rewrite_manifest(sample_bytes(), edit))
    code = DECLARED.format(pkgs=str(tmp_path / "pkgs"), path=str(path), extra="")
    result = run_hostile(code, tmp_path)
    assert result["outcome"] == "UntrustedClassError", result
    assert result["evil imported"] is False
    assert not marker.exists()


def test_the_callers_own_trust_entry_imports_as_named(tmp_path: Path) -> None:
    # trust= is the caller's decision: the module is imported (the canary shows it ran), and
    # the class is still refused because it is not a dryml Object.
    marker = _canary_package(tmp_path)
    path = tmp_path / "hostile.dry"
    path.write_bytes(with_root_class("canarypkg.evil:Thing"))
    code = DECLARED.format(pkgs=str(tmp_path / "pkgs"), path=str(path),
                           extra=", trust=['canarypkg']")
    result = run_hostile(code, tmp_path)
    assert result["outcome"] == "UntrustedClassError"
    assert marker.exists()


# --- 3. tiny files cannot exhaust memory ---------------------------------------------------

def _sample_parts() -> tuple[dict[str, Any], dict[str, Any]]:
    return explode(sample_bytes())


def test_a_manifest_bomb_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    manifest, members = _sample_parts()
    bomb = b'{"format":"dryml","x":[' + b"{}," * (20 * 2**20) + b"{}]}"
    data = build_file(manifest, members, manifest_raw=bomb)
    assert len(data) < 64 * 1024
    result = load_hostile(data, tmp_path)
    assert result["outcome"] == "LimitExceededError", result
    assert result["peak_mib"] < 400


def test_many_small_values_under_the_ratio_floor_are_refused_by_count(tmp_path: Path) -> None:
    manifest, members = _sample_parts()
    bomb = b'{"format":"dryml","x":[' + b"{}," * (4 * 2**20) + b"{}]}"  # 12 MiB of {}
    result = load_hostile(build_file(manifest, members, manifest_raw=bomb), tmp_path)
    assert result["outcome"] == "LimitExceededError", result
    assert "JSON values" in result["message"]
    assert result["peak_mib"] < 400


@pytest.mark.parametrize("kind", ["bytes", "npy"])
def test_a_member_declaring_gigabytes_is_refused_before_allocating(tmp_path: Path,
                                                                   kind: str) -> None:
    manifest, members = _sample_parts()
    name, (_, _, _, member_kind) = next((n, m) for n, m in members.items() if m[3] == kind)
    if kind == "npy":
        header = io.BytesIO()
        np.lib.format.write_array_header_2_0(
            header, {"descr": "<f8", "fortran_order": False, "shape": (2**28,)})
        raw_size = len(header.getvalue()) + 2**31
        stored = zstd(header.getvalue() + bytes(2**24))  # compresses to a few KB
    else:
        raw_size = 4 * 2**30
        stored = zstd(bytes(2**24))
    members[name] = (stored, raw_size, "zstd", member_kind)
    data = build_file(manifest, members)
    assert len(data) < 256 * 1024
    result = load_hostile(data, tmp_path)
    assert result["outcome"] == "LimitExceededError", result
    assert result["peak_mib"] < 400


def test_many_small_members_at_the_ratio_floor_are_refused_together(tmp_path: Path) -> None:
    """The 16 MiB floor applied to each member: a 97 KB file of 150 members of 600 bytes,
    each declaring 16 MiB, took 2 GB to load (N members, N x 16 MiB, no upper bound)."""
    manifest, members = _sample_parts()
    npy = io.BytesIO()
    np.save(npy, np.zeros(2**24 - 128, np.uint8))
    raw = npy.getvalue()
    stored = zstd(raw)
    names = [f"m{i:04d}.npy" for i in range(80)]  # 80 x 16 MiB, past the 1 GiB allowance
    members.update({n: (stored, len(raw), "zstd", "npy") for n in names})
    manifest["objects"][-1]["args"] = [
        {"__dry__": "codec", "codec": "numpy.ndarray", "package": "dryml-core",
         "data": {"member": n}} for n in names]
    data = build_file(manifest, members)
    assert len(data) < 128 * 1024  # for 1.3 GB
    result = load_hostile(data, tmp_path)
    assert result["outcome"] == "LimitExceededError", result
    assert "Limits.max_beyond_ratio" in result["message"]
    assert result["peak_mib"] < 400


def test_the_writer_keeps_its_files_within_the_whole_file_allowance(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer counts what its compressed members take of max_beyond_ratio: past it, a
    member is stored raw, so readers with the same limits load the file."""
    from dryfiles import Holder

    from dryml import save_object
    from dryml.format import Limits, _container

    small = Limits(max_beyond_ratio=6 * 2**20)
    monkeypatch.setattr(_container, "_DEFAULT", small)
    obj = Holder()
    obj.weights = [np.zeros(2**20, dtype=np.float32) for _ in range(4)]  # 4 MiB of zeros each
    buf = io.BytesIO()
    save_object(obj, buf)
    kinds = [compression for _, raw_size, compression, _ in explode(buf.getvalue())[1].values()
             if raw_size >= 2**22]
    assert kinds.count("zstd") == 1 and kinds.count("none") == 3, kinds
    loaded = load_object(io.BytesIO(buf.getvalue()), limits=small)
    assert [w.shape for w in loaded.weights] == [(2**20,)] * 4


def test_a_raw_member_cannot_claim_more_than_its_bytes() -> None:
    import zstandard

    manifest, members = _sample_parts()
    name, (stored, raw_size, _, kind) = next(iter(members.items()))
    raw = zstandard.ZstdDecompressor().decompress(stored, max_output_size=raw_size)
    members[name] = (raw, len(raw) * 1000, "none", kind)
    with pytest.raises(LimitExceededError):
        load_object(io.BytesIO(build_file(manifest, members)))


def test_highly_compressible_data_saved_by_dryml_loads_with_the_default_limits(
        tmp_path: Path) -> None:
    # The writer never makes a file its readers refuse: 48 MB of zeros is past the ratio
    # floor and would compress ~10,000:1, so it is stored raw.
    from dryfiles import Holder

    from dryml import save_object

    obj = Holder()
    obj.weights = np.zeros(12 * 2**20, dtype=np.float32)
    save_object(obj, tmp_path / "zeros.dry")
    assert load_object(tmp_path / "zeros.dry").weights.shape == (12 * 2**20,)


# --- 4. every failure to read a file is a dryml error --------------------------------------

def _edit_root(**changes: Any) -> bytes:
    def edit(m: dict[str, Any]) -> None:
        m["objects"][-1].update(changes)
    return rewrite_manifest(sample_bytes(), edit)


HUGE_SHAPE = {"__dry__": "codec", "codec": "numpy.ndarray", "package": "dryml-core",
              "data": {"dtype": "<f8", "shape": [2**70], "b64": ""}}


@pytest.mark.parametrize("data", [
    pytest.param(_edit_root(args=[HUGE_SHAPE]), id="shape-2**70"),
    pytest.param(_edit_root(kwargs={"__dry__": "tuple", "items": [1, 2]}), id="tagged-kwargs"),
    pytest.param(_edit_root(kwargs={"__dry__": "dict", "items": [[1, 2]]}), id="dict-kwargs"),
    pytest.param(_edit_root(args={"__dry__": "list", "items": []}), id="tagged-args"),
])
def test_crafted_values_raise_dryml_errors_only(data: bytes) -> None:
    with pytest.raises(DrymlError):
        load_object(io.BytesIO(data))


def test_a_manifest_whose_format_version_disagrees_with_the_header() -> None:
    def edit(m: dict[str, Any]) -> None:
        m["format_version"] = 0
    with pytest.raises(FormatError, match="format version 0 but the file's header"):
        load_object(io.BytesIO(rewrite_manifest(sample_bytes(), edit)))


def test_a_text_file_or_a_directory_is_named_as_not_a_dry_file(tmp_path: Path) -> None:
    text = tmp_path / "x.dry"
    text.write_text("this is not a model, just text\n")
    with pytest.raises(FormatError, match="not a .dry file"):
        load_object(text)
    with pytest.raises(FormatError, match="is a directory, not a .dry file"):
        load_object(tmp_path)


# --- 7. nothing a file supplies reaches a terminal raw -------------------------------------

def test_inspect_escapes_terminal_sequences_from_the_file(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    from dryml.cli import main

    evil = "\x1b]0;pwned\x07\x1b[2J\x9b31m\u202e"

    def edit(m: dict[str, Any]) -> None:
        m["dryml_version"] = "1" + evil
        m["created"] = evil
        m["plugins"] = {"evil" + evil: "1" + evil}
        m["metadata"] = {"key" + evil: evil}
        m["objects"][-1]["kwargs"] = {**m["objects"][-1]["kwargs"], "note" + evil: evil}
    path = tmp_path / "evil.dry"
    path.write_bytes(rewrite_manifest(sample_bytes(), edit))
    main(["inspect", str(path)])
    captured = capsys.readouterr()
    for text in (captured.out, captured.err):
        assert "\x1b" not in text and "\x9b" not in text and "\u202e" not in text
        assert "\x07" not in text
    assert "\\x1b" in captured.out


# --- 8. padding bytes are zeroed --------------------------------------------------------

@pytest.mark.parametrize("count", [50, 5000])  # inline in the manifest / an .npy member
def test_padding_of_structured_arrays_is_zeroed_on_save(tmp_path: Path, count: int) -> None:
    from dryfiles import Holder

    from dryml import save_object

    dtype = np.dtype({"names": ["left", "value"], "formats": ["<i2", "<f8"],
                      "offsets": [0, 8], "itemsize": 24})
    # Writable records whose padding holds "heap garbage" (0xAB), as sklearn tree nodes can.
    nodes = np.frombuffer(bytearray(b"\xab" * 24 * count), dtype=dtype)
    nodes["left"] = np.arange(count)
    nodes["value"] = 0.5
    obj = Holder()
    obj.weights = nodes
    save_object(obj, tmp_path / "nodes.dry", compress=False)
    data = (tmp_path / "nodes.dry").read_bytes()
    assert b"\xab" * 6 not in data
    loaded = load_object(tmp_path / "nodes.dry").weights
    assert loaded.dtype == dtype  # field names and offsets survive, not just "|V24"
    assert (loaded["left"] == nodes["left"]).all() and (loaded["value"] == 0.5).all()
    padding = loaded.view(np.uint8).reshape(count, 24)[:, 2:8]
    assert not padding.any()


def test_the_format_page_examples_run() -> None:
    import doctest

    page = Path(__file__).resolve().parents[2] / "docs" / "format.md"
    result = doctest.testfile(str(page), module_relative=False, globs={"__name__": "docs"})
    assert result.attempted >= 3
    assert result.failed == 0


# --- members read again and again ------------------------------------------------------------

def _one_big_member() -> tuple[bytes, dict[str, Any], str]:
    """A file whose root holds one 16 MB array (zeros: a zstd member of a few KB, inside
    Limits.ratio_floor), its manifest, and the argument entry that refers to the member."""
    from dryfiles import Leaf

    from dryml import save_object

    buf = io.BytesIO()
    save_object(Leaf(np.zeros(16 * 2**20 - 4096, dtype=np.uint8)), buf)
    data = buf.getvalue()
    manifest, _ = explode(data)
    return data, manifest, manifest["objects"][0]["args"][0]


def test_a_member_referred_to_many_times_is_refused_not_read_each_time(tmp_path: Path) -> None:
    """A 1 KB file whose one 16 MB member the manifest names 120 times took 1.9 GB to load
    (a fresh decompressed copy per reference); a writer refers to each member once."""
    data, _, ref = _one_big_member()

    def edit(m: dict[str, Any]) -> None:
        m["objects"][0]["args"] = [[ref] * 120]

    hostile = rewrite_manifest(data, edit)
    assert len(hostile) < 4096
    result = load_hostile(hostile, tmp_path)
    assert result["outcome"] == "LimitExceededError", result
    assert "read more often than the file holds it" in result["message"]
    assert result["peak_mib"] < 400


def test_members_that_share_their_bytes_are_refused(tmp_path: Path) -> None:
    """100 member-table entries over the same stored bytes, each named once: every check
    passes per member, and the load took 1.6 GB."""
    data, _, ref = _one_big_member()
    (name,) = explode(data)[1]

    def edit(m: dict[str, Any]) -> None:
        info = m["members"].pop(name)
        m["members"].update({f"alias{i}.npy": dict(info) for i in range(100)})
        m["objects"][0]["args"] = [[{**ref, "data": {"member": f"alias{i}.npy"}}
                                    for i in range(100)]]

    result = load_hostile(rewrite_manifest(data, edit), tmp_path)
    assert result["outcome"] == "FormatError", result
    assert "overlap" in result["message"]
    assert result["peak_mib"] < 400


def test_a_file_saved_by_dryml_reads_each_member_once_even_when_shared(tmp_path: Path) -> None:
    """A child held by several holders (a DAG) is stored once and loads shared: the read
    budget counts members, not references."""
    from dryfiles import Leaf

    from dryml import save_object

    child = Leaf(np.arange(100_000, dtype=np.float64))
    root = Leaf([Leaf(child), Leaf(child), child])
    save_object(root, tmp_path / "dag.dry")
    loaded = load_object(tmp_path / "dag.dry")
    assert loaded.value[0].value is loaded.value[1].value is loaded.value[2]
    np.testing.assert_array_equal(loaded.value[2].value, child.value)


def test_an_object_holding_shared_children_many_levels_deep_is_described_at_once(
        tmp_path: Path) -> None:
    """A 2 KB file of 40 objects, each holding the next twice, is 2**40 objects when each use
    is written out: its repr never ended and ``definition()`` (so ``Repo.add_object``) never
    returned. Its repr now writes each shared child once; a definition past
    ``MAX_DEFINITION_NODES`` is refused with a dryml error, and nothing is added."""
    from dryfiles import Leaf

    from dryml import save_object

    node = Leaf(1)
    for _ in range(40):
        node = Leaf([node, node])
    save_object(node, tmp_path / "chain.dry")
    assert (tmp_path / "chain.dry").stat().st_size < 4096
    result = run_hostile(f"""
        import dryfiles
        from dryml import load_object
        from dryml.errors import DefinitionTooLargeError
        from dryml.repo import Repo
        obj = load_object({str(tmp_path / "chain.dry")!r})
        text = repr(obj)
        result["repr_chars"] = len(text)
        result["repr_shared"] = text.count(", as above>")
        for name, call in (("definition", obj.definition),
                           ("add", lambda: Repo({str(tmp_path / "repo")!r}, create=True)
                            .add_object(obj))):
            try:
                call()
                result[name] = "done"
            except DefinitionTooLargeError as exc:
                result[name] = str(exc)
        result["in_repo"] = len(Repo({str(tmp_path / "repo")!r}))
    """, tmp_path, timeout=120)
    assert result["repr_shared"] == 40 and result["repr_chars"] < 20_000
    assert "more than 65,536 nested definitions" in result["definition"]
    assert "save_object" in result["add"]
    assert result["in_repo"] == 0


def test_shared_children_are_written_out_once_in_a_repr_and_in_full_in_a_definition() -> None:
    from dryfiles import Leaf

    from dryml import ObjectDef
    from dryml.errors import DefinitionTooLargeError

    child = Leaf(7)
    pair = Leaf([child, child])
    assert repr(pair).count("'dry_args': (7,)") == 1
    assert repr(pair).endswith(f"<Leaf {child.dry_id!r}, as above>],), 'dry_kwargs': "
                               f"{{'dry_id': {pair.dry_id!r}}}}}")
    definition = pair.definition()
    first, second = definition.args[0]
    assert first == second == child.definition() and first is not second  # a tree, as before
    built = definition.build()
    assert built.value[0] is built.value[1] and built.value[0].dry_id == child.dry_id
    hand_made = ObjectDef(Leaf, 1)
    for _ in range(20):
        hand_made = ObjectDef(Leaf, [hand_made, hand_made])
    assert repr(hand_made).count("<ObjectDef Leaf, as above>") == 20
    with pytest.raises(DefinitionTooLargeError, match="an ObjectDef of Leaf"):
        hand_made.copy()
