"""The graph's entry point: :func:`Input` (Keras' ``keras.Input``) and its :class:`InputLayer`.

``x = fastcnn.Input((3, 32, 32))`` is a symbolic tensor of per-sample shape ``(C, H, W)``
(NCHW without the batch axis; ``(features,)`` for flat inputs): layers called on it build a
graph, and ``fastcnn.Model(x, y)`` turns the graph into a model (:mod:`fastcnn.functional`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .base import Layer, Shape
from .symbolic import Node, SymbolicTensor

__all__ = ["Input", "InputLayer"]


def _check_shape(shape: Any, who: str) -> Shape:
    if isinstance(shape, int | np.integer) and not isinstance(shape, bool):
        shape = (shape,)
    ok = isinstance(shape, Sequence) and not isinstance(shape, str) and len(shape) > 0 and all(
        isinstance(s, int | np.integer) and not isinstance(s, bool) and s >= 1 for s in shape)
    if not ok:
        raise ValueError(f"{who}: shape must be the per-sample shape, a tuple of positive ints "
                         f"without the batch axis such as (3, 32, 32) (NCHW: channels first) "
                         f"or (features,), got {shape!r}")
    return tuple(int(s) for s in shape)


class InputLayer(Layer):
    """The layer behind :func:`Input`: no weights, identity; ``output`` is its symbolic
    tensor. A model lists it first in ``model.layers`` (as Keras does)."""

    default_name = "input_layer"

    def __init__(self, shape: Sequence[int], *, name: str | None = None,
                 trainable: bool = True) -> None:
        super().__init__(name=name, trainable=trainable)
        self.shape = _check_shape(shape, "Input")
        self.build(self.shape)
        self.output = SymbolicTensor(self.shape, Node(self, []))

    def forward(self, x, training=False):
        return x

    def backward(self, dy, accumulate=False):
        return dy

    def get_config(self):
        return {**super().get_config(), "shape": list(self.shape)}


def Input(shape: Sequence[int], *, name: str | None = None) -> SymbolicTensor:
    """A graph input of per-sample ``shape`` (Keras' ``keras.Input``).

    Args:
        shape: per-sample shape without the batch axis: ``(C, H, W)`` (channels first, NCHW)
            or ``(features,)``; an int means ``(int,)``.
        name: the input layer's name (``"input_layer"``, ``"input_layer_1"``, ... by default,
            given by the model).

    Returns:
        The symbolic tensor to call layers on; ``fastcnn.Model(inputs, outputs)`` takes it.

    Raises:
        ValueError: ``shape`` is not a tuple of positive ints.
    """
    return InputLayer(shape, name=name).output
