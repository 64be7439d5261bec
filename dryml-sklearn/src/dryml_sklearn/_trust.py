"""Which objects a scikit-learn entry of a ``.dry`` file may hold: rules, not a list.

skops describes a fitted estimator as a tree of nodes, each naming a type (``module.Class``) or a
callable (``module.function``). Before anything is constructed, :func:`untrusted` walks that
tree and sorts every name into one of three kinds, each with its own rule:

* **objects** (an estimator, a loss, a kernel, a CV splitter, a dtype, a sparse matrix...):
  rebuilt from their stored state, or by calling their class with stored arguments. Trusted by
  default when the class is a Python class defined by scikit-learn (outside its tests,
  ``externals``, ``experimental``, ``callback`` and build helpers); a compiled scikit-learn
  class only by name and loader (:func:`_rebuilt_as_saved`): skops' losses through its
  ``LossNode`` with plain parameters, and the classes dryml-sklearn checks after loading
  (:data:`dryml_sklearn._checks.EXTRA_TRUSTED`: decision trees, neighbour trees,
  parameter-free distance metrics) rebuilt from their state; numpy's data types
  (``dtype``, scalar types, ``ndarray``, masked arrays, random generators); scipy's sparse
  matrices and arrays and B-splines (checked after loading); Python's plain data types.
* **callables** (a function or a class stored as a value, e.g. ``FunctionTransformer(func=...)``,
  ``SelectKBest(score_func=...)``, a bound method, an ``operator`` getter): called later with
  the caller's data, so trusted narrowly: numpy and scipy ufuncs; Python functions defined in
  scikit-learn's estimator and metrics packages (not ``sklearn.utils``, ``sklearn.datasets``,
  ``sklearn.model_selection``, ``sklearn.inspection``, ``sklearn.base``, ``sklearn.callback``,
  the tree exporters or the package root, which read and write files, start workers or change
  global state); the functions scikit-learn's own estimators in the same file use as parameter
  defaults (``FeatureAgglomeration``'s ``numpy.mean``); array-API standard functions of the
  vendored ``array_api_compat`` numpy namespace; scikit-learn and numpy classes trusted as
  objects above (calling them builds an estimator or a scalar). Nothing from ``builtins``
  (``eval``, ``exec``, ``open``, ``getattr``...), ``operator`` or a bound method is trusted.
* **containers** (``functools.partial``): trusted; their function and arguments are audited as
  their own nodes.

A caller's ``trust=`` entry widens this: a module prefix (``"mypkg"``) or exact name
(``"mypkg.models.MyEstimator"``) trusts *objects* of those classes (their module may then be
imported, and the class is called with stored arguments); a *callable* is trusted only
by its exact name (``"mypkg.features.log_scale"``, ``"builtins.abs"``): a module entry never
makes a function of that module loadable.

Names are resolved without importing anything a file chose: a module already imported is looked
up; otherwise only the top-level subpackage of scikit-learn, numpy or scipy that contains it is
imported (computed from the installed package, tests and vendored code excluded), and the name
must then be loaded. Anything else is reported untrusted, and nothing was constructed.
"""

from __future__ import annotations

import builtins
import importlib
import inspect
import pkgutil
import re
import sys
import types
from collections.abc import Iterable
from functools import cache
from typing import Any

import numpy as np

from dryml.backend import static_attribute
from dryml_sklearn import _checks

__all__ = ["Finding", "unloadable", "untrusted", "walk"]

_ROOTS = ("sklearn", "numpy", "scipy")
#: Module name parts never imported or trusted.
_EXCLUDED_PARTS = frozenset({
    "tests", "testing", "_testing", "conftest", "externals", "experimental", "_build_utils",
    "__check_build", "__main__", "estimator_checks", "f2py", "distutils", "_distributor_init",
    "callback",  # scikit-learn's callbacks may start a manager process
})
#: scikit-learn packages whose functions are not pure computations on their arguments: data
#: set loaders and writers, configuration, discovery, parallel/caching helpers, model selection
#: routines that fit and spawn workers, exporters that write files, callbacks that start
#: processes.
_IMPURE_FUNCTION_PACKAGES = ("sklearn.utils", "sklearn.datasets", "sklearn._config",
                             "sklearn.model_selection", "sklearn.inspection", "sklearn.base",
                             "sklearn.tree._export", "sklearn.callback")
_ARRAY_API = re.compile(r"^(sklearn\.externals|scipy\._lib)\.array_api_compat\."
                        r"(numpy|common)\._aliases$")
_PLAIN_BUILTINS = frozenset({
    "builtins.int", "builtins.float", "builtins.str", "builtins.bool", "builtins.complex",
    "builtins.bytes", "builtins.bytearray", "builtins.list", "builtins.tuple", "builtins.set",
    "builtins.frozenset", "builtins.dict", "builtins.slice", "builtins.NoneType",
    "collections.OrderedDict", "collections.defaultdict",
})
_CONTAINERS = frozenset({"functools.partial"})
#: What skops writes as an object but cannot rebuild, whatever the trust (pandas' NA singleton).
_UNLOADABLE = {"NAType": "pandas.NA, which no file can rebuild, trusted or not: fit with "
                         "missing_values=np.nan instead and save again"}
_COMPILED = "a compiled scikit-learn class that dryml-sklearn does not check"
_ALLOCATES = ("called with arguments from the file, which can make it allocate any amount of "
              "memory")


class Finding:
    """One untrusted name and why (``kind`` is ``"object"`` or ``"callable"``); ``trustable``
    is False for what no ``trust=`` can make loadable."""

    def __init__(self, name: str, kind: str, why: str, trustable: bool = True) -> None:
        self.name, self.kind, self.why, self.trustable = name, kind, why, trustable

    def __repr__(self) -> str:
        return f"Finding({self.name!r}, {self.kind!r}, {self.why!r})"


def _excluded(module: str) -> bool:
    return any(part in _EXCLUDED_PARTS for part in module.split("."))


def unloadable(tree: Any) -> tuple[str, str] | None:
    """A name in the skops ``tree`` (as a save wrote it) that no load could find: anything of
    ``__main__`` or a test module (loads never import those), with why; None when there is
    none. (Functions are checked as they are written: :mod:`dryml_sklearn._skops_functions`.)"""
    for node, _ in walk(tree):
        if node.module_name is None or node.class_name is None:
            continue
        name, module, _ = _name(node)
        if _excluded(module):
            return name, f"its module {module!r} is never imported by a load"
    return None


@cache
def _importable(root: str) -> frozenset[str]:
    """The top-level subpackages of ``root`` that a file may make dryml import."""
    package = sys.modules.get(root)
    if package is None:
        return frozenset()
    return frozenset(f"{root}.{info.name}" for info in pkgutil.iter_modules(package.__path__)
                     if info.name not in _EXCLUDED_PARTS)


def _resolve(module: str, qualname: str) -> Any:
    """The object ``module.qualname`` names, importing at most one declared subpackage;
    None when it cannot be found that way."""
    root = module.split(".")[0]
    if _excluded(module) or not re.fullmatch(r"[A-Za-z_][\w.]*", module) or any(
            part.startswith("__") for part in qualname.split(".")[1:]):
        return None  # a dunder path (``f.__globals__``) reaches beyond the module
    if module not in sys.modules:
        if root not in _ROOTS or root not in sys.modules:
            return None
        head = ".".join(module.split(".")[:2])
        if head not in _importable(root):
            return None
        try:
            importlib.import_module(head)
        except ImportError:
            return None
        if module not in sys.modules:
            return None
    return static_attribute(sys.modules[module], qualname)


def _defined_in(obj: Any, root: str) -> bool:
    module = getattr(obj, "__module__", None) or ""
    return (module == root or module.startswith(root + ".")) and not _excluded(module)


def _compiled(cls: type) -> bool:
    module = sys.modules.get(cls.__module__)
    origin = getattr(module, "__file__", None) or ""
    return not origin.endswith(".py")


def _object_ok(cls: Any, name: str) -> str | None:
    """None when instances of ``cls`` are trusted by default, else why not."""
    if name in _PLAIN_BUILTINS or name in _CONTAINERS:
        return None
    if not isinstance(cls, type):
        return "it is not a class"
    if name in _checks.EXTRA_TRUSTED:
        return None
    if _defined_in(cls, "sklearn"):
        if _compiled(cls):
            return _COMPILED
        return None
    if _defined_in(cls, "numpy"):
        if issubclass(cls, (np.dtype, np.generic, np.random.RandomState, np.random.Generator,
                            np.random.BitGenerator, np.random.SeedSequence)) or cls in (
                np.ndarray, np.ma.MaskedArray):
            return None
        return "not one of numpy's data types"
    if _defined_in(cls, "scipy"):
        import scipy.interpolate
        import scipy.sparse

        if issubclass(cls, (scipy.sparse.spmatrix, scipy.sparse.sparray,
                            scipy.interpolate.BSpline)):
            return None
        return "not a scipy sparse matrix or spline"
    return "not defined by scikit-learn, numpy or scipy"


def _callable_ok(obj: Any, name: str, defaults: set[int]) -> str | None:
    """None when the callable ``obj`` is trusted by default, else why not."""
    if name in _checks.EXTRA_TRUSTED or name in _PLAIN_BUILTINS or id(obj) in defaults:
        return None
    if isinstance(obj, np.ufunc) or type(obj).__name__ == "ufunc":
        return None
    module = getattr(obj, "__module__", None) or ""
    if isinstance(obj, type):
        ok = _object_ok(obj, name) is None and not name.startswith(("builtins.", "scipy."))
        return None if ok and (_defined_in(obj, "sklearn") or issubclass(
            obj, (np.generic, np.dtype))) else "a class called with the caller's data"
    if isinstance(obj, types.FunctionType):
        if _ARRAY_API.match(module):
            return None
        impure = module == "sklearn" or any(
            module == p or module.startswith(p + ".") for p in _IMPURE_FUNCTION_PACKAGES)
        if _defined_in(obj, "sklearn") and not impure:
            return None
    return "a function called with the caller's data"


def _caller_trusts(name: str, kind: str, trust: tuple[str, ...]) -> bool:
    if kind == "callable":
        return name in trust
    return any(name == p or name.startswith(p + ".") for p in trust)


def walk(root: Any) -> Iterable[tuple[Any, str]]:
    """(node, kind) for every node of a skops tree, kind ``"object"`` or ``"callable"``."""
    from skops.io import _general
    from skops.io._audit import Node
    from skops.io._general import FunctionNode, MethodNode, OperatorFuncNode, TypeNode
    from skops.io._sklearn import ReduceNode

    # a class skops calls with arguments from the file (its own loader for objects whose
    # __reduce__ is a call of their class; absent from older skops)
    from_reduce = getattr(_general, "ConstructorFromReduceNode", ())
    seen: set[int] = set()
    stack: list[tuple[Any, str]] = [(root, "object")]
    while stack:
        node, kind = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        called = isinstance(node, TypeNode) and kind != "constructor"
        if called or isinstance(node, (FunctionNode, MethodNode, OperatorFuncNode)):
            kind = "callable"
        elif from_reduce and isinstance(node, from_reduce):
            kind = "constructor"
        yield node, kind
        children = getattr(node, "children", {}) or {}
        for key, child in children.items():
            items = child if isinstance(child, list) else (
                list(child.values()) if isinstance(child, dict) else [child])
            for item in items:
                if isinstance(item, Node):
                    nested = "constructor" if (isinstance(node, ReduceNode)
                                               and key == "constructor") else "object"
                    stack.append((item, nested))


#: dryml's batches (an ensemble's members) and their items: of the compiled classes, they
#: rebuild decision-tree storage only.
_TREE_LOADERS = frozenset({"DrymlBatchNode", "_ItemNode"})
#: skops loaders that call the class a file names with the node's items (``cls(items)``):
#: the class must be the container the loader builds (a ``str`` of a list holding itself
#: many times over took gigabytes; ``numpy.ndarray([30000, 30000])`` allocated its shape).
_CONTAINER_LOADERS: dict[str, tuple[type, ...]] = {
    "ListNode": (list,), "SetNode": (set, frozenset), "TupleNode": (tuple,)}
#: What a compiled loss's arguments and state may be made of: plain values (its parameters).
_PARAMETER_NODES = frozenset({"JsonNode", "TupleNode", "ListNode", "DictNode"})


@cache
def _losses() -> frozenset[str]:
    """The compiled losses skops rebuilds by calling them (its ``LossNode``): parameters
    only, a float at most."""
    from skops.io._sklearn import ALLOWED_LOSSES
    from skops.io._utils import get_module

    return frozenset(f"{get_module(cls)}.{cls.__name__}" for cls in ALLOWED_LOSSES)


def _rebuilt_as_saved(node: Any, name: str, compiled: bool, constructor: bool) -> bool:
    """Whether a scikit-learn class is rebuilt the way scikit-learn's own files rebuild it.

    skops lets a file choose how a class is rebuilt, by calling it with arguments from the
    file included; scikit-learn's files call only its compiled losses (``LossNode``, with a
    parameter) and decision-tree storage (``TreeNode``). Compiled classes read their state
    without bounds checks, so each is trusted by name as well: the ones dryml-sklearn checks
    (trees, neighbour trees, metrics) rebuilt as saved, skops' losses through its
    ``LossNode`` with plain values; every other one is refused. (A state of ``()`` crashed ~50
    of them while loading, ``UnionFind(10**8)`` called with a file's number took gigabytes,
    and a ``Gini`` criterion called as a loss read past its array.)"""
    loader = type(node).__name__
    if constructor and loader == "TypeNode":
        # the class a TreeNode (Tree) or LossNode (the node's own, checked with it) calls
        return name == _checks.TREE or name in _losses()
    if loader == "LossNode":
        return name in _losses() and all(
            child is node or child is node.children.get("constructor")
            or (type(child).__name__ in _PARAMETER_NODES and child.module_name == "builtins")
            for child, _ in walk(node))
    if loader == "ConstructorFromReduceNode":
        return False
    if loader == "TreeNode":  # it builds a Tree, whatever the file names
        return name == _checks.TREE
    if loader in _TREE_LOADERS:
        return not compiled or name == _checks.TREE
    # the other compiled classes dryml-sklearn checks: their state set on an instance made
    # without arguments
    return not compiled or (name in _checks.EXTRA_TRUSTED and loader == "ObjectNode")


def _name(node: Any) -> tuple[str, str, str]:
    """(full name, module, qualname) a node asks for."""
    from skops.io._general import MethodNode

    if isinstance(node, MethodNode):
        return (f"{node.obj.module_name}.{node.obj.class_name}.{node.func}",
                node.obj.module_name, f"{node.obj.class_name}.{node.func}")
    module, qualname = str(node.module_name), str(node.class_name)
    return f"{module}.{qualname}", module, qualname


def _allocates(module: str, qualname: str) -> bool:
    """Whether calling this class with small arguments can allocate without bound: bytes and
    bytearray (of a length), numpy arrays (of a shape) and scipy's classes (a sparse matrix of
    a shape). skops calls other plain types (range, frozenset...) with their stored values."""
    if module == "builtins":
        return qualname in ("bytes", "bytearray")
    return module.split(".")[0] in ("numpy", "scipy") and not _numpy_scalar(module, qualname)


def _numpy_scalar(module: str, qualname: str) -> bool:
    value = _resolve(module, qualname) if module.split(".")[0] == "numpy" else None
    return isinstance(value, type) and issubclass(value, (np.generic, np.dtype))


def _defaults_of(classes: list[Any]) -> set[int]:
    """ids of the callables scikit-learn estimators among ``classes`` use as defaults."""
    out: set[int] = set()
    for cls in classes:
        try:
            params = inspect.signature(cls).parameters.values()
        except (TypeError, ValueError):
            continue
        out.update(id(p.default) for p in params if callable(p.default)
                   and not isinstance(p.default, type))
    return out


def untrusted(tree: Any, trust: Iterable[str] = ()) -> list[Finding]:
    """Every name in the skops ``tree`` that is not trusted (see the module docstring)."""
    from skops.io._general import MethodNode, OperatorFuncNode

    caller = tuple(trust)
    findings: dict[str, Finding] = {}
    pending: list[tuple[str, Any, str]] = []
    estimators: list[Any] = []
    for node, kind in walk(tree):
        if node.module_name is None or node.class_name is None:
            continue
        name, module, qualname = _name(node)
        if name in findings:
            continue
        constructor = kind == "constructor"
        if constructor:
            kind = "object"
        container = _CONTAINER_LOADERS.get(type(node).__name__)
        if container is not None:
            cls = getattr(builtins, qualname, None) if module == "builtins" else _resolve(
                module, qualname)
            if not (isinstance(cls, type) and issubclass(cls, container)):
                findings[name] = Finding(name, kind, f"a {type(node).__name__} calls it with "
                                         "the file's items, and it is not that container")
                continue
        if constructor and _allocates(module, qualname) and not _caller_trusts(
                name, kind, caller):
            # bytearray(3_000_000_000), ndarray((40000, 40000)) and csr_matrix((3e9, 1))
            # can be built from a few bytes of arguments (skops writes these with loaders of
            # their own, never as such calls)
            findings[name] = Finding(name, kind, _ALLOCATES)
            continue
        if isinstance(node, (MethodNode, OperatorFuncNode)):
            if not _caller_trusts(name, "callable", caller):
                findings[name] = Finding(name, kind, "a bound method or operator getter")
            continue
        if kind == "object" and (name in _PLAIN_BUILTINS or name in _CONTAINERS):
            continue
        if qualname in _UNLOADABLE and module.split(".")[0] == "pandas":
            findings[name] = Finding(name, kind, _UNLOADABLE[qualname], trustable=False)
            continue
        if _caller_trusts(name, kind, caller):
            value = _resolve_for_caller(module, qualname)
            if value is None:
                findings[name] = Finding(name, kind, "trusted, but it cannot be found (test "
                                         "and __main__ modules are never imported)")
            elif kind == "object" and not isinstance(value, type):
                findings[name] = Finding(name, kind, "it is not a class")
            continue
        value = _resolve(module, qualname)
        if value is None:
            findings[name] = Finding(name, kind, "not found without importing other modules")
            continue
        if constructor and isinstance(value, type) and _allocates(value.__module__,
                                                                   value.__qualname__):
            # the same, named through a module that imports it
            # (sklearn.manifold._locally_linear.lil_array)
            findings[name] = Finding(name, kind, _ALLOCATES)
            continue
        if kind == "object":
            why = _object_ok(value, name)
            if why in (None, _COMPILED) and isinstance(value, type) and _defined_in(
                    value, "sklearn"):
                compiled = _compiled(value)
                if _rebuilt_as_saved(node, name, compiled, constructor):
                    why = None
                elif compiled and name not in _checks.EXTRA_TRUSTED and name not in _losses():
                    why = _COMPILED
                else:
                    why = (f"rebuilt by skops' {type(node).__name__}, as scikit-learn's own "
                           "files never rebuild it")
            if why is not None:
                findings[name] = Finding(name, kind, why)
            elif isinstance(value, type) and _defined_in(value, "sklearn"):
                estimators.append(value)
        else:
            pending.append((name, value, kind))
    defaults = _defaults_of(estimators)
    for name, value, kind in pending:
        why = _callable_ok(value, name, defaults)
        if why is not None and name not in findings:
            findings[name] = Finding(name, kind, why)
    return sorted(findings.values(), key=lambda f: f.name)


def _resolve_for_caller(module: str, qualname: str) -> Any:
    """A caller-trusted name: its module may be imported (the caller trusts it)."""
    if _excluded(module) or not re.fullmatch(r"[A-Za-z_][\w.]*", module) or any(
            part.startswith("__") for part in qualname.split(".")[1:]):
        return None
    try:
        return static_attribute(importlib.import_module(module), qualname)
    except ImportError:
        return None
