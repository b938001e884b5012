"""Reference softmax, log-softmax and softmax cross-entropy (shifted by the row maximum)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._args import check_int
from ._checks import _check_ndim, _check_shape, _float_array


def _shifted(x: Any, axis: Any, op: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """``z = x - max(x)``, ``e = exp(z)`` and ``sum(e)`` (keepdims) along a checked axis."""
    x = _float_array(x, "x", op)
    ax = check_int(axis, "axis", op=op)
    if not -x.ndim <= ax < x.ndim:
        raise ValueError(f"{op}: axis={ax} is out of range for x of shape {x.shape}")
    ax %= x.ndim
    if x.size == 0:
        return x.copy(), x.copy(), x.copy(), ax
    with np.errstate(invalid="ignore"):  # a row of -inf (or +inf) gives NaN, like torch
        z = x - x.max(axis=ax, keepdims=True)
    e = np.exp(z)
    return z, e, e.sum(axis=ax, keepdims=True), ax


def softmax(x: Any, axis: int = -1) -> np.ndarray:
    """``exp(x) / sum(exp(x))`` along ``axis``, computed from ``x - max(x)``. Shape of x."""
    _, e, total, _ = _shifted(x, axis, "softmax")
    return e if e.size == 0 else e / total


def log_softmax(x: Any, axis: int = -1) -> np.ndarray:
    """``x - logsumexp(x)`` along ``axis``, computed from ``x - max(x)``. Shape of x."""
    z, _, total, _ = _shifted(x, axis, "log_softmax")
    return z if z.size == 0 else z - np.log(total)


def cross_entropy(logits: Any, labels: Any) -> tuple[float, np.ndarray]:
    """Softmax cross-entropy, mean over the batch, and its gradient (one stable step).

    Args:
        logits: (N, classes).
        labels: integer class ids (N,) in [0, classes), or floating probability targets
            (N, classes).

    Returns:
        ``(loss, dlogits)``: ``loss = mean_n(-sum_c target * log_softmax(logits))`` as a Python
        float (computed in the logits' dtype, or the promoted dtype with float targets);
        ``dlogits = (softmax * sum_c(target) - target) / N`` (N, classes), PyTorch's gradient.
        An empty batch (N = 0) gives loss 0.0 and an empty (0, classes) dlogits (PyTorch gives
        NaN for the loss).
    """
    op = "cross_entropy"
    logits = _float_array(logits, "logits", op)
    _check_ndim(logits, 2, "logits", op, "(N, classes)")
    N, classes = logits.shape
    lab = np.asarray(labels)
    if lab.dtype.kind in "iu":
        _check_shape(lab, (N,), "labels", op, " = (N,) integer class ids for logits "
                     f"{logits.shape}")
        if N and (lab.min() < 0 or lab.max() >= classes):
            raise ValueError(f"{op}: labels must be class ids in [0, {classes}), got values in "
                             f"[{lab.min()}, {lab.max()}]")
        dtype = logits.dtype
    elif lab.dtype.kind == "f":
        _check_shape(lab, (N, classes), "labels", op, " = (N, classes) probability targets "
                     f"for logits {logits.shape} (integer class ids must have an integer dtype)")
        dtype = np.result_type(logits, lab)
    else:
        raise TypeError(f"{op}: labels must be integer class ids (N,) or floating probability "
                        f"targets (N, classes), got dtype {lab.dtype}")
    if N == 0:
        return 0.0, np.zeros((0, classes), dtype=dtype)

    z, e, total, _ = _shifted(logits.astype(dtype, copy=False), 1, op)
    logp = z - np.log(total)
    prob = e / total
    if lab.dtype.kind in "iu":
        rows = np.arange(N)
        loss = -logp[rows, lab].sum() / dtype.type(N)
        grad = prob.copy()
        grad[rows, lab] -= 1
    else:
        target = lab.astype(dtype, copy=False)
        with np.errstate(invalid="ignore"):  # 0 * -inf gives NaN, like torch
            loss = -(target * logp).sum() / dtype.type(N)
        grad = prob * target.sum(axis=1, keepdims=True) - target
    return float(loss), grad / dtype.type(N)
