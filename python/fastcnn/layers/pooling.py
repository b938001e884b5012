"""MaxPool2D: 2-D max pooling (Keras' "valid" / "same" padding) that offers its backward as a
``pooled_grad`` to a preceding Conv2D (see :mod:`fastcnn.layers`).

Shapes: x ``(N, C, H, W)`` -> y ``(N, C, P, Q)``; the geometry comes from
:mod:`fastcnn._geometry`, the arithmetic from :func:`fastcnn.ops.max_pool2d` /
:func:`fastcnn.ops.max_pool2d_backward`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import ops
from .._arrays import array_module
from .._geometry import pair, pool_output_size, same_padding
from .base import Layer

__all__ = ["MaxPool2D"]


class MaxPool2D(Layer):
    """2-D max pooling, NCHW.

    Args:
        pool_size: int or (h, w) window.
        strides: int, (h, w) or None (= ``pool_size``).
        padding: ``"valid"`` (no padding, windows that don't fit are dropped) or ``"same"``
            (TensorFlow's rule: output ``ceil(H / stride)``; the window is padded with -inf,
            an odd total padding puts the extra row/column at the bottom/right).

    ``"same"`` runs as a single :func:`fastcnn.ops.max_pool2d` call when the padding can be
    expressed by it (symmetric padding, or one extra row/column at the end with stride >= 2,
    via ``ceil_mode``); otherwise (e.g. an even window with stride 1) the input is padded with
    -inf explicitly first, which costs a copy. With that explicit padding, a window whose real
    elements are all -inf sends its gradient to the padding (i.e. it is dropped).

    Shapes: x ``(N, C, H, W)`` -> y ``(N, C, P, Q)``.
    """

    default_name = "max_pool2d"

    def __init__(self, pool_size: int | tuple[int, int] = 2, strides: Any = None,
                 padding: str = "valid", *, name: str | None = None,
                 trainable: bool = True) -> None:
        super().__init__(name=name, trainable=trainable)
        self.pool_size = pair(pool_size, "pool_size", op="MaxPool2D", minimum=1)
        self.strides = self.pool_size if strides is None else pair(strides, "strides",
                                                                   op="MaxPool2D", minimum=1)
        if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
            raise ValueError(f"MaxPool2D: padding must be 'valid' or 'same', got {padding!r}")
        self.padding = padding.lower()
        # ops arguments, resolved at build
        self._ops_padding: tuple[int, int] = (0, 0)
        self._ceil_mode = False
        self._explicit_pad: tuple[int, int, int, int] | None = None  # (top, left, bottom, right)

    def _build(self, input_shape, rng):
        if len(input_shape) != 3:
            raise ValueError(f"{self._label()}: expects inputs of shape (C, H, W), got "
                             f"{input_shape}")
        C, H, W = input_shape
        (kh, kw), (sh, sw) = self.pool_size, self.strides
        self._ops_padding, self._ceil_mode, self._explicit_pad = (0, 0), False, None
        if self.padding == "valid":
            P, Q = pool_output_size(H, W, self.pool_size, self.strides, 0, 1, op=self._label())
        else:
            P, Q = -(-H // sh), -(-W // sw)
            t, b = same_padding(H, kh, sh)
            l, r = same_padding(W, kw, sw)
            ok_h = b == t or (b == t + 1 and sh >= 2)
            ok_w = r == l or (r == l + 1 and sw >= 2)
            if ok_h and ok_w:
                self._ops_padding = (t, l)
                self._ceil_mode = (b != t) or (r != l)
            else:
                self._explicit_pad = (t, l, b, r)
        self.flops = C * P * Q * (kh * kw - 1)
        return (C, P, Q)

    def _pool_kwargs(self) -> dict[str, Any]:
        return {"stride": self.strides, "padding": self._ops_padding,
                "ceil_mode": self._ceil_mode}

    def forward(self, x, training=False):
        if self._explicit_pad is not None:
            t, l, b, r = self._explicit_pad
            x = array_module(x).pad(x, ((0, 0), (0, 0), (t, b), (l, r)),
                                    constant_values=-np.inf)
        if training:
            y, idx = ops.max_pool2d(x, self.pool_size, return_indices=True,
                                    **self._pool_kwargs())
            self._cache = (x, idx)
        else:
            y = ops.max_pool2d(x, self.pool_size, **self._pool_kwargs())
            self._cache = None
        return y

    def offer_pooled_grad(self) -> dict[str, Any] | None:
        """After ``forward(x, training=True)``: the :func:`fastcnn.ops.conv2d_backward` pooling
        arguments (``pool_indices``, ``pool_size``, ``pool_stride``, ``pool_padding``,
        ``pool_ceil_mode``) that route a gradient of this layer's output back through it inside
        the previous layer's backward (``backward(..., pooled_grad=...)``); None when this
        pooling can't be expressed that way (Keras "same" padding as an explicit -inf pad).
        Offering consumes the forward cache."""
        if self._cache is None or self._explicit_pad is not None:
            return None
        _, idx = self._cache
        self._cache = None  # consumed: the gradient is routed by the previous layer
        return {"pool_indices": idx, "pool_size": self.pool_size, "pool_stride": self.strides,
                "pool_padding": self._ops_padding, "pool_ceil_mode": self._ceil_mode}

    def backward(self, dy, accumulate=False):
        x, idx = self._need_cache()
        dx = ops.max_pool2d_backward(dy, x, self.pool_size, indices=idx, **self._pool_kwargs())
        if self._explicit_pad is not None:
            t, l, _, _ = self._explicit_pad
            H, W = self.input_shape[1], self.input_shape[2]  # type: ignore[index]
            dx = array_module(dx).ascontiguousarray(dx[:, :, t:t + H, l:l + W])
        return dx

    def get_config(self):
        return {**super().get_config(), "pool_size": list(self.pool_size),
                "strides": list(self.strides), "padding": self.padding}


