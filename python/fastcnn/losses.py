"""Losses: categorical cross-entropy (sparse or one-hot labels), binary cross-entropy, MSE.

Every loss is a mean over the batch (and, for BCE / MSE, over the output elements, which is
what Keras' mean over the last axis then over the batch gives).

Fusion with the output activation
---------------------------------
``loss.fused_activation`` names the activation whose derivative cancels with the loss's:
``"softmax"`` for the cross-entropies, ``"sigmoid"`` for binary cross-entropy. When a model's
last layer ends with that activation (and ``from_logits`` is False), the model keeps that
layer's pre-activation values (logits) during training and evaluation and calls
``value_and_grad(logits, y_true, logits=True)``: the loss and its gradient with respect to the
logits are computed in one numerically stable step (:func:`fastcnn.ops.cross_entropy` for
softmax, ``log1p(exp(-|z|))`` for sigmoid). ``model.predict`` still returns probabilities.

Without fusion (``logits=False`` and ``from_logits=False``) ``y_pred`` are probabilities,
clipped to ``[1e-7, 1 - 1e-7]`` as Keras does (the gradient ignores the clipping).

Labels
------
Both cross-entropies accept integer class ids ``(N,)`` (or ``(N, 1)``, or integral floats) and
one-hot / probability rows ``(N, classes)``: ``SparseCategoricalCrossentropy`` and
``CategoricalCrossentropy`` differ only in name (a dataset may yield either form).
Binary cross-entropy takes 0/1 (or soft) targets of the output's size.

Devices
-------
The losses run on the predictions' device: NumPy arrays on the CPU, CuPy arrays on the GPU
(``xp = array_module(y_pred)``). Targets on the other device are moved to the predictions'
(labels are small); the gradient is an array of the predictions' kind and the loss a Python
float (on the GPU that is the one device-to-host copy of a training step). Checking class ids
on the GPU costs one reduction and a synchronisation.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from . import ops
from ._arrays import array_module, is_cupy, to_device_like
from ._registry import Registry

__all__ = [
    "BinaryCrossentropy",
    "CategoricalCrossentropy",
    "Loss",
    "MeanSquaredError",
    "SparseCategoricalCrossentropy",
    "get",
    "serialize",
]

_EPS = 1e-7


class Loss:
    """Base class.

    ``value_and_grad(y_pred, y_true, logits=False) -> (loss: float, dy_pred: float32 array)``
    is what the model calls; ``loss(y_true, y_pred)`` returns just the value (Keras' argument
    order).
    """

    name: ClassVar[str] = "loss"
    fused_activation: ClassVar[str | None] = None

    def __init__(self, from_logits: bool = False) -> None:
        self.from_logits = bool(from_logits)

    def value_and_grad(self, y_pred: np.ndarray, y_true: Any,
                       logits: bool = False) -> tuple[float, np.ndarray]:
        """Loss and its gradient with respect to ``y_pred`` (same shape, float32).

        Args:
            y_pred: the model's output (N, ...); pre-activation values when ``logits`` (or
                ``from_logits``) is set.
            y_true: targets for the batch.
            logits: ``y_pred`` are the logits of the fused activation.
        """
        raise NotImplementedError

    def __call__(self, y_true: Any, y_pred: np.ndarray) -> float:
        if is_cupy(y_pred):
            y_pred = array_module(y_pred).ascontiguousarray(y_pred, dtype=np.float32)
        else:
            y_pred = np.asarray(y_pred, dtype=np.float32)
        return self.value_and_grad(y_pred, y_true)[0]

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments."""
        return {"from_logits": self.from_logits}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(from_logits={self.from_logits})"


def as_targets(y_true: Any, y_pred: Any) -> Any:
    """``y_true`` (labels or targets, any shape) as an array on ``y_pred``'s device (moved there
    when it is not): a NumPy array on the CPU, a CuPy array on the GPU. Used by the losses and
    by :mod:`fastcnn.metrics`."""
    if is_cupy(y_pred) or is_cupy(y_true):
        return to_device_like(y_true, y_pred)
    return np.asarray(y_true)


def _class_targets(y_true: Any, n: int, classes: int, like: Any = None) -> np.ndarray:
    """int64 ids ``(n,)`` or float32 rows ``(n, classes)``, validated, on ``like``'s device."""
    y = as_targets(y_true, like)
    xp = array_module(y)
    if y.ndim == 2 and y.shape == (n, classes) and not (classes == 1):
        if not np.issubdtype(y.dtype, np.floating) and not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"one-hot labels must be numeric, got dtype {y.dtype}")
        return xp.ascontiguousarray(y, dtype=np.float32)
    if y.size != n or (y.ndim > 1 and y.shape[-1] != 1) or y.ndim > 2:
        raise ValueError(f"labels must be class ids of shape ({n},) or one-hot rows of shape "
                         f"({n}, {classes}); got shape {y.shape}")
    y = y.reshape(n)
    if np.issubdtype(y.dtype, np.floating):
        if not bool(xp.all(xp.isfinite(y))) or bool(xp.any(y != xp.round(y))):
            raise ValueError("class-id labels given as floats must be whole numbers")
    elif not (np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_):
        raise ValueError(f"labels must be integer class ids or float one-hot rows, "
                         f"got dtype {y.dtype}")
    ids = xp.ascontiguousarray(y, dtype=np.int64)
    if n and bool(xp.any((ids < 0) | (ids >= classes))):
        raise ValueError(f"class ids must be in [0, {classes}), got values in "
                         f"[{ids.min()}, {ids.max()}]")
    return ids


class _CrossEntropy(Loss):
    fused_activation = "softmax"

    def value_and_grad(self, y_pred, y_true, logits=False):
        if y_pred.ndim != 2:
            raise ValueError(f"{type(self).__name__}: expects outputs of shape "
                             f"(N, classes), got {y_pred.shape}")
        n, c = y_pred.shape
        t = _class_targets(y_true, n, c, y_pred)
        xp = array_module(y_pred)
        if logits or self.from_logits:
            loss, dlogits = ops.cross_entropy(xp.ascontiguousarray(y_pred, dtype=np.float32), t)
            return float(loss), dlogits
        # probabilities (Keras: renormalise rows, clip, -sum t log p)
        s = xp.sum(y_pred, axis=1, keepdims=True)
        p = xp.clip(y_pred / s, _EPS, 1.0 - _EPS)
        if t.ndim == 1:
            onehot = xp.zeros((n, c), dtype=np.float32)
            onehot[xp.arange(n), t] = 1.0
            t = onehot
        loss = -xp.sum(t * xp.log(p), dtype=np.float64) / max(n, 1)
        o = xp.clip(y_pred, _EPS, None)
        grad = (-t / o + xp.sum(t, axis=1, keepdims=True) / s) / max(n, 1)
        return float(loss), grad.astype(np.float32)


class SparseCategoricalCrossentropy(_CrossEntropy):
    """Cross-entropy with integer class ids (one-hot rows are accepted too)."""

    name = "sparse_categorical_crossentropy"


class CategoricalCrossentropy(_CrossEntropy):
    """Cross-entropy with one-hot / probability rows (class ids are accepted too)."""

    name = "categorical_crossentropy"


class BinaryCrossentropy(Loss):
    """Binary cross-entropy for a one-unit output (or several independent ones).

    Targets must have as many elements as the output (``(N,)`` for an ``(N, 1)`` output is
    fine). Fused with a ``sigmoid`` output (or with ``from_logits=True``) it is computed from
    the logits z as ``max(z, 0) - z t + log1p(exp(-|z|))``; gradient ``sigmoid(z) - t``.
    """

    name = "binary_crossentropy"
    fused_activation = "sigmoid"

    def value_and_grad(self, y_pred, y_true, logits=False):
        t = as_targets(y_true, y_pred).astype(np.float32, copy=False)
        xp = array_module(y_pred)
        if t.size != y_pred.size:
            raise ValueError(f"binary_crossentropy: targets have {t.size} elements "
                             f"(shape {t.shape}), the output has {y_pred.size} "
                             f"(shape {y_pred.shape})")
        t = t.reshape(y_pred.shape)
        m = max(y_pred.size, 1)
        if logits or self.from_logits:
            z = y_pred
            loss = xp.sum(xp.maximum(z, 0) - z * t + xp.log1p(xp.exp(-xp.abs(z))),
                          dtype=np.float64) / m
            e = xp.exp(-xp.abs(z))
            sig = xp.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
            return float(loss), ((sig - t) / m).astype(np.float32)
        p = xp.clip(y_pred, _EPS, 1.0 - _EPS)
        loss = -xp.sum(t * xp.log(p) + (1 - t) * xp.log(1 - p), dtype=np.float64) / m
        grad = (p - t) / (p * (1 - p)) / m
        return float(loss), grad.astype(np.float32)


class MeanSquaredError(Loss):
    """``mean((y_pred - y_true)^2)`` over all elements; targets reshaped to the output's
    shape when they have the same number of elements."""

    name = "mean_squared_error"

    def __init__(self) -> None:
        super().__init__(from_logits=False)

    def value_and_grad(self, y_pred, y_true, logits=False):
        t = as_targets(y_true, y_pred).astype(np.float32, copy=False)
        xp = array_module(y_pred)
        if t.size != y_pred.size:
            raise ValueError(f"mse: targets have shape {t.shape}, the output {y_pred.shape}")
        diff = y_pred - t.reshape(y_pred.shape)
        m = max(y_pred.size, 1)
        loss = xp.sum(xp.square(diff, dtype=np.float64)) / m
        return float(loss), (diff * np.float32(2.0 / m)).astype(np.float32)

    def get_config(self):
        return {}

    def __repr__(self) -> str:
        return "MeanSquaredError()"


_REGISTRY: Registry[Loss] = Registry("loss", Loss, {
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "binary_crossentropy": BinaryCrossentropy,
    "mean_squared_error": MeanSquaredError,
    "mse": MeanSquaredError,
})


def get(identifier: Any) -> Loss:
    """Loss from a name (``"sparse_categorical_crossentropy"``,
    ``"categorical_crossentropy"``, ``"binary_crossentropy"``, ``"mse"`` /
    ``"mean_squared_error"``), a :class:`Loss`, or a config dict."""
    return _REGISTRY.get(identifier)


def serialize(loss: Loss) -> dict[str, Any]:
    """``{"class_name", "config"}`` of a built-in loss (ValueError for custom classes)."""
    return _REGISTRY.serialize(loss)
