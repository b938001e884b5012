"""The CUDA backend for CuPy arrays: what :mod:`fastcnn.ops` calls instead of ``fastcnn._cpu``.

Same function names and positional signatures as the compiled CPU module (``conv2d(x, w, b,
stride_h, stride_w, pad_top, pad_left, pad_bottom, pad_right, dil_h, dil_w, groups, relu)``, ...),
taking and returning ``cupy.ndarray``. The input rule is the CPU's: float32 arrays (class labels:
any integer dtype; pooling indices: int64), anything else is a TypeError naming the argument;
non-contiguous inputs are copied once (``cupy.ascontiguousarray``); outputs are fresh C-contiguous
arrays allocated with CuPy (its memory pool), as are the kernels' workspaces.

Shapes and options are validated in C++ by the same ``check_<op>_args`` functions as the CPU
module (ValueError, same messages) through ``fastcnn._cuda``'s ``*_plan`` functions, before
anything is allocated; the kernels are then launched with raw device pointers on CuPy's current
stream of the arrays' device (all arrays of a call must be on one device). Calls are
asynchronous like any CuPy operation, except ``cross_entropy`` (it returns the loss as a Python
float, so it synchronises the stream) and ``max_pool2d_backward`` with user-given ``indices``
(they are validated on the device: one 16-byte copy and a sync).

Optimizer updates (``sgd_update``, ``adam_update``) work in place on C-contiguous float32
parameters and state and are bit-identical to the NumPy formulas of :mod:`fastcnn.reference`
(``adam_update`` takes the CPU module's prepared float32 scalars, formed by
:func:`fastcnn.ops.adam_update`).

``fastcnn._cuda`` is reached through :mod:`fastcnn._native`, the one door to the compiled modules.
"""

from __future__ import annotations

from typing import Any

import cupy
import numpy as np

from . import _native

_cuda = _native.cuda()

__all__ = [
    "adam_update",
    "conv2d",
    "conv2d_backward",
    "cross_entropy",
    "gelu",
    "gelu_backward",
    "leaky_relu",
    "leaky_relu_backward",
    "linear",
    "linear_backward",
    "max_pool2d",
    "max_pool2d_backward",
    "relu",
    "relu_backward",
    "sgd_update",
    "sigmoid",
    "sigmoid_backward",
    "silu",
    "silu_backward",
    "softmax",
    "tanh",
    "tanh_backward",
]

_F32 = np.dtype(np.float32)
_I64 = np.dtype(np.int64)


# ------------------------------------------------------------------------------------------------
# helpers


def _type_name(a: Any) -> str:
    return type(a).__name__


def _f32(a: Any, op: str, name: str) -> Any:
    """``a`` as a C-contiguous float32 cupy array; TypeError (the CPU's wording) otherwise."""
    if not isinstance(a, cupy.ndarray):
        raise TypeError(f"{op}: {name} must be a cupy.ndarray of float32, got {_type_name(a)}")
    if a.dtype != _F32:
        raise TypeError(f"{op}: {name} has dtype {a.dtype} but fastcnn computes in float32 only; "
                        f"convert it with {name}.astype(cupy.float32)")
    return cupy.ascontiguousarray(a)


def _f32_opt(a: Any, op: str, name: str) -> Any:
    return None if a is None else _f32(a, op, name)


def _device(op: str, *arrays: Any) -> Any:
    """The one device of ``arrays`` (a ``cupy.cuda.Device`` context); ValueError if several."""
    dev = None
    for a in arrays:
        if a is None:
            continue
        d = a.device.id
        if dev is None:
            dev = d
        elif d != dev:
            raise ValueError(f"{op}: the arrays are on different GPUs ({dev} and {d}); move them "
                             "to one device first")
    return cupy.cuda.Device(dev if dev is not None else cupy.cuda.runtime.getDevice())


def _ptr(a: Any) -> int:
    return 0 if a is None else int(a.data.ptr)


def _shape(a: Any) -> tuple[int, ...] | None:
    return None if a is None else tuple(a.shape)


def _stream() -> int:
    return int(cupy.cuda.get_current_stream().ptr)


def _empty(shape: Any, dtype: Any = _F32) -> Any:
    return cupy.empty(tuple(shape), dtype=dtype)


def _workspace(n: int, dtype: Any = _F32) -> tuple[Any, int]:
    """A workspace of n elements (None when n == 0) and n."""
    n = int(n)
    return (cupy.empty(n, dtype=dtype) if n > 0 else None), n


def _same_shape(a: Any, b: Any, op: str, an: str, bn: str) -> None:
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(f"{op}: {an} has shape {tuple(a.shape)} but {bn} has shape "
                         f"{tuple(b.shape)}: expected the same shape")


# ------------------------------------------------------------------------------------------------
# conv2d


def conv2d(x: Any, w: Any, b: Any, stride_h: int, stride_w: int, pad_top: int, pad_left: int,
           pad_bottom: int, pad_right: int, dil_h: int, dil_w: int, groups: int,
           relu: bool = False) -> Any:
    """y (N, K, P, Q) = conv(x, w) + b, ReLU fused when ``relu``."""
    op = "conv2d"
    x, w, b = _f32(x, op, "x"), _f32(w, op, "w"), _f32_opt(b, op, "b")
    geo = (stride_h, stride_w, pad_top, pad_left, pad_bottom, pad_right, dil_h, dil_w, groups)
    with _device(op, x, w, b):
        plan = _cuda.conv2d_plan(x.shape, w.shape, _shape(b), *geo)
        y = _empty(plan["y_shape"])
        ws, nws = _workspace(plan["forward_workspace"])
        _cuda.conv2d_forward(_ptr(x), x.shape, _ptr(w), w.shape, _ptr(b), _shape(b), _ptr(y),
                             _ptr(ws), nws, *geo, bool(relu), _stream())
    return y


def conv2d_backward(dy: Any, x: Any, w: Any, stride_h: int, stride_w: int, pad_top: int,
                    pad_left: int, pad_bottom: int, pad_right: int, dil_h: int, dil_w: int,
                    groups: int, compute_dx: bool = True, compute_dw: bool = True,
                    bias: bool = True, relu_y: Any = None, pool_indices: Any = None,
                    pool_kh: int = 1, pool_kw: int = 1, pool_sh: int = 1, pool_sw: int = 1,
                    pool_ph: int = 0, pool_pw: int = 0,
                    pool_ceil_mode: bool = False) -> tuple[Any, Any, Any]:
    """``(dx, dw, db)`` of :func:`conv2d`; an entry is None when not asked for. With
    ``pool_indices`` ``dy`` is the gradient of a max pooling of the output and is first routed
    back through it; with ``relu_y`` (the forward's ReLU output) it then goes through the ReLU's
    backward (separate passes here; the CPU kernels fuse them)."""
    op = "conv2d_backward"
    dy, x, w = _f32(dy, op, "dy"), _f32(x, op, "x"), _f32(w, op, "w")
    if pool_indices is not None:
        geo = (stride_h, stride_w, pad_top, pad_left, pad_bottom, pad_right, dil_h, dil_w, groups)
        with _device(op, dy, x, w):
            out = _cuda.conv2d_plan(x.shape, w.shape, None, *geo, None)["y_shape"]
        dy = max_pool2d_backward(dy, cupy.empty(tuple(out), _F32), pool_kh, pool_kw, pool_sh,
                                 pool_sw, pool_ph, pool_pw, 1, 1, pool_ceil_mode, pool_indices)
    if relu_y is not None:
        dy = relu_backward(dy, relu_y)
    geo = (stride_h, stride_w, pad_top, pad_left, pad_bottom, pad_right, dil_h, dil_w, groups)
    with _device(op, dy, x, w):
        plan = _cuda.conv2d_plan(x.shape, w.shape, None, *geo, dy.shape)
        dx = _empty(x.shape) if compute_dx else None
        dw = _empty(w.shape) if compute_dw else None
        db = _empty((w.shape[0],)) if bias else None
        ws, nws = _workspace(max(plan["backward_data_workspace"] if compute_dx else 0,
                                 plan["backward_weights_workspace"] if compute_dw else 0))
        _cuda.conv2d_backward(_ptr(dy), dy.shape, _ptr(x), x.shape, _ptr(w), w.shape, _ptr(dx),
                              _ptr(dw), _ptr(db), _ptr(ws), nws, *geo, _stream())
    return dx, dw, db


# ------------------------------------------------------------------------------------------------
# relu


def _out(out: Any, shape: tuple[int, ...], op: str, **inputs: Any) -> Any:
    """An ``out=`` destination (the CPU's rules): a C-contiguous float32 cupy array of
    ``shape``, used as it is; it may be one of ``inputs`` (in place) but not overlap one
    partially."""
    if not isinstance(out, cupy.ndarray):
        raise TypeError(f"{op}: out must be a cupy.ndarray of float32, got {_type_name(out)}")
    if out.dtype != _F32:
        raise TypeError(f"{op}: out has dtype {out.dtype}; expected float32")
    if tuple(out.shape) != tuple(shape):
        raise ValueError(f"{op}: out has shape {tuple(out.shape)} but the result has shape "
                         f"{tuple(shape)}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{op}: out must be C-contiguous (it is written in place), got strides "
                         f"{out.strides}")
    lo, hi = _ptr(out), _ptr(out) + out.nbytes
    for name, a in inputs.items():
        alo, ahi = _ptr(a), _ptr(a) + a.nbytes
        if not (alo == lo and ahi == hi) and alo < hi and lo < ahi and lo != hi:
            raise ValueError(f"{op}: out overlaps {name} without being the same array; pass "
                             f"{name} itself (in place) or a separate array")
    return out


def relu(x: Any, out: Any = None) -> Any:
    """``max(x, 0)``, NaN and -0.0 passing through (the CPU kernels' bits)."""
    x = _f32(x, "relu", "x")
    y = None if out is None else _out(out, x.shape, "relu", x=x)
    with _device("relu", x, y):
        y = _empty(x.shape) if y is None else y
        _cuda.relu(_ptr(x), _ptr(y), x.size, _stream())
    return y


def relu_backward(dy: Any, y: Any, out: Any = None) -> Any:
    """``dy`` where ``y > 0`` (a NaN y passes dy), else 0."""
    op = "relu_backward"
    dy, y = _f32(dy, op, "dy"), _f32(y, op, "y")
    _same_shape(dy, y, op, "dy", "y")
    dx = None if out is None else _out(out, dy.shape, op, dy=dy, y=y)
    with _device(op, dy, y, dx):
        dx = _empty(dy.shape) if dx is None else dx
        _cuda.relu_backward(_ptr(dy), _ptr(y), _ptr(dx), dy.size, _stream())
    return dx


# ------------------------------------------------------------------------------------------------
# max_pool2d


def max_pool2d(x: Any, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int, dh: int, dw: int,
               ceil_mode: bool, return_indices: bool) -> Any:
    """y (N, C, P, Q), or ``(y, indices)`` with int64 indices into each (H, W) plane."""
    op = "max_pool2d"
    x = _f32(x, op, "x")
    geo = (kh, kw, sh, sw, ph, pw, dh, dw, bool(ceil_mode))
    with _device(op, x):
        out = _cuda.max_pool2d_plan(x.shape, *geo)
        y = _empty(out)
        idx = _empty(out, _I64) if return_indices else None
        _cuda.max_pool2d_forward(_ptr(x), x.shape, _ptr(y), _ptr(idx), *geo, _stream())
    return (y, idx) if return_indices else y


def max_pool2d_backward(dy: Any, x: Any, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int,
                        dh: int, dw: int, ceil_mode: bool, indices: Any, out: Any = None) -> Any:
    """dx (N, C, H, W): dy routed to the argmax of each window (recomputed from x when
    ``indices`` is None), overlapping windows adding up in the CPU's order."""
    op = "max_pool2d_backward"
    dy, x = _f32(dy, op, "dy"), _f32(x, op, "x")
    geo = (kh, kw, sh, sw, ph, pw, dh, dw, bool(ceil_mode))
    if indices is not None:
        if not isinstance(indices, cupy.ndarray):
            raise TypeError(f"{op}: indices must be a cupy.ndarray of int64, got "
                            f"{_type_name(indices)}")
        if indices.dtype != _I64:
            raise TypeError(f"{op}: indices has dtype {indices.dtype}; expected int64 as returned "
                            "by max_pool2d(..., return_indices=True)")
    dx = None if out is None else _out(out, x.shape, op, dy=dy, x=x,
                                       **({} if indices is None else {"indices": indices}))
    with _device(op, dy, x, indices, dx):
        out = _cuda.max_pool2d_plan(x.shape, *geo, dy.shape)
        if indices is None:
            idx = _empty(out, _I64)
            scratch = _empty(out)
            _cuda.max_pool2d_forward(_ptr(x), x.shape, _ptr(scratch), _ptr(idx), *geo, _stream())
            check, ws, nws = False, None, 0
        else:
            idx = cupy.ascontiguousarray(indices)
            check = True
            ws, nws = _workspace(_cuda.POOL_CHECK_WORKSPACE_BYTES, np.uint8)
        dx = _empty(x.shape) if dx is None else dx
        _cuda.max_pool2d_backward(_ptr(dy), dy.shape, x.shape, _ptr(idx), idx.shape, check,
                                  _ptr(ws), nws, _ptr(dx), *geo, _stream())
    return dx


# ------------------------------------------------------------------------------------------------
# linear


def linear(x: Any, w: Any, b: Any, relu: bool = False) -> Any:
    """y (N, out) = x (N, in) @ w (out, in).T + b, ReLU fused when ``relu``."""
    op = "linear"
    x, w, b = _f32(x, op, "x"), _f32(w, op, "w"), _f32_opt(b, op, "b")
    with _device(op, x, w, b):
        plan = _cuda.linear_plan(x.shape, w.shape, _shape(b))
        y = _empty(plan["y_shape"])
        ws, nws = _workspace(plan["forward_workspace"])
        _cuda.linear_forward(_ptr(x), x.shape, _ptr(w), w.shape, _ptr(b), _shape(b), _ptr(y),
                             _ptr(ws), nws, bool(relu), _stream())
    return y


def linear_backward(dy: Any, x: Any, w: Any, compute_dx: bool = True, compute_dw: bool = True,
                    bias: bool = True) -> tuple[Any, Any, Any]:
    """``(dx (N, in), dw (out, in), db (out,))``; an entry is None when not asked for."""
    op = "linear_backward"
    dy, x, w = _f32(dy, op, "dy"), _f32(x, op, "x"), _f32(w, op, "w")
    with _device(op, dy, x, w):
        plan = _cuda.linear_plan(x.shape, w.shape, None, dy.shape)
        dx = _empty(x.shape) if compute_dx else None
        dw = _empty(w.shape) if compute_dw else None
        db = _empty((w.shape[0],)) if bias else None
        ws, nws = _workspace(plan["backward_weights_workspace"] if compute_dw else 0)
        _cuda.linear_backward(_ptr(dy), dy.shape, _ptr(x), x.shape, _ptr(w), w.shape, _ptr(dx),
                              _ptr(dw), _ptr(db), _ptr(ws), nws, _stream())
    return dx, dw, db


# ------------------------------------------------------------------------------------------------
# softmax / cross-entropy


def softmax(x: Any, log: bool = False) -> Any:
    """softmax (or log_softmax) over the last axis."""
    op = "log_softmax" if log else "softmax"
    x = _f32(x, op, "x")
    with _device(op, x):
        y = _empty(x.shape)
        _cuda.softmax(_ptr(x), x.shape, _ptr(y), bool(log), _stream())
    return y


def cross_entropy(logits: Any, labels: Any) -> tuple[float, Any]:
    """``(loss, dlogits)``: mean softmax cross-entropy over the rows and its gradient
    ``(softmax * sum(target) - target) / N``. labels: integer class ids (N,) (any integer dtype)
    or float32 probabilities (N, classes). Synchronises the stream (the loss is a float)."""
    op = "cross_entropy"
    logits = _f32(logits, op, "logits")
    if not isinstance(labels, cupy.ndarray):
        raise TypeError(f"{op}: labels must be a cupy.ndarray (int class ids of shape (N,) or "
                        f"float32 probabilities of shape (N, classes)), got {_type_name(labels)}")
    integer = labels.dtype.kind in "iu"
    lab = tgt = None
    with _device(op, logits, labels):
        if integer:
            nws = _cuda.cross_entropy_plan(logits.shape, labels.shape, "int")
            lab = cupy.ascontiguousarray(labels.astype(_I64, copy=False))
        else:
            tgt = _f32(labels, op, "labels")
            nws = _cuda.cross_entropy_plan(logits.shape, labels.shape, "float")
        dlogits = _empty(logits.shape)
        if logits.shape[0] == 0:
            return 0.0, dlogits
        ws, nws = _workspace(nws, np.uint8)
        loss = _cuda.cross_entropy(_ptr(logits), logits.shape, _ptr(lab), _ptr(tgt),
                                   labels.shape, _ptr(dlogits), _ptr(ws), nws, _stream())
    return float(loss), dlogits


# ------------------------------------------------------------------------------------------------
# optimizer updates (in place)


def _inplace(a: Any, op: str, name: str, like: Any = None) -> Any:
    if not isinstance(a, cupy.ndarray):
        raise TypeError(f"{op}: {name} must be a cupy.ndarray of float32, got {_type_name(a)}")
    if a.dtype != _F32:
        raise TypeError(f"{op}: {name} has dtype {a.dtype}; expected float32")
    if not a.flags.c_contiguous:
        raise ValueError(f"{op}: {name} must be C-contiguous (it is updated in place)")
    if like is not None and a.size != like.size:
        raise ValueError(f"{op}: {name} has {a.size} elements but p has {like.size}")
    return a


def sgd_update(p: Any, g: Any, buf: Any, lr: float, momentum: float, nesterov: bool,
               weight_decay: float, first: bool) -> None:
    """One SGD step in place (:func:`fastcnn.ops.sgd_update`'s formula, the CPU's bits):
    ``g += wd*p``; ``buf = g`` (``first``) or ``momentum*buf + g``; ``g = g + momentum*buf``
    (nesterov) or ``buf``; ``p -= lr*g``. ``buf`` is needed when ``momentum != 0``."""
    op = "sgd_update"
    p = _inplace(p, op, "p")
    g = _f32(g, op, "g")
    if g.size != p.size:
        raise ValueError(f"{op}: g has {g.size} elements but p has {p.size}")
    if momentum:
        if buf is None:
            raise ValueError(f"{op}: momentum={momentum} needs a momentum buffer")
        buf = _inplace(buf, op, "buf", p)
    with _device(op, p, g, buf if momentum else None):
        _cuda.sgd_update(_ptr(p), _ptr(g), _ptr(buf) if momentum else 0, p.size, float(lr),
                         float(momentum), float(weight_decay), bool(nesterov), bool(first),
                         _stream())


def adam_update(p: Any, g: Any, m: Any, v: Any, step_size: float, beta1: float,
                one_minus_beta1: float, beta2: float, one_minus_beta2: float, sqrt_bc2: float,
                eps: float, l2: float, decay: float, has_l2: bool, has_decay: bool) -> None:
    """One Adam (AdamW with ``has_decay``) step in place from the scalars
    :func:`fastcnn.ops.adam_update` prepares (the CPU module's signature, the CPU's bits)."""
    op = "adam_update"
    p = _inplace(p, op, "p")
    m = _inplace(m, op, "m", p)
    v = _inplace(v, op, "v", p)
    g = _f32(g, op, "g")
    if g.size != p.size:
        raise ValueError(f"{op}: g has {g.size} elements but p has {p.size}")
    with _device(op, p, g, m, v):
        _cuda.adam_update(_ptr(p), _ptr(g), _ptr(m), _ptr(v), p.size, float(step_size),
                          float(beta1), float(one_minus_beta1), float(beta2),
                          float(one_minus_beta2), float(sqrt_bc2), float(eps), float(l2),
                          float(decay), bool(has_l2), bool(has_decay), _stream())


# ------------------------------------------------------------------------------------------------
# activation family (issue 17): sigmoid, tanh, leaky_relu, gelu, silu and their backward, on
# _cuda.activation_forward / activation_backward (options checked there, the CPU's messages)


def _act_forward(op: str, x: Any, out: Any, **options: Any) -> Any:
    x = _f32(x, op, "x")
    y = None if out is None else _out(out, x.shape, op, x=x)
    with _device(op, x, y):
        y = _empty(x.shape) if y is None else y
        _cuda.activation_forward(op, _ptr(x), _ptr(y), x.size, stream=_stream(), **options)
    return y


def _act_backward(op: str, dy: Any, t: Any, tname: str, out: Any, **options: Any) -> Any:
    name = op + "_backward"
    dy, t = _f32(dy, name, "dy"), _f32(t, name, tname)
    _same_shape(dy, t, name, "dy", tname)
    dx = None if out is None else _out(out, dy.shape, name, dy=dy, **{tname: t})
    with _device(name, dy, t, dx):
        dx = _empty(dy.shape) if dx is None else dx
        _cuda.activation_backward(op, _ptr(dy), _ptr(t), _ptr(dx), dy.size, stream=_stream(),
                                  **options)
    return dx


def sigmoid(x: Any, out: Any = None) -> Any:
    """``1 / (1 + exp(-x))`` (the CPU kernels' algorithm)."""
    return _act_forward("sigmoid", x, out)


def sigmoid_backward(dy: Any, y: Any, out: Any = None) -> Any:
    """``dy * (1 - y) * y`` from the forward output."""
    return _act_backward("sigmoid", dy, y, "y", out)


def tanh(x: Any, out: Any = None) -> Any:
    """``tanh(x)``."""
    return _act_forward("tanh", x, out)


def tanh_backward(dy: Any, y: Any, out: Any = None) -> Any:
    """``dy * (1 - y * y)`` from the forward output."""
    return _act_backward("tanh", dy, y, "y", out)


def silu(x: Any, out: Any = None) -> Any:
    """``x * sigmoid(x)``."""
    return _act_forward("silu", x, out)


def silu_backward(dy: Any, x: Any, out: Any = None) -> Any:
    """``dy * s * (1 + x * (1 - s))`` from the forward input."""
    return _act_backward("silu", dy, x, "x", out)


def leaky_relu(x: Any, negative_slope: Any = 0.01, out: Any = None) -> Any:
    """``x if x > 0 else x * negative_slope``."""
    return _act_forward("leaky_relu", x, out, negative_slope=negative_slope)


def leaky_relu_backward(dy: Any, x: Any, negative_slope: Any = 0.01, out: Any = None) -> Any:
    """``dy if x > 0 else dy * negative_slope`` from the forward input."""
    return _act_backward("leaky_relu", dy, x, "x", out, negative_slope=negative_slope)


def gelu(x: Any, approximate: Any = "none", out: Any = None) -> Any:
    """GELU, the exact (erf) or tanh form."""
    return _act_forward("gelu", x, out, approximate=approximate)


def gelu_backward(dy: Any, x: Any, approximate: Any = "none", out: Any = None) -> Any:
    """``dy * gelu'(x)`` from the forward input."""
    return _act_backward("gelu", dy, x, "x", out, approximate=approximate)
