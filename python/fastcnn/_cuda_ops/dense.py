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


def linear(x: Any, w: Any, b: Any, relu: bool = False) -> Any:
    """y (N, out) = x (N, in) @ w (out, in).T + b, ReLU fused when ``relu``."""
    op = "linear"
    x, w, b = _f32(x, op, "x"), _f32(w, op, "w"), _f32_opt(b, op, "b")
    with _device(op, x, w, b):
        plan = _plan(_cuda.linear_plan, x.shape, w.shape, _shape(b))
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
        plan = _plan(_cuda.linear_plan, x.shape, w.shape, None, dy.shape)
        dx = _empty(x.shape) if compute_dx else None
        dw = _empty(w.shape) if compute_dw else None
        db = _empty((w.shape[0],)) if bias else None
        ws, nws = _workspace(plan["backward_weights_workspace"] if compute_dw else 0)
        _cuda.linear_backward(_ptr(dy), dy.shape, _ptr(x), x.shape, _ptr(w), w.shape, _ptr(dx),
                              _ptr(dw), _ptr(db), _ptr(ws), nws, _stream())
    return dx, dw, db
