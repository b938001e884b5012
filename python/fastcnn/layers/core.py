"""The other layers: Dense, Activation (ReLU, Softmax, LeakyReLU), Flatten, Dropout.

Shapes: Dense ``(N, in)`` -> ``(N, units)`` with kernel ``(units, in)``; the activations and
Dropout keep the shape; Flatten ``(N, C, H, W)`` -> ``(N, C*H*W)``.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from .. import ops
from .._arrays import array_module, is_cupy
from .base import (
    ACT_FLOPS,
    ACT_NEEDS_INPUT,
    ActivationMixin,
    KernelBiasMixin,
    Layer,
    activation_forward,
    check_activation,
    check_approximate,
    check_negative_slope,
    pooled,
)

__all__ = ["Activation", "Dense", "Dropout", "Flatten", "LeakyReLU", "ReLU", "Softmax"]


class Dense(KernelBiasMixin, Layer):
    """Fully connected layer: ``y = act(x @ kernel.T + bias)``, kernel ``(units, in)``.

    Args:
        units: output features.
        activation: one of :data:`~fastcnn.layers.ACTIVATIONS` (as :class:`Conv2D`).
        use_bias, kernel_initializer, bias_initializer: as in :class:`Conv2D`.

    Shapes: x ``(N, in)`` -> y ``(N, units)``; a multi-dimensional input needs a
    :class:`Flatten` first.
    """

    default_name = "dense"
    has_activation = True

    def __init__(self, units: int, activation: str | None = None, use_bias: bool = True,
                 kernel_initializer: Any = "glorot_uniform", bias_initializer: Any = "zeros",
                 *, name: str | None = None, trainable: bool = True) -> None:
        super().__init__(name=name, trainable=trainable)
        if isinstance(units, bool) or not isinstance(units, int | np.integer) or units < 1:
            raise ValueError(f"Dense: units must be a positive int, got {units!r}")
        self.units = int(units)
        self._init_kernel_bias(activation, use_bias, kernel_initializer, bias_initializer, "Dense")

    def _build(self, input_shape, rng):
        if len(input_shape) != 1:
            raise ValueError(f"{self._label()}: expects flat inputs (features,), got "
                             f"{input_shape}; add a Flatten layer before it")
        (n_in,) = input_shape
        self.params = {"kernel": np.ascontiguousarray(
            self.kernel_initializer((self.units, n_in), rng), dtype=np.float32)}
        if self.use_bias:
            self.params["bias"] = np.ascontiguousarray(
                self.bias_initializer((self.units,), rng), dtype=np.float32)
        self.flops = 2 * self.units * n_in + (self.units if self.use_bias else 0) \
            + ACT_FLOPS[self.activation] * self.units
        return (self.units,)

    def forward(self, x, training=False, apply_activation=True, fused_activation=None):
        """``fused_activation="relu"`` (a layer without an activation of its own, for the ReLU
        layer that alone reads its output): returns ``relu(x @ kernel.T + bias)`` from the GEMM
        epilogue; :meth:`backward` then takes the gradient of that output."""
        act = self._pass_activation(apply_activation, fused_activation)
        out = self._pooled_output(x)  # a reused buffer for large outputs: no page faults
        if act == "relu":
            y = z = ops.linear(x, self.params["kernel"], self.params.get("bias"), relu=True,
                               out=out)
        else:
            z = ops.linear(x, self.params["kernel"], self.params.get("bias"), out=out)
            y = z if act is None else activation_forward(
                z, act, self.negative_slope, self.approximate,
                None if act == "softmax" else pooled(z.shape, z))
        self._cache = (x, y, act, z if act in ACT_NEEDS_INPUT else None) if training else None
        return y

    def backward(self, dy, accumulate=False):
        x, y, act, z = self._need_cache()
        dz = self._pass_backward(dy, z, y, act)
        dx, dw, db = ops.linear_backward(dz, x, self.params["kernel"],
                                         bias=self.use_bias and self.trainable,
                                         compute_dx=self.compute_dx, compute_dw=self.trainable,
                                         dx_out=pooled(x.shape, x) if self.compute_dx else None)
        self._store_kernel_bias(dw, db, accumulate)
        return dx

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            **self._kernel_bias_config(),
        }


# --------------------------------------------------------------------------------------------
# activations


class Activation(ActivationMixin, Layer):
    """Element-wise activation layer (Keras' ``Activation``): ``"relu"``, ``"sigmoid"``,
    ``"tanh"``, ``"softmax"`` (over axis 1, the channel / feature axis), ``"leaky_relu"``
    (``negative_slope`` 0.2, Keras' ``activations.leaky_relu`` default; :class:`LeakyReLU` takes
    another), ``"gelu"`` (the exact, erf form: Keras' default), ``"silu"`` / ``"swish"``
    (``x * sigmoid(x)``) or ``None`` / ``"linear"`` (identity). Shape-preserving.

    ``approximate=True`` (``"gelu"`` only; Keras' ``keras.activations.gelu(x,
    approximate=True)``, PyTorch's ``nn.GELU(approximate="tanh")``): GELU's tanh form
    ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``; :class:`GELU` is the same as a class.
    """

    default_name = "activation"
    has_activation = True

    def __init__(self, activation: str | None, *, approximate: bool = False,
                 name: str | None = None, trainable: bool = True) -> None:
        super().__init__(name=name, trainable=trainable)
        self.activation = check_activation(activation, type(self).__name__)
        self.approximate = check_approximate(approximate, type(self).__name__)
        if self.approximate and self.activation != "gelu":
            raise ValueError(f"{type(self).__name__}: approximate=True is GELU's tanh form; "
                             f"it needs activation='gelu', got {self.activation!r}")

    def _build(self, input_shape, rng):
        self.flops = ACT_FLOPS[self.activation] * math.prod(input_shape)
        return input_shape

    def forward(self, x, training=False, apply_activation=True):
        y = self._act(x, apply_activation)
        self._cache = (self._act_input(x, apply_activation), y, apply_activation) \
            if training else None
        return y

    def backward(self, dy, accumulate=False):
        z, y, applied = self._need_cache()
        return self._act_backward(dy, z, y, applied)

    def fusable_activation(self) -> str | None:
        """``"relu"`` for a ReLU (``Activation("relu")`` or :class:`ReLU`), which a preceding
        BatchNormalization, or Conv2D / Dense without an activation, applies in its own pass;
        None for the other activations, and for a subclass with its own forward or backward
        (the pass-through would skip them)."""
        plain = type(self).forward is Activation.forward \
            and type(self).backward is Activation.backward
        return "relu" if plain and self.activation == "relu" else None

    def get_config(self):
        extra = {"approximate": True} if self.approximate else {}
        return {**super().get_config(), "activation": self.activation, **extra}


class _FixedActivation(Activation):
    """An :class:`Activation` whose activation is fixed by the class (no constructor argument)."""

    fixed: ClassVar[str]

    def __init__(self, *, name: str | None = None, trainable: bool = True) -> None:
        super().__init__(self.fixed, name=name, trainable=trainable)

    def get_config(self):
        return Layer.get_config(self)


class GELU(Activation):
    """GELU, ``x * Phi(x)`` element-wise: the exact (erf) form, or with ``approximate=True``
    (also ``"tanh"``, PyTorch's spelling) the tanh form ``0.5 x (1 + tanh(sqrt(2/pi) (x +
    0.044715 x^3)))``. Shape-preserving. ``Activation("gelu", approximate=...)`` is the same.
    """

    default_name = "gelu"

    def __init__(self, approximate: bool = False, *, name: str | None = None,
                 trainable: bool = True) -> None:
        super().__init__("gelu", approximate=approximate, name=name, trainable=trainable)

    def get_config(self):
        return {**Layer.get_config(self), "approximate": self.approximate}


class ReLU(_FixedActivation):
    """``max(x, 0)`` element-wise (NaN propagates). Shape-preserving."""

    default_name = "relu"
    fixed = "relu"


class Softmax(_FixedActivation):
    """Softmax over axis 1 (classes for ``(N, classes)``, channels for ``(N, C, H, W)``)."""

    default_name = "softmax"
    fixed = "softmax"


class LeakyReLU(_FixedActivation):
    """``x`` where ``x > 0``, else ``negative_slope * x`` (Keras' ``LeakyReLU``, default slope
    0.3). Shape-preserving.

    Args:
        negative_slope: the slope for ``x <= 0``, a float >= 0.
    """

    default_name = "leaky_re_lu"
    fixed = "leaky_relu"

    def __init__(self, negative_slope: float = 0.3, *, name: str | None = None,
                 trainable: bool = True) -> None:
        super().__init__(name=name, trainable=trainable)
        self.negative_slope = check_negative_slope(negative_slope, "LeakyReLU")

    def get_config(self):
        return {**Layer.get_config(self), "negative_slope": self.negative_slope}


# --------------------------------------------------------------------------------------------
# Flatten, Dropout


class Flatten(Layer):
    """``(N, C, H, W)`` -> ``(N, C*H*W)`` (C-order, i.e. PyTorch's ``flatten(1)``)."""

    default_name = "flatten"

    def _build(self, input_shape, rng):
        self.flops = 0
        return (math.prod(input_shape),)

    def forward(self, x, training=False):
        self._cache = x.shape if training else None
        return array_module(x).ascontiguousarray(x).reshape(x.shape[0], -1)

    def backward(self, dy, accumulate=False):
        shape = self._need_cache()
        return array_module(dy).ascontiguousarray(dy).reshape(shape)


class Dropout(Layer):
    """Inverted dropout: in training, zero each element with probability ``rate`` and scale
    the rest by ``1 / (1 - rate)``; identity at inference.

    Args:
        rate: drop probability in ``[0, 1)``.
        seed: seed of the layer's mask generator; None draws one from the model's generator at
            build time (so a seeded model gives reproducible masks).
    """

    default_name = "dropout"

    def __init__(self, rate: float, seed: int | None = None, *, name: str | None = None,
                 trainable: bool = True) -> None:
        super().__init__(name=name, trainable=trainable)
        rate = float(rate)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"Dropout: rate must be in [0, 1), got {rate}")
        self.rate = rate
        self.seed = seed
        self._rng = np.random.default_rng(seed)

    def _build(self, input_shape, rng):
        if self.seed is None:
            self._rng = np.random.default_rng(int(rng.integers(2**63)))
        self.flops = math.prod(input_shape) if self.rate > 0 else 0
        return input_shape

    def forward(self, x, training=False):
        if not training or self.rate == 0.0:
            self._cache = "identity" if training else None
            return x
        # drawn on the host from the layer's generator (the same masks on CPU and GPU)
        keep = self._rng.random(x.shape, dtype=np.float32) >= np.float32(self.rate)
        mask = keep.astype(np.float32) * np.float32(1.0 / (1.0 - self.rate))
        if is_cupy(x):
            mask = array_module(x).asarray(mask)
        self._cache = mask
        return x * mask

    def backward(self, dy, accumulate=False):
        mask = self._need_cache()
        if isinstance(mask, str):
            return dy
        return dy * mask

    def get_state(self):
        """The mask generator's state (so a saved model resumes with the same masks)."""
        return {"rng": self._rng.bit_generator.state}

    def check_state(self, state):
        try:
            st = state["rng"]
            bg = getattr(np.random, st["bit_generator"])()
            bg.state = st
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"{self._label()}: bad random generator state ({e!r})") from e
        return np.random.Generator(bg)

    def set_state(self, checked):
        self._rng = checked

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


