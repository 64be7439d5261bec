"""Turning ``get(selector, where=, order_by=, descending=, limit=)`` into SQL (+ Python)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import attrs

from dryml._trust import TrustPolicy
from dryml.errors import ArgumentError
from dryml.repo._match import SQL, MatchContext, Matcher, to_matcher
from dryml.repo._selector import Cond, Selector, key_cond

__all__ = ["COLUMN_KEYS", "FULL_COLUMNS", "IndexContext", "Plan", "entry", "metadata_value",
           "plan_query"]

#: ``order_by`` names that sort by an index column rather than by a metadata key.
COLUMN_KEYS = {"created": "o.created", "size": "o.size", "dry_id": "o.id", "id": "o.id",
               "class": "o.cls", "file": "o.file"}
_MISSING = object()


class _Present(Matcher):
    """Any value: the key only has to be there (Python checks the rest)."""

    def kv_sql(self) -> SQL | None:
        return "1", []


_ANY = _Present()


@attrs.define
class Plan:
    """SQL for the candidates, and the Python check (if any) that finishes the query."""

    queries: list[SQL]
    python: Callable[[dict[str, Any], dict[str, Any], MatchContext], bool] | None
    limit: int | None
    #: The last query only adds rows after the others: skip it when they filled the limit.
    last_fills: bool = False


def metadata_value(metadata: Any, key: str) -> Any:
    """The value at dotted ``key`` in ``metadata`` (``_MISSING`` when absent). As in the
    index, ``"a.b"`` names both ``{"a": {"b": v}}`` and ``{"a.b": v}`` (a search's params are
    named by their dotted paths: ``{"params": {"net.width": 16}}``)."""
    if not isinstance(metadata, dict):
        return _MISSING
    if key in metadata:
        return metadata[key]
    dot = key.find(".")
    while dot >= 0:
        if key[:dot] in metadata:
            found = metadata_value(metadata[key[:dot]], key[dot + 1:])
            if found is not _MISSING:
                return found
        dot = key.find(".", dot + 1)
    return _MISSING


def plan_query(selector: Selector | None, where: dict[str, Any] | None, order_by: str | None,
               descending: bool, limit: int | None, columns: str, full_columns: str) -> Plan:
    """Plan a query; ``columns`` are the ``o.`` columns to fetch, ``full_columns`` those when
    Python must finish the query (they start with id, cls, file, definition, metadata)."""
    conds: list[Cond] = []
    exact = True
    if selector is not None:
        conds, exact = selector.conds()
    py_where: list[tuple[str, Matcher]] = []
    if where is not None and not isinstance(where, dict):
        raise ArgumentError(f"where= is a dict of metadata keys and wanted values, e.g. "
                            f"{{'metrics.accuracy': Range(0.9, None)}}, got {where!r:.60}")
    order_cond: SQL | None = None
    for key, wanted in (where or {}).items():
        matcher = to_matcher(wanted).for_metadata()  # where= is about metadata: plain JSON
        if key == order_by and order_by not in COLUMN_KEYS and _positive(matcher):
            # Filter on the sort key inside the sorted walk of the kv index (m.t, m.value).
            order_cond = matcher.kv_sql()
            if order_cond is not None:
                continue
        cond = key_cond(f"m.{key}", matcher)
        if cond is None:
            py_where.append((key, matcher))
            cond = key_cond(f"m.{key}", _ANY)
        assert cond is not None
        conds.append(cond)
    exact = exact and not py_where
    python = None if exact else _python_check(selector, py_where)
    columns = columns if exact else full_columns
    sql_limit = limit if exact else None
    direction = "DESC" if descending else "ASC"
    walk = order_by is not None and order_by not in COLUMN_KEYS and (
        not conds or min(c.rank for c in conds) > 0)
    # The most selective condition finds the rows (through an index); the others test each
    # row. A sorted walk of the sort key's index finds them itself: every condition tests.
    driver = None if walk or not conds else min(conds, key=lambda c: c.rank)
    parts = [(c.drive if c is driver else c.check, c.params) for c in conds]
    parts.sort(key=lambda p: p[0] != (driver.drive if driver else None))
    where_sql = " AND ".join(f"({c})" for c, _ in parts) or "1"
    params = [p for _, ps in parts for p in ps]
    # With a driving condition the unary + keeps SQLite from scanning the sort index instead.
    sort_prefix = "+" if driver is not None and driver.rank < 5 else ""
    if order_by is None or order_by in COLUMN_KEYS:
        column = COLUMN_KEYS.get(order_by or "created", "o.created")
        return Plan([(f"SELECT {columns} FROM objects o WHERE {where_sql} ORDER BY "
                      f"{sort_prefix}{column} {direction}, o.id{_limit(sql_limit)}", params)],
                    python, limit)
    # Sort by a metadata value, then the objects without it.
    key = f"m.{order_by}"
    # (t and value are kv's columns: bare, they refer to m here; objects has no such column.)
    on_m, m_params = order_cond if order_cond is not None else ("1", [])
    # CROSS JOIN keeps the join order: walk the sort key's index, stop at the limit.
    join = "kv m CROSS JOIN objects o" if walk else "objects o JOIN kv m"
    # Numbers first, in either direction, then the key's other values (otherwise a failed
    # run's None would sort first ascending, its 'nan' first descending, and True among the
    # numbers), each part walking the index in order.
    queries = [(f"SELECT {columns} FROM {join} ON o.id = m.id WHERE m.key = ? AND {types} AND "
                f"{on_m} AND {where_sql} ORDER BY m.value {direction}, o.id{_limit(sql_limit)}",
                [key, *m_params, *params])
               for types in (f"m.t IN {_NUMBERS}", f"m.t NOT IN {_NUMBERS[:-1]}, 'x')")]
    if order_cond is None:  # rows lacking the sort key come last
        lacks = (f"SELECT {columns} FROM objects o WHERE {where_sql} AND NOT EXISTS (SELECT 1 "
                 f"FROM kv m WHERE m.id = o.id AND m.key = ? AND m.t != 'x') ORDER BY "
                 f"o.created, o.id{_limit(sql_limit)}")
        queries.append((lacks, [*params, key]))
    return Plan(queries, python, limit, last_fills=True)


#: The index's type codes of numbers (booleans are 'b'), as SQL.
_NUMBERS = "('i', 'f', 'I')"


def _positive(matcher: Matcher) -> bool:
    """Matchers that only ever match scalars (so never a row lacking the key)."""
    from dryml.repo._match import In, Range, _Eq

    if isinstance(matcher, In):
        return all(isinstance(m, _Eq) for m in matcher.options)  # _PlainEq too
    return isinstance(matcher, (Range, _Eq))


def _limit(limit: int | None) -> str:
    return "" if limit is None else f" LIMIT {int(limit)}"


def _python_check(selector: Selector | None, py_where: list[tuple[str, Matcher]]
                  ) -> Callable[[dict[str, Any], dict[str, Any], MatchContext], bool]:
    def check(definition: dict[str, Any], metadata: dict[str, Any], ctx: MatchContext) -> bool:
        if selector is not None and not selector.match_definition(definition, ctx):
            return False
        for key, matcher in py_where:
            value = metadata_value(metadata, key)
            if value is _MISSING or not matcher.match(value, ctx):
                return False
        return True

    return check


FULL_COLUMNS = "o.id, o.cls, o.file, o.definition, o.metadata, o.size, o.created, o.digest"


def entry(row: tuple[Any, ...]) -> dict[str, Any]:
    """An index row (:data:`FULL_COLUMNS`) as the dict ``Repo.info`` returns; ValueError
    (saying which column) for a row edited into something dryml never writes."""
    out = {"dry_id": row[0], "class": row[1], "file": row[2], "size": row[5],
           "created": row[6], "digest": row[7]}
    for key, text in (("definition", row[3]), ("metadata", row[4])):
        try:
            out[key] = json.loads(text)
        except (TypeError, ValueError):
            out[key] = None
        if not isinstance(out[key], dict):
            raise ValueError(f"object {row[0]!r}: its {key} is not a JSON object")
    for key in ("size", "created"):
        if not isinstance(out[key], (int, float)) or isinstance(out[key], bool):
            raise ValueError(f"object {row[0]!r}: its {key} is not a number")
    return out


class IndexContext:
    """Match context over a Repo's index: MROs from the classes table, decoding under the
    repository's trust."""

    def __init__(self, repo: Any) -> None:
        from dryml._encoding import Decoder
        from dryml.repo._selector import known_mro

        self._mros = repo._class_mros()
        self._known = known_mro
        self._decoder = Decoder(TrustPolicy(repo.trust))

    def mro(self, path: str) -> tuple[str, ...]:
        """The MRO the index recorded, else one this process knows, else just ``path``."""
        if path not in self._mros:
            self._mros[path] = self._known(path) or [path]
        return tuple(self._mros[path])

    def decode(self, value: Any) -> Any:
        """Decode a stored value (for predicates)."""
        return self._decoder.decode(value)

