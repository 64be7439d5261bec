"""Which classes a file may name, decided before anything is imported.

An Object class resolves when it is a ``dryml.Object`` subclass that already exists in this
process, or whose module is trusted (by a plugin's ``dryml_trusted_modules`` or the caller's
``trust=``), in which case the module is imported and the class checked. A class passed as an
argument value resolves only from a trusted module, as an Object subclass, or from a short list
of inert builtin and numpy scalar types: a file must not be able to hand ``subprocess.Popen``
to an Object's ``__init__``.
"""

from __future__ import annotations

import builtins
import importlib
import re
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from dryml import _registry
from dryml.errors import ClassNotFoundError, UntrustedClassError

if TYPE_CHECKING:
    from dryml._object import Object

__all__ = ["TrustPolicy", "class_path"]

_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.<>]*$")
_INERT_BUILTINS = frozenset({"int", "float", "str", "bool", "bytes", "complex"})
_HOW = (
    "If you trust this file, pass trust=[{module!r}] to load_object (or install the plugin "
    "that trusts it)."
)


def class_path(cls: type) -> str:
    """``"module:QualName"`` of a class."""
    return f"{cls.__module__}:{cls.__qualname__}"


class TrustPolicy:
    """The caller's trusted module prefixes plus every plugin's."""

    def __init__(self, trust: Iterable[str] = ()) -> None:
        if isinstance(trust, str):
            trust = [trust]
        self.caller = tuple(trust)

    def _prefixes(self) -> tuple[str, ...]:
        return ("dryml", *_registry.trusted_modules(), *self.caller)

    def module_trusted(self, module: str) -> bool:
        """Whether ``module`` is, or is inside, a trusted module."""
        return any(module == p or module.startswith(p + ".") for p in self._prefixes())

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
        value = self._lookup(module, qualname, path)
        if not isinstance(value, type):
            raise UntrustedClassError(f"{path!r} is not a class")
        if not self.module_trusted(value.__module__):  # a name re-exported from elsewhere
            raise UntrustedClassError(
                f"{path!r} is {value.__module__}.{value.__qualname__}, from a module that is "
                f"not trusted; nothing was called. " + _HOW.format(module=value.__module__))
        return value

    @staticmethod
    def _lookup(module: str, qualname: str, path: str) -> Any:
        try:
            value: Any = importlib.import_module(module)
        except ImportError as exc:
            from dryml.errors import BackendUnavailableError

            raise BackendUnavailableError(
                f"the file needs module {module!r} for {path!r}, which cannot be imported "
                f"({exc}); install the package that provides it"
            ) from exc
        for part in qualname.split("."):
            try:
                value = getattr(value, part)
            except AttributeError:
                raise ClassNotFoundError(
                    f"module {module!r} defines no {qualname!r} (named in the file as "
                    f"{path!r}); was the class renamed or moved?"
                ) from None
        return value
