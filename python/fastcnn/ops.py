"""The functional API: every fastcnn op, the single door to the compiled kernels.

Same functions and signatures as :mod:`fastcnn.reference` (the NumPy oracle). Each function
normalises its options once (``stride=2`` -> ``(2, 2)``, ``padding="same"`` -> explicit
``(top, left, bottom, right)``, by :mod:`fastcnn._geometry`), then calls the compiled module for
the arrays' kind through :mod:`fastcnn._native`: ``numpy.ndarray`` -> ``fastcnn._cpu`` (C++ /
AVX2 / AVX-512 kernels, chosen at import), CuPy arrays -> ``fastcnn._cuda`` (through its adapter
:mod:`fastcnn._cuda_ops`, the same signatures) when it is built. Shapes and dtypes are checked in
C++ (the compiled module is a public door too) and reported as ``ValueError`` / ``TypeError``
naming the argument.

Array kinds: NumPy and CuPy arrays, PyTorch tensors (CPU and CUDA) and any object with
``__dlpack__`` are accepted, viewed without a copy (:mod:`fastcnn._arrays` holds the rules), and
results come back in the first array argument's kind: a torch tensor for torch tensors, on
their device (an op on CUDA tensors runs on PyTorch's current stream); NumPy / CuPy for NumPy,
CuPy and other DLPack inputs. Kinds may be mixed within a device (NumPy with CPU tensors), not
across devices (TypeError). A tensor that requires grad is refused while autograd records
(TypeError: pass ``x.detach()``, or use :mod:`fastcnn.torch`'s differentiable ops); an ``out=``
tensor is written in place and returned as itself.

Input rule: arrays must be float32 (``x.astype(numpy.float32)`` converts); class labels may be
any integer dtype; pooling indices are int64. No silent casts, no promotion. Non-contiguous,
Fortran-order, negative-stride, broadcast, misaligned and read-only arrays are accepted (copied
once). Results are fresh C-contiguous arrays of the inputs' kind.

Options beyond PyTorch's signatures (also in the reference): ``conv2d(..., relu=True)`` and
``linear(..., relu=True)`` apply ReLU in the GEMM epilogue (one pass over the output instead of
two); ``conv2d_backward(..., compute_dx=False)`` and ``linear_backward(..., compute_dx=False)``
skip the input gradient (a network's first layer doesn't need it), ``compute_dw=False`` the
weights' gradient.

Optimizer updates: :func:`sgd_update` and :func:`adam_update` update a parameter and its state
in place, in one pass, with the same float32 operations as the NumPy formulas
(:func:`fastcnn.reference.sgd_update` / :func:`~fastcnn.reference.adam_update`), bit for bit, on
either device; :mod:`fastcnn.optimizers` calls them.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from . import _native
from ._args import check_bool, check_int
from ._arrays import NATIVE, array_module, call_converted, is_cupy, is_foreign
from ._device import cuda_module
from ._geometry import conv_padding, pair, pool_args

__all__ = [
    "adam_update",
    "conv2d",
    "conv2d_backward",
    "cross_entropy",
    "linear",
    "linear_backward",
    "log_softmax",
    "max_pool2d",
    "max_pool2d_backward",
    "relu",
    "relu_backward",
    "sgd_update",
    "softmax",
]

_F = TypeVar("_F", bound=Callable[..., Any])


def __dir__() -> list[str]:
    """``dir(fastcnn.ops)``: the ops only (PEP 562), not the helpers this module imports."""
    return sorted(__all__)


def _converts(*names: str) -> Callable[[_F], _F]:
    """Make an op take any array kind: its array parameters ``names`` are viewed as backend
    arrays once (:func:`fastcnn._arrays.call_converted`: torch tensors and DLPack objects,
    zero-copy) and its results given back once in the first array argument's kind. Calls whose
    arrays are all NumPy / CuPy go straight to the op (one type test per array argument)."""

    def wrap(fn: _F) -> _F:
        params = list(inspect.signature(fn).parameters.values())
        assert {p.name for p in params} >= set(names), (fn.__name__, names)
        positions = tuple((i, p.name) for i, p in enumerate(params)
                          if p.name in names and p.kind is p.POSITIONAL_OR_KEYWORD)
        indices = tuple(i for i, _ in positions)
        op = fn.__name__

        @functools.wraps(fn)
        def converting(*args: Any, **kwargs: Any) -> Any:
            # the fast path: one type test per array argument given
            n = len(args)
            for i in indices:
                if i < n and type(args[i]) not in NATIVE and is_foreign(args[i]):
                    return call_converted(fn, op, positions, names, args, kwargs)
            if kwargs:
                for k in names:
                    if k in kwargs and type(kwargs[k]) not in NATIVE and is_foreign(kwargs[k]):
                        return call_converted(fn, op, positions, names, args, kwargs)
            return fn(*args, **kwargs)

        return converting  # type: ignore[return-value]

    return wrap


def _backend(op: str, *arrays: Any) -> Any:
    """The compiled module for these arrays: numpy -> _cpu, cupy -> the CUDA adapter over
    _cuda; mixing is a TypeError."""
    gpu = [a for a in arrays if a is not None and is_cupy(a)]
    if not gpu:
        return _native.cpu
    if len(gpu) != sum(a is not None for a in arrays):
        raise TypeError(f"{op}: all arrays must be on the same device; got a mix of numpy and "
                        "cupy arrays (move them with cupy.asarray / cupy.asnumpy)")
    return cuda_module(op)


def _check_array(a: Any, name: str, op: str) -> None:
    if not (isinstance(a, np.ndarray) or is_cupy(a)):
        raise TypeError(f"{op}: {name} must be an array of float32 (numpy, cupy, a torch tensor "
                        f"or a DLPack object), got {type(a).__name__}; convert it with "
                        f"numpy.asarray({name}, dtype=numpy.float32)")


def _conv_args(
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


@_converts("x", "w", "b")
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

    Returns:
        y: (N, K, P, Q) float32.
    """
    op = "conv2d"
    args = _conv_args(op, x, w, stride, padding, dilation, groups)
    return _backend(op, x, w, b).conv2d(x, w, b, *args, check_bool(relu, "relu", op=op))


@_converts("dy", "x", "w", "relu_y", "pool_indices")
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
        k, st, pd, _ = pool_args(pool_size, pool_stride, pool_padding, op=op,
                                 names=("pool_size", "pool_stride", "pool_padding", "dilation"))
        pool = {"pool_indices": pool_indices, "pool_kh": k[0], "pool_kw": k[1],
                "pool_sh": st[0], "pool_sw": st[1], "pool_ph": pd[0], "pool_pw": pd[1],
                "pool_ceil_mode": check_bool(pool_ceil_mode, "pool_ceil_mode", op=op)}
    elif pool_size is not None or pool_stride is not None:
        raise ValueError(f"{op}: pool_size / pool_stride given without pool_indices")
    return _backend(op, dy, x, w, relu_y, pool_indices).conv2d_backward(
        dy, x, w, *args, check_bool(compute_dx, "compute_dx", op=op),
        check_bool(compute_dw, "compute_dw", op=op), check_bool(bias, "bias", op=op),
        relu_y=relu_y, **pool)


@_converts("x", "out")
def relu(x: Any, *, out: Any = None) -> Any:
    """``max(x, 0)`` elementwise, NaN propagating (PyTorch's ``relu``). Any shape, float32.

    Args:
        x: float32 array of any shape.
        out: optional destination written in place and returned: a C-contiguous float32 array
            of x's shape on x's device; ``out=x`` is an in-place ReLU. It may not overlap x
            partially. Reusing a buffer saves a fresh array's page faults on large tensors.

    Returns:
        y: x's shape (``out`` when given).
    """
    return _backend("relu", x, out).relu(x, out=out)


@_converts("dy", "y", "out")
def relu_backward(dy: Any, y: Any, *, out: Any = None) -> Any:
    """``dy`` where the forward output ``y > 0``, else 0.

    Args:
        dy, y: float32 arrays of one shape.
        out: optional destination (C-contiguous float32, that shape, same device), returned; it
            may be ``dy`` or ``y`` itself (in place) but not overlap them partially.

    Returns:
        dx: dy's shape (``out`` when given).
    """
    return _backend("relu_backward", dy, y, out).relu_backward(dy, y, out=out)


@_converts("x")
def max_pool2d(
    x: Any,
    kernel_size: Any,
    *,
    stride: Any = None,
    padding: Any = 0,
    dilation: Any = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Any:
    """Max pooling over (H, W), PyTorch's semantics (ties to the first maximum, NaN wins).

    Args:
        x: (N, C, H, W) float32.
        kernel_size, stride (None = kernel_size), padding (<= kernel/2, implicit -inf),
            dilation: int or (h, w).
        ceil_mode: let the last window overhang the input (it must start inside).
        return_indices: also return int64 indices (N, C, P, Q) into each flattened (H, W) plane.

    Returns:
        y (N, C, P, Q), or ``(y, indices)``.
    """
    op = "max_pool2d"
    k, s, p, d = pool_args(kernel_size, stride, padding, dilation, op=op)
    return _backend(op, x).max_pool2d(
        x, *k, *s, *p, *d, check_bool(ceil_mode, "ceil_mode", op=op),
        check_bool(return_indices, "return_indices", op=op))


@_converts("dy", "x", "indices", "out")
def max_pool2d_backward(
    dy: Any,
    x: Any,
    kernel_size: Any,
    *,
    stride: Any = None,
    padding: Any = 0,
    dilation: Any = 1,
    ceil_mode: bool = False,
    indices: Any = None,
    out: Any = None,
) -> Any:
    """Gradient of :func:`max_pool2d`: ``dy`` (N, C, P, Q) scattered to ``dx`` (N, C, H, W).

    ``indices`` (int64, from ``return_indices=True``) avoids recomputing the argmax from ``x``;
    overlapping windows accumulate. ``out``: an optional destination for dx (C-contiguous
    float32 of x's shape on x's device; it may be x itself but not overlap dy, x or the indices
    partially), written and returned; it saves a fresh array's page faults on large inputs.
    """
    op = "max_pool2d_backward"
    k, s, p, d = pool_args(kernel_size, stride, padding, dilation, op=op)
    return _backend(op, dy, x, indices, out).max_pool2d_backward(
        dy, x, *k, *s, *p, *d, check_bool(ceil_mode, "ceil_mode", op=op), indices, out=out)


@_converts("x", "w", "b")
def linear(x: Any, w: Any, b: Any = None, *, relu: bool = False) -> Any:
    """Dense layer ``y = x @ w.T + b`` (optionally ReLU fused).

    Args:
        x: (N, in) float32; w: (out, in) float32; b: (out,) float32 or None.

    Returns:
        y: (N, out) float32.
    """
    op = "linear"
    return _backend(op, x, w, b).linear(x, w, b, check_bool(relu, "relu", op=op))


@_converts("dy", "x", "w")
def linear_backward(
    dy: Any, x: Any, w: Any, *, bias: bool = True, compute_dx: bool = True,
    compute_dw: bool = True
) -> tuple[Any, Any, Any]:
    """Gradients of :func:`linear`: ``(dx (N, in) or None when compute_dx=False, dw (out, in)
    or None when compute_dw=False, db (out,) or None when bias=False)``."""
    op = "linear_backward"
    return _backend(op, dy, x, w).linear_backward(
        dy, x, w, check_bool(compute_dx, "compute_dx", op=op),
        check_bool(compute_dw, "compute_dw", op=op), check_bool(bias, "bias", op=op))


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
    """
    op = "cross_entropy"
    return _backend(op, logits, labels).cross_entropy(logits, labels)


@_converts("p", "g", "buf")
def sgd_update(p: Any, g: Any, buf: Any = None, *, lr: float, momentum: float = 0.0,
               nesterov: bool = False, weight_decay: float = 0.0, first: bool = False) -> None:
    """One SGD step in place, PyTorch's formula (:class:`fastcnn.optimizers.SGD`)::

        g = g + weight_decay * p
        buf = g  (first)  |  momentum * buf + g
        g = g + momentum * buf  (nesterov)  |  buf  (momentum != 0)
        p -= lr * g

    Args:
        p: the parameter, float32 of any shape, C-contiguous and writable (updated in place).
        g: its gradient, float32 with p's number of elements (not modified).
        buf: the momentum buffer (p's size, updated in place); needed when ``momentum != 0``.
        lr, momentum, weight_decay: rounded to float32, as NumPy rounds them.
        first: the first step: ``buf = g`` (buf's old contents are ignored).
    """
    op = "sgd_update"
    f32 = np.float32
    _backend(op, p, g, buf).sgd_update(
        p, g, buf, lr=float(f32(lr)), momentum=float(f32(momentum)),
        nesterov=check_bool(nesterov, "nesterov", op=op),
        weight_decay=float(f32(weight_decay)), first=check_bool(first, "first", op=op))


@_converts("p", "g", "m", "v")
def adam_update(p: Any, g: Any, m: Any, v: Any, *, lr: float, beta_1: float, beta_2: float,
                epsilon: float, step: int, weight_decay: float = 0.0,
                decoupled: bool = False) -> None:
    """One Adam step in place (AdamW with ``decoupled``), PyTorch's formula
    (:class:`fastcnn.optimizers.Adam` / ``AdamW``)::

        p = p * (1 - lr * weight_decay)  (decoupled)  |  g = g + weight_decay * p
        m = beta_1 m + (1 - beta_1) g;   v = beta_2 v + (1 - beta_2) g^2
        p -= lr / (1 - beta_1^step) * m / (sqrt(v) / sqrt(1 - beta_2^step) + epsilon)

    Args:
        p: the parameter, float32, C-contiguous and writable (updated in place).
        g: its gradient (p's number of elements; not modified).
        m, v: the moment estimates (p's size, updated in place; zeros before the first step).
        lr, beta_1, beta_2, epsilon, weight_decay: the scalars are formed in float64 (the bias
            corrections, ``lr / (1 - beta_1^step)``, ...), then rounded to float32.
        step: the step number, counting from 1.
    """
    op = "adam_update"
    t = check_int(step, "step", op=op, minimum=1)
    decoupled = check_bool(decoupled, "decoupled", op=op)
    lr, beta_1, beta_2, wd = float(lr), float(beta_1), float(beta_2), float(weight_decay)
    f32 = np.float32
    b1, b2 = f32(beta_1), f32(beta_2)
    _backend(op, p, g, m, v).adam_update(
        p, g, m, v, step_size=float(f32(lr / (1.0 - beta_1 ** t))), beta1=float(b1),
        one_minus_beta1=float(f32(1) - b1), beta2=float(b2), one_minus_beta2=float(f32(1) - b2),
        sqrt_bc2=float(f32(math.sqrt(1.0 - beta_2 ** t))), eps=float(f32(epsilon)),
        l2=float(f32(wd)), decay=float(f32(1.0 - lr * wd)) if decoupled and wd else 1.0,
        has_l2=bool(wd and not decoupled), has_decay=bool(wd and decoupled))
