"""The functional API: ``fastcnn.Model(inputs, outputs)``, a model that is any directed acyclic
graph of layers (a :class:`Functional`, as in Keras).

::

    x = fastcnn.Input((3, 32, 32))                       # per-sample shape, NCHW
    h = layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    h = layers.Conv2D(16, 3, padding="same")(h)
    y = layers.ReLU()(layers.Add()([h, x_or_a_projection]))
    model = fastcnn.Model(x, y)

Calling a layer on symbolic tensors records a node (:mod:`fastcnn.layers.symbolic`);
``Model(inputs, outputs)`` walks the nodes back from the output, orders them (a depth-first
post-order from the output, visiting each node's inputs in their order: it depends only on the
graph, so a model rebuilt from its config has the same order), names the unnamed layers
(``<kind>``, ``<kind>_1``, ... in that order) and creates the weights from ``seed``.
Everything else (``fit`` / ``evaluate`` / ``predict``, ``train_on_batch``, ``save`` /
``load_model``, ``to_json`` / ``model_from_json``, ``to("cuda")``, ``get_layer``, frozen layers,
``summary``, ``export``) is shared with :class:`fastcnn.Sequential`, which is a special case of
this class (:mod:`fastcnn.model_base`).

Inputs and outputs: one input and one output, each given as a tensor or a list of one. The
graph engine below (forward, backward, the config) walks any DAG; several inputs or outputs
need the batching and the losses to take several arrays, which they don't yet: a ValueError.

Forward: the nodes in order, each layer's ``forward`` on its inputs' values (a merge layer
gets a list); a value is dropped as soon as its last consumer has run. ``logits=True`` skips
the output layer's activation (the loss fusion of Sequential).

Backward: the nodes in reverse order. A tensor used by several nodes (fan-out) gets the sum of
their gradients, added in the consumers' node order (``((g1 + g2) + g3)``, float32): the same
result every run, whatever path reached it first. A node runs its backward only when a weight
or the requested ``dx`` lies upstream of it; a layer with no such input skips its ``dx``
(``compute_dx=False``: a convolution then skips a third of its backward), which generalises
Sequential's first-layer rule.

Fusions, as in Sequential, applied where the graph allows:

* Conv2D / Dense with ``activation="relu"``: inside the layer, as always.
* The pooled gradient (a Conv2D's backward absorbing a following MaxPool2D's): when the
  convolution's output has the pooling as its only consumer. With fan-out the full-size
  gradient is needed anyway, so the two run apart.
* A softmax / sigmoid output with the matching cross-entropy: on the output node.
* A layer that applies the activation of its only consumer in its own pass (a
  BatchNormalization and a ReLU: :func:`fastcnn.layers.base.fused_activation`): the consumer
  node passes through, forward and backward (not when it is the output node of a ``logits``
  pass, whose activation is skipped anyway).

A layer called several times (shared weights) runs one backward per call; the model keeps each
call's forward cache (the layer's ``_cache``: a custom layer shared this way keeps its forward
state there) and the later calls add to the weights' gradients.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from . import layers as _layers
from ._arrays import restore_kind
from .layers.base import fused_activation
from .layers.input import InputLayer
from .layers.symbolic import SymbolicTensor
from .model_base import Model, _layout_hint

__all__ = ["Functional"]


class Functional(Model):
    """A model made of a graph of layers (Keras' ``Functional``: what ``fastcnn.Model(inputs,
    outputs)`` returns).

    Args:
        inputs: the ``fastcnn.Input(shape)`` tensor (or a list of one).
        outputs: the tensor the model returns, made by layers called on ``inputs`` (or a list
            of one).
        name: shown by :meth:`summary`.
        seed: seed of the weight initialisation, layers in :attr:`layers` order; None gives
            fresh random weights. Layers that had weights before their first call in the
            graph (taken from another model) keep them.

    Raises:
        TypeError: ``inputs`` / ``outputs`` are not symbolic tensors.
        ValueError: several inputs or outputs, an input that is not an ``Input``, an output
            not computed from the input (the graph is disconnected), a graph that is not a
            DAG, or two layers with one name (each message names the layers).
    """

    def __init__(self, inputs: Any, outputs: Any, *, name: str = "model",
                 seed: int | None = None) -> None:
        self._init_model(name, seed)
        inp = _single(inputs, "inputs")
        out = _single(outputs, "outputs")
        if not isinstance(inp.layer, InputLayer):
            raise ValueError(f"Model: the input must be a fastcnn.Input(...) tensor, got "
                             f"{inp.describe()}")
        self._set_graph(_topological(inp, out))
        self._create_weights(only_fresh=True)
        self.built = True

    # -- structure --------------------------------------------------------------------------
    def _set_graph(self, nodes: list[Any]) -> None:
        """Index the ordered nodes and name the layers."""
        self._graph = nodes
        index = {id(n): i for i, n in enumerate(nodes)}
        self._inputs_of = [tuple(index[id(t.node)] for t in n.inputs) for n in nodes]
        self._multi = [bool(n.layer.multi_input) for n in nodes]
        self._consumers: list[list[int]] = [[] for _ in nodes]
        for i, ins in enumerate(self._inputs_of):
            for j in ins:
                self._consumers[j].append(i)
        layers: list[_layers.Layer] = []
        calls: dict[int, int] = {}
        self._call_index = []
        for n in nodes:
            k = calls.get(id(n.layer), 0)
            if k == 0:
                layers.append(n.layer)
            calls[id(n.layer)] = k + 1
            self._call_index.append(k)
        self._shared = [calls[id(n.layer)] > 1 for n in nodes]
        _name_layers(layers)
        self.layers = layers
        self._input_node = 0  # the post-order starts at the (only) input
        self._output_node = len(nodes) - 1  # and ends at the output
        self.input_shape = nodes[0].layer.shape
        self._node_caches: dict[int, Any] = {}

    @property
    def inputs(self) -> list[SymbolicTensor]:
        """The model's input tensors (a list of one), Keras' ``model.inputs``."""
        return [self._graph[self._input_node].output]

    @property
    def outputs(self) -> list[SymbolicTensor]:
        """The model's output tensors (a list of one), Keras' ``model.outputs``."""
        return [self._graph[self._output_node].output]

    @property
    def output_shape(self) -> tuple[int, ...] | None:
        """Per-sample output shape."""
        return tuple(self._graph[self._output_node].output.shape)

    def _output_layer(self) -> _layers.Layer:
        return self._graph[self._output_node].layer  # type: ignore[no-any-return]

    def _nodes(self) -> tuple[list[tuple[_layers.Layer | None, tuple[int, ...]]], int]:
        """The graph for the exporters: ``(layer, input node indices)`` per node in order
        (``None`` for the model's input), and the output node's index."""
        return ([(None if not ins else n.layer, ins)
                 for n, ins in zip(self._graph, self._inputs_of, strict=True)],
                self._output_node)

    def _create_weights(self, only_fresh: bool, seed: int | None = None) -> None:
        self._rng = np.random.default_rng(self.seed if seed is None else seed)
        for layer in self.layers:
            if isinstance(layer, InputLayer):
                continue
            if not only_fresh or getattr(layer, "_built_by_call", False):
                layer.build(layer.input_shape, self._rng)  # type: ignore[arg-type]
                layer._built_by_call = False  # type: ignore[attr-defined]
            layer.to_device(self.device)
        self._node_caches = {}

    def build(self, input_shape: tuple[int, ...] | None = None,
              seed: int | None = None) -> None:
        """Re-create every layer's weights from ``np.random.default_rng(seed)`` (``seed``
        defaults to the model's); ``input_shape``, if given, must be the model's."""
        if input_shape is not None and tuple(int(s) for s in input_shape) != self.input_shape:
            raise ValueError(f"build: the model {self.name!r} takes inputs of shape "
                             f"{self.input_shape} (its Input), got input_shape={input_shape}")
        self._create_weights(only_fresh=False, seed=seed)

    def _ensure_built(self, x: Any) -> None:
        if tuple(x.shape[1:]) != self.input_shape:
            layer = self._graph[self._input_node].layer
            want = ", ".join(str(s) for s in self.input_shape)  # type: ignore[union-attr]
            got = ", ".join(str(s) for s in x.shape[1:])
            hint = _layout_hint(tuple(x.shape[1:]), self.input_shape)
            raise ValueError(f"model {self.name!r}: the input layer {layer.name!r} expects "
                             f"inputs of shape (N, {want}), got (N, {got})"
                             + (f". {hint}" if hint else ""))

    @property
    def flops(self) -> int:
        """Forward FLOPs per sample (sum over the layer calls)."""
        self._require_built()
        return sum(lay.flops for lay, _ in self._nodes()[0] if lay is not None)

    def _connections(self) -> list[list[str]] | None:
        per_layer: dict[int, list[str]] = {id(lay): [] for lay in self.layers}
        for n, ins in zip(self._graph, self._inputs_of, strict=True):
            per_layer[id(n.layer)].extend(
                f"{self._graph[j].layer.name}[{self._call_index[j]}][0]" for j in ins)
        return [per_layer[id(lay)] for lay in self.layers]

    # -- running ----------------------------------------------------------------------------
    def _drop_caches(self) -> None:
        self._node_caches = {}

    def _forward(self, x: Any, training: bool, logits: bool) -> Any:
        graph, inputs_of, multi, shared = self._graph, self._inputs_of, self._multi, self._shared
        out = self._output_node
        values: list[Any] = [None] * len(graph)
        values[self._input_node] = x
        remaining = [len(c) for c in self._consumers]
        caches: dict[int, Any] = {}
        self._node_caches = caches
        folds = {} if training else self._folds()
        acts, through = self._activation_fusions(folds, logits)
        if training:
            self._fused_through = through
        for i, node in enumerate(graph):
            ins = inputs_of[i]
            if not ins:
                continue
            layer = folds.get(i, node.layer)
            arg = [values[j] for j in ins] if multi[i] else values[ins[0]]
            if layer is None or i in through:  # folded into / fused with the layer before it
                y = arg
            elif logits and i == out and layer.has_activation:
                y = layer.forward(arg, training, apply_activation=False)
            elif i in acts:
                y = layer.forward(arg, training, fused_activation=acts[i])
            else:
                y = layer.forward(arg, training)
            if training and shared[i]:
                caches[i] = layer._cache
            values[i] = y
            for j in ins:
                remaining[j] -= 1
                if remaining[j] == 0:
                    values[j] = None
        return values[out]

    def _folds(self) -> dict[int, Any]:
        """For an inference pass: node -> the layer to run instead. A Conv2D / Dense node (no
        activation) whose only consumer is a BatchNormalization runs
        :func:`fastcnn.layers.fold_batch_norm`'s folded copy (made from the current weights),
        and that BatchNormalization node ``None`` (its input passes through), as
        :func:`fastcnn.layers.inference_layers` does for a stack."""
        folds: dict[int, Any] = {}
        for i, node in enumerate(self._graph):
            ins = self._inputs_of[i]
            if len(ins) != 1 or self._multi[i] or self._consumers[ins[0]] != [i]:
                continue
            prev = self._graph[ins[0]].layer
            folded = _layers.fold_batch_norm(prev, node.layer) if prev is not None else None
            if folded is not None:
                folds[ins[0]], folds[i] = folded, None
        return folds

    def _activation_fusions(self, folds: dict[int, Any], logits: bool) -> tuple[dict[int, str],
                                                                               set[int]]:
        """``(acts, through)``: node -> the activation its layer applies for its only consumer
        (:func:`fastcnn.layers.base.fused_activation`), and those consumer nodes, which pass
        their input through."""
        acts: dict[int, str] = {}
        through: set[int] = set()
        for i, node in enumerate(self._graph):
            ins = self._inputs_of[i]
            if len(ins) != 1 or self._multi[i] or (logits and i == self._output_node):
                continue
            p = ins[0]
            if not self._inputs_of[p] or self._multi[p] or self._consumers[p] != [i]:
                continue
            prev, layer = folds.get(p, self._graph[p].layer), folds.get(i, node.layer)
            act = fused_activation(prev, layer) if prev is not None and layer is not None \
                else None
            if act is not None:
                acts[p] = act
                through.add(i)
        return acts, through

    def backward(self, dy: Any, accumulate: bool = False, compute_dx: bool = True) -> Any:
        """Backward pass after ``model(x, training=True)``: ``dy`` (gradient of the loss with
        respect to that call's output) -> ``dx`` (N, *input_shape), or None with
        ``compute_dx=False``. Writes each trainable layer's ``grads`` (adds to them with
        ``accumulate=True``; a shared layer's later calls always add). See the module
        docstring for the order of the fan-out sums and the fusions."""
        self._require_built()
        g0 = self._on_device(self._input(dy, "backward", "dy"))
        graph, inputs_of, multi = self._graph, self._inputs_of, self._multi
        n = len(graph)
        needs = [False] * n  # does a weight or the requested dx lie upstream of node i?
        for i, ins in enumerate(inputs_of):
            lay = graph[i].layer
            needs[i] = bool(compute_dx) if not ins else (
                (lay.trainable and bool(lay.params)) or any(needs[j] for j in ins))
        grads: list[Any] = [[] for _ in range(n)]
        grads[self._output_node].append((n, g0))
        done = [False] * n
        seen: set[int] = set()
        through = getattr(self, "_fused_through", set())
        try:
            for i in range(n - 1, -1, -1):
                ins = inputs_of[i]
                if not ins or done[i] or not needs[i]:
                    continue
                g = _summed(grads[i])
                grads[i] = None
                if i in through:  # fused into the layer before: the gradient passes through
                    self._route(i, [g], grads, needs)
                    continue
                p = ins[0]
                if not multi[i] and inputs_of[p] and not multi[p] and self._consumers[p] == [i] \
                        and graph[p].layer is not graph[i].layer:
                    self._restore(p)
                    if graph[p].layer.accepts_pooled_grad():
                        self._restore(i)
                        offer = graph[i].layer.offer_pooled_grad()
                        if offer is not None:  # the pooling's backward inside the conv's
                            dx = self._node_backward(p, g, accumulate, seen, needs,
                                                     pooled_grad=offer)
                            self._route(p, [dx], grads, needs)
                            done[p] = True
                            continue
                self._restore(i)
                dx = self._node_backward(i, g, accumulate, seen, needs)
                self._route(i, dx if multi[i] else [dx], grads, needs)
        finally:
            for lay in self.layers:
                lay.compute_dx = True
        if not compute_dx:
            return None
        return restore_kind(_summed(grads[self._input_node]), dy)

    def _restore(self, i: int) -> None:
        """Put node ``i``'s forward cache back into its layer (a shared layer's)."""
        if self._shared[i]:
            self._graph[i].layer._cache = self._node_caches.get(i)

    def _node_backward(self, i: int, g: Any, accumulate: bool, seen: set[int],
                       needs: list[bool], **kw: Any) -> Any:
        layer = self._graph[i].layer
        layer.compute_dx = self._multi[i] or any(needs[j] for j in self._inputs_of[i])
        acc = accumulate or id(layer) in seen  # a shared layer's later calls add
        seen.add(id(layer))
        return layer.backward(g, acc, **kw)

    def _route(self, i: int, dxs: list[Any], grads: list[Any], needs: list[bool]) -> None:
        for j, d in zip(self._inputs_of[i], dxs, strict=True):
            if needs[j] and d is not None:
                grads[j].append((i, d))

    # -- other formats ----------------------------------------------------------------------
    def to_torch(self, *, logits: bool = False) -> Any:
        """An equivalent ``torch.nn.Module`` holding copies of the weights
        (:func:`fastcnn.torch.graph.graph_to_torch`: one ``nn.Sequential`` per layer, run in the
        graph's order; ``logits=True`` leaves out the output softmax / sigmoid). Needs PyTorch
        (``pip install "fastcnn[torch]"``)."""
        from .torch.graph import graph_to_torch  # fastcnn.torch never imports this module

        return graph_to_torch(self, logits=logits)

    def save_weights(self, path: Any) -> None:
        """Write only the weights to one ``.npz`` (``.safetensors`` is refused: its tensor
        names are a ``torch.nn.Sequential``'s, which a graph has not)."""
        _no_safetensors(path, "save_weights")
        super().save_weights(path)

    def load_weights(self, path: Any) -> None:
        """Load weights saved by :meth:`save_weights` or :meth:`save` (all checked first)."""
        _no_safetensors(path, "load_weights")
        super().load_weights(path)

    def get_config(self) -> dict[str, Any]:
        """The graph as a JSON-serialisable dict (Keras' functional layout): per layer its
        class, config and ``inbound_nodes`` (per call, its inputs as ``[layer, call, 0]``)."""
        graph = self._graph
        inbound: dict[int, list[list[list[Any]]]] = {id(lay): [] for lay in self.layers}
        for n, ins in zip(graph, self._inputs_of, strict=True):
            if ins:
                inbound[id(n.layer)].append([[graph[j].layer.name, self._call_index[j], 0]
                                             for j in ins])
        out = self._output_node
        return {
            "class_name": "Functional",
            "name": self.name,
            "seed": self.seed,
            "layers": [{"class_name": type(lay).__name__, "config": lay.get_config(),
                        "inbound_nodes": inbound[id(lay)]} for lay in self.layers],
            "input_layers": [[graph[self._input_node].layer.name, 0, 0]],
            "output_layers": [[graph[out].layer.name, self._call_index[out], 0]],
        }

    @classmethod
    def from_config(cls, config: dict[str, Any],
                    custom_objects: dict[str, type[_layers.Layer]] | None = None) -> Functional:
        """The model of :meth:`get_config` (built, fresh weights from its seed).
        ``custom_objects``: as for :meth:`fastcnn.Sequential.from_config`.

        Raises:
            ValueError: not a Model architecture, an unknown layer name in an
                ``inbound_nodes`` entry, or nodes that wait on each other (not a DAG; the
                message names the layers)."""
        if not isinstance(config, dict) or config.get("class_name") != "Functional":
            raise ValueError("not a fastcnn Functional (graph) architecture")
        specs = config.get("layers", [])
        layers = {}
        for spec in specs:
            layer = _layers.deserialize(spec, custom_objects)
            if layer.name is None or layer.name in layers:
                raise ValueError(f"Model config: every layer needs a unique name, got "
                                 f"{layer.name!r} twice or none")
            layers[layer.name] = layer
        tensors: dict[tuple[str, int], SymbolicTensor] = {}
        pending: list[tuple[str, int, list[Any]]] = []
        for spec in specs:
            name = spec["config"]["name"]
            if isinstance(layers[name], InputLayer):
                tensors[(name, 0)] = layers[name].output  # type: ignore[attr-defined]
            for k, ins in enumerate(spec.get("inbound_nodes", [])):
                for ref in ins:
                    if ref[0] not in layers:
                        raise ValueError(f"Model config: layer {name!r} is called on the "
                                         f"output of {ref[0]!r}, which is not a layer of "
                                         f"the model")
                pending.append((name, k, ins))
        while pending:  # call each layer once all the tensors it takes exist
            waiting = []
            for name, k, ins in pending:
                if all((r[0], int(r[1])) in tensors for r in ins):
                    args = [tensors[(r[0], int(r[1]))] for r in ins]
                    layer = layers[name]
                    tensors[(name, k)] = layer(args if layer.multi_input else args[0])
                else:
                    waiting.append((name, k, ins))
            if len(waiting) == len(pending):
                names = sorted({w[0] for w in waiting})
                raise ValueError(f"Model config: the graph is not a DAG: the layers {names} "
                                 f"wait on each other's outputs (a cycle)")
            pending = waiting
        try:
            (i_name, i_k, _), = config["input_layers"]
            (o_name, o_k, _), = config["output_layers"]
            inp, out = tensors[(i_name, int(i_k))], tensors[(o_name, int(o_k))]
        except (KeyError, ValueError, TypeError) as e:
            raise ValueError(f"Model config: bad input_layers / output_layers ({e!r})") from e
        return cls(inp, out, name=config.get("name", "model"), seed=config.get("seed"))


# --------------------------------------------------------------------------------------------
# helpers


def _single(t: Any, what: str) -> SymbolicTensor:
    """``t`` (a symbolic tensor or a list / tuple of one) as a tensor."""
    if isinstance(t, list | tuple):
        if len(t) != 1:
            raise ValueError(f"Model: {what} must be one tensor (or a list of one) for now, "
                             f"got {len(t)}; models with several inputs or outputs are not "
                             f"supported yet (merge them with Concatenate / Add inside one "
                             f"model)")
        t = t[0]
    if not isinstance(t, SymbolicTensor):
        raise TypeError(f"Model: {what} must be a symbolic tensor (fastcnn.Input(...) or a "
                        f"layer called on one), got {type(t).__name__}")
    return t


def _topological(inp: SymbolicTensor, out: SymbolicTensor) -> list[Any]:
    """The nodes ``out`` depends on, each after its inputs: an iterative depth-first
    post-order from ``out`` visiting each node's inputs in their order. ValueError for a
    cycle or an ``Input`` other than ``inp`` (a disconnected graph)."""
    order: list[Any] = []
    state: dict[int, int] = {}  # 1: on the current path, 2: placed
    stack: list[tuple[Any, int]] = [(out.node, 0)]
    state[id(out.node)] = 1
    while stack:
        node, k = stack.pop()
        if k < len(node.inputs):
            stack.append((node, k + 1))
            child = node.inputs[k].node
            st = state.get(id(child))
            if st == 1:
                raise ValueError(f"Model: the graph is not a DAG: {node.layer._label()} "
                                 f"takes an input computed from its own output (through "
                                 f"{child.layer._label()})")
            if st is None:
                state[id(child)] = 1
                stack.append((child, 0))
            continue
        if not node.inputs and node is not inp.node:
            raise ValueError(f"Model: graph disconnected: the output {out.describe()} is "
                             f"computed from {node.output.describe()}, which is not the "
                             f"model's input {inp.describe()}; pass the Input it comes from "
                             f"(models with several inputs are not supported yet)")
        state[id(node)] = 2
        order.append(node)
    if not order or order[0] is not inp.node:
        raise ValueError(f"Model: graph disconnected: the output {out.describe()} is not "
                         f"computed from the input {inp.describe()}")
    return order


def _name_layers(layers: list[_layers.Layer]) -> None:
    """Give the unnamed layers ``<kind>``, ``<kind>_1``, ... (in order, after the names the
    user chose); ValueError for one name on two layers."""
    taken: dict[str, _layers.Layer] = {}
    for lay in layers:
        if lay.name is not None:
            if lay.name in taken:
                raise ValueError(f"Model: duplicate layer name {lay.name!r}: "
                                 f"{taken[lay.name]._label()} and {lay._label()} (a "
                                 f"{type(lay).__name__}); layer names must be unique")
            taken[lay.name] = lay
    for lay in layers:
        if lay.name is None:
            base, i = lay.default_name, 0
            cand = base
            while cand in taken:
                i += 1
                cand = f"{base}_{i}"
            lay.name = cand
            taken[cand] = lay


def _summed(contributions: list[tuple[int, Any]]) -> Any:
    """The sum of the gradients of a tensor's consumers, in their node order."""
    contributions.sort(key=lambda c: c[0])
    g = contributions[0][1]
    for _, c in contributions[1:]:
        g = g + c
    return g


def _no_safetensors(path: Any, who: str) -> None:
    if os.fspath(path).endswith(".safetensors"):
        raise ValueError(f"{who}: a graph fastcnn.Model has no .safetensors layout (those "
                         f"tensors are named as a torch.nn.Sequential's state_dict); use an "
                         f".npz name, e.g. 'weights.npz'")
