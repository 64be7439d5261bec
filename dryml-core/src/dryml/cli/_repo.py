"""``dryml repo init|ls|show|check|reindex DIR``: look into a repository without loading
objects.

Everything comes from the repository's index, so no class is imported and no ``.dry`` file
is read (except by ``init``, ``check`` and ``reindex``, which read manifests only). Only
``init`` (and ``reindex``, which rebuilds an index) creates an index: the read-only commands
refuse a directory that is not a repository and say how to make one.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from dryml.cli._text import count, one_line

__all__ = ["open_repository", "parse_where", "register", "run_check", "run_init", "run_ls",
           "run_reindex", "run_show"]

_OPS = (">=", "<=", "!=", ">", "<", "=")


def register(subparsers: Any) -> None:
    """Add the ``repo`` command and its subcommands."""
    parser = subparsers.add_parser(
        "repo", help="init, list, show, check and reindex a repository of .dry files",
        description="Query a dryml repository (a directory of .dry files with an index).")
    parser.set_defaults(help_parser=parser)  # 'dryml repo' alone lists its actions
    sub = parser.add_subparsers(title="repo commands", metavar="ACTION")

    init = sub.add_parser("init", help="make DIR a repository (indexing its .dry files)",
                          description="Make DIR a repository: create it if needed, and index "
                                      "the .dry files already in it. Python: "
                                      "Repo(DIR, create=True).")
    init.add_argument("directory", metavar="DIR")
    init.set_defaults(run=run_init)

    ls = sub.add_parser("ls", help="list objects (a table, or --json)",
                        description="List the objects of a repository, filtered and sorted.")
    ls.add_argument("directory", metavar="DIR")
    ls.add_argument("--class", dest="cls", metavar="NAME",
                    help="only objects of this class or a subclass (Name, pkg.mod.Name or "
                         "pkg.mod:Name)")
    ls.add_argument("--where", action="append", default=[], metavar="KEY=VALUE",
                    help="metadata KEY (dotted, e.g. metrics.accuracy) or kwargs.NAME / "
                         "args.N compared with VALUE (JSON, else text); operators = != >= <= "
                         "> <; repeat to combine")
    ls.add_argument("--order-by", metavar="KEY",
                    help="a metadata key, or created, size, dry_id, class, file")
    ls.add_argument("--desc", action="store_true", help="sort in descending order")
    ls.add_argument("--limit", type=count, metavar="N", help="show at most N objects")
    ls.add_argument("--json", action="store_true", help="print JSON for machines")
    ls.set_defaults(run=run_ls)

    show = sub.add_parser("show", help="everything the index holds about one object")
    show.add_argument("directory", metavar="DIR")
    show.add_argument("dry_id", metavar="ID",
                      help="the object's dry_id, or any unambiguous start of it")
    show.add_argument("--json", action="store_true", help="print JSON for machines")
    show.set_defaults(run=run_show)

    check = sub.add_parser("check", help="verify that the index matches the files",
                           description="Finish interrupted writes, then compare the index "
                                       "with the .dry files: every indexed file must exist "
                                       "and have the manifest digest recorded when it was "
                                       "indexed; ids held by two files are listed with what "
                                       "to remove. Exit status 1 when they differ.")
    check.add_argument("directory", metavar="DIR")
    check.add_argument("--json", action="store_true", help="print JSON for machines")
    check.set_defaults(run=run_check)

    reindex = sub.add_parser(
        "reindex", help="rebuild the index from the .dry files",
        description="Rebuild the index from the .dry files (metadata in the index is kept). "
                    "A damaged index file is kept aside and replaced. Of several files that "
                    "hold one id, DRY_ID.dry (else the first by name) is indexed and the "
                    "others are listed.")
    reindex.add_argument("directory", metavar="DIR")
    reindex.set_defaults(run=run_reindex)


def open_repository(directory: str) -> Any:
    """The Repo at ``directory`` for a read-only command: a RepoError saying how to make one
    when there is none (never creates an index)."""
    from pathlib import Path

    from dryml.errors import RepoError
    from dryml.repo import Repo
    from dryml.repo._index import INDEX_NAME

    _require_directory(directory)
    if not (Path(directory) / INDEX_NAME).is_file():
        raise RepoError(f"{directory!r} is not a dryml repository (it has no {INDEX_NAME}). "
                        f"To make it one, indexing the .dry files in it: dryml repo init "
                        f"{_quoted(directory)}")
    return Repo(directory)


def _require_directory(directory: str) -> None:
    from pathlib import Path

    from dryml.errors import RepoError

    path = Path(directory)
    if not path.is_dir():
        if path.exists():  # a file: 'repo init' would fail on it too
            raise RepoError(f"no repository at {directory!r}: it is a file, not a directory "
                            "(a repository is a directory of .dry files; 'dryml inspect FILE' "
                            "shows one file)")
        raise RepoError(f"no repository at {directory!r}: it does not exist. To make a new "
                        f"one: dryml repo init {_quoted(directory)}")


def _quoted(directory: str) -> str:
    import shlex

    return shlex.quote(directory)


def run_init(args: argparse.Namespace) -> int:
    """Make a repository (or say that it already is one)."""
    from pathlib import Path

    from dryml.errors import RepoError
    from dryml.repo import Repo
    from dryml.repo._index import INDEX_NAME

    if Path(args.directory).exists() and not Path(args.directory).is_dir():
        raise RepoError(f"cannot make {args.directory!r} a repository: it is a file, not a "
                        "directory (a repository is a directory of .dry files)")
    existed = (Path(args.directory) / INDEX_NAME).is_file()
    repo = Repo(args.directory, create=True)
    if existed:
        sys.stdout.write(f"{repo.directory} is already a repository ({len(repo)} object(s))\n")
        return 0
    sys.stdout.write(f"made {repo.directory} a repository: indexed {len(repo)} object(s)\n")
    sys.stdout.write(f"list them with: dryml repo ls {_quoted(args.directory)}\n")
    return 0


def parse_where(items: list[str]) -> tuple[dict[str, Any], dict[str, Any], dict[int, Any]]:
    """``--where`` items as (metadata filters, kwargs matchers, args matchers); items on one
    key must all hold (``--where 'acc>=0.5' --where 'acc<=0.6'``)."""
    from dryml.errors import RepoError
    from dryml.repo._match import AllOf

    meta: dict[str, Any] = {}
    kwargs: dict[str, Any] = {}
    args: dict[int, Any] = {}
    for item in items:
        op, at = _operator(item)
        if op is None:
            raise RepoError(f"--where {item!r}: expected KEY=VALUE (or != >= <= > <)")
        key, text = item[:at].strip(), item[at + len(op):].strip()
        if not key or key in ("kwargs.", "args."):
            raise RepoError(f"--where {item!r}: the key before {op!r} is missing (a metadata "
                            "key such as metrics.accuracy, kwargs.NAME or args.N)")
        try:
            matcher = _matcher(op, _value(text))
        except ValueError as exc:
            raise RepoError(f"--where {item!r}: {exc}") from None
        name: Any = key
        where: dict[Any, Any] = meta
        if key.startswith("kwargs."):
            where, name = kwargs, key[len("kwargs."):]
        elif key.startswith("args.") and key[5:].isdigit():
            where, name = args, int(key[5:])
        where[name] = AllOf(where[name], matcher) if name in where else matcher
    return meta, kwargs, args


def _operator(item: str) -> tuple[str | None, int]:
    """The first operator in ``item`` and where it is: the key ends there, and the value may
    hold any of them (``note=a>b``)."""
    at = min((i for i in (item.find(o) for o in _OPS) if i >= 0), default=-1)
    if at < 0:
        return None, -1
    return next(o for o in _OPS if item.startswith(o, at)), at


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _matcher(op: str, value: Any) -> Any:
    from dryml.repo import Not, Range

    if op == "=":
        return value
    if op == "!=":
        return Not(value)
    bound = {"lo": value} if op[0] == ">" else {"hi": value}
    return Range(**bound, inclusive="both" if len(op) == 2 else "neither")


def run_ls(args: argparse.Namespace) -> int:
    """List objects as a table (or JSON)."""
    from dryml.cli._text import human_size, table
    from dryml.repo import Selector
    from dryml.repo._match import Anything

    meta, kwargs, positional = parse_where(args.where)
    selector = None
    if args.cls or kwargs or positional:
        count = max(positional) + 1 if positional else 0
        # Anything(), not a predicate placeholder, which dropped objects whose earlier
        # argument was an Object or class the CLI could not import to decode
        arg_list = [positional.get(i, Anything()) for i in range(count)]
        selector = Selector(args.cls, args=arg_list, kwargs=kwargs)
    repo = open_repository(args.directory)
    entries = repo.entries(selector, where=meta or None, order_by=args.order_by,
                           descending=args.desc, limit=args.limit)
    if args.json:
        json.dump(entries, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    rows = [[e["dry_id"], e["class"].rpartition(":")[2], _arguments(e["definition"]),
             human_size(e["size"]),
             json.dumps(e["metadata"], ensure_ascii=False) if e["metadata"] else ""]
            for e in entries]
    sys.stdout.write(table(["DRY_ID", "CLASS", "ARGUMENTS", "SIZE", "METADATA"], rows) + "\n")
    sys.stdout.write(f"{len(entries)} object(s)\n")
    return 0


def _arguments(definition: dict[str, Any], width: int = 50) -> str:
    parts = [_short(v) for v in definition.get("dry_args", [])]
    parts += [f"{k}={_short(v)}" for k, v in definition.get("dry_kwargs", {}).items()
              if k != "dry_id"]
    text = ", ".join(parts)
    return text if len(text) <= width else text[:width - 3] + "..."


def _short(value: Any) -> str:
    if isinstance(value, dict) and value.get("__dry__") == "def":
        return str(value.get("cls", "?")).rpartition(":")[2] + "(...)"
    if isinstance(value, dict) and value.get("__dry__") == "class":
        return str(value.get("path", "?")).rpartition(":")[2]
    return json.dumps(value, ensure_ascii=False)


def run_show(args: argparse.Namespace) -> int:
    """Show one object's index entry."""
    import datetime

    repo = open_repository(args.directory)
    entry = repo.info(repo.full_id(args.dry_id))
    if args.json:
        json.dump(entry, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    try:
        created = datetime.datetime.fromtimestamp(entry["created"], datetime.UTC).isoformat(
            timespec="seconds")
    except (TypeError, ValueError, OverflowError, OSError):  # an index edited by hand
        created = f"{entry['created']!r} (not a date)"
    out = [f"dry_id:     {one_line(entry['dry_id'])}", f"class:      {one_line(entry['class'])}",
           f"file:       {one_line(entry['file'])} ({entry['size']} bytes, manifest "
           f"{entry['digest']})",
           f"created:    {created}",
           "metadata:   " + json.dumps(entry["metadata"], indent=2, ensure_ascii=False).replace(
               "\n", "\n            "),
           "definition: " + json.dumps(entry["definition"], indent=2, ensure_ascii=False).replace(
               "\n", "\n            ")]
    sys.stdout.write("\n".join(out) + "\n")
    return 0


def run_check(args: argparse.Namespace) -> int:
    """Check the index against the files; 1 when they differ."""
    import attrs

    report = open_repository(args.directory).check()
    if args.json:
        json.dump({**attrs.asdict(report), "ok": report.ok}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(report.format() + "\n")
    return 0 if report.ok else 1


def run_reindex(args: argparse.Namespace) -> int:
    """Rebuild the index from the files (a damaged index is moved aside and replaced)."""
    from dryml.repo import Repo

    _require_directory(args.directory)
    repo = Repo(args.directory, repair=True)
    report = repo.rebuilt if repo.rebuilt is not None else repo.reindex()
    if report.damaged_index is not None:
        sys.stdout.write(f"the index was damaged ({report.damage}): kept it as "
                         f"{report.damaged_index} and built a new one from the .dry files "
                         f"(metadata recovered from it for {report.salvaged} object(s))\n")
    sys.stdout.write(f"indexed {report.indexed} object(s)\n")
    for dry_id in report.changed:
        sys.stdout.write(f"changed: {one_line(dry_id)}: its file changed after it was "
                         "indexed; its metadata is now the file's own (the index's described "
                         "the old file)\n")
    for dup in report.duplicates:
        sys.stdout.write(f"duplicate: {one_line(dup.summary())}\n  "
                         f"{one_line(dup.advice(str(repo.directory)))}\n")
    for name, why in report.skipped:
        sys.stdout.write(f"skipped {one_line(name)}: {one_line(why)}\n")
    return 0
