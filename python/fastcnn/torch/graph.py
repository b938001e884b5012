"""A graph :class:`fastcnn.Model` (the functional API) as a ``torch.nn.Module``, weights copied.

:func:`graph_to_torch` gives a :class:`GraphModule`: one ``torch.nn.Sequential`` per layer (the
modules :mod:`fastcnn._torch_layout` plans for it, as :func:`fastcnn.torch.to_torch` builds for a
stack), run in the model's node order; ``Add`` sums its inputs in order, ``Concatenate`` is
``torch.cat`` on the layer's axis, the input layer passes its tensor through. A layer called
several times is one module called several times (its weights shared, as in fastcnn). Same
input ``(N, *model.input_shape)`` and output as ``model(x)``; ``logits=True`` leaves out the
output layer's softmax / sigmoid (the form ``torch.nn.functional.cross_entropy`` takes).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .. import layers as L
from .convert import layer_to_torch

__all__ = ["GraphModule", "graph_to_torch"]


class GraphModule(nn.Module):
    """The torch twin of a fastcnn graph model (see the module docstring).

    Attributes:
        steps: ``nn.ModuleList`` of one ``nn.Sequential`` per node (empty for the input, Add and
            Concatenate nodes).
    """

    def __init__(self, nodes: list[tuple[Any, tuple[int, ...]]], out: int, logits: bool) -> None:
        super().__init__()
        self._inputs = [tuple(ins) for _, ins in nodes]
        self._kinds: list[tuple[str, int]] = []
        self._out = out
        made: dict[int, nn.Sequential] = {}
        steps = []
        for i, (layer, _) in enumerate(nodes):
            if layer is None or isinstance(layer, L.InputLayer):
                self._kinds.append(("input", 0))
                steps.append(nn.Sequential())
            elif isinstance(layer, L.Add):
                self._kinds.append(("add", 0))
                steps.append(nn.Sequential())
            elif isinstance(layer, L.Concatenate):
                self._kinds.append(("concat", layer.axis))
                steps.append(nn.Sequential())
            else:
                if id(layer) not in made:  # a shared layer: one module, called again
                    mods = layer_to_torch(layer)
                    if logits and i == out and layer.has_activation and mods and isinstance(
                            mods[-1], nn.Softmax | nn.Sigmoid):
                        mods = mods[:-1]
                    made[id(layer)] = nn.Sequential(*mods)
                self._kinds.append(("layer", 0))
                steps.append(made[id(layer)])
        self.steps = nn.ModuleList(steps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (N, C, H, W) -> the model's output (N, ...)."""
        values: list[Any] = [None] * len(self._kinds)
        for i, ((kind, axis), ins) in enumerate(zip(self._kinds, self._inputs, strict=True)):
            if kind == "input":
                values[i] = x if not ins else values[ins[0]]
            elif kind == "add":
                total = values[ins[0]]
                for j in ins[1:]:
                    total = total + values[j]
                values[i] = total
            elif kind == "concat":
                values[i] = torch.cat([values[j] for j in ins], dim=axis)
            else:
                values[i] = self.steps[i](values[ins[0]])
        return values[self._out]


def graph_to_torch(model: Any, *, logits: bool = False) -> GraphModule:
    """The :class:`GraphModule` of a built graph ``model`` (a ``fastcnn.Model`` from
    ``fastcnn.Input``), on the CPU, in training mode, holding copies of its weights.

    Args:
        model: a built graph model.
        logits: leave out the output layer's softmax / sigmoid.
    """
    model._require_built()
    nodes, out = model._nodes()
    return GraphModule(nodes, out, bool(logits))
