"""LoadStore.get_deferred: framework state read but not decoded, written back unchanged.

A stand-in framework (``fakefw``) and its serializer live in real modules on ``sys.path``; the
serializer names one of its members *inside* another member (as skops does), so a re-saved
value must keep the names it was written with.
"""

from __future__ import annotations

import io
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dryml import Object, _registry, load_object, save_object
from dryml.errors import BackendUnavailableError, ChecksumError
from dryml.format import StoredValue, read_manifest
from dryml.records import SerializerRecord
from dryml.testing import as_plugin, temporary_plugin

FRAMEWORK = '''
class Blob:
    """A framework value: a label and weights."""
    def __init__(self, label, weights):
        self.label, self.weights = label, weights
'''

SERIALIZER = '''
import json
import fakefw

class BlobSerializer:
    def dump(self, value, writer):
        weights = writer.add_array(value.weights)
        # the weights' member name is kept inside another member, not in the metadata
        text = json.dumps({"label": value.label, "weights": weights}).encode()
        # padded past the size where compressing is tried, and kept raw on purpose
        inner = writer.add_bytes(text + b" " * 4096, compress=False)
        return {"inner": inner}

    def load(self, meta, reader):
        inner = json.loads(reader.get_bytes(meta["inner"]))
        return fakefw.Blob(inner["label"], reader.get_array(inner["weights"]))

SERIALIZER = BlobSerializer()
'''


class Holder(Object):
    """Keeps its framework value encoded until it is used."""

    eager = False  # True: load_object_imp decodes at once (store.get)

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.blob: Any = None
        self.stored: StoredValue | None = None

    def value(self) -> Any:
        if self.blob is None and self.stored is not None:
            self.blob, self.stored = self.stored.load(), None
        return self.blob

    def save_object_imp(self, store: Any) -> None:
        store.put("extra", np.arange(3))  # a member before the blob's: names shift in a pair
        if self.blob is not None:
            store.put("blob", self.blob)
        elif self.stored is not None:
            store.put("blob", self.stored)

    def load_object_imp(self, store: Any) -> None:
        self.blob, self.stored = None, None
        if "blob" in store and self.eager:
            self.blob = store.get("blob")
        elif "blob" in store:
            self.stored = store.get_deferred("blob")


class Pair(Object):
    def __init__(self, first: Holder, second: Holder) -> None:
        self.first, self.second = first, second


RECORD = SerializerRecord("fakefw.blob", types=["fakefw:Blob"], impl="fakefw_ser:SERIALIZER",
                          package="dryml-fakefw")


@pytest.fixture
def fakefw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The stand-in framework importable, and its serializer's plugin registered."""
    (tmp_path / "fakefw.py").write_text(textwrap.dedent(FRAMEWORK))
    (tmp_path / "fakefw_ser.py").write_text(textwrap.dedent(SERIALIZER))
    monkeypatch.syspath_prepend(str(tmp_path))
    with temporary_plugin({"dryml_serializers": lambda: [RECORD]}, "fakefw-plugin"):
        import fakefw as module

        yield module
    _forget_framework()


def _forget_framework() -> None:
    """As in a fresh process: the framework and its serializer not imported, none cached."""
    for name in ("fakefw", "fakefw_ser"):
        sys.modules.pop(name, None)
    _registry.clear_caches()


def _saved(obj: Object) -> bytes:
    buf = io.BytesIO()
    save_object(obj, buf)
    return buf.getvalue()


def test_a_deferred_value_is_read_without_importing_its_framework(fakefw: Any) -> None:
    weights = np.linspace(0, 1, 1000, dtype=np.float32)
    data = _saved(_holder(fakefw, "a", weights))
    _forget_framework()
    loaded = load_object(io.BytesIO(data))
    assert isinstance(loaded, Holder) and loaded.blob is None
    assert "fakefw" not in sys.modules and "fakefw_ser" not in sys.modules
    stored = loaded.stored
    assert stored is not None and stored.serializer == "fakefw.blob"
    assert stored.package == "dryml-fakefw" and stored.nbytes >= weights.nbytes
    blob = loaded.value()  # decoding imports the framework, now
    assert "fakefw" in sys.modules
    assert blob.label == "a" and np.array_equal(blob.weights, weights)


def test_a_deferred_value_is_written_back_unchanged_under_new_member_names(fakefw: Any
                                                                          ) -> None:
    first = load_object(io.BytesIO(_saved(_holder(fakefw, "first", np.ones(4)))))
    second = load_object(io.BytesIO(_saved(_holder(fakefw, "second", np.arange(6.0)))))
    _forget_framework()
    data = _saved(Pair(first, second))  # both still encoded: nothing decoded to save them
    assert "fakefw" not in sys.modules
    manifest = read_manifest(io.BytesIO(data))
    maps = [node.state["blob"]["members"] for node in manifest.objects if "blob" in node.state]
    assert len(maps) == 2 and any(original != name for m in maps for original, name in m.items())
    pair = load_object(io.BytesIO(data))
    assert pair.first.value().label == "first" and np.array_equal(pair.first.value().weights,
                                                                  np.ones(4))
    assert pair.second.value().label == "second"
    assert np.array_equal(pair.second.value().weights, np.arange(6.0))
    Holder.eager = True  # the same file through store.get (decodes at once) reads the renames
    try:
        eager = load_object(io.BytesIO(data))
    finally:
        Holder.eager = False
    assert np.array_equal(eager.second.blob.weights, np.arange(6.0))


def test_a_damaged_deferred_member_is_found_when_the_file_is_read(fakefw: Any) -> None:
    weights = np.random.default_rng(0).random(4096)  # incompressible: stored as it is
    data = bytearray(_saved(_holder(fakefw, "x", weights)))
    at = bytes(data).find(weights[100:110].tobytes())
    assert at > 0
    data[at + 3] ^= 0xFF
    with pytest.raises(ChecksumError):
        load_object(io.BytesIO(bytes(data)))


def test_a_deferred_value_whose_plugin_is_missing_names_the_package(fakefw: Any) -> None:
    from dryml.plugins import get_plugin_manager

    data = _saved(_holder(fakefw, "x", np.ones(3)))
    manager = get_plugin_manager()
    manager.unregister("fakefw-plugin")
    try:
        with pytest.raises(BackendUnavailableError, match="pip install dryml-fakefw"):
            load_object(io.BytesIO(data))
    finally:  # back for the fixture's own unregistering
        manager.register(as_plugin({"dryml_serializers": lambda: [RECORD]}, "fakefw-plugin"),
                         "fakefw-plugin")


def test_plain_values_come_back_decoded() -> None:
    class Plain(Object):
        def __init__(self) -> None:
            self.stored: Any = None

        def save_object_imp(self, store: Any) -> None:
            store.put("numbers", [1, 2, 3])

        def load_object_imp(self, store: Any) -> None:
            self.stored = store.get_deferred("numbers")

    loaded = load_object(io.BytesIO(_saved(Plain())))
    assert loaded.stored.serializer is None and loaded.stored.load() == [1, 2, 3]
    again = load_object(io.BytesIO(_saved(loaded)))
    assert again.stored.load() == [1, 2, 3]


def _holder(fakefw: Any, tag: str, weights: np.ndarray) -> Holder:
    holder = Holder(tag)
    holder.blob = fakefw.Blob(tag, weights)
    return holder


def test_a_written_back_value_keeps_each_members_compression(fakefw: Any) -> None:
    data = _saved(_holder(fakefw, "z", np.zeros(100_000)))  # weights compress; inner is raw
    _forget_framework()
    again = _saved(load_object(io.BytesIO(data)))
    assert "fakefw" not in sys.modules

    def compressions(blob: bytes) -> list[str]:
        manifest = read_manifest(io.BytesIO(blob))
        (node,) = manifest.objects
        names = node.state["blob"]["members"].values()
        return sorted(manifest.members[name].compression for name in names)

    assert compressions(data) == compressions(again) == ["none", "zstd"]
