"""CUDA adapter: max, average and global pooling with their backward (maxpool2d.cu,
avgpool2d.cu, global_pool2d.cu)."""

from __future__ import annotations

from typing import Any

import cupy
import numpy as np

from ._common import (
    _I64,
    _cuda,
    _device,
    _empty,
    _f32,
    _f32_like,
    _out,
    _ptr,
    _stream,
    _type_name,
    _workspace,
)


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
