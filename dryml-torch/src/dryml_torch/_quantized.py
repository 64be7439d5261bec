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
    try:
        if scheme == "per_tensor_affine":
            scale, zero_point = quantizer.get("scale"), quantizer.get("zero_point")
            if not (type(scale) is float and math.isfinite(scale) and type(zero_point) is int):
                raise FormatError(f"bad quantizer {quantizer!r}")
            empty = torch._empty_affine_quantized([0], scale=scale, zero_point=zero_point,
                                                  dtype=dtype)
        elif scheme in ("per_channel_affine", "per_channel_affine_float_qparams"):
            axis = quantizer.get("axis")
            scales, points = decode(quantizer.get("scales")), decode(quantizer.get("zero_points"))
            if not (type(axis) is int and 0 <= axis < len(shape) and scales.dim() == 1
                    and scales.shape == points.shape and len(scales) == shape[axis]):
                raise FormatError(f"bad per-channel quantizer (axis {axis!r}) for shape {shape}")
            empty = torch._empty_per_channel_affine_quantized(
                [0], scales=scales, zero_points=points, axis=axis, dtype=dtype)
        else:
            raise FormatError(f"unknown quantization scheme {scheme!r}")
        storage = torch.from_numpy(data).untyped_storage()
        return empty.set_(storage, offset, shape, stride)
    except (RuntimeError, ValueError, TypeError, OverflowError) as exc:
        raise FormatError(f"a quantized torch tensor of shape {shape} cannot be rebuilt from "
                          f"the file: {exc}") from None
