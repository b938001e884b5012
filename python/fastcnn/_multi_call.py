"""A model with several outputs called as a layer of another graph (Keras' nested multi-output
models): ``a, b = two_head(x)`` (or ``out = two_head(x); out[0]``, ``out["cls"]`` for a model
with dict outputs) inside ``fastcnn.Model(inputs, outputs)``.

:func:`call_multi_output` records one node for the model call (its symbolic output a holder of
shape ``()`` that only :class:`OutputOf` nodes read) and one :class:`OutputOf` node per model
output, each a symbolic tensor of that output's shape; it returns them as a list, or a dict
keyed as the model's outputs. In the outer graph's forward the model node's value is the list
of its outputs and ``OutputOf(k)`` picks entry ``k``; in the backward each ``OutputOf`` hands
back a :class:`PartialGrads` (its gradient at ``k``, None elsewhere), which the fan-out sum
(:func:`fastcnn._graph.summed`) merges entry by entry (in the consumers' node order), so the
model node's backward gets one gradient per output (None for an output nothing reads).

``OutputOf`` nodes are not layers of the model (not in ``model.layers``, ``summary`` or the
config): the config refers to output ``k`` of the model's call ``c`` as ``[model, c, k]``
(Keras' ``[layer, node_index, tensor_index]``), and the exporters (:mod:`fastcnn._flat`) map it
to the nested model's ``k``-th output node.
"""

from __future__ import annotations

from typing import Any

from .layers.base import Layer
from .layers.symbolic import Node, SymbolicTensor

__all__ = ["OutputOf", "PartialGrads", "call_multi_output", "is_output_of"]


class PartialGrads(list):  # type: ignore[type-arg]
    """The gradients of a multi-output model call's outputs, one entry per output (None: no
    gradient from this consumer)."""

    def merged(self, other: PartialGrads) -> PartialGrads:
        """Entry by entry ``self + other`` (None + g = g)."""
        return PartialGrads(b if a is None else a if b is None else a + b
                            for a, b in zip(self, other, strict=True))


class OutputOf(Layer):
    """Output ``index`` (of ``count``) of the model call it reads (see the module docstring).

    Args:
        index: the output's position in the model's outputs.
        count: the model's number of outputs.
        shape: the output's per-sample shape.
        name: the model's name of that output (its ``output_names`` entry): an outer model
            returning this tensor names its output so.
    """

    default_name = "output_of"

    def __init__(self, index: int, count: int, shape: tuple[int, ...], name: str) -> None:
        super().__init__(name=name)
        self.index, self.count, self.shape = int(index), int(count), tuple(shape)

    def _build(self, input_shape: Any, rng: Any) -> tuple[int, ...]:
        return self.shape

    def forward(self, x: list[Any], training: bool = False) -> Any:
        """``x``: the model call's outputs (a list) -> output ``index``."""
        return x[self.index]

    def backward(self, dy: Any, accumulate: bool = False) -> PartialGrads:
        """``dy`` -> a :class:`PartialGrads` with ``dy`` at ``index``."""
        out = PartialGrads([None] * self.count)
        out[self.index] = dy
        return out

    def get_config(self) -> dict[str, Any]:
        raise TypeError("OutputOf is a node of a graph model, not a layer to save: the "
                        "config refers to [model, call, output index] instead")


def is_output_of(layer: Any) -> bool:
    """Whether ``layer`` is an :class:`OutputOf` node."""
    return isinstance(layer, OutputOf)


def _norm(shape: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in shape)


def call_multi_output(model: Any, inputs: Any) -> Any:
    """Record ``model(inputs)`` on symbolic tensors for a model with several outputs; returns
    one symbolic tensor per output (a list, or a dict keyed as the model's outputs).

    Raises:
        TypeError: an input that is not a symbolic tensor, a list for a one-input model.
        ValueError: the wrong number of inputs, or an input of another shape than the
            model's (the message names the model and the input).
    """
    names = list(model.input_names)
    if isinstance(inputs, dict):
        missing = [n for n in names if n not in inputs]
        if missing or len(inputs) != len(names):
            raise ValueError(f"model {model.name!r} takes inputs {names}; got a dict with keys "
                             f"{sorted(map(str, inputs))}")
        tensors = [inputs[n] for n in names]
    elif isinstance(inputs, list | tuple):
        tensors = list(inputs)
    else:
        tensors = [inputs]
    if len(tensors) != len(names):
        raise ValueError(f"model {model.name!r} takes {len(names)} input(s) {names}, got "
                         f"{len(tensors)}")
    shapes = model.input_shape if model.multi_input else [model.input_shape]
    for n, t, want in zip(names, tensors, shapes, strict=True):
        if not isinstance(t, SymbolicTensor):
            raise TypeError(f"model {model.name!r}: input {n!r} is a {type(t).__name__}, not a "
                            f"symbolic tensor")
        if _norm(t.shape) != _norm(want):
            raise ValueError(f"model {model.name!r}: input {n!r} takes per-sample shape "
                             f"{_norm(want)}, got {t.describe()}")
    holder = SymbolicTensor((), Node(model, tensors))
    count = len(model.output_names)
    outs = []
    for k, shape in enumerate(model.output_shape):
        pick = OutputOf(k, count, _norm(shape), model.output_names[k])
        pick.build((), None)
        outs.append(SymbolicTensor(pick.shape, Node(pick, [holder])))
    if getattr(model, "_out_keys", None):
        return dict(zip(model.output_names, outs, strict=True))
    return outs
