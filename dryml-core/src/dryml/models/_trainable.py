"""``Trainable``: an Object that trains on a Dataset and predicts, in its framework's context."""

from __future__ import annotations

import functools
import inspect
import warnings
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from dryml._object import Object
from dryml.errors import ConfigurationError, ContextIncompatibilityError, NotTrainedError
from dryml.models._spec import TrainSpec, derived_seed

if TYPE_CHECKING:
    from dryml.data import Dataset
    from dryml.format import LoadStore, SaveStore

__all__ = ["INTERRUPTED", "TrainState", "Trainable", "frameworks_of", "starts_over"]

EVAL_BATCH = 1024


#: ``progress`` key set when ``fit`` raised: the live state is not at an epoch's end, so the
#: next ``train()`` starts over (with a warning from :func:`starts_over`) instead of resuming.
INTERRUPTED = "interrupted"


def starts_over(state: TrainState, unit: str = "epoch") -> bool:
    """Whether ``state`` is of a training that raised part-way (``progress[INTERRUPTED]``);
    warns that it starts over when whole epochs are lost. A backend calls this before it
    resumes from ``progress``."""
    if not state.progress.get(INTERRUPTED):
        return False
    done = state.progress.get(unit, 0)
    if not done:  # it raised in its first epoch: starting over loses nothing, say nothing
        return True
    warnings.warn(
        f"this training raised part-way, after {done} whole {unit}(s): its weights and "
        f"optimizer state are not those of a {unit}'s end, so it starts over from {unit} 0 (a "
        "checkpoint saved by on_epoch_end resumes from its own epoch)", UserWarning,
        stacklevel=4)
    return True


@attrs.define
class TrainState:
    """Where training stands: ``status`` is "untrained", "training" or "trained";
    ``progress`` is what a backend needs to resume (e.g. ``{"epoch": 3}``); ``history`` holds one
    dict of metrics per epoch."""

    status: str = "untrained"
    progress: dict[str, Any] = attrs.field(factory=dict)
    history: list[dict[str, float]] = attrs.field(factory=list)


class Trainable(Object):
    """An Object that learns from a supervised Dataset and predicts.

    Subclasses (one per backend) implement :meth:`fit` and :meth:`predict`; the base class keeps
    the train state (saved with the object), runs training and evaluation inside a compute
    context for :attr:`dry_framework`, and shapes evaluation output like its input.

    * ``train(data)`` trains unless already trained; an interrupted training resumes from the
      progress a backend recorded.
    * ``eval(data)`` returns a Dataset with the same structure as ``data`` (indexed, supervised,
      batched the same way) with predictions in place of ``x``: class probabilities for
      classifiers, values for regressors.

    Outside any compute context, ``train`` and ``eval`` of a framework's Trainable run in a warm
    worker process for that framework (``dryml.context``), and the trained state comes back into
    this object. Inside a context that satisfies the framework they run in place.
    """

    dry_mut: ClassVar[bool] = True
    #: "classifier" (eval gives class probabilities) or "regressor" (eval gives values).
    task: ClassVar[str] = "classifier"

    # -- the train state ----------------------------------------------------------------------
    @property
    def train_state(self) -> TrainState:
        """The train state (created on first use, so subclasses need not call super)."""
        state = self.__dict__.get("_train_state")
        if state is None:
            state = self.__dict__["_train_state"] = TrainState()
        return state

    @property
    def trained(self) -> bool:
        """Whether training finished."""
        return self.train_state.status == "trained"

    def save_object_imp(self, store: SaveStore) -> None:
        store.put("train_state", attrs.asdict(self.train_state))

    def load_object_imp(self, store: LoadStore) -> None:
        raw = store.get("train_state", None)
        if isinstance(raw, dict):
            self.__dict__["_train_state"] = TrainState(
                status=str(raw.get("status", "untrained")),
                progress=dict(raw.get("progress", {})),
                history=list(raw.get("history", [])))

    @property
    def train_seed(self) -> int:
        """The seed this object trains with: its ``spec``'s explicit seed, or (under the default
        ``TrainSpec(seed="auto")``, or without a spec) one derived from its ``dry_id``, so every
        copy of a definition trains differently and a reloaded or rebuilt one the same."""
        spec = getattr(self, "spec", None)
        if isinstance(spec, TrainSpec):
            return spec.seed_for(self)
        return derived_seed(self.dry_id)

    # -- what backends implement --------------------------------------------------------------
    def fit(self, data: Dataset, valid: Dataset | None) -> None:
        """Train on ``data`` (supervised), validating on ``valid`` when given (override)."""
        raise NotImplementedError(f"{type(self).__qualname__} does not implement fit()")

    def predict(self, x: Any) -> Any:
        """Predictions for one numpy batch of inputs (override)."""
        raise NotImplementedError(f"{type(self).__qualname__} does not implement predict()")

    def prep_train(self) -> None:
        """Called before training (e.g. put a network in training mode)."""

    def prep_eval(self) -> None:
        """Called before evaluation (e.g. put a network in inference mode)."""

    # -- public API ---------------------------------------------------------------------------
    def train(self, data: Dataset, valid: Dataset | None = None, *,
              context_reqs: dict[str, Any] | None = None) -> None:
        """Train on a supervised Dataset (from any framework) unless already trained.

        ``context_reqs`` is the compute-context requirement used when this call goes to a
        worker (default ``{framework: {}}``: one CPU, no GPU), e.g.
        ``{"torch": {"num_gpus": 1}}`` or ``{"tf": {"gpu/0": 0.5}}``.
        """
        changed = reassigned_components(self)
        if changed:
            from dryml.errors import warn

            warn(f"{type(self).__qualname__}.{changed[0]} holds another object than the "
                 f"{changed[0]!r} it was built with: a component set after construction is "
                 "not recorded, so training in a worker, and a saved copy, use the one it was "
                 "built with; build a new model with it instead (e.g. ObjectDef(cls, ...) or "
                 "model.definition() with the new argument)")
        spec = getattr(self, "spec", None)
        if (valid is None and getattr(spec, "early_stopping", None) is not None
                and getattr(spec, "validation_split", 0.0) == 0.0):
            # here, not in TrainSpec: a validation Dataset passed to train() is enough (a check
            # in TrainSpec refused early stopping without validation_split)
            raise ConfigurationError(
                "early stopping needs validation data: pass a validation Dataset, "
                "train(data, valid), or set TrainSpec(validation_split=...) > 0 (in a Search, "
                "a trial's model is given the scored rows to validate on only with a pruner: "
                "give its TrainSpec a validation_split)")
        if self._dispatch():
            from dryml.models._remote import remote_train

            remote_train(self, data, valid, context_reqs)
            return
        if self.trained:
            return
        self.train_state.status = "training"
        self.prep_train()
        try:
            self.fit(data, valid)
        except BaseException:
            # Its weights, optimizer and random state may be from the middle of an epoch
            # while its progress names the last whole one: resuming from them would run part
            # of that epoch twice (5 extra optimizer steps, other numbers,
            # reported as a success). A backend starts such a training over (see
            # INTERRUPTED); a checkpoint saved at an epoch's end still resumes from there.
            self.train_state.progress[INTERRUPTED] = True
            raise
        self.train_state.progress.pop(INTERRUPTED, None)
        self.train_state.status = "trained"

    def eval(self, data: Dataset, *, context_reqs: dict[str, Any] | None = None) -> Dataset:
        """Predictions in place of ``x``, in a Dataset shaped like ``data`` (all examples).

        ``context_reqs``: as for :meth:`train`, when this call goes to a worker.
        """
        if self._dispatch():
            from dryml.models._remote import remote_eval

            return remote_eval(self, data, context_reqs)  # type: ignore[no-any-return]
        if not self.trained:
            raise NotTrainedError(
                f"{type(self).__qualname__} {self.dry_id!r} is not trained; call train() first "
                "or load a trained one")
        self.prep_eval()
        return predictions_like(data, self.predict)

    def _dispatch(self) -> bool:
        """Whether this call must go to a worker for this object's framework."""
        framework = type(self).dry_framework
        if framework == "default":
            return False
        from dryml.context import current_context

        ctx = current_context()
        if ctx is None:
            return True
        if not ctx.satisfies({framework: {}}):
            raise ContextIncompatibilityError(
                f"{type(self).__qualname__} needs a {framework!r} context; this code runs in "
                f"{ctx!r}. Call it from outside any context, or from a {framework!r} one.")
        return False


def predictions_like(data: Dataset, predict: Any) -> Dataset:
    """Apply ``predict`` to every batch of ``x`` of ``data`` (as numpy); keep the structure."""
    import numpy as np

    from dryml.data import NumpyDataset

    source = data.numpy()
    batched = source.batched
    if not batched:
        source = source.batch(EVAL_BATCH)
    xs: list[Any] = []
    ys: list[Any] = []
    idx: list[Any] = []
    for element in source:
        body = element
        if source.indexed:
            idx.append(element[0])
            body = element[1]
        if source.supervised:
            x, y = body
            ys.append(y)
        else:
            x = body
        xs.append(np.asarray(predict(x)))
    if not xs:  # no examples: an empty output of the same form, not numpy's concatenate error
        empty = np.empty((0,))
        preds, ys, idx = empty, [empty], [np.empty((0,), dtype=np.int64)]
    else:
        preds = np.concatenate(xs)
    body_out: Any = (preds, np.concatenate(ys)) if source.supervised else preds
    out: Any = (np.concatenate(idx), body_out) if source.indexed else body_out
    result = NumpyDataset(out, supervised=source.supervised, indexed=source.indexed,
                          batch_size=data.batch_size if batched else None)
    return result if batched else result.unbatch()


def frameworks_of(obj: Object) -> set[str]:
    """The frameworks (other than ``"default"``) of ``obj`` and the Objects in its arguments:
    a worker that trains it needs them all (a Pipe of scikit-learn steps: ``{"sklearn"}``)."""
    from dryml.context._lifecycle import iter_objects

    return {fw for o in iter_objects([obj]) if (fw := type(o).dry_framework) != "default"}


def reassigned_components(obj: Object) -> list[str]:
    """Names of constructor arguments that were given an Object (a component: a spec, an
    optimizer, a network) whose attribute of the same name now holds another one: set after
    construction, which the definition does not record (``model.spec = TrainSpec(epochs=2)``
    trained 6 epochs in a worker, 2 in place, and was saved with 6)."""
    names = _parameter_names(type(obj))
    given = dict(zip(names, obj.dry_args, strict=False))
    given.update({k: v for k, v in obj._dry_kwargs.items() if k != "dry_id"})
    held = obj.__dict__
    return [name for name, value in given.items()
            if isinstance(value, Object) and name in held and held[name] is not value
            and isinstance(held[name], Object)]


@functools.lru_cache(maxsize=256)
def _parameter_names(cls: type) -> tuple[str, ...]:
    """The names of ``cls.__init__``'s positional parameters, in order (after ``self``)."""
    try:
        init = cls.__init__  # type: ignore[misc]  # the class's own, not an instance's
        parameters = list(inspect.signature(init).parameters.values())[1:]
    except (TypeError, ValueError):
        return ()
    return tuple(p.name for p in parameters
                 if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))
