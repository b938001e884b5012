"""The layer base class and the activation helpers the layers share.

:class:`Layer` implements the protocol described in :mod:`fastcnn.layers` (build, forward,
backward, weights, state, config) and the defaults of its optional parts: ``compute_dx``, the
pooled-gradient fusion (:meth:`Layer.accepts_pooled_grad` / :meth:`Layer.offer_pooled_grad`)
and the activation fusion (:meth:`Layer.fusable_activation` /
:meth:`Layer.accepts_fused_activation`, paired by :func:`fused_activation`).
:class:`ActivationMixin` and the ``activation_*`` functions run an activation's forward and
backward on NumPy or CuPy arrays alike.
"""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np

from .. import _workspace, ops
from .. import initializers as _init
from .._arrays import array_module, assign, host_copy, is_cupy, move
from . import symbolic as _symbolic

__all__ = [
    "ACTIVATIONS",
    "ACT_FLOPS",
    "ACT_NEEDS_INPUT",
    "LEAKY_RELU_SLOPE",
    "ActivationMixin",
    "KernelBiasMixin",
    "Layer",
    "Shape",
    "check_activation",
    "check_approximate",
    "check_negative_slope",
    "fused_activation",
]

Shape = tuple[int, ...]

#: Activation names accepted by Conv2D / Dense / Activation (``None`` and ``"linear"`` = none;
#: ``"swish"`` is another name of ``"silu"``).
ACTIVATIONS = (None, "linear", "relu", "sigmoid", "tanh", "softmax", "leaky_relu", "gelu",
               "silu", "swish")
#: Forward FLOPs per element of each activation.
ACT_FLOPS = {None: 0, "relu": 1, "sigmoid": 4, "tanh": 4, "softmax": 5, "leaky_relu": 2,
             "gelu": 8, "silu": 5}
#: The activations whose backward needs the activation's INPUT (the others use its output).
ACT_NEEDS_INPUT = frozenset({"leaky_relu", "gelu", "silu"})
#: ``negative_slope`` of the ``"leaky_relu"`` activation string: Keras 3's
#: ``keras.activations.leaky_relu`` default (the LeakyReLU layer's default is 0.3).
LEAKY_RELU_SLOPE = 0.2


# --------------------------------------------------------------------------------------------
# helpers


def check_activation(activation: str | None, layer: str) -> str | None:
    """``activation`` checked against :data:`ACTIVATIONS` (``"linear"`` becomes None,
    ``"swish"`` becomes ``"silu"``); TypeError / ValueError naming ``layer`` otherwise."""
    if activation is not None and not isinstance(activation, str):
        raise TypeError(f"{layer}: activation must be a string (one of {list(ACTIVATIONS)}) "
                        f"or None, got {activation!r} ({type(activation).__name__}); a custom "
                        f"function needs a custom layer (see fastcnn.layers)")
    if activation == "linear":
        return None
    if activation == "swish":
        return "silu"
    if activation not in ACTIVATIONS:
        raise ValueError(f"{layer}: unknown activation {activation!r}; expected one of "
                         f"{list(ACTIVATIONS)}")
    return activation


def check_negative_slope(value: Any, layer: str) -> float:
    """A leaky ReLU's ``negative_slope`` as a float >= 0 (Keras' rule); TypeError / ValueError
    naming ``layer`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"{layer}: negative_slope must be a float >= 0, got {value!r} "
                        f"({type(value).__name__})")
    v = float(value)
    if not (v >= 0.0 and np.isfinite(v)):
        raise ValueError(f"{layer}: negative_slope must be a finite float >= 0, got {value!r}")
    return v


def check_approximate(value: Any, layer: str) -> bool:
    """GELU's ``approximate``: a bool (Keras' ``keras.activations.gelu(x, approximate=...)``)
    or PyTorch's spelling, ``"tanh"`` / ``"none"``; True is the tanh form
    ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``. TypeError / ValueError naming
    ``layer`` otherwise."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, str) and value in ("tanh", "none"):
        return value == "tanh"
    raise TypeError(f"{layer}: approximate must be a bool (True: the tanh form of GELU) or "
                    f"'tanh' / 'none', got {value!r}")


def _shape_of(a: Any) -> tuple[int, ...]:
    """Shape of an array of either kind (or of a nested list)."""
    return tuple(a.shape) if is_cupy(a) else np.shape(a)


def pooled(shape: tuple[int, ...], like: Any) -> Any:
    """A reused destination of ``shape`` for an op's ``out=`` / ``dx_out=`` (the running
    model's :attr:`~fastcnn.Model.workspace`, :mod:`fastcnn._workspace`: a buffer nothing else
    references, so steady-state steps allocate nothing large), or None (the op allocates)
    outside a model, on the GPU, for small arrays or with the workspace off. ``like``: an input
    of the op (its device)."""
    pool = _workspace.current()
    return None if pool is None else pool.empty(shape, like)


def activation_forward(z: np.ndarray, activation: str | None,
                       negative_slope: float = LEAKY_RELU_SLOPE,
                       approximate: bool = False, out: Any = None) -> np.ndarray:
    """``activation(z)``; softmax is over axis 1; ``approximate``: GELU's tanh form. Same
    shape and array kind as ``z``; written into ``out`` (z's shape, apart from z) when given,
    except for softmax and no activation."""
    if activation is None:
        return z
    if activation == "relu":
        return ops.relu(z, out=out)
    if activation == "softmax":
        return ops.softmax(z, axis=1)
    if activation == "sigmoid":
        return ops.sigmoid(z, out=out)
    if activation == "tanh":
        return ops.tanh(z, out=out)
    if activation == "leaky_relu":
        return ops.leaky_relu(z, negative_slope, out=out)
    if activation == "gelu":
        return ops.gelu(z, "tanh" if approximate else "none", out=out)
    if activation == "silu":
        return ops.silu(z, out=out)
    raise ValueError(f"unknown activation {activation!r}")  # pragma: no cover - checked


def activation_backward(dy: np.ndarray, z: np.ndarray | None, y: np.ndarray,
                        activation: str | None,
                        negative_slope: float = LEAKY_RELU_SLOPE,
                        approximate: bool = False, out: Any = None) -> np.ndarray:
    """d(loss)/dz from d(loss)/dy, the activation's input ``z`` (needed only for the
    :data:`ACT_NEEDS_INPUT` ones, None otherwise) and its output ``y`` (all the shape of z);
    written into ``out`` (apart from the inputs) when given, except for softmax and none."""
    if activation is None:
        return dy
    if activation == "relu":
        return ops.relu_backward(dy, y, out=out)
    if activation == "softmax":
        s = array_module(y).sum(dy * y, axis=1, keepdims=True, dtype=np.float32)
        return (y * (dy - s)).astype(np.float32, copy=False)
    if activation == "sigmoid":
        return ops.sigmoid_backward(dy, y, out=out)
    if activation == "tanh":
        return ops.tanh_backward(dy, y, out=out)
    if activation == "leaky_relu":
        return ops.leaky_relu_backward(dy, z, negative_slope, out=out)
    if activation == "gelu":
        return ops.gelu_backward(dy, z, "tanh" if approximate else "none", out=out)
    if activation == "silu":
        return ops.silu_backward(dy, z, out=out)
    raise ValueError(f"unknown activation {activation!r}")  # pragma: no cover - checked


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
    #: Keys of ``params`` that are state rather than weights to train (BatchNormalization's
    #: moving statistics, Keras' non-trainable weights): they get no gradient buffer, are not
    #: in :meth:`named_parameters` and count as non-trainable, whatever :attr:`trainable` says.
    non_trainable_keys: ClassVar[frozenset[str]] = frozenset()

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
        #: False while the model runs a backward pass that does not need this layer's dx (the
        #: first layer's, in training); a layer may then skip dx and return None.
        self.compute_dx = True

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
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()
                      if k not in self.non_trainable_keys}
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
        """``dy`` (N, *output_shape) -> ``dx`` (N, *input_shape); fills ``grads``. ``dx`` may be
        None when :attr:`compute_dx` is False."""
        raise NotImplementedError

    # -- the functional API (fastcnn.Input / fastcnn.Model) ---------------------------------
    #: True for layers that take a list of inputs (Add, Concatenate): ``forward(xs)`` and
    #: ``build([shapes])`` take lists, ``backward(dy)`` returns one ``dx`` per input.
    multi_input: ClassVar[bool] = False

    def __call__(self, x: Any, training: bool = False) -> Any:
        """``forward(x, training)`` on arrays; on symbolic tensors (the output of
        ``fastcnn.Input`` or of a layer called on one) it records the call in the graph and
        returns the output's symbolic tensor (:mod:`fastcnn.layers.symbolic`)."""
        if _symbolic.is_symbolic(x):
            return _symbolic.call_symbolic(self, x)
        return self.forward(x, training=training)
    # -- end of the functional API -----------------------------------------------------------

    # -- the pooled-gradient fusion (see the package docstring) -----------------------------
    def accepts_pooled_grad(self) -> bool:
        """Whether :meth:`backward` can take ``pooled_grad=`` (the next layer's pooling routed
        inside this layer's backward) after the last training forward. False by default."""
        return False

    def offer_pooled_grad(self) -> dict[str, Any] | None:
        """After ``forward(x, training=True)``: the ``pooled_grad`` arguments that route a
        gradient of this layer's output back through it inside the previous layer's backward,
        or None (the default) when it has none to offer. Offering consumes the forward cache:
        this layer's own :meth:`backward` is then not called."""
        return None

    # -- the activation fusion -----------------------------------------------------------------
    def fusable_activation(self) -> str | None:
        """The element-wise activation this layer is and nothing more (``"relu"``), which the
        layer before it may apply inside its own forward: the model then runs this layer as a
        pass-through, forward and backward. None (the default): not such a layer."""
        return None

    def accepts_fused_activation(self, activation: str) -> bool:
        """Whether ``forward(x, training, fused_activation=activation)`` applies
        ``activation`` to this layer's output in its own pass, :meth:`backward` then taking the
        gradient of the activation's output. False by default."""
        return False

    def _pooled_output(self, x: Any) -> Any:
        """A reused destination (:func:`pooled`) for this layer's output of the input ``x``
        ``(N, *input_shape)``: ``(N, *output_shape)``; None (the op allocates) for an input of
        another shape than the layer was built for, on the GPU or with the workspace off."""
        if self.output_shape is None or tuple(x.shape[1:]) != self.input_shape:
            return None
        return pooled((x.shape[0], *self.output_shape), x)

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
        """Yield ``(key, param, grad)`` for every trainable weight of a trainable layer (not
        the :attr:`non_trainable_keys`)."""
        if self.trainable:
            for k, p in self.params.items():
                if k not in self.non_trainable_keys:
                    yield k, p, self.grads[k]

    def parameters(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(param, grad)`` pairs (empty when ``trainable`` is False)."""
        for _, p, g in self.named_parameters():
            yield p, g

    def count_params(self) -> int:
        """Number of scalars in all weights (trainable or not)."""
        return sum(int(p.size) for p in self.params.values())

    def count_trainable_params(self) -> int:
        """Number of scalars the optimizer trains: 0 for a frozen layer, else all but the
        :attr:`non_trainable_keys` (Keras' "Trainable params")."""
        if not self.trainable:
            return 0
        return sum(int(p.size) for k, p in self.params.items()
                   if k not in self.non_trainable_keys)

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


#: Private switch (tests, benchmarks): False runs every fusable (layer, activation) pair apart.
_FUSE_ACTIVATIONS = True


def fused_activation(layer: Layer, consumer: Layer) -> str | None:
    """The activation ``layer`` applies inside its forward for ``consumer``, the only reader of
    its output (``consumer`` then passes its input through), or None when the two run apart.
    The models call this on each (producer, only consumer) pair of a forward."""
    if not _FUSE_ACTIVATIONS or layer is consumer:
        return None
    act = consumer.fusable_activation()
    if act is None or not _takes_fused_activation(type(layer).forward):
        return None  # e.g. a subclass whose own forward has no fused_activation argument
    return act if layer.accepts_fused_activation(act) else None


@functools.lru_cache(maxsize=256)
def _takes_fused_activation(forward: Any) -> bool:
    """Whether a layer class's ``forward`` has a ``fused_activation`` parameter."""
    try:
        return "fused_activation" in inspect.signature(forward).parameters
    except (TypeError, ValueError):  # pragma: no cover - a builtin without a signature
        return False


class ActivationMixin:
    """Shared pieces of layers with an ``activation`` (and, for ``"leaky_relu"``, its
    ``negative_slope``: :data:`LEAKY_RELU_SLOPE` unless the layer sets another; for
    ``"gelu"``, ``approximate``: the tanh form when True)."""

    activation: str | None
    negative_slope: float = LEAKY_RELU_SLOPE
    approximate: bool = False

    def _act(self, z: np.ndarray, apply_activation: bool) -> np.ndarray:
        act = self.activation if apply_activation else None
        out = None if act in (None, "softmax") else pooled(z.shape, z)
        return activation_forward(z, act, self.negative_slope, self.approximate, out)

    def _act_input(self, z: np.ndarray, applied: bool) -> np.ndarray | None:
        """What a training forward caches of the activation's input: ``z`` when the backward
        needs it (:data:`ACT_NEEDS_INPUT`), else None (no extra memory)."""
        return z if applied and self.activation in ACT_NEEDS_INPUT else None

    def _act_backward(self, dy: np.ndarray, z: np.ndarray | None, y: np.ndarray,
                      applied: bool) -> np.ndarray:
        act = self.activation if applied else None
        out = None if act in (None, "softmax") else pooled(dy.shape, dy)
        return activation_backward(dy, z, y, act, self.negative_slope, self.approximate, out)


class KernelBiasMixin(ActivationMixin):
    """Shared pieces of layers with a ``kernel``, an optional ``bias`` (each with an
    initializer) and an activation: Conv2D and Dense."""

    use_bias: bool
    params: dict[str, np.ndarray]

    def _init_kernel_bias(self, activation: str | None, use_bias: bool, kernel_initializer: Any,
                          bias_initializer: Any, label: str) -> None:
        self.activation = check_activation(activation, label)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = _init.get(kernel_initializer)
        self.bias_initializer = _init.get(bias_initializer)

    def accepts_fused_activation(self, activation: str) -> bool:
        """True for ``"relu"`` when the layer has no activation of its own (None /
        ``"linear"``): :meth:`forward` can then apply a following ReLU in its kernel's epilogue
        (``fused_activation="relu"``) and the backward masks the gradient in the kernel
        (``relu_y``) or with ``ops.relu_backward``, the bits of the unfused pair."""
        return activation == "relu" and self.activation is None

    def _pass_activation(self, apply_activation: bool, fused_activation: str | None
                         ) -> str | None:
        """The activation a forward applies: ``fused_activation`` (the next layer's, see
        :meth:`accepts_fused_activation`), else the layer's own unless ``apply_activation`` is
        False. ValueError for a ``fused_activation`` the layer does not accept."""
        if fused_activation is None:
            return self.activation if apply_activation else None
        if not self.accepts_fused_activation(fused_activation):
            raise ValueError(f"{self._label()}: fused_activation must be None, or 'relu' "  # type: ignore[attr-defined]
                             f"for a layer without an activation of its own; got "
                             f"{fused_activation!r} (this layer's activation: "
                             f"{self.activation!r})")
        return fused_activation

    def _pass_backward(self, dy: np.ndarray, z: np.ndarray | None, y: np.ndarray,
                       act: str | None) -> np.ndarray:
        """The gradient of the activation ``act`` that a forward applied
        (:meth:`_pass_activation`)."""
        out = None if act in (None, "softmax") else pooled(dy.shape, dy)
        return activation_backward(dy, z, y, act, self.negative_slope, self.approximate, out)

    def _store_kernel_bias(self, dw: np.ndarray, db: np.ndarray | None,
                           accumulate: bool) -> None:
        """Store the ops' ``dw`` and ``db`` (None without a bias) into ``grads``."""
        self._store_grad("kernel", dw, accumulate)  # type: ignore[attr-defined]
        if self.use_bias:
            self._store_grad("bias", db, accumulate)  # type: ignore[attr-defined]

    def _kernel_bias_config(self) -> dict[str, Any]:
        return {
            "activation": self.activation,
            "use_bias": self.use_bias,
            "kernel_initializer": _init.serialize(self.kernel_initializer),
            "bias_initializer": _init.serialize(self.bias_initializer),
        }
