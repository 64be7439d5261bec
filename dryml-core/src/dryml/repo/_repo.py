"""``Repo``: a directory of ``.dry`` files with an SQLite index that answers queries."""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from dryml._io import fsync_directory
from dryml._metadata import plain_metadata
from dryml._object import Object
from dryml._trust import TrustPolicy
from dryml.errors import (
    DrymlWarning,
    DuplicateObjectError,
    ObjectNotFoundError,
    RepoError,
    UntrustedClassError,
)
from dryml.repo import _check, _maintenance
from dryml.repo._defjson import category_digest, class_mros, flatten_metadata, metadata_problem
from dryml.repo._files import file_name, spare_file_name, write_file, write_temp
from dryml.repo._index import (
    CLASSES_GENERATION,
    INDEX_NAME,
    Index,
    owner_alive,
    process_identity,
)
from dryml.repo._journal import Journal, is_object_name
from dryml.repo._lazy import LazyState, is_loaded, lazy_state, load_now, make_lazy
from dryml.repo._query import COLUMN_KEYS, plan_query
from dryml.repo._query import FULL_COLUMNS as _FULL
from dryml.repo._query import IndexContext as _IndexContext
from dryml.repo._query import entry as _entry
from dryml.repo._select import Target, as_selector, target_ids
from dryml.repo._verify import load_checked

__all__ = ["Repo"]

#: the columns of a query's rows (the full ones: :data:`_FULL`)
_SHORT = "o.id, o.cls, o.file, o.cat, o.digest"
_SHORT_LEN = 5


def checked_metadata(metadata: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``metadata`` as the JSON text the index keeps and the dict that text reads back as
    (what the file and the index hold: non-string keys become strings). RepoError when it is
    not plain JSON (:func:`dryml._metadata.plain_metadata`), or when two of its keys name one
    query path (``{"a.b": 1}`` beside ``{"a": {"b": 2}}``: ``where={"a.b": ...}`` could not
    tell them apart)."""
    text, plain = plain_metadata(metadata, RepoError)
    problem = metadata_problem(plain)
    if problem is not None:
        raise RepoError(f"{problem}: keep bulky values in the object's state (store.put)")
    seen: set[str] = set()
    for path, _ in flatten_metadata(plain):
        if path in seen:
            raise RepoError(f"metadata names {path!r} twice (a key with '.' in it and nested "
                            "dicts): queries on it could not tell them apart; rename one")
        seen.add(path)
    return text, plain


class Repo:
    """An indexed directory of saved Objects.

    ``Repo(directory, create=False, trust=(), durable=False)`` opens a repository; a missing
    directory is an error unless ``create=True``. Each object is one ``<dry_id>.dry`` file;
    the index (``.dryml-index.sqlite`` in the directory, SQLite in WAL mode) answers every
    query, so no file is read until an object is used. ``trust`` names modules whose classes
    may be imported to load objects (see :func:`dryml.load_object`). ``durable=True`` fsyncs
    every write (safe against power loss; without it writes are safe against crashes of the
    process, and faster). A damaged index file is an error that says to run
    ``dryml repo reindex``; ``repair=True`` moves it aside and rebuilds it from the files
    instead (``rebuilt`` then says what that did).

    Loading an object checks that its file still has the manifest digest recorded in the
    index: a file changed behind the repository's back is a RepoError, never an object whose
    arguments differ from what the query matched (see ``docs/repo.md``).
    """

    def __init__(self, directory: str | os.PathLike[str], create: bool = False, *,
                 trust: Iterable[str] = (), durable: bool = False, repair: bool = False) -> None:
        self.directory = Path(directory).absolute()
        if not self.directory.is_dir():
            if not create:
                raise RepoError(f"no repository at {str(self.directory)!r}: the directory does "
                                "not exist. Pass create=True to make a new one")
            self.directory.mkdir(parents=True, exist_ok=True)
        self.trust = (trust,) if isinstance(trust, str) else tuple(trust)
        self.durable = durable
        self._index = Index(str(self.directory / INDEX_NAME), durable)
        self._journal = Journal(self._index, self.directory)
        # A Repo dropped without close() ends its session when collected (or at exit).
        weakref.finalize(self, self._journal.close)
        self._live: weakref.WeakValueDictionary[str, Object] = weakref.WeakValueDictionary()
        # object -> manifest digest of the file it was loaded from or written to: a row with
        # another digest was replaced since by another writer. Kept per object (weakly), not
        # per id: a query that hands out a new object for a replaced row leaves the old
        # object's version as it was, so save(old) is still refused
        self._versions: weakref.WeakKeyDictionary[Object, str] = weakref.WeakKeyDictionary()
        # class path -> the MRO this process last recorded for it in the index, valid while
        # the index's class tables are of generation _class_generation (reindex rebuilds them)
        self._known_classes: dict[str, tuple[str, ...]] = {}
        self._class_generation: str | None = None
        #: Files skipped (name, why) when this open had to build the index from the files.
        self.skipped: list[tuple[str, str]] = []
        #: What rebuilding the index at this open did (a new or damaged index), else None.
        self.rebuilt: _maintenance.ReindexReport | None = None
        damaged = repair and self._index.integrity_problem() is not None
        if damaged or not self._index.ensure_schema():  # (reindex moves a damaged one aside)
            self.rebuilt = _maintenance.reindex(self._index, self.directory)
        if self.rebuilt is not None:
            self.skipped = self.rebuilt.skipped
            self._warn_rebuilt(self.rebuilt)
        _maintenance.recover(self._index, self.directory)

    def _warn_rebuilt(self, report: _maintenance.ReindexReport) -> None:
        if report.skipped:
            names = ", ".join(n for n, _ in report.skipped[:10])
            warnings.warn(f"{len(report.skipped)} file(s) in {self.directory} are not "
                          f"readable objects and were skipped: {names}", DrymlWarning,
                          stacklevel=3)
        for dup in report.duplicates[:10]:
            advice = dup.advice(str(self.directory))
            warnings.warn(f"in {self.directory}: {dup.summary()}; {advice}", DrymlWarning,
                          stacklevel=3)
        if report.damaged_index is not None:
            warnings.warn(f"the index of {self.directory} was damaged ({report.damage}); it "
                          f"was rebuilt from the .dry files and the damaged file kept as "
                          f"{report.damaged_index}", DrymlWarning, stacklevel=3)

    # -- adding -------------------------------------------------------------------------------
    def add_object(self, obj: Object, *, metadata: dict[str, Any] | None = None,
                   replace: bool = False) -> None:
        """Save ``obj`` (with the Objects nested in it, once each) and index it.
        ``metadata`` is any JSON dict kept in the index and queryable. An id that is already
        in the repository is an error unless ``replace=True``."""
        self.add_objects([obj], metadata=metadata, replace=replace)

    def add_objects(self, objs: Iterable[Object], *,
                    metadata: dict[str, Any] | Sequence[dict[str, Any]] | None = None,
                    replace: bool = False) -> list[str]:
        """Add many objects at once (one index transaction): faster than ``add_object`` in a
        loop; returns their dry_ids. ``metadata`` is one dict for all, or one per object.
        Nothing is added when one of the ids is already there (unless ``replace``)."""
        objs = list(objs)
        if metadata is None or isinstance(metadata, dict):
            metas: Sequence[dict[str, Any] | None] = [metadata] * len(objs)
        else:
            metas = list(metadata)
            if len(metas) != len(objs):
                raise RepoError(f"{len(objs)} objects but {len(metas)} metadata dicts")
        prepared = [self._prepare(obj, meta) for obj, meta in zip(objs, metas, strict=False)]
        ids = [row["id"] for row, _ in prepared]
        if len(set(ids)) != len(ids):
            raise DuplicateObjectError("the same object (dry_id) appears twice in one add")
        if replace:
            self._write(prepared, replace, keep_metadata=False)
        else:
            self._add_new(prepared)
        return ids

    def _add_new(self, prepared: list[tuple[dict[str, Any], Object]]) -> None:
        """Add objects that must not be there yet: files to temporaries, then one
        transaction that checks the ids, indexes the rows, journals and renames the files
        (see :mod:`dryml.repo._journal` for what a crash at each point leaves)."""
        self._journal.ensure(self.durable)
        temps: list[str] = []
        try:
            for row, obj in prepared:
                tmp, stamp = write_temp(obj, self.directory, row["file"], self.durable,
                                        row["meta"] or {}, row["created"])
                temps.append(tmp)
                row.update(size=stamp.size, mtime=stamp.mtime, digest=stamp.digest,
                           metadata=row["metadata"] or "{}", new=True)
            # the index's lock from the commit until the objects are cached: another thread's
            # query (which reads the index under it) finds the new rows with their objects
            # (in between, it made a second object of a new id)
            with self._index.locked():
                try:
                    self._commit_new(prepared, temps)
                except _DeadWriter:  # a dead process left a write of one of these ids
                    _maintenance.recover(self._index, self.directory)
                    self._commit_new(prepared, temps)
                temps = []
                self._cache_all(prepared)
        finally:
            for tmp in temps:  # not renamed: the add failed
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    def _commit_new(self, prepared: list[tuple[dict[str, Any], Object]],
                    temps: list[str]) -> None:
        # Names as strings on this path: pathlib's joins cost microseconds per add.
        renamed: list[str] = []
        try:
            with self._index.write() as conn:
                generation = self._class_tables(conn)
                for row, _ in prepared:
                    self._check_new(conn, row)
                    if self._new_classes(row["mros"]):
                        Index.put_classes(conn, row["mros"], known=True)
                    Index.put_row(conn, row)
                self._journal.record([(row["id"], row["file"]) for row, _ in prepared],
                                     self.durable)
                for tmp, (row, _) in zip(temps, prepared, strict=True):
                    target = os.path.join(self.directory, row["file"])
                    os.replace(tmp, target)
                    renamed.append(target)
                if self.durable:
                    fsync_directory(self.directory)
        except BaseException:
            for path in self._not_indexed(renamed):  # rolled back: take the files out again
                with contextlib.suppress(OSError):
                    os.unlink(path)
            raise
        self._remember_classes([row["mros"] for row, _ in prepared], generation)

    def _class_tables(self, conn: Any) -> str | None:
        """The generation of the index's class tables (a token that ``reindex`` renews when
        it rebuilds them), read in a write transaction; forgets the classes this process
        recorded when they were rebuilt since (by any process)."""
        found = conn.execute("SELECT value FROM info WHERE key = ?",
                             (CLASSES_GENERATION,)).fetchone()
        generation = None if found is None else str(found[0])
        if generation != self._class_generation:
            self._known_classes = {}
            self._class_generation = generation
        return generation

    def _new_classes(self, mros: dict[str, list[str]]) -> bool:
        """Whether ``mros`` holds a class this process has not recorded with that MRO."""
        return any(self._known_classes.get(p) != tuple(m) for p, m in mros.items())

    def _remember_classes(self, mros: list[dict[str, list[str]]],
                          generation: str | None) -> None:
        """Note classes recorded by a transaction that committed with class tables of
        ``generation`` (unless another thread has seen them rebuilt since)."""
        if generation == self._class_generation:
            for one in mros:
                self._known_classes.update({p: tuple(m) for p, m in one.items()})

    def _not_indexed(self, paths: list[str]) -> list[str]:
        """Those of ``paths`` that no row names, asked anew after a failed write (which may
        have failed after its commit); none when the index cannot tell: a file the index
        lacks is reported by ``check``, a row without its file would lose the object."""
        try:
            return [p for p in paths if not self._index.query(
                "SELECT 1 FROM objects WHERE file = ?", [os.path.basename(p)])]
        except Exception:  # noqa: BLE001 - any failure to read the index: keep the files
            return []

    def _check_new(self, conn: Any, row: dict[str, Any]) -> None:
        """Raise unless the row's id is neither indexed nor being replaced or deleted; give
        it another file name when its own is taken."""
        dry_id = row["id"]
        # one statement for the three usual answers (each statement costs microseconds)
        indexed, busy, named = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM objects WHERE id = ?1), "
            "EXISTS (SELECT 1 FROM intents WHERE id = ?1), "
            "EXISTS (SELECT 1 FROM objects WHERE file = ?2)", (dry_id, row["file"])).fetchone()
        if indexed:
            raise self._already_there(dry_id)
        if busy:
            self._check_busy(conn, dry_id)
        taken = os.path.exists(os.path.join(self.directory, row["file"]))
        if taken and any(not owner_alive(*r) for r in conn.execute(
                "SELECT host, pid, pstart FROM intents WHERE op = 'session'").fetchall()):
            raise _DeadWriter  # its file, left by a killed add? finish that add first
        if taken or named:
            self._free_file(conn, row, taken)

    def _free_file(self, conn: Any, row: dict[str, Any], taken: bool | None = None) -> None:
        """Keep a new object off a file that another object's row names (ids such as
        ``run/1`` and ``id-<digest>`` share a name; reindexed files keep theirs) or that
        holds something the index does not (a file copied in): either would be overwritten."""
        name, n = row["file"], 0
        while (os.path.exists(self.directory / name) if taken is None else taken) or (
                conn.execute("SELECT 1 FROM objects WHERE file = ?", (name,)).fetchone()):
            n, taken = n + 1, None
            if n > 100:
                raise RepoError(f"no free file name for object {row['id']!r} in "
                                f"{self.directory}")
            name = spare_file_name(row["id"], n)
        row["file"] = name

    def _already_there(self, dry_id: str) -> DuplicateObjectError:
        return DuplicateObjectError(f"an object with dry_id {dry_id!r} is already in "
                                    f"{self.directory} (pass replace=True to overwrite it)")

    @staticmethod
    def _check_busy(conn: Any, dry_id: str) -> None:
        """Raise when another process is replacing or deleting ``dry_id`` (_DeadWriter when
        that process died midway: recover, then try again)."""
        for busy in conn.execute("SELECT host, pid, pstart, started FROM intents WHERE id = ?",
                                 (dry_id,)).fetchall():
            if not owner_alive(*busy):
                raise _DeadWriter
            raise RepoError(f"object {dry_id!r} is being written by process {busy[1]} on "
                            f"{busy[0]}; try again when it is done")

    def _prepare(self, obj: Object, metadata: dict[str, Any] | None) -> tuple[dict[str, Any],
                                                                                Object]:
        if not isinstance(obj, Object):
            raise RepoError(f"a Repo keeps dryml Objects, got {type(obj).__name__}")
        load_now(obj)
        definition = obj.definition()
        data = definition.to_dict()
        meta_json, plain = (None, None) if metadata is None else checked_metadata(metadata)
        row = {"id": obj.dry_id, "cls": data["cls"], "cat": category_digest(data),
               "definition": json.dumps(data), "metadata": meta_json, "meta": plain,
               "file": file_name(obj.dry_id), "size": 0, "created": time.time(),
               "digest": None, "mtime": None,
               "mros": class_mros(definition), "data": data}
        return row, obj

    def _write(self, prepared: list[tuple[dict[str, Any], Object]], replace: bool,
               keep_metadata: bool, unchanged: bool = False) -> None:
        """Write objects over their files (``replace``) or as new ones; ``unchanged``: refuse
        one whose file another writer replaced since this process loaded or wrote it."""
        token = uuid.uuid4().hex
        try:
            self._begin_writes(prepared, token, replace, keep_metadata, unchanged)
        except _DeadWriter:  # a dead process left a write of one of these ids: finish it
            _maintenance.recover(self._index, self.directory)
            self._begin_writes(prepared, token, replace, keep_metadata, unchanged)
        done = 0
        try:
            for row, obj in prepared:
                meta = json.loads(row["metadata"]) if row.get("metadata") else None
                stamp = write_file(obj, self.directory, row["file"], self.durable, meta,
                                   row["created"])
                row.update(size=stamp.size, mtime=stamp.mtime, digest=stamp.digest)
                done += 1
        finally:
            with self._index.locked():  # cached before a query sees the rows (as _add_new)
                lost = self._end_writes(prepared, token, done)
                # those written and indexed, also when a later one failed: they are this
                # process's versions (uncached, saving one again was "replaced by another
                # writer", and a query replaced it by a new object)
                self._cache_all([p for p in prepared[:done] if p[0]["id"] not in lost])
        if lost:
            raise RepoError(
                f"object(s) {lost[:5]} in {self.directory} were deleted, or their write was "
                "ended by another process, while this process wrote them: they were not saved "
                "(the index was left as that process made it; 'dryml repo check DIR' shows "
                "whether it matches the files)")

    def _end_writes(self, prepared: list[tuple[dict[str, Any], Object]], token: str,
                    done: int) -> list[str]:
        """Index the first ``done`` written files and drop every intent of ``token`` (one
        transaction). A row is written only while its intent is still there and, for an
        object that was in the index, its row too: otherwise another process took the
        object over (deleted it, or finished this write as a dead one's) and this file is
        not indexed; it is removed unless a row names it. Kept metadata is read again here:
        a ``set_metadata`` of another process during the write stays (the file holds the
        metadata of when the write began, as after any later ``set_metadata``; a reindex
        keeps the index's). Returns the ids not indexed."""
        lost: list[str] = []
        with self._index.write() as conn:
            for i, (row, _) in enumerate(prepared):
                intent = f"{token}-{i}"
                if i < done:
                    if self._still_ours(conn, row, intent):
                        if row["keep"]:  # what the index holds now, set_metadata and all
                            row["metadata"] = conn.execute(
                                "SELECT metadata FROM objects WHERE id = ?",
                                (row["id"],)).fetchone()[0]
                        Index.put_row(conn, row)
                    else:
                        lost.append(row["id"])
                        if not conn.execute("SELECT 1 FROM objects WHERE file = ?",
                                            (row["file"],)).fetchone():
                            with contextlib.suppress(FileNotFoundError):
                                (self.directory / row["file"]).unlink()
                conn.execute("DELETE FROM intents WHERE token = ?", (intent,))
        return lost

    @staticmethod
    def _still_ours(conn: Any, row: dict[str, Any], intent: str) -> bool:
        """Whether this write's intent, and the row it replaces (if any), are still there."""
        if not conn.execute("SELECT 1 FROM intents WHERE token = ?", (intent,)).fetchone():
            return False
        return bool(row["new"]) or conn.execute("SELECT 1 FROM objects WHERE id = ?",
                                                (row["id"],)).fetchone() is not None

    def _begin_writes(self, prepared: list[tuple[dict[str, Any], Object]], token: str,
                      replace: bool, keep_metadata: bool, unchanged: bool = False) -> None:
        """Check the ids and record the intents (one transaction)."""
        host, pid, pstart = process_identity()
        with self._index.write() as conn:
            generation = self._class_tables(conn)
            for i, (row, obj) in enumerate(prepared):
                old = conn.execute("SELECT file, metadata, created, digest FROM objects "
                                   "WHERE id = ?", (row["id"],)).fetchone()
                if old is not None and not replace:
                    raise self._already_there(row["id"])
                if old is not None and unchanged and self._replaced_since(obj, old[3]):
                    raise RepoError(
                        f"object {row['id']!r} in {self.directory} was replaced by another "
                        "writer (a process, or another Repo) after this process loaded or "
                        "saved it, so save() would overwrite that newer version with this "
                        f"one; nothing was saved. repo.get({row['id']!r}) gives the newer "
                        "one; repo.add_object(obj, replace=True) overwrites it with this")
                self._check_busy(conn, row["id"])
                row["new"] = old is None
                # Kept metadata is the index's: read again when the write ends (another
                # process may set_metadata meanwhile), and by recovery should this one die.
                row["keep"] = old is not None and (row["meta"] is None or keep_metadata)
                if old is not None:
                    # the object's creation time stays (its file is written with it, too):
                    # a run saved again is not a newer run
                    row["file"], row["created"] = self._object_file(old[0]).name, old[2]
                    if row["keep"]:
                        row["metadata"] = old[1]
                else:
                    self._free_file(conn, row)
                row["metadata"] = row["metadata"] or "{}"
                mros = row["mros"]
                if self._new_classes(mros):
                    Index.put_classes(conn, mros, known=True)
                recorded = None if row["keep"] else row["metadata"]
                conn.execute("INSERT INTO intents VALUES (?, 'add', ?, ?, ?, ?, ?, ?, ?)",
                             (f"{token}-{i}", row["id"], row["file"], host, pid, pstart,
                              time.time(), json.dumps({"metadata": recorded})))
        # only now: a transaction rolled back (a dead writer's intent) recorded nothing
        self._remember_classes([row["mros"] for row, _ in prepared], generation)

    def _cache_all(self, prepared: list[tuple[dict[str, Any], Object]]) -> None:
        for row, obj in prepared:
            self._cache(row["id"], obj, row["digest"])

    def _cache(self, dry_id: str, obj: Object, digest: str | None = None) -> None:
        """Keep ``obj`` as this process's object ``dry_id``; ``digest``: the manifest digest
        of the file it was written to (None: a lazy object, whose load records it)."""
        with contextlib.suppress(TypeError):  # not weak-referenceable: simply not cached
            self._live[dry_id] = obj
            if digest is not None:
                self._versions[obj] = digest

    def _replaced_since(self, obj: Object, digest: str | None) -> bool:
        """Whether the row of ``obj`` (manifest ``digest``) is another version of it than
        the one this process loaded or wrote: another writer replaced it since."""
        try:
            known = self._versions.get(obj)
        except TypeError:  # not hashable (a class with __eq__ and no __hash__): not tracked
            return False
        return digest is not None and known is not None and known != digest

    # -- metadata -----------------------------------------------------------------------------
    def metadata(self, target: str | Object) -> dict[str, Any]:
        """The metadata of one object (by dry_id or object)."""
        dry_id = self._one_id(target)
        rows = self._index.query("SELECT metadata FROM objects WHERE id = ?", [dry_id])
        if not rows:  # not a bare IndexError
            raise ObjectNotFoundError(f"no object {dry_id!r} in {self.directory}")
        return json.loads(rows[0][0])  # type: ignore[no-any-return]

    def set_metadata(self, target: str | Object, metadata: dict[str, Any], *,
                     merge: bool = True) -> None:
        """Set an object's metadata: merged into the top level of what is there (default),
        or replacing it with ``merge=False``. Kept in the index (see docs/repo.md)."""
        dry_id = self._one_id(target)
        if not isinstance(metadata, dict):
            raise RepoError(f"metadata must be a dict, got {type(metadata).__name__}")
        with self._index.write() as conn:
            found = conn.execute("SELECT metadata FROM objects WHERE id = ?", (dry_id,)).fetchone()
            if found is None:
                raise ObjectNotFoundError(f"no object {dry_id!r} in {self.directory}")
            given = checked_metadata(metadata)[1]
            new = {**json.loads(found[0]), **given} if merge else given
            Index.put_metadata(conn, dry_id, checked_metadata(new)[1])

    # -- reading ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._index.query("SELECT count(*) FROM objects")[0][0])

    def __contains__(self, item: object) -> bool:
        try:
            return bool(self.ids(item))  # type: ignore[arg-type]
        except (TypeError, RepoError):
            return False

    def __iter__(self) -> Iterator[Object]:
        """Every object, lazily, one at a time (none is kept by the repository)."""
        for dry_id in self.ids():
            found = self.get(dry_id)
            if found:
                yield found[0]

    def ids(self, target: Target = None, *, where: dict[str, Any] | None = None,
            order_by: str | None = None, descending: bool = False,
            limit: int | None = None) -> list[str]:
        """The dry_ids :meth:`get` would return, without making any object."""
        return [r[0] for r in self._select(target, where, order_by, descending, limit)]

    def get(self, target: Target = None, *, where: dict[str, Any] | None = None,
            order_by: str | None = None, descending: bool = False,
            limit: int | None = None) -> list[Object]:
        """The objects that ``target`` selects, always as a list, loaded lazily.

        ``target``: None (all), a dry_id, an Object, an ObjectDef (with a dry_id: that object;
        without: every object built from it), a :class:`Selector`, a predicate on ObjectDefs,
        or a list of these (their union). ``where`` filters on metadata
        (``{"metrics.accuracy": Range(0.9, None)}``); ``order_by`` is a metadata key or one
        of ``created``, ``size``, ``dry_id``, ``class``, ``file``.
        """
        rows = self._select(target, where, order_by, descending, limit)
        return [self._object_for(r) for r in rows]

    def get_one(self, target: Target = None, **kwargs: Any) -> Object:
        """The one object ``target`` selects; ObjectNotFoundError when none, RepoError when
        several."""
        found = self.ids(target, **{**kwargs, "limit": 2})
        if not found:
            raise ObjectNotFoundError(f"no object in {self.directory} matches {target!r}")
        if len(found) > 1:
            raise RepoError(f"more than one object in {self.directory} matches {target!r} "
                            f"(for example {found[0]!r} and {found[1]!r}); narrow the selector")
        got = self.get(found[0])
        if not got:  # deleted (by another thread or process) since the ids were read
            raise ObjectNotFoundError(f"no object in {self.directory} matches {target!r} "
                                      f"({found[0]!r} was deleted just now)")
        return got[0]

    def load(self, target: str | Object) -> Object:
        """The object with this dry_id, loaded now."""
        return load_now(self.get_one(target))

    def info(self, target: str | Object) -> dict[str, Any]:
        """What the index holds about one object: id, class, file, size, created, digest
        (of the file's manifest, as indexed), definition (JSON) and metadata."""
        dry_id = self._one_id(target)
        rows = self._index.query(f"SELECT {_FULL} FROM objects o WHERE id = ?", [dry_id])
        if not rows:
            raise ObjectNotFoundError(f"no object {dry_id!r} in {self.directory}")
        return self._entry(rows[0])

    def full_id(self, prefix: str) -> str:
        """The dry_id that is ``prefix`` or starts with it (the short ids ``dryml repo ls``
        and ``dryml inspect`` show). ObjectNotFoundError when none does; RepoError listing
        the matches when several do."""
        if self._index.query("SELECT 1 FROM objects WHERE id = ?", [prefix]):
            return prefix
        rows = self._index.query(
            "SELECT id, cls FROM objects WHERE id >= ? AND id < ? ORDER BY id LIMIT 11",
            [prefix, prefix + "\U0010ffff"]) if prefix else []
        if not rows:
            raise ObjectNotFoundError(f"no object {prefix!r} in {self.directory}")
        if len(rows) > 1:
            shown = ", ".join(f"{i} ({c.rpartition(':')[2]})" for i, c in rows[:10])
            more = " and more" if len(rows) > 10 else ""
            raise RepoError(f"{prefix!r} is the start of more than one dry_id in "
                            f"{self.directory}: {shown}{more}; give more of the id")
        return str(rows[0][0])

    def metadata_keys(self) -> list[str]:
        """Every dotted metadata key with a scalar value in some object (what ``where`` and
        ``order_by`` can use), sorted."""
        rows = self._index.query("SELECT DISTINCT key FROM kv WHERE key GLOB 'm.*' AND t != 'x'")
        return sorted(str(r[0])[2:] for r in rows)

    def entries(self, target: Target = None, *, where: dict[str, Any] | None = None,
                order_by: str | None = None, descending: bool = False,
                limit: int | None = None) -> list[dict[str, Any]]:
        """What :meth:`info` says about every selected object, straight from the index (no
        class is imported, no file is read)."""
        rows = self._select(target, where, order_by, descending, limit, full=True)
        return [self._entry(r) for r in rows]

    def apply(self, fn: Callable[..., Any], target: Target = None, *,
              where: dict[str, Any] | None = None, order_by: str | None = None,
              descending: bool = False, limit: int | None = None,
              fn_args: tuple[Any, ...] = (), fn_kwargs: dict[str, Any] | None = None,
              progress: bool | None = None) -> list[Any]:
        """``fn(obj, *fn_args, **fn_kwargs)`` for every selected object, one at a time (each
        is loaded when ``fn`` uses it and released after, unless ``fn`` keeps it); returns the
        results. A progress bar (tqdm) shows on long runs in a terminal; ``progress`` forces
        it on or off."""
        from tqdm.auto import tqdm  # type: ignore[import-untyped]

        ids = self.ids(target, where=where, order_by=order_by, descending=descending,
                       limit=limit)
        disable = (not progress) if progress is not None else (None if len(ids) > 10 else True)
        results = []
        for dry_id in tqdm(ids, desc="dryml repo apply", unit="obj", disable=disable):
            found = self.get(dry_id)
            if found:
                results.append(fn(found[0], *fn_args, **(fn_kwargs or {})))
            del found
        return results

    # -- changing -----------------------------------------------------------------------------
    def save(self, target: Target | Object = None) -> int:
        """Write objects changed in memory back to their files: every object of this
        repository loaded in this process (default), or those ``target`` selects. Metadata is
        kept. Returns how many were saved."""
        if target is None:
            objs = [o for o in list(self._live.values()) if is_loaded(o)]
        elif isinstance(target, Object):
            objs = [target]
        else:
            objs = [o for o in self.get(target) if is_loaded(o)]
        missing = [o.dry_id for o in objs if o.dry_id not in self]
        if missing:
            raise ObjectNotFoundError(f"not in {self.directory}: {missing[:5]}; use add_object")
        if objs:
            self._write([self._prepare(o, None) for o in objs], True, keep_metadata=True,
                        unchanged=True)
        return len(objs)

    def delete(self, target: Target) -> int:
        """Remove the selected objects (index rows, then files); returns how many. An object
        that another process is replacing or deleting is a RepoError (nothing is deleted), as
        it is for an add."""
        if target is None:
            raise RepoError("delete(None) would delete everything; pass a selector")
        ids = self.ids(target)
        token = uuid.uuid4().hex
        try:
            files = self._begin_deletes(ids, token)
        except _DeadWriter:  # a dead process left a write of one of these ids: finish it
            _maintenance.recover(self._index, self.directory)
            files = self._begin_deletes(ids, token)
        for _, name in files:
            with contextlib.suppress(FileNotFoundError):
                (self.directory / name).unlink()
        with self._index.write() as conn:
            conn.executemany("DELETE FROM intents WHERE token = ?", [(t,) for t, _ in files])
        return len(files)

    def _begin_deletes(self, ids: list[str], token: str) -> list[tuple[str, str]]:
        """Remove the rows of ``ids`` and record a delete intent for each (one transaction);
        returns (intent token, file name) of each object that was there. An object with a
        live write of another process in flight is refused: its writer would index the
        file this delete removes."""
        host, pid, pstart = process_identity()
        files = []
        with self._index.write() as conn:
            for i, dry_id in enumerate(ids):
                found = conn.execute("SELECT file FROM objects WHERE id = ?", (dry_id,)).fetchone()
                if found is None:
                    continue
                self._object_file(found[0])
                self._check_busy(conn, dry_id)
                Index.remove_row(conn, dry_id)
                conn.execute("INSERT INTO intents VALUES (?, 'delete', ?, ?, ?, ?, ?, ?, NULL)",
                             (f"{token}-{i}", dry_id, found[0], host, pid, pstart, time.time()))
                files.append((f"{token}-{i}", found[0]))
        for dry_id in ids:
            self._live.pop(dry_id, None)
        return files

    # -- maintenance --------------------------------------------------------------------------
    def check(self) -> _check.CheckReport:
        """Compare the index with the files (after finishing interrupted writes): every
        indexed file must exist, hold its object and have the manifest digest recorded when
        it was indexed; ids held by two files are reported as duplicates. Raises
        IndexDamagedError (a RepoError) when the index file itself is damaged."""
        return _check.check(self._index, self.directory)

    def reindex(self) -> _maintenance.ReindexReport:
        """Rebuild the index from the ``.dry`` files (metadata in the index is kept). A
        damaged index file is moved aside and replaced; of several files holding one id,
        ``<dry_id>.dry`` (else the first by name) is indexed and the rest reported."""
        self._journal.close()  # a damaged index is replaced, intents and all: start anew
        self._known_classes = {}  # the hierarchies are recorded anew from the files
        self._class_generation = None
        return _maintenance.reindex(self._index, self.directory)

    def close(self) -> None:
        """Close the index connection (the repository can still be used: it reopens)."""
        self._journal.close()
        self._index.close()

    def __enter__(self) -> Repo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Repo({str(self.directory)!r})"

    # -- internals ----------------------------------------------------------------------------
    def _one_id(self, target: str | Object) -> str:
        if isinstance(target, Object):
            return target.dry_id
        if isinstance(target, str):
            return target
        raise RepoError(f"expected a dry_id or an Object, got {target!r}")

    def _select(self, target: Target, where: dict[str, Any] | None, order_by: str | None,
                descending: bool, limit: int | None, full: bool = False
                ) -> list[tuple[Any, ...]]:
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                                  or limit < 0):
            raise RepoError(f"limit is a whole number >= 0 (or None for all), got {limit!r}")
        if order_by is not None and order_by not in COLUMN_KEYS:
            self._check_order_key(order_by)
        selector = as_selector(target, self.trust)
        exact_ids = target_ids(target)
        if exact_ids is not None and where is None and order_by is None and not full:
            return self._by_ids(exact_ids, limit)
        plan = plan_query(selector, where, order_by, descending, limit,
                          _FULL if full else _SHORT, _FULL)
        rows: list[tuple[Any, ...]] = []
        for n, (sql, params) in enumerate(plan.queries):
            if (n and plan.last_fills and plan.python is None and plan.limit is not None
                    and len(rows) >= plan.limit):
                break
            rows += self._index.query(sql, params)
        if plan.python is not None:
            ctx = _IndexContext(self)
            rows = [r for r in rows
                    if plan.python(json.loads(r[3]), json.loads(r[4]), ctx)]
        return rows if plan.limit is None else rows[:plan.limit]

    def _check_order_key(self, key: str) -> None:
        """An ``order_by`` metadata key no object has is a mistake (``accuracy`` for
        ``metrics.accuracy``): say which keys exist."""
        if self._index.query("SELECT 1 FROM kv WHERE key = ? AND t != 'x' LIMIT 1", [f"m.{key}"]):
            return
        if not self._index.query("SELECT 1 FROM objects LIMIT 1"):
            return  # an empty repository: nothing to sort, nothing to suggest
        if self._index.query("SELECT 1 FROM kv WHERE key = ? LIMIT 1", [f"m.{key}"]):
            raise RepoError(f"cannot order by {key!r}: its values are lists or dicts, which "
                            "have no order; order by one of their entries (a dotted key such "
                            f"as '{key}.<name>') or a number or text beside them")
        keys = self.metadata_keys()
        known = ", ".join(keys[:30]) + (", ..." if len(keys) > 30 else "") or "none"
        raise RepoError(f"cannot order by {key!r}: no object in {self.directory} has that "
                        f"metadata key. Metadata keys: {known}; or one of "
                        f"{', '.join(k for k in COLUMN_KEYS if k != 'id')}")

    def _by_ids(self, ids: list[str], limit: int | None) -> list[tuple[Any, ...]]:
        out = []
        for dry_id in dict.fromkeys(ids):
            out += self._index.query(f"SELECT {_SHORT.replace('o.', '')} FROM objects "
                                     "WHERE id = ?", [dry_id])
        return out if limit is None else out[:limit]

    def _object_for(self, row: tuple[Any, ...]) -> Object:
        dry_id, cls_path, name = row[0], row[1], row[2]
        full = len(row) > _SHORT_LEN
        found = self._live.get(dry_id)
        # a loaded object that another writer replaced since is not the one the row holds:
        # the query matched the row (other arguments, or other state), so it gets that
        if found is not None and not _stale(found, row) and not self._replaced_since(
                found, row[7] if full else row[4]):
            return found
        try:
            cls = TrustPolicy(self.trust).resolve_object_class(cls_path)
        except UntrustedClassError as exc:
            missing = self._missing_backend(cls_path, name)
            if missing is not None:
                raise missing from exc
            raise
        # what the query matched: the definition (a full row) or its configuration digest
        definition = json.loads(row[3]) if full else None
        cat = None if full else row[3]
        obj = make_lazy(cls, LazyState(dry_id, str(self._object_file(name)), cls_path,
                                       self.trust, definition, self, cat))
        self._cache(dry_id, obj)
        return obj

    def _entry(self, row: tuple[Any, ...]) -> dict[str, Any]:
        """A row as ``info`` gives it; a row edited by hand into what dryml never writes
        makes the index damaged (not a traceback in 'dryml repo ls')."""
        try:
            return _entry(row)
        except ValueError as exc:
            raise self._index.damaged(str(exc)) from None

    def _object_file(self, name: Any) -> Path:
        """The path of an object file the index names; an index naming anything else (edited
        by hand: '/etc/x', '../x') is damaged, and nothing outside the folder is touched."""
        if not is_object_name(name):
            raise self._index.damaged(f"it names {name!r} as an object's file, which is not "
                                      "a .dry file of this folder")
        return self.directory / str(name)

    def _missing_backend(self, cls_path: str, name: str) -> Exception | None:
        """The error naming the package to install when ``cls_path`` comes from a plugin
        that is not installed (its file's manifest says which plugins wrote it)."""
        from dryml._registry import missing_backend
        from dryml.errors import DrymlError
        from dryml.format import read_manifest

        try:
            plugins = read_manifest(self._object_file(name)).plugins
        except (DrymlError, OSError):
            return None
        return missing_backend([cls_path], plugins)

    def _load_file(self, dry_id: str, selected: LazyState | None = None,
                   into: Object | None = None) -> Object:
        """Load ``dry_id`` from its file, refusing a file that changed since it was indexed
        and, for an object a query selected, one replaced since by other arguments. ``into``:
        the lazy object the state goes into (the version this process then holds)."""
        obj, digest = load_checked(self._index, self.directory, dry_id, self.trust, selected)
        if into is not None:
            with contextlib.suppress(TypeError):
                self._versions[into] = digest
        return obj

    def _definition_json(self, dry_id: str) -> dict[str, Any] | None:
        rows = self._index.query("SELECT definition FROM objects WHERE id = ?", [dry_id])
        return json.loads(rows[0][0]) if rows else None

    def _class_mros(self) -> dict[str, list[str]]:
        return {p: json.loads(m) for p, m in self._index.query("SELECT path, mro FROM classes")}


def _stale(obj: Object, row: tuple[Any, ...]) -> bool:
    """Whether ``obj``, a lazy object this Repo handed out, was selected as another
    configuration than the row just selected (the object was replaced since by one with
    other arguments: its first use raises, and a new query gets a new lazy object). Rows
    hold the configuration digest (``o.cat``) fourth, or the definition (full rows)."""
    state = lazy_state(obj)
    if state is None or len(row) < 4:
        return False
    selected = state.cat if state.cat is not None else (
        None if state.definition is None else category_digest(state.definition))
    now = row[3] if len(row) == _SHORT_LEN else category_digest(json.loads(row[3]))
    return selected is not None and selected != now


class _DeadWriter(Exception):
    """Internal: an intent on an id being added belongs to a process that died."""
