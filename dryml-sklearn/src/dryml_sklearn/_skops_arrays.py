"""Large numpy arrays of a skops dump go to the ``.dry`` file as raw ``.npy`` members.

skops writes every array with ``np.save`` into a zip member, which is most of its cost for big
models (a 200-tree forest is a few hundred node arrays). skops dispatches state getters with a
``functools.singledispatch`` function and node loaders through ``NODE_TYPE_MAPPING``, its two
extension points: we register a getter for ``np.ndarray`` that, only while a dryml save is
running (a context variable holds the writer), hands large arrays to the dryml writer and
records a ``DrymlArrayNode``; at every other time it calls skops' own getter, so other users of
skops in the process see no change. ``DrymlArrayNode`` is a new loader name, so it changes
nothing for skops' own files either.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import json
import math
import zipfile
from collections.abc import Iterator
from typing import Any

import numpy as np
import skops

from dryml_sklearn._skops_import import defaults_unused, import_skops

import_skops()  # before any skops.io module: see dryml_sklearn._skops_import

from skops.io import _numpy as skops_numpy  # noqa: E402 - after import_skops()
from skops.io._audit import NODE_TYPE_MAPPING, Node, get_tree  # noqa: E402 - after import_skops()
from skops.io._protocol import PROTOCOL  # noqa: E402 - after import_skops()
from skops.io._utils import (  # noqa: E402 - after import_skops()
    LoadContext,
    SaveContext,
    TrustedTypes,
    _get_state,
    get_state,
    read_schema,
)

from dryml.errors import FormatError, SerializationError  # noqa: E402 - after import_skops()
from dryml.format import Limits  # noqa: E402 - after import_skops()

__all__ = ["LOADER", "MIN_MEMBER_BYTES", "DrymlArrayNode", "current_reader", "current_writer",
           "dumps", "load_tree", "reading", "saving", "writing", "zero_padding"]

LOADER = "DrymlArrayNode"
#: Arrays at least this big become their own member; smaller ones stay in skops' zip, where a
#: member's fixed cost (alignment, manifest entry) would outweigh the copy saved.
MIN_MEMBER_BYTES = 2048

_writer: contextvars.ContextVar[tuple[Any, dict[int, str]] | None] = contextvars.ContextVar(
    "dryml_sklearn_writer", default=None)
_reader: contextvars.ContextVar[Any] = contextvars.ContextVar("dryml_sklearn_reader",
                                                             default=None)
_saving: contextvars.ContextVar[bool] = contextvars.ContextVar("dryml_sklearn_saving",
                                                              default=False)


@contextlib.contextmanager
def writing(writer: Any) -> Iterator[dict[int, str]]:
    """Within this block, large arrays that skops meets go to ``writer`` (when it is not None);
    yields id -> member."""
    members: dict[int, str] = {}
    token = _writer.set(None if writer is None else (writer, members))
    saving_token = _saving.set(True)
    try:
        yield members
    finally:
        _saving.reset(saving_token)
        _writer.reset(token)


def saving() -> bool:
    """Whether a dryml save (with or without a writer) is running in this context."""
    return _saving.get()


@contextlib.contextmanager
def reading(reader: Any) -> Iterator[None]:
    """Within this block, ``DrymlArrayNode`` reads its member from ``reader``."""
    token = _reader.set(reader)
    try:
        yield
    finally:
        _reader.reset(token)


def current_writer() -> Any:
    """The dryml writer of the save running in this context, or None."""
    current = _writer.get()
    return None if current is None else current[0]


def current_reader() -> Any:
    """The dryml reader of the load running in this context (FormatError when none)."""
    reader = _reader.get()
    if reader is None:
        raise FormatError("dryml array members outside a .dry file")
    return reader


def zero_padding(array: np.ndarray) -> np.ndarray:
    """``array``, or a copy of it whose padding bytes are zero when its structured dtype has
    any (a tree's nodes: the bytes between fields are whatever the heap held)."""
    names = array.dtype.names
    if names is None:
        return array
    used = sum(array.dtype.fields[n][0].itemsize for n in names)  # type: ignore[index]
    if used == array.dtype.itemsize and all(array.dtype[n].names is None for n in names):
        return array
    out = np.zeros(array.shape, dtype=array.dtype)
    for name in names:
        field = array[name]
        out[name] = zero_padding(field) if field.dtype.names is not None else field
    return out


def ndarray_get_state(obj: Any, save_context: SaveContext) -> dict[str, Any]:
    """skops' ndarray getter, except that big plain arrays go to the active dryml writer (and
    object arrays of same-type estimators, e.g. boosting stages, become one batch node)."""
    from dryml_sklearn._skops_batch import batch_state

    current = _writer.get()
    if current is not None and type(obj) is np.ndarray and obj.dtype.hasobject and obj.size:
        state = batch_state(list(obj.ravel()), save_context, shape=obj.shape)
        if state is not None:
            return state
    if current is not None and type(obj) is np.ndarray and obj.dtype.names is not None:
        padded, obj = obj, zero_padding(obj)
        if obj is not padded:
            save_context.memoize(padded)  # keep the original's id reserved during this dump
    # structured arrays always become members: np.save into skops' zip copies records field
    # by field through a buffer whose padding bytes are uninitialised heap memory
    if (current is None or type(obj) is not np.ndarray or obj.dtype.hasobject
            or (obj.nbytes < MIN_MEMBER_BYTES and obj.dtype.names is None)):
        return skops_numpy.ndarray_get_state(obj, save_context)
    writer, members = current
    name = members.get(id(obj))
    if name is None:
        save_context.memoize(obj)  # keep it alive so its id is not reused during this dump
        name = members[id(obj)] = writer.add_array(obj)
    return {"__class__": "ndarray", "__module__": "numpy", "__loader__": LOADER,
            "member": name}


class DrymlArrayNode(Node):
    """A plain ``numpy.ndarray`` stored as a ``.npy`` member of the enclosing ``.dry`` file."""

    def __init__(self, state: dict[str, Any], load_context: LoadContext,
                 trusted: TrustedTypes | None = None) -> None:
        super().__init__(state, load_context, trusted)
        self.trusted = self._get_trusted(trusted, [np.ndarray])
        member = state.get("member")
        if not isinstance(member, str):
            raise FormatError(f"a scikit-learn array entry names no member ({member!r})")
        self.member = member
        self.children: dict[str, Any] = {}

    def _construct(self) -> np.ndarray:
        array = current_reader().get_array(self.member)
        if not isinstance(array, np.ndarray) or array.dtype.hasobject:  # np.memmap: mmap=True
            raise FormatError(f"member {self.member!r} is not a plain numeric array")
        return array


def dumps(value: Any, writer: Any) -> tuple[bytes, int]:
    """skops' zip for ``value`` with big arrays in ``writer``; returns (zip bytes, count).

    The body of ``skops.io.dumps`` except that the schema is written as compact JSON: skops
    indents it, which makes ``json`` fall back to its pure-Python encoder (the single biggest
    cost of saving a large forest).
    """
    from dryml_sklearn import _paths, _skops_functions, _skops_pandas, _skops_refuse

    _skops_pandas.install()
    _skops_functions.install()
    buffer = io.BytesIO()
    with writing(writer) as members, zipfile.ZipFile(buffer, "w") as zip_file:
        context = SaveContext(zip_file=zip_file)
        try:
            state = get_state(value, context)
        except _skops_refuse.Refused as exc:
            where = _paths.path_to(value, exc.value)
            raise SerializationError(f"{type(value).__qualname__}"
                                     f"{'.' + where if where else ''}: {exc.why}") from None
        context.clear_memo()
        state["protocol"] = context.protocol
        state["_skops_version"] = skops.__version__
        zip_file.writestr("schema.json", json.dumps(state, separators=(",", ":")))
    return buffer.getvalue(), len(members)


def load_tree(data: bytes) -> Node:
    """skops' node tree of a zip, nothing constructed or imported yet.

    The first half of ``skops.io.loads``: the caller audits the tree
    (:func:`dryml_sklearn._trust.untrusted`) and then calls ``construct()`` inside
    :func:`reading`. skops' own default lists are not consulted. The zip's entries are
    checked first (:func:`_check_entries`).
    """
    with zipfile.ZipFile(io.BytesIO(data)) as zip_file, defaults_unused():
        _check_entries(zip_file)
        schema, context = read_schema(zip_file)
        return get_tree(schema, context, trusted=[])


def _check_entries(zip_file: zipfile.ZipFile) -> None:
    """Every entry stored, not compressed (as :func:`dumps` and skops write them), and every
    ``.npy`` entry exactly as large as its header says: a 1.9 MB file whose deflated entry
    expanded into a 2 GB array loaded, and a header may claim more than the entry holds,
    which numpy allocates before it reads."""
    for info in zip_file.infolist():
        if info.compress_type != zipfile.ZIP_STORED or info.file_size != info.compress_size:
            raise FormatError(f"the scikit-learn data's zip entry {info.filename!r} is "
                              "compressed; dryml writes every entry stored (a compressed one "
                              "could expand without bound): the file was altered")
        if info.filename.endswith(".npy"):
            with zip_file.open(info) as entry:
                _check_npy(entry, info)
        elif info.filename.endswith(".npz"):  # a sparse matrix: scipy deflates its arrays
            with zipfile.ZipFile(io.BytesIO(zip_file.read(info))) as inner:
                _check_npz(inner, info.filename)


def _check_npz(inner: zipfile.ZipFile, name: str) -> None:
    """A sparse matrix's ``.npz``: its deflated arrays may expand only as far as a compressed
    member of the ``.dry`` file may (a 205 KB entry held 134 MB), and each
    holds exactly what its header declares."""
    limits = Limits()
    infos = inner.infolist()
    packed = sum(i.compress_size for i in infos)
    if sum(i.file_size for i in infos) > limits.allowed_raw(packed, limits.max_member_bytes):
        raise FormatError(f"the scikit-learn sparse matrix {name!r} would expand from {packed} "
                          f"to {sum(i.file_size for i in infos)} bytes, past the limits of "
                          "dryml.format.Limits: the file was altered")
    for info in infos:
        if not info.filename.endswith(".npy"):
            raise FormatError(f"the scikit-learn sparse matrix {name!r} holds "
                              f"{info.filename!r}, not an array")
        with inner.open(info) as entry:
            _check_npy(entry, info)


def _check_npy(entry: Any, info: zipfile.ZipInfo) -> None:
    fmt = np.lib.format
    try:
        version = fmt.read_magic(entry)
        shape, _, dtype = (fmt.read_array_header_1_0 if version == (1, 0)
                           else fmt.read_array_header_2_0)(entry, max_header_size=10_000)
    except (ValueError, TypeError, SyntaxError) as exc:
        raise FormatError(f"the scikit-learn array {info.filename!r} has a bad header: "
                          f"{exc}") from None
    declared = math.prod(shape) * dtype.itemsize
    if dtype.hasobject or declared != info.file_size - entry.tell():
        raise FormatError(f"the scikit-learn array {info.filename!r} declares {shape} of "
                          f"{dtype} but holds {info.file_size - entry.tell()} bytes: the file "
                          "was altered")


def _install() -> None:
    from dryml_sklearn import _birch, _skops_batch, _skops_dicts

    _get_state.register(np.ndarray)(ndarray_get_state)
    NODE_TYPE_MAPPING[(LOADER, PROTOCOL)] = DrymlArrayNode
    _skops_batch.install()
    _birch.install()
    _skops_dicts.install()


_install()
