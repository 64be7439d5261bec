"""dryml-tf's TFDataset and ``ds.tf()`` (one module: importing TensorFlow is slow)."""

from __future__ import annotations

import importlib
import os
import warnings

import numpy as np
import pytest

if os.environ.get("DRYML_REQUIRE_BACKENDS"):
    importlib.import_module("dryml_tf")
    tf = importlib.import_module("tensorflow")
else:
    pytest.importorskip("dryml_tf")
    tf = pytest.importorskip("tensorflow")

from dryml.data import NumpyDataset  # noqa: E402
from dryml.errors import DatasetError  # noqa: E402


def xy(n: int = 10) -> tuple[np.ndarray, np.ndarray]:
    return np.arange(n * 2, dtype=np.float32).reshape(n, 2), np.arange(n, dtype=np.int64)


def test_seed_import_path_and_issue_example() -> None:
    from dryml.data.tf import TFDataset
    from dryml_tf.data import TFDataset as Direct

    assert TFDataset is Direct
    ds = NumpyDataset(np.random.random((32, 10, 10)))
    assert isinstance(ds.tf(), TFDataset)
    assert ds.tf().peek().shape == tf.TensorShape([32, 10, 10])
    assert ds.tf().unbatch().peek().shape == tf.TensorShape([10, 10])
    assert len(ds.tf()) == 1 and len(ds.tf().unbatch()) == 32


@pytest.mark.parametrize("in_memory", [True, False])
@pytest.mark.parametrize("batch", [None, 3])
def test_round_trip_numpy_tf_numpy(in_memory: bool, batch: int | None) -> None:
    x, y = xy(7)
    flags = (y % 2 == 0)
    if in_memory:
        ds = NumpyDataset(({"x": x, "flag": flags}, y), supervised=True).unbatch()
    else:
        items = [({"x": x[i], "flag": flags[i]}, y[i]) for i in range(7)]
        ds = NumpyDataset(lambda: iter(items), supervised=True)
    ds = ds.batch(batch) if batch else ds
    back = ds.tf().numpy()
    assert back.supervised and back.batch_size == batch
    got, want = back.collect(), ds.collect()
    assert len(got) == len(want)
    for (gx, gy), (wx, wy) in zip(got, want, strict=True):
        assert set(gx) == {"x", "flag"}
        for g, w in ((gx["x"], wx["x"]), (gx["flag"], wx["flag"]), (gy, wy)):
            g, w = np.asarray(g), np.asarray(w)
            assert g.dtype == w.dtype and g.shape == w.shape
            np.testing.assert_array_equal(g, w)


def test_operations_delegate_to_tf_data() -> None:
    from dryml.data.tf import TFDataset

    x, y = xy(10)
    ds = TFDataset(tf.data.Dataset.from_tensor_slices((x, y)), supervised=True)
    assert len(ds) == 10 and ds.supervised
    batched = ds.batch(4)
    assert [int(b[1].shape[0]) for b in batched] == [4, 4, 2] and len(batched) == 3
    assert len(ds.batch(4, drop_remainder=True)) == 2
    assert [int(v) for _, v in batched.unbatch().skip(8)] == [8, 9]
    assert [int(v) for _, v in ds.take(2)] == [0, 1]
    # map hands the function the element itself, (x, y) here, not unpacked arguments
    doubled = ds.map(lambda el: (el[0] * 2, el[1]))
    assert doubled.peek()[0].numpy().tolist() == [0.0, 2.0]
    assert NumpyDataset(x).unbatch().tf().map(lambda v: v + 1).peek().numpy().tolist() == [1, 2]
    assert batched.map(lambda el: (el[0], el[1] * 10)).peek()[1].numpy().tolist() == [0, 10,
                                                                                      20, 30]
    assert batched.apply_y(lambda v: -v).peek()[1].numpy().tolist() == [0, -1, -2, -3]
    assert batched.map_batches(lambda el: el[1]).peek().numpy().tolist() == [0, 1, 2, 3]
    indexed = batched.as_indexed(5)
    i, _ = indexed.peek()
    assert i.numpy().tolist() == [5, 6, 7, 8] and indexed.indexed
    assert indexed.as_not_indexed().as_not_supervised().peek().shape == (4, 2)
    assert isinstance(ds.prefetch().tf_data, tf.data.Dataset)


def test_seeded_shuffle_is_a_reproducible_permutation() -> None:
    from dryml.data.tf import TFDataset

    ds = TFDataset(tf.data.Dataset.range(50)).batch(8)
    shuffled = ds.shuffle(seed=7)
    order = [int(v) for b in shuffled for v in b]
    assert sorted(order) == list(range(50)) and order != list(range(50))
    assert [int(v) for b in shuffled for v in b] == order
    assert [len(b) for b in shuffled][:2] == [8, 8]


def test_a_batched_pipeline_wrapped_without_its_batch_size_warns() -> None:
    from dryml.data.tf import TFDataset
    from dryml.errors import DrymlWarning

    pairs = tf.data.Dataset.from_tensor_slices((np.zeros((12, 3)), np.zeros(12)))
    with pytest.warns(DrymlWarning, match=r"batches by 4, .*batches of batches.*batch_size=4"):
        wrapped = TFDataset(pairs.batch(4).map(lambda x, y: (x * 2, y)).prefetch(2),
                            supervised=True)
    # what it warns of: each batch taken for one example, batched again
    assert next(iter(wrapped.batch(3)))[0].shape == (3, 4, 3)
    with pytest.warns(DrymlWarning, match=r"batch_size=5, which miscounts"):
        TFDataset(pairs.batch(4), supervised=True, batch_size=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        told = TFDataset(pairs.batch(4), supervised=True, batch_size=4)
        assert next(iter(told.batch(3)))[0].shape == (3, 3)  # rebatched by examples
        TFDataset(pairs.batch(4).unbatch(), supervised=True)
        TFDataset(pairs.shuffle(12, seed=0), supervised=True)
        # a map after the batch that makes one example of it (a mean, a shifted window)
        TFDataset(pairs.batch(4).map(lambda x, y: (tf.reduce_mean(x, 0), y[0])),
                  supervised=True)
        text = tf.data.Dataset.range(44).batch(11, drop_remainder=True)
        TFDataset(text.map(lambda s: (s[:-1], s[1:])), supervised=True)
    with pytest.warns(DrymlWarning, match="batches by 4"):  # whole batches, a fixed size
        TFDataset(pairs.batch(4, drop_remainder=True), supervised=True)
    with pytest.warns(DrymlWarning, match="batches by 4"):  # x of unknown rank after it
        TFDataset(pairs.batch(4).map(lambda x, y: (tf.py_function(
            lambda v: v * 2, [x], tf.float64), y)), supervised=True)


def test_bad_input() -> None:
    from dryml.data.tf import TFDataset

    with pytest.raises(DatasetError, match="needs a tf.data.Dataset"):
        TFDataset(np.zeros(3))
    with pytest.raises(DatasetError, match=r"\(x, y\)"):
        TFDataset(tf.data.Dataset.range(3), supervised=True)
    with pytest.raises(DatasetError, match=r"batch\(batch_size\) must be >= 1"):
        TFDataset(tf.data.Dataset.range(3)).batch(0)
    with pytest.raises(DatasetError, match=r"take\(n\) must be >= 0"):
        TFDataset(tf.data.Dataset.range(3)).take(-1)


def test_map_on_one_tuple_elements_gets_the_tuple() -> None:
    """Found by review: tf.data passes one argument for a 1-tuple (x,), and fn got x (so
    el[0] took x's first row) where numpy and torch give (x,)."""
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    ds = NumpyDataset((x,)).unbatch()
    expected = [(row * 2).tolist() for row in x]
    assert [np.asarray(v).tolist() for v in ds.map(lambda el: el[0] * 2)] == expected
    assert [np.asarray(v).tolist() for v in ds.tf().map(lambda el: el[0] * 2)] == expected
    pairs = NumpyDataset((x, np.arange(4)), supervised=True).unbatch().tf()
    assert [int(v) for v in pairs.map(lambda el: el[1])] == [0, 1, 2, 3]
    indexed = ds.as_indexed().tf().map(lambda el: el[1][0] * 2)  # (i, (x,))
    assert [np.asarray(v).tolist() for v in indexed] == expected


def test_a_generator_whose_dtypes_change_is_not_cast_silently() -> None:
    """Found by review: the first element fixed the dtypes and from_generator cast the rest
    (labels 0, 0.5, 1.7 came out 0, 0, 1)."""
    rows = [(np.array([1.0, 2.0]), 0), (np.array([3.0, 4.0]), 0.5), (np.array([5.0, 6.0]), 1.7)]
    ds = NumpyDataset(lambda: iter(rows), supervised=True)
    with pytest.raises(Exception, match="element 1 holds float64 where the first element held "
                                        "int64"):
        list(ds.tf())
    widened = [(np.array([1.0]), np.int64(1)), (np.array([2.0]), np.int32(2))]
    assert [int(y) for _, y in NumpyDataset(lambda: iter(widened), supervised=True).tf()] == \
        [1, 2]  # a cast that loses nothing is fine


def test_map_and_apply_x_on_namedtuple_elements_keep_the_namedtuple() -> None:
    """Found by review: tf.data unpacks plain tuples only; map wrapped a namedtuple element
    in a 1-tuple, and apply_x failed with an IndexError."""
    from typing import NamedTuple

    class Pair(NamedTuple):
        x: np.ndarray
        y: np.ndarray

    data = NumpyDataset([Pair(np.float64(0), np.int64(0)), Pair(np.float64(1), np.int64(1))])
    mapped = list(data.tf().map(lambda e: e).numpy())
    assert [type(e).__name__ for e in mapped] == ["Pair", "Pair"]
    assert [float(e.x) for e in mapped] == [0.0, 1.0]
    pairs = NumpyDataset([(Pair(np.float64(i), np.int64(i)), np.int64(i)) for i in range(2)],
                         supervised=True)
    doubled = list(pairs.tf().apply_x(lambda x: Pair(x.x * 2, x.y)).numpy())
    assert [(type(x).__name__, float(x.x)) for x, _ in doubled] == [("Pair", 0.0),
                                                                    ("Pair", 2.0)]


def test_an_empty_list_dataset_is_a_clear_error_converting_to_tf() -> None:
    """Found by review: NumpyDataset([]).tf() was a bare IndexError."""
    with pytest.raises(DatasetError, match="empty dataset"):
        NumpyDataset([]).tf()


def test_int64_after_a_float64_first_element_is_not_rounded_silently() -> None:
    """numpy calls int64 -> float64 a safe cast: 9007199254740993 came out ...992."""
    rows = [(np.array([0.0]),), (np.array([9007199254740993]),)]
    with pytest.raises(Exception, match="element 1 holds int64 where the first element held "
                                        "float64"):
        list(NumpyDataset(lambda: iter(rows)).tf())
    small = [(np.array([0.0]),), (np.array([7], dtype=np.int32),), (np.array([1]),)]
    assert [float(x[0]) for (x,) in NumpyDataset(lambda: iter(small)).tf()] == [0.0, 7.0, 1.0]


def test_dict_elements_keep_their_key_order_in_tf_and_back() -> None:
    d = {"price": np.full((3, 1), 100.0), "age": np.full((3, 1), 7.0)}
    as_tf = NumpyDataset(d).tf()
    assert list(as_tf.peek()) == ["price", "age"]
    assert list(as_tf.numpy().peek()) == ["price", "age"]
    native = NumpyDataset(d).tf().numpy()
    assert list(next(iter(native))) == ["price", "age"]


def test_shuffle_of_batches_of_a_known_count_needs_no_buffer_size() -> None:
    """TFDataset(tf_ds.batch(3), batch_size=3).shuffle() said its size was unknown."""
    source = tf.data.Dataset.from_tensor_slices(np.arange(12)).batch(3)
    from dryml.data.tf import TFDataset

    shuffled = TFDataset(source, batch_size=3).shuffle(seed=0)
    values = sorted(int(v) for batch in shuffled for v in batch.numpy())
    assert values == list(range(12))


def test_a_seed_that_is_no_count_is_a_dataset_error() -> None:
    """It was TensorFlow's TypeError "Cannot convert 1.5 to EagerTensor" (dataset audit)."""
    for seed in (1.5, -1):
        with pytest.raises(DatasetError, match=r"shuffle\(seed\) must be"):
            NumpyDataset(np.arange(6.0)).tf().shuffle(seed=seed)  # type: ignore[arg-type]
