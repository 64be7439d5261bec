"""Run a script as a user would, on a terminal (a pseudo-terminal) or into a pipe, and read
what they would see: the raw output, and the terminal's screen replayed from it.

The replay understands what the live display writes (rich): carriage return, newline,
``ESC[2K`` (erase the line), ``ESC[<n>A`` (cursor up), colours and cursor visibility (ignored).
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from collections.abc import Iterator, Mapping
from pathlib import Path

__all__ = ["run_in_pipe", "run_in_pty", "screens"]

TIMEOUT = 600


def _env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRYML_PROGRESS")}
    env.update(extra)
    return env


def run_in_pipe(script: Path, env: Mapping[str, str] = {}) -> str:
    """stdout and stderr of ``python script``, both into one pipe (no terminal)."""
    done = subprocess.run([sys.executable, str(script)], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                          env=_env(env), cwd=script.parent, timeout=TIMEOUT, check=False)
    out = done.stdout.decode("utf-8", "replace")
    assert done.returncode == 0, out
    return out


def run_in_pty(script: Path, env: Mapping[str, str] = {}, columns: int = 160) -> str:
    """Everything ``python script`` wrote to its terminal (a pty of 40 x ``columns``)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    proc = subprocess.Popen([sys.executable, str(script)], stdin=follower, stdout=follower,
                            stderr=follower, env=_env(env), cwd=script.parent)
    os.close(follower)
    chunks = []
    try:
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(leader)
        code = proc.wait(TIMEOUT)
    out = b"".join(chunks).decode("utf-8", "replace")
    assert code == 0, out
    return out


_TOKEN = re.compile(r"\x1b\[(\??)([0-9;]*)([A-Za-z])|\n|\r|[^\x1b\r\n]+")


def screens(raw: str) -> Iterator[list[str]]:
    """The terminal's lines after each write of ``raw`` (ANSI codes applied, colours dropped)."""
    lines = [""]
    row = col = 0
    for match in _TOKEN.finditer(raw):
        text, final = match.group(0), match.group(3)
        if final == "K":  # erase the line
            lines[row] = ""
        elif final == "A":  # cursor up
            row = max(0, row - int(match.group(2) or 1))
        elif final is not None:
            continue  # colours, cursor visibility
        elif text == "\r":
            col = 0
        elif text == "\n":
            row, col = row + 1, 0  # a pty turns "\n" into "\r\n"
            if row == len(lines):
                lines.append("")
        else:
            line = lines[row].ljust(col)
            lines[row] = line[:col] + text + line[col + len(text):]
            col += len(text)
        yield [line.rstrip() for line in lines]
