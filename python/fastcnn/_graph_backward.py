"""The backward pass of a :class:`fastcnn.functional.Functional` (``model.backward``): the nodes
in reverse order from one gradient per output; a tensor used by several nodes gets the sum of
their gradients in the consumers' node order (an output's own gradient last), so the result is
the same every run; a node runs only when a weight or the requested ``dx`` lies upstream of it;
the pooled-gradient and fused-activation fusions where the graph allows (the module docstring
of :mod:`fastcnn.functional` says when).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _graph, _outputs
from ._arrays import array_module, restore_kind
from ._structure import parts
from .model_base import Model


def backward(m: Any, dy: Any, accumulate: bool, compute_dx: Any) -> Any:
    """``m.backward(dy, accumulate, compute_dx)`` (:meth:`Functional.backward`)."""
    m._require_built()
    compute_dx = m.compute_dx if compute_dx is None else compute_dx
    seeds = _output_grads(m, dy)
    if all(s is None for s in seeds):
        raise ValueError(f"backward: model {m.name!r} got no gradient for any of its "
                         f"outputs {m.output_names} (all None)")
    like = next((d for d in (parts(dy) if isinstance(dy, list | tuple) else
                             list(dy.values()) if isinstance(dy, dict) else [dy])
                 if d is not None), None)
    graph, inputs_of, multi = m._graph, m._inputs_of, m._multi
    n = len(graph)
    needs = [False] * n  # does a weight or the requested dx lie upstream of node i?
    for i, ins in enumerate(inputs_of):
        lay = graph[i].layer
        needs[i] = bool(compute_dx) if not ins else (
            (lay.trainable and bool(lay.params)) or any(needs[j] for j in ins))
    grads: list[Any] = [[] for _ in range(n)]
    for k, (i, g) in enumerate(zip(m._out_nodes, seeds, strict=True)):
        if g is not None:
            grads[i].append((n + k, g))  # after every consumer's
    done = [False] * n
    seen: set[int] = set()
    through = getattr(m, "_fused_through", set())
    try:
        for i in range(n - 1, -1, -1):
            ins = inputs_of[i]
            if not ins or done[i] or not needs[i] or not grads[i]:
                continue
            g = _graph.summed(grads[i])
            grads[i] = None
            if i in through:  # fused into the layer before: the gradient passes through
                _route(m, i, [g], grads, needs)
                continue
            p = ins[0]
            if not multi[i] and inputs_of[p] and not multi[p] and m._consumers[p] == [i] \
                    and p not in m._out_set and graph[p].layer is not graph[i].layer:
                _restore(m, p)
                if graph[p].layer.accepts_pooled_grad():
                    _restore(m, i)
                    offer = graph[i].layer.offer_pooled_grad()
                    if offer is not None:  # the pooling's backward inside the conv's
                        dx = _node_backward(m, p, g, accumulate, seen, needs,
                                                 pooled_grad=offer)
                        _route(m, p, [dx], grads, needs)
                        done[p] = True
                        continue
            _restore(m, i)
            dx = _node_backward(m, i, g, accumulate, seen, needs)
            _route(m, i, dx if multi[i] else [dx], grads, needs)
    finally:
        for lay in m.layers:
            lay.compute_dx = True
    if not compute_dx:
        return None
    dxs = []
    for i in m._in_nodes:
        if grads[i]:
            dxs.append(_graph.summed(grads[i]))
        else:  # no output's gradient reaches this input
            ref = next(s for s in seeds if s is not None)
            dxs.append(array_module(ref).zeros((len(ref), *graph[i].layer.shape),
                                               np.float32))
    return restore_kind(dxs if m._multi_in else dxs[0], like)


def _output_grads(m: Any, dy: Any) -> list[Any]:
    """``backward``'s ``dy``: one gradient per output (a list or dict for several; None
    entries allowed), each converted and on the model's device."""
    if m._multi_out:
        dys = _outputs.arrange(dy, m.output_names, m.name, "outputs", "backward",
                               frozenset(m.output_names))
    else:
        dys = [dy]
    # Model's conversion and device move, not Functional's own _on_device (several inputs)
    return [None if d is None else Model._on_device(m, Model._input(m, d, "backward", "dy"))
            for d in dys]


def _restore(m: Any, i: int) -> None:
    """Put node ``i``'s forward cache back into its layer (a shared layer's)."""
    if m._shared[i]:
        m._graph[i].layer._cache = m._node_caches.get(i)

def _node_backward(m: Any, i: int, g: Any, accumulate: bool, seen: set[int],
                   needs: list[bool], **kw: Any) -> Any:
    layer = m._graph[i].layer
    layer.compute_dx = m._multi[i] or any(needs[j] for j in m._inputs_of[i])
    acc = accumulate or id(layer) in seen  # a shared layer's later calls add
    seen.add(id(layer))
    return layer.backward(g, acc, **kw)

def _route(m: Any, i: int, dxs: list[Any], grads: list[Any], needs: list[bool]) -> None:
    for j, d in zip(m._inputs_of[i], dxs, strict=True):
        if needs[j] and d is not None:
            grads[j].append((i, d))
