"""Is a file still what the index says? Used by ``check`` and by every load through a Repo.

The index records each file's stamp (size, mtime, manifest digest: see ``_files``). A load
through the Repo reads the file's trailer from the same open file it then loads from, and
refuses a file whose digest differs from the index: the query matched the index, so an object
whose arguments may differ from it is never returned. Rows written before stamps existed are
compared by their definition instead, and get their stamp recorded.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from dryml._io import load_object, open_container, open_regular
from dryml.errors import ObjectNotFoundError, RepoError
from dryml.repo._defjson import manifest_definition
from dryml.repo._files import Stamp, read_stamp
from dryml.repo._index import Index, owner_alive
from dryml.repo._journal import is_object_name
from dryml.repo._match import json_equal

if TYPE_CHECKING:
    from dryml._object import Object
    from dryml.format import Manifest
    from dryml.format._container import ContainerReader
    from dryml.repo._lazy import LazyState

__all__ = ["describe_change", "file_definition", "load_checked", "record_stamp"]

_ROW = "SELECT file, size, digest, definition, cat FROM objects WHERE id = ?"


def file_definition(reader: ContainerReader, manifest: Manifest) -> dict[str, Any]:
    """The root definition a file holds, as the index stores it."""
    return manifest_definition(reader.manifest, reader)


def describe_change(indexed: dict[str, Any], found: dict[str, Any]) -> str:
    """How a file's root definition differs from the index's, in one phrase."""
    if json_equal(indexed, found):
        return ("its class and arguments are as indexed, but the rest of its manifest differs "
                "(its saved state or metadata)")
    if indexed.get("cls") != found.get("cls"):
        return f"the index says class {indexed.get('cls')}, the file holds {found.get('cls')}"
    return (f"its arguments differ from the index: the index has {_arguments(indexed)}, "
            f"the file has {_arguments(found)}")


def _arguments(definition: dict[str, Any], width: int = 120) -> str:
    kwargs = {k: v for k, v in definition.get("dry_kwargs", {}).items() if k != "dry_id"}
    text = f"args={json.dumps(definition.get('dry_args', []))} kwargs={json.dumps(kwargs)}"
    return text if len(text) <= width else text[:width - 3] + "..."


def record_stamp(index: Index, dry_id: str, stamp: Stamp, old_digest: str | None) -> None:
    """Record a file's stamp for a row whose digest is still ``old_digest`` (a concurrent
    writer that replaced the object since wins)."""
    with index.write() as conn:
        conn.execute("UPDATE objects SET size = ?, mtime = ?, digest = ? "
                     "WHERE id = ? AND digest IS ?",
                     (stamp.size, stamp.mtime, stamp.digest, dry_id, old_digest))


def load_checked(index: Index, directory: Path, dry_id: str, trust: tuple[str, ...],
                 selected: LazyState | None = None) -> tuple[Object, str]:
    """Load object ``dry_id`` from its file after checking that the file is the one indexed;
    returns it and its file's manifest digest.

    Raises RepoError when the file changed behind the repository's back (run
    ``dryml repo check``) or, for an object a query ``selected`` (its definition or
    configuration digest then), when it was replaced since by one with other arguments;
    ObjectNotFoundError when the object left the index.
    """
    for attempt in range(12):
        rows = index.query(_ROW, [dry_id])
        if not rows:
            raise ObjectNotFoundError(f"object {dry_id!r} is no longer in {directory} (it was "
                                      "deleted after it was selected)")
        name, size, digest, definition, cat = rows[0]
        if selected is not None and _replaced(selected, definition, cat):
            raise RepoError(
                f"object {dry_id!r} in {directory} was replaced after it was selected, by one "
                f"with other arguments (now {_arguments(json.loads(definition))}); select it "
                "again")
        if not is_object_name(name):  # an index edited by hand: never read outside the folder
            raise index.damaged(f"it names {name!r} as the file of {dry_id!r}, which is not "
                                "a .dry file of this folder")
        path = directory / name
        try:
            stream = open_regular(path)
        except FileNotFoundError:
            raise RepoError(f"the file of object {dry_id!r} ({path}) is gone; run 'dryml repo "
                            f"check {directory}' on the repository") from None
        with stream:
            stamp = read_stamp(stream)
            if digest is None:
                _check_unstamped(stream, path, dry_id, json.loads(definition), directory)
                record_stamp(index, dry_id, stamp, None)
            elif stamp.digest != digest or stamp.size != size:
                if _being_replaced(index, dry_id, rows[0]):
                    time.sleep(min(0.005 * 2**attempt, 0.25))
                    continue
                raise _changed(path, dry_id, directory, size, digest, stamp)
            stream.seek(0)
            return load_object(stream, trust=trust), stamp.digest
    raise _changed(path, dry_id, directory, size, digest, stamp)


def _replaced(selected: LazyState, definition: str, cat: str) -> bool:
    """Whether the row of a selected object holds other arguments than the query saw."""
    if selected.cat is not None:
        return cat != selected.cat
    return selected.definition is not None and not json_equal(json.loads(definition),
                                                              selected.definition)


def _being_replaced(index: Index, dry_id: str, row: tuple[Any, ...]) -> bool:
    """Whether a live writer is replacing ``dry_id`` or just did (the row changed)."""
    busy = index.query("SELECT host, pid, pstart, started FROM intents WHERE id = ?",
                       [dry_id])
    if any(owner_alive(*b) for b in busy):
        return True
    return index.query(_ROW, [dry_id])[:1] != [row]


def _check_unstamped(stream: IO[bytes], path: Path, dry_id: str, indexed: dict[str, Any],
                     directory: Path) -> None:
    """For a row indexed before stamps existed: the file must hold the indexed definition."""
    stream.seek(0)
    with open_container(stream, None) as (reader, manifest):
        found = file_definition(reader, manifest)
        root = manifest.root
    if root != dry_id or found != indexed:
        what = (f"it holds object {root!r}" if root != dry_id
                else describe_change(indexed, found))
        raise RepoError(f"{path} is not the file that was indexed as object {dry_id!r}: {what}. "
                        f"It was not loaded. Run 'dryml repo check {directory}' to see every "
                        f"difference, then 'dryml repo reindex {directory}' to index the files "
                        "as they are now (or restore the file)")


def _changed(path: Path, dry_id: str, directory: Path, size: int, digest: str,
             stamp: Stamp) -> RepoError:
    return RepoError(
        f"{path} changed after it was indexed as object {dry_id!r} (the index recorded "
        f"{size} bytes and manifest {digest}; the file now has {stamp.size} bytes and manifest "
        f"{stamp.digest}), so it may not hold what the query matched and was not loaded. Run "
        f"'dryml repo check {directory}' to see what differs, then 'dryml repo reindex "
        f"{directory}' to index the file as it is now (or restore the file)")
