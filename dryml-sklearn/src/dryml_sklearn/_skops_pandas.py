"""pandas values inside scikit-learn estimators, as a dryml save writes them.

skops has no node of its own for pandas objects. Two are common in estimators' parameters:

* a pandas ``Index`` of column labels (``ColumnTransformer`` columns given as
  ``df.select_dtypes(...).columns``), whose compiled state skops cannot describe, is written
  as the list of its labels and loads as that list, which scikit-learn's column selection
  treats exactly as it treats the Index; an Index whose labels are not plain values (a
  ``MultiIndex``, dates) is refused;
* ``pandas.NA`` (``SimpleImputer(missing_values=pd.NA)``), which skops writes as an object no
  load can rebuild, is refused.

A refusal is a :class:`dryml_sklearn._skops_refuse.Refused` naming the value;
:func:`dryml_sklearn._skops_arrays.dumps` adds where the estimator holds it. The getters are
registered when a dryml save first meets pandas already imported (dryml never imports it) and
act only during a dryml save: other users of skops in the process see skops' own behaviour.
"""

from __future__ import annotations

import sys
from typing import Any

from dryml_sklearn._skops_import import import_skops

import_skops()  # before any skops.io module: see dryml_sklearn._skops_import

from skops.io._general import list_get_state  # noqa: E402 - after import_skops()
from skops.io._utils import SaveContext, _get_state  # noqa: E402 - after import_skops()

from dryml_sklearn._skops_refuse import Refused, during_save, refuse_when  # noqa: E402

__all__ = ["install"]

_PLAIN = (str, int, float, bool)
_NA_INSTEAD = (
    "pandas.NA cannot be saved (no file can rebuild it): fit with missing_values=np.nan "
    "instead, after turning pandas' NA into NaN (X = X.astype(object).where(X.notna(), "
    "np.nan))")
_installed = False


def install() -> None:
    """Register the getters, once, if pandas is imported (see the module docstring)."""
    global _installed
    pandas = sys.modules.get("pandas")
    if _installed or pandas is None:
        return
    index_type, na_type = pandas.Index, type(pandas.NA)
    skops_index = _get_state.dispatch(index_type)

    def index_state(obj: Any, save_context: SaveContext) -> dict[str, Any]:
        if not during_save():
            return skops_index(obj, save_context)  # type: ignore[no-any-return]
        labels = obj.tolist()
        if not all(type(label) in _PLAIN for label in labels):
            raise Refused(obj, f"a pandas {type(obj).__name__} of {obj.dtype} labels cannot "
                          "be saved; pass list(columns) instead")
        return list_get_state(labels, save_context)  # type: ignore[no-any-return]

    _get_state.register(index_type)(index_state)
    refuse_when(na_type, lambda _: _NA_INSTEAD, during_save)
    _installed = True
