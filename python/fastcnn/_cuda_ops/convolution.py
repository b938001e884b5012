"""CUDA adapter: conv2d and its gradients (csrc/cuda/conv2d.cu)."""

from __future__ import annotations

from typing import Any

from ._common import (
    _F32,
    _ONE_GPU,
    _PLANS,
    _SAME,
    _cuda,
    _cupy_empty,
    _current_stream,
    _device,
    _f32,
    _plan,
    _same_shape,
)
from ._dest import _dest, _dx_dest
from .activation import relu_backward
from .pooling import _OWN, _max_pool2d_backward_to


def _conv2d_entry(*args: Any) -> tuple[Any, ...]:
    """A ``_cuda.Conv2dPlan`` of ``args`` (conv2d_plan's: shapes, geometry, dy's shape or
    nothing; validated once, in C++) as the tuple a call reads: its bound ``forward`` and
    ``backward``, y's shape and the forward / backward-data / backward-weights / backward-bias
    workspace sizes (floats). Cached by :func:`._common._plan` under every argument."""
    p = _cuda.Conv2dPlan(*args)
    return (p.forward, p.backward, p.y_shape, p.forward_workspace, p.backward_data_workspace,
            p.backward_weights_workspace, p.backward_bias_workspace)


def _pooled_entry(x_shape: tuple[int, ...], w_shape: tuple[int, ...], geo: tuple[int, ...],
                  dy_shape: tuple[int, ...], idx_shape: tuple[int, ...], pool: tuple[Any, ...],
                  relu_y_shape: tuple[int, ...] | None) -> tuple[Any, ...]:
    """A ``_cuda.Conv2dPooledBackwardPlan`` (the conv's shapes and geometry, the pooled dy's
    and the indices' shapes, the pooling's geometry, relu_y's shape or None; validated once, in
    C++) as ``(bound backward, the workspace floats of the eight (dx, dw, db) flag
    combinations, dx's floats rounded up to 64, w's size, K)``. Cached by
    :func:`._common._plan`."""
    p = _cuda.Conv2dPooledBackwardPlan(x_shape, w_shape, *geo, dy_shape, idx_shape, *pool,
                                       relu_y_shape)
    need = tuple(p.grad_workspace + max(p.backward_data_workspace if cx else 0,
                                        p.backward_weights_workspace if cw else 0,
                                        p.backward_bias_workspace if cb else 0)
                 for cx in (False, True) for cw in (False, True) for cb in (False, True))
    nx = 1
    for d in x_shape:
        nx *= d
    nw = 1
    for d in w_shape:
        nw *= d
    return p.backward, need, -(-nx // 64) * 64, nw, w_shape[0]


def conv2d(x: Any, w: Any, b: Any, stride_h: int, stride_w: int, pad_top: int, pad_left: int,
           pad_bottom: int, pad_right: int, dil_h: int, dil_w: int, groups: int,
           relu: bool = False, out: Any = None) -> Any:
    """y (N, K, P, Q) = conv(x, w) + b, ReLU fused when ``relu``; written into ``out`` when
    given."""
    op = "conv2d"
    x, w = _f32(x, op, "x"), _f32(w, op, "w")
    if b is None:
        bp, bs = 0, None
    else:
        b = _f32(b, op, "b")
        bp, bs = b.data.ptr, b.shape
    geo = (stride_h, stride_w, pad_top, pad_left, pad_bottom, pad_right, dil_h, dil_w, groups)
    with _device(op, x, w, b):
        key = (_conv2d_entry, x.shape, w.shape, bs, *geo)
        fwd, _, y_shape, n, _, _, _ = _PLANS.get(key) or _plan(*key)
        y = (_cupy_empty(y_shape, _F32) if out is None
             else _dest(out, y_shape, op, "out", x=x, w=w, b=b))
        ws = _cupy_empty(n, _F32) if n else None  # alive until the launch returned
        fwd(x.data.ptr, w.data.ptr, bp, y.data.ptr, 0 if ws is None else ws.data.ptr, n,
            bool(relu), _current_stream().ptr)
    return y


def conv2d_stats(x: Any, w: Any, b: Any, stride_h: int, stride_w: int, pad_top: int,
                 pad_left: int, pad_bottom: int, pad_right: int, dil_h: int, dil_w: int,
                 groups: int, out: Any = None) -> Any:
    """The CPU module's ``conv2d_stats`` (the forward with its output's batch statistics) is
    CPU only: NotImplementedError naming the unfused pair to call instead."""
    raise NotImplementedError("conv2d_stats: the batch statistics in the convolution's "
                              "epilogue are CPU only; on CUDA call conv2d, then batch_norm("
                              "..., training=True)")


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
    backward. With max_pool2d's own indices all of it is one plan and one compiled call
    (:func:`_pooled_backward`: the pooling's and the ReLU's backward into the workspace, then the
    conv passes); other indices are checked on the device and take separate passes (the
    ReLU's in place on the pooling's fresh output). dx goes into ``dx_out`` when given."""
    op = "conv2d_backward"
    dy, x, w = _f32(dy, op, "dy"), _f32(x, op, "x"), _f32(w, op, "w")
    if dx_out is not None and not compute_dx:
        raise ValueError(f"{op}: dx_out is given but compute_dx=False")
    geo = (stride_h, stride_w, pad_top, pad_left, pad_bottom, pad_right, dil_h, dil_w, groups)
    r = None if pool_indices is None else _OWN.get(id(pool_indices))
    if r is not None and r() is pool_indices:  # max_pool2d's own indices: the one-call plan
        return _pooled_backward(dy, x, w, geo, compute_dx, compute_dw, bias, relu_y,
                                pool_indices, (pool_kh, pool_kw, pool_sh, pool_sw, pool_ph,
                                               pool_pw, bool(pool_ceil_mode)), dx_out)
    fresh = False  # dy is an array of ours (the pooling's output): the ReLU may work in place
    if pool_indices is not None:
        with _device(op, dy, x, w):
            key = (_conv2d_entry, x.shape, w.shape, None, *geo)
            out = (_PLANS.get(key) or _plan(*key))[2]
        dy = _max_pool2d_backward_to(dy, out, (pool_kh, pool_kw, pool_sh, pool_sw, pool_ph,
                                               pool_pw, 1, 1, bool(pool_ceil_mode)),
                                     pool_indices)
        fresh = True
    if relu_y is not None:
        if fresh:
            relu_y = _f32(relu_y, "relu_backward", "y")
            _same_shape(dy, relu_y, "relu_backward", "dy", "y")
            with _device("relu_backward", dy, relu_y):
                p = dy.data.ptr
                _cuda.relu_backward(p, relu_y.data.ptr, p, dy.size, _current_stream().ptr)
        else:
            dy = relu_backward(dy, relu_y)
    with _device(op, dy, x, w):
        key = (_conv2d_entry, x.shape, w.shape, None, *geo, dy.shape)
        _, bwd, _, _, n_data, n_weights, n_bias = _PLANS.get(key) or _plan(*key)
        dx = _dx_dest(dx_out, compute_dx, x.shape, op, dy=dy, x=x, w=w)
        dw = _cupy_empty(w.shape, _F32) if compute_dw else None
        db = _cupy_empty((w.shape[0],), _F32) if bias else None
        # one workspace in stream order: backward-data's, backward-weights', the bias partials
        n = max(n_data if compute_dx else 0, n_weights if compute_dw else 0,
                n_bias if bias else 0)
        ws = _cupy_empty(n, _F32) if n else None  # alive until the launches returned
        bwd(dy.data.ptr, x.data.ptr, w.data.ptr, 0 if dx is None else dx.data.ptr,
            0 if dw is None else dw.data.ptr, 0 if db is None else db.data.ptr,
            0 if ws is None else ws.data.ptr, n, _current_stream().ptr)
    return dx, dw, db


def _pooled_backward(dy: Any, x: Any, w: Any, geo: tuple[Any, ...], compute_dx: bool,
                     compute_dw: bool, bias: bool, relu_y: Any, indices: Any,
                     pool: tuple[Any, ...], dx_out: Any) -> tuple[Any, Any, Any]:
    """:func:`conv2d_backward` of a pooled ``dy`` with max_pool2d's own ``indices`` (the
    trusted path): one plan, one compiled call (the pooling's backward, the ReLU's, the conv
    passes, in stream order) and two allocations: dx and the workspace (the conv output's
    gradient and the passes' scratch) in one, dw and db (the parameters' gradients: the same
    lifetime) in the other. The workspace lives as long as dx (in a training step: until the
    layer below has used it)."""
    op = "conv2d_backward"
    if relu_y is not None:
        relu_y = _f32(relu_y, op, "relu_y")
    with _SAME if _ONE_GPU else _device(op, dy, x, w, indices, relu_y):
        key = (_pooled_entry, x.shape, w.shape, geo, dy.shape, indices.shape, pool,
               None if relu_y is None else relu_y.shape)
        bwd, need, nx, nw, k = _PLANS.get(key) or _plan(*key)
        n = need[4 * bool(compute_dx) + 2 * bool(compute_dw) + bool(bias)]
        if compute_dx and dx_out is None:  # [dx | workspace]
            buf = _cupy_empty(nx + n, _F32)
            pdx = buf.data.ptr
            pws = pdx + 4 * nx
            dx = buf[:x.size].reshape(x.shape)
        else:
            dx = _dx_dest(dx_out, compute_dx, x.shape, op, dy=dy, x=x, w=w)
            pdx = 0 if dx is None else dx.data.ptr
            buf = _cupy_empty(n, _F32)  # alive until the launches returned
            pws = buf.data.ptr
        if compute_dw and bias:  # [dw | db]
            gw = _cupy_empty(nw + k, _F32)
            pdw = gw.data.ptr
            pdb = pdw + 4 * nw
            dw, db = gw[:nw].reshape(w.shape), gw[nw:]
        else:
            dw = _cupy_empty(w.shape, _F32) if compute_dw else None
            db = _cupy_empty((k,), _F32) if bias else None
            pdw = 0 if dw is None else dw.data.ptr
            pdb = 0 if db is None else db.data.ptr
        bwd(dy.data.ptr, indices.data.ptr, 0 if relu_y is None else relu_y.data.ptr,
            x.data.ptr, w.data.ptr, pdx, pdw, pdb, pws, n, _current_stream().ptr)
    return dx, dw, db
