"""Value matchers: plain values, classes, predicates, ``In``, ``Range``, ``Not``.

A matcher tests one argument value as stored in a definition's JSON (see ``_defjson``), so the
same code answers a live ``Selector(...)(obj)`` call and a repository query. Where it can, a
matcher also compiles to an SQL condition over one row of the index's ``kv`` table (columns
``t``: type code, ``value``), which lets the repository filter without Python.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import numpy as np

from dryml._encoding import TAG, Encoder
from dryml._metadata import numpy_as_json
from dryml._trust import class_path
from dryml.errors import ArgumentError, ConfigurationError, FormatError

__all__ = ["UNREADABLE", "AllOf", "In", "MatchContext", "Matcher", "Not", "Range",
           "decoded_for_predicate", "to_matcher"]

SQL = tuple[str, list[Any]]


class MatchContext(Protocol):
    """What matching needs besides the JSON: class MROs and decoding for predicates."""

    def mro(self, path: str) -> tuple[str, ...]:
        """Class paths of the class at ``path`` and its bases (just itself when unknown)."""

    def decode(self, value: Any) -> Any:
        """A stored JSON value as a Python value (raises DrymlError when it cannot)."""


class Matcher:
    """Base of everything that can stand for an argument value in a :class:`Selector`."""

    def match(self, value: Any, ctx: MatchContext) -> bool:
        """Whether the stored JSON ``value`` matches."""
        raise NotImplementedError

    def kv_sql(self) -> SQL | None:
        """An exact SQL condition on a ``kv`` row (``t``, ``value``), or None."""
        return None

    def for_metadata(self) -> Matcher:
        """This matcher for metadata values, which are plain JSON (as ``json.loads`` gives
        them), not definition JSON: no tagged values, tuples as lists, no decoding."""
        return self

    def __call__(self, value: Any) -> bool:
        """Test a live Python value (plain values, Objects and ObjectDefs)."""
        from dryml.repo._selector import LiveContext

        return self.match(Encoder().encode(value), LiveContext.for_value(value))


class Anything(Matcher):
    """Any value, never decoded: stands for the arguments before the one a query is about
    (a predicate would have to rebuild each one, importing its class)."""

    def match(self, value: Any, ctx: MatchContext) -> bool:
        """Always."""
        return True


def _scalar(value: Any, tagged: bool = True) -> tuple[str, Any] | None:
    from dryml.repo._defjson import _kind

    return _kind(value, tagged)


def plain_json(value: Any) -> Any:
    """``value`` as metadata keeps it: what ``json.loads(json.dumps(value))`` gives, numpy
    scalars as Python numbers (otherwise ``where={"shape": (3, 4)}``, ``{5: "x"}``,
    ``np.float64(0.75)`` and a value read back from metadata holding ``"__dry__"`` would be
    encoded as constructor arguments and match nothing)."""
    import json

    try:
        return json.loads(json.dumps(value, default=numpy_as_json))
    except (TypeError, ValueError, RecursionError) as exc:
        raise ArgumentError(f"where= values are compared with metadata, which is plain JSON: "
                            f"{value!r} is not ({exc})") from None


def json_equal(a: Any, b: Any) -> bool:
    """Equality of two JSON values that, like ``ObjectDef ==``, tells 1, 1.0 and True apart."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=False))
    if isinstance(a, dict):
        if a.get(TAG) == "dict" and b.get(TAG) == "dict" and a.keys() == b.keys():
            return _pairs_equal(a.get("items"), b.get("items"))
        if a.get(TAG) == "codec" and b.get(TAG) == "codec":
            from dryml.repo._defjson import canonical_numpy  # (-0.0 and NaNs as ObjectDef ==)

            a, b = canonical_numpy(a), canonical_numpy(b)
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return bool(a == b)


def _pairs_equal(a: Any, b: Any) -> bool:
    """The items of two dicts with non-string keys, in any order (as ``dict ==``)."""
    if not (isinstance(a, list) and isinstance(b, list)) or len(a) != len(b):
        return json_equal(a, b)
    left = list(b)
    for item in a:
        found = next((i for i, other in enumerate(left) if json_equal(item, other)), None)
        if found is None:
            return False
        del left[found]
    return True


#: What :func:`decoded_for_predicate` gives for a value it cannot decode here.
UNREADABLE = object()


def decoded_for_predicate(decode: Callable[[], Any], what: str) -> Any:
    """What ``decode()`` gives a predicate, or ``UNREADABLE`` when it cannot be decoded here
    (its class gone from its module, a damaged index copy: ``repo check`` reports those). A
    class the repository does not trust is an error that says what to do: the predicate had
    silently matched nothing in a process that had not imported the class."""
    from dryml.errors import DrymlError, UntrustedClassError

    try:
        return decode()
    except UntrustedClassError as exc:
        raise UntrustedClassError(
            f"{exc} (a predicate is called with {what}, which resolves its classes: pass "
            "trust=[...] to Repo(...), or match it with a Selector, which imports nothing)"
        ) from None
    except DrymlError:
        return UNREADABLE


class _Eq(Matcher):
    def __init__(self, value: Any) -> None:
        self.raw = value
        try:
            self.encoded = Encoder().encode(value)
        except FormatError as exc:  # no codec: no object can have been built with it
            raise ArgumentError(f"{value!r} cannot be a query value: {exc}") from None

    def match(self, value: Any, ctx: MatchContext) -> bool:
        return json_equal(value, self.encoded)

    def scalar(self) -> tuple[str, Any] | None:
        """The index's (type code, value) of the value, or None when it is no scalar or one
        the index cannot compare exactly (a numpy number: its dtype is compared in Python)."""
        kind = _scalar(self.encoded)
        return None if kind is not None and kind[0] == "N" else kind

    def kv_sql(self) -> SQL | None:
        kind = self.scalar()
        if kind is None or kind[0] == "I":  # an integer beyond 64 bits: equal in Python only
            return None
        if kind[0] == "n":
            return "t = 'n'", []
        return "(t = ? AND value = ?)", list(kind)

    def for_metadata(self) -> Matcher:
        return _PlainEq(self.raw)

    def __repr__(self) -> str:
        return repr(self.raw)


class _PlainEq(_Eq):
    """Equality with a metadata value: plain JSON on both sides."""

    def __init__(self, value: Any) -> None:  # not _Eq's: encoded as metadata is kept
        self.raw = value
        self.encoded = plain_json(value)

    def scalar(self) -> tuple[str, Any] | None:
        return _scalar(self.encoded, tagged=False)

    def for_metadata(self) -> Matcher:
        return self


class _IsClass(Matcher):
    """A class as a value matches a class value that is it or a subclass (whole MRO); against
    a nested object it matches when the object is an instance."""

    def __init__(self, cls: type) -> None:
        self.cls = cls
        self.path = class_path(cls)

    def match(self, value: Any, ctx: MatchContext) -> bool:
        if isinstance(value, dict) and value.get(TAG) in ("class", "def"):
            path = value.get("path") if value.get(TAG) == "class" else value.get("cls")
            return isinstance(path, str) and self.path in ctx.mro(path)
        return False

    def __repr__(self) -> str:
        return self.cls.__qualname__


class _Pred(Matcher):
    def __init__(self, fn: Callable[[Any], Any], plain: bool = False) -> None:
        self.fn, self.plain = fn, plain

    def match(self, value: Any, ctx: MatchContext) -> bool:
        if self.plain:  # a metadata value: given as it is kept
            return bool(self.fn(value))
        decoded = decoded_for_predicate(lambda: ctx.decode(value), "the decoded value")
        return decoded is not UNREADABLE and bool(self.fn(decoded))

    def for_metadata(self) -> Matcher:
        return _Pred(self.fn, plain=True)

    def __repr__(self) -> str:
        return getattr(self.fn, "__name__", repr(self.fn))


class _Seq(Matcher):
    def __init__(self, items: list[Any] | tuple[Any, ...]) -> None:
        self.is_tuple = isinstance(items, tuple)
        self.items = [to_matcher(v) for v in items]

    def match(self, value: Any, ctx: MatchContext) -> bool:
        if self.is_tuple:
            if not (isinstance(value, dict) and value.get(TAG) == "tuple"):
                return False
            value = value.get("items")
        if not isinstance(value, list) or len(value) != len(self.items):
            return False
        return all(m.match(v, ctx) for m, v in zip(self.items, value, strict=False))

    def for_metadata(self) -> Matcher:
        plain = _Seq([])
        plain.items = [m.for_metadata() for m in self.items]  # a tuple is a list there
        return plain

    def __repr__(self) -> str:
        inner = ", ".join(map(repr, self.items))
        return f"({inner},)" if self.is_tuple else f"[{inner}]"


class _Map(Matcher):
    def __init__(self, items: dict[str, Any]) -> None:
        self.items = {k: to_matcher(v) for k, v in items.items()}

    def match(self, value: Any, ctx: MatchContext) -> bool:
        if not isinstance(value, dict) or TAG in value or value.keys() != self.items.keys():
            return False
        return all(m.match(value[k], ctx) for k, m in self.items.items())

    def for_metadata(self) -> Matcher:
        plain = _Map({})
        plain.items = {k: m.for_metadata() for k, m in self.items.items()}
        return plain

    def __repr__(self) -> str:
        return repr(self.items)


class In(Matcher):
    """Matches when the value matches any of ``values``: ``In(1, 2, 3)`` or ``In([1, 2])``.

    >>> In("adam", "sgd")("sgd"), In([1, 2])(3)
    (True, False)
    """

    def __init__(self, *values: Any) -> None:
        if len(values) == 1 and isinstance(values[0], (list, tuple, set, frozenset, range)):
            values = tuple(values[0])
        self.options = [to_matcher(v) for v in values]

    def match(self, value: Any, ctx: MatchContext) -> bool:
        return any(m.match(value, ctx) for m in self.options)

    def kv_sql(self) -> SQL | None:
        scalars = [m.scalar() if isinstance(m, _Eq) else None for m in self.options]
        if self.options and all(k is not None and k[0] != "I" for k in scalars):
            # value IN (...) per type code, so that the (key, value) index is used.
            groups: dict[str, list[Any]] = {}
            for kind in scalars:
                groups.setdefault(kind[0], []).append(kind[1])  # type: ignore[index]
            conds = [("t = 'n'", []) if t == "n" else
                     (f"(t = ? AND value IN ({', '.join('?' * len(vs))}))", [t, *vs])
                     for t, vs in groups.items()]
            return ("(" + " OR ".join(c for c, _ in conds) + ")",
                    [p for _, ps in conds for p in ps])
        parts = [m.kv_sql() for m in self.options]
        if not parts:
            return "0", []
        if any(p is None for p in parts):
            return None
        return ("(" + " OR ".join(p[0] for p in parts) + ")",  # type: ignore[index]
                [x for p in parts for x in p[1]])  # type: ignore[index]

    def for_metadata(self) -> Matcher:
        plain = In()
        plain.options = [m.for_metadata() for m in self.options]
        return plain

    def __repr__(self) -> str:
        return f"In({', '.join(map(repr, self.options))})"


class Range(Matcher):
    """Matches numbers (or strings) in the closed interval ``[lo, hi]``; None leaves a side
    open. ``inclusive`` says which bounds belong to it, as in pandas' ``between``: "both"
    (the default), "left" (``lo``), "right" (``hi``) or "neither". Booleans never match;
    numpy integers and floats (``np.float64(0.01)``) are numbers.

    >>> Range(0.5, 1.0)(0.75), Range(lo=10)(3), Range(hi=10)(3)
    (True, False, True)
    >>> Range(lo=1, inclusive="neither")(1.0), Range(lo=1, inclusive="neither")(1.5)
    (False, True)
    """

    def __init__(self, lo: Any = None, hi: Any = None, *, inclusive: str = "both") -> None:
        if inclusive not in _INCLUSIVE:
            raise ConfigurationError(f"Range inclusive= is one of "
                                     f"{', '.join(map(repr, _INCLUSIVE))}, got {inclusive!r}")
        self.inclusive = inclusive
        self.lo_op, self.hi_op = _INCLUSIVE[inclusive]
        if lo is None and hi is None:
            raise ConfigurationError("Range needs lo, hi or both")
        lo, hi = (b.item() if isinstance(b, np.generic) else b for b in (lo, hi))
        for bound in (lo, hi):
            if bound is not None and (isinstance(bound, bool) or not isinstance(
                    bound, (int, float, str))):
                raise ConfigurationError(f"Range bounds are numbers or strings, got "
                                         f"{bound!r}")
            if isinstance(bound, float) and bound != bound:
                raise ConfigurationError("a Range bound cannot be NaN (nothing compares with "
                                         "it)")
        if lo is not None and hi is not None and isinstance(lo, str) != isinstance(hi, str):
            raise ConfigurationError(f"Range({lo!r}, {hi!r}): the bounds must be both numbers "
                                     "or both strings")
        self.lo, self.hi = lo, hi
        self.text = isinstance(lo, str) or isinstance(hi, str)
        self.plain = False

    def for_metadata(self) -> Matcher:
        plain = Range(self.lo, self.hi, inclusive=self.inclusive)
        plain.plain = True  # a tagged float there is a dict, not a number
        return plain

    def match(self, value: Any, ctx: MatchContext) -> bool:
        if not self.plain and isinstance(value, dict):
            from dryml.repo._defjson import _INFINITIES, numpy_number

            value = (_INFINITIES.get(str(value.get("value"))) if value.get(TAG) == "float"
                     else numpy_number(value))
        if value is None or isinstance(value, bool):
            return False
        if self.text != isinstance(value, str) or not isinstance(value, (int, float, str)):
            return False
        return ((self.lo is None or _COMPARE[self.lo_op](value, self.lo))
                and (self.hi is None or _COMPARE[self.hi_op](self.hi, value)))

    def kv_sql(self) -> SQL | None:
        if not all(_exact_bound(b) for b in (self.lo, self.hi)):
            return None  # compared in Python (SQLite holds 64-bit integers at most)
        conds = ["t = 's'" if self.text else "t IN ('i', 'f', 'I', 'N')"]
        params: list[Any] = []
        if self.lo is not None:
            conds.append(f"value {self.lo_op} ?")
            params.append(self.lo)
        if self.hi is not None:
            conds.append(f"? {self.hi_op} value")
            params.append(self.hi)
        return "(" + " AND ".join(conds) + ")", params

    def __repr__(self) -> str:
        more = "" if self.inclusive == "both" else f", inclusive={self.inclusive!r}"
        return f"Range({self.lo!r}, {self.hi!r}{more})"


#: Range's ``inclusive`` choices: the comparison of a value with ``lo``, and of ``hi`` with it.
_INCLUSIVE = {"both": (">=", ">="), "left": (">=", ">"), "right": (">", ">="),
              "neither": (">", ">")}
_COMPARE = {">=": operator.ge, ">": operator.gt}


def _exact_bound(bound: Any) -> bool:
    """Whether SQLite compares ``bound`` exactly with every number the index holds: strings,
    infinities, and numbers within 2**53 (integers beyond 64 bits are held as the nearest
    double, type ``I``, which differs from them by less than any such bound's distance)."""
    if bound is None or isinstance(bound, str):
        return True
    return abs(bound) < 2**53 or (isinstance(bound, float) and abs(bound) == float("inf"))


class Not(Matcher):
    """Matches when ``inner`` (a value, a matcher or a Selector) does not.

    >>> Not(In(1, 2))(3)
    True
    """

    def __init__(self, inner: Any) -> None:
        self.inner = to_matcher(inner)

    def match(self, value: Any, ctx: MatchContext) -> bool:
        return not self.inner.match(value, ctx)

    def kv_sql(self) -> SQL | None:
        inner = self.inner.kv_sql()
        return None if inner is None else (f"NOT {inner[0]}", inner[1])

    def for_metadata(self) -> Matcher:
        return Not(self.inner.for_metadata())

    def __repr__(self) -> str:
        return f"Not({self.inner!r})"


class AllOf(Matcher):
    """Matches when every one of ``matchers`` does (used by the command line's ``>`` and
    ``<``: ``AllOf(Range(lo=1), Not(1))``)."""

    def __init__(self, *matchers: Any) -> None:
        self.parts = [to_matcher(m) for m in matchers]

    def match(self, value: Any, ctx: MatchContext) -> bool:
        return all(m.match(value, ctx) for m in self.parts)

    def kv_sql(self) -> SQL | None:
        parts = [m.kv_sql() for m in self.parts]
        if any(p is None for p in parts) or not parts:
            return None
        return ("(" + " AND ".join(p[0] for p in parts) + ")",  # type: ignore[index]
                [x for p in parts for x in p[1]])  # type: ignore[index]

    def for_metadata(self) -> Matcher:
        return AllOf(*(m.for_metadata() for m in self.parts))

    def __repr__(self) -> str:
        return f"AllOf({', '.join(map(repr, self.parts))})"


def to_matcher(value: Any) -> Matcher:
    """The matcher a Selector uses for an argument value given by the caller."""
    from dryml._object import Object
    from dryml._objectdef import ObjectDef

    if isinstance(value, Matcher):
        return value
    if isinstance(value, type):
        return _IsClass(value)
    if isinstance(value, (Object, ObjectDef)):
        return _Eq(value)
    if isinstance(value, (list, tuple)) and _has_matcher(value):
        return _Seq(value)
    if isinstance(value, dict) and _has_matcher(value.values()) and all(
            isinstance(k, str) for k in value) and TAG not in value:
        return _Map(value)
    if callable(value):
        return _Pred(value)
    return _Eq(value)


def _has_matcher(values: Iterable[Any]) -> bool:
    from dryml._object import Object
    from dryml._objectdef import ObjectDef

    for value in values:
        if isinstance(value, (Matcher, type)) or (
                callable(value) and not isinstance(value, (Object, ObjectDef))):
            return True
        if isinstance(value, (list, tuple)) and _has_matcher(value):
            return True
        if isinstance(value, dict) and _has_matcher(value.values()):
            return True
    return False
