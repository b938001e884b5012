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

_U8 = np.dtype(np.uint8)


def _p(a: Any) -> int:
    return 0 if a is None else a.data.ptr


def _batch_norm_entry(*args: Any) -> tuple[Any, int]:
    """A ``_cuda.BatchNormPlan`` of ``args`` (batch_norm_plan's; validated once, in C++) as
    ``(bound forward, workspace bytes)``. Cached by :func:`._common._plan`."""
    p = _cuda.BatchNormPlan(*args)
    return p.forward, p.workspace_bytes


def _batch_norm_backward_entry(*args: Any) -> tuple[Any, int]:
    """A ``_cuda.BatchNormBackwardPlan`` (batch_norm_backward_plan's arguments and relu_y's
    shape) as ``(bound backward, workspace bytes)``."""
    p = _cuda.BatchNormBackwardPlan(*args)
    return p.backward, p.workspace_bytes


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
    fwd, nws = _PLANS.get(key) or _plan(*key)
    with _device(op, x, weight, bias, rm, rv):
        c = x.shape[1]
        y = (_cupy_empty(x.shape, _F32) if out is None
             else _dest(out, tuple(x.shape), op, "out", x=x))
        mean, invstd = _cupy_empty(c, _F32), _cupy_empty(c, _F32)
        ws = _cupy_empty(nws, _U8) if nws else None  # alive until the launches returned
        fwd(x.data.ptr, _p(weight), _p(bias), _p(rm), _p(rv), y.data.ptr, mean.data.ptr,
            invstd.data.ptr, _p(ws), nws, bool(relu), _current_stream().ptr)
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
    bwd, nws = _PLANS.get(key) or _plan(*key)
    with _device(op, dy, x, weight, mean, invstd, relu_y):
        c = x.shape[1]
        dx = _dx_dest(dx_out, compute_dx, x.shape, op, dy=dy, x=x, relu_y=relu_y)
        dw = _cupy_empty(c, _F32) if compute_dw else None
        db = _cupy_empty(c, _F32) if compute_dw else None
        ws = _cupy_empty(nws, _U8) if nws else None  # alive until the launches returned
        bwd(dy.data.ptr, x.data.ptr, _p(weight), mean.data.ptr, invstd.data.ptr, _p(relu_y),
            _p(dx), _p(dw), _p(db), _p(ws), nws, _current_stream().ptr)
    return dx, dw, db
