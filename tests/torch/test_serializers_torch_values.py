"""dryml-torch: every dtype and layout of tensor, module/optimizer idioms, refusals, trust."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import warnings
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dryml import Object, load_object, save_object
from dryml.errors import (
    ArgumentError,
    DrymlVersionWarning,
    FormatError,
    SerializationError,
    UntrustedClassError,
)
from dryml.format import read_manifest
from dryml.testing.serializers import rewrite_frameworks, rewrite_manifest

if not os.environ.get("DRYML_REQUIRE_BACKENDS"):
    pytest.importorskip("torch")
import torch  # noqa: E402

from dryml_torch import _codecs  # noqa: E402

DTYPES = sorted(_codecs._BY_NAME)


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


def round_trip(obj: Object, **kwargs: Any) -> Any:
    buf = io.BytesIO()
    save_object(obj, buf)
    buf.seek(0)
    return load_object(buf, **kwargs)


def bits(t: torch.Tensor) -> bytes:
    return _codecs._to_numpy(t).tobytes()


def random_tensor(dtype_name: str, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    dtype = _codecs._BY_NAME[dtype_name]
    count = int(np.prod(shape)) if shape else 1
    if count == 0:
        return torch.empty(shape, dtype=dtype)
    raw = np.random.default_rng(seed).integers(0, 256, count * dtype.itemsize, dtype=np.uint8)
    if dtype == torch.bool:
        raw = raw % 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # complex32 is "experimental"
        return torch.from_numpy(raw).view(dtype).reshape(shape)


@pytest.mark.filterwarnings("ignore:ComplexHalf support is experimental")
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dtype=st.sampled_from(DTYPES),
       shape=st.lists(st.integers(0, 40), min_size=0, max_size=3).map(tuple),
       seed=st.integers(0, 2**32 - 1), transpose=st.booleans(), as_state=st.booleans())
def test_every_dtype_and_shape_round_trips_bit_for_bit(
        dtype: str, shape: tuple[int, ...], seed: int, transpose: bool, as_state: bool) -> None:
    tensor = random_tensor(dtype, shape, seed)
    if transpose and tensor.dim() >= 2:
        tensor = tensor.transpose(0, 1)  # not contiguous
    obj = Holder(None if as_state else tensor)
    if as_state:
        obj.state["t"] = tensor
    loaded = round_trip(obj)
    back = loaded.state["t"] if as_state else loaded.value
    assert back.dtype == tensor.dtype and back.shape == tensor.shape
    assert back.device.type == "cpu"
    assert bits(back) == bits(tensor)


def test_large_tensors_are_npy_members_and_load_writable_and_independent() -> None:
    big = torch.randn(1000, 100)
    half = torch.randn(5000).to(torch.bfloat16)
    obj = Holder(big)
    obj.state["half"] = half
    buf = io.BytesIO()
    save_object(obj, buf)
    kinds = sorted(info.kind for info in read_manifest(io.BytesIO(buf.getvalue())).members.values())
    assert kinds == ["npy", "npy"]
    loaded = load_object(io.BytesIO(buf.getvalue()))
    assert torch.equal(loaded.value, big) and loaded.value.data_ptr() != big.data_ptr()
    loaded.value += 1  # writable
    assert torch.equal(loaded.state["half"].view(torch.int16), half.view(torch.int16))


def test_parameter_and_requires_grad_are_kept() -> None:
    param = torch.nn.Parameter(torch.randn(3, 3))
    frozen = torch.nn.Parameter(torch.randn(2), requires_grad=False)
    leaf = torch.randn(4, requires_grad=True)
    loaded = round_trip(Holder([param, frozen, leaf]))
    p, f, leaf_back = loaded.value
    assert isinstance(p, torch.nn.Parameter) and p.requires_grad
    assert isinstance(f, torch.nn.Parameter) and not f.requires_grad
    assert not isinstance(leaf_back, torch.nn.Parameter) and leaf_back.requires_grad


def test_dtype_device_size_arguments_and_definitions() -> None:
    obj = Holder({"dtype": torch.bfloat16, "device": torch.device("cuda:1"),
                  "size": torch.Size([2, 3]), "t": torch.arange(3)})
    loaded = round_trip(obj)
    assert loaded.value["dtype"] is torch.bfloat16
    assert loaded.value["device"] == torch.device("cuda:1")
    assert loaded.value["size"] == torch.Size([2, 3])
    assert obj.definition() == loaded.definition()
    rebuilt = obj.definition().build()
    assert torch.equal(rebuilt.value["t"], obj.value["t"])
    assert rebuilt.value["t"].data_ptr() != obj.value["t"].data_ptr()  # a copy


def _edit_nodes(data: bytes, edit: Any) -> bytes:
    """Rewrite the manifest's object nodes (keeping a valid manifest checksum)."""
    return rewrite_manifest(data, lambda manifest: edit(manifest["objects"]))


def test_a_tensor_saved_from_cuda_loads_on_cpu() -> None:
    buf = io.BytesIO()
    save_object(Holder(torch.randn(2000)), buf)

    def to_cuda(nodes: list[dict[str, Any]]) -> None:
        nodes[0]["args"][0]["data"]["device"] = "cuda:0"  # what a CUDA tensor records

    loaded = load_object(io.BytesIO(_edit_nodes(buf.getvalue(), to_cuda)))
    assert loaded.value.device.type == "cpu" and loaded.value.shape == (2000,)


@pytest.mark.parametrize("make", [
    lambda: torch.randn(3, 3).to_sparse(),
    lambda: torch.zeros(3, dtype=torch.uint4),
    lambda: torch.empty(3, device="meta"),
], ids=["sparse", "sub-byte", "meta"])
def test_unsupported_tensors_are_refused_with_the_fix(make: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = make()
    with pytest.raises(ArgumentError, match=r"dense|\.to\(|materialize"):
        Holder(value)
    obj = Holder()
    obj.state["t"] = value
    with pytest.raises(SerializationError, match=r"dense|\.to\(|materialize"):
        save_object(obj, io.BytesIO())


def _quantized() -> list[torch.Tensor]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quantized tensors are deprecated in torch
        x = torch.randn(64, 40)
        return [torch.quantize_per_tensor(x, 0.05, 3, torch.qint8).t(),
                torch.quantize_per_tensor(x[:, 1], 0.01, 0, torch.qint32),
                torch.quantize_per_channel(x, torch.rand(64, dtype=torch.float64) + 0.1,
                                           torch.arange(64), 0, torch.quint8),
                torch.quantize_per_channel(x, torch.rand(40) + 0.1, torch.rand(40), 1,
                                           torch.quint8),  # float qparams (embeddings)
                torch.quantize_per_tensor(x[:3, :5], 0.1, 2, torch.quint4x2)]


def _same_quantized(a: torch.Tensor, b: torch.Tensor) -> None:
    assert (b.dtype, b.shape, b.stride(), b.qscheme()) == (a.dtype, a.shape, a.stride(),
                                                            a.qscheme())
    assert torch.equal(a.int_repr(), b.int_repr()) and torch.equal(a.dequantize(),
                                                                   b.dequantize())


def test_quantized_tensors_round_trip_as_arguments_and_state() -> None:
    values = _quantized()
    obj = Holder(values)
    obj.state["q"] = {"values": values}
    loaded = round_trip(obj)
    for a, b, c in zip(values, loaded.value, loaded.state["q"]["values"], strict=True):
        _same_quantized(a, b)
        _same_quantized(a, c)
    assert loaded.definition() == obj.definition()


@pytest.mark.parametrize("edit", [
    lambda d: d["quantizer"].update(scheme="per_tensor_symmetric"),
    lambda d: d["quantizer"].update(axis=5),
    lambda d: d["quantizer"].pop("scales"),
    lambda d: d.update(nbytes=d["nbytes"] + 1),
    lambda d: d.update(offset=10**9),
    lambda d: d.update(stride=[1, 2**40]),
    lambda d: d.pop("stride"),
], ids=["scheme", "axis", "scales", "nbytes", "offset", "stride", "no-stride"])
def test_malformed_quantized_entries_are_a_format_error(edit: Any) -> None:
    buf = io.BytesIO()
    save_object(Holder(_quantized()[2]), buf)

    def change(nodes: list[dict[str, Any]]) -> None:
        edit(nodes[0]["args"][0]["data"])

    with pytest.raises(FormatError):
        load_object(io.BytesIO(_edit_nodes(buf.getvalue(), change)))


@pytest.mark.parametrize("meta", [
    {"dtype": "object", "shape": [1], "b64": "AA=="},
    {"dtype": "float32", "shape": [3], "b64": "AAAA"},
    {"dtype": "float32", "shape": [-1], "b64": ""},
    {"dtype": "float32", "shape": [1], "b64": "not base64!"},
    "not a dict",
])
def test_malformed_tensor_entries_raise_format_error(meta: Any) -> None:
    with pytest.raises(FormatError):
        _codecs.TENSOR.decode(meta, None)


class Trainer(Object):
    """A model and its optimizer, saved with the documented idiom."""

    dry_mut = True

    def __init__(self, width: int) -> None:
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(4, width), torch.nn.LayerNorm(width),
                                       torch.nn.Linear(width, 1))
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=0.05, betas=(0.8, 0.95))

    def step(self) -> None:
        x = torch.linspace(-1, 1, 64).reshape(16, 4)
        self.opt.zero_grad()
        self.net(x).pow(2).mean().backward()
        self.opt.step()

    def save_object_imp(self, store: Any) -> None:
        store.put("net", self.net)
        store.put("opt", self.opt)

    def load_object_imp(self, store: Any) -> None:
        self.net.load_state_dict(store.get("net"))
        self.opt.load_state_dict(store.get("opt"))


def test_training_continues_identically_after_loading() -> None:
    original = Trainer(64)
    for _ in range(3):
        original.step()
    loaded = round_trip(original)
    assert loaded.opt.param_groups[0]["betas"] == (0.8, 0.95)
    for _ in range(2):
        original.step()
        loaded.step()
    for a, b in zip(original.net.parameters(), loaded.net.parameters(), strict=True):
        assert bits(a) == bits(b)


def test_tied_weights_are_stored_once() -> None:
    emb = torch.nn.Embedding(1000, 16)
    head = torch.nn.Linear(16, 1000, bias=False)
    head.weight = emb.weight
    model = torch.nn.ModuleDict({"emb": emb, "head": head})
    obj = Holder()
    obj.state["model"] = model
    buf = io.BytesIO()
    save_object(obj, buf)
    assert len(read_manifest(io.BytesIO(buf.getvalue())).members) == 1
    state = load_object(io.BytesIO(buf.getvalue())).state["model"]
    assert list(state) == ["emb.weight", "head.weight"]
    assert torch.equal(state["head.weight"], emb.weight.detach())


def test_a_state_dict_value_that_needs_pickle_is_refused() -> None:
    class Extra(torch.nn.Module):
        def get_extra_state(self) -> Any:
            return {"fn": print}

        def set_extra_state(self, state: Any) -> None:
            self.extra = state

    obj = Holder()
    obj.state["m"] = Extra()
    with pytest.raises(SerializationError, match=r"builtin_function_or_method.*store\.put"):
        save_object(obj, io.BytesIO())


def test_extra_state_of_plain_values_comes_back() -> None:
    class Extra(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.extra: Any = {"vocab": ["a", "b"], 3: (1.5, float("inf"))}

        def get_extra_state(self) -> Any:
            return self.extra

        def set_extra_state(self, state: Any) -> None:
            self.extra = state

    obj = Holder()
    obj.state["m"] = Extra()
    fresh = Extra()
    fresh.extra = None
    fresh.load_state_dict(round_trip(obj).state["m"])
    assert fresh.extra == {"vocab": ["a", "b"], 3: (1.5, float("inf"))}


def test_module_classes_are_trusted_arguments_but_not_all_of_torch() -> None:
    obj = Holder(torch.nn.GELU)
    assert round_trip(obj).value is torch.nn.GELU
    buf = io.BytesIO()
    save_object(Holder(torch.nn.GELU), buf)

    def to_package_importer(nodes: list[dict[str, Any]]) -> None:
        nodes[0]["args"][0]["path"] = "torch.package:PackageImporter"

    with pytest.raises(UntrustedClassError, match="torch.package"):
        load_object(io.BytesIO(_edit_nodes(buf.getvalue(), to_package_importer)))


def test_version_skew_warns_once_per_file() -> None:
    obj = Trainer(64)
    buf = io.BytesIO()
    save_object(obj, buf)
    skewed = rewrite_frameworks(buf.getvalue(), {"torch": "1.13.1"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_object(io.BytesIO(skewed))
    skew = [w for w in caught if issubclass(w.category, DrymlVersionWarning)]
    assert len(skew) == 1 and "torch 1.13.1" in str(skew[0].message)


def test_loading_never_unpickles(monkeypatch: pytest.MonkeyPatch) -> None:
    import pickle

    obj = Trainer(64)
    obj.step()
    buf = io.BytesIO()
    save_object(obj, buf)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("unpickling during load")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    loaded = load_object(io.BytesIO(buf.getvalue()))
    assert bits(loaded.net[0].weight) == bits(obj.net[0].weight)


def test_listing_plugins_and_records_imports_no_torch() -> None:
    code = ("import sys, dryml\n"
            "from dryml.plugins import get_plugin_manager\n"
            "pm = get_plugin_manager()\n"
            "names = [r.name for _, r in pm.records('dryml_serializers')]\n"
            "names += [r.name for _, r in pm.records('dryml_arg_codecs')]\n"
            "assert 'torch.nn.Module' in names and 'torch.Tensor' in names, names\n"
            "print(sorted(m for m in ('torch', 'numpy.torch') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == "[]"


def test_backend_installed_without_torch_names_torch(tmp_path: Any) -> None:
    """dryml-torch present but torch missing: BackendUnavailableError saying pip install torch."""
    here = os.path.dirname(os.path.abspath(__file__))
    path = str(tmp_path / "args.dry")
    env = {**os.environ, "DRYML_REQUIRE_BACKENDS": "1"}
    save = (f"import sys; sys.path.insert(0, {here!r})\n"
            "import test_serializers_torch as t\n"
            "from dryml import save_object\n"
            f"save_object(t.build_tensor_args(), {path!r})\n")
    subprocess.run([sys.executable, "-c", save], check=True, timeout=120, env=env)
    load = (f"import sys; sys.path.insert(0, {here!r})\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] == 'torch':\n"
            "            raise ModuleNotFoundError(\"No module named 'torch'\")\n"
            "sys.meta_path.insert(0, Block())\n"
            "from dryml import load_object\n"
            "from dryml.errors import BackendUnavailableError\n"
            "try:\n"
            f"    load_object({path!r}, trust=['test_serializers_torch'])\n"
            "except BackendUnavailableError as exc:\n"
            "    print('BackendUnavailableError:', exc)\n")
    out = subprocess.run([sys.executable, "-c", load], capture_output=True, text=True,
                         timeout=120, env=env, check=False)
    assert out.stdout.startswith("BackendUnavailableError: "), out.stderr[-2000:]
    assert "dryml-torch needs torch" in out.stdout and "pip install torch" in out.stdout
    assert "pip install torch" in out.stdout


def test_a_quantizer_made_of_quantized_tensors_is_a_format_error() -> None:
    buf = io.BytesIO()
    save_object(Holder(_quantized()[2]), buf)

    def nest(nodes: list[dict[str, Any]]) -> None:
        data = nodes[0]["args"][0]["data"]
        data["quantizer"]["scales"] = json.loads(json.dumps(data))  # scales are quantized

    with pytest.raises(FormatError):
        load_object(io.BytesIO(_edit_nodes(buf.getvalue(), nest)))


def _b64(array: np.ndarray) -> dict[str, Any]:
    import base64

    return {"dtype": str(array.dtype), "shape": list(array.shape),
            "b64": base64.b64encode(array.tobytes()).decode()}


def _channels(scheme: str, scales: np.ndarray, points: np.ndarray) -> dict[str, Any]:
    return {"scheme": scheme, "axis": 0, "scales": _b64(scales), "zero_points": _b64(points)}


ONES, ZEROS = np.ones(4, np.float32), np.zeros(4, np.float32)
FLOAT_QPARAMS = "per_channel_affine_float_qparams"
#: (dtype, storage bytes, quantizer) of a [4, 4] quantized tensor torch never builds
HOSTILE_QUANTIZERS: dict[str, tuple[str, int, dict[str, Any]]] = {
    "qint32-float-qparams": ("qint32", 64, _channels(FLOAT_QPARAMS, ONES, ZEROS)),
    "quint4x2-per-channel-affine": ("quint4x2", 8, _channels(
        "per_channel_affine", ONES.astype(np.float64), np.zeros(4, np.int64))),
    "zero-point-out-of-range": ("quint8", 16, {"scheme": "per_tensor_affine", "scale": 0.1,
                                               "zero_point": 300}),
    "channel-zero-point-out-of-range": ("qint8", 16, _channels(
        "per_channel_affine", ONES.astype(np.float64), np.full(4, 10**6, np.int64))),
    "float-zero-points-affine": ("quint8", 16, _channels("per_channel_affine", ONES, ZEROS)),
    "integer-zero-points-float-qparams": ("quint8", 16, _channels(
        FLOAT_QPARAMS, ONES, np.zeros(4, np.int64))),
    "integer-scales": ("quint8", 16, _channels(FLOAT_QPARAMS, np.ones(4, np.int64), ZEROS)),
    "infinite-scales": ("qint8", 16, _channels(FLOAT_QPARAMS, np.full(4, np.inf, np.float32), ZEROS)),
}

USE_QUANTIZED = """
import json, sys
sys.path.insert(0, sys.argv[2])
import torch
import test_serializers_torch_values  # the Holder class
from dryml import load_object
from dryml.errors import DrymlError
outcomes = {}
for name, path in json.loads(sys.argv[1]).items():
    try:
        t = load_object(path).value
        repr(t), t.dequantize(), torch.equal(t, t), t.int_repr()
        outcomes[name] = "used"
    except DrymlError as exc:
        outcomes[name] = type(exc).__name__
    except Exception as exc:  # noqa: BLE001 - not a crash, but not dryml's error either
        outcomes[name] = "raw " + type(exc).__name__
    print(json.dumps(outcomes), flush=True)
"""


def test_a_quantizer_torch_never_builds_is_refused_at_load(tmp_path: Any) -> None:
    # qint32 with float qparams loaded, then crashed torch (SIGILL) at its first dequantize
    here = os.path.dirname(os.path.abspath(__file__))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quantized tensors are deprecated in torch
        good = torch.quantize_per_channel(torch.randn(4, 4), torch.rand(4) + 0.1,
                                          torch.rand(4), 0, torch.quint8)
    buf = io.BytesIO()
    save_object(Holder(good), buf)
    paths = {"good": str(tmp_path / "good.dry")}
    (tmp_path / "good.dry").write_bytes(buf.getvalue())
    for name, (dtype, nbytes, quantizer) in HOSTILE_QUANTIZERS.items():
        def change(nodes: list[dict[str, Any]], dtype: str = dtype, nbytes: int = nbytes,
                   quantizer: dict[str, Any] = quantizer) -> None:
            data = nodes[0]["args"][0]["data"]
            data.update(dtype=dtype, nbytes=nbytes, quantizer=quantizer,
                        **{"b64": _b64(np.zeros(nbytes, np.uint8))["b64"]})

        paths[name] = str(tmp_path / f"{name}.dry")
        (tmp_path / f"{name}.dry").write_bytes(_edit_nodes(buf.getvalue(), change))
    out = subprocess.run([sys.executable, "-c", USE_QUANTIZED, json.dumps(paths), here],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    lines = out.stdout.strip().splitlines()
    outcomes = json.loads(lines[-1]) if lines else {}
    assert out.returncode == 0, (out.returncode, outcomes, out.stderr[-2000:])
    assert outcomes == {"good": "used", **dict.fromkeys(HOSTILE_QUANTIZERS, "FormatError")}


def test_a_conjugate_or_negated_view_beside_its_base_keeps_its_sign() -> None:
    """Found by review: the key that finds tied weights ignored conj/neg views, so a state
    dict holding z and z.conj() (or z.imag and z.conj().imag) loaded the second as the
    first, with the wrong sign, and no error."""
    z = torch.tensor([1 + 2j, 3 - 4j], dtype=torch.complex64)
    module = torch.nn.Module()
    # (z.imag beside z views its memory as another dtype: refused, as torch.save refuses
    # it; conjugate and negated views are stored resolved)
    for name, value in {"z": z, "conj": z.conj(), "conj_im": z.conj().imag}.items():
        module.register_buffer(name, value)
    obj = Holder()
    obj.state["m"] = module
    state = round_trip(obj).state["m"]
    assert state["conj"].resolve_conj().tolist() == [1 - 2j, 3 + 4j]
    assert state["conj_im"].resolve_neg().tolist() == [-2.0, 4.0]
    assert state["z"].tolist() == z.tolist()
    module.register_buffer("im", z.imag)
    with pytest.raises(SerializationError, match="complex64.*float32.*different types"):
        round_trip(obj)
    del module.z
    assert round_trip(obj).state["m"]["im"].tolist() == [2.0, -4.0]


class Doubling(torch.Tensor):
    """A tensor subclass that computes differently from a plain tensor."""

    def sum(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        return 2 * super().sum(*args, **kwargs)


def test_a_tensor_subclass_is_refused_not_loaded_as_a_plain_tensor() -> None:
    """Found by review: a torch.Tensor subclass saved with store.put or as an argument loaded
    as a plain Tensor, which then computed differently, silently."""
    value = torch.ones(3).as_subclass(Doubling)
    with pytest.raises(ArgumentError, match="as_subclass"):
        Holder(value)
    obj = Holder()
    obj.state["t"] = value
    with pytest.raises(SerializationError, match=r"Doubling \(a torch.Tensor subclass\)"):
        save_object(obj, io.BytesIO())
    obj.state["t"] = value.as_subclass(torch.Tensor)
    assert round_trip(obj).state["t"].sum().item() == 3.0


def _edit_entries(data: bytes, match: Any, edit: Any) -> bytes:
    """Rewrite every manifest dict that ``match`` accepts (keeping a valid checksum)."""
    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if match(node):
                edit(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    return rewrite_manifest(data, walk)


def test_numpy_scalar_hyperparameters_in_state_dicts_come_back_as_they_were() -> None:
    # e.g. a learning rate from np.logspace, as a mid-training checkpoint stores it
    opt = torch.optim.Adam(torch.nn.Linear(2, 1).parameters(), lr=np.float64(0.01))
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=np.int64(2), gamma=np.float32(0.5))
    obj = Holder()
    obj.state.update(opt=opt, sched=sched)
    loaded = round_trip(obj).state
    lr = loaded["opt"]["param_groups"][0]["lr"]
    assert type(lr) is np.float64 and lr == 0.01
    step_size, gamma = loaded["sched"]["step_size"], loaded["sched"]["gamma"]
    assert (type(step_size), step_size, type(gamma), gamma) == (np.int64, 2, np.float32, 0.5)
    fresh = torch.optim.Adam(torch.nn.Linear(2, 1).parameters(), lr=0.5)
    fresh.load_state_dict(loaded["opt"])
    assert fresh.param_groups[0]["lr"] == 0.01


@pytest.mark.parametrize("edit", [
    lambda d: d["value"].update(dtype="|O"),
    lambda d: d["value"].update(b64="not base64!"),
    lambda d: d["value"].update(b64="AAAA"),
    lambda d: d.update(value="3"),
], ids=["object-dtype", "base64", "size", "not-a-dict"])
def test_malformed_numpy_scalars_in_a_state_dict_are_a_format_error(edit: Any) -> None:
    obj = Holder()
    obj.state["opt"] = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=np.float64(0.1))
    buf = io.BytesIO()
    save_object(obj, buf)
    changed = _edit_entries(buf.getvalue(), lambda d: d.get("~") == "numpy", edit)
    with pytest.raises(FormatError):
        load_object(io.BytesIO(changed))


def _repeated_rows_file(names: tuple[str, ...], references: int, *, view: bool) -> bytes:
    """A saved Holder of an SGD optimizer per name, each entry's state edited to name one
    tensor of 16 MiB repeated from a row of 8 stored bytes (``view``: a stride-0 view of a
    one-element base; else a tensor stored with stride-0 strides) ``references`` times."""
    import base64

    obj = Holder()
    for name in names:
        obj.state[name] = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1)
    buf = io.BytesIO()
    save_object(obj, buf)
    row = base64.b64encode(np.float64(1).tobytes()).decode()
    repeated = {"dtype": "float64", "shape": [2 * 2**20], "stride": [0]}

    def bomb(meta: dict[str, Any]) -> None:
        if view:
            meta["bases"] = [{"dtype": "float64", "shape": [1], "b64": row}]
            meta["tensors"] = [{**repeated, "base": 0, "offset": 0}]
        else:
            meta["tensors"] = [{**repeated, "b64": row}]
        meta["tree"]["state"] = {"~": "dict", "items": [
            [0, {f"k{i}": {"~": "tensor", "index": 0} for i in range(references)}]]}

    return _edit_entries(buf.getvalue(), lambda d: "class" in d and "tree" in d, bomb)


def test_a_repeating_view_referred_to_again_and_again_is_a_format_error() -> None:
    """Each reference to one tensor was checked alone: a 16 MiB stride-0 view of 8 stored
    bytes, named by 400 optimizer state entries, made load_state_dict copy it 400 times
    (1.7 GB from a 1.9 KB file). Now every reference spends the file's max_beyond_ratio
    (1 GiB). Tied weights (one tensor named twice) still load."""
    linear = torch.nn.Linear(2, 2)
    obj = Holder()
    obj.state["tied"] = {"a": linear.weight.detach(), "b": linear.weight.detach()}
    tied = round_trip(obj).state["tied"]
    assert torch.equal(tied["a"], tied["b"])

    changed = _repeated_rows_file(("opt",), 80, view=True)  # 1.3 GB
    with pytest.raises(FormatError, match="refers to tensors whose strides repeat"):
        load_object(io.BytesIO(changed))


def test_an_expand_named_by_many_references_is_written_so_its_reader_takes_it() -> None:
    """Found by review: a buffer and its expand, in a module that 40 blocks share, were
    written as views, and the per-entry budget of the reader then refused dryml's own file."""
    class Shared(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("inv", torch.arange(512.0))
            self.register_buffer("wide", self.inv.expand(256, 512))

    class Blocks(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            shared = Shared()
            self.blocks = torch.nn.ModuleList(torch.nn.Sequential(shared) for _ in range(40))

    net = Blocks()
    obj = Holder()
    obj.state["m"] = net
    state = round_trip(obj).state["m"]
    assert torch.equal(state["blocks.39.0.wide"], net.blocks[39][0].wide)
    assert torch.equal(state["blocks.0.0.inv"], net.blocks[0][0].inv)


def test_a_stored_tensor_that_repeats_its_row_is_charged_per_reference_too() -> None:
    """Found by review: only views were charged; a tensor stored with its own stride-0
    strides (one row of 8 bytes standing for 16 MiB), named again and again, loaded, and
    each reference became a copy of its own."""
    changed = _repeated_rows_file(("opt",), 80, view=False)  # 1.3 GB
    with pytest.raises(FormatError, match="refers to tensors whose strides repeat"):
        load_object(io.BytesIO(changed))


def test_the_allowance_for_repeated_rows_is_the_files_not_each_entrys() -> None:
    """Two entries of 640 MiB of repeated rows each: within 1 GiB one by one, not together."""
    changed = _repeated_rows_file(("opt1", "opt2"), 40, view=False)
    with pytest.raises(FormatError, match="more than dryml.format.Limits allows a file"):
        load_object(io.BytesIO(changed))


def test_dict_entries_of_a_modules_metadata_are_kept() -> None:
    # torch's spectral_norm records {"spectral_norm": {"weight.version": 1}} there
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = torch.nn.utils.spectral_norm(torch.nn.Linear(3, 2))
    obj = Holder()
    obj.state["m"] = net
    state = round_trip(obj).state["m"]
    assert state._metadata == net.state_dict()._metadata
    assert state._metadata[""]["spectral_norm"] == {"weight.version": 1}


def test_module_metadata_that_is_not_json_is_said_to_be_dropped() -> None:
    """A value JSON cannot hold (a tuple a module's own hook writes) was dropped without a
    word, and a load_state_dict hook that reads it then took the state for an old one."""
    from dryml.errors import DrymlWarning

    class Versioned(torch.nn.Linear):
        def _save_to_state_dict(self, destination: Any, prefix: str, keep_vars: bool) -> None:
            super()._save_to_state_dict(destination, prefix, keep_vars)
            destination._metadata[prefix.rstrip(".")]["layout"] = (2, "packed")

    obj = Holder()
    obj.state["m"] = Versioned(3, 2)
    with pytest.warns(DrymlWarning, match=r"not plain JSON, which are not saved: "
                                          r"<root>\.layout; a load_state_dict hook"):
        state = round_trip(obj).state["m"]
    assert "layout" not in state._metadata[""] and state._metadata[""]["version"] == 1


@pytest.mark.parametrize("value", [[[[[[1]]]]], {"a": {"b": {"c": {"d": {"e": 1}}}}}],
                         ids=["deep-list", "deep-dict"])
def test_module_metadata_nested_past_the_limit_is_a_format_error(value: Any) -> None:
    obj = Holder()
    obj.state["m"] = torch.nn.Linear(3, 2)
    buf = io.BytesIO()
    save_object(obj, buf)

    def nest(meta: dict[str, Any]) -> None:
        meta["metadata"][""]["extra"] = value

    changed = _edit_entries(buf.getvalue(), lambda d: "module" in d and "metadata" in d, nest)
    with pytest.raises(FormatError, match="metadata"):
        load_object(io.BytesIO(changed))
