"""torch values in ``.dry`` files: tensors as raw ``.npy`` members, dtypes, devices, sizes.

A tensor's bytes go into the file through a numpy view of its CPU buffer (no copy for a
contiguous CPU tensor), as a ``.npy`` member that the container checksums while writing, and
come back with ``torch.from_numpy`` on the array the reader filled in place. dtypes numpy lacks
(bfloat16, float8, complex32...) travel as same-width unsigned integers, bits unchanged, with
the torch dtype recorded beside them. Nothing is pickled: no ``torch.save``/``torch.load``.

Layout is kept as ``torch.save`` keeps it: a tensor whose strides are not the row-major ones
(``channels_last``, a transpose, a slice, an ``expand``) records its strides and stores the
storage region its elements span, as a flat array; it comes back over that region with the
same strides (``Tensor.set_``), so memory formats survive and memory stays what the file holds.
"""

from __future__ import annotations

import base64
import functools
import importlib.metadata
import math
import re
import warnings
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np

try:
    import torch
except ImportError as _exc:  # the backend is installed without its framework
    from dryml.errors import BackendUnavailableError

    raise BackendUnavailableError(
        f"dryml-torch needs torch, which cannot be imported ({_exc}): pip install torch"
    ) from _exc

from dryml.errors import DrymlVersionWarning, FormatError
from dryml.format import Limits
from dryml_torch._quantized import (
    QUANTIZED,
    copy_quantized,
    decode_quantized,
    encode_quantized,
    quantized_problem,
)

__all__ = [
    "DEVICE",
    "DTYPE",
    "PACKAGE",
    "SIZE",
    "TENSOR",
    "check_versions",
    "decode_tensor",
    "decode_view",
    "encode_tensor",
    "expands_too_far",
    "extent",
    "limits_of",
    "note_versions",
    "numpy_of",
    "tensor_problem",
    "view_meta",
]

PACKAGE = "dryml-torch"
#: Tensors up to this many bytes are written inline (base64) in the manifest.
INLINE_BYTES = 4096

_NATIVE = ("bool", "uint8", "int8", "int16", "int32", "int64", "uint16", "uint32", "uint64",
           "float16", "float32", "float64", "complex64", "complex128")
# dtypes numpy has no dtype for, and the unsigned integer of the same width that carries them.
_CARRIED = {"bfloat16": "uint16", "complex32": "uint32", "float8_e4m3fn": "uint8",
            "float8_e4m3fnuz": "uint8", "float8_e5m2": "uint8", "float8_e5m2fnuz": "uint8",
            "float8_e8m0fnu": "uint8", "float4_e2m1fn_x2": "uint8", "bits8": "uint8",
            "bits16": "uint16", "bits1x8": "uint8", "bits2x4": "uint8", "bits4x2": "uint8"}
_BY_NAME: dict[str, torch.dtype] = {
    name: getattr(torch, name) for name in (*_NATIVE, *_CARRIED)
    if isinstance(getattr(torch, name, None), torch.dtype)
}
_NAME = {dtype: name for name, dtype in _BY_NAME.items()}
_QNAME = {dtype: name for name, dtype in QUANTIZED.items()}
_DEVICE = re.compile(r"^([a-z_]+)(:[0-9]{1,6})?$")
#: Device types a file may name (torch's own DeviceType names): a fixed table, never looked up.
_DEVICE_TYPES = frozenset({"cpu", "cuda", "mps", "xpu", "meta", "hpu", "xla", "mtia", "ipu",
                           "lazy", "maia", "hip", "ve", "vulkan", "mkldnn", "opengl", "opencl",
                           "ideep", "fpga", "privateuseone"})
_MAX_DIM = 2**62  # a larger size or stride cannot describe memory
# A tensor whose strides repeat elements (an expand's stride 0) stands for more elements than
# the file holds; anything that copies it (an optimizer's load_state_dict casting its state, a
# definition, .contiguous()) allocates them all. A reader accepts that only as far as a
# compressed member may expand (dryml.format.Limits' default ratio), and a writer stores a
# tensor that would stand for more as its plain elements, so that every file it writes loads.
_LIMITS = Limits()


def expands_too_far(numel: int, itemsize: int, stored_bytes: int,
                    limits: Limits = _LIMITS) -> bool:
    """Whether ``numel`` elements of ``itemsize`` bytes over ``stored_bytes`` stored ones are
    more than a reader with ``limits`` accepts."""
    return numel * itemsize > limits.allowed_raw(stored_bytes, limits.max_member_bytes)


def limits_of(reader: Any) -> Limits:
    """The Limits of the load ``reader`` serves (``load_object(limits=...)``), else the
    defaults."""
    found = getattr(reader, "limits", None)
    return found if isinstance(found, Limits) else _LIMITS


def _check_expansion(shape: list[int], stride: list[int], itemsize: int,
                     stored_bytes: int, limits: Limits) -> None:
    """FormatError when a tensor of ``shape`` and ``stride`` stands for far more bytes than
    the ``stored_bytes`` it lies over (see ``_LIMITS``)."""
    numel = math.prod(shape)
    if expands_too_far(numel, itemsize, stored_bytes, limits):
        raise FormatError(
            f"a torch tensor of shape {shape} and strides {stride} stands for "
            f"{numel * itemsize} bytes over the {stored_bytes} that the file holds for it, "
            "past the limits of dryml.format.Limits (its first copy would allocate it all). "
            "dryml-torch now writes such a tensor as its elements, but an older one wrote an "
            "expanded tensor as the row it repeats: if you trust the file, load it with "
            "load_object(path, limits=Limits(max_ratio=..., ratio_floor=...)) and save it "
            "again")


def dtype_name(dtype: torch.dtype) -> str:
    """The name a file records for ``dtype``; ValueError for dtypes it cannot hold."""
    name = _NAME.get(dtype) or _QNAME.get(dtype)
    if name is None:
        raise ValueError(f"tensors of dtype {dtype} cannot be saved (sub-byte integer dtypes "
                         "have no storage format, torch.save refuses them too); convert with "
                         ".to(...)")
    return name


def dtype_from_name(name: Any) -> torch.dtype:
    """The torch dtype a file names (from fixed tables); FormatError for anything else."""
    dtype = (_BY_NAME.get(name) or QUANTIZED.get(name)) if isinstance(name, str) else None
    if dtype is None:
        raise FormatError(f"unknown or unsupported torch dtype {name!r} in the file")
    return dtype


def tensor_problem(value: torch.Tensor) -> str | None:
    """Why ``value`` cannot be saved, or None."""
    if type(value) not in (torch.Tensor, torch.nn.Parameter):
        # its data would load as a plain Tensor, and a subclass that computes differently
        # would silently give other results
        return (f"a {type(value).__qualname__} (a torch.Tensor subclass) would load as a plain "
                "tensor; save value.as_subclass(torch.Tensor) if that is what you mean")
    if value.layout != torch.strided:
        return f"{value.layout} tensors cannot be saved; convert with .to_dense()"
    if value.is_quantized:
        return quantized_problem(value)
    if value.is_nested:
        return "nested tensors cannot be saved; save their components"
    if value.device.type == "meta":
        return "meta tensors hold no data; materialize the tensor first"
    try:
        dtype_name(value.dtype)
    except ValueError as exc:
        return str(exc)
    return None


def _carried(t: torch.Tensor) -> np.ndarray:
    """The numpy array of a contiguous CPU tensor (numpy-less dtypes as unsigned integers)."""
    carrier = _CARRIED.get(_NAME[t.dtype])
    if carrier is not None:
        t = t.view(getattr(torch, carrier))
    return t.numpy()


def numpy_of(value: torch.Tensor) -> np.ndarray:
    """A tensor's values as a numpy array (a CPU copy of a device tensor, no copy of a CPU
    one); dtypes numpy lacks are widened exactly: bfloat16 and float8 to float32, complex32
    to complex64."""
    t = value.detach().cpu().resolve_conj().resolve_neg()
    if (t.is_floating_point() or t.is_complex()) and _NAME.get(t.dtype) not in _NATIVE:
        t = t.to(torch.complex64 if t.is_complex() else torch.float32)
    return t.numpy()


def _to_numpy(value: torch.Tensor) -> np.ndarray:
    """A numpy array over the tensor's CPU bytes (a view when already CPU and contiguous)."""
    t = value.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    t = t.resolve_conj().resolve_neg()
    if not t.is_contiguous():
        t = t.contiguous()
    return _carried(t)


def row_major(shape: Sequence[int]) -> list[int]:
    """The strides of a contiguous (row-major) tensor of ``shape``."""
    strides, step = [0] * len(shape), 1
    for i in range(len(shape) - 1, -1, -1):
        strides[i] = step
        step *= max(int(shape[i]), 1)
    return strides


def extent(shape: Sequence[int], stride: Sequence[int]) -> int:
    """How many storage elements a tensor of ``shape`` and ``stride`` spans (0 when empty)."""
    if any(d == 0 for d in shape):
        return 0
    return 1 + sum((d - 1) * s for d, s in zip(shape, stride, strict=True))


def _layout(value: torch.Tensor) -> tuple[list[int] | None, np.ndarray]:
    """The strides to record (None for row-major) and the bytes to store.

    A row-major tensor stores its elements; any other stores the storage region its elements
    span (its own bytes for a dense layout such as channels_last, the gaps of a slice, one
    copy of an expanded row), which is what comes back under the same strides.
    """
    t = value.detach()
    if t.is_conj() or t.is_neg():
        t = t.resolve_conj().resolve_neg()
    stride = list(t.stride())
    span = extent(t.shape, stride)
    size = t.element_size()
    if stride == row_major(t.shape) or expands_too_far(t.numel(), size, span * size):
        return None, _to_numpy(t)
    region = torch.as_strided(t, (span,), (1,), t.storage_offset())
    if region.device.type != "cpu":
        region = region.cpu()
    return stride, _carried(region.contiguous())


def encode_tensor(value: torch.Tensor, writer: Any | None, inline: int = INLINE_BYTES
                  ) -> dict[str, Any]:
    """JSON for a tensor: dtype, shape, device; bytes inline or as a ``.npy`` member."""
    problem = tensor_problem(value)
    if problem is not None:
        raise ValueError(problem)
    meta: dict[str, Any] = {"dtype": dtype_name(value.dtype), "shape": list(value.shape)}
    if value.device.type != "cpu":
        meta["device"] = str(value.device)
    if value.requires_grad:
        meta["requires_grad"] = True
    if isinstance(value, torch.nn.Parameter):
        meta["parameter"] = True
    if value.is_quantized:
        if expands_too_far(value.numel(), value.element_size(),
                            value.untyped_storage().nbytes()):
            value = value.contiguous()
        array = encode_quantized(value, meta, lambda t: encode_tensor(t, writer, inline))
        meta["nbytes"] = array.nbytes
    else:
        stride, array = _layout(value)
        if stride is not None:
            meta["stride"] = stride
    if writer is not None:
        note_versions(writer)
    if writer is not None and array.nbytes > inline:
        meta["member"] = writer.add_array(array)
    else:
        meta["b64"] = base64.b64encode(array.tobytes()).decode("ascii")
    return meta


def _carrier_dtype(dtype: torch.dtype) -> np.dtype[Any]:
    name = _NAME[dtype]
    return np.dtype(_CARRIED.get(name, name))


def _stride(meta: dict[str, Any], shape: list[int]) -> list[int] | None:
    stride = meta.get("stride")
    if stride is None:
        return None
    if not (isinstance(stride, list) and len(stride) == len(shape)
            and all(type(s) is int and 0 <= s < _MAX_DIM for s in stride)):
        raise FormatError(f"bad torch tensor strides {stride!r} for shape {shape}")
    return stride


def _stored_array(meta: dict[str, Any], reader: Any | None, dtype: torch.dtype,
                  stored: list[int]) -> np.ndarray:
    """The array of the stored elements (shape ``stored``), checked against the entry."""
    carrier = _carrier_dtype(dtype)
    if "member" in meta:
        if reader is None:
            raise FormatError("a tensor member reference outside a .dry file")
        array = reader.get_array(meta["member"])
        if array.dtype.newbyteorder("=") != carrier or list(array.shape) != stored:
            raise FormatError(f"tensor member {meta['member']!r} holds {array.dtype} "
                              f"{list(array.shape)}, the entry says {carrier} {stored}")
        if not array.dtype.isnative:
            array = array.astype(carrier)
    else:
        try:
            raw = base64.b64decode(str(meta.get("b64", "")), validate=True)
        except ValueError as exc:  # binascii.Error
            raise FormatError(f"bad base64 tensor data: {exc}") from None
        count = math.prod(stored)
        if count * carrier.itemsize != len(raw):
            raise FormatError(f"tensor data holds {len(raw)} bytes; {stored} elements of "
                              f"{meta['dtype']} need {count * carrier.itemsize}")
        array = np.frombuffer(raw, dtype=carrier).reshape(tuple(stored)).copy()
    if not array.flags.writeable:
        array = array.copy()
    return array


def _shape(meta: Any) -> list[int]:
    if not isinstance(meta, dict):
        raise FormatError("a torch tensor entry must be an object")
    shape = meta.get("shape")
    if not (isinstance(shape, list) and all(type(d) is int and 0 <= d < _MAX_DIM
                                            for d in shape)):
        raise FormatError(f"bad torch tensor shape {shape!r}")
    return shape


def _itemsize(dtype: torch.dtype) -> int:
    """Bytes per element. ``dtype.itemsize`` (torch 2.1+) makes no tensor: an empty quantized
    tensor warns that quantized creation is deprecated, on every load of a quantized model."""
    size = getattr(dtype, "itemsize", None)
    return int(size) if size else torch.empty(0, dtype=dtype).element_size()


def _over(base: torch.Tensor, dtype: torch.dtype, offset: int, shape: list[int],
          stride: list[int], limits: Limits) -> torch.Tensor:
    """A tensor over ``base``'s memory with this layout; FormatError if it does not fit, or
    if it stands for far more elements than ``base`` holds."""
    _check_expansion(shape, stride, base.element_size(), base.untyped_storage().nbytes(),
                     limits)
    try:
        return torch.empty(0, dtype=dtype).set_(base.untyped_storage(), offset, shape, stride)
    except (RuntimeError, ValueError, OverflowError) as exc:
        raise FormatError(f"torch tensor of shape {shape}, strides {stride} and offset "
                          f"{offset} cannot be restored: {exc}") from None


def _finish(meta: dict[str, Any], tensor: torch.Tensor) -> torch.Tensor:
    if meta.get("parameter") is True:
        return torch.nn.Parameter(tensor, requires_grad=meta.get("requires_grad") is True)
    if meta.get("requires_grad") is True and (tensor.is_floating_point() or tensor.is_complex()):
        tensor.requires_grad_(True)
    return tensor


def decode_tensor(meta: Any, reader: Any | None) -> torch.Tensor:
    """A CPU tensor back from :func:`encode_tensor`'s JSON (a CUDA tensor comes back on CPU),
    with the strides it was saved with."""
    shape = _shape(meta)
    dtype = dtype_from_name(meta.get("dtype"))
    stride = _stride(meta, shape)
    if reader is not None:
        check_versions(reader)
    if dtype in _QNAME:
        nbytes = meta.get("nbytes")
        if type(nbytes) is not int or not 0 <= nbytes < _MAX_DIM:
            raise FormatError(f"bad quantized tensor size {nbytes!r}")
        _check_expansion(shape, stride or row_major(shape), _itemsize(dtype), nbytes,
                         limits_of(reader))
        data = _stored_array(meta, reader, torch.uint8, [nbytes])
        return decode_quantized(meta, dtype, shape, stride, data,
                                lambda entry: _decode_plain(entry, reader))
    stored = shape if stride is None else [extent(shape, stride)]
    tensor = torch.from_numpy(_stored_array(meta, reader, dtype, stored))
    if tensor.dtype != dtype:
        tensor = tensor.view(dtype)
    if stride is not None:
        tensor = _over(tensor, dtype, 0, shape, stride, limits_of(reader))
    return _finish(meta, tensor)


def _decode_plain(meta: Any, reader: Any | None) -> torch.Tensor:
    """A quantizer's scales or zero points: a plain (never quantized) tensor."""
    if isinstance(meta, dict) and meta.get("dtype") in QUANTIZED:
        raise FormatError("a quantizer's scales and zero points must be plain tensors")
    return decode_tensor(meta, reader)


def view_meta(value: torch.Tensor, base: int, offset: int) -> dict[str, Any]:
    """JSON for a tensor over a shared region: region ``base`` of the same stored value,
    starting ``offset`` elements into it (views of one storage stay one storage)."""
    meta: dict[str, Any] = {"dtype": dtype_name(value.dtype), "shape": list(value.shape),
                            "stride": list(value.stride()), "base": base, "offset": offset}
    if value.requires_grad:
        meta["requires_grad"] = True
    if isinstance(value, torch.nn.Parameter):
        meta["parameter"] = True
    return meta


def decode_view(meta: Any, bases: list[torch.Tensor], limits: Limits = _LIMITS
                ) -> torch.Tensor:
    """A tensor :func:`view_meta` described, over its decoded region in ``bases``."""
    shape = _shape(meta)
    dtype = dtype_from_name(meta.get("dtype"))
    stride, base, offset = _stride(meta, shape), meta.get("base"), meta.get("offset")
    if not (stride is not None and type(base) is int and 0 <= base < len(bases)
            and type(offset) is int and 0 <= offset < _MAX_DIM
            and bases[base].dtype == dtype):
        raise FormatError(f"bad shared torch tensor entry (base {base!r}, offset {offset!r}, "
                          f"dtype {meta.get('dtype')!r})")
    return _finish(meta, _over(bases[base], dtype, offset, shape, stride, limits))


# -- framework versions ------------------------------------------------------------------------

_noted: weakref.WeakSet[Any] = weakref.WeakSet()
_checked: weakref.WeakSet[Any] = weakref.WeakSet()


@functools.cache
def _plugin_version() -> str:
    """This package's installed version (a metadata lookup costs ~1 ms: done once)."""
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def note_versions(writer: Any) -> None:
    """Record dryml-torch's and torch's versions in the file being written (once)."""
    try:
        if writer in _noted:
            return
        _noted.add(writer)
    except TypeError:  # not weak-referenceable: record every time
        pass
    writer.record_version(PACKAGE, _plugin_version(),
                          framework=("torch", torch.__version__.split("+")[0]))


def check_versions(reader: Any) -> None:
    """Warn DrymlVersionWarning once per file written under another major torch version."""
    try:
        if reader in _checked:
            return
        _checked.add(reader)
    except TypeError:
        pass
    written = reader.framework_version("torch")
    installed = torch.__version__.split("+")[0]
    if written and written.split(".")[0] != installed.split(".")[0]:
        warnings.warn(
            f"the file was written with torch {written}; torch {installed} is installed. "
            "Tensors are stored as raw arrays and should load, but check the results, or "
            f"install torch=={written}.", DrymlVersionWarning, stacklevel=4)


# -- argument codecs ---------------------------------------------------------------------------

def _values(value: torch.Tensor) -> np.ndarray | None:
    """The values of a floating or complex tensor as numpy compares them (dtypes numpy lacks
    widened exactly: bfloat16 and float8 to float32, complex32 to complex64; float4's packed
    pairs as codes with -0 read as 0); None for other dtypes, whose bits are their values."""
    t = value.detach()
    if t.dtype == getattr(torch, "float4_e2m1fn_x2", None):
        codes = _to_numpy(t)
        pair = np.stack([codes & 0x0F, codes >> 4])
        return np.where(pair == 0x08, 0, pair)
    if not (t.is_floating_point() or t.is_complex()):
        return None
    return numpy_of(t)


class TensorCodec:
    """``torch.Tensor`` (and ``nn.Parameter``) arguments; dtype, shape, requires_grad kept."""

    def check(self, value: torch.Tensor) -> None:
        problem = tensor_problem(value)
        if problem is not None:
            raise ValueError(problem)

    def encode(self, value: torch.Tensor, writer: Any | None) -> Any:
        return encode_tensor(value, writer)

    def decode(self, data: Any, reader: Any | None) -> torch.Tensor:
        return decode_tensor(data, reader)

    def copy(self, value: torch.Tensor) -> torch.Tensor:
        if value.is_quantized:
            return copy_quantized(value)
        clone = value.detach().clone()
        if isinstance(value, torch.nn.Parameter):
            return torch.nn.Parameter(clone, requires_grad=value.requires_grad)
        return clone.requires_grad_(value.requires_grad)

    def equal(self, a: torch.Tensor, b: torch.Tensor) -> bool:
        if a.dtype != b.dtype or a.shape != b.shape or a.device != b.device:
            return False
        if a.is_quantized:
            return bool(a.qscheme() == b.qscheme() and torch.equal(a.int_repr(), b.int_repr())
                        and torch.equal(a.dequantize(), b.dequantize()))
        if _to_numpy(a).tobytes() == _to_numpy(b).tobytes():
            return True
        # as numpy arrays compare (dryml's ArrayCodec.equal): NaN equals NaN, -0.0 equals 0.0,
        # and every other value (inf included) only itself
        left, right = _values(a), _values(b)
        return left is not None and right is not None and bool(
            np.array_equal(left, right, equal_nan=left.dtype.kind in "fc"))


class DtypeCodec:
    """``torch.float32`` and the other dtypes as arguments (by name)."""

    def check(self, value: torch.dtype) -> None:
        dtype_name(value)

    def encode(self, value: torch.dtype, writer: Any | None) -> Any:
        return dtype_name(value)

    def decode(self, data: Any, reader: Any | None) -> torch.dtype:
        return dtype_from_name(data)

    def copy(self, value: torch.dtype) -> torch.dtype:
        return value

    def equal(self, a: torch.dtype, b: torch.dtype) -> bool:
        return a == b


class DeviceCodec:
    """``torch.device("cuda:0")`` as an argument (by its string)."""

    def check(self, value: torch.device) -> None:
        pass

    def encode(self, value: torch.device, writer: Any | None) -> Any:
        return str(value)

    def decode(self, data: Any, reader: Any | None) -> torch.device:
        match = _DEVICE.match(data) if isinstance(data, str) else None
        if match is None or match.group(1) not in _DEVICE_TYPES:
            raise FormatError(f"bad torch device {data!r} in the file")
        try:
            return torch.device(data)
        except RuntimeError as exc:
            raise FormatError(f"unknown torch device {data!r}: {exc}") from None

    def copy(self, value: torch.device) -> torch.device:
        return value

    def equal(self, a: torch.device, b: torch.device) -> bool:
        return a == b


class SizeCodec:
    """``torch.Size`` as an argument (a list of ints)."""

    def check(self, value: torch.Size) -> None:
        pass

    def encode(self, value: torch.Size, writer: Any | None) -> Any:
        return [int(d) for d in value]

    def decode(self, data: Any, reader: Any | None) -> torch.Size:
        if not (isinstance(data, list) and all(type(d) is int and d >= 0 for d in data)):
            raise FormatError(f"bad torch.Size {data!r} in the file")
        return torch.Size(data)

    def copy(self, value: torch.Size) -> torch.Size:
        return value

    def equal(self, a: torch.Size, b: torch.Size) -> bool:
        return a == b


TENSOR = TensorCodec()
DTYPE = DtypeCodec()
DEVICE = DeviceCodec()
SIZE = SizeCodec()
