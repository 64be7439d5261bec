"""Fuzz in CI: real files of every backend, members and manifests mutated with every checksum
recomputed, each loaded in a child process with a memory cap and a watchdog. Only dryml errors
(or a clean load) may come out: no other exception, no crash, no hang, no memory blow-up.
``python tests/integration/fuzzing.py --cases N`` runs the same for longer."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fuzzing import MAKERS, fuzz  # noqa: E402

CASES = 120


@pytest.mark.parametrize("backend", sorted(MAKERS))
def test_mutated_files_of_every_backend_end_in_dryml_errors(backend: str,
                                                            tmp_path: Path) -> None:
    outcomes = fuzz(backend, CASES, seed=7, workdir=tmp_path)
    bad = {k: v for k, v in outcomes.items()
           if k.startswith(("OTHER", "CRASH", "HANG", "MEMORY"))}
    assert not bad, outcomes
    assert sum(outcomes.values()) == CASES, outcomes
    assert outcomes["FormatError"] > CASES // 3, outcomes  # the mutations reach the checks
