"""Import skops.io without walking all of scikit-learn (and, through it, importing torch).

When ``skops.io`` is first imported it computes its default trusted estimator names with
``sklearn.utils.all_estimators()``, which imports every scikit-learn module and every package
``pkgutil.walk_packages`` meets on the way, including the vendored array-API adapters for
torch (seconds, and torch in ``sys.modules`` of a process that only wanted a LogisticRegression).

It also lists scipy's and numpy's ufuncs by name, looking each scipy one up across every
loaded module (seconds once scikit-learn is imported).

dryml-sklearn decides trust itself (:mod:`dryml_sklearn._trust`, by rules applied to the types a
file names), so it never needs these lists. Importing skops through :func:`import_skops` makes
them lazy instead: ``all_estimators`` is answered with an empty list while skops' modules run,
and the name is then rebound, in every skops module that imported it, to a list that computes
skops' own value on first use; skops' ``get_public_type_names`` is wrapped the same way (lists
computed on first use) for exactly the import of ``skops.io._trusted_types``. Other users of
skops in the process see the same defaults as before, computed when they first need them;
while dryml builds a node tree (:func:`defaults_unused`) the lists read as empty and are not
computed.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["defaults_unused", "import_skops"]

_NAME = "SKLEARN_ESTIMATOR_TYPE_NAMES"
_unused: contextvars.ContextVar[bool] = contextvars.ContextVar("dryml_skops_unused",
                                                              default=False)


@contextlib.contextmanager
def defaults_unused() -> Iterator[None]:
    """Within this block skops' default estimator list reads as empty (dryml audits itself)."""
    token = _unused.set(True)
    try:
        yield
    finally:
        _unused.reset(token)


class _LazyNames(list):  # type: ignore[type-arg]
    """skops' default estimator names, computed on first use outside :func:`defaults_unused`."""

    def __init__(self, compute: Any) -> None:
        super().__init__()
        self._compute = compute
        self._done = False
        self._lock = threading.Lock()

    def _view(self) -> list[str]:
        if _unused.get():
            return []
        with self._lock:
            if not self._done:
                list.extend(self, self._compute())
                self._done = True
        return list(list.__iter__(self))

    def __iter__(self) -> Iterator[str]:
        return iter(self._view())

    def __len__(self) -> int:
        return len(self._view())

    def __contains__(self, item: object) -> bool:
        return item in self._view()

    def __getitem__(self, index: Any) -> Any:
        return self._view()[index]

    def __add__(self, other: Any) -> list[str]:  # type: ignore[override]
        return self._view() + list(other)

    def __radd__(self, other: Any) -> list[str]:
        return list(other) + self._view()

    def __eq__(self, other: object) -> bool:
        return self._view() == other

    def __bool__(self) -> bool:
        return bool(self._view())

    def __repr__(self) -> str:
        return repr(self._view())

    __hash__ = None  # type: ignore[assignment]


def _skops_value() -> list[str]:
    """What skops computes at import (its ``_trusted_types`` module)."""
    from sklearn.utils import all_estimators
    from skops.io._utils import get_type_name

    return [get_type_name(cls) for _, cls in all_estimators()
            if get_type_name(cls).startswith("sklearn.")]


class _LazyTypeNames:
    """An import-time hook: just before ``skops.io._trusted_types`` is loaded, make skops'
    ``get_public_type_names`` return lazy lists (restored by :func:`import_skops`)."""

    target = "skops.io._trusted_types"

    def __init__(self) -> None:
        self.restore: tuple[Any, Any] | None = None

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        utils = sys.modules.get("skops.io._utils")
        if name == self.target and utils is not None and self.restore is None:
            real = utils.get_public_type_names
            self.restore = (utils, real)
            utils.get_public_type_names = lambda module, oftype: _LazyNames(
                lambda: real(module=module, oftype=oftype))
        # None: the ordinary finders load the module


def import_skops() -> None:
    """Import ``skops.io`` with its default type lists made lazy (see the module doc)."""
    if "skops.io" in sys.modules:
        return
    import sklearn.utils

    real = sklearn.utils.all_estimators
    hook = _LazyTypeNames()
    sklearn.utils.all_estimators = lambda type_filter=None: []
    sys.meta_path.insert(0, hook)
    try:
        import skops.io  # noqa: F401 - the import is the point
    finally:
        sklearn.utils.all_estimators = real
        sys.meta_path.remove(hook)
        if hook.restore is not None:
            utils, original = hook.restore
            utils.get_public_type_names = original
    placeholder = sys.modules["skops.io._trusted_types"].__dict__[_NAME]
    lazy = _LazyNames(_skops_value)
    for name, module in list(sys.modules.items()):
        if name.startswith("skops.io") and getattr(module, _NAME, None) is placeholder:
            setattr(module, _NAME, lazy)
