"""Nested calls from inside a worker that its own context cannot run.

The worker sends the call up to its caller, whose scheduler grants it like any other call (one
scheduler for everything), and blocks until the reply comes back down. The caller reads the
channel only while a call of this worker runs, so a nested call is sent only then (from any
thread of the call); one made after the call returned (from a thread it left running) fails.
"""

from __future__ import annotations

import pickle
import threading
from collections.abc import Callable
from typing import Any

from dryml.context._protocol import Channel
from dryml.errors import DrymlError

__all__ = ["begin_call", "forward", "send_reply", "set_channel", "set_forwarder"]

_channel: Channel | None = None
_forwarder: Callable[[dict[str, Any], Any, dict[str, Any]], dict[str, Any]] | None = None
_lock = threading.Lock()
_serving = False


def set_channel(channel: Channel) -> None:
    """The worker's channel to its caller."""
    global _channel
    _channel = channel


def set_forwarder(fn: Callable[[dict[str, Any], Any, dict[str, Any]], dict[str, Any]]) -> None:
    """How a worker with no channel to its caller (a Ray actor) runs nested calls."""
    global _forwarder
    _forwarder = fn


def begin_call() -> None:
    """A call starts running in this worker: nested calls may be sent until it replies."""
    global _serving
    with _lock:
        _serving = True


def send_reply(reply: bytes) -> None:
    """End the call with its reply, under the lock: a nested call or progress event of a
    thread the call left running cannot come between the reply's pieces (a reply larger than
    the pipe goes out in several), and no nested call is sent after it."""
    global _serving
    assert _channel is not None
    with _lock:
        _serving = False
        _channel.send_bytes(reply)


def forward(msg: dict[str, Any], reqs: Any, options: dict[str, Any]) -> dict[str, Any]:
    """Have the caller run ``msg`` under ``reqs``; returns the reply."""
    if _forwarder is not None:
        return _forwarder(msg, reqs, options)
    if _channel is None:
        raise RuntimeError("forward() runs only inside a dryml worker")
    with _lock:  # one nested call at a time per worker: the channel is shared
        if not _serving:
            raise DrymlError(
                "a nested call was made while no call runs in this worker, from a thread "
                f"that a call started and left running ({threading.current_thread().name}): "
                "its caller serves nested calls only while the call runs, so join the "
                "threads that make them before the call returns")
        _channel.send_bytes(pickle.dumps(("nested", (msg, reqs, options)), protocol=5))
        kind, reply = pickle.loads(_channel.recv_bytes())
    assert kind == "nested_reply"
    return reply  # type: ignore[no-any-return]
