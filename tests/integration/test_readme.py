"""The README's promises hold: CI runs its test command, and its tour is the runnable tour."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README, flags=re.S | re.M)


def _two_commands() -> list[str]:
    block = _blocks("bash")[0]
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_readme_has_two_commands_and_ci_runs_the_test_command() -> None:
    main_job, test_suite = _two_commands()
    assert "docs/examples/tour.py" in main_job
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert test_suite in ci, f".ci/run does not run the README's test command {test_suite!r}"


def test_readme_tour_code_is_taken_from_the_runnable_tour() -> None:
    tour = (ROOT / "docs" / "examples" / "tour.py").read_text(encoding="utf-8")
    blocks = _blocks("python")
    assert blocks
    for block in blocks:
        assert block in tour, f"README snippet not in docs/examples/tour.py:\n{block}"
