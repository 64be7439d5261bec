"""``Selector``: which objects a query wants, tested on live objects or on stored definitions."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import attrs

from dryml._encoding import TAG, Decoder
from dryml._object import Object
from dryml._objectdef import ObjectDef
from dryml._trust import TrustPolicy, class_path, static_attribute
from dryml.errors import ArgumentError
from dryml.repo._defjson import category_digest, class_mros
from dryml.repo._match import MatchContext, Matcher, to_matcher

__all__ = ["Cond", "LiveContext", "Selector", "key_cond"]


class LiveContext:
    """Match context for live values: MROs come from the classes themselves."""

    def __init__(self, mros: dict[str, list[str]], trust: TrustPolicy | None = None) -> None:
        self.mros = mros
        self.decoder = Decoder(trust or TrustPolicy())

    @classmethod
    def for_value(cls, value: Any) -> LiveContext:
        """A context knowing every class that ``value`` names."""
        if isinstance(value, Object):
            value = value.definition()
        holder = value if isinstance(value, ObjectDef) else None
        return cls(class_mros(holder) if holder is not None else _value_mros(value))

    def mro(self, path: str) -> tuple[str, ...]:
        """Known MRO, else the MRO of an Object class already loaded, else just ``path``."""
        if path not in self.mros:
            self.mros[path] = known_mro(path) or [path]
        return tuple(self.mros[path])

    def decode(self, value: Any) -> Any:
        """Decode a stored JSON value (classes resolve under the default trust rules)."""
        return self.decoder.decode(value)


def known_mro(path: str) -> list[str] | None:
    """The MRO of a class this process already has (found without importing), else None."""
    import sys

    from dryml._object import class_registry

    cls: Any = class_registry().get(path)
    if cls is None:
        module, _, qualname = path.partition(":")
        cls = sys.modules.get(module)
        # the path comes from a file or an index: looked up without running any code
        cls = static_attribute(cls, qualname) if cls is not None else None
    if isinstance(cls, type):
        return [class_path(k) for k in cls.__mro__ if k is not object]
    return None


def _value_mros(value: Any) -> dict[str, list[str]]:
    if isinstance(value, type):
        return {class_path(value): [class_path(k) for k in value.__mro__ if k is not object]}
    return {}


class Selector(Matcher):
    """Selects objects by class (subclasses too) and constructor arguments.

    ``Selector(cls, args=None, kwargs=None)`` is callable on an Object or an ObjectDef and
    returns a bool. ``cls`` matches subclasses (a class, or a class name / ``"module:Name"``
    string); ``args`` match the first positional arguments; ``kwargs`` match as a subset.
    Values may be plain values (equality), nested Selectors (for nested Objects), classes
    (subclass test), callables (predicates on the value), ``In``, ``Range`` and ``Not``.
    Selectors combine with ``|`` and ``&``.

    >>> from dryml import Object
    >>> class Model(Object):
    ...     def __init__(self, layers, lr=0.1):
    ...         pass
    >>> Selector(Model, kwargs={"lr": Range(0.01, 0.5)})(Model(3, lr=0.1))
    True
    >>> Selector(Model, args=(In(1, 2),))(Model(3))
    False
    """

    def __init__(self, cls: type | str | Callable[[type], Any] | None = None, args: Any = None,
                 kwargs: dict[str, Any] | None = None) -> None:
        if cls is not None and not isinstance(cls, (type, str)) and not callable(cls):
            raise ArgumentError(
                f"Selector cls must be a class, a class name or None, got {cls!r}")
        if args is not None and not isinstance(args, (list, tuple)):
            # ("adam") is a string, not a tuple: its letters would be the arguments
            raise ArgumentError(
                f"Selector args must be a tuple or list of the positional arguments, got "
                f"{args!r}" + (f" (for one argument write ({args!r},))"
                               if not isinstance(args, dict) else ""))
        if kwargs is not None and not isinstance(kwargs, dict):
            raise ArgumentError(f"Selector kwargs must be a dict of keyword arguments, got "
                                f"{kwargs!r}")
        self.cls = cls
        self.args = [to_matcher(v) for v in (args or ())]
        self.kwargs = {k: to_matcher(v) for k, v in (kwargs or {}).items()}
        self._exact = False
        self._mut = False  # from_def only: the definition's dry_mut, which must match too
        self._digest: str | None = None

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_def(cls, definition: ObjectDef | Object) -> Selector:
        """Every object built from ``definition`` (an ObjectDef or Object), whatever its
        ``dry_id`` and the ``dry_id`` s of its nested objects: "all runs of this
        configuration". Classes match exactly and no extra arguments are allowed."""
        if isinstance(definition, Object):
            definition = definition.definition()
        if not isinstance(definition, ObjectDef):
            raise ArgumentError(f"Selector.from_def needs an ObjectDef or Object, got "
                                f"{definition!r}")
        return cls._from_json(definition.to_dict(), definition.cls)

    @classmethod
    def _from_json(cls, data: dict[str, Any], klass: type | None) -> Selector:
        sel = cls.__new__(cls)
        sel.cls = klass if klass is not None else str(data.get("cls"))
        sel.args = [_def_value_matcher(v) for v in data.get("dry_args", [])]
        sel.kwargs = {k: _def_value_matcher(v) for k, v in data.get("dry_kwargs", {}).items()
                      if k != "dry_id"}
        sel._exact = True
        sel._mut = data.get("dry_mut") is True
        sel._digest = category_digest(data)
        return sel

    # -- matching -----------------------------------------------------------------------------
    def __call__(self, value: Any) -> bool:
        """Whether ``value`` (an Object or ObjectDef) is selected; False for anything else."""
        if isinstance(value, Object):
            value = value.definition()
        if not isinstance(value, ObjectDef):
            return False
        return self.match_definition(value.to_dict(), LiveContext(class_mros(value)))

    def match(self, value: Any, ctx: MatchContext) -> bool:
        """Match a nested definition (tagged ``def``) inside a stored value."""
        if not (isinstance(value, dict) and value.get(TAG) == "def"):
            return False
        return self.match_definition(value, ctx)

    def match_definition(self, data: dict[str, Any], ctx: MatchContext) -> bool:
        """Match a definition's JSON (the form of :meth:`ObjectDef.to_dict`)."""
        path = data.get("cls")
        if not isinstance(path, str) or not self._class_ok(path, ctx):
            return False
        args, kwargs = data.get("dry_args", []), data.get("dry_kwargs", {})
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            return False
        if len(args) < len(self.args) or (self._exact and len(args) != len(self.args)):
            return False
        if self._exact and (set(kwargs) - {"dry_id"} != set(self.kwargs)
                            or (data.get("dry_mut") is True) != self._mut):
            return False
        if not all(m.match(v, ctx) for m, v in zip(self.args, args, strict=False)):
            return False
        return all(k in kwargs and m.match(kwargs[k], ctx) for k, m in self.kwargs.items())

    def _class_ok(self, path: str, ctx: MatchContext) -> bool:
        want = self.cls
        if want is None:
            return True
        if isinstance(want, type):
            target = class_path(want)
            return path == target if self._exact else target in ctx.mro(path)
        if isinstance(want, str):
            return path == want if self._exact else any(
                _name_matches(want, p) for p in ctx.mro(path))
        try:
            return bool(want(ctx.decode({TAG: "class", "path": path})))
        except Exception:  # noqa: BLE001 - an unresolvable class fails the predicate
            return False

    # -- SQL ----------------------------------------------------------------------------------
    def conds(self) -> tuple[list[Cond], bool]:
        """Conditions on the index's ``objects o`` rows, all of which must hold, and whether
        they are exact (no Python check needed). No conditions: every row is a candidate."""
        if self._digest is not None:
            return [Cond("o.cat = ?", "o.cat = ?", [self._digest], 0)], True
        conds: list[Cond] = []
        exact = True
        if isinstance(self.cls, type):
            conds.append(_class_cond("base = ?", [class_path(self.cls)]))
        elif isinstance(self.cls, str):
            conds.append(_name_cond(self.cls, self._exact))
        elif self.cls is not None:
            exact = False
        keyed = [(f"a.{i}", m) for i, m in enumerate(self.args)]
        keyed += [(f"k.{k}", m) for k, m in self.kwargs.items()]
        for key, matcher in keyed:
            cond = key_cond(key, matcher)
            if cond is None:
                exact = False
                cond = _kv_cond(key, "1", [], 3)
            conds.append(cond)
        return conds, exact

    # -- combination --------------------------------------------------------------------------
    def __or__(self, other: Selector) -> Selector:
        return _Combined("or", [self, _check_selector(other)])

    def __and__(self, other: Selector) -> Selector:
        return _Combined("and", [self, _check_selector(other)])

    def __repr__(self) -> str:
        parts = [self.cls.__qualname__ if isinstance(self.cls, type) else repr(self.cls)]
        if self.args:
            parts.append(f"args={self.args!r}")
        if self.kwargs:
            parts.append(f"kwargs={self.kwargs!r}")
        name = "Selector.from_def" if self._exact else "Selector"
        return f"{name}({', '.join(parts)})"


def _name_matches(name: str, path: str) -> bool:
    """``"Model"``, ``"pkg.mod.Model"`` and ``"pkg.mod:Model"`` all name ``pkg.mod:Model``
    (and ``"Inner"`` names ``pkg.mod:Outer.Inner``)."""
    if ":" in name:
        return path == name
    module, _, qualname = path.partition(":")
    return name in (qualname, f"{module}.{qualname}") or qualname.endswith("." + name)


@attrs.frozen
class Cond:
    """One SQL condition on ``objects o``: ``drive`` may use an index to find the rows (put it
    first), ``check`` tests one row cheaply; ``rank`` orders how selective it usually is."""

    drive: str
    check: str
    params: list[Any]
    rank: int


def _class_cond(where: str, params: list[Any]) -> Cond:
    sub = f"o.cls IN (SELECT path FROM class_bases WHERE {where})"
    return Cond(sub, "+" + sub, params, 5)


def _kv_cond(key: str, cond: str, params: list[Any], rank: int) -> Cond:
    # Bare t and value name the kv row of the subquery (objects has no such columns).
    return Cond(f"o.id IN (SELECT id FROM kv WHERE key = ? AND {cond})",
                f"EXISTS (SELECT 1 FROM kv k WHERE k.id = o.id AND k.key = ? AND {cond})",
                [key, *params], rank)


def _name_cond(name: str, exact: bool) -> Cond:
    """SQL twin of :func:`_name_matches` over ``class_bases`` (GLOB is case-sensitive)."""
    if exact:
        return Cond("o.cls = ?", "+o.cls = ?", [name], 5)
    if ":" in name:
        return _class_cond("base = ?", [name])
    splits = [f"{name[:i]}:{name[i + 1:]}" for i, ch in enumerate(name) if ch == "."]
    conds = ["base GLOB ?", "base GLOB ?"] + ["base = ?"] * len(splits)
    # the name is matched literally (as _name_matches does): '*', '?' and '[' escaped
    literal = re.sub(r"([*?\[])", r"[\1]", name)
    return _class_cond(" OR ".join(conds), [f"*:{literal}", f"*.{literal}", *splits])


def key_cond(key: str, matcher: Matcher) -> Cond | None:
    """An exact condition for one kv key, or None when the matcher does not compile."""
    from dryml.repo._match import In, Range, _Eq

    cond = matcher.kv_sql()
    if cond is None:
        return None
    positive = isinstance(matcher, _Eq) or (
        isinstance(matcher, In) and all(isinstance(m, _Eq) for m in matcher.options))
    rank = 0 if positive else 1 if isinstance(matcher, Range) else 2
    return _kv_cond(key, cond[0], cond[1], rank)


def opaque(conds: list[Cond], joiner: str) -> Cond:
    """Conditions joined by AND / OR into one (which does not drive: rank 8)."""
    sql = "(" + f" {joiner} ".join(f"({c.drive})" for c in conds) + ")"
    return Cond(sql, sql, [p for c in conds for p in c.params], 8)


def _def_value_matcher(value: Any) -> Matcher:
    """from_def: nested definitions match by configuration (ids ignored), the rest by value."""
    from dryml.repo._match import _Eq

    if isinstance(value, dict) and value.get(TAG) == "def":
        return Selector._from_json(value, None)
    if isinstance(value, list):
        return _JsonSeq([_def_value_matcher(v) for v in value], None)
    if isinstance(value, dict) and value.get(TAG) == "tuple":
        return _JsonSeq([_def_value_matcher(v) for v in value.get("items", [])], "tuple")
    if isinstance(value, dict) and TAG not in value:
        return _JsonMap({k: _def_value_matcher(v) for k, v in value.items()})
    if isinstance(value, dict) and value.get(TAG) == "dict" and isinstance(
            value.get("items"), list) and all(
            isinstance(i, list) and len(i) == 2 for i in value["items"]):
        return _JsonPairs([(_def_value_matcher(k), _def_value_matcher(v))
                           for k, v in value["items"]])
    eq = _Eq.__new__(_Eq)
    eq.raw = eq.encoded = value
    return eq


class _JsonSeq(Matcher):
    def __init__(self, items: list[Matcher], tag: str | None) -> None:
        self.items, self.tag = items, tag

    def match(self, value: Any, ctx: MatchContext) -> bool:
        if self.tag is not None:
            if not (isinstance(value, dict) and value.get(TAG) == self.tag):
                return False
            value = value.get("items")
        return isinstance(value, list) and len(value) == len(self.items) and all(
            m.match(v, ctx) for m, v in zip(self.items, value, strict=False))


class _JsonMap(Matcher):
    def __init__(self, items: dict[str, Matcher]) -> None:
        self.items = items

    def match(self, value: Any, ctx: MatchContext) -> bool:
        return (isinstance(value, dict) and TAG not in value
                and value.keys() == self.items.keys()
                and all(m.match(value[k], ctx) for k, m in self.items.items()))


class _JsonPairs(Matcher):
    """A dict with non-string keys (stored as key/value pairs), matched in any order, as
    ``ObjectDef ==`` compares dicts."""

    def __init__(self, pairs: list[tuple[Matcher, Matcher]]) -> None:
        self.pairs = pairs

    def match(self, value: Any, ctx: MatchContext) -> bool:
        if not (isinstance(value, dict) and value.get(TAG) == "dict"):
            return False
        items = value.get("items")
        if not isinstance(items, list) or len(items) != len(self.pairs):
            return False
        left = [i for i in items if isinstance(i, list) and len(i) == 2]
        for key, item in self.pairs:
            found = next((i for i in left if key.match(i[0], ctx) and item.match(i[1], ctx)),
                         None)
            if found is None:
                return False
            left.remove(found)
        return True


def _check_selector(other: Any) -> Selector:
    if not isinstance(other, Selector):
        raise ArgumentError(f"a Selector combines only with another Selector, got {other!r}")
    return other


class _Combined(Selector):
    """``a | b`` or ``a & b``."""

    def __init__(self, op: str, parts: list[Selector]) -> None:
        self.op = op
        self.parts = parts
        self.cls, self.args, self.kwargs = None, [], {}
        self._exact, self._mut, self._digest = False, False, None

    def match_definition(self, data: dict[str, Any], ctx: MatchContext) -> bool:
        test = any if self.op == "or" else all
        return test(p.match_definition(data, ctx) for p in self.parts)

    def conds(self) -> tuple[list[Cond], bool]:
        compiled = [p.conds() for p in self.parts]
        exact = all(e for _, e in compiled)
        if self.op == "and":
            return [c for cs, _ in compiled for c in cs], exact
        if any(not cs for cs, _ in compiled):  # one part takes every row
            return [], exact
        return [opaque([opaque(cs, "AND") for cs, _ in compiled], "OR")], exact

    def __repr__(self) -> str:
        return "(" + f" {'|' if self.op == 'or' else '&'} ".join(map(repr, self.parts)) + ")"
