"""Batch normalisation: :func:`batch_norm` and :func:`batch_norm_backward` (PyTorch's semantics).

Per-channel statistics over N and the spatial axes of channels-first inputs (N, C), (N, C, L),
(N, C, H, W). The CPU kernels reduce in fixed tiles combined in a fixed tree (bit-identical for
any thread count): each tile's mean, then its centred sum of squares (a chunked two-pass, so a
large mean costs no accuracy), merged across tiles in float64; the CUDA kernels follow the same
plan without atomics (deterministic run to run).

Fused ReLU (a fastcnn extension, as ``conv2d(..., relu=True)``): ``batch_norm(..., relu=True)``
returns ``relu(bn(x))`` from the same pass, and ``batch_norm_backward(..., relu_y=y)`` takes that
output and the ReLU output's gradient, masking it (``relu_backward``'s rule) inside BN's passes:
the bits of the unfused pair, without its two extra passes over memory.

Given statistics (a fastcnn extension, CPU only): ``batch_norm(y, ..., training=True,
batch_stats=(mean, var))`` normalises with statistics gathered by the convolution that wrote
``y`` (:func:`fastcnn.ops.conv2d_stats`), saving its own pass over ``y``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import _native
from .._args import check_bool
from ._door import _backend, _converts

_isfinite = math.isfinite


def _real(v: Any, name: str, op: str, *, minimum: float | None = None) -> float:
    """``v`` as a finite Python float; TypeError for a non-number (bools too), ValueError
    below ``minimum`` (the reference's rule)."""
    if isinstance(v, bool | np.bool_) or not isinstance(v, int | float | np.integer | np.floating):
        raise TypeError(f"{op}: {name} must be a real number, got {v!r} ({type(v).__name__})")
    f = float(v)
    if not math.isfinite(f):
        raise ValueError(f"{op}: {name} must be finite, got {f}")
    if minimum is not None and f < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {f}")
    return f


@_converts("x", "weight", "bias", "running_mean", "running_var", "out")
def batch_norm(x: Any, weight: Any, bias: Any, running_mean: Any, running_var: Any, *,
               training: bool = False, momentum: float = 0.1, eps: float = 1e-5,
               relu: bool = False, out: Any = None,
               batch_stats: Any = None) -> tuple[Any, Any, Any]:
    """Batch normalisation per channel over N and the spatial axes (``F.batch_norm``).

    Args:
        x: (N, C), (N, C, L) or (N, C, H, W) float32.
        weight, bias: (C,) float32 or None (1 and 0).
        running_mean, running_var: (C,) float32 or None (both or neither; required when
            ``training=False``). In training they are updated IN PLACE (so they must be
            C-contiguous and writeable): ``r = (1 - momentum) * r + momentum * batch_stat``,
            with the unbiased variance (M / (M - 1), M = N * spatial) for ``running_var``.
        training: normalise with the batch statistics (biased variance); needs M > 1
            (ValueError otherwise, as PyTorch). False: with the running statistics.
        momentum: PyTorch's convention (Keras's momentum k is ``1 - k`` here).
        eps: added to the variance, >= 0.
        relu: apply ReLU to the result in the same pass (``y = relu(bn(x))``, the bits of
            ``relu(batch_norm(...)[0])``; a fastcnn extension); its gradient is then
            ``batch_norm_backward(..., relu_y=y)``.
        out: optional destination of y, written and returned instead of a fresh array: a
            C-contiguous float32 array of x's shape on the op's device that overlaps none of
            the inputs (reusing a buffer saves a fresh array's page faults on large tensors;
            fastcnn's layers do: :mod:`fastcnn._workspace`).
        batch_stats: ``(mean, var)``, x's batch statistics already gathered (training only; a
            fastcnn extension, CPU only): (C,) float64 (or float32) arrays, the mean and the
            biased variance over N and the spatial axes, as :func:`fastcnn.ops.conv2d_stats`
            returns them for its output. x is then not reduced again: it is normalised with
            them, the running statistics are updated from them exactly as from the batch's
            own (unbiased ``var * M / (M - 1)`` for ``running_var``), and the returned mean /
            invstd are theirs (:func:`batch_norm_backward` unchanged).

    Returns:
        ``(y, mean, invstd)``: y of x's shape, ``(x - mean) * invstd * weight + bias``, and the
        (C,) ``mean`` and ``invstd = 1 / sqrt(var + eps)`` used (the batch's in training, the
        running ones in inference), which :func:`batch_norm_backward` takes. An empty batch in
        training gives NaN mean / invstd and leaves the running statistics alone.
    """
    op = "batch_norm"
    if not (type(training) is bool and type(relu) is bool):
        training = check_bool(training, "training", op=op)
        relu = check_bool(relu, "relu", op=op)
    if not (type(momentum) is float and type(eps) is float and eps >= 0.0
            and _isfinite(momentum) and _isfinite(eps)):  # the common case: two tests
        momentum = _real(momentum, "momentum", op)
        eps = _real(eps, "eps", op, minimum=0.0)
    mod = _backend(op, x, weight, bias, running_mean, running_var, out)
    if batch_stats is None:
        return mod.batch_norm(x, weight, bias, running_mean, running_var, training, momentum,
                              eps, relu, out=out)
    bm, bv = _given_stats(batch_stats, training, op, mod is _native.cpu)
    return mod.batch_norm(x, weight, bias, running_mean, running_var, training, momentum, eps,
                          relu, out=out, batch_mean=bm, batch_var=bv)


def _given_stats(stats: Any, training: bool, op: str, cpu: bool) -> tuple[Any, Any]:
    """``batch_stats`` as the compiled module's ``(batch_mean, batch_var)``: on the CPU float64
    NumPy arrays (a float32 one widened exactly); the compiled module checks their shapes."""
    if not isinstance(stats, tuple | list) or len(stats) != 2:
        raise TypeError(f"{op}: batch_stats must be a pair (mean, var) of (C,) arrays "
                        f"(conv2d_stats' outputs), got {type(stats).__name__}")
    if not training:
        raise ValueError(f"{op}: batch_stats (the batch's statistics) are for training=True; "
                         "inference normalises with running_mean / running_var")
    if not cpu:
        return stats[0], stats[1]
    out = []
    for v, name in zip(stats, ("mean", "var"), strict=True):
        a = v if isinstance(v, np.ndarray) else np.asarray(v)
        if a.dtype not in (np.float32, np.float64):
            raise TypeError(f"{op}: batch_stats' {name} has dtype {a.dtype}; expected float64 "
                            f"(or float32), convert it with .astype(numpy.float64)")
        out.append(np.ascontiguousarray(a, dtype=np.float64))
    return out[0], out[1]


@_converts("dy", "x", "weight", "mean", "invstd", "relu_y", "dx_out")
def batch_norm_backward(dy: Any, x: Any, weight: Any, mean: Any, invstd: Any, *,
                        training: bool = True, compute_dx: bool = True,
                        compute_dw: bool = True, relu_y: Any = None,
                        dx_out: Any = None) -> tuple[Any, Any, Any]:
    """Gradients of :func:`batch_norm`.

    Args:
        dy, x: (N, C[, L | H, W]) float32 of one shape: the output's gradient, the forward input.
        weight: (C,) or None (1).
        mean, invstd: (C,), the forward's outputs.
        training: True: through the batch statistics (PyTorch's formula,
            ``dx = (dy - mean(dy) - xhat * mean(dy * xhat)) * invstd * weight``); False:
            through fixed statistics, ``dx = dy * invstd * weight`` (reads dy only).
        compute_dx: False skips dx; compute_dw: False skips dweight and dbias.
        relu_y: x's shape, the output of the forward ``batch_norm(..., relu=True)`` (a fastcnn
            extension). ``dy`` is then the gradient of that ReLU's output and is passed through
            ``relu_backward(dy, relu_y)`` first (0 where ``relu_y <= 0``, PyTorch's rule),
            inside the passes' reads of ``dy`` (no separate pass, the same bits).
        dx_out: optional destination of dx (needs ``compute_dx``), as ``out`` of
            :func:`batch_norm`: a C-contiguous float32 array of x's shape on the op's device
            that overlaps none of the inputs.

    Returns:
        ``(dx, dweight, dbias)``: dx of x's shape or None; dweight = ``sum(dy * xhat)``,
        dbias = ``sum(dy)`` over N and the spatial axes, (C,) each, or None.
    """
    op = "batch_norm_backward"
    if not (type(training) is bool and type(compute_dx) is bool and type(compute_dw) is bool):
        training = check_bool(training, "training", op=op)
        compute_dx = check_bool(compute_dx, "compute_dx", op=op)
        compute_dw = check_bool(compute_dw, "compute_dw", op=op)
    return _backend(op, dy, x, weight, mean, invstd, relu_y, dx_out).batch_norm_backward(
        dy, x, weight, mean, invstd, training, compute_dx, compute_dw, relu_y, dx_out=dx_out)
