"""Warnings a call raises in a worker, raised again in its caller as warnings.

A worker records the warnings of each call (its own filters decide which: what it ignores
stays ignored) and sends them with the reply; the caller issues each one with
:func:`warnings.warn_explicit`, so its filters, ``catch_warnings``, ``pytest.warns`` and
``-W error`` apply as if the function had run in-process. Printed in the worker instead, they
were only text on stderr.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator
from typing import Any

__all__ = ["emit", "recorded"]

#: at most this many warnings of one call travel back (a warning in a loop of a million)
MAX_WARNINGS = 100

# the caller's registry of warnings issued from workers, per source file: a "default" filter
# shows a warning once per place, as it does in-process
_REGISTRIES: dict[str, dict[Any, Any]] = {}


@contextlib.contextmanager
def recorded(into: list[tuple[str, str, str, str, int]]) -> Iterator[None]:
    """Record the warnings raised inside the block into ``into`` as (text, category module,
    category name, file, line), instead of printing them."""
    with warnings.catch_warnings(record=True) as caught:
        try:
            yield
        finally:
            for w in caught[:MAX_WARNINGS]:
                category = w.category
                into.append((str(w.message), category.__module__, category.__qualname__,
                             str(w.filename), int(w.lineno or 0)))


def emit(records: list[tuple[str, str, str, str, int]]) -> None:
    """Issue recorded warnings here, each with its own category where this process has
    imported its module (else as a UserWarning naming it: never an import for a warning)."""
    for text, module, name, filename, lineno in records:
        category = _category(module, name)
        if category is UserWarning and (module, name) != ("builtins", "UserWarning"):
            text = f"{module}.{name}: {text}"
        warnings.warn_explicit(text, category, filename, lineno,
                               registry=_REGISTRIES.setdefault(filename, {}))


def _category(module: str, name: str) -> type[Warning]:
    found: Any = sys.modules.get(module)
    for part in name.split("."):
        found = getattr(found, part, None)
    if isinstance(found, type) and issubclass(found, Warning):
        return found
    return UserWarning
