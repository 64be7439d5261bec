"""Quantized tensors in ``.dry`` files, stored as ``torch.save`` stores them: raw storage bytes.

A quantized tensor is its storage (the integer codes, packed two or four to a byte for
``quint4x2`` / ``quint2x4``), its size, strides and storage offset, and its quantizer:
``scale`` and ``zero_point`` (per tensor), or per-channel ``scales``, ``zero_points`` and
``axis``. It comes back the way torch's own loader rebuilds one (an empty quantized tensor with
that quantizer, ``set_`` over the storage), so codes, layout and quantizer are bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from dryml.errors import FormatError

__all__ = ["QUANTIZED", "copy_quantized", "decode_quantized", "encode_quantized",
           "quantized_problem"]

#: Quantized dtypes by the name a file records (a fixed table, never looked up from a file).
QUANTIZED: dict[str, torch.dtype] = {
    name: getattr(torch, name) for name in ("qint8", "quint8", "qint32", "quint4x2", "quint2x4")
    if isinstance(getattr(torch, name, None), torch.dtype)
}
_SCHEMES = {torch.per_tensor_affine: "per_tensor_affine",
            torch.per_channel_affine: "per_channel_affine",
            torch.per_channel_affine_float_qparams: "per_channel_affine_float_qparams"}
#: The dtypes each scheme is built for: those torch's own quantize_per_tensor /
#: quantize_per_channel produce. Other pairs reach torch kernels that do not handle them
#: (qint32 with float qparams: SIGILL at the first dequantize or print).
_SCHEME_DTYPES = {
    "per_tensor_affine": ("qint8", "quint8", "qint32", "quint4x2", "quint2x4"),
    "per_channel_affine": ("qint8", "quint8", "qint32"),
    "per_channel_affine_float_qparams": ("qint8", "quint8", "quint4x2", "quint2x4"),
}
#: Affine zero points torch's quantize functions accept (sub-byte types: their byte's range).
_ZERO_POINT_RANGE = {"qint8": (-128, 127), "quint8": (0, 255), "qint32": (-2**31, 2**31 - 1),
                     "quint4x2": (0, 255), "quint2x4": (0, 255)}
_FLOATS = (torch.float32, torch.float64)
_INTS = (torch.int32, torch.int64)


def quantized_problem(value: torch.Tensor) -> str | None:
    """Why the quantized ``value`` cannot be saved, or None."""
    if value.dtype not in QUANTIZED.values() or value.qscheme() not in _SCHEMES:
        return (f"quantized tensors of dtype {value.dtype} and scheme {value.qscheme()} cannot "
                "be saved; convert with .dequantize()")
    return None


def copy_quantized(value: torch.Tensor) -> torch.Tensor:
    """An independent copy (``clone`` refuses float-qparams tensors): same storage bytes,
    layout and quantizer."""
    t = value.detach()
    if t.qscheme() == torch.per_tensor_affine:
        empty = torch._empty_affine_quantized([0], scale=t.q_scale(),
                                              zero_point=t.q_zero_point(), dtype=t.dtype)
    else:
        empty = torch._empty_per_channel_affine_quantized(
            [0], scales=t.q_per_channel_scales().clone(),
            zero_points=t.q_per_channel_zero_points().clone(), axis=t.q_per_channel_axis(),
            dtype=t.dtype)
    return empty.set_(t.untyped_storage().clone(), t.storage_offset(), t.shape, t.stride())


def encode_quantized(value: torch.Tensor, meta: dict[str, Any],
                     encode: Callable[[torch.Tensor], dict[str, Any]]) -> np.ndarray:
    """Fill ``meta`` (layout, quantizer) and return the storage bytes to store.

    ``encode`` stores a plain tensor (the per-channel scales and zero points)."""
    t = value.detach().cpu()
    scheme = t.qscheme()
    quantizer: dict[str, Any] = {"scheme": _SCHEMES[scheme]}
    if scheme == torch.per_tensor_affine:
        quantizer.update(scale=float(t.q_scale()), zero_point=int(t.q_zero_point()))
    else:
        quantizer.update(axis=int(t.q_per_channel_axis()),
                         scales=encode(t.q_per_channel_scales()),
                         zero_points=encode(t.q_per_channel_zero_points()))
    meta.update(stride=list(t.stride()), offset=int(t.storage_offset()), quantizer=quantizer)
    raw = torch.empty(0, dtype=torch.uint8).set_(t.untyped_storage())
    return raw.numpy()


def decode_quantized(meta: dict[str, Any], dtype: torch.dtype, shape: list[int],
                     stride: list[int] | None, data: np.ndarray,
                     decode: Callable[[Any], torch.Tensor]) -> torch.Tensor:
    """The quantized tensor :func:`encode_quantized` described, over the bytes ``data``.

    ``decode`` reads a plain tensor entry (scales, zero points). FormatError for anything a
    quantized tensor cannot be built from."""
    quantizer, offset = meta.get("quantizer"), meta.get("offset", 0)
    if stride is None or not isinstance(quantizer, dict) or type(offset) is not int or offset < 0:
        raise FormatError("a quantized torch tensor entry needs strides, an offset and its "
                          "quantizer")
    scheme = quantizer.get("scheme")
    name = next((n for n, d in QUANTIZED.items() if d == dtype), None)
    if scheme not in _SCHEME_DTYPES:
        raise FormatError(f"unknown quantization scheme {scheme!r}")
    if name is None or name not in _SCHEME_DTYPES[scheme]:
        raise FormatError(f"a quantized torch tensor of dtype {name or dtype} cannot have the "
                          f"scheme {scheme!r} (torch builds none)")
    low, high = _ZERO_POINT_RANGE[name]
    try:
        if scheme == "per_tensor_affine":
            scale, zero_point = quantizer.get("scale"), quantizer.get("zero_point")
            if not (type(scale) is float and math.isfinite(scale) and type(zero_point) is int
                    and low <= zero_point <= high):
                raise FormatError(f"bad quantizer {quantizer!r} for dtype {name}")
            empty = torch._empty_affine_quantized([0], scale=scale, zero_point=zero_point,
                                                  dtype=dtype)
        else:
            axis = quantizer.get("axis")
            scales, points = decode(quantizer.get("scales")), decode(quantizer.get("zero_points"))
            if not (type(axis) is int and 0 <= axis < len(shape) and scales.dim() == 1
                    and scales.shape == points.shape and len(scales) == shape[axis]):
                raise FormatError(f"bad per-channel quantizer (axis {axis!r}) for shape {shape}")
            _check_channels(scheme, name, scales, points)
            empty = torch._empty_per_channel_affine_quantized(
                [0], scales=scales, zero_points=points, axis=axis, dtype=dtype)
        storage = torch.from_numpy(data).untyped_storage()
        return empty.set_(storage, offset, shape, stride)
    except (RuntimeError, ValueError, TypeError, OverflowError) as exc:
        raise FormatError(f"a quantized torch tensor of shape {shape} cannot be rebuilt from "
                          f"the file: {exc}") from None


def _check_channels(scheme: str, name: str, scales: torch.Tensor,
                    points: torch.Tensor) -> None:
    """Per-channel scales are finite floats; zero points are integers in the dtype's range
    (affine) or finite floats (float qparams), as torch's quantize_per_channel makes them."""
    floats = scheme == "per_channel_affine_float_qparams"
    if scales.dtype not in _FLOATS or not bool(torch.isfinite(scales).all()):
        raise FormatError(f"a per-channel quantizer's scales must be finite floats, not "
                          f"{scales.dtype}")
    if floats:
        if points.dtype not in _FLOATS or not bool(torch.isfinite(points).all()):
            raise FormatError(f"a float-qparams quantizer's zero points must be finite floats, "
                              f"not {points.dtype}")
        return
    low, high = _ZERO_POINT_RANGE[name]
    if points.dtype not in _INTS or bool(((points < low) | (points > high)).any()):
        raise FormatError(f"a per-channel quantizer's zero points must be integers within "
                          f"[{low}, {high}] for dtype {name}")
