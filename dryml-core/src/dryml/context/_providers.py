"""Resource providers named by the ``dryml_resource_providers`` hook."""

from __future__ import annotations

from dryml.context._resources import ResourceProvider

__all__ = ["registered_providers"]


def registered_providers() -> list[ResourceProvider]:
    """Every provider plugins register (core: ``cpu`` and ``gpu`` via NVML), loaded now."""
    from dryml.plugins import get_plugin_manager
    from dryml.records import load_ref

    seen: dict[str, ResourceProvider] = {}
    for _, record in get_plugin_manager().records("dryml_resource_providers"):
        seen[record.name] = load_ref(record.impl)  # a later plugin overrides by name
    return list(seen.values())
