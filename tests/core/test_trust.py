"""Hostile and damaged files: each case gets its own dryml.errors exception, never a hang."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import zstandard
from dryfiles import rewrite_manifest, sample_bytes

from dryml import load_object
from dryml.errors import (
    BackendUnavailableError,
    ChecksumError,
    ClassNotFoundError,
    DrymlError,
    FormatError,
    FormatVersionError,
    LimitExceededError,
    UntrustedClassError,
)
from dryml.format import Limits


@pytest.fixture(scope="module")
def good() -> bytes:
    return sample_bytes()


def load(data: bytes, **kwargs: Any) -> Any:
    return load_object(io.BytesIO(data), **kwargs)


def set_root_cls(path: str) -> Any:
    def edit(m: dict[str, Any]) -> None:
        m["objects"][-1]["cls"] = path
    return edit


def test_sample_loads(good: bytes) -> None:
    assert load(good).weights.shape == (5000,)


@pytest.mark.parametrize("path", ["os:system", "builtins:eval", "subprocess:Popen",
                                  "dryml:save_object"])
def test_file_naming_a_non_object_callable_is_refused(good: bytes, path: str) -> None:
    with pytest.raises(UntrustedClassError, match="not a dryml.Object subclass"):
        load(rewrite_manifest(good, set_root_cls(path)))


def test_file_naming_an_unimported_untrusted_module_imports_nothing(good: bytes) -> None:
    data = rewrite_manifest(good, set_root_cls("json.tool:Thing"))
    sys.modules.pop("json.tool", None)
    with pytest.raises(UntrustedClassError, match=r"module 'json.tool'.*nothing was imported"):
        load(data)
    assert "json.tool" not in sys.modules


def test_trusted_module_missing_class(good: bytes) -> None:
    with pytest.raises(ClassNotFoundError, match="renamed or moved"):
        load(rewrite_manifest(good, set_root_cls("dryml:NoSuchClass")))


def test_class_argument_from_an_untrusted_module_is_refused(good: bytes) -> None:
    def edit(m: dict[str, Any]) -> None:
        m["objects"][0]["args"] = [{"__dry__": "class", "path": "subprocess:Popen"}]

    with pytest.raises(UntrustedClassError, match="subprocess:Popen"):
        load(rewrite_manifest(good, edit))


def test_member_names_with_dot_dot_or_absolute_paths(good: bytes) -> None:
    for bad in ("../../etc/passwd", "/etc/passwd", "a/../b", "a\\b"):
        def edit(m: dict[str, Any], bad: str = bad) -> None:
            name = next(iter(m["members"]))
            m["members"][bad] = m["members"].pop(name)

        with pytest.raises(FormatError, match="invalid member name"):
            load(rewrite_manifest(good, edit))


def test_failed_member_checksum(good: bytes) -> None:
    from dryml.format import read_manifest

    info = max(read_manifest(io.BytesIO(good)).members.values(), key=lambda i: i.size)
    damaged = bytearray(good)
    damaged[info.offset + info.size - 1] ^= 0xFF
    with pytest.raises(ChecksumError, match="does not match its checksum"):
        load(bytes(damaged))


def test_damaged_manifest_checksum(good: bytes) -> None:
    damaged = bytearray(good)
    damaged[-60] ^= 0x01
    with pytest.raises(ChecksumError):
        load(bytes(damaged))


@pytest.mark.parametrize("size", [0, 1, 40, 100, -1, -48, -49])
def test_truncated_or_empty_file(good: bytes, size: int) -> None:
    with pytest.raises(FormatError, match="empty|truncated|damaged|not a .dry"):
        load(good[:size])


def test_not_a_dry_file_at_all(tmp_path: Path) -> None:
    path = tmp_path / "x.dry"
    path.write_bytes(b"PK\x03\x04" + bytes(200))
    with pytest.raises(FormatError, match="not a .dry file"):
        load_object(path)


def test_member_over_the_size_bound(good: bytes) -> None:
    with pytest.raises(LimitExceededError, match="over the limit"):
        load(good, limits=Limits(max_member_bytes=1000))


def test_zstd_bomb_is_stopped_at_its_declared_size() -> None:
    import resource

    from dryml.format._container import ContainerWriter, MemberInfo, _checksum

    bomb = zstandard.ZstdCompressor(level=19).compress(bytes(2 * 2**30))  # 2 GiB of zeros
    assert len(bomb) < 1_000_000
    buf = io.BytesIO()
    writer = ContainerWriter(buf)
    writer._align()
    offset = writer.pos
    writer._write(bomb)
    writer.members["m1.bin"] = MemberInfo(offset, len(bomb), 1000, "zstd", _checksum(bomb),
                                          "bytes")
    writer.finish({"format": "dryml", "format_version": 1, "dryml_version": "0.1.0",
                   "created": "", "root": "r", "objects": [{
                       "id": "r", "cls": "dryfiles:Leaf", "dry_mut": False,
                       "args": [{"__dry__": "bytes", "member": "m1.bin"}], "kwargs": {}}]})
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(LimitExceededError, match="decompresses to more than 1000 bytes"):
        load(buf.getvalue())
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before
    assert grown_kib < 200_000  # never inflated anywhere near 2 GiB


def test_manifest_declaring_a_huge_size(good: bytes) -> None:
    damaged = bytearray(good)
    offset, stored, _raw, digest, version, flags, magic = struct.unpack("<QQQQII8s", good[-48:])
    damaged[-48:] = struct.pack("<QQQQII8s", offset, stored, 2**40, digest, version, flags, magic)
    with pytest.raises(LimitExceededError):
        load(bytes(damaged))


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m.pop("objects"),
        lambda m: m.pop("root"),
        lambda m: m.update(objects="not a list"),
        lambda m: m.update(format_version="1"),
        lambda m: m["objects"][0].update(dry_mut=1),
        lambda m: m["objects"][0].update(args={"not": "a list"}),
        lambda m: m.update(members=[]),
        lambda m: next(iter(m["members"].values())).update(offset="12"),
        lambda m: next(iter(m["members"].values())).update(offset=10**12),
        lambda m: m.update(root="missing"),
        lambda m: m["objects"].append(m["objects"][0]),
        lambda m: m["objects"][-1].update(args=[{"__dry__": "object", "id": "nowhere"}]),
        lambda m: m["objects"][-1].update(args=[{"__dry__": "nonsense"}]),
        lambda m: m["objects"][-1].update(args=[{"__dry__": "tuple", "items": 3}]),
        lambda m: m["objects"][-1]["kwargs"].update(dry_id="x"),
        lambda m: m.update(format="zip"),
    ],
)
def test_manifest_with_wrong_types_or_missing_keys(good: bytes, edit: Any) -> None:
    with pytest.raises(FormatError):
        load(rewrite_manifest(good, edit))


def test_codec_from_a_missing_backend_names_the_package(good: bytes) -> None:
    def edit(m: dict[str, Any]) -> None:
        m["objects"][-1]["args"] = [{"__dry__": "codec", "codec": "torch.tensor",
                                     "package": "dryml-torch", "data": {}}]
    with pytest.raises(BackendUnavailableError, match="pip install dryml-torch"):
        load(rewrite_manifest(good, edit))


def test_newer_format_version_says_which_dryml_is_needed(good: bytes) -> None:
    data = rewrite_manifest(good, lambda m: m.update(dryml_version="7.2.0"))
    data = bytearray(data)
    data[8:12] = struct.pack("<I", 99)
    data[-16:-12] = struct.pack("<I", 99)
    with pytest.raises(FormatVersionError, match=r"version 99.*dryml-core 7\.2\.0"):
        load(bytes(data))


CANARY = """
import io, os, sys
sys.path.insert(0, {tests!r})
from dryfiles import rewrite_manifest, sample_bytes
from dryml import load_object
from dryml.errors import DrymlError

marker = {marker!r}
attacks = {{
    "os.system as the class": ("os:system", [{{"__dry__": "tuple", "items": []}}]),
    "eval as the class": ("builtins:eval", []),
}}
good = sample_bytes()
for label, (cls, args) in attacks.items():
    def edit(m, cls=cls):
        m["objects"][-1]["cls"] = cls
        m["objects"][-1]["args"] = ["touch " + marker]
    try:
        load_object(io.BytesIO(rewrite_manifest(good, edit)))
    except DrymlError as exc:
        print(label, type(exc).__name__)
def edit(m):
    m["objects"][0]["args"] = [{{"__dry__": "class", "path": "subprocess:Popen"}}]
    m["objects"][0]["kwargs"] = {{}}
try:
    load_object(io.BytesIO(rewrite_manifest(good, edit)))
except DrymlError as exc:
    print("Popen as an argument", type(exc).__name__)
print("marker exists:", os.path.exists(marker))
"""


def test_canary_malicious_file_runs_no_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    script = CANARY.format(tests=str(Path(__file__).parent), marker=str(marker))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "UntrustedClassError" in out.stdout
    assert out.stdout.count("UntrustedClassError") == 3
    assert "marker exists: False" in out.stdout
    assert not marker.exists()


def test_every_error_here_is_a_dryml_error() -> None:
    for exc in (UntrustedClassError, ChecksumError, LimitExceededError, FormatVersionError,
                ClassNotFoundError, BackendUnavailableError):
        assert issubclass(exc, DrymlError)


def test_damage_in_an_array_header_is_a_checksum_error() -> None:
    import numpy as np
    from dryfiles import Leaf

    from dryml import save_object
    from dryml.format import read_manifest

    for array in (np.arange(1000.0), np.arange(10_000.0)):  # read whole, read streamed
        buf = io.BytesIO()
        save_object(Leaf(array), buf, compress=False)
        good = buf.getvalue()
        info = next(iter(read_manifest(io.BytesIO(good)).members.values()))
        damaged = bytearray(good)
        damaged[info.offset + 20] ^= 0x41  # inside the .npy header's dict
        with pytest.raises(ChecksumError):
            load(bytes(damaged))


def test_class_argument_reexported_by_a_trusted_module_is_checked_by_its_own_module(
        good: bytes) -> None:
    def edit(m: dict[str, Any]) -> None:  # dryml.format._stale imports pathlib.Path
        m["objects"][0]["args"] = [{"__dry__": "class", "path": "dryml.format._stale:Path"}]

    with pytest.raises(UntrustedClassError, match=r"pathlib\.Path.*not trusted"):
        load(rewrite_manifest(good, edit))


def test_untrusted_class_from_a_missing_plugin_names_the_package(good: bytes) -> None:
    def edit(m: dict[str, Any]) -> None:
        m["plugins"] = {"dryml-notinstalled": "1.0.0"}
        m["objects"][-1]["cls"] = "dryml_notinstalled.models:Net"

    with pytest.raises(BackendUnavailableError, match="pip install dryml-notinstalled"):
        load(rewrite_manifest(good, edit))


LAZY = """
import io, sys
sys.path.insert(0, {tests!r})
from dryfiles import rewrite_manifest, sample_bytes
from dryml import load_object
from dryml.errors import DrymlError

good = sample_bytes()
watched = ("dryml.testing", "numpy.testing", "numpy.f2py", "pytest")
assert not [m for m in watched if m in sys.modules]
for where, path in [("cls", "dryml:testing.fresh_plugin_manager"),
                    ("arg", "dryml:testing.PluginInfo"), ("cls", "numpy:testing.assert_equal"),
                    ("arg", "numpy:f2py.X"), ("arg", "numpy:__getattr__")]:
    def edit(m, where=where, path=path):
        if where == "cls":
            m["objects"][-1]["cls"] = path
        else:
            m["objects"][0]["args"] = [{{"__dry__": "class", "path": path}}]
            m["objects"][0]["kwargs"] = {{}}
    try:
        load_object(io.BytesIO(rewrite_manifest(good, edit)))
        print(path, "loaded")
    except DrymlError as exc:
        print(path, type(exc).__name__)
print("imported:", [m for m in watched if m in sys.modules])
"""


def test_a_class_path_through_a_lazy_module_attribute_imports_nothing() -> None:
    """``dryml:testing.X`` walks dryml's PEP 562 ``__getattr__``, which imports
    ``dryml.testing`` (and pytest) on demand: the walk must read namespaces, not run them."""
    script = LAZY.format(tests=str(Path(__file__).parent))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "imported: []" in out.stdout, out.stdout
    assert "loaded" not in out.stdout, out.stdout
    assert out.stdout.count("Error") == 5, out.stdout
