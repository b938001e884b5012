"""CUDA adapter: softmax and the softmax cross-entropy (softmax.cu)."""

from __future__ import annotations

from typing import Any

import cupy
import numpy as np

from .._deferred import defer
from ._common import (
    _I64,
    _cuda,
    _device,
    _empty,
    _f32,
    _plan,
    _ptr,
    _stream,
    _type_name,
)


def softmax(x: Any, log: bool = False) -> Any:
    """softmax (or log_softmax) over the last axis."""
    op = "log_softmax" if log else "softmax"
    x = _f32(x, op, "x")
    with _device(op, x):
        y = _empty(x.shape)
        _cuda.softmax(_ptr(x), x.shape, _ptr(y), bool(log), _stream())
    return y


def _label_message(classes: int) -> Any:
    def message(rec: np.ndarray) -> str | None:
        if rec[0] < 0:
            return None
        return (f"cross_entropy: labels[{int(rec[0])}] = {int(rec[1])} is not a class id in "
                f"[0, {classes})")
    return message


def cross_entropy(logits: Any, labels: Any) -> tuple[Any, Any]:
    """``(loss, dlogits)``: mean softmax cross-entropy over the rows as a 0-d float64 device
    array (``float(loss)`` reads it) and its gradient ``(softmax * sum(target) - target) / N``.
    labels: integer class ids (N,) (any integer dtype) or float32 probabilities (N, classes).
    Nothing is copied to the host and the stream is not synchronised, except that class ids
    are checked on the device and the check's 16-byte record is read right away (the CPU's
    ValueError from this call) unless a :func:`fastcnn._deferred.scope` is open (``fit``'s
    steps): then it is read at the scope's next check, and the loss of a batch with a bad
    label is NaN meanwhile."""
    op = "cross_entropy"
    logits = _f32(logits, op, "logits")
    if not isinstance(labels, cupy.ndarray):
        raise TypeError(f"{op}: labels must be a cupy.ndarray (int class ids of shape (N,) or "
                        f"float32 probabilities of shape (N, classes)), got {_type_name(labels)}")
    integer = labels.dtype.kind in "iu"
    lab = tgt = None
    with _device(op, logits, labels):
        if integer:
            nws = _plan(_cuda.cross_entropy_plan, logits.shape, labels.shape, "int")
            lab = cupy.ascontiguousarray(labels.astype(_I64, copy=False))
        else:
            tgt = _f32(labels, op, "labels")
            nws = _plan(_cuda.cross_entropy_plan, logits.shape, labels.shape, "float")
        dlogits = _empty(logits.shape)
        if logits.shape[0] == 0:
            return cupy.zeros((), np.float64), dlogits
        # one allocation: the kernels' workspace, then the loss (a double) and the check record
        nws = int(nws)
        buf = cupy.empty(nws // 8 + 3, dtype=_I64)
        lo = nws // 8
        loss = buf[lo:lo + 1].view(np.float64).reshape(())
        check = buf[lo + 1:lo + 3]
        base = _ptr(buf)
        _cuda.cross_entropy(_ptr(logits), logits.shape, _ptr(lab), _ptr(tgt), labels.shape,
                            _ptr(dlogits), base, nws, base + 8 * lo,
                            base + 8 * (lo + 1) if integer else 0, _stream())
        if integer:
            defer(check, _label_message(int(logits.shape[1])))
    return loss, dlogits
