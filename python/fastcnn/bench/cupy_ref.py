"""A CuPy reference of the benchmarked ops: the GPU benchmark's baseline, what a user would write
with CuPy alone. Same functions and signatures as :mod:`fastcnn.ops` (and
:mod:`fastcnn.reference`; tests/test_twins.py checks it), on CuPy arrays, for the ops the
benchmark runs: conv2d, conv2d_backward, relu, relu_backward, max_pool2d, max_pool2d_backward,
linear, linear_backward and cross_entropy (not softmax / log_softmax or the optimizer updates).
Clarity over speed, but no per-element Python loops; geometry from :mod:`fastcnn._geometry`.

* ``conv2d``: zero-pad, im2col by one strided slice copy per kernel tap into a ``(C*R*S,
  N*P*Q)`` matrix, one ``cupy.matmul`` (cuBLAS SGEMM) with the ``(K, C*R*S)`` weights, bias
  and ReLU as elementwise kernels.
* ``conv2d_backward``: ``dw = dy @ cols^T`` and ``dx = w^T @ dy`` back in column space,
  scattered into the padded input by one strided slice add per tap (col2im), then cropped;
  ``relu_y`` applies the ReLU's backward to ``dy`` first (a separate elementwise pass).
  ``compute_dw=False`` gives the dx-only pass.
* ``max_pool2d``: non-overlapping windows only (stride = kernel size, no padding or dilation,
  floor mode), as a reshape to ``(N, C, P, k, Q, k)`` and a max (or an argmax over the
  ``k*k`` taps for the indices).
* ``max_pool2d_backward``: ``dy`` placed at the tap its index names, by a one-hot comparison
  and the inverse reshape.
* ``relu``: ``cupy.maximum`` (into ``out`` when given); ``relu_backward``:
  ``cupy.where(y > 0, dy, 0)`` (copied into ``out`` when given, as is the pooling's backward).
* ``linear``: ``x @ w.T + b`` (cuBLAS); backward ``dy @ w``, ``dy.T @ x``, ``dy.sum(0)``.
* ``cross_entropy``: softmax shifted by the row maximum; returns a float (synchronises, as
  fastcnn's does).

Only what the benchmark runs is supported (``groups=1``; pooling as above): anything else is a
ValueError. Arguments are not otherwise checked. CuPy is imported on first use.
"""

from __future__ import annotations

from typing import Any

from .._args import check_int
from .._geometry import (
    conv_output_size,
    conv_padding,
    pair,
    pool_args,
    pool_output_size,
    tap_slice,
)

__all__ = [
    "avg_pool2d",
    "avg_pool2d_backward",
    "conv2d",
    "conv2d_backward",
    "cross_entropy",
    "global_avg_pool2d",
    "global_avg_pool2d_backward",
    "global_max_pool2d",
    "global_max_pool2d_backward",
    "linear",
    "linear_backward",
    "max_pool2d",
    "max_pool2d_backward",
    "relu",
    "relu_backward",
]


def _cp() -> Any:
    import cupy

    return cupy


def _conv_geometry(x: Any, w: Any, stride: Any, padding: Any, dilation: Any, groups: Any,
                   op: str) -> tuple[Any, ...]:
    if check_int(groups, "groups", op=op, minimum=1) != 1:
        raise ValueError(f"{op}: the CuPy reference supports groups=1 only, got {groups}")
    _, _, H, W = x.shape
    _, _, R, S = w.shape
    st = pair(stride, "stride", op=op, minimum=1)
    dil = pair(dilation, "dilation", op=op, minimum=1)
    pads = conv_padding(padding, H, W, R, S, st, dil, op=op)
    P, Q = conv_output_size(H, W, R, S, st, pads, dil, op=op)
    return st, dil, pads, P, Q


def _tap_slices(r: int, s: int, st: tuple[int, int], dil: tuple[int, int], P: int,
                Q: int) -> tuple[slice, slice]:
    """The rows and columns of the padded input under kernel tap (r, s) of every output pixel."""
    return tap_slice(r * dil[0], st[0], P), tap_slice(s * dil[1], st[1], Q)


def _im2col(x: Any, R: int, S: int, st: tuple[int, int], dil: tuple[int, int],
            pads: tuple[int, int, int, int], P: int, Q: int) -> Any:
    """x (N, C, H, W) -> cols (C*R*S, N*P*Q); one strided copy per tap."""
    cp = _cp()
    N, C, _, _ = x.shape
    top, left, bottom, right = pads
    xp = cp.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right))) if any(pads) else x
    cols = cp.empty((C, R, S, N, P, Q), dtype=x.dtype)
    for r in range(R):
        for s in range(S):
            rows, cols_ = _tap_slices(r, s, st, dil, P, Q)
            cols[:, r, s] = xp[:, :, rows, cols_].transpose(1, 0, 2, 3)
    return cols.reshape(C * R * S, N * P * Q)


def conv2d(x: Any, w: Any, b: Any = None, *, stride: Any = 1, padding: Any = 0,
           dilation: Any = 1, groups: int = 1, relu: bool = False, out: Any = None) -> Any:
    """y (N, K, P, Q) = im2col(x) times w, + b, ReLU when ``relu`` (copied into ``out`` when
    given)."""
    cp = _cp()
    st, dil, pads, P, Q = _conv_geometry(x, w, stride, padding, dilation, groups, "conv2d")
    N = x.shape[0]
    K, C, R, S = w.shape
    y = w.reshape(K, C * R * S) @ _im2col(x, R, S, st, dil, pads, P, Q)  # (K, N*P*Q)
    y = y.reshape(K, N, P, Q).transpose(1, 0, 2, 3)
    y = cp.ascontiguousarray(y + b[:, None, None] if b is not None else y)
    if relu:
        cp.maximum(y, y.dtype.type(0), out=y)
    return _into(out, y)


def conv2d_backward(dy: Any, x: Any, w: Any, *, stride: Any = 1, padding: Any = 0,
                    dilation: Any = 1, groups: int = 1, bias: bool = True,
                    compute_dx: bool = True, compute_dw: bool = True, relu_y: Any = None,
                    pool_indices: Any = None, pool_size: Any = None, pool_stride: Any = None,
                    pool_padding: Any = 0, pool_ceil_mode: bool = False,
                    dx_out: Any = None) -> tuple[Any, Any, Any]:
    """``(dx, dw, db)`` of :func:`conv2d`; dx is None when ``compute_dx=False``, dw when
    ``compute_dw=False``, db when ``bias=False``. ``pool_indices`` / ``pool_*``: ``dy`` is the
    gradient of a max pooling of the output, routed back first (:func:`max_pool2d_backward`);
    ``relu_y`` (the output of ``conv2d(..., relu=True)``): ``dy`` then goes through the ReLU's
    backward. dx is copied into ``dx_out`` when given."""
    cp = _cp()
    st, dil, pads, P, Q = _conv_geometry(x, w, stride, padding, dilation, groups,
                                         "conv2d_backward")
    N, _, H, W = x.shape
    K, C, R, S = w.shape
    if pool_indices is not None:  # the convolution's output (N, K, P, Q) is the pooling's input
        dy = max_pool2d_backward(dy, cp.empty((N, K, P, Q), dtype=dy.dtype), pool_size,
                                 stride=pool_stride, padding=pool_padding,
                                 ceil_mode=pool_ceil_mode, indices=pool_indices)
    if relu_y is not None:
        dy = relu_backward(dy, relu_y)
    dym = dy.transpose(1, 0, 2, 3).reshape(K, N * P * Q)
    dw = db = dx = None
    if compute_dw:
        dw = (dym @ _im2col(x, R, S, st, dil, pads, P, Q).T).reshape(K, C, R, S)
    if bias:
        db = dy.sum(axis=(0, 2, 3))
    if compute_dx:
        top, left, bottom, right = pads
        dcols = (w.reshape(K, C * R * S).T @ dym).reshape(C, R, S, N, P, Q)
        dxp = cp.zeros((N, C, H + top + bottom, W + left + right), dtype=dy.dtype)
        for r in range(R):
            for s in range(S):
                rows, cols_ = _tap_slices(r, s, st, dil, P, Q)
                dxp[:, :, rows, cols_] += dcols[:, r, s].transpose(1, 0, 2, 3)
        dx = _into(dx_out, cp.ascontiguousarray(dxp[:, :, top:top + H, left:left + W]))
    return dx, dw, db


def _into(out: Any, result: Any) -> Any:
    """``result``, or ``result`` copied into ``out`` (its shape) and ``out``."""
    if out is None:
        return result
    out[...] = result
    return out


def relu(x: Any, *, out: Any = None) -> Any:
    """``max(x, 0)`` elementwise."""
    return _cp().maximum(x, x.dtype.type(0), out=out)


def relu_backward(dy: Any, y: Any, *, out: Any = None) -> Any:
    """``dy`` where ``y > 0``, else 0."""
    return _into(out, _cp().where(y > 0, dy, dy.dtype.type(0)))


def _pool_k(kernel_size: Any, stride: Any, padding: Any, dilation: Any, ceil_mode: bool,
            op: str) -> int:
    (kh, kw), st, pad, dil = pool_args(kernel_size, stride, padding, dilation, op=op)
    if kh != kw or st != (kh, kw) or pad != (0, 0) or dil != (1, 1) or ceil_mode:
        raise ValueError(f"{op}: the CuPy reference pools square non-overlapping windows only "
                         "(stride = kernel size, no padding or dilation, floor mode)")
    return kh


def max_pool2d(x: Any, kernel_size: Any, *, stride: Any = None, padding: Any = 0,
               dilation: Any = 1, ceil_mode: bool = False, return_indices: bool = False,
               out: Any = None) -> Any:
    """y (N, C, P, Q), or ``(y, indices)`` with int64 flat indices ``h*W + w`` into each
    plane (the first maximum of a window); y copied into ``out`` when given."""
    cp = _cp()
    k = _pool_k(kernel_size, stride, padding, dilation, ceil_mode, "max_pool2d")
    N, C, H, W = x.shape
    P, Q = pool_output_size(H, W, k, k, 0, 1, op="max_pool2d")
    win = x[:, :, :P * k, :Q * k].reshape(N, C, P, k, Q, k)
    if not return_indices:
        return _into(out, win.max(axis=(3, 5)))
    taps = win.transpose(0, 1, 2, 4, 3, 5).reshape(N, C, P, Q, k * k)
    tap = taps.argmax(axis=-1)
    y = _into(out, taps.max(axis=-1))
    ih = cp.arange(P).reshape(P, 1) * k + tap // k
    iw = cp.arange(Q) * k + tap % k
    return y, ih * W + iw


def max_pool2d_backward(dy: Any, x: Any, kernel_size: Any, *, stride: Any = None,
                        padding: Any = 0, dilation: Any = 1, ceil_mode: bool = False,
                        indices: Any = None, out: Any = None) -> Any:
    """dx (N, C, H, W): each ``dy`` at the input element its index names (recomputed from x
    when ``indices`` is None)."""
    cp = _cp()
    k = _pool_k(kernel_size, stride, padding, dilation, ceil_mode, "max_pool2d_backward")
    if indices is None:
        _, indices = max_pool2d(x, k, return_indices=True)
    N, C, H, W = x.shape
    P, Q = dy.shape[2], dy.shape[3]
    tap = ((indices // W - cp.arange(P).reshape(P, 1) * k) * k
           + indices % W - cp.arange(Q) * k)  # (N, C, P, Q) in [0, k*k)
    dwin = (tap[..., None] == cp.arange(k * k)) * dy[..., None]  # (N, C, P, Q, k*k)
    dx = dwin.reshape(N, C, P, Q, k, k).transpose(0, 1, 2, 4, 3, 5).reshape(N, C, P * k, Q * k)
    if (P * k, Q * k) == (H, W):
        return _into(out, cp.ascontiguousarray(dx))
    full = cp.zeros((N, C, H, W), dtype=dy.dtype)
    full[:, :, :P * k, :Q * k] = dx
    return _into(out, full)


def _avg_geometry(x: Any, kernel_size: Any, stride: Any, padding: Any, ceil_mode: bool,
                  count_include_pad: bool, divisor_override: Any, op: str) -> tuple[Any, ...]:
    """(k, s, p, P, Q, divisor (P, Q) float32) of an average pooling, PyTorch's rules."""
    cp = _cp()
    k, st, pd, _ = pool_args(kernel_size, stride, padding, 1, op=op)
    H, W = x.shape[2], x.shape[3]
    P, Q = pool_output_size(H, W, k, st, pd, (1, 1), ceil_mode, op=op)

    def counts(n: int, size: int, kk: int, ss: int, pp: int) -> Any:
        start = cp.arange(n) * ss - pp
        end = cp.minimum(start + kk, size + pp)
        if count_include_pad:
            return end - start
        return cp.minimum(end, size) - cp.maximum(start, 0)

    if divisor_override:
        div = cp.full((P, Q), float(divisor_override), dtype=cp.float32)
    else:
        div = (counts(P, H, k[0], st[0], pd[0])[:, None]
               * counts(Q, W, k[1], st[1], pd[1])[None, :]).astype(cp.float32)
    return k, st, pd, P, Q, div


def avg_pool2d(x: Any, kernel_size: Any, *, stride: Any = None, padding: Any = 0,
               ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: Any = None, out: Any = None) -> Any:
    """y (N, C, P, Q): each window's sum (the k*k taps as strided slices of the zero-padded
    input) over PyTorch's divisor; copied into ``out`` when given."""
    cp = _cp()
    (kh, kw), (sh, sw), (ph, pw), P, Q, div = _avg_geometry(
        x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override,
        "avg_pool2d")
    N, C, H, W = x.shape
    Hp, Wp = max(H + 2 * ph, (P - 1) * sh + kh), max(W + 2 * pw, (Q - 1) * sw + kw)
    xp = cp.zeros((N, C, Hp, Wp), dtype=x.dtype)
    xp[:, :, ph:ph + H, pw:pw + W] = x
    acc = cp.zeros((N, C, P, Q), dtype=x.dtype)
    for r in range(kh):
        for c in range(kw):
            acc += xp[:, :, r:r + (P - 1) * sh + 1:sh, c:c + (Q - 1) * sw + 1:sw]
    return _into(out, acc / div)


def avg_pool2d_backward(dy: Any, x: Any, kernel_size: Any, *, stride: Any = None,
                        padding: Any = 0, ceil_mode: bool = False, count_include_pad: bool = True,
                        divisor_override: Any = None, out: Any = None) -> Any:
    """dx (N, C, H, W): ``dy / divisor`` added back to every tap of its window."""
    cp = _cp()
    (kh, kw), (sh, sw), (ph, pw), P, Q, div = _avg_geometry(
        x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override,
        "avg_pool2d_backward")
    N, C, H, W = x.shape
    Hp, Wp = max(H + 2 * ph, (P - 1) * sh + kh), max(W + 2 * pw, (Q - 1) * sw + kw)
    g = dy / div
    dxp = cp.zeros((N, C, Hp, Wp), dtype=dy.dtype)
    for r in range(kh):
        for c in range(kw):
            dxp[:, :, r:r + (P - 1) * sh + 1:sh, c:c + (Q - 1) * sw + 1:sw] += g
    return _into(out, cp.ascontiguousarray(dxp[:, :, ph:ph + H, pw:pw + W]))


def global_avg_pool2d(x: Any) -> Any:
    """y (N, C): the mean of each (H, W) plane."""
    return x.mean(axis=(2, 3))


def global_avg_pool2d_backward(dy: Any, x: Any, *, out: Any = None) -> Any:
    """dx (N, C, H, W) = dy / (H*W) broadcast over each plane."""
    cp = _cp()
    H, W = x.shape[2], x.shape[3]
    dx = cp.broadcast_to((dy / (H * W))[:, :, None, None], x.shape)
    return _into(out, cp.ascontiguousarray(dx))


def global_max_pool2d(x: Any, *, return_indices: bool = False) -> Any:
    """y (N, C): each plane's maximum, or ``(y, indices)`` (the first maximum's flat index)."""
    N, C = x.shape[:2]
    flat = x.reshape(N, C, -1)
    if not return_indices:
        return flat.max(axis=-1)
    idx = flat.argmax(axis=-1)
    return flat.max(axis=-1), idx


def global_max_pool2d_backward(dy: Any, x: Any, *, indices: Any = None, out: Any = None) -> Any:
    """dx (N, C, H, W): each ``dy`` at its plane's maximum (recomputed when ``indices`` is
    None), zeros elsewhere."""
    cp = _cp()
    N, C, H, W = x.shape
    if indices is None:
        _, indices = global_max_pool2d(x, return_indices=True)
    dx = (cp.arange(H * W) == indices[..., None]) * dy[..., None]
    return _into(out, cp.ascontiguousarray(dx.reshape(N, C, H, W).astype(dy.dtype)))


def linear(x: Any, w: Any, b: Any = None, *, relu: bool = False, out: Any = None) -> Any:
    """y (N, out) = x @ w.T + b, ReLU when ``relu`` (copied into ``out`` when given)."""
    cp = _cp()
    y = x @ w.T
    if b is not None:
        y += b
    if relu:
        cp.maximum(y, y.dtype.type(0), out=y)
    return _into(out, y)


def linear_backward(dy: Any, x: Any, w: Any, *, bias: bool = True, compute_dx: bool = True,
                    compute_dw: bool = True, dx_out: Any = None) -> tuple[Any, Any, Any]:
    """``(dy @ w, dy.T @ x, dy.sum(0))``, each None when not asked for (dx copied into
    ``dx_out`` when given)."""
    return (_into(dx_out, dy @ w) if compute_dx else None, dy.T @ x if compute_dw else None,
            dy.sum(axis=0) if bias else None)


def cross_entropy(logits: Any, labels: Any) -> tuple[float, Any]:
    """Mean softmax cross-entropy over the rows for integer class ids, and its gradient
    ``(softmax - onehot) / N``."""
    cp = _cp()
    n = logits.shape[0]
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = cp.exp(shifted)
    total = e.sum(axis=1, keepdims=True)
    rows = cp.arange(n)
    loss = -(shifted[rows, labels] - cp.log(total[:, 0])).mean()
    grad = e / total
    grad[rows, labels] -= 1
    grad /= n
    return float(loss), grad
