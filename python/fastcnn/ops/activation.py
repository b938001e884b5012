"""Elementwise activations and their gradients: :func:`relu`, :func:`relu_backward`."""

from __future__ import annotations

from typing import Any

from ._door import _backend, _converts


@_converts("x", "out")
def relu(x: Any, *, out: Any = None) -> Any:
    """``max(x, 0)`` elementwise, NaN propagating (PyTorch's ``relu``). Any shape, float32.

    Args:
        x: float32 array of any shape.
        out: optional destination written in place and returned: a C-contiguous float32 array
            of x's shape on x's device; ``out=x`` is an in-place ReLU. It may not overlap x
            partially. Reusing a buffer saves a fresh array's page faults on large tensors.

    Returns:
        y: x's shape (``out`` when given).
    """
    return _backend("relu", x, out).relu(x, out=out)


@_converts("dy", "y", "out")
def relu_backward(dy: Any, y: Any, *, out: Any = None) -> Any:
    """``dy`` where the forward output ``y > 0``, else 0.

    Args:
        dy, y: float32 arrays of one shape.
        out: optional destination (C-contiguous float32, that shape, same device), returned; it
            may be ``dy`` or ``y`` itself (in place) but not overlap them partially.

    Returns:
        dx: dy's shape (``out`` when given).
    """
    return _backend("relu_backward", dy, y, out).relu_backward(dy, y, out=out)
