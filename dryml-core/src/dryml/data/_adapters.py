"""Finding the adapter that converts Datasets to one framework (``dryml_dataset_adapters``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from dryml.errors import BackendUnavailableError
from dryml.records import load_ref

if TYPE_CHECKING:
    from dryml.data._base import Dataset

__all__ = ["DatasetAdapter", "adapter"]

# The package to install for a framework nobody registered (message of the error only).
_KNOWN_PACKAGES = {"tf": "dryml-tf", "torch": "dryml-torch"}


@runtime_checkable
class DatasetAdapter(Protocol):
    """What a ``DatasetAdapterRecord.impl`` names: converts any dryml Dataset to one framework.

    ``dataset_class`` is that framework's Dataset class (``TFDataset``, ``TorchDataset``); it
    is what ``from dryml.data.tf import TFDataset`` returns.
    """

    framework: str

    @property
    def dataset_class(self) -> type[Dataset]:
        """The Dataset subclass of this framework."""
        ...

    def convert(self, ds: Dataset) -> Dataset:
        """``ds`` as a Dataset of this framework (the same object when it already is one)."""
        ...


class _NumpyAdapter:
    """Core's own conversion to numpy: leaves become arrays through ``np.asarray``, or through
    the source class's ``_to_numpy_leaf`` (CPU copy of device tensors, no copy otherwise)."""

    framework = "numpy"

    @property
    def dataset_class(self) -> type[Dataset]:
        from dryml.data._numpy import NumpyDataset

        return NumpyDataset

    def convert(self, ds: Dataset) -> Dataset:
        from dryml.data._numpy import NumpyDataset

        if isinstance(ds, NumpyDataset):
            return ds
        convert = getattr(ds, "_to_numpy_leaf", None)
        if convert is None:
            import numpy as np

            convert = np.asarray
        return NumpyDataset._generic(lambda: ds._iter_converted(convert), ds._meta)


def adapter(framework: str) -> DatasetAdapter:
    """The adapter for ``framework``; :class:`BackendUnavailableError` naming the package to
    install when no installed backend registers one, or when its framework cannot be imported."""
    if framework == "numpy":
        return _NumpyAdapter()
    from dryml.plugins import get_plugin_manager

    for _, record in get_plugin_manager().records("dryml_dataset_adapters"):
        if record.framework != framework:
            continue
        try:
            found: DatasetAdapter = load_ref(record.impl)
            return found
        except ImportError as exc:
            raise BackendUnavailableError(
                f"converting a Dataset to {framework} needs {record.package} and its framework, "
                f"but importing it failed ({exc}); install it: pip install {record.package}"
            ) from exc
    package = _KNOWN_PACKAGES.get(framework, f"dryml-{framework}")
    raise BackendUnavailableError(
        f"converting a Dataset to {framework} needs the package {package!r}, which is not "
        f"installed or not active: pip install {package} (see `dryml plugins`)."
    )
