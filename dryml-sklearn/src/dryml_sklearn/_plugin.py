"""The dryml entry point of dryml-sklearn: its records live in the ``_records_*`` modules.

Neither this module nor those import the framework (listing plugins imports none).
"""

from __future__ import annotations

from dryml.backend import BackendPlugin

__all__ = ["plugin"]

plugin = BackendPlugin("dryml_sklearn")
