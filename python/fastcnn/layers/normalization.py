"""BatchNormalization, and its folding into the Conv2D / Dense before it at inference.

Shapes: x ``(N, C)``, ``(N, C, L)`` or ``(N, C, H, W)`` -> y, the same shape; the weights are
per channel C (axis 1, the channel axis of NCHW and the feature axis of ``(N, features)``):
``gamma``, ``beta`` (trained), ``moving_mean``, ``moving_variance`` (state, not trained). The
arithmetic is :func:`fastcnn.ops.batch_norm` / :func:`fastcnn.ops.batch_norm_backward`
(PyTorch's conventions: this layer converts Keras' ``momentum`` to PyTorch's ``1 - momentum``).

Folding
-------
At inference (``predict``, ``evaluate``, ``model(x)`` without ``training``, ONNX export) a
BatchNormalization right after a Conv2D or Dense without an activation is the affine map
``y = (z - mean) * gamma * invstd + beta`` of that layer's output ``z``, per output channel
``k``, with ``invstd = 1 / sqrt(moving_variance + epsilon)``. :func:`fold_batch_norm` writes it
into a copy of the layer: ``kernel'[k] = kernel[k] * gamma[k] * invstd[k]``, ``bias'[k] = (bias[k]
- mean[k]) * gamma[k] * invstd[k] + beta[k]``, one convolution / GEMM instead of that plus one more
pass over the output. :func:`inference_layers` applies it to a chain of layers. The folded
weights are computed from the current weights at every call (a kernel-sized multiply, small
next to a batch's convolution), so they are never stale after training, ``set_weights`` or
loading; the model's own layers are never modified.
A ReLU layer that alone reads a folded BatchNormalization's output runs inside the folded copy's
kernel (``forward(x, fused_activation="relu")``, the GEMM epilogue): Conv -> BN -> ReLU is one
convolution call at inference (the models plan it, :func:`fastcnn.layers.base.fused_activation`).

Fused ReLU
----------
A BatchNormalization whose output feeds only a ReLU (``layers.ReLU`` or ``Activation("relu")``)
and that is not folded runs it in its own pass (in training, and at inference when it is not
folded): :meth:`BatchNormalization.accepts_fused_activation` tells the model, which then calls
``forward(x, training, fused_activation="relu")`` (:func:`fastcnn.ops.batch_norm` with
``relu=True``) and runs the ReLU layer as a pass-through; the backward masks the gradient inside
:func:`fastcnn.ops.batch_norm_backward` (``relu_y``). The bits are the unfused pair's.

Batch statistics from the convolution (training, CPU)
-----------------------------------------------------
A trainable BatchNormalization whose input is written by a Conv2D without an activation (the
BN its only reader; output planes of >= 16x16 pixels, where it pays) takes its batch statistics
from that convolution's epilogue: the models
plan the pair with :func:`batch_stats_fusion` and call ``conv.forward(x, training,
return_batch_stats=True)`` (:func:`fastcnn.ops.conv2d_stats`), then ``bn.forward(y, training,
batch_stats=(mean, var))`` (:func:`fastcnn.ops.batch_norm`'s ``batch_stats``), which skips its
own reduction pass over ``y``; both backward passes are unchanged. The statistics agree with
BN's own to float64 rounding (different fixed chunks, both float64 combines), not bit for bit.
"""

from __future__ import annotations

import copy
import functools
import inspect
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import initializers as _init
from .. import ops
from .._args import check_bool, is_int
from .._arrays import array_module
from .base import Layer, pooled
from .conv import Conv2D
from .core import Dense

__all__ = ["BatchNormalization", "batch_stats_fusion", "fold_batch_norm", "inference_layers"]


def _check_fraction(value: Any, name: str, low_open: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"BatchNormalization: {name} must be a float, got {value!r} "
                        f"({type(value).__name__})")
    v = float(value)
    if low_open:
        if not (v > 0.0 and math.isfinite(v)):
            raise ValueError(f"BatchNormalization: {name} must be a finite float > 0, got "
                             f"{value!r}")
    elif not 0.0 <= v <= 1.0:
        raise ValueError(f"BatchNormalization: {name} must be in [0, 1] (Keras' convention: "
                         f"moving = momentum * moving + (1 - momentum) * batch), got {value!r}")
    return v


class BatchNormalization(Layer):
    """Batch normalization over the channel axis (Keras' ``BatchNormalization``).

    In training (``fit``, ``model(x, training=True)``) it normalises with the batch's mean and
    (biased) variance over every axis but the channel axis and updates the moving statistics,
    ``moving = momentum * moving + (1 - momentum) * batch`` (the moving variance takes the
    unbiased batch variance, as PyTorch does; Keras takes the biased one); at inference it
    normalises with the moving statistics. A frozen layer (``trainable=False``) runs in inference
    mode in training too, as in Keras 3 (its moving statistics stay as they are).

    Args:
        axis: the channel axis of the batch, 1 (the default: channels-first NCHW, and the
            feature axis of ``(N, features)``), or the same axis counted from the end (-3 for
            ``(N, C, H, W)``, -1 for ``(N, features)``). Other axes are a ValueError at build.
        momentum: of the moving statistics, in [0, 1] (Keras' 0.99 is PyTorch's 0.01).
        epsilon: added to the variance, > 0.
        center: learn an offset ``beta`` (else 0).
        scale: learn a factor ``gamma`` (else 1).
        beta_initializer, gamma_initializer, moving_mean_initializer,
        moving_variance_initializer: see :mod:`fastcnn.initializers`.

    Weights: ``gamma`` (with ``scale``), ``beta`` (with ``center``), ``moving_mean``,
    ``moving_variance``, each ``(C,)``, in that order (Keras'); ``summary()`` counts 4 per channel,
    2 of them trainable.

    Shapes: x ``(N, C)``, ``(N, C, L)`` or ``(N, C, H, W)`` -> y, the same shape.
    """

    default_name = "batch_normalization"
    non_trainable_keys = frozenset({"moving_mean", "moving_variance"})

    def __init__(self, axis: int = 1, momentum: float = 0.99, epsilon: float = 1e-3,
                 center: bool = True, scale: bool = True, beta_initializer: Any = "zeros",
                 gamma_initializer: Any = "ones", moving_mean_initializer: Any = "zeros",
                 moving_variance_initializer: Any = "ones", *, name: str | None = None,
                 trainable: bool = True) -> None:
        super().__init__(name=name, trainable=trainable)
        lbl = "BatchNormalization"
        if not is_int(axis):
            raise TypeError(f"{lbl}: axis must be an int (1, the channel axis of NCHW), got "
                            f"{axis!r} ({type(axis).__name__})")
        self.axis = int(axis)
        self.momentum = _check_fraction(momentum, "momentum", low_open=False)
        self.epsilon = _check_fraction(epsilon, "epsilon", low_open=True)
        self.center = check_bool(center, "center", op=lbl)
        self.scale = check_bool(scale, "scale", op=lbl)
        self.beta_initializer = _init.get(beta_initializer)
        self.gamma_initializer = _init.get(gamma_initializer)
        self.moving_mean_initializer = _init.get(moving_mean_initializer)
        self.moving_variance_initializer = _init.get(moving_variance_initializer)

    def _build(self, input_shape, rng):
        rank = len(input_shape) + 1
        if rank > 4:
            raise ValueError(f"{self._label()}: expects inputs (N, C), (N, C, L) or "
                             f"(N, C, H, W), got per-sample shape {input_shape}")
        if (self.axis + rank if self.axis < 0 else self.axis) != 1:
            raise ValueError(f"{self._label()}: axis={self.axis} is not the channel axis of "
                             f"inputs (N, {', '.join(map(str, input_shape))}); fastcnn is "
                             f"channels-first (NCHW): normalise over axis=1 (the default; "
                             f"{1 - rank} from the end), transposing the data if its channels "
                             f"are elsewhere")
        C = input_shape[0]

        def make(init: Any) -> np.ndarray:
            return np.ascontiguousarray(init((C,), rng), dtype=np.float32)

        self.params = {}
        if self.scale:
            self.params["gamma"] = make(self.gamma_initializer)
        if self.center:
            self.params["beta"] = make(self.beta_initializer)
        self.params["moving_mean"] = make(self.moving_mean_initializer)
        self.params["moving_variance"] = make(self.moving_variance_initializer)
        self.flops = 2 * math.prod(input_shape)  # a multiply-add per element (inference)
        return input_shape

    @property
    def torch_momentum(self) -> float:
        """PyTorch's momentum, ``1 - momentum`` (rounded to 12 decimals: 0.99 -> 0.01)."""
        return round(1.0 - self.momentum, 12)

    def accepts_fused_activation(self, activation: str) -> bool:
        """True for ``"relu"``: :meth:`forward` can apply a following ReLU in its own pass."""
        return activation == "relu"

    def forward(self, x, training=False, fused_activation=None, batch_stats=None):
        """``fused_activation="relu"``: returns ``relu(bn(x))`` (the fused ReLU, see the module
        docstring); :meth:`backward` then takes the gradient of that output.

        ``batch_stats=(mean, var)``: x's batch statistics, gathered by the Conv2D that wrote x
        (:func:`batch_stats_fusion`); used in place of x's own in training mode (the same
        normalisation and moving statistics, one pass over x fewer), ignored otherwise."""
        if fused_activation not in (None, "relu"):
            raise ValueError(f"{self._label()}: fused_activation must be None or 'relu', got "
                             f"{fused_activation!r}")
        relu = fused_activation == "relu"
        use_batch = bool(training) and self.trainable  # frozen: inference mode (Keras 3)
        given = {"batch_stats": batch_stats} if use_batch and batch_stats is not None else {}
        y, mean, invstd = ops.batch_norm(
            x, self.params.get("gamma"), self.params.get("beta"), self.params["moving_mean"],
            self.params["moving_variance"], training=use_batch, momentum=self.torch_momentum,
            eps=self.epsilon, relu=relu, out=pooled(x.shape, x), **given)  # reused: no faults
        self._cache = (x, mean, invstd, use_batch, y if relu else None) if training else None
        return y

    def backward(self, dy, accumulate=False):
        x, mean, invstd, batch_stats, relu_y = self._need_cache()
        want_dw = self.trainable and (self.scale or self.center)
        dx, dgamma, dbeta = ops.batch_norm_backward(
            dy, x, self.params.get("gamma"), mean, invstd, training=batch_stats,
            compute_dx=self.compute_dx, compute_dw=want_dw, relu_y=relu_y,
            dx_out=pooled(x.shape, x) if self.compute_dx else None)
        if self.scale:
            self._store_grad("gamma", dgamma, accumulate)
        if self.center:
            self._store_grad("beta", dbeta, accumulate)
        return dx

    def folded_scale_shift(self) -> tuple[Any, Any]:
        """The inference map as ``y = x * scale + shift`` per channel: ``scale = gamma *
        invstd``, ``shift = beta - moving_mean * scale`` (``(C,)`` float32 each, on the layer's
        device), from the current weights (computed in float64)."""
        p = self.params
        xp = array_module(p["moving_mean"])
        invstd = 1.0 / xp.sqrt(p["moving_variance"].astype(np.float64) + self.epsilon)
        scale = invstd * p["gamma"] if self.scale else invstd
        shift = -p["moving_mean"] * scale
        if self.center:
            shift = shift + p["beta"]
        return scale.astype(np.float32), shift.astype(np.float32)

    def get_config(self):
        return {
            **super().get_config(),
            "axis": self.axis,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            "beta_initializer": _init.serialize(self.beta_initializer),
            "gamma_initializer": _init.serialize(self.gamma_initializer),
            "moving_mean_initializer": _init.serialize(self.moving_mean_initializer),
            "moving_variance_initializer": _init.serialize(self.moving_variance_initializer),
        }


# --------------------------------------------------------------------------------------------
# the batch statistics in the convolution's epilogue (training)


#: Output planes (P * Q) from which gathering the statistics in the convolution pays: the
#: gathering costs a kernel call per plane chunk, about as much as batch_norm's own pass for
#: 8x8 planes (ResNet-20 batch 128, 1 thread, interleaved CPU time: 64 @8x8 0.15-0.25 ms a layer
#: slower fused, 16 @32x32 and 32 @16x16 0.3-0.5 ms faster).
_MIN_PLANE = 256


def batch_stats_fusion(layer: Layer, consumer: Layer) -> bool:
    """Whether, in a training forward, ``layer`` hands ``consumer`` (the only reader of its
    output) the batch statistics of that output: a Conv2D without an activation on the CPU
    (``forward(x, training, return_batch_stats=True)``, :func:`fastcnn.ops.conv2d_stats`)
    with output planes of at least 256 pixels (16x16; smaller ones gain nothing), followed by a
    trainable BatchNormalization over the channel axis of its 4-D output (``forward(y,
    training, batch_stats=...)``), both with those forward arguments (a subclass that overrides
    them runs apart). False otherwise: the two then run unfused, with the same semantics. The
    models call this on each (producer, only consumer) pair of a training pass.

    Private switch for A/B measurements: ``FASTCNN_FUSE_BN_STATS=0`` (read on every call)
    turns the fusion off."""
    if os.environ.get("FASTCNN_FUSE_BN_STATS", "1") == "0":
        return False
    if not (isinstance(layer, Conv2D) and isinstance(consumer, BatchNormalization)):
        return False
    if layer is consumer or layer.activation is not None or not layer.built \
            or not consumer.built or not consumer.trainable or consumer.axis % 4 != 1:
        return False
    if not isinstance(layer.params.get("kernel"), np.ndarray):
        return False  # on CUDA: unfused (conv2d_stats is CPU only)
    out = layer.output_shape
    if out is None or len(out) != 3 or out[1] * out[2] < _MIN_PLANE:
        return False
    return _takes(type(layer).forward, "return_batch_stats") \
        and _takes(type(consumer).forward, "batch_stats")


@functools.lru_cache(maxsize=64)
def _takes(forward: Any, name: str) -> bool:
    """Whether a layer class's ``forward`` has the parameter ``name``."""
    try:
        return name in inspect.signature(forward).parameters
    except (TypeError, ValueError):  # pragma: no cover - a builtin without a signature
        return False


# --------------------------------------------------------------------------------------------
# folding


def fold_batch_norm(layer: Layer, bn: Layer) -> Layer | None:
    """A copy of ``layer`` (a built Conv2D or Dense) that computes ``bn(layer(x))`` at inference,
    ``bn`` (a built BatchNormalization) folded into its kernel and bias (see the module
    docstring); None when the pair does not fold (another layer type, or ``layer`` has an
    activation between the two). The copy has the layer's name and settings, and a bias; it is
    for inference only (no gradients) and the originals are untouched."""
    if not (isinstance(layer, Conv2D | Dense) and isinstance(bn, BatchNormalization)
            and layer.built and bn.built and layer.activation is None):
        return None
    p = layer.params
    kernel = p["kernel"]
    xp = array_module(kernel)
    scale, shift = bn.folded_scale_shift()
    shape = (-1,) + (1,) * (kernel.ndim - 1)  # (K, 1, 1, 1) for a conv, (units, 1) for Dense
    folded_kernel = xp.ascontiguousarray((kernel * scale.reshape(shape)).astype(np.float32))
    bias = shift if "bias" not in p else (p["bias"].astype(np.float64) * scale + shift)
    folded = copy.copy(layer)
    folded.params = {"kernel": folded_kernel,
                     "bias": xp.ascontiguousarray(bias.astype(np.float32))}
    folded.grads = {}
    folded.use_bias = True
    folded._cache = None
    return folded


def inference_layers(layers: Sequence[Layer]) -> list[Layer]:
    """``layers`` (a built chain, each feeding the next) for an inference pass: every Conv2D /
    Dense without an activation that is followed by a BatchNormalization replaced, with it, by
    :func:`fold_batch_norm`'s folded copy. The same list (a new list object) when nothing
    folds; the layers themselves are never modified."""
    out: list[Layer] = []
    i = 0
    while i < len(layers):
        folded = fold_batch_norm(layers[i], layers[i + 1]) if i + 1 < len(layers) else None
        if folded is not None:
            out.append(folded)
            i += 2
        else:
            out.append(layers[i])
            i += 1
    return out
