"""Who is this process, and is another one still alive? (pid reuse told apart)

A pid alone does not name a process: once it ends, the kernel hands the number to the next one.
A pid together with the kernel's start time of the process does, so records that outlive their
writer (a ledger grant, a temporary file's name) carry both.
"""

from __future__ import annotations

import hashlib
import os
import socket

__all__ = ["host_tag", "process_alive", "process_command", "start_time"]


def start_time(pid: int) -> str:
    """The kernel's start time of ``pid`` (clock ticks since boot, from ``/proc``), or ``''``
    where it cannot be read (no such process, or not Linux)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return ""


def process_alive(pid: int, start: str) -> bool:
    """Whether the process ``pid`` that started at ``start`` may still be running (on this
    machine). False only when it has provably ended: no such pid, or the pid now belongs to a
    process that started at another time. A zombie (ended, not yet reaped) counts as ended."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    now = start_time(pid)
    if start and now and now != start:
        return False  # the pid was reused
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return False


def process_command(pid: int, limit: int = 120) -> str:
    """The command line of ``pid`` (shortened to ``limit`` characters), or ``''``."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            raw = cmdline.read()
    except OSError:
        return ""
    text = " ".join(_short_arg(part.decode(errors="replace")) for part in raw.split(b"\0")
                    if part)
    if len(text) <= limit:
        return text
    # Cut the middle, not the end: the script or module a user would recognise is usually
    # the first word or two and the last few (``python .../train.py --lr 0.1``).
    head = limit // 3
    return text[:head] + "..." + text[len(text) - (limit - head - 3):]


def _short_arg(arg: str, keep: int = 2) -> str:
    """A long path argument shortened to its last ``keep`` parts (``.../runs/train.py``)."""
    parts = arg.split("/")
    if len(arg) <= 40 or len(parts) <= keep + 1:
        return arg
    return ".../" + "/".join(parts[-keep:])


def host_tag() -> str:
    """Eight hex digits naming this machine (from its host name), for names that others on a
    shared file system may see: a pid means something only on the machine that issued it."""
    return hashlib.blake2b(socket.gethostname().encode(), digest_size=4).hexdigest()
