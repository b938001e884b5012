"""Reference batch normalisation: :func:`batch_norm` and :func:`batch_norm_backward`.

Inputs are channels-first, ``x`` of shape (N, C), (N, C, L) or (N, C, H, W); the statistics are
per channel over N and the spatial axes (M = N * L or N * H * W values each). PyTorch's
semantics (``torch.nn.functional.batch_norm``): in training the batch's mean and biased
variance normalise and the running statistics, when given, are updated in place with the
unbiased variance; in inference the running statistics normalise. The statistics are computed
in float64 whatever the input dtype (two passes: the mean, then the centred sum of squares).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._args import check_bool
from ._checks import _dx_into, _float_array, _into

_OP = "batch_norm"


def _real(v: Any, name: str, op: str, *, minimum: float | None = None) -> float:
    """``v`` as a finite Python float; TypeError for a non-number (bools too), ValueError
    below ``minimum``."""
    if isinstance(v, bool | np.bool_) or not isinstance(v, int | float | np.integer | np.floating):
        raise TypeError(f"{op}: {name} must be a real number, got {v!r} ({type(v).__name__})")
    f = float(v)
    if not math.isfinite(f):
        raise ValueError(f"{op}: {name} must be finite, got {f}")
    if minimum is not None and f < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {f}")
    return f


def _check_x(x: np.ndarray, name: str, op: str) -> tuple[int, int, int]:
    """(N, C, S) of a (N, C[, spatial...]) input with 1 or 2 spatial axes at most."""
    if x.ndim not in (2, 3, 4):
        raise ValueError(f"{op}: {name} must be 2-D (N, C), 3-D (N, C, L) or 4-D (N, C, H, W), "
                         f"got shape {x.shape}")
    return x.shape[0], x.shape[1], int(np.prod(x.shape[2:], dtype=np.int64))


def _per_channel(a: Any, c: int, name: str, op: str, shape: tuple[int, ...]) -> np.ndarray | None:
    if a is None:
        return None
    a = _float_array(a, name, op)
    if a.shape != (c,):
        raise ValueError(f"{op}: {name} must have shape ({c},) (one value per channel of x "
                         f"{shape}), got {a.shape}")
    return a


def _bcast(v: np.ndarray, ndim: int) -> np.ndarray:
    """A (C,) vector shaped to broadcast against (N, C, ...)."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def _given(stats: Any, c: int, op: str) -> tuple[np.ndarray, np.ndarray]:
    """``batch_stats`` as float64 (C,) mean and variance; TypeError / ValueError otherwise."""
    if not isinstance(stats, tuple | list) or len(stats) != 2:
        raise TypeError(f"{op}: batch_stats must be a pair (mean, var) of (C,) arrays, got "
                        f"{type(stats).__name__}")
    mean, var = (np.asarray(v, dtype=np.float64) for v in stats)
    for v, name in ((mean, "mean"), (var, "var")):
        if v.shape != (c,):
            raise ValueError(f"{op}: batch_stats' {name} has shape {v.shape} but x has {c} "
                             f"channels; expected ({c},)")
    if np.any(var < 0):
        raise ValueError(f"{op}: batch_stats' var has a negative value; a variance is >= 0")
    return mean, var


def batch_norm(x: Any, weight: Any, bias: Any, running_mean: Any, running_var: Any, *,
               training: bool = False, momentum: float = 0.1, eps: float = 1e-5,
               relu: bool = False, out: Any = None,
               batch_stats: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Batch normalisation over N and the spatial axes, per channel (PyTorch's F.batch_norm).

    Args:
        x: (N, C), (N, C, L) or (N, C, H, W).
        weight, bias: (C,) or None (1 and 0).
        running_mean, running_var: (C,) or None (both or neither; required in inference).
            In training they are updated in place: ``r = (1 - momentum) * r + momentum * s``
            with the batch mean, and the unbiased batch variance (M / (M - 1)) for the variance.
        training: normalise with the batch statistics (biased variance) instead of the running
            ones. Needs more than one value per channel (M = N * spatial > 1), as PyTorch.
        momentum, eps: PyTorch's (eps > 0 keeps invstd finite; eps >= 0 is accepted).
        relu: return ``relu(y)`` (NaN kept, -0.0 kept: :func:`fastcnn.reference.relu`'s rule).
        out: optional array of x's shape y is written into and returned.
        batch_stats: ``(mean, var)`` (C,) each (training only): the batch's mean and biased
            variance given (:func:`fastcnn.reference.conv2d_stats`'), used instead of x's own
            (the running statistics updated from them the same way).

    Returns:
        ``(y, mean, invstd)``: y of x's shape, ``(x - mean) * invstd * weight + bias``, and the
        (C,) mean and ``invstd = 1 / sqrt(var + eps)`` used (batch ones in training, running
        ones in inference), in x's dtype. An empty batch in training leaves the running
        statistics alone and gives NaN mean / invstd.
    """
    op = _OP
    training = check_bool(training, "training", op=op)
    momentum = _real(momentum, "momentum", op)
    eps = _real(eps, "eps", op, minimum=0.0)
    relu = check_bool(relu, "relu", op=op)
    x = _float_array(x, "x", op)
    n, c, s = _check_x(x, "x", op)
    weight = _per_channel(weight, c, "weight", op, x.shape)
    bias = _per_channel(bias, c, "bias", op, x.shape)
    rm = _per_channel(running_mean, c, "running_mean", op, x.shape)
    rv = _per_channel(running_var, c, "running_var", op, x.shape)
    if (rm is None) != (rv is None):
        raise ValueError(f"{op}: give both running_mean and running_var or neither")
    dtype = np.result_type(x, *(a for a in (weight, bias) if a is not None))
    m = n * s
    if training:
        if m == 1:
            raise ValueError(f"{op}: expected more than 1 value per channel when training, got "
                             f"x of shape {x.shape} (N * spatial = 1); use a larger batch or "
                             "training=False")
        x64 = x.astype(np.float64).transpose(1, 0, *range(2, x.ndim)).reshape(c, m)
        if batch_stats is not None:
            mean, var = _given(batch_stats, c, op)
            if m and rm is not None:
                rm[...] = (1.0 - momentum) * rm.astype(np.float64) + momentum * mean
                rv[...] = (1.0 - momentum) * rv.astype(np.float64) + momentum * var * (m / (m - 1))
        elif m == 0:
            mean = np.full(c, np.nan)
            var = np.full(c, np.nan)
        else:
            mean = x64.mean(axis=1)
            var = ((x64 - mean[:, None]) ** 2).mean(axis=1)  # two passes: centred squares
            if rm is not None:
                rm[...] = (1.0 - momentum) * rm.astype(np.float64) + momentum * mean
                rv[...] = (1.0 - momentum) * rv.astype(np.float64) + momentum * var * (m / (m - 1))
    else:
        if batch_stats is not None:
            raise ValueError(f"{op}: batch_stats (the batch's statistics) are for "
                             "training=True; inference normalises with running_mean / "
                             "running_var")
        if rm is None:
            raise ValueError(f"{op}: training=False normalises with running_mean and "
                             "running_var; pass them (or training=True)")
        mean = rm.astype(np.float64)
        var = rv.astype(np.float64)
    invstd = 1.0 / np.sqrt(var + eps)
    w64 = np.ones(c) if weight is None else weight.astype(np.float64)
    b64 = np.zeros(c) if bias is None else bias.astype(np.float64)
    y = (x.astype(np.float64) - _bcast(mean, x.ndim)) * _bcast(invstd * w64, x.ndim) \
        + _bcast(b64, x.ndim)
    y = y.astype(dtype)
    if relu:
        y = np.where(y < 0, y.dtype.type(0), y)  # NaN and -0.0 kept, as relu
    return _into(out, y, op), mean.astype(dtype), invstd.astype(dtype)


def batch_norm_backward(dy: Any, x: Any, weight: Any, mean: Any, invstd: Any, *,
                        training: bool = True, compute_dx: bool = True,
                        compute_dw: bool = True, relu_y: Any = None,
                        dx_out: Any = None) -> tuple[Any, Any, Any]:
    """Gradients of :func:`batch_norm` (PyTorch's formulas).

    Args:
        dy, x: the output's gradient and the forward input, same shape (N, C[, L | H, W]).
        weight: (C,) or None (1).
        mean, invstd: (C,), as returned by the forward.
        training: True: through the batch statistics,
            ``dx = (dy - mean(dy) - xhat * mean(dy * xhat)) * invstd * weight``;
            False: through fixed statistics, ``dx = dy * invstd * weight``.
        compute_dx, compute_dw: skip dx / (dweight, dbias).
        relu_y: the output of ``batch_norm(..., relu=True)`` (x's shape): ``dy`` is the
            gradient of that ReLU's output, first set to 0 where ``relu_y <= 0`` (a NaN passes
            ``dy``, as :func:`fastcnn.reference.relu_backward`).
        dx_out: optional array of x's shape dx is written into (needs ``compute_dx``).

    Returns:
        ``(dx, dweight, dbias)``: dx of x's shape (None without compute_dx); dweight =
        ``sum(dy * xhat)`` and dbias = ``sum(dy)`` over N and the spatial axes, (C,) (None
        without compute_dw), with ``xhat = (x - mean) * invstd``. Computed in float64, returned
        in the inputs' dtype.
    """
    op = "batch_norm_backward"
    training = check_bool(training, "training", op=op)
    compute_dx = check_bool(compute_dx, "compute_dx", op=op)
    compute_dw = check_bool(compute_dw, "compute_dw", op=op)
    dy = _float_array(dy, "dy", op)
    x = _float_array(x, "x", op)
    n, c, s = _check_x(x, "x", op)
    if dy.shape != x.shape:
        raise ValueError(f"{op}: dy has shape {dy.shape} but x has shape {x.shape}: expected "
                         "the same shape")
    if relu_y is not None:
        relu_y = _float_array(relu_y, "relu_y", op)
        if relu_y.shape != x.shape:
            raise ValueError(f"{op}: relu_y has shape {relu_y.shape} but x has shape {x.shape}: "
                             "expected the same shape (the forward's fused output)")
        dy = np.where(relu_y <= 0, dy.dtype.type(0), dy)
    weight = _per_channel(weight, c, "weight", op, x.shape)
    mean = _per_channel(mean, c, "mean", op, x.shape)
    invstd = _per_channel(invstd, c, "invstd", op, x.shape)
    if mean is None or invstd is None:
        raise ValueError(f"{op}: mean and invstd are required (the forward's outputs)")
    dtype = np.result_type(dy, x)
    m = n * s
    axes = (0, *range(2, x.ndim))
    nd = x.ndim
    mu, ist = mean.astype(np.float64), invstd.astype(np.float64)
    w64 = np.ones(c) if weight is None else weight.astype(np.float64)
    dy64 = dy.astype(np.float64)
    xmu = x.astype(np.float64) - _bcast(mu, nd)
    sum_dy = dy64.sum(axis=axes)
    sum_dy_xmu = (dy64 * xmu).sum(axis=axes)
    dx = None
    if compute_dx:
        if training and m > 0:
            k = ist * ist * sum_dy_xmu / m
            g = dy64 - _bcast(sum_dy / m, nd) - xmu * _bcast(k, nd)
            dx = (g * _bcast(ist * w64, nd)).astype(dtype)
        else:
            dx = (dy64 * _bcast(ist * w64, nd)).astype(dtype)
    dx = _dx_into(dx_out, dx, op)
    if not compute_dw:
        return dx, None, None
    return dx, (sum_dy_xmu * ist).astype(dtype), sum_dy.astype(dtype)
