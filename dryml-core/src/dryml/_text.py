"""Text helpers shared by the repository's reports and the command line (no dependencies)."""

from __future__ import annotations

__all__ = ["one_line"]

# Every character ``str.splitlines`` breaks a line at, and the tab that splits a table cell.
_BREAKS = {ord(c): c.encode("unicode_escape").decode("ascii")
           for c in "\n\r\t\v\f\x1c\x1d\x1e\x85\u2028\u2029"}


def one_line(text: object) -> str:
    """``text`` for a one-line field (an id, a file name, a reason, a table cell): every line
    break escaped, so that a name cannot forge lines of a report (a file named
    ``"x\\nOK: the index matches the files"`` would)."""
    return str(text).translate(_BREAKS)
