"""Losses: categorical cross-entropy (sparse or one-hot labels), binary cross-entropy, MSE.

Every loss is a mean over the batch (and, for BCE / MSE, over the output elements, which is
what Keras' mean over the last axis then over the batch gives).

Sample weights
--------------
``value_and_grad(..., sample_weight=w)`` with ``w`` of shape ``(N,)`` follows Keras'
``"sum_over_batch_size"`` reduction: with ``l_i`` the loss of sample ``i`` (for BCE / MSE the
mean over its values) the loss is ``sum(w_i * l_i) / N``, and its gradient is the unweighted
one with row ``i`` multiplied by ``w_i`` (so weights of all ones give bitwise the unweighted
gradient). ``fit``'s ``class_weight`` becomes such a ``w`` (``w_i = class_weight[y_i]``).

Loss functions
--------------
``compile(loss=fn)`` takes, besides the names and :class:`Loss` objects, a plain function
``fn(y_true, y_pred) -> (losses, grads)``: ``losses`` the per-sample losses ``(N,)`` and
``grads`` their gradients with respect to ``y_pred`` (same shape as ``y_pred``; row ``i`` is
``d losses[i] / d y_pred[i]``), NumPy arrays (CuPy on the GPU). fastcnn has no automatic
differentiation, so a function returning only the losses (Keras' form) is refused with a
TypeError at its first call; :class:`LossFunction` wraps it (batch mean and sample weights as
above, ``name`` from ``fn.__name__``). ``y_pred`` are the model's outputs (probabilities for a
softmax / sigmoid output: a loss function is never fused with the activation). For a loss with
its own reduction, subclass :class:`Loss` and implement ``value_and_grad``.

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
(labels are small); the gradient is an array of the predictions' kind. ``value_and_grad``'s
loss is a Python float (on the GPU one copy and a synchronisation), except on the GPU inside
``fit`` (a :func:`fastcnn._deferred.scope`): there it is a 0-d float64 device array and a
training step copies nothing back. Class ids are checked on the GPU by a few reductions whose
result is read at once outside ``fit``, or at ``fit``'s next read inside it (the ValueError
then names the batch).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from . import ops
from ._arrays import array_module, is_cupy, to_device_like
from ._deferred import defer, deferring
from ._registry import Registry
from ._structure import Arrays, parts

__all__ = [
    "BinaryCrossentropy",
    "CategoricalCrossentropy",
    "Loss",
    "LossFunction",
    "MeanSquaredError",
    "OutputLosses",
    "SparseCategoricalCrossentropy",
    "as_sample_weight",
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

    def value_and_grad(self, y_pred: np.ndarray, y_true: Any, logits: bool = False,
                       sample_weight: Any = None) -> tuple[float, np.ndarray]:
        """Loss and its gradient with respect to ``y_pred`` (same shape, float32).

        Args:
            y_pred: the model's output (N, ...); pre-activation values when ``logits`` (or
                ``from_logits``) is set.
            y_true: targets for the batch.
            logits: ``y_pred`` are the logits of the fused activation.
            sample_weight: None or per-sample weights (N,): ``sum(w * l) / N`` (see the module
                docstring). A subclass that takes no weights is called without the argument
                when there are none.
        """
        raise NotImplementedError

    def __call__(self, y_true: Any, y_pred: np.ndarray, sample_weight: Any = None) -> float:
        if is_cupy(y_pred):
            y_pred = array_module(y_pred).ascontiguousarray(y_pred, dtype=np.float32)
        else:
            y_pred = np.asarray(y_pred, dtype=np.float32)
        if sample_weight is None:
            return float(self.value_and_grad(y_pred, y_true)[0])
        return float(self.value_and_grad(y_pred, y_true, sample_weight=sample_weight)[0])

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


def as_sample_weight(sample_weight: Any, n: int, like: Any = None,
                     who: str = "sample_weight") -> Any:
    """Per-sample weights as a float32 array ``(n,)`` on ``like``'s device (``(n, 1)`` is
    accepted); None stays None. ValueError for another shape or (host arrays: a GPU array is
    not checked, which would cost a synchronisation) a NaN / infinite / negative weight."""
    if sample_weight is None:
        return None
    w = as_targets(sample_weight, like)
    if w.size != n or w.ndim > 2 or (w.ndim == 2 and w.shape[1] != 1) or w.ndim == 0:
        raise ValueError(f"{who}: sample weights must have shape ({n},), one per sample of "
                         f"the batch, got shape {tuple(w.shape)}")
    if not (np.issubdtype(w.dtype, np.floating) or np.issubdtype(w.dtype, np.integer)
            or w.dtype == np.bool_):
        raise ValueError(f"{who}: sample weights must be numbers, got dtype {w.dtype}")
    xp = array_module(w)
    w = xp.ascontiguousarray(w.reshape(n), dtype=np.float32)
    if n and not is_cupy(w) and not bool(xp.all(xp.isfinite(w) & (w >= 0))):
        raise ValueError(f"{who}: sample weights must be finite and >= 0")
    return w


def _value(v: Any) -> Any:
    """A loss value: a Python float, except on the GPU inside a :func:`fastcnn._deferred.scope`
    (``fit``'s steps), where it stays on the device (0-d) and nothing is read."""
    return v if is_cupy(v) and deferring() else float(v)


def _device_label_checks(y: Any, ids: Any, classes: int, floats: bool) -> None:
    """The class-id checks of :func:`_class_targets` on CuPy arrays, computed on the device and
    read through :func:`fastcnn._deferred.defer` (now, or at ``fit``'s next read)."""
    xp = array_module(ids)
    if floats:
        bad = ~xp.all(xp.isfinite(y)) | xp.any(y != xp.round(y))
        defer(bad.astype(np.int64).reshape(1), lambda r: (
            "class-id labels given as floats must be whole numbers" if r[0] else None))
    if ids.size:
        rec = xp.stack([xp.any((ids < 0) | (ids >= classes)).astype(np.int64), ids.min(),
                        ids.max()])
        defer(rec, lambda r: (f"class ids must be in [0, {classes}), got values in "
                              f"[{int(r[1])}, {int(r[2])}]") if r[0] else None)


def _rows(w: Any, ndim: int) -> Any:
    """``w`` (N,) shaped to broadcast over the rows of an (N, ...) array of ``ndim`` axes."""
    return w.reshape(w.shape + (1,) * (ndim - 1))


def _class_targets(y_true: Any, n: int, classes: int, like: Any = None) -> np.ndarray:
    """int64 ids ``(n,)`` or float32 rows ``(n, classes)``, validated, on ``like``'s device;
    a ValueError that names the call that works otherwise (:func:`_labels_fix`)."""
    y = as_targets(y_true, like)
    xp = array_module(y)
    if y.ndim == 2 and y.shape == (n, classes) and not (classes == 1):
        if not np.issubdtype(y.dtype, np.floating) and not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"one-hot labels must be numeric, got dtype {y.dtype}")
        return xp.ascontiguousarray(y, dtype=np.float32)
    if y.size != n or (y.ndim > 1 and y.shape[-1] != 1) or y.ndim > 2:
        raise ValueError(f"labels must be class ids of shape ({n},) or one-hot rows of shape "
                         f"({n}, {classes}); got shape {y.shape}" + _shape_fix(y, n, classes))
    y = y.reshape(n)
    if is_cupy(y) and (np.issubdtype(y.dtype, np.floating) or np.issubdtype(y.dtype, np.integer)
                       or y.dtype == np.bool_):
        ids = xp.ascontiguousarray(y, dtype=np.int64)
        _device_label_checks(y, ids, classes, np.issubdtype(y.dtype, np.floating))
        return ids
    if np.issubdtype(y.dtype, np.floating):
        if not bool(xp.all(xp.isfinite(y))) or bool(xp.any(y != xp.round(y))):
            raise ValueError(f"class-id labels given as floats must be whole numbers; these "
                             f"(shape {y.shape}, dtype {y.dtype}) are not: pass integer class "
                             f"ids (y.astype(numpy.int64)) or probability rows of shape "
                             f"({n}, {classes})")
    elif not (np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_):
        raise ValueError(f"labels must be integer class ids or float one-hot rows, "
                         f"got dtype {y.dtype}; map class names to ids first, e.g. "
                         f"names, y = numpy.unique(y, return_inverse=True)")
    ids = xp.ascontiguousarray(y, dtype=np.int64)
    if n and bool(xp.any((ids < 0) | (ids >= classes))):
        lo, hi = int(ids.min()), int(ids.max())
        fix = ""
        if lo == 1 and hi == classes:
            fix = f"; the labels look 1-based (1 to {classes}): pass y - 1"
        elif lo >= 0:
            fix = (f"; give the last layer {hi + 1} units (Dense({hi + 1})) for class ids up "
                   f"to {hi}")
        raise ValueError(f"class ids must be in [0, {classes}) (the model has {classes} "
                         f"outputs), got values in [{lo}, {hi}]{fix}")
    return ids


def _shape_fix(y: Any, n: int, classes: int) -> str:
    """The fix for labels of the wrong shape, as a "; ..." clause ("" when none is clear)."""
    if y.ndim == 2 and y.shape[0] == n and y.shape[1] > 1:
        k = y.shape[1]
        return (f": one-hot rows of {k} classes for a model with {classes} outputs; give the "
                f"last layer {k} units (Dense({k})), or encode the class ids with "
                f"numpy.eye({classes})[ids]")
    if y.ndim >= 1 and len(y) != n:
        return f": {len(y)} labels for a batch of {n} samples (pass one label per sample)"
    return ""


class _CrossEntropy(Loss):
    fused_activation = "softmax"

    def value_and_grad(self, y_pred, y_true, logits=False, sample_weight=None):
        if y_pred.ndim != 2:
            raise ValueError(f"{type(self).__name__}: expects outputs of shape "
                             f"(N, classes), got {y_pred.shape}")
        n, c = y_pred.shape
        t = _class_targets(y_true, n, c, y_pred)
        w = as_sample_weight(sample_weight, n, y_pred)
        xp = array_module(y_pred)
        if logits or self.from_logits:
            z = xp.ascontiguousarray(y_pred, dtype=np.float32)
            loss, dlogits = ops.cross_entropy(z, t)
            if w is None:
                return _value(loss), dlogits
            # per-sample losses sum_j t_ij (logsumexp(z_i) - z_ij), weighted
            z64 = z.astype(np.float64)
            zmax = z64.max(axis=1, keepdims=True) if n else z64[:, :1]
            lse = (xp.log(xp.sum(xp.exp(z64 - zmax), axis=1)) + zmax[:, 0])
            if t.ndim == 1:
                per = lse - z64[xp.arange(n), t]
            else:
                per = xp.sum(t, axis=1, dtype=np.float64) * lse - xp.sum(t * z64, axis=1)
            return (_value(xp.sum(w * per, dtype=np.float64) / max(n, 1)),
                    dlogits * _rows(w, 2))
        # probabilities (Keras: renormalise rows, clip, -sum t log p)
        s = xp.sum(y_pred, axis=1, keepdims=True)
        p = xp.clip(y_pred / s, _EPS, 1.0 - _EPS)
        if t.ndim == 1:
            onehot = xp.zeros((n, c), dtype=np.float32)
            if is_cupy(t):  # a bad id raises at the check's read: no out-of-bounds write now
                t = xp.clip(t, 0, c - 1)
            onehot[xp.arange(n), t] = 1.0
            t = onehot
        o = xp.clip(y_pred, _EPS, None)
        grad = ((-t / o + xp.sum(t, axis=1, keepdims=True) / s) / max(n, 1)).astype(np.float32)
        if w is None:
            loss = -xp.sum(t * xp.log(p), dtype=np.float64) / max(n, 1)
            return _value(loss), grad
        per = -xp.sum(t * xp.log(p), axis=1, dtype=np.float64)
        return _value(xp.sum(w * per, dtype=np.float64) / max(n, 1)), grad * _rows(w, 2)


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

    def value_and_grad(self, y_pred, y_true, logits=False, sample_weight=None):
        t = as_targets(y_true, y_pred).astype(np.float32, copy=False)
        xp = array_module(y_pred)
        if t.size != y_pred.size:
            raise ValueError(f"binary_crossentropy: targets have {t.size} elements "
                             f"(shape {t.shape}), the output has {y_pred.size} "
                             f"(shape {y_pred.shape})")
        t = t.reshape(y_pred.shape)
        m = max(y_pred.size, 1)
        w = as_sample_weight(sample_weight, y_pred.shape[0] if y_pred.ndim else 1, y_pred)
        if logits or self.from_logits:
            z = y_pred
            elem = xp.maximum(z, 0) - z * t + xp.log1p(xp.exp(-xp.abs(z)))
            e = xp.exp(-xp.abs(z))
            sig = xp.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
            grad = ((sig - t) / m).astype(np.float32)
        else:
            p = xp.clip(y_pred, _EPS, 1.0 - _EPS)
            elem = -(t * xp.log(p) + (1 - t) * xp.log(1 - p))
            grad = ((p - t) / (p * (1 - p)) / m).astype(np.float32)
        if w is None:
            return _value(xp.sum(elem, dtype=np.float64) / m), grad
        wr = _rows(w, y_pred.ndim)
        return _value(xp.sum(elem * wr, dtype=np.float64) / m), grad * wr


class MeanSquaredError(Loss):
    """``mean((y_pred - y_true)^2)`` over all elements; targets reshaped to the output's
    shape when they have the same number of elements."""

    name = "mean_squared_error"

    def __init__(self) -> None:
        super().__init__(from_logits=False)

    def value_and_grad(self, y_pred, y_true, logits=False, sample_weight=None):
        t = as_targets(y_true, y_pred).astype(np.float32, copy=False)
        xp = array_module(y_pred)
        if t.size != y_pred.size:
            raise ValueError(f"mse: targets have shape {t.shape}, the output {y_pred.shape}")
        diff = y_pred - t.reshape(y_pred.shape)
        m = max(y_pred.size, 1)
        grad = (diff * np.float32(2.0 / m)).astype(np.float32)
        w = as_sample_weight(sample_weight, y_pred.shape[0] if y_pred.ndim else 1, y_pred)
        if w is None:
            return _value(xp.sum(xp.square(diff, dtype=np.float64)) / m), grad
        wr = _rows(w, y_pred.ndim)
        return _value(xp.sum(xp.square(diff, dtype=np.float64) * wr) / m), grad * wr

    def get_config(self):
        return {}

    def __repr__(self) -> str:
        return "MeanSquaredError()"


class LossFunction(Loss):
    """A plain function as a loss (see the module docstring): ``fn(y_true, y_pred) ->
    (losses (N,), grads like y_pred)``; the loss is ``sum(w * losses) / N`` (``w`` = 1 without
    sample weights) and its gradient ``w_i * grads[i] / N``. ``name`` defaults to
    ``fn.__name__``. Not saved with the model (``save`` warns that the compile settings are
    not saved)."""

    def __init__(self, fn: Any, name: str | None = None) -> None:
        if not callable(fn):
            raise TypeError(f"LossFunction: fn must be callable, got {fn!r}")
        super().__init__(from_logits=False)
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "loss")  # type: ignore[misc]

    def value_and_grad(self, y_pred, y_true, logits=False, sample_weight=None):
        if logits:
            raise ValueError(f"{self.name}: a loss function takes the model's outputs, not "
                             f"logits")
        xp = array_module(y_pred)
        n = y_pred.shape[0] if y_pred.ndim else 1
        out = self.fn(as_targets(y_true, y_pred), y_pred)
        hint = ("a loss function must return (losses, grads): the per-sample losses (N,) and "
                "their gradient with respect to y_pred (same shape as y_pred), because fastcnn "
                "has no automatic differentiation; or subclass fastcnn.losses.Loss and "
                "implement value_and_grad(y_pred, y_true, logits=False, sample_weight=None)")
        if not (isinstance(out, tuple | list) and len(out) == 2):
            raise TypeError(f"loss function {self.name!r} returned {type(out).__name__}, not "
                            f"a pair; {hint}")
        per, grad = (as_targets(a, y_pred) for a in out)
        if per.size != n or grad.shape != y_pred.shape:
            raise TypeError(f"loss function {self.name!r} returned losses of shape "
                            f"{tuple(per.shape)} and grads of shape {tuple(grad.shape)} for "
                            f"y_pred of shape {tuple(y_pred.shape)}; expected ({n},) and "
                            f"{tuple(y_pred.shape)}: {hint}")
        per = per.reshape(n).astype(np.float64)
        w = as_sample_weight(sample_weight, n, y_pred)
        scale = np.float32(1.0 / max(n, 1))
        g = grad.astype(np.float32) * scale
        if w is None:
            return _value(xp.sum(per) / max(n, 1)), g
        return _value(xp.sum(w * per) / max(n, 1)), g * _rows(w, y_pred.ndim)

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name}

    def __repr__(self) -> str:
        return f"LossFunction({self.name})"


class OutputLosses(Loss):
    """The loss of a model with several outputs (what ``compile(loss=..., loss_weights=...)``
    builds for one): output ``k``'s loss ``l_k`` (or None: that output is not trained and needs
    no targets) weighted by ``w_k``; the model's loss is ``sum_k w_k * l_k`` (in output order,
    as Keras), the gradient of output ``k`` is ``w_k * dl_k`` (``dl_k`` itself when
    ``w_k == 1``). Each ``l_k`` takes the batch's ``sample_weight`` (N,) as a single-output
    loss does: one array for every output, or, as an :class:`fastcnn._structure.Arrays` of
    per-output weights (``fit(sample_weight=[w1, w2])`` / ``{name: w}``), its own entry (None:
    unweighted).

    ``value_and_grad(y_pred, y_true, logits, sample_weight)`` takes the outputs as a list,
    the targets as a list (or :class:`fastcnn._structure.Arrays`) in output order and
    ``logits`` as one flag per output; it returns ``(total, [grad per output or None])`` and
    keeps the outputs' own values in :attr:`last_values` (what the ``<output>_loss`` entries of
    the logs report).

    Args:
        losses: output name -> loss identifier (as :func:`get` takes) or None, in output order.
        loss_weights: output name -> weight (a finite float >= 0; 1.0 when missing).
    """

    fused_activation = None

    def __init__(self, losses: dict[str, Any],
                 loss_weights: dict[str, float] | None = None) -> None:
        super().__init__(from_logits=False)
        self.output_names = [str(k) for k in losses]
        self.losses: list[Loss | None] = [None if v is None else get(v) for v in losses.values()]
        weights = dict(loss_weights or {})
        self.loss_weights: list[float] = []
        for n in self.output_names:
            w = weights.get(n, 1.0)
            if isinstance(w, bool) or not isinstance(w, int | float | np.number) \
                    or not np.isfinite(float(w)) or float(w) < 0:
                raise ValueError(f"loss_weights[{n!r}] must be a finite number >= 0, got {w!r}")
            self.loss_weights.append(float(w))
        self.last_values: list[float | None] = [None] * len(self.output_names)

    def value_and_grad(self, y_pred, y_true, logits=False, sample_weight=None):
        preds, ys = list(y_pred), parts(y_true)
        n = len(self.output_names)
        if len(preds) != n or len(ys) != n:
            raise ValueError(f"OutputLosses: expected {n} outputs and {n} targets "
                             f"({self.output_names}), got {len(preds)} and {len(ys)}")
        flags = list(logits) if isinstance(logits, tuple | list) else [bool(logits)] * n
        total, grads = 0.0, []
        for k, (loss, w) in enumerate(zip(self.losses, self.loss_weights, strict=True)):
            if loss is None:
                self.last_values[k] = None
                grads.append(None)
                continue
            wk = sample_weight.arrays[k] if isinstance(sample_weight, Arrays) \
                else sample_weight  # per-output weights, or one array for every output
            if wk is None:
                v, g = loss.value_and_grad(preds[k], ys[k], logits=flags[k])
            else:
                v, g = loss.value_and_grad(preds[k], ys[k], logits=flags[k],
                                           sample_weight=wk)
            self.last_values[k] = float(v)
            total += w * float(v)
            grads.append(g if w == 1.0 else g * np.float32(w))
        return total, grads

    def get_config(self) -> dict[str, Any]:
        return {"losses": {n: None if loss is None else serialize(loss)
                           for n, loss in zip(self.output_names, self.losses, strict=True)},
                "loss_weights": dict(zip(self.output_names, self.loss_weights, strict=True))}

    def __repr__(self) -> str:
        return f"OutputLosses({dict(zip(self.output_names, self.losses, strict=True))})"


_REGISTRY: Registry[Loss] = Registry("loss", Loss, {
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "binary_crossentropy": BinaryCrossentropy,
    "mean_squared_error": MeanSquaredError,
    "mse": MeanSquaredError,
})


_REGISTRY.classes["OutputLosses"] = OutputLosses  # saved by name, never looked up as one


def get(identifier: Any) -> Loss:
    """Loss from a name (``"sparse_categorical_crossentropy"``,
    ``"categorical_crossentropy"``, ``"binary_crossentropy"``, ``"mse"`` /
    ``"mean_squared_error"``), a :class:`Loss`, a config dict, or a function
    ``fn(y_true, y_pred) -> (losses, grads)`` (wrapped in :class:`LossFunction`)."""
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        raise TypeError(f"loss: pass an instance, {identifier.__name__}(), not the class")
    if callable(identifier) and not isinstance(identifier, Loss):
        return LossFunction(identifier)
    return _REGISTRY.get(identifier)


def serialize(loss: Loss) -> dict[str, Any]:
    """``{"class_name", "config"}`` of a built-in loss (ValueError for custom classes)."""
    return _REGISTRY.serialize(loss)
