"""The graph walk of :func:`fastcnn.onnx.load_onnx`: ONNX nodes (in the file's order, which the
ONNX spec makes topological) become layer entries wired to the entries that produce their inputs,
so residual graphs (``Add`` of two tensors, ``Concat`` of several) are read as well as chains.

* A node with one data input runs its op reader (:mod:`fastcnn.onnx.load`'s table) on a
  :class:`~fastcnn.onnx._chain._Chain` holding only the entry that produced that input, and
  only when that tensor has no other consumer: an activation folds into the Conv2D / Dense
  before it, a MatMul's ``Add`` becomes its bias, a flatten merges into a global pooling, as in a
  chain; with fan-out nothing is folded (the other consumers see the unfolded tensor).
* ``Add`` / ``Sum`` of data tensors -> the Add layer; ``Concat`` of data tensors along a
  non-batch axis -> Concatenate.
* Shape arithmetic, the subgraph ``x.view(x.size(0), -1)`` exports (``Shape``, ``Gather``,
  ``Unsqueeze``, ``Concat``, also ``Squeeze``, ``Slice``, ``Cast``), is evaluated on the shapes
  (the batch size symbolic): the ``Reshape`` it feeds gets a constant target with the batch
  size as ``0`` (keep it), so ``(N, -1)`` is a Flatten. A shape value used for anything else is
  a ValueError.

The entries come back with their inputs (entry indices, ``-1 - k`` graph input ``k``); load.py
builds a Sequential when they form a chain from one input to one output and a Functional
graph model otherwise (several inputs / outputs: one ``Input`` / output each).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import layers as _layers
from ._chain import _attrs, _Chain, _Unsupported
from ._load_modern import match_activation

__all__ = ["Entry", "read_graph"]

_N = "N"  # the symbolic batch size in shape values
_SHAPE_OPS = ("Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Slice", "Cast")


class Entry:
    """A layer to build: ``spec`` ``[class, kwargs, weights]`` (shared with the readers'
    chains, which fold into it), the entries feeding it (-1: the graph input), the node that
    made it, and whether it is a MatMul's Dense waiting for its bias."""

    def __init__(self, spec: list[Any], inputs: list[int], node: int) -> None:
        self.spec, self.inputs, self.node = spec, inputs, node
        self.bias_pending = False


def _where(i: int, node: Any) -> str:
    return f"load_onnx: node #{i} ({node.op_type} {node.name!r})"


def _ints(a: Any) -> list[int]:
    return [int(v) for v in np.asarray(a).reshape(-1)]


def _shape_op(onnx: Any, node: Any, consts: dict[str, np.ndarray],
              values: dict[str, tuple[list[Any], bool]],
              shapes: dict[str, tuple[int, ...]]) -> tuple[list[Any], bool]:
    """A shape-arithmetic node's value: (items, scalar?), items ints or the batch size ``N``."""
    op = node.op_type

    def value(k: int) -> tuple[list[Any], bool]:
        name = node.input[k]
        if name in values:
            return values[name]
        if name in consts:
            c = np.asarray(consts[name])
            if c.dtype.kind not in "iu":
                raise _Unsupported(f"input {name!r} is not an integer shape")
            return _ints(c), c.ndim == 0
        raise _Unsupported(f"input {name!r} is neither a shape nor a constant")

    if op == "Shape":
        at = _attrs(onnx, node, {"start": 0, "end": None})
        full = [_N, *shapes[node.input[0]]]
        return full[at["start"]:at["end"]], False
    if op == "Cast":
        _attrs(onnx, node, {"to": 7, "saturate": 1})
        return value(0)
    if op == "Gather":
        at = _attrs(onnx, node, {"axis": 0})
        items, _ = value(0)
        if at["axis"] != 0:
            raise _Unsupported(f"axis {at['axis']} on a shape (1-D)")
        idx = np.asarray(_const_of(consts, node, 1))
        picked = [items[int(j)] for j in idx.reshape(-1)]
        return picked, idx.ndim == 0
    if op in ("Unsqueeze", "Squeeze"):
        at = _attrs(onnx, node, {"axes": None})
        items, scalar = value(0)
        axes = at["axes"] if at["axes"] is not None else (
            _ints(consts[node.input[1]]) if len(node.input) > 1 and node.input[1] else None)
        if op == "Unsqueeze":
            if not scalar or list(axes or []) != [0]:
                raise _Unsupported("only a scalar unsqueezed on axis 0 (a shape item)")
            return items, False
        if scalar or len(items) != 1 or list(axes or [0]) != [0]:
            raise _Unsupported("only a 1-item shape squeezed on axis 0")
        return items, True
    if op == "Concat":
        at = _attrs(onnx, node, {"axis": 0})
        if at["axis"] not in (0, -1):
            raise _Unsupported(f"axis {at['axis']} on shapes (1-D)")
        out: list[Any] = []
        for k in range(len(node.input)):
            items, scalar = value(k)
            if scalar:
                raise _Unsupported("a scalar input (Concat takes 1-D shapes)")
            out += items
        return out, False
    # Slice
    _attrs(onnx, node, {})
    items, scalar = value(0)
    starts, ends = _ints(_const_of(consts, node, 1)), _ints(_const_of(consts, node, 2))
    axes = _ints(_const_of(consts, node, 3)) if len(node.input) > 3 and node.input[3] else [0]
    steps = _ints(_const_of(consts, node, 4)) if len(node.input) > 4 and node.input[4] else [1]
    if scalar or axes not in ([0], [-1]) or len(starts) != 1 or len(ends) != 1:
        raise _Unsupported("only a 1-D slice of a shape")
    return items[slice(starts[0], ends[0], steps[0])], False


def _const_of(consts: dict[str, np.ndarray], node: Any, k: int) -> np.ndarray:
    if k >= len(node.input) or node.input[k] not in consts:
        raise _Unsupported(f"its input {k} must be a constant")
    return consts[node.input[k]]


def read_graph(onnx: Any, graph: Any, consts: dict[str, np.ndarray],
               inputs: list[tuple[str, tuple[int, ...]]], opset: int,
               readers: dict[str, Callable[..., None]], supported: str
               ) -> tuple[list[Entry], list[int]]:
    """The graph's layers as entries and, per graph output, the index of the entry computing
    it (``-1 - k``: the output is graph input ``k``). ``inputs``: the data inputs' names and
    per-sample shapes, in the graph's order. Raises ValueError naming the first node it can't
    read."""
    out_names = [o.name for o in graph.output]
    outs_set = frozenset(out_names)
    used = {n for node in graph.node for n in node.input} | outs_set
    data_uses: Counter[str] = Counter()
    for node in graph.node:
        if node.op_type != "Shape":  # a Shape reads no values: it doesn't block a fold
            data_uses.update(n for n in node.input if n and n not in consts)
    data_uses.update(out_names)
    tensors: dict[str, tuple[int, tuple[int, ...]]] = {
        name: (-1 - k, shape) for k, (name, shape) in enumerate(inputs)}
    values: dict[str, tuple[list[Any], bool]] = {}  # shape arithmetic
    entries: list[Entry] = []
    skip_to = -1
    for i, node in enumerate(graph.node):
        where = _where(i, node)
        if node.domain not in ("", "ai.onnx"):
            raise ValueError(f"{where}: op domain {node.domain!r} is not supported")
        if node.op_type == "Constant" or i <= skip_to:
            continue
        if any(o and o in used for o in node.output[1:]):
            raise ValueError(f"{where}: its extra outputs {list(node.output[1:])} are used; "
                             f"fastcnn reads only the first")
        data = [n for n in node.input if n and n not in consts and n not in values]
        unknown = [n for n in data if n not in tensors]
        if unknown:
            raise ValueError(f"{where}: its input {unknown[0]!r} is not computed from the "
                             f"graph input")
        try:
            if node.op_type in _SHAPE_OPS and (node.op_type == "Shape" or not data):
                values[node.output[0]] = _shape_op(onnx, node, consts, values,
                                                   {n: tensors[n][1] for n in data})
                continue
            if node.op_type == "Reshape" and len(node.input) > 1 and node.input[1] in values:
                items, _ = values[node.input[1]]
                if _N in items[1:]:
                    raise _Unsupported(f"shape {items}: the batch size moves off axis 0")
                consts[node.input[1]] = np.array([0 if v == _N else v for v in items],
                                                 np.int64)
            elif any(n in values for n in node.input):
                raise _Unsupported("a shape value (Shape / Gather / ...) is used as data")
            if node.op_type in ("Add", "Sum", "Concat") and len(data) >= 2:
                _merge(node, data, tensors, entries, i, onnx)
                continue
            distinct = list(dict.fromkeys(data))  # Mul(x, x) reads one tensor
            pattern = match_activation(graph.node, i, distinct[0], consts, outs_set) \
                if len(distinct) == 1 else None
            if pattern is None and node.op_type not in readers:
                raise ValueError(f"{where}: op {node.op_type!r} is not supported; fastcnn "
                                 f"reads {supported} (and Constant)")
            if pattern is None and (len(data) != 1 or (node.input[0] != data[0]
                                                       and node.op_type != "Add")):
                raise ValueError(f"{where}: takes {list(node.input)}; fastcnn reads nodes "
                                 f"with one data input (the first; and constants), Add / Sum "
                                 f"and Concat of several")
            src = distinct[0]
            last = pattern[1] if pattern is not None else i
            inside = sum(list(n.input).count(src) for n in graph.node[i:last + 1])
            prod, in_shape = tensors[src]
            fold = prod >= 0 and data_uses[src] == inside and src not in outs_set
            ch = _Chain(in_shape, opset)
            if fold:
                ch.entries = [entries[prod].spec]
                ch.bias_pending = entries[prod].bias_pending
            n0 = len(ch.entries)
            if pattern is not None:
                ch.activation(pattern[0])
                skip_to = pattern[1]
            else:
                readers[node.op_type](onnx, node, consts, ch)
            key = prod
            for spec in ch.entries[n0:]:
                entries.append(Entry(spec, [key], i))
                key = len(entries) - 1
            if key >= 0:
                entries[key].bias_pending = ch.bias_pending
            tensors[graph.node[last].output[0]] = (key, tuple(ch.shape))
        except _Unsupported as e:
            raise ValueError(f"{where}: {e}") from None
    for out_name in out_names:
        if out_name not in tensors:
            raise ValueError(f"load_onnx: the graph output {out_name!r} is not a tensor "
                             f"computed from the inputs (a shape?)")
    outs = [tensors[o][0] for o in out_names]
    reach: set[int] = set()
    stack = list(outs)
    while stack:
        k = stack.pop()
        if k >= 0 and k not in reach:
            reach.add(k)
            stack.extend(entries[k].inputs)
    for k, e in enumerate(entries):
        if k not in reach:
            node = graph.node[e.node]
            what = f"the graph output {out_names[0]!r} does not use" if len(out_names) == 1 \
                else f"no graph output {out_names} uses"
            raise ValueError(f"{_where(e.node, node)}: computes {node.output[0]!r}, which "
                             f"{what}")
    return entries, outs


def _merge(node: Any, data: list[str], tensors: dict[str, tuple[int, tuple[int, ...]]],
           entries: list[Entry], i: int, onnx: Any) -> None:
    """``Add`` / ``Sum`` / ``Concat`` of data tensors as the Add / Concatenate layer."""
    shapes = [tensors[n][1] for n in data]
    if len(data) != len([n for n in node.input if n]):
        raise _Unsupported("mixes data tensors and constants (fastcnn's Add / Concatenate "
                           "take data tensors only)")
    if node.op_type == "Concat":
        at = _attrs(onnx, node, {"axis": None})
        rank = len(shapes[0]) + 1
        axis = int(at["axis"]) % rank if at["axis"] is not None else None
        if not axis:
            raise _Unsupported(f"axis {at['axis']}: fastcnn joins along a non-batch axis")
        spec: list[Any] = [_layers.Concatenate, {"axis": axis}, []]
        layer = _layers.Concatenate(axis=axis)
    else:
        _attrs(onnx, node, {})
        if len(set(shapes)) != 1:
            raise _Unsupported(f"inputs of shapes {shapes} (per sample): fastcnn's Add takes "
                               f"equal shapes (no broadcasting)")
        spec = [_layers.Add, {}, []]
        layer = _layers.Add()
    try:
        out_shape = layer.build([list(s) for s in shapes])
    except ValueError as e:
        raise _Unsupported(f"inputs of shapes {shapes}: {e}") from e
    entries.append(Entry(spec, [tensors[n][0] for n in data], i))
    tensors[node.output[0]] = (len(entries) - 1, tuple(out_shape))
