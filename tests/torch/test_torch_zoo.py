"""The torch zoo (issue 11): every case saved by dryml comes back bit for bit in a fresh process.

The cases and the comparison live in ``torch_zoo.py`` (modules with buffers, tied weights,
optimizer and scheduler state, every dtype ``torch.save`` stores, non-contiguous and
channels-last tensors). One process saves every case three ways (dryml, ``torch.save``,
pickle); one fresh process per way, which has imported only dryml, loads them all. Each case is
its own test item; the counts for the three ways are printed (``pytest -rA`` or ``-s``).
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

if not os.environ.get("DRYML_REQUIRE_BACKENDS"):
    pytest.importorskip("torch")
    pytest.importorskip("dryml_torch")

import torch_zoo  # noqa: E402

NAMES = sorted(torch_zoo.cases())


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, Any]:
    return torch_zoo.run(str(tmp_path_factory.mktemp("torch_zoo")))


@pytest.mark.parametrize("name", NAMES)
def test_case_round_trips_bit_for_bit_in_a_fresh_process(zoo: Any, name: str) -> None:
    saved, _, verdicts = zoo
    assert saved[name]["save"]["dryml"] == "ok"
    assert verdicts["dryml"][name] == "ok"


def test_the_loads_import_torch_and_no_other_framework(zoo: Any) -> None:
    _, loaded, _ = zoo
    assert loaded["dryml"]["before"] == []  # only dryml imported before loading
    assert loaded["dryml"]["after"] == ["torch"]


def test_the_zoo_covers_every_dtype_torch_can_store() -> None:
    import torch

    kinds = {name.split("/")[0] for name in NAMES}
    assert kinds == {"module", "train", "dtype", "layout"}
    every = {str(value).removeprefix("torch.") for value in vars(torch).values()
             if isinstance(value, torch.dtype)}
    covered = {name.split("/")[1] for name in NAMES if name.startswith("dtype/")}
    assert covered <= every
    assert every - covered == set(torch_zoo.EXCLUDED_DTYPES) & every


def test_dryml_handles_every_case_pickle_and_torch_save_handle(zoo: Any) -> None:
    _, _, verdicts = zoo
    counts = torch_zoo.counts(verdicts)
    print("\ntorch zoo, cases coming back bit for bit:", json.dumps(counts))
    for way in ("torch.save", "pickle"):
        for name, verdict in verdicts[way].items():
            if verdict != "ok":
                print(f"  {way}: {name}: {verdict}")
    for way in ("torch.save", "pickle"):
        handled = {n for n, v in verdicts[way].items() if v == "ok"}
        assert handled <= {n for n, v in verdicts["dryml"].items() if v == "ok"}
