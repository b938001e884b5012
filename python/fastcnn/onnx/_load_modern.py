"""The ONNX readers of :func:`fastcnn.onnx.load_onnx` for the layers of modern CNNs: batch
normalization, average and global pooling, the newer activations, padding and reshaping, and the
two activations that exporters write as small subgraphs (SiLU, GELU below opset 20).

=================================  ==========================================================
ONNX                               fastcnn
=================================  ==========================================================
``BatchNormalization``             BatchNormalization (inference form, ``training_mode=0``;
                                   ``epsilon``, ``momentum``: Keras' convention already)
``AveragePool``                    AveragePooling2D ("valid", or "same" with
                                   ``count_include_pad=0``, Keras' average of real elements)
``GlobalAveragePool`` /            GlobalAveragePooling2D / GlobalMaxPooling2D
``GlobalMaxPool``                  (``keepdims=False`` when a flatten follows)
``Tanh``, ``Gelu``                 the preceding Conv2D / Dense's activation when it has none,
                                   else an Activation layer; ``Gelu(approximate="tanh")``
                                   (opset 20) is ``GELU(approximate=True)``, its own layer
``LeakyRelu``                      LeakyReLU (``alpha``)
``Sigmoid`` -> ``Mul(x, .)``       the ``"silu"`` activation (PyTorch's export of SiLU)
``Div(x, sqrt 2)`` -> ``Erf`` ->   the ``"gelu"`` activation (PyTorch's export of GELU below
``Add 1`` -> ``Mul x`` ->          opset 20, and fastcnn's); ``Mul(x, 1/sqrt 2)`` for the
``Mul 0.5``                        first step too
``Mul(x, x)`` -> ``Mul x`` (or     ``GELU(approximate=True)`` (PyTorch's export of
``Pow(x, 3)``) -> ``Mul 0.044715`` ``nn.GELU(approximate="tanh")`` below opset 20, and
-> ``Add x`` -> ``Mul sqrt(2/pi)`` fastcnn's); a subgraph that starts so and then differs
-> ``Tanh`` -> ``Add 1`` ->        is refused naming the first node that differs
``Mul x`` -> ``Mul 0.5``
``Pad``                            ZeroPadding2D (constant zeros on H and W only)
``Reshape``                        Flatten for ``(N, -1)``, else Reshape (the batch dimension
                                   kept: ``0`` or ``-1`` first)
=================================  ==========================================================
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import layers as _layers
from ._chain import _attrs, _Chain, _const, _pads_2d, _pairs, _Unsupported, _weight, pool_padding

__all__ = ["MODERN_OPS", "match_activation", "merge_flatten"]


def _short(v: float) -> float:
    """A float32 attribute as the short decimal it was written from (0.30000001 -> 0.3)."""
    return float(f"{float(v):.7g}")


def merge_flatten(ch: _Chain) -> bool:
    """A flatten after a global pooling with ``keepdims=True``: the pooling drops its
    spatial axes instead (``keepdims=False``), no Flatten layer. True when merged."""
    last = ch.entries[-1] if ch.entries else None
    if last is not None and last[0] in (_layers.GlobalAveragePooling2D,
                                        _layers.GlobalMaxPooling2D) \
            and last[1].get("keepdims", False):
        last[1]["keepdims"] = False
        ch.shape = ch.shape[:1]
        return True
    return False


def _batch_norm(onnx: Any, node: Any, consts: dict[str, np.ndarray], ch: _Chain) -> None:
    at = _attrs(onnx, node, {"epsilon": 1e-5, "momentum": 0.9, "training_mode": 0,
                             "spatial": 1})
    if at["training_mode"] or not at["spatial"]:
        raise _Unsupported("training_mode=1 or spatial=0 (fastcnn reads the inference form)")
    if not 1 <= len(ch.shape) <= 3:
        raise _Unsupported(f"input of per-sample shape {ch.shape}; needs (C,), (C, L) or "
                           f"(C, H, W)")
    C = ch.shape[0]
    names = ("scale", "B", "input_mean", "input_var")
    ws = [_weight(_const(consts, node, i, what), what)  # type: ignore[arg-type]
          for i, what in enumerate(names, start=1)]
    for what, w in zip(names, ws, strict=True):
        if w.shape != (C,):
            raise _Unsupported(f"{what} of shape {w.shape}, expected ({C},)")
    ch.add(_layers.BatchNormalization, {"epsilon": _short(at["epsilon"]),
                                        "momentum": _short(at["momentum"])}, ws)


def _avgpool(onnx: Any, node: Any, consts: dict[str, np.ndarray], ch: _Chain) -> None:
    at = _attrs(onnx, node, {"auto_pad": "NOTSET", "ceil_mode": 0, "count_include_pad": 0,
                             "dilations": [1, 1], "kernel_shape": None, "pads": None,
                             "strides": [1, 1]})
    if at["kernel_shape"] is None:
        raise _Unsupported("needs kernel_shape")
    if len(ch.shape) != 3:
        raise _Unsupported(f"input of per-sample shape {ch.shape}; AveragePool needs "
                           f"(C, H, W)")
    k, st = _pairs(at, "kernel_shape"), _pairs(at, "strides")
    if _pairs(at, "dilations") != (1, 1):
        raise _Unsupported(f"dilations {list(at['dilations'])}: fastcnn's AveragePooling2D "
                           f"has none")
    size = (ch.shape[1], ch.shape[2])
    padding = pool_padding(at, size, k, st)
    if padding == "same" and at["count_include_pad"] and any(_pads_2d(at, size, k, st,
                                                                      (1, 1))):
        raise _Unsupported("count_include_pad=1 with padding averages the zeros of the "
                           "padding; fastcnn's (Keras') 'same' averages the real elements "
                           "only (count_include_pad=0)")
    ch.add(_layers.AveragePooling2D, {"pool_size": k, "strides": st, "padding": padding})


def _global(cls: type[_layers.Layer]) -> Callable[..., None]:
    def read(onnx: Any, node: Any, consts: dict[str, np.ndarray], ch: _Chain) -> None:
        _attrs(onnx, node, {})
        if len(ch.shape) != 3:
            raise _Unsupported(f"input of per-sample shape {ch.shape}; needs (C, H, W)")
        ch.add(cls, {"keepdims": True})
    return read


def _activation(act: str) -> Callable[..., None]:
    def read(onnx: Any, node: Any, consts: dict[str, np.ndarray], ch: _Chain) -> None:
        at = _attrs(onnx, node, {"approximate": "none"} if act == "gelu" else {})
        form = at.get("approximate", "none")
        if form not in ("none", "tanh"):
            raise _Unsupported(f"approximate={form!r}: ONNX's Gelu takes 'none' (fastcnn's "
                               f"GELU) or 'tanh' (GELU(approximate=True))")
        ch.activation("gelu_tanh" if form == "tanh" else act)
    return read


def _leaky_relu(onnx: Any, node: Any, consts: dict[str, np.ndarray], ch: _Chain) -> None:
    at = _attrs(onnx, node, {"alpha": 0.01})
    if at["alpha"] < 0:
        raise _Unsupported(f"alpha {at['alpha']} < 0 (Keras' LeakyReLU takes a slope >= 0)")
    ch.add(_layers.LeakyReLU, {"negative_slope": _short(at["alpha"])})


class NegInfPad:
    """A ``Pad`` of -inf read before the ``MaxPool`` it feeds: fastcnn's export writes one for
    a dilated "same" pooling whose pads reach the window (onnxruntime refuses such MaxPool
    pads). Not a layer: :func:`fastcnn.onnx.load._maxpool` merges it into the MaxPool2D's
    padding, and a NegInfPad left over (feeding anything else) is refused."""

    def __init__(self, padding: tuple[tuple[int, int], tuple[int, int]]) -> None:
        self.padding = padding

    def compute_output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        (t, b), (lft, r) = self.padding
        return (shape[0], shape[1] + t + b, shape[2] + lft + r)


def _pad(onnx: Any, node: Any, consts: dict[str, np.ndarray], ch: _Chain) -> None:
    at = _attrs(onnx, node, {"mode": "constant"})
    if at["mode"] != "constant":
        raise _Unsupported(f"mode {at['mode']!r}: fastcnn pads with zeros only")
    pads = [int(v) for v in np.asarray(_const(consts, node, 1, "pads")).reshape(-1)]
    value = _const(consts, node, 2, "constant_value", required=False)
    fill = float(np.asarray(value).reshape(-1)[0]) if value is not None and np.asarray(
        value).size else 0.0
    if fill and fill != -np.inf:
        raise _Unsupported("a constant_value other than 0 (fastcnn's ZeroPadding2D) or -inf "
                           "(before a MaxPool)")
    if _const(consts, node, 3, "axes", required=False) is not None:
        raise _Unsupported("the axes input (give pads for every axis)")
    if len(ch.shape) != 3 or len(pads) != 8:
        raise _Unsupported(f"pads {pads} on per-sample shape {ch.shape}: fastcnn pads (N, C, "
                           f"H, W) images, 8 pads")
    n0, c0, t, l, n1, c1, b, r = pads
    if n0 or c0 or n1 or c1 or min(t, l, b, r) < 0:
        raise _Unsupported(f"pads {pads}: only H and W are padded, by >= 0")
    if fill == -np.inf:
        ch.add(NegInfPad, {"padding": ((t, b), (l, r))})  # type: ignore[arg-type]
        return
    ch.add(_layers.ZeroPadding2D, {"padding": ((t, b), (l, r))})


def _reshape(onnx: Any, node: Any, consts: dict[str, np.ndarray], ch: _Chain) -> None:
    at = _attrs(onnx, node, {"allowzero": 0})
    target = [int(v) for v in np.asarray(_const(consts, node, 1, "shape")).reshape(-1)]
    feats = math.prod(ch.shape)
    if not target or target[0] not in (0, -1) or (target[0] == 0 and at["allowzero"]):
        raise _Unsupported(f"shape {target}: fastcnn reads only a flatten to (N, -1) or a "
                           f"reshape that keeps the batch dimension (0 or -1 first)")
    rest = [ch.shape[j] if v == 0 and not at["allowzero"] and j < len(ch.shape) else v
            for j, v in enumerate(target[1:])]
    if target[0] == -1 and -1 in rest:
        raise _Unsupported(f"shape {target}: two sizes to infer")
    if any(v == 0 for v in rest) or any(v < -1 for v in rest) or rest.count(-1) > 1:
        raise _Unsupported(f"shape {target} for per-sample shape {ch.shape}: bad sizes")
    known = math.prod(v for v in rest if v != -1)
    if known == 0 or feats % known or (-1 not in rest and known != feats):
        raise _Unsupported(f"shape {target} does not fit per-sample shape {ch.shape} "
                           f"({feats} elements)")
    out = tuple(feats // known if v == -1 else v for v in rest)
    if len(out) == 1:
        if len(ch.shape) > 1 and not merge_flatten(ch):
            ch.add(_layers.Flatten, {})
    elif out != tuple(ch.shape):
        ch.add(_layers.Reshape, {"target_shape": out})


def _scalar(consts: dict[str, np.ndarray], name: str) -> float | None:
    a = consts.get(name)
    if a is None or np.asarray(a).size != 1 or np.asarray(a).dtype.kind != "f":
        return None
    return float(np.asarray(a).reshape(()))


def _is(value: float | None, want: float) -> bool:
    return value is not None and abs(value - want) <= 1e-6 * abs(want)


def match_activation(nodes: Sequence[Any], i: int, current: str, consts: dict[str, np.ndarray],
                     graph_outputs: frozenset[str]) -> tuple[str, int] | None:
    """Whether the non-Constant nodes from ``nodes[i]`` on, applied to ``current``, are the
    subgraph of SiLU (``Sigmoid``, ``Mul``) or of exact GELU (``Div`` / ``Mul``, ``Erf``,
    ``Add``, ``Mul``, ``Mul``) or of GELU's tanh form (``"gelu_tanh"``: :func:`_gelu_tanh`),
    each intermediate tensor used by the next node only: ``(activation, index of the
    subgraph's last node)``, or None. Raises ``_Unsupported`` for a subgraph that starts as
    the tanh GELU's (``Mul(x, x)`` / ``Pow(x, 3)``) and then differs."""
    uses = Counter(n for node in nodes for n in node.input)
    uses.update(graph_outputs)
    seq = [(j, node) for j, node in enumerate(nodes) if j >= i and node.op_type != "Constant"]

    def op(k: int, kind: str) -> Any:
        if k >= len(seq) or seq[k][1].op_type != kind or seq[k][1].domain not in ("", "ai.onnx"):
            return None
        return seq[k][1]

    def other(node: Any, mine: str) -> str | None:
        ins = list(node.input)
        if len(ins) != 2 or mine not in ins:
            return None
        ins.remove(mine)
        return ins[0]

    def private(node: Any) -> bool:  # its output feeds exactly one node, not the graph output
        return uses[node.output[0]] == 1 and node.output[0] not in graph_outputs

    sig, mul = op(0, "Sigmoid"), op(1, "Mul")
    if sig is not None and mul is not None and list(sig.input) == [current] and private(sig) \
            and other(mul, sig.output[0]) == current:
        return "silu", seq[1][0]
    tanh_form = _gelu_tanh(seq, current, consts, op, other, private)
    if tanh_form is not None:
        return "gelu_tanh", tanh_form
    first = op(0, "Div") or op(0, "Mul")
    if first is None or (first.op_type == "Div" and list(first.input[0:1]) != [current]):
        return None
    c0 = _scalar(consts, other(first, current) or "")
    if not (_is(c0, math.sqrt(2.0)) if first.op_type == "Div" else _is(c0, 1 / math.sqrt(2.0))):
        return None
    erf, add, mx, half = op(1, "Erf"), op(2, "Add"), op(3, "Mul"), op(4, "Mul")
    if None in (erf, add, mx, half) or not all(private(n) for n in (first, erf, add, mx)):
        return None
    if list(erf.input) != [first.output[0]] \
            or not _is(_scalar(consts, other(add, erf.output[0]) or ""), 1.0) \
            or other(mx, add.output[0]) != current \
            or not _is(_scalar(consts, other(half, mx.output[0]) or ""), 0.5):
        return None
    return "gelu", seq[4][0]


#: GELU's tanh form after ``x^3``: (op, the other operand: a scalar constant, or None for
#: ``x``; Tanh has none), as PyTorch writes it (either operand order).
_TANH_STEPS: tuple[tuple[str, float | None], ...] = (
    ("Mul", 0.044715), ("Add", None), ("Mul", math.sqrt(2.0 / math.pi)), ("Tanh", None),
    ("Add", 1.0), ("Mul", None), ("Mul", 0.5))
_TANH_FORM = "0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))"


def _gelu_tanh(seq: list[tuple[int, Any]], current: str, consts: dict[str, np.ndarray],
               op: Callable[[int, str], Any], other: Callable[[Any, str], str | None],
               private: Callable[[Any], bool]) -> int | None:
    """The index of the last node of GELU's tanh form applied to ``current`` from ``seq[0]``
    on (:data:`_TANH_STEPS` after ``Mul(x, x) -> Mul x`` or ``Pow(x, 3)``), None when
    ``seq[0]`` does not start it; ``_Unsupported`` naming the first node that differs when it
    starts it and does not complete it."""
    first = seq[0][1] if seq else None
    if first is None or first.domain not in ("", "ai.onnx"):
        return None
    if first.op_type == "Pow":
        e = consts.get(first.input[1]) if len(first.input) > 1 else None
        if list(first.input[:1]) != [current] or e is None or np.asarray(e).size != 1 \
                or float(np.asarray(e).reshape(())) != 3.0:
            return None
        k = 1
    elif first.op_type == "Mul" and list(first.input) == [current, current]:
        k = 2
    else:
        return None

    def name(j: int) -> str:
        return f"node #{seq[j][0]} ({seq[j][1].op_type} {seq[j][1].name!r})"

    def fail(j: int, want: str, shared: bool = False) -> _Unsupported:
        if shared:
            what = f"the output of {name(j - 1)} is read by other nodes too (or is a graph " \
                   f"output)"
        else:
            what = f"{name(j) if j < len(seq) else 'the end of the graph'} is not {want}"
        return _Unsupported(f"starts GELU's tanh form {_TANH_FORM} (x * x or x^3), but "
                            f"{what}; fastcnn reads the whole subgraph (each intermediate "
                            f"tensor used once) as GELU(approximate=True), or the opset-20 "
                            f"Gelu(approximate='tanh')")
    if k == 2:
        cube = op(1, "Mul")
        if cube is None or other(cube, first.output[0]) != current:
            raise fail(1, "Mul(x, x * x) (x^3)")
        if not private(first):
            raise fail(1, "", shared=True)
    prev = seq[k - 1][1]
    for j, (kind, c) in enumerate(_TANH_STEPS, start=k):
        node = op(j, kind)
        want = f"{kind}({'' if kind == 'Tanh' else 'x, ' if c is None else f'{c:.7g}, '}.)"
        if not private(prev):
            raise fail(j, want, shared=True)
        if node is None:
            raise fail(j, want)
        if kind == "Tanh":
            ok = list(node.input) == [prev.output[0]]
        else:
            rest = other(node, prev.output[0])
            ok = rest == current if c is None else _is(_scalar(consts, rest or ""), c)
        if not ok:
            raise fail(j, want)
        prev = node
    return int(seq[k + len(_TANH_STEPS) - 1][0])


#: op type -> reader, merged into :mod:`fastcnn.onnx.load`'s table.
MODERN_OPS: dict[str, Callable[..., None]] = {
    "BatchNormalization": _batch_norm, "AveragePool": _avgpool,
    "GlobalAveragePool": _global(_layers.GlobalAveragePooling2D),
    "GlobalMaxPool": _global(_layers.GlobalMaxPooling2D),
    "Tanh": _activation("tanh"), "Gelu": _activation("gelu"), "LeakyRelu": _leaky_relu,
    "Pad": _pad, "Reshape": _reshape,
}
