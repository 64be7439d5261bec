"""Search-space markers: ``Float``, ``Int`` and ``Choice`` stand in for a value of a definition.

Markers are :class:`dryml.Object` subclasses, so a definition holding them is still a plain
definition: it saves, compares and round-trips through JSON (``ObjectDef.to_dict()``).
Each marker checks its arguments when it is made, so a bad range fails before any trial.
"""

from __future__ import annotations

import math
from typing import Any

import attrs

from dryml._object import Object
from dryml.errors import ConfigurationError

__all__ = ["Choice", "ChoiceSpec", "Float", "Int", "Marker", "NumberSpec", "marker_spec"]

_ATOMS = (type(None), bool, int, float, str)


@attrs.frozen
class NumberSpec:
    """A numeric range read from a ``Float`` or ``Int`` marker."""

    kind: str  # "float" or "int"
    low: float
    high: float
    log: bool
    step: float | None
    name: str | None

    def grid_values(self, where: str) -> list[Any]:
        """Every value of a stepped range (a grid needs them all)."""
        if self.kind == "int":
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.step is None:
            raise ConfigurationError(
                f"{where}: a grid cannot enumerate the continuous range Float({self.low}, "
                f"{self.high}); give it a step (Float(..., step=0.1)) or use another sampler")
        count = math.floor((self.high - self.low) / self.step + 1e-9) + 1
        # floats, as Optuna gives them: Float(1, 3, step=1) gave the ints 1, 2, 3 here, and
        # an int and a float mean different models to scikit-learn (max_features=1 vs 1.0)
        return [stepped(self.low, self.high, self.step, i) for i in range(count)]


def stepped(low: float, high: float, step: float, k: int) -> float:
    """``low + k * step`` without float noise: rounded at 12 digits below the step's first
    (a fixed 12 decimals made Float(0, 4e-12, step=5e-13) give 0, 0, 1e-12, 2e-12,
    2e-12...), and never past a bound (rounding took Float(pi/8, pi, step=pi/8) to
    3.141592653590, above pi, and its first value below pi/8)."""
    digits = 12 - min(0, math.floor(math.log10(abs(step)))) if step else 12
    return float(min(max(round(low + k * step, digits), low), high))


@attrs.frozen
class ChoiceSpec:
    """The options of a ``Choice`` marker and the label of each (what params show)."""

    options: tuple[Any, ...]
    labels: tuple[Any, ...]
    name: str | None

    def grid_values(self, where: str) -> list[Any]:
        """Every label."""
        return list(self.labels)


def _check_name(name: Any) -> None:
    if name is not None and (not isinstance(name, str) or not name):
        raise ConfigurationError(f"a parameter name must be a non-empty str, got {name!r}")


def _number(kind: str, low: Any, high: Any, log: bool, step: Any, name: Any) -> NumberSpec:
    marker = "Float" if kind == "float" else "Int"
    numeric = (int,) if kind == "int" else (int, float)
    for label, value in (("low", low), ("high", high)):
        if isinstance(value, bool) or not isinstance(value, numeric):
            raise ConfigurationError(f"{marker}: {label} must be a number"
                                     f"{' (an int)' if kind == 'int' else ''}, got {value!r}")
        # checked here, not when a sampler first draws (a bare OverflowError mid-search)
        if not math.isfinite(value):
            raise ConfigurationError(f"{marker}: {label} must be a finite number, got {value!r}")
        if kind == "int" and not -(2**63) <= value < 2**63:
            raise ConfigurationError(f"Int: {label} must fit in 64 bits (as the samplers draw "
                                     f"integers), got {value}")
    if kind == "float" and not math.isfinite(high - low):
        raise ConfigurationError(f"Float({low}, {high}): the range is wider than a float holds")
    if low > high:
        raise ConfigurationError(f"{marker}({low}, {high}): low is greater than high")
    if log and low <= 0:
        raise ConfigurationError(
            f"{marker}({low}, {high}, log=True): a log scale needs low > 0")
    if step is not None and (isinstance(step, bool) or not isinstance(step, numeric)
                             or not step > 0 or not math.isfinite(step)):
        raise ConfigurationError(f"{marker}: step must be a positive number, got {step!r}")
    if kind == "float" and log and step is not None:
        raise ConfigurationError("Float: log=True and step cannot be used together")
    if kind == "int" and log and step not in (None, 1):
        raise ConfigurationError("Int: log=True needs step=1")
    _check_name(name)
    return NumberSpec(kind, low, high, bool(log), step, name)


class Marker(Object):
    """Base of the search-space markers (never used directly)."""

    @classmethod
    def spec(cls, args: tuple[Any, ...], kwargs: dict[str, Any]) -> NumberSpec | ChoiceSpec:
        """The checked range or options, from the marker's recorded arguments."""
        raise NotImplementedError


class Float(Marker):
    """A float between ``low`` and ``high`` (inclusive), optionally on a log scale or a grid of
    ``step``; ``name`` overrides the name derived from where the marker stands.

    >>> Float(1e-4, 1e-1, log=True).range
    NumberSpec(kind='float', low=0.0001, high=0.1, log=True, step=None, name=None)
    """

    def __init__(self, low: float, high: float, log: bool = False, step: float | None = None,
                 name: str | None = None) -> None:
        self.range = _number("float", low, high, log, step, name)

    @classmethod
    def spec(cls, args: tuple[Any, ...], kwargs: dict[str, Any]) -> NumberSpec:
        kw = {k: v for k, v in kwargs.items() if k != "dry_id"}
        return cls(*args, **kw).range


class Int(Marker):
    """An int between ``low`` and ``high`` (inclusive), every ``step``, optionally on a log
    scale; ``name`` overrides the derived name.

    >>> Int(16, 256, log=True).range.kind
    'int'
    """

    def __init__(self, low: int, high: int, log: bool = False, step: int = 1,
                 name: str | None = None) -> None:
        self.range = _number("int", low, high, log, step, name)

    @classmethod
    def spec(cls, args: tuple[Any, ...], kwargs: dict[str, Any]) -> NumberSpec:
        kw = {k: v for k, v in kwargs.items() if k != "dry_id"}
        return cls(*args, **kw).range


def _label(option: Any, index: int) -> Any:
    from dryml._objectdef import ObjectDef

    if type(option) in _ATOMS:
        return option
    if isinstance(option, Object):
        option = ObjectDef.from_object(option)
    if isinstance(option, ObjectDef):
        first = option.args[0] if option.args else None
        if isinstance(first, str):
            return first.rsplit(".", 1)[-1]
        return option.cls.__name__
    return f"option{index}"


def _choice(options: tuple[Any, ...], labels: Any, name: Any) -> ChoiceSpec:
    if not options:
        raise ConfigurationError("Choice() needs at least one option: Choice(a, b, ...)")
    _check_name(name)
    if labels is None:
        made = [_label(o, i) for i, o in enumerate(options)]
        counts = {lab: made.count(lab) for lab in made if type(lab) is str}
        # every option of a shared label gets its place (a str option too: searches run
        # with these labels resume by them)
        made = [f"{lab}#{i}" if type(lab) is str and counts[lab] > 1 else lab
                for i, lab in enumerate(made)]
    else:
        made = list(labels)
        if len(made) != len(options) or not all(isinstance(lab, str) and lab for lab in made):
            raise ConfigurationError(
                f"Choice: labels must be {len(options)} non-empty strs, one per option")
    odd = next((lab for lab in made if type(lab) is float and not math.isfinite(lab)), None)
    if odd is not None:  # params are JSON metadata: the first trial drawing it failed to save
        raise ConfigurationError(
            f"Choice: the option {odd!r} cannot be a parameter's value (a Repo's metadata is "
            f"JSON, which has no NaN or infinity); name the options: Choice({odd!r}, ..., "
            f"labels=['{odd!r}', ...])")
    if len({(type(lab), lab) for lab in made}) != len(made):
        raise ConfigurationError(
            f"Choice: the options {made} are not all different"
            + ("" if labels is not None else "; if they are, name them: Choice(..., "
               "labels=['a', 'b', ...])"))
    if len(set(made)) != len(made):  # 1 == 1.0 == True: one value to Optuna and to lookups
        raise ConfigurationError(
            f"Choice: the options {made} hold values Python counts as equal (1 == 1.0 == "
            "True), which a sampler cannot tell apart (the trial recorded as 1.0 built 1); "
            "name them: Choice(..., labels=['one', 'all', ...])")
    return ChoiceSpec(tuple(options), tuple(made), name)


class Choice(Marker):
    """One of the options: plain values or whole definitions (an optimizer, a network, a
    Trainable of another framework). Markers inside an option are sampled only when that option
    is chosen. ``labels`` name the options in params (default: the value itself, or the class
    name / first str argument of a definition); ``name`` overrides the derived name.

    >>> Choice("relu", "tanh").options.labels
    ('relu', 'tanh')
    """

    def __init__(self, *options: Any, labels: list[str] | None = None,
                 name: str | None = None) -> None:
        self.options = _choice(options, labels, name)

    @classmethod
    def spec(cls, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ChoiceSpec:
        labels = kwargs.get("labels")
        return _choice(tuple(args), labels, kwargs.get("name"))


def marker_spec(definition: Any) -> NumberSpec | ChoiceSpec | None:
    """The spec of a marker definition, or None when ``definition`` is not a marker."""
    from dryml._objectdef import ObjectDef

    if isinstance(definition, ObjectDef) and issubclass(definition.cls, Marker):
        return definition.cls.spec(definition.args, definition.kwargs)
    return None
