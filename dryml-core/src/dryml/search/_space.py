"""A search space: a definition with markers, its parameters by name, sampling and grids.

Walking the definition gives every marker a name from its path (``optimizer.lr``,
``network.layers[0][1].out_features``); markers inside a ``Choice`` option get the option's
label in their path (``torch.optimizer.lr``) and are sampled only when it is chosen.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from typing import Any

import attrs

from dryml._object import Object
from dryml._objectdef import ObjectDef
from dryml.errors import ConfigurationError
from dryml.search._markers import ChoiceSpec, Marker, NumberSpec, marker_spec

__all__ = ["Param", "Space", "Suggest"]

#: ``suggest(name, spec) -> value``: a Float/Int value, or a Choice's label.
Suggest = Callable[[str, "NumberSpec | ChoiceSpec"], Any]


@attrs.frozen
class Param:
    """One parameter of a space: its name, the marker's spec and the path it stands at;
    ``given`` lists the ``(choice name, label)`` conditions under which it is sampled."""

    name: str
    spec: NumberSpec | ChoiceSpec
    path: str
    given: tuple[tuple[str, Any], ...] = ()


def _arg_names(cls: type) -> list[str | None]:
    """Positional parameter names of ``cls.__init__`` (None past a ``*args``)."""
    try:
        init = getattr(cls, "__init__")  # noqa: B009 - mypy refuses cls.__init__
        params = list(inspect.signature(init).parameters.values())[1:]
    except (TypeError, ValueError):
        return []
    names: list[str | None] = []
    for p in params:
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            names.append(p.name)
        elif p.kind == p.VAR_POSITIONAL:
            names.append("*" + p.name)
            break
    return names


def _join(path: str, part: str) -> str:
    return f"{path}.{part}" if path else part


def _positional(cls: type, index: int, path: str) -> str:
    names = _arg_names(cls)
    if index < len(names) and not str(names[index]).startswith("*"):
        return _join(path, str(names[index]))
    if names and str(names[-1]).startswith("*"):
        return f"{_join(path, str(names[-1])[1:])}[{index - len(names) + 1}]"
    return f"{path}[{index}]"


class _Walker:
    """Walks a definition; ``on_marker(spec, name, path)`` gives each marker's replacement."""

    def __init__(self, on_marker: Callable[[NumberSpec | ChoiceSpec, str, str], Any]) -> None:
        self.on_marker = on_marker

    def walk(self, value: Any, path: str) -> Any:  # noqa: PLR0911 - one branch per kind
        spec = marker_spec(value)
        if spec is not None:
            return self.on_marker(spec, spec.name or path or "model", path)
        if isinstance(value, ObjectDef):
            new = ObjectDef.__new__(ObjectDef)
            new._cls, new._mut = value.cls, value.dry_mut
            new._args = tuple(self.walk(v, _positional(value.cls, i, path))
                              for i, v in enumerate(value.args))
            new._kwargs = {k: self.walk(v, _join(path, k)) for k, v in value.kwargs.items()}
            return new
        if type(value) is list:
            return [self.walk(v, f"{path}[{i}]") for i, v in enumerate(value)]
        if type(value) is tuple:
            return tuple(self.walk(v, f"{path}[{i}]") for i, v in enumerate(value))
        if type(value) is dict:
            return {k: self.walk(v, _join(path, k) if isinstance(k, str) else f"{path}[{k!r}]")
                    for k, v in value.items()}
        return value


def _option_path(path: str, label: Any) -> str:
    return _join(path, str(label))


def _unnamed_markers(value: Any) -> list[str]:
    """The paths of the markers in ``value`` that have no name."""
    found: list[str] = []

    def note(spec: Any, name: str, path: str) -> None:
        if spec.name is None:
            found.append(path or "top")

    _Walker(note).walk(value, "")
    return found


def _contains_marker(value: Any) -> bool:
    found: list[bool] = []

    def note(spec: Any, name: str, path: str) -> None:
        found.append(True)

    _Walker(note).walk(value, "")
    return bool(found)


def _normalize(space: Any) -> ObjectDef:
    if isinstance(space, Object):  # a built Trainable holding markers, or a marker
        space = ObjectDef.from_object(space)
    if not isinstance(space, ObjectDef):
        where = " (it holds markers)" if _contains_marker(_to_defs(space)) else ""
        raise ConfigurationError(
            f"a search space is an ObjectDef (or a Choice of ObjectDefs) with markers in its "
            f"arguments; got a {type(space).__name__}{where}: wrap it, e.g. "
            "ObjectDef(MyTrainable, lr=Float(1e-4, 1e-1, log=True))")
    space = space.copy()  # nested Objects (markers too) become definitions
    counts: dict[str, int] = {}
    _count_ids(space, counts)
    # ids that only make objects of one trial the same as another's: the root's (built from
    # an Object, every trial was that one object: DuplicateObjectError at trial 2) and any
    # used once (a nested Object built anew each run made a resume a "different space").
    # An id used in several places stays: it shares one object between them in each trial.
    unique = {i for i, n in counts.items() if n == 1} | (
        {space.dry_id} if space.dry_id is not None else set())
    space = _strip_ids(space, unique)
    assert isinstance(space, ObjectDef)
    spec = marker_spec(space)
    if isinstance(spec, NumberSpec):
        raise ConfigurationError(
            "a search space is a definition with markers inside it, not a bare "
            f"{space.cls.__name__} marker: put it in an ObjectDef's arguments")
    if isinstance(spec, ChoiceSpec):
        bad = [lab for lab, o in zip(spec.labels, spec.options, strict=True)
               if not isinstance(o, ObjectDef) or marker_spec(o) is not None]
        if bad:
            raise ConfigurationError(
                f"a Choice at the top of a search space chooses between definitions; the "
                f"options {bad} are not ObjectDefs (markers must be inside an ObjectDef)")
    return space


def _strip_ids(value: Any, ids: AbstractSet[str] = frozenset()) -> Any:
    """Markers lose the random ``dry_id`` an Object gets, so equal spaces compare equal; so do
    definitions whose id is in ``ids``."""
    if isinstance(value, ObjectDef):
        new = ObjectDef.__new__(ObjectDef)
        new._cls, new._mut = value.cls, value.dry_mut
        new._args = tuple(_strip_ids(v, ids) for v in value.args)
        new._kwargs = {k: _strip_ids(v, ids) for k, v in value.kwargs.items()
                       if not (k == "dry_id" and (issubclass(value.cls, Marker) or v in ids))}
        return new
    if type(value) in (list, tuple):
        return type(value)(_strip_ids(v, ids) for v in value)
    if type(value) is dict:
        return {k: _strip_ids(v, ids) for k, v in value.items()}
    return value


def _count_ids(value: Any, counts: dict[str, int]) -> None:
    """How many definitions in ``value`` carry each ``dry_id`` (markers' aside)."""
    if isinstance(value, ObjectDef):
        if value.dry_id is not None and not issubclass(value.cls, Marker):
            counts[value.dry_id] = counts.get(value.dry_id, 0) + 1
        for v in (*value.args, *value.kwargs.values()):
            _count_ids(v, counts)
    elif type(value) in (list, tuple):
        for v in value:
            _count_ids(v, counts)
    elif type(value) is dict:
        for v in value.values():
            _count_ids(v, counts)


def _to_defs(value: Any) -> Any:
    from dryml._values import copy_value

    try:
        return copy_value(value, lambda v: v if isinstance(v, ObjectDef)
                          else ObjectDef.from_object(v))
    except Exception:  # noqa: BLE001 - only used to improve an error message
        return value


class Space:
    """A definition with markers: its parameters, samples and grid.

    >>> from dryml import Object
    >>> from dryml.search import Choice, Float, Int
    >>> class Net(Object):
    ...     def __init__(self, width, act="relu"):
    ...         pass
    >>> class Model(Object):
    ...     def __init__(self, net, lr=0.1):
    ...         pass
    >>> space = Space(ObjectDef(Model, ObjectDef(Net, Int(8, 64, step=8)),
    ...                         lr=Float(1e-3, 1e-1, log=True)))
    >>> [p.name for p in space.params]
    ['net.width', 'lr']
    """

    def __init__(self, space: Any) -> None:
        self.definition = _normalize(space)
        self._check_shared()
        self.params = self._collect()

    def _check_shared(self) -> None:
        """A definition with an id used in several places shares one object in each trial;
        an unnamed marker inside it would be sampled once per place, and the places would no
        longer be one object (every trial would fail to build, blaming the ids). Name such
        markers, which ties the places to one value."""
        from dryml._objectdef import iter_defs

        # not inside a marker: an option of a Choice is built only when chosen, so two
        # options may use one id
        found = list(iter_defs(self.definition, skip=lambda d: marker_spec(d) is not None))
        seen: dict[str, int] = {}
        for nested in found:
            if nested.dry_id is not None:
                seen[nested.dry_id] = seen.get(nested.dry_id, 0) + 1
        for nested in found:
            if seen.get(nested.dry_id or "", 0) < 2:
                continue
            unnamed = _unnamed_markers(nested)
            if unnamed:
                raise ConfigurationError(
                    f"the definition {nested.dry_id!r} ({nested.cls.__qualname__}) is used in "
                    f"{seen[nested.dry_id or '']} places and holds unnamed markers "
                    f"({', '.join(unnamed)}): each place would be sampled on its own, and they "
                    "could no longer share one object. Name each marker (Float(..., "
                    "name='...'), Int(..., name=...), Choice(..., name=...)) so that every "
                    "place takes one value")

    # -- static view ------------------------------------------------------------------------
    def _collect(self) -> list[Param]:
        found: list[Param] = []

        def visit(value: Any, path: str, given: tuple[tuple[str, Any], ...]) -> None:
            def on_marker(spec: NumberSpec | ChoiceSpec, name: str, mpath: str) -> Any:
                found.append(Param(name, spec, mpath, given))
                if isinstance(spec, ChoiceSpec):
                    for label, option in zip(spec.labels, spec.options, strict=True):
                        visit(option, _option_path(mpath, label), (*given, (name, label)))
                return None

            _Walker(on_marker).walk(value, path)

        visit(self.definition, "", ())
        unique: dict[str, Param] = {}
        for p in found:
            first = unique.setdefault(p.name, p)
            # one explicit name on equal markers ties them: one value for both places
            if first is not p and (p.spec.name is None or p.spec != first.spec):
                raise ConfigurationError(
                    f"several markers are named {p.name!r} ({first.path or 'top'} and "
                    f"{p.path}); give them different names with Float(..., name='...') / "
                    "Int(..., name=...) / Choice(..., name=...), or give equal markers one "
                    "name to tie them to one value")
        return list(unique.values())

    @property
    def names(self) -> list[str]:
        """Every parameter name, in walking order."""
        return [p.name for p in self.params]

    # -- sampling ---------------------------------------------------------------------------
    def sample(self, suggest: Suggest) -> tuple[ObjectDef, dict[str, Any]]:
        """Walk the space asking ``suggest`` for each marker met (only the chosen option of a
        Choice is walked); returns the definition with the values in place and the params."""
        params: dict[str, Any] = {}

        def on_marker(spec: NumberSpec | ChoiceSpec, name: str, path: str) -> Any:
            value = params[name] if name in params else suggest(name, spec)
            params[name] = value
            if isinstance(spec, ChoiceSpec):
                if value not in spec.labels:
                    raise ConfigurationError(
                        f"{name}: {value!r} is not one of the options {list(spec.labels)}")
                option = spec.options[spec.labels.index(value)]
                return walker.walk(option, _option_path(path, value))
            return value

        walker = _Walker(on_marker)
        definition = walker.walk(self.definition, "")
        return definition, params

    def build_def(self, params: dict[str, Any]) -> ObjectDef:
        """The definition for known params (a resumed or replayed trial)."""

        def suggest(name: str, spec: NumberSpec | ChoiceSpec) -> Any:
            if name not in params:
                raise ConfigurationError(f"the params give no value for {name!r}")
            return params[name]

        return self.sample(suggest)[0]

    def grid(self) -> list[dict[str, Any]]:
        """Every combination of values (conditional parameters only under their option)."""
        out: list[dict[str, Any]] = []

        class _Branch(Exception):  # noqa: N818 - internal control flow
            def __init__(self, name: str, values: list[Any]) -> None:
                self.name, self.values = name, values

        def explore(fixed: dict[str, Any]) -> None:
            def suggest(name: str, spec: NumberSpec | ChoiceSpec) -> Any:
                if name in fixed:
                    return fixed[name]
                raise _Branch(name, spec.grid_values(name))

            try:
                _, params = self.sample(suggest)
            except _Branch as branch:
                for value in branch.values:
                    explore({**fixed, branch.name: value})
                return
            out.append(params)

        explore({})
        return out

    def check_grid(self) -> None:
        """ConfigurationError when a parameter cannot be enumerated (a Float without step)."""
        for p in self.params:
            p.spec.grid_values(p.name)

    # -- plain JSON -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON; :meth:`from_dict` reads it back."""
        return {"space": self.definition.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any], trust: Iterable[str] = ()) -> Space:
        """Read :meth:`to_dict` output (classes resolve as ``ObjectDef.from_dict`` does)."""
        return cls(ObjectDef.from_dict(data["space"], trust=trust))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Space) and self.definition == other.definition

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Space({', '.join(self.names)})"
