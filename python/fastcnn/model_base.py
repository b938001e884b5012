"""What every fastcnn model shares: :class:`Model`, the base of the graph models
(:class:`fastcnn.functional.Functional`) and of :class:`fastcnn.Sequential` (a stack), as in
Keras: ``fastcnn.Model(inputs, outputs)`` returns a ``Functional`` (:meth:`Model.__new__`), and
``isinstance(m, fastcnn.Model)`` holds for both kinds.

The shared machinery lives here once: the compile settings, the weights (``weights``,
``trainable_weights``, ``get_weights`` / ``set_weights``, ``parameters()`` for the
optimizers), ``get_layer``, ``count_params`` / ``flops``, ``summary`` (Keras' table; a graph
adds Keras' "Connected to" column), input conversion (``_input``, ``_on_device``), ``model(x)``
and ``to(device)``; the layer protocol (a model as a layer of another) from
:class:`fastcnn._model_layer.ModelAsLayer`. ``fit`` / ``evaluate`` / ``predict`` come from
:class:`fastcnn.trainer.Trainer`, the files from :class:`fastcnn.saving.Saveable`, ``export``
from :class:`fastcnn.onnx.Exportable`, which never import a model class.

What a subclass provides (the structure): ``layers`` (every layer once, in the order their
weights are created), ``build``, ``_ensure_built(x)``, ``input_shape`` / ``output_shape``,
``_forward(x, training, logits)``, ``backward(dy, accumulate, compute_dx)``,
``_output_layer()`` (the layer whose activation a loss may fuse), ``_nodes()`` (the graph as
``(layer, input node indices)`` for the exporters), ``get_config`` / ``from_config``.
See :mod:`fastcnn.model` for the devices, the frozen layers and the custom loops.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _device, _workspace
from . import layers as _layers
from . import losses as _losses
from . import metrics as _metrics
from . import optimizers as _optimizers
from ._arrays import as_array, assign, host_copy, is_cupy, restore_kind
from ._arrays import move as _device_move
from ._model_layer import ModelAsLayer
from .layers import symbolic as _symbolic
from .onnx import Exportable
from .saving import Saveable
from .trainer import Trainer

if TYPE_CHECKING:
    from .callbacks import History

__all__ = ["Model"]


class Model(Trainer, Saveable, Exportable, ModelAsLayer, _layers.Layer):
    """A fastcnn model (Keras' ``Model``): ``Model(inputs, outputs)`` builds a graph of layers
    (the functional API) and returns a :class:`~fastcnn.functional.Functional`;
    :class:`fastcnn.Sequential` is the other kind. This class holds what both share (see the
    module docstring).

    Args:
        inputs: the ``fastcnn.Input(shape)`` tensor (or a list of one).
        outputs: the tensor the model returns, made by layers called on ``inputs``.
        name: shown by :meth:`summary` (``"model"``).
        seed: seed of the weight initialisation (see ``Functional``).

    A model is also a layer (Keras' nested models): called on a symbolic tensor inside
    another ``Model(inputs, outputs)``, or put into a :class:`fastcnn.Sequential`, it is one
    node / one layer of the outer model, the same object (its weights are shared, trained by
    the outer model's ``fit``, listed as ``"<model>/<layer>/<param>"``, saved as its nested
    config). A model that is already built keeps its weights there (the outer seed builds
    only an unbuilt one). ``model.trainable = False`` freezes all its layers. A model with
    several outputs gives one symbolic tensor per output (a list, or a dict by name), to
    unpack or index as in Keras.
    """

    default_name = "model"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__module__.startswith("fastcnn.") and cls.__name__ in ("Sequential",
                                                                     "Functional"):
            _layers.register_layer(cls)  # a nested model's config names its class

    def __new__(cls, *args: Any, **kwargs: Any) -> Model:
        if cls is Model:  # Model(inputs, outputs): the functional API (Keras' dispatch)
            if not args and "inputs" not in kwargs:
                raise TypeError("Model: pass inputs and outputs, Model(inputs, outputs) with "
                                "inputs = fastcnn.Input(shape) (subclassing Model is not "
                                "supported; use fastcnn.Sequential for a stack)")
            cls = _subclass_named(Model, "Functional")
        return super().__new__(cls)

    layers: list[_layers.Layer]
    input_shape: tuple[int, ...] | None
    built: bool

    def _init_model(self, name: str, seed: int | None) -> None:
        """The attributes every model has, before its layers."""
        self.name = name
        self.seed = seed
        self.layers = []
        self.input_shape = None
        self.built = False
        self.optimizer: _optimizers.Optimizer | None = None
        self.loss: _losses.Loss | None = None
        self.metrics: list[_metrics.Metric] = []
        #: metrics weighted by fit / evaluate's sample and class weights (Keras)
        self.weighted_metrics: list[_metrics.Metric] = []
        self.stop_training = False
        self.device = "cpu"
        self.history: History | None = None
        #: JSON-serialisable facts saved with the model (e.g. class names and preprocessing,
        #: which ``fastcnn predict`` reads).
        self.metadata: dict[str, Any] = {}
        self._rng = np.random.default_rng(seed)
        # the layer protocol (a model used as a layer of another model)
        self._trainable = True
        self.compute_dx = True
        self._auto_name = name in ("model", "sequential")  # renamed if taken in an outer graph

    @property
    def workspace(self) -> _workspace.Workspace:
        """The model's reused output buffers (:mod:`fastcnn._workspace`): its layers draw their
        large CPU outputs and gradients from it while the model runs, so steady-state steps
        allocate (and page-fault) nothing large. ``model.workspace.enabled = False`` turns it
        off for this model; ``model.workspace.clear()`` frees its free buffers now; its
        buffers go with the model."""
        pool = self.__dict__.get("_workspace")
        if pool is None:
            pool = self.__dict__["_workspace"] = _workspace.Workspace()
        return pool

    # -- what the structure provides ----------------------------------------------------------
    def _output_layer(self) -> _layers.Layer:
        """The layer that makes the output (whose activation a loss may fuse); the model has
        layers."""
        raise NotImplementedError

    def _forward(self, x: Any, training: bool, logits: bool) -> Any:
        raise NotImplementedError

    def _ensure_built(self, x: Any) -> None:
        raise NotImplementedError

    def _connections(self) -> list[list[str]] | None:
        """Per layer of :attr:`layers`, the "Connected to" entries of :meth:`summary` (None:
        no such column, as for a Sequential)."""
        return None

    def get_layer(self, name: str | None = None, index: int | None = None) -> _layers.Layer:
        """The layer called ``name``, or at position ``index`` in :attr:`layers` (negative
        counts from the end); pass exactly one of the two (Keras' ``get_layer``).

        Raises:
            ValueError: both or neither given, no layer of that name (the message lists the
                names there are) or an index out of range.
            TypeError: ``name`` not a string, ``index`` not an int.
        """
        if (name is None) == (index is None):
            raise ValueError(f"get_layer: pass exactly one of name= and index=, got "
                             f"name={name!r}, index={index!r}")
        if index is not None:
            if isinstance(index, bool) or not isinstance(index, int | np.integer):
                raise TypeError(f"get_layer: index must be an int, got {index!r}")
            n = len(self.layers)
            if not -n <= index < n:
                raise ValueError(f"get_layer: index {index} is out of range for a model of "
                                 f"{n} layer(s) (valid: {-n} to {n - 1})" if n else
                                 f"get_layer: index {index}: the model has no layers")
            return self.layers[index]
        if not isinstance(name, str):
            raise TypeError(f"get_layer: name must be a string, got {name!r}")
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"get_layer: no layer named {name!r}; the model's layers are "
                         f"{[lay.name for lay in self.layers]}")

    def _require_built(self) -> None:
        if not self.built:
            raise ValueError("the model is not built: pass input_shape=(C, H, W) to "
                             "Sequential or call build(), fit() or the model first")

    # -- weights ----------------------------------------------------------------------------
    def named_parameters(self) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """Yield ``("<layer>/<param>", param, grad)`` for every trainable weight."""
        for layer in self.layers:
            for k, p, g in layer.named_parameters():
                yield f"{layer.name}/{k}", p, g

    def parameters(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(param, grad)`` pairs of the trainable weights; optimizers update the
        ``param`` arrays in place."""
        for _, p, g in self.named_parameters():
            yield p, g

    def _all_weights(self) -> dict[str, np.ndarray]:
        return {f"{layer.name}/{k}": p for layer in self.layers for k, p in layer.params.items()}

    @property
    def weights(self) -> list[Any]:
        """Every weight (trainable or not), layer by layer, each layer's in ``params`` order
        (kernel, bias): Keras' ``model.weights``. These are the model's own arrays on its
        device (NumPy, or CuPy after ``to("cuda")``), not copies: writing into one changes the
        model (:meth:`get_weights` gives NumPy copies). Empty before the model is built."""
        return [p for layer in self.layers for p in layer.params.values()]

    @property
    def trainable_weights(self) -> list[Any]:
        """The weights of the layers with ``trainable=True``, in :attr:`weights` order (what
        the optimizer updates: the arrays of :meth:`parameters`)."""
        return [p for _, p, _ in self.named_parameters()]

    @property
    def non_trainable_weights(self) -> list[Any]:
        """The weights of the frozen layers (``trainable=False``) and the layers' state
        (BatchNormalization's moving statistics), in :attr:`weights` order."""
        return [p for layer in self.layers for k, p in layer.params.items()
                if not layer.trainable or k in layer.non_trainable_keys]

    def get_weights(self) -> list[np.ndarray]:
        """Copies of all weights (trainable or not), layer by layer, as NumPy arrays (also for
        a model on the GPU)."""
        return [host_copy(p) for p in self._all_weights().values()]

    def set_weights(self, weights: list[np.ndarray]) -> None:
        """Assign all weights in :meth:`get_weights` order (every shape checked first)."""
        self._require_built()
        current = list(self._all_weights().items())
        weights = list(weights)
        if len(weights) != len(current):
            raise ValueError(f"set_weights: expected {len(current)} arrays, got {len(weights)}")
        for (k, p), w in zip(current, weights, strict=True):
            shape = tuple(w.shape) if is_cupy(w) else np.shape(w)
            if shape != p.shape:
                raise ValueError(f"set_weights: {k!r} has shape {p.shape}, got {shape}")
        for (_, p), w in zip(current, weights, strict=True):
            assign(p, w)

    def count_params(self) -> int:
        """Number of scalars in all weights (Keras' total)."""
        self._require_built()
        return sum(layer.count_params() for layer in self.layers)

    @property
    def flops(self) -> int:
        """Forward FLOPs per sample (sum over layers)."""
        self._require_built()
        return sum(layer.flops for layer in self.layers)

    # -- summary ----------------------------------------------------------------------------
    def summary(self, print_fn: Any = None, show_trainable: bool = False) -> None:
        """Print a Keras-style table: layer (type), output shape, params, forward FLOPs per
        sample, then total / trainable / non-trainable parameter counts (a frozen layer's,
        ``trainable=False``, count as non-trainable). A graph :class:`fastcnn.Model` adds
        Keras' "Connected to" column: the tensors each layer is called on, as
        ``<layer>[<call>][0]`` (one per line; ``-`` for an input). ``show_trainable=True`` adds
        Keras' "Trainable" column: Y, N (frozen), or - for a layer without weights."""
        self._require_built()
        print_fn = print_fn or print
        head: tuple[str, ...] = ("Layer (type)", "Output Shape", "Param #", "FLOPs")
        groups: list[list[tuple[str, ...]]] = []  # per layer: its row, then continuation rows
        for layer in self.layers:
            shape = "(None, " + ", ".join(str(s) for s in layer.output_shape) + ")"  # type: ignore[union-attr]
            groups.append([(f"{layer.name} ({type(layer).__name__})", shape,
                            f"{layer.count_params():,}", f"{layer.flops:,}")])
        connections = self._connections()
        if connections is not None:
            head = (*head, "Connected to")
            for g, conn in zip(groups, connections, strict=True):
                conn = conn or ["-"]
                g[0] = (*g[0], conn[0] + ("," if len(conn) > 1 else ""))
                g.extend(("", "", "", "", c + ("," if i < len(conn) - 2 else ""))
                         for i, c in enumerate(conn[1:]))
        if show_trainable:
            head = (*head, "Trainable")
            for g, lay in zip(groups, self.layers, strict=True):
                flag = ("Y" if lay.trainable else "N") if lay.params else "-"
                g[:] = [(*r, flag if i == 0 else "") for i, r in enumerate(g)]
        rows = [head, *(r for g in groups for r in g)]
        widths = [max(len(r[i]) for r in rows) + 3 for i in range(len(head))]
        width = sum(widths)

        def line(r: tuple[str, ...]) -> str:
            return "".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()

        total = self.count_params()
        trainable = sum(lay.count_trainable_params() for lay in self.layers)
        print_fn(f'Model: "{self.name}"')
        print_fn("_" * width)
        print_fn(line(head))
        print_fn("=" * width)
        for i, g in enumerate(groups):
            for r in g:
                print_fn(line(r))
            print_fn(("_" if i < len(groups) - 1 else "=") * width)
        print_fn(f"Total params: {total:,} ({_readable_bytes(4 * total)})")
        print_fn(f"Trainable params: {trainable:,} ({_readable_bytes(4 * trainable)})")
        print_fn(f"Non-trainable params: {total - trainable:,} "
                 f"({_readable_bytes(4 * (total - trainable))})")
        print_fn(f"Forward FLOPs per sample: {self.flops:,}")
        print_fn("_" * width)

    # -- running ----------------------------------------------------------------------------
    @property
    def output_fused(self) -> bool:
        """True when the last layer's activation is fused into the compiled loss (softmax
        with a cross-entropy, sigmoid with binary cross-entropy)."""
        if self.loss is None or not self.layers or self.loss.from_logits:
            return False
        last = self._output_layer()
        act = getattr(last, "activation", None) if last.has_activation else None
        return act is not None and act == self.loss.fused_activation

    def _input(self, x: Any, who: str, name: str = "x") -> Any:
        """``x`` as a C-contiguous float32 array: NumPy (lists, CPU tensors and other CPU
        arrays converted, zero-copy when they already are C-contiguous float32), or a CuPy array
        (CUDA tensors viewed through DLPack) when the model is on the GPU (TypeError on the
        CPU). A tensor that requires grad is a TypeError (:mod:`fastcnn._arrays`)."""
        a = as_array(x, name, who)
        if is_cupy(a):
            if self.device != "cuda":
                raise TypeError(f"{who}: got a GPU array ({type(x).__module__}."
                                f"{type(x).__name__}) but the model is on the CPU; call "
                                f"model.to('cuda') or pass CPU arrays ({name}.cpu() for a "
                                f"tensor, cupy.asnumpy({name}) for a cupy array)")
            import cupy

            return cupy.ascontiguousarray(a, dtype=np.float32)
        return np.ascontiguousarray(a, dtype=np.float32)

    def _on_device(self, a: Any) -> Any:
        """``a`` on the model's device (a NumPy array uploaded when the model is on the GPU)."""
        if self.device == "cuda" and a is not None and not is_cupy(a):
            import cupy

            return cupy.asarray(a)
        return a

    def __call__(self, x: Any, training: bool = False, logits: Any = False) -> Any:
        """Forward pass: ``x`` (N, *input_shape) -> output (N, *output_shape), float32; for
        several inputs / outputs a list (or dict) of arrays in, a list (or dict) out. On a
        symbolic tensor (inside ``fastcnn.Model(inputs, outputs)``) it records the model as
        one layer of the outer graph and returns the output's symbolic tensor.

        Args:
            training: cache what :meth:`backward` needs and apply Dropout.
            logits: skip the last layer's activation (return its pre-activation values).
        """
        if _symbolic.is_symbolic(x):
            if getattr(self, "_multi_out", False):
                raise ValueError(f"model {self.name!r} has several outputs "
                                 f"{getattr(self, 'output_names', [])}: it can't be called as "
                                 f"a layer of another model yet (a layer gives one tensor); "
                                 f"build the outer graph from its layers or split it")
            return _symbolic.call_symbolic(self, x)
        xa = self._input(x, "model(x)")
        self._ensure_built(xa)
        like = x[0] if isinstance(x, list | tuple) and x else x
        return self._present(restore_kind(self._forward(self._on_device(xa), training, logits),
                                          like))

    def _present(self, outs: Any) -> Any:
        """The forward's result as the user gets it (a graph with dict outputs: a dict)."""
        return outs

    def _targets(self, y: Any, who: str) -> Any:
        """The labels of a batch as the compiled loss takes them (one array here; a graph
        with several outputs: one per output)."""
        return as_array(y, "y", who)

    def _pack_data(self, x: Any, y: Any = None, class_weight: Any = None) -> tuple[Any, Any]:
        """``fit`` / ``evaluate`` / ``predict``'s arrays as the batching slices them (as they
        are here; a graph with several inputs / outputs packs its lists and dicts)."""
        return x, y

    # -- compile --------------------------------------------------------------------
    def compile(self, optimizer: Any = "rmsprop", loss: Any = None, metrics: Any = None,
                weighted_metrics: Any = None, loss_weights: Any = None) -> None:
        """Set the optimizer (object or ``"sgd"``/``"adam"``/``"adamw"``/``"rmsprop"``), the
        loss (``"sparse_categorical_crossentropy"``, ``"categorical_crossentropy"``,
        ``"binary_crossentropy"``, ``"mse"``, a Loss or a loss function), metrics
        (``["accuracy", "top_k", ...]``; see :mod:`fastcnn.metrics`) and weighted metrics:
        those that ``fit`` / ``evaluate`` weigh by their ``sample_weight`` / ``class_weight``
        (Keras; ``metrics`` are never weighted). A weighted metric whose name is also in
        ``metrics`` is reported as ``weighted_<name>``. ``loss_weights`` weighs the outputs'
        losses of a graph with several outputs (:meth:`fastcnn.functional.Functional.compile`:
        losses and metrics per output); a model with one output takes none."""
        if loss_weights is not None:
            raise ValueError(f"compile: loss_weights weighs the losses of a model with several "
                             f"outputs; model {self.name!r} has one, got "
                             f"loss_weights={loss_weights!r} (scale the loss instead)")
        if loss is None:
            raise ValueError("compile: a loss is required")
        optimizer, loss = _optimizers.get(optimizer), _losses.get(loss)
        plain = _metrics.get_list(metrics)
        weighted = _metrics.get_list(weighted_metrics)
        taken = {m.name for m in plain}
        for m in weighted:
            if m.name in taken:
                m.name = f"weighted_{m.name}"
        _metrics.get_list(plain + weighted)  # the names together: unique, not "loss"
        self.optimizer, self.loss, self.metrics = optimizer, loss, plain
        self.weighted_metrics = weighted
        self._check_loss_activation()
        self._place_optimizer_state()

    def _check_loss_activation(self) -> None:
        if self.loss is None or not self.layers:
            return
        last = self._output_layer()
        act = getattr(last, "activation", None) if last.has_activation else None
        if self.loss.from_logits and act in ("softmax", "sigmoid"):
            raise ValueError(f"the loss has from_logits=True but the last layer "
                             f"{last.name!r} already applies {act!r}; drop one of the two")

    def _require_compiled(self, who: str) -> tuple[_losses.Loss, _optimizers.Optimizer]:
        if self.loss is None or self.optimizer is None:
            raise RuntimeError(f"{who}: call model.compile(optimizer, loss, metrics) first")
        return self.loss, self.optimizer

    # -- device -----------------------------------------------------------------------------
    def to(self, device: str, *, strict: bool = False) -> Model:
        """Move the model (weights, gradients, optimizer state) to a device; returns ``self``.

        Args:
            device: ``"cpu"`` (NumPy arrays), ``"cuda"`` (CuPy arrays on the current GPU) or
                ``"auto"`` (the GPU when ``fastcnn.info()["cuda_available"]``, else the CPU,
                without a warning).
            strict: with ``"cuda"``, raise instead of falling back to the CPU.

        Raises:
            ValueError: an unknown device name.
            RuntimeError: ``"cuda"`` with ``strict=True`` and the GPU can't be used (the
                message says why: no CUDA module, no CuPy, no device / driver).

        Warns:
            RuntimeWarning: ``"cuda"`` without ``strict`` when the GPU can't be used (one
                warning saying why; the model stays on the CPU).
        """
        if device not in ("cpu", "cuda", "auto"):
            raise ValueError(f"device must be 'cpu', 'cuda' or 'auto', got {device!r}")
        target = "cpu"
        if device != "cpu":
            reason = _device.cuda_unavailable_reason()  # looked up here: patchable in tests
            if reason is None:
                target = "cuda"
            elif device == "cuda":
                if strict:
                    raise RuntimeError(f"model.to('cuda', strict=True): the GPU can't be "
                                       f"used: {reason}")
                warnings.warn(f"model.to('cuda'): {reason}; the model stays on the CPU",
                              RuntimeWarning, stacklevel=2)
        self.device = target
        for layer in self.layers:
            layer.to_device(target)
        self._drop_caches()
        self._place_optimizer_state()
        return self

    def _drop_caches(self) -> None:
        """Forget what the last training forward kept for backward (after a device move)."""

    def _place_optimizer_state(self) -> None:
        """Move the optimizer's state arrays (not its step counters) to the model's device."""
        if self.optimizer is None:
            return
        for st in self.optimizer.state.values():
            for slot, a in list(st.items()):
                if slot != "step":
                    st[slot] = _device_move(a, self.device)


    # -- the architecture -------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """The architecture as a JSON-serialisable dict (each kind of model writes its own)."""
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: dict[str, Any],
                    custom_objects: dict[str, type[_layers.Layer]] | None = None) -> Model:
        """The model a config describes: ``"Sequential"`` or ``"Functional"`` (the class
        named by ``config["class_name"]`` builds it)."""
        name = config.get("class_name") if isinstance(config, dict) else None
        if name in ("Sequential", "Functional"):
            return _subclass_named(Model, name).from_config(config, custom_objects)
        raise ValueError(f"not a fastcnn model architecture (class_name {name!r}; expected "
                         f"'Sequential' or 'Functional')")


def _subclass_named(base: type, name: str) -> Any:
    """The subclass of ``base`` called ``name`` (found without importing its module, which
    imports this one)."""
    pending = list(base.__subclasses__())
    while pending:
        cls = pending.pop()
        if cls.__name__ == name:
            return cls
        pending.extend(cls.__subclasses__())
    raise RuntimeError(f"fastcnn.{name} is not defined (import fastcnn first)")


def _layout_hint(shape: tuple[int, ...], want: tuple[int, ...] | None = None) -> str:
    """A sentence pointing at the likely fix when a per-sample ``shape`` looks like a layout
    mistake: channels-last images (fastcnn is channels-first, NCHW), or images without their
    channel axis; "" otherwise. ``want``: the model's per-sample input shape, when known."""
    if len(shape) == 3 and shape[-1] in (1, 3, 4) and shape[0] not in (1, 3, 4):
        h, w, c = shape
        if want is None:
            return (f"The shape {shape} looks channels-last (H, W, C); fastcnn is channels-first "
                    f"(NCHW): use input_shape=({c}, {h}, {w}) and pass "
                    f"x.transpose(0, 3, 1, 2)")
        if tuple(want) == (c, h, w):
            return ("The inputs look channels-last (N, H, W, C); fastcnn is channels-first "
                    "(NCHW): pass x.transpose(0, 3, 1, 2)")
    if want is not None and len(want) == 3 and tuple(shape) == tuple(want[1:]) and want[0] == 1:
        return ("The images have no channel axis: add one with x[:, None] (numpy.expand_dims(x, "
                "1)) for one channel")
    return ""


def _readable_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.2f} {unit}"  # Keras' format: "0.00 B", "4.58 MB"
        size /= 1024
    return f"{size:.2f} GB"  # pragma: no cover
