"""Every hook a dryml plugin can implement.

A plugin is a module (or object) named by an entry point in the ``dryml`` group::

    [project.entry-points.dryml]
    torch = "dryml_torch._plugin:plugin"

and implements any of these hooks with :data:`dryml.hookimpl`. Registration hooks return
lists of frozen records from :mod:`dryml.records`; records name implementations lazily, so
listing plugins never imports a framework.
"""

from __future__ import annotations

import pluggy

from dryml.records import (
    ArgCodecRecord,
    ContextRecord,
    DatasetAdapterRecord,
    ExecutorRecord,
    ResourceProviderRecord,
    SamplerRecord,
    SerializerRecord,
    TrainerRecord,
)

__all__ = ["PROJECT_NAME", "hookimpl", "hookspec"]

PROJECT_NAME = "dryml"
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def dryml_serializers() -> list[SerializerRecord]:
    """Serializers for values put into a ``.dry`` store with ``store.put(name, value)``.

    Types of numpy and dryml and the builtins core saves are core's; a type or name two
    plugins claim is used by neither (docs/plugins.md, "Who handles a type").

    Example::

        @hookimpl
        def dryml_serializers():
            return [SerializerRecord("torch.module", types=["torch.nn.modules.module:Module"],
                                     impl="dryml_torch._serializers:ModuleSerializer",
                                     package="dryml-torch")]
    """


@hookspec
def dryml_arg_codecs() -> list[ArgCodecRecord]:
    """Codecs that let extra types be Object constructor arguments.

    The same rules as for :func:`dryml_serializers` decide which codec handles a type.

    Example::

        @hookimpl
        def dryml_arg_codecs():
            return [ArgCodecRecord("torch.dtype", types=["torch:dtype"],
                                   impl="dryml_torch._codecs:DtypeCodec", package="dryml-torch")]
    """


@hookspec
def dryml_dataset_adapters() -> list[DatasetAdapterRecord]:
    """Adapters converting dryml Datasets to a framework (``ds.tf()``, ``ds.torch()``).

    Example::

        @hookimpl
        def dryml_dataset_adapters():
            return [DatasetAdapterRecord("tf", impl="dryml_tf._data:adapter", package="dryml-tf")]
    """


@hookspec
def dryml_trainers() -> list[TrainerRecord]:
    """Trainables and components a backend offers.

    Example::

        @hookimpl
        def dryml_trainers():
            return [TrainerRecord("sklearn.estimator", framework="sklearn",
                                  impl="dryml_sklearn.models:Estimator", package="dryml-sklearn")]
    """


@hookspec
def dryml_resource_providers() -> list[ResourceProviderRecord]:
    """Providers that report the resources of this machine (cpu, gpu).

    Example::

        @hookimpl
        def dryml_resource_providers():
            return [ResourceProviderRecord("gpu", impl="mypkg.nvml:provider", package="mypkg")]
    """


@hookspec
def dryml_contexts() -> list[ContextRecord]:
    """Per-framework preparation of a worker process, run before the framework is imported.

    Example::

        @hookimpl
        def dryml_contexts():
            return [ContextRecord("torch", impl="dryml_torch._context:prepare",
                                  package="dryml-torch")]
    """


@hookspec
def dryml_trusted_modules() -> list[str]:
    """Modules a ``.dry`` file may make dryml import, whose classes it may then name.

    A plugin trusts its own modules so that files holding its Objects load without ``trust=``.
    Each entry is both an exact module that may be imported because a file named it (or a
    module under it) and a prefix: classes defined in it or below it are trusted once imported.
    A submodule is never imported itself: the declared module is, and must load it (see
    :meth:`dryml.backend.TrustPolicy.import_named`). Declare only modules whose import has no
    side effects beyond defining classes.

    Example::

        @hookimpl
        def dryml_trusted_modules():
            return ["dryml_torch"]
    """


@hookspec
def dryml_samplers() -> list[SamplerRecord]:
    """Samplers for hyperparameter searches (``Search(..., sampler="name")``).

    ``impl`` names a callable taking the search's seed and returning an object with the
    :class:`dryml.search.Sampler` methods (``start``, ``ask``, ``tell``, ``should_prune``).

    Example::

        @hookimpl
        def dryml_samplers():
            return [SamplerRecord("anneal", impl="mypkg.search:AnnealSampler", package="mypkg")]
    """


@hookspec
def dryml_executors() -> list[ExecutorRecord]:
    """Executors that run compute-context calls (``dryml.context.configure(executor=name)``).

    ``impl`` names a callable taking the keyword options of ``configure`` (``address=`` ...)
    and returning an object with the :class:`dryml.context.Executor` methods (``execute``,
    ``shutdown``, ``workers``). Core registers ``local`` (the warm process pool, the default)
    and ``ray`` (``dryml-core[ray]``).

    Example::

        @hookimpl
        def dryml_executors():
            return [ExecutorRecord("slurm", impl="mypkg.slurm:SlurmExecutor", package="mypkg")]
    """
