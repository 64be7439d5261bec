"""Plain-text helpers for the command line: tables and human-readable sizes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TextIO

from dryml._text import one_line

__all__ = ["SafeText", "human_size", "one_line", "table", "terminal_safe"]

# C0 and C1 control characters (but newline and tab) and the bidirectional overrides: what a
# file could use to move the cursor, recolour or rewrite a terminal, or reorder a line.
_UNSAFE = {
    code: f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    for code in (*range(0x00, 0x20), *range(0x7F, 0xA0), 0x2028, 0x2029,  # line separators
                 *range(0x202A, 0x202F), *range(0x2066, 0x206A))
    if code not in (0x0A, 0x09)
}


def terminal_safe(text: str) -> str:
    """``text`` with every control character escaped (``\\x1b``...), newlines and tabs kept."""
    return text.translate(_UNSAFE)


class SafeText:
    """A text stream that escapes control characters in everything written to it: the CLI
    writes through it, so nothing a file supplies reaches a terminal as an escape sequence."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        """Write ``text`` escaped."""
        return self._stream.write(terminal_safe(text))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def human_size(size: int) -> str:
    """``1536`` -> ``"1.5 KiB"``; bytes below 1 KiB are shown exactly."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover - the loop returns at GiB


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "") -> str:
    """Left-aligned columns separated by two spaces; the last column is not padded."""
    rows = [[one_line(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        padded = [c.ljust(w) for c, w in zip(cells[:-1], widths, strict=False)]
        return (indent + "  ".join([*padded, cells[-1]])).rstrip()

    return "\n".join([line(headers), *(line(r) for r in rows)])


def count(text: str) -> int:
    """An argparse type: a whole number >= 0 (``--limit -1`` dropped the last row)."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value
