"""CUDA adapter: ReLU and the other activations with their backward (relu.cu, activation.cu)."""

from __future__ import annotations

from typing import Any

from ._common import (
    _F32,
    _cuda,
    _cupy_empty,
    _current_stream,
    _device,
    _f32,
    _out,
    _ptr,
    _same_shape,
)


def relu(x: Any, out: Any = None) -> Any:
    """``max(x, 0)``, NaN and -0.0 passing through (the CPU kernels' bits)."""
    x = _f32(x, "relu", "x")
    y = None if out is None else _out(out, x.shape, "relu", x=x)
    with _device("relu", x, y):
        y = _cupy_empty(x.shape, _F32) if y is None else y
        _cuda.relu(x.data.ptr, y.data.ptr, x.size, _current_stream().ptr)
    return y


def relu_backward(dy: Any, y: Any, out: Any = None) -> Any:
    """``dy`` where ``y > 0`` (a NaN y passes dy), else 0."""
    op = "relu_backward"
    dy, y = _f32(dy, op, "dy"), _f32(y, op, "y")
    if dy.shape != y.shape:
        _same_shape(dy, y, op, "dy", "y")
    dx = None if out is None else _out(out, dy.shape, op, dy=dy, y=y)
    with _device(op, dy, y, dx):
        dx = _cupy_empty(dy.shape, _F32) if dx is None else dx
        _cuda.relu_backward(dy.data.ptr, y.data.ptr, dx.data.ptr, dy.size, _current_stream().ptr)
    return dx


def _act_forward(op: str, x: Any, out: Any, **options: Any) -> Any:
    x = _f32(x, op, "x")
    y = None if out is None else _out(out, x.shape, op, x=x)
    with _device(op, x, y):
        y = _cupy_empty(x.shape, _F32) if y is None else y
        _cuda.activation_forward(op, _ptr(x), _ptr(y), x.size, stream=_current_stream().ptr,
                                 **options)
    return y


def _act_backward(op: str, dy: Any, t: Any, tname: str, out: Any, **options: Any) -> Any:
    name = op + "_backward"
    dy, t = _f32(dy, name, "dy"), _f32(t, name, tname)
    _same_shape(dy, t, name, "dy", tname)
    dx = None if out is None else _out(out, dy.shape, name, dy=dy, **{tname: t})
    with _device(name, dy, t, dx):
        dx = _cupy_empty(dy.shape, _F32) if dx is None else dx
        _cuda.activation_backward(op, _ptr(dy), _ptr(t), _ptr(dx), dy.size,
                                  stream=_current_stream().ptr,
                                  **options)
    return dx


def sigmoid(x: Any, out: Any = None) -> Any:
    """``1 / (1 + exp(-x))`` (the CPU kernels' algorithm)."""
    return _act_forward("sigmoid", x, out)


def sigmoid_backward(dy: Any, y: Any, out: Any = None) -> Any:
    """``dy * (1 - y) * y`` from the forward output."""
    return _act_backward("sigmoid", dy, y, "y", out)


def tanh(x: Any, out: Any = None) -> Any:
    """``tanh(x)``."""
    return _act_forward("tanh", x, out)


def tanh_backward(dy: Any, y: Any, out: Any = None) -> Any:
    """``dy * (1 - y * y)`` from the forward output."""
    return _act_backward("tanh", dy, y, "y", out)


def silu(x: Any, out: Any = None) -> Any:
    """``x * sigmoid(x)``."""
    return _act_forward("silu", x, out)


def silu_backward(dy: Any, x: Any, out: Any = None) -> Any:
    """``dy * s * (1 + x * (1 - s))`` from the forward input."""
    return _act_backward("silu", dy, x, "x", out)


def leaky_relu(x: Any, negative_slope: Any = 0.01, out: Any = None) -> Any:
    """``x if x > 0 else x * negative_slope``."""
    return _act_forward("leaky_relu", x, out, negative_slope=negative_slope)


def leaky_relu_backward(dy: Any, x: Any, negative_slope: Any = 0.01, out: Any = None) -> Any:
    """``dy if x > 0 else dy * negative_slope`` from the forward input."""
    return _act_backward("leaky_relu", dy, x, "x", out, negative_slope=negative_slope)


def gelu(x: Any, approximate: Any = "none", out: Any = None) -> Any:
    """GELU, the exact (erf) or tanh form."""
    return _act_forward("gelu", x, out, approximate=approximate)


def gelu_backward(dy: Any, x: Any, approximate: Any = "none", out: Any = None) -> Any:
    """``dy * gelu'(x)`` from the forward input."""
    return _act_backward("gelu", dy, x, "x", out, approximate=approximate)
