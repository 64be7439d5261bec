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

__all__ = ["LOOPBACK", "RAY_ENV", "RayCluster", "free_port", "running_cluster"]

START_TIMEOUT = 180.0
START_ATTEMPTS = 3


class NodeExited(RuntimeError):
    """A ``ray start`` process ended while the cluster was starting."""

#: for the nodes and every driver: no usage reports; no token authentication (loopback only;
#: Ray enables it by itself when a token file exists in ~/.ray)
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}

#: the nodes' address: loopback, but not 127.0.0.1. Ray 2.60's ``ray start`` passes
#: ``--node-ip-address`` through ``ray._private.services.resolve_ip_for_localhost``, which
#: replaces ``127.0.0.1``, ``localhost`` and ``::1`` by the machine's routable address (the
#: nodes then registered as e.g. 192.0.2.2). The only switch that keeps 127.0.0.1,
#: ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, also refuses every worker node. Any other address
#: of 127.0.0.0/8 is loopback on Linux and Ray keeps it as given. (Ray's gRPC servers still
#: listen on every interface; the tests only ever connect through this address.)
LOOPBACK = "127.0.0.2"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


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
