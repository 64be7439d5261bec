"""Shared setup for the scikit-learn tests.

Under pytest, tests/ is on sys.path (rootdir conftest), so where torch is not installed
tests/torch/ passes for a namespace package 'torch'; scikit-learn's estimator discovery
(``all_estimators()``, which the zoo and skops call) would import it and scipy would then take
it for PyTorch. This import hook makes such names fail to import, as they would outside pytest
(the test modules install the same hook when run on their own).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any


class _HideTestFolders:
    """Makes test folders that shadow framework names (torch, tf, xgboost) unimportable."""

    def __init__(self) -> None:
        self.names = set()
        for name in ("torch", "tf", "xgboost"):
            spec = importlib.util.find_spec(name)
            if spec is not None and spec.origin is None and all(
                    os.path.basename(os.path.dirname(p)) == "tests"
                    for p in spec.submodule_search_locations or ()):
                self.names.add(name)

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name in self.names:
            raise ModuleNotFoundError(f"No module named {name!r}")


if not any(type(f).__name__ == "_HideTestFolders" for f in sys.meta_path):
    sys.meta_path.insert(0, _HideTestFolders())
