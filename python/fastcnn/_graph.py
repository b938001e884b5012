"""The graph side of :class:`fastcnn.functional.Functional`: the ordering of the nodes
(:func:`topological`), the naming of the layers (:func:`name_layers`), the fan-out sums
(:func:`summed`) and the architecture config (:func:`graph_config` / :func:`graph_tensors`).

The order is an iterative depth-first post-order from each output in turn (outputs in their
order, each node's inputs in their order): it depends only on the graph, so a model rebuilt
from its config has the same order.
"""

from __future__ import annotations

from typing import Any

from . import layers as _layers
from ._multi_call import PartialGrads, is_output_of
from .layers.base import fused_activation
from .layers.input import InputLayer
from .layers.normalization import batch_stats_fusion
from .layers.symbolic import SymbolicTensor

__all__ = ["graph_config", "graph_tensors", "name_layers", "summed", "tensors_of",
           "topological"]


def tensors_of(t: Any, what: str) -> tuple[list[SymbolicTensor], list[str] | None, bool]:
    """``Model``'s ``inputs`` / ``outputs`` argument as ``(tensors, dict keys or None,
    structured)``: one tensor (or a list of one) is not structured (the model takes / returns
    one array); a list of several or a dict is (lists / dicts of arrays)."""
    keys = None
    if isinstance(t, dict):
        if not t or not all(isinstance(k, str) and k for k in t):
            raise ValueError(f"Model: a dict of {what} needs non-empty string keys, got "
                             f"{list(t)!r}")
        keys, tensors, structured = list(t), list(t.values()), True
    elif isinstance(t, list | tuple):
        if not t:
            raise ValueError(f"Model: {what} is an empty list; pass at least one tensor")
        tensors, structured = list(t), len(t) > 1
    else:
        tensors, structured = [t], False
    for x in tensors:
        if not isinstance(x, SymbolicTensor):
            raise TypeError(f"Model: {what} must be a symbolic tensor (fastcnn.Input(...) or a "
                            f"layer called on one), or a list / dict of them, got "
                            f"{type(x).__name__}")
    if len({id(x) for x in tensors}) != len(tensors):
        raise ValueError(f"Model: the same tensor is given twice in {what}")
    return tensors, keys, structured


def topological(inputs: list[SymbolicTensor], outputs: list[SymbolicTensor]) -> list[Any]:
    """The nodes the outputs depend on, each after its inputs (see the module docstring).
    ValueError for a cycle, an ``Input`` that is not one of ``inputs`` (a disconnected graph)
    or an input no output uses."""
    allowed = {id(t.node) for t in inputs}
    order: list[Any] = []
    state: dict[int, int] = {}  # 1: on the current path, 2: placed
    for out in outputs:
        if state.get(id(out.node)) == 2:
            continue
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
            if not node.inputs and id(node) not in allowed:
                names = ", ".join(t.describe() for t in inputs)
                raise ValueError(f"Model: graph disconnected: the output {out.describe()} is "
                                 f"computed from {node.output.describe()}, which is not one of "
                                 f"the model's inputs ({names}); pass the Input it comes from")
            state[id(node)] = 2
            order.append(node)
    unused = [t.describe() for t in inputs if state.get(id(t.node)) != 2]
    if unused:
        raise ValueError(f"Model: graph disconnected: the input(s) {', '.join(unused)} are "
                         f"not used by any output; remove them from inputs")
    return order


def name_layers(layers: list[Any]) -> None:
    """Give the unnamed layers ``<kind>``, ``<kind>_1``, ... (in order, after the names the
    user chose); a model used as a layer with its default name counts as unnamed (its name
    becomes ``sequential_1`` ... when taken). ValueError for one name on two layers."""
    taken: dict[str, Any] = {}

    def auto(lay: Any) -> bool:
        return lay.name is None or bool(getattr(lay, "_auto_name", False))

    for lay in layers:
        if not auto(lay):
            if lay.name in taken:
                raise ValueError(f"Model: duplicate layer name {lay.name!r}: "
                                 f"{taken[lay.name]._label()} and {lay._label()} (a "
                                 f"{type(lay).__name__}); layer names must be unique")
            taken[lay.name] = lay
    for lay in layers:
        if auto(lay):
            base, i = lay.name or lay.default_name, 0
            cand = base
            while cand in taken:
                i += 1
                cand = f"{base}_{i}"
            lay.name = cand
            taken[cand] = lay


def summed(contributions: list[tuple[int, Any]]) -> Any:
    """The sum of the gradients of a tensor's consumers, in their node order (for a
    multi-output model call, :class:`fastcnn._multi_call.PartialGrads` merged per output)."""
    contributions.sort(key=lambda c: c[0])
    g = contributions[0][1]
    for _, c in contributions[1:]:
        g = g.merged(c) if isinstance(g, PartialGrads) else g + c
    return g


def ref(model: Any, j: int) -> list[Any]:
    """Node ``j``'s output as a config reference ``[layer, call, tensor]`` (Keras'): output
    ``k`` of a multi-output model's call is ``[model, call, k]``."""
    layer = model._graph[j].layer
    if is_output_of(layer):
        src = model._inputs_of[j][0]
        return [model._graph[src].layer.name, model._call_index[src], layer.index]
    return [layer.name, model._call_index[j], 0]


def ref_text(model: Any, j: int) -> str:
    """``layer[call][tensor]`` (summary's "Connected to" column) of node ``j``'s output."""
    name, call, k = ref(model, j)
    return f"{name}[{call}][{k}]"


def activation_fusions(model: Any, folds: dict[int, Any], skip: set[int]
                       ) -> tuple[dict[int, str], set[int]]:
    """For a pass of the graph ``model`` (``folds``: its inference folds; ``skip``: the
    output nodes whose activation the pass skips), ``(acts, through)``: node -> the
    activation its layer applies for its only consumer
    (:func:`fastcnn.layers.base.fused_activation`), and those consumer nodes, which pass
    their input through. Never for a producer that is an output (its own value is needed)
    or a consumer output whose activation this pass skips. A consumer of a folded
    BatchNormalization pairs with the folded Conv2D / Dense before it (one kernel call for
    Conv -> BN -> ReLU at inference)."""
    acts: dict[int, str] = {}
    through: set[int] = set()
    for i, node in enumerate(model._graph):
        ins = model._inputs_of[i]
        if len(ins) != 1 or model._multi[i] or i in skip:
            continue
        p = ins[0]
        if not model._inputs_of[p] or model._multi[p] or model._consumers[p] != [i] \
                or p in model._out_set:
            continue
        if p in folds and folds[p] is None:  # a folded BatchNormalization: its producer's
            p = model._inputs_of[p][0]  # folded copy (its only reader is that BN) applies it
        prev, layer = folds.get(p, model._graph[p].layer), folds.get(i, node.layer)
        act = fused_activation(prev, layer) if prev is not None and layer is not None \
            else None
        if act is not None:
            acts[p] = act
            through.add(i)
    return acts, through


def batch_stats_fusions(model: Any) -> dict[int, int]:
    """For a training pass of the graph ``model``: producer node -> its only consumer node, for
    each pair whose producer hands the consumer its output's batch statistics
    (:func:`fastcnn.layers.normalization.batch_stats_fusion`: a Conv2D without an activation
    and a trainable BatchNormalization, on the CPU). Never for a producer that is an output or
    whose output another node also reads."""
    pairs: dict[int, int] = {}
    for i, node in enumerate(model._graph):
        ins = model._inputs_of[i]
        if len(ins) != 1 or model._multi[i] or node.layer is None:
            continue
        p = ins[0]
        if not model._inputs_of[p] or model._multi[p] or model._consumers[p] != [i] \
                or p in model._out_set or model._graph[p].layer is None:
            continue
        if batch_stats_fusion(model._graph[p].layer, node.layer):
            pairs[p] = i
    return pairs


def _refs(model: Any, nodes: list[int], keys: list[str] | None) -> Any:
    refs = [ref(model, i) for i in nodes]
    return dict(zip(keys, refs, strict=True)) if keys else refs


def graph_config(model: Any) -> dict[str, Any]:
    """The graph as a JSON-serialisable dict (Keras' functional layout): per layer its
    class, config and ``inbound_nodes`` (per call, its inputs as ``[layer, call, 0]``);
    ``input_layers`` / ``output_layers`` a list of ``[layer, call, 0]`` (a dict by key for a
    model built from dicts)."""
    graph = model._graph
    inbound: dict[int, list[list[list[Any]]]] = {id(lay): [] for lay in model.layers}
    for n, ins in zip(graph, model._inputs_of, strict=True):
        if ins and id(n.layer) in inbound:  # (an output pick is no layer: see ref)
            inbound[id(n.layer)].append([ref(model, j) for j in ins])
    return {
        "class_name": "Functional",
        "name": model.name,
        "seed": model.seed,
        "layers": [{"class_name": type(lay).__name__, "config": lay.get_config(),
                    "inbound_nodes": inbound[id(lay)]} for lay in model.layers],
        "input_layers": _refs(model, model._in_nodes, model._in_keys),
        "output_layers": _refs(model, model._out_nodes, model._out_keys),
    }


def graph_tensors(config: dict[str, Any], custom_objects: Any) -> tuple[Any, Any]:
    """The ``(inputs, outputs)`` (tensors, lists or dicts of them, as given to ``Model``) of
    :func:`graph_config`'s dict, the layers rebuilt and called again.

    Raises:
        ValueError: an unknown layer name in an ``inbound_nodes`` entry, nodes that wait on
            each other (not a DAG; the message names the layers), bad input / output refs."""
    from .model_base import Model  # a model used as a layer: its own config

    specs = config.get("layers", [])
    layers: dict[str, Any] = {}
    for spec in specs:
        if isinstance(spec, dict) and spec.get("class_name") in ("Sequential", "Functional"):
            layer = Model.from_config(spec.get("config", {}), custom_objects)
        else:
            layer = _layers.deserialize(spec, custom_objects)
        if layer.name is None or layer.name in layers:
            raise ValueError(f"Model config: every layer needs a unique name, got "
                             f"{layer.name!r} twice or none")
        layers[layer.name] = layer
    tensors: dict[tuple[str, int, int], SymbolicTensor] = {}
    pending: list[tuple[str, int, list[Any]]] = []
    for spec in specs:
        name = spec["config"]["name"]
        if isinstance(layers[name], InputLayer):
            tensors[(name, 0, 0)] = layers[name].output
        for k, ins in enumerate(spec.get("inbound_nodes", [])):
            for ref in ins:
                if ref[0] not in layers:
                    raise ValueError(f"Model config: layer {name!r} is called on the output "
                                     f"of {ref[0]!r}, which is not a layer of the model")
            pending.append((name, k, ins))
    while pending:  # call each layer once all the tensors it takes exist
        waiting = []
        for name, k, ins in pending:
            if all(_key(r) in tensors for r in ins):
                args = [tensors[_key(r)] for r in ins]
                layer = layers[name]
                out = layer(args if layer.multi_input else args[0])
                if isinstance(out, dict):  # a model with several outputs: one tensor each
                    out = list(out.values())
                for t, o in enumerate(out if isinstance(out, list) else [out]):
                    tensors[(name, k, t)] = o
            else:
                waiting.append((name, k, ins))
        if len(waiting) == len(pending):
            names = sorted({w[0] for w in waiting})
            raise ValueError(f"Model config: the graph is not a DAG: the layers {names} wait "
                             f"on each other's outputs (a cycle)")
        pending = waiting

    def resolve(refs: Any) -> Any:
        if isinstance(refs, dict):
            return {k: tensors[_key(r)] for k, r in refs.items()}
        out = [tensors[_key(r)] for r in refs]
        return out[0] if len(out) == 1 else out

    try:
        inputs, outputs = resolve(config["input_layers"]), resolve(config["output_layers"])
    except (KeyError, ValueError, TypeError, IndexError) as e:
        raise ValueError(f"Model config: bad input_layers / output_layers ({e!r})") from e
    return inputs, outputs


def _key(r: Any) -> tuple[str, int, int]:
    """A config reference ``[layer, call, tensor]`` as a key (the tensor index defaults to 0)."""
    return (str(r[0]), int(r[1]), int(r[2]) if len(r) > 2 else 0)
