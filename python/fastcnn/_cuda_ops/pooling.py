"""CUDA adapter: max, average and global pooling with their backward (maxpool2d.cu,
avgpool2d.cu, global_pool2d.cu).

Indices: the index arrays ``max_pool2d`` / ``global_max_pool2d`` return are remembered (weakly,
by identity) as fastcnn's own; their backward takes them on the trusted path (the gather kernel
alone: no check kernel, no copy, no synchronisation), as the layers' training steps do. Any
other index array (a user's, a copy, a view) is validated on the device first (one small copy
and a synchronisation). Writing into a returned index array in place is not supported.
"""

from __future__ import annotations

import weakref
from typing import Any

import cupy
import numpy as np

from ._common import (
    _F32,
    _I64,
    _ND,
    _PLANS,
    _cuda,
    _cupy_empty,
    _current_stream,
    _device,
    _empty,
    _f32,
    _f32_like,
    _out,
    _plan,
    _ptr,
    _stream,
    _type_name,
    _workspace,
)
from ._dest import _dest

_OWN: dict[int, Any] = {}  # id -> weakref of the index arrays the forwards returned


def _own(idx: Any) -> Any:
    """Remember ``idx`` as produced by a forward here (skipped where CuPy arrays take no weak
    reference: those indices are then checked like a user's)."""
    key = id(idx)
    try:
        _OWN[key] = weakref.ref(idx, lambda _r, key=key: _OWN.pop(key, None))
    except TypeError:
        pass
    return idx


def _is_own(idx: Any) -> bool:
    r = _OWN.get(id(idx))
    return r is not None and r() is idx


def _max_pool2d_entry(*args: Any) -> tuple[Any, ...]:
    """A ``_cuda.MaxPool2dPlan`` of ``args`` (x's shape, the geometry, and for the backward
    dy's and the indices' shapes; validated once, in C++) as the tuple a call reads: bound
    ``forward`` / ``backward`` and y's shape. Cached by :func:`._common._plan`."""
    p = _cuda.MaxPool2dPlan(*args)
    return p.forward, p.backward, p.y_shape


def _check_indices(indices: Any, op: str, forward: str) -> None:
    if indices.__class__ is _ND and indices.dtype is _I64:
        return
    if not isinstance(indices, cupy.ndarray):
        raise TypeError(f"{op}: indices must be a cupy.ndarray of int64, got "
                        f"{_type_name(indices)}")
    if indices.dtype != _I64:
        raise TypeError(f"{op}: indices has dtype {indices.dtype}; expected int64 as returned "
                        f"by {forward}(..., return_indices=True)")


def max_pool2d(x: Any, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int, dh: int, dw: int,
               ceil_mode: bool, return_indices: bool, out: Any = None) -> Any:
    """y (N, C, P, Q), or ``(y, indices)`` with int64 indices into each (H, W) plane; y
    written into ``out`` when given."""
    op = "max_pool2d"
    x = _f32(x, op, "x")
    geo = (kh, kw, sh, sw, ph, pw, dh, dw, bool(ceil_mode))
    with _device(op, x):
        key = (_max_pool2d_entry, x.shape, *geo)
        fwd, _, shape = _PLANS.get(key) or _plan(*key)
        y = (_cupy_empty(shape, _F32) if out is None
             else _dest(out, shape, op, "out", x=x))
        if return_indices:
            idx = _cupy_empty(shape, _I64)
            fwd(x.data.ptr, y.data.ptr, idx.data.ptr, _current_stream().ptr)
            return y, _own(idx)
        fwd(x.data.ptr, y.data.ptr, 0, _current_stream().ptr)
    return y


def max_pool2d_backward(dy: Any, x: Any, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int,
                        dh: int, dw: int, ceil_mode: bool, indices: Any, out: Any = None) -> Any:
    """dx (N, C, H, W): dy routed to the argmax of each window (recomputed from x when
    ``indices`` is None), overlapping windows adding up in the CPU's order."""
    op = "max_pool2d_backward"
    geo = (kh, kw, sh, sw, ph, pw, dh, dw, bool(ceil_mode))
    if indices is not None:
        _check_indices(indices, op, "max_pool2d")
    if indices is None:
        dy, x = _f32(dy, op, "dy"), _f32(x, op, "x")
    else:
        dy, x = _f32(dy, op, "dy"), _f32_like(x, op, "x")  # x: its shape only
    dx = None if out is None else _out(out, x.shape, op, dy=dy, x=x,
                                       **({} if indices is None else {"indices": indices}))
    if indices is not None:
        return _max_pool2d_backward_to(dy, tuple(x.shape), geo, indices, dx)
    with _device(op, dy, x, dx):
        shape = _plan(_cuda.max_pool2d_plan, x.shape, *geo, dy.shape)
        idx, scratch = _empty(shape, _I64), _empty(shape)  # both alive until the launches
        _cuda.max_pool2d_forward(_ptr(x), x.shape, _ptr(scratch), _ptr(idx), *geo, _stream())
        dx = _empty(x.shape) if dx is None else dx
        _cuda.max_pool2d_backward(_ptr(dy), dy.shape, x.shape, _ptr(idx), idx.shape, False,
                                  0, 0, _ptr(dx), *geo, _stream())
    return dx


def _max_pool2d_backward_to(dy: Any, x_shape: tuple[int, ...], geo: tuple[Any, ...],
                            indices: Any, dx: Any = None) -> Any:
    """dx of shape ``x_shape`` from dy (float32, contiguous) and ``indices``: fastcnn's own
    take the trusted path, any other array is checked on the device (a copy and a sync)."""
    op = "max_pool2d_backward"
    _check_indices(indices, op, "max_pool2d")
    with _device(op, dy, indices, dx):
        key = (_max_pool2d_entry, x_shape, *geo, dy.shape, indices.shape)
        bwd = (_PLANS.get(key) or _plan(*key))[1]
        r = _OWN.get(id(indices))
        if r is not None and r() is indices:  # max_pool2d's own (contiguous, in range, ...)
            idx, check, ws, nws = indices, False, None, 0
        else:
            idx = cupy.ascontiguousarray(indices)
            check = True
            ws, nws = _workspace(_cuda.POOL_CHECK_WORKSPACE_BYTES, np.uint8)
        dx = _cupy_empty(x_shape, _F32) if dx is None else dx
        bwd(dy.data.ptr, idx.data.ptr, check, _ptr(ws), nws, dx.data.ptr, _current_stream().ptr)
    return dx


def avg_pool2d(x: Any, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int, ceil_mode: bool,
               count_include_pad: bool, divisor_override: int | None, out: Any = None) -> Any:
    """y (N, C, P, Q): PyTorch's average pooling (the CPU module's bits); written into ``out``
    when given."""
    op = "avg_pool2d"
    x = _f32(x, op, "x")
    geo = (kh, kw, sh, sw, ph, pw, bool(ceil_mode), bool(count_include_pad), divisor_override)
    with _device(op, x):
        shape = _plan(_cuda.avg_pool2d_plan, x.shape, *geo)
        y = _empty(shape) if out is None else _dest(out, tuple(shape), op, "out", x=x)
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
        _plan(_cuda.avg_pool2d_plan, x.shape, *geo, dy.shape)
        dx = _empty(x.shape) if dx is None else dx
        _cuda.avg_pool2d_backward(_ptr(dy), dy.shape, x.shape, _ptr(dx), *geo, _stream())
    return dx


def global_avg_pool2d(x: Any) -> Any:
    """y (N, C): the mean of each plane (the CPU module's summation order and bits)."""
    op = "global_avg_pool2d"
    x = _f32(x, op, "x")
    with _device(op, x):
        y = _empty(_plan(_cuda.global_pool2d_plan, x.shape, op))
        _cuda.global_avg_pool2d_forward(_ptr(x), x.shape, _ptr(y), _stream())
    return y


def global_avg_pool2d_backward(dy: Any, x: Any, out: Any = None) -> Any:
    """dx (N, C, H, W) = dy / (H*W) over each plane."""
    op = "global_avg_pool2d_backward"
    dy, x = _f32(dy, op, "dy"), _f32_like(x, op, "x")
    dx = None if out is None else _out(out, x.shape, op, dy=dy, x=x)
    with _device(op, dy, x, dx):
        _plan(_cuda.global_pool2d_plan, x.shape, op, dy.shape)
        dx = _empty(x.shape) if dx is None else dx
        _cuda.global_avg_pool2d_backward(_ptr(dy), dy.shape, x.shape, _ptr(dx), _stream())
    return dx


def global_max_pool2d(x: Any, return_indices: bool) -> Any:
    """y (N, C), or ``(y, indices)`` with int64 indices into each H*W plane."""
    op = "global_max_pool2d"
    x = _f32(x, op, "x")
    with _device(op, x):
        out = _plan(_cuda.global_pool2d_plan, x.shape, op)
        y = _empty(out)
        idx = _empty(out, _I64) if return_indices else None
        _cuda.global_max_pool2d_forward(_ptr(x), x.shape, _ptr(y), _ptr(idx), _stream())
    return (y, _own(idx)) if return_indices else y


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
        out_shape = _plan(_cuda.global_pool2d_plan, x.shape, op, dy.shape)
        if indices is None:
            idx, scratch = _empty(out_shape, _I64), _empty(out_shape)  # alive until launched
            _cuda.global_max_pool2d_forward(_ptr(x), x.shape, _ptr(scratch), _ptr(idx),
                                            _stream())
            check, ws, nws = False, None, 0
        elif _is_own(indices):  # global_max_pool2d's own
            idx, check, ws, nws = indices, False, None, 0
        else:
            idx = cupy.ascontiguousarray(indices)
            check = True
            ws, nws = _workspace(_cuda.POOL_CHECK_WORKSPACE_BYTES, np.uint8)
        dx = _empty(x.shape) if dx is None else dx
        _cuda.global_max_pool2d_backward(_ptr(dy), dy.shape, x.shape, _ptr(idx), idx.shape, check,
                                         _ptr(ws), nws, _ptr(dx), _stream())
    return dx
