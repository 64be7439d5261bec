"""The fast paths of writing and reading: gathered writes to a real file (bypassing the stream's
buffer), the stamp a Repo records from the writer, and large members checksummed in a second
thread while they are read."""

from __future__ import annotations

import errno
import io
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dryfiles import Leaf

import dryml.format._stale as stale
from dryml import load_object, save_object
from dryml.errors import ChecksumError
from dryml.format import read_manifest
from dryml.repo import Repo
from dryml.repo._files import read_stamp

BIG = 24 * 2**20  # over the size at which reading overlaps the checksum


@pytest.mark.parametrize("buffering", [0, -1, 1 << 20])
def test_a_file_written_into_an_open_stream_keeps_the_bytes_around_it(
        tmp_path: Path, buffering: int) -> None:
    path = tmp_path / "inside.bin"
    values = [np.arange(n, dtype=np.float64) for n in (10, 3000, 300_000)]
    with open(path, "wb", buffering=buffering) as stream:
        stream.write(b"before")  # still in the stream's buffer when the save starts
        save_object(Leaf([*values, b"x" * 5000]), stream)
        end = stream.tell()
        stream.write(b"after")
    data = path.read_bytes()
    assert data.startswith(b"before") and data.endswith(b"after")
    assert end == len(data) - len(b"after")
    loaded = load_object(io.BytesIO(data[len(b"before"):end]))
    assert all(np.array_equal(a, b) for a, b in zip(loaded.value[:3], values, strict=True))
    assert loaded.value[3] == b"x" * 5000


def test_a_file_and_its_copy_through_a_stream_are_identical(tmp_path: Path) -> None:
    obj = Leaf({"w": np.linspace(0, 1, 200_000), "z": np.zeros(100_000)})
    save_object(obj, tmp_path / "a.dry")
    buffer = io.BytesIO()
    save_object(obj, buffer)
    a, b = (tmp_path / "a.dry").read_bytes(), buffer.getvalue()
    # the same bytes but for the creation time in the (compressed) manifest
    assert len(a) == len(b) and a[:4096] == b[:4096]
    assert read_manifest(tmp_path / "a.dry").members == read_manifest(io.BytesIO(b)).members


def test_the_stamp_a_repo_records_is_the_files_own(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "repo", create=True)
    obj = Leaf(np.arange(50_000))
    repo.add_object(obj, metadata={"a": 1})
    info = repo.info(obj.dry_id)
    with open(tmp_path / "repo" / info["file"], "rb") as stream:
        stamp = read_stamp(stream)
    assert (info["digest"], info["size"]) == (stamp.digest, stamp.size)
    assert repo.check().ok
    assert np.array_equal(Repo(tmp_path / "repo").load(obj.dry_id).value, np.arange(50_000))


def test_a_large_member_read_with_its_checksum_alongside(tmp_path: Path) -> None:
    values = np.random.default_rng(0).integers(0, 2**63, BIG // 8, dtype=np.uint64)
    path = tmp_path / "big.dry"
    save_object(Leaf(values), path, compress=False)
    assert np.array_equal(load_object(path).value, values)
    (member,) = read_manifest(path).members.values()
    data = bytearray(path.read_bytes())
    data[member.offset + member.size - 5] ^= 1  # the last piece read
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="does not match its checksum"):
        load_object(path)
    data[member.offset + member.size - 5] ^= 1
    data[member.offset + member.size // 2] ^= 0x80  # a piece in the middle
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="does not match its checksum"):
        load_object(path)


def _old_and_new(tmp_path: Path) -> tuple[Path, Leaf, Leaf]:
    path = tmp_path / "model.dry"
    old, new = Leaf(np.zeros(50_000)), Leaf(np.arange(50_000.0))
    save_object(old, path)
    return path, old, new


@pytest.mark.parametrize("durable", [False, True])
def test_a_save_over_a_file_replaces_it_whole_and_leaves_no_temporary(
        tmp_path: Path, durable: bool) -> None:
    path, old, new = _old_and_new(tmp_path)
    os.link(path, tmp_path / "link.dry")  # another name of the old file
    mapped = load_object(path, mmap=True)  # and a process still reading it
    with open(path, "rb") as reader:
        save_object(new, path, durable=durable)
        assert reader.read(8) == b"DRYML\x00\r\n"  # the old file, still whole
    assert np.array_equal(load_object(path).value, new.value)
    assert np.array_equal(mapped.value, old.value)
    assert np.array_equal(load_object(tmp_path / "link.dry").value, old.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.dry", "model.dry"]


def _swaps_here(directory: Path) -> bool:
    """Whether this system and file system swap two names in one step (renameat2)."""
    fn = stale._renameat2()
    a, b = directory / "probe-a", directory / "probe-b"
    a.write_bytes(b"a")
    b.write_bytes(b"b")
    try:
        return fn is not None and stale._swap(fn, str(a), b) == 0
    finally:
        a.unlink()
        b.unlink()


def _spy_swaps(monkeypatch: pytest.MonkeyPatch, before: Any = None) -> list[int]:
    """Record what every name swap returns (running ``before(target)`` first)."""
    calls: list[int] = []
    real = stale._swap

    def spy(fn: Any, tmp: str, target: Any) -> int:
        if before is not None and not calls:
            before(target)
        calls.append(real(fn, tmp, target))
        return calls[-1]

    monkeypatch.setattr(stale, "_swap", spy)
    return calls


def test_without_durability_a_save_over_a_file_swaps_the_names(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the fast way: a plain rename over a file makes ext4 write the new data out first
    if not _swaps_here(tmp_path):
        pytest.skip("this system or file system cannot swap names")
    path, _, new = _old_and_new(tmp_path)
    swaps = _spy_swaps(monkeypatch)
    save_object(new, path, durable=False)
    save_object(new, tmp_path / "fresh.dry", durable=False)  # nothing there: a rename
    save_object(new, path)  # durable: a rename, which keeps ext4's guard
    assert swaps == [0]
    assert np.array_equal(load_object(path).value, new.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh.dry", "model.dry"]


def _failing(code: int, calls: list[int]) -> Any:
    """A renameat2 that fails with errno ``code``."""
    import ctypes

    def fn(*args: Any) -> int:
        calls.append(code)
        ctypes.set_errno(code)
        return -1

    return fn


@pytest.mark.parametrize(("code", "tries"), [(errno.EINVAL, 1), (errno.EOPNOTSUPP, 1),
                                              (errno.ENOSYS, 1), (errno.EPERM, 3)])
def test_where_names_cannot_be_swapped_a_save_renames(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, tries: int) -> None:
    path, _, new = _old_and_new(tmp_path)
    calls: list[int] = []
    monkeypatch.setattr(stale, "_renameat2", lambda: _failing(code, calls))
    monkeypatch.setattr(stale, "_no_swap", set())
    for _ in range(3):
        save_object(new, path, durable=False)
        assert np.array_equal(load_object(path).value, new.value)
    # a file system (or kernel) that cannot swap is asked once; a refusal (seccomp)
    # every time
    assert len(calls) == tries
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.dry"]


def test_without_ctypes_a_save_renames(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, _, new = _old_and_new(tmp_path)
    stale._renameat2.cache_clear()
    monkeypatch.setitem(sys.modules, "ctypes", None)  # a Python built without libffi
    try:
        save_object(new, path, durable=False)
    finally:
        stale._renameat2.cache_clear()
    assert np.array_equal(load_object(path).value, new.value)


def test_a_save_over_a_link_or_a_folder_does_as_a_rename_does(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, old, new = _old_and_new(tmp_path)
    link = tmp_path / "link.dry"
    link.symlink_to(path)
    save_object(new, link, durable=False)  # the link is replaced, not the file it named
    assert not link.is_symlink() and np.array_equal(load_object(link).value, new.value)
    assert np.array_equal(load_object(path).value, old.value)
    folder = tmp_path / "folder.dry"
    (folder / "inside").mkdir(parents=True)
    with pytest.raises(IsADirectoryError):
        save_object(new, folder, durable=False)
    assert (folder / "inside").is_dir()

    def folder_meanwhile(target: Any) -> None:  # between the save's look and its swap
        Path(target).unlink()
        (Path(target) / "inside").mkdir(parents=True)

    if not _swaps_here(tmp_path):
        pytest.skip("this system or file system cannot swap names")
    swaps = _spy_swaps(monkeypatch, folder_meanwhile)
    with pytest.raises(IsADirectoryError):
        save_object(new, path, durable=False)
    assert swaps == [0, 0]  # swapped, and swapped back
    assert (path / "inside").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.dry", "link.dry", "model.dry"]
