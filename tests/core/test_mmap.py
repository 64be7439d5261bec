"""load_object(path, mmap=True): read-only arrays backed by the file, checksums on demand."""

from __future__ import annotations

import io
import random
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dryfiles import Leaf, build_file, explode, rewrite_manifest

from dryml import load_object, save_object
from dryml.errors import ArgumentError, ChecksumError, DrymlError, FormatError
from dryml.format import read_manifest, verify


def _records(rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(20_000, dtype=np.dtype([("a", "i1"), ("b", "f8")], align=True))
    out["b"] = rng.standard_normal(len(out))
    return out


def _arrays() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    return {
        "big": rng.standard_normal(300_000, dtype=np.float32),  # 1.2 MB, raw
        "fortran": np.asfortranarray(rng.standard_normal((300, 200))),
        "records": _records(rng),  # padding compresses: read as usual
        "ints": np.arange(100_000, dtype=np.int64),  # compresses: read as usual
        "small": np.arange(10, dtype=np.int16),  # inline in the manifest
    }


def _saved(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    arrays = _arrays()
    path = tmp_path / "w.dry"
    save_object(Leaf(arrays), path)
    return path, arrays


def _data_offset(path: Path, array: np.ndarray) -> int:
    """Where the first array member holding ``array``'s bytes starts its data."""
    raw = path.read_bytes()
    needle = np.ascontiguousarray(array).tobytes()[:64]
    return raw.index(needle)


def test_raw_array_members_are_read_only_memmaps_of_the_file(tmp_path: Path) -> None:
    path, arrays = _saved(tmp_path)
    loaded = load_object(path, mmap=True).value
    for key in ("big", "fortran"):
        got = loaded[key]
        assert isinstance(got, np.memmap), key
        assert Path(got.filename) == path.resolve()
        assert not got.flags.writeable
        assert got.flags.aligned
        assert got.offset == _data_offset(path, arrays[key].T if key == "fortran"
                                          else arrays[key])
        assert got.offset % 64 == 0  # members and .npy data start on 64-byte boundaries
        np.testing.assert_array_equal(got, arrays[key])
        with pytest.raises(ValueError, match="read-only"):
            got[0] = 1
    assert loaded["fortran"].flags.f_contiguous
    assert loaded["records"].dtype == arrays["records"].dtype
    np.testing.assert_array_equal(loaded["records"], arrays["records"])
    # a compressed member and an inline array are ordinary, writable arrays
    for key in ("ints", "small"):
        assert not isinstance(loaded[key], np.memmap)
        np.testing.assert_array_equal(loaded[key], arrays[key])
    assert not isinstance(load_object(path).value["big"], np.memmap)


def test_mapped_arrays_see_the_file_not_a_copy(tmp_path: Path) -> None:
    path, _ = _saved(tmp_path)
    got = load_object(path, mmap=True).value["big"]
    with open(path, "r+b") as handle:  # change the file under the mapping (not via dryml)
        handle.seek(got.offset)
        handle.write(np.float32(42.0).tobytes())
    assert got[0] == np.float32(42.0)
    assert load_object(path, mmap=True, verify=False).value["big"][0] == np.float32(42.0)
    with pytest.raises(ChecksumError, match="does not match its checksum"):
        load_object(path, mmap=True)


def test_damage_is_caught_at_load_or_by_verify(tmp_path: Path) -> None:
    path, arrays = _saved(tmp_path)
    assert verify(path) == len(read_manifest(path).members)
    offset = load_object(path, mmap=True).value["big"].offset + 4 * 150_000
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x40
    path.write_bytes(bytes(raw))
    with pytest.raises(ChecksumError, match=r"member 'm\d+\.npy' does not match"):
        load_object(path, mmap=True)  # verify=True: every mapped member checked at load
    with pytest.raises(ChecksumError):
        load_object(path)
    lazy = load_object(path, mmap=True, verify=False).value  # bounds and headers only
    assert not np.array_equal(lazy["big"], arrays["big"])
    np.testing.assert_array_equal(lazy["fortran"], arrays["fortran"])
    with pytest.raises(ChecksumError, match="does not match its checksum"):
        verify(path)
    with open(path, "rb") as handle, pytest.raises(ChecksumError):
        verify(handle)


def test_a_lying_npy_header_is_refused_before_mapping(tmp_path: Path) -> None:
    """A hostile file (checksums recomputed) whose header claims more data than the member
    holds is a FormatError even with verify=False; a damaged header is a ChecksumError."""
    path, _ = _saved(tmp_path)
    manifest, members = explode(path.read_bytes())
    name, (stored, raw_size, compression, kind) = next(
        (k, m) for k, m in members.items() if b"(300000,)" in m[0][:128])
    forged = stored.replace(b"(300000,)", b"(900000,)", 1)
    path.write_bytes(build_file(manifest, {**members, name: (forged, raw_size, compression,
                                                             kind)}))
    with pytest.raises(FormatError, match="the array needs 3600000 bytes"):
        load_object(path, mmap=True, verify=False)
    damaged = build_file(manifest, members).replace(b"(300000,)", b"(900000,)", 1)
    path.write_bytes(damaged)
    with pytest.raises(ChecksumError):
        load_object(path, mmap=True, verify=False)


def test_streams_and_saving_a_mapped_object_again(tmp_path: Path) -> None:
    path, arrays = _saved(tmp_path)
    # a stream that is not a file: arrays are read as usual
    plain = load_object(io.BytesIO(path.read_bytes()), mmap=True).value
    assert not isinstance(plain["big"], np.memmap)
    np.testing.assert_array_equal(plain["big"], arrays["big"])
    # an object whose arrays are mapped saves again (its data streams from the mapping)
    mapped = load_object(path, mmap=True)
    save_object(mapped, tmp_path / "again.dry")
    again = load_object(tmp_path / "again.dry").value
    for key, value in arrays.items():
        np.testing.assert_array_equal(again[key], value)
    save_object(mapped, path)  # over the mapped file itself: atomic rename, mapping intact
    np.testing.assert_array_equal(mapped.value["big"], arrays["big"])


@pytest.mark.parametrize("opener", ["gzip", "bz2", "lzma"])
@pytest.mark.parametrize("verify_arrays", [True, False])
def test_a_compressed_stream_is_read_not_mapped(tmp_path: Path, opener: str,
                                                verify_arrays: bool) -> None:
    """A gzip, bz2 or lzma stream has a descriptor, of its compressed file: mapped, the arrays
    came from the compressed bytes at the stream's offsets, garbage with no error (found by
    review; with verify a valid file raised ChecksumError). They are read as usual now."""
    import importlib

    module = importlib.import_module(opener)
    path, arrays = _saved(tmp_path)
    packed = tmp_path / f"w.dry.{opener}"
    with module.open(packed, "wb") as out:  # type: ignore[attr-defined]
        out.write(path.read_bytes())
    with module.open(packed, "rb") as stream:  # type: ignore[attr-defined]
        loaded = load_object(stream, mmap=True, verify=verify_arrays).value
    for key, value in arrays.items():
        assert not isinstance(loaded[key], np.memmap)
        np.testing.assert_array_equal(loaded[key], value)
    with open(path, "rb") as plain:  # a file opened with open(): mapped
        assert isinstance(load_object(plain, mmap=True).value["big"], np.memmap)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/smaps")
def test_pages_are_shared_with_other_processes(tmp_path: Path) -> None:
    """Two processes map the file: its pages are file-backed (shared page cache), not copies
    in each process's anonymous memory."""
    path, _ = _saved(tmp_path)
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import dryfiles  # noqa: F401 - the Leaf class
        from dryml import load_object
        arrays = load_object({str(path)!r}, mmap=True).value
        total = float(arrays["big"].sum())  # touch every page
        text = open("/proc/self/smaps").read()
        rss = 0
        current = False
        for line in text.splitlines():
            if line[:1].isalnum() and "-" in line.split()[0] and len(line.split()) >= 5:
                current = line.rstrip().endswith({str(path.resolve())!r})
            elif current and line.startswith("Rss:"):
                rss += int(line.split()[1])
        print(rss, total)
    """)
    runs = [subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           check=True, cwd=tmp_path) for _ in range(2)]
    for run in runs:
        rss_kb, _ = run.stdout.split()
        assert int(rss_kb) * 1024 >= 1_200_000  # the big array's pages come from the file


def test_copy_on_write_arrays_are_writable_and_leave_the_file_alone(tmp_path: Path) -> None:
    path, arrays = _saved(tmp_path)
    before = path.read_bytes()
    got = load_object(path, mmap="c").value["big"]
    assert isinstance(got, np.memmap) and got.flags.writeable
    got[:10] = 7.0
    assert got[0] == 7.0
    assert path.read_bytes() == before  # the write stayed in this process
    np.testing.assert_array_equal(load_object(path, mmap=True).value["big"], arrays["big"])
    with pytest.raises(ValueError, match="copy-on-write"):
        load_object(path, mmap="w+")


def test_hostile_files_with_mmap_raise_only_dryml_errors(tmp_path: Path) -> None:
    """Headers and member tables mutated with every checksum recomputed: mapping them loads
    or raises a dryml error, with or without verification (never a crash or another error)."""
    rng = np.random.default_rng(3)
    values = {"raw": rng.standard_normal(20_000), "zstd": np.arange(20_000) % 7}
    source = tmp_path / "s.dry"
    save_object(Leaf(values), source)
    manifest, members = explode(source.read_bytes())
    names = sorted(members)
    chooser = random.Random(5)
    path = tmp_path / "h.dry"
    outcomes = {"loaded": 0, "refused": 0}
    for case in range(300):
        edited = dict(members)
        name = chooser.choice(names)
        stored, raw_size, compression, kind = edited[name]
        if case % 2:  # a header byte (or a byte just past it)
            at = chooser.randrange(min(len(stored), 200))
            data = bytearray(stored)
            data[at] = chooser.choice([0, 0x20, 0x27, 0x28, 0x29, 0x2C, 0x31, 0x39, 0xFF])
            edited[name] = (bytes(data), raw_size, compression, kind)
            path.write_bytes(build_file(manifest, edited))
        else:  # the member table: offsets and sizes moved
            field = chooser.choice(["offset", "size", "raw_size"])
            delta = chooser.choice([-4096, -64, -1, 1, 64, 4096, 2**40])

            def edit(m: dict[str, Any], name: str = name, field: str = field,
                     delta: int = delta) -> None:
                m["members"][name][field] += delta

            path.write_bytes(rewrite_manifest(build_file(manifest, edited), edit))
        for verify_data in (False, True):
            try:
                loaded = load_object(path, mmap=True, verify=verify_data).value
                float(np.sum(loaded["raw"]))  # touch every mapped page
                outcomes["loaded"] += 1
            except DrymlError:
                outcomes["refused"] += 1
    assert outcomes["loaded"] and outcomes["refused"], outcomes  # both paths were reached


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="counts mappings in /proc")
def test_a_mapped_load_maps_the_file_once_whatever_its_member_count(tmp_path: Path) -> None:
    """Found by review: one mapping and one descriptor per member, so a 300-tensor model
    loaded three times took 900 descriptors and the next open failed ('Too many open
    files'); a crafted file of 30,000 tiny members took every descriptor."""
    rng = np.random.default_rng(1)
    arrays = {f"w{i}": rng.standard_normal(2048) for i in range(300)}
    path = tmp_path / "many.dry"
    save_object(Leaf(arrays), path)
    loaded = [load_object(path, mmap=True).value for _ in range(3)]
    maps = Path("/proc/self/maps").read_text().splitlines()
    assert sum(line.endswith(str(path)) for line in maps) <= 3
    for got in loaded:
        for key, want in arrays.items():
            assert isinstance(got[key], np.memmap) and np.array_equal(got[key], want)


def test_an_array_of_endless_zero_size_elements_is_refused(tmp_path: Path) -> None:
    """Found by review: 642 bytes loaded as 2**62 elements of dtype V0; the first copy of the
    object (definition(), a save) then ran practically forever."""
    buf = io.BytesIO()
    save_object(Leaf(np.random.default_rng(0).standard_normal(1000)), buf)
    manifest, members = explode(buf.getvalue())
    name = next(iter(members))
    header = io.BytesIO()
    np.lib.format.write_array_header_2_0(header, {"descr": "|V0", "fortran_order": False,
                                                  "shape": (2**62,)})
    members[name] = (header.getvalue(), len(header.getvalue()), "none", "npy")
    path = tmp_path / "v0.dry"
    path.write_bytes(build_file(manifest, members))
    for how in ({}, {"mmap": True}):
        with pytest.raises(FormatError, match="elements of zero size"):
            load_object(path, **how)
    with pytest.raises(ArgumentError, match="more than 65536 zero-size elements"):
        Leaf(np.zeros(2**17, dtype=np.dtype([])))  # a writer never stores one
    small = np.zeros(10, dtype=np.dtype([]))
    save_object(Leaf(small), tmp_path / "ok.dry")
    assert load_object(tmp_path / "ok.dry").value.shape == (10,)
