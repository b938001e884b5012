"""CUDA adapter: conv2d and its gradients (csrc/cuda/conv2d.cu)."""

from __future__ import annotations

from typing import Any

from ._common import (
    _cuda,
    _device,
    _empty,
    _f32,
    _f32_opt,
    _plan,
    _ptr,
    _shape,
    _stream,
    _workspace,
)
from ._dest import _dest
from .activation import relu_backward
from .pooling import _max_pool2d_backward_to


def conv2d(x: Any, w: Any, b: Any, stride_h: int, stride_w: int, pad_top: int, pad_left: int,
           pad_bottom: int, pad_right: int, dil_h: int, dil_w: int, groups: int,
           relu: bool = False, out: Any = None) -> Any:
    """y (N, K, P, Q) = conv(x, w) + b, ReLU fused when ``relu``; written into ``out`` when
    given."""
    op = "conv2d"
    x, w, b = _f32(x, op, "x"), _f32(w, op, "w"), _f32_opt(b, op, "b")
    geo = (stride_h, stride_w, pad_top, pad_left, pad_bottom, pad_right, dil_h, dil_w, groups)
    with _device(op, x, w, b):
        plan = _plan(_cuda.conv2d_plan, x.shape, w.shape, _shape(b), *geo)
        y = _dest(out, tuple(plan["y_shape"]), op, "out", x=x, w=w, b=b)
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
                    pool_ceil_mode: bool = False, dx_out: Any = None) -> tuple[Any, Any, Any]:
    """``(dx, dw, db)`` of :func:`conv2d`; an entry is None when not asked for. With
    ``pool_indices`` ``dy`` is the gradient of a max pooling of the output and is first routed
    back through it; with ``relu_y`` (the forward's ReLU output) it then goes through the ReLU's
    backward (separate passes here; the CPU kernels fuse them). dx goes into ``dx_out`` when
    given."""
    op = "conv2d_backward"
    dy, x, w = _f32(dy, op, "dy"), _f32(x, op, "x"), _f32(w, op, "w")
    if dx_out is not None and not compute_dx:
        raise ValueError(f"{op}: dx_out is given but compute_dx=False")
    if pool_indices is not None:
        geo = (stride_h, stride_w, pad_top, pad_left, pad_bottom, pad_right, dil_h, dil_w, groups)
        with _device(op, dy, x, w):
            out = _plan(_cuda.conv2d_plan, x.shape, w.shape, None, *geo, None)["y_shape"]
        dy = _max_pool2d_backward_to(dy, tuple(out), (pool_kh, pool_kw, pool_sh, pool_sw,
                                                      pool_ph, pool_pw, 1, 1,
                                                      bool(pool_ceil_mode)), pool_indices)
    if relu_y is not None:
        dy = relu_backward(dy, relu_y)
    geo = (stride_h, stride_w, pad_top, pad_left, pad_bottom, pad_right, dil_h, dil_w, groups)
    with _device(op, dy, x, w):
        plan = _plan(_cuda.conv2d_plan, x.shape, w.shape, None, *geo, dy.shape)
        dx = _dest(dx_out, tuple(x.shape), op, "dx_out", dy=dy, x=x, w=w) if compute_dx \
            else None
        dw = _empty(w.shape) if compute_dw else None
        db = _empty((w.shape[0],)) if bias else None
        ws, nws = _workspace(max(plan["backward_data_workspace"] if compute_dx else 0,
                                 plan["backward_weights_workspace"] if compute_dw else 0))
        _cuda.conv2d_backward(_ptr(dy), dy.shape, _ptr(x), x.shape, _ptr(w), w.shape, _ptr(dx),
                              _ptr(dw), _ptr(db), _ptr(ws), nws, *geo, _stream())
    return dx, dw, db
