"""dryml-core's own plugin: numpy argument codecs and trusted modules, through the hooks."""

from __future__ import annotations

from dryml.hookspecs import hookimpl
from dryml.records import ArgCodecRecord, ExecutorRecord, ResourceProviderRecord, SamplerRecord

__all__ = ["dryml_arg_codecs", "dryml_executors", "dryml_resource_providers",
           "dryml_samplers", "dryml_trusted_modules"]


@hookimpl
def dryml_arg_codecs() -> list[ArgCodecRecord]:
    """numpy arrays and numpy scalars as constructor arguments."""
    return [
        ArgCodecRecord("numpy.ndarray", types=["numpy:ndarray"],
                       impl="dryml._numpy_codec:ARRAY"),
        ArgCodecRecord("numpy.scalar", types=["numpy:generic"],
                       impl="dryml._numpy_codec:SCALAR"),
    ]


@hookimpl
def dryml_trusted_modules() -> list[str]:
    """dryml's own modules."""
    return ["dryml"]


@hookimpl
def dryml_resource_providers() -> list[ResourceProviderRecord]:
    """CPUs (this process's affinity mask) and GPUs through NVML (none without a driver)."""
    return [
        ResourceProviderRecord("cpu", impl="dryml.context._resources:CPU"),
        ResourceProviderRecord("gpu", impl="dryml.context._gpu:NVML"),
    ]


@hookimpl
def dryml_samplers() -> list[SamplerRecord]:
    """grid and random (no extra dependency) and Optuna's samplers (``dryml-core[optuna]``)."""
    optuna = "dryml-core[optuna]"
    return [
        SamplerRecord("grid", impl="dryml.search._samplers:GridSampler"),
        SamplerRecord("random", impl="dryml.search._samplers:RandomSampler"),
        *(SamplerRecord(name, impl=f"dryml.search._optuna:{name}", extra=optuna)
          for name in ("tpe", "cmaes", "nsga2", "gp")),
    ]


@hookimpl
def dryml_executors() -> list[ExecutorRecord]:
    """``local`` (the warm process pool, the default) and ``ray`` (``dryml-core[ray]``)."""
    return [
        ExecutorRecord("local", impl="dryml.context._executor:LocalExecutor"),
        ExecutorRecord("ray", impl="dryml.context._ray:RayExecutor", extra="dryml-core[ray]",
                       requires="ray"),
    ]
