"""A model as one flat graph of layer calls, for the exporters (ONNX and PyTorch):
:func:`flatten` inlines every nested model (a Sequential or a graph Model used as a layer) and
keeps one node per layer call, each with the names its exported form takes.

* ``FlatGraph.nodes``: :class:`FlatNode` in an order where each node comes after its inputs;
  an input node has ``layer=None`` and no inputs; a pass-through (a folded BatchNormalization,
  set by the ONNX exporter) has ``layer=None`` and one input.
* ``FlatNode.name``: unique over the graph: ``<prefix><layer>`` for a layer's first call,
  ``<prefix><layer>/call<k>`` for the later ones, where ``<prefix>`` is the chain of the nested
  models' names (``encoder/``, ``encoder/block/``).
* ``FlatNode.weights``: the name the layer's weights go under (``<prefix><layer>``, the
  ``<prefix>`` of the layer's first call): a shared layer, or a nested model called twice,
  has its weights written once.
* ``inputs`` / ``outputs``: node indices in the model's input / output order, with
  ``input_names`` / ``output_names`` (the model's: ``Functional.input_names`` /
  ``output_names``; ``["input"]`` / ``["output"]`` for a model with one of each) and whether
  the model takes / returns a dict (``input_keys`` / ``output_keys``) or a list.

Output ``k`` of a call of a nested model with several outputs (an ``OutputOf`` node,
:mod:`fastcnn._multi_call`) is that model's ``k``-th output node. Models are recognised by
their attributes (``_nodes`` and ``layers``; a graph model also has
``_inputs_of``), so this module imports nothing of fastcnn's models (the exporters it serves
are imported by them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ._multi_call import is_output_of

__all__ = ["FlatGraph", "FlatNode", "flatten", "is_model"]


@dataclass
class FlatNode:
    """One layer call of a flattened model (see the module docstring)."""

    layer: Any
    inputs: tuple[int, ...]
    name: str
    weights: str


@dataclass
class FlatGraph:
    """A flattened model (see the module docstring)."""

    nodes: list[FlatNode] = field(default_factory=list)
    inputs: list[int] = field(default_factory=list)
    outputs: list[int] = field(default_factory=list)
    input_names: list[str] = field(default_factory=list)
    output_names: list[str] = field(default_factory=list)
    input_shapes: list[tuple[int, ...]] = field(default_factory=list)
    output_shapes: list[tuple[int, ...]] = field(default_factory=list)
    input_keys: bool = False
    output_keys: bool = False

    @property
    def multi_in(self) -> bool:
        """Whether the model takes several inputs (a list or dict)."""
        return len(self.inputs) > 1 or self.input_keys

    @property
    def multi_out(self) -> bool:
        """Whether the model returns several outputs (a list or dict)."""
        return len(self.outputs) > 1 or self.output_keys

    def consumers(self) -> list[list[int]]:
        """Per node, the nodes reading its output (in node order)."""
        out: list[list[int]] = [[] for _ in self.nodes]
        for i, n in enumerate(self.nodes):
            for j in n.inputs:
                out[j].append(i)
        return out


def is_model(layer: Any) -> bool:
    """Whether ``layer`` is a fastcnn model (Sequential or graph Model) used as a layer."""
    return hasattr(layer, "_nodes") and hasattr(layer, "layers")


def _is_graph(model: Any) -> bool:
    return hasattr(model, "_inputs_of")


def flatten(model: Any) -> FlatGraph:
    """The built ``model`` (a Sequential or graph Model, with any nesting) as a
    :class:`FlatGraph`."""
    model._require_built()
    g = FlatGraph()
    graph = _is_graph(model)
    if graph:
        g.input_keys, g.output_keys = bool(model._in_keys), bool(model._out_keys)
        multi_in, multi_out = model._multi_in, model._multi_out
        g.input_names = list(model.input_names) if multi_in else ["input"]
        g.output_names = list(model.output_names) if multi_out else ["output"]
        g.input_shapes = [tuple(s) for s in (model.input_shape if multi_in
                                             else [model.input_shape])]
        g.output_shapes = [tuple(s) for s in (model.output_shape if multi_out
                                              else [model.output_shape])]
    else:
        g.input_names, g.output_names = ["input"], ["output"]
        g.input_shapes, g.output_shapes = [tuple(model.input_shape)], [tuple(model.output_shape)]
    for name in g.input_names:
        g.nodes.append(FlatNode(None, (), name, name))
        g.inputs.append(len(g.nodes) - 1)
    g.outputs = _expand(model, list(g.inputs), "", g, {}, {})
    return g


def _add(layer: Any, ins: list[int], prefix: str, g: FlatGraph, calls: dict[int, int],
         wnames: dict[int, str]) -> list[int]:
    """Append one call of ``layer`` on the nodes ``ins``; returns its output node(s)."""
    if is_model(layer):
        return _expand(layer, ins, f"{prefix}{layer.name}/", g, calls, wnames)
    k = calls.get(id(layer), 0)
    calls[id(layer)] = k + 1
    base = f"{prefix}{layer.name}"
    g.nodes.append(FlatNode(layer, tuple(ins), base if k == 0 else f"{base}/call{k}",
                            wnames.setdefault(id(layer), base)))
    return [len(g.nodes) - 1]


def _expand(model: Any, ins: list[int], prefix: str, g: FlatGraph, calls: dict[int, int],
            wnames: dict[int, str]) -> list[int]:
    """Append ``model``'s layer calls, its inputs being the nodes ``ins``; returns the nodes
    computing its outputs (in its output order)."""
    if not _is_graph(model):  # a Sequential: a chain
        cur = ins[:1]
        for layer in model.layers:
            cur = _add(layer, cur, prefix, g, calls, wnames)
        return cur
    local: dict[int, list[int]] = {}
    for pos, i in enumerate(model._in_nodes):
        local[i] = [ins[pos]]
    for i, node in enumerate(model._graph):
        srcs = model._inputs_of[i]
        if not srcs:
            continue
        if is_output_of(node.layer):
            local[i] = [local[srcs[0]][node.layer.index]]  # output k of a model call
            continue
        args: list[int] = []
        for j in srcs:
            args += local[j]
        local[i] = _add(node.layer, args, prefix, g, calls, wnames)
    out: list[int] = []
    for i in model._out_nodes:
        out += local[i]
    return out
