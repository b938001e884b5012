"""Ready-made models: the one definition of each network the project uses.

* :func:`seeds_cnn` -- the seeds' CNN: two 3x3 ReLU convolutions (32, 64 filters), 2x2 max
  pooling, a 128-unit ReLU dense layer and a softmax classifier. For (1, 28, 28) inputs and 10
  classes it has 1,199,882 parameters (Keras' count) and 4.6 GFLOP per training step at batch
  64. ``fastcnn train`` trains it; the benchmarks time it against PyTorch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import layers as L
from .functional import Functional
from .model import Sequential

__all__ = ["MODELS", "build", "resnet", "seeds_cnn", "vgg_bn"]


def seeds_cnn(input_shape: tuple[int, ...] = (1, 28, 28), classes: int = 10, *,
              seed: int | None = 0, padding: str = "valid") -> Sequential:
    """The seeds' CNN for inputs ``(C, H, W)``, built (weights from
    ``np.random.default_rng(seed)``) and not compiled.

    Args:
        input_shape: per-sample input shape ``(C, H, W)``.
        classes: units of the softmax output layer.
        seed: weight-initialisation seed (None: fresh random weights).
        padding: the convolutions' padding; ``"same"`` keeps the spatial size through them
            (used for the tiny 8x8 digits).

    Returns:
        ``Sequential``: (N, C, H, W) -> (N, classes) probabilities.
    """
    return Sequential([
        L.Conv2D(32, 3, padding=padding, activation="relu"),
        L.Conv2D(64, 3, padding=padding, activation="relu"),
        L.MaxPool2D(2),
        L.Flatten(),
        L.Dense(128, activation="relu"),
        L.Dense(classes, activation="softmax"),
    ], input_shape=tuple(input_shape), seed=seed)


def resnet(depth: int = 20, input_shape: tuple[int, ...] = (3, 32, 32), classes: int = 10, *,
           seed: int | None = 0) -> Functional:
    """The CIFAR ResNet of He et al. (2016, section 4.2) with ``depth = 6n + 2`` layers.

    Three stages of ``n`` basic blocks (two 3x3 convolutions, each followed by batch
    normalisation, ReLU after the first and after the residual addition) with 16, 32 and 64
    filters; the first block of stages 2 and 3 halves the plane with stride 2 and projects its
    shortcut with a 1x1 stride-2 convolution (Keras' ``resnet_v1`` CIFAR example). Then global
    average pooling and a softmax classifier. ResNet-20 has 274,442 parameters (the paper's
    0.27M), 273,066 of them trainable; the convolutions before a BatchNormalization are folded
    with it in ``predict`` / ``evaluate`` / export.

    Args:
        depth: 20, 32, 44, 56, 110, ... (``(depth - 2) % 6 == 0``).
        input_shape: per-sample ``(C, H, W)``.
        classes: units of the softmax output layer.
        seed: weight-initialisation seed (None: fresh random weights).

    Returns:
        A built, uncompiled graph ``Model``: (N, C, H, W) -> (N, classes) probabilities.
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"resnet: depth must be 6n + 2 with n >= 1 (20, 32, 44, 56, 110, ...), "
                         f"got {depth!r}")
    n = (depth - 2) // 6

    def conv_bn(t: Any, filters: int, strides: int = 1, relu: bool = True) -> Any:
        t = L.Conv2D(filters, 3, strides=strides, padding="same",
                     kernel_initializer="he_normal")(t)
        t = L.BatchNormalization()(t)
        return L.Activation("relu")(t) if relu else t

    inputs = L.Input(tuple(input_shape))
    x = conv_bn(inputs, 16)
    filters = 16
    for stage in range(3):
        for block in range(n):
            strides = 2 if stage > 0 and block == 0 else 1
            y = conv_bn(x, filters, strides)
            y = conv_bn(y, filters, relu=False)
            if strides != 1:  # the projection shortcut
                x = L.Conv2D(filters, 1, strides=strides, padding="same",
                             kernel_initializer="he_normal")(x)
            x = L.Activation("relu")(L.Add()([x, y]))
        filters *= 2
    x = L.GlobalAveragePooling2D()(x)
    outputs = L.Dense(classes, activation="softmax", kernel_initializer="he_normal")(x)
    return Functional(inputs, outputs, name=f"resnet{depth}", seed=seed)


def vgg_bn(input_shape: tuple[int, ...] = (3, 32, 32), classes: int = 10, *,
           widths: tuple[int, ...] = (32, 64, 128), seed: int | None = 0) -> Sequential:
    """A small VGG with batch normalisation: per width, two 3x3 convolutions without bias, each
    followed by batch normalisation and ReLU, then 2x2 max pooling; then global average pooling
    and a softmax classifier. The default widths (32, 64, 128) give 289,642 parameters.

    Args:
        input_shape: per-sample ``(C, H, W)``, H and W divisible by ``2 ** len(widths)``.
        classes: units of the softmax output layer.
        widths: filters of each stage.
        seed: weight-initialisation seed (None: fresh random weights).

    Returns:
        A built, uncompiled ``Sequential``: (N, C, H, W) -> (N, classes) probabilities.
    """
    stack: list[Any] = []
    for w in widths:
        for _ in range(2):
            stack += [L.Conv2D(w, 3, padding="same", use_bias=False,
                               kernel_initializer="he_normal"),
                      L.BatchNormalization(), L.Activation("relu")]
        stack.append(L.MaxPool2D(2))
    stack += [L.GlobalAveragePooling2D(), L.Dense(classes, activation="softmax")]
    return Sequential(stack, input_shape=tuple(input_shape), seed=seed, name="vgg_bn")


#: ``fastcnn train --model`` names -> builders taking ``(input_shape, classes, seed=...)``.
MODELS: dict[str, Callable[..., Any]] = {
    "seeds_cnn": seeds_cnn,
    **{f"resnet{d}": (lambda shape, classes, *, seed=0, d=d: resnet(d, shape, classes, seed=seed))
       for d in (20, 32, 44, 56, 110)},
    "vgg_bn": vgg_bn,
}


def build(name: str, input_shape: tuple[int, ...], classes: int, *, seed: int | None = 0,
          **kwargs: Any) -> Any:
    """The model called ``name`` (a key of :data:`MODELS`) for ``input_shape`` and ``classes``;
    ValueError listing the names otherwise."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(MODELS)}")
    return MODELS[name](tuple(input_shape), classes, seed=seed, **kwargs)
