"""Pooling over (H, W): :func:`max_pool2d`, :func:`avg_pool2d`, :func:`global_avg_pool2d`,
:func:`global_max_pool2d` and their backwards."""

from __future__ import annotations

from typing import Any

from .._args import check_bool, check_int
from .._geometry import pool_args
from ._door import _backend, _converts, _memo, _plain_key

_POOL_ARGS: dict[Any, Any] = {}  # plain (kernel_size, stride, padding, dilation) -> pairs


@_converts("x", "out")
def max_pool2d(
    x: Any,
    kernel_size: Any,
    *,
    stride: Any = None,
    padding: Any = 0,
    dilation: Any = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
    out: Any = None,
) -> Any:
    """Max pooling over (H, W), PyTorch's semantics (ties to the first maximum, NaN wins).

    Args:
        x: (N, C, H, W) float32.
        kernel_size, stride (None = kernel_size), padding (<= kernel/2, implicit -inf),
            dilation: int or (h, w).
        ceil_mode: let the last window overhang the input (it must start inside).
        return_indices: also return int64 indices (N, C, P, Q) into each flattened (H, W) plane.
        out: optional destination of y, written and returned instead of a fresh array: a
            C-contiguous float32 (N, C, P, Q) array on the op's device that overlaps none of
            the inputs (reusing a buffer saves a fresh array's page faults on large tensors).

    Returns:
        y (N, C, P, Q) (``out`` when given), or ``(y, indices)``.
    """
    op = "max_pool2d"
    k, s, p, d = _max_pool_args(kernel_size, stride, padding, dilation, op)
    if not (type(ceil_mode) is bool and type(return_indices) is bool):
        ceil_mode = check_bool(ceil_mode, "ceil_mode", op=op)
        return_indices = check_bool(return_indices, "return_indices", op=op)
    return _backend(op, x, out).max_pool2d(x, *k, *s, *p, *d, ceil_mode, return_indices,
                                           out=out)


def _max_pool_args(kernel_size: Any, stride: Any, padding: Any, dilation: Any,
                   op: str) -> Any:
    """:func:`~fastcnn._geometry.pool_args`, memoised for plain options."""
    return _memo(_POOL_ARGS, _plain_key(kernel_size, stride, padding, dilation), _pool_args,
                 kernel_size, stride, padding, dilation, op)


def _pool_args(kernel_size: Any, stride: Any, padding: Any, dilation: Any, op: str) -> Any:
    return pool_args(kernel_size, stride, padding, dilation, op=op)


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
    k, s, p, d = _max_pool_args(kernel_size, stride, padding, dilation, op)
    if type(ceil_mode) is not bool:
        ceil_mode = check_bool(ceil_mode, "ceil_mode", op=op)
    return _backend(op, dy, x, indices, out).max_pool2d_backward(
        dy, x, *k, *s, *p, *d, ceil_mode, indices, out=out)


def _avg_args(kernel_size: Any, stride: Any, padding: Any, ceil_mode: Any,
              count_include_pad: Any, divisor_override: Any, op: str) -> tuple[Any, ...]:
    """The compiled module's geometry arguments of an average pooling."""
    k, s, p, _ = pool_args(kernel_size, stride, padding, 1, op=op)
    if divisor_override is not None:
        divisor_override = check_int(divisor_override, "divisor_override", op=op)
        if divisor_override == 0:
            raise ValueError(f"{op}: divisor_override must not be 0 (None: the window's size)")
    return (*k, *s, *p, check_bool(ceil_mode, "ceil_mode", op=op),
            check_bool(count_include_pad, "count_include_pad", op=op), divisor_override)


@_converts("x", "out")
def avg_pool2d(
    x: Any,
    kernel_size: Any,
    *,
    stride: Any = None,
    padding: Any = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: Any = None,
    out: Any = None,
) -> Any:
    """Average pooling over (H, W), PyTorch's ``avg_pool2d`` (the same bits on the CPU).

    Args:
        x: (N, C, H, W) float32.
        kernel_size, stride (None = kernel_size), padding (<= kernel/2, implicit zeros): int or
            (h, w).
        ceil_mode: let the last window overhang the input (it must start inside).
        count_include_pad: divide by the window's size counting the padding (a ceil_mode window
            counts it only up to the padded input's edge), else by the input elements covered.
        divisor_override: a nonzero int dividing every window's sum instead.
        out: optional destination of y, as in :func:`max_pool2d`.

    Returns:
        y (N, C, P, Q) (``out`` when given).
    """
    op = "avg_pool2d"
    return _backend(op, x, out).avg_pool2d(
        x, *_avg_args(kernel_size, stride, padding, ceil_mode, count_include_pad,
                      divisor_override, op), out=out)


@_converts("dy", "x", "out")
def avg_pool2d_backward(
    dy: Any,
    x: Any,
    kernel_size: Any,
    *,
    stride: Any = None,
    padding: Any = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: Any = None,
    out: Any = None,
) -> Any:
    """Gradient of :func:`avg_pool2d`: ``dy`` (N, C, P, Q) -> ``dx`` (N, C, H, W).

    Each dx element sums ``dy / divisor`` of the windows containing it in a fixed order (a
    gather: deterministic, no atomics). ``x`` is the forward input: only its shape and device
    are used. ``out``: an optional destination for dx (C-contiguous float32 of x's shape on x's
    device; it may be x itself but not overlap dy), written and returned.
    """
    op = "avg_pool2d_backward"
    return _backend(op, dy, x, out).avg_pool2d_backward(
        dy, x, *_avg_args(kernel_size, stride, padding, ceil_mode, count_include_pad,
                          divisor_override, op), out=out)


@_converts("x")
def global_avg_pool2d(x: Any) -> Any:
    """Mean over each (H, W) plane: x (N, C, H, W) float32 -> y (N, C).

    The sum runs in one fixed order (32 lane sums, then a fixed tree), the same on every device,
    ISA and thread count, and in :func:`fastcnn.reference.global_avg_pool2d`.
    """
    op = "global_avg_pool2d"
    return _backend(op, x).global_avg_pool2d(x)


@_converts("dy", "x", "out")
def global_avg_pool2d_backward(dy: Any, x: Any, *, out: Any = None) -> Any:
    """Gradient of :func:`global_avg_pool2d`: dy (N, C) -> dx (N, C, H, W) = dy / (H*W) over
    each plane. ``x``: the forward input (only its shape and device are used); ``out`` as in
    :func:`avg_pool2d_backward`."""
    op = "global_avg_pool2d_backward"
    return _backend(op, dy, x, out).global_avg_pool2d_backward(dy, x, out=out)


@_converts("x")
def global_max_pool2d(x: Any, *, return_indices: bool = False) -> Any:
    """Maximum over each (H, W) plane with :func:`max_pool2d`'s rules (the first maximum in
    row-major order, NaN wins: the last NaN).

    Args:
        x: (N, C, H, W) float32.
        return_indices: also return int64 indices (N, C) into each flattened H*W plane.

    Returns:
        y (N, C), or ``(y, indices)``.
    """
    op = "global_max_pool2d"
    return _backend(op, x).global_max_pool2d(
        x, check_bool(return_indices, "return_indices", op=op))


@_converts("dy", "x", "indices", "out")
def global_max_pool2d_backward(dy: Any, x: Any, *, indices: Any = None, out: Any = None) -> Any:
    """Gradient of :func:`global_max_pool2d`: dy (N, C) -> dx (N, C, H, W), zero except dy at
    each plane's maximum. ``indices`` (int64 (N, C), from ``return_indices=True``) avoids
    recomputing it from ``x``; ``out`` as in :func:`max_pool2d_backward`."""
    op = "global_max_pool2d_backward"
    return _backend(op, dy, x, indices, out).global_max_pool2d_backward(dy, x, indices, out=out)
