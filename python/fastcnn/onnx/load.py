"""ONNX import: :func:`load_onnx` builds a :class:`fastcnn.Sequential` from an ONNX graph that
is a chain of the ops fastcnn has layers for, e.g. a CNN exported by
``torch.onnx.export(..., dynamo=False)`` or by :meth:`fastcnn.Sequential.export`, and a
:class:`fastcnn.Functional` from a graph with branches (residual ``Add``, ``Concat``; the walk
is :mod:`fastcnn.onnx._graph`).

=================================  ==========================================================
ONNX                               fastcnn
=================================  ==========================================================
``Conv``                           Conv2D (pads symmetric, or Keras "same" for this input)
``MaxPool``                        MaxPool2D (windows those of "valid" or "same";
                                   ``dilations`` as ``dilation_rate``)
``Gemm``, ``MatMul`` [+ ``Add``]   Dense (``transB`` / ``alpha`` / ``beta`` folded in)
``Flatten`` (axis 1),              Flatten
``Reshape`` to ``(N, -1)``
``Relu`` / ``Sigmoid`` /           the preceding Conv2D / Dense's activation when it has none,
``Softmax`` (the feature axis)     else an Activation (ReLU / Softmax) layer
``Dropout``                        Dropout (its ratio; identity at inference)
``Identity``, ``Constant``         nothing
=================================  ==========================================================

and the ops of modern CNNs (``BatchNormalization``, ``AveragePool``, ``GlobalAveragePool``,
``GlobalMaxPool``, ``Tanh``, ``LeakyRelu``, ``Gelu``, SiLU and GELU as their subgraphs, ``Pad``
(zeros; -inf before a MaxPool), any ``Reshape`` that keeps the batch dimension), read by
:mod:`fastcnn.onnx._load_modern`.

Graphs: ``Add`` / ``Sum`` of data tensors become the Add layer, ``Concat`` of them
Concatenate (along a non-batch axis); shape arithmetic (``Shape``, ``Gather``, ``Unsqueeze``,
``Concat``, ``Squeeze``, ``Slice``, ``Cast``) is evaluated on the shapes, so the subgraph of
``x.view(x.size(0), -1)`` is a Flatten.

Initializers (and ``Constant`` nodes) are the weights; the graph's data inputs are
``(N, *input_shape)`` float (``N`` free); a graph with several inputs or outputs becomes a
graph model with one ``Input`` per graph input and one output per graph output, named as in
the graph (lists in the graph's order; the dicts a fastcnn export recorded under
``"fastcnn.structure"`` come back as dicts); every node takes one data tensor
(its first input) and constants, except the merges, and every node's output is used on the way
to the graph output. Activations, a MatMul's bias and a flatten after a global pooling fold
into the layer before them only when that layer's output has no other consumer. Anything
else, the first unsupported node, attribute or wiring, is a ValueError naming the node's op
type, name and position (``node #i`` in ``graph.node``).
``model.metadata`` is read back from the ``"fastcnn.metadata"`` entry of ``metadata_props``
that :meth:`fastcnn.Sequential.export` writes (empty for other graphs).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import layers as _layers
from .._geometry import same_padding
from ._chain import _attrs, _Chain, _const, _pads_2d, _pairs, _Unsupported, _weight, pool_padding
from ._common import require_onnx
from ._graph import Entry, _where, read_graph
from ._load_modern import MODERN_OPS, NegInfPad, merge_flatten
from .export import METADATA_KEY, STRUCTURE_KEY, Exportable

if TYPE_CHECKING:
    from ..model import Sequential

__all__ = ["SUPPORTED_OPS", "load_onnx"]


# --------------------------------------------------------------------------------------------
# one function per op: (onnx, node, consts, chain) -> None


def _conv(onnx: Any, node: Any, consts: dict[str, np.ndarray], ch: _Chain) -> None:
    at = _attrs(onnx, node, {"auto_pad": "NOTSET", "dilations": [1, 1], "group": 1,
                             "kernel_shape": None, "pads": None, "strides": [1, 1]})
    w = _weight(_const(consts, node, 1, "weight"), "weight")  # type: ignore[arg-type]
    b = _const(consts, node, 2, "bias", required=False)
    if w.ndim != 4:
        raise _Unsupported(f"weight of shape {w.shape}: fastcnn has 2-D convolutions only "
                           f"(weight (K, C/group, R, S))")
    if len(ch.shape) != 3:
        raise _Unsupported(f"input of per-sample shape {ch.shape}; Conv needs (C, H, W)")
    K, Cg, R, S = w.shape
    if at["kernel_shape"] is not None and tuple(at["kernel_shape"]) != (R, S):
        raise _Unsupported(f"kernel_shape {list(at['kernel_shape'])} does not match the "
                           f"weight {w.shape}")
    groups = int(at["group"])
    if groups < 1 or ch.shape[0] != Cg * groups:
        raise _Unsupported(f"input channels {ch.shape[0]} != weight channels {Cg} x group "
                           f"{groups}")
    st, dil = _pairs(at, "strides"), _pairs(at, "dilations")
    H, W = ch.shape[1], ch.shape[2]
    t, l, bo, r = _pads_2d(at, (H, W), (R, S), st, dil)
    padding: Any
    if (t, l, bo, r) == (0, 0, 0, 0):
        padding = "valid"
    elif t == bo and l == r:
        padding = (t, l)
    elif (t, bo) == same_padding(H, R, st[0], dil[0]) and \
            (l, r) == same_padding(W, S, st[1], dil[1]):
        padding = "same"
    else:
        raise _Unsupported(f"pads [top, left, bottom, right] = {[t, l, bo, r]} for input "
                           f"{H}x{W}: fastcnn's Conv2D pads symmetrically or as Keras' "
                           f"'same' (extra row/column at the bottom/right)")
    weights = [w]
    if b is not None:
        b = _weight(b, "bias")
        if b.shape != (K,):
            raise _Unsupported(f"bias of shape {b.shape}, expected ({K},)")
        weights.append(b)
    ch.add(_layers.Conv2D, {"filters": K, "kernel_size": (R, S), "strides": st,
                            "padding": padding, "dilation_rate": dil, "groups": groups,
                            "use_bias": b is not None}, weights)


def _maxpool(onnx: Any, node: Any, consts: dict[str, np.ndarray], ch: _Chain) -> None:
    at = _attrs(onnx, node, {"auto_pad": "NOTSET", "ceil_mode": 0, "dilations": [1, 1],
                             "kernel_shape": None, "pads": None, "storage_order": 0,
                             "strides": [1, 1]})
    if at["kernel_shape"] is None:
        raise _Unsupported("needs kernel_shape")
    if len(ch.shape) != 3:
        raise _Unsupported(f"input of per-sample shape {ch.shape}; MaxPool needs (C, H, W)")
    k, st, dil = _pairs(at, "kernel_shape"), _pairs(at, "strides"), _pairs(at, "dilations")
    last = ch.entries[-1] if ch.entries else None
    if last is not None and last[0] is NegInfPad:  # the -inf Pad before it: one padding
        (t, b), (lft, r) = last[1]["padding"]
        shape = (ch.shape[0], ch.shape[1] - t - b, ch.shape[2] - lft - r)
        pt, pl, pb, pr = _pads_2d(at, (ch.shape[1], ch.shape[2]), k, st, dil)
        at = {**at, "auto_pad": "NOTSET", "pads": [t + pt, lft + pl, b + pb, r + pr]}
        kwargs = {"pool_size": k, "strides": st, "dilation_rate": dil,
                  "padding": pool_padding(at, (shape[1], shape[2]), k, st, dil)}
        last[0], last[1], last[2] = _layers.MaxPool2D, kwargs, []  # the Pad's entry, in place
        ch.shape = _layers.MaxPool2D(**kwargs).compute_output_shape(shape)
        return
    padding = pool_padding(at, (ch.shape[1], ch.shape[2]), k, st, dil)
    ch.add(_layers.MaxPool2D, {"pool_size": k, "strides": st, "padding": padding,
                               "dilation_rate": dil})


def _dense(ch: _Chain, kernel: np.ndarray, bias: np.ndarray | None) -> None:
    if len(ch.shape) != 1:
        raise _Unsupported(f"input of per-sample shape {ch.shape}; needs (features,) (a "
                           f"Flatten first)")
    units, n_in = kernel.shape
    if n_in != ch.shape[0]:
        raise _Unsupported(f"weight for {n_in} input features, the input has {ch.shape[0]}")
    ch.add(_layers.Dense, {"units": units, "use_bias": bias is not None},
           [kernel] if bias is None else [kernel, bias])


def _bias_vector(c: np.ndarray, units: int) -> np.ndarray:
    c = _weight(c, "bias")
    if c.ndim > 2:
        raise _Unsupported(f"bias of shape {c.shape} would broadcast the output beyond 2-D")
    try:
        return np.ascontiguousarray(np.broadcast_to(c, (1, units)).reshape(units))
    except ValueError:
        raise _Unsupported(f"bias of shape {c.shape} does not broadcast to ({units},)") from None


def _gemm(onnx: Any, node: Any, consts: dict[str, np.ndarray], ch: _Chain) -> None:
    at = _attrs(onnx, node, {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0})
    if at["transA"]:
        raise _Unsupported("transA=1 (the input transposed) is not a fastcnn Dense")
    if node.input[0] in consts:
        raise _Unsupported("the data must be input A (a constant A is not a Dense)")
    b = _weight(_const(consts, node, 1, "weight B"), "weight B")  # type: ignore[arg-type]
    if b.ndim != 2:
        raise _Unsupported(f"weight B of shape {b.shape}, expected 2-D")
    kernel = (b if at["transB"] else b.T) * np.float32(at["alpha"])
    c = _const(consts, node, 2, "bias C", required=False)
    bias = None if c is None else _bias_vector(c, kernel.shape[0]) * np.float32(at["beta"])
    _dense(ch, np.ascontiguousarray(kernel, dtype=np.float32), bias)


def _matmul(onnx: Any, node: Any, consts: dict[str, np.ndarray], ch: _Chain) -> None:
    _attrs(onnx, node, {})
    if node.input[0] in consts:
        raise _Unsupported("the data must be the first input (x @ W)")
    w = _weight(_const(consts, node, 1, "weight"), "weight")  # type: ignore[arg-type]
    if w.ndim != 2:
        raise _Unsupported(f"weight of shape {w.shape}, expected 2-D (in, out)")
    _dense(ch, np.ascontiguousarray(w.T), None)
    ch.bias_pending = True


def _add(onnx: Any, node: Any, consts: dict[str, np.ndarray], ch: _Chain) -> None:
    _attrs(onnx, node, {})
    if not ch.bias_pending:
        raise _Unsupported("Add is read only as the bias of the MatMul before it")
    other = [n for n in node.input if n in consts]
    if len(other) != 1:
        raise _Unsupported("needs one constant operand (the bias)")
    entry = ch.entries[-1]
    entry[2].append(_bias_vector(consts[other[0]], entry[1]["units"]))
    entry[1]["use_bias"] = True
    ch.bias_pending = False


def _flatten(onnx: Any, node: Any, consts: dict[str, np.ndarray], ch: _Chain) -> None:
    at = _attrs(onnx, node, {"axis": 1})
    rank = len(ch.shape) + 1
    axis = at["axis"] + rank if at["axis"] < 0 else at["axis"]
    if axis != 1:
        raise _Unsupported(f"axis {at['axis']}: fastcnn flattens from axis 1 (to (N, -1))")
    if len(ch.shape) > 1 and not merge_flatten(ch):
        ch.add(_layers.Flatten, {})


def _softmax(onnx: Any, node: Any, consts: dict[str, np.ndarray], ch: _Chain) -> None:
    at = _attrs(onnx, node, {"axis": -1 if ch.opset >= 13 else 1})
    rank = len(ch.shape) + 1
    axis = at["axis"] + rank if at["axis"] < 0 else at["axis"]
    if axis != 1 or (ch.opset < 13 and rank != 2):
        raise _Unsupported(f"axis {at['axis']} on a rank-{rank} input (opset {ch.opset}): "
                           f"fastcnn's softmax is over axis 1 (features / channels)")
    ch.activation("softmax")


def _elementwise(act: str) -> Callable[..., None]:
    def read(onnx: Any, node: Any, consts: dict[str, np.ndarray], ch: _Chain) -> None:
        _attrs(onnx, node, {})
        ch.activation(act)
    return read


def _dropout(onnx: Any, node: Any, consts: dict[str, np.ndarray], ch: _Chain) -> None:
    at = _attrs(onnx, node, {"seed": 0, "ratio": 0.5, "is_test": 0})
    ratio = _const(consts, node, 1, "ratio", required=False)
    mode = _const(consts, node, 2, "training_mode", required=False)
    if mode is not None and bool(np.asarray(mode).reshape(())):
        raise _Unsupported("training_mode is true (this Dropout drops at inference)")
    rate = float(np.asarray(ratio).reshape(())) if ratio is not None else float(at["ratio"])
    ch.add(_layers.Dropout, {"rate": rate})


def _identity(onnx: Any, node: Any, consts: dict[str, np.ndarray], ch: _Chain) -> None:
    _attrs(onnx, node, {})


_OPS: dict[str, Callable[..., None]] = {
    "Conv": _conv, "MaxPool": _maxpool, "Gemm": _gemm, "MatMul": _matmul, "Add": _add,
    "Flatten": _flatten, "Relu": _elementwise("relu"),
    "Sigmoid": _elementwise("sigmoid"), "Softmax": _softmax, "Dropout": _dropout,
    "Identity": _identity, **MODERN_OPS,
}
#: The ONNX op types :func:`load_onnx` reads (plus ``Constant``).
SUPPORTED_OPS = tuple(sorted(_OPS))


# --------------------------------------------------------------------------------------------
# the graph


def _constants(onnx: Any, graph: Any) -> dict[str, np.ndarray]:
    consts = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            for a in node.attribute:
                v = onnx.helper.get_attribute_value(a)
                consts[node.output[0]] = (onnx.numpy_helper.to_array(v)
                                          if a.name == "value" else np.asarray(v))
    return consts


def _input_shapes(onnx: Any, graph: Any, consts: dict[str, np.ndarray],
                  input_shape: Any) -> list[tuple[str, tuple[int, ...]]]:
    """The data inputs' ``(name, per-sample shape)``, in the graph's order; ``input_shape``
    (one shape; for several inputs a list of them or a dict by input name) fills in the free
    dimensions."""
    inputs = [v for v in graph.input if v.name not in consts]
    if not inputs or not graph.output:
        raise ValueError(f"load_onnx: the graph must have at least one data input and one "
                         f"output, got inputs {[v.name for v in inputs]} and outputs "
                         f"{[v.name for v in graph.output]}")
    names = [v.name for v in inputs]
    given: list[Any]
    if input_shape is None:
        given = [None] * len(inputs)
    elif len(inputs) == 1:
        given = [input_shape]
    elif isinstance(input_shape, dict):
        unknown = sorted(str(k) for k in input_shape if k not in names)
        if unknown:
            raise ValueError(f"load_onnx: input_shape names {unknown}, which are not inputs of "
                             f"the graph; its inputs are {names}")
        given = [input_shape.get(n) for n in names]
    elif isinstance(input_shape, list | tuple) and len(input_shape) == len(inputs) and all(
            s is None or isinstance(s, list | tuple) for s in input_shape):
        given = list(input_shape)
    else:
        raise ValueError(f"load_onnx: the graph has {len(inputs)} inputs {names}; pass "
                         f"input_shape as a list of {len(inputs)} per-sample shapes (None: "
                         f"from the graph) or a dict by input name, got {input_shape!r}")
    return [(v.name, _one_shape(onnx, v, g)) for v, g in zip(inputs, given, strict=True)]


def _one_shape(onnx: Any, v: Any, input_shape: Any) -> tuple[int, ...]:
    tt = v.type.tensor_type
    if not v.type.HasField("tensor_type") or tt.elem_type not in (
            onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE):
        raise ValueError(f"load_onnx: input {v.name!r} must be a float tensor")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
    if input_shape is not None:
        want = tuple(int(s) for s in input_shape)
        if tt.HasField("shape") and (len(dims) != len(want) + 1 or any(
                d is not None and d != s for d, s in zip(dims[1:], want, strict=True))):
            raise ValueError(f"load_onnx: input_shape={want} does not fit the graph input "
                             f"{v.name!r} of shape {dims} (None: free)")
        return want
    if len(dims) not in (2, 4) or any(d is None or d < 1 for d in dims[1:]):
        raise ValueError(f"load_onnx: the graph input {v.name!r} has shape {dims} (None: "
                         f"free); fastcnn needs (N, C, H, W) or (N, features) with every "
                         f"dimension but N fixed: pass input_shape=(C, H, W)")
    return tuple(int(d) for d in dims[1:])  # type: ignore[arg-type]


def _model_class(name: str) -> Any:
    """The model class ``name`` (an :class:`Exportable` subclass: Sequential, Functional),
    found without importing :mod:`fastcnn.model` / :mod:`fastcnn.functional`."""
    pending: list[type] = list(Exportable.__subclasses__())
    while pending:
        cls = pending.pop()
        if cls.__name__ == name:
            return cls
        pending.extend(cls.__subclasses__())
    raise RuntimeError(f"fastcnn.{name} is not defined (import fastcnn first)")


def _functional(entries: list[Entry], outs: list[int],
                inputs: list[tuple[str, tuple[int, ...]]], out_names: list[str], name: str,
                structure: dict[str, Any] | None) -> Any:
    """A :class:`fastcnn.Functional` over the entries (a graph), weights set. With several
    inputs / outputs each graph input becomes an ``Input`` of its name and each graph output
    an output of its name (the layer computing it is named so); ``structure`` (the file's
    ``"fastcnn.structure"``) says whether the model took / returns dicts."""
    multi_in, multi_out = len(inputs) > 1, len(outs) > 1
    in_keys = bool(structure and structure.get("input_keys"))
    out_keys = bool(structure and structure.get("output_keys"))
    xs = [_layers.Input(shape, name=n if (multi_in or in_keys) else None)
          for n, shape in inputs]
    values: dict[int, Any] = {-1 - k: x for k, x in enumerate(xs)}
    built = []
    # an output that is a graph input, or the value of another output too: an identity
    seen: set[int] = set()
    for k, o in enumerate(outs):
        if o < 0 or o in seen:
            entries.append(Entry([_layers.Activation, {"activation": None}, []], [o], 0))
            outs[k] = len(entries) - 1
        seen.add(outs[k])
    names = dict(zip(outs, out_names, strict=True)) if multi_out and not out_keys else {}
    for k, e in enumerate(entries):
        kwargs = dict(e.spec[1])
        if k in names:
            kwargs["name"] = names[k]
        layer = e.spec[0](**kwargs)
        ins = [values[j] for j in e.inputs]
        values[k] = layer(ins if layer.multi_input else ins[0])
        built.append(layer)
    inp: Any = {n: x for (n, _), x in zip(inputs, xs, strict=True)} if in_keys else (
        xs if multi_in else xs[0])
    res = [values[o] for o in outs]
    out: Any = dict(zip(out_names, res, strict=True)) if out_keys else (
        res if multi_out else res[0])
    model = _model_class("Functional")(inp, out, name=name, seed=0)
    for layer, e in zip(built, entries, strict=True):
        layer.set_weights(e.spec[2])
    return model


def load_onnx(model: str | os.PathLike[str] | Any,
              input_shape: Any = None, *,
              name: str = "sequential") -> Sequential:
    """A :class:`fastcnn.Sequential` (a chain) or :class:`fastcnn.Functional` (a graph with
    branches: residual ``Add``, ``Concat``) model (built, on the CPU, not compiled) computing
    what an ONNX graph computes, for evaluation or fine-tuning with fastcnn.

    Args:
        model: path of an ``.onnx`` file (external data next to it is read too) or an
            ``onnx.ModelProto``.
        input_shape: per-sample input shape ``(C, H, W)`` / ``(features,)``; needed only when
            the graph's input leaves more than the batch dimension free (several inputs: a
            list of shapes, None entries taken from the graph, or a dict by input name).
        name: the model's name.

    Returns:
        The model: ``model.predict(x)`` for ``x`` ``(N, *input_shape)`` equals the graph's
        output (up to float32 rounding).

    Raises:
        ImportError: onnx is not installed (``pip install "fastcnn[onnx]"``).
        FileNotFoundError: no such file.
        ValueError: an invalid ONNX model, or the first node (op type, name, position),
            attribute or wiring fastcnn can't translate (see the module docstring).
    """
    onnx = require_onnx("fastcnn.load_onnx")
    if isinstance(model, str | os.PathLike):
        path = os.fspath(model)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"load_onnx: no such file {path!r}")
        try:
            proto = onnx.load(path)
        except Exception as e:  # protobuf's DecodeError and friends
            raise ValueError(f"load_onnx: {path!r} is not a readable ONNX model: {e}") from e
    elif isinstance(model, onnx.ModelProto):
        proto = model
    else:
        raise TypeError(f"load_onnx: model must be a path or an onnx.ModelProto, got "
                        f"{type(model).__name__}")
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as e:
        raise ValueError(f"load_onnx: not a valid ONNX model: {e}") from e
    opset = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")),
                default=1)
    graph = proto.graph
    consts = _constants(onnx, graph)
    inputs = _input_shapes(onnx, graph, consts, input_shape)
    entries, outs = read_graph(onnx, graph, consts, inputs, opset, _OPS,
                               ", ".join(SUPPORTED_OPS))
    for e in entries:
        if e.spec[0] is NegInfPad:  # not merged into a MaxPool (fan-out, or another op)
            raise ValueError(f"{_where(e.node, graph.node[e.node])}: a Pad of -inf that feeds "
                             f"anything but one MaxPool; fastcnn reads it only as a "
                             f"MaxPool's padding")
    structure = _structure(proto, inputs, [o.name for o in graph.output])
    if len(inputs) == 1 and len(outs) == 1 and outs[0] < 0:  # an identity graph
        entries, outs = [Entry([_layers.Activation, {"activation": None}, []], [-1], 0)], [0]
    chain = len(inputs) == 1 and len(outs) == 1 and structure is None and \
        outs[0] == len(entries) - 1 and all(e.inputs == [k - 1] for k, e in enumerate(entries))
    if chain:
        seq = _model_class("Sequential")([e.spec[0](**e.spec[1]) for e in entries],
                                         input_shape=inputs[0][1], seed=0, name=name)
        for layer, e in zip(seq.layers, entries, strict=True):
            layer.set_weights(e.spec[2])
    else:
        seq = _functional(entries, outs, inputs, [o.name for o in graph.output], name,
                          structure)
    seq.metadata = _metadata(proto)
    return seq


def _structure(proto: Any, inputs: list[tuple[str, tuple[int, ...]]],
               out_names: list[str]) -> dict[str, Any] | None:
    """The ``"fastcnn.structure"`` entry of ``metadata_props`` (written for a model with
    several inputs / outputs), checked against the graph; None when absent."""
    for prop in proto.metadata_props:
        if prop.key == STRUCTURE_KEY:
            try:
                st = json.loads(prop.value)
            except json.JSONDecodeError as e:
                raise ValueError(f"load_onnx: metadata_props {STRUCTURE_KEY!r} is not valid "
                                 f"JSON: {e}") from e
            if not isinstance(st, dict) or st.get("inputs") != [n for n, _ in inputs] \
                    or st.get("outputs") != out_names:
                raise ValueError(f"load_onnx: metadata_props {STRUCTURE_KEY!r} ({prop.value}) "
                                 f"does not match the graph's inputs {[n for n, _ in inputs]} "
                                 f"and outputs {out_names}")
            return st
    return None


def _metadata(proto: Any) -> dict[str, Any]:
    """``model.metadata`` from the ``metadata_props`` entry :meth:`Sequential.export` writes."""
    for prop in proto.metadata_props:
        if prop.key == METADATA_KEY:
            try:
                meta = json.loads(prop.value)
            except json.JSONDecodeError as e:
                raise ValueError(f"load_onnx: metadata_props {METADATA_KEY!r} is not valid "
                                 f"JSON: {e}") from e
            if not isinstance(meta, dict):
                raise ValueError(f"load_onnx: metadata_props {METADATA_KEY!r} is not a JSON "
                                 f"object")
            return meta
    return {}
