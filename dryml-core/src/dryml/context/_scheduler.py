"""One scheduler per calling process: grants resources, never more than exist.

Every compute call (from any thread, and nested calls forwarded by workers) asks this scheduler.
A request that can never be met fails at once; one that can be met later waits.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from dryml.context._resources import Request, Resource, ResourceProvider
from dryml.errors import ResourcesUnavailableError

__all__ = ["Grant", "Scheduler", "describe_resources"]

_EPS = 1e-9
_ids = itertools.count(1)


@attrs.frozen
class Grant:
    """Resources given to one worker: ``{framework: {resource name: amount}}``."""

    id: int
    request: Mapping[str, Request]
    shares: Mapping[str, Mapping[str, float]]
    resources: Mapping[str, Resource]

    def totals(self) -> dict[str, float]:
        """Amount of each resource over all frameworks."""
        out: dict[str, float] = {}
        for share in self.shares.values():
            for name, amount in share.items():
                out[name] = round(out.get(name, 0.0) + amount, 9)
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the worker process."""
        return {"shares": {fw: dict(s) for fw, s in self.shares.items()},
                "resources": {n: {"kind": r.kind, "index": r.index, "info": dict(r.info)}
                              for n, r in self.resources.items()}}


def describe_resources(resources: Iterable[Resource]) -> str:
    """``"2 CPUs (cpu/0..cpu/1) and no GPUs"``."""
    parts = []
    by_kind: dict[str, list[Resource]] = {"cpu": [], "gpu": []}
    for res in resources:
        by_kind.setdefault(res.kind, []).append(res)
    for kind, items in by_kind.items():
        label = kind.upper() + "s"
        if not items:
            parts.append(f"no {label}")
        elif len(items) == 1:
            parts.append(f"1 {kind.upper()} ({items[0].name})")
        else:
            parts.append(f"{len(items)} {label} ({items[0].name}..{items[-1].name})")
    return " and ".join(parts)


def _fit(request: Mapping[str, Request], free: dict[str, float],
         kinds: Mapping[str, list[str]]) -> dict[str, dict[str, float]] | None:
    """Shares per framework if ``request`` fits in ``free`` (which is updated), else None."""
    shares: dict[str, dict[str, float]] = {}
    for fw, req in request.items():
        share: dict[str, float] = {}
        for name, amount in req.specific:
            if free.get(name, 0.0) + _EPS < amount:
                return None
            free[name] = round(free[name] - amount, 9)
            share[name] = amount
        for kind, count in (("cpu", req.num_cpus), ("gpu", req.num_gpus)):
            whole = [n for n in kinds.get(kind, []) if n not in share and free[n] >= 1 - _EPS]
            if len(whole) < count:
                return None
            for name in whole[:count]:
                free[name] = 0.0
                share[name] = 1.0
        shares[fw] = share
    return shares


class Scheduler:
    """Grants requests against the resources that providers report."""

    def __init__(self, providers: Iterable[ResourceProvider] | None = None) -> None:
        self._providers = None if providers is None else list(providers)
        self._resources: dict[str, Resource] | None = None
        self._free: dict[str, float] = {}
        self._kinds: dict[str, list[str]] = {}
        self.cond = threading.Condition(threading.RLock())
        self.generation = 0

    # -- what exists ------------------------------------------------------------------------
    def resources(self) -> dict[str, Resource]:
        """Every resource, discovered from the providers on first use."""
        with self.cond:
            if self._resources is None:
                providers = self._providers
                if providers is None:
                    from dryml.context._providers import registered_providers

                    providers = registered_providers()
                found: dict[str, Resource] = {}
                for provider in providers:
                    for res in provider.resources():
                        found[res.name] = res
                self._resources = found
                self._free = {name: 1.0 for name in found}
                self._kinds = {}
                for name, res in sorted(found.items(), key=lambda kv: (kv[1].kind, kv[1].index)):
                    self._kinds.setdefault(res.kind, []).append(name)
            return self._resources

    def free(self) -> dict[str, float]:
        """Unclaimed amount of each resource."""
        with self.cond:
            self.resources()
            return dict(self._free)

    # -- granting ---------------------------------------------------------------------------
    def check_possible(self, request: Mapping[str, Request], held: Grant | None = None) -> None:
        """Raise ResourcesUnavailableError if ``request`` could never be granted.

        ``held``: a grant that stays claimed while this request waits (the caller of a nested
        call), so its resources do not count as ever becoming free.
        """
        resources = self.resources()
        for req in request.values():
            for name, _ in req.specific:
                if name not in resources:
                    raise ResourcesUnavailableError(
                        f"{name} does not exist; this machine has "
                        f"{describe_resources(resources.values())}")
        full = {name: 1.0 for name in resources}
        if held is not None:
            for name, amount in held.totals().items():
                full[name] = round(full[name] - amount, 9)
        if _fit(request, full, self._kinds) is None:
            wanted = {fw: r.as_dict() for fw, r in request.items()}
            extra = " while the calling context holds its own" if held is not None else ""
            raise ResourcesUnavailableError(
                f"the request {wanted} can never be met{extra}: this machine has "
                f"{describe_resources(resources.values())}. Ask for less.")

    def try_acquire(self, request: Mapping[str, Request]) -> Grant | None:
        """A grant if ``request`` fits in what is free now, else None (never waits)."""
        with self.cond:
            self.resources()
            free = dict(self._free)
            shares = _fit(request, free, self._kinds)
            if shares is None:
                return None
            self._free = free
            assert self._resources is not None
            names = {n for share in shares.values() for n in share}
            return Grant(next(_ids), dict(request), shares,
                         {n: self._resources[n] for n in sorted(names)})

    def fits_with(self, request: Mapping[str, Request], grants: Iterable[Grant]) -> bool:
        """Whether ``request`` would fit if ``grants`` were released."""
        with self.cond:
            free = dict(self._free)
            for grant in grants:
                for name, amount in grant.totals().items():
                    free[name] = min(1.0, round(free[name] + amount, 9))
            return _fit(request, free, self._kinds) is not None

    def release(self, grant: Grant) -> None:
        """Give a grant's resources back and wake whoever waits."""
        with self.cond:
            for name, amount in grant.totals().items():
                self._free[name] = min(1.0, round(self._free[name] + amount, 9))
            self.generation += 1
            self.cond.notify_all()

    def notify(self) -> None:
        """Wake waiters after a change they may care about (a worker became idle)."""
        with self.cond:
            self.generation += 1
            self.cond.notify_all()
