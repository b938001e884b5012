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


def _linear_entry(*args: Any) -> tuple[Any, ...]:
    """A ``_cuda.LinearPlan`` of ``args`` (linear_plan's) as the tuple a call reads: bound
    ``forward`` / ``backward``, y's shape, the forward, backward-data, backward-weights and
    backward-bias workspace sizes."""
    p = _cuda.LinearPlan(*args)
    return (p.forward, p.backward, p.y_shape, p.forward_workspace, p.backward_data_workspace,
            p.backward_weights_workspace, p.backward_bias_workspace)


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
        key = (_linear_entry, x.shape, w.shape, bs)
        fwd, _, y_shape, n, _, _, _ = _PLANS.get(key) or _plan(*key)
        y = (_cupy_empty(y_shape, _F32) if out is None
             else _dest(out, y_shape, op, "out", x=x, w=w, b=b))
        ws = _cupy_empty(n, _F32) if n else None  # alive until the launch returned
        fwd(x.data.ptr, w.data.ptr, bp, y.data.ptr, 0 if ws is None else ws.data.ptr, n,
            bool(relu), _current_stream().ptr)
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
        key = (_linear_entry, x.shape, w.shape, None, dy.shape)
        _, bwd, _, _, n_data, n_weights, n_bias = _PLANS.get(key) or _plan(*key)
        dx = _dx_dest(dx_out, compute_dx, x.shape, op, dy=dy, x=x, w=w)
        dw = _cupy_empty(w.shape, _F32) if compute_dw else None
        db = _cupy_empty((w.shape[0],), _F32) if bias else None
        n = max(n_data if compute_dx else 0, n_weights if compute_dw else 0,
                n_bias if bias else 0)  # one workspace, in stream order
        ws = _cupy_empty(n, _F32) if n else None  # alive until the launches returned
        bwd(dy.data.ptr, x.data.ptr, w.data.ptr, 0 if dx is None else dx.data.ptr,
            0 if dw is None else dw.data.ptr, 0 if db is None else db.data.ptr,
            0 if ws is None else ws.data.ptr, n, _current_stream().ptr)
    return dx, dw, db
