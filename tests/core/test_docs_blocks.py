"""Every fenced Python block of README.md and docs/*.md runs as written, in order, per page.

A page runs top to bottom in one namespace, in a fresh temporary directory, as a reader who
pastes each block into one Python session would: a block with ``>>>`` prompts runs as a
doctest (its output must match), any other Python block runs as a script. The rare block that
cannot run here is marked in the Markdown, on the line right before its fence::

    <!-- not run: what it needs and why -->

Pages whose examples need the framework backends run in the integration session
(``tests/integration/test_docs_blocks.py``); the others run here, with dryml-core alone.
"""

from __future__ import annotations

import contextlib
import doctest
import re
import textwrap
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: Pages whose blocks import a framework or train through a backend.
#: (plot.md too: its charts need matplotlib, which core_isolated does not install.)
BACKEND_PAGES = {"backends.md", "context.md", "data.md", "models.md", "plot.md",
                 "trainables.md"}
_FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[^\n]*$")
_SKIP = re.compile(r"^\s*<!--\s*not run:\s*(?P<why>.+?)\s*-->\s*$")
_FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@attrs.frozen
class Block:
    """One fenced Python block of a page."""

    page: Path
    line: int  #: the line of its first code line (1-based)
    code: str
    skip: str | None  #: why it is not run (from a ``<!-- not run: ... -->`` marker)

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def is_doctest(self) -> bool:
        return any(line.lstrip().startswith(">>>") for line in self.code.splitlines())


def python_blocks(page: Path) -> list[Block]:
    """The page's fenced ``python`` blocks, in order (indented fences dedented)."""
    lines = page.read_text(encoding="utf-8").splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if fence is None:
            i += 1
            continue
        indent = fence.group("indent")
        end = next((j for j in range(i + 1, len(lines))
                    if lines[j].strip() == "```" and lines[j].startswith(indent)), len(lines))
        if fence.group("lang") in ("python", "py", "pycon"):
            before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            skip = _SKIP.match(before)
            out.append(Block(page, i + 2, textwrap.dedent("\n".join(lines[i + 1:end])) + "\n",
                             skip.group("why") if skip else None))
        i = end + 1
    return out


def run_page(page: Path, workdir: Path) -> list[str]:
    """Run a page's blocks in order in ``workdir``; the failures, each with where and why."""
    from dryml.plugins import reset_plugin_manager

    namespace: dict[str, Any] = {"__name__": f"docs_{page.stem.replace('-', '_')}"}
    failures: list[str] = []
    # A page that registers plugins does so on a manager of its own, dropped afterwards.
    saved = reset_plugin_manager(None)
    with contextlib.chdir(workdir), _restored(saved):
        for block in python_blocks(page):
            if block.skip is not None:
                continue
            failure = _run_doctest(block, namespace) if block.is_doctest else _run_script(
                block, namespace)
            if failure:
                failures.append(f"{block.where}:\n{failure}")
    return failures


def _run_doctest(block: Block, namespace: dict[str, Any]) -> str:
    test = doctest.DocTestParser().get_doctest(block.code, namespace, block.where,
                                               str(block.page), block.line - 1)
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=_FLAGS)
    runner.run(test, out=report.append, clear_globs=False)
    namespace.update(test.globs)  # (a DocTest runs in a copy: later blocks see its names)
    return "".join(report)


def _run_script(block: Block, namespace: dict[str, Any]) -> str:
    try:
        exec(compile(block.code, block.where, "exec"), namespace)  # noqa: S102
    except Exception:  # noqa: BLE001 - any failure of a doc block is the test's finding
        return traceback.format_exc()
    return ""


@contextlib.contextmanager
def _restored(manager: Any) -> Iterator[None]:
    from dryml.plugins import reset_plugin_manager

    try:
        yield
    finally:
        reset_plugin_manager(manager)


# -- the pages that need no backend ----------------------------------------------------------

CORE_PAGES = [p for p in PAGES if p.name not in BACKEND_PAGES]


@pytest.mark.parametrize("page", CORE_PAGES, ids=lambda p: p.name)
def test_python_blocks_of_the_page_run_as_written(page: Path, tmp_path: Path) -> None:
    failures = run_page(page, tmp_path)
    assert not failures, "\n".join(failures)


_FRAMEWORK_IMPORT = re.compile(
    r"^\W*(from|import)\s+(dryml_tf|dryml_torch|dryml_sklearn|dryml_xgboost|tensorflow|keras|"
    r"torch|sklearn|xgboost)\b", re.M)


def test_pages_run_here_import_no_backend() -> None:
    """Core runs these pages with no backend installed: a page that imports one belongs in
    BACKEND_PAGES (its blocks then run in the integration session)."""
    found = [block.where for page in CORE_PAGES for block in python_blocks(page)
             if block.skip is None and _FRAMEWORK_IMPORT.search(block.code)]
    assert found == []


def test_readme_tour_leaves_the_file_it_tells_you_to_inspect(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dryml.cli import main

    assert run_page(ROOT / "README.md", tmp_path) == []
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "dryml inspect pipe.dry" in readme
    capsys.readouterr()
    assert main(["inspect", str(tmp_path / "pipe.dry")]) == 0
    assert "Pipeline" in capsys.readouterr().out


PASTE = """
import code, re, sys
blocks = re.findall(r"^```python\\n(.*?)^```", open(sys.argv[1]).read(), flags=re.S | re.M)
console = code.InteractiveConsole()
for block in blocks:
    more = False
    for line in block.splitlines():
        more = console.push(line)
    if more:
        console.push("")
print("pasted", len(blocks))
"""


def test_readme_tour_can_be_pasted_into_the_python_prompt(tmp_path: Path) -> None:
    """The README says to paste its blocks into one Python session: the plain prompt ends a
    class body at its first blank line (found by review: every later method was an
    IndentationError)."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", PASTE, str(ROOT / "README.md")],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 0 and "pasted" in out.stdout
    assert "Error" not in out.stderr, out.stderr[-3000:]
    assert (tmp_path / "pipe.dry").is_file()


def test_a_failing_block_is_reported_with_its_page_and_line(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# t\n\n```python\nx = 1\n```\n\n```python\n>>> x + 1\n3\n```\n\n"
                    "<!-- not run: needs a GPU -->\n```python\nraise SystemExit\n```\n\n"
                    "```python\nundefined_name\n```\n", encoding="utf-8")
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        blocks = python_blocks(page)
        assert [(b.line, b.is_doctest, b.skip) for b in blocks] == [
            (4, False, None), (8, True, None), (14, False, "needs a GPU"), (18, False, None)]
        failures = run_page(page, tmp_path)
    finally:
        ROOT = saved
    assert len(failures) == 2
    assert failures[0].startswith("page.md:8:") and "Expected:\n    3\nGot:\n    2" in failures[0]
    assert failures[1].startswith("page.md:18:") and "NameError" in failures[1]
