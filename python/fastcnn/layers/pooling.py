"""The pooling layers: MaxPool2D (Keras' "valid" / "same" padding; it offers its backward as a
``pooled_grad`` to a preceding Conv2D, see :mod:`fastcnn.layers`), AveragePooling2D,
GlobalAveragePooling2D and GlobalMaxPooling2D.

Shapes: x ``(N, C, H, W)`` -> y ``(N, C, P, Q)`` (the global ones: ``(N, C)``, or
``(N, C, 1, 1)`` with ``keepdims=True``); the geometry comes from :mod:`fastcnn._geometry` (and
:func:`same_plan`, shared by the max and average poolings), the arithmetic from
:mod:`fastcnn.ops` (``max_pool2d``, ``avg_pool2d``, ``global_avg_pool2d``,
``global_max_pool2d`` and their backward).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import ops
from .._args import check_bool
from .._arrays import array_module
from .._geometry import pair, pool_output_size, same_padding
from .base import Layer, pooled

__all__ = ["AveragePooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D", "MaxPool2D",
           "same_plan"]


def same_plan(H: int, W: int, pool_size: tuple[int, int], strides: tuple[int, int],
              dilation: tuple[int, int] = (1, 1)) -> tuple[
        tuple[int, int], bool, tuple[int, int, int, int] | None, tuple[int, int]]:
    """How a pooling with Keras' ``"same"`` padding runs on the ops: ``(padding, ceil_mode,
    explicit_pad, (P, Q))``. The total padding is TensorFlow's rule for the dilated window
    (:func:`fastcnn._geometry.same_padding`, the odd one at the bottom/right). When it is
    symmetric, or one extra row/column at the end with stride >= 2, and the per-side padding
    is at most half the (undilated) window (the ops' rule), the ops express it with
    ``padding=(top, left)`` and ``ceil_mode``; otherwise ``explicit_pad`` is
    ``(top, left, bottom, right)``, for the layer to pad explicitly first."""
    (kh, kw), (sh, sw), (dh, dw) = pool_size, strides, dilation
    P, Q = -(-H // sh), -(-W // sw)
    t, b = same_padding(H, kh, sh, dh)
    l, r = same_padding(W, kw, sw, dw)
    ok_h = b == t or (b == t + 1 and sh >= 2)
    ok_w = r == l or (r == l + 1 and sw >= 2)
    if ok_h and ok_w:
        ceil = (b != t) or (r != l)
        try:  # the ops' geometry (padding <= pool_size // 2, no window all padding) must agree
            ok = pool_output_size(H, W, pool_size, strides, (t, l), dilation, ceil) == (P, Q)
        except ValueError:
            ok = False
        if ok:
            return (t, l), ceil, None, (P, Q)
    return (0, 0), False, (t, l, b, r), (P, Q)


def _check_padding(padding: Any, layer: str) -> str:
    if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
        raise ValueError(f"{layer}: padding must be 'valid' or 'same', got {padding!r}")
    return padding.lower()


def _image_shape(layer: Layer, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise ValueError(f"{layer._label()}: expects inputs of shape (C, H, W), got "
                         f"{input_shape}")
    C, H, W = input_shape
    return C, H, W


class MaxPool2D(Layer):
    """2-D max pooling, NCHW.

    Args:
        pool_size: int or (h, w) window.
        strides: int, (h, w) or None (= ``pool_size``).
        padding: ``"valid"`` (no padding, windows that don't fit are dropped) or ``"same"``
            (TensorFlow's rule: output ``ceil(H / stride)``; the window is padded with -inf,
            an odd total padding puts the extra row/column at the bottom/right; with a dilation
            the total is that of the dilated window, ``dilation * (pool_size - 1) + 1``).
        dilation_rate: int or (h, w), >= 1: the spacing between the window's taps (PyTorch's
            ``MaxPool2d(dilation=...)``, ONNX's ``dilations``); 1 = a dense window.

    ``"same"`` runs as a single :func:`fastcnn.ops.max_pool2d` call when the padding can be
    expressed by it (symmetric padding, or one extra row/column at the end with stride >= 2,
    via ``ceil_mode``); otherwise (e.g. an even window with stride 1) the input is padded with
    -inf explicitly first, which costs a copy. With that explicit padding, a window whose real
    elements are all -inf sends its gradient to the padding (i.e. it is dropped).

    Shapes: x ``(N, C, H, W)`` -> y ``(N, C, P, Q)``.
    """

    default_name = "max_pool2d"

    def __init__(self, pool_size: int | tuple[int, int] = 2, strides: Any = None,
                 padding: str = "valid", *, dilation_rate: int | tuple[int, int] = 1,
                 name: str | None = None, trainable: bool = True) -> None:
        super().__init__(name=name, trainable=trainable)
        self.pool_size = pair(pool_size, "pool_size", op="MaxPool2D", minimum=1)
        self.strides = self.pool_size if strides is None else pair(strides, "strides",
                                                                   op="MaxPool2D", minimum=1)
        self.padding = _check_padding(padding, "MaxPool2D")
        self.dilation_rate = pair(dilation_rate, "dilation_rate", op="MaxPool2D", minimum=1)
        # ops arguments, resolved at build
        self._ops_padding: tuple[int, int] = (0, 0)
        self._ceil_mode = False
        self._explicit_pad: tuple[int, int, int, int] | None = None  # (top, left, bottom, right)

    def _build(self, input_shape, rng):
        C, H, W = _image_shape(self, input_shape)
        kh, kw = self.pool_size
        self._ops_padding, self._ceil_mode, self._explicit_pad = (0, 0), False, None
        if self.padding == "valid":
            P, Q = pool_output_size(H, W, self.pool_size, self.strides, 0, self.dilation_rate,
                                    op=self._label())
        else:
            self._ops_padding, self._ceil_mode, self._explicit_pad, (P, Q) = same_plan(
                H, W, self.pool_size, self.strides, self.dilation_rate)
        self.flops = C * P * Q * (kh * kw - 1)
        return (C, P, Q)

    def _pool_kwargs(self) -> dict[str, Any]:
        """The resolved :func:`fastcnn.ops.max_pool2d` options (besides the window): they are
        also torch's ``MaxPool2d`` arguments."""
        return {"stride": self.strides, "padding": self._ops_padding,
                "dilation": self.dilation_rate, "ceil_mode": self._ceil_mode}

    def forward(self, x, training=False):
        if self._explicit_pad is not None:
            t, l, b, r = self._explicit_pad
            x = array_module(x).pad(x, ((0, 0), (0, 0), (t, b), (l, r)),
                                    constant_values=-np.inf)
        out = None if self._explicit_pad is not None else self._pooled_output(x)  # reused
        if training:
            y, idx = ops.max_pool2d(x, self.pool_size, return_indices=True, out=out,
                                    **self._pool_kwargs())
            self._cache = (x, idx)
        else:
            y = ops.max_pool2d(x, self.pool_size, out=out, **self._pool_kwargs())
            self._cache = None
        return y

    def offer_pooled_grad(self) -> dict[str, Any] | None:
        """After ``forward(x, training=True)``: the :func:`fastcnn.ops.conv2d_backward` pooling
        arguments (``pool_indices``, ``pool_size``, ``pool_stride``, ``pool_padding``,
        ``pool_ceil_mode``) that route a gradient of this layer's output back through it inside
        the previous layer's backward (``backward(..., pooled_grad=...)``); None when this
        pooling can't be expressed that way (Keras "same" padding as an explicit -inf pad, or
        a dilation: the fused conv backward's pooling has no dilation argument; the gradient
        then goes through this layer's own :meth:`backward`). Offering consumes the forward
        cache."""
        if self._cache is None or self._explicit_pad is not None or \
                self.dilation_rate != (1, 1):
            return None
        _, idx = self._cache
        self._cache = None  # consumed: the gradient is routed by the previous layer
        return {"pool_indices": idx, "pool_size": self.pool_size, "pool_stride": self.strides,
                "pool_padding": self._ops_padding, "pool_ceil_mode": self._ceil_mode}

    def backward(self, dy, accumulate=False):
        x, idx = self._need_cache()
        out = pooled(x.shape, x) if self._explicit_pad is None else None
        dx = ops.max_pool2d_backward(dy, x, self.pool_size, indices=idx, out=out,
                                     **self._pool_kwargs())
        if self._explicit_pad is not None:
            t, l, _, _ = self._explicit_pad
            H, W = self.input_shape[1], self.input_shape[2]  # type: ignore[index]
            dx = array_module(dx).ascontiguousarray(dx[:, :, t:t + H, l:l + W])
        return dx

    def get_config(self):
        return {**super().get_config(), "pool_size": list(self.pool_size),
                "strides": list(self.strides), "padding": self.padding,
                "dilation_rate": list(self.dilation_rate)}




# --------------------------------------------------------------------------------------------
# average pooling


def _window_counts(n: int, k: int, s: int, begin: int, out: int) -> np.ndarray:
    """Per output position along one axis: how many real (not padding) elements its window
    ``[o * s - begin, o * s - begin + k)`` holds."""
    start = np.arange(out) * s - begin
    return (np.minimum(start + k, n) - np.maximum(start, 0)).astype(np.float32)


class AveragePooling2D(Layer):
    """2-D average pooling, NCHW (Keras' ``AveragePooling2D``).

    Args:
        pool_size: int or (h, w) window.
        strides: int, (h, w) or None (= ``pool_size``).
        padding: ``"valid"`` (no padding, windows that don't fit are dropped) or ``"same"``
            (output ``ceil(H / stride)``, TensorFlow's padding rule; as in Keras, the average is
            over the real elements of a window only: the padding is not counted).

    ``"same"`` runs as one :func:`fastcnn.ops.avg_pool2d` call with ``count_include_pad=False``
    when :func:`same_plan` can express it; otherwise (e.g. an even window with stride 1) the
    input is zero-padded explicitly, the window sums (``divisor_override=1``) are divided by the
    count of real elements per window (a copy more).

    Shapes: x ``(N, C, H, W)`` -> y ``(N, C, P, Q)``.
    """

    default_name = "average_pooling2d"

    def __init__(self, pool_size: int | tuple[int, int] = 2, strides: Any = None,
                 padding: str = "valid", *, name: str | None = None,
                 trainable: bool = True) -> None:
        super().__init__(name=name, trainable=trainable)
        lbl = "AveragePooling2D"
        self.pool_size = pair(pool_size, "pool_size", op=lbl, minimum=1)
        self.strides = self.pool_size if strides is None else pair(strides, "strides", op=lbl,
                                                                   minimum=1)
        self.padding = _check_padding(padding, lbl)
        self._ops_padding: tuple[int, int] = (0, 0)
        self._ceil_mode = False
        self._explicit_pad: tuple[int, int, int, int] | None = None  # (top, left, bottom, right)
        #: (P, Q) float32 NumPy: real elements per window, with _explicit_pad only (uploaded
        #: once on the GPU, _counts_dev: a step that uploads can't be a CUDA graph)
        self._counts: Any = None
        self._counts_dev: Any = None

    def _build(self, input_shape, rng):
        C, H, W = _image_shape(self, input_shape)
        (kh, kw), (sh, sw) = self.pool_size, self.strides
        self._ops_padding, self._ceil_mode, self._explicit_pad, self._counts = \
            (0, 0), False, None, None
        self._counts_dev = None
        if self.padding == "valid":
            P, Q = pool_output_size(H, W, self.pool_size, self.strides, 0, 1, op=self._label())
        else:
            self._ops_padding, self._ceil_mode, self._explicit_pad, (P, Q) = same_plan(
                H, W, self.pool_size, self.strides)
            if self._explicit_pad is not None:
                t, l, _, _ = self._explicit_pad
                self._counts = np.ascontiguousarray(np.outer(
                    _window_counts(H, kh, sh, t, P), _window_counts(W, kw, sw, l, Q)))
        self.flops = C * P * Q * kh * kw  # window - 1 adds and one multiply per output
        return (C, P, Q)

    def _pool_kwargs(self) -> dict[str, Any]:
        """The :func:`fastcnn.ops.avg_pool2d` options (besides the window)."""
        if self._explicit_pad is not None:
            return {"stride": self.strides, "divisor_override": 1}
        return {"stride": self.strides, "padding": self._ops_padding,
                "ceil_mode": self._ceil_mode, "count_include_pad": False}

    def _counts_like(self, a: Any) -> Any:
        xp = array_module(a)
        if xp is np:
            return self._counts
        if self._counts_dev is None:
            self._counts_dev = xp.asarray(self._counts)
        return self._counts_dev

    def forward(self, x, training=False):
        if self._explicit_pad is None:
            y = ops.avg_pool2d(x, self.pool_size, out=self._pooled_output(x),  # reused
                               **self._pool_kwargs())
            self._cache = x if training else None
            return y
        t, l, b, r = self._explicit_pad
        xp = array_module(x)
        xpad = xp.pad(x, ((0, 0), (0, 0), (t, b), (l, r)))
        y = ops.avg_pool2d(xpad, self.pool_size, **self._pool_kwargs()) / self._counts_like(x)
        self._cache = xpad if training else None
        return y.astype(np.float32, copy=False)

    def backward(self, dy, accumulate=False):
        x = self._need_cache()
        if self._explicit_pad is None:
            return ops.avg_pool2d_backward(dy, x, self.pool_size, out=pooled(x.shape, x),
                                           **self._pool_kwargs())
        xp = array_module(dy)
        dsum = xp.ascontiguousarray((dy / self._counts_like(dy)).astype(np.float32, copy=False))
        dxp = ops.avg_pool2d_backward(dsum, x, self.pool_size, **self._pool_kwargs())
        t, l, _, _ = self._explicit_pad
        H, W = self.input_shape[1], self.input_shape[2]  # type: ignore[index]
        return xp.ascontiguousarray(dxp[:, :, t:t + H, l:l + W])

    def get_config(self):
        return {**super().get_config(), "pool_size": list(self.pool_size),
                "strides": list(self.strides), "padding": self.padding}


# --------------------------------------------------------------------------------------------
# global pooling


class _GlobalPooling2D(Layer):
    """Shared pieces of the global poolings: ``keepdims`` and the shapes."""

    def __init__(self, keepdims: bool = False, *, name: str | None = None,
                 trainable: bool = True) -> None:
        super().__init__(name=name, trainable=trainable)
        self.keepdims = check_bool(keepdims, "keepdims", op=type(self).__name__)

    def _build(self, input_shape, rng):
        C, H, W = _image_shape(self, input_shape)
        self.flops = C * H * W  # one add / compare per element
        return (C, 1, 1) if self.keepdims else (C,)

    def _shaped(self, y: Any) -> Any:
        return y.reshape(y.shape[0], y.shape[1], 1, 1) if self.keepdims else y

    def _flat_grad(self, dy: Any) -> Any:
        return array_module(dy).ascontiguousarray(dy).reshape(dy.shape[0], dy.shape[1])

    def get_config(self):
        return {**super().get_config(), "keepdims": self.keepdims}


class GlobalAveragePooling2D(_GlobalPooling2D):
    """The mean over H and W of every channel (Keras' ``GlobalAveragePooling2D``).

    Args:
        keepdims: keep the spatial axes, as size 1.

    Shapes: x ``(N, C, H, W)`` -> y ``(N, C)`` (``(N, C, 1, 1)`` with ``keepdims``).
    """

    default_name = "global_average_pooling2d"

    def forward(self, x, training=False):
        self._cache = x if training else None
        return self._shaped(ops.global_avg_pool2d(x))

    def backward(self, dy, accumulate=False):
        x = self._need_cache()
        return ops.global_avg_pool2d_backward(self._flat_grad(dy), x, out=pooled(x.shape, x))


class GlobalMaxPooling2D(_GlobalPooling2D):
    """The maximum over H and W of every channel (Keras' ``GlobalMaxPooling2D``; the gradient
    goes to the first maximum, NaN wins, as in MaxPool2D).

    Args:
        keepdims: keep the spatial axes, as size 1.

    Shapes: x ``(N, C, H, W)`` -> y ``(N, C)`` (``(N, C, 1, 1)`` with ``keepdims``).
    """

    default_name = "global_max_pooling2d"

    def forward(self, x, training=False):
        if training:
            y, idx = ops.global_max_pool2d(x, return_indices=True)
            self._cache = (x, idx)
        else:
            y = ops.global_max_pool2d(x)
            self._cache = None
        return self._shaped(y)

    def backward(self, dy, accumulate=False):
        x, idx = self._need_cache()
        return ops.global_max_pool2d_backward(self._flat_grad(dy), x, indices=idx,
                                              out=pooled(x.shape, x))
