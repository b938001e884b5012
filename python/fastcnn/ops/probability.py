"""Softmax, log-softmax and the softmax cross-entropy with its gradient."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._args import check_int
from .._arrays import array_module
from ._door import _backend, _check_array, _converts


def _softmax(x: Any, axis: Any, log: bool) -> Any:
    op = "log_softmax" if log else "softmax"
    _check_array(x, "x", op)
    ax = axis if type(axis) is int else check_int(axis, "axis", op=op)
    if not -x.ndim <= ax < x.ndim:
        raise ValueError(f"{op}: axis={ax} is out of range for x of shape {x.shape}")
    ax %= x.ndim
    mod = _backend(op, x)
    if ax == x.ndim - 1:
        return mod.softmax(x, log)
    xp = array_module(x)
    moved = xp.moveaxis(x, ax, -1)
    return xp.ascontiguousarray(xp.moveaxis(mod.softmax(moved, log), -1, ax))


@_converts("x")
def softmax(x: Any, axis: int = -1) -> Any:
    """``exp(x) / sum(exp(x))`` along ``axis`` (stable). Any shape, float32."""
    return _softmax(x, axis, False)


@_converts("x")
def log_softmax(x: Any, axis: int = -1) -> Any:
    """``x - logsumexp(x)`` along ``axis`` (stable). Any shape, float32."""
    return _softmax(x, axis, True)


@_converts("logits", "labels")
def cross_entropy(logits: Any, labels: Any) -> tuple[float, Any]:
    """Softmax cross-entropy, mean over the batch, and its gradient in one stable step.

    Args:
        logits: (N, classes) float32.
        labels: integer class ids (N,) or float32 probability targets (N, classes).

    Returns:
        ``(loss, dlogits)``: a Python float and (N, classes) float32
        ``(softmax * sum(target) - target) / N``. An empty batch gives 0.0 and an empty dlogits.
        On CuPy arrays the loss is a 0-d float64 device array (``float(loss)`` reads it; the
        call itself copies nothing to the host except the class-id check's record, which
        ``fit`` defers to its next read, see :mod:`fastcnn._deferred`).
    """
    op = "cross_entropy"
    dtype = getattr(labels, "dtype", None)
    if dtype is not None and dtype.kind == "f" and (dtype != np.float32 or labels.ndim == 1):
        _labels_hint(logits, labels, op)
    return _backend(op, logits, labels).cross_entropy(logits, labels)


def _labels_hint(logits: Any, labels: Any, op: str) -> None:
    """TypeError / ValueError for float labels the op can't take, with the call that works:
    whole-number labels (N,) are class ids (``labels.astype(numpy.int64)``), rows of the
    logits' shape are probability targets (``labels.astype(numpy.float32)``). Returns for
    float32 labels of another form (the op's own check reports them)."""
    shape, want = tuple(labels.shape), tuple(getattr(logits, "shape", ()))
    if len(want) == 2 and labels.ndim == 1 and len(labels) == want[0]:
        xp = array_module(labels)
        whole = bool(xp.all(xp.isfinite(labels) & (labels == xp.round(labels))))
        if whole:  # a TypeError for a dtype the op never takes, as the op's own check
            error = TypeError if labels.dtype != np.float32 else ValueError
            raise error(f"{op}: labels has dtype {labels.dtype}, but these labels of shape "
                        f"{shape} hold whole numbers: class ids, which are integers (float32 "
                        f"labels must be probability targets of the logits' shape {want}); "
                        f"convert them with labels.astype(numpy.int64)")
        raise ValueError(f"{op}: labels of shape {shape} must be integer class ids, but these "
                         f"(dtype {labels.dtype}) are not whole numbers; pass class ids "
                         f"(labels.astype(numpy.int64) after rounding them) or probability "
                         f"targets of the logits' shape {want}, float32")
    if shape == want and labels.dtype != np.float32:
        raise TypeError(f"{op}: labels has dtype {labels.dtype} but fastcnn computes in "
                        f"float32 only; these are probability targets of the logits' shape "
                        f"{shape}: convert them with labels.astype(numpy.float32)")
    if labels.dtype != np.float32:
        raise ValueError(f"{op}: labels of shape {shape} (dtype {labels.dtype}) fit neither "
                         f"form for logits of shape {want}: integer class ids of shape "
                         f"({want[0] if want else 'N'},) or float32 probability targets of "
                         f"shape {want}")
