"""CUDA adapter: the dense layer (linear.cu)."""

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


def linear(x: Any, w: Any, b: Any, relu: bool = False, out: Any = None) -> Any:
    """y (N, out) = x (N, in) @ w (out, in).T + b, ReLU fused when ``relu``; written into
    ``out`` when given."""
    op = "linear"
    x, w, b = _f32(x, op, "x"), _f32(w, op, "w"), _f32_opt(b, op, "b")
    with _device(op, x, w, b):
        plan = _plan(_cuda.linear_plan, x.shape, w.shape, _shape(b))
        y = _dest(out, tuple(plan["y_shape"]), op, "out", x=x, w=w, b=b)
        ws, nws = _workspace(plan["forward_workspace"])
        _cuda.linear_forward(_ptr(x), x.shape, _ptr(w), w.shape, _ptr(b), _shape(b), _ptr(y),
                             _ptr(ws), nws, bool(relu), _stream())
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
        plan = _plan(_cuda.linear_plan, x.shape, w.shape, None, dy.shape)
        dx = _dest(dx_out, tuple(x.shape), op, "dx_out", dy=dy, x=x, w=w) if compute_dx \
            else None
        dw = _empty(w.shape) if compute_dw else None
        db = _empty((w.shape[0],)) if bias else None
        ws, nws = _workspace(plan["backward_weights_workspace"] if compute_dw else 0)
        _cuda.linear_backward(_ptr(dy), dy.shape, _ptr(x), x.shape, _ptr(w), w.shape, _ptr(dx),
                              _ptr(dw), _ptr(db), _ptr(ws), nws, _stream())
    return dx, dw, db
