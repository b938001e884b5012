"""What the ONNX op readers share (:mod:`fastcnn.onnx.load` and :mod:`fastcnn.onnx._load_modern`):
the chain of layers being read, a node's attributes and constant inputs, the padding and pooling
geometry, and the error a reader raises for what fastcnn can't translate."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import layers as _layers
from .._geometry import same_padding

# the readers' shared toolkit: private names, imported by the two reader modules only
__all__ = ["_Chain", "_Unsupported", "_attrs", "_const", "_pads_2d", "_pairs", "_weight",
           "pool_padding"]


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
        """Apply ``act`` to the chain: folded into the Conv2D / Dense before it when that has
        none, else its layer; ``"gelu_tanh"`` (GELU's tanh form, which Conv2D / Dense can't
        hold) is always its own ``GELU(approximate=True)``."""
        if act == "gelu_tanh":
            self.add(_layers.GELU, {"approximate": True})
            return
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


def _pool_window(n: int, k: int, s: int, begin: int, end: int, ceil_mode: bool,
                 d: int = 1) -> int:
    """Number of ONNX MaxPool windows along one axis (``k`` taps ``d`` apart; the last must
    start before the end padding with ``ceil_mode``)."""
    eff = d * (k - 1) + 1
    room = n + begin + end - eff
    if room < 0:
        raise _Unsupported(f"the window {eff} is larger than the padded input {n + begin + end}")
    out = (room + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= n + begin:
        out -= 1
    return out


def pool_padding(at: dict[str, Any], size: tuple[int, int], k: tuple[int, int],
                 st: tuple[int, int], dil: tuple[int, int] = (1, 1)) -> str:
    """A MaxPool / AveragePool's ``pads`` / ``auto_pad`` / ``ceil_mode`` as fastcnn's
    ``"valid"`` or ``"same"`` for the input ``size`` (the same windows) of a pooling with
    dilation ``dil``; _Unsupported otherwise."""
    t, l, bo, r = _pads_2d(at, size, k, st, dil)
    windows = [(b, _pool_window(n, kk, ss, b, e, bool(at["ceil_mode"]), dd))
               for n, kk, ss, b, e, dd in zip(size, k, st, (t, l), (bo, r), dil, strict=True)]
    valid = [(0, (n - dd * (kk - 1) - 1) // ss + 1) if n >= dd * (kk - 1) + 1 else None
             for n, kk, ss, dd in zip(size, k, st, dil, strict=True)]
    same = [(same_padding(n, kk, ss, dd)[0], -(-n // ss))
            for n, kk, ss, dd in zip(size, k, st, dil, strict=True)]
    if windows == valid:
        padding = "valid"
    elif windows == same:
        padding = "same"
    else:
        raise _Unsupported(f"pads {[t, l, bo, r]} (ceil_mode {at['ceil_mode']}) on input "
                           f"{size[0]}x{size[1]} give windows (first offset, count) "
                           f"{windows}, neither fastcnn's 'valid' {valid} nor 'same' {same}")
    return padding
