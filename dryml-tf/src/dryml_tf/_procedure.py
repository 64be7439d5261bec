"""Training procedures of ``KerasTrainable``: how ``fit`` trains, as a component.

The classes here import neither TensorFlow nor Keras at module level (a definition builds
without them); their hooks run in a ``tf`` worker, inside dryml's ``fit`` (``_models_fit``),
which keeps validation, early stopping, history, progress, checkpoint/resume and the seeds
for every procedure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from dryml.errors import ConfigurationError
from dryml.models import TrainingProcedure
from dryml.models._procedure import positive_number, whole_number

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

    from dryml_tf.models import KerasTrainable

__all__ = ["GradientAccumulation", "KerasProcedure", "MixupProcedure", "StepContext"]


@attrs.define(eq=False)
class StepContext:
    """What a procedure's :meth:`KerasProcedure.train_step` works with.

    * ``trainable``: the :class:`~dryml_tf.models.KerasTrainable`; ``model``: its compiled
      Keras model; ``seed``: ``trainable.train_seed``.

    The helpers wrap Keras' own training step in public pieces: :meth:`loss`, :meth:`apply`
    (gradients, the optimizer step and the ``loss`` log), :meth:`metrics`, and
    :meth:`step_seed` for reproducible randomness (stateless ops seeded by the training seed
    and the optimizer's step counter, which a saved training keeps: a resumed training draws
    the same numbers).
    """

    trainable: KerasTrainable
    model: keras.Model
    seed: int

    @property
    def optimizer(self) -> keras.optimizers.Optimizer:
        """The model's optimizer."""
        return self.model.optimizer

    def step_seed(self, stream: int = 0) -> tf.Tensor:
        """A seed (shape ``[2]``, int64) for ``tf.random.stateless_*`` ops in this step;
        ``stream`` gives independent numbers for several draws in one step."""
        import tensorflow as tf

        step = tf.cast(self.model.optimizer.iterations, tf.int64)
        base = tf.stack([tf.constant(self.seed, tf.int64), step])
        return tf.random.experimental.stateless_fold_in(base, stream)

    def loss(self, x: Any, y: Any, y_pred: Any, sample_weight: Any = None) -> tf.Tensor:
        """The compiled loss of ``y_pred`` for targets ``y`` (with the model's own losses,
        e.g. regularization)."""
        return self.model.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
                                       training=True)

    def apply(self, tape: tf.GradientTape, loss: tf.Tensor, x: Any) -> None:
        """Record ``loss`` (the mean over the batch ``x``) in the ``loss`` log, then apply its
        gradients (taken on ``tape``, the tape that computed it) with the optimizer."""
        import tensorflow as tf

        model, optimizer = self.model, self.model.optimizer
        tracker = getattr(model, "_loss_tracker", None)  # the Mean behind fit's "loss" log
        if tracker is not None:
            tracker.update_state(loss, sample_weight=tf.shape(tf.nest.flatten(x)[0])[0])
        with tape:
            scaled = optimizer.scale_loss(loss)
        weights = model.trainable_weights
        optimizer.apply_gradients(zip(tape.gradient(scaled, weights), weights, strict=True))

    def metrics(self, x: Any, y: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        """The step's logs: the compiled metrics updated with ``y_pred``, and ``loss``."""
        return self.model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)


class KerasProcedure(TrainingProcedure):
    """The default procedure of :class:`~dryml_tf.models.KerasTrainable`: Keras' own ``fit``
    step (one optimizer step per batch).

    Subclass it for another procedure and pass it as ``KerasTrainable(..., procedure=...)``:

    * override :meth:`train_step` to replace Keras' step (it is traced by ``tf.function``:
      use TensorFlow ops, :class:`StepContext`'s helpers and :meth:`StepContext.step_seed`
      for randomness);
    * override :meth:`build_optimizer` to change the optimizer the model compiles with.

    Constructor arguments are the procedure's parameters (plain values), saved with the model
    and searchable; import TensorFlow and Keras inside the hooks.
    """

    __module__ = "dryml_tf.models"  # the class path files name (public, stable)

    def build_optimizer(self, trainable: KerasTrainable) -> keras.optimizers.Optimizer:
        """The optimizer the model is compiled with (default: the trainable's component)."""
        return trainable.optimizer.build()

    def train_step(self, ctx: StepContext, data: Any) -> Any:
        """One training step on ``data`` (an ``(x, y)`` batch); returns the step's logs
        (default: Keras' own ``train_step``)."""
        return type(ctx.model).train_step(ctx.model, data)

    def replaces_train_step(self) -> bool:
        """Whether this procedure has its own :meth:`train_step` (else Keras' runs as is)."""
        return type(self).train_step is not KerasProcedure.train_step


class MixupProcedure(KerasProcedure):
    """Mixup (Zhang et al., 2018): each batch trains on convex mixtures of pairs of examples,
    ``lam * x + (1 - lam) * x[perm]``, with the loss mixed the same way; ``lam`` is drawn
    from ``Beta(alpha, alpha)`` per step (reproducibly: :meth:`StepContext.step_seed`).

    >>> MixupProcedure(alpha=0.4).alpha
    0.4
    """

    __module__ = "dryml_tf.models"  # the class path files name (public, stable)

    def __init__(self, alpha: float = 0.2) -> None:
        self.alpha = positive_number("MixupProcedure", "alpha", alpha, "0.2")

    def train_step(self, ctx: StepContext, data: Any) -> Any:
        """One optimizer step on the mixed batch."""
        import tensorflow as tf

        x, y = data[0], data[1]
        if not x.dtype.is_floating:
            raise ConfigurationError(f"MixupProcedure mixes inputs, which must be floating "
                                     f"point; these are {x.dtype.name}")
        g1 = tf.random.stateless_gamma([], ctx.step_seed(1), alpha=self.alpha, dtype=x.dtype)
        g2 = tf.random.stateless_gamma([], ctx.step_seed(2), alpha=self.alpha, dtype=x.dtype)
        lam = g1 / (g1 + g2)
        perm = tf.argsort(tf.random.stateless_uniform(tf.shape(x)[:1], ctx.step_seed(3)))
        mixed = lam * x + (1.0 - lam) * tf.gather(x, perm)
        with tf.GradientTape() as tape:
            y_pred = ctx.model(mixed, training=True)
            loss = (lam * ctx.loss(mixed, y, y_pred)
                    + (1.0 - lam) * ctx.loss(mixed, tf.gather(y, perm), y_pred))
        ctx.apply(tape, loss, mixed)
        return ctx.metrics(mixed, y, y_pred)


class GradientAccumulation(KerasProcedure):
    """One optimizer update every ``steps`` batches, on the mean of their gradients (a larger
    effective batch in the same memory), with the optimizer's own
    ``gradient_accumulation_steps``: the accumulated gradients are optimizer state, saved
    with a training saved mid-way, so a resumed training continues exactly.

    >>> GradientAccumulation(steps=4).steps
    4
    """

    __module__ = "dryml_tf.models"  # the class path files name (public, stable)

    def __init__(self, steps: int = 4) -> None:
        self.steps = whole_number("GradientAccumulation", "steps", steps)

    def build_optimizer(self, trainable: KerasTrainable) -> keras.optimizers.Optimizer:
        """The trainable's optimizer, accumulating ``steps`` batches per update."""
        optimizer = super().build_optimizer(trainable)
        if self.steps == 1:
            return optimizer
        config = {**optimizer.get_config(), "gradient_accumulation_steps": self.steps}
        return type(optimizer).from_config(config)
