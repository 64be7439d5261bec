"""Checked by `nox -s typecheck` (mypy --strict, which reports unused `type: ignore`s): the
names of `dryml.context`, imported lazily at run time, stay known to the type checker, so a
misspelt one is an error. Not a test module: it is never run."""

import dryml.context

dryml.context.configure(max_workers=1)
dryml.context.confgure(max_workers=1)  # type: ignore[attr-defined]
