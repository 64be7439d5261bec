"""Samplers: what a search asks for its next trial. ``grid`` and ``random`` live here.

A sampler is any object with ``start``, ``ask`` and ``tell`` (:class:`Sampler`); the
``dryml_samplers`` hook names them, so a third party can add one. ``ask`` returns the next
trial's number, params and definition, or None when the sampler has nothing left (a finished
grid). Trial numbers are the sampler's, and a resumed search continues after the last one.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Protocol

import attrs
import numpy as np

from dryml._objectdef import ObjectDef
from dryml.errors import BackendUnavailableError, ConfigurationError
from dryml.search._markers import ChoiceSpec, NumberSpec, stepped
from dryml.search._space import Space

__all__ = ["Asked", "GridSampler", "RandomSampler", "Sampler", "TrialInfo", "get_sampler",
           "sampler_names"]

#: trial states that count towards ``n_trials``
FINISHED = ("complete", "pruned")


@attrs.define
class TrialInfo:
    """What a search knows about one past trial (given to ``Sampler.start`` on resume)."""

    number: int
    status: str
    params: dict[str, Any]
    values: list[float] | None = None


@attrs.define
class Asked:
    """A trial a sampler proposes: its number, params and the definition to build."""

    number: int
    params: dict[str, Any]
    definition: ObjectDef
    handle: Any = None


class Sampler(Protocol):
    """What a search needs from a sampler."""

    def start(self, space: Space, directions: list[str], name: str, state_dir: Path,
              history: list[TrialInfo]) -> None:
        """Prepare for a search (``history``: the trials a resumed search already has)."""

    def ask(self) -> Asked | None:
        """The next trial, or None when there is nothing left to try."""

    def tell(self, asked: Asked, status: str, values: list[float] | None) -> None:
        """How a trial ended: ``complete`` (with its values), ``pruned``, ``failed``..."""


def _key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)


class GridSampler:
    """Every combination of the space's values, in order (Floats need a ``step``); a resumed
    search skips the combinations already finished. A combination whose trial failed is tried
    once more, after every combination not tried yet (retried at once, one that always fails,
    a NaN score say, would use up ``max_failures`` before the rest of the grid was ever tried;
    retried without end, one bad combination cost as many trainings as the grid has)."""

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed

    def start(self, space: Space, directions: list[str], name: str, state_dir: Path,
              history: list[TrialInfo]) -> None:
        space.check_grid()
        self.space, self.points = space, space.grid()
        self.taken = {_key(t.params) for t in history if t.status in FINISHED}
        self.failed = {_key(t.params) for t in history if t.status not in FINISHED}
        self.failed -= self.taken
        self.retried: set[str] = set()  # failed combinations asked again by this process
        self.next_number = max((t.number for t in history), default=-1) + 1

    def ask(self) -> Asked | None:
        for retry in (False, True):
            for params in self.points:
                key = _key(params)
                if key in self.taken or (key in self.failed) != retry or key in self.retried:
                    continue
                if retry:
                    self.retried.add(key)
                self.taken.add(key)
                self.failed.discard(key)
                number, self.next_number = self.next_number, self.next_number + 1
                return Asked(number, params, self.space.build_def(params))
        return None

    def tell(self, asked: Asked, status: str, values: list[float] | None) -> None:
        if status not in FINISHED:
            key = _key(asked.params)
            self.taken.discard(key)
            self.failed.add(key)


def _draw(rng: np.random.Generator, spec: NumberSpec | ChoiceSpec) -> Any:
    if isinstance(spec, ChoiceSpec):
        return spec.labels[int(rng.integers(len(spec.labels)))]
    low, high = spec.low, spec.high
    if spec.kind == "int":
        step = int(spec.step or 1)
        if spec.log:
            value = math.exp(rng.uniform(math.log(low - 0.5), math.log(high + 0.5)))
            return int(min(max(round(value), low), high))
        return int(low + step * int(rng.integers((int(high) - int(low)) // step + 1)))
    if spec.log:  # exp(log(x)) may round past a bound (0.1 gave 0.10000000000000002)
        return float(min(max(math.exp(rng.uniform(math.log(low), math.log(high))), low), high))
    if spec.step is not None:
        count = math.floor((high - low) / spec.step + 1e-9)
        return stepped(low, high, spec.step, int(rng.integers(count + 1)))
    return float(rng.uniform(low, high))


class RandomSampler:
    """Independent uniform draws (log-uniform on a log scale). Trial ``n`` of a search with
    ``seed`` always gets the same params, so a seeded search is reproducible, and a resumed one
    goes on with the draws an uninterrupted one would have made after its last trial (a trial
    killed mid-run is not drawn again: its params are in its failed record). ``seed=None``
    draws a fresh seed (it drew seed 0's params, so two unseeded searches repeated each
    other)."""

    def __init__(self, seed: int | None = None) -> None:
        self.seed = int(np.random.default_rng().integers(2**63)) if seed is None else seed

    def start(self, space: Space, directions: list[str], name: str, state_dir: Path,
              history: list[TrialInfo]) -> None:
        self.space = space
        self.next_number = max((t.number for t in history), default=-1) + 1

    def ask(self) -> Asked | None:
        number, self.next_number = self.next_number, self.next_number + 1
        rng = np.random.default_rng([self.seed, number])
        definition, params = self.space.sample(lambda name, spec: _draw(rng, spec))
        return Asked(number, params, definition)

    def tell(self, asked: Asked, status: str, values: list[float] | None) -> None:
        pass


def sampler_names() -> list[str]:
    """Every sampler name the plugins register."""
    from dryml.plugins import get_plugin_manager

    return sorted({r.name for r in get_plugin_manager().iter_records("dryml_samplers")})


def get_sampler(sampler: Any, seed: int | None) -> tuple[str, Any]:
    """``(name, sampler)`` for a name from the ``dryml_samplers`` hook, a sampler object or an
    ``optuna.samplers.BaseSampler`` instance."""
    from dryml.plugins import get_plugin_manager
    from dryml.records import load_ref

    if not isinstance(sampler, str):
        if type(sampler).__module__.startswith("optuna"):
            from dryml.search._optuna import OptunaSampler

            return type(sampler).__name__, OptunaSampler(sampler)
        if all(hasattr(sampler, m) for m in ("start", "ask", "tell")):
            return type(sampler).__name__, sampler
        raise ConfigurationError(
            f"sampler must be a name ({', '.join(sampler_names())}), an Optuna sampler or an "
            f"object with start/ask/tell; got {sampler!r}")
    records = get_plugin_manager().records_by_name("dryml_samplers")
    if sampler not in records:
        raise ConfigurationError(
            f"unknown sampler {sampler!r}; the known ones are {', '.join(sorted(records))}")
    record = records[sampler]
    try:
        factory = load_ref(record.impl)
        return sampler, factory(seed)
    except ImportError as exc:
        if isinstance(exc, BackendUnavailableError):
            raise
        raise BackendUnavailableError(
            f"the {sampler!r} sampler needs {exc.name or 'a package that is missing'}: "
            f"pip install '{record.extra or record.package}'") from exc
