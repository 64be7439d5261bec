"""Compute contexts: run work in warm worker processes prepared for one framework.

>>> import dryml.context
>>> @dryml.context.compute_context({'default': {}})
... def add(a, b):
...     return a + b
>>> add(1, 2)
3

A requirement is ``{framework: {resource: amount}}`` with resources ``'cpu/N'``, ``'gpu/N'``
(fractions allowed), ``'num_cpus'`` and ``'num_gpus'`` (whole, or a fraction in (0, 1): a share
of any one GPU); ``'default'`` is the framework-free context. One scheduler in the calling
process grants resources to every call and never grants more than exists. See docs/context.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dryml.errors import (
    ContextIncompatibilityError,
    NoContextError,
    ResourcesUnavailableError,
    WorkerCrashedError,
)

if TYPE_CHECKING:
    from dryml.context._decorator import compute, compute_context
    from dryml.context._gpu import FakeGpuProvider, NvmlProvider
    from dryml.context._lifecycle import enter_compute, in_compute_mode, leave_compute
    from dryml.context._pool import WorkerInfo
    from dryml.context._resources import (
        CpuProvider,
        FakeCpuProvider,
        Resource,
        ResourceProvider,
    )
    from dryml.context._runtime import configure, resources, shutdown_workers, workers
    from dryml.context._state import ComputeContext, context_check, current_context

__all__ = [
    "ComputeContext",
    "ContextIncompatibilityError",
    "CpuProvider",
    "FakeCpuProvider",
    "FakeGpuProvider",
    "NativeThreadLimits",
    "NoContextError",
    "NvmlProvider",
    "Resource",
    "ResourceProvider",
    "ResourcesUnavailableError",
    "WorkerCrashedError",
    "WorkerInfo",
    "compute",
    "compute_context",
    "configure",
    "context_check",
    "current_context",
    "enter_compute",
    "in_compute_mode",
    "leave_compute",
    "resources",
    "shutdown_workers",
    "workers",
]

# Imported on first use (PEP 562): a worker process imports this package for its own modules
# (``python -m dryml.context._worker``) and never needs the caller's side (the decorator, the
# scheduler, the worker handles): importing those cost each new worker ~35 ms of its start.
_LAZY = {
    "compute": "_decorator", "compute_context": "_decorator",
    "FakeGpuProvider": "_gpu", "NvmlProvider": "_gpu",
    "enter_compute": "_lifecycle", "in_compute_mode": "_lifecycle", "leave_compute": "_lifecycle",
    "WorkerInfo": "_pool", "NativeThreadLimits": "_threads",
    "CpuProvider": "_resources", "FakeCpuProvider": "_resources", "Resource": "_resources",
    "ResourceProvider": "_resources",
    "configure": "_runtime", "resources": "_runtime", "shutdown_workers": "_runtime",
    "workers": "_runtime",
    "ComputeContext": "_state", "context_check": "_state", "current_context": "_state",
}


if not TYPE_CHECKING:  # hidden from type checkers, which would take any name as valid

    def __getattr__(name: str) -> Any:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module 'dryml.context' has no attribute {name!r}")
        value = getattr(importlib.import_module(f"dryml.context.{module}"), name)
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
