"""Fitted scikit-learn estimators in ``.dry`` files, through skops.io (never pickle).

The estimator's structure goes through skops (a small zip holding skops' JSON schema and small
arrays, stored as one member); large arrays (tree nodes, coefficients, support vectors...) go
into the ``.dry`` file as raw ``.npy`` members (:mod:`dryml_sklearn._skops_arrays`), and lists
of same-type estimators (a forest's trees) are written column-wise with their arrays
concatenated (:mod:`dryml_sklearn._skops_batch`), which keeps save and load at or below
joblib's time.

Loading never consults a hand-kept list: :mod:`dryml_sklearn._trust` classifies every type and
callable the entry names by rules over the installed scikit-learn, numpy and scipy (objects of
their data and estimator classes are trusted; callables only narrowly), plus the caller's
``load_object(trust=[...])`` (module prefixes or exact names for objects, exact names only for
callables). Anything else raises ``UntrustedClassError`` naming it, before anything is built.
"""

from __future__ import annotations

import warnings
import weakref
import zipfile
from typing import Any

import sklearn
import skops

from dryml.errors import (
    DrymlVersionWarning,
    FormatError,
    SerializationError,
    UntrustedClassError,
)
from dryml_sklearn import _checks, _paths, _skops_arrays, _states, _trust

__all__ = ["ESTIMATOR", "EstimatorSerializer", "load_estimator", "record_versions"]

PACKAGE = "dryml-sklearn"
_checked: weakref.WeakSet[Any] = weakref.WeakSet()


def _version_key(version: str, parts: int) -> tuple[str, ...]:
    return tuple(version.split(".")[:parts])


def warn_on_skew(reader: Any, framework: str, installed: str, parts: int) -> None:
    """Warn (DrymlVersionWarning) when the file's ``framework`` version differs in its first
    ``parts`` components from the installed one."""
    written = reader.framework_version(framework)
    if written and _version_key(written, parts) != _version_key(installed, parts):
        warnings.warn(
            f"the file was written with {framework} {written}; {installed} is installed. "
            f"Predictions may differ; if loading fails, pip install '{framework}=={written}'.",
            DrymlVersionWarning, stacklevel=5)


def record_versions(writer: Any) -> None:
    """Record dryml-sklearn's, scikit-learn's and skops' versions in the file."""
    writer.record_version(PACKAGE, framework=("scikit-learn", sklearn.__version__))
    writer.record_version(PACKAGE, framework=("skops", skops.__version__))


def _check_versions(reader: Any) -> None:
    """Warn about version skew once per file."""
    try:
        if reader in _checked:
            return
        _checked.add(reader)
    except TypeError:  # not weak-referenceable: check every time
        pass
    # scikit-learn changes fitted attributes between minor versions (it warns itself on
    # unpickling across any version), so a different major.minor warns here
    warn_on_skew(reader, "scikit-learn", sklearn.__version__, parts=2)
    warn_on_skew(reader, "skops", skops.__version__, parts=1)


def _caller_trust(reader: Any) -> tuple[str, ...]:
    """The caller's ``load_object(trust=[...])`` entries."""
    policy = getattr(reader, "trust", None)
    return tuple(getattr(policy, "caller", ()))


class EstimatorSerializer:
    """``store.put(name, fitted_estimator)`` for scikit-learn estimators (BaseEstimator)."""

    def dump(self, value: Any, writer: Any) -> dict[str, Any]:
        """Write the estimator: skops' schema as one member, big arrays as ``.npy`` members."""
        inside = _paths.nested_xgboost(value)
        if inside is not None:  # skops would write it as data no load could accept
            raise SerializationError(f"this {type(value).__qualname__} holds an XGBoost model "
                                     f"at {inside}: {_paths.XGBOOST_INSTEAD}")
        record_versions(writer)
        data, _ = _skops_arrays.dumps(value, writer)
        # what was written, as a load will read it (a function an object's __getstate__
        # drops is not written; a decorated function is found under its __name__)
        try:
            tree = _skops_arrays.load_tree(data)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise SerializationError(
                f"this {type(value).__qualname__} was written in a form no load could read "
                f"back ({exc}); a classmethod as a parameter is such a value: pass a plain "
                "function") from None
        lost = _trust.unloadable(tree)
        if lost is not None:
            raise SerializationError(
                f"this {type(value).__qualname__} holds {lost[0]}, which no load could find: "
                f"{lost[1]}, so the file could never be loaded again. Define it at the top "
                "level of a module that can be imported (not __main__, nor a module named "
                "tests, testing, conftest or the like)")
        return {"skops": writer.add_bytes(data),
                "type": f"{type(value).__module__}.{type(value).__qualname__}"}

    def load(self, meta: Any, reader: Any) -> Any:
        """Rebuild the estimator; untrusted types raise UntrustedClassError naming them."""
        if not isinstance(meta, dict) or not isinstance(meta.get("skops"), str):
            raise FormatError("a scikit-learn entry must name its skops member")
        return load_estimator(reader.get_bytes(meta["skops"]), reader)


def load_estimator(data: bytes, reader: Any | None) -> Any:
    """An estimator from skops bytes written by :func:`_skops_arrays.dumps` (members, if
    any, and the caller's ``trust=`` come from ``reader``)."""
    if reader is not None:
        _check_versions(reader)
    try:
        tree = _skops_arrays.load_tree(data)
    except (ValueError, TypeError, KeyError, AttributeError, zipfile.BadZipFile) as exc:
        # skops' own messages say what is wrong (e.g. a newer protocol: upgrade skops)
        raise FormatError(f"the scikit-learn data cannot be read: {exc}") from None
    bad = _trust.untrusted(tree, _caller_trust(reader))
    if bad:
        raise UntrustedClassError(_untrusted_message(bad))
    with _skops_arrays.reading(reader):  # a RandomState's key is an array member
        _states.check_states(tree)
        value = tree.construct()
    _checks.check_loaded(value)
    return value


def _untrusted_message(findings: list[_trust.Finding]) -> str:
    listed = "; ".join(f"{f.kind} {f.name!r} ({f.why})" for f in findings)
    message = (
        f"the file holds scikit-learn content that dryml-sklearn does not trust: {listed}; "
        "nothing was loaded (a type or function is code that runs at load and predict time).")
    trustable = [f for f in findings if f.trustable]
    if len(trustable) < len(findings):
        return message  # each finding that trust= cannot fix says what to do instead
    return (f"{message} If you trust this file, pass trust=[{trustable[0].name!r}, ...] to "
            "load_object (objects: their exact class or its module; callables: their exact "
            "name only).")


ESTIMATOR = EstimatorSerializer()
