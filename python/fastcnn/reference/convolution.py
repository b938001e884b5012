"""Reference convolution: im2col with ``sliding_window_view`` and one batched matmul; the
backward's dx by col2im over the kernel taps."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .._args import check_bool, check_int
from .._geometry import (
    conv_output_size,
    conv_padding,
    dilated_size,
    pair,
    tap_slice,
)
from ._checks import _check_ndim, _check_shape, _dx_into, _float_array, _into
from .activation import relu_backward
from .pooling import max_pool2d_backward


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
           dilation: Any = 1, groups: int = 1, relu: bool = False,
           out: Any = None) -> np.ndarray:
    """2-D cross-correlation (PyTorch's ``conv2d``), followed by ReLU when ``relu=True``.

    Args:
        x: (N, C, H, W) input.
        w: (K, C/groups, R, S) weights.
        b: (K,) bias or None.
        stride, dilation: int or (h, w), >= 1.
        padding: int or (h, w) zero padding, ``"valid"`` (= 0) or ``"same"`` (output
            ceil(H/stride) for any stride; odd total padding: extra row/column bottom/right).
        groups: >= 1, divides C and K.
        out: optional (N, K, P, Q) array the result is written into and returned.

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
    return _into(out, np.ascontiguousarray(y), op)


def conv2d_stats(x: Any, w: Any, b: Any = None, *, stride: Any = 1, padding: Any = 0,
                 dilation: Any = 1, groups: int = 1,
                 out: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`conv2d` (no ReLU) and the per-channel batch statistics of its output.

    Args:
        x, w, b, stride, padding, dilation, groups, out: as in :func:`conv2d`.

    Returns:
        ``(y, mean, var)``: y (N, K, P, Q) as :func:`conv2d` returns it; the mean and biased
        variance of y over N, P and Q, (K,) float64 each (two passes in float64: the centred
        squares), NaN for an empty output.
    """
    y = conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups,
               out=out)
    k = y.shape[1]
    y64 = y.astype(np.float64).transpose(1, 0, 2, 3).reshape(k, -1)
    if y64.shape[1] == 0:
        return y, np.full(k, np.nan), np.full(k, np.nan)
    mean = y64.mean(axis=1)
    var = ((y64 - mean[:, None]) ** 2).mean(axis=1)
    return y, mean, var


def conv2d_backward(
    dy: Any, x: Any, w: Any, *, stride: Any = 1, padding: Any = 0, dilation: Any = 1,
    groups: int = 1, bias: bool = True, compute_dx: bool = True, compute_dw: bool = True,
    relu_y: Any = None, pool_indices: Any = None, pool_size: Any = None,
    pool_stride: Any = None, pool_padding: Any = 0, pool_ceil_mode: bool = False,
    dx_out: Any = None,
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
        dx_out: optional (N, C, H, W) array dx is written into (needs ``compute_dx``).

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
        return _dx_into(dx_out, None, op), dw, db
    # col2im: dcols (G, CgRS, NPQ) -> (C, R, S, N, P, Q), one strided slice add per tap.
    wmat = w.astype(dtype, copy=False).reshape(G, Kg, Cg * R * S)
    dcols = np.matmul(wmat.transpose(0, 2, 1), dyg).reshape(C, R, S, N, P, Q)
    dxp = np.zeros((N, C, H + top + bottom, W + left + right), dtype=dtype)
    for r in range(R):
        for s in range(S):
            dxp[:, :, tap_slice(r * dh, sh, P), tap_slice(s * dw_, sw, Q)] += (
                dcols[:, r, s].transpose(1, 0, 2, 3))
    dx = np.ascontiguousarray(dxp[:, :, top:top + H, left:left + W])
    return _dx_into(dx_out, dx, op), dw, db
