"""Reference pooling: window views, PyTorch's selection rule, ``numpy.add.at`` scatters."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .._args import check_bool
from .._geometry import (
    dilated_size,
    pool_args,
    pool_output_size,
    span,
)
from ._checks import _check_ndim, _check_shape, _float_array, _into


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
