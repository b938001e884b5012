"""CUDA adapter: the dense layer (linear.cu)."""

from __future__ import annotations

from typing import Any

from ._common import (
    _F32,
    _PLANS,
    _cuda,
    _cupy_empty,
    _current_stream,
    _device,
    _f32,
    _plan,
)
from ._dest import _dest, _dx_dest


def linear(x: Any, w: Any, b: Any, relu: bool = False, out: Any = None) -> Any:
    """y (N, out) = x (N, in) @ w (out, in).T + b, ReLU fused when ``relu``; written into
    ``out`` when given."""
    op = "linear"
    x, w = _f32(x, op, "x"), _f32(w, op, "w")
    if b is None:
        bp, bs = 0, None
    else:
        b = _f32(b, op, "b")
        bp, bs = b.data.ptr, b.shape
    with _device(op, x, w, b):
        plan = (_PLANS.get((_cuda.linear_plan, x.shape, w.shape, bs))
                or _plan(_cuda.linear_plan, x.shape, w.shape, bs))
        y = (_cupy_empty(plan["y_shape"], _F32) if out is None
             else _dest(out, tuple(plan["y_shape"]), op, "out", x=x, w=w, b=b))
        n = plan["forward_workspace"]
        ws = _cupy_empty(n, _F32) if n else None  # alive until the launch returned
        _cuda.linear_forward(x.data.ptr, x.shape, w.data.ptr, w.shape, bp, bs, y.data.ptr,
                             0 if ws is None else ws.data.ptr, n, bool(relu), _current_stream().ptr)
    return y


def linear_backward(dy: Any, x: Any, w: Any, compute_dx: bool = True, compute_dw: bool = True,
                    bias: bool = True, dx_out: Any = None) -> tuple[Any, Any, Any]:
    """``(dx (N, in), dw (out, in), db (out,))``; an entry is None when not asked for; dx
    goes into ``dx_out`` when given."""
    op = "linear_backward"
    dy, x, w = _f32(dy, op, "dy"), _f32(x, op, "x"), _f32(w, op, "w")
    if dx_out is not None and not compute_dx:
        raise ValueError(f"{op}: dx_out is given but compute_dx=False")
    with _device(op, dy, x, w):
        plan = (_PLANS.get((_cuda.linear_plan, x.shape, w.shape, None, dy.shape))
                or _plan(_cuda.linear_plan, x.shape, w.shape, None, dy.shape))
        dx = _dx_dest(dx_out, compute_dx, x.shape, op, dy=dy, x=x, w=w)
        dw = _cupy_empty(w.shape, _F32) if compute_dw else None
        db = _cupy_empty((w.shape[0],), _F32) if bias else None
        n = max(plan["backward_weights_workspace"] if compute_dw else 0,
                plan["backward_bias_workspace"] if bias else 0)
        ws = _cupy_empty(n, _F32) if n else None  # alive until the launches returned
        _cuda.linear_backward(dy.data.ptr, dy.shape, x.data.ptr, x.shape, w.data.ptr, w.shape,
                              0 if dx is None else dx.data.ptr, 0 if dw is None else dw.data.ptr,
                              0 if db is None else db.data.ptr, 0 if ws is None else ws.data.ptr,
                              n, _current_stream().ptr)
    return dx, dw, db
