"""A call as plain messages: encoded by the caller, run by a worker, decoded back.

Both the calling process and workers (for nested calls) use these, so a nested call that a
worker cannot run itself is forwarded to the caller's scheduler untouched.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sys
import traceback
import warnings
from collections.abc import Callable
from typing import Any

from dryml._object import Object
from dryml.context import _protocol, _warnings
from dryml.context._lifecycle import enter_compute, iter_objects, leave_compute
from dryml.errors import DrymlError, DrymlWarning, SerializationError

__all__ = ["RemoteTraceback", "apply_reply", "encode_call", "run_call"]

_KEEP_STATE = ("_dry_args", "_dry_kwargs")


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker (set as the ``__cause__``)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return "\n\n" + self.text.rstrip()


def encode_call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                update_objs: bool, out_of_band: int | None = None,
                found: list[Object] | None = None) -> dict[str, Any]:
    """The message that runs ``fn(*args, **kwargs)`` in a worker.

    ``out_of_band``: array buffers of at least this many bytes are left out of the pickle, in
    the message's ``buffers`` (an executor that ships them its own way, e.g. Ray's object store).
    ``found`` (a list to fill): the Objects the arguments hold, for :func:`apply_reply`.
    """
    buffers: list[Any] | None = [] if out_of_band is not None else None
    try:
        data, blobs, trust = _protocol.dumps((args, kwargs), buffers, out_of_band or 0,
                                             found=found)
    except DrymlError:
        raise  # an Object that cannot be saved says why itself
    except Exception as exc:  # noqa: BLE001 - pickle raises many kinds: say which argument
        named = [*((f"argument {i}", v) for i, v in enumerate(args)),
                 *((f"argument {k!r}", v) for k, v in kwargs.items())]
        bad = next((name for name, value in named if not _sendable(value)), "an argument")
        raise _unsendable(bad, "to the worker", exc, ran=False) from exc
    msg = {"fn": _protocol.function_payload(fn), "cwd": os.getcwd(), "sys_path": sys.path,
           "classes": _protocol.local_classes([args, kwargs]) if blobs else [],
           "args": data, "blobs": blobs, "trust": trust, "update_objs": update_objs}
    if buffers:
        msg["buffers"] = buffers
    return msg


def _sendable(value: Any) -> bool:
    try:
        _protocol.dumps(value)
    except Exception:  # noqa: BLE001
        return False
    return True


def _unsendable(what: str, where: str, exc: BaseException, ran: bool = True) -> DrymlError:
    """The error for a value that cannot cross to or from a worker."""
    done = "the call ran in the worker, but " if ran else ""
    return SerializationError(
        f"{done}{what} cannot be sent {where}: {type(exc).__name__}: {exc}. Pass and return "
        "plain data, arrays or dryml Objects (not locks, generators, open files or sockets)")


_fn_cache: dict[Any, Callable[..., Any]] = {}


def _function(payload: tuple[str, Any]) -> Callable[..., Any]:
    key = (payload[0], payload[1] if payload[0] == "val" else tuple(payload[1]))
    fn = _fn_cache.get(key)
    if fn is None:
        fn = _protocol.load_function(payload)
        if len(_fn_cache) > 256:
            _fn_cache.clear()
        _fn_cache[key] = fn
    return fn


def run_call(msg: dict[str, Any]) -> dict[str, Any]:
    """Run a call message here (in a worker); the reply never raises. The warnings the call
    raised go with it (see :mod:`dryml.context._warnings`)."""
    raised: list[_warnings.Recorded] = []
    reply = _run_call(msg, raised)
    if raised:
        reply["warnings"] = raised
    return reply


def _run_call(msg: dict[str, Any], raised: list[_warnings.Recorded]) -> dict[str, Any]:
    try:
        if msg["cwd"] != os.getcwd():  # relative paths mean what they mean in the caller
            os.chdir(msg["cwd"])
        if msg["sys_path"] != sys.path:  # and so do imports
            sys.path[:] = msg["sys_path"]
        fn = _function(msg["fn"])
        # After the function: unpickling a function by value may define a throwaway copy of a
        # class it uses, and that copy replaces the registry entry (held weakly) until it dies.
        _protocol.register_classes(msg["classes"])
        # the Objects the arguments hold, also those in a dataclass or another instance,
        # which iter_objects does not look into (their changes were not sent back)
        carried: list[Object] = []
        args, kwargs = _protocol.loads(msg["args"], msg["blobs"], msg["trust"],
                                       msg.get("buffers"), found=carried)
        with _warnings.recorded(raised):
            entered = enter_compute([args, kwargs, carried])
            try:
                result = fn(*args, **kwargs)
            finally:
                leave_compute(entered)
        # a result that cannot be pickled is said to be so: a bare TypeError would read as
        # the function's own error although the call had run
        try:
            data, blobs, trust = _protocol.dumps(result)
        except DrymlError:
            raise  # an Object that cannot be saved says why itself
        except Exception as exc:  # noqa: BLE001 - pickle raises many kinds
            raise _unsendable(f"its result ({type(result).__module__}."
                              f"{type(result).__qualname__})", "back to the caller", exc) from exc
        reply: dict[str, Any] = {"ok": True, "result": data, "blobs": blobs, "trust": trust}
        if msg["update_objs"]:
            try:
                reply["updated"] = _protocol.dumps(list(iter_objects([args, kwargs,
                                                                      carried])))
            except DrymlError:
                raise
            except Exception as exc:  # noqa: BLE001
                raise _unsendable("the Objects it was given", "back to the caller",
                                  exc) from exc
        return reply
    except SystemExit:
        raise  # sys.exit() ends the worker, as it would a process: WorkerCrashedError
    except BaseException as exc:  # noqa: BLE001 - everything else goes back to the caller
        return error_reply(exc)


def error_reply(exc: BaseException) -> dict[str, Any]:
    """A reply carrying ``exc`` (pickled when it can be rebuilt) and its traceback text."""
    text = "".join(traceback.format_exception(exc))
    data, blobs, trust, why = _exception_payload(exc)
    return {"ok": False, "exc": data, "blobs": blobs, "trust": trust,
            "type": f"{type(exc).__module__}.{type(exc).__qualname__}", "message": str(exc),
            "module": type(exc).__module__, "traceback": text, "unsent": why}


def _exception_payload(exc: BaseException) -> tuple[bytes, list[bytes], list[str], str]:
    """``exc`` pickled so that the caller rebuilds it with its type, args and message, and
    why not (empty when it can be): by its own pickling where that gives it back as it is,
    else as class, args and attributes, without running its ``__init__`` again."""
    why = ""
    for by_state in (False, True):
        try:
            data, blobs, trust = _protocol.dumps(exc, exceptions_by_state=by_state)
            back = _protocol.loads(data, blobs, trust)
        except Exception as error:  # noqa: BLE001 - any failure: try the next way, then say
            why = f"{type(error).__name__}: {error}"
            continue
        if _same_exception(exc, back):
            return data, blobs, trust, ""
        why = f"rebuilt, it reads {type(back).__qualname__}: {back}"
    return b"", [], [], why


def _same_exception(exc: BaseException, back: Any) -> bool:
    """Whether ``back``, ``exc`` pickled and rebuilt, is the same exception: its type, and
    its args and attributes compared by value (an exception or a plain object among them
    compares by identity, and its repr in the message holds its address: a RuntimeError
    wrapping a ValueError was judged unsendable and came back as a DrymlError)."""
    if type(back) is not type(exc):
        return False
    try:
        return _same_value(exc, back)
    except Exception:  # noqa: BLE001 - a __str__, __eq__ or pickling that fails
        return False


def _same_value(a: Any, b: Any, depth: int = 0) -> bool:
    if type(a) is not type(b) or depth > 20:
        return False
    if isinstance(a, BaseException):
        return (_same_value(a.args, b.args, depth + 1)
                and _same_value(vars(a), vars(b), depth + 1))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same_value(x, y, depth + 1)
                                        for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_value(a[k], b[k], depth + 1) for k in a)
    with contextlib.suppress(Exception):
        if (a == b) is True:
            return True
    # no equality of its own (identity), or an array's: the same pickle is the same value
    return bool(pickle.dumps(a, protocol=5) == pickle.dumps(b, protocol=5))


def _rebuild_error(reply: dict[str, Any]) -> BaseException:
    """The worker's exception as the caller raises it.

    Rebuilt as itself when the top-level package of its class's module is already imported
    here. Otherwise (e.g. TensorFlow's ``InvalidArgumentError`` in a caller that never imported
    TensorFlow, as the main job's) it comes back as a :class:`DrymlError` naming its type:
    rebuilding it would import that framework in the caller, with its start-up time and log
    lines, and code that catches the class by name has imported its package already."""
    exc: BaseException | None = None
    module = reply.get("module")
    if reply["exc"] and module is not None and module.split(".")[0] not in sys.modules:
        exc = DrymlError(f"the call raised {reply['type']}: {reply['message']} (not rebuilt "
                         f"here: {module} is not imported in this process; the remote "
                         "traceback follows)")
    elif reply["exc"]:
        try:
            exc = _protocol.loads(reply["exc"], reply["blobs"], reply["trust"])
        except Exception:  # noqa: BLE001
            exc = None
    if not isinstance(exc, BaseException):
        why = f": {reply['unsent']}" if reply.get("unsent") else ""
        exc = DrymlError(
            f"the call raised {reply['type']}: {reply['message']} (the exception could not be "
            f"sent back{why}; to get it back as itself, keep only values that pickle in its "
            "args and attributes, or give its class a __reduce__ that rebuilds it; its "
            "traceback follows)")
    exc.__cause__ = RemoteTraceback(reply["traceback"])
    return exc


def apply_reply(reply: dict[str, Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                carried: list[Object] | None = None) -> Any:
    """The call's return value, or raise its exception; apply object updates in place.
    ``carried``: the Objects :func:`encode_call` found in the arguments. The call's warnings
    are issued here first (a filter that makes them errors raises before any update; for a
    call that raised, its own exception is raised, noting such a warning)."""
    if not reply["ok"]:
        exc = _rebuild_error(reply)
        try:
            _warnings.emit(reply.get("warnings", ()))
        except Warning as warning:  # a filter made it an error: the call's error comes first
            exc.add_note(f"the call also warned: {type(warning).__name__}: {warning}")
        raise exc
    _warnings.emit(reply.get("warnings", ()))
    originals: dict[str, Object] = {}
    dropped: list[str] = []
    if "updated" in reply:
        mine = list(iter_objects([args, kwargs, carried or []]))
        theirs = list(iter_objects(_protocol.loads(*reply["updated"])))
        originals = {o.dry_id: o for o in mine}
        for new in theirs:
            old = originals.get(new.dry_id)
            if old is not None and type(old) is type(new):
                dropped += _update(old, new, originals)
    if dropped:  # said once every update is made (a filter may make it an error)
        warnings.warn(
            f"{'; '.join(dropped)} came back from the worker without these attributes: "
            "attributes set on an object outside its saved state (its constructor and "
            "save_object_imp) do not survive a call that updates it (train() in a worker is "
            "one); keep such values in Repo metadata, or save them in save_object_imp",
            DrymlWarning, stacklevel=_warnings.user_stacklevel())
    try:
        result = _protocol.loads(reply["result"], reply["blobs"], reply["trust"])
    except DrymlError:
        raise
    except Exception as exc:  # noqa: BLE001 - a type whose pickle cannot rebuild it
        raise SerializationError(
            f"the call ran, but its result could not be rebuilt in the calling process "
            f"({type(exc).__name__}: {exc}): return plain values, numpy arrays or dryml "
            "Objects, or a type whose __reduce__ rebuilds it") from exc
    if originals and reply["blobs"]:  # blobs: the result holds Objects
        return _callers_own(result, originals)
    return result


def _callers_own(result: Any, originals: dict[str, Object]) -> Any:
    """``result`` with every Object that is one of the call's arguments (same ``dry_id`` and
    class) replaced by the caller's own object, in containers and in new Objects alike."""
    memo: dict[int, tuple[Any, Any]] = {}  # id -> (value, what it became): ids stay taken

    def own(value: Any) -> Any:
        if id(value) in memo:
            return memo[id(value)][1]
        found = value
        if isinstance(value, Object):
            mine = originals.get(value.dry_id)
            if mine is not None and type(mine) is type(value):
                value = mine
            else:  # a new Object: it may hold arguments
                memo[id(found)] = (found, value)
                for name, attr in list(value.__dict__.items()):
                    value.__dict__[name] = own(attr)
        elif isinstance(value, list):
            memo[id(found)] = (found, value)
            value[:] = [own(v) for v in value]
        elif isinstance(value, dict):
            memo[id(found)] = (found, value)
            for k, v in list(value.items()):
                value[k] = own(v)
        elif type(value) is tuple or (isinstance(value, tuple) and hasattr(value, "_fields")):
            parts = [own(v) for v in value]
            if any(new is not old for new, old in zip(parts, value, strict=True)):
                value = tuple(parts) if type(value) is tuple else type(value)(*parts)
        memo[id(found)] = (found, value)
        return value

    return own(result)


def _update(old: Object, new: Object, originals: dict[str, Object]) -> list[str]:
    """Give ``old`` the state of ``new`` in place (the constructor arguments stay ``old``'s;
    the call's arguments that the state holds are the caller's own objects); returns what
    it dropped (``"Counter 'c1': experiment"``), or nothing."""
    kept = {k: old.__dict__[k] for k in _KEEP_STATE if k in old.__dict__}
    state = _callers_own({k: v for k, v in new.__dict__.items() if k not in _KEEP_STATE},
                         originals)
    # Dropped, not kept: an attribute the state lacks may be a cache of the old state (a
    # traced network of the weights before training), which kept would answer with those.
    # Said, as a user's own attributes (model.experiment = "run-42") went without a word.
    dropped = sorted(k for k in old.__dict__
                     if k not in new.__dict__ and k not in _KEEP_STATE and not k.startswith("_"))
    old.__dict__.clear()
    old.__dict__.update(state)
    old.__dict__.update(kept)
    return [f"{type(old).__qualname__} {old.dry_id!r}: {', '.join(dropped)}"] if dropped else []
