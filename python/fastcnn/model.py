"""fastcnn.Sequential: a Keras-like model over :mod:`fastcnn.layers`.

This file holds the model itself: its structure (layers, build), weights, the forward pass
(``model(x)``) and backward pass (``model.backward(dy)``), ``compile``, ``summary``, the
architecture config and ``to(device)``. The training machinery (``fit`` / ``evaluate`` /
``predict`` around one :func:`fastcnn.training.train_step`) is in :mod:`fastcnn.training`, the
files (``save`` / ``save_weights`` / ``load_weights`` / ``load_model``) in :mod:`fastcnn.saving`.
Sequential inherits ``fit`` / ``evaluate`` / ``predict`` from :class:`fastcnn.training.Trainer`,
``save`` / ``save_weights`` / ``load_weights`` from :class:`fastcnn.saving.Saveable` and
``export`` from :class:`fastcnn.onnx.Exportable` (Keras 3's layout): this module imports those
and they never import it, so the dependencies run one way.

Inputs
------
``x`` is NCHW (``(N, C, H, W)`` for ``input_shape=(C, H, W)``) or ``(N, features)`` for a flat
``input_shape``, of any numeric dtype and any array kind (NumPy, CuPy, a list, a PyTorch tensor, a
DLPack object; :mod:`fastcnn._arrays`): it is converted to float32 (the ops take float32 only),
without a copy when it already is a C-contiguous float32 array or tensor. An object is taken for a
dataset only when it is not array-like. Labels, datasets and the exact steps of ``fit`` are
described in :mod:`fastcnn.training`.

Custom loops
------------
``probs = model(x, training=True)`` caches what ``model.backward(dprobs)`` needs (``logits=True``
returns the last layer's pre-activation values instead); ``backward`` writes every trainable
layer's gradients (``accumulate=True`` adds to them; ``optimizer.zero_grad(model)`` zeroes them)
and returns ``dx``, or skips it and returns None with ``compute_dx=False`` (the first layer then
skips its input-gradient GEMM: about a third of a convolution's backward). Fusions across two
layers (a Conv2D's backward absorbing the next MaxPool2D's) are declared by the layers (see
:mod:`fastcnn.layers`); the model only asks them. :func:`fastcnn.training.train_step` is one
whole training step, as ``fit`` runs it.

Keras' model handling
---------------------
``model.get_layer(name)`` / ``get_layer(index=i)``, ``model.pop()`` (the last layer off, the
model still built: replace a head), ``model.weights`` / ``trainable_weights`` /
``non_trainable_weights`` (the model's own arrays, layer by layer), ``train_on_batch`` /
``test_on_batch`` / ``predict_on_batch`` (from :class:`~fastcnn.training.Trainer`) and
``to_json()`` (from :class:`~fastcnn.saving.Saveable`; :func:`fastcnn.model_from_json`).

Frozen layers: ``layer.trainable = False`` takes the layer's weights out of
:meth:`Sequential.parameters`, so no optimizer updates them (nor decays or clips them) and
``summary`` counts them as non-trainable. It may be set at any time, also after ``compile``:
unlike Keras, which needs ``compile`` again, it acts from the next step on (each step reads
``parameters()`` afresh). The optimizer keeps a frozen weight's state (Adam's moments, step
count) untouched, saves it with the model and resumes from it when the layer is unfrozen. A
frozen layer still runs its backward pass (the layers below it need its ``dx``).

Determinism: ``Sequential(..., seed=s)`` initialises weights from ``np.random.default_rng(s)``
(layers in order) and seeds Dropout masks from it.

Devices
-------
``model.to("cuda")`` moves every layer's weights and gradients and the optimizer's state to the
GPU as CuPy arrays; ``model.to("cpu")`` moves them back as NumPy arrays; ``model.to("auto")``
picks the GPU when ``fastcnn.info()["cuda_available"]`` (the CUDA module built, CuPy importable,
a device usable), else the CPU, silently. When the GPU can't be used, ``to("cuda")`` stays on
the CPU with one RuntimeWarning saying why (``to("cuda", strict=True)`` raises RuntimeError
instead). ``model.device`` is ``"cpu"`` or ``"cuda"``.

``model(x)`` / ``model.backward(dy)`` take NumPy or CuPy arrays, lists, PyTorch tensors (CPU or
CUDA) and DLPack objects (tensors viewed without a copy; one that requires grad is a TypeError) and
return arrays on the model's device, of the input's kind: a torch tensor for a torch tensor, NumPy /
CuPy otherwise (a model on the CPU given GPU arrays raises TypeError); ``fit`` / ``evaluate`` /
``predict`` upload NumPy batches one batch ahead (see :mod:`fastcnn.training`). ``get_weights``
returns NumPy arrays, ``set_weights`` / ``load_weights`` accept NumPy (or CuPy) arrays on either
device; ``load_model`` returns a model on the CPU (call ``.to("cuda")``).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _device
from . import layers as _layers
from . import losses as _losses
from . import metrics as _metrics
from . import optimizers as _optimizers
from ._arrays import as_array, assign, host_copy, is_cupy, restore_kind
from ._arrays import move as _device_move
from .onnx import Exportable
from .saving import Saveable
from .training import Trainer

if TYPE_CHECKING:
    from .callbacks import History


__all__ = ["Sequential"]


# --------------------------------------------------------------------------------------------
# the model


class Sequential(Trainer, Saveable, Exportable):
    """A linear stack of layers.

    Args:
        layers: layers in order (more can be added with :meth:`add`).
        input_shape: per-sample input shape ``(C, H, W)`` (or ``(features,)``); when given
            the model is built at once, otherwise on the first call / fit from the data.
        seed: seed of the weight initialisation (``np.random.default_rng(seed)``); None gives
            fresh random weights.
        name: shown by :meth:`summary`.
    """

    def __init__(self, layers: Iterable[_layers.Layer] | None = None,
                 input_shape: tuple[int, ...] | None = None, *, seed: int | None = None,
                 name: str = "sequential") -> None:
        self.name = name
        self.seed = seed
        self.layers: list[_layers.Layer] = []
        self.input_shape: tuple[int, ...] | None = None
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
        for layer in layers or []:
            self.add(layer)
        if input_shape is not None:
            self.build(input_shape)

    # -- structure --------------------------------------------------------------------------
    def add(self, layer: _layers.Layer) -> None:
        """Append a layer (named ``<kind>``, ``<kind>_1``, ... unless it has a name); built at
        once when the model already is."""
        if not isinstance(layer, _layers.Layer):
            raise TypeError(f"Sequential takes fastcnn.layers.Layer objects, got {layer!r}")
        if any(layer is other for other in self.layers):
            raise ValueError(f"{layer!r} is already in the model")
        names = {lay.name for lay in self.layers}
        if layer.name is None:
            base, i = layer.default_name, 0
            cand = base
            while cand in names:
                i += 1
                cand = f"{base}_{i}"
            layer.name = cand
        elif layer.name in names:
            raise ValueError(f"duplicate layer name {layer.name!r}")
        if self.built:
            shape = self.layers[-1].output_shape if self.layers else self.input_shape
            layer.build(shape, self._rng)  # type: ignore[arg-type]
            layer.to_device(self.device)
        self.layers.append(layer)

    def pop(self) -> _layers.Layer:
        """Remove the last layer and return it (Keras' ``pop``). A built model stays built,
        its ``output_shape`` now the new last layer's; the optimizer's state of the removed
        layer's weights is dropped (a layer added later under the same name starts afresh).
        Removing the only layer leaves an empty, unbuilt model (``input_shape`` is kept).
        Compile again before training when the output changed (a new head, a new loss).

        Raises:
            ValueError: the model has no layers.
        """
        if not self.layers:
            raise ValueError("pop: the model has no layers to remove")
        layer = self.layers.pop()
        if self.optimizer is not None:
            for k in layer.params:
                self.optimizer.state.pop(f"{layer.name}/{k}", None)
        if not self.layers:
            self.built = False
        return layer

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

    def build(self, input_shape: tuple[int, ...], seed: int | None = None) -> None:
        """(Re)create every layer's weights for per-sample ``input_shape``; the generator is
        ``np.random.default_rng(seed)`` (``seed`` defaults to the model's)."""
        shape = tuple(int(s) for s in input_shape)
        if not shape or any(s < 1 for s in shape):
            raise ValueError(f"input_shape must be a tuple of positive ints such as (C, H, W), "
                             f"got {input_shape!r}")
        if not self.layers:
            raise ValueError("the model has no layers")
        self._rng = np.random.default_rng(self.seed if seed is None else seed)
        first = shape
        for layer in self.layers:
            try:
                shape = layer.build(shape, self._rng)
            except ValueError as e:
                hint = _layout_hint(first)
                if not hint:
                    raise
                raise ValueError(f"{e}. {hint}") from e
            layer.to_device(self.device)  # weights are created on the host
        self.input_shape = tuple(int(s) for s in input_shape)
        self.built = True

    def _require_built(self) -> None:
        if not self.built:
            raise ValueError("the model is not built: pass input_shape=(C, H, W) to "
                             "Sequential or call build(), fit() or the model first")

    def _ensure_built(self, x: np.ndarray) -> None:
        if not self.built:
            self.build(tuple(x.shape[1:]))
        elif tuple(x.shape[1:]) != self.input_shape:
            want = ", ".join(str(s) for s in self.input_shape)  # type: ignore[union-attr]
            got = ", ".join(str(s) for s in x.shape[1:])
            hint = _layout_hint(tuple(x.shape[1:]), self.input_shape)
            raise ValueError(f"expected inputs of shape (N, {want}) for input_shape="
                             f"{self.input_shape}, got (N, {got})" + (f". {hint}" if hint else ""))

    @property
    def output_shape(self) -> tuple[int, ...] | None:
        """Per-sample output shape (None before the model is built)."""
        return self.layers[-1].output_shape if self.built else None

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
        ``trainable=False``, count as non-trainable). ``show_trainable=True`` adds Keras'
        "Trainable" column: Y, N (frozen), or - for a layer without weights."""
        self._require_built()
        print_fn = print_fn or print
        rows: list[tuple[str, ...]] = [("Layer (type)", "Output Shape", "Param #", "FLOPs")]
        for layer in self.layers:
            shape = "(None, " + ", ".join(str(s) for s in layer.output_shape) + ")"  # type: ignore[union-attr]
            rows.append((f"{layer.name} ({type(layer).__name__})", shape,
                         f"{layer.count_params():,}", f"{layer.flops:,}"))
        if show_trainable:
            flags = [("Y" if lay.trainable else "N") if lay.params else "-" for lay in self.layers]
            rows = [(*r, f) for r, f in zip(rows, ["Trainable", *flags], strict=True)]
        widths = [max(len(r[i]) for r in rows) + 3 for i in range(len(rows[0]))]
        width = sum(widths)

        def line(r: tuple[str, ...]) -> str:
            return "".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()

        total = self.count_params()
        trainable = sum(lay.count_trainable_params() for lay in self.layers)
        print_fn(f'Model: "{self.name}"')
        print_fn("_" * width)
        print_fn(line(rows[0]))
        print_fn("=" * width)
        for i, r in enumerate(rows[1:]):
            print_fn(line(r))
            print_fn(("_" if i < len(rows) - 2 else "=") * width)
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
        last = self.layers[-1]
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

    def _forward(self, x: np.ndarray, training: bool, logits: bool) -> np.ndarray:
        # inference: a BatchNormalization folded into the Conv2D / Dense before it
        layers = self.layers if training else _layers.inference_layers(self.layers)
        last = len(layers) - 1
        for i, layer in enumerate(layers):
            if logits and i == last and layer.has_activation:
                x = layer.forward(x, training, apply_activation=False)  # type: ignore[call-arg]
            else:
                x = layer.forward(x, training)
        return x

    def __call__(self, x: Any, training: bool = False, logits: bool = False) -> Any:
        """Forward pass: ``x`` (N, *input_shape) -> output (N, *output_shape), float32.

        Args:
            training: cache what :meth:`backward` needs and apply Dropout.
            logits: skip the last layer's activation (return its pre-activation values).
        """
        xa = self._input(x, "model(x)")
        self._ensure_built(xa)
        return restore_kind(self._forward(self._on_device(xa), training, logits), x)

    def backward(self, dy: Any, accumulate: bool = False,
                 compute_dx: bool = True) -> Any:
        """Backward pass after ``model(x, training=True)``: ``dy`` (gradient of the loss with
        respect to that call's output, converted to float32) -> ``dx`` (N, *input_shape).
        Writes each trainable layer's ``grads`` (adds to them with ``accumulate=True``).
        ``compute_dx=False`` skips the gradient with respect to the input and returns None:
        the backward then stops at the lowest layer with trainable weights, which skips its own
        dx (layers below it, frozen or without weights, need no backward at all; frozen layers
        above it compute only their dx).

        A layer that :meth:`~fastcnn.layers.Layer.accepts_pooled_grad` takes the next layer's
        :meth:`~fastcnn.layers.Layer.offer_pooled_grad`, if it makes one: the two backward
        passes then run as one (``backward(dy, accumulate, pooled_grad=offer)``)."""
        self._require_built()
        g = self._on_device(self._input(dy, "backward", "dy"))
        lo = 0 if compute_dx else next(
            (i for i, lay in enumerate(self.layers) if lay.trainable and lay.params),
            len(self.layers))
        low = self.layers[lo] if lo < len(self.layers) else None
        if low is not None:
            low.compute_dx = bool(compute_dx)
        try:
            i = len(self.layers) - 1
            while i >= lo:
                layer = self.layers[i]
                prev = self.layers[i - 1] if i > 0 else None
                if prev is not None and prev.accepts_pooled_grad():
                    offer = layer.offer_pooled_grad()
                    if offer is not None:
                        g = prev.backward(g, accumulate, pooled_grad=offer)  # type: ignore[call-arg]
                        i -= 2
                        continue
                g = layer.backward(g, accumulate)
                i -= 1
        finally:
            if low is not None:
                low.compute_dx = True
        return restore_kind(g, dy) if compute_dx else None

    # -- compile --------------------------------------------------------------------
    def compile(self, optimizer: Any = "rmsprop", loss: Any = None, metrics: Any = None,
                weighted_metrics: Any = None) -> None:
        """Set the optimizer (object or ``"sgd"``/``"adam"``/``"adamw"``/``"rmsprop"``), the
        loss (``"sparse_categorical_crossentropy"``, ``"categorical_crossentropy"``,
        ``"binary_crossentropy"``, ``"mse"``, a Loss or a loss function), metrics
        (``["accuracy", "top_k", ...]``; see :mod:`fastcnn.metrics`) and weighted metrics:
        those that ``fit`` / ``evaluate`` weigh by their ``sample_weight`` / ``class_weight``
        (Keras; ``metrics`` are never weighted). A weighted metric whose name is also in
        ``metrics`` is reported as ``weighted_<name>``."""
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
        last = self.layers[-1]
        act = getattr(last, "activation", None) if last.has_activation else None
        if self.loss.from_logits and act in ("softmax", "sigmoid"):
            raise ValueError(f"the loss has from_logits=True but the last layer "
                             f"{last.name!r} already applies {act!r}; drop one of the two")

    def _require_compiled(self, who: str) -> tuple[_losses.Loss, _optimizers.Optimizer]:
        if self.loss is None or self.optimizer is None:
            raise RuntimeError(f"{who}: call model.compile(optimizer, loss, metrics) first")
        return self.loss, self.optimizer

    # -- device -----------------------------------------------------------------------------
    def to(self, device: str, *, strict: bool = False) -> Sequential:
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
        self._place_optimizer_state()
        return self

    def _place_optimizer_state(self) -> None:
        """Move the optimizer's state arrays (not its step counters) to the model's device."""
        if self.optimizer is None:
            return
        for st in self.optimizer.state.values():
            for slot, a in list(st.items()):
                if slot != "step":
                    st[slot] = _device_move(a, self.device)

    # -- saving -----------------------------------------------------------------------------
    def to_torch(self) -> Any:
        """An equivalent ``torch.nn.Sequential`` holding copies of the weights (needs PyTorch:
        ``pip install "fastcnn[torch]"``); see :func:`fastcnn.torch.to_torch`."""
        from .torch.convert import to_torch  # fastcnn.torch never imports this module

        return to_torch(self)

    def get_config(self) -> dict[str, Any]:
        """Architecture as a JSON-serialisable dict."""
        return {
            "class_name": "Sequential",
            "name": self.name,
            "seed": self.seed,
            "input_shape": list(self.input_shape) if self.input_shape else None,
            "layers": [{"class_name": type(lay).__name__, "config": lay.get_config()}
                       for lay in self.layers],
        }

    @classmethod
    def from_config(cls, config: dict[str, Any],
                    custom_objects: dict[str, type[_layers.Layer]] | None = None) -> Sequential:
        """Model (built, with fresh weights from its seed, when the config has an input
        shape) from :meth:`get_config`. ``custom_objects`` (``{"Scale": Scale}``) names
        layer classes that are not registered (:func:`fastcnn.layers.register_layer`); it
        wins over the registry."""
        if not isinstance(config, dict) or config.get("class_name") != "Sequential":
            raise ValueError("not a Sequential architecture")
        layers = [_layers.deserialize(spec, custom_objects)
                  for spec in config.get("layers", [])]
        shape = config.get("input_shape")
        return cls(layers, input_shape=tuple(shape) if shape else None,
                   seed=config.get("seed"), name=config.get("name", "sequential"))


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
