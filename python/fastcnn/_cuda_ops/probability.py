"""CUDA adapter: softmax and the softmax cross-entropy (softmax.cu)."""

from __future__ import annotations

from typing import Any

import cupy
import numpy as np

from .._deferred import defer
from ._common import (
    _F32,
    _I64,
    _PLANS,
    _cuda,
    _cupy_empty,
    _current_stream,
    _device,
    _f32,
    _plan,
    _ptr,
    _type_name,
)

_F64 = np.dtype(np.float64)


def softmax(x: Any, log: bool = False) -> Any:
    """softmax (or log_softmax) over the last axis."""
    op = "log_softmax" if log else "softmax"
    x = _f32(x, op, "x")
    log = bool(log)
    with _device(op, x):
        key = (_softmax_entry, x.shape, log)
        fwd = _PLANS.get(key) or _plan(*key)
        y = _cupy_empty(x.shape, _F32)
        fwd(x.data.ptr, y.data.ptr, _current_stream().ptr)
    return y


def _softmax_entry(x_shape: tuple[int, ...], log: bool) -> Any:
    """The bound ``forward`` of a ``_cuda.SoftmaxPlan`` (validated once, in C++)."""
    return _cuda.SoftmaxPlan(x_shape, log).forward


def _cross_entropy_entry(*args: Any) -> tuple[Any, int]:
    """A ``_cuda.CrossEntropyPlan`` of ``args`` (cross_entropy_plan's; validated once, in C++)
    as ``(bound run, workspace bytes)``. Cached by :func:`._common._plan`."""
    p = _cuda.CrossEntropyPlan(*args)
    return p.run, p.workspace_bytes


_MESSAGES: dict[int, Any] = {}  # classes -> the label check's message function


def _label_message(classes: int) -> Any:
    fn = _MESSAGES.get(classes)
    if fn is None:
        fn = _MESSAGES[classes] = _make_label_message(classes)
    return fn


def _make_label_message(classes: int) -> Any:
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
            key = (_cross_entropy_entry, logits.shape, labels.shape, "int")
            run, nws = _PLANS.get(key) or _plan(*key)
            lab = labels if labels.dtype is _I64 and labels.flags.c_contiguous else \
                cupy.ascontiguousarray(labels.astype(_I64, copy=False))
        else:
            tgt = _f32(labels, op, "labels")
            run, nws = _plan(_cross_entropy_entry, logits.shape, labels.shape, "float")
        dlogits = _cupy_empty(logits.shape, _F32)
        if logits.shape[0] == 0:
            return cupy.zeros((), np.float64), dlogits
        # one allocation: the kernels' workspace, then the loss (a double) and the check record
        lo = nws // 8
        buf = _cupy_empty(lo + 3, _I64)
        loss = buf[lo:lo + 1].view(_F64).reshape(())
        check = buf[lo + 1:lo + 3]
        base = buf.data.ptr
        run(logits.data.ptr, _ptr(lab), _ptr(tgt), dlogits.data.ptr, base, nws, base + 8 * lo,
            base + 8 * (lo + 1) if integer else 0, _current_stream().ptr)
        if integer:
            defer(check, _label_message(int(logits.shape[1])))
    return loss, dlogits
