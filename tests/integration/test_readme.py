"""The README's promises hold: its main command runs the cross-framework comparison, CI runs
its test command, and its tour is the runnable tour."""

from __future__ import annotations

import ast
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
    session = re.fullmatch(r"python3 -m pip install nox && python3 -m nox -s (\w+)", main_job)
    assert session, main_job
    # the nox session the README names runs the main job's script
    tree = ast.parse((ROOT / "noxfile.py").read_text(encoding="utf-8"))
    body = next(node for node in tree.body
                if isinstance(node, ast.FunctionDef) and node.name == session.group(1))
    assert "docs/examples/compare_frameworks.py" in ast.unparse(body)
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert test_suite in ci, f".ci/run does not run the README's test command {test_suite!r}"


def test_readme_tour_code_is_taken_from_the_runnable_tour() -> None:
    tour = (ROOT / "docs" / "examples" / "tour.py").read_text(encoding="utf-8")
    blocks = _blocks("python")
    assert blocks
    for block in blocks:
        assert block in tour, f"README snippet not in docs/examples/tour.py:\n{block}"
