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

__all__ = ["Recorded", "emit", "recorded", "user_stacklevel"]

#: One warning as it travels back: (text, category module, category name, file, line, module).
Recorded = tuple[str, str, str, str, int, "str | None"]

#: at most this many warnings of one call travel back (a warning in a loop of a million)
MAX_WARNINGS = 100

# the caller's registry of warnings issued from workers, per source file: a "default" filter
# shows a warning once per place, as it does in-process
_REGISTRIES: dict[str, dict[Any, Any]] = {}


@contextlib.contextmanager
def recorded(into: list[Recorded]) -> Iterator[None]:
    """Record the warnings raised inside the block into ``into`` (see :data:`Recorded`),
    instead of printing them."""
    with warnings.catch_warnings(record=True) as caught:
        try:
            yield
        finally:
            modules: dict[str, str] = {}
            for w in caught[:MAX_WARNINGS]:
                category = w.category
                into.append((str(w.message), category.__module__, category.__qualname__,
                             str(w.filename), int(w.lineno or 0),
                             _module_of(str(w.filename), modules)))


def _module_of(filename: str, found: dict[str, str]) -> str | None:
    """The name of the imported module whose file is ``filename`` (a filter may name it:
    ``-W error::UserWarning:mypkg.mod``), or None."""
    if not found:
        found.update({str(f): name for name, m in list(sys.modules.items())
                      if isinstance(f := getattr(m, "__file__", None), str)})
    return found.get(filename)


def emit(records: list[tuple[Any, ...]]) -> None:
    """Issue recorded warnings here, each with its own category where this process has
    imported its module (else as a UserWarning naming it: never an import for a warning),
    from its module for the filters that name one."""
    for text, module, name, filename, lineno, *rest in records:
        category = _category(module, name)
        if category is UserWarning and (module, name) != ("builtins", "UserWarning"):
            text = f"{module}.{name}: {text}"
        warnings.warn_explicit(text, category, filename, lineno,
                               module=rest[0] if rest and rest[0] else None,
                               registry=_REGISTRIES.setdefault(filename, {}))


def _category(module: str, name: str) -> type[Warning]:
    found: Any = sys.modules.get(module)
    for part in name.split("."):
        found = getattr(found, part, None)
    if isinstance(found, type) and issubclass(found, Warning):
        return found
    return UserWarning


def user_stacklevel() -> int:
    """The ``stacklevel`` that makes a ``warnings.warn`` in the caller of this function point
    at the first frame outside dryml and its backends: the user's line (``model.train()``),
    not dryml's own code between them."""
    level, frame = 1, sys._getframe(1)
    while frame is not None and str(frame.f_globals.get("__name__", "")).startswith("dryml"):
        frame, level = frame.f_back, level + 1  # type: ignore[assignment]
    return level
