"""The ``ray`` executor: compute-context calls in warm Ray actors across a cluster.

A requirement ``{framework: {...}}`` becomes one actor's Ray resources (:func:`ray_resources`):
CPUs summed over its frameworks, ``'cpu/N'``/``'gpu/N'`` fractions as shares of one device (Ray
chooses the node and the device), ``num_cpus``/``num_gpus`` as whole devices and a fractional
``num_gpus`` as Ray's fractional ``num_gpus`` (a share of one GPU); shares of several different
GPUs ask Ray for that many whole GPUs, since Ray gives a fractional ``num_gpus`` one GPU. Actors
are kept warm per requirement and reused; an idle actor is stopped when a new one waits for the
resources it holds. Ray is imported only here, when this executor is chosen.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import threading
import time
from collections import OrderedDict
from typing import Any

import attrs

from dryml.context._pool import WorkerInfo, context_plugins
from dryml.context._resources import SHARE_UNIT, Request, normalize_requirement, share_units
from dryml.errors import BackendUnavailableError, ResourcesUnavailableError, WorkerCrashedError

__all__ = ["RayExecutor", "actor_setup", "ray_resources"]

BY_REF_MIN = 1 << 20
"""Bytes from which an argument's array buffer or ``.dry`` blob goes through Ray's object store
(``DRYML_RAY_BY_REF_MIN`` overrides): put once, cached by content on the driver, passed by
reference, so calls that share data (a search's trials) do not send it again."""
STORE_CACHE = 4 << 30
"""Bytes of object-store entries the driver keeps referenced (least recently used go first)."""
EVICT_AFTER = 2.0
"""Seconds a new actor may wait for resources before an idle actor of another context that
holds what it waits for goes."""
_POLL = 0.1


def ray_resources(request: dict[str, Request]) -> tuple[float, float,
                                                       dict[str, dict[str, float]]]:
    """``(num_cpus, num_gpus, shares)`` of one actor for a normalized request.

    ``shares`` is the context the actor runs in: the devices the request names, plus
    ``cpu/i``/``gpu/i`` entries of 1.0 for whole counts (devices no framework of the request
    names or takes already, as the local scheduler places them), and a fractional ``num_gpus``
    on a GPU of the request with room left, else on a new one; so ``context_check`` and nested
    calls see the same context as in a local worker. ``num_gpus`` is the number of distinct GPUs
    in ``shares`` when there are several (Ray gives a fractional ``num_gpus`` one GPU only), the
    total share of the one GPU otherwise.
    """
    shares: dict[str, dict[str, float]] = {fw: dict(req.specific) for fw, req in request.items()}
    used: dict[str, int] = {}  # millionths of each device over all frameworks
    for share in shares.values():
        for name, amount in share.items():
            used[name] = used.get(name, 0) + share_units(amount)
    for framework, req in request.items():
        share = shares[framework]
        for kind, count in (("cpu", req.num_cpus), ("gpu", req.num_gpus)):
            index = 0
            for _ in range(count):
                while f"{kind}/{index}" in used:
                    index += 1
                share[f"{kind}/{index}"] = 1.0
                used[f"{kind}/{index}"] = SHARE_UNIT
    for framework, req in request.items():
        if req.gpu_share:  # Ray's fractional num_gpus: a share of one GPU on the chosen node
            share, units = shares[framework], share_units(req.gpu_share)
            room = [n for n in _gpus(used) if n not in share and used[n] + units <= SHARE_UNIT]
            name = room[0] if room else f"gpu/{min(set(range(len(used) + 1)) - _indices(used))}"
            share[name] = req.gpu_share
            used[name] = used.get(name, 0) + units
    over = [n for n in _gpus(used) if used[n] > SHARE_UNIT]
    if over:
        raise ResourcesUnavailableError(
            f"the request {({fw: r.as_dict() for fw, r in request.items()})} asks for more than "
            f"one whole {over[0]} over its frameworks ({used[over[0]] / SHARE_UNIT:g}); ask for "
            "at most 1.0 of each GPU in total")
    gpus = _gpus(used)
    cpus = sum(a for share in shares.values() for n, a in share.items() if n.startswith("cpu/"))
    num_gpus = float(len(gpus)) if len(gpus) > 1 else sum(used[n] for n in gpus) / SHARE_UNIT
    return round(cpus, 6), num_gpus, shares


def _gpus(used: dict[str, int]) -> list[str]:
    """The ``gpu/i`` names among ``used``, in index order."""
    return sorted((n for n in used if n.startswith("gpu/")), key=lambda n: int(n[4:]))


def _indices(used: dict[str, int]) -> set[int]:
    """The GPU indices among ``used``."""
    return {int(n[4:]) for n in _gpus(used)}


def actor_setup(request: dict[str, Request], shares: dict[str, dict[str, float]],
                cpus: float) -> dict[str, Any]:
    """What a new actor is built from (:class:`~dryml.context._ray_actor.DrymlActor`).

    Its resources carry no device facts: a GPU's ``memory_total`` and ``uuid`` are only known
    on the node Ray picks, so the actor reads them there from NVML
    (:func:`~dryml.context._ray_actor.gpu_facts`).
    """
    return {"shares": shares,
            "resources": {n: {"kind": n.split("/")[0], "index": int(n.split("/")[1]), "info": {}}
                          for share in shares.values() for n in share},
            "plugins": context_plugins(list(request)), "env": _env(), "cpus": cpus,
            "sys_path": list(__import__("sys").path)}


@attrs.define(eq=False)
class _Actor:
    handle: Any
    key: tuple[Any, ...]
    shares: dict[str, dict[str, float]]
    pid: int = 0
    node: str = ""
    gpus: list[str] = attrs.field(factory=list)
    busy: bool = True
    last_used: float = attrs.field(factory=time.monotonic)


def _held(actor: _Actor, kind: str) -> float:
    """How much of ``kind`` ("cpu" or "gpu") ``actor`` holds on its node."""
    return sum(amount for share in actor.shares.values() for name, amount in share.items()
               if name.startswith(kind + "/"))


def _env() -> dict[str, str]:
    """Variables the actor takes from the driver (dryml's switches)."""
    return {k: v for k, v in os.environ.items() if k.startswith("DRYML_")}


class RayExecutor:
    """Runs calls in warm Ray actors; ``address`` (default ``RAY_ADDRESS``, else a local Ray)."""

    def __init__(self, address: str | None = None) -> None:
        import importlib

        ray: Any = importlib.import_module("ray")  # typed as Any: the extra may be absent
        self.ray = ray
        if not ray.is_initialized():
            _forget_exported_address()
            address = address or os.environ.get("RAY_ADDRESS") or None
            extra: dict[str, Any] = {} if address else {"include_dashboard": False}
            started = _init(ray, address=address, logging_level=logging.WARNING, **extra)
            if not address:  # processes this one starts join this Ray instance, not new ones
                gcs = getattr(started, "address_info", {}).get("gcs_address")
                if gcs:
                    os.environ["RAY_ADDRESS"] = _EXPORTED["address"] = gcs
        self.remote_cls: Any = ray.remote(max_restarts=0, max_task_retries=0)(
            _actor_class())
        self.cond = threading.Condition()
        self.actors: list[_Actor] = []
        self._closed = False
        self.out_of_band = int(os.environ.get("DRYML_RAY_BY_REF_MIN", BY_REF_MIN))
        self._store: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._putting: dict[str, threading.Event] = {}  # digests being put right now
        self.store_puts = 0
        """Buffers and blobs this executor put into Ray's object store."""
        self.store_hits = 0
        """Times a call reused one already there instead of sending it again."""
        self._relay: tuple[dict[str, str], Any] | None = None

    # -- data through the object store ---------------------------------------------------------
    def _stored(self, data: Any) -> Any:
        """An ObjectRef holding ``data`` (bytes or a buffer), put once per content."""
        view = data.raw() if isinstance(data, pickle.PickleBuffer) else memoryview(data)
        digest = hashlib.blake2b(view, digest_size=20).hexdigest()
        while True:
            with self.cond:
                found = self._store.get(digest)
                if found is not None:
                    self._store.move_to_end(digest)
                    self.store_hits += 1
                    return found[0]
                putting = self._putting.get(digest)
                if putting is None:  # this thread puts them; a concurrent call waits for it
                    self._putting[digest] = threading.Event()
                    break
            putting.wait()  # then takes its reference (or puts them itself, had that failed)
        try:
            if isinstance(data, pickle.PickleBuffer):
                import numpy as np

                ref = self.ray.put(np.frombuffer(view, dtype=np.uint8))
            else:
                ref = self.ray.put(bytes(data))
            with self.cond:
                self.store_puts += 1
                self._store[digest] = (ref, view.nbytes)
                total = sum(size for _, size in self._store.values())
                while total > STORE_CACHE and len(self._store) > 1:
                    _, (_, size) = self._store.popitem(last=False)
                    total -= size
        finally:
            with self.cond:
                self._putting.pop(digest).set()
        return ref

    def _by_ref(self, msg: dict[str, Any]) -> dict[str, Any]:
        """``msg`` with its out-of-band buffers and large ``.dry`` blobs as ObjectRefs."""
        buffers = msg.get("buffers") or []
        large = [len(b) >= self.out_of_band for b in msg["blobs"]]
        if not buffers and not any(large):
            return msg
        blobs = [self._stored(b) if big else b
                 for b, big in zip(msg["blobs"], large, strict=True)]
        return {**msg, "buffers": [self._stored(b) for b in buffers], "blobs": blobs}

    # -- placement ---------------------------------------------------------------------------
    def _check_possible(self, cpus: float, gpus: float, wanted: str) -> None:
        nodes = [n["Resources"] for n in self.ray.nodes() if n.get("Alive")]
        if any(n.get("CPU", 0.0) + 1e-9 >= cpus and n.get("GPU", 0.0) + 1e-9 >= gpus
               for n in nodes):
            return
        sizes = [{"CPU": n.get("CPU", 0.0), "GPU": n.get("GPU", 0.0)} for n in nodes]
        raise ResourcesUnavailableError(
            f"no node of the Ray cluster can ever run {wanted} (num_cpus={cpus}, "
            f"num_gpus={gpus}); its nodes have {sizes}. Ask for less, or add a node that has it")

    def _take_idle(self, key: tuple[Any, ...]) -> _Actor | None:
        for actor in sorted(self.actors, key=lambda a: -a.last_used):
            if not actor.busy and actor.key == key:
                actor.busy = True
                return actor
        return None

    def _shut_down(self) -> bool:
        """Whether :meth:`shutdown` ran (asked anew: another thread may have run it)."""
        return self._closed

    def _checkout(self, reqs: Any, timeout: float | None) -> _Actor:
        request = normalize_requirement(reqs)
        key = tuple(sorted(request.items()))
        with self.cond:
            if self._closed:
                raise ResourcesUnavailableError("the Ray executor was shut down")
            found = self._take_idle(key)
            if found is not None:
                return found
        cpus, gpus, shares = ray_resources(request)
        wanted = str({fw: r.as_dict() for fw, r in request.items()})
        self._check_possible(cpus, gpus, wanted)
        setup = actor_setup(request, shares, cpus)
        handle = self.remote_cls.options(num_cpus=cpus, num_gpus=gpus).remote(setup)
        ready = handle.ready.remote()
        start = time.monotonic()
        while True:
            done, _ = self.ray.wait([ready], timeout=_POLL)
            if done:
                return self._started(handle, ready, key, shares, wanted)
            victim = None
            with self.cond:
                closed = self._shut_down()
                found = None if closed else self._take_idle(key)
                if found is None and time.monotonic() - start > EVICT_AFTER:
                    victim = self._idle_holding_short(cpus, gpus)
                    if victim is not None:
                        self.actors.remove(victim)
            if closed:  # shut down (Ctrl-C) while this call waited for room on the cluster
                self.ray.kill(handle)
                raise ResourcesUnavailableError("the Ray executor was shut down while an "
                                                "actor started for this call")
            if found is not None:
                self.ray.kill(handle)
                return found
            if victim is not None:
                self.ray.kill(victim.handle)
            if timeout is not None and time.monotonic() - start > timeout:
                self.ray.kill(handle)
                raise ResourcesUnavailableError(
                    f"waited {timeout}s for a Ray actor with {wanted} (num_cpus={cpus}, "
                    f"num_gpus={gpus}); the cluster has {self.ray.available_resources()} free")

    def _idle_holding_short(self, cpus: float, gpus: float) -> _Actor | None:
        """The least recently used idle actor that holds a kind of resource (CPU, GPU) that
        its node has too little of free for a new actor of ``cpus``/``gpus``; None when some
        node has room for it (Ray places it there, or already did: it is starting) or no idle
        actor holds what is short (stopping one would not help)."""
        idle = sorted((a for a in self.actors if not a.busy), key=lambda a: a.last_used)
        if not idle:
            return None
        try:
            nodes = self._free_per_node()
        except Exception:  # noqa: BLE001 - a private Ray API: gone, stop the least recent
            return idle[0]
        lacking: dict[str, set[str]] = {}
        for node, free in nodes.items():
            lacking[node] = {kind for kind, wanted in (("cpu", cpus), ("gpu", gpus))
                             if wanted > 0 and free.get(kind.upper(), 0.0) + 1e-9 < wanted}
            if not lacking[node]:
                return None
        for actor in idle:
            if any(_held(actor, kind) > 0 for kind in lacking.get(actor.node, ())):
                return actor
        return None

    def _free_per_node(self) -> dict[str, dict[str, float]]:
        """Each live node's free resources, by node id (Ray's developer API; should a Ray
        release move it, a waiting call stops the least recently used idle actor, as before)."""
        import importlib

        state: Any = importlib.import_module("ray._private.state")
        return dict(state.available_resources_per_node())

    def _started(self, handle: Any, ready: Any, key: tuple[Any, ...],
                 shares: dict[str, dict[str, float]], wanted: str) -> _Actor:
        try:
            info = self.ray.get(ready)
        except self.ray.exceptions.RayError as exc:
            self.ray.kill(handle)
            raise WorkerCrashedError(f"the Ray actor for {wanted} died while starting: "
                                     f"{exc}") from None
        if "failed" in info:
            self.ray.kill(handle)
            missing, text = info["failed"]
            error = BackendUnavailableError if missing else WorkerCrashedError
            raise error(f"a Ray actor for {wanted} could not be prepared (is the framework "
                        f"installed on the cluster's nodes?); its error:\n{text}")
        actor = _Actor(handle, key, shares, info["pid"], info["node"], info["gpus"])
        with self.cond:
            closed = self._closed
            if not closed:
                self.actors.append(actor)
        if closed:  # it must neither run the call nor live on outside every executor
            self.ray.kill(handle)
            raise ResourcesUnavailableError("the Ray executor was shut down while an actor "
                                            "started for this call")
        return actor

    def _checkin(self, actor: _Actor, dead: bool) -> None:
        with self.cond:
            dead = dead or self._closed  # shut down meanwhile: no actor outlives it
            if dead:
                if actor in self.actors:
                    self.actors.remove(actor)
            else:
                actor.busy = False
                actor.last_used = time.monotonic()
            self.cond.notify_all()
        if dead:
            self.ray.kill(actor.handle)

    # -- the executor API --------------------------------------------------------------------
    def execute(self, reqs: Any, msg: dict[str, Any], *, call_timeout: float | None,
                resource_timeout: float | None) -> dict[str, Any]:
        """Run one call message in a warm actor meeting ``reqs``; return its reply."""
        actor = self._checkout(reqs, resource_timeout)
        dead = True
        try:
            ref = actor.handle.call.remote(self._by_ref(msg))
            try:
                reply: dict[str, Any] = self.ray.get(ref, timeout=call_timeout)
            except self.ray.exceptions.GetTimeoutError:
                raise TimeoutError(
                    f"the call took longer than call_timeout={call_timeout}s; its Ray actor "
                    f"(pid {actor.pid}) was stopped and will be replaced") from None
            except self.ray.exceptions.RayError as exc:
                raise WorkerCrashedError(
                    f"the Ray actor (pid {actor.pid}, node {actor.node[:12]}) for "
                    f"{actor.shares} died while running a call ({type(exc).__name__}); the "
                    "next call starts a new actor") from None
            dead = False
            return reply
        finally:
            self._checkin(actor, dead)

    def workers(self) -> list[WorkerInfo]:
        """The live actors: pid (on its node), shares, busy or idle."""
        with self.cond:
            return [WorkerInfo(a.pid, a.shares, a.busy) for a in self.actors]

    def report_relay(self) -> dict[str, str]:
        """The relay on the driver's node that calls send reports through (started once):
        ``{"name": ..., "namespace": ...}`` for :func:`dryml.context._ray_relay.relay_reporter`.
        """
        with self.cond:
            if self._relay is None:
                from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

                from dryml.context._ray_relay import ReportRelay

                context = self.ray.get_runtime_context()
                name = f"dryml-report-relay-{os.getpid()}-{id(self):x}"
                handle = self.ray.remote(num_cpus=0, max_restarts=0)(ReportRelay).options(
                    name=name, runtime_env={"env_vars": _env()},
                    scheduling_strategy=NodeAffinitySchedulingStrategy(
                        node_id=context.get_node_id(), soft=False)).remote()
                self.ray.get(handle.ready.remote(), timeout=300)
                self._relay = {"name": name, "namespace": context.namespace}, handle
            return dict(self._relay[0])

    def shutdown(self) -> None:
        """Kill every actor this executor started, the report relay too (Ray stays
        connected)."""
        with self.cond:
            self._closed = True
            actors, self.actors = self.actors, []
            self._store.clear()
            relay, self._relay = self._relay, None
        handles = [actor.handle for actor in actors] + ([relay[1]] if relay else [])
        for handle in handles:
            try:
                self.ray.kill(handle)
            except Exception:  # noqa: BLE001,S110 - an actor already gone is fine
                pass


_EXPORTED: dict[str, str | None] = {"address": None}
"""The ``RAY_ADDRESS`` this process exported for a Ray instance it started itself."""


def _forget_exported_address() -> None:
    """Drop ``RAY_ADDRESS`` when it still names the instance dryml started, now that Ray is
    not initialised: that instance ended with ``ray.shutdown()``, and ``ray.init`` would wait
    for ever to connect to it. The next executor then starts a fresh local instance."""
    exported, _EXPORTED["address"] = _EXPORTED["address"], None
    if exported is not None and os.environ.get("RAY_ADDRESS") == exported:
        del os.environ["RAY_ADDRESS"]


def _init(ray: Any, **kwargs: Any) -> Any:
    """``ray.init`` from a thread that lives as long as this process.

    Defensive: Ray ties processes it starts to their parent through PDEATHSIG, which Linux
    fires when the starting *thread* ends; the first call often comes from a pool thread (a
    search, the main job). Twice the main job's own Ray instance (raylet and GCS) vanished at
    the end of training when it was started from such a thread; a short test of a thread that
    ends does not reproduce it, so the cause is not established.
    """
    if kwargs.get("address") or threading.current_thread() is threading.main_thread():
        return ray.init(**kwargs)
    done = threading.Event()
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["ctx"] = ray.init(**kwargs)
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller
            box["error"] = exc
        done.set()
        threading.Event().wait()  # never ends: Ray's processes live while this thread does

    threading.Thread(target=run, name="dryml-ray-init", daemon=True).start()
    done.wait()
    if "error" in box:
        raise box["error"]
    return box["ctx"]


def _actor_class() -> type:
    from dryml.context._ray_actor import DrymlActor

    return DrymlActor
