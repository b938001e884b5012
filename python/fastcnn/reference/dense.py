"""Reference dense layer: ``x @ w.T + b`` and its gradients."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._args import check_bool
from ._checks import _check_ndim, _check_shape, _dx_into, _float_array, _into


def _linear_check(x: np.ndarray, w: np.ndarray, op: str) -> None:
    _check_ndim(x, 2, "x", op, "(N, in_features)")
    _check_ndim(w, 2, "w", op, "(out_features, in_features)")
    if w.shape[1] != x.shape[1]:
        raise ValueError(f"{op}: w has shape {w.shape} but x has shape {x.shape}: expected "
                         f"w.shape[1] == x.shape[1] == {x.shape[1]}")


def linear(x: Any, w: Any, b: Any = None, *, relu: bool = False, out: Any = None
           ) -> np.ndarray:
    """Dense layer ``y = x @ w.T + b``, followed by ReLU when ``relu=True``.

    x (N, in), w (out, in), b (out,) or None -> y (N, out) (written into ``out`` when given).
    """
    op = "linear"
    x = _float_array(x, "x", op)
    w = _float_array(w, "w", op)
    _linear_check(x, w, op)
    arrays = [x, w]
    if b is not None:
        b = _float_array(b, "b", op)
        _check_shape(b, (w.shape[0],), "b", op, f" (one bias per row of w {w.shape})")
        arrays.append(b)
    dtype = np.result_type(*arrays)
    y = x.astype(dtype, copy=False) @ w.astype(dtype, copy=False).T
    if b is not None:
        y += b.astype(dtype, copy=False)
    if check_bool(relu, "relu", op=op):
        y = np.where(y < 0, dtype.type(0), y)
    return _into(out, y, op)


def linear_backward(
    dy: Any, x: Any, w: Any, *, bias: bool = True, compute_dx: bool = True,
    compute_dw: bool = True, dx_out: Any = None
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Gradients of :func:`linear` (``dx`` / ``dw`` is None when ``compute_dx`` / ``compute_dw``
    is False).

    dy (N, out), x (N, in), w (out, in) -> dx (N, in) = dy @ w, dw (out, in) = dy.T @ x,
    db (out,) = dy.sum(0) (None when ``bias=False``). N = 0 gives zero dw and db. dx is
    written into ``dx_out`` when given.
    """
    op = "linear_backward"
    dy = _float_array(dy, "dy", op)
    x = _float_array(x, "x", op)
    w = _float_array(w, "w", op)
    bias = check_bool(bias, "bias", op=op)
    _linear_check(x, w, op)
    _check_shape(dy, (x.shape[0], w.shape[0]), "dy", op, " = (N, out_features)")
    dtype = np.result_type(dy, x, w)
    dy, x, w = (a.astype(dtype, copy=False) for a in (dy, x, w))
    dx = dy @ w if check_bool(compute_dx, "compute_dx", op=op) else None
    dw = dy.T @ x if check_bool(compute_dw, "compute_dw", op=op) else None
    return _dx_into(dx_out, dx, op), dw, (dy.sum(axis=0) if bias else None)
