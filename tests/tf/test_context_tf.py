"""The issue's interactive example, verbatim, and how a TF worker is prepared (few: TF is slow)."""

from __future__ import annotations

import doctest
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from backend_checks import require_backend

import dryml
import dryml.context as ctx
from dryml.context import FakeGpuProvider, Resource, compute_context

EXAMPLE = """
>>> def test_method():
...     import dryml
...     dryml.context.context_check({'tf': {}})
...     import tensorflow as tf
...     return tf.constant([1, 2, 3]).numpy().sum()
>>> test_method = dryml.context.compute_context()(test_method)
>>> test_method()
Traceback (most recent call last):
  ...
dryml.context.ContextIncompatibilityError: Context doesn't satisfy requirements {'tf': {}}
>>> test_method(call_context_reqs={'tf': {}})
6
"""


class FakeCpus:
    def resources(self) -> list[Resource]:
        return [Resource("cpu", i) for i in range(4)]


@pytest.fixture(scope="module", autouse=True)
def fake_machine() -> Iterator[None]:
    require_backend("tf")
    ctx.configure(providers=[FakeCpus(), FakeGpuProvider(2)], max_workers=3)
    yield
    ctx.configure()


def test_the_issue_example_runs_as_shown() -> None:
    # The example names the error by its public path, dryml.context; the class lives in
    # dryml.errors, so the module part of the name is not compared (the message is, below).
    # numpy >= 2 prints scalars as np.int64(6); the legacy repr prints 6 as in the issue.
    printoptions = np.get_printoptions()
    np.set_printoptions(legacy="1.25")
    try:
        test = doctest.DocTestParser().get_doctest(EXAMPLE, {"dryml": dryml}, "issue", None, 0)
        runner = doctest.DocTestRunner(optionflags=doctest.IGNORE_EXCEPTION_DETAIL)
        runner.run(test, clear_globs=False)
        results = runner.summarize(verbose=False)
        assert results.failed == 0 and results.attempted == 4
    finally:
        np.set_printoptions(**printoptions)
    with pytest.raises(ctx.ContextIncompatibilityError) as info:
        test.globs["test_method"]()
    assert str(info.value) == "Context doesn't satisfy requirements {'tf': {}}"


@compute_context({"tf": {"gpu/1": 0.5, "cpu/0": 1.0, "cpu/1": 1.0}})
def tf_worker_facts() -> dict[str, Any]:
    import tensorflow as tf

    return {"intra": tf.config.threading.get_intra_op_parallelism_threads(),
            "visible_gpus": tf.config.get_visible_devices("GPU"),
            "gpus": ctx.current_context().local_gpus("tf")}  # type: ignore[union-attr]


def test_a_tf_worker_is_limited_to_its_cpus_and_fake_gpu() -> None:
    facts = tf_worker_facts()
    assert facts["intra"] == 2
    assert facts["visible_gpus"] == []  # CUDA sees no fake GPU; preparing did not fail
    assert facts["gpus"][0]["fraction"] == 0.5


def test_the_docs_show_the_same_example() -> None:
    from pathlib import Path

    # The page shows the issue's example made runnable as written: `import dryml` first, and
    # the sum as an int so that it prints 6 on numpy 1 and 2 alike.
    page = (Path(__file__).resolve().parents[2] / "docs" / "context.md").read_text()
    runnable = EXAMPLE.strip().replace(
        "return tf.constant([1, 2, 3]).numpy().sum()",
        "return int(tf.constant([1, 2, 3]).numpy().sum())")
    assert ">>> import dryml\n" + runnable in page
