"""The compute context this process runs in (set in workers, absent in the caller)."""

from __future__ import annotations

import math
import threading
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from dryml.context._resources import Request, Requirement, parse_request
from dryml.errors import ContextIncompatibilityError, NoContextError

__all__ = ["BeforeCall", "ComputeContext", "context_check", "current_context",
           "set_current_context"]


@attrs.frozen
class ComputeContext:
    """Where a worker runs: its frameworks and the resources granted to each.

    ``shares`` is ``{framework: {resource name: amount}}``; ``resources`` maps each granted
    resource name to facts about it (``kind``, ``index``, ``info``).
    """

    shares: Mapping[str, Mapping[str, float]]
    resources: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)

    @classmethod
    def from_grant(cls, data: Mapping[str, Any]) -> ComputeContext:
        """From :meth:`Grant.to_dict` data."""
        return cls(data["shares"], data["resources"])

    def cpu_threads(self, framework: str | None = None) -> int:
        """How many threads the CPUs granted (to ``framework``, or to all) are worth (>= 1)."""
        names = self.shares.get(framework, {}) if framework else {
            n: a for share in self.shares.values() for n, a in share.items()}
        total = sum(a for n, a in dict(names).items() if n.startswith("cpu/"))
        return max(1, math.ceil(total - 1e-9))

    def local_gpus(self, framework: str) -> list[dict[str, Any]]:
        """The GPUs granted to ``framework`` as the worker sees them.

        Each is ``{"ordinal": CUDA ordinal in the worker, "fraction": share, "memory_total":
        bytes or None, "uuid": ..., "fake": bool}``; ordinals count every GPU the worker was
        granted (all its frameworks), in index order, as ``CUDA_VISIBLE_DEVICES`` lists them.
        """
        every = sorted({n for share in self.shares.values() for n in share
                        if n.startswith("gpu/")}, key=lambda n: int(n.split("/")[1]))
        out = []
        for name, fraction in sorted(self.shares.get(framework, {}).items()):
            if not name.startswith("gpu/"):
                continue
            info = dict(self.resources.get(name, {}).get("info", {}))
            out.append({"ordinal": every.index(name), "fraction": fraction,
                        "memory_total": info.get("memory_total"), "uuid": info.get("uuid"),
                        "fake": bool(info.get("fake"))})
        return sorted(out, key=lambda g: g["ordinal"])

    @property
    def frameworks(self) -> tuple[str, ...]:
        """The frameworks this context was prepared for (``'default'``: none)."""
        return tuple(self.shares)

    def amount(self, framework: str, kind: str) -> float:
        """Total amount of ``kind`` (``'cpu'``/``'gpu'``) granted to ``framework``."""
        share = self.shares.get(framework, {})
        return sum(a for n, a in share.items() if n.startswith(kind + "/"))

    def devices(self, framework: str, kind: str) -> list[tuple[int, float]]:
        """``(index, fraction)`` of each ``kind`` device granted to ``framework``, in order."""
        share = self.shares.get(framework, {})
        return sorted((int(n.split("/")[1]), a) for n, a in share.items()
                      if n.startswith(kind + "/"))

    def satisfies(self, reqs: Requirement | None) -> bool:
        """Whether this context meets ``reqs`` (``'default'`` is met by any context)."""
        if not reqs:
            return True
        return all(self._meets(fw, parse_request(str(fw), spec or {}))
                   for fw, spec in reqs.items())

    def _meets(self, framework: str, req: Request) -> bool:
        share: Mapping[str, float]
        if framework == "default":
            merged: dict[str, float] = {}
            for part in self.shares.values():
                for name, amount in part.items():
                    merged[name] = merged.get(name, 0.0) + amount
            share = merged
        elif framework in self.shares:
            share = self.shares[framework]
        else:
            return False
        if any(share.get(name, 0.0) + 1e-9 < amount for name, amount in req.specific):
            return False
        whole = {kind: sum(1 for n, a in share.items() if n.startswith(kind + "/") and a >= 1)
                 for kind in ("cpu", "gpu")}
        if req.gpu_share and not any(n.startswith("gpu/") and a + 1e-9 >= req.gpu_share
                                     for n, a in share.items()):
            return False
        return whole["cpu"] >= req.num_cpus and whole["gpu"] >= req.num_gpus


_current: ComputeContext | None = None
_lock = threading.Lock()


def current_context() -> ComputeContext | None:
    """The context this process runs in, or None outside any (in the calling process)."""
    return _current


def set_current_context(ctx: ComputeContext | None) -> None:
    """Set by the worker once it is prepared."""
    global _current
    with _lock:
        _current = ctx


def context_check(reqs: Requirement) -> None:
    """Raise unless the current compute context satisfies ``reqs``.

    ``NoContextError`` outside any context; ``ContextIncompatibilityError`` when the context
    lacks a framework or a resource ``reqs`` names.
    """
    ctx = _current
    if ctx is None:
        raise NoContextError(
            f"no compute context is active, so requirements {reqs!r} cannot be met here; run "
            "this code through a function decorated with dryml.context.compute_context")
    if not ctx.satisfies(reqs):
        raise ContextIncompatibilityError(f"Context doesn't satisfy requirements {reqs!r}")


class BeforeCall:
    """What a worker (local, or a Ray actor) runs before each call, once its plugins prepared
    it: the thread variables (``OMP_NUM_THREADS``, ...) are set back to their values now, and
    the context plugins' optional ``before_call(ctx)`` hooks run (dryml-torch and
    dryml-sklearn set the granted thread counts again there), should the last call have
    changed them. A hook that raises is reported once, as a ``RuntimeWarning`` in the worker's
    stderr (which reaches the caller), and not run again in that worker; the call itself goes
    on."""

    def __init__(self, plugins: Iterable[Any], ctx: ComputeContext) -> None:
        from dryml.context._threads import ThreadVariables

        self.ctx = ctx
        self.hooks = [p for p in plugins if callable(getattr(p, "before_call", None))]
        self.variables = ThreadVariables()

    def run(self) -> None:
        """Set the thread variables back, then run every hook that has not failed yet."""
        self.variables.restore()
        for plugin in list(self.hooks):
            try:
                plugin.before_call(self.ctx)
            except Exception as exc:  # noqa: BLE001 - reported, then the call runs anyway
                self.hooks.remove(plugin)
                with warnings.catch_warnings():  # shown, never raised (-W error): the call runs
                    warnings.simplefilter("always", RuntimeWarning)
                    warnings.warn(
                        f"{type(plugin).__qualname__}.before_call failed ({type(exc).__name__}"
                        f": {exc}); it is not run again in this worker, so a thread count or "
                        "other limit that a call changes stays changed for the later calls",
                        RuntimeWarning, stacklevel=1)
