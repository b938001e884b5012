"""CUDA adapter: batch normalisation (batch_norm.cu)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._common import (
    _cuda,
    _device,
    _empty,
    _f32,
    _f32_opt,
    _inplace,
    _ptr,
    _shape,
    _stream,
    _workspace,
)
from ._dest import _dest


def batch_norm(x: Any, weight: Any, bias: Any, running_mean: Any, running_var: Any,
               training: bool, momentum: float, eps: float,
               relu: bool = False, out: Any = None) -> tuple[Any, Any, Any]:
    """``(y, mean, invstd)``: batch normalisation per channel (then ReLU with ``relu``: the
    CPU module's contract; y written into ``out`` when given); in
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
        y = _dest(out, tuple(x.shape), op, "out", x=x)
        mean, invstd = _empty((c,)), _empty((c,))
        ws, nws = _workspace(nws, np.uint8)
        _cuda.batch_norm_forward(_ptr(x), x.shape, _ptr(weight), _shape(weight), _ptr(bias),
                                 _shape(bias), _ptr(rm), _shape(rm), _ptr(rv), _shape(rv),
                                 _ptr(y), _ptr(mean), _ptr(invstd), _ptr(ws), nws,
                                 bool(training), float(momentum), float(eps), bool(relu),
                                 _stream())
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
    relu_y = _f32_opt(relu_y, op, "relu_y")
    weight = _f32_opt(weight, op, "weight")
    mean, invstd = _f32(mean, op, "mean"), _f32(invstd, op, "invstd")
    nws = _cuda.batch_norm_backward_plan(dy.shape, x.shape, _shape(weight), mean.shape,
                                         invstd.shape, bool(training))
    with _device(op, dy, x, weight, mean, invstd, relu_y):
        c = x.shape[1]
        dx = _dest(dx_out, tuple(x.shape), op, "dx_out", dy=dy, x=x, relu_y=relu_y) \
            if compute_dx else None
        dw = _empty((c,)) if compute_dw else None
        db = _empty((c,)) if compute_dw else None
        ws, nws = _workspace(nws, np.uint8)
        _cuda.batch_norm_backward(_ptr(dy), dy.shape, _ptr(x), x.shape, _ptr(weight),
                                  _shape(weight), _ptr(mean), mean.shape, _ptr(invstd),
                                  invstd.shape, _ptr(relu_y), _shape(relu_y), _ptr(dx), _ptr(dw),
                                  _ptr(db), _ptr(ws), nws, bool(training), _stream())
    return dx, dw, db
