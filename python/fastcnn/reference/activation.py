"""Reference activations and their gradients: relu, sigmoid, tanh, leaky_relu, gelu (exact and
tanh forms), silu, each with its ``*_backward``.

Every function takes arrays of any shape (``dy`` and the forward tensor it pairs with must have
one shape) and returns an array of that shape in the inputs' dtype (``numpy.result_type``), or
writes it into ``out`` (the result's shape) and returns ``out``.

The transcendental ops are evaluated in float64 (whatever the input dtype) with formulas that
stay accurate and finite over the whole float range, and rounded once to the result dtype: the
ground truth the kernels' stated ulp errors are measured against. PyTorch's special values are
kept (checked against torch in tests/test_ops_activation.py):

=============  =============  ==========  ===========  ==============  ============
op             NaN            +inf        -inf         -0.0            large |x|
=============  =============  ==========  ===========  ==============  ============
sigmoid        NaN            1           0            0.5             no overflow
tanh           NaN            1           -1           -0.0            +-1
leaky_relu     NaN            +inf        -inf         -0.0            x or x*slope
gelu           NaN            +inf        NaN          -0.0            x or -0.0
silu           NaN            +inf        NaN          -0.0            x or -0.0
=============  =============  ==========  ===========  ==============  ============

The backward of gelu and silu is NaN at +-inf (PyTorch's ``Phi + x * phi`` and
``s * (1 + x * (1 - s))`` at infinity); sigmoid / tanh backward use the forward *output*
(``dy * y * (1 - y)``, ``dy * (1 - y * y)``), leaky_relu / gelu / silu backward the forward
*input*. ``gelu(x) = x * Phi(x)`` (Phi: the standard normal CDF, through ``math.erfc``);
``gelu(x, "tanh") = 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))``, evaluated as
``x * sigmoid(2u)``, its equal that does not cancel for negative x.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._args import check_choice
from ._checks import _check_shape, _float_array, _into

#: gelu's approximate= choices (PyTorch's)
GELU_APPROXIMATE = ("none", "tanh")
_K0 = 2.0 * math.sqrt(2.0 / math.pi)  # d(2u)/dx at 0 for the tanh form: 2u = x (K0 + K1 x^2)
_K1 = _K0 * 0.044715
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_erfc = np.frompyfunc(math.erfc, 1, 1)


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


# ------------------------------------------------------------------------------------------------
# helpers (float64 in, float64 out)


def _pair(dy: Any, t: Any, tname: str, op: str) -> tuple[np.ndarray, np.ndarray, np.dtype]:
    dy = _float_array(dy, "dy", op)
    t = _float_array(t, tname, op)
    _check_shape(dy, t.shape, "dy", op, f" (the shape of {tname})")
    return dy, t, np.result_type(dy, t)


def _f64(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float64, copy=False)


def _sigmoid64(v: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-v)) in float64 without overflow warnings (exp(+large) = inf -> 0)."""
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-v))


def _phi_cdf64(x: np.ndarray) -> np.ndarray:
    """The standard normal CDF, ``0.5 * erfc(-x / sqrt(2))`` (accurate in both tails)."""
    return 0.5 * np.asarray(_erfc(-x / math.sqrt(2.0)), np.float64)


def _check_slope(negative_slope: Any, op: str) -> float:
    if isinstance(negative_slope, bool | np.bool_) or not isinstance(
            negative_slope, int | float | np.integer | np.floating):
        raise TypeError(f"{op}: negative_slope must be a real number (a float such as 0.01), got "
                        f"{negative_slope!r} ({type(negative_slope).__name__})")
    return float(negative_slope)


def _check_approximate(approximate: Any, op: str) -> str:
    if not isinstance(approximate, str):
        raise TypeError(f"{op}: approximate must be a str, 'none' or 'tanh', got "
                        f"{approximate!r} ({type(approximate).__name__})")
    return check_choice(approximate, GELU_APPROXIMATE, "approximate", op=op)


# ------------------------------------------------------------------------------------------------
# sigmoid, tanh (backward from the forward output)


def sigmoid(x: Any, *, out: Any = None) -> np.ndarray:
    """``1 / (1 + exp(-x))``; sigmoid(-inf) = 0, sigmoid(inf) = 1, no overflow. Any shape."""
    x = _float_array(x, "x", "sigmoid")
    return _into(out, np.asarray(_sigmoid64(_f64(x)), x.dtype), "sigmoid")


def sigmoid_backward(dy: Any, y: Any, *, out: Any = None) -> np.ndarray:
    """``dx = dy * y * (1 - y)`` (PyTorch's sigmoid_backward), ``y`` the forward output.

    dy, y: same shape. Returns dx of that shape.
    """
    op = "sigmoid_backward"
    dy, y, dtype = _pair(dy, y, "y", op)
    y64 = _f64(y)
    return _into(out, np.asarray(_f64(dy) * y64 * (1.0 - y64), dtype), op)


def tanh(x: Any, *, out: Any = None) -> np.ndarray:
    """``tanh(x)``; tanh(+-inf) = +-1, -0.0 kept. Any shape."""
    x = _float_array(x, "x", "tanh")
    return _into(out, np.asarray(np.tanh(_f64(x)), x.dtype), "tanh")


def tanh_backward(dy: Any, y: Any, *, out: Any = None) -> np.ndarray:
    """``dx = dy * (1 - y * y)`` (PyTorch's tanh_backward), ``y`` the forward output.

    dy, y: same shape. Returns dx of that shape.
    """
    op = "tanh_backward"
    dy, y, dtype = _pair(dy, y, "y", op)
    y64 = _f64(y)
    return _into(out, np.asarray(_f64(dy) * (1.0 - y64 * y64), dtype), op)


# ------------------------------------------------------------------------------------------------
# leaky_relu (exact in the input dtype: one select and one product, the kernels' bits)


def leaky_relu(x: Any, negative_slope: float = 0.01, *, out: Any = None) -> np.ndarray:
    """``x if x > 0 else x * negative_slope`` (PyTorch's leaky_relu; NaN and -0.0 kept for a
    positive slope). The slope is rounded to x's dtype first, as PyTorch does. Any shape."""
    op = "leaky_relu"
    x = _float_array(x, "x", op)
    s = x.dtype.type(_check_slope(negative_slope, op))
    with np.errstate(over="ignore", invalid="ignore"):
        return _into(out, np.asarray(np.where(x > 0, x, x * s), x.dtype), op)


def leaky_relu_backward(dy: Any, x: Any, negative_slope: float = 0.01, *,
                        out: Any = None) -> np.ndarray:
    """``dx = dy if x > 0 else dy * negative_slope``, ``x`` the forward input.

    dy, x: same shape. Returns dx of that shape.
    """
    op = "leaky_relu_backward"
    dy, x, dtype = _pair(dy, x, "x", op)
    s = dtype.type(_check_slope(negative_slope, op))
    dy = dy.astype(dtype, copy=False)
    with np.errstate(over="ignore", invalid="ignore"):
        return _into(out, np.asarray(np.where(x > 0, dy, dy * s), dtype), op)


# ------------------------------------------------------------------------------------------------
# gelu, silu (backward from the forward input)


def _gelu64(x: np.ndarray, approximate: str) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        if approximate == "tanh":
            return x * _sigmoid64(x * (_K0 + _K1 * x * x))
        return x * _phi_cdf64(x)


def _gelu_grad64(x: np.ndarray, approximate: str) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        if approximate == "tanh":
            s = _sigmoid64(x * (_K0 + _K1 * x * x))
            one_minus_s = _sigmoid64(-x * (_K0 + _K1 * x * x))
            return s + x * s * one_minus_s * (_K0 + 3.0 * _K1 * x * x)
        return _phi_cdf64(x) + x * (_INV_SQRT_2PI * np.exp(-0.5 * x * x))


def gelu(x: Any, approximate: str = "none", *, out: Any = None) -> np.ndarray:
    """GELU: ``x * Phi(x)`` (``approximate="none"``, Phi the standard normal CDF) or
    ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`` (``"tanh"``), PyTorch's two forms.
    gelu(-inf) is NaN and -0.0 stays -0.0, as PyTorch's own kernel gives. Any shape."""
    op = "gelu"
    approximate = _check_approximate(approximate, op)
    x = _float_array(x, "x", op)
    return _into(out, np.asarray(_gelu64(_f64(x), approximate), x.dtype), op)


def gelu_backward(dy: Any, x: Any, approximate: str = "none", *, out: Any = None) -> np.ndarray:
    """``dx = dy * gelu'(x)``: ``Phi(x) + x * phi(x)`` (exact form, phi the normal density) or
    the tanh form's derivative; NaN at x = +-inf (PyTorch). ``x`` the forward input.

    dy, x: same shape. Returns dx of that shape.
    """
    op = "gelu_backward"
    approximate = _check_approximate(approximate, op)
    dy, x, dtype = _pair(dy, x, "x", op)
    with np.errstate(over="ignore", invalid="ignore"):
        dx = _f64(dy) * _gelu_grad64(_f64(x), approximate)
    return _into(out, np.asarray(dx, dtype), op)


def silu(x: Any, *, out: Any = None) -> np.ndarray:
    """SiLU (swish): ``x * sigmoid(x)``; silu(-inf) is NaN (PyTorch), -0.0 kept. Any shape."""
    x = _float_array(x, "x", "silu")
    x64 = _f64(x)
    with np.errstate(invalid="ignore"):
        return _into(out, np.asarray(x64 * _sigmoid64(x64), x.dtype), "silu")


def silu_backward(dy: Any, x: Any, *, out: Any = None) -> np.ndarray:
    """``dx = dy * s * (1 + x * (1 - s))``, ``s = sigmoid(x)`` (PyTorch's silu_backward; NaN at
    x = +-inf). ``x`` the forward input.

    dy, x: same shape. Returns dx of that shape.
    """
    op = "silu_backward"
    dy, x, dtype = _pair(dy, x, "x", op)
    x64 = _f64(x)
    s, one_minus_s = _sigmoid64(x64), _sigmoid64(-x64)
    with np.errstate(invalid="ignore"):
        return _into(out, np.asarray(_f64(dy) * s * (1.0 + x64 * one_minus_s), dtype), op)
