"""GPU resources from NVML (package ``nvidia-ml-py``, imported as ``pynvml``), and a fake.

No ``pynvml``, no NVML library or no driver loaded all mean zero GPUs, silently: NVML is only
touched when a scheduler first asks what exists, never at import. Any other NVML error is a
warning (:class:`~dryml.errors.DrymlWarning`) naming it: one GPU that cannot be queried is left
out (the others stay), and ``nvmlInit`` failing otherwise (a driver/library mismatch) means no
GPUs. ``CUDA_VISIBLE_DEVICES`` is read as CUDA reads it, with a warning where CUDA and dryml
would disagree or where an entry names no GPU.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from dryml.context._resources import Resource
from dryml.errors import warn

__all__ = ["FakeGpuProvider", "NvmlProvider"]

#: NVML error codes that mean "no NVIDIA GPU here" rather than a fault: the library is missing
#: (NVML_ERROR_LIBRARY_NOT_FOUND) or no driver is loaded (NVML_ERROR_DRIVER_NOT_LOADED).
_NO_DRIVER = {12, 9}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class NvmlProvider:
    """The GPUs NVML reports, restricted to ``CUDA_VISIBLE_DEVICES`` when the caller set it."""

    def resources(self) -> list[Resource]:
        """``gpu/i`` for each visible GPU, ``i`` being its CUDA ordinal in this process."""
        try:
            import pynvml
        except ImportError:
            return []
        try:
            pynvml.nvmlInit()
        except Exception as exc:  # noqa: BLE001 - NVMLError, or a stand-in's own error
            if getattr(exc, "value", None) not in _NO_DRIVER:
                warn(f"NVML could not start ({type(exc).__name__}: {exc}), so dryml sees no "
                     "GPU on this machine; check the NVIDIA driver (nvidia-smi shows the same "
                     "error; after a driver upgrade, reboot)")
            return []
        try:
            found = _query(pynvml)
        finally:
            with contextlib.suppress(Exception):
                pynvml.nvmlShutdown()
        return [Resource("gpu", i, info) for i, info in enumerate(_visible(found))]


def _query(pynvml: Any) -> list[dict[str, Any]]:
    """Facts of every GPU NVML can answer for; one that fails is left out with a warning."""
    try:
        count = int(pynvml.nvmlDeviceGetCount())
    except Exception as exc:  # noqa: BLE001
        warn(f"NVML could not count the GPUs ({type(exc).__name__}: {exc}), so dryml sees no "
             "GPU on this machine; check the NVIDIA driver (nvidia-smi)")
        return []
    found = []
    for i in range(count):
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            found.append({
                "nvml_index": i,
                "uuid": _text(pynvml.nvmlDeviceGetUUID(handle)),
                "model": _text(pynvml.nvmlDeviceGetName(handle)),
                "memory_total": int(pynvml.nvmlDeviceGetMemoryInfo(handle).total),
            })
        except Exception as exc:  # noqa: BLE001 - that GPU only: the others still work
            warn(f"NVML cannot query GPU {i} (NVML index; {type(exc).__name__}: {exc}), so "
                 "dryml leaves it out and uses the others; see nvidia-smi for that GPU")
    return found


def _visible(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The GPUs ``CUDA_VISIBLE_DEVICES`` lets this process see, in its order.

    As CUDA reads it: the list ends at the first empty or unknown entry (a warning names an
    unknown one), and a GPU named twice leaves no GPU visible at all (warned too).
    """
    setting = os.environ.get("CUDA_VISIBLE_DEVICES")
    if setting is None:
        return found
    out: list[dict[str, Any]] = []
    for item in (part.strip() for part in setting.split(",")):
        if not item:
            break
        match = [g for g in found if (item.isdigit() and g["nvml_index"] == int(item))
                 or (not item.isdigit() and g["uuid"].startswith(item))]
        if not match:  # CUDA stops at the first invalid entry too
            extra = (" (a MIG instance: dryml accounts whole GPUs only)"
                     if item.startswith("MIG-") else "")
            warn(f"CUDA_VISIBLE_DEVICES={setting!r}: {item!r} names no GPU NVML reports"
                 f"{extra}, so CUDA and dryml see only the GPUs listed before it "
                 f"({len(out)}); NVML reports {_listing(found)}")
            break
        if match[0] in out:
            warn(f"CUDA_VISIBLE_DEVICES={setting!r} names GPU {match[0]['uuid']} twice, so "
                 "CUDA shows no GPU at all and dryml uses none; name each GPU once")
            return []
        out.append(match[0])
    if any(part.strip().isdigit() for part in setting.split(",")):
        _check_order(setting, found)
    return out


def _check_order(setting: str, found: list[dict[str, Any]]) -> None:
    """Warn when numbers in ``CUDA_VISIBLE_DEVICES`` may name other GPUs for CUDA than for NVML.

    NVML numbers GPUs in PCI bus order; CUDA numbers them fastest first unless
    ``CUDA_DEVICE_ORDER=PCI_BUS_ID``. The orders can differ only between different models.
    """
    if os.environ.get("CUDA_DEVICE_ORDER", "").strip() == "PCI_BUS_ID":
        return
    models = sorted({str(g.get("model")) for g in found})
    if len(models) > 1:
        warn(f"CUDA_VISIBLE_DEVICES={setting!r} names GPUs by number: CUDA counts them fastest "
             "first but dryml (NVML) in PCI bus order, and this machine has different GPUs "
             f"({', '.join(models)}), so a number may name another GPU for CUDA than for "
             "dryml; set CUDA_DEVICE_ORDER=PCI_BUS_ID (or name GPUs by uuid)")


def _listing(found: list[dict[str, Any]]) -> str:
    """``"2 GPUs (0: GPU-..., 1: GPU-...)"`` for a warning."""
    if not found:
        return "no GPU"
    return (f"{len(found)} GPU{'s' if len(found) > 1 else ''} ("
            + ", ".join(f"{g['nvml_index']}: {g['uuid']}" for g in found) + ")")


class FakeGpuProvider:
    """``count`` pretend GPUs of ``memory_total`` bytes each, for tests on machines without one.

    Workers granted a fake GPU see ``CUDA_VISIBLE_DEVICES`` naming its fake uuid (so CUDA finds
    nothing), and the context they run in reports the grant as for a real GPU.
    """

    def __init__(self, count: int = 4, memory_total: int = 16 << 30) -> None:
        self.count = count
        self.memory_total = memory_total

    def resources(self) -> list[Resource]:
        """``gpu/0`` ... ``gpu/{count-1}``."""
        return [Resource("gpu", i, {"uuid": f"GPU-fake-{i:04d}", "model": "Fake GPU",
                                    "memory_total": self.memory_total, "fake": True})
                for i in range(self.count)]


NVML = NvmlProvider()
