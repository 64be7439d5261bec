"""The ``dryml`` command line (``dryml plugins``, ``dryml inspect FILE``, ...).

Every subcommand lives in its own private module of this package. Adding one takes two steps:

1. write ``dryml/cli/_name.py`` with ``register(subparsers) -> None``, which calls
   ``subparsers.add_parser(...)``, adds its arguments and ends with
   ``parser.set_defaults(run=run)``, where ``run(args: argparse.Namespace) -> int`` does the
   work and returns the exit status;
2. add ``"dryml.cli._name"`` to :data:`COMMANDS` below.

Command modules are imported to build the parser (so that ``dryml --help`` lists them), so
they must import nothing heavy at module level: numpy, the file reader and the plugin manager
are imported inside ``run``. A :class:`~dryml.errors.DrymlError` (or an ``OSError``) escaping
``run`` is printed as one ``dryml: error: ...`` line on stderr with exit status 1, never a
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import TextIO

__all__ = ["COMMANDS", "build_parser", "main"]

# One line per subcommand module (see the module docstring); the order is the --help order.
COMMANDS: list[str] = [
    "dryml.cli._plugins",
    "dryml.cli._inspect",
    "dryml.cli._repo",
    "dryml.cli._search",
    "dryml.cli._resources",
]


def build_parser() -> argparse.ArgumentParser:
    """The ``dryml`` argument parser with every command of :data:`COMMANDS` registered."""
    from dryml._version import __version__

    parser = argparse.ArgumentParser(
        prog="dryml",
        description="dryml: define, save, inspect and compare ML models across frameworks.",
    )
    parser.add_argument("--version", action="version", version=f"dryml-core {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for module_name in COMMANDS:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``dryml`` command line; returns the exit status (the console script exits it)."""
    from dryml.errors import DrymlError

    parser = build_parser()
    args = parser.parse_args(argv)
    run = getattr(args, "run", None)
    if run is None:  # a command without its action prints that command's help
        getattr(args, "help_parser", parser).print_help(sys.stderr)
        return 2
    from dryml.cli._text import SafeText

    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = SafeText(out), SafeText(err)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _warning_printer(warnings.showwarning)
            status: int = run(args)
    except DrymlError as exc:
        return _fail(str(exc))
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):  # `dryml ... | head`: the reader went away
            # Point stdout at devnull so that the flush at exit does not fail again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
        return _fail(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc))
    except RecursionError:
        return _fail("the input is nested too deeply to show")
    finally:
        sys.stdout, sys.stderr = out, err
    return status


def _warning_printer(default: Callable[..., None]) -> Callable[..., None]:
    """dryml's own warnings as one ``dryml: warning: ...`` line; others as ``default`` shows."""

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: TextIO | None = None, line: str | None = None) -> None:
        from dryml.errors import DrymlWarning

        if issubclass(category, DrymlWarning):
            print(f"dryml: warning: {message}", file=file or sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    return show


def _fail(message: str) -> int:
    from dryml.cli._text import terminal_safe

    print(terminal_safe(f"dryml: error: {message}"), file=sys.stderr)
    return 1
