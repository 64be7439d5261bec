"""``Pipe``: trainables chained across frameworks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dryml.errors import ConfigurationError
from dryml.models._trainable import INTERRUPTED, Trainable, frameworks_of

if TYPE_CHECKING:
    from dryml.data import Dataset

__all__ = ["Pipe"]


def _step_ids(steps: tuple[Any, ...]) -> list[str]:
    """The ids of ``steps`` and of the steps of the Pipes among them, in order."""
    ids: list[str] = []
    for step in steps:
        if isinstance(step, Pipe):
            ids.extend(_step_ids(step.steps))
        ids.append(step.dry_id)
    return ids


def _started(step: Any) -> bool:
    """Whether a step is trained or will resume a training it began (a checkpoint saved at
    an epoch's end); one whose training raised starts over, learning nothing old."""
    state = step.train_state
    if step.trained:
        return True
    if state.progress.get(INTERRUPTED):
        return False
    return bool(state.status == "training" or state.progress)


class Pipe(Trainable):
    """Steps applied in order; each is trained on the previous steps' output.

    >>> from dryml.models import Pipe
    >>> # Pipe(StandardScaler step, torch network step)  # doctest: +SKIP

    Training walks the steps: a step that is already trained is skipped (so an interrupted
    training resumes after the last finished step), the others are trained on the output of
    the steps before them, each in its own framework's context. A trained step after one that
    is not is refused (it learned from outputs that the retrained step may no longer give).
    ``eval`` chains the steps' ``eval``. The task (classifier/regressor) is the last step's.
    """

    def __init__(self, *steps: Trainable) -> None:
        if not steps or not all(isinstance(s, Trainable) for s in steps):
            raise ConfigurationError("Pipe needs one or more Trainables as its steps")
        ids = _step_ids(steps)  # in nested Pipes too: Pipe(Pipe(sc, norm), sc) used sc twice
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:  # trained once, it would then be applied twice
            raise ConfigurationError(
                f"the same step appears more than once in this Pipe ({', '.join(twice)}): give "
                "each place its own step (a copy: step.definition().fresh_ids().build())")
        self.steps = steps

    @property
    def task(self) -> str:  # type: ignore[override]
        return self.steps[-1].task

    @property
    def trained(self) -> bool:
        return all(step.trained for step in self.steps)

    def train(self, data: Dataset, valid: Dataset | None = None, *,
              context_reqs: dict[str, Any] | None = None) -> None:
        """Train the steps in order; ``context_reqs`` gives each step's worker the request
        for its framework (``{"torch": {"num_gpus": 1}}`` reaches the torch steps)."""
        self._check_reqs(context_reqs)
        self._check_stale()
        self.train_state.status = "training"
        for i, step in enumerate(self.steps):
            reqs = _step_reqs(step, context_reqs)
            step.train(data, valid, context_reqs=reqs)
            self.train_state.progress["steps_done"] = i + 1
            if i + 1 < len(self.steps):
                data = step.eval(data, context_reqs=reqs)
                valid = step.eval(valid, context_reqs=reqs) if valid is not None else None
        self.train_state.status = "trained"

    def _check_stale(self) -> None:
        """Refuse a trained step after an untrained one: training the earlier step anew may
        change what it gives the later one, which would keep what it learned from the old
        outputs (a Pipe whose scaler was replaced reported itself trained
        and scored 0.35 where a fresh one scored 1.0)."""
        first = next((i for i, s in enumerate(self.steps) if not s.trained), None)
        if first is None:
            return
        # a later step that has started (a checkpoint saved mid-training) learned from the old
        # outputs as much as a trained one: resumed, it kept two epochs of them
        stale = [i for i in range(first + 1, len(self.steps)) if _started(self.steps[i])]
        if stale:
            raise ConfigurationError(
                f"step {stale[0]} ({type(self.steps[stale[0]]).__name__}) of this Pipe has "
                f"trained (or begun to) but step {first} "
                f"({type(self.steps[first]).__name__}) before it is not: training that step "
                "may change the inputs the later one learned from. "
                "Give the Pipe an untrained copy of each later step "
                "(step.definition().fresh_ids().build()), or train the steps one by one")

    def eval(self, data: Dataset, *, context_reqs: dict[str, Any] | None = None) -> Dataset:
        """Chain the steps' ``eval`` (``context_reqs`` as for :meth:`train`)."""
        self._check_reqs(context_reqs)
        for step in self.steps:
            data = step.eval(data, context_reqs=_step_reqs(step, context_reqs))
        return data

    def _check_reqs(self, reqs: dict[str, Any] | None) -> None:
        """A request for a framework no step has is a mistake, not something to ignore (the
        whole request was dropped, so a step asked for a GPU ran on the CPU)."""
        have = frameworks_of(self)
        unknown = sorted(set(reqs or {}) - have - {"default"})
        if unknown:
            raise ConfigurationError(
                f"context_reqs names {', '.join(map(repr, unknown))}, which no step of this "
                f"Pipe uses (its steps use {', '.join(map(repr, sorted(have)))})")

    def predict(self, x: Any) -> Any:
        for step in self.steps:
            x = step.predict(x)
        return x


def _step_reqs(step: Trainable, reqs: dict[str, Any] | None) -> dict[str, Any] | None:
    """The part of ``reqs`` for the frameworks of ``step`` (None: the step's default)."""
    mine = {fw: req for fw, req in (reqs or {}).items() if fw in frameworks_of(step)}
    return mine or None
