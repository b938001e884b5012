"""The dense layer's op: :func:`linear` and :func:`linear_backward`."""

from __future__ import annotations

from typing import Any

from .._args import check_bool
from ._door import _backend, _converts


@_converts("x", "w", "b")
def linear(x: Any, w: Any, b: Any = None, *, relu: bool = False) -> Any:
    """Dense layer ``y = x @ w.T + b`` (optionally ReLU fused).

    Args:
        x: (N, in) float32; w: (out, in) float32; b: (out,) float32 or None.

    Returns:
        y: (N, out) float32.
    """
    op = "linear"
    return _backend(op, x, w, b).linear(x, w, b, check_bool(relu, "relu", op=op))


@_converts("dy", "x", "w")
def linear_backward(
    dy: Any, x: Any, w: Any, *, bias: bool = True, compute_dx: bool = True,
    compute_dw: bool = True
) -> tuple[Any, Any, Any]:
    """Gradients of :func:`linear`: ``(dx (N, in) or None when compute_dx=False, dw (out, in)
    or None when compute_dw=False, db (out,) or None when bias=False)``."""
    op = "linear_backward"
    return _backend(op, dy, x, w).linear_backward(
        dy, x, w, check_bool(compute_dx, "compute_dx", op=op),
        check_bool(compute_dw, "compute_dw", op=op), check_bool(bias, "bias", op=op))
