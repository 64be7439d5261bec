"""``check``: does the index still match the files, exactly?

For every indexed object the file must exist, hold that object, and have the manifest digest
the index recorded (any change to an argument, the state or the metadata in the file changes
the digest). A file whose size or mtime changed while its digest did not has every member's
checksum verified. Files that hold an id another file holds too are reported as duplicates,
with both paths and what to remove.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import attrs

from dryml._io import open_container, open_regular
from dryml._text import one_line
from dryml.format._stale import stale_temps, temp_target
from dryml.repo._defjson import category_digest, scalar_entries
from dryml.repo._files import Stamp, describe_error, read_stamp, temp_files
from dryml.repo._index import Index
from dryml.repo._maintenance import Duplicate, object_files, recover
from dryml.repo._verify import describe_change, file_definition

__all__ = ["CheckReport", "check"]


@attrs.define
class CheckReport:
    """Whether the index matches the files. ``ok`` is True when it does; files that are not
    objects (foreign or corrupt and not indexed) are listed in ``skipped`` but are no fault.
    ``duplicates`` lists object ids held by more than one file (each says which to remove)."""

    objects: int = 0
    files: int = 0
    missing: list[str] = attrs.field(factory=list)
    unindexed: list[str] = attrs.field(factory=list)
    mismatched: list[tuple[str, str]] = attrs.field(factory=list)
    unreadable: list[tuple[str, str]] = attrs.field(factory=list)
    duplicates: list[Duplicate] = attrs.field(factory=list)
    skipped: list[tuple[str, str]] = attrs.field(factory=list)
    in_progress: list[str] = attrs.field(factory=list)
    #: Temporary files of writes that will never finish (``(name, what and why)``): the next
    #: save into the folder removes them; they do not make the index inconsistent.
    stale_temps: list[tuple[str, str]] = attrs.field(factory=list)
    recovered: int = 0
    stamped: int = 0
    directory: str = ""

    @property
    def ok(self) -> bool:
        """True when every indexed object has its file, unchanged, every object file is
        indexed, and no id is in two files."""
        return not (self.missing or self.unindexed or self.mismatched or self.unreadable
                    or self.duplicates)

    def format(self) -> str:
        """A readable summary, one problem per line, ending with what to do."""
        lines = [f"{self.objects} objects indexed, {self.files} object files"]
        lines += [f"MISSING FILE  {one_line(n)} (indexed, file gone)" for n in self.missing]
        lines += [f"NOT INDEXED   {one_line(n)} (run 'dryml repo reindex')" for n in self.unindexed]
        lines += [f"MISMATCH      {one_line(n)}: {one_line(why)}" for n, why in self.mismatched]
        lines += [f"UNREADABLE    {one_line(n)}: {one_line(why)}" for n, why in self.unreadable]
        for dup in self.duplicates:
            lines += [f"DUPLICATE     {one_line(dup.summary())}",
                      f"              {one_line(dup.advice(self.directory))}"]
        lines += [f"skipped       {one_line(n)}: {one_line(why)}" for n, why in self.skipped]
        lines += [f"in progress   {one_line(n)} (another process is writing it)"
                  for n in self.in_progress]
        lines += [f"STALE TEMP    {one_line(n)} ({one_line(why)}): the next save into this folder "
                  "removes it, or delete it" for n, why in self.stale_temps]
        if self.recovered:
            lines.append(f"recovered {self.recovered} interrupted write(s)")
        if self.stamped:
            lines.append(f"recorded the manifest digest of {self.stamped} file(s) "
                         "(indexed by an older dryml-core, or copied since)")
        where = shlex.quote(self.directory) if self.directory else "DIR"
        if self.ok:
            lines.append("OK: the index matches the files")
        elif self.missing or self.unindexed or self.mismatched or self.unreadable:
            extra = " (after removing the duplicate files above)" if self.duplicates else ""
            lines.append(f"INCONSISTENT: run 'dryml repo reindex {where}'{extra} to index the "
                         "files as they are now, or restore the files listed above")
        else:
            lines.append("INCONSISTENT: an object id is in more than one file; remove the "
                         "files named above (the index can hold only one file per id)")
        return "\n".join(lines)


def check(index: Index, directory: Path) -> CheckReport:
    """Compare the index with the files (reads every indexed file's manifest and trailer).

    Raises IndexDamagedError when the index file itself is damaged. Records the digest of
    rows that lack one (indexed by an older dryml-core) when the file holds what they say.
    """
    problem = index.integrity_problem()
    if problem is not None:
        raise index.damaged(problem)
    report = CheckReport(recovered=recover(index, directory), directory=str(directory))
    rows = index.query("SELECT id, file, size, mtime, digest, definition, cls, cat, metadata "
                       "FROM objects")
    live = {r[0]: r for r in index.query(
        "SELECT file, host, pid, pstart FROM intents WHERE op != 'session'")}
    report.in_progress = sorted(live)
    report.objects = len(rows)
    names, report.skipped = object_files(directory)
    on_disk = set(names)
    indexed: dict[str, tuple[str, str | None]] = {}  # id -> (file, digest)
    stamps: list[tuple[str, Stamp, str | None]] = []
    derived = _derived_columns(index, rows)
    for dry_id, name, size, mtime, digest, definition, *_ in rows:
        indexed[dry_id] = (name, digest)
        if name not in on_disk:
            if name not in live:
                report.missing.append(name)
            continue
        if name in live:
            continue  # being replaced right now: compared when the write is done
        kind, why, stamp = _check_file(directory / name, dry_id, size, mtime, digest,
                                       definition)
        if kind == "unreadable":
            report.unreadable.append((name, why))
        elif kind == "mismatched":
            report.mismatched.append((name, why))
        elif dry_id in derived:  # the file is as indexed; what queries match is not
            report.mismatched.append((name, derived[dry_id]))
        elif stamp is not None:
            stamps.append((dry_id, stamp, digest))
    indexed_files = {name for name, _ in indexed.values()}
    holders: dict[str, list[tuple[str, str]]] = {}
    for name in names:
        if name in indexed_files or name in live:
            continue
        try:
            with open(directory / name, "rb") as stream:
                found = read_stamp(stream).digest
                with open_container(stream, None) as (_, manifest):
                    root = manifest.root
        except Exception as exc:  # noqa: BLE001 - a foreign or corrupt file: skipped
            report.skipped.append((name, describe_error(exc)))
            continue
        holders.setdefault(root, []).append((name, found))
    for root, files in sorted(holders.items()):
        owner = indexed.get(root)
        if owner is not None and owner[0] in on_disk:
            report.duplicates.append(Duplicate.of(root, [owner, *files], indexed=True))
        elif len(files) > 1:
            report.duplicates.append(Duplicate.of(root, files, indexed=False))
        elif index.query("SELECT 1 FROM objects WHERE id = ? AND file = ?",
                         [root, files[0][0]]):
            continue  # added by another process since the rows above were read
        else:
            report.unindexed.append(f"{files[0][0]} (object {root!r})")
    report.files = len(names) - sum(1 for n, _ in report.skipped if n in on_disk)
    stale = {t.path.name: t for t in stale_temps(directory)}
    for tmp in temp_files(directory):
        owner_name = temp_target(tmp.name)
        if tmp.name in stale:
            left = stale[tmp.name]
            report.stale_temps.append((tmp.name, f"{_size(left.size)}; {left.why}"))
        elif owner_name not in live:  # a live writer's, or one written to within the hour
            report.in_progress.append(tmp.name)
    report.skipped.sort()
    report.stamped = _record(index, stamps)
    return report


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    value, unit = n / 1024, "KB"
    for bigger in ("MB", "GB", "TB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{value:.1f} {unit}"


def _check_file(path: Path, dry_id: str, size: int, mtime: int | None, digest: str | None,
                definition: str) -> tuple[str | None, str, Stamp | None]:
    """(problem kind or None, why, a stamp to record or None) for one indexed file."""
    try:
        with open_regular(path) as stream:
            stamp = read_stamp(stream)
            with open_container(stream, None) as (reader, manifest):
                if manifest.root != dry_id:
                    return "mismatched", (f"the index says {dry_id!r}, the file holds "
                                          f"{manifest.root!r}"), None
                if digest is None or stamp.digest != digest:
                    indexed = json.loads(definition)
                    found = file_definition(reader, manifest)
                    if digest is None:  # indexed before digests: compare the definitions
                        if found == indexed:
                            return None, "", stamp
                        return "mismatched", describe_change(indexed, found), None
                    return "mismatched", ("the file changed after it was indexed: "
                                          + describe_change(indexed, found)), None
                if stamp.size != size:
                    return "mismatched", (f"the index says {size} bytes, the file has "
                                          f"{stamp.size}"), None
                # the file is the one indexed; is the index's copy of its definition, which
                # queries match, still the file's? (an index edited by hand to other
                # arguments passed check while queries returned the wrong objects)
                indexed = json.loads(definition)
                found = file_definition(reader, manifest)
                if _canonical(found) != _canonical(indexed):
                    return "mismatched", ("the index's copy of the definition was changed: "
                                          + describe_change(indexed, found)), None
                if stamp.mtime != mtime:  # rewritten or copied: are the members intact too?
                    for name, info in reader.members.items():
                        reader._verify_stored(name, info)
                    return None, "", stamp
    except Exception as exc:  # noqa: BLE001 - every failure to read the file is reported
        return "unreadable", describe_error(exc), None
    return None, "", None


def _derived_columns(index: Index, rows: list[tuple[object, ...]]) -> dict[str, str]:
    """Objects whose class, configuration digest or key/value entries (what queries match)
    are not what the index's own definition and metadata give, with what differs (a kv value
    edited by hand made a query return an object whose definition said otherwise, and a check
    of the definition alone passed it)."""
    entries: dict[str, set[tuple[object, ...]]] = {}
    for dry_id, key, kind, value in index.query("SELECT id, key, t, value FROM kv"):
        entries.setdefault(dry_id, set()).add((key, kind, value))
    found: dict[str, str] = {}
    for dry_id, *_, definition, cls, cat, metadata in rows:
        try:
            data, meta = json.loads(str(definition)), json.loads(str(metadata))
            want = set(scalar_entries(data, meta))
        except (ValueError, TypeError, AttributeError) as exc:
            found[str(dry_id)] = f"the index's row cannot be read: {type(exc).__name__}: {exc}"
            continue
        if cls != data.get("cls"):
            found[str(dry_id)] = (f"the index's class column says {cls!r}, its definition "
                                  f"{data.get('cls')!r}")
        elif cat != category_digest(data):
            found[str(dry_id)] = "the index's configuration digest was changed"
        else:
            have = entries.get(str(dry_id), set())
            if have != want:
                odd = sorted(str(e[0]) for e in have ^ want)
                found[str(dry_id)] = ("the index's key/value entries (what queries match) "
                                      f"differ from its definition at {', '.join(odd[:3])}")
    return found


def _canonical(definition: object) -> str:
    """A definition as comparable text (NaN equals NaN, key order does not count)."""
    return json.dumps(definition, sort_keys=True)


def _record(index: Index, stamps: list[tuple[str, Stamp, str | None]]) -> int:
    """Record stamps (only where the row still has the digest that was compared)."""
    if not stamps:
        return 0
    with index.write() as conn:
        for dry_id, stamp, old in stamps:
            conn.execute("UPDATE objects SET size = ?, mtime = ?, digest = ? "
                         "WHERE id = ? AND digest IS ?",
                         (stamp.size, stamp.mtime, stamp.digest, dry_id, old))
    return sum(1 for _, _, old in stamps if old is None)
