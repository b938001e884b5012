"""CUDA adapter: batch normalisation (batch_norm.cu)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._common import (
    _F32,
    _PLANS,
    _cuda,
    _cupy_empty,
    _current_stream,
    _device,
    _f32,
    _inplace,
    _plan,
)
from ._dest import _dest, _dx_dest


def _p(a: Any) -> int:
    return 0 if a is None else a.data.ptr


def _up64(n: int) -> int:
    return -(-n // 64) * 64  # floats: 256-byte boundaries


def _batch_norm_entry(*args: Any) -> tuple[Any, ...]:
    """A ``_cuda.BatchNormPlan`` of ``args`` (batch_norm_plan's; validated once, in C++) as
    ``(bound forward, workspace bytes, layout)``: the one allocation a call makes (floats) is
    ``[y (ny) | mean (C) | invstd (C) | workspace]``, each part from a 256-byte boundary
    (y's part absent when the caller gives ``out``); layout = ``(ny, C, mean offset, invstd
    offset, workspace offset, total, total without y)``. Cached by :func:`._common._plan`."""
    p = _cuda.BatchNormPlan(*args)
    x_shape = args[0]
    ny = int(np.prod(x_shape, dtype=np.int64))
    c = int(x_shape[1])
    nws = int(p.workspace_bytes)
    o_mean = _up64(ny)
    o_inv = o_mean + _up64(c)
    o_ws = o_inv + _up64(c)
    total = o_ws + -(-nws // 4)
    return p.forward, nws, (ny, c, o_mean, o_inv, o_ws, total, total - o_mean)


def _batch_norm_backward_entry(*args: Any) -> tuple[Any, ...]:
    """A ``_cuda.BatchNormBackwardPlan`` (batch_norm_backward_plan's arguments and relu_y's
    shape) as ``(bound backward, workspace bytes, C, db's offset, the workspace's offset, total
    floats)``: dweight, dbias and the workspace share one allocation (floats, each part from a
    256-byte boundary)."""
    p = _cuda.BatchNormBackwardPlan(*args)
    c = int(args[1][1])
    nws = int(p.workspace_bytes)
    o_db = _up64(c)
    o_ws = o_db + _up64(c)
    return p.backward, nws, c, o_db, o_ws, o_ws + -(-nws // 4)


def batch_norm(x: Any, weight: Any, bias: Any, running_mean: Any, running_var: Any,
               training: bool, momentum: float, eps: float,
               relu: bool = False, out: Any = None, batch_mean: Any = None,
               batch_var: Any = None) -> tuple[Any, Any, Any]:
    """``(y, mean, invstd)``: batch normalisation per channel (then ReLU with ``relu``: the
    CPU module's contract; y written into ``out`` when given); in
    training ``running_mean`` / ``running_var`` (when given) are updated in place, so they must
    then be C-contiguous float32 cupy arrays. ``batch_mean`` / ``batch_var`` (given batch
    statistics, :func:`fastcnn.ops.conv2d_stats`'s) are CPU only: NotImplementedError."""
    op = "batch_norm"
    if batch_mean is not None or batch_var is not None:
        raise NotImplementedError(f"{op}: batch_stats (given batch statistics) are CPU only; on "
                                  "CUDA call batch_norm(..., training=True) without them")
    x = _f32(x, op, "x")
    weight = None if weight is None else _f32(weight, op, "weight")
    bias = None if bias is None else _f32(bias, op, "bias")
    if training:
        rm = None if running_mean is None else _inplace(running_mean, op, "running_mean")
        rv = None if running_var is None else _inplace(running_var, op, "running_var")
        if rm is not None and rv is not None and rm.data.ptr == rv.data.ptr:
            raise ValueError(f"{op}: running_mean and running_var are the same array; pass two "
                             "arrays")
    else:
        rm = None if running_mean is None else _f32(running_mean, op, "running_mean")
        rv = None if running_var is None else _f32(running_var, op, "running_var")
    shapes = (x.shape, None if weight is None else weight.shape,
              None if bias is None else bias.shape, None if rm is None else rm.shape,
              None if rv is None else rv.shape)
    training, momentum, eps = bool(training), float(momentum), float(eps)
    key = (_batch_norm_entry, *shapes, training, momentum, eps)
    fwd, nws, (ny, c, o_mean, o_inv, o_ws, total, total_no_y) = _PLANS.get(key) or _plan(*key)
    with _device(op, x, weight, bias, rm, rv):
        # one allocation: y (unless out), mean, invstd and the workspace (small: it lives as
        # long as the outputs do)
        if out is None:
            buf = _cupy_empty(total, _F32)
            y, start = buf[:ny].reshape(x.shape), 0
            py = base = buf.data.ptr
        else:
            y = _dest(out, tuple(x.shape), op, "out", x=x)
            py = y.data.ptr
            buf, start = _cupy_empty(total_no_y, _F32), o_mean  # from the layout's mean part
            base = buf.data.ptr - 4 * start  # the layout's offset 0
        mean = buf[o_mean - start:o_mean - start + c]
        invstd = buf[o_inv - start:o_inv - start + c]
        fwd(x.data.ptr, _p(weight), _p(bias), _p(rm), _p(rv), py, base + 4 * o_mean,
            base + 4 * o_inv, base + 4 * o_ws, nws, bool(relu), _current_stream().ptr)
    return y, mean, invstd


def batch_norm_backward(dy: Any, x: Any, weight: Any, mean: Any, invstd: Any, training: bool,
                        compute_dx: bool, compute_dw: bool,
                        relu_y: Any = None, dx_out: Any = None) -> tuple[Any, Any, Any]:
    """``(dx, dweight, dbias)`` of :func:`batch_norm` (None where not computed); ``relu_y``:
    the output of ``batch_norm(..., relu=True)``, ``dy`` then that ReLU output's gradient; dx
    goes into ``dx_out`` when given."""
    op = "batch_norm_backward"
    if dx_out is not None and not compute_dx:
        raise ValueError(f"{op}: dx_out is given but compute_dx=False")
    dy, x = _f32(dy, op, "dy"), _f32(x, op, "x")
    relu_y = None if relu_y is None else _f32(relu_y, op, "relu_y")
    weight = None if weight is None else _f32(weight, op, "weight")
    mean, invstd = _f32(mean, op, "mean"), _f32(invstd, op, "invstd")
    ws_shape = None if weight is None else weight.shape
    training = bool(training)
    key = (_batch_norm_backward_entry, dy.shape, x.shape, ws_shape, mean.shape, invstd.shape,
           training, None if relu_y is None else relu_y.shape)
    bwd, nws, c, o_db, o_ws, total = _PLANS.get(key) or _plan(*key)
    with _device(op, dy, x, weight, mean, invstd, relu_y):
        dx = _dx_dest(dx_out, compute_dx, x.shape, op, dy=dy, x=x, relu_y=relu_y)
        buf = _cupy_empty(total, _F32)  # [dweight | dbias | workspace]: alive until launched
        base = buf.data.ptr
        if compute_dw:
            dw, db, pdw, pdb = buf[:c], buf[o_db:o_db + c], base, base + 4 * o_db
        else:
            dw = db = None
            pdw = pdb = 0
        bwd(dy.data.ptr, x.data.ptr, _p(weight), mean.data.ptr, invstd.data.ptr, _p(relu_y),
            _p(dx), pdw, pdb, base + 4 * o_ws, nws, _current_stream().ptr)
    return dx, dw, db
