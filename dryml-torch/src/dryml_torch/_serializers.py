"""``store.put`` serializers of dryml-torch: tensors, module weights, optimizer state.

A module is saved as its ``state_dict()`` (parameters and persistent buffers), an optimizer
or LR scheduler as its ``state_dict()``; loading gives the state dict back, never a module:
the Object rebuilds its module from its constructor arguments and restores the weights with
torch's own idiom::

    def save_object_imp(self, store):
        store.put("net", self.net)          # an nn.Module
        store.put("opt", self.opt)          # an optimizer

    def load_object_imp(self, store):
        self.net.load_state_dict(store.get("net"))
        self.opt.load_state_dict(store.get("opt"))

Every tensor is a raw ``.npy`` member; everything else in a state dict is JSON. Tensors that
share memory come back sharing it, as after ``torch.load``: the same view (tied weights) is
stored once, and overlapping views of one storage (a slice of a buffer beside the buffer, a
transpose of a weight) are stored as one region that each is a view of. Nothing is pickled.
"""

from __future__ import annotations

import math
import weakref
from collections import OrderedDict
from typing import Any

import numpy as np

try:
    import torch
except ImportError as _exc:  # the backend is installed without its framework
    from dryml.errors import BackendUnavailableError

    raise BackendUnavailableError(
        f"dryml-torch needs torch, which cannot be imported ({_exc}): pip install torch"
    ) from _exc

from dryml._numpy_codec import SCALAR
from dryml.errors import FormatError, SerializationError
from dryml_torch._codecs import (
    _LIMITS,
    check_versions,
    decode_tensor,
    decode_view,
    encode_tensor,
    expands_too_far,
    extent,
    limits_of,
    note_versions,
    row_major,
    tensor_problem,
    view_meta,
)

__all__ = ["MODULE", "STATE_DICT", "TENSOR"]

_TAG = "~"


def _storage_key(t: torch.Tensor) -> tuple[Any, ...] | None:
    """Tensors with equal keys are views of the same bytes (tied weights)."""
    try:
        storage = t.untyped_storage()
    except (RuntimeError, NotImplementedError):
        return None
    if storage.nbytes() == 0:
        return None
    # a conjugate or negated view has the same bytes as its base and other values (otherwise
    # z.conj() in a state dict with z would be saved as z)
    return (t.device, storage.data_ptr(), t.storage_offset(), tuple(t.shape), t.stride(),
            t.dtype, t.is_conj(), t.is_neg())


def _region(t: torch.Tensor) -> tuple[Any, int, int] | None:
    """(storage, first, end) of the storage elements ``t`` spans, when it may share them."""
    if (t.is_quantized or t.is_conj() or t.is_neg() or t.numel() == 0
            or _storage_key(t) is None):
        return None
    first = t.storage_offset()
    return ((t.device, t.untyped_storage().data_ptr(), t.dtype), first,
            first + extent(t.shape, t.stride()))


def _shared_groups(tensors: list[torch.Tensor]) -> list[list[int]]:
    """Positions of tensors whose memory overlaps (the same storage), grouped."""
    spans: dict[Any, list[tuple[int, int, int]]] = {}
    for i, t in enumerate(tensors):
        region = _region(t)
        if region is not None:
            spans.setdefault(region[0], []).append((region[1], region[2], i))
    groups: list[list[int]] = []
    for items in spans.values():
        items.sort()
        end = -1
        for first, stop, i in items:
            if first < end:
                groups[-1].append(i)
            else:
                groups.append([i])
            end = max(end, stop) if first < end else stop
    return [g for g in groups if len(g) > 1]


class _TreeWriter:
    """Nested state (dicts, lists, tuples, numbers, str, None, tensors) as JSON + members."""

    def __init__(self, writer: Any) -> None:
        self.writer = writer
        self.seen: dict[tuple[Any, ...], int] = {}
        self.pending: list[torch.Tensor] = []
        #: how often the tree names each pending tensor (tied weights: more than once)
        self.refs: list[int] = []
        self.paths: list[str] = []

    def encode(self, value: Any, path: str) -> Any:  # noqa: PLR0911 - one branch per kind
        tp = type(value)
        if value is None or tp is bool or tp is int or tp is str:
            return value
        if tp is float:
            return value if math.isfinite(value) else {_TAG: "float", "value": repr(value)}
        if isinstance(value, torch.Tensor):
            return {_TAG: "tensor", "index": self._tensor(value, path)}
        if isinstance(value, np.generic) and not value.dtype.hasobject:
            # a hyperparameter such as np.float64(0.01): dtype and bytes, as dryml stores it
            return {_TAG: "numpy", "value": SCALAR.encode(value, None)}
        if tp is list:
            return [self.encode(v, f"{path}[{i}]") for i, v in enumerate(value)]
        if tp is tuple:
            return {_TAG: "tuple", "items": [self.encode(v, f"{path}[{i}]")
                                             for i, v in enumerate(value)]}
        if isinstance(value, dict):
            items = [[self.encode(k, f"{path}<key>"), self.encode(v, f"{path}[{k!r}]")]
                     for k, v in value.items()]
            if all(type(k) is str for k in value) and _TAG not in value:
                return dict(zip(value, (v for _, v in items), strict=True))
            return {_TAG: "dict", "items": items}
        raise SerializationError(
            f"{path}: a {tp.__module__}.{tp.__qualname__} in a torch state dict cannot be "
            "saved safely (only tensors, numbers, numpy scalars, str, None, lists, tuples "
            "and dicts); store it separately with store.put")

    def _tensor(self, t: torch.Tensor, path: str) -> int:
        key = _storage_key(t)
        if key is not None and key in self.seen:
            self.refs[self.seen[key]] += 1
            return self.seen[key]
        problem = tensor_problem(t)
        if problem is not None:
            raise SerializationError(f"{path}: {problem}")
        self.pending.append(t)
        self.paths.append(path)
        self.refs.append(1)
        index = len(self.pending) - 1
        if key is not None:
            self.seen[key] = index
        return index

    def finish(self) -> dict[str, Any]:
        """Write the tensors: overlapping views as views of one stored region each."""
        self._check_one_type_per_memory()
        metas: list[dict[str, Any] | None] = [None] * len(self.pending)
        bases: list[dict[str, Any]] = []
        for group in _shared_groups(self.pending):
            regions = [_region(self.pending[i]) for i in group]
            first = min(r[1] for r in regions if r is not None)
            stop = max(r[2] for r in regions if r is not None)
            anchor = self.pending[group[0]].detach()
            bases.append(encode_tensor(
                torch.as_strided(anchor, (stop - first,), (1,), first), self.writer))
            for i in group:
                t = self.pending[i]
                if not expands_too_far(t.numel(), t.element_size(),
                                       (stop - first) * t.element_size()):
                    metas[i] = view_meta(t, len(bases) - 1, t.storage_offset() - first)
                # else stored on its own, as its plain elements (a reader refuses the view)
        plain = self._within_budget(metas)
        tensors = [meta if meta is not None else encode_tensor(
                       t.contiguous() if i in plain else t, self.writer)
                   for i, (t, meta) in enumerate(zip(self.pending, metas, strict=True))]
        return {"tensors": tensors, **({"bases": bases} if bases else {})}

    def _check_one_type_per_memory(self) -> None:
        """Refuse tensors that view the same bytes as different dtypes (``f`` and
        ``f.view(torch.int32)``), as torch.save does: stored as two copies, a write through
        one would no longer show in the other."""
        spans: dict[Any, list[tuple[int, int, int]]] = {}
        for i, t in enumerate(self.pending):
            region = _region(t)
            if region is not None:
                size = t.element_size()
                spans.setdefault(region[0][:2], []).append(
                    (region[1] * size, region[2] * size, i))
        for items in spans.values():
            items.sort()
            reach: dict[Any, tuple[int, int]] = {}  # dtype -> (furthest stop, whose)
            for first, stop, j in items:
                b = self.pending[j]
                other = next(((end, i) for dtype, (end, i) in reach.items()
                              if dtype != b.dtype and end > first), None)
                if other is not None:
                    i, a = other[1], self.pending[other[1]]
                    raise SerializationError(
                        f"{self.paths[i]} ({a.dtype}) and {self.paths[j]} ({b.dtype}) view the "
                        "same memory as different types, which a file cannot keep shared "
                        "(torch.save refuses them too): store one and make the other from it "
                        "in load_object_imp (t.view(dtype))")
                if stop > reach.get(b.dtype, (-1, -1))[0]:
                    reach[b.dtype] = (stop, j)

    def _within_budget(self, metas: list[dict[str, Any] | None]) -> set[int]:
        """The tensors to store as plain elements so that the file's references to tensors
        whose strides repeat their bytes stay within what a reader allows (see
        :class:`_TreeReader`): a buffer and its expand, held by a module that 40 blocks
        share, was written as views that the reader then refused."""
        extra = {i: repeated_bytes(t) for i, t in enumerate(self.pending)
                 if metas[i] is not None or _keeps_strides(t)}
        left = _budget(self.writer, _LIMITS)
        spent = sum(extra[i] * self.refs[i] for i in extra)
        plain: set[int] = set()
        for i in sorted(extra, key=lambda i: -extra[i] * self.refs[i]):
            if spent <= left[0] or not extra[i]:
                break
            plain.add(i)
            metas[i] = None
            spent -= extra[i] * self.refs[i]
        left[0] -= spent
        return plain


class _TreeReader:
    """Reads what :class:`_TreeWriter` wrote; malformed data raises FormatError.

    ``extra``: for each tensor, the bytes it stands for beyond the storage elements its
    strides span (a row repeated); every reference to it in the tree spends that much of
    ``left``, the file's :attr:`~dryml.format.Limits.max_beyond_ratio` (shared by its entries,
    as by its compressed members). A writer refers to one tensor several times (tied
    weights, no extra), but a file that named a 16 MiB view of 8 stored bytes in 400
    optimizer state entries made ``load_state_dict`` copy each: 1.7 GB from 1.9 KB.
    """

    def __init__(self, tensors: list[torch.Tensor], extra: list[int] | None = None,
                 left: list[int] | None = None) -> None:
        self.tensors = tensors
        self.extra = extra or [0] * len(tensors)
        self.left = left if left is not None else [0]

    def decode(self, data: Any) -> Any:
        tp = type(data)
        if data is None or tp in (bool, int, str, float):
            return data
        if tp is list:
            return [self.decode(v) for v in data]
        if tp is not dict:
            raise FormatError(f"unexpected {tp.__name__} in a torch state dict")
        kind = data.get(_TAG)
        if kind is None:
            return {k: self.decode(v) for k, v in data.items()}
        if kind == "float" and data.get("value") in ("nan", "inf", "-inf"):
            return float(data["value"])
        if kind == "numpy":
            try:
                return SCALAR.decode(data.get("value"), None)
            except ValueError as exc:  # bad base64
                raise FormatError(f"bad numpy scalar in a torch state dict: {exc}") from None
        if kind == "tensor" and type(data.get("index")) is int and 0 <= data["index"] < len(
                self.tensors):
            extra = self.extra[data["index"]]
            if extra:
                self.left[0] -= extra
                if self.left[0] < 0:
                    raise FormatError(
                        "the torch state refers to tensors whose strides repeat their stored "
                        "bytes more than dryml.format.Limits allows a file (each reference "
                        "would become a copy of its own when loaded): the file was altered, or "
                        "load it with load_object(path, limits=Limits(max_beyond_ratio=...))")
            return self.tensors[data["index"]]
        if kind == "tuple" and type(data.get("items")) is list:
            return tuple(self.decode(v) for v in data["items"])
        if kind == "dict" and type(data.get("items")) is list:
            out = {}
            for pair in data["items"]:
                if type(pair) is not list or len(pair) != 2:
                    raise FormatError("a torch state dict entry must be a [key, value] pair")
                out[self.decode(pair[0])] = self.decode(pair[1])
            return out
        raise FormatError(f"malformed {kind!r} entry in a torch state dict")


def _dump_tree(value: Any, writer: Any) -> dict[str, Any]:
    note_versions(writer)
    tree = _TreeWriter(writer)
    data = tree.encode(value, "")
    return {"tree": data, **tree.finish()}


def _load_tree(meta: Any, reader: Any) -> Any:
    if not isinstance(meta, dict) or type(meta.get("tensors")) is not list:
        raise FormatError("a torch state entry must hold a 'tensors' list")
    if type(meta.get("bases", [])) is not list:
        raise FormatError("a torch state entry's 'bases' must be a list")
    check_versions(reader)
    bases = [decode_tensor(m, reader) for m in meta.get("bases", [])]
    if any(b.dim() != 1 or b.is_quantized for b in bases):
        raise FormatError("a shared torch storage region must be a flat tensor")
    limits = limits_of(reader)
    views = [isinstance(m, dict) and "base" in m for m in meta["tensors"]]
    tensors = [decode_view(m, bases, limits) if view else decode_tensor(m, reader)
               for m, view in zip(meta["tensors"], views, strict=True)]
    # what each tensor stands for beyond the elements its strides span (a view, or a tensor
    # stored with its strides, that repeats one row), and what the entry holds
    extra = [repeated_bytes(t) for t in tensors]
    return _TreeReader(tensors, extra, _budget(reader, limits)).decode(meta.get("tree"))


#: what is left of Limits.max_beyond_ratio for repeated rows, per file being read or written
_LEFT: weakref.WeakKeyDictionary[Any, list[int]] = weakref.WeakKeyDictionary()


def _budget(handle: Any, limits: Any) -> list[int]:
    """The one ``[bytes left]`` every torch entry of one file (its reader or writer) spends
    from; an entry of its own where ``handle`` cannot be tracked."""
    try:
        return _LEFT.setdefault(handle, [int(limits.max_beyond_ratio)])
    except TypeError:
        return [int(limits.max_beyond_ratio)]


def repeated_bytes(t: torch.Tensor) -> int:
    """The bytes ``t`` stands for beyond the storage elements its strides span (an expanded
    row repeated); 0 for a dense tensor, a slice, a quantized one."""
    if t.is_quantized:
        return 0
    return max(0, t.numel() - extent(t.shape, t.stride())) * t.element_size()


def _span_bytes(t: torch.Tensor) -> int:
    """The bytes of the storage region ``t``'s elements span (what a file stores for it)."""
    if t.is_quantized:
        return int(t.numel() * t.element_size())
    return extent(t.shape, t.stride()) * t.element_size()


def _keeps_strides(t: torch.Tensor) -> bool:
    """Whether :func:`encode_tensor` stores ``t`` with its strides (see ``_layout``)."""
    if t.is_quantized or list(t.stride()) == row_major(t.shape):
        return False
    return not expands_too_far(t.numel(), t.element_size(), _span_bytes(t))


class TensorSerializer:
    """``store.put(name, tensor)``: the tensor back on CPU with its dtype and shape."""

    def dump(self, value: torch.Tensor, writer: Any) -> Any:
        try:
            return encode_tensor(value, writer)
        except ValueError as exc:
            raise SerializationError(str(exc)) from None

    def load(self, meta: Any, reader: Any) -> torch.Tensor:
        return decode_tensor(meta, reader)


class ModuleSerializer:
    """``store.put(name, module)``: its ``state_dict()``; ``store.get`` returns that dict.

    Restore with ``module.load_state_dict(store.get(name))``. The dict's ``_metadata`` (the
    per-submodule versions ``load_state_dict`` consults) is kept.
    """

    def dump(self, value: torch.nn.Module, writer: Any) -> Any:
        state = value.state_dict()
        meta = _dump_tree(dict(state), writer)
        meta["module"] = f"{type(value).__module__}:{type(value).__qualname__}"
        meta["metadata"] = _metadata_json(getattr(state, "_metadata", None))
        return meta

    def load(self, meta: Any, reader: Any) -> OrderedDict[str, Any]:
        tree = _load_tree(meta, reader)
        if not isinstance(tree, dict):
            raise FormatError("a module state dict must be a dict")
        state: OrderedDict[str, Any] = OrderedDict(tree)
        metadata = meta.get("metadata")
        if metadata is not None:
            if not isinstance(metadata, dict) or not all(
                    isinstance(entry, dict) and all(_plain_json(v) for v in entry.values())
                    for entry in metadata.values()):
                raise FormatError("a module state dict's metadata must map str to objects of "
                                  f"plain JSON values, nested at most {_METADATA_DEPTH} deep")
            state._metadata = OrderedDict(metadata)  # type: ignore[attr-defined]
        return state


#: How deeply a ``_metadata`` value may nest dicts and lists (old ``spectral_norm`` keeps
#: ``{"spectral_norm": {"weight.version": 1}}``: one level).
_METADATA_DEPTH = 4


def _plain_json(value: Any, depth: int = _METADATA_DEPTH) -> bool:
    """Whether ``value`` is plain JSON (None, bool, int, finite float, str, and lists and
    str-keyed dicts of them nested at most ``depth`` deep)."""
    tp = type(value)
    if value is None or tp in (bool, int, str):
        return True
    if tp is float:
        return math.isfinite(value)
    if depth == 0:
        return False
    if tp is list:
        return all(_plain_json(v, depth - 1) for v in value)
    return tp is dict and all(type(k) is str and _plain_json(v, depth - 1)
                              for k, v in value.items())


def _metadata_json(metadata: Any) -> dict[str, Any] | None:
    """A state dict's ``_metadata`` as JSON: the plain JSON values of each entry."""
    if metadata is None:
        return None
    out: dict[str, Any] = {}
    dropped: list[str] = []
    for prefix, entry in metadata.items():
        out[str(prefix)] = {str(k): v for k, v in dict(entry).items() if _plain_json(v)}
        dropped += [f"{prefix or '<root>'}.{k}" for k, v in dict(entry).items()
                    if not _plain_json(v)]
    if dropped:  # load_state_dict's hooks read these (a version): said, not dropped silently
        import warnings

        from dryml.errors import DrymlWarning

        warnings.warn(f"a module's state dict metadata holds values that are not plain JSON, "
                      f"which are not saved: {', '.join(dropped[:5])}"
                      f"{' ...' if len(dropped) > 5 else ''}; a load_state_dict hook that "
                      "reads them will not find them", DrymlWarning, stacklevel=2)
    return out


class StateDictSerializer:
    """Optimizers and LR schedulers: ``store.put`` saves ``state_dict()``, ``get`` returns it.

    Restore with ``optimizer.load_state_dict(store.get(name))``; the state's tensors come back
    on CPU and torch moves them to the parameters' device.
    """

    def dump(self, value: Any, writer: Any) -> Any:
        meta = _dump_tree(value.state_dict(), writer)
        meta["class"] = f"{type(value).__module__}:{type(value).__qualname__}"
        return meta

    def load(self, meta: Any, reader: Any) -> Any:
        return _load_tree(meta, reader)


TENSOR = TensorSerializer()
MODULE = ModuleSerializer()
STATE_DICT = StateDictSerializer()
