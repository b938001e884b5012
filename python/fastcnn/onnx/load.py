"""ONNX import: :func:`load_onnx` builds a :class:`fastcnn.Sequential` from an ONNX graph that
is a chain of the ops fastcnn has layers for, e.g. a CNN exported by
``torch.onnx.export(..., dynamo=False)`` or by :meth:`fastcnn.Sequential.export`.

=================================  ==========================================================
ONNX                               fastcnn
=================================  ==========================================================
``Conv``                           Conv2D (pads symmetric, or Keras "same" for this input)
``MaxPool``                        MaxPool2D (windows those of "valid" or "same")
``Gemm``, ``MatMul`` [+ ``Add``]   Dense (``transB`` / ``alpha`` / ``beta`` folded in)
``Flatten`` (axis 1),              Flatten
``Reshape`` to ``(N, -1)``
``Relu`` / ``Sigmoid`` /           the preceding Conv2D / Dense's activation when it has none,
``Softmax`` (the feature axis)     else an Activation (ReLU / Softmax) layer
``Dropout``                        Dropout (its ratio; identity at inference)
``Identity``, ``Constant``         nothing
=================================  ==========================================================

Initializers (and ``Constant`` nodes) are the weights; the graph must have one data input
``(N, *input_shape)`` float (``N`` free) and one output, and every node must take the previous
node's output (a chain). Anything else, the first unsupported node, attribute or wiring, is a
ValueError naming the node's op type, name and position (``node #i`` in ``graph.node``).
``model.metadata`` is read back from the ``"fastcnn.metadata"`` entry of ``metadata_props``
that :meth:`fastcnn.Sequential.export` writes (empty for other graphs).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import layers as _layers
from .._geometry import same_padding
from ._common import require_onnx
from .export import METADATA_KEY, Exportable

if TYPE_CHECKING:
    from ..model import Sequential

__all__ = ["SUPPORTED_OPS", "load_onnx"]


class _Unsupported(ValueError):
    """A node fastcnn can't translate (the reason; :func:`load_onnx` adds which node)."""


class _Chain:
    """The layers read so far: ``entries`` of ``[class, kwargs, weights]`` and the per-sample
    shape of the current tensor."""

    def __init__(self, shape: tuple[int, ...], opset: int) -> None:
        self.entries: list[list[Any]] = []
        self.shape = shape
        self.opset = opset
        self.bias_pending = False  # the last entry is a MatMul's Dense waiting for its Add

    def add(self, cls: type[_layers.Layer], kwargs: dict[str, Any],
            weights: list[np.ndarray] | None = None) -> None:
        try:
            self.shape = cls(**kwargs).compute_output_shape(self.shape)
        except ValueError as e:
            raise _Unsupported(f"the layer {cls.__name__}({kwargs}) does not fit the input "
                               f"shape {self.shape}: {e}") from e
        self.entries.append([cls, kwargs, weights or []])
        self.bias_pending = False

    def activation(self, act: str) -> None:
        last = self.entries[-1] if self.entries else None
        if last is not None and last[0] in (_layers.Conv2D, _layers.Dense) \
                and last[1].get("activation") is None:
            last[1]["activation"] = act  # folded into the layer (fastcnn fuses ReLU there)
            self.bias_pending = False
        elif act == "relu":
            self.add(_layers.ReLU, {})
        elif act == "softmax":
            self.add(_layers.Softmax, {})
        else:
            self.add(_layers.Activation, {"activation": act})


# --------------------------------------------------------------------------------------------
# attributes and constants


def _attrs(onnx: Any, node: Any, allowed: dict[str, Any]) -> dict[str, Any]:
    """The node's attributes as Python values, defaults from ``allowed``; _Unsupported for an
    attribute not in ``allowed``."""
    out = dict(allowed)
    for a in node.attribute:
        if a.name not in allowed:
            raise _Unsupported(f"attribute {a.name!r} is not supported (fastcnn reads "
                               f"{sorted(allowed) or 'none'})")
        v = onnx.helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def _const(consts: dict[str, np.ndarray], node: Any, i: int, what: str,
           required: bool = True) -> np.ndarray | None:
    if i >= len(node.input) or not node.input[i]:
        if required:
            raise _Unsupported(f"needs its {what} (input {i})")
        return None
    name = node.input[i]
    if name not in consts:
        raise _Unsupported(f"its {what} {name!r} must be an initializer or a Constant")
    return consts[name]


def _weight(a: np.ndarray, what: str) -> np.ndarray:
    if a.dtype.kind != "f":
        raise _Unsupported(f"its {what} has dtype {a.dtype}; fastcnn weights are float32")
    return np.ascontiguousarray(a, dtype=np.float32)


def _pads_2d(at: dict[str, Any], size: tuple[int, int], k: tuple[int, int],
             s: tuple[int, int], d: tuple[int, int]) -> tuple[int, int, int, int]:
    """ONNX ``auto_pad`` / ``pads`` resolved to ``(top, left, bottom, right)``."""
    mode = at["auto_pad"]
    if mode in ("NOTSET", ""):
        pads = list(at["pads"] or [0, 0, 0, 0])
        if len(pads) != 4 or any(p < 0 for p in pads):
            raise _Unsupported(f"pads {pads} must be 4 non-negative ints")
        return int(pads[0]), int(pads[1]), int(pads[2]), int(pads[3])
    if mode == "VALID":
        return (0, 0, 0, 0)
    if mode not in ("SAME_UPPER", "SAME_LOWER"):
        raise _Unsupported(f"auto_pad {mode!r} is not supported")
    begin, end = [], []
    for n, kk, ss, dd in zip(size, k, s, d, strict=True):
        total = max((-(-n // ss) - 1) * ss + (kk - 1) * dd + 1 - n, 0)
        small = total // 2
        begin.append(small if mode == "SAME_UPPER" else total - small)
        end.append(total - begin[-1])
    return begin[0], begin[1], end[0], end[1]


def _pairs(at: dict[str, Any], key: str) -> tuple[int, int]:
    v = at[key]
    if len(v) != 2 or any(int(x) < 1 for x in v):
        raise _Unsupported(f"{key} {list(v)} must be 2 positive ints (2-D only)")
    return int(v[0]), int(v[1])


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


def _pool_window(n: int, k: int, s: int, begin: int, end: int, ceil_mode: bool) -> int:
    """Number of ONNX MaxPool windows along one axis (the last must start before the end
    padding with ``ceil_mode``)."""
    room = n + begin + end - k
    if room < 0:
        raise _Unsupported(f"the window {k} is larger than the padded input {n + begin + end}")
    out = (room + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= n + begin:
        out -= 1
    return out


def _maxpool(onnx: Any, node: Any, consts: dict[str, np.ndarray], ch: _Chain) -> None:
    at = _attrs(onnx, node, {"auto_pad": "NOTSET", "ceil_mode": 0, "dilations": [1, 1],
                             "kernel_shape": None, "pads": None, "storage_order": 0,
                             "strides": [1, 1]})
    if at["kernel_shape"] is None:
        raise _Unsupported("needs kernel_shape")
    if len(ch.shape) != 3:
        raise _Unsupported(f"input of per-sample shape {ch.shape}; MaxPool needs (C, H, W)")
    k, st = _pairs(at, "kernel_shape"), _pairs(at, "strides")
    if _pairs(at, "dilations") != (1, 1):
        raise _Unsupported(f"dilations {list(at['dilations'])}: fastcnn's MaxPool2D has none")
    size = (ch.shape[1], ch.shape[2])
    t, l, bo, r = _pads_2d(at, size, k, st, (1, 1))
    windows = [(b, _pool_window(n, kk, ss, b, e, bool(at["ceil_mode"])))
               for n, kk, ss, b, e in zip(size, k, st, (t, l), (bo, r), strict=True)]
    valid = [(0, (n - kk) // ss + 1) if n >= kk else None
             for n, kk, ss in zip(size, k, st, strict=True)]
    same = [(same_padding(n, kk, ss)[0], -(-n // ss)) for n, kk, ss in zip(size, k, st,
                                                                          strict=True)]
    if windows == valid:
        padding = "valid"
    elif windows == same:
        padding = "same"
    else:
        raise _Unsupported(f"pads {[t, l, bo, r]} (ceil_mode {at['ceil_mode']}) on input "
                           f"{size[0]}x{size[1]} give windows (first offset, count) "
                           f"{windows}, neither fastcnn's 'valid' {valid} nor 'same' {same}")
    ch.add(_layers.MaxPool2D, {"pool_size": k, "strides": st, "padding": padding})


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
    if len(ch.shape) > 1:
        ch.add(_layers.Flatten, {})


def _reshape(onnx: Any, node: Any, consts: dict[str, np.ndarray], ch: _Chain) -> None:
    at = _attrs(onnx, node, {"allowzero": 0})
    shape = _const(consts, node, 1, "shape")
    target = [int(v) for v in np.asarray(shape).reshape(-1)]
    feats = math.prod(ch.shape)
    keep_batch = target[:1] == [0] and not at["allowzero"]
    if len(target) != 2 or not ((keep_batch and target[1] in (-1, feats))
                                or (target[0] == -1 and target[1] == feats)):
        raise _Unsupported(f"shape {target}: fastcnn reads only a flatten to (N, -1), i.e. "
                           f"[0, -1], [0, {feats}] or [-1, {feats}]")
    if len(ch.shape) > 1:
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
    "Flatten": _flatten, "Reshape": _reshape, "Relu": _elementwise("relu"),
    "Sigmoid": _elementwise("sigmoid"), "Softmax": _softmax, "Dropout": _dropout,
    "Identity": _identity,
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


def _input_shape(onnx: Any, graph: Any, consts: dict[str, np.ndarray],
                 input_shape: tuple[int, ...] | None) -> tuple[str, tuple[int, ...]]:
    inputs = [v for v in graph.input if v.name not in consts]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise ValueError(f"load_onnx: the graph must have one data input and one output, got "
                         f"inputs {[v.name for v in inputs]} and outputs "
                         f"{[v.name for v in graph.output]}")
    v = inputs[0]
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
        return v.name, want
    if len(dims) not in (2, 4) or any(d is None or d < 1 for d in dims[1:]):
        raise ValueError(f"load_onnx: the graph input {v.name!r} has shape {dims} (None: "
                         f"free); fastcnn needs (N, C, H, W) or (N, features) with every "
                         f"dimension but N fixed: pass input_shape=(C, H, W)")
    return v.name, tuple(int(d) for d in dims[1:])  # type: ignore[arg-type]


def _sequential_class() -> type[Sequential]:
    """The model class (an :class:`Exportable` subclass named Sequential), found without
    importing :mod:`fastcnn.model`."""
    pending: list[type] = list(Exportable.__subclasses__())
    while pending:
        cls = pending.pop()
        if cls.__name__ == "Sequential":
            return cls  # type: ignore[return-value]
        pending.extend(cls.__subclasses__())
    raise RuntimeError("fastcnn.Sequential is not defined (import fastcnn first)")


def load_onnx(model: str | os.PathLike[str] | Any,
              input_shape: tuple[int, ...] | None = None, *,
              name: str = "sequential") -> Sequential:
    """A :class:`fastcnn.Sequential` (built, on the CPU, not compiled) computing what an ONNX
    graph computes, for evaluation or fine-tuning with fastcnn.

    Args:
        model: path of an ``.onnx`` file (external data next to it is read too) or an
            ``onnx.ModelProto``.
        input_shape: per-sample input shape ``(C, H, W)`` / ``(features,)``; needed only when
            the graph's input leaves more than the batch dimension free.
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
    current, shape = _input_shape(onnx, graph, consts, input_shape)
    ch = _Chain(shape, opset)
    used = {n for node in graph.node for n in node.input} | {graph.output[0].name}
    for i, node in enumerate(graph.node):
        where = f"load_onnx: node #{i} ({node.op_type} {node.name!r})"
        if node.domain not in ("", "ai.onnx"):
            raise ValueError(f"{where}: op domain {node.domain!r} is not supported")
        if node.op_type == "Constant":
            continue
        if node.op_type not in _OPS:
            raise ValueError(f"{where}: op {node.op_type!r} is not supported; fastcnn reads "
                             f"{', '.join(SUPPORTED_OPS)} (and Constant)")
        data = [n for n in node.input if n and n not in consts]
        if data != [current] or (node.input[0] != current and node.op_type != "Add"):
            raise ValueError(f"{where}: takes {list(node.input)}, expected the previous "
                             f"node's output {current!r} (and constants): fastcnn imports "
                             f"a chain of layers only")
        if any(o and o in used for o in node.output[1:]):
            raise ValueError(f"{where}: its extra outputs {list(node.output[1:])} are used; "
                             f"fastcnn reads only the first")
        try:
            _OPS[node.op_type](onnx, node, consts, ch)
        except _Unsupported as e:
            raise ValueError(f"{where}: {e}") from None
        current = node.output[0]
    if current != graph.output[0].name:
        raise ValueError(f"load_onnx: the chain ends at {current!r}, the graph output is "
                         f"{graph.output[0].name!r}")
    if not ch.entries:  # an identity graph
        ch.add(_layers.Activation, {"activation": None})
    seq = _sequential_class()([cls(**kw) for cls, kw, _ in ch.entries], input_shape=shape,
                              seed=0, name=name)
    for layer, (_, _, weights) in zip(seq.layers, ch.entries, strict=True):
        layer.set_weights(weights)
    seq.metadata = _metadata(proto)
    return seq


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
