"""dryml.data across numpy, TensorFlow and PyTorch: the issue's example as a doctest, and
conversions between the frameworks (DLPack between tf and torch)."""

from __future__ import annotations

import doctest
import importlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


def _need(*names: str):
    """Import ``names`` in order (skip when missing, unless CI requires the backends)."""
    for name in names:
        if os.environ.get("DRYML_REQUIRE_BACKENDS"):
            module = importlib.import_module(name)
        else:
            module = pytest.importorskip(name)
    return module


# "torch.utils.data" first: tests/torch is importable as a namespace package "torch".
tf = _need("dryml_tf", "tensorflow")
_need("dryml_torch", "torch.utils.data")
torch = importlib.import_module("torch")

from dryml.data import NumpyDataset  # noqa: E402

ISSUE_EXAMPLE = """
>>> data = np.random.random((32, 10, 10))
>>> from dryml.data import NumpyDataset
>>> ds = NumpyDataset(data)
>>> ds.peek().shape
(32, 10, 10)
>>> type(ds.tf().unbatch().peek())
<class 'tensorflow.python.framework.ops.EagerTensor'>
>>> ds.tf().peek().shape
TensorShape([32, 10, 10])
>>> ds.tf().unbatch().peek().shape
TensorShape([10, 10])
>>> type(ds.torch().peek())
<class 'torch.Tensor'>
"""


def test_issue_example_as_a_doctest() -> None:
    test = doctest.DocTestParser().get_doctest(ISSUE_EXAMPLE, {"np": np}, "issue-5", None, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted == 8 and result.failed == 0


def test_docs_data_page_examples_run() -> None:
    page = Path(__file__).resolve().parents[2] / "docs" / "data.md"
    result = doctest.testfile(str(page), module_relative=False, globs={"np": np},
                              optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 8 and result.failed == 0


def test_tf_leaves_reach_torch_and_numpy_without_copy() -> None:
    from dryml_tf.data import to_numpy_leaf
    from dryml_torch._data_adapter import to_torch_leaf

    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    tf_ds = NumpyDataset(x, batch_size=3).tf()
    assert tf_ds.torch().peek().tolist() == tf_ds.peek().numpy().tolist()
    tensor = tf_ds.peek()
    as_torch, as_numpy = to_torch_leaf(tensor), to_numpy_leaf(tensor)
    assert isinstance(as_torch, torch.Tensor) and isinstance(as_numpy, np.ndarray)
    assert as_torch.data_ptr() == as_numpy.ctypes.data  # both views of TensorFlow's buffer


def test_torch_to_tf_and_back_keeps_values_dtypes_and_structure() -> None:
    from dryml.data.torch import TorchDataset

    base = torch.utils.data.TensorDataset(torch.arange(10.0).reshape(5, 2), torch.arange(5))
    ds = TorchDataset(base, supervised=True).batch(2)
    as_tf = ds.tf()
    assert as_tf.supervised and as_tf.batch_size == 2 and len(as_tf) == 3
    back = as_tf.torch().collect()
    for (bx, by), (ox, oy) in zip(back, ds.collect(), strict=True):
        assert bx.dtype == ox.dtype and by.dtype == oy.dtype
        assert torch.equal(bx, ox) and torch.equal(by, oy)
    assert [int(b[1].shape[0]) for b in as_tf.numpy()] == [2, 2, 1]


def test_tf_string_tensors_reach_torch_as_numpy_without_killing_the_process() -> None:
    """Found by review: a tf.string leaf went to torch.from_dlpack, and TensorFlow's DLPack
    export aborted the process (SIGABRT, no Python exception)."""
    code = ("import numpy as np\nfrom dryml.data import NumpyDataset\n"
            "ds = NumpyDataset((np.ones((2, 2), np.float32), np.array(['cat', 'dog'])), "
            "supervised=True)\nx, y = ds.tf().torch().peek()\nprint(type(x).__name__, "
            "list(y))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[0] == "Tensor [b'cat', b'dog']"
