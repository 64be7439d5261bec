"""dryml-torch keeps tensor layout as ``torch.save`` does (issue 11).

channels_last weights, transposes, slices and expanded tensors come back with their strides,
as arguments, ``store.put`` tensors and state-dict entries; a file's strides are checked.
"""

from __future__ import annotations

import io
import os
from typing import Any

import pytest

from dryml import Object, load_object, save_object
from dryml.errors import FormatError
from dryml.format import read_manifest
from dryml.testing.serializers import rewrite_manifest

if not os.environ.get("DRYML_REQUIRE_BACKENDS"):
    pytest.importorskip("torch")
import torch  # noqa: E402


class Holder(Object):
    """Holds any argument; stores ``self.state`` entries with store.put."""

    def __init__(self, value: Any = None) -> None:
        self.value = value
        self.state: dict[str, Any] = {}

    def save_object_imp(self, store: Any) -> None:
        for name, value in self.state.items():
            store.put(name, value)

    def load_object_imp(self, store: Any) -> None:
        self.state = {name: store.get(name) for name in store.names()}


class ChannelsLastNet(Object):
    """A conv net trained in channels_last, restored with ``load_state_dict(assign=True)``."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8))

    def save_object_imp(self, store: Any) -> None:
        store.put("net", self.net)

    def load_object_imp(self, store: Any) -> None:
        self.net.load_state_dict(store.get("net"), assign=True)


def round_trip(obj: Object) -> Any:
    buf = io.BytesIO()
    save_object(obj, buf)
    buf.seek(0)
    return load_object(buf)


def same(a: torch.Tensor, b: torch.Tensor) -> None:
    assert (b.dtype, b.shape, b.stride()) == (a.dtype, a.shape, a.stride())
    assert torch.equal(a.detach().resolve_conj(), b.detach())


def layouts() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(5)
    base = torch.randn(10, 20, generator=gen)
    return {
        "channels_last_conv_weight": torch.nn.Conv2d(3, 16, 3).weight.to(
            memory_format=torch.channels_last),
        "channels_last_3d": torch.randn(2, 4, 3, 5, 6, generator=gen).to(
            memory_format=torch.channels_last_3d),
        "transposed": torch.randn(300, 40, generator=gen).t(),
        "sliced_view": base[2:5, 3:17:2],
        "column": base[:, 7],
        "expanded": torch.randn(50, generator=gen).expand(40, 50),
        "permuted_bfloat16": torch.randn(4, 5, 6, generator=gen).to(torch.bfloat16).permute(
            2, 0, 1),
        "empty_transposed": torch.zeros(0, 3).t(),
    }


@pytest.mark.parametrize("name", sorted(layouts()))
def test_strides_come_back_as_arguments_tensors_and_state(name: str) -> None:
    value = layouts()[name]
    obj = Holder({"t": value})
    obj.state["put"] = value
    obj.state["tree"] = {"entry": value, "other": torch.ones(3)}
    loaded = round_trip(obj)
    same(value, loaded.value["t"])
    same(value, loaded.state["put"])
    same(value, loaded.state["tree"]["entry"])


def test_channels_last_parameters_and_buffers_stay_channels_last() -> None:
    obj = ChannelsLastNet()
    obj.net.to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 9, 9).to(memory_format=torch.channels_last)
    obj.net.eval()
    with torch.no_grad():
        expected = obj.net(x)
    loaded = round_trip(obj)
    weight = loaded.net[0].weight
    assert isinstance(weight, torch.nn.Parameter)
    assert weight.is_contiguous(memory_format=torch.channels_last)
    assert not weight.is_contiguous()
    for key, value in obj.net.state_dict().items():
        same(value, loaded.net.state_dict()[key])
    loaded.net.eval()
    with torch.no_grad():
        assert torch.equal(loaded.net(x), expected)


def test_a_view_stores_only_the_region_it_spans() -> None:
    base = torch.randn(1000, 1000)
    obj = Holder()
    obj.state["rows"] = base[10:12]  # two rows of a 4 MB tensor
    obj.state["wide"] = torch.randn(2000).expand(1000, 2000)  # 8 MB as one row
    buf = io.BytesIO()
    save_object(obj, buf)
    assert len(buf.getvalue()) < 20_000
    loaded = load_object(io.BytesIO(buf.getvalue()))
    same(obj.state["rows"], loaded.state["rows"])
    same(obj.state["wide"], loaded.state["wide"])
    assert loaded.state["wide"].untyped_storage().nbytes() == 2000 * 4


def _strided_file() -> bytes:
    obj = Holder(torch.randn(30, 40).t())
    buf = io.BytesIO()
    save_object(obj, buf)
    assert read_manifest(io.BytesIO(buf.getvalue())).members  # the region is a member
    return buf.getvalue()


@pytest.mark.parametrize("stride", [[1, 41], [1], [1, -40], [1, 2**70], "1,40", [1.0, 40]])
def test_strides_a_file_cannot_back_are_a_format_error(stride: Any) -> None:
    def edit(manifest: dict[str, Any]) -> None:
        manifest["objects"][0]["args"][0]["data"]["stride"] = stride

    with pytest.raises(FormatError, match="stride|holds"):
        load_object(io.BytesIO(rewrite_manifest(_strided_file(), edit)))


def test_a_file_without_strides_loads_contiguous() -> None:
    """Files written before layouts were kept hold row-major data and no strides."""
    def edit(manifest: dict[str, Any]) -> None:
        data = manifest["objects"][0]["args"][0]["data"]
        del data["stride"]
        data["shape"] = [1200]

    loaded = load_object(io.BytesIO(rewrite_manifest(_strided_file(), edit)))
    assert loaded.value.shape == (1200,) and loaded.value.is_contiguous()


class Views(torch.nn.Module):
    """Buffers viewing a parameter's memory, and a separate tensor of the same values."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(300, 40))
        self.register_buffer("rows", self.weight.detach()[10:20])
        self.register_buffer("transposed", self.weight.detach().t())
        self.register_buffer("copy", self.weight.detach().clone())


def test_views_of_one_storage_come_back_as_views_of_one_storage() -> None:
    obj = Holder()
    obj.state["m"] = Views()
    buf = io.BytesIO()
    save_object(obj, buf)
    assert len(read_manifest(io.BytesIO(buf.getvalue())).members) == 2  # region + copy
    state = load_object(io.BytesIO(buf.getvalue())).state["m"]
    original = obj.state["m"].state_dict()
    for key, value in original.items():
        same(value, state[key])
    storage = state["weight"].untyped_storage().data_ptr()
    assert state["rows"].untyped_storage().data_ptr() == storage
    assert state["transposed"].untyped_storage().data_ptr() == storage
    assert state["copy"].untyped_storage().data_ptr() != storage
    assert state["rows"].storage_offset() == 400
    state["weight"][10, 0] = 123.0  # writes through, as in the saved module
    assert state["rows"][0, 0] == 123.0 and state["transposed"][0, 10] == 123.0


class Retyped(torch.nn.Module):
    """A buffer and another view of (part of) its bytes as another dtype."""

    def __init__(self, other: Any) -> None:
        super().__init__()
        self.register_buffer("floats", torch.ones(8))
        self.register_buffer("bits", other(self.floats))


@pytest.mark.parametrize("other", [
    lambda f: f.view(torch.int32),
    lambda f: f[4:].view(torch.int16),
    lambda f: f.view(torch.uint8)[4:12],
], ids=["whole", "half", "bytes"])
def test_views_of_one_memory_as_other_types_are_refused_as_torch_save_does(other: Any) -> None:
    # stored as two copies, a write through one would no longer show in the other
    from dryml.errors import SerializationError

    obj = Holder()
    obj.state["m"] = Retyped(other)
    with pytest.raises(SerializationError, match=r"\['floats'\] \(torch.float32\) and "
                       r"\['bits'\] \(torch.\w+\) view the same memory as different types"):
        save_object(obj, io.BytesIO())
    with pytest.raises(RuntimeError, match="different types"):
        torch.save(obj.state["m"].state_dict(), io.BytesIO())
    # other bytes of one storage, beside each other: saved
    base = torch.arange(8, dtype=torch.float32)
    obj.state["m"].floats, obj.state["m"].bits = base[:4], base[4:].view(torch.int32)
    buf = io.BytesIO()
    save_object(obj, buf)
    state = load_object(io.BytesIO(buf.getvalue())).state["m"]
    assert state["floats"].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert state["bits"].view(torch.float32).tolist() == [4.0, 5.0, 6.0, 7.0]


def _views_file() -> bytes:
    obj = Holder()
    obj.state["m"] = Views()
    buf = io.BytesIO()
    save_object(obj, buf)
    return buf.getvalue()


@pytest.mark.parametrize("edit", [
    lambda t: t[1].update(base=7),
    lambda t: t[1].update(offset=12_000 - 399),
    lambda t: t[1].update(offset=-1),
    lambda t: t[1].update(dtype="float64"),
    lambda t: t[1].update(stride=[2000, 1]),
], ids=["base", "offset-past-end", "negative-offset", "dtype", "stride-past-end"])
def test_a_view_that_does_not_fit_its_region_is_a_format_error(edit: Any) -> None:
    def change(manifest: dict[str, Any]) -> None:
        edit(manifest["objects"][0]["state"]["m"]["meta"]["tensors"])

    with pytest.raises(FormatError):
        load_object(io.BytesIO(rewrite_manifest(_views_file(), change)))


def _file_of(obj: Object) -> bytes:
    buf = io.BytesIO()
    save_object(obj, buf)
    return buf.getvalue()


def _small_file(value: torch.Tensor, as_argument: bool) -> bytes:
    obj = Holder(value) if as_argument else Holder()
    if not as_argument:
        obj.state["t"] = value
    return _file_of(obj)


@pytest.mark.parametrize("as_argument", [True, False], ids=["argument", "store.put"])
def test_strides_that_repeat_a_few_stored_bytes_into_gigabytes_are_a_format_error(
        as_argument: bool) -> None:
    """A 1.5 KB file whose tensor claimed 2**29 elements with stride 0 over 8 stored bytes
    loaded; the first copy (an optimizer's load_state_dict casting its state, .definition())
    then allocated 4 GB (found by the hostile-file audit). Refused at load now."""
    def edit(manifest: dict[str, Any]) -> None:
        node = manifest["objects"][0]
        data = node["args"][0]["data"] if as_argument else node["state"]["t"]["meta"]
        data.update(shape=[2**29], stride=[0], b64="AAAAAAAAAAA=", dtype="float64")

    expanded = torch.randn(8).expand(4, 8)  # stride 0: a layout dryml writes itself
    with pytest.raises(FormatError, match=r"stands for 4294967296 bytes over the 8 that the "
                                          "file holds"):
        load_object(io.BytesIO(rewrite_manifest(_small_file(expanded, as_argument), edit)))


def test_an_expand_that_stands_for_far_more_than_it_stores_is_saved_as_its_elements() -> None:
    """A reader refuses a layout that repeats stored bytes past the container's expansion
    limits, so the writer stores such a tensor (and such a view of a shared storage) as its
    plain elements: every file dryml writes loads. A smaller expand keeps its stride 0."""
    row = torch.randn(1000)
    base = torch.randn(1000)
    obj = Holder()
    obj.state["huge"] = row.expand(5000, 1000)  # 20 MB from 4 KB: over 16 MB and 200x
    obj.state["small"] = row.expand(1000, 1000)  # 4 MB: kept as one stored row
    obj.state["m"] = {"base": base, "view": base[:1].expand(5_000_000)}  # 20 MB from 4 KB
    loaded = load_object(io.BytesIO(_file_of(obj))).state
    assert torch.equal(loaded["huge"], obj.state["huge"])
    assert loaded["huge"].is_contiguous() and loaded["huge"].untyped_storage().nbytes() == 20e6
    same(obj.state["small"], loaded["small"])
    assert loaded["small"].untyped_storage().nbytes() == 4000
    assert torch.equal(loaded["m"]["base"], base)
    assert torch.equal(loaded["m"]["view"], base[:1].expand(5_000_000))


def test_an_expanded_tensor_an_older_writer_stored_as_one_row_loads_with_raised_limits(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An older dryml-torch stored any expand as the row it repeats: such a file over the
    limits is refused with the way to load it (found by review: the error said only that the
    file was altered), and loads with load_object(limits=...)."""
    from dryml.format import Limits
    from dryml_torch import _codecs

    obj = Holder()
    obj.state["mask"] = torch.ones(1, 4096).expand(4096, 4096)  # 64 MiB from 16 KiB
    with monkeypatch.context() as old_writer:
        old_writer.setattr(_codecs, "expands_too_far", lambda *args: False)
        data = _file_of(obj)
    with pytest.raises(FormatError, match=r"an older one wrote an expanded tensor as the row it "
                                          r"repeats.*load_object\(path, limits=Limits"):
        load_object(io.BytesIO(data))
    loaded = load_object(io.BytesIO(data), limits=Limits(max_ratio=5000))
    same(obj.state["mask"], loaded.state["mask"])
