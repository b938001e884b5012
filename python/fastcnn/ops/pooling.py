"""Pooling over (H, W): :func:`max_pool2d` and :func:`max_pool2d_backward`."""

from __future__ import annotations

from typing import Any

from .._args import check_bool
from .._geometry import pool_args
from ._door import _backend, _converts


@_converts("x")
def max_pool2d(
    x: Any,
    kernel_size: Any,
    *,
    stride: Any = None,
    padding: Any = 0,
    dilation: Any = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Any:
    """Max pooling over (H, W), PyTorch's semantics (ties to the first maximum, NaN wins).

    Args:
        x: (N, C, H, W) float32.
        kernel_size, stride (None = kernel_size), padding (<= kernel/2, implicit -inf),
            dilation: int or (h, w).
        ceil_mode: let the last window overhang the input (it must start inside).
        return_indices: also return int64 indices (N, C, P, Q) into each flattened (H, W) plane.

    Returns:
        y (N, C, P, Q), or ``(y, indices)``.
    """
    op = "max_pool2d"
    k, s, p, d = pool_args(kernel_size, stride, padding, dilation, op=op)
    return _backend(op, x).max_pool2d(
        x, *k, *s, *p, *d, check_bool(ceil_mode, "ceil_mode", op=op),
        check_bool(return_indices, "return_indices", op=op))


@_converts("dy", "x", "indices", "out")
def max_pool2d_backward(
    dy: Any,
    x: Any,
    kernel_size: Any,
    *,
    stride: Any = None,
    padding: Any = 0,
    dilation: Any = 1,
    ceil_mode: bool = False,
    indices: Any = None,
    out: Any = None,
) -> Any:
    """Gradient of :func:`max_pool2d`: ``dy`` (N, C, P, Q) scattered to ``dx`` (N, C, H, W).

    ``indices`` (int64, from ``return_indices=True``) avoids recomputing the argmax from ``x``;
    overlapping windows accumulate. ``out``: an optional destination for dx (C-contiguous
    float32 of x's shape on x's device; it may be x itself but not overlap dy, x or the indices
    partially), written and returned; it saves a fresh array's page faults on large inputs.
    """
    op = "max_pool2d_backward"
    k, s, p, d = pool_args(kernel_size, stride, padding, dilation, op=op)
    return _backend(op, dy, x, indices, out).max_pool2d_backward(
        dy, x, *k, *s, *p, *d, check_bool(ceil_mode, "ceil_mode", op=op), indices, out=out)
