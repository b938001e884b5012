"""Symbolic tensors: what a layer returns when it is called on the output of ``fastcnn.Input``.

A :class:`SymbolicTensor` holds a per-sample shape (no batch axis, as everywhere in fastcnn:
``(C, H, W)`` or ``(features,)``) and the :class:`Node` that made it: one call of one layer on
its input tensors. ``fastcnn.Model(inputs, outputs)`` walks these nodes back from its output to
find the graph (:mod:`fastcnn.functional`). Nothing is computed here: calling a layer on
symbolic tensors only checks and records shapes (:func:`call_symbolic`, used by
``Layer.__call__``), building the layer's weights on its first call (fresh random ones; the
model that uses it re-creates them from its own seed).

This module imports nothing from the layers (they import it), so there is no cycle.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["Node", "SymbolicTensor", "call_symbolic", "is_symbolic"]


class Node:
    """One call of a layer in a graph: ``layer`` applied to ``inputs`` (symbolic tensors; a
    merge layer takes several, as a list) gave ``output``."""

    __slots__ = ("inputs", "layer", "output")

    def __init__(self, layer: Any, inputs: list[SymbolicTensor]) -> None:
        self.layer = layer
        self.inputs = inputs
        self.output: SymbolicTensor | None = None


class SymbolicTensor:
    """A placeholder for a layer's output in a graph under construction (Keras' KerasTensor).

    Attributes:
        shape: per-sample shape, without the batch axis: ``(C, H, W)`` or ``(features,)``.
        node: the :class:`Node` (layer call) that produced it.
    """

    __slots__ = ("node", "shape")

    def __init__(self, shape: tuple[int, ...], node: Node) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.node = node
        node.output = self

    @property
    def layer(self) -> Any:
        """The layer whose call produced this tensor (an ``InputLayer`` for ``Input(...)``)."""
        return self.node.layer

    def describe(self) -> str:
        """``"the output (None, 16, 8, 8) of Conv2D('conv')"`` (for error messages)."""
        return f"the output {batch_shape(self.shape)} of {self.layer._label()}"

    def __repr__(self) -> str:
        return f"<SymbolicTensor shape={batch_shape(self.shape)} from {self.layer._label()}>"

    def __array__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("a symbolic tensor (the output of fastcnn.Input or of a layer called "
                        "on one) holds no data: build a fastcnn.Model(inputs, outputs) and "
                        "call the model on arrays")


def batch_shape(shape: tuple[int, ...]) -> str:
    """``(None, 3, 32, 32)`` for per-sample ``(3, 32, 32)`` (Keras' way of printing shapes)."""
    return "(None, " + ", ".join(str(s) for s in shape) + ")"


def is_symbolic(x: Any) -> bool:
    """Whether ``x`` is a symbolic tensor or a non-empty list / tuple of them."""
    if isinstance(x, SymbolicTensor):
        return True
    return isinstance(x, list | tuple) and bool(x) and any(
        isinstance(t, SymbolicTensor) for t in x)


def call_symbolic(layer: Any, inputs: Any) -> SymbolicTensor:
    """Record ``layer(inputs)`` on symbolic tensors and return its output tensor.

    ``inputs`` is one tensor, or a list / tuple of them for a layer with ``multi_input``
    (Add, Concatenate). The layer is built for the inputs' shapes on its first call (its
    ``build`` checks them: a ValueError names the layer); a layer called again (a shared
    layer: the same weights) must get the same shapes.

    Raises:
        TypeError: a list for a one-input layer, one tensor for a merge layer, or a mix of
            symbolic tensors and other objects.
        ValueError: shapes the layer can't take, or other shapes than a shared layer's first
            call had.
    """
    label = layer._label()
    multi = bool(getattr(layer, "multi_input", False))
    if isinstance(inputs, list | tuple):
        tensors = list(inputs)
        if not multi:
            raise TypeError(f"{label} takes one tensor, got a list of {len(tensors)}; only "
                            f"merge layers (Add, Concatenate) take a list")
    else:
        tensors = [inputs]
        if multi:
            raise ValueError(f"{label}: a merge layer should be called on a list of at least "
                             f"2 inputs, got one tensor {inputs!r}; pass [a, b]")
    for i, t in enumerate(tensors):
        if not isinstance(t, SymbolicTensor):
            raise TypeError(f"{label}: input {i} is a {type(t).__name__}, not a symbolic "
                            f"tensor; in a graph, every input is the output of "
                            f"fastcnn.Input(...) or of a layer called on one")
    shape: Any = [t.shape for t in tensors] if multi else tensors[0].shape
    want = _normalised(shape)
    if layer.built:
        if _normalised(layer.input_shape) != want:
            raise ValueError(f"{label} is called on {_shapes(want)} but was built for "
                             f"{_shapes(_normalised(layer.input_shape))}: a layer called "
                             f"again shares its weights, so every call needs the same input "
                             f"shape; create a new layer for the other shape")
        out = layer.output_shape
    else:
        try:
            out = layer.build(shape, np.random.default_rng())
        except ValueError as e:
            raise ValueError(f"{e} (calling {label} on "
                             f"{', '.join(t.describe() for t in tensors)})") from e
        layer._built_by_call = True  # fresh weights: the model re-creates them from its seed
    return SymbolicTensor(out, Node(layer, tensors))


def _normalised(shape: Any) -> Any:
    if shape and isinstance(shape[0], list | tuple):
        return tuple(tuple(int(s) for s in sh) for sh in shape)
    return tuple(int(s) for s in shape)


def _shapes(shape: Any) -> str:
    if shape and isinstance(shape[0], tuple):
        return "[" + ", ".join(batch_shape(s) for s in shape) + "]"
    return batch_shape(shape)
