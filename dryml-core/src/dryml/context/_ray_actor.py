"""The Ray actor that serves dryml calls: one warm worker prepared for one context.

It runs in a Ray worker process. Its constructor prepares each framework through the
``dryml_contexts`` plugin (environment first, then ``prepare``) before anything imports the
framework, sets the compute context, and routes nested calls that this context cannot run to
the Ray executor (a new actor, owned by this one). Calls arrive as the same messages the local
pool sends (Objects inside as ``.dry`` bytes) and run through :func:`run_call`.
"""

from __future__ import annotations

import math
import os
import sys
import traceback
from typing import Any

from dryml.context._threads import THREAD_VARS

__all__ = ["DrymlActor", "gpu_facts"]


def _forward_nested(msg: dict[str, Any], reqs: Any, options: dict[str, Any]) -> dict[str, Any]:
    from dryml.context._calls import error_reply
    from dryml.context._executor import get_executor

    try:
        reply: dict[str, Any] = get_executor("ray").execute(
            reqs, msg, call_timeout=options.get("call_timeout"),
            resource_timeout=options.get("resource_timeout"))
        return reply
    except Exception as exc:  # noqa: BLE001 - the nested caller gets it as its own error
        return error_reply(exc)


def gpu_facts(resources: dict[str, Any]) -> dict[str, Any]:
    """``resources`` with each GPU's NVML facts (``memory_total``, ``uuid``, ``model``) filled in.

    The context's i-th GPU (in index order, as :meth:`ComputeContext.local_gpus` counts them) is
    the i-th GPU Ray made visible to this actor (``CUDA_VISIBLE_DEVICES``). Without those facts
    a fractional TensorFlow GPU got memory growth instead of its memory limit.
    Where NVML reports no GPU (no driver, no ``nvidia-ml-py``) ``resources`` are unchanged.
    """
    names = sorted((n for n, r in resources.items() if r["kind"] == "gpu"),
                   key=lambda n: int(resources[n]["index"]))
    if not names:
        return resources
    from dryml.context._gpu import NvmlProvider

    out = dict(resources)
    for name, gpu in zip(names, NvmlProvider().resources(), strict=False):
        out[name] = {**resources[name], "info": {**resources[name]["info"], **gpu.info}}
    return out


class DrymlActor:
    """A warm worker for one context (made a Ray actor class by the executor)."""

    def __init__(self, setup: dict[str, Any]) -> None:
        self.failure: tuple[bool, str] | None = None
        try:
            self._prepare(setup)
        except BaseException as exc:  # noqa: BLE001 - reported by ready(), the actor is dropped
            self.failure = (isinstance(exc, ImportError), traceback.format_exc())

    def _prepare(self, setup: dict[str, Any]) -> None:
        from dryml.context import _nested
        from dryml.context._state import BeforeCall, ComputeContext, set_current_context
        from dryml.context._stderr import filter_own_stderr, noise_pattern
        from dryml.records import load_ref

        os.environ.update(setup["env"])
        threads = str(max(1, math.ceil(setup["cpus"] - 1e-9)))
        for var in THREAD_VARS:
            os.environ[var] = threads
        sys.path[:] = [*setup["sys_path"], *(p for p in sys.path if p not in setup["sys_path"])]
        ctx = ComputeContext(setup["shares"], gpu_facts(setup["resources"]))
        plugins = [load_ref(setup["plugins"][fw]) for fw in ctx.frameworks
                   if fw in setup["plugins"]]
        # Ray copies this process's stderr to the driver: the frameworks' start-up noise stays
        # out of it, as the local pool's caller drops it (DRYML_FRAMEWORK_LOGS=1 keeps it)
        self.stderr = filter_own_stderr(noise_pattern(plugins))
        for plugin in plugins:  # before any framework import, as a local worker's environment
            os.environ.update(plugin.environment(ctx))
        for plugin in plugins:
            plugin.prepare(ctx)
        self.before_call = BeforeCall(plugins, ctx)
        set_current_context(ctx)
        _nested.set_forwarder(_forward_nested)

    def ready(self) -> dict[str, Any]:
        """Where this actor runs (pid, node, GPU ids), or why it could not be prepared."""
        import ray

        if self.failure is not None:
            return {"failed": self.failure}
        return {"pid": os.getpid(), "node": ray.get_runtime_context().get_node_id(),
                "gpus": [str(g) for g in ray.get_gpu_ids()]}

    def call(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Run one call message; the reply never raises (as in a local worker)."""
        from dryml.context._calls import run_call

        if not os.path.isdir(msg["cwd"]):  # another machine: the driver's folder is not here
            msg = {**msg, "cwd": os.getcwd()}
        if msg.get("buffers") or any(not isinstance(b, bytes) for b in msg["blobs"]):
            msg = _resolved(msg)
        self.before_call.run()  # each call with the limits granted, as in a local worker
        return run_call(msg)


def _resolved(msg: dict[str, Any]) -> dict[str, Any]:
    """``msg`` with the ObjectRefs the driver sent (large data, see ``RayExecutor._by_ref``)
    read from this node's object store: buffers as writable copies, blobs as bytes."""
    import ray

    refs = [b for b in [*msg.get("buffers", []), *msg["blobs"]] if isinstance(b, ray.ObjectRef)]
    got = dict(zip([id(r) for r in refs], ray.get(refs), strict=True))
    buffers = [bytearray(memoryview(got[id(b)])) for b in msg.get("buffers", [])]
    blobs = [got[id(b)] if isinstance(b, ray.ObjectRef) else b for b in msg["blobs"]]
    return {**msg, "buffers": buffers, "blobs": blobs}
