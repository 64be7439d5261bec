"""``dryml plugins``: every plugin found, its distribution, version, status and hooks, and the
claims of plugins on one name or type that are not used as made."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["register", "run"]

_DESCRIPTION = """\
List dryml's plugins: core's built-ins and every entry point of the 'dryml' group, with the
distribution and version that provide each, its status (active, unavailable with the reason,
or blocked by DRYML_DISABLED_PLUGINS / DRYML_DISABLE_PLUGIN_AUTOLOAD) and the hooks it
implements, then the conflicts: a serializer or codec type or name that two plugins claim
(neither is used) or that only core may handle, and a sampler or executor name registered
twice. Listing plugins imports no framework."""


def register(subparsers: Any) -> None:
    """Add the ``plugins`` command."""
    parser = subparsers.add_parser(
        "plugins", help="list plugins, their status and hooks", description=_DESCRIPTION)
    parser.add_argument("--json", action="store_true", help="print JSON for machines")
    parser.add_argument("--check", action="store_true",
                        help="exit with status 1 when a plugin is unavailable or two claim one "
                        "name or type")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print the plugin table (or JSON) and the conflicts; 1 with ``--check`` when a plugin
    is unavailable or there is a conflict."""
    import warnings

    import attrs

    from dryml import _registry
    from dryml.errors import DrymlPluginWarning
    from dryml.plugins import _RECORD_TYPES, _SEE_TABLE, _env_list, get_plugin_manager

    manager = get_plugin_manager()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DrymlPluginWarning)
        # Every hook is asked first, so that a plugin whose hook raises or returns the wrong
        # records shows as unavailable here, not only at its first use (it said "active").
        for hook in sorted(_RECORD_TYPES):
            manager.records(hook)
        conflicts = [c.message.removesuffix(_SEE_TABLE) for c in _registry.conflicts()]
        infos = manager.infos()
    for warning in caught:
        # the table says which plugins are unavailable and why; the rest (a misspelt records
        # module of a backend that is active) is said here
        text = str(warning.message)
        if not (issubclass(warning.category, DrymlPluginWarning) and text.endswith(_SEE_TABLE)):
            sys.stderr.write(f"dryml: warning: {text}\n")
    if args.json:
        json.dump([attrs.asdict(info) for info in infos], sys.stdout, indent=2)
        sys.stdout.write("\n")
        for conflict in conflicts:
            sys.stderr.write(f"dryml: warning: {conflict}\n")
    else:
        sys.stdout.write(render(infos) + "\n")
        sys.stdout.write(render_executors() + "\n")
        if conflicts:
            sys.stdout.write("  conflicts:\n" + "".join(f"    {c}\n" for c in conflicts))
    unknown = sorted(set(_env_list("DRYML_DISABLED_PLUGINS")) - {i.name for i in infos})
    if unknown:  # a misspelt name blocks nothing (a distribution name, 'dryml-toy' for 'toy')
        sys.stderr.write(f"dryml: warning: DRYML_DISABLED_PLUGINS names {', '.join(unknown)}, "
                         f"which no plugin is called (the names are the NAME column: "
                         f"{', '.join(i.name for i in infos)})\n")
    broken = any(info.status == "unavailable" for info in infos) or bool(conflicts)
    return 1 if args.check and broken else 0


def render(infos: list[Any]) -> str:
    """The text table; a non-active plugin's reason goes on an indented line below its row."""
    from dryml.cli._text import table

    headers = ("NAME", "DISTRIBUTION", "VERSION", "STATUS", "HOOKS")
    rows = [(info.name, info.distribution or "-", info.version or "-", info.status,
             ", ".join(h.removeprefix("dryml_") for h in info.hooks) or "-") for info in infos]
    lines = table(headers, rows).splitlines()
    out = [lines[0]]
    for info, line in zip(infos, lines[1:], strict=True):
        out.append(line)
        if info.reason:
            out.append(f"    {info.status}: {info.reason}")
    return "\n".join(out)


def render_executors() -> str:
    """One indented line naming the executors the plugins register (``configure(executor=)``),
    without importing them: which is chosen, and what a missing one needs."""
    from dryml.context._executor import chosen_executor
    from dryml.plugins import get_plugin_manager

    chosen = chosen_executor()[0]
    parts = []
    for plugin, rec in get_plugin_manager().records("dryml_executors"):
        notes = [f"from {plugin}"]
        if rec.name == chosen:
            notes.insert(0, "chosen")
        if rec.requires is not None and not _importable(rec.requires):
            notes.append(f"needs pip install '{rec.extra or rec.package}'")
        parts.append(f"{rec.name} ({', '.join(notes)})")
    return "  executors: " + ", ".join(parts)


def _importable(module: str) -> bool:
    """Whether ``module`` can be found; a missing parent package is a missing module too."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
