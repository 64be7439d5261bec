"""Property tests (hypothesis) of NumpyDataset: batching, shuffling, take/skip, len.

Every property runs over both kinds of NumpyDataset: in-memory arrays (index views) and a
generator source (the generic, element-by-element path).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dryml.data import NumpyDataset

PROPERTY = settings(max_examples=60, deadline=None)


def make(n: int, in_memory: bool, batch: int | None) -> NumpyDataset:
    """Supervised data with a nested x: ({"a": row, "b": scalar}, label); label == position."""
    a = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
    b = np.arange(n, dtype=np.int64) * 3
    y = np.arange(n, dtype=np.int64)
    if in_memory:
        ds = NumpyDataset(({"a": a, "b": b}, y), supervised=True, batch_size=batch)
        return ds.unbatch() if batch is None else ds
    elements = [({"a": a[i], "b": b[i]}, y[i]) for i in range(n)]
    ds = NumpyDataset(lambda: iter(elements), supervised=True)
    return ds if batch is None else ds.batch(batch)


def labels(ds: Any) -> list[int]:
    """The labels of every example, in order (batches flattened)."""
    out: list[int] = []
    for el in ds:
        body = el[1] if ds.indexed else el
        out.extend(np.atleast_1d(np.asarray(body[1])).tolist())
    return out


def check_consistent(ds: Any) -> None:
    """x agrees with the label of each example (structure survived)."""
    for (x, y) in ds.unbatch():
        assert x["a"].tolist() == [2.0 * y, 2.0 * y + 1] and int(x["b"]) == 3 * int(y)


sizes = st.integers(0, 40)
batches = st.one_of(st.none(), st.integers(1, 12))
memory = st.booleans()


@PROPERTY
@given(n=sizes, n_batch=st.integers(1, 50), in_memory=memory, start=batches)
def test_batch_then_unbatch_keeps_every_example_in_order(n: int, n_batch: int, in_memory: bool,
                                                         start: int | None) -> None:
    ds = make(n, in_memory, start)
    rebatched = ds.batch(n_batch)
    assert labels(rebatched.unbatch()) == list(range(n))
    sizes_seen = [len(el[1]) for el in rebatched]
    assert all(s == n_batch for s in sizes_seen[:-1]) and sum(sizes_seen) == n
    check_consistent(rebatched)
    if in_memory:
        assert len(rebatched) == len(sizes_seen) and len(rebatched.unbatch()) == n


@PROPERTY
@given(n=sizes, n_batch=st.integers(1, 12), in_memory=memory)
def test_drop_remainder_drops_only_the_partial_batch(n: int, n_batch: int,
                                                     in_memory: bool) -> None:
    ds = make(n, in_memory, None).batch(n_batch, drop_remainder=True)
    assert labels(ds) == list(range(n - n % n_batch))
    assert all(len(el[1]) == n_batch for el in ds)


@PROPERTY
@given(n=sizes, buffer=st.one_of(st.none(), st.integers(1, 50)), seed=st.integers(0, 2**32),
       in_memory=memory, batch=batches)
def test_seeded_shuffle_is_a_reproducible_permutation(n: int, buffer: int | None, seed: int,
                                                      in_memory: bool,
                                                      batch: int | None) -> None:
    ds = make(n, in_memory, batch)
    shuffled = ds.shuffle(buffer, seed=seed)
    order = labels(shuffled)
    assert sorted(order) == list(range(n))
    assert labels(shuffled) == order
    assert labels(ds.shuffle(buffer, seed=seed)) == order
    assert shuffled.batch_size == ds.batch_size
    check_consistent(shuffled)


@PROPERTY
@given(n=sizes, k=st.integers(0, 50), in_memory=memory, batch=batches)
def test_take_and_skip_partition_the_data(n: int, k: int, in_memory: bool,
                                          batch: int | None) -> None:
    ds = make(n, in_memory, batch)
    head, tail = ds.take(k), ds.skip(k)
    assert labels(head) + labels(tail) == list(range(n))
    assert len(head.collect()) == min(k, len(ds.collect()))
    if in_memory:
        assert len(head) + len(tail) == len(ds)
        assert len(head.unbatch()) + len(tail.unbatch()) == n


@PROPERTY
@given(n=sizes, start=st.integers(0, 5), seed=st.integers(0, 100), batch=batches,
       in_memory=memory)
def test_index_follows_its_example(n: int, start: int, seed: int, batch: int | None,
                                   in_memory: bool) -> None:
    ds = make(n, in_memory, batch).as_indexed(start)
    for i, (_, y) in ds.shuffle(seed=seed).skip(1).unbatch():
        assert int(i) == int(y) + start
    assert labels(ds.as_not_indexed()) == list(range(n))
