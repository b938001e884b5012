"""Convolution: :func:`conv2d` and its gradients, :func:`conv2d_backward`; :func:`conv2d_stats`
(the forward with its output's batch statistics, for a following :func:`batch_norm`)."""

from __future__ import annotations

from typing import Any

from .._args import check_bool, check_int
from .._geometry import conv_padding, pair, pool_args
from ._door import _ARRAY_TYPES, _backend, _check_array, _converts, _memo, _plain_key

_CONV_ARGS: dict[Any, tuple[int, ...]] = {}  # (options, x.shape[2:], w.shape[2:]) -> geometry
_POOL_ARGS: dict[Any, Any] = {}  # (pool options) -> the pooling's pairs


def _conv_args(
    op: str, x: Any, w: Any, stride: Any, padding: Any, dilation: Any, groups: Any
) -> tuple[int, ...]:
    """The compiled module's geometry arguments (stride, pads, dilation, groups), memoised for
    plain options (:func:`~fastcnn.ops._door._plain_key`) per input and kernel size."""
    key = _plain_key(stride, padding, dilation, groups)
    if key is not None and type(x) in _ARRAY_TYPES and type(w) in _ARRAY_TYPES:
        key = (key, x.shape[2:], w.shape[2:])
        r = _CONV_ARGS.get(key)
        if r is not None:
            return r
    else:
        key = None
    return _memo(_CONV_ARGS, key, _conv_args_checked, op, x, w, stride, padding, dilation,
                 groups)


def _conv_args_checked(
    op: str, x: Any, w: Any, stride: Any, padding: Any, dilation: Any, groups: Any
) -> tuple[int, ...]:
    _check_array(x, "x", op)
    _check_array(w, "w", op)
    sh, sw = pair(stride, "stride", op=op, minimum=1)
    dh, dw = pair(dilation, "dilation", op=op, minimum=1)
    g = check_int(groups, "groups", op=op, minimum=1)
    if x.ndim == 4 and w.ndim == 4:
        pads = conv_padding(padding, x.shape[2], x.shape[3], w.shape[2], w.shape[3],
                            (sh, sw), (dh, dw), op=op)
    else:  # the compiled module reports the rank error
        pads = conv_padding(padding, 1, 1, 1, 1, op=op) if not isinstance(padding, str) else (
            0, 0, 0, 0)
    return (sh, sw, *pads, dh, dw, g)


@_converts("x", "w", "b", "out")
def conv2d(
    x: Any,
    w: Any,
    b: Any = None,
    *,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
    relu: bool = False,
    out: Any = None,
) -> Any:
    """2-D cross-correlation (PyTorch's ``conv2d``), optionally followed by a fused ReLU.

    Args:
        x: (N, C, H, W) float32.
        w: (K, C/groups, R, S) float32.
        b: (K,) float32 or None.
        stride, dilation: int or (h, w), >= 1.
        padding: int, (h, w), ``"valid"`` or ``"same"`` (output ceil(H/stride) for any stride;
            an odd total puts the extra row/column at the bottom/right).
        groups: >= 1, dividing C and K.
        relu: apply ReLU to the result in the GEMM epilogue.
        out: optional destination of y, written and returned instead of a fresh array: a
            C-contiguous float32 (N, K, P, Q) array on the op's device that overlaps none of
            the inputs. Reusing a buffer saves a fresh array's page faults on large tensors
            (fastcnn's layers do: :mod:`fastcnn._workspace`).

    Returns:
        y: (N, K, P, Q) float32 (``out`` when given).
    """
    op = "conv2d"
    args = _conv_args(op, x, w, stride, padding, dilation, groups)
    if type(relu) is not bool:
        relu = check_bool(relu, "relu", op=op)
    return _backend(op, x, w, b, out).conv2d(x, w, b, *args, relu, out=out)


@_converts("x", "w", "b", "out")
def conv2d_stats(
    x: Any,
    w: Any,
    b: Any = None,
    *,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
    out: Any = None,
) -> tuple[Any, Any, Any]:
    """:func:`conv2d` and the per-channel batch statistics of its output, gathered as the
    output is written (a fastcnn extension, CPU only): what :func:`batch_norm` in training
    would compute from ``y``, for ``batch_norm(y, ..., training=True, batch_stats=(mean,
    var))``, which then skips its own pass over ``y``.

    The statistics are reduced in chunks fixed by the shape alone (a few output rows of one
    image and channel, about 1024 values), each chunk's (count, mean, centred sum of squares)
    taken while the chunk is in cache (in the blocked form's epilogue; right after the other
    forms), and combined per channel in a fixed pairwise tree in float64: the same bits for any
    thread count, and no loss of accuracy when ``|mean| >> std``.

    Args:
        x, w, b, stride, padding, dilation, groups, out: as in :func:`conv2d` (no ReLU: the
            statistics are the convolution's output's).

    Returns:
        ``(y, mean, var)``: y (N, K, P, Q) float32 (``out`` when given); mean and the biased
        variance over N, P and Q, (K,) float64 each (NaN for an empty output).
    """
    op = "conv2d_stats"
    args = _conv_args(op, x, w, stride, padding, dilation, groups)
    return _backend(op, x, w, b, out).conv2d_stats(x, w, b, *args, out=out)


@_converts("dy", "x", "w", "relu_y", "pool_indices", "dx_out")
def conv2d_backward(
    dy: Any,
    x: Any,
    w: Any,
    *,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
    bias: bool = True,
    compute_dx: bool = True,
    compute_dw: bool = True,
    relu_y: Any = None,
    pool_indices: Any = None,
    pool_size: Any = None,
    pool_stride: Any = None,
    pool_padding: Any = 0,
    pool_ceil_mode: bool = False,
    dx_out: Any = None,
) -> tuple[Any, Any, Any]:
    """Gradients of :func:`conv2d`.

    Args:
        dy: (N, K, P, Q) gradient of the output; x, w and the options as in the forward call.
        bias: whether to return db.
        compute_dx: whether to compute dx (a first layer doesn't need it: about a third of the
            backward pass saved).
        compute_dw: whether to compute dw (False: the data gradient alone, e.g. of a frozen
            layer).
        relu_y: (N, K, P, Q) output of the forward ``conv2d(..., relu=True)`` (a fastcnn
            extension). ``dy`` is then the gradient of that ReLU's output and is passed through
            the ReLU's backward first, ``relu_backward(dy, relu_y)``, fused into the passes'
            reads of ``dy`` (no extra array, no extra pass over memory).
        pool_indices, pool_size, pool_stride, pool_padding, pool_ceil_mode: the argmax indices
            and geometry of a ``max_pool2d(y, pool_size, stride=pool_stride, ...,
            return_indices=True)`` applied to this convolution's output ``y`` (after its ReLU;
            a fastcnn extension). ``dy`` is then the gradient of the *pooled* output and is
            routed back through the pooling first, exactly as ``max_pool2d_backward`` does,
            then through the ReLU when ``relu_y`` is given. On the CPU this is fused into the
            passes (each image's pooled gradient scattered into a cache-sized scratch as it is
            read; the full-size gradient is never materialised), so the pooling's backward
            costs no separate pass over memory.
        dx_out: optional destination of dx (needs ``compute_dx``), as ``out`` of
            :func:`conv2d`: a C-contiguous float32 (N, C, H, W) array on the op's device that
            overlaps none of the inputs.

    Returns:
        ``(dx, dw, db)``: (N, C, H, W) or None when ``compute_dx=False``, (K, C/groups, R, S)
        or None when ``compute_dw=False``, (K,) or None when ``bias=False``.
    """
    op = "conv2d_backward"
    args = _conv_args(op, x, w, stride, padding, dilation, groups)
    _check_array(dy, "dy", op)
    if relu_y is not None:
        _check_array(relu_y, "relu_y", op)
    pool: dict[str, Any] = {}
    if pool_indices is not None:
        if pool_size is None:
            raise ValueError(f"{op}: pool_indices needs pool_size (the max_pool2d kernel_size "
                             "that produced them)")
        k, st, pd, _ = _memo(_POOL_ARGS, _plain_key(pool_size, pool_stride, pool_padding),
                             _pool_pairs, pool_size, pool_stride, pool_padding, op)
        if type(pool_ceil_mode) is not bool:
            pool_ceil_mode = check_bool(pool_ceil_mode, "pool_ceil_mode", op=op)
        pool = {"pool_indices": pool_indices, "pool_kh": k[0], "pool_kw": k[1],
                "pool_sh": st[0], "pool_sw": st[1], "pool_ph": pd[0], "pool_pw": pd[1],
                "pool_ceil_mode": pool_ceil_mode}
    elif pool_size is not None or pool_stride is not None:
        raise ValueError(f"{op}: pool_size / pool_stride given without pool_indices")
    if not (type(compute_dx) is bool and type(compute_dw) is bool and type(bias) is bool):
        compute_dx = check_bool(compute_dx, "compute_dx", op=op)
        compute_dw = check_bool(compute_dw, "compute_dw", op=op)
        bias = check_bool(bias, "bias", op=op)
    return _backend(op, dy, x, w, relu_y, pool_indices, dx_out).conv2d_backward(
        dy, x, w, *args, compute_dx, compute_dw, bias, relu_y=relu_y, **pool, dx_out=dx_out)


def _pool_pairs(size: Any, stride: Any, padding: Any, op: str) -> Any:
    return pool_args(size, stride, padding, op=op,
                     names=("pool_size", "pool_stride", "pool_padding", "dilation"))
