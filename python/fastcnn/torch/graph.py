"""A graph :class:`fastcnn.Model` (the functional API) as a ``torch.nn.Module``, weights copied.

:func:`graph_to_torch` gives a :class:`GraphModule`: one ``torch.nn.Sequential`` per layer (the
modules :mod:`fastcnn._torch_layout` plans for it, as :func:`fastcnn.torch.to_torch` builds for a
stack), run in the model's node order; ``Add`` sums its inputs in order, ``Concatenate`` is
``torch.cat`` on the layer's axis, the input layer passes its tensor through. A layer called
several times is one module called several times (its weights shared, as in fastcnn). Nested
models are inlined (:mod:`fastcnn._flat`: their layers are steps like any other). Same input
``(N, *model.input_shape)`` and output as ``model(x)``; ``logits=True`` leaves out the output
layers' softmax / sigmoid (the form ``torch.nn.functional.cross_entropy`` takes).

Several inputs / outputs: ``forward`` takes the inputs positionally (``m(a, b)``, what
``torch.onnx.export`` and ``torch.jit.trace`` pass), as one list / tuple, or as one dict keyed
by the model's input names; it returns a tuple of the outputs in the model's order, or a dict
by output name when the fastcnn model returns a dict.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .. import layers as L
from .._flat import FlatGraph, flatten
from .convert import layer_to_torch

__all__ = ["GraphModule", "graph_to_torch"]


class GraphModule(nn.Module):
    """The torch twin of a fastcnn graph model (see the module docstring).

    Attributes:
        steps: ``nn.ModuleList`` of one ``nn.Sequential`` per layer call of the flattened
            model (:mod:`fastcnn._flat`; empty for the inputs, Add and Concatenate nodes; a
            shared layer's calls hold the same module).
        input_names / output_names: the model's (``["input"]`` / ``["output"]`` for one).
    """

    def __init__(self, flat: FlatGraph, logits: bool) -> None:
        super().__init__()
        self._inputs = [tuple(n.inputs) for n in flat.nodes]
        self._kinds: list[tuple[str, int]] = []
        self._in_nodes, self._out_nodes = list(flat.inputs), list(flat.outputs)
        self.input_names, self.output_names = list(flat.input_names), list(flat.output_names)
        self._multi_in, self._multi_out = flat.multi_in, flat.multi_out
        self._in_keys, self._out_keys = flat.input_keys, flat.output_keys
        outs = set(flat.outputs)
        self._strip: set[int] = set()
        made: dict[int, nn.Sequential] = {}
        steps = []
        for i, node in enumerate(flat.nodes):
            layer = node.layer
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
                    made[id(layer)] = nn.Sequential(*layer_to_torch(layer))
                mods = made[id(layer)]
                if logits and i in outs and layer.has_activation and len(mods) and isinstance(
                        mods[-1], nn.Softmax | nn.Sigmoid):
                    self._strip.add(i)  # this call leaves out the softmax / sigmoid
                self._kinds.append(("layer", 0))
                steps.append(mods)
        self.steps = nn.ModuleList(steps)

    def _arrange(self, args: tuple[Any, ...]) -> list[torch.Tensor]:
        """``forward``'s arguments as one tensor per model input, in order: the tensors
        positionally, one list / tuple of them, or one dict keyed by :attr:`input_names`."""
        names = self.input_names
        if len(args) == 1 and isinstance(args[0], dict):
            got = args[0]
            if sorted(got) != sorted(names):
                raise ValueError(f"GraphModule: the model takes inputs {names}; got a dict "
                                 f"with keys {sorted(got)}")
            return [got[n] for n in names]
        if len(args) == 1 and isinstance(args[0], list | tuple):
            args = tuple(args[0])
        if len(args) != len(names):
            raise ValueError(f"GraphModule: the model takes {len(names)} input(s) {names} "
                             f"(positionally, as one list, or as a dict by name); got "
                             f"{len(args)}")
        return list(args)

    def forward(self, *args: Any) -> Any:
        """The model's inputs (N, ...) -> its outputs: one tensor, or for several a tuple in
        the model's order (a dict keyed by :attr:`output_names` when the fastcnn model
        returns a dict)."""
        values: list[Any] = [None] * len(self._kinds)
        for i, x in zip(self._in_nodes, self._arrange(args), strict=True):
            values[i] = x
        for i, ((kind, axis), ins) in enumerate(zip(self._kinds, self._inputs, strict=True)):
            if not ins:
                continue
            if kind == "input":
                values[i] = values[ins[0]]
            elif kind == "add":
                total = values[ins[0]]
                for j in ins[1:]:
                    total = total + values[j]
                values[i] = total
            elif kind == "concat":
                values[i] = torch.cat([values[j] for j in ins], dim=axis)
            elif i in self._strip:
                values[i] = self.steps[i][:-1](values[ins[0]])
            else:
                values[i] = self.steps[i](values[ins[0]])
        outs = [values[i] for i in self._out_nodes]
        if self._out_keys:
            return dict(zip(self.output_names, outs, strict=True))
        return tuple(outs) if self._multi_out else outs[0]


def graph_to_torch(model: Any, *, logits: bool = False) -> GraphModule:
    """The :class:`GraphModule` of a built graph ``model`` (a ``fastcnn.Model`` from
    ``fastcnn.Input``, nested models inlined), on the CPU, in training mode, holding copies of
    its weights.

    Args:
        model: a built graph model (any number of inputs and outputs).
        logits: leave out the output layers' softmax / sigmoid.
    """
    return GraphModule(flatten(model), bool(logits))
