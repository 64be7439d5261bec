"""Shared pytest setup for every test folder: hypothesis profiles only.

Hypothesis' per-example deadline is a timing assertion; dryml tests never assert a time, and CI
runs on 2 shared cores, so it is off. Under CI (``CI`` set) examples are derandomized so a red
run is reproducible.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("dryml", deadline=None)
settings.register_profile("ci", parent=settings.get_profile("dryml"), derandomize=True,
                          print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "dryml")
