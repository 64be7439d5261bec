"""GPU resources from NVML (package ``nvidia-ml-py``, imported as ``pynvml``), and a fake.

No ``pynvml``, no driver or no GPU all mean zero GPUs, never an error: NVML is only touched when
a scheduler first asks what exists, never at import.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from dryml.context._resources import Resource

__all__ = ["FakeGpuProvider", "NvmlProvider"]


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
        except Exception:  # noqa: BLE001 - NVMLError or a missing libnvidia-ml: no GPUs
            return []
        try:
            found = []
            for i in range(pynvml.nvmlDeviceGetCount()):
                handle = pynvml.nvmlDeviceGetHandleByIndex(i)
                found.append({
                    "nvml_index": i,
                    "uuid": _text(pynvml.nvmlDeviceGetUUID(handle)),
                    "model": _text(pynvml.nvmlDeviceGetName(handle)),
                    "memory_total": int(pynvml.nvmlDeviceGetMemoryInfo(handle).total),
                })
        except Exception:  # noqa: BLE001
            return []
        finally:
            with contextlib.suppress(Exception):
                pynvml.nvmlShutdown()
        return [Resource("gpu", i, info) for i, info in enumerate(_visible(found))]


def _visible(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The GPUs ``CUDA_VISIBLE_DEVICES`` lets this process see, in its order."""
    setting = os.environ.get("CUDA_VISIBLE_DEVICES")
    if setting is None:
        return found
    out = []
    for item in (part.strip() for part in setting.split(",")):
        if not item:
            break
        match = [g for g in found if (item.isdigit() and g["nvml_index"] == int(item))
                 or (not item.isdigit() and g["uuid"].startswith(item))]
        if not match:
            break  # CUDA stops at the first invalid entry too
        out.append(match[0])
    return out


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
