"""Softmax, log-softmax and the softmax cross-entropy with its gradient."""

from __future__ import annotations

from typing import Any

from .._args import check_int
from .._arrays import array_module
from ._door import _backend, _check_array, _converts


def _softmax(x: Any, axis: Any, log: bool) -> Any:
    op = "log_softmax" if log else "softmax"
    _check_array(x, "x", op)
    ax = check_int(axis, "axis", op=op)
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
    return _backend(op, logits, labels).cross_entropy(logits, labels)
