"""Saving streams: a member written from a memory map never sits whole in memory.

Peak memory is measured with tracemalloc, which sees numpy's array buffers and every bytes
object (a joined or compressed copy of a member would show up as tens of MB).
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dryfiles import Leaf

from dryml import load_object, save_object
from dryml.format import read_manifest, verify

SIZE = 96 * 2**20


def _peak(fn: Callable[[], Any]) -> tuple[int, Any]:
    tracemalloc.start()
    try:
        result = fn()
        return tracemalloc.get_traced_memory()[1], result
    finally:
        tracemalloc.stop()


def _source(tmp_path: Path, kind: str) -> np.memmap:
    source = np.memmap(tmp_path / f"{kind}.raw", dtype=np.uint32, mode="w+",
                       shape=(SIZE // 4,))
    step = 1 << 22
    rng = np.random.default_rng(1)
    for start in range(0, len(source), step):
        n = min(step, len(source) - start)
        source[start:start + n] = rng.integers(0, 2**32 if kind == "random" else 16, n,
                                               dtype=np.uint32)
    source.flush()
    return source


@pytest.mark.parametrize("kind, compression", [("random", "none"), ("repetitive", "zstd")])
def test_a_memmap_source_is_saved_without_copying_it(tmp_path: Path, kind: str,
                                                      compression: str) -> None:
    source = _source(tmp_path, kind)
    path = tmp_path / "big.dry"
    peak, _ = _peak(lambda: save_object(Leaf(source), path))
    assert peak < SIZE // 8, f"saving held {peak} bytes at once"
    (member,) = read_manifest(path).members.values()
    assert member.compression == compression and member.raw_size > SIZE
    peak, loaded = _peak(lambda: load_object(path, mmap=True).value)
    if compression == "none":  # mapped, its checksum streamed through the mapping
        assert isinstance(loaded, np.memmap) and peak < SIZE // 8
    assert np.array_equal(loaded, source)
    assert verify(path) == 1


def test_incompressible_large_member_written_raw_after_a_streaming_try(tmp_path: Path) -> None:
    """A member whose sample compresses but whole does not is cut off and written raw."""
    source = _source(tmp_path, "random")
    source[: 1 << 20] = 0  # the probe sees zeros; the rest is noise
    source.flush()
    path = tmp_path / "mixed.dry"
    save_object(Leaf(source), path)
    (member,) = read_manifest(path).members.values()
    assert member.compression == "none"
    assert path.stat().st_size < SIZE + 2**16  # nothing of the abandoned try is left
    assert np.array_equal(load_object(path, mmap=True).value, source)
