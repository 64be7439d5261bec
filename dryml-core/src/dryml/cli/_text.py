"""Plain-text helpers for the command line: tables and human-readable sizes."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["human_size", "table"]


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
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        padded = [c.ljust(w) for c, w in zip(cells[:-1], widths, strict=False)]
        return (indent + "  ".join([*padded, cells[-1]])).rstrip()

    return "\n".join([line(headers), *(line(r) for r in rows)])
