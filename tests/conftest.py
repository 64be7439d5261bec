"""Shared pytest setup for every test folder: hypothesis profiles, and test folders that must
not pass for the frameworks they are named after.

Hypothesis' per-example deadline is a timing assertion; dryml tests never assert a time, and CI
runs on 2 shared cores, so it is off. Under CI (``CI`` set) examples are derandomized so a red
run is reproducible.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
from typing import Any

from hypothesis import settings

# Ctrl-C tests send SIGINT to this process and to the programs it starts. A shell starts
# background jobs with SIGINT ignored (`cmd &` in a script), and an ignored SIGINT is inherited
# through exec, so Python would never raise KeyboardInterrupt: handle it as Python does by
# default (children then start with SIGINT at its default again).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

settings.register_profile("dryml", deadline=None)
settings.register_profile("ci", parent=settings.get_profile("dryml"), derandomize=True,
                          print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "dryml")


class _HideTestFolders:
    """Under pytest, tests/ is on sys.path (this rootdir conftest), so where torch is not
    installed tests/torch/ passes for a namespace package 'torch' (``importorskip("torch")``
    returns it; scikit-learn's estimator discovery imports it and scipy then takes it for
    PyTorch). This import hook makes such names fail to import, as they would outside pytest."""

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
