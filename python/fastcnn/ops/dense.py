"""The dense layer's op: :func:`linear` and :func:`linear_backward`."""

from __future__ import annotations

from typing import Any

from .._args import check_bool
from ._door import _backend, _converts


@_converts("x", "w", "b", "out")
def linear(x: Any, w: Any, b: Any = None, *, relu: bool = False, out: Any = None) -> Any:
    """Dense layer ``y = x @ w.T + b`` (optionally ReLU fused).

    Args:
        x: (N, in) float32; w: (out, in) float32; b: (out,) float32 or None.
        out: optional destination of y, written and returned instead of a fresh array: a
            C-contiguous float32 (N, out) array on the op's device that overlaps none of the
            inputs (reusing a buffer saves a fresh array's page faults on large tensors).

    Returns:
        y: (N, out) float32 (``out`` when given).
    """
    if type(relu) is not bool:
        relu = check_bool(relu, "relu", op="linear")
    return _backend("linear", x, w, b, out).linear(x, w, b, relu, out=out)


@_converts("dy", "x", "w", "dx_out")
def linear_backward(
    dy: Any, x: Any, w: Any, *, bias: bool = True, compute_dx: bool = True,
    compute_dw: bool = True, dx_out: Any = None
) -> tuple[Any, Any, Any]:
    """Gradients of :func:`linear`: ``(dx (N, in) or None when compute_dx=False, dw (out, in)
    or None when compute_dw=False, db (out,) or None when bias=False)``.

    ``dx_out``: optional destination of dx (needs ``compute_dx``), as ``out`` of :func:`linear`:
    a C-contiguous float32 (N, in) array on the op's device that overlaps none of the inputs.
    """
    op = "linear_backward"
    if not (type(compute_dx) is bool and type(compute_dw) is bool and type(bias) is bool):
        compute_dx = check_bool(compute_dx, "compute_dx", op=op)
        compute_dw = check_bool(compute_dw, "compute_dw", op=op)
        bias = check_bool(bias, "bias", op=op)
    return _backend(op, dy, x, w, dx_out).linear_backward(dy, x, w, compute_dx, compute_dw, bias,
                                                          dx_out=dx_out)
