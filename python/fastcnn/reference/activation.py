"""Reference activations and their gradients."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._checks import _check_shape, _float_array, _into


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
