"""Layers of a :class:`fastcnn.Sequential` model: Conv2D, ReLU, MaxPool2D, Flatten, Dense,
Dropout, Softmax (plus the generic :class:`Activation`).

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
    arrays keyed ``"kernel"`` / ``"bias"``, and compute :attr:`Layer.flops`.
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

Fusions are declared by the layers, never detected by the model from their types. The one
there is today, the pooled gradient: after a training forward the model asks a layer
``accepts_pooled_grad()`` (Conv2D: when its activation is none or ReLU) and, if so, asks the
next layer ``offer_pooled_grad()`` (MaxPool2D: its argmax indices and geometry, or None). With
an offer it calls ``layer.backward(dy, accumulate, pooled_grad=offer)`` on the first of the two
(``dy`` being the gradient of the second's output) and skips the second's backward: the
pooling's (and the ReLU's) backward runs inside the convolution's, and the full-size gradient is
never materialised. The defaults of :class:`Layer` accept nothing and offer nothing.

Files: :mod:`~fastcnn.layers.base` (the protocol, activation helpers), :mod:`~.conv` (Conv2D),
:mod:`~.pooling` (MaxPool2D), :mod:`~.core` (Dense, activations, Flatten, Dropout).

FLOPs are forward FLOPs per sample: a multiply-add counts 2, a bias add 1, ReLU 1 per element,
sigmoid 4, softmax 5, a max over a pooling window ``window - 1`` comparisons per output.
"""

from __future__ import annotations

from typing import Any

from .base import ACTIVATIONS, Layer
from .conv import Conv2D
from .core import Activation, Dense, Dropout, Flatten, ReLU, Softmax
from .pooling import MaxPool2D

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "Conv2D",
    "Dense",
    "Dropout",
    "Flatten",
    "Layer",
    "MaxPool2D",
    "ReLU",
    "Softmax",
    "deserialize",
    "get_layer_class",
]

# --------------------------------------------------------------------------------------------
# registry

_LAYER_CLASSES: dict[str, type[Layer]] = {
    cls.__name__: cls
    for cls in (Conv2D, Dense, Activation, ReLU, Softmax, MaxPool2D, Flatten, Dropout)
}
_LAYER_CLASSES["MaxPooling2D"] = MaxPool2D
MaxPooling2D = MaxPool2D  # Keras' other spelling


def get_layer_class(class_name: str) -> type[Layer]:
    """Layer class by name (``"Conv2D"``, ...); ValueError for an unknown name."""
    try:
        return _LAYER_CLASSES[class_name]
    except KeyError:
        raise ValueError(f"unknown layer class {class_name!r}; known: "
                         f"{sorted(_LAYER_CLASSES)}") from None


def deserialize(spec: dict[str, Any]) -> Layer:
    """Layer from ``{"class_name": ..., "config": {...}}``."""
    if not isinstance(spec, dict) or "class_name" not in spec:
        raise ValueError(f"bad layer spec {spec!r}")
    return get_layer_class(spec["class_name"]).from_config(dict(spec.get("config", {})))
