"""Python functions inside scikit-learn estimators, as a dryml save writes them.

skops writes a function as its module and ``__name__``, and a load takes whatever that module
holds under the name. During a dryml save each function skops meets is checked to be exactly
what a load would find, wherever the estimator holds it (a parameter, a ``functools.partial``'s
arguments, a set, an object array, the state an object's ``__getstate__`` returns): a lambda or
a nested function was saved into a file no load could read, and a nested function named like
a top-level one of its module loaded, when trusted, as that other function. A refusal is a
:class:`dryml_sklearn._skops_refuse.Refused` naming the function;
:func:`dryml_sklearn._skops_arrays.dumps` adds where the estimator holds it. Other users of
skops in the process, and dryml's descriptions of an estimator that go into no file (a
definition's JSON), see skops' own behaviour.
"""

from __future__ import annotations

from types import FunctionType

from dryml_sklearn._skops_import import import_skops

import_skops()  # before any skops.io module: see dryml_sklearn._skops_import

from skops.io._utils import get_module  # noqa: E402 - after import_skops()

from dryml_sklearn import _trust  # noqa: E402
from dryml_sklearn._skops_refuse import into_file, refuse_when  # noqa: E402

_installed = False


def unfindable(fn: FunctionType) -> str | None:
    """Why a load would not find ``fn`` itself under its module and name, or None."""
    module = get_module(fn)
    if _trust._excluded(module):
        return f"its module {module!r} is never imported by a load"
    found = _trust._resolve_for_caller(module, fn.__name__)
    if found is None:
        return ("its module holds no function of that name (a lambda, a nested function or a "
                "method)")
    if found is not fn:
        return ("its module holds another function of that name (this one is nested, or a "
                "method), which a load would take in its place")
    return None


def _refusal(fn: FunctionType) -> str | None:
    why = unfindable(fn)
    if why is None:
        return None
    return (f"the function {get_module(fn)}.{fn.__name__}: {why}, so the file would not load "
            "it. Define it at the top level of a module that can be imported (not __main__, "
            "nor a module named tests, testing, conftest or the like)")


def install() -> None:
    """Register the function check, once."""
    global _installed
    if not _installed:
        refuse_when(FunctionType, _refusal, into_file)
        _installed = True


install()  # at import (under the import lock), not racing a dispatch in another thread
