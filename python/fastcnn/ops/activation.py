"""Elementwise activations and their gradients: :func:`relu`, :func:`sigmoid`, :func:`tanh`,
:func:`leaky_relu`, :func:`gelu` (exact and tanh forms), :func:`silu`, each with its
``*_backward``.

Every op takes float32 arrays of any shape and returns the result in the input's kind; ``out=``
(a C-contiguous float32 array of the result's shape on the same device, which may be an input
itself) is written and returned. The kernels' maximum errors against the float64 reference
(:mod:`fastcnn.reference`) and their special values (NaN, +-inf, -0.0: PyTorch's) are stated in
csrc/cpu/avx2/vmath_avx2.h and measured by tests/test_ops_activation.py.
"""

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


@_converts("x", "out")
def sigmoid(x: Any, *, out: Any = None) -> Any:
    """``1 / (1 + exp(-x))`` elementwise (PyTorch's ``sigmoid``): sigmoid(-inf) = 0,
    sigmoid(inf) = 1, NaN propagates, no overflow for any |x|.

    Args:
        x: float32 array of any shape.
        out: optional destination (C-contiguous float32, x's shape, same device; may be x).

    Returns:
        y: x's shape (``out`` when given).
    """
    return _backend("sigmoid", x, out).sigmoid(x, out=out)


@_converts("dy", "y", "out")
def sigmoid_backward(dy: Any, y: Any, *, out: Any = None) -> Any:
    """``dx = dy * (1 - y) * y`` from the forward OUTPUT ``y`` (PyTorch's formula).

    Args:
        dy, y: float32 arrays of one shape.
        out: optional destination (C-contiguous float32, that shape; may be dy or y).

    Returns:
        dx: dy's shape (``out`` when given).
    """
    return _backend("sigmoid_backward", dy, y, out).sigmoid_backward(dy, y, out=out)


@_converts("x", "out")
def tanh(x: Any, *, out: Any = None) -> Any:
    """``tanh(x)`` elementwise: tanh(+-inf) = +-1, -0.0 kept, NaN propagates.

    Args:
        x: float32 array of any shape.
        out: optional destination (C-contiguous float32, x's shape, same device; may be x).

    Returns:
        y: x's shape (``out`` when given).
    """
    return _backend("tanh", x, out).tanh(x, out=out)


@_converts("dy", "y", "out")
def tanh_backward(dy: Any, y: Any, *, out: Any = None) -> Any:
    """``dx = dy * (1 - y * y)`` from the forward OUTPUT ``y`` (PyTorch's formula).

    Args:
        dy, y: float32 arrays of one shape.
        out: optional destination (C-contiguous float32, that shape; may be dy or y).

    Returns:
        dx: dy's shape (``out`` when given).
    """
    return _backend("tanh_backward", dy, y, out).tanh_backward(dy, y, out=out)


@_converts("x", "out")
def leaky_relu(x: Any, negative_slope: float = 0.01, *, out: Any = None) -> Any:
    """``x if x > 0 else x * negative_slope`` (PyTorch's ``leaky_relu``; the slope rounded to
    float32). Bit-identical to the reference.

    Args:
        x: float32 array of any shape.
        negative_slope: the slope for x <= 0, a real number.
        out: optional destination (C-contiguous float32, x's shape, same device; may be x).

    Returns:
        y: x's shape (``out`` when given).
    """
    return _backend("leaky_relu", x, out).leaky_relu(x, negative_slope, out=out)


@_converts("dy", "x", "out")
def leaky_relu_backward(dy: Any, x: Any, negative_slope: float = 0.01, *,
                        out: Any = None) -> Any:
    """``dx = dy if x > 0 else dy * negative_slope`` from the forward INPUT ``x``.

    Args:
        dy, x: float32 arrays of one shape.
        negative_slope: the forward's slope.
        out: optional destination (C-contiguous float32, that shape; may be dy or x).

    Returns:
        dx: dy's shape (``out`` when given).
    """
    return _backend("leaky_relu_backward", dy, x, out).leaky_relu_backward(
        dy, x, negative_slope, out=out)


@_converts("x", "out")
def gelu(x: Any, approximate: str = "none", *, out: Any = None) -> Any:
    """GELU, PyTorch's two forms: ``x * Phi(x)`` (``approximate="none"``, Phi the standard
    normal CDF, the exact erf form) or ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``
    (``"tanh"``). Accurate in the negative tail (no ``1 + erf`` cancellation); gelu(-inf) is NaN
    and -0.0 is kept, as PyTorch's own kernel gives.

    Args:
        x: float32 array of any shape.
        approximate: ``"none"`` or ``"tanh"``.
        out: optional destination (C-contiguous float32, x's shape, same device; may be x).

    Returns:
        y: x's shape (``out`` when given).
    """
    return _backend("gelu", x, out).gelu(x, approximate, out=out)


@_converts("dy", "x", "out")
def gelu_backward(dy: Any, x: Any, approximate: str = "none", *, out: Any = None) -> Any:
    """``dx = dy * gelu'(x)`` from the forward INPUT ``x``: ``Phi(x) + x * phi(x)`` for the exact
    form (phi the normal density), the tanh form's derivative for ``"tanh"``; NaN at x = +-inf
    (PyTorch).

    Args:
        dy, x: float32 arrays of one shape.
        approximate: the forward's form, ``"none"`` or ``"tanh"``.
        out: optional destination (C-contiguous float32, that shape; may be dy or x).

    Returns:
        dx: dy's shape (``out`` when given).
    """
    return _backend("gelu_backward", dy, x, out).gelu_backward(dy, x, approximate, out=out)


@_converts("x", "out")
def silu(x: Any, *, out: Any = None) -> Any:
    """SiLU / swish ``x * sigmoid(x)`` (PyTorch's ``silu``): silu(-inf) is NaN as in PyTorch,
    -0.0 kept, accurate (not flushed) for large negative x.

    Args:
        x: float32 array of any shape.
        out: optional destination (C-contiguous float32, x's shape, same device; may be x).

    Returns:
        y: x's shape (``out`` when given).
    """
    return _backend("silu", x, out).silu(x, out=out)


@_converts("dy", "x", "out")
def silu_backward(dy: Any, x: Any, *, out: Any = None) -> Any:
    """``dx = dy * s * (1 + x * (1 - s))``, ``s = sigmoid(x)``, from the forward INPUT ``x``
    (PyTorch's formula; NaN at x = +-inf).

    Args:
        dy, x: float32 arrays of one shape.
        out: optional destination (C-contiguous float32, that shape; may be dy or x).

    Returns:
        dx: dy's shape (``out`` when given).
    """
    return _backend("silu_backward", dy, x, out).silu_backward(dy, x, out=out)
