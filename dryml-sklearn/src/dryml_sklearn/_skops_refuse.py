"""Values a dryml save refuses while skops writes them, wherever the estimator holds them.

skops finds the state of each value through ``_get_state``, a ``functools.singledispatch``
function. :func:`refuse_when` registers, over skops' own getter for a type, one that raises
:class:`Refused` (naming the value and what to do) when a check finds a reason, and only while
a dryml save writes (:func:`during_save`) or while it writes a file (:func:`into_file`): other
users of skops in the process see skops' own behaviour. :func:`dryml_sklearn._skops_arrays.dumps`
adds where the estimator holds the value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dryml_sklearn._skops_import import import_skops

import_skops()  # before any skops.io module: see dryml_sklearn._skops_import

from skops.io._utils import SaveContext, _get_state  # noqa: E402 - after import_skops()

from dryml.errors import SerializationError  # noqa: E402 - after import_skops()

__all__ = ["Refused", "during_save", "into_file", "refuse_when"]


class Refused(SerializationError):
    """A value no file can hold; ``value`` is the object, ``why`` what to do."""

    def __init__(self, value: Any, why: str) -> None:
        super().__init__(why)
        self.value, self.why = value, why


def during_save() -> bool:
    """Whether this thread is in a dryml save (a file, or a definition's JSON)."""
    from dryml_sklearn._skops_arrays import saving  # (which imports the modules using this)

    return saving()


def into_file() -> bool:
    """Whether this thread's dryml save writes a file (a definition's JSON, for ``to_dict``
    or a Repo query, is never loaded back)."""
    from dryml_sklearn._skops_arrays import current_writer

    return current_writer() is not None


def refuse_when(cls: type, why: Callable[[Any], str | None], active: Callable[[], bool]
                ) -> None:
    """Register, over skops' getter for ``cls``, one that raises :class:`Refused` when
    ``active()`` and ``why(obj)`` gives a reason; otherwise skops' own getter writes it."""
    skops_getter = _get_state.dispatch(cls)

    def getter(obj: Any, save_context: SaveContext) -> dict[str, Any]:
        if active():
            reason = why(obj)
            if reason is not None:
                raise Refused(obj, reason)
        return skops_getter(obj, save_context)  # type: ignore[no-any-return]

    _get_state.register(cls)(getter)
