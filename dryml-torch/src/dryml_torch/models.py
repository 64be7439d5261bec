"""PyTorch models from reusable components: networks, optimizers, losses, ``TorchTrainable``.

Every component holds only plain values (layer class names and their keyword arguments), so a
definition is JSON, can be selected with a Selector and searched over, and building it imports
no torch: torch is imported inside the methods that run in a torch worker.

>>> from dryml.models import EarlyStopping, TrainSpec
>>> from dryml_torch.models import Loss, Optimizer, Sequential, TorchTrainable
>>> net = Sequential([("Linear", {"in_features": 4, "out_features": 16}), ("ReLU", {}),
...                   ("Linear", {"in_features": 16, "out_features": 3})])
>>> model = TorchTrainable(net, Optimizer("Adam", lr=1e-2), Loss("CrossEntropyLoss"),
...                        TrainSpec(epochs=20, validation_split=0.2,
...                                  early_stopping=EarlyStopping(patience=3), seed=0))
>>> model.task
'classifier'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from dryml._object import Object
from dryml._objectdef import ObjectDef
from dryml.errors import ConfigurationError, FormatError
from dryml.models import Trainable, TrainSpec, starts_over
from dryml_torch._procedure import (
    EpochContext,
    GradientAccumulation,
    MixupProcedure,
    TorchProcedure,
)

if TYPE_CHECKING:
    import torch

    from dryml.data import Dataset
    from dryml.format import LoadStore, SaveStore, StoredValue

__all__ = ["EpochContext", "GradientAccumulation", "Loss", "MixupProcedure", "Network",
           "Optimizer", "Sequential", "TorchProcedure", "TorchTrainable"]

TASKS = ("classifier", "regressor")


_NAMESPACES = {"layer": "torch.nn.modules", "loss": "torch.nn.modules",
               "optimizer": "torch.optim"}
_EXAMPLES = {"layer": "Linear", "loss": "MSELoss", "optimizer": "Adam"}


def _torch_class(what: str, name: str) -> Any:
    """The layer / loss (``torch.nn.modules``) or optimizer (``torch.optim``) class ``name``.

    ``name`` may come from a file, so it is resolved only through dryml's trust rules
    (:meth:`~dryml.backend.TrustPolicy.resolve_named_class`): a plain class name, looked up in
    a framework module this backend declares, defined under it and of the right base class.
    Nothing is imported because of the name: never e.g. ``DataParallel`` (``torch.nn.parallel``
    joins process groups), a test module, or a function that happens to live there.
    """
    import torch

    from dryml.backend import TrustPolicy
    from dryml.errors import ClassNotFoundError, UntrustedClassError

    namespace = _NAMESPACES[what]
    base = torch.optim.Optimizer if what == "optimizer" else torch.nn.Module
    hint = (f"{what} {name!r} is not a class of {namespace}; use a class name such as "
            f"{_EXAMPLES[what]!r}")
    if not isinstance(name, str) or not name.isidentifier():
        raise ConfigurationError(hint)
    try:
        cls = TrustPolicy().resolve_named_class(f"{namespace}:{name}", base=base)
    except (UntrustedClassError, ClassNotFoundError) as exc:
        raise ConfigurationError(f"{hint} ({exc})") from None
    if cls.__module__ != namespace and not cls.__module__.startswith(namespace + "."):
        raise ConfigurationError(f"{hint} (it is defined in {cls.__module__})")
    return cls


def _check_kwargs(kwargs: Any, where: str) -> dict[str, Any]:
    if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
        raise ConfigurationError(f"{where}: keyword arguments must be a dict with str keys, "
                                 f"got {kwargs!r}")
    return dict(kwargs)


class Network(Object):
    """Base of network components: :meth:`build` returns a new ``torch.nn.Module``.

    Subclass it for a custom architecture; keep constructor arguments plain (sizes, names) and
    import torch inside ``build``, so the definition stays framework-free::

        class MLP(Network):
            def __init__(self, width: int):
                self.width = width

            def build(self):
                import torch
                return torch.nn.Sequential(torch.nn.Linear(4, self.width), torch.nn.ReLU(),
                                           torch.nn.Linear(self.width, 3))
    """

    def build(self) -> torch.nn.Module:
        """A freshly initialized module (override)."""
        raise NotImplementedError(f"{type(self).__qualname__} does not implement build()")


class Sequential(Network):
    """``torch.nn.Sequential`` from ``(layer class name, kwargs)`` pairs.

    >>> Sequential([("Linear", {"in_features": 8, "out_features": 2}), ("Softplus", {})])
    ... # doctest: +ELLIPSIS
    {...}

    Names are classes of ``torch.nn`` (``"Linear"``, ``"Conv2d"``, ``"ReLU"``, ``"Dropout"``,
    ``"BatchNorm1d"``, ``"Flatten"``...), checked when the module is built.
    """

    def __init__(self, layers: Sequence[Any]) -> None:
        if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence) or not layers:
            raise ConfigurationError("Sequential needs a non-empty list of (layer class name, "
                                     "kwargs) pairs")
        checked: list[tuple[str, dict[str, Any]]] = []
        for i, layer in enumerate(layers):
            if (not isinstance(layer, Sequence) or isinstance(layer, str) or len(layer) != 2
                    or not isinstance(layer[0], str)):
                raise ConfigurationError(
                    f"Sequential layer {i} must be a (class name, kwargs) pair such as "
                    f"('Linear', {{'in_features': 4, 'out_features': 8}}), got {layer!r}")
            checked.append((layer[0], _check_kwargs(layer[1], f"Sequential layer {i}")))
        self.layers = checked

    def build(self) -> torch.nn.Module:
        """The ``torch.nn.Sequential`` of the layers, freshly initialized."""
        import torch

        return torch.nn.Sequential(*(
            _torch_class("layer", name)(**kwargs)
            for name, kwargs in self.layers))


class Optimizer(Object):
    """A ``torch.optim`` optimizer by class name, e.g. ``Optimizer("Adam", lr=1e-3)``.

    Any optimizer class of ``torch.optim`` (``"SGD"``, ``"AdamW"``, ``"Adafactor"``,
    ``"LBFGS"``...): the shipped procedures step through :meth:`EpochContext.step`, so an
    optimizer that evaluates the loss several times a step (``LBFGS``) trains too. Arguments
    the optimizer refuses are a ConfigurationError when it is built.
    """

    def __init__(self, name: str = "Adam", **kwargs: Any) -> None:
        if not isinstance(name, str):
            raise ConfigurationError(f"Optimizer name must be a str such as 'Adam', got {name!r}")
        self.name, self.kwargs = name, kwargs

    def build(self, params: Any) -> torch.optim.Optimizer:
        """The optimizer over ``params``."""
        cls = _torch_class("optimizer", self.name)
        try:
            return cls(params, **self.kwargs)  # type: ignore[no-any-return]
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"Optimizer({self.name!r}) with {self.kwargs!r} cannot be "
                                     f"built over the network's parameters: {exc}") from None


#: Losses that take probabilities, not logits: refused for a classifier (see TorchTrainable).
_TAKE_PROBABILITIES = ("BCELoss",)


class Loss(Object):
    """A ``torch.nn`` loss by class name, e.g. ``Loss("CrossEntropyLoss", label_smoothing=0.1)``.

    A classifier's loss takes the network's logits; ``predict`` applies the softmax, or the
    sigmoid for a single output, or with ``"BCEWithLogitsLoss"`` and several outputs (a
    multilabel network: each output its own yes/no) the sigmoid of each output.
    """

    def __init__(self, name: str, **kwargs: Any) -> None:
        if not isinstance(name, str):
            raise ConfigurationError(f"Loss name must be a str such as 'MSELoss', got {name!r}")
        self.name, self.kwargs = name, kwargs

    def build(self) -> torch.nn.Module:
        """The loss module."""
        return _torch_class("loss", self.name)(**self.kwargs)  # type: ignore[no-any-return]


def _build_network(network: Any) -> torch.nn.Module:
    """The module of a network component: a Network, an ObjectDef of one, or an Object that
    holds its module as ``.module``."""
    import torch

    if isinstance(network, ObjectDef):
        network = network.build()
    module = (network.build() if isinstance(network, Network)
              else getattr(network, "module", None))
    if not isinstance(module, torch.nn.Module):
        raise ConfigurationError(
            f"the network {type(network).__qualname__} gave no torch.nn.Module; pass a "
            "Sequential, a Network subclass whose build() returns a module, or an Object "
            "(or its ObjectDef) holding the module as .module")
    return module


#: why stored weights may not fit the network the arguments build: the file, or the code
_CHANGED = ("; the file is damaged or was crafted, or the network's code (a Network "
            "subclass's build) now builds other layers than when it was saved")


def _check_stored_shapes(network: Any, state: Any) -> None:
    """FormatError unless ``state`` has the entries and shapes of the module ``network``
    builds, learned on the meta device (no memory for the weights) before the real build:
    a file's layer sizes (say a width of 10**12) must not allocate before they are refused.
    A network that cannot be built on the meta device is checked by ``load_state_dict``."""
    import torch

    try:
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            expected = _build_network(network).state_dict()
    except Exception:  # noqa: BLE001 - user build code may need real tensors; checked later
        return
    if not isinstance(state, Mapping) or set(state) != set(expected):
        raise FormatError("the file's stored weights do not name the parameters of the network "
                          f"its arguments build{_CHANGED}")
    for name, want in expected.items():
        have = state[name]
        if (isinstance(want, torch.Tensor) and not torch.nn.parameter.is_lazy(want)
                and (not isinstance(have, torch.Tensor) or have.shape != want.shape)):
            got = tuple(have.shape) if isinstance(have, torch.Tensor) else type(have).__name__
            raise FormatError(f"the file's stored {name!r} has shape {got} where the network "
                              f"its arguments build has {tuple(want.shape)}{_CHANGED}")


class TorchTrainable(Trainable):
    """A torch network trained from components: ``network``, ``optimizer``, ``loss``, ``spec``.

    * ``network``: a :class:`Sequential`, a :class:`Network` subclass, or an ``ObjectDef`` of an
      Object holding a custom ``torch.nn.Module`` as ``.module`` (built in the worker).
    * ``optimizer`` (default ``Optimizer("Adam", lr=1e-3)``), ``loss`` (default
      ``CrossEntropyLoss`` for classifiers, ``MSELoss`` for regressors), ``spec`` (a
      :class:`~dryml.models.TrainSpec`: epochs, batch size, validation split, early stopping,
      seed, shuffle).
    * ``task``: ``"classifier"`` (``predict`` gives class probabilities) or ``"regressor"``;
      a network of a dtype numpy lacks (``bfloat16``, ``float8``) predicts ``float32``.
    * ``procedure``: how each epoch trains, a :class:`TorchProcedure` (the default: one
      optimizer step per minibatch), e.g. :class:`MixupProcedure` or
      :class:`GradientAccumulation`, or your own subclass. dryml's epoch loop around it does
      validation, early stopping, history, progress, resume and the per-epoch seeds.

    Training runs on the device of the torch compute context (``cuda:N`` when the context was
    granted a GPU, else the CPU), shows a progress bar (epoch, loss, validation metrics) on
    stderr, and is deterministic for a given ``train_seed``. While training, the saved state
    holds the optimizer and the early-stopping best weights, so a training saved mid-way
    resumes where it stopped and ends as the uninterrupted one would.
    """

    dry_framework: ClassVar[str] = "torch"

    def __init__(self, network: Any, optimizer: Optimizer | None = None,
                 loss: Loss | None = None, spec: TrainSpec | None = None,
                 task: str = "classifier", procedure: TorchProcedure | None = None) -> None:
        if task not in TASKS:
            raise ConfigurationError(f"task must be 'classifier' or 'regressor', got {task!r}")
        if procedure is not None and not isinstance(procedure, TorchProcedure):
            raise ConfigurationError(
                f"procedure must be a TorchProcedure (e.g. MixupProcedure(0.2) or a subclass "
                f"of TorchProcedure), got {type(procedure).__qualname__}")
        if not isinstance(network, (Object, ObjectDef)):
            raise ConfigurationError(
                f"network must be a dryml Object (e.g. Sequential) or ObjectDef, got "
                f"{type(network).__qualname__}")
        self.network = network
        self.optimizer = optimizer if optimizer is not None else Optimizer("Adam", lr=1e-3)
        self.loss = loss if loss is not None else Loss(
            "CrossEntropyLoss" if task == "classifier" else "MSELoss")
        if task == "classifier" and getattr(self.loss, "name", None) in _TAKE_PROBABILITIES:
            # otherwise predict would apply the sigmoid a second time, so every
            # probability would lie in [0.5, 0.73] and the scores be wrong without a word
            raise ConfigurationError(
                f"a classifier's loss takes the network's logits (predict applies the sigmoid "
                f"or softmax), but {self.loss.name} takes probabilities: use "
                "Loss('BCEWithLogitsLoss') and end the network without a Sigmoid")
        self.spec = spec if spec is not None else TrainSpec()
        self.task = task  # type: ignore[misc]
        self.procedure = procedure if procedure is not None else TorchProcedure()
        self._net: Any = None
        self._opt: Any = None
        self._best: Any = None
        # State loaded from a file, still encoded: decoded (torch imported) on first use, so
        # a process that only holds, saves or forwards the model never imports torch.
        self._stored: dict[str, StoredValue] = {}

    # -- torch state --------------------------------------------------------------------------
    def _ensure_net(self) -> Any:
        if self._net is None:
            import torch

            stored = {name: value.load() for name, value in self._stored.items()}
            if "model" in stored:  # before any memory is spent on the file's layer sizes
                _check_stored_shapes(self.network, stored["model"])
            # The initial weights follow the seed; the caller's random state is left as it was.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.train_seed)
                net = _build_network(self.network)
            self._restore(net, stored)  # the model is unchanged when this raises
            self._net, self._stored = net, {}
        return self._net

    def _restore(self, net: Any, stored: dict[str, Any]) -> None:
        """Load the stored weights (and optimizer / best weights of a resumable training)."""
        opt = best = None
        try:
            if "model" in stored:
                # Rebuilt from the arguments, then the weights restored (docs/backends.md): no
                # code comes from the file.
                net.load_state_dict(stored["model"])
            if "optimizer" in stored:
                opt = self.optimizer.build(net.parameters())
                opt.load_state_dict(stored["optimizer"])
            if "best_model" in stored:
                import copy

                best = copy.deepcopy(net)
                best.load_state_dict(stored["best_model"])
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            raise FormatError(f"the file's stored state does not fit the network its "
                              f"arguments build ({exc}){_CHANGED}") from None
        self._opt, self._best = opt, best

    def _place(self, device: Any, optimizer: bool) -> Any:
        """The network on ``device`` (and its optimizer, when asked, with its state there)."""
        net = self._ensure_net()
        moved = next(iter(net.parameters()), None)
        if moved is not None and moved.device != device:
            state = self._opt.state_dict() if self._opt is not None else None
            net.to(device)
            if state is not None:  # rebuilt so its state follows the parameters' device
                self._opt = self.optimizer.build(net.parameters())
                self._opt.load_state_dict(state)
            if self._best is not None:
                self._best.to(device)
        if optimizer and self._opt is None:
            self._opt = self.optimizer.build(net.parameters())
        return net

    def save_object_imp(self, store: SaveStore) -> None:
        if self._net is None:  # never used here: the loaded state goes back as it was read
            for name, value in self._stored.items():
                store.put(name, value)
            return
        store.put("model", self._net)
        if self.train_state.status == "training":  # what a resumed training needs
            if self._opt is not None:
                store.put("optimizer", self._opt)
            if self._best is not None:
                store.put("best_model", self._best)

    def load_object_imp(self, store: LoadStore) -> None:
        self._net = self._opt = self._best = None
        self._stored = {name: store.get_deferred(name)
                        for name in ("model", "optimizer", "best_model") if name in store}

    # -- Trainable ----------------------------------------------------------------------------
    def prep_train(self) -> None:
        if self._net is not None:
            self._net.train()

    def prep_eval(self) -> None:
        if self._net is not None:
            self._net.eval()

    def fit(self, data: Dataset, valid: Dataset | None) -> None:
        from dryml_torch._models_loop import context_device, run_training

        if starts_over(self.train_state):  # raised part-way: weights from mid-epoch
            self._net = self._opt = self._best = None
            self._stored = {}
            self.train_state.history, self.train_state.progress = [], {}
        device = context_device()
        net = self._place(device, optimizer=True)
        run_training(self, net, device, data, valid)

    def on_epoch_end(self, logs: dict[str, float]) -> None:
        """Called after each epoch (its ``logs``: epoch, loss, validation metrics); override to
        log or to checkpoint, e.g. ``save_object(self, path)``: a file saved here resumes from
        this epoch when loaded and trained again."""

    def predict(self, x: Any) -> Any:
        import torch

        from dryml_torch._codecs import numpy_of
        from dryml_torch._models_loop import (
            context_device,
            final_activation,
            model_inputs,
            probabilities,
        )

        net = self._place(context_device(), optimizer=False)
        net.eval()
        with torch.no_grad():
            out = net(model_inputs(net, x))
        if self.task == "classifier":
            out = probabilities(out, getattr(self.loss, "name", None) == "BCEWithLogitsLoss",
                                final_activation(net))
        elif out.ndim > 1 and out.shape[-1] == 1:
            out = out.squeeze(-1)
        return numpy_of(out)
