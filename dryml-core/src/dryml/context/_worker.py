"""The worker process: ``python -m dryml.context._worker READ_FD WRITE_FD LIFELINE_FD CALLER``.

It first forks: the parent stays behind as the keeper (:mod:`dryml.context._keeper`), which
holds the lifeline from the caller and ends the worker and everything it started when either
the caller or the worker goes away. The child reads a setup message (the caller's ``sys.path``
and its grant), prepares each framework through the ``dryml_contexts`` plugin before the
framework is imported, says it is ready, then runs calls one at a time until told to stop.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import pickle
import sys
import traceback
from typing import Any

from dryml.context import _keeper

__all__ = ["main"]


def _prepare(setup: dict[str, Any]) -> Any:
    """The worker's context, after each framework's plugin prepared it, with the plugins'
    hooks to run before each call (a :class:`dryml.context._state.BeforeCall`)."""
    from dryml.context._state import BeforeCall, ComputeContext, set_current_context
    from dryml.records import load_ref

    ctx = ComputeContext(setup["shares"], setup["resources"])
    cpus = {int(r["info"]["os_cpu"]) for r in setup["resources"].values()
            if r["kind"] == "cpu" and "os_cpu" in r["info"]}
    # Pinning is opt-in: thread counts already follow the grant, and a pinned worker cannot
    # move off a core that other programs keep busy (imports then run markedly slower).
    if cpus and os.environ.get("DRYML_PIN_CPUS") == "1" and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, cpus)  # the worker runs on the CPUs it was granted
    plugins = []
    for framework in ctx.frameworks:
        ref = setup["plugins"].get(framework)
        if ref is not None:
            plugin = load_ref(ref)
            plugin.prepare(ctx)
            plugins.append(plugin)
    set_current_context(ctx)
    return BeforeCall(plugins, ctx)


def main(argv: list[str]) -> int:
    """Serve calls on the given file descriptors."""
    read_fd, write_fd, lifeline_fd = (int(a) for a in argv[:3])
    caller = int(argv[3]) if len(argv) > 3 else os.getppid()
    # Fork before anything else runs (one thread, no framework): the parent stays the keeper.
    _keeper.watch_keeper(_keeper.start(lifeline_fd, caller, (read_fd, write_fd)))
    faulthandler.enable()
    # stdout is a pipe the caller reads: each line goes when printed, not when a block fills
    with contextlib.suppress(AttributeError, ValueError):
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    from dryml.context._protocol import Channel, ChannelClosed

    channel = Channel(read_fd, write_fd)
    setup = pickle.loads(channel.recv_bytes())
    sys.path[:] = setup["sys_path"]
    try:
        before_call = _prepare(setup)
    except BaseException as exc:  # noqa: BLE001 - report why this worker cannot serve
        channel.send_bytes(pickle.dumps(
            ("failed", (isinstance(exc, ImportError), traceback.format_exc()))))
        return 1
    from dryml.context import _nested
    from dryml.context._calls import run_call

    _nested.set_channel(channel)
    from dryml import progress

    progress._bind()  # progress goes to the caller's display (dryml.progress)
    channel.send_bytes(pickle.dumps(("ready", os.getpid())))
    while True:
        try:
            kind, msg = pickle.loads(channel.recv_bytes())
        except ChannelClosed:
            return 0
        if kind == "stop":
            return 0
        before_call.run()  # a call's torch.set_num_threads(2) must not stay for the next
        _nested.begin_call()
        reply = pickle.dumps(("reply", run_call(msg)), protocol=5)
        for stream in (sys.stdout, sys.stderr):  # in the pipes before the reply is
            with contextlib.suppress(Exception):
                stream.flush()
        try:
            _nested.send_reply(reply)
        except ChannelClosed:
            return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
