"""The calling process's one scheduler and one pool, and running a call through them."""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Iterable
from typing import Any

from dryml.context._handle import WorkerHandle
from dryml.context._pool import Pool, WorkerInfo
from dryml.context._resources import Requirement, ResourceProvider, normalize_requirement
from dryml.context._scheduler import Grant, Scheduler

__all__ = ["configure", "execute", "get_pool", "resources", "shutdown_workers", "workers"]

_pool: Pool | None = None
_lock = threading.Lock()
_settings: dict[str, Any] = {"providers": None, "max_workers": None, "idle_timeout": 300.0}


def _after_fork_in_child() -> None:
    """A forked child starts with no pool: the parent's workers are the parent's."""
    global _pool, _lock
    pool, _pool, _lock = _pool, None, threading.Lock()
    if pool is not None:
        atexit.unregister(pool.shutdown)
        for worker in list(pool.workers):
            worker.forget()
        pool.workers = []


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def get_pool() -> Pool:
    """The process-wide pool (created on first use)."""
    global _pool
    with _lock:
        if _pool is None:
            _pool = Pool(Scheduler(_settings["providers"]), _settings["max_workers"],
                         _settings["idle_timeout"])
        return _pool


def configure(*, providers: Iterable[ResourceProvider] | None = None,
              max_workers: int | None = None, idle_timeout: float = 300.0) -> None:
    """Stop every worker and start over with new settings.

    ``providers``: resource providers to use instead of the plugins' (tests pass
    ``[CpuProvider(), FakeGpuProvider(4)]``); ``max_workers``: the cap on live workers (default:
    the number of resources, between 2 and 8); ``idle_timeout``: seconds an idle worker lives.
    """
    shutdown_workers()
    with _lock:
        _settings.update(providers=None if providers is None else list(providers),
                         max_workers=max_workers, idle_timeout=idle_timeout)


def shutdown_workers() -> None:
    """Stop every worker of this process (the next call starts fresh ones)."""
    global _pool
    with _lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown()


def workers() -> list[WorkerInfo]:
    """The live workers of this process: pid, resources, busy or idle."""
    return [] if _pool is None else _pool.info()


def resources() -> dict[str, float]:
    """Every resource the scheduler knows, with the amount not granted to any worker."""
    return get_pool().scheduler.free()


def execute(reqs: Requirement | None, msg: dict[str, Any], *, call_timeout: float | None,
            resource_timeout: float | None, held: Grant | None = None) -> dict[str, Any]:
    """Run a call message in a worker that meets ``reqs``; returns the worker's reply."""
    pool = get_pool()
    request = normalize_requirement(reqs)
    worker = pool.checkout(request, resource_timeout, held)
    try:
        return worker.call(msg, call_timeout, _on_nested)
    finally:
        pool.checkin(worker)


def _on_nested(worker: WorkerHandle, payload: tuple[Any, Any, Any]) -> dict[str, Any]:
    from dryml.context._calls import error_reply

    msg, reqs, options = payload
    try:
        return execute(reqs, msg, call_timeout=options.get("call_timeout"),
                       resource_timeout=options.get("resource_timeout"), held=worker.grant)
    except Exception as exc:  # noqa: BLE001 - the nested caller gets it as its own error
        return error_reply(exc)
