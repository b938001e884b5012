"""Reference pooling: max pooling (window views, PyTorch's selection rule, ``numpy.add.at``
scatters), average pooling (tap-by-tap strided sums in PyTorch's order) and the global pools."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .._args import check_bool, check_int
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
    ceil_mode: bool = False, return_indices: bool = False, out: Any = None,
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
        out: optional (N, C, P, Q) array y is written into and returned.

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
    y = _into(out, y, op)
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


# ---- average pooling ---------------------------------------------------------------------------


def _avg_setup(x: Any, kernel_size: Any, stride: Any, padding: Any, ceil_mode: Any,
               count_include_pad: Any, divisor_override: Any, op: str):
    x, k, s, p, _, P, Q = _pool_setup(x, kernel_size, stride, padding, 1, ceil_mode, op)
    count_include_pad = check_bool(count_include_pad, "count_include_pad", op=op)
    if divisor_override is not None:
        divisor_override = check_int(divisor_override, "divisor_override", op=op)
        if divisor_override == 0:
            raise ValueError(f"{op}: divisor_override must not be 0 (None: the window's size)")
    div = _avg_divisors(x.shape[2], x.shape[3], k, s, p, P, Q, count_include_pad,
                        divisor_override).astype(x.dtype)
    return x, k, s, p, P, Q, div


def _avg_counts(size: int, k: int, s: int, pad: int, out: int, include_pad: bool) -> np.ndarray:
    """Per output of one axis: the window's element count, PyTorch's rule. With padding counted
    the window ends at ``min(start + k, size + pad)`` (a ceil_mode window hanging past the
    padded input's edge counts only up to it); without, it is clipped to ``[0, size)``."""
    start = np.arange(out, dtype=np.int64) * s - pad
    end = np.minimum(start + k, size + pad)
    if include_pad:
        return end - start
    return np.minimum(end, size) - np.maximum(start, 0)


def _avg_divisors(H: int, W: int, k: tuple[int, int], s: tuple[int, int], p: tuple[int, int],
                  P: int, Q: int, count_include_pad: bool,
                  divisor_override: int | None) -> np.ndarray:
    """The divisor of each window (P, Q) as an int64 array."""
    if divisor_override is not None:
        return np.full((P, Q), divisor_override, dtype=np.int64)
    hc = _avg_counts(H, k[0], s[0], p[0], P, count_include_pad)
    wc = _avg_counts(W, k[1], s[1], p[1], Q, count_include_pad)
    return hc[:, None] * wc[None, :]


def _padded_extent(size: int, k: int, s: int, pad: int, out: int) -> int:
    """Rows (or columns) of the zero-padded plane every window of an axis fits in."""
    return max(size + 2 * pad, (out - 1) * s + k)


def avg_pool2d(
    x: Any, kernel_size: Any, *, stride: Any = None, padding: Any = 0, ceil_mode: bool = False,
    count_include_pad: bool = True, divisor_override: Any = None, out: Any = None,
) -> np.ndarray:
    """2-D average pooling with PyTorch's semantics (``torch.nn.functional.avg_pool2d``).

    Args:
        x: (N, C, H, W).
        kernel_size: int or (kh, kw); stride: int, pair or None (= kernel_size).
        padding: int or pair of implicit zeros, at most kernel_size // 2.
        ceil_mode: round the output size up (the last window must start inside the input or the
            left padding).
        count_include_pad: divide by the window's size counting the padding (True) or by the
            input elements it covers (False). A ceil_mode window hanging past the padded input
            counts the padding only up to the padded input's edge.
        divisor_override: a nonzero int dividing every window's sum instead.
        out: optional (N, C, P, Q) array y is written into and returned.

    Returns:
        y (N, C, P, Q): ``0 + sum / divisor``, the sum taken over the window's input elements in
        row-major order starting from 0 (PyTorch's CPU loop, so the same bits in float32).
    """
    op = "avg_pool2d"
    x, (kh, kw), (sh, sw), (ph, pw), P, Q, div = _avg_setup(
        x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, op)
    N, C, H, W = x.shape
    Hp, Wp = _padded_extent(H, kh, sh, ph, P), _padded_extent(W, kw, sw, pw, Q)
    xp = np.zeros((N, C, Hp, Wp), dtype=x.dtype)  # zeros never change a partial sum
    xp[:, :, ph:ph + H, pw:pw + W] = x
    acc = np.zeros((N, C, P, Q), dtype=x.dtype)
    for i in range(kh):  # row-major tap order: one rounding per added element
        for j in range(kw):
            acc += xp[:, :, i:i + (P - 1) * sh + 1:sh, j:j + (Q - 1) * sw + 1:sw]
    return _into(out, x.dtype.type(0) + acc / div, op)


def avg_pool2d_backward(
    dy: Any, x: Any, kernel_size: Any, *, stride: Any = None, padding: Any = 0,
    ceil_mode: bool = False, count_include_pad: bool = True, divisor_override: Any = None,
    out: Any = None,
) -> np.ndarray:
    """Gradient of :func:`avg_pool2d` with respect to x.

    Args:
        dy: (N, C, P, Q) gradient of the output.
        x: (N, C, H, W) forward input (only its shape and dtype are used).
        kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override: as in
            :func:`avg_pool2d`.

    Returns:
        dx (N, C, H, W): each element ``0 + sum of dy[p, q] / divisor[p, q]`` over the windows
        containing it, in increasing (p, q) order (PyTorch's scatter order, so the same bits);
        0 for elements in no window.
    """
    op = "avg_pool2d_backward"
    dy = _float_array(dy, "dy", op)
    x, (kh, kw), (sh, sw), (ph, pw), P, Q, div = _avg_setup(
        x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, op)
    N, C, H, W = x.shape
    _check_shape(dy, (N, C, P, Q), "dy", op, " = (N, C, P, Q) of the forward output")
    dtype = np.result_type(dy, x)
    sdy = dy.astype(dtype, copy=False) / div.astype(dtype)
    Hp, Wp = _padded_extent(H, kh, sh, ph, P), _padded_extent(W, kw, sw, pw, Q)
    dxp = np.zeros((N, C, Hp, Wp), dtype=dtype)
    # increasing (p, q) for a fixed element is decreasing (tap row, tap column)
    for i in reversed(range(kh)):
        for j in reversed(range(kw)):
            dxp[:, :, i:i + (P - 1) * sh + 1:sh, j:j + (Q - 1) * sw + 1:sw] += sdy
    return _into(out, np.ascontiguousarray(dxp[:, :, ph:ph + H, pw:pw + W]), op)


# ---- global pooling ----------------------------------------------------------------------------

_LANES = 32  # the global average's summation lanes (every device and ISA uses the same order)


def _global_setup(x: Any, op: str) -> np.ndarray:
    x = _float_array(x, "x", op)
    _check_ndim(x, 4, "x", op, "(N, C, H, W)")
    if x.shape[1] < 1 or x.shape[2] < 1 or x.shape[3] < 1:
        raise ValueError(f"{op}: x of shape {x.shape} has an empty channel or spatial dimension")
    return x


def _lane_sum(planes: np.ndarray) -> np.ndarray:
    """Sum of each row of ``planes`` (M, L) in the fixed order of the kernels: 32 lane sums
    ``s[l] = 0 + x[l] + x[l + 32] + ...`` in increasing index order, then halved pairwise
    ``s[l] + s[l + 16]``, ``+ 8``, ``+ 4``, ``+ 2``, ``+ 1``."""
    M, L = planes.shape
    blocks = -(-L // _LANES)
    padded = np.zeros((M, blocks * _LANES), dtype=planes.dtype)
    padded[:, :L] = planes
    padded = padded.reshape(M, blocks, _LANES)
    s = np.zeros((M, _LANES), dtype=planes.dtype)
    for b in range(blocks):
        s += padded[:, b]
    half = _LANES // 2
    while half:
        s = s[:, :half] + s[:, half:2 * half]
        half //= 2
    return s[:, 0]


def global_avg_pool2d(x: Any) -> np.ndarray:
    """Mean over each (H, W) plane.

    Args:
        x: (N, C, H, W).

    Returns:
        y (N, C): the plane's sum in the fixed 32-lane order of :func:`_lane_sum` (the same on
        every device, ISA and thread count), divided by H*W.
    """
    x = _global_setup(x, "global_avg_pool2d")
    N, C, H, W = x.shape
    return (_lane_sum(x.reshape(N * C, H * W)) / x.dtype.type(H * W)).reshape(N, C)


def global_avg_pool2d_backward(dy: Any, x: Any, *, out: Any = None) -> np.ndarray:
    """Gradient of :func:`global_avg_pool2d`: dy (N, C) -> dx (N, C, H, W) = dy / (H*W)
    broadcast over each plane (x: the forward input; only its shape and dtype are used)."""
    op = "global_avg_pool2d_backward"
    dy = _float_array(dy, "dy", op)
    x = _global_setup(x, op)
    N, C, H, W = x.shape
    _check_shape(dy, (N, C), "dy", op, " = (N, C) of the forward output")
    dtype = np.result_type(dy, x)
    g = dy.astype(dtype, copy=False) / dtype.type(H * W)
    return _into(out, np.ascontiguousarray(np.broadcast_to(g[:, :, None, None], x.shape)), op)


def _global_argmax(planes: np.ndarray) -> np.ndarray:
    """max_pool2d's selection over each row: the last NaN if any, else the first maximum (an
    all -inf row gives index 0)."""
    idx = np.argmax(planes, axis=1)  # the first NaN or the first maximum
    isnan = np.isnan(planes)
    if isnan.any():
        last_nan = planes.shape[1] - 1 - np.argmax(isnan[:, ::-1], axis=1)
        idx = np.where(isnan.any(axis=1), last_nan, idx)
    return idx.astype(np.int64)


def global_max_pool2d(
    x: Any, *, return_indices: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Maximum over each (H, W) plane with max_pool2d's selection rules.

    Args:
        x: (N, C, H, W).
        return_indices: also return the argmax indices.

    Returns:
        y (N, C), and with ``return_indices`` int64 indices (N, C) into each flattened H*W
        plane: the first maximum in row-major order; NaN beats any number and among several NaN
        the last one is chosen; an all -inf plane gives -inf and index 0.
    """
    op = "global_max_pool2d"
    return_indices = check_bool(return_indices, "return_indices", op=op)
    x = _global_setup(x, op)
    N, C, H, W = x.shape
    planes = x.reshape(N * C, H * W)
    idx = _global_argmax(planes)
    y = np.take_along_axis(planes, idx[:, None], axis=1)[:, 0].reshape(N, C)
    idx = idx.reshape(N, C)
    return (y, idx) if return_indices else y


def global_max_pool2d_backward(
    dy: Any, x: Any, *, indices: Any = None, out: Any = None,
) -> np.ndarray:
    """Gradient of :func:`global_max_pool2d`: dy (N, C) -> dx (N, C, H, W), zero except
    ``0 + dy[n, c]`` at each plane's argmax (``indices`` (N, C) from ``return_indices=True``,
    or recomputed from x when None)."""
    op = "global_max_pool2d_backward"
    dy = _float_array(dy, "dy", op)
    x = _global_setup(x, op)
    N, C, H, W = x.shape
    _check_shape(dy, (N, C), "dy", op, " = (N, C) of the forward output")
    if indices is None:
        idx = _global_argmax(x.reshape(N * C, H * W))
    else:
        idx = np.asarray(indices)
        if idx.dtype.kind not in "iu":
            raise TypeError(f"{op}: indices must be an integer array, got dtype {idx.dtype}")
        _check_shape(idx, (N, C), "indices", op, " (the shape of dy)")
        if idx.size and (idx.min() < 0 or idx.max() >= H * W):
            raise ValueError(f"{op}: indices must lie in [0, H*W) = [0, {H * W}), got values "
                             f"in [{idx.min()}, {idx.max()}]")
        idx = idx.reshape(N * C).astype(np.int64)
    dtype = np.result_type(dy, x)
    dx = np.zeros((N * C, H * W), dtype=dtype)
    np.put_along_axis(dx, idx[:, None], dtype.type(0) + dy.astype(dtype).reshape(N * C, 1),
                      axis=1)
    return _into(out, dx.reshape(N, C, H, W), op)
