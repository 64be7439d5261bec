"""Nested calls from inside a worker that its own context cannot run.

The worker sends the call up to its caller, whose scheduler grants it like any other call (one
scheduler for everything), and blocks until the reply comes back down.
"""

from __future__ import annotations

import pickle
import threading
from collections.abc import Callable
from typing import Any

from dryml.context._protocol import Channel

__all__ = ["forward", "set_channel", "set_forwarder"]

_channel: Channel | None = None
_forwarder: Callable[[dict[str, Any], Any, dict[str, Any]], dict[str, Any]] | None = None
_lock = threading.Lock()


def set_channel(channel: Channel) -> None:
    """The worker's channel to its caller."""
    global _channel
    _channel = channel


def set_forwarder(fn: Callable[[dict[str, Any], Any, dict[str, Any]], dict[str, Any]]) -> None:
    """How a worker with no channel to its caller (a Ray actor) runs nested calls."""
    global _forwarder
    _forwarder = fn


def forward(msg: dict[str, Any], reqs: Any, options: dict[str, Any]) -> dict[str, Any]:
    """Have the caller run ``msg`` under ``reqs``; returns the reply."""
    if _forwarder is not None:
        return _forwarder(msg, reqs, options)
    if _channel is None:
        raise RuntimeError("forward() runs only inside a dryml worker")
    with _lock:  # one nested call at a time per worker: the channel is shared
        _channel.send_bytes(pickle.dumps(("nested", (msg, reqs, options)), protocol=5))
        kind, reply = pickle.loads(_channel.recv_bytes())
    assert kind == "nested_reply"
    return reply  # type: ignore[no-any-return]
