"""CUDA adapter: softmax and the softmax cross-entropy (softmax.cu)."""

from __future__ import annotations

from typing import Any

import cupy
import numpy as np

from ._common import (
    _I64,
    _cuda,
    _device,
    _empty,
    _f32,
    _ptr,
    _stream,
    _type_name,
    _workspace,
)


def softmax(x: Any, log: bool = False) -> Any:
    """softmax (or log_softmax) over the last axis."""
    op = "log_softmax" if log else "softmax"
    x = _f32(x, op, "x")
    with _device(op, x):
        y = _empty(x.shape)
        _cuda.softmax(_ptr(x), x.shape, _ptr(y), bool(log), _stream())
    return y


def cross_entropy(logits: Any, labels: Any) -> tuple[float, Any]:
    """``(loss, dlogits)``: mean softmax cross-entropy over the rows and its gradient
    ``(softmax * sum(target) - target) / N``. labels: integer class ids (N,) (any integer dtype)
    or float32 probabilities (N, classes). Synchronises the stream (the loss is a float)."""
    op = "cross_entropy"
    logits = _f32(logits, op, "logits")
    if not isinstance(labels, cupy.ndarray):
        raise TypeError(f"{op}: labels must be a cupy.ndarray (int class ids of shape (N,) or "
                        f"float32 probabilities of shape (N, classes)), got {_type_name(labels)}")
    integer = labels.dtype.kind in "iu"
    lab = tgt = None
    with _device(op, logits, labels):
        if integer:
            nws = _cuda.cross_entropy_plan(logits.shape, labels.shape, "int")
            lab = cupy.ascontiguousarray(labels.astype(_I64, copy=False))
        else:
            tgt = _f32(labels, op, "labels")
            nws = _cuda.cross_entropy_plan(logits.shape, labels.shape, "float")
        dlogits = _empty(logits.shape)
        if logits.shape[0] == 0:
            return 0.0, dlogits
        ws, nws = _workspace(nws, np.uint8)
        loss = _cuda.cross_entropy(_ptr(logits), logits.shape, _ptr(lab), _ptr(tgt),
                                   labels.shape, _ptr(dlogits), _ptr(ws), nws, _stream())
    return float(loss), dlogits
