"""What exists on this machine (resources) and what a call asks for (requests).

A resource is one device with capacity 1.0 (``cpu/3``, ``gpu/0``); requests may take fractions
of it. A requirement names frameworks: ``{'torch': {'gpu/0': 0.5, 'num_cpus': 2}}``.
``num_gpus`` may also be a fraction in (0, 1): a share of whichever one GPU is free enough
(``{'torch': {'num_gpus': 0.5}}``: two such calls share one GPU).

Shares are accounted in whole millionths of a device (:data:`SHARE_UNIT`, :func:`share_units`),
so that shares granted and released in any order always add back up to exactly one device;
a share below :data:`MIN_SHARE` is refused.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import attrs

from dryml.errors import ContextIncompatibilityError

__all__ = [
    "MIN_SHARE",
    "SHARE_UNIT",
    "CpuProvider",
    "Request",
    "Requirement",
    "Resource",
    "ResourceProvider",
    "normalize_requirement",
    "parse_request",
    "requirement_of_objects",
    "share_units",
]

Requirement = Mapping[str, Mapping[str, float]]
_KEY = re.compile(r"^(cpu|gpu)/(\d+)$")
_COUNT_KEYS = {"num_cpus": "cpu", "num_gpus": "gpu"}

SHARE_UNIT = 10**6
"""The parts one device is accounted in: shares are whole millionths of a device."""
MIN_SHARE = 1 / SHARE_UNIT
"""The smallest share of a device granted (one :data:`SHARE_UNIT`th); a smaller one is refused."""


def share_units(amount: float) -> int:
    """``amount`` of one device in whole millionths, the unit every grant is accounted in.

    Whole numbers add and subtract exactly: a float running total drifts, and after many shares
    came and went a whole device was refused although nothing held it.
    """
    return round(amount * SHARE_UNIT)


def _as_dict(value: Mapping[str, Any]) -> dict[str, Any]:
    return dict(value)


@attrs.frozen
class Resource:
    """One device: ``name`` like ``"gpu/0"``; ``info`` holds facts a worker needs.

    For GPUs ``info`` has ``memory_total`` (bytes), ``uuid`` and ``model``; ``index`` is what
    ``CUDA_VISIBLE_DEVICES`` calls the device.
    """

    kind: str
    index: int
    info: Mapping[str, Any] = attrs.field(factory=dict, converter=_as_dict)

    @property
    def name(self) -> str:
        """``kind/index``, the key requests use."""
        return f"{self.kind}/{self.index}"


class ResourceProvider(Protocol):
    """What a ``ResourceProviderRecord``'s ``impl`` names: reports resources of one kind."""

    def resources(self) -> list[Resource]:
        """Every device of this kind on this machine (an empty list when there are none)."""
        ...


class CpuProvider:
    """The CPUs this process may run on (its affinity mask, not the machine's total)."""

    def resources(self) -> list[Resource]:
        """One ``cpu/i`` per CPU this process may use."""
        try:
            cpus = sorted(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            cpus = list(range(os.cpu_count() or 1))
        return [Resource("cpu", i, {"os_cpu": cpu}) for i, cpu in enumerate(cpus)]


class FakeCpuProvider:
    """``count`` pretend CPUs, for tests and demos that must not depend on this machine's
    cores: they name no operating-system CPU, so workers granted them are not pinned, and
    their grants stay in this process (the machine-wide ledger counts real devices only)."""

    def __init__(self, count: int = 4) -> None:
        self.count = count

    def resources(self) -> list[Resource]:
        """``cpu/0`` ... ``cpu/{count-1}``."""
        return [Resource("cpu", i) for i in range(self.count)]


CPU = CpuProvider()


@attrs.frozen
class Request:
    """One framework's normalized request: exact devices with fractions, plus whole counts.

    ``default_cpu`` marks the one CPU given to a requirement that names none: it is accounted
    in this process only, never in the machine-wide ledger (see ``dryml.context._ledger``).
    ``gpu_share`` is a fractional ``num_gpus`` (in (0, 1)): that share of any one GPU.
    """

    specific: tuple[tuple[str, float], ...] = ()
    num_cpus: int = 0
    num_gpus: int = 0
    default_cpu: bool = False
    gpu_share: float = 0.0

    def as_dict(self) -> dict[str, float]:
        """The request in the user's notation."""
        out: dict[str, float] = dict(self.specific)
        if self.num_cpus:
            out["num_cpus"] = self.num_cpus
        if self.num_gpus:
            out["num_gpus"] = self.num_gpus
        elif self.gpu_share:
            out["num_gpus"] = self.gpu_share
        return out


def parse_request(framework: str, spec: Mapping[str, Any]) -> Request:
    """One framework's request from ``{resource: amount}`` (ContextIncompatibilityError if bad)."""
    if not isinstance(spec, Mapping):
        raise ContextIncompatibilityError(
            f"the requirement for {framework!r} must be a dict of resources, got {spec!r}")
    specific: dict[str, float] = {}
    counts = {"cpu": 0, "gpu": 0}
    gpu_share = 0.0
    for key, amount in spec.items():
        if key == "num_gpus" and _is_fraction(amount):
            gpu_share = _share(framework, key, float(amount))
            continue
        if key in _COUNT_KEYS:
            if isinstance(amount, float) and amount.is_integer():
                amount = int(amount)
            if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
                extra = " or a fraction in (0, 1) (a share of one GPU)" if key == "num_gpus" else ""
                raise ContextIncompatibilityError(
                    f"{framework}: {key} must be a whole number >= 0{extra}, got {amount!r}")
            counts[_COUNT_KEYS[key]] = amount
            continue
        if not isinstance(key, str) or not _KEY.match(key):
            raise ContextIncompatibilityError(
                f"{framework}: unknown resource {key!r}; use 'cpu/N', 'gpu/N', 'num_cpus' or "
                "'num_gpus'")
        if (isinstance(amount, bool) or not isinstance(amount, (int, float))
                or not math.isfinite(amount) or not 0 < amount <= 1):
            raise ContextIncompatibilityError(
                f"{framework}: {key} must be a fraction in (0, 1], got {amount!r}")
        specific[key] = _share(framework, key, float(amount))
    if gpu_share and any(k.startswith("gpu/") for k in specific):
        raise ContextIncompatibilityError(
            f"{framework}: a fractional num_gpus ({gpu_share}) cannot be combined with a named "
            "GPU; ask for 'gpu/N': share instead")
    return Request(tuple(sorted(specific.items())), counts["cpu"], counts["gpu"],
                   gpu_share=gpu_share)


def _share(framework: str, key: str, amount: float) -> float:
    """``amount`` as dryml accounts it, in whole millionths (else ContextIncompatibilityError,
    below MIN_SHARE): what the worker is told is what was counted (three shares of 0.3333334,
    counted as 0.333333 each, told the workers 1.0000002 of one GPU)."""
    if amount < MIN_SHARE:
        raise ContextIncompatibilityError(
            f"{framework}: {key}={amount!r} is below the smallest share dryml grants, "
            f"{MIN_SHARE:g} of a device (shares are accounted in millionths); ask for at least "
            f"{MIN_SHARE:g}, or leave {key!r} out")
    return share_units(amount) / SHARE_UNIT


def _is_fraction(amount: Any) -> bool:
    """Whether ``amount`` is a number strictly between 0 and 1."""
    return (not isinstance(amount, bool) and isinstance(amount, (int, float))
            and math.isfinite(amount) and 0 < amount < 1)


def normalize_requirement(reqs: Requirement | None) -> dict[str, Request]:
    """``{framework: Request}`` from the user's notation; ``None`` or ``{}`` is ``default``.

    A requirement asking for no CPU gets one whole CPU (``default_cpu``: accounted in this
    process only); a framework gets no GPU unless it asks (GPUs a worker was not granted are
    hidden from it, so two workers never share a GPU by accident).
    """
    if reqs is None or not reqs:
        reqs = {"default": {}}
    if not isinstance(reqs, Mapping):
        raise ContextIncompatibilityError(
            f"a context requirement is a dict {{framework: {{resource: amount}}}}, got {reqs!r}")
    out = {str(fw): parse_request(str(fw), spec or {}) for fw, spec in reqs.items()}
    if len(out) > 1 and "default" in out:
        # any framework context satisfies 'default'; what it asks for would be lost
        default = out.pop("default")
        if default.as_dict():
            first = min(out)
            raise ContextIncompatibilityError(
                f"the requirement gives resources to 'default' ({default.as_dict()}) next to "
                f"{', '.join(repr(fw) for fw in sorted(out))}, whose contexts run the call: "
                f"give them to one of those, e.g. {{{first!r}: {default.as_dict()}}}")
    if not any(r.num_cpus or any(k.startswith("cpu/") for k, _ in r.specific)
               for r in out.values()):
        first = min(out)
        out[first] = attrs.evolve(out[first], num_cpus=1, default_cpu=True)
    return dict(sorted(out.items()))


def requirement_of_objects(values: Iterable[Any]) -> dict[str, dict[str, float]]:
    """``{framework: {}}`` for every Object (nested ones too) among ``values``."""
    from dryml.context._lifecycle import iter_objects

    frameworks = {type(obj).dry_framework for obj in iter_objects(values)}
    frameworks.discard("default")
    return {fw: {} for fw in sorted(frameworks)} or {"default": {}}
