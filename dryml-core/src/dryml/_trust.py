"""Which classes a file may name, decided before anything is imported.

An Object class resolves when it is a ``dryml.Object`` subclass that already exists in this
process, or whose module is trusted (by a plugin's ``dryml_trusted_modules`` or the caller's
``trust=``), in which case the module is imported and the class checked. A class passed as an
argument value resolves only from a trusted module, as an Object subclass, or from a short list
of inert builtin and numpy scalar types: a file must not be able to hand ``subprocess.Popen``
to an Object's ``__init__``.

What a file can make dryml *import* is narrower than what it may name (:meth:`TrustPolicy.
import_named`): a module already imported; exactly a module that a plugin declares (dryml's own
model and data modules, each backend's, the framework modules a backend trusts); a module under
one of the caller's own ``trust=`` entries; or, for a module under a declared one, only the
declared module itself (``sklearn.linear_model`` for ``sklearn.linear_model._logistic``), after
which the named module must have been loaded by it. Modules named ``__main__`` or that are test
code (``tests``, ``testing``, ``conftest``, ``test_*``) are never imported because a plugin
declared a module above them: importing ``dryml.cli.__main__`` runs the CLI, ``xgboost.testing``
unpickles caches. The caller's ``trust=`` entries are the caller's own decision: a module under
one is imported as named, so trust only your own packages.
"""

from __future__ import annotations

import builtins
import importlib
import inspect
import re
import sys
from collections.abc import Iterable
from types import ModuleType
from typing import TYPE_CHECKING, Any

from dryml import _registry
from dryml.errors import ClassNotFoundError, UntrustedClassError

if TYPE_CHECKING:
    from dryml._object import Object

__all__ = ["CORE_MODULES", "TrustPolicy", "class_path", "static_attribute"]

_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.<>]*$")
_MODULE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_MISSING = object()
#: Module name parts that are never imported because a file named them.
_NEVER_PARTS = frozenset({"__main__", "tests", "test", "testing", "conftest", "_testing"})
#: dryml-core's own modules that define Objects a file may name (imported on demand).
CORE_MODULES = ("dryml", "dryml.models", "dryml.data", "dryml.context", "dryml.repo")
_INERT_BUILTINS = frozenset({"int", "float", "str", "bool", "bytes", "complex"})
_HOW = (
    "If you trust this file, pass trust=[{module!r}] to load_object (or install the plugin "
    "that trusts it)."
)


def static_attribute(value: Any, qualname: str) -> Any | None:
    """``value.<qualname>`` (dotted) read without running any code, or None when a part is
    missing, a module, or a special attribute (``__name``) of anything but a module (whose
    namespace may define such names: ``builtins.__import__``). Attributes come from the
    namespaces themselves (``vars`` of a module, ``inspect.getattr_static`` of anything else):
    a module's ``__getattr__`` (PEP 562, as in ``dryml``, ``numpy``, ``torch`` and
    scikit-learn) imports submodules on demand, and a property or metaclass hook runs code of
    its own. Use it for every name a file, an index or a stored definition supplies; a name
    never walks into a module (a class path names its module: ``package.module:Class``)."""
    for part in qualname.split("."):
        if isinstance(value, ModuleType):
            value = vars(value).get(part)
        elif part.startswith("__"):
            return None
        else:
            value = inspect.getattr_static(value, part, None)
        if value is None or isinstance(value, ModuleType):
            return None
    return value


def class_path(cls: type) -> str:
    """``"module:QualName"`` of a class."""
    return f"{cls.__module__}:{cls.__qualname__}"


class TrustPolicy:
    """The caller's trusted module prefixes plus every plugin's.

    ``allow_code`` is the caller's explicit opt-in (``load_object(..., allow_code=True)``) for
    files whose content is itself code, such as a Keras ``Lambda`` layer: serializers that would
    run code from a file refuse unless it is set.
    """

    def __init__(self, trust: Iterable[str] = (), *, allow_code: bool = False) -> None:
        if isinstance(trust, str):
            trust = [trust]
        self.caller = tuple(trust)
        self.allow_code = bool(allow_code)

    def _declared(self) -> tuple[str, ...]:
        return (*CORE_MODULES, *_registry.trusted_modules())

    def _prefixes(self) -> tuple[str, ...]:
        return (*self._declared(), *self.caller)

    def module_trusted(self, module: str) -> bool:
        """Whether ``module`` is, or is inside, a trusted module (imports nothing)."""
        return any(module == p or module.startswith(p + ".") for p in self._prefixes())

    def import_named(self, module: str) -> ModuleType:
        """Import a module that a file named, only as the module docstring allows.

        Raises UntrustedClassError (having imported nothing for the named module) otherwise.
        """
        if not isinstance(module, str) or len(module) > 300 or not _MODULE.match(module):
            raise UntrustedClassError(f"{module!r} is not a module name")
        found = sys.modules.get(module)
        if found is not None:
            return found
        # The caller's own trust= entries are the caller's decision, test modules included.
        if any(module == p or module.startswith(p + ".") for p in self.caller):
            return _import(module)
        parts = module.split(".")
        if any(part in _NEVER_PARTS or part.startswith("test_") for part in parts):
            raise UntrustedClassError(
                f"the file names module {module!r}, which is a program entry point or test "
                "code; dryml never imports such a module because a file named it")
        declared = self._declared()
        if module in declared:
            return _import(module)
        for root in sorted((d for d in declared if module.startswith(d + ".")), key=len,
                           reverse=True):
            _import(root)
            found = sys.modules.get(module)
            if found is not None:
                return found
            break
        raise UntrustedClassError(
            f"the file names module {module!r}, which no plugin declares importable and which "
            "is not imported; nothing was imported. " + _HOW.format(module=module))

    def resolve_named_class(self, path: str, *, base: type | tuple[type, ...] | None = None
                            ) -> type:
        """The class a file names (``"module:Qual"`` or ``"module.Qual"``), from a trusted
        module, imported only through :meth:`import_named`; a subclass of ``base`` if given."""
        if not isinstance(path, str):
            raise UntrustedClassError(f"{path!r} is not a class path")
        if ":" not in path and "." in path:
            path = ":".join(path.rsplit(".", 1))
        module, qualname = self._split(path)
        if not self.module_trusted(module):
            raise UntrustedClassError(
                f"the file names the class {path!r}, and module {module!r} is not trusted; "
                "nothing was imported. " + _HOW.format(module=module))
        value = self._trusted_class(module, qualname, path)
        if base is not None and not issubclass(value, base):
            names = base if isinstance(base, tuple) else (base,)
            raise UntrustedClassError(
                f"{path!r} is not a subclass of {' or '.join(b.__qualname__ for b in names)}")
        return value

    @staticmethod
    def _split(path: Any) -> tuple[str, str]:
        if not isinstance(path, str) or not _PATH.match(path) or len(path) > 500:
            raise UntrustedClassError(f"{path!r} is not a class path of the form 'module:Class'")
        module, _, qualname = path.partition(":")
        return module, qualname

    def explain(self, path: str) -> tuple[bool, str]:
        """Whether an Object class path would resolve, and why (imports nothing)."""
        from dryml._object import class_registry

        try:
            module, _ = self._split(path)
        except UntrustedClassError as exc:
            return False, str(exc)
        if path in class_registry():
            return True, "an Object class already loaded in this process"
        if self.module_trusted(module):
            return True, "from a trusted module"
        if module in sys.modules:
            return False, (f"module {module!r} is imported but defines no dryml.Object "
                           f"subclass {path.partition(':')[2]!r}")
        return False, f"module {module!r} is not imported and not trusted"

    def resolve_object_class(self, path: Any) -> type[Object]:
        """The Object subclass a file names, or UntrustedClassError / ClassNotFoundError."""
        from dryml._object import Object, class_registry

        module, qualname = self._split(path)
        found = class_registry().get(path)
        if found is not None:
            return found
        if not self.module_trusted(module) and module not in sys.modules:
            raise UntrustedClassError(
                f"the file names the class {qualname!r} from module {module!r}, which is not "
                f"imported and not trusted; nothing was imported. " + _HOW.format(module=module)
            )
        value = self._lookup(module, qualname, path)
        if not (isinstance(value, type) and issubclass(value, Object)):
            raise UntrustedClassError(
                f"{path!r} is not a dryml.Object subclass; a .dry file may only name Objects"
            )
        return value

    def resolve_arg_class(self, path: Any) -> type:
        """A class passed as an argument value (see the module docstring for the rules)."""
        from dryml._object import class_registry

        module, qualname = self._split(path)
        found = class_registry().get(path)
        if found is not None:
            return found
        if module == "builtins" and qualname in _INERT_BUILTINS:
            return getattr(builtins, qualname)  # type: ignore[no-any-return]
        if module == "numpy" and "numpy" in sys.modules:
            value = self._lookup(module, qualname, path)
            if isinstance(value, type) and issubclass(value, sys.modules["numpy"].generic):
                return value
        if not self.module_trusted(module):
            raise UntrustedClassError(
                f"the file passes the class {path!r} as an argument, and module {module!r} is "
                f"not trusted; nothing was imported. " + _HOW.format(module=module)
            )
        return self._trusted_class(module, qualname, path)

    def _trusted_class(self, module: str, qualname: str, path: str) -> type:
        """The class at ``module:qualname``, defined in a trusted module."""
        value = self._lookup(module, qualname, path)
        if not isinstance(value, type):
            raise UntrustedClassError(f"{path!r} is not a class")
        if not self.module_trusted(value.__module__):  # a name re-exported from elsewhere
            raise UntrustedClassError(
                f"{path!r} is {value.__module__}.{value.__qualname__}, from a module that is "
                "not trusted; nothing was called. " + _HOW.format(module=value.__module__))
        return value

    def _lookup(self, module: str, qualname: str, path: str) -> Any:
        """Walk ``qualname`` from the module without running any code: attributes are read
        from the namespaces themselves (``vars``, ``inspect.getattr_static``), because a
        module's ``__getattr__`` (PEP 562, as in ``dryml``, ``numpy`` and ``torch``) imports
        submodules on demand, and a property or metaclass hook would run code of its own."""
        value: Any = self.import_named(module)
        for part in qualname.split("."):
            if part.startswith("__"):
                raise UntrustedClassError(f"{path!r} names a special attribute ({part!r})")
            found = (vars(value).get(part, _MISSING) if isinstance(value, ModuleType)
                     else inspect.getattr_static(value, part, _MISSING))
            if found is _MISSING:
                raise ClassNotFoundError(
                    f"module {module!r} defines no {qualname!r} (named in the file as "
                    f"{path!r}); was the class renamed or moved?")
            if isinstance(found, ModuleType):
                raise UntrustedClassError(
                    f"{path!r} walks into module {found.__name__!r}: a class path names its "
                    "class's own module ('package.module:Class'); nothing was imported")
            value = found
        return value


def _import(module: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        from dryml.errors import BackendUnavailableError

        raise BackendUnavailableError(
            f"the file needs module {module!r}, which cannot be imported ({exc}); install the "
            "package that provides it") from exc
