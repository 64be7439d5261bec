"""``dryml resources``: the GPU shares and CPUs every dryml process on this machine holds (the
ledger)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["register", "run"]

_DESCRIPTION = """\
List the grants in this machine's resource ledger: which dryml process (pid and command) holds
how much of which GPU or CPU, and since when. CPUs appear when a requirement names them
(num_cpus, cpu/N); the one CPU a worker gets by default is accounted in its own process only.
Grants of processes that have ended (killed ones included) are dropped before listing. The
ledger lives in $DRYML_LEDGER_DIR, else /dev/shm/dryml-<uid>, else /tmp/dryml-<uid> (TMPDIR and
XDG_RUNTIME_DIR are not followed); DRYML_LEDGER=process turns it off."""


def register(subparsers: Any) -> None:
    """Add the ``resources`` command."""
    parser = subparsers.add_parser(
        "resources", help="list the GPU shares and CPUs dryml processes hold on this machine",
        description=_DESCRIPTION)
    parser.add_argument("--json", action="store_true", help="print JSON for machines")
    parser.add_argument("--forget", type=int, metavar="PID",
                        help="drop the grants of process PID of another PID namespace (a "
                             "container) that is gone, which no process here can check")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print the grants (or JSON)."""
    import datetime

    import attrs

    from dryml.cli._text import table
    from dryml.context._ledger import Ledger, ledger_dir, ledger_enabled

    if not ledger_enabled():
        sys.stdout.write("the machine-wide ledger is off (DRYML_LEDGER=process): each process "
                         "accounts only for its own workers\n")
        return 0
    directory = ledger_dir()
    if args.forget is not None:
        if not (directory / "ledger.sqlite").exists():
            sys.stdout.write("no ledger: nothing to forget\n")
            return 0
        gone = Ledger(directory).forget(args.forget)
        sys.stdout.write(f"dropped {gone} grant row(s) of pid {args.forget} of another PID "
                         "namespace or machine (this machine's own are dropped when their "
                         "process has ended)\n")
        return 0
    holdings = Ledger(directory).holdings() if (directory / "ledger.sqlite").exists() else []
    if args.json:
        json.dump([attrs.asdict(h) for h in holdings], sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    sys.stdout.write(f"ledger: {directory / 'ledger.sqlite'}\n")
    if not holdings:
        sys.stdout.write("no grants: no dryml process on this machine holds a GPU share or a CPU\n")
        return 0
    rows = [(f"{h.pid}{'*' if h.elsewhere else ''}", h.name, f"{h.amount:g}", h.resource,
             datetime.datetime.fromtimestamp(h.since).isoformat(sep=" ", timespec="seconds"),
             h.command) for h in holdings]
    sys.stdout.write(table(("PID", "RESOURCE", "AMOUNT", "DEVICE", "SINCE", "COMMAND"), rows)
                     + "\n")
    if any(h.elsewhere for h in holdings):
        sys.stdout.write("* held by a process of another PID namespace or machine (a container "
                         "sharing this ledger): it cannot be checked from here, so it stays "
                         "until a process there drops it; if that container is gone for "
                         "good, run dryml resources --forget PID\n")
    return 0
