"""A real two-node Ray cluster on loopback, started with ``ray start --block`` as this test
session's own subprocesses and stopped by ending exactly their process groups (never
``ray stop``, which kills every Ray process of the machine by name)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["LOOPBACK", "RAY_ENV", "RayCluster", "free_port", "listening_addresses",
           "running_cluster"]

START_TIMEOUT = 180.0
START_ATTEMPTS = 3


class NodeExited(RuntimeError):
    """A ``ray start`` process ended while the cluster was starting."""

#: for the nodes and every driver: no usage reports; no token authentication (loopback only;
#: Ray enables it by itself when a token file exists in ~/.ray)
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}

#: the nodes' address. The tests run in a network namespace of their own whose only interface
#: is loopback (``nox -s ray`` starts them through ``unshare --net`` and ``isolated_net.py``):
#: there Ray finds no routable address, keeps 127.0.0.1 as the nodes' address, and every
#: server it starts listens on 127.0.0.1 only. (Outside such a namespace Ray 2.60 replaces
#: 127.0.0.1 by the machine's routable address and its gRPC servers listen on every interface,
#: which is why the tests refuse to run there.)
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def listening_addresses() -> set[str]:
    """The local addresses of every listening TCP socket in this network namespace, e.g.
    ``127.0.0.1`` or ``::ffff:127.0.0.1`` (read from ``/proc/net/tcp`` and ``tcp6``)."""
    found: set[str] = set()
    for name, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        with open(f"/proc/self/net/{name}") as table:
            for line in table.readlines()[1:]:
                fields = line.split()
                if fields[3] != "0A":  # TCP_LISTEN
                    continue
                raw = bytes.fromhex(fields[1].split(":")[0])
                # the kernel prints each 32-bit word in host (little-endian) order
                packed = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
                found.add(socket.inet_ntop(family, packed))
    return found


def _ray_cli() -> str:
    cli = Path(sys.executable).with_name("ray")
    if not cli.exists():
        raise RuntimeError(f"the ray command is not next to {sys.executable}: install "
                           "dryml-core[ray] (the ray tests fail rather than skip without it)")
    return str(cli)


class RayCluster:
    """Head (1 CPU, 2 declared GPUs) plus a worker node (1 CPU), both on :data:`LOOPBACK`."""

    def __init__(self) -> None:
        self.temp = tempfile.mkdtemp(prefix="dr", dir="/tmp")  # short: Ray's socket paths
        self.port = free_port()
        self.address = f"{LOOPBACK}:{self.port}"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []

    def _start(self, *args: str) -> None:
        log = Path(self.temp) / f"node{len(self.logs)}-{time.monotonic_ns()}.log"
        self.logs.append(log)
        env = {**os.environ, **RAY_ENV}
        with open(log, "wb") as out:
            self.procs.append(subprocess.Popen(
                [_ray_cli(), "start", "--block", "--disable-usage-stats", *args],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                start_new_session=True))

    def start(self) -> RayCluster:
        # A loaded machine can time a starting node out (Ray waits 30 s for its raylet to
        # register: "the current node timed out during startup"); that node's `ray start`
        # exits, and it is started again, the head on a fresh port.
        def head() -> tuple[str, ...]:
            self.port = free_port()
            self.address = f"{LOOPBACK}:{self.port}"
            return ("--head", f"--node-ip-address={LOOPBACK}", f"--port={self.port}",
                    "--num-cpus=1", "--num-gpus=2", "--include-dashboard=false",
                    f"--temp-dir={self.temp}")

        def worker() -> tuple[str, ...]:
            return (f"--address={self.address}", f"--node-ip-address={LOOPBACK}",
                    "--num-cpus=1", "--num-gpus=0")

        for count, node in ((1, head), (2, worker)):
            for attempt in range(START_ATTEMPTS):
                self._start(*node())
                try:
                    self._wait_nodes(count)
                    break
                except NodeExited:
                    if attempt == START_ATTEMPTS - 1:
                        raise
                    self._drop_last()
        return self

    def _drop_last(self) -> None:
        """Forget the node that exited while starting (ending what is left of its group)."""
        proc = self.procs.pop()
        self.logs.pop()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def _wait_nodes(self, count: int) -> None:
        code = ("import ray,sys; ray.init(address=sys.argv[1], logging_level='ERROR'); "
                "print(sum(1 for n in ray.nodes() if n['Alive']))")
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            for proc, log in zip(self.procs, self.logs, strict=True):
                if proc.poll() is not None:
                    raise NodeExited(f"ray start exited with {proc.returncode}:\n"
                                     f"{log.read_text(errors='replace')[-3000:]}")
            out = subprocess.run([sys.executable, "-c", code, self.address],
                                 capture_output=True, text=True, timeout=120,
                                 env={**os.environ, **RAY_ENV})
            if out.returncode == 0 and out.stdout.strip().isdigit() and \
                    int(out.stdout.strip()) >= count:
                return
            time.sleep(1.0)
        raise RuntimeError(f"the Ray cluster did not reach {count} nodes in {START_TIMEOUT}s:\n"
                           + "\n".join(p.read_text(errors="replace")[-2000:] for p in self.logs))

    def stop(self) -> None:
        for proc in reversed(self.procs):  # ray start --block ends its node's processes
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                pass
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # what is left in its own group
            proc.wait()


@contextlib.contextmanager
def running_cluster() -> Iterator[RayCluster]:
    cluster = RayCluster()
    try:
        yield cluster.start()
    finally:
        cluster.stop()
