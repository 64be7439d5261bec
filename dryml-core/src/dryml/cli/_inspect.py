"""``dryml inspect FILE``: a ``.dry`` file's manifest, object tree, classes and members.

Reads the manifest and member table through :func:`dryml._io.open_container` (every bound
and the manifest checksum checked) and imports no class the file names: whether a class
would be trusted is explained, not tried. Member checksums are verified by streaming the
stored bytes (``--no-verify`` skips that); a damaged member is reported and the exit status
is 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dryml.cli._report import FileReport, NodeReport

__all__ = ["register", "render", "run"]

_DESCRIPTION = """\
Show what a .dry file holds without loading it: the manifest (format and dryml versions,
creation time, plugin and framework versions), the object tree (root first: class, dry_id,
arguments, stored state), each class it names and whether load_object would trust it, and
every binary member with its sizes, compression and checksum. No class from the file is
imported, so inspecting an untrusted file is safe."""


def register(subparsers: Any) -> None:
    """Add the ``inspect`` command."""
    parser = subparsers.add_parser(
        "inspect", help="show a .dry file's contents without loading it",
        description=_DESCRIPTION)
    parser.add_argument("file", metavar="FILE", help="the .dry file")
    parser.add_argument("--json", action="store_true", help="print JSON for machines")
    parser.add_argument("--trust", action="append", default=[], metavar="MODULE",
                        help="judge trust as load_object(trust=[MODULE, ...]) would")
    parser.add_argument("--no-verify", dest="verify", action="store_false",
                        help="do not check the members' checksums (faster on huge files)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print the report; 1 when the file cannot be read or a member is damaged."""
    import os

    import attrs

    from dryml._io import open_container
    from dryml.cli._report import build_report

    with open_container(args.file, None) as (reader, manifest):
        report = build_report(os.fspath(args.file), reader.stream, manifest, reader.size,
                              trust=args.trust, verify=args.verify)
    if args.json:
        json.dump(attrs.asdict(report), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render(report))
    damaged = [m.name for m in report.members if m.checksum_ok is False]
    if damaged:
        print(f"dryml: error: {len(damaged)} member(s) do not match their checksum: "
              f"{', '.join(damaged)}; the file is damaged", file=sys.stderr)
        return 1
    return 0


def render(report: FileReport) -> str:
    """The text form of a report."""
    from dryml.cli._text import human_size, table

    out = [f"file        {report.file} ({human_size(report.file_size)})",
           f"format      .dry version {report.format_version}, written by dryml-core "
           f"{report.dryml_version} on {report.created}",
           f"plugins     {_versions(report.plugins)}",
           f"frameworks  {_versions(report.frameworks)}",
           "", f"objects ({len(report.objects) + len(report.unreachable)}, root first):"]
    nodes = {node.id: node for node in report.objects}
    _render_node(nodes, report.root, 1, set(), out)
    if report.unreachable:
        out.append(f"  not reachable from the root: {', '.join(report.unreachable)}")
    out += ["", "classes:"]
    rows = [(c.path, c.used_as, "trusted" if c.trusted else "NOT TRUSTED", c.reason)
            for c in report.classes]
    out.append(table(("CLASS", "USED AS", "TRUST", "WHY"), rows, indent="  "))
    stored = sum(m.size for m in report.members)
    raw = sum(m.raw_size for m in report.members)
    out += ["", f"members ({len(report.members)}, {human_size(stored)} stored, "
                f"{human_size(raw)} raw):"]
    if report.members:
        member_rows = [(m.name, f"{m.kind} {m.content}".strip(), human_size(m.size),
                 human_size(m.raw_size), m.compression,
                 {True: "ok", False: "DAMAGED", None: "not checked"}[m.checksum_ok],
                 "; ".join(m.used_by) or "-") for m in report.members]
        out.append(table(("NAME", "CONTENT", "STORED", "RAW", "COMPRESSION", "CHECKSUM",
                          "USED BY"), member_rows, indent="  "))
    return "\n".join(out) + "\n"


def _versions(versions: dict[str, str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(versions.items())) or "-"


def _render_node(nodes: dict[str, NodeReport], dry_id: str, depth: int, shown: set[str],
                 out: list[str]) -> None:
    pad = "  " * depth
    node = nodes.get(dry_id)
    if node is None:
        out.append(f"{pad}<missing object {dry_id}>")
        return
    trust = f"{'trusted' if node.trusted else 'NOT TRUSTED'}: {node.trust_reason}"
    if dry_id in shown:
        out.append(f"{pad}{node.cls}  (shared: the same object {dry_id[:8]} as above)")
        return
    shown.add(dry_id)
    out.append(f"{pad}{node.cls}  [{trust}]")
    details = [("dry_id", node.id)]
    if node.dry_mut:
        details.append(("dry_mut", "True"))
    if node.args:
        details.append(("args", ", ".join(node.args)))
    if node.kwargs:
        details.append(("kwargs", ", ".join(f"{k}={v}" for k, v in node.kwargs.items())))
    if node.state:
        details.append(("state", ", ".join(f"{k}={v}" for k, v in node.state.items())))
    out.extend(f"{pad}  {key + ':':8} {value}" for key, value in details)
    for child in node.children:
        _render_node(nodes, child, depth + 1, shown, out)
