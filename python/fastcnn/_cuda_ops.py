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
    "avg_pool2d",
    "avg_pool2d_backward",
    "batch_norm",
    "batch_norm_backward",
    "conv2d",
    "conv2d_backward",
    "cross_entropy",
    "global_avg_pool2d",
    "global_avg_pool2d_backward",
    "global_max_pool2d",
    "global_max_pool2d_backward",
    "linear",
    "linear_backward",
    "max_pool2d",
    "max_pool2d_backward",
    "relu",
    "relu_backward",
    "sgd_update",
    "softmax",
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
# normalization family: batch_norm (csrc/cuda/batch_norm.cu)


def batch_norm(x: Any, weight: Any, bias: Any, running_mean: Any, running_var: Any,
               training: bool, momentum: float, eps: float) -> tuple[Any, Any, Any]:
    """``(y, mean, invstd)``: batch normalisation per channel (the CPU module's contract); in
    training ``running_mean`` / ``running_var`` (when given) are updated in place, so they must
    then be C-contiguous float32 cupy arrays."""
    op = "batch_norm"
    x = _f32(x, op, "x")
    weight, bias = _f32_opt(weight, op, "weight"), _f32_opt(bias, op, "bias")
    if training:
        rm = None if running_mean is None else _inplace(running_mean, op, "running_mean")
        rv = None if running_var is None else _inplace(running_var, op, "running_var")
        if rm is not None and rv is not None and _ptr(rm) == _ptr(rv):
            raise ValueError(f"{op}: running_mean and running_var are the same array; pass two "
                             "arrays")
    else:
        rm, rv = _f32_opt(running_mean, op, "running_mean"), _f32_opt(running_var, op,
                                                                      "running_var")
    nws = _cuda.batch_norm_plan(x.shape, _shape(weight), _shape(bias), _shape(rm), _shape(rv),
                                bool(training), float(momentum), float(eps))
    with _device(op, x, weight, bias, rm, rv):
        c = x.shape[1]
        y, mean, invstd = _empty(x.shape), _empty((c,)), _empty((c,))
        ws, nws = _workspace(nws, np.uint8)
        _cuda.batch_norm_forward(_ptr(x), x.shape, _ptr(weight), _shape(weight), _ptr(bias),
                                 _shape(bias), _ptr(rm), _shape(rm), _ptr(rv), _shape(rv),
                                 _ptr(y), _ptr(mean), _ptr(invstd), _ptr(ws), nws,
                                 bool(training), float(momentum), float(eps), _stream())
    return y, mean, invstd


def batch_norm_backward(dy: Any, x: Any, weight: Any, mean: Any, invstd: Any, training: bool,
                        compute_dx: bool, compute_dw: bool) -> tuple[Any, Any, Any]:
    """``(dx, dweight, dbias)`` of :func:`batch_norm` (None where not computed)."""
    op = "batch_norm_backward"
    dy, x = _f32(dy, op, "dy"), _f32(x, op, "x")
    weight = _f32_opt(weight, op, "weight")
    mean, invstd = _f32(mean, op, "mean"), _f32(invstd, op, "invstd")
    nws = _cuda.batch_norm_backward_plan(dy.shape, x.shape, _shape(weight), mean.shape,
                                         invstd.shape, bool(training))
    with _device(op, dy, x, weight, mean, invstd):
        c = x.shape[1]
        dx = _empty(x.shape) if compute_dx else None
        dw = _empty((c,)) if compute_dw else None
        db = _empty((c,)) if compute_dw else None
        ws, nws = _workspace(nws, np.uint8)
        _cuda.batch_norm_backward(_ptr(dy), dy.shape, _ptr(x), x.shape, _ptr(weight),
                                  _shape(weight), _ptr(mean), mean.shape, _ptr(invstd),
                                  invstd.shape, _ptr(dx), _ptr(dw), _ptr(db), _ptr(ws), nws,
                                  bool(training), _stream())
    return dx, dw, db
# pooling family (issue 17): avg_pool2d, global_avg_pool2d, global_max_pool2d and backwards


def _f32_like(a: Any, op: str, name: str) -> Any:
    """``a`` checked as a float32 cupy array whose values are not read (only its shape and
    device): never copied."""
    if not isinstance(a, cupy.ndarray):
        raise TypeError(f"{op}: {name} must be a cupy.ndarray of float32, got {_type_name(a)}")
    if a.dtype != _F32:
        raise TypeError(f"{op}: {name} has dtype {a.dtype} but fastcnn computes in float32 only; "
                        f"convert it with {name}.astype(cupy.float32)")
    return a


def avg_pool2d(x: Any, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int, ceil_mode: bool,
               count_include_pad: bool, divisor_override: int | None) -> Any:
    """y (N, C, P, Q): PyTorch's average pooling (the CPU module's bits)."""
    op = "avg_pool2d"
    x = _f32(x, op, "x")
    geo = (kh, kw, sh, sw, ph, pw, bool(ceil_mode), bool(count_include_pad), divisor_override)
    with _device(op, x):
        y = _empty(_cuda.avg_pool2d_plan(x.shape, *geo))
        _cuda.avg_pool2d_forward(_ptr(x), x.shape, _ptr(y), *geo, _stream())
    return y


def avg_pool2d_backward(dy: Any, x: Any, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int,
                        ceil_mode: bool, count_include_pad: bool, divisor_override: int | None,
                        out: Any = None) -> Any:
    """dx (N, C, H, W): each element the sum of dy / divisor over its windows (a gather)."""
    op = "avg_pool2d_backward"
    dy, x = _f32(dy, op, "dy"), _f32_like(x, op, "x")
    geo = (kh, kw, sh, sw, ph, pw, bool(ceil_mode), bool(count_include_pad), divisor_override)
    dx = None if out is None else _out(out, x.shape, op, dy=dy, x=x)
    with _device(op, dy, x, dx):
        _cuda.avg_pool2d_plan(x.shape, *geo, dy.shape)
        dx = _empty(x.shape) if dx is None else dx
        _cuda.avg_pool2d_backward(_ptr(dy), dy.shape, x.shape, _ptr(dx), *geo, _stream())
    return dx


def global_avg_pool2d(x: Any) -> Any:
    """y (N, C): the mean of each plane (the CPU module's summation order and bits)."""
    op = "global_avg_pool2d"
    x = _f32(x, op, "x")
    with _device(op, x):
        y = _empty(_cuda.global_pool2d_plan(x.shape, op))
        _cuda.global_avg_pool2d_forward(_ptr(x), x.shape, _ptr(y), _stream())
    return y


def global_avg_pool2d_backward(dy: Any, x: Any, out: Any = None) -> Any:
    """dx (N, C, H, W) = dy / (H*W) over each plane."""
    op = "global_avg_pool2d_backward"
    dy, x = _f32(dy, op, "dy"), _f32_like(x, op, "x")
    dx = None if out is None else _out(out, x.shape, op, dy=dy, x=x)
    with _device(op, dy, x, dx):
        _cuda.global_pool2d_plan(x.shape, op, dy.shape)
        dx = _empty(x.shape) if dx is None else dx
        _cuda.global_avg_pool2d_backward(_ptr(dy), dy.shape, x.shape, _ptr(dx), _stream())
    return dx


def global_max_pool2d(x: Any, return_indices: bool) -> Any:
    """y (N, C), or ``(y, indices)`` with int64 indices into each H*W plane."""
    op = "global_max_pool2d"
    x = _f32(x, op, "x")
    with _device(op, x):
        out = _cuda.global_pool2d_plan(x.shape, op)
        y = _empty(out)
        idx = _empty(out, _I64) if return_indices else None
        _cuda.global_max_pool2d_forward(_ptr(x), x.shape, _ptr(y), _ptr(idx), _stream())
    return (y, idx) if return_indices else y


def global_max_pool2d_backward(dy: Any, x: Any, indices: Any, out: Any = None) -> Any:
    """dx (N, C, H, W): dy at each plane's maximum (recomputed from x when ``indices`` is None,
    else validated on the device: one 8-byte copy and a sync), 0 elsewhere."""
    op = "global_max_pool2d_backward"
    dy = _f32(dy, op, "dy")
    x = _f32(x, op, "x") if indices is None else _f32_like(x, op, "x")
    if indices is not None:
        if not isinstance(indices, cupy.ndarray):
            raise TypeError(f"{op}: indices must be a cupy.ndarray of int64, got "
                            f"{_type_name(indices)}")
        if indices.dtype != _I64:
            raise TypeError(f"{op}: indices has dtype {indices.dtype}; expected int64 as returned "
                            "by global_max_pool2d(..., return_indices=True)")
    dx = None if out is None else _out(out, x.shape, op, dy=dy, x=x,
                                       **({} if indices is None else {"indices": indices}))
    with _device(op, dy, x, indices, dx):
        out_shape = _cuda.global_pool2d_plan(x.shape, op, dy.shape)
        if indices is None:
            idx = _empty(out_shape, _I64)
            _cuda.global_max_pool2d_forward(_ptr(x), x.shape, _ptr(_empty(out_shape)), _ptr(idx),
                                            _stream())
            check, ws, nws = False, None, 0
        else:
            idx = cupy.ascontiguousarray(indices)
            check = True
            ws, nws = _workspace(_cuda.POOL_CHECK_WORKSPACE_BYTES, np.uint8)
        dx = _empty(x.shape) if dx is None else dx
        _cuda.global_max_pool2d_backward(_ptr(dy), dy.shape, x.shape, _ptr(idx), idx.shape, check,
                                         _ptr(ws), nws, _ptr(dx), _stream())
    return dx
