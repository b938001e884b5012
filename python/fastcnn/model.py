"""fastcnn.Sequential: a Keras-like linear stack of :mod:`fastcnn.layers`.

This file holds the stack's structure (``add`` / ``pop``, build), its forward pass
(``model(x)``) and backward pass (``model.backward(dy)``) and its architecture config.
Sequential is a special case of :class:`fastcnn.Model` (``isinstance(Sequential(...), Model)``
is True, as in Keras; ``Model(inputs, outputs)`` is the functional API, :mod:`fastcnn.functional`)
and shares its machinery, which is in :mod:`fastcnn.model_base`: the weights,
``compile``, ``summary``, ``get_layer`` and ``to(device)``; a stack keeps its own linear forward
and backward (the fastest path). The training machinery (``fit`` / ``evaluate`` /
``predict`` around one :func:`fastcnn.training.train_step`) is in :mod:`fastcnn.training`, the
files (``save`` / ``save_weights`` / ``load_weights`` / ``load_model``) in :mod:`fastcnn.saving`.
Sequential inherits ``fit`` / ``evaluate`` / ``predict`` from :class:`fastcnn.trainer.Trainer`,
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
``test_on_batch`` / ``predict_on_batch`` (from :class:`~fastcnn.trainer.Trainer`) and
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

from collections.abc import Iterable
from typing import Any

import numpy as np

from . import _workspace
from . import layers as _layers
from ._arrays import restore_kind
from .layers.base import fused_activation
from .layers.normalization import batch_stats_fusion
from .model_base import Model, _layout_hint
from .saving import Saveable

__all__ = ["Model", "Sequential"]


# --------------------------------------------------------------------------------------------
# the model


class Sequential(Model):
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
        self._init_model(name, seed)
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
            if not _keeps_weights(layer, shape):
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

    def build(self, input_shape: tuple[int, ...], seed: Any = None) -> tuple[int, ...]:
        """(Re)create every layer's weights for per-sample ``input_shape``; the generator is
        ``np.random.default_rng(seed)`` (``seed`` defaults to the model's; a Generator is used
        as it is). A model among the layers that is already built for its input keeps its
        weights. Returns the per-sample output shape (the layer protocol's ``build``)."""
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
                shape = layer.output_shape if _keeps_weights(layer, shape) \
                    else layer.build(shape, self._rng)
            except ValueError as e:
                hint = _layout_hint(first)
                if not hint:
                    raise
                raise ValueError(f"{e}. {hint}") from e
            layer.to_device(self.device)  # weights are created on the host
        self.input_shape = tuple(int(s) for s in input_shape)
        self.built = True
        return shape

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

    def _output_layer(self) -> _layers.Layer:
        return self.layers[-1]

    def _nodes(self) -> tuple[list[tuple[_layers.Layer | None, tuple[int, ...]]], int]:
        """The stack as a graph for the exporters (see :meth:`fastcnn.Model._nodes`)."""
        return [(None, ()), *((lay, (i,)) for i, lay in enumerate(self.layers))], len(self.layers)

    def _connections(self) -> list[list[str]] | None:
        return None  # a stack's summary has no "Connected to" column (Keras)

    def _drop_caches(self) -> None:
        """Nothing: a stack's layers keep their own forward caches."""

    @property
    def inputs(self) -> list[Any]:
        """Not defined for a Sequential (it has no symbolic input tensor)."""
        raise AttributeError("a fastcnn.Sequential has no symbolic inputs; build a "
                             "fastcnn.Model from fastcnn.Input(...) for a graph")

    @property
    def outputs(self) -> list[Any]:
        """Not defined for a Sequential (it has no symbolic output tensor)."""
        raise AttributeError("a fastcnn.Sequential has no symbolic outputs; build a "
                             "fastcnn.Model from fastcnn.Input(...) for a graph")

    # a stack has the torch.nn.Sequential layout: .safetensors weights are allowed
    save_weights = Saveable.save_weights
    load_weights = Saveable.load_weights

    @_workspace.in_model_workspace
    def _forward(self, x: np.ndarray, training: bool, logits: bool) -> np.ndarray:
        # inference: a BatchNormalization folded into the Conv2D / Dense before it
        layers = self.layers if training else _layers.inference_layers(self.layers)
        last = len(layers) - 1
        through: set[int] = set()  # layers run as a pass-through (fused into the one before)
        stats: dict[str, Any] = {}  # batch statistics from the layer before (batch_stats_fusion)
        for i, layer in enumerate(layers):
            if i in through:
                continue
            given, stats = stats, {}
            if logits and i == last and layer.has_activation:
                x = layer.forward(x, training, apply_activation=False)  # type: ignore[call-arg]
                continue
            act = None
            if i < last and not (logits and i + 1 == last and layers[last].has_activation):
                act = fused_activation(layer, layers[i + 1])
            if act is not None:  # the next layer's activation inside this layer's pass
                x = layer.forward(x, training, fused_activation=act,  # type: ignore[call-arg]
                                  **given)
                through.add(i + 1)
            elif training and i < last and batch_stats_fusion(layer, layers[i + 1]):
                x, st = layer.forward(x, training, return_batch_stats=True)  # type: ignore[call-arg]
                stats = {"batch_stats": st}
            else:
                x = layer.forward(x, training, **given)
        if training:
            self._fused_through = through
        return x

    @_workspace.in_model_workspace
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
        passes then run as one (``backward(dy, accumulate, pooled_grad=offer)``). A layer whose
        activation ran inside the previous layer's forward (:func:`fastcnn.layers.base.
        fused_activation`) passes the gradient through."""
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
            through = getattr(self, "_fused_through", set())
            while i >= lo:
                if i in through:  # fused into the layer before: its gradient passes through
                    i -= 1
                    continue
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
        layers = [Model.from_config(spec.get("config", {}), custom_objects)  # a nested model
                  if isinstance(spec, dict) and spec.get("class_name") in ("Sequential",
                                                                          "Functional")
                  else _layers.deserialize(spec, custom_objects)
                  for spec in config.get("layers", [])]
        shape = config.get("input_shape")
        return cls(layers, input_shape=tuple(shape) if shape else None,
                   seed=config.get("seed"), name=config.get("name", "sequential"))


def _keeps_weights(layer: _layers.Layer, shape: Any) -> bool:
    """A model used as a layer that is already built for ``shape`` keeps its weights when the
    stack builds (Keras' nested models; :mod:`fastcnn.model_base`)."""
    return isinstance(layer, Model) and layer.built and layer.input_shape == tuple(shape)
