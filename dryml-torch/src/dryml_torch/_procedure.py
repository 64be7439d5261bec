"""Training procedures of ``TorchTrainable``: how an epoch trains, as a component.

The classes here import no torch at module level (a definition builds without it); their
hooks run in a torch worker, inside dryml's epoch loop (``_models_loop.run_training``), which
keeps validation, early stopping, history, progress, checkpoint/resume and the per-epoch seeds
for every procedure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import attrs

from dryml.errors import ConfigurationError
from dryml.models import TrainingProcedure
from dryml.models._procedure import positive_number, whole_number

if TYPE_CHECKING:
    import numpy as np
    import torch

    from dryml_torch.models import TorchTrainable

__all__ = ["EpochContext", "GradientAccumulation", "MixupProcedure", "TorchProcedure"]


def has_batch_norm(net: Any) -> bool:
    """Whether ``net`` holds a batch-norm layer, which raises on a training batch of one row."""
    from torch import nn

    kinds = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm,
             nn.LazyBatchNorm1d, nn.LazyBatchNorm2d, nn.LazyBatchNorm3d)
    return any(isinstance(m, kinds) for m in net.modules())


@attrs.define(eq=False)
class EpochContext:
    """What a procedure's epoch works with (built by dryml for each epoch).

    * ``trainable``: the :class:`~dryml_torch.models.TorchTrainable` being trained;
    * ``net``, ``optimizer``, ``loss_fn``, ``device``: the module (in training mode), its
      optimizer, the loss module and the device both are on;
    * ``x``, ``y``: all training inputs and targets (CPU tensors, ``x`` in the network's
      dtype); ``order``: this epoch's row order (shuffled per ``TrainSpec.shuffle``);
      ``batch_size``: ``TrainSpec.batch_size``;
    * ``epoch`` (counting from 0) and ``seed``: this epoch's seed, derived from
      ``(trainable.train_seed, epoch)``; torch's global generator is seeded with it before the
      epoch (dropout), and :attr:`generator` / :attr:`rng` are streams of their own from it,
      so a procedure's randomness is reproducible and a resumed training repeats it.
    """

    trainable: TorchTrainable
    net: torch.nn.Module
    optimizer: torch.optim.Optimizer
    loss_fn: Any
    device: torch.device
    x: torch.Tensor
    y: torch.Tensor
    order: torch.Tensor
    batch_size: int
    epoch: int
    seed: int
    _generator: Any = None
    _rng: Any = None
    _merge_last: bool | None = None

    @property
    def num_batches(self) -> int:
        """How many batches :meth:`batches` yields: ``batch_size`` rows each, the last one
        fewer; a last batch of a single row joins the one before when the network has
        batch-norm layers (they cannot train on one row)."""
        return -(-len(self.order) // self.batch_size) - self._merges()

    def _merges(self) -> int:
        if self._merge_last is None:
            self._merge_last = (len(self.order) > self.batch_size
                                and len(self.order) % self.batch_size == 1
                                and has_batch_norm(self.net))
        return int(self._merge_last)

    @property
    def num_examples(self) -> int:
        """How many training rows the epoch sees."""
        return len(self.order)

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(x, y)`` batches in this epoch's order, on :attr:`device`."""
        for i in range(self.num_batches):
            yield self.batch(i)

    def _bounds(self, i: int) -> tuple[int, int]:
        if not 0 <= i < self.num_batches:
            raise IndexError(f"batch {i} of an epoch of {self.num_batches} batches")
        end = len(self.order) if i == self.num_batches - 1 else (i + 1) * self.batch_size
        return i * self.batch_size, end

    def batch_rows(self, i: int) -> int:
        """How many rows the ``i``-th batch holds (index batches through :meth:`batch` and
        :attr:`num_batches`, never by slicing :attr:`order`: the last batch may hold one row
        more than ``batch_size``)."""
        start, end = self._bounds(i)
        return end - start

    def batch(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``i``-th ``(x, y)`` batch of :meth:`batches`, on :attr:`device`."""
        start, end = self._bounds(i)
        idx = self.order[start:end]
        return (self.x[idx].to(self.device, non_blocking=True),
                self.y[idx].to(self.device, non_blocking=True))

    def step(self, closure: Callable[[], torch.Tensor]) -> torch.Tensor:
        """One optimizer step; returns the loss ``closure`` computed first (before the step).

        ``closure`` zeroes the gradients, computes the loss, calls ``backward()`` on it and
        returns it: ``optimizer.step(closure)``, as torch's optimizers take it. Most call it
        once; those that search along the gradient (``LBFGS``) call it again at other
        weights, so it must compute everything it needs (e.g. the forward pass) itself.
        """
        first: list[torch.Tensor] = []

        def evaluate() -> Any:  # torch annotates the closure as returning a float
            loss = closure()
            if not first:
                first.append(loss)
            return loss

        self.optimizer.step(evaluate)
        return first[0]

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The loss of outputs ``out`` for targets ``y`` (aligned as dryml's loop does: class
        indices as int64, one output column squeezed for a 1-d target)."""
        from dryml_torch._models_loop import checked_loss_inputs

        return self.loss_fn(*checked_loss_inputs(self.loss_fn, out, y))  # type: ignore[no-any-return]

    @property
    def generator(self) -> torch.Generator:
        """A CPU ``torch.Generator`` of this epoch (e.g. for ``torch.randperm``)."""
        if self._generator is None:
            import torch

            self._generator = torch.Generator().manual_seed(_stream_seed(self.seed, 1))
        return self._generator  # type: ignore[no-any-return]

    @property
    def rng(self) -> np.random.Generator:
        """A NumPy generator of this epoch (e.g. for ``rng.beta``)."""
        if self._rng is None:
            import numpy as np

            self._rng = np.random.default_rng([self.seed, 2])
        return self._rng  # type: ignore[no-any-return]


def _stream_seed(seed: int, stream: int) -> int:
    import numpy as np

    state = np.random.SeedSequence([seed, stream]).generate_state(1, np.uint64)[0]
    return int(state >> 1)


class TorchProcedure(TrainingProcedure):
    """The default procedure of :class:`~dryml_torch.models.TorchTrainable`: one optimizer
    step per minibatch, the epoch's loss the mean over its rows.

    Subclass it for another loop and pass it as ``TorchTrainable(..., procedure=...)``:
    override :meth:`train_step` (what one batch does) or :meth:`train_epoch` (the whole
    epoch). Constructor arguments are the procedure's parameters (plain values), saved with
    the model and searchable. Hooks run in the torch worker: import torch inside them.
    """

    __module__ = "dryml_torch.models"  # the class path files name (public, stable)

    def train_epoch(self, ctx: EpochContext) -> dict[str, float]:
        """Train one epoch; return its metrics (at least ``{"loss": ...}``): they join the
        epoch's logs (with ``epoch`` and the validation metrics dryml adds)."""
        import torch

        ctx.net.train()
        total = torch.zeros((), dtype=torch.float64, device=ctx.device)
        for xb, yb in ctx.batches():
            total += self.train_step(ctx, xb, yb).detach() * len(xb)
        return {"loss": float(total) / ctx.num_examples}

    def train_step(self, ctx: EpochContext, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Train on one batch; return its (mean) loss tensor."""

        def closure() -> torch.Tensor:
            ctx.optimizer.zero_grad(set_to_none=True)
            loss = ctx.loss(ctx.net(x), y)
            loss.backward()
            return loss

        return ctx.step(closure)


class MixupProcedure(TorchProcedure):
    """Mixup (Zhang et al., 2018): each batch trains on convex mixtures of pairs of examples,
    ``lam * x + (1 - lam) * x[perm]``, with the loss mixed the same way; ``lam`` is drawn
    from ``Beta(alpha, alpha)`` per batch (reproducibly, from the epoch's seed).

    >>> MixupProcedure(alpha=0.4).alpha
    0.4
    """

    __module__ = "dryml_torch.models"  # the class path files name (public, stable)

    def __init__(self, alpha: float = 0.2) -> None:
        self.alpha = positive_number("MixupProcedure", "alpha", alpha, "0.2")

    def train_step(self, ctx: EpochContext, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One optimizer step on the mixed batch."""
        import torch

        if not x.is_floating_point():
            raise ConfigurationError(f"MixupProcedure mixes inputs, which must be floating "
                                     f"point; these are {x.dtype}")
        lam = float(ctx.rng.beta(self.alpha, self.alpha))
        perm = torch.randperm(len(x), generator=ctx.generator).to(x.device)

        def closure() -> torch.Tensor:
            ctx.optimizer.zero_grad(set_to_none=True)
            out = ctx.net(lam * x + (1.0 - lam) * x[perm])
            loss = lam * ctx.loss(out, y) + (1.0 - lam) * ctx.loss(out, y[perm])
            loss.backward()
            return loss

        return ctx.step(closure)


class GradientAccumulation(TorchProcedure):
    """One optimizer step every ``steps`` batches, on the mean of their gradients (a larger
    effective batch in the same memory); an epoch's last, shorter group steps too, so no
    gradient crosses an epoch boundary (and a resumed training repeats the same steps).

    >>> GradientAccumulation(steps=4).steps
    4
    """

    __module__ = "dryml_torch.models"  # the class path files name (public, stable)

    def __init__(self, steps: int = 4) -> None:
        self.steps = whole_number("GradientAccumulation", "steps", steps)

    def train_epoch(self, ctx: EpochContext) -> dict[str, float]:
        """The epoch, stepping the optimizer after every ``steps`` batches."""
        import torch

        ctx.net.train()
        total = torch.zeros((), dtype=torch.float64, device=ctx.device)
        for start in range(0, ctx.num_batches, self.steps):
            group = range(start, min(start + self.steps, ctx.num_batches))
            losses: list[list[torch.Tensor]] = []  # each evaluation's row-weighted losses
            ctx.step(self._group_closure(ctx, group, losses))
            for loss in losses[0]:
                total += loss
        return {"loss": float(total) / ctx.num_examples}

    @staticmethod
    def _group_closure(ctx: EpochContext, group: range, losses: list[list[torch.Tensor]]
                       ) -> Callable[[], torch.Tensor]:
        """The closure of one step: the gradients of the batches in ``group`` (batches
        are moved to the device one at a time), as one batch of all their rows would give."""
        import torch

        rows = sum(ctx.batch_rows(i) for i in group)

        def closure() -> torch.Tensor:
            ctx.optimizer.zero_grad(set_to_none=True)
            weighted: list[torch.Tensor] = []
            for i in group:
                xb, yb = ctx.batch(i)
                # each batch weighs by its rows, as in one larger batch: the epoch's last
                # batch may be short
                loss = ctx.loss(ctx.net(xb), yb)
                (loss * (len(xb) / rows)).backward()
                weighted.append(loss.detach() * len(xb))
            losses.append(weighted)
            return torch.stack(weighted).sum() / rows

        return closure
