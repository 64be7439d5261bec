"""The one exception hierarchy of dryml.

Every error dryml raises on purpose derives from :class:`DrymlError`, so a caller can catch the
whole family with one ``except``. Each message says what was wrong, where, and what to do.
"""

from __future__ import annotations

__all__ = [
    "ArgumentError",
    "BackendUnavailableError",
    "ChecksumError",
    "ClassNotFoundError",
    "ConfigurationError",
    "ContextIncompatibilityError",
    "DatasetError",
    "DefinitionTooLargeError",
    "DrymlError",
    "DrymlPluginWarning",
    "DrymlVersionWarning",
    "DrymlWarning",
    "DuplicateObjectError",
    "FormatError",
    "FormatVersionError",
    "LimitExceededError",
    "MetricError",
    "NoContextError",
    "NotIndexedError",
    "NotSupervisedError",
    "NotTrainedError",
    "ObjectNotFoundError",
    "PluginError",
    "RepoError",
    "ResourcesUnavailableError",
    "SerializationError",
    "UnknownLengthError",
    "UntrustedClassError",
    "WorkerCrashedError",
    "warn",
]


class DrymlError(Exception):
    """Root of every error dryml raises on purpose."""


class ArgumentError(DrymlError, TypeError):
    """An argument of a type dryml cannot take: a constructor argument it cannot record
    (raised at construction), a query value, or an option of a call of the wrong type."""


class DefinitionTooLargeError(DrymlError, ValueError):
    """A definition would hold too many nested definitions (shared objects, each written out
    wherever it is used, many levels deep)."""


class SerializationError(DrymlError):
    """A value could not be written to, or read from, a ``.dry`` file."""


class FormatError(DrymlError):
    """A ``.dry`` file is malformed: truncated, empty, wrong types, bad member names."""


class FormatVersionError(FormatError):
    """A ``.dry`` file was written by a newer format version than this dryml understands."""


class ChecksumError(FormatError):
    """A member of a ``.dry`` file does not match the checksum recorded for it."""


class LimitExceededError(FormatError):
    """A ``.dry`` file declares or holds more than the reader's bounds (a zip/zstd bomb)."""


class UntrustedClassError(DrymlError):
    """A file names a class that is not trusted, or that is not a ``dryml.Object`` subclass."""


class ClassNotFoundError(DrymlError):
    """A trusted module does not define the class a file names."""


class PluginError(DrymlError):
    """A plugin could not be loaded or conflicts with another plugin."""


class BackendUnavailableError(DrymlError, ImportError):
    """A feature needs a backend package that is not installed (the message names it)."""


class ContextIncompatibilityError(DrymlError):
    """The current compute context does not satisfy a requirement."""


class NoContextError(DrymlError):
    """Code that needs a compute context ran outside any context."""


# Shown (in tracebacks and reprs) where users import them from; pickling still resolves,
# since dryml.context re-exports both.
ContextIncompatibilityError.__module__ = NoContextError.__module__ = "dryml.context"


class ResourcesUnavailableError(DrymlError):
    """A resource request can never be met on this machine."""


class WorkerCrashedError(DrymlError):
    """A worker process died while running a call."""


class DatasetError(DrymlError, ValueError):
    """A Dataset was given bad input or asked for something its data cannot do."""


class NotSupervisedError(DatasetError):
    """An operation needs ``(x, y)`` elements but the Dataset is not supervised."""


class NotIndexedError(DatasetError):
    """An operation needs ``(i, x)`` elements but the Dataset is not indexed."""


class UnknownLengthError(DatasetError, TypeError):
    """``len()`` of a Dataset whose size is not known (a ``TypeError``, like ``len(gen)``)."""


class RepoError(DrymlError):
    """A repository could not be opened, or an operation on it is not possible."""


class DuplicateObjectError(RepoError):
    """An object with this ``dry_id`` is already in the repository (pass ``replace=True``)."""


class ObjectNotFoundError(RepoError, KeyError):
    """No object in the repository matches the id or selector given."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DrymlWarning(UserWarning):
    """Root of every warning dryml emits."""


def warn(message: str, stacklevel: int = 2) -> None:
    """Emit ``message`` as a :class:`DrymlWarning`; ``stacklevel`` counts from the caller, as
    :func:`warnings.warn` does (2, the default, points at the caller's caller: the user's line
    that called the function which warns)."""
    import warnings

    warnings.warn(message, DrymlWarning, stacklevel=stacklevel + 1)


class DrymlPluginWarning(DrymlWarning):
    """A plugin failed to load and was recorded as unavailable."""


class DrymlVersionWarning(DrymlWarning):
    """A file was written with a different major version of a framework or plugin."""


class MetricError(DrymlError, ValueError):
    """Targets and predictions cannot be scored together (lengths, shapes, classes)."""


class ConfigurationError(DrymlError, ValueError):
    """A component was given a value it cannot work with (the message says which and why)."""


class NotTrainedError(DrymlError):
    """A Trainable was asked to predict before it was trained."""
