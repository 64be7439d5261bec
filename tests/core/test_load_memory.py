"""A loaded object's memory (its arrays, the open file, a mapping) goes back when the last
reference to it goes: a loop that loads large files one after another must not pile them up
until Python's cyclic garbage collector happens to run (it counts objects, not bytes)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dryml import Object, load_object, save_object
from dryml.repo import Repo


class Big(Object):
    def __init__(self) -> None:
        self.weights = np.zeros(0)

    def save_object_imp(self, store: Any) -> None:
        store.put("weights", self.weights)

    def load_object_imp(self, store: Any) -> None:
        self.weights = store.get("weights")


@pytest.fixture
def no_cyclic_gc() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.mark.parametrize("how", ["load", "mmap", "repo"])
def test_a_dropped_load_is_freed_without_the_cyclic_collector(
        tmp_path: Path, how: str, no_cyclic_gc: None) -> None:
    big = Big(dry_id="big")
    big.weights = np.arange(2_000_000, dtype=np.float64)  # 16 MB
    repo = Repo(tmp_path / "repo", create=True)
    repo.add_object(big)
    save_object(big, tmp_path / "big.dry")
    del big
    for _ in range(3):
        if how == "repo":
            repo._live.clear()  # what the repository caches is not what is measured here
            loaded = repo.load("big")
        else:
            loaded = load_object(tmp_path / "big.dry", mmap=how == "mmap")
        assert float(loaded.weights[-1]) == 1_999_999.0
        gone = weakref.ref(loaded)
        array = weakref.ref(loaded.weights) if how != "mmap" else None
        del loaded
        assert gone() is None, "the object outlived its last reference"
        assert array is None or array() is None, "its array outlived it"
