"""The training loop of ``TorchTrainable`` (imported only inside a torch worker).

Reproducibility and resume rest on one rule: everything random in an epoch (the shuffle order,
dropout) is drawn from generators seeded by ``(train_seed, epoch)``, never carried over from the
previous epoch. An epoch therefore depends only on the weights and optimizer state it starts
from, both of which a mid-training save keeps, so a resumed training ends exactly where the
uninterrupted one does.
"""

from __future__ import annotations

import copy
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from dryml import progress as dryml_progress
from dryml.errors import ConfigurationError
from dryml.models import split_validation, supervised_arrays
from dryml_torch._procedure import EpochContext

if TYPE_CHECKING:
    from dryml.data import Dataset
    from dryml.models import EarlyStopping
    from dryml_torch._procedure import TorchProcedure
    from dryml_torch.models import TorchTrainable

__all__ = ["context_device", "loss_inputs", "model_inputs", "probabilities", "run_training"]

_CHUNK = 4096  # rows per validation batch


def context_device() -> torch.device:
    """``cuda:N`` for the first GPU the torch context was granted, else the CPU."""
    from dryml.context import current_context

    ctx = current_context()
    if ctx is None:  # no context (a direct call): whatever this process can use
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    gpus = ctx.local_gpus("torch")
    if gpus and torch.cuda.is_available():
        return torch.device(f"cuda:{gpus[0]['ordinal']}")
    return torch.device("cpu")


_quiet = False


def _from_numpy(array: np.ndarray) -> torch.Tensor:
    """``torch.from_numpy``, without torch's warning that a tensor over a read-only array
    cannot protect it (such tensors are only read: the batches a network sees are copies).
    torch gives that warning once per process, so the warnings filters are changed around
    the first such call only: ``catch_warnings`` changes them for every thread while it runs
    (a filter another thread added meanwhile is lost)."""
    global _quiet  # noqa: PLW0603 - torch's own once-per-process state, mirrored
    if _quiet or array.flags.writeable:
        return torch.from_numpy(array)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The given NumPy array is not writable")
        tensor = torch.from_numpy(array)
    _quiet = True
    return tensor


def _param(net: torch.nn.Module) -> torch.Tensor | None:
    return next(iter(net.parameters()), None)


def model_inputs(net: torch.nn.Module, x: Any, on_device: bool = True,
                 batched: bool = False) -> torch.Tensor:
    """``x`` as a tensor of the network's floating dtype (on its device if ``on_device``),
    never over the caller's memory unless ``batched`` (the network sees copied batches of
    it): a network that works in place on its input (``ReLU(inplace=True)`` first) wrote
    into the array given to ``predict``, a read-only one too (torch ignores the flag; over a
    read-only memory map the process died)."""
    array = np.ascontiguousarray(x)
    p = _param(net)
    dtype = p.dtype if p is not None and array.dtype.kind == "f" else None
    # on a GPU the move to the device is the copy
    owned = batched or (on_device and p is not None and p.device.type != "cpu")
    if not owned and (array is x or array.base is not None or not array.flags.writeable):
        t = torch.tensor(array, dtype=dtype)  # one copy, converting as it copies
    else:  # a new array (x was a list, or not contiguous), or one only read from
        t = _from_numpy(array)
        if dtype is not None and t.dtype != dtype:
            t = t.to(dtype)
    if p is not None and on_device:
        t = t.to(p.device)
    return t


def probabilities(logits: torch.Tensor, independent: bool = False,
                  applied: str | None = None) -> torch.Tensor:
    """Class probabilities: softmax over classes; one logit (a column, or a 1-d output of one
    per row, as ``.squeeze(-1)`` gives) is a binary problem's sigmoid (not a softmax over the
    whole batch). ``independent`` (a network trained with ``BCEWithLogitsLoss``: each output
    its own yes/no, a multilabel problem) gives each of several outputs its sigmoid, which a
    softmax over them was not. ``applied`` (the network's own last layer, ``"Softmax"`` or
    ``"Sigmoid"``: :func:`final_activation`) means the outputs are probabilities already and
    are not squashed again."""
    if logits.ndim == 1:
        logits = logits.unsqueeze(-1)
    if logits.shape[-1] == 1:
        p = logits if applied is not None else torch.sigmoid(logits)
        return torch.cat([1 - p, p], dim=-1)
    if applied is not None:
        return logits
    return torch.sigmoid(logits) if independent else torch.softmax(logits, dim=-1)


def _class_indices(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
    """``y`` as int64 class indices when ``out`` has a column per class and ``y`` holds one
    label per row: ``(n,)`` or ``(n, 1)``, integers or whole-number floats (as the other
    backends take them); else None."""
    if out.ndim < 2 or out.shape[-1] < 2:
        return None
    if y.ndim == out.ndim and y.shape[-1] == 1:
        y = y.squeeze(-1)
    if y.ndim + 1 != out.ndim:
        return None
    if y.is_floating_point() and not bool(torch.all(y == torch.round(y))):
        return None
    return y.long()


def loss_inputs(out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Align outputs and targets: class labels as int64 indices (``(n,)`` or ``(n, 1)``,
    integers or whole-number floats); one output column for a 1-d target, and a one-column
    target for a 1-d output (otherwise (n,) outputs against (n, 1) targets would broadcast to
    n x n in MSELoss, and the model learn the mean)."""
    labels = _class_indices(out, y)
    if labels is not None:
        return out, labels
    if out.ndim == y.ndim + 1 and out.shape[-1] == 1:
        out = out.squeeze(-1)
    elif y.ndim == out.ndim + 1 and y.shape[-1] == 1:
        y = y.squeeze(-1)
    if out.is_floating_point() and y.dtype != out.dtype:
        y = y.to(out.dtype)
    return out, y


def _correct(out: torch.Tensor, y: torch.Tensor, loss_fn: Any) -> torch.Tensor:
    """How many rows the logits classify right; with several independent labels a row (a
    loss of a sigmoid per output), the fraction of its labels right, as Keras' accuracy
    counts them (the row's top output against its first label meant nothing)."""
    labels = _class_indices(out, y)
    if labels is not None:
        pred, true = out.argmax(-1), labels
    elif out.ndim == y.ndim + 1 or out.ndim == 1 or out.shape[-1] == 1:  # one logit per row
        pred, true = (out.reshape(len(out)) > 0).long(), y.reshape(len(y)).long()
    elif isinstance(loss_fn, _PER_LABEL_LOSSES) and out.shape == y.shape:
        right = (out > 0) == (y > 0.5)
        return right.reshape(len(out), -1).double().mean(-1).sum()
    else:  # one-hot or probability targets
        pred, true = out.argmax(-1), y.argmax(-1)
    return (pred == true).sum().double()


#: losses that take one logit per class (a column each) and class indices
_PER_CLASS_LOSSES = (torch.nn.CrossEntropyLoss, torch.nn.NLLLoss)
#: losses of independent labels, a logit each (multi-label classification)
_PER_LABEL_LOSSES = (torch.nn.BCEWithLogitsLoss, torch.nn.MultiLabelSoftMarginLoss)


def checked_loss_inputs(loss_fn: Any, out: torch.Tensor, y: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`loss_inputs`, refusing a per-class loss over one output per row: aligned to a
    1-d target, ``CrossEntropyLoss`` would take the whole batch as one example over as many
    classes as rows, and train on that without an error."""
    if isinstance(loss_fn, _PER_CLASS_LOSSES) and (out.ndim < 2 or out.shape[-1] == 1):
        raise ConfigurationError(
            f"{type(loss_fn).__name__} needs one output per class, but the network gives one "
            f"output per row (shape {tuple(out.shape)}): for a binary problem with one output "
            "use Loss('BCEWithLogitsLoss'), or give the last layer one output per class")
    return loss_inputs(out, y)


def final_activation(net: torch.nn.Module) -> str | None:
    """``"Softmax"`` or ``"Sigmoid"`` when the last layer of ``net`` (through nested
    ``Sequential``s) is one, else None."""
    last: torch.nn.Module = net
    while isinstance(last, torch.nn.Sequential) and len(last):
        last = last[-1]
    return type(last).__name__ if isinstance(last, (torch.nn.Softmax, torch.nn.Sigmoid)) else None


def check_classifier_network(net: torch.nn.Module) -> None:
    """Refuse to train a classifier network whose last layer is a ``Softmax`` or ``Sigmoid``:
    the loss takes logits, and applies the softmax or sigmoid itself (a network trained so
    before is predicted from its own outputs: see :func:`probabilities`)."""
    last = final_activation(net)
    if last is not None:
        raise ConfigurationError(
            f"a classifier network ends in logits, but this one ends in {last}: the loss "
            "(CrossEntropyLoss, BCEWithLogitsLoss) applies it itself, and predict gives "
            "probabilities; drop the last layer")


def _epoch_seed(seed: int, epoch: int) -> int:
    return int(np.random.SeedSequence([seed % 2**63, epoch]).generate_state(1, np.uint64)[0]
               >> 1)


def _validate(net: torch.nn.Module, loss_fn: Any, x: torch.Tensor, y: torch.Tensor,
              classifier: bool, device: torch.device) -> dict[str, float]:
    net.eval()
    total = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.float64, device=device)
    with torch.no_grad():
        for start in range(0, len(x), _CHUNK):
            xb, yb = x[start:start + _CHUNK].to(device), y[start:start + _CHUNK].to(device)
            if xb.untyped_storage().data_ptr() == x.untyped_storage().data_ptr():
                # a view (on the CPU): a network working in place on its input changed
                # the validation data of every later epoch
                xb = xb.clone()
            out = net(xb)
            total += loss_fn(*checked_loss_inputs(loss_fn, out, yb)).double() * len(xb)
            if classifier:
                correct += _correct(out, yb, loss_fn)
    net.train()
    logs = {"val_loss": float(total) / len(x)}
    if classifier:
        logs["val_accuracy"] = float(correct) / len(x)
    return logs


def _early_stop(model: TorchTrainable, stopper: EarlyStopping, net: torch.nn.Module,
                logs: dict[str, float], progress: dict[str, Any]) -> bool:
    """Track the best epoch (keeping its weights); whether patience ran out."""
    value = logs.get(stopper.monitor)
    if value is None:
        raise ConfigurationError(f"early stopping monitors {stopper.monitor!r}, which training "
                                 f"does not report; use one of {sorted(logs)}")
    if stopper.improved(value, progress.get("best")):
        progress.update(best=value, best_epoch=logs["epoch"], wait=0)
        if model._best is None:
            model._best = copy.deepcopy(net)
        else:
            model._best.load_state_dict(net.state_dict())
        return False
    progress["wait"] = int(progress.get("wait", 0)) + 1
    return bool(progress["wait"] >= stopper.rounds)


def _epoch_logs(procedure: TorchProcedure, logs: Any) -> dict[str, float]:
    """A procedure's epoch metrics, checked: a dict of names to numbers."""
    try:
        checked = {k: float(v) for k, v in logs.items() if isinstance(k, str)}
    except (AttributeError, TypeError, ValueError):
        checked = None
    if checked is None or len(checked) != len(logs) or "epoch" in checked:
        raise ConfigurationError(
            f"{type(procedure).__qualname__}.train_epoch must return a dict of metric names "
            f"to numbers such as {{'loss': 0.25}} (without 'epoch'), got {logs!r}")
    return checked


def _as_tensors(net: torch.nn.Module, x: np.ndarray, y: np.ndarray
                ) -> tuple[torch.Tensor, torch.Tensor]:
    # batches move to the device one at a time, copied (indexed with a tensor)
    tx = model_inputs(net, x, on_device=False, batched=True)
    return tx, torch.as_tensor(np.ascontiguousarray(y))


def run_training(model: TorchTrainable, net: torch.nn.Module, device: torch.device,
                 data: Dataset, valid: Dataset | None) -> None:
    """Train ``net`` from the epoch ``model.train_state.progress`` says, per ``model.spec``."""
    spec = model.spec
    x, y = supervised_arrays(data, "training")
    valid_xy: tuple[np.ndarray, np.ndarray] | None = None
    if valid is not None:
        valid_xy = supervised_arrays(valid, "validation")
    elif spec.validation_split > 0:
        (x, y), valid_xy = split_validation(x, y, spec.validation_split, spec.split_seed)
    tx, ty = _as_tensors(net, x, y)
    valid_t = _as_tensors(net, *valid_xy) if valid_xy is not None else None
    stopper = spec.early_stopping
    loss_fn = model.loss.build().to(device)
    if getattr(loss_fn, "reduction", "mean") not in ("mean", "batchmean"):
        # the loop, its logs and the procedures weigh each batch by its rows, as for a mean:
        # with "sum" loss and val_loss were on scales that differ by the batch size
        raise ConfigurationError(
            f"{type(loss_fn).__name__}(reduction={loss_fn.reduction!r}): dryml's training "
            "averages the loss over each batch's examples, so it takes the default "
            "reduction='mean' (or KLDivLoss' 'batchmean'; for the gradients of a sum, scale "
            "the learning rate by the batch size instead)")
    classifier = model.task == "classifier"
    if classifier:
        check_classifier_network(net)
    procedure = model.procedure
    state = model.train_state
    progress = state.progress
    first = int(progress.get("epoch", 0))
    epochs = range(first, spec.epochs)
    if stopper is not None and int(progress.get("wait", 0)) >= stopper.rounds:
        # saved at the very epoch that stopped (e.g. by on_epoch_end): nothing is left to run
        progress.setdefault("stopped_epoch", first)
        epochs = range(0)
    bar = dryml_progress.track(dryml_progress.label_of(model), framework="torch",
                               total=spec.epochs, initial=first)
    cuda = [device.index or 0] if device.type == "cuda" else []
    # Epochs reseed torch's generators; the caller's random state is restored afterwards.
    with torch.random.fork_rng(devices=cuda), bar:
        for epoch in epochs:
            seed = _epoch_seed(model.train_seed, epoch)
            torch.manual_seed(seed)  # dropout and other in-model randomness of this epoch
            order = (torch.randperm(len(tx), generator=torch.Generator().manual_seed(seed))
                     if spec.shuffle else torch.arange(len(tx)))
            ctx = EpochContext(model, net, model._opt, loss_fn, device, tx, ty, order,
                               spec.batch_size, epoch, seed)
            # in training mode whatever ran last (a predict in on_epoch_end sets eval mode):
            # a procedure of one's own would otherwise train with dropout off
            net.train()
            logs = {"epoch": epoch + 1, **_epoch_logs(procedure, procedure.train_epoch(ctx))}
            if valid_t is not None:
                logs.update(_validate(net, loss_fn, *valid_t, classifier, device))
            state.history.append(logs)
            progress["epoch"] = epoch + 1
            stop = stopper is not None and _early_stop(model, stopper, net, logs, progress)
            bar.update(epoch + 1, {k: v for k, v in logs.items() if k != "epoch"})
            model.on_epoch_end(dict(logs))
            if stop and stopper is not None:
                progress["stopped_epoch"] = epoch + 1
                best = progress.get("best")  # none when the monitor was NaN in every epoch
                bar.status(dryml_progress.early_stopping_message(
                    "epoch", epoch + 1, stopper.monitor, None if best is None else float(best),
                    None if best is None else int(progress["best_epoch"])))
                break
    if model._best is not None:  # end with the best weights seen
        net.load_state_dict(model._best.state_dict())
        model._best = None
