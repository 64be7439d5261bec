"""dryml plugin module of dryml-sklearn: hook implementations only, no framework import here."""

from __future__ import annotations

from dryml.hookspecs import hookimpl

__all__ = ["dryml_trusted_modules"]


@hookimpl
def dryml_trusted_modules() -> list[str]:
    """Files may name this backend's Objects without `trust=`."""
    return ["dryml_sklearn"]
