"""Datasets as arrays for the backends' trainers: gathering and the validation split.

Every backend holds out the *same* rows for a given seed (``TrainSpec.split_seed``), so models
of different frameworks trained with one TrainSpec are validated on the same examples.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dryml.errors import ConfigurationError, DatasetError

__all__ = ["split_validation", "supervised_arrays"]

#: rows per batch when gathering an unbatched Dataset (whole batches cut from the arrays are
#: ~80x faster than row by row)
CHUNK = 8192


def supervised_arrays(data: Any, what: str = "training") -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` of every example of a supervised Dataset (any framework) as numpy arrays."""
    ds = data.numpy()
    if ds.indexed:
        ds = ds.as_not_indexed()
    if not ds.supervised:
        raise DatasetError(f"the {what} data must be a supervised Dataset of (x, y) elements; "
                           "use NumpyDataset((x, y), supervised=True) or .as_supervised()")
    if not ds.batched:
        ds = ds.batch(CHUNK)
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    for element in ds:
        if not (isinstance(element, tuple) and len(element) == 2):
            raise DatasetError(
                f"the {what} data is marked supervised but an element is no (x, y) pair: a "
                "map that returned something else? Return (x, y) from it, or drop the mark "
                "with .as_not_supervised()")
        x, y = element
        if not xs:
            _one_array(x, "x", what)
            _one_array(y, "y", what)
        xs.append(np.asarray(x))
        ys.append(np.asarray(y))
        _same_rows(xs[-1], ys[-1], f"a batch of the {what} data")
    if not xs:
        raise DatasetError(f"the {what} data has no examples")
    return np.concatenate(xs), np.concatenate(ys)


def _same_rows(x: np.ndarray, y: np.ndarray, where: str) -> None:
    """A DatasetError unless ``x`` and ``y`` have one row per example each: rows of x paired
    with other rows of y trained and scored without an error (a ``.apply_x(lambda x:
    x.reshape(-1, 8))`` of the wrong width gave 32 rows of x for 64 labels)."""
    if x.ndim == 0 or y.ndim == 0 or len(x) != len(y):
        hint = ("a batch_size= given for a source of single examples?" if x.ndim == 0
                or y.ndim == 0 else "did a map or apply_x change the rows of x, e.g. a "
                "reshape(-1, k) with the wrong k?")
        raise DatasetError(f"{where} holds {_rows(x)} of x and {_rows(y)} of y; x and y need "
                           f"one row per example each ({hint})")


def _rows(a: np.ndarray) -> str:
    return "a scalar" if a.ndim == 0 else f"{len(a)} row(s)"


def _one_array(value: Any, name: str, what: str) -> None:
    """A DatasetError when ``value`` (a batch's x or y) nests through tuples or dicts: the
    trainers, the search and the metrics take each as one array (a dict x failed with numpy's
    "zero-dimensional arrays cannot be concatenated")."""
    from dryml.data._nest import structure_of

    if isinstance(value, (tuple, dict)):
        raise DatasetError(
            f"the {what} data's {name} is a nested structure, {structure_of(value).describe()}, "
            f"and dryml's trainers, search and metrics take {name} as one array: combine it "
            "first with data.map, e.g. for a dict of inputs: data.map(lambda e: "
            "(np.concatenate([e[0]['a'], e[0]['b']], axis=-1), e[1]))")


def split_validation(x: np.ndarray, y: np.ndarray, fraction: float, seed: int
                     ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``((x_train, y_train), (x_valid, y_valid))``: a random ``fraction`` of the rows, chosen
    with ``seed``, for validation; both parts keep the original row order."""
    _same_rows(x, y, "the data to split for validation")
    n = len(x)
    n_valid = round(n * fraction)
    if not 0 < n_valid < n:
        raise ConfigurationError(
            f"validation_split={fraction} of {n} examples leaves no training or no validation "
            "examples; change validation_split or pass validation data")
    order = np.random.default_rng(seed).permutation(n)
    valid, train = np.sort(order[:n_valid]), np.sort(order[n_valid:])
    return (x[train], y[train]), (x[valid], y[valid])
