"""Prepares a worker process for PyTorch (imports torch only in :meth:`prepare`).

The caller has already set ``CUDA_VISIBLE_DEVICES`` to the GPUs granted (none: empty) and the
BLAS/OpenMP thread variables to the CPUs granted. Here: torch's own thread pools and the native
(BLAS, OpenMP) pools, kept at the CPUs granted from one call to the next, and for a fractional
GPU ``torch.cuda.set_per_process_memory_fraction`` so the caching allocator stays under its
share.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dryml.context import ComputeContext

__all__ = ["CONTEXT", "TorchContext"]


class TorchContext:
    """The ``torch`` compute context."""

    _threads = 0

    def environment(self, ctx: ComputeContext) -> dict[str, str]:
        """Variables the worker starts with (read by torch when it loads)."""
        # Fewer, larger cached blocks make the memory cap below a tighter bound.
        return {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"} if ctx.local_gpus(
            "torch") else {}

    def prepare(self, ctx: ComputeContext) -> None:
        """Import torch, set its threads and the native pools' and cap GPU memory at the
        granted fractions."""
        import torch

        from dryml.context import NativeThreadLimits

        threads = ctx.cpu_threads("torch")
        torch.set_num_threads(threads)
        # Only allowed once, before any parallel work: a second prepare must not fail.
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(max(1, min(threads, 4)))
        type(self)._threads = threads
        NativeThreadLimits.shared(threads)  # torch's libraries are loaded now
        gpus = ctx.local_gpus("torch")
        if gpus and torch.cuda.is_available():
            for gpu in gpus:
                if gpu["fraction"] < 1:
                    torch.cuda.set_per_process_memory_fraction(gpu["fraction"], gpu["ordinal"])

    def before_call(self, ctx: ComputeContext) -> None:
        """The granted threads again (torch's and the native pools'), should the last call
        have changed them (``torch.set_num_threads``, ``threadpoolctl.threadpool_limits``)."""
        import torch

        from dryml.context import NativeThreadLimits

        NativeThreadLimits.restore_shared()
        if self._threads and torch.get_num_threads() != self._threads:
            torch.set_num_threads(self._threads)


CONTEXT = TorchContext()
