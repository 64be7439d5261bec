"""Run a command in this process's network namespace with loopback up, then exec it.

Used by nox as ``unshare --net -- python tests/ray/isolated_net.py COMMAND...``: ``unshare``
(util-linux) gives the command a network namespace of its own, whose only interface is
loopback, and this script brings loopback up (it starts down) and replaces itself with the
command. Whatever the command starts (a Ray cluster, the doc examples) can then listen only on
127.0.0.1 of that namespace, and can reach nothing outside it: no other host can connect to
it, and nothing it runs can download.

Loopback is brought up with the ``SIOCSIFFLAGS`` ioctl rather than iproute2's ``ip``, so no
system package is needed beyond util-linux.
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct
import sys

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
IFREQ = "16sh22x"  # struct ifreq: the interface name, then the flags (40 bytes in all)


def interfaces() -> list[str]:
    """The network interfaces of this process's namespace (``/proc/self/net/dev``)."""
    with open("/proc/self/net/dev") as dev:
        return [line.split(":", 1)[0].strip() for line in dev.readlines()[2:]]


def loopback_up() -> None:
    """Set the ``lo`` interface up."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack(IFREQ, b"lo", 0)
        flags = struct.unpack(IFREQ, fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack(IFREQ, b"lo", flags | IFF_UP))


def main(argv: list[str]) -> None:
    if not argv:
        sys.exit("usage: unshare --net -- python tests/ray/isolated_net.py COMMAND [ARGS...]")
    if interfaces() != ["lo"]:
        sys.exit(f"not in a network namespace of its own (interfaces: {interfaces()}): run "
                 "this through `unshare --net -- python tests/ray/isolated_net.py ...`")
    loopback_up()
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main(sys.argv[1:])
