"""fastcnn's kernels as PyTorch operators: ``torch.ops.fastcnn.*`` custom ops with autograd.

Each forward op (``conv2d``, ``max_pool2d``, ``relu``, ``linear``, ``cross_entropy``) and each
backward op is a :func:`torch.library.custom_op` with a fake (meta) implementation, so
``torch.compile`` traces through them as opaque nodes with known output shapes; the forward ops'
gradients are registered with :func:`torch.library.register_autograd` and run fastcnn's own
backward kernels (``conv2d_backward`` with ``compute_dx`` / ``compute_dw`` set from which inputs
need a gradient, ``max_pool2d_backward`` with the saved argmax indices, ``linear_backward``,
``relu_backward``, and cross-entropy's ``dlogits`` scaled by the incoming gradient). Double
backward is not supported (torch raises when asked for it).

In eager mode the dispatcher's custom-op layers are skipped (they cost 30-120 us a call): an op
whose inputs need no gradient calls its implementation directly, one whose inputs do runs as a
classic ``torch.autograd.Function`` with the same setup and backward; under ``torch.compile``,
a dispatch mode (fake tensors, tracing), on meta tensors or on tensor subclasses the ops go
through ``torch.ops.fastcnn`` (:func:`_path`).

The crossing is :func:`fastcnn._arrays.call_tensors`, the one :mod:`fastcnn.ops` uses too: a CPU
tensor reaches the kernels as the NumPy array over its own memory (``t.numpy()``; a
non-contiguous one is copied once by the binding) and the result comes back with
``torch.from_numpy`` (no copy). A CUDA tensor goes to CuPy through DLPack (``cupy.from_dlpack``,
no copy) and back with ``torch.from_dlpack``, and fastcnn's kernels are launched on PyTorch's
current stream of that device (a CuPy ``ExternalStream``), so they are ordered with the
surrounding PyTorch work. The CUDA path has not been run on a GPU yet.

Shapes follow PyTorch's functional API: x ``(N, C, H, W)`` (or unbatched ``(C, H, W)``), conv
weight ``(K, C/groups, R, S)``, linear weight ``(out, in)`` with x ``(*, in)``. Tensors must be
float32 (a TypeError says ``.float()``); class labels any integer dtype.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils._python_dispatch import _get_current_dispatch_mode

from .. import ops
from .._arrays import call_tensors
from .._geometry import conv_output_size, conv_padding, pair, pool_args, pool_output_size

__all__ = ["conv2d", "cross_entropy", "linear", "max_pool2d", "relu"]

Tensor = torch.Tensor


# --------------------------------------------------------------------------------------------
# the crossing: tensors -> arrays -> fastcnn.ops -> tensors

#: ``call(fn, *tensors)``: ``fn(*arrays)`` on zero-copy NumPy (CPU) or CuPy (CUDA) views of
#: ``tensors`` (None stays None), arrays in the result back as tensors (no copy); the crossing
#: :mod:`fastcnn.ops` uses too (tensors that require grad are detached: these ops record
#: autograd themselves).
call = call_tensors


def _raw(op: Callable[..., Any]) -> Callable[..., Any]:
    """A :mod:`fastcnn.ops` function without its array-kind wrapper (``call`` has already
    given it NumPy / CuPy arrays: one type test per argument less on every call)."""
    return getattr(op, "__wrapped__", op)


_PLAIN = (torch.Tensor, torch.nn.Parameter)


_DIRECT, _FUNCTION, _DISPATCHER = "direct", "function", "dispatcher"


def _path(*tensors: Tensor | None) -> str:
    """How an op runs: plain, non-meta tensors outside ``torch.compile`` and any dispatch mode
    (fake tensors, tracing) skip PyTorch's dispatcher, whose custom-op layers cost tens of
    microseconds a call (over a hundred with autograd): ``_DIRECT`` (the implementation
    itself) when no tensor needs a gradient, else ``_FUNCTION`` (a ``torch.autograd.Function``
    with the same setup and backward as the registered autograd). Anything else goes through
    ``torch.ops.fastcnn`` (``_DISPATCHER``), which is what torch.compile sees."""
    if torch.compiler.is_compiling() or _get_current_dispatch_mode() is not None:
        return _DISPATCHER
    grad = torch.is_grad_enabled()
    path = _DIRECT
    for t in tensors:
        if t is None:
            continue
        if type(t) not in _PLAIN or t.is_meta:
            return _DISPATCHER  # meta tensors: the dispatcher runs the fake implementation
        if grad and t.requires_grad:
            path = _FUNCTION
    return path


_F32 = torch.float32


def _direct(*tensors: Any) -> bool:
    """Whether ``_check`` passes and :func:`_path` is ``_DIRECT``, tested cheaply for the
    common eager case: plain float32 CPU tensors (or None) needing no gradient, outside
    ``torch.compile`` and dispatch modes. A False sends the op down the full checks, which
    word any error."""
    if torch.compiler.is_compiling() or _get_current_dispatch_mode() is not None:
        return False
    grad = torch.is_grad_enabled()
    for t in tensors:
        if t is None:
            continue
        if type(t) not in _PLAIN or t.dtype is not _F32 or not t.is_cpu or (
                grad and t.requires_grad):
            return False
    return True


def _eager(*tensors: Tensor | None) -> bool:
    """Whether a backward op may run its implementation directly (see :func:`_path`)."""
    return _path(*tensors) is _DIRECT


def _function(name: str, impl: Callable[..., Any], setup: Callable[..., None],
              grad: Callable[..., Any]) -> Any:
    """A ``torch.autograd.Function`` running ``impl`` with ``setup`` / ``grad`` as its
    setup_context / backward: the eager path of an op whose inputs need gradients."""
    def forward(ctx: Any, *args: Any) -> Any:  # the classic form: its apply is ~4x cheaper
        output = impl(*args)
        setup(ctx, args, output)
        return output

    return type(f"{name}_function", (torch.autograd.Function,), {
        "forward": staticmethod(forward), "backward": staticmethod(grad)})


def _run(path: str, impl: Callable[..., Any], function: Any, op: Any, *args: Any) -> Any:
    if path is _DIRECT:
        return impl(*args)
    if path is _FUNCTION:
        return function.apply(*args)
    return op(*args)


def _check(op: str, **tensors: Tensor | None) -> None:
    """float32 tensors on one device (labels / indices are checked by fastcnn)."""
    first: Tensor | None = None
    for name, t in tensors.items():
        if t is None:
            continue
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"fastcnn.torch.{op}: {name} must be a torch.Tensor, got "
                            f"{type(t).__name__}")
        if t.dtype != torch.float32:
            raise TypeError(f"fastcnn.torch.{op}: {name} must be float32, got {t.dtype} "
                            f"(convert with .float())")
        if first is None:
            first = t
        elif t.device != first.device:
            raise ValueError(f"fastcnn.torch.{op}: all tensors must be on one device, got "
                             f"{first.device} and {name} on {t.device}")


def _custom_op(name: str, impl: Callable[..., Any], schema: str) -> Any:
    """``impl`` registered as the custom op ``fastcnn::<name>`` (no argument mutated)."""
    return torch.library.custom_op(f"fastcnn::{name}", impl, mutates_args=(), schema=schema)


def _empty_like_or_none(flag: bool, like: Tensor) -> Tensor:
    return torch.empty_like(like) if flag else like.new_empty(0)


def _opt(t: Tensor, flag: bool) -> Tensor | None:
    return t if flag else None


# --------------------------------------------------------------------------------------------
# conv2d

def _conv2d_impl(x: Tensor, w: Tensor, b: Tensor | None, stride: Sequence[int],
                 padding: Sequence[int], same: bool, dilation: Sequence[int],
                 groups: int) -> Tensor:
    pad = "same" if same else tuple(padding)
    return call(lambda x_, w_, b_: _raw(ops.conv2d)(x_, w_, b_, stride=tuple(stride), padding=pad,
                                              dilation=tuple(dilation), groups=groups), x, w, b)


_conv2d = _custom_op("conv2d", _conv2d_impl, (
    "(Tensor x, Tensor w, Tensor? b, int[] stride, int[] padding, bool same, int[] dilation, "
    "int groups) -> Tensor"))


@_conv2d.register_fake
def _(x, w, b, stride, padding, same, dilation, groups):
    N, _, H, W = x.shape
    K, _, R, S = w.shape
    pads = conv_padding("same" if same else tuple(padding), H, W, R, S, tuple(stride),
                        tuple(dilation))
    P, Q = conv_output_size(H, W, R, S, tuple(stride), pads, tuple(dilation))
    return x.new_empty((N, K, P, Q))


def _grads_or_empty(like: Tensor, *grads: Tensor | None) -> tuple[Tensor, ...]:
    """Custom ops return tensors: a gradient that was not computed is an empty one (one fresh
    empty tensor each, like ``like``'s dtype and device)."""
    return tuple(like.new_empty(0) if g is None else g for g in grads)


def _conv2d_backward_impl(dy: Tensor, x: Tensor, w: Tensor, stride: Sequence[int],
                          padding: Sequence[int], same: bool, dilation: Sequence[int], groups: int,
                          compute_dx: bool, compute_dw: bool, bias: bool
                          ) -> tuple[Tensor, Tensor, Tensor]:
    pad = "same" if same else tuple(padding)
    dx, dw, db = call(lambda dy_, x_, w_: _raw(ops.conv2d_backward)(
        dy_, x_, w_, stride=tuple(stride), padding=pad, dilation=tuple(dilation), groups=groups,
        bias=bias, compute_dx=compute_dx, compute_dw=compute_dw), dy, x, w)
    return _grads_or_empty(x, dx, dw, db)


_conv2d_backward = _custom_op("conv2d_backward", _conv2d_backward_impl, (
    "(Tensor dy, Tensor x, Tensor w, int[] stride, int[] padding, bool same, int[] dilation, "
    "int groups, bool compute_dx, bool compute_dw, bool bias) -> (Tensor, Tensor, Tensor)"))


@_conv2d_backward.register_fake
def _(dy, x, w, stride, padding, same, dilation, groups, compute_dx, compute_dw, bias):
    return (_empty_like_or_none(compute_dx, x), _empty_like_or_none(compute_dw, w),
            x.new_empty((w.shape[0],) if bias else (0,)))


def _conv2d_setup(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    x, w, b, *ctx.geometry = inputs
    ctx.has_bias = b is not None
    ctx.save_for_backward(x, w)


def _conv2d_grad(ctx: Any, dy: Tensor) -> tuple[Tensor | None, ...]:
    x, w = ctx.saved_tensors
    need_dx, need_dw, need_db = ctx.needs_input_grad[:3]
    need_db = need_db and ctx.has_bias
    op = _conv2d_backward_impl if _eager(dy, x, w) else torch.ops.fastcnn.conv2d_backward
    dx, dw, db = op(dy, x, w, *ctx.geometry, need_dx, need_dw, need_db)
    return _opt(dx, need_dx), _opt(dw, need_dw), _opt(db, need_db), None, None, None, None, None


_conv2d.register_autograd(_conv2d_grad, setup_context=_conv2d_setup)
_conv2d_function = _function("_conv2d", _conv2d_impl, _conv2d_setup, _conv2d_grad)


def _batched(x: Tensor, op: str) -> tuple[Tensor, bool]:
    if x.dim() == 3:
        return x.unsqueeze(0), True
    if x.dim() != 4:
        raise ValueError(f"fastcnn.torch.{op}: x must be (N, C, H, W) or (C, H, W), got shape "
                         f"{tuple(x.shape)}")
    return x, False


def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride: Any = 1,
           padding: Any = 0, dilation: Any = 1, groups: int = 1) -> Tensor:
    """``torch.nn.functional.conv2d`` on fastcnn's kernels, with autograd.

    Args:
        x: (N, C, H, W) or (C, H, W) float32.
        weight: (K, C/groups, R, S); bias: (K,) or None.
        stride, dilation: int or (h, w); padding: int, (h, w), ``"valid"`` or ``"same"``
            (fastcnn's rule, any stride: output ceil(H/stride), an odd total's extra row/column
            at the bottom/right; PyTorch's own for stride 1).
        groups: dividing C and K.

    Returns:
        (N, K, P, Q) (or (K, P, Q) for an unbatched x).
    """
    op = "conv2d"
    direct = _direct(x, weight, bias)
    if not direct:
        _check(op, x=x, weight=weight, bias=bias)
    x, unbatched = _batched(x, op)
    st = pair(stride, "stride", op=op, minimum=1)
    dil = pair(dilation, "dilation", op=op, minimum=1)
    if isinstance(padding, str):
        if padding not in ("valid", "same"):
            raise ValueError(f"fastcnn.torch.conv2d: padding must be an int, a pair, 'valid' "
                             f"or 'same', got {padding!r}")
        same, pad = padding == "same", (0, 0)
    else:
        same, pad = False, pair(padding, "padding", op=op, minimum=0)
    args = (x, weight, bias, list(st), list(pad), same, list(dil), int(groups))
    y = _run(_DIRECT if direct else _path(x, weight, bias), _conv2d_impl, _conv2d_function,
             torch.ops.fastcnn.conv2d,
             *args)
    return y.squeeze(0) if unbatched else y


# --------------------------------------------------------------------------------------------
# max_pool2d

_POOL = "int[] kernel_size, int[] stride, int[] padding, int[] dilation, bool ceil_mode"


def _max_pool2d_impl(x: Tensor, kernel_size: Sequence[int], stride: Sequence[int],
                     padding: Sequence[int], dilation: Sequence[int], ceil_mode: bool
                     ) -> tuple[Tensor, Tensor]:
    return call(lambda x_: _raw(ops.max_pool2d)(x_, tuple(kernel_size), stride=tuple(stride),
                                          padding=tuple(padding), dilation=tuple(dilation),
                                          ceil_mode=ceil_mode, return_indices=True), x)


_max_pool2d = _custom_op("max_pool2d", _max_pool2d_impl, f"(Tensor x, {_POOL}) -> (Tensor, Tensor)")


@_max_pool2d.register_fake
def _(x, kernel_size, stride, padding, dilation, ceil_mode):
    N, C, H, W = x.shape
    P, Q = pool_output_size(H, W, tuple(kernel_size), tuple(stride), tuple(padding),
                            tuple(dilation), ceil_mode)
    return x.new_empty((N, C, P, Q)), x.new_empty((N, C, P, Q), dtype=torch.int64)


def _max_pool2d_backward_impl(dy: Tensor, x: Tensor, indices: Tensor, kernel_size: Sequence[int],
                              stride: Sequence[int], padding: Sequence[int],
                              dilation: Sequence[int], ceil_mode: bool) -> Tensor:
    return call(lambda dy_, x_, i_: _raw(ops.max_pool2d_backward)(
        dy_, x_, tuple(kernel_size), stride=tuple(stride), padding=tuple(padding),
        dilation=tuple(dilation), ceil_mode=ceil_mode, indices=i_), dy, x, indices)


_max_pool2d_backward = _custom_op("max_pool2d_backward", _max_pool2d_backward_impl,
                                  f"(Tensor dy, Tensor x, Tensor indices, {_POOL}) -> Tensor")


@_max_pool2d_backward.register_fake
def _(dy, x, indices, kernel_size, stride, padding, dilation, ceil_mode):
    return torch.empty_like(x)


def _pool_setup(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, Tensor]) -> None:
    x, *ctx.geometry = inputs
    ctx.mark_non_differentiable(output[1])
    ctx.save_for_backward(x, output[1])


def _pool_grad(ctx: Any, dy: Tensor, _didx: Tensor | None) -> tuple[Tensor | None, ...]:
    x, indices = ctx.saved_tensors
    op = (_max_pool2d_backward_impl if _eager(dy, x, indices)
          else torch.ops.fastcnn.max_pool2d_backward)
    dx = op(dy, x, indices, *ctx.geometry)
    return dx, None, None, None, None, None


_max_pool2d.register_autograd(_pool_grad, setup_context=_pool_setup)
_max_pool2d_function = _function("_max_pool2d", _max_pool2d_impl, _pool_setup, _pool_grad)


def max_pool2d(x: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0,
               dilation: Any = 1, ceil_mode: bool = False, return_indices: bool = False
               ) -> Tensor | tuple[Tensor, Tensor]:
    """``torch.nn.functional.max_pool2d`` on fastcnn's kernels, with autograd (the backward
    uses the argmax indices saved by the forward).

    Args:
        x: (N, C, H, W) or (C, H, W) float32.
        kernel_size, stride (None or empty: kernel_size), padding (<= kernel // 2), dilation:
            int or (h, w).

    Returns:
        y (N, C, P, Q), or ``(y, indices)``: int64 indices into each flattened (H, W) plane,
        as PyTorch's.
    """
    op = "max_pool2d"
    direct = _direct(x)
    if not direct:
        _check(op, x=x)
    x, unbatched = _batched(x, op)
    if stride is not None and not isinstance(stride, int) and len(stride) == 0:
        stride = None  # torch.nn.MaxPool2d's default, as F.max_pool2d reads it
    k, s, p, d = pool_args(kernel_size, stride, padding, dilation, op=op)
    args = (x, list(k), list(s), list(p), list(d), bool(ceil_mode))
    y, idx = _run(_DIRECT if direct else _path(x), _max_pool2d_impl, _max_pool2d_function,
                  torch.ops.fastcnn.max_pool2d, *args)
    if unbatched:
        y, idx = y.squeeze(0), idx.squeeze(0)
    return (y, idx) if return_indices else y


# --------------------------------------------------------------------------------------------
# relu

def _relu_impl(x: Tensor) -> Tensor:
    return call(_raw(ops.relu), x)


_relu = _custom_op("relu", _relu_impl, "(Tensor x) -> Tensor")


@_relu.register_fake
def _(x):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def _relu_backward_impl(dy: Tensor, y: Tensor) -> Tensor:
    return call(_raw(ops.relu_backward), dy, y)


_relu_backward = _custom_op("relu_backward", _relu_backward_impl, "(Tensor dy, Tensor y) -> Tensor")


@_relu_backward.register_fake
def _(dy, y):
    return torch.empty_like(y, memory_format=torch.contiguous_format)


def _relu_setup(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    ctx.save_for_backward(output)


def _relu_grad(ctx: Any, dy: Tensor) -> Tensor:
    (y,) = ctx.saved_tensors
    op = _relu_backward_impl if _eager(dy, y) else torch.ops.fastcnn.relu_backward
    return op(dy, y)


_relu.register_autograd(_relu_grad, setup_context=_relu_setup)
_relu_function = _function("_relu", _relu_impl, _relu_setup, _relu_grad)


def relu(x: Tensor) -> Tensor:
    """``torch.relu`` on fastcnn's kernel (NaN propagates), with autograd. Any shape,
    float32; the result is a new contiguous tensor."""
    if _direct(x):  # the common eager case: no _check / _path (the same answer, cheaper)
        return _relu_impl(x)
    _check("relu", x=x)
    return _run(_path(x), _relu_impl, _relu_function, torch.ops.fastcnn.relu, x)


# --------------------------------------------------------------------------------------------
# linear

def _linear_impl(x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    return call(_raw(ops.linear), x, w, b)


_linear = _custom_op("linear", _linear_impl, "(Tensor x, Tensor w, Tensor? b) -> Tensor")


@_linear.register_fake
def _(x, w, b):
    return x.new_empty((x.shape[0], w.shape[0]))


def _linear_backward_impl(dy: Tensor, x: Tensor, w: Tensor, compute_dx: bool, compute_dw: bool,
                          bias: bool) -> tuple[Tensor, Tensor, Tensor]:
    dx, dw, db = call(lambda dy_, x_, w_: _raw(ops.linear_backward)(
        dy_, x_, w_, bias=bias, compute_dx=compute_dx, compute_dw=compute_dw), dy, x, w)
    return _grads_or_empty(x, dx, dw, db)


_linear_backward = _custom_op("linear_backward", _linear_backward_impl, (
    "(Tensor dy, Tensor x, Tensor w, bool compute_dx, bool compute_dw, bool bias) -> "
    "(Tensor, Tensor, Tensor)"))


@_linear_backward.register_fake
def _(dy, x, w, compute_dx, compute_dw, bias):
    return (_empty_like_or_none(compute_dx, x), _empty_like_or_none(compute_dw, w),
            x.new_empty((w.shape[0],) if bias else (0,)))


def _linear_setup(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    x, w, b = inputs
    ctx.has_bias = b is not None
    ctx.save_for_backward(x, w)


def _linear_grad(ctx: Any, dy: Tensor) -> tuple[Tensor | None, ...]:
    x, w = ctx.saved_tensors
    need_dx, need_dw, need_db = ctx.needs_input_grad
    need_db = need_db and ctx.has_bias
    op = _linear_backward_impl if _eager(dy, x, w) else torch.ops.fastcnn.linear_backward
    dx, dw, db = op(dy, x, w, need_dx, need_dw, need_db)
    return _opt(dx, need_dx), _opt(dw, need_dw), _opt(db, need_db)


_linear.register_autograd(_linear_grad, setup_context=_linear_setup)
_linear_function = _function("_linear", _linear_impl, _linear_setup, _linear_grad)


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``torch.nn.functional.linear`` on fastcnn's kernels, with autograd.

    Args:
        x: (*, in) float32 (leading axes are flattened into one batch axis and restored).
        weight: (out, in); bias: (out,) or None.

    Returns:
        (*, out).
    """
    if _direct(x, weight, bias):
        path = _DIRECT
    else:
        _check("linear", x=x, weight=weight, bias=bias)
        path = _path(x, weight, bias)
    if x.dim() == 2:
        return _run(path, _linear_impl, _linear_function, torch.ops.fastcnn.linear, x, weight,
                    bias)
    if x.dim() == 0:
        raise ValueError("fastcnn.torch.linear: x must have at least one axis (*, in), got a "
                         "0-d tensor")
    lead = x.shape[:-1]
    y = _run(path, _linear_impl, _linear_function, torch.ops.fastcnn.linear,
             x.reshape(-1, x.shape[-1]), weight, bias)
    return y.reshape(*lead, y.shape[-1])


# --------------------------------------------------------------------------------------------
# cross_entropy

def _cross_entropy_impl(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    loss, dlogits = call(_raw(ops.cross_entropy), logits, labels)
    if isinstance(loss, Tensor):  # CUDA: a 0-d float64 device array (no host read), as a tensor
        return loss.to(dtype=torch.float32).reshape(()), dlogits
    return torch.tensor(loss, dtype=torch.float32, device=logits.device), dlogits


_cross_entropy = _custom_op("cross_entropy", _cross_entropy_impl,
                            "(Tensor logits, Tensor labels) -> (Tensor, Tensor)")


@_cross_entropy.register_fake
def _(logits, labels):
    return logits.new_empty(()), torch.empty_like(logits)


def _ce_setup(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, Tensor]) -> None:
    ctx.mark_non_differentiable(output[1])
    ctx.save_for_backward(output[1])


def _ce_grad(ctx: Any, dloss: Tensor, _ddlogits: Tensor | None) -> tuple[Tensor | None, None]:
    (dlogits,) = ctx.saved_tensors
    return dlogits * dloss, None


_cross_entropy.register_autograd(_ce_grad, setup_context=_ce_setup)
_cross_entropy_function = _function("_cross_entropy", _cross_entropy_impl, _ce_setup, _ce_grad)


def cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """``torch.nn.functional.cross_entropy`` (mean over the batch) on fastcnn's fused softmax
    + cross-entropy kernel, with autograd for ``logits``.

    Args:
        logits: (N, classes) float32.
        target: integer class ids (N,), or float32 probabilities (N, classes) (no gradient
            flows to ``target``: one that requires it is a ValueError).

    Returns:
        the loss, a 0-d float32 tensor.
    """
    op = "cross_entropy"
    _check(op, logits=logits)
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"fastcnn.torch.{op}: target must be a torch.Tensor, got "
                        f"{type(target).__name__}")
    if target.requires_grad:
        raise ValueError(f"fastcnn.torch.{op}: no gradient with respect to target; pass "
                         f"target.detach()")
    if target.device != logits.device:
        raise ValueError(f"fastcnn.torch.{op}: logits on {logits.device}, target on "
                         f"{target.device}; put them on one device")
    loss, _ = _run(_path(logits), _cross_entropy_impl, _cross_entropy_function,
                   torch.ops.fastcnn.cross_entropy, logits, target)
    return loss
