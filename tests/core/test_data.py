"""dryml.data in core: NumpyDataset behaviour a user sees, bad input, missing backends."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest

from dryml.data import NumpyDataset
from dryml.errors import (
    BackendUnavailableError,
    DatasetError,
    NotSupervisedError,
    UnknownLengthError,
)
from dryml.plugins import PluginManager, reset_plugin_manager


def xy(n: int = 10) -> tuple[np.ndarray, np.ndarray]:
    return np.arange(n * 2, dtype=np.float32).reshape(n, 2), np.arange(n) * 10


def as_lists(items: list) -> list:
    """Elements with arrays turned into lists, for plain == comparisons."""
    def conv(v):
        if isinstance(v, tuple):
            return tuple(conv(i) for i in v)
        if isinstance(v, dict):
            return {k: conv(i) for k, i in v.items()}
        return np.asarray(v).tolist()
    return [conv(i) for i in items]


# ---- the example and construction ------------------------------------------------

def test_array_is_one_batch() -> None:
    data = np.random.random((32, 10, 10))
    ds = NumpyDataset(data)
    assert ds.peek().shape == (32, 10, 10)
    assert ds.batch_size == 32 and len(ds) == 1
    assert ds.unbatch().peek().shape == (10, 10) and len(ds.unbatch()) == 32


def test_supervised_tuple_and_batch_size_argument() -> None:
    x, y = xy(10)
    ds = NumpyDataset((x, y), supervised=True, batch_size=4)
    assert [len(b[0]) for b in ds] == [4, 4, 2]
    assert len(ds) == 3 and ds.supervised and not ds.indexed


def test_list_of_elements_and_nested_dicts() -> None:
    items = [{"a": np.full(3, i), "b": (float(i), i)} for i in range(5)]
    ds = NumpyDataset(items)
    assert len(ds) == 5 and not ds.batched
    batch = ds.batch(2).peek()
    assert batch["a"].shape == (2, 3) and batch["b"][0].tolist() == [0.0, 1.0]
    assert as_lists(ds.batch(2).unbatch().collect()) == as_lists(items)


def test_callable_source_is_reiterable() -> None:
    def gen() -> Iterator[tuple[np.ndarray, int]]:
        for i in range(7):
            yield np.full(2, i), i

    ds = NumpyDataset(gen, supervised=True)
    assert as_lists(ds.collect()) == as_lists(ds.collect()) == [([i, i], i) for i in range(7)]
    assert [len(b[1]) for b in ds.batch(3)] == [3, 3, 1]
    with pytest.raises(UnknownLengthError, match="not known"):
        len(ds)
    assert ds.count() == 7
    assert list(ds.batch(3).unbatch().as_not_supervised().map(lambda x: int(x[0]))) == \
        list(range(7))


def test_iterate_many_times_and_repr() -> None:
    x, y = xy(5)
    ds = NumpyDataset((x, y), supervised=True).unbatch().shuffle()
    assert sorted(int(b) for _, b in ds) == sorted(int(b) for _, b in ds) == list(range(0, 50, 10))
    assert "NumpyDataset(len=5" in repr(ds)


# ---- operations ---------------------------------------------------------------------------

def test_drop_remainder_is_opt_in() -> None:
    ds = NumpyDataset(np.arange(10)).unbatch()
    assert [len(b) for b in ds.batch(4)] == [4, 4, 2]
    dropped = ds.batch(4, drop_remainder=True)
    assert [len(b) for b in dropped] == [4, 4] and len(dropped) == 2
    assert len(dropped.unbatch()) == 8 and dropped.unbatch().collect() == list(range(8))


def test_len_follows_batch_unbatch_take_skip() -> None:
    ds = NumpyDataset(np.arange(10))
    assert len(ds.unbatch()) == 10
    assert len(ds.unbatch().batch(3)) == 4
    assert len(ds.unbatch().batch(3).take(2)) == 2
    assert len(ds.unbatch().batch(3).take(2).unbatch()) == 6
    assert len(ds.unbatch().batch(3).skip(3).unbatch()) == 1
    assert len(ds.unbatch().skip(20)) == 0 and ds.unbatch().skip(20).collect() == []


def test_take_skip_count_batches_when_batched() -> None:
    ds = NumpyDataset(np.arange(10), batch_size=3)
    assert [b.tolist() for b in ds.take(2)] == [[0, 1, 2], [3, 4, 5]]
    assert [b.tolist() for b in ds.skip(2)] == [[6, 7, 8], [9]]


def test_map_is_per_example_and_map_batches_per_batch() -> None:
    ds = NumpyDataset(np.arange(6), batch_size=4)
    assert [b.tolist() for b in ds.map(lambda v: v * 2)] == [[0, 2, 4, 6], [8, 10]]
    assert [b.tolist() for b in ds.map_batches(lambda b: b[::-1])] == [[3, 2, 1, 0], [5, 4]]
    with pytest.raises(DatasetError, match="needs a batched dataset"):
        ds.unbatch().map_batches(lambda b: b)


def test_apply_x_y_and_supervision() -> None:
    x, y = xy(4)
    ds = NumpyDataset((x, y), supervised=True)
    bx, by = ds.apply_x(lambda a: a + 1).apply_y(lambda b: -b).peek()
    assert bx[0].tolist() == [1.0, 2.0] and by.tolist() == [0, -10, -20, -30]
    assert ds.as_not_supervised().peek().shape == (4, 2)
    unsup = NumpyDataset((x, y))
    with pytest.raises(NotSupervisedError, match="supervised"):
        unsup.apply_y(abs)
    assert unsup.as_supervised().supervised
    with pytest.raises(DatasetError, match=r"\(x, y\)"):
        NumpyDataset(x).as_supervised()


def test_indexing() -> None:
    x, y = xy(5)
    ds = NumpyDataset((x, y), supervised=True).unbatch().as_indexed(start=100)
    i, (_, yi) = ds.peek()
    assert (int(i), int(yi)) == (100, 0) and ds.indexed
    assert [int(i) for i, _ in ds.skip(3)] == [103, 104]
    batched = NumpyDataset((x, y), supervised=True, batch_size=2).as_indexed()
    assert [b[0].tolist() for b in batched] == [[0, 1], [2, 3], [4]]
    assert batched.as_not_indexed().peek()[1].tolist() == [0, 10]
    # the index travels with its example through a shuffle
    for i, (_, yi) in ds.shuffle(seed=3):
        assert int(yi) == (int(i) - 100) * 10
    assert not ds.as_not_indexed().indexed and ds.as_not_supervised().peek()[0] == 100


def test_shuffle_keeps_batching_and_is_seeded() -> None:
    ds = NumpyDataset(np.arange(20), batch_size=8)
    s = ds.shuffle(seed=5)
    assert [len(b) for b in s] == [8, 8, 4]
    assert [b.tolist() for b in s] == [b.tolist() for b in ds.shuffle(seed=5)]
    assert sorted(np.concatenate(list(s)).tolist()) == list(range(20))
    assert s.batch_size == 8


def test_buffered_shuffle_is_unbiased() -> None:
    """The seed's bug: with buffer 5 the newest buffer slot was never chosen first."""
    firsts = [NumpyDataset(list(range(10))).shuffle(5, seed=s).peek() for s in range(400)]
    counts = np.bincount(np.asarray(firsts), minlength=10)
    assert counts[5:].sum() == 0 and counts[:5].min() > 40


def test_numpy_returns_itself() -> None:
    ds = NumpyDataset(np.arange(3))
    assert ds.numpy() is ds


def test_batches_are_views_not_copies() -> None:
    x = np.zeros((8, 2))
    batch = next(iter(NumpyDataset(x, batch_size=4)))
    assert np.shares_memory(batch, x)


# ---- bad input ----------------------------------------------------------------------------

def test_mismatched_lengths_in_supervised_batch() -> None:
    with pytest.raises(DatasetError, match=r"mismatched lengths.*\[10, 9\]"):
        NumpyDataset((np.zeros(10), np.zeros(9)), supervised=True)


def test_ragged_structures_and_shapes() -> None:
    with pytest.raises(DatasetError, match="ragged structure: element 1"):
        NumpyDataset([(1, 2), {"a": 1}])
    with pytest.raises(DatasetError, match="ragged elements: leaf 0"):
        NumpyDataset([np.zeros(3), np.zeros(4)])
    with pytest.raises(DatasetError, match="ragged"):
        NumpyDataset(([[1, 2], [3]], np.zeros(2)))
    gen = NumpyDataset(lambda: iter([np.zeros(2), np.zeros(3)]))
    with pytest.raises(DatasetError, match="ragged elements: elements 0..1"):
        gen.batch(2).collect()


def test_one_shot_iterators_are_refused() -> None:
    with pytest.raises(DatasetError, match="one-shot iterator"):
        NumpyDataset(iter([1, 2, 3]))
    with pytest.raises(DatasetError, match="one-shot iterator"):
        NumpyDataset(i for i in range(3))
    shared = iter([1, 2])
    ds = NumpyDataset(lambda: shared)
    ds.collect()
    with pytest.raises(DatasetError, match="same iterator twice"):
        ds.collect()
    rows = [(np.float32(i), i) for i in range(4)]  # the same list is read again (audit)
    again = NumpyDataset(lambda: rows, supervised=True)
    assert len(list(again)) == len(list(again)) == 4


@pytest.mark.parametrize("call, match", [
    (lambda ds: ds.batch(0), r"batch\(batch_size\) must be >= 1, got 0"),
    (lambda ds: ds.batch(2.5), "must be an integer"),
    (lambda ds: ds.take(-1), r"take\(n\) must be >= 0, got -1"),
    (lambda ds: ds.skip(-2), r"skip\(n\) must be >= 0"),
    (lambda ds: ds.shuffle(0), "buffer_size"),
    (lambda ds: ds.map(3), "needs a function"),
])
def test_bad_arguments_fail_at_the_call(call, match) -> None:
    for ds in (NumpyDataset(np.arange(4)), NumpyDataset(lambda: iter(range(4)))):
        with pytest.raises(DatasetError, match=match):
            call(ds)


def test_flags_must_match_the_structure() -> None:
    with pytest.raises(DatasetError, match=r"supervised=True needs the data of the form \(x, y\)"):
        NumpyDataset(np.zeros(3), supervised=True)
    with pytest.raises(DatasetError, match=r"indexed=True"):
        NumpyDataset((np.zeros(3), np.zeros(3), np.zeros(3)), indexed=True)
    with pytest.raises(DatasetError, match="scalar"):
        NumpyDataset((np.zeros(3), 1.0))


def test_empty_peek_names_drop_remainder() -> None:
    with pytest.raises(DatasetError, match="drop_remainder=True"):
        NumpyDataset(np.arange(3)).unbatch().batch(4, drop_remainder=True).peek()


# ---- backends through the plugin registry -------------------------------------------------

@pytest.fixture
def no_backends() -> Iterator[None]:
    old = reset_plugin_manager(PluginManager(autoload=False))
    try:
        yield
    finally:
        reset_plugin_manager(old)


def test_conversion_without_backend_names_the_package(no_backends: None) -> None:
    ds = NumpyDataset(np.arange(3))
    with pytest.raises(BackendUnavailableError, match="pip install dryml-tf"):
        ds.tf()
    with pytest.raises(BackendUnavailableError, match="pip install dryml-torch"):
        ds.torch()
    with pytest.raises(ImportError, match="dryml-tf"):
        from dryml.data.tf import TFDataset  # noqa: F401
    with pytest.raises(ImportError, match="dryml-torch"):
        from dryml.data.torch import TorchDataset  # noqa: F401


def test_dryml_data_imports_no_framework() -> None:
    script = ("import sys, numpy as np; from dryml.data import NumpyDataset; import dryml.data.tf, "
              "dryml.data.torch; NumpyDataset(np.arange(4)).batch(2).shuffle(seed=1).collect(); "
              "print(sorted(m for m in sys.modules if m.split('.')[0] in "
              "('torch', 'tensorflow', 'keras', 'jax')))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_in_memory_reads_a_generator_once_into_arrays_that_pickle() -> None:
    import pickle

    reads: list[int] = []

    def rows() -> Iterator[tuple[np.ndarray, np.int64]]:
        reads.append(1)
        return ((np.full(2, i, dtype=np.float32), np.int64(i)) for i in range(5))

    for batch_size in (None, 2):
        source = NumpyDataset(rows, supervised=True)
        source = source.batch(batch_size) if batch_size else source
        ds = source.as_indexed().in_memory()
        assert (ds.supervised, ds.indexed, ds.batch_size, len(ds)) == (
            True, True, batch_size, 3 if batch_size else 5)
        again = pickle.loads(pickle.dumps(ds))  # no generator inside any more
        idx, (x, y) = next(iter(again.unbatch().batch(5)))
        assert idx.tolist() == y.tolist() == list(range(5)) and x[:, 0].tolist() == list(range(5))
    assert len(reads) == 2  # one pass each; iterating the copies read nothing
    in_memory = NumpyDataset(np.arange(4))
    assert in_memory.in_memory() is in_memory


def test_empty_datasets_iterate_and_stay_empty_in_memory() -> None:
    assert list(NumpyDataset([], supervised=True)) == []
    empty = NumpyDataset(lambda: iter([]), batch_size=3).in_memory()
    assert list(empty) == [] and len(empty) == 0 and empty.batch_size == 3


def test_dict_elements_keep_the_order_their_keys_were_given_in() -> None:
    """Keys came back sorted: np.concatenate(list(e.values())) put the feature columns in
    another order than the user's (and than a TFDataset's). Leaves still flatten sorted."""
    from dryml.data._nest import leaves, structure_of

    d = {"price": np.full((6, 1), 100.0), "age": np.full((6, 1), 7.0),
         "nested": {"z": np.zeros((6, 1)), "a": np.ones((6, 1))}}
    ds = NumpyDataset(d)
    views = [ds.peek(), next(iter(ds.unbatch().batch(4))), next(iter(ds.unbatch())),
             next(iter(ds.unbatch().shuffle(seed=0).batch(2))),
             next(iter(ds.map_batches(lambda e: e))), next(iter(ds.unbatch().take(2)))]
    for element in views:
        assert list(element) == ["price", "age", "nested"]
        assert list(element["nested"]) == ["z", "a"]
        assert np.concatenate([element["price"], element["age"]], axis=-1).ravel()[:2].tolist() \
            == [100.0, 7.0]
    assert structure_of(d) == structure_of(dict(sorted(d.items())))  # same structure
    assert [leaf[0, 0] for leaf in leaves(d)] == [7.0, 1.0, 0.0, 100.0]  # flattened sorted


def test_apply_x_and_apply_y_refuse_bodies_that_are_no_pair() -> None:
    """A generator of (x, y, w) rows taken as supervised lost w in apply_y, silently."""
    rows = [(np.ones(2), 1, 0.5), (np.zeros(2), 0, 2.0)]
    ds = NumpyDataset(lambda: iter(rows), supervised=True)
    with pytest.raises(DatasetError, match="apply_y\\(\\) of supervised elements must be "
                                           "2-tuples, got a 3-tuple"):
        list(ds.apply_y(lambda y: y + 1))
    with pytest.raises(DatasetError, match="apply_x\\(\\) of supervised elements must be "
                                           "2-tuples, got a 3-tuple"):
        list(ds.apply_x(lambda x: x))
    good = NumpyDataset(lambda: iter([(np.ones(2), 1)]), supervised=True)
    assert [int(y) for _, y in good.apply_y(lambda y: y + 1)] == [2]


def test_splitting_data_shuffled_without_a_seed_warns() -> None:
    """take/skip of an unseeded shuffle overlap (14 of 100 rows in both parts): each pass
    draws its own order."""
    import warnings

    from dryml.errors import DrymlWarning

    data = NumpyDataset((np.arange(100.0), np.arange(100)), supervised=True)
    for shuffled in (data.shuffle().batch(10), data.unbatch().shuffle(),
                     NumpyDataset(lambda: iter([(1.0, 1), (2.0, 2)]), supervised=True)
                     .shuffle().batch(1)):
        with pytest.warns(DrymlWarning, match="shuffled without a seed.*shuffle\\(seed=0\\)"):
            shuffled.skip(1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data.shuffle(seed=0).batch(10).skip(8)
        data.batch(10).skip(8)


def test_predictions_of_one_pass_of_an_unseeded_shuffle_are_refused_whatever_the_labels(
        ) -> None:
    """The guard compared two passes' targets: with repeated labels they often matched, and
    a perfect model scored 0.25 or 0.5 (always, here: every label is 0)."""
    from dryml import metrics
    from dryml.errors import MetricError

    data = NumpyDataset((np.arange(8.0), np.zeros(8, dtype=np.int64)),
                        supervised=True).unbatch().shuffle()
    predictions = np.zeros(8, dtype=np.int64)
    with pytest.raises(MetricError, match="another order on each pass"):
        metrics.accuracy(predictions, data)
    seeded = NumpyDataset((np.arange(8.0), np.zeros(8, dtype=np.int64)),
                          supervised=True).unbatch().shuffle(seed=1)
    assert metrics.accuracy(predictions, seeded) == 1.0


def test_mistakes_found_by_the_dataset_audit_are_dataset_errors_that_say_what_to_do() -> None:
    """Each raised a bare Python error from deep inside, or one that did not say the fix."""
    from dryml.models import supervised_arrays

    x, y = np.arange(12.0).reshape(6, 2), np.arange(6)
    gen = NumpyDataset(lambda: iter(x))
    for seed in (1.5, "a", -1):  # the in-memory shuffle checked its seed; a generator's not
        with pytest.raises(DatasetError, match=r"shuffle\(seed\) must be"):
            list(gen.shuffle(seed=seed))  # type: ignore[arg-type]
    with pytest.raises(DatasetError, match=r"an element is no \(x, y\) pair: a map that "
                                           r"returned something else"):  # ValueError: unpack
        supervised_arrays(NumpyDataset((x, y), supervised=True).unbatch().map(lambda e: e[0]))
    with pytest.raises(DatasetError, match=r"a batch_size= given for a source of single"):
        supervised_arrays(NumpyDataset(lambda: zip(x, y, strict=True), supervised=True, batch_size=2))
    empty = NumpyDataset([], supervised=True)  # IndexError
    assert len(empty.as_not_supervised()) == 0 and not empty.as_not_supervised().supervised

