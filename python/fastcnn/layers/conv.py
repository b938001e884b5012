"""Conv2D: 2-D convolution with an optional activation, fused with a following max pooling's
backward when that layer offers its ``pooled_grad``, and (without an activation of its own)
with a following ReLU layer (``fused_activation="relu"``, see :mod:`fastcnn.layers`).

Shapes: x ``(N, C, H, W)``, kernel ``(K, C/groups, R, S)``, bias ``(K,)`` -> y ``(N, K, P, Q)``;
the geometry (padding in (top, left, bottom, right) order, output size) comes from
:mod:`fastcnn._geometry`, the arithmetic from :func:`fastcnn.ops.conv2d` /
:func:`fastcnn.ops.conv2d_backward`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import ops
from .._geometry import conv_output_size, conv_padding, pair
from .base import ACT_FLOPS, ACT_NEEDS_INPUT, KernelBiasMixin, Layer, activation_forward, pooled

__all__ = ["Conv2D"]


class Conv2D(KernelBiasMixin, Layer):
    """2-D convolution (cross-correlation), NCHW, kernel ``(filters, C/groups, R, S)``.

    Args:
        filters: number of output channels K.
        kernel_size: int or (R, S).
        strides: int or (h, w).
        padding: ``"valid"`` (none), ``"same"`` (output ``ceil(H / stride)``, TensorFlow's
            rule: an odd total puts the extra row/column at the bottom/right), an int or
            ``(h, w)`` (symmetric zero padding).
        dilation_rate: int or (h, w).
        groups: grouped convolution; C and filters must both be divisible by it.
        activation: None, "linear", "relu", "sigmoid", "tanh", "softmax" (over channels),
            "leaky_relu" (slope 0.2, Keras' default), "gelu" (exact), "silu" / "swish".
        use_bias: add a bias ``(filters,)``.
        kernel_initializer, bias_initializer: see :mod:`fastcnn.initializers`.

    Shapes: x ``(N, C, H, W)`` -> y ``(N, K, P, Q)``.
    """

    default_name = "conv2d"
    has_activation = True

    def __init__(self, filters: int, kernel_size: int | tuple[int, int], strides: Any = 1,
                 padding: str | int | tuple[int, int] = "valid", dilation_rate: Any = 1,
                 groups: int = 1, activation: str | None = None, use_bias: bool = True,
                 kernel_initializer: Any = "glorot_uniform", bias_initializer: Any = "zeros",
                 *, name: str | None = None, trainable: bool = True) -> None:
        super().__init__(name=name, trainable=trainable)
        lbl = "Conv2D"
        if isinstance(filters, bool) or not isinstance(filters, int | np.integer) or filters < 1:
            raise ValueError(f"{lbl}: filters must be a positive int, got {filters!r}")
        if isinstance(groups, bool) or not isinstance(groups, int | np.integer) or groups < 1:
            raise ValueError(f"{lbl}: groups must be a positive int, got {groups!r}")
        self.filters = int(filters)
        self.kernel_size = pair(kernel_size, "kernel_size", op=lbl, minimum=1)
        self.strides = pair(strides, "strides", op=lbl, minimum=1)
        self.dilation_rate = pair(dilation_rate, "dilation_rate", op=lbl, minimum=1)
        if isinstance(padding, str):
            if padding.lower() not in ("valid", "same"):
                raise ValueError(f"{lbl}: padding must be 'valid', 'same', an int or a pair, "
                                 f"got {padding!r}")
            self.padding: str | tuple[int, int] = padding.lower()
        else:
            self.padding = pair(padding, "padding", op=lbl, minimum=0)
        self.groups = int(groups)
        if self.filters % self.groups:
            raise ValueError(f"{lbl}: filters ({self.filters}) must be divisible by groups "
                             f"({self.groups})")
        self._init_kernel_bias(activation, use_bias, kernel_initializer, bias_initializer, lbl)

    def _build(self, input_shape, rng):
        if len(input_shape) != 3:
            raise ValueError(f"{self._label()}: expects inputs of shape (C, H, W), got "
                             f"{input_shape}")
        C, H, W = input_shape
        if C % self.groups:
            raise ValueError(f"{self._label()}: input channels ({C}) must be divisible by "
                             f"groups ({self.groups})")
        R, S = self.kernel_size
        pads = conv_padding(self.padding, H, W, R, S, self.strides, self.dilation_rate,
                            op=self._label())  # (top, left, bottom, right)
        P, Q = conv_output_size(H, W, R, S, self.strides, pads, self.dilation_rate,
                                op=self._label())
        K, Cg = self.filters, C // self.groups
        self.params = {"kernel": np.ascontiguousarray(
            self.kernel_initializer((K, Cg, R, S), rng), dtype=np.float32)}
        if self.use_bias:
            self.params["bias"] = np.ascontiguousarray(
                self.bias_initializer((K,), rng), dtype=np.float32)
        out = K * P * Q
        self.flops = 2 * out * Cg * R * S + (out if self.use_bias else 0) \
            + ACT_FLOPS[self.activation] * out
        return (K, P, Q)

    def _pad_arg(self) -> Any:
        return self.padding if isinstance(self.padding, str) else tuple(self.padding)

    def forward(self, x, training=False, apply_activation=True, fused_activation=None,
                return_batch_stats=False):
        """``fused_activation="relu"`` (a layer without an activation of its own, for the ReLU
        layer that alone reads its output): returns ``relu(conv(x))`` from the GEMM epilogue;
        :meth:`backward` then takes the gradient of that output.

        ``return_batch_stats=True`` (CPU, a layer without an activation, for the training-mode
        BatchNormalization that alone reads its output: the models plan it with
        :func:`fastcnn.layers.normalization.batch_stats_fusion`): returns ``(y, (mean, var))``,
        y's per-channel batch statistics gathered in the convolution's epilogue
        (:func:`fastcnn.ops.conv2d_stats`), for that layer's ``forward(y, training,
        batch_stats=...)``."""
        if return_batch_stats:
            return self._forward_with_stats(x, training, apply_activation, fused_activation)
        act = self._pass_activation(apply_activation, fused_activation)
        kw: dict[str, Any] = {}
        if act == "relu":
            kw["relu"] = True  # ReLU in the GEMM epilogue (a fastcnn.ops extension)
        z = ops.conv2d(x, self.params["kernel"], self.params.get("bias"), stride=self.strides,
                       padding=self._pad_arg(), dilation=self.dilation_rate, groups=self.groups,
                       out=self._pooled_output(x), **kw)  # a reused buffer: no page faults
        y = z if act in (None, "relu") else activation_forward(
            z, act, self.negative_slope, self.approximate,
            None if act == "softmax" else pooled(z.shape, z))
        self._cache = (x, y, act, z if act in ACT_NEEDS_INPUT else None) if training else None
        return y

    def _forward_with_stats(self, x: Any, training: bool, apply_activation: bool,
                            fused_activation: str | None) -> tuple[Any, tuple[Any, Any]]:
        act = self._pass_activation(apply_activation, fused_activation)
        if act is not None:
            raise ValueError(f"{self._label()}: return_batch_stats needs no activation (the "
                             f"statistics are of the convolution's output), this call applies "
                             f"{act!r}")
        y, mean, var = ops.conv2d_stats(
            x, self.params["kernel"], self.params.get("bias"), stride=self.strides,
            padding=self._pad_arg(), dilation=self.dilation_rate, groups=self.groups,
            out=self._pooled_output(x))
        self._cache = (x, y, None, None) if training else None
        return y, (mean, var)

    def accepts_pooled_grad(self) -> bool:
        """Whether :meth:`backward` can take the next layer's ``pooled_grad`` (a max pooling
        then routed inside the convolution's backward, fused with its ReLU's): after a training
        forward whose activation is none or ReLU."""
        return self._cache is not None and self._cache[2] in (None, "relu")

    def backward(self, dy, accumulate=False, pooled_grad=None):
        """``dy`` (N, K, P, Q) -> ``dx`` (N, C, H, W), or None when :attr:`compute_dx` is
        False (``ops.conv2d_backward`` then skips that third of the work).

        ``pooled_grad``: the :meth:`~fastcnn.layers.Layer.offer_pooled_grad` arguments of the
        max pooling after this layer; ``dy`` is then the gradient of that pooling's output
        (N, K, P', Q') and the pooling's backward runs inside the convolution's (see
        :meth:`accepts_pooled_grad`)."""
        x, y, act, z = self._need_cache()
        kw: dict[str, Any] = dict(pooled_grad or {})
        if act == "relu":  # own or fused: the ReLU's backward inside the conv's backward
            dz, kw["relu_y"] = dy, y
        elif pooled_grad:
            if act is not None:
                raise ValueError(f"{self._label()}: pooled_grad needs no activation or ReLU, "
                                 f"this layer has {act!r}")
            dz = dy
        else:
            dz = self._pass_backward(dy, z, y, act)
        dx, dw, db = ops.conv2d_backward(dz, x, self.params["kernel"], stride=self.strides,
                                         padding=self._pad_arg(), dilation=self.dilation_rate,
                                         groups=self.groups,
                                         bias=self.use_bias and self.trainable,
                                         compute_dx=self.compute_dx,
                                         compute_dw=self.trainable,
                                         dx_out=pooled(x.shape, x) if self.compute_dx else None,
                                         **kw)
        self._store_kernel_bias(dw, db, accumulate)
        return dx

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": list(self.kernel_size),
            "strides": list(self.strides),
            "padding": self.padding if isinstance(self.padding, str) else list(self.padding),
            "dilation_rate": list(self.dilation_rate),
            "groups": self.groups,
            **self._kernel_bias_config(),
        }


