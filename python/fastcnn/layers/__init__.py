"""Layers of a :class:`fastcnn.Sequential` model: Conv2D, Dense, BatchNormalization, MaxPool2D,
AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D, Flatten, Reshape, ZeroPadding2D,
Dropout, the activations (the generic :class:`Activation`, ReLU, LeakyReLU, Softmax).

Conventions
-----------
* Arrays are float32 NCHW; shapes given to :meth:`Layer.build` and reported by the model are
  per sample, without the batch axis: ``(C, H, W)`` for images, ``(features,)`` after Flatten.
* Weights use PyTorch layouts: conv kernel ``(K, C/groups, R, S)``, dense kernel ``(out, in)``,
  biases ``(K,)`` / ``(out,)``.
* Every numeric kernel goes through :mod:`fastcnn.ops` (never a compiled module directly); a
  little array glue (reshapes, the dropout mask, the softmax/sigmoid derivatives) stays here,
  written against ``xp = array_module(x)`` so that it runs on NumPy arrays (CPU) and on CuPy
  arrays (GPU, after ``model.to("cuda")``) alike. Weights are created with NumPy at build time
  and moved by the model (:meth:`Layer.to_device`).
* Dropout masks are drawn on the host from the layer's NumPy generator and uploaded when the
  input is a cupy array: a seeded model drops the same elements on the GPU as on the CPU (the
  upload costs one host-to-device copy of the mask per batch).

The layer protocol (what :class:`fastcnn.Sequential` relies on)
---------------------------------------------------------------
``build(input_shape, rng) -> output_shape``
    Create the weights (``params``) and gradient buffers (``grads``), both dicts of float32
    arrays keyed ``"kernel"`` / ``"bias"``, and compute :attr:`Layer.flops`. Keys listed in
    :attr:`Layer.non_trainable_keys` (BatchNormalization's moving statistics) are state, not
    weights to train: no gradient buffer, never given to the optimizer, counted as
    non-trainable (Keras' non-trainable weights); they are saved and loaded with the rest.
``forward(x, training=False) -> y``
    With ``training=True`` the layer caches what its backward needs; with ``training=False`` it
    drops any cache (so ``backward`` after an inference call is an error).
``backward(dy, accumulate=False) -> dx``
    Uses the cache of the last training forward. The gradients of the weights are *written*
    into ``grads`` (``accumulate=True`` adds to them instead). Layers with ``trainable=False``
    leave ``grads`` untouched.
``compute_dx`` (attribute, True by default)
    The model sets it False on the first layer for a backward pass whose ``dx`` nobody reads
    (training); a layer may then skip ``dx`` and return None. Conv2D and Dense pass it to
    :func:`fastcnn.ops.conv2d_backward` / :func:`fastcnn.ops.linear_backward`
    (``compute_dx=False`` skips the input-gradient GEMM, about a third of a convolution's
    backward).
``get_config()`` / ``from_config(config)``
    JSON-serialisable constructor arguments, used by ``model.save``.

Layers with an ``activation`` (Conv2D, Dense, Activation/ReLU/Softmax) take
``forward(x, training, apply_activation=False)``: the model uses it to keep the logits of a
softmax/sigmoid output layer and fuse the activation into the loss (one numerically stable
step); ``backward`` then skips the activation's derivative too.

Fusions are declared by the layers, never detected by the model from their types, with one
exception at inference: :func:`~fastcnn.layers.normalization.inference_layers` folds a
BatchNormalization into the Conv2D / Dense before it (the model's inference forward runs the
folded chain; see :mod:`~fastcnn.layers.normalization`). The training fusion, the pooled
gradient: after a training forward the model asks a layer
``accepts_pooled_grad()`` (Conv2D: when its activation is none or ReLU) and, if so, asks the
next layer ``offer_pooled_grad()`` (MaxPool2D: its argmax indices and geometry, or None). With
an offer it calls ``layer.backward(dy, accumulate, pooled_grad=offer)`` on the first of the two
(``dy`` being the gradient of the second's output) and skips the second's backward: the
pooling's (and the ReLU's) backward runs inside the convolution's, and the full-size gradient is
never materialised. The defaults of :class:`Layer` accept nothing and offer nothing.

Custom layers
-------------
A subclass of :class:`Layer` implementing the protocol above trains with the built-in ones
(``trainable=False`` and ``name`` come with ``Layer.__init__``: accept them as keywords and pass
them on). Its ``get_config()`` (``super().get_config()`` plus its own arguments) is what
``model.save`` / ``model.to_json()`` store; to load it back, either register the class once
(``@fastcnn.layers.register_layer``, the role of Keras' ``register_keras_serializable``) or
pass ``custom_objects={"Scale": Scale}`` to :func:`fastcnn.load_model`,
:func:`fastcnn.model_from_json` or ``Sequential.from_config``. The registry is a table of
classes filled at import and by ``register_layer``; a name taken by one class can't be given
to another (ValueError; only a redefinition of the same class, same module and qualified name,
replaces it), so it holds no state that could change a result behind the user's back.

Files: :mod:`~fastcnn.layers.base` (the protocol, activation helpers), :mod:`~.conv` (Conv2D),
:mod:`~.pooling` (MaxPool2D, AveragePooling2D, the global poolings), :mod:`~.core` (Dense,
activations, Flatten, Dropout), :mod:`~.normalization` (BatchNormalization and its folding),
:mod:`~.reshaping` (ZeroPadding2D, Reshape); for the functional API (``fastcnn.Model``):
:mod:`~.input` (Input, InputLayer), :mod:`~.merge` (Add, Concatenate: ``multi_input`` layers,
whose forward takes a list and whose backward returns one gradient per input),
:mod:`~.symbolic` (the symbolic tensors ``Layer.__call__`` returns when called on ``Input``'s).

FLOPs are forward FLOPs per sample: a multiply-add counts 2, a bias add 1, ReLU 1 per element,
leaky ReLU 2, sigmoid and tanh 4, SiLU 5, softmax 5, GELU 8, batch normalization 2 (its
inference form), a max over a pooling window ``window - 1`` comparisons per output, an average
``window`` (adds and the scale), a global pooling one per input element.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from .base import ACTIVATIONS, Layer
from .conv import Conv2D
from .core import GELU, Activation, Dense, Dropout, Flatten, LeakyReLU, ReLU, Softmax
from .input import Input, InputLayer
from .merge import Add, Concatenate
from .normalization import BatchNormalization, fold_batch_norm, inference_layers
from .pooling import AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D, MaxPool2D
from .reshaping import Reshape, ZeroPadding2D
from .symbolic import SymbolicTensor

__all__ = [
    "ACTIVATIONS",
    "GELU",
    "Activation",
    "Add",
    "AveragePooling2D",
    "AvgPool2D",
    "BatchNormalization",
    "Concatenate",
    "Conv2D",
    "Dense",
    "Dropout",
    "Flatten",
    "GlobalAveragePooling2D",
    "GlobalAvgPool2D",
    "GlobalMaxPool2D",
    "GlobalMaxPooling2D",
    "Input",
    "InputLayer",
    "Layer",
    "LeakyReLU",
    "MaxPool2D",
    "MaxPooling2D",
    "ReLU",
    "Reshape",
    "Softmax",
    "SymbolicTensor",
    "ZeroPadding2D",
    "check_custom_objects",
    "deserialize",
    "fold_batch_norm",
    "get_layer_class",
    "inference_layers",
    "register_layer",
]

# --------------------------------------------------------------------------------------------
# registry
#
# Class name -> layer class: the built-in layers (filled here, at import) and the classes users
# register (:func:`register_layer`, usually at their module's import). It only ever gains
# entries, and a name, once registered, keeps its class (another class under a taken name is a
# ValueError; a redefinition of the same class, same module and qualified name, replaces it),
# so nothing here changes a result behind the user's back. ``custom_objects`` are per call and
# never stored.

_LAYER_CLASSES: dict[str, type[Layer]] = {
    cls.__name__: cls
    for cls in (Conv2D, Dense, Activation, ReLU, Softmax, MaxPool2D, Flatten, Dropout,
                BatchNormalization, AveragePooling2D, GlobalAveragePooling2D,
                GlobalMaxPooling2D, LeakyReLU, ZeroPadding2D, Reshape, GELU)
}
_LAYER_CLASSES.update({cls.__name__: cls for cls in (InputLayer, Add, Concatenate)})
# Keras' other spellings
MaxPooling2D = MaxPool2D
AvgPool2D = AveragePooling2D
GlobalAvgPool2D = GlobalAveragePooling2D
GlobalMaxPool2D = GlobalMaxPooling2D
_LAYER_CLASSES.update({"MaxPooling2D": MaxPool2D, "AvgPool2D": AveragePooling2D,
                       "GlobalAvgPool2D": GlobalAveragePooling2D,
                       "GlobalMaxPool2D": GlobalMaxPooling2D})
_BUILTIN = frozenset(_LAYER_CLASSES)

_LayerT = TypeVar("_LayerT", bound=Layer)


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def register_layer(cls: type[_LayerT]) -> type[_LayerT]:
    """Register a custom layer class under its ``__name__`` so that :func:`fastcnn.load_model`,
    :func:`fastcnn.model_from_json` and ``Sequential.from_config`` find it (the role of Keras'
    ``register_keras_serializable``); returns ``cls``, so it works as a decorator::

        @fastcnn.layers.register_layer
        class Scale(fastcnn.layers.Layer): ...

    Registering the same class again is a no-op, and so is registering a redefinition of it
    (same module and qualified name: a re-run notebook cell, ``importlib.reload``), which
    replaces the old class object.

    Raises:
        TypeError: ``cls`` is not a subclass of :class:`Layer`.
        ValueError: the name is a built-in layer's or is registered to another class (pass
            ``custom_objects={name: cls}`` to the loading function instead, or rename it).
    """
    if not (isinstance(cls, type) and issubclass(cls, Layer)):
        raise TypeError(f"register_layer: expected a subclass of fastcnn.layers.Layer, got "
                        f"{cls!r}")
    name = cls.__name__
    old = _LAYER_CLASSES.get(name)
    if old is not None and old is not cls:
        if name in _BUILTIN or _qualified(old) != _qualified(cls):
            raise ValueError(f"register_layer: the layer name {name!r} is already registered "
                             f"to {_qualified(old)}, not {_qualified(cls)}; rename the class, "
                             f"or pass custom_objects={{{name!r}: {cls.__name__}}} when "
                             f"loading instead of registering it")
    _LAYER_CLASSES[name] = cls
    return cls


def check_custom_objects(custom_objects: Mapping[str, Any] | None) -> dict[str, type[Layer]]:
    """``custom_objects`` (None, or a dict of class name -> :class:`Layer` subclass) as a dict;
    TypeError naming the bad entry otherwise."""
    if custom_objects is None:
        return {}
    if not isinstance(custom_objects, Mapping):
        raise TypeError(f"custom_objects must be a dict {{class name: layer class}}, got "
                        f"{type(custom_objects).__name__}")
    for k, v in custom_objects.items():
        if not isinstance(k, str) or not (isinstance(v, type) and issubclass(v, Layer)):
            raise TypeError(f"custom_objects[{k!r}] must map a class name to a subclass of "
                            f"fastcnn.layers.Layer, got {v!r} (custom losses and metrics are "
                            f"not saved: compile the loaded model again)")
    return dict(custom_objects)


def get_layer_class(class_name: str,
                    custom_objects: Mapping[str, type[Layer]] | None = None) -> type[Layer]:
    """Layer class by name (``"Conv2D"``, a registered class's name, or a key of
    ``custom_objects``, which wins over the registry); ValueError naming the known names and
    how to register a custom layer otherwise."""
    custom = check_custom_objects(custom_objects)
    if class_name in custom:
        return custom[class_name]
    try:
        return _LAYER_CLASSES[class_name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown layer class {class_name!r}; known: {sorted(_LAYER_CLASSES)}. For a "
            f"custom layer, decorate its class with @fastcnn.layers.register_layer (in code "
            f"that runs before loading) or pass custom_objects={{{class_name!r}: "
            f"{class_name if isinstance(class_name, str) else 'cls'}}} to load_model / "
            f"model_from_json / Sequential.from_config") from None


def deserialize(spec: dict[str, Any],
                custom_objects: Mapping[str, type[Layer]] | None = None) -> Layer:
    """Layer from ``{"class_name": ..., "config": {...}}`` (``custom_objects``: see
    :func:`get_layer_class`)."""
    if not isinstance(spec, dict) or "class_name" not in spec:
        raise ValueError(f"bad layer spec {spec!r}")
    cls = get_layer_class(spec["class_name"], custom_objects)
    config = dict(spec.get("config", {}))
    try:
        return cls.from_config(config)
    except TypeError as e:
        raise TypeError(f"{cls.__name__}.from_config({config!r}) failed: {e}. A layer's "
                        f"__init__ must take every key of its get_config() (name= and "
                        f"trainable= too: accept **kwargs and pass them to "
                        f"Layer.__init__), or the class must override from_config") from e
