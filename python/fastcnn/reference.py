"""NumPy implementations of every fastcnn op: the oracle for the kernels and the benchmark baseline.

Same functions and signatures as :mod:`fastcnn.ops`, but written for clarity over speed (while
staying vectorised: no per-element Python loops). Every function works in the dtype of its
inputs (float32 or float64; mixed inputs are promoted with ``numpy.result_type``), so tests can
run it in float64 as a ground truth. It imports only numpy (and the pure-Python argument helpers
in :mod:`fastcnn._args`, re-exported here).

Approaches:

* ``conv2d``: zero-pad, im2col with ``sliding_window_view`` (a strided view, copied once into a
  ``(groups, C/groups*R*S, N*P*Q)`` matrix; this order keeps the copy's inner loop running along
  W), then one batched matmul ``w (groups, K/groups, C/groups*R*S) @ cols``.
* ``conv2d_backward``: ``dw`` is ``dy @ cols^T``; ``dx`` is ``w^T @ dy`` back in column space,
  scattered into the padded input by a loop over the R*S kernel taps, each adding a whole
  strided slice (col2im), then cropped.
* ``max_pool2d``: ``-inf`` padding, window view flattened to ``(..., kh*kw)`` in row-major
  order; the PyTorch CPU selection rule ``val > maxval || isnan(val)`` is reproduced with
  vectorised argmax (first maximum; the last NaN and the first in-bounds element of an all
  ``-inf`` window are patched in only where they occur). The backward scatter-adds ``dy`` at
  the indices with ``numpy.add.at``.
* ``softmax`` / ``log_softmax`` / ``cross_entropy``: shift by the row maximum first.
* ``sgd_update`` / ``adam_update``: the optimizer formulas in place, one NumPy operation per
  float32 operation of the compiled updates, in their order (so the two agree bit for bit).

``out=`` (``relu``, ``relu_backward``, ``max_pool2d_backward``) copies the result into the given
array of the result's shape and returns it.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ._args import check_bool, check_int
from ._geometry import (
    conv_output_size,
    conv_padding,
    dilated_size,
    pair,
    pool_args,
    pool_output_size,
    span,
    tap_slice,
)

__all__ = [
    "adam_update",
    "check_bool",
    "check_int",
    "conv2d",
    "conv2d_backward",
    "conv_output_size",
    "conv_padding",
    "cross_entropy",
    "linear",
    "linear_backward",
    "log_softmax",
    "max_pool2d",
    "max_pool2d_backward",
    "pair",
    "pool_args",
    "pool_output_size",
    "relu",
    "relu_backward",
    "sgd_update",
    "softmax",
]


def __dir__() -> list[str]:
    """``dir(fastcnn.reference)``: its public names only (PEP 562), not its imports."""
    return sorted(__all__)


# ----------------------------------------------------------------------------------------------
# array checks
# ----------------------------------------------------------------------------------------------
def _float_array(a: Any, name: str, op: str) -> np.ndarray:
    """``numpy.asarray(a)``; TypeError unless its dtype is floating point."""
    arr = np.asarray(a)
    if arr.dtype.kind != "f":
        raise TypeError(f"{op}: {name} must be a floating-point array (float32 or float64), "
                        f"got dtype {arr.dtype}")
    return arr


def _check_ndim(a: np.ndarray, ndim: int, name: str, op: str, layout: str) -> None:
    if a.ndim != ndim:
        raise ValueError(f"{op}: {name} must be {ndim}-D {layout}, got shape {a.shape}")


def _check_shape(a: np.ndarray, expected: tuple[int, ...], name: str, op: str,
                 why: str = "") -> None:
    if a.shape != tuple(expected):
        raise ValueError(f"{op}: {name} has shape {a.shape}, expected {tuple(expected)}{why}")


def _into(out: Any, result: np.ndarray, op: str) -> np.ndarray:
    """``result``, or with ``out`` given: ``result`` copied into it (same shape), ``out``."""
    if out is None:
        return result
    _check_shape(out, result.shape, "out", op, " (the result's shape)")
    out[...] = result
    return out


# ----------------------------------------------------------------------------------------------
# convolution
# ----------------------------------------------------------------------------------------------
class _ConvGeom(NamedTuple):
    N: int
    C: int
    H: int
    W: int
    K: int
    R: int
    S: int
    P: int
    Q: int
    groups: int
    stride: tuple[int, int]
    dilation: tuple[int, int]
    pad: tuple[int, int, int, int]  # top, left, bottom, right


def _conv_geometry(x: np.ndarray, w: np.ndarray, stride: Any, padding: Any, dilation: Any,
                   groups: Any, op: str) -> _ConvGeom:
    _check_ndim(x, 4, "x", op, "(N, C, H, W)")
    _check_ndim(w, 4, "w", op, "(K, C/groups, R, S)")
    N, C, H, W = x.shape
    K, Cg, R, S = w.shape
    g = check_int(groups, "groups", op=op, minimum=1)
    if C % g:
        raise ValueError(f"{op}: groups={g} must divide the input channels, but x has shape "
                         f"{x.shape} (C={C})")
    if K % g:
        raise ValueError(f"{op}: groups={g} must divide the output channels, but w has shape "
                         f"{w.shape} (K={K})")
    if Cg * g != C:
        raise ValueError(f"{op}: w has shape {w.shape} but x has {C} channels and groups={g}: "
                         f"expected w.shape[1] == {C // g}")
    if R < 1 or S < 1:
        raise ValueError(f"{op}: w has shape {w.shape}: the kernel size R, S must be >= 1")
    st = pair(stride, "stride", op=op, minimum=1)
    dil = pair(dilation, "dilation", op=op, minimum=1)
    pad = conv_padding(padding, H, W, R, S, st, dil, op=op)
    P, Q = conv_output_size(H, W, R, S, st, pad, dil, op=op)
    return _ConvGeom(N, C, H, W, K, R, S, P, Q, g, st, dil, pad)


def _im2col(x: np.ndarray, geo: _ConvGeom) -> np.ndarray:
    """Columns of the zero-padded input.

    x (N, C, H, W) -> cols (G, C/G*R*S, N*P*Q): column ``(n, p, q)`` of group ``g`` holds the
    ``(c, r, s)`` input values under output pixel ``(p, q)``.
    """
    N, C, _, _, _, R, S, P, Q, G, (sh, sw), (dh, dw), (top, left, bottom, right) = geo
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    eh, ew = dilated_size(R, dh), dilated_size(S, dw)
    win = sliding_window_view(xp, (eh, ew), axis=(2, 3))  # (N, C, Hp-eh+1, Wp-ew+1, eh, ew)
    win = win[:, :, ::sh, ::sw, ::dh, ::dw][:, :, :P, :Q]  # (N, C, P, Q, R, S), a view
    cols = np.ascontiguousarray(win.transpose(1, 4, 5, 0, 2, 3))  # (C, R, S, N, P, Q)
    return cols.reshape(G, C // G * R * S, N * P * Q)


def conv2d(x: Any, w: Any, b: Any = None, *, stride: Any = 1, padding: Any = 0,
           dilation: Any = 1, groups: int = 1, relu: bool = False) -> np.ndarray:
    """2-D cross-correlation (PyTorch's ``conv2d``), followed by ReLU when ``relu=True``.

    Args:
        x: (N, C, H, W) input.
        w: (K, C/groups, R, S) weights.
        b: (K,) bias or None.
        stride, dilation: int or (h, w), >= 1.
        padding: int or (h, w) zero padding, ``"valid"`` (= 0) or ``"same"`` (output
            ceil(H/stride) for any stride; odd total padding: extra row/column bottom/right).
        groups: >= 1, divides C and K.

    Returns:
        y: (N, K, P, Q), ``P = (H + pad_top + pad_bottom - dil_h*(R-1) - 1) // stride_h + 1``.
    """
    op = "conv2d"
    x = _float_array(x, "x", op)
    w = _float_array(w, "w", op)
    geo = _conv_geometry(x, w, stride, padding, dilation, groups, op)
    arrays = [x, w]
    if b is not None:
        b = _float_array(b, "b", op)
        _check_shape(b, (geo.K,), "b", op, f" (one bias per output channel of w {w.shape})")
        arrays.append(b)
    dtype = np.result_type(*arrays)
    N, _, _, _, K, _, _, P, Q, G = geo[:10]

    cols = _im2col(x.astype(dtype, copy=False), geo)  # (G, CgRS, NPQ)
    wmat = w.astype(dtype, copy=False).reshape(G, K // G, -1)  # (G, Kg, CgRS)
    y = np.matmul(wmat, cols)  # (G, Kg, NPQ)
    y = y.reshape(K, N, P, Q).transpose(1, 0, 2, 3)
    if b is not None:
        y = y + b.astype(dtype, copy=False)[:, None, None]
    if check_bool(relu, "relu", op=op):
        y = np.where(y < 0, dtype.type(0), y)
    return np.ascontiguousarray(y)


def conv2d_backward(
    dy: Any, x: Any, w: Any, *, stride: Any = 1, padding: Any = 0, dilation: Any = 1,
    groups: int = 1, bias: bool = True, compute_dx: bool = True, compute_dw: bool = True,
    relu_y: Any = None, pool_indices: Any = None, pool_size: Any = None,
    pool_stride: Any = None, pool_padding: Any = 0, pool_ceil_mode: bool = False,
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Gradients of :func:`conv2d` (``dx`` / ``dw`` is None when ``compute_dx`` / ``compute_dw``
    is False).

    Args:
        dy: (N, K, P, Q) gradient of the output.
        x: (N, C, H, W) forward input; w: (K, C/groups, R, S) weights.
        stride, padding, dilation, groups: as in :func:`conv2d`.
        bias: whether to return ``db``.
        relu_y: the output of ``conv2d(..., relu=True)``: ``dy`` is first passed through the
            ReLU's backward, ``relu_backward(dy, relu_y)``.
        pool_indices, pool_size, pool_stride, pool_padding, pool_ceil_mode: ``dy`` is the
            gradient of ``max_pool2d`` of the convolution's output with these indices and
            options: it is first routed back with :func:`max_pool2d_backward`.

    Returns:
        dx (N, C, H, W), dw (K, C/groups, R, S), db (K,) or None when not asked for.
        With an empty batch (N = 0) dw and db are zeros.
    """
    op = "conv2d_backward"
    dy = _float_array(dy, "dy", op)
    x = _float_array(x, "x", op)
    w = _float_array(w, "w", op)
    bias = check_bool(bias, "bias", op=op)
    compute_dx = check_bool(compute_dx, "compute_dx", op=op)
    compute_dw = check_bool(compute_dw, "compute_dw", op=op)
    geo = _conv_geometry(x, w, stride, padding, dilation, groups, op)
    N, C, H, W, K, R, S, P, Q, G, (sh, sw), (dh, dw_), (top, left, bottom, right) = geo
    if pool_indices is not None:
        if pool_size is None:
            raise ValueError(f"{op}: pool_indices needs pool_size")
        dy = max_pool2d_backward(dy, np.zeros((N, K, P, Q), dy.dtype), pool_size,
                                 stride=pool_stride, padding=pool_padding,
                                 ceil_mode=pool_ceil_mode, indices=pool_indices)
    _check_shape(dy, (N, K, P, Q), "dy", op, " = (N, K, P, Q) of the forward output")
    if relu_y is not None:
        relu_y = _float_array(relu_y, "relu_y", op)
        _check_shape(relu_y, dy.shape, "relu_y", op, " (the shape of dy)")
        dy = relu_backward(dy, relu_y)
    dtype = np.result_type(dy, x, w)
    dy = dy.astype(dtype, copy=False)
    Kg, Cg = K // G, C // G

    dyg = dy.transpose(1, 0, 2, 3).reshape(G, Kg, N * P * Q)
    dw = None
    if compute_dw:
        cols = _im2col(x.astype(dtype, copy=False), geo)  # (G, CgRS, NPQ)
        dw = np.ascontiguousarray(np.matmul(dyg, cols.transpose(0, 2, 1)).reshape(K, Cg, R, S))
    db = dy.sum(axis=(0, 2, 3)) if bias else None
    if not compute_dx:
        return None, dw, db
    # col2im: dcols (G, CgRS, NPQ) -> (C, R, S, N, P, Q), one strided slice add per tap.
    wmat = w.astype(dtype, copy=False).reshape(G, Kg, Cg * R * S)
    dcols = np.matmul(wmat.transpose(0, 2, 1), dyg).reshape(C, R, S, N, P, Q)
    dxp = np.zeros((N, C, H + top + bottom, W + left + right), dtype=dtype)
    for r in range(R):
        for s in range(S):
            dxp[:, :, tap_slice(r * dh, sh, P), tap_slice(s * dw_, sw, Q)] += (
                dcols[:, r, s].transpose(1, 0, 2, 3))
    dx = np.ascontiguousarray(dxp[:, :, top:top + H, left:left + W])
    return dx, dw, db


# ----------------------------------------------------------------------------------------------
# ReLU
# ----------------------------------------------------------------------------------------------
def relu(x: Any, *, out: Any = None) -> np.ndarray:
    """``max(x, 0)`` elementwise; NaN propagates (like ``torch.relu``). Any shape."""
    x = _float_array(x, "x", "relu")
    # keeps NaN and -0.0, as torch.relu does
    return _into(out, np.where(x < 0, x.dtype.type(0), x), "relu")


def relu_backward(dy: Any, y: Any, *, out: Any = None) -> np.ndarray:
    """``dx = 0 where y <= 0 else dy`` (``y`` is the ReLU output; PyTorch's threshold_backward,
    so a NaN in ``y`` passes ``dy`` through).

    dy, y: same shape. Returns dx of that shape.
    """
    op = "relu_backward"
    dy = _float_array(dy, "dy", op)
    y = _float_array(y, "y", op)
    _check_shape(dy, y.shape, "dy", op, " (the shape of y)")
    dtype = np.result_type(dy, y)
    return _into(out, np.where(y <= 0, 0, dy).astype(dtype, copy=False), op)


# ----------------------------------------------------------------------------------------------
# max pooling
# ----------------------------------------------------------------------------------------------
def _pool_forward(x: np.ndarray, k: tuple[int, int], s: tuple[int, int], p: tuple[int, int],
                  d: tuple[int, int], P: int, Q: int) -> tuple[np.ndarray, np.ndarray]:
    """y (N, C, P, Q) and int64 flat indices ``h*W + w`` into each input plane."""
    N, C, H, W = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = k, s, p, d
    eh, ew = dilated_size(kh, dh), dilated_size(kw, dw)
    # -inf padding; ceil_mode windows may hang past the symmetric padding at the bottom/right.
    bottom = max(span(P, sh, kh, dh) - H - ph, 0)
    right = max(span(Q, sw, kw, dw) - W - pw, 0)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, bottom), (pw, right)), constant_values=-np.inf)
    win = sliding_window_view(xp, (eh, ew), axis=(2, 3))[:, :, ::sh, ::sw, ::dh, ::dw]
    T = kh * kw
    win = win[:, :, :P, :Q].reshape(N, C, P, Q, T)  # taps in row-major window order

    # PyTorch CPU: `if (val > maxval || isnan(val))` from maxval = -inf, maxindex = the first
    # in-bounds tap. => any NaN: the last NaN; else the first tap equal to the max; an all -inf
    # window: the first in-bounds tap. numpy's argmax gives the first NaN or the first maximum.
    tap = np.argmax(win, axis=-1)  # (N, C, P, Q)
    isnan = np.isnan(win)
    if isnan.any():
        last_nan = T - 1 - np.argmax(isnan[..., ::-1], axis=-1)
        tap = np.where(isnan.any(axis=-1), last_nan, tap)
    y = np.take_along_axis(win, tap[..., None], axis=-1)[..., 0]
    if (y == -np.inf).any():  # the first -inf may be a padding tap: use the first in-bounds one
        rows = np.arange(P)[:, None] * sh - ph + np.arange(kh) * dh  # (P, kh) input rows
        cols = np.arange(Q)[:, None] * sw - pw + np.arange(kw) * dw  # (Q, kw) input cols
        valid = (((rows >= 0) & (rows < H))[:, None, :, None]
                 & ((cols >= 0) & (cols < W))[None, :, None, :]).reshape(P, Q, T)
        tap = np.where(y == -np.inf, np.argmax(valid, axis=-1), tap)

    ih = (np.arange(P) * sh - ph)[:, None] + tap // kw * dh  # input row and col of the tap
    iw = np.arange(Q) * sw - pw + tap % kw * dw
    idx = ih.astype(np.int64) * W + iw
    return np.ascontiguousarray(y), np.ascontiguousarray(idx)


def _pool_setup(x: Any, kernel_size: Any, stride: Any, padding: Any, dilation: Any,
                ceil_mode: Any, op: str):
    x = _float_array(x, "x", op)
    _check_ndim(x, 4, "x", op, "(N, C, H, W)")
    k, s, p, d = pool_args(kernel_size, stride, padding, dilation, op=op)
    ceil_mode = check_bool(ceil_mode, "ceil_mode", op=op)
    if x.shape[1] < 1:
        raise ValueError(f"{op}: x has shape {x.shape}: expected at least one channel")
    P, Q = pool_output_size(x.shape[2], x.shape[3], k, s, p, d, ceil_mode, op=op)
    return x, k, s, p, d, P, Q


def max_pool2d(
    x: Any, kernel_size: Any, *, stride: Any = None, padding: Any = 0, dilation: Any = 1,
    ceil_mode: bool = False, return_indices: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """2-D max pooling with PyTorch's semantics.

    Args:
        x: (N, C, H, W).
        kernel_size: int or (kh, kw); stride: int, pair or None (= kernel_size).
        padding: int or pair, implicit -inf (never chosen), at most kernel_size // 2.
        dilation: int or pair.
        ceil_mode: round the output size up (the last window must start inside the input or the
            left padding).
        return_indices: also return the argmax indices.

    Returns:
        y (N, C, P, Q), and with ``return_indices`` int64 indices (N, C, P, Q), flat ``h*W + w``
        into each (H, W) input plane. Ties go to the first maximum in row-major window order; NaN
        beats any number and among several NaN the last one is chosen; an all -inf window gives
        -inf and the index of its first in-bounds element.
    """
    op = "max_pool2d"
    return_indices = check_bool(return_indices, "return_indices", op=op)
    x, k, s, p, d, P, Q = _pool_setup(x, kernel_size, stride, padding, dilation, ceil_mode, op)
    y, idx = _pool_forward(x, k, s, p, d, P, Q)
    return (y, idx) if return_indices else y


def max_pool2d_backward(
    dy: Any, x: Any, kernel_size: Any, *, stride: Any = None, padding: Any = 0,
    dilation: Any = 1, ceil_mode: bool = False, indices: Any = None, out: Any = None,
) -> np.ndarray:
    """Gradient of :func:`max_pool2d` with respect to x.

    Args:
        dy: (N, C, P, Q) gradient of the output.
        x: (N, C, H, W) forward input.
        kernel_size, stride, padding, dilation, ceil_mode: as in :func:`max_pool2d`.
        indices: (N, C, P, Q) integer indices from ``max_pool2d(..., return_indices=True)``, or
            None to recompute them from x.

    Returns:
        dx (N, C, H, W): ``dy`` scatter-added at the indices (overlapping windows accumulate).
    """
    op = "max_pool2d_backward"
    dy = _float_array(dy, "dy", op)
    x, k, s, p, d, P, Q = _pool_setup(x, kernel_size, stride, padding, dilation, ceil_mode, op)
    N, C, H, W = x.shape
    _check_shape(dy, (N, C, P, Q), "dy", op, " = (N, C, P, Q) of the forward output")
    if indices is None:
        _, idx = _pool_forward(x, k, s, p, d, P, Q)
    else:
        idx = np.asarray(indices)
        if idx.dtype.kind not in "iu":
            raise TypeError(f"{op}: indices must be an integer array, got dtype {idx.dtype}")
        _check_shape(idx, (N, C, P, Q), "indices", op, " (the shape of dy)")
        if idx.size and (idx.min() < 0 or idx.max() >= H * W):
            raise ValueError(f"{op}: indices must lie in [0, H*W) = [0, {H * W}), got values "
                             f"in [{idx.min()}, {idx.max()}]")
    dtype = np.result_type(dy, x)
    dx = np.zeros((N, C, H * W), dtype=dtype)
    plane = np.arange(N * C).reshape(N, C, 1)
    np.add.at(dx.reshape(N * C, H * W), (plane, idx.reshape(N, C, P * Q).astype(np.intp)),
              dy.reshape(N, C, P * Q).astype(dtype, copy=False))
    return _into(out, dx.reshape(N, C, H, W), op)


# ----------------------------------------------------------------------------------------------
# dense
# ----------------------------------------------------------------------------------------------
def _linear_check(x: np.ndarray, w: np.ndarray, op: str) -> None:
    _check_ndim(x, 2, "x", op, "(N, in_features)")
    _check_ndim(w, 2, "w", op, "(out_features, in_features)")
    if w.shape[1] != x.shape[1]:
        raise ValueError(f"{op}: w has shape {w.shape} but x has shape {x.shape}: expected "
                         f"w.shape[1] == x.shape[1] == {x.shape[1]}")


def linear(x: Any, w: Any, b: Any = None, *, relu: bool = False) -> np.ndarray:
    """Dense layer ``y = x @ w.T + b``, followed by ReLU when ``relu=True``.

    x (N, in), w (out, in), b (out,) or None -> y (N, out).
    """
    op = "linear"
    x = _float_array(x, "x", op)
    w = _float_array(w, "w", op)
    _linear_check(x, w, op)
    arrays = [x, w]
    if b is not None:
        b = _float_array(b, "b", op)
        _check_shape(b, (w.shape[0],), "b", op, f" (one bias per row of w {w.shape})")
        arrays.append(b)
    dtype = np.result_type(*arrays)
    y = x.astype(dtype, copy=False) @ w.astype(dtype, copy=False).T
    if b is not None:
        y += b.astype(dtype, copy=False)
    if check_bool(relu, "relu", op=op):
        y = np.where(y < 0, dtype.type(0), y)
    return y


def linear_backward(
    dy: Any, x: Any, w: Any, *, bias: bool = True, compute_dx: bool = True,
    compute_dw: bool = True
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Gradients of :func:`linear` (``dx`` / ``dw`` is None when ``compute_dx`` / ``compute_dw``
    is False).

    dy (N, out), x (N, in), w (out, in) -> dx (N, in) = dy @ w, dw (out, in) = dy.T @ x,
    db (out,) = dy.sum(0) (None when ``bias=False``). N = 0 gives zero dw and db.
    """
    op = "linear_backward"
    dy = _float_array(dy, "dy", op)
    x = _float_array(x, "x", op)
    w = _float_array(w, "w", op)
    bias = check_bool(bias, "bias", op=op)
    _linear_check(x, w, op)
    _check_shape(dy, (x.shape[0], w.shape[0]), "dy", op, " = (N, out_features)")
    dtype = np.result_type(dy, x, w)
    dy, x, w = (a.astype(dtype, copy=False) for a in (dy, x, w))
    dx = dy @ w if check_bool(compute_dx, "compute_dx", op=op) else None
    dw = dy.T @ x if check_bool(compute_dw, "compute_dw", op=op) else None
    return dx, dw, (dy.sum(axis=0) if bias else None)


# ----------------------------------------------------------------------------------------------
# softmax and cross-entropy
# ----------------------------------------------------------------------------------------------
def _shifted(x: Any, axis: Any, op: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """``z = x - max(x)``, ``e = exp(z)`` and ``sum(e)`` (keepdims) along a checked axis."""
    x = _float_array(x, "x", op)
    ax = check_int(axis, "axis", op=op)
    if not -x.ndim <= ax < x.ndim:
        raise ValueError(f"{op}: axis={ax} is out of range for x of shape {x.shape}")
    ax %= x.ndim
    if x.size == 0:
        return x.copy(), x.copy(), x.copy(), ax
    with np.errstate(invalid="ignore"):  # a row of -inf (or +inf) gives NaN, like torch
        z = x - x.max(axis=ax, keepdims=True)
    e = np.exp(z)
    return z, e, e.sum(axis=ax, keepdims=True), ax


def softmax(x: Any, axis: int = -1) -> np.ndarray:
    """``exp(x) / sum(exp(x))`` along ``axis``, computed from ``x - max(x)``. Shape of x."""
    _, e, total, _ = _shifted(x, axis, "softmax")
    return e if e.size == 0 else e / total


def log_softmax(x: Any, axis: int = -1) -> np.ndarray:
    """``x - logsumexp(x)`` along ``axis``, computed from ``x - max(x)``. Shape of x."""
    z, _, total, _ = _shifted(x, axis, "log_softmax")
    return z if z.size == 0 else z - np.log(total)


def cross_entropy(logits: Any, labels: Any) -> tuple[float, np.ndarray]:
    """Softmax cross-entropy, mean over the batch, and its gradient (one stable step).

    Args:
        logits: (N, classes).
        labels: integer class ids (N,) in [0, classes), or floating probability targets
            (N, classes).

    Returns:
        ``(loss, dlogits)``: ``loss = mean_n(-sum_c target * log_softmax(logits))`` as a Python
        float (computed in the logits' dtype, or the promoted dtype with float targets);
        ``dlogits = (softmax * sum_c(target) - target) / N`` (N, classes), PyTorch's gradient.
        An empty batch (N = 0) gives loss 0.0 and an empty (0, classes) dlogits (PyTorch gives
        NaN for the loss).
    """
    op = "cross_entropy"
    logits = _float_array(logits, "logits", op)
    _check_ndim(logits, 2, "logits", op, "(N, classes)")
    N, classes = logits.shape
    lab = np.asarray(labels)
    if lab.dtype.kind in "iu":
        _check_shape(lab, (N,), "labels", op, " = (N,) integer class ids for logits "
                     f"{logits.shape}")
        if N and (lab.min() < 0 or lab.max() >= classes):
            raise ValueError(f"{op}: labels must be class ids in [0, {classes}), got values in "
                             f"[{lab.min()}, {lab.max()}]")
        dtype = logits.dtype
    elif lab.dtype.kind == "f":
        _check_shape(lab, (N, classes), "labels", op, " = (N, classes) probability targets "
                     f"for logits {logits.shape} (integer class ids must have an integer dtype)")
        dtype = np.result_type(logits, lab)
    else:
        raise TypeError(f"{op}: labels must be integer class ids (N,) or floating probability "
                        f"targets (N, classes), got dtype {lab.dtype}")
    if N == 0:
        return 0.0, np.zeros((0, classes), dtype=dtype)

    z, e, total, _ = _shifted(logits.astype(dtype, copy=False), 1, op)
    logp = z - np.log(total)
    prob = e / total
    if lab.dtype.kind in "iu":
        rows = np.arange(N)
        loss = -logp[rows, lab].sum() / dtype.type(N)
        grad = prob.copy()
        grad[rows, lab] -= 1
    else:
        target = lab.astype(dtype, copy=False)
        with np.errstate(invalid="ignore"):  # 0 * -inf gives NaN, like torch
            loss = -(target * logp).sum() / dtype.type(N)
        grad = prob * target.sum(axis=1, keepdims=True) - target
    return float(loss), grad / dtype.type(N)


# ----------------------------------------------------------------------------------------------
# optimizer updates (in place)
# ----------------------------------------------------------------------------------------------
def sgd_update(p: Any, g: Any, buf: Any = None, *, lr: float, momentum: float = 0.0,
               nesterov: bool = False, weight_decay: float = 0.0, first: bool = False) -> None:
    """One SGD step in place (:func:`fastcnn.ops.sgd_update`), p, g and buf of one shape::

        g = g + weight_decay * p;  buf = g (first) | momentum * buf + g
        g = g + momentum * buf (nesterov) | buf (momentum != 0);  p -= lr * g
    """
    f32 = np.float32
    if weight_decay:
        g = g + f32(weight_decay) * p
    if momentum:
        if buf is None:
            raise ValueError(f"sgd_update: momentum={momentum} needs a momentum buffer")
        if first:
            buf[...] = g
        else:
            buf *= f32(momentum)
            buf += g
        g = g + f32(momentum) * buf if nesterov else buf
    p -= f32(lr) * g


def adam_update(p: Any, g: Any, m: Any, v: Any, *, lr: float, beta_1: float, beta_2: float,
                epsilon: float, step: int, weight_decay: float = 0.0,
                decoupled: bool = False) -> None:
    """One Adam (AdamW with ``decoupled``) step in place (:func:`fastcnn.ops.adam_update`)::

        p = p * (1 - lr * weight_decay) (decoupled) | g = g + weight_decay * p
        m = beta_1 m + (1 - beta_1) g;  v = beta_2 v + (1 - beta_2) g^2
        p -= lr / (1 - beta_1^step) * m / (sqrt(v) / sqrt(1 - beta_2^step) + epsilon)
    """
    f32 = np.float32
    t = check_int(step, "step", op="adam_update", minimum=1)
    lr, beta_1, beta_2, wd = float(lr), float(beta_1), float(beta_2), float(weight_decay)
    if wd:
        if decoupled:
            p *= f32(1.0 - lr * wd)
        else:
            g = g + f32(wd) * p
    b1, b2 = f32(beta_1), f32(beta_2)
    m *= b1
    m += (f32(1) - b1) * g
    v *= b2
    v += (f32(1) - b2) * (g * g)
    denom = np.sqrt(v) / f32(math.sqrt(1.0 - beta_2 ** t))
    denom += f32(epsilon)
    p -= f32(lr / (1.0 - beta_1 ** t)) * (m / denom)
