"""The fast paths of writing and reading: gathered writes to a real file (bypassing the stream's
buffer), the stamp a Repo records from the writer, and large members checksummed in a second
thread while they are read."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from dryfiles import Leaf

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
