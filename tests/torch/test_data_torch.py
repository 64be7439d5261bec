"""dryml-torch's TorchDataset and ``ds.torch()``: sharing memory, round trips, DataLoader."""

from __future__ import annotations

import importlib
import os
from typing import Any

import numpy as np
import pytest

# "torch.utils.data", not "torch": tests/torch is importable as a namespace package "torch"
# (tests/ is on sys.path for tests/conftest.py), which would make a plain "torch" check pass.
if os.environ.get("DRYML_REQUIRE_BACKENDS"):
    importlib.import_module("dryml_torch")
    torch = importlib.import_module("torch")
else:
    pytest.importorskip("dryml_torch")
    pytest.importorskip("torch.utils.data")
    torch = importlib.import_module("torch")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402
from torch.utils.data import DataLoader, IterableDataset, TensorDataset  # noqa: E402

from dryml.data import NumpyDataset  # noqa: E402
from dryml.errors import DatasetError  # noqa: E402


def test_seed_import_path_and_backend_class() -> None:
    from dryml.data.torch import TorchDataset
    from dryml_torch.data import TorchDataset as Direct

    assert TorchDataset is Direct
    assert isinstance(NumpyDataset(np.zeros(3)).torch(), TorchDataset)


def test_numpy_to_torch_shares_memory() -> None:
    x = np.zeros((8, 3), dtype=np.float32)
    y = np.arange(8)
    batch_x, batch_y = NumpyDataset((x, y), supervised=True, batch_size=4).torch().peek()
    batch_x[0, 0] = 7.0
    assert x[0, 0] == 7.0
    assert np.shares_memory(batch_y.numpy(), y)
    row = NumpyDataset(x).unbatch().torch().peek()
    row[1] = 5.0
    assert x[0, 1] == 5.0


def test_torch_to_numpy_shares_cpu_memory() -> None:
    from dryml_torch.data import TorchDataset

    t = torch.zeros(6, 2)
    arr = TorchDataset(TensorDataset(t)).numpy().peek()[0]
    assert isinstance(arr, np.ndarray) and np.shares_memory(arr, t.numpy())


dtypes = st.sampled_from([np.float32, np.float64, np.int32, np.int64, np.uint8, np.bool_])


@settings(max_examples=25, deadline=None)
@given(x=hnp.arrays(dtypes, hnp.array_shapes(min_dims=1, max_dims=3, max_side=5)),
       batch=st.one_of(st.none(), st.integers(1, 4)))
def test_round_trip_numpy_torch_numpy(x: np.ndarray, batch: int | None) -> None:
    y = np.arange(len(x))
    ds = NumpyDataset(({"x": x, "flag": y % 2 == 0}, y), supervised=True, batch_size=batch)
    ds = ds if batch else ds.unbatch()
    back = ds.torch().numpy().collect()
    for (bx, by), (ox, oy) in zip(back, ds.collect(), strict=True):
        assert set(bx) == {"x", "flag"}
        for got, want in ((bx["x"], ox["x"]), (bx["flag"], ox["flag"]), (by, oy)):
            got, want = np.asarray(got), np.asarray(want)
            assert got.dtype == want.dtype and got.shape == want.shape
            np.testing.assert_array_equal(got, want)
    assert len(back) == len(ds.collect())


def test_wraps_torch_datasets_and_loaders() -> None:
    from dryml.data.torch import TorchDataset

    base = TensorDataset(torch.arange(10.0).reshape(5, 2), torch.arange(5))
    ds = TorchDataset(base, supervised=True)
    assert len(ds) == 5 and not ds.batched
    assert [b[1].tolist() for b in ds.batch(2)] == [[0, 1], [2, 3], [4]]
    loader = TorchDataset(DataLoader(base, batch_size=2), supervised=True)
    assert loader.batch_size == 2 and len(loader) == 3
    x, _ = loader.peek()  # DataLoader collates into lists; elements are tuples again
    assert isinstance(loader.peek(), tuple) and x.shape == (2, 2)
    assert [int(v) for _, v in loader.unbatch()] == [0, 1, 2, 3, 4]

    class Stream(IterableDataset):
        def __iter__(self):
            return iter(torch.arange(4))

    stream = TorchDataset(Stream())
    assert [int(v) for v in stream.shuffle(seed=1)] != [] and stream.count() == 4
    assert sorted(int(v) for v in stream.shuffle(seed=1)) == [0, 1, 2, 3]


def test_generic_operations_stay_in_torch() -> None:
    from dryml.data.torch import TorchDataset

    ds = TorchDataset(TensorDataset(torch.arange(6.0)))
    batched = ds.map(lambda el: el[0] * 2).batch(4).as_indexed(10)
    idx, values = batched.peek()
    assert isinstance(idx, torch.Tensor) and idx.tolist() == [10, 11, 12, 13]
    assert values.tolist() == [0.0, 2.0, 4.0, 6.0]
    assert [v.tolist() for v in batched.as_not_indexed()] == [[0, 2, 4, 6], [8, 10]]


def test_torch_result_works_in_a_dataloader() -> None:
    x = np.arange(20, dtype=np.float32).reshape(10, 2)
    y = np.arange(10)
    batched = NumpyDataset((x, y), supervised=True, batch_size=4).torch()
    got = [yb.tolist() for _, yb in DataLoader(batched, batch_size=None)]
    assert got == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    examples = NumpyDataset((x, y), supervised=True).unbatch().torch()
    got = [yb.tolist() for _, yb in DataLoader(examples, batch_size=5)]
    assert got == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    # two workers split the examples instead of each reading all of them
    workers = DataLoader(examples, batch_size=None, num_workers=2)
    assert sorted(int(yb) for _, yb in workers) == list(range(10))


def test_operations_on_a_torch_dataset_in_several_workers_give_every_example_once() -> None:
    """Found by review: each dryml level over a TorchDataset kept every n-th element again,
    so map() in 2 workers gave 10 of 20 examples and batch(4) built batches of wrong rows."""
    from dryml.data.torch import TorchDataset

    source = TorchDataset(TensorDataset(torch.arange(20)))
    for ds, unbatch in ((source.map(lambda el: el[0] * 1), False),
                        (source.map(lambda el: el[0] * 1).batch(4), True),
                        (NumpyDataset(np.arange(20)).unbatch().torch().map(lambda v: v), False)):
        got = []
        for el in DataLoader(ds, batch_size=None, num_workers=2):
            got += el.tolist() if unbatch else [int(el)]
        assert sorted(got) == list(range(20)), ds


@pytest.mark.parametrize("batched", [False, True])
def test_an_unseeded_shuffle_in_several_workers_is_one_order_per_epoch(batched: bool) -> None:
    """Found by review: each worker drew its own permutation and kept its share of it, so
    1000 examples came back as ~730 distinct ones (the rest twice, and some never)."""
    ds = NumpyDataset(np.arange(1000)).unbatch().shuffle()
    if batched:
        ds = NumpyDataset(np.arange(1000), batch_size=50).shuffle()
    for persistent in (False, True):  # a persistent worker keeps its torch seed: epochs count
        loader = DataLoader(ds.torch(), batch_size=None if batched else 50, num_workers=2,
                            persistent_workers=persistent)
        epochs = [torch.cat(list(loader)).tolist() for _ in range(2)]
        for order in epochs:
            assert sorted(order) == list(range(1000))
        assert epochs[0] != epochs[1] and epochs[0] != list(range(1000))  # still shuffled


def test_a_batch_of_strings_from_a_dataloader_stays_strings() -> None:
    """Found by review: torch collates a string field into a tuple of strings, which became a
    structure: unbatch() cut every name into characters."""
    from dryml.data.torch import TorchDataset

    class Named(torch.utils.data.Dataset):  # type: ignore[misc]
        names = ("ab", "cd", "ef", "gh", "ij")

        def __len__(self) -> int:
            return 5

        def __getitem__(self, i: int) -> tuple[torch.Tensor, str]:
            return torch.tensor([float(i)]), self.names[i]

    ds = TorchDataset(DataLoader(Named(), batch_size=2), supervised=True)
    assert [(float(x), y) for x, y in ds.unbatch()] == [
        (float(i), n) for i, n in enumerate(Named.names)]
    assert [str(y) for _, y in ds.in_memory().unbatch()] == list(Named.names)


def test_a_dataloader_with_a_batch_sampler_is_batched() -> None:
    """Found by review: its batch_size is None, so it was taken for unbatched data (3
    'examples' instead of 10)."""
    from torch.utils.data import BatchSampler, Sampler, SequentialSampler

    from dryml.data.torch import TorchDataset

    x, y = torch.randn(10, 3), torch.arange(10)
    loader = DataLoader(TensorDataset(x, y),
                        batch_sampler=BatchSampler(SequentialSampler(range(10)), 4, False))
    ds = TorchDataset(loader, supervised=True)
    assert ds.batched and ds.batch_size == 4 and len(ds) == 3
    assert [int(yb) for _, yb in ds.unbatch()] == list(range(10))

    class Pairs(Sampler):  # type: ignore[type-arg]
        def __iter__(self):  # type: ignore[no-untyped-def]
            return iter([[0, 1], [2, 3]])

        def __len__(self) -> int:
            return 2

    with pytest.raises(DatasetError, match="batch_size=N"):
        TorchDataset(DataLoader(TensorDataset(x, y), batch_sampler=Pairs()))


def test_bad_input() -> None:
    from dryml.data.torch import TorchDataset

    with pytest.raises(DatasetError, match="one-shot iterator"):
        TorchDataset(iter([torch.zeros(2)]))
    with pytest.raises(DatasetError, match="ds.torch()"):
        TorchDataset(NumpyDataset(np.zeros(2)))
    with pytest.raises(DatasetError, match="cannot read"):
        TorchDataset(3)
    ragged = TorchDataset([torch.zeros(2), torch.zeros(3)])
    with pytest.raises(DatasetError, match="ragged elements"):
        ragged.batch(2).collect()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_device_tensors_move_to_the_cpu_only_for_numpy() -> None:
    from dryml.data.torch import TorchDataset

    on_gpu = TensorDataset(torch.arange(6.0, device="cuda").reshape(3, 2))
    ds = TorchDataset(on_gpu).batch(2)
    assert ds.torch().peek()[0].device.type == "cuda"
    back = ds.numpy().peek()[0]
    assert isinstance(back, np.ndarray) and back.tolist() == [[0.0, 1.0], [2.0, 3.0]]


def test_string_leaves_batch_map_and_shuffle_in_a_torch_dataset() -> None:
    """Found by review: batch/map/shuffle of string leaves raised 'ragged elements'."""
    rows = [(np.float32(1), "cat"), (np.float32(2), "dog"), (np.float32(3), "cat")]
    batched = list(NumpyDataset(rows).torch().batch(2))
    assert [list(labels) for _, labels in batched] == [["cat", "dog"], ["cat"]]
    assert batched[0][0].tolist() == [1.0, 2.0]
    shuffled = NumpyDataset(rows).torch().batch(3).shuffle(seed=0)
    assert sorted(next(iter(shuffled))[1]) == ["cat", "cat", "dog"]


@pytest.mark.parametrize("array", [np.arange(8.0).reshape(2, 4)[:, ::-1],
                                   np.arange(4.0, dtype=">f4")])
def test_numeric_arrays_torch_cannot_share_are_copied_not_refused(array: np.ndarray) -> None:
    """Found by review: x[::-1] views and big-endian data raised ValueError in .torch()."""
    for data in (NumpyDataset(array), NumpyDataset(array).batch(2)):
        got = np.concatenate([np.atleast_1d(t.numpy()) for t in data.torch()])
        np.testing.assert_array_equal(got.reshape(-1), np.asarray(array).reshape(-1))


@pytest.mark.filterwarnings("ignore:ComplexHalf support is experimental")
@pytest.mark.parametrize(("dtype", "expected"), [
    ("bfloat16", np.float32), ("float8_e4m3fn", np.float32), ("float8_e5m2", np.float32),
    ("complex32", np.complex64)])
def test_tensors_of_dtypes_numpy_lacks_read_back_widened(dtype: str, expected: type) -> None:
    """Found by review: .numpy() and in_memory() (what train/eval use) raised TypeError."""
    from dryml_torch.data import TorchDataset

    data = TorchDataset([torch.tensor([1.5, -2.0]).to(getattr(torch, dtype))])
    (got,) = data.in_memory()
    assert got.dtype == expected and got.tolist() == [1.5, -2.0]


def test_python_numbers_in_elements_keep_numpy_s_dtypes_in_torch() -> None:
    """A Python float became a float32 tensor in .torch() (16777217.0 came back 16777216)
    while the same data in numpy is float64 (found by the dataset audit)."""
    from dryml.models import supervised_arrays

    values = [16777217.0, 0.1, 123456789.123]
    data = NumpyDataset(lambda: iter([(np.zeros(2), v) for v in values]), supervised=True)
    for converted in (data.torch(), data.torch().in_memory()):
        y = supervised_arrays(converted)[1]
        assert y.dtype == np.float64 and y.tolist() == values
    x, label = next(iter(NumpyDataset(lambda: iter([(7, True)]), supervised=True).torch()))
    assert (x.dtype, label.dtype) == (torch.int64, torch.bool)


def test_map_style_data_is_checked_against_its_flags() -> None:
    """TorchDataset took any flags: (x, y) said to be indexed gave y as x, and a third
    field (x, y, w) was dropped by apply_y."""
    from dryml_torch.data import TorchDataset

    x, y = torch.arange(6.0).reshape(3, 2), torch.arange(3)
    with pytest.raises(DatasetError, match="supervised=True needs the elements of the form "
                                           "\\(x, y\\), got x\\."):  # y read as (i, x)'s x
        TorchDataset(TensorDataset(x, y), supervised=True, indexed=True)
    with pytest.raises(DatasetError, match="supervised=True needs the elements of the form "
                                           "\\(x, y\\), got \\(x, x, x\\)"):
        TorchDataset(TensorDataset(x, y, y.float()), supervised=True)
    with pytest.raises(DatasetError, match="supervised=True"):
        TorchDataset(TensorDataset(x), supervised=True)
    pairs = TorchDataset(TensorDataset(x, y), supervised=True)
    assert [int(b) for _, b in pairs.apply_y(lambda b: b + 1)] == [1, 2, 3]


def test_a_shuffling_dataloader_is_known_to_reorder_on_every_pass() -> None:
    """DataLoader(shuffle=True) wrapped in a TorchDataset: skip() did not warn and a perfect
    model's predictions of one pass scored 0.5 against the next."""
    from dryml import metrics
    from dryml.errors import DrymlWarning, MetricError
    from dryml_torch.data import TorchDataset

    x, y = torch.arange(8.0), torch.zeros(8, dtype=torch.int64)
    shuffled = TorchDataset(DataLoader(TensorDataset(x, y), batch_size=2, shuffle=True),
                            supervised=True)
    with pytest.warns(DrymlWarning, match="shuffled without a seed"):
        shuffled.skip(1)
    with pytest.raises(MetricError, match="another order on each pass"):
        metrics.accuracy(np.zeros(8, dtype=np.int64), shuffled)
    in_order = TorchDataset(DataLoader(TensorDataset(x, y), batch_size=2), supervised=True)
    assert metrics.accuracy(np.zeros(8, dtype=np.int64), in_order) == 1.0


class _SplitsItself(IterableDataset):  # type: ignore[misc]
    """An IterableDataset that splits itself among DataLoader workers, as torch's docs show."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __iter__(self) -> Any:
        info = torch.utils.data.get_worker_info()
        per = -(-self.n // (info.num_workers if info else 1))
        start = info.id * per if info else 0
        for i in range(start, min(start + per, self.n) if info else self.n):
            yield torch.tensor([float(i)]), torch.tensor(i)


class _ShufflesItself(IterableDataset):  # type: ignore[misc]
    """An IterableDataset that shuffles with Python's or numpy's global generator."""

    def __init__(self, how: str) -> None:
        self.how = how

    def __iter__(self) -> Any:
        import random

        if self.how == "python":
            order = list(range(20))
            random.shuffle(order)
        else:
            order = np.random.permutation(20).tolist()
        return iter((torch.tensor([float(i)]), torch.tensor(i)) for i in order)


def test_sources_read_in_several_workers_give_every_example_once() -> None:
    """Found by the dataset audit: an IterableDataset that splits itself among workers was
    split again (10 of 20 examples arrived), and a wrapped DataLoader(shuffle=True) drew its
    own order in each worker (20 rows, 16 distinct); so did a source shuffling with Python's or
    numpy's global generator (found by review)."""
    from dryml_torch.data import TorchDataset

    splits = TorchDataset(_SplitsItself(20), supervised=True)
    data = TensorDataset(torch.arange(20.0)[:, None], torch.arange(20))
    shuffled = TorchDataset(DataLoader(data, batch_size=4, shuffle=True), supervised=True)
    own = [TorchDataset(_ShufflesItself(how), supervised=True) for how in ("python", "numpy")]
    for ds, batched in ((splits, False), (splits.batch(4), True), (shuffled, True),
                        (own[0], False), (own[1], False)):
        epochs = []
        for _ in range(2):
            got = []
            for _x, y in DataLoader(ds, batch_size=None, num_workers=2):
                got += y.tolist() if batched else [int(y)]
            assert sorted(got) == list(range(20)), ds
            epochs.append(got)
        if ds is shuffled:
            assert epochs[0] != epochs[1]  # still a new order each epoch


@pytest.mark.parametrize("sampler", ["subset", "weighted"])
def test_a_dataloader_of_any_random_sampler_is_known_to_reorder(sampler: str) -> None:
    """Found by the dataset audit: only shuffle=True (a RandomSampler) was known to draw
    another order each pass; a take()/skip() split of a DataLoader with a SubsetRandomSampler
    or WeightedRandomSampler overlapped (validation rows trained on) without a warning."""
    from torch.utils.data import SubsetRandomSampler, WeightedRandomSampler

    from dryml.errors import DrymlWarning
    from dryml_torch.data import TorchDataset

    draws = (SubsetRandomSampler(range(10)) if sampler == "subset"
             else WeightedRandomSampler([1.0] * 10, 10, replacement=False))
    data = TensorDataset(torch.arange(10.0)[:, None], torch.arange(10))
    ds = TorchDataset(DataLoader(data, batch_size=4, sampler=draws), supervised=True)
    with pytest.warns(DrymlWarning, match="shuffled without a seed"):
        ds.skip(2)


_FIRST_ELEMENT_MEMORY = """
import sys
import numpy as np
import dryml_torch  # noqa: F401
from dryml.data import NumpyDataset

def anon_mb():
    status = open("/proc/self/status").read()
    return int(status.split("RssAnon:")[1].split()[0]) // 1024

x = np.ones((300_000, 32), np.float32)
ds = NumpyDataset((x, np.arange(len(x))), supervised=True)
chains = {"torch_then_batch": lambda: ds.torch().batch(256),
          "unbatched_torch": lambda: ds.unbatch().torch(),
          "shuffled_rows": lambda: ds.unbatch().shuffle(seed=0)}
made = chains[sys.argv[1]]()
before = anon_mb()
first = next(iter(made))  # held: what it keeps alive counts
print(anon_mb() - before)
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads Linux's RssAnon")
@pytest.mark.parametrize("chain", ["torch_then_batch", "unbatched_torch", "shuffled_rows"])
def test_the_first_example_of_a_large_batch_takes_no_memory_of_its_size(chain: str) -> None:
    """Found by the dataset audit: unbatching made a tensor per row of the whole batch before
    the first came out (+1.2 GB for 1M rows of 100 floats), and iterating a shuffled table
    example by example copied every column first."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _FIRST_ELEMENT_MEMORY, chain],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    grown_mb = int(done.stdout.split()[-1])
    assert grown_mb < 20, f"{chain}: +{grown_mb} MB for the first example (the data is 38 MB)"
