"""One scheduler per calling process: grants resources, never more than exist.

Every compute call (from any thread, and nested calls forwarded by workers) asks this scheduler.
A request that can never be met fails at once; one that can be met later waits. GPU shares and
the CPUs a requirement names are also checked against, and recorded in, the machine-wide ledger
(:mod:`dryml.context._ledger`), so independent processes never grant more than 1.0 of a GPU or
a CPU between them. The one CPU a requirement that names none gets by default is accounted here
only.

Amounts are accounted in whole millionths of a device (:func:`share_units`), with no tolerance:
what is released adds back exactly what was granted, so once nothing is held every device is
whole again, however many shares came and went.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from dryml.context._ledger import Holding, Ledger, ledger_key, open_ledger
from dryml.context._resources import SHARE_UNIT, Request, Resource, ResourceProvider, share_units
from dryml.errors import ResourcesUnavailableError

__all__ = ["Grant", "Scheduler", "describe_resources"]

_ids = itertools.count(1)
#: How often a request waiting on another process's grant looks at the ledger again (s).
LEDGER_POLL = 0.25


@attrs.frozen
class Grant:
    """Resources given to one worker: ``{framework: {resource name: amount}}``."""

    id: int
    request: Mapping[str, Request]
    shares: Mapping[str, Mapping[str, float]]
    resources: Mapping[str, Resource]

    def totals(self) -> dict[str, float]:
        """Amount of each resource over all frameworks (as accounted: whole millionths)."""
        return {name: units / SHARE_UNIT for name, units in self.units().items()}

    def units(self) -> dict[str, int]:
        """Millionths of each resource over all frameworks: what the scheduler accounts."""
        out: dict[str, int] = {}
        for share in self.shares.values():
            for name, amount in share.items():
                out[name] = out.get(name, 0) + share_units(amount)
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the worker process."""
        return {"shares": {fw: dict(s) for fw, s in self.shares.items()},
                "resources": {n: {"kind": r.kind, "index": r.index, "info": dict(r.info)}
                              for n, r in self.resources.items()}}


def _kind(name: str) -> str:
    """``"cpu"`` of ``"cpu/3"``."""
    return name.partition("/")[0]


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


def _fit(request: Mapping[str, Request], free: dict[str, int],
         kinds: Mapping[str, list[str]]) -> dict[str, dict[str, float]] | None:
    """Shares per framework if ``request`` fits in ``free`` (millionths of each device, updated),
    else None.

    Every framework's named devices are placed first, then whole devices, then GPU shares,
    so that one framework's count never takes the device another one names (otherwise
    ``{"tf": {"num_gpus": 1}, "torch": {"gpu/0": 0.5}}`` on two GPUs would be refused as
    impossible because tf, first by name, would take gpu/0)."""
    shares: dict[str, dict[str, float]] = {fw: {} for fw in request}
    for fw, req in request.items():
        for name, amount in req.specific:
            units = share_units(amount)
            if free.get(name, 0) < units:
                return None
            free[name] -= units
            shares[fw][name] = amount
    for fw, req in request.items():
        share = shares[fw]
        for kind, count in (("cpu", req.num_cpus), ("gpu", req.num_gpus)):
            whole = [n for n in kinds.get(kind, []) if n not in share and free[n] == SHARE_UNIT]
            if len(whole) < count:
                return None
            for name in whole[:count]:
                free[name] = 0
                share[name] = 1.0
    for fw, req in request.items():
        share = shares[fw]
        if req.gpu_share:
            # best fit: the GPU with the least room that still holds the share, so that
            # fractional calls fill one GPU before they start on the next
            units = share_units(req.gpu_share)
            room = [n for n in kinds.get("gpu", []) if n not in share and free[n] >= units]
            if not room:
                return None
            name = min(room, key=lambda n: (free[n], n))
            free[name] -= units
            share[name] = req.gpu_share
    return shares


class Scheduler:
    """Grants requests against the resources that providers report."""

    def __init__(self, providers: Iterable[ResourceProvider] | None = None) -> None:
        self._providers = None if providers is None else list(providers)
        self._resources: dict[str, Resource] | None = None
        self._free: dict[str, int] = {}  # millionths of each device not granted
        self._kinds: dict[str, list[str]] = {}
        self.cond = threading.Condition(threading.RLock())
        self.generation = 0
        self._ledger: Ledger | None = None
        self._keys: dict[str, str] = {}  # resource name -> ledger key, for ledger resources
        self._blockers: list[Holding] = []
        self._others: dict[str, int] = {}  # millionths other processes held at the last look
        self._recorded: set[int] = set()  # ids of grants this process wrote to the ledger
        self._unreleased: set[int] = set()  # released here, their ledger rows not yet deleted
        self._blocked_at: float | None = None
        self._poller: threading.Thread | None = None

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
                self._free = {name: SHARE_UNIT for name in found}
                self._ledger = open_ledger()
                self._keys = {}
                if self._ledger is not None:
                    for name, res in found.items():
                        key = ledger_key(res)
                        if key is not None:
                            self._keys[name] = key
                self._kinds = {}
                for name, res in sorted(found.items(), key=lambda kv: (kv[1].kind, kv[1].index)):
                    self._kinds.setdefault(res.kind, []).append(name)
            return self._resources

    def free(self) -> dict[str, float]:
        """Unclaimed amount of each resource."""
        with self.cond:
            self.resources()
            return {name: units / SHARE_UNIT for name, units in self._free.items()}

    # -- granting ---------------------------------------------------------------------------
    def check_possible(self, request: Mapping[str, Request],
                       held: Sequence[Grant] = ()) -> None:
        """Raise ResourcesUnavailableError if ``request`` could never be granted.

        ``held``: grants that stay claimed while this request waits (the callers of a nested
        call, every level up), so their resources do not count as ever becoming free.
        """
        resources = self.resources()
        for req in request.values():
            for name, _ in req.specific:
                if name not in resources:
                    raise ResourcesUnavailableError(
                        f"{name} does not exist; this machine has "
                        f"{describe_resources(resources.values())}")
        full = {name: SHARE_UNIT for name in resources}
        for grant in held:
            for name, units in grant.units().items():
                full[name] -= units
        if _fit(request, full, self._kinds) is None:
            wanted = {fw: r.as_dict() for fw, r in request.items()}
            extra = " while the calling contexts hold their own" if held else ""
            raise ResourcesUnavailableError(
                f"the request {wanted} can never be met{extra}: this machine has "
                f"{describe_resources(resources.values())}. Ask for less.")

    def try_acquire(self, request: Mapping[str, Request]) -> Grant | None:
        """A grant if ``request`` fits in what is free now, else None (never waits).

        A request touching ledger resources (GPUs, CPUs it names) is checked against what other
        processes hold and recorded there in one transaction; when it does not fit only
        because of them,
        :meth:`blockers` says who holds what and waiters are woken every :data:`LEDGER_POLL`
        seconds to look again.
        """
        with self.cond:
            self.resources()
            assert self._resources is not None
            kinds = self._ledger_kinds(request)
            if self._ledger is None or not kinds:
                free = dict(self._free)
                shares = _fit(request, free, self._kinds)
                if shares is None:
                    return None
                self._free = free
                return self._grant(request, shares)
            stale = list(self._unreleased)
            try:
                return self._acquire_recorded(request, kinds, stale)
            except BaseException:
                self._unreleased.update(stale)  # rolled back: their rows are still there
                raise

    def _acquire_recorded(self, request: Mapping[str, Request], kinds: set[str],
                          stale: list[int]) -> Grant | None:
        """try_acquire through the ledger (lock held), deleting the rows of ``stale``."""
        assert self._ledger is not None
        with self._ledger.transaction() as tx:
            for grant_id in stale:
                tx.release(grant_id)
            self._unreleased.difference_update(stale)
            self._others = tx.used_by_others()
            free = self._minus_others(dict(self._free), kinds)
            shares = _fit(request, free, self._kinds)
            if shares is None:
                if _fit(request, dict(self._free), self._kinds) is not None:
                    self._blocked(tx.holdings(), request, kinds)
                else:
                    self._blockers = []
                return None
            self._blockers = []
            grant = self._grant(request, shares)
            tx.record(grant.id, {self._keys[n]: (n, a) for n, a in grant.totals().items()
                                 if n in self._keys and _kind(n) in kinds})
            self._recorded.add(grant.id)
        for name, units in grant.units().items():
            self._free[name] -= units
        return grant

    def _grant(self, request: Mapping[str, Request],
               shares: dict[str, dict[str, float]]) -> Grant:
        assert self._resources is not None
        names = {n for share in shares.values() for n in share}
        return Grant(next(_ids), dict(request), shares,
                     {n: self._resources[n] for n in sorted(names)})

    def _ledger_kinds(self, request: Mapping[str, Request]) -> set[str]:
        """The kinds of resources (``gpu``, ``cpu``) ``request`` accounts machine-wide: those
        it names and the ledger knows; never the CPU a requirement gets by default."""
        if not self._keys:
            return set()
        asked: set[str] = set()
        for req in request.values():
            if req.num_gpus or req.gpu_share:
                asked.add("gpu")
            if req.num_cpus and not req.default_cpu:
                asked.add("cpu")
            asked.update(_kind(name) for name, _ in req.specific if name in self._keys)
        return asked & {_kind(name) for name in self._keys}

    # -- other processes ----------------------------------------------------------------------
    def _blocked(self, holdings: list[Holding], request: Mapping[str, Request],
                 kinds: set[str]) -> None:
        """Note who blocks ``request`` and keep waiters polling the ledger."""
        wanted = {self._keys[n] for req in request.values() for n, _ in req.specific
                  if n in self._keys}
        whole = {kind for req in request.values()
                 for kind, count in (("cpu", req.num_cpus), ("gpu", req.num_gpus or req.gpu_share))
                 if count}
        self._blockers = [h for h in holdings if _kind(h.name) in kinds
                          and (h.resource in wanted or _kind(h.name) in whole)]
        self._blocked_at = time.monotonic()
        if self._poller is None or not self._poller.is_alive():
            self._poller = threading.Thread(target=self._poll, name="dryml-ledger-poll",
                                            daemon=True)
            self._poller.start()

    def _poll(self) -> None:
        while True:
            time.sleep(LEDGER_POLL)
            with self.cond:
                last = self._blocked_at
                if last is None or time.monotonic() - last > 4 * LEDGER_POLL:
                    self._poller = None
                    return  # nobody has been turned away lately
                self.generation += 1
                self.cond.notify_all()

    def blockers(self) -> str:
        """What other processes held when a request last did not fit because of them
        (``''`` when none did): ``"other processes on this machine hold 0.7 of gpu/0 ..."``."""
        with self.cond:
            if not self._blockers:
                return ""
            return ("; other processes on this machine hold "
                    + ", ".join(h.describe() for h in self._blockers)
                    + " (their grants end when they stop their workers or exit)")

    def fits_with(self, request: Mapping[str, Request], grants: Iterable[Grant]) -> bool:
        """Whether ``request`` would fit if ``grants`` were released."""
        with self.cond:
            free = dict(self._free)
            for grant in grants:
                for name, units in grant.units().items():
                    free[name] = min(SHARE_UNIT, free[name] + units)
            kinds = self._ledger_kinds(request)
            if kinds:
                free = self._minus_others(free, kinds)
            return _fit(request, free, self._kinds) is not None

    def _minus_others(self, free: dict[str, int], kinds: set[str]) -> dict[str, int]:
        """``free`` less what other processes held of ``kinds`` at the last look at the
        ledger."""
        for name, key in self._keys.items():
            if _kind(name) in kinds:
                free[name] = max(0, free[name] - self._others.get(key, 0))
        return free

    def release(self, grant: Grant) -> None:
        """Give a grant's resources back and wake whoever waits.

        The ledger's row goes in a transaction of its own, outside the lock, and the grant's
        id stays in ``_unreleased`` until the row is gone (a ledger another process kept
        locked had frozen every call of this process for 30 s, and a row it failed to delete
        outlived its grant until the process exited). A failed delete raises, and is tried
        again in this process's next ledger transaction."""
        with self.cond:
            for name, units in grant.units().items():
                self._free[name] = min(SHARE_UNIT, self._free[name] + units)
            recorded = self._ledger is not None and grant.id in self._recorded
            if recorded:
                self._recorded.discard(grant.id)
                self._unreleased.add(grant.id)
            self.generation += 1
            self.cond.notify_all()
        if recorded:
            assert self._ledger is not None
            self._ledger.release(grant.id)
            with self.cond:
                self._unreleased.discard(grant.id)

    def notify(self) -> None:
        """Wake waiters after a change they may care about (a worker became idle)."""
        with self.cond:
            self.generation += 1
            self.cond.notify_all()
