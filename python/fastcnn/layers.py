"""Layers of a :class:`fastcnn.Sequential` model: Conv2D, ReLU, MaxPool2D, Flatten, Dense,
Dropout, Softmax (plus the generic :class:`Activation`).

Conventions
-----------
* Arrays are float32 NCHW; shapes given to :meth:`Layer.build` and reported by the model are
  per sample, without the batch axis: ``(C, H, W)`` for images, ``(features,)`` after Flatten.
* Weights use PyTorch layouts: conv kernel ``(K, C/groups, R, S)``, dense kernel ``(out, in)``,
  biases ``(K,)`` / ``(out,)``.
* Every numeric kernel goes through :mod:`fastcnn.ops` (never a compiled module directly); a
  little array glue (reshapes, the dropout mask, the softmax/sigmoid derivatives) stays here,
  written against ``xp = array_module(x)`` so that it runs on NumPy arrays (CPU) and on CuPy
  arrays (GPU, after ``model.to("cuda")``) alike. Weights are created with NumPy at build time
  and moved by the model (:meth:`Layer.to_device`).
* Dropout masks are drawn on the host from the layer's NumPy generator and uploaded when the
  input is a cupy array: a seeded model drops the same elements on the GPU as on the CPU (the
  upload costs one host-to-device copy of the mask per batch).

The layer protocol (what :class:`fastcnn.Sequential` relies on)
---------------------------------------------------------------
``build(input_shape, rng) -> output_shape``
    Create the weights (``params``) and gradient buffers (``grads``), both dicts of float32
    arrays keyed ``"kernel"`` / ``"bias"``, and compute :attr:`Layer.flops`.
``forward(x, training=False) -> y``
    With ``training=True`` the layer caches what its backward needs; with ``training=False`` it
    drops any cache (so ``backward`` after an inference call is an error).
``backward(dy, accumulate=False) -> dx``
    Uses the cache of the last training forward. The gradients of the weights are *written*
    into ``grads`` (``accumulate=True`` adds to them instead). Layers with ``trainable=False``
    leave ``grads`` untouched. ``dx`` is always returned: :mod:`fastcnn.ops` computes it in the
    same call as the weight gradients, so skipping it would save nothing.
``get_config()`` / ``from_config(config)``
    JSON-serialisable constructor arguments, used by ``model.save``.

Layers with an ``activation`` (Conv2D, Dense, Activation/ReLU/Softmax) take
``forward(x, training, apply_activation=False)``: the model uses it to keep the logits of a
softmax/sigmoid output layer and fuse the activation into the loss (one numerically stable
step); ``backward`` then skips the activation's derivative too.

FLOPs are forward FLOPs per sample: a multiply-add counts 2, a bias add 1, ReLU 1 per element,
sigmoid 4, softmax 5, a max over a pooling window ``window - 1`` comparisons per output.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np

from . import initializers as _init
from . import ops
from ._device import array_module, assign, host_copy, is_cupy, move

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "Conv2D",
    "Dense",
    "Dropout",
    "Flatten",
    "Layer",
    "MaxPool2D",
    "ReLU",
    "Softmax",
    "deserialize",
    "get_layer_class",
]

Shape = tuple[int, ...]

#: Activation names accepted by Conv2D / Dense / Activation (``None`` and ``"linear"`` = none).
ACTIVATIONS = (None, "linear", "relu", "sigmoid", "softmax")
_ACT_FLOPS = {None: 0, "relu": 1, "sigmoid": 4, "softmax": 5}


# --------------------------------------------------------------------------------------------
# helpers


def _pair(v: Any, name: str, layer: str, minimum: int = 1) -> tuple[int, int]:
    """``int | (int, int)`` -> ``(h, w)`` with a clear error."""
    if isinstance(v, bool):
        raise TypeError(f"{layer}: {name} must be an int or a pair of ints, got {v!r}")
    if isinstance(v, int | np.integer):
        out = (int(v), int(v))
    elif isinstance(v, list | tuple) and len(v) == 2 and all(
            isinstance(e, int | np.integer) and not isinstance(e, bool) for e in v):
        out = (int(v[0]), int(v[1]))
    else:
        raise TypeError(f"{layer}: {name} must be an int or a pair of ints (h, w), got {v!r}")
    if min(out) < minimum:
        raise ValueError(f"{layer}: {name} must be >= {minimum}, got {v!r}")
    return out


def _check_activation(activation: str | None, layer: str) -> str | None:
    if activation == "linear":
        return None
    if activation not in ACTIVATIONS:
        raise ValueError(f"{layer}: unknown activation {activation!r}; expected one of "
                         f"{list(ACTIVATIONS)}")
    return activation


def _same_pad(size: int, k_eff: int, stride: int) -> tuple[int, int]:
    """TensorFlow "same": output ceil(size / stride); the odd extra goes at the end."""
    out = -(-size // stride)
    total = max((out - 1) * stride + k_eff - size, 0)
    return total // 2, total - total // 2


def _shape_of(a: Any) -> tuple[int, ...]:
    """Shape of an array of either kind (or of a nested list)."""
    return tuple(a.shape) if is_cupy(a) else np.shape(a)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function, float32 in, float32 out (NumPy or CuPy)."""
    xp = array_module(z)
    e = xp.exp(-xp.abs(z))
    return xp.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(np.float32, copy=False)


def _activation_forward(z: np.ndarray, activation: str | None) -> np.ndarray:
    if activation is None:
        return z
    if activation == "relu":
        return ops.relu(z)
    if activation == "softmax":
        return ops.softmax(z, axis=1)
    return _sigmoid(z)


def _activation_backward(dy: np.ndarray, y: np.ndarray, activation: str | None) -> np.ndarray:
    """d(loss)/dz from d(loss)/dy and the activation's output ``y``."""
    if activation is None:
        return dy
    if activation == "relu":
        return ops.relu_backward(dy, y)
    if activation == "softmax":
        s = array_module(y).sum(dy * y, axis=1, keepdims=True, dtype=np.float32)
        return (y * (dy - s)).astype(np.float32, copy=False)
    return (dy * y * (np.float32(1) - y)).astype(np.float32, copy=False)


# --------------------------------------------------------------------------------------------
# base class


class Layer:
    """Base class of all layers (see the module docstring for the protocol).

    Attributes:
        name: unique within a model (assigned by the model when ``None``).
        trainable: when False the layer's weights are frozen: excluded from
            ``model.parameters()`` (so optimizers skip them) and counted as non-trainable.
        params / grads: dicts of float32 arrays (empty for layers without weights).
        input_shape / output_shape: per-sample shapes, set by :meth:`build`.
        flops: forward FLOPs per sample, set by :meth:`build`.
    """

    default_name: ClassVar[str] = "layer"
    has_activation: ClassVar[bool] = False

    def __init__(self, *, name: str | None = None, trainable: bool = True) -> None:
        if name is not None and (not isinstance(name, str) or not name or "/" in name):
            raise ValueError(f"layer name must be a non-empty string without '/', got {name!r}")
        self.name: str | None = name
        self.trainable = bool(trainable)
        self.built = False
        self.input_shape: Shape | None = None
        self.output_shape: Shape | None = None
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.flops = 0
        self._cache: Any = None
        # False while the model runs backward for training only: a first layer then skips dx
        self.need_input_grad = True

    # -- building ---------------------------------------------------------------------------
    def build(self, input_shape: Shape, rng: np.random.Generator | None = None) -> Shape:
        """Create weights for per-sample ``input_shape``; returns the per-sample output shape.

        Args:
            input_shape: shape of one sample, e.g. ``(C, H, W)``.
            rng: generator used for weight initialisation (a fresh unseeded one if None).
        """
        input_shape = tuple(int(s) for s in input_shape)
        if any(s < 1 for s in input_shape):
            raise ValueError(f"{self._label()}: input shape must be positive, got {input_shape}")
        rng = rng if rng is not None else np.random.default_rng()
        self.input_shape = input_shape
        self.output_shape = self._build(input_shape, rng)
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.built = True
        return self.output_shape

    def _build(self, input_shape: Shape, rng: np.random.Generator) -> Shape:
        self.flops = 0
        return input_shape

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        """Per-sample output shape for ``input_shape`` (builds nothing)."""
        clone = copy.copy(self)  # build() rebinds params / grads: the original is untouched
        return clone.build(input_shape, np.random.default_rng(0))

    # -- running ----------------------------------------------------------------------------
    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """``x`` (N, *input_shape) float32 -> (N, *output_shape) float32."""
        raise NotImplementedError

    def backward(self, dy: np.ndarray, accumulate: bool = False) -> np.ndarray:
        """``dy`` (N, *output_shape) -> ``dx`` (N, *input_shape); fills ``grads``."""
        raise NotImplementedError

    def __call__(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        return self.forward(x, training=training)

    def _need_cache(self) -> Any:
        if self._cache is None:
            raise RuntimeError(f"{self._label()}: backward() needs a preceding "
                               f"forward(x, training=True)")
        return self._cache

    def _store_grad(self, key: str, g: np.ndarray | None, accumulate: bool) -> None:
        if not self.trainable or g is None:
            return
        buf = self.grads[key]
        if accumulate:
            array_module(buf).add(buf, g, out=buf)
        else:
            self.grads[key] = g  # the op's fresh result (float32, C-contiguous): no copy

    # -- weights ----------------------------------------------------------------------------
    def named_parameters(self) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """Yield ``(key, param, grad)`` for every weight of a trainable layer."""
        if self.trainable:
            for k, p in self.params.items():
                yield k, p, self.grads[k]

    def parameters(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(param, grad)`` pairs (empty when ``trainable`` is False)."""
        for _, p, g in self.named_parameters():
            yield p, g

    def count_params(self) -> int:
        """Number of scalars in all weights (trainable or not)."""
        return sum(int(p.size) for p in self.params.values())

    def to_device(self, device: str) -> None:
        """Move ``params`` and ``grads`` to ``"cpu"`` (NumPy) or ``"cuda"`` (CuPy) and drop the
        forward cache (it holds arrays of the old device). Called by ``Sequential.to``."""
        self.params = {k: move(v, device) for k, v in self.params.items()}
        self.grads = {k: move(v, device) for k, v in self.grads.items()}
        self._cache = None

    def get_weights(self) -> list[np.ndarray]:
        """Copies of the weights, in ``params`` order, as NumPy arrays (also for a layer on
        the GPU)."""
        return [host_copy(p) for p in self.params.values()]

    def set_weights(self, weights: list[np.ndarray]) -> None:
        """Assign weights in ``params`` order (shapes checked first; float32 copies)."""
        weights = list(weights)
        if len(weights) != len(self.params):
            raise ValueError(f"{self._label()}: expected {len(self.params)} arrays, "
                             f"got {len(weights)}")
        for (k, p), w in zip(self.params.items(), weights, strict=True):
            if _shape_of(w) != p.shape:
                raise ValueError(f"{self._label()}: weight {k!r} has shape {p.shape}, "
                                 f"got {_shape_of(w)}")
        for p, w in zip(self.params.values(), weights, strict=True):
            assign(p, w)

    # -- non-weight state (random generators), saved with the model --------------------------
    def get_state(self) -> dict[str, Any] | None:
        """JSON-serialisable state other than weights (None when there is none)."""
        return None

    def check_state(self, state: Any) -> Any:
        """Validate :meth:`get_state`'s value; returns what :meth:`set_state` assigns.
        ValueError when it does not fit this layer."""
        if state is not None:
            raise ValueError(f"{self._label()}: has no state to load")
        return None

    def set_state(self, checked: Any) -> None:
        """Assign a value returned by :meth:`check_state`."""

    # -- serialisation ----------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """JSON-serialisable constructor arguments."""
        return {"name": self.name, "trainable": self.trainable}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Layer:
        """Rebuild an (unbuilt) layer from :meth:`get_config`'s dict."""
        return cls(**config)

    def _label(self) -> str:
        return f"{type(self).__name__}({self.name!r})" if self.name else type(self).__name__

    def __repr__(self) -> str:
        return f"<{self._label()} output_shape={self.output_shape}>"


class _ActivationMixin:
    """Shared pieces of layers with an ``activation``."""

    activation: str | None

    def _act(self, z: np.ndarray, apply_activation: bool) -> np.ndarray:
        act = self.activation if apply_activation else None
        return _activation_forward(z, act)

    def _act_backward(self, dy: np.ndarray, y: np.ndarray, applied: bool) -> np.ndarray:
        return _activation_backward(dy, y, self.activation if applied else None)


# --------------------------------------------------------------------------------------------
# Conv2D


class Conv2D(_ActivationMixin, Layer):
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
        activation: None, "linear", "relu", "sigmoid" or "softmax" (over channels).
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
        self.kernel_size = _pair(kernel_size, "kernel_size", lbl)
        self.strides = _pair(strides, "strides", lbl)
        self.dilation_rate = _pair(dilation_rate, "dilation_rate", lbl)
        if isinstance(padding, str):
            if padding.lower() not in ("valid", "same"):
                raise ValueError(f"{lbl}: padding must be 'valid', 'same', an int or a pair, "
                                 f"got {padding!r}")
            self.padding: str | tuple[int, int] = padding.lower()
        else:
            self.padding = _pair(padding, "padding", lbl, minimum=0)
        self.groups = int(groups)
        if self.filters % self.groups:
            raise ValueError(f"{lbl}: filters ({self.filters}) must be divisible by groups "
                             f"({self.groups})")
        self.activation = _check_activation(activation, lbl)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = _init.get(kernel_initializer)
        self.bias_initializer = _init.get(bias_initializer)

    def _pads(self, H: int, W: int) -> tuple[int, int, int, int]:
        (R, S), (sh, sw), (dh, dw) = self.kernel_size, self.strides, self.dilation_rate
        if self.padding == "valid":
            return 0, 0, 0, 0
        if self.padding == "same":
            t, b = _same_pad(H, dh * (R - 1) + 1, sh)
            l, r = _same_pad(W, dw * (S - 1) + 1, sw)
            return t, b, l, r
        ph, pw = self.padding  # type: ignore[misc]
        return ph, ph, pw, pw

    def _build(self, input_shape, rng):
        if len(input_shape) != 3:
            raise ValueError(f"{self._label()}: expects inputs of shape (C, H, W), got "
                             f"{input_shape}")
        C, H, W = input_shape
        if C % self.groups:
            raise ValueError(f"{self._label()}: input channels ({C}) must be divisible by "
                             f"groups ({self.groups})")
        (R, S), (sh, sw), (dh, dw) = self.kernel_size, self.strides, self.dilation_rate
        t, b, l, r = self._pads(H, W)
        er, es = dh * (R - 1) + 1, dw * (S - 1) + 1
        if H + t + b < er or W + l + r < es:
            raise ValueError(f"{self._label()}: the (dilated) kernel {(er, es)} is larger than "
                             f"the padded input {(H + t + b, W + l + r)}")
        P = (H + t + b - er) // sh + 1
        Q = (W + l + r - es) // sw + 1
        K, Cg = self.filters, C // self.groups
        self.params = {"kernel": np.ascontiguousarray(
            self.kernel_initializer((K, Cg, R, S), rng), dtype=np.float32)}
        if self.use_bias:
            self.params["bias"] = np.ascontiguousarray(
                self.bias_initializer((K,), rng), dtype=np.float32)
        out = K * P * Q
        self.flops = 2 * out * Cg * R * S + (out if self.use_bias else 0) \
            + _ACT_FLOPS[self.activation] * out
        return (K, P, Q)

    def _pad_arg(self) -> Any:
        return self.padding if isinstance(self.padding, str) else tuple(self.padding)

    def forward(self, x, training=False, apply_activation=True):
        kw: dict[str, Any] = {}
        fuse_relu = apply_activation and self.activation == "relu"
        if fuse_relu:
            kw["relu"] = True  # ReLU in the GEMM epilogue (a fastcnn.ops extension)
        z = ops.conv2d(x, self.params["kernel"], self.params.get("bias"), stride=self.strides,
                       padding=self._pad_arg(), dilation=self.dilation_rate, groups=self.groups,
                       **kw)
        y = z if fuse_relu else self._act(z, apply_activation)
        self._cache = (x, y, apply_activation) if training else None
        return y

    def accepts_pooled_grad(self) -> bool:
        """Whether :meth:`backward` can take a max pooling's gradient with ``pool=`` (the
        pooling then routed inside the convolution's backward): no activation after the
        convolution but a ReLU."""
        return self._cache is not None and (not self._cache[2] or self.activation in (None, "relu"))

    def backward(self, dy, accumulate=False, pool=None):
        """``pool``: :meth:`MaxPool2D.pooled_grad_args` of the pooling after this layer, when
        ``dy`` is the gradient of that pooling's output (see :meth:`accepts_pooled_grad`)."""
        x, y, applied = self._need_cache()
        kw: dict[str, Any] = dict(pool or {})
        if applied and self.activation == "relu":
            dz, kw["relu_y"] = dy, y  # the ReLU's backward fused into the conv's backward
        elif pool:
            if applied and self.activation is not None:
                raise ValueError(f"{self._label()}: pool= needs no activation or ReLU, this "
                                 f"layer has {self.activation!r}")
            dz = dy
        else:
            dz = self._act_backward(dy, y, applied)
        dx, dw, db = ops.conv2d_backward(dz, x, self.params["kernel"], stride=self.strides,
                                         padding=self._pad_arg(), dilation=self.dilation_rate,
                                         groups=self.groups, bias=self.use_bias,
                                         compute_dx=self.need_input_grad, **kw)
        self._store_grad("kernel", dw, accumulate)
        if self.use_bias:
            self._store_grad("bias", db, accumulate)
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
            "activation": self.activation,
            "use_bias": self.use_bias,
            "kernel_initializer": _init.serialize(self.kernel_initializer),
            "bias_initializer": _init.serialize(self.bias_initializer),
        }


# --------------------------------------------------------------------------------------------
# Dense


class Dense(_ActivationMixin, Layer):
    """Fully connected layer: ``y = act(x @ kernel.T + bias)``, kernel ``(units, in)``.

    Args:
        units: output features.
        activation: None, "linear", "relu", "sigmoid" or "softmax".
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
        self.activation = _check_activation(activation, "Dense")
        self.use_bias = bool(use_bias)
        self.kernel_initializer = _init.get(kernel_initializer)
        self.bias_initializer = _init.get(bias_initializer)

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
            + _ACT_FLOPS[self.activation] * self.units
        return (self.units,)

    def forward(self, x, training=False, apply_activation=True):
        fuse_relu = apply_activation and self.activation == "relu"
        if fuse_relu:
            y = ops.linear(x, self.params["kernel"], self.params.get("bias"), relu=True)
        else:
            y = self._act(ops.linear(x, self.params["kernel"], self.params.get("bias")),
                          apply_activation)
        self._cache = (x, y, apply_activation) if training else None
        return y

    def backward(self, dy, accumulate=False):
        x, y, applied = self._need_cache()
        dz = self._act_backward(dy, y, applied)
        dx, dw, db = ops.linear_backward(dz, x, self.params["kernel"], bias=self.use_bias,
                                         compute_dx=self.need_input_grad)
        self._store_grad("kernel", dw, accumulate)
        if self.use_bias:
            self._store_grad("bias", db, accumulate)
        return dx

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "activation": self.activation,
            "use_bias": self.use_bias,
            "kernel_initializer": _init.serialize(self.kernel_initializer),
            "bias_initializer": _init.serialize(self.bias_initializer),
        }


# --------------------------------------------------------------------------------------------
# activations


class Activation(_ActivationMixin, Layer):
    """Element-wise activation layer: ``"relu"``, ``"sigmoid"``, ``"softmax"`` (over axis 1,
    the channel / feature axis) or ``None`` / ``"linear"`` (identity). Shape-preserving."""

    default_name = "activation"
    has_activation = True

    def __init__(self, activation: str | None, *, name: str | None = None,
                 trainable: bool = True) -> None:
        super().__init__(name=name, trainable=trainable)
        self.activation = _check_activation(activation, type(self).__name__)

    def _build(self, input_shape, rng):
        self.flops = _ACT_FLOPS[self.activation] * math.prod(input_shape)
        return input_shape

    def forward(self, x, training=False, apply_activation=True):
        y = self._act(x, apply_activation)
        self._cache = (y, apply_activation) if training else None
        return y

    def backward(self, dy, accumulate=False):
        y, applied = self._need_cache()
        return self._act_backward(dy, y, applied)

    def get_config(self):
        return {**super().get_config(), "activation": self.activation}


class ReLU(Activation):
    """``max(x, 0)`` element-wise (NaN propagates). Shape-preserving."""

    default_name = "relu"

    def __init__(self, *, name: str | None = None, trainable: bool = True) -> None:
        super().__init__("relu", name=name, trainable=trainable)

    def get_config(self):
        return Layer.get_config(self)


class Softmax(Activation):
    """Softmax over axis 1 (classes for ``(N, classes)``, channels for ``(N, C, H, W)``)."""

    default_name = "softmax"

    def __init__(self, *, name: str | None = None, trainable: bool = True) -> None:
        super().__init__("softmax", name=name, trainable=trainable)

    def get_config(self):
        return Layer.get_config(self)


# --------------------------------------------------------------------------------------------
# MaxPool2D


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
        self.pool_size = _pair(pool_size, "pool_size", "MaxPool2D")
        self.strides = self.pool_size if strides is None else _pair(strides, "strides",
                                                                    "MaxPool2D")
        if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
            raise ValueError(f"MaxPool2D: padding must be 'valid' or 'same', got {padding!r}")
        self.padding = padding.lower()
        # ops arguments, resolved at build
        self._ops_padding: tuple[int, int] = (0, 0)
        self._ceil_mode = False
        self._explicit_pad: tuple[int, int, int, int] | None = None  # (top, bottom, left, right)

    def _build(self, input_shape, rng):
        if len(input_shape) != 3:
            raise ValueError(f"{self._label()}: expects inputs of shape (C, H, W), got "
                             f"{input_shape}")
        C, H, W = input_shape
        (kh, kw), (sh, sw) = self.pool_size, self.strides
        self._ops_padding, self._ceil_mode, self._explicit_pad = (0, 0), False, None
        if self.padding == "valid":
            if H < kh or W < kw:
                raise ValueError(f"{self._label()}: pool_size {self.pool_size} is larger than "
                                 f"the input {(H, W)} with padding='valid'")
            P, Q = (H - kh) // sh + 1, (W - kw) // sw + 1
        else:
            P, Q = -(-H // sh), -(-W // sw)
            t, b = _same_pad(H, kh, sh)
            l, r = _same_pad(W, kw, sw)
            ok_h = b == t or (b == t + 1 and sh >= 2)
            ok_w = r == l or (r == l + 1 and sw >= 2)
            if ok_h and ok_w:
                self._ops_padding = (t, l)
                self._ceil_mode = (b != t) or (r != l)
            else:
                self._explicit_pad = (t, b, l, r)
        self.flops = C * P * Q * (kh * kw - 1)
        return (C, P, Q)

    def _pool_kwargs(self) -> dict[str, Any]:
        return {"stride": self.strides, "padding": self._ops_padding,
                "ceil_mode": self._ceil_mode}

    def forward(self, x, training=False):
        if self._explicit_pad is not None:
            t, b, l, r = self._explicit_pad
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

    def pooled_grad_args(self) -> dict[str, Any] | None:
        """After ``forward(x, training=True)``: the ``conv2d_backward`` arguments
        (``pool_indices``, ``pool_size``, ...) that route a gradient of this layer's output back
        through it inside the previous Conv2D's backward pass (Sequential fuses the two); None
        when this pooling can't be expressed that way (Keras "same" padding is an explicit
        -inf pad here)."""
        if self._cache is None or self._explicit_pad is not None:
            return None
        _, idx = self._cache
        self._cache = None  # consumed: the gradient is routed by the convolution
        return {"pool_indices": idx, "pool_size": self.pool_size, "pool_stride": self.strides,
                "pool_padding": self._ops_padding, "pool_ceil_mode": self._ceil_mode}

    def backward(self, dy, accumulate=False):
        x, idx = self._need_cache()
        dx = ops.max_pool2d_backward(dy, x, self.pool_size, indices=idx, **self._pool_kwargs())
        if self._explicit_pad is not None:
            t, _, l, _ = self._explicit_pad
            H, W = self.input_shape[1], self.input_shape[2]  # type: ignore[index]
            dx = array_module(dx).ascontiguousarray(dx[:, :, t:t + H, l:l + W])
        return dx

    def get_config(self):
        return {**super().get_config(), "pool_size": list(self.pool_size),
                "strides": list(self.strides), "padding": self.padding}


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


# --------------------------------------------------------------------------------------------
# registry

_LAYER_CLASSES: dict[str, type[Layer]] = {
    cls.__name__: cls
    for cls in (Conv2D, Dense, Activation, ReLU, Softmax, MaxPool2D, Flatten, Dropout)
}
_LAYER_CLASSES["MaxPooling2D"] = MaxPool2D
MaxPooling2D = MaxPool2D  # Keras' other spelling


def get_layer_class(class_name: str) -> type[Layer]:
    """Layer class by name (``"Conv2D"``, ...); ValueError for an unknown name."""
    try:
        return _LAYER_CLASSES[class_name]
    except KeyError:
        raise ValueError(f"unknown layer class {class_name!r}; known: "
                         f"{sorted(_LAYER_CLASSES)}") from None


def deserialize(spec: dict[str, Any]) -> Layer:
    """Layer from ``{"class_name": ..., "config": {...}}``."""
    if not isinstance(spec, dict) or "class_name" not in spec:
        raise ValueError(f"bad layer spec {spec!r}")
    return get_layer_class(spec["class_name"]).from_config(dict(spec.get("config", {})))
