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

from dryml.context._decorator import compute, compute_context
from dryml.context._gpu import FakeGpuProvider, NvmlProvider
from dryml.context._lifecycle import enter_compute, in_compute_mode, leave_compute
from dryml.context._pool import WorkerInfo
from dryml.context._resources import CpuProvider, Resource, ResourceProvider
from dryml.context._runtime import configure, resources, shutdown_workers, workers
from dryml.context._state import ComputeContext, context_check, current_context
from dryml.errors import (
    ContextIncompatibilityError,
    NoContextError,
    ResourcesUnavailableError,
    WorkerCrashedError,
)

__all__ = [
    "ComputeContext",
    "ContextIncompatibilityError",
    "CpuProvider",
    "FakeGpuProvider",
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
