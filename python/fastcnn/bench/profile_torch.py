"""PyTorch twins of the profile's rows (:mod:`fastcnn.bench.profile`): for one captured fastcnn
op call, the ATen calls PyTorch's autograd makes for the same layer and pass, on the same arrays
(``torch.from_numpy`` views of the capture's copies).

* conv forward: ``F.conv2d`` (an asymmetric "same" padding: ``F.pad`` first, as ``to_torch``
  does) then ``relu`` when fastcnn fused it;
* conv backward-data / weight gradient: ``aten.convolution_backward`` with the output mask of
  that pass (``[dx]`` / ``[dw, db]``), after ``max_pool2d_with_indices_backward`` and
  ``threshold_backward`` when fastcnn fused the pooling's / the ReLU's backward into it (the
  unfused pair PyTorch runs; both split passes route it, as fastcnn's split calls do);
* dense: ``F.linear`` (+ ``relu``), ``dy @ w`` and ``dy.T @ x`` + ``dy.sum(0)``;
* batch norm: ``aten.native_batch_norm`` (+ ``relu``) and ``aten.native_batch_norm_backward``
  (after ``threshold_backward`` for a fused ReLU);
* pooling, activations: their ATen forward / backward (the global average pool's backward is
  autograd's ``expand``: a view, no work);
* loss: ``_log_softmax``, ``nll_loss_forward``, ``nll_loss_backward``,
  ``_log_softmax_backward_data``;
* optimizer: ``torch.optim.SGD`` / ``Adam`` ``step()`` over all the parameters with their
  gradients set (PyTorch's default foreach implementation, one call for the whole model);
* a layer that calls no fastcnn op: ``Add.forward`` -> ``torch.add`` over its inputs,
  ``Add.backward`` -> nothing (autograd hands the same gradient to every input); others none.

Only this module and :mod:`fastcnn.bench.common` touch PyTorch in the profile, and only through
the module passed in.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

from .._geometry import pool_args
from .profile_calls import conv_geometry

__all__ = ["optimizer_twin", "twin"]

Twin = tuple[Callable[[], Any] | None, str]


def _bound(c: Any) -> dict[str, Any]:
    sig = inspect.signature(c.fn)
    b = sig.bind(*c.args, **c.kwargs)
    b.apply_defaults()
    return dict(b.arguments)


def _t(torch: Any, a: Any) -> Any:
    return torch.from_numpy(a) if isinstance(a, np.ndarray) else a


def _conv(torch: Any, c: Any, kind: str) -> Twin:
    aten, F = torch.ops.aten, torch.nn.functional
    a = _bound(c)
    sh, sw, pt, pl, pb, pr, dh, dw, g = conv_geometry(c)
    sym = pt == pb and pl == pr
    pad = [pt, pl] if sym else [0, 0]
    x = _t(torch, a["x"])
    if not sym:  # the backward's input: padded once here (the forward row pads each call)
        x = F.pad(x, (pl, pr, pt, pb))
    w = _t(torch, a["w"])
    note = "" if sym else "F.pad + conv (asymmetric padding)"
    if kind == "conv forward":
        b = _t(torch, a["b"])
        relu = a.get("relu", False)  # conv2d_stats has none (its BN row is torch's BN)
        xin = _t(torch, a["x"])

        def fwd() -> Any:
            xx = F.pad(xin, (pl, pr, pt, pb)) if not sym else xin
            y = F.conv2d(xx, w, b, (sh, sw), pad, (dh, dw), g)
            return torch.relu_(y) if relu else y
        return fwd, note
    dy = _t(torch, a["dy"])
    relu_y = _t(torch, a["relu_y"])
    pre: list[Callable[[Any], Any]] = []
    if a["pool_indices"] is not None:
        k, s, p, d = pool_args(a["pool_size"], a["pool_stride"], a["pool_padding"], 1)
        full = relu_y if relu_y is not None else torch.zeros(
            (dy.shape[0], dy.shape[1], *_conv_out(c, a)), dtype=torch.float32)
        _, idx = F.max_pool2d(full, k, s, p, d, a["pool_ceil_mode"], return_indices=True)
        pre.append(lambda g_, full=full, idx=idx, k=k, s=s, p=p, d=d: (
            aten.max_pool2d_with_indices_backward(g_, full, list(k), list(s), list(p),
                                                  list(d), a["pool_ceil_mode"], idx)))
        note = (note + "; " if note else "") + "+ max_pool2d backward"
    if relu_y is not None:
        pre.append(lambda g_: aten.threshold_backward(g_, relu_y, 0.0))
        note = (note + "; " if note else "") + "+ threshold_backward"
    if kind == "conv backward-data":
        mask = [True, False, False]
    else:
        mask = [False, True, bool(a["bias"])]
    bias_sizes = [w.shape[0]] if mask[2] else None

    def bwd() -> Any:
        g_ = dy
        for f in pre:
            g_ = f(g_)
        return aten.convolution_backward(g_, x, w, bias_sizes, [sh, sw], pad, [dh, dw], False,
                                         [0, 0], g, mask)
    return bwd, note


def _conv_out(c: Any, a: dict[str, Any]) -> tuple[int, int]:
    sh, sw, pt, pl, pb, pr, dh, dw, _ = conv_geometry(c)
    h, wd = a["x"].shape[2:]
    r, s = a["w"].shape[2:]
    return ((h + pt + pb - dh * (r - 1) - 1) // sh + 1, (wd + pl + pr - dw * (s - 1) - 1) // sw + 1)


def _linear(torch: Any, c: Any, kind: str) -> Twin:
    F = torch.nn.functional
    a = _bound(c)
    x, w = _t(torch, a["x"]), _t(torch, a["w"])
    if kind == "dense forward":
        b, relu = _t(torch, a["b"]), a["relu"]
        return (lambda: torch.relu_(F.linear(x, w, b)) if relu else F.linear(x, w, b)), ""
    dy = _t(torch, a["dy"])
    if kind == "dense backward-data":
        return (lambda: dy.mm(w)), "dy @ w"
    bias = a["bias"]
    return (lambda: (dy.t().mm(x), dy.sum(0) if bias else None)), "dy.T @ x, dy.sum(0)"


def _batch_norm(torch: Any, c: Any) -> Twin:
    aten = torch.ops.aten
    a = _bound(c)
    x = _t(torch, a["x"])
    wt = _t(torch, a["weight"])
    if c.op == "batch_norm":
        b, rm, rv = _t(torch, a["bias"]), _t(torch, a["running_mean"]), _t(torch,
                                                                          a["running_var"])
        tr, mom, eps, relu = a["training"], a["momentum"], a["eps"], a["relu"]

        def fwd() -> Any:
            y = aten.native_batch_norm(x, wt, b, rm, rv, tr, mom, eps)[0]
            return torch.relu_(y) if relu else y
        return fwd, "native_batch_norm" + (" + relu" if relu else "")
    dy, mean, invstd = _t(torch, a["dy"]), _t(torch, a["mean"]), _t(torch, a["invstd"])
    relu_y = _t(torch, a["relu_y"])
    mask = [a["compute_dx"], a["compute_dw"], a["compute_dw"]]
    tr = a["training"]

    def bwd() -> Any:
        g_ = aten.threshold_backward(dy, relu_y, 0.0) if relu_y is not None else dy
        return aten.native_batch_norm_backward(g_, x, wt, None, None, mean, invstd, tr, 1e-5,
                                               mask)
    return bwd, "native_batch_norm_backward" + (" + threshold_backward" if relu_y is not None
                                                else "")


_ACT_FWD = {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh"}


def _activation(torch: Any, c: Any) -> Twin:
    aten = torch.ops.aten
    a = _bound(c)
    op = c.op
    if op in _ACT_FWD:
        x = _t(torch, a["x"])
        f = getattr(torch, _ACT_FWD[op])
        return (lambda: f(x)), f"torch.{_ACT_FWD[op]}"
    if op == "leaky_relu":
        x, s = _t(torch, a["x"]), a["negative_slope"]
        return (lambda: torch.nn.functional.leaky_relu(x, s)), "F.leaky_relu"
    if op == "gelu":
        x, ap = _t(torch, a["x"]), a["approximate"]
        return (lambda: torch.nn.functional.gelu(x, approximate=ap)), "F.gelu"
    if op == "silu":
        x = _t(torch, a["x"])
        return (lambda: torch.nn.functional.silu(x)), "F.silu"
    dy = _t(torch, a["dy"])
    if op == "relu_backward":
        y = _t(torch, a["y"])
        return (lambda: aten.threshold_backward(dy, y, 0.0)), "threshold_backward"
    if op in ("sigmoid_backward", "tanh_backward"):
        y, f = _t(torch, a["y"]), getattr(aten, op)
        return (lambda: f(dy, y)), op
    x = _t(torch, a["x"])
    if op == "leaky_relu_backward":
        s = a["negative_slope"]
        return (lambda: aten.leaky_relu_backward(dy, x, s, False)), op
    if op == "gelu_backward":
        ap = a["approximate"]
        return (lambda: aten.gelu_backward(dy, x, approximate=ap)), op
    if op == "silu_backward":
        return (lambda: aten.silu_backward(dy, x)), op
    return None, f"no twin for {op}"


def _pooling(torch: Any, c: Any) -> Twin:
    aten, F = torch.ops.aten, torch.nn.functional
    a = _bound(c)
    op = c.op
    if op == "global_avg_pool2d":
        x = _t(torch, a["x"])
        return (lambda: x.mean((2, 3))), "mean((2, 3))"
    if op == "global_avg_pool2d_backward":
        dy, shape = _t(torch, a["dy"]), a["x"].shape
        hw = float(shape[2] * shape[3])
        return (lambda: (dy / hw)[:, :, None, None].expand(shape)), "autograd's expand (a view)"
    if op in ("max_pool2d", "max_pool2d_backward"):
        k, s, p, d = pool_args(a["kernel_size"], a["stride"], a["padding"], a["dilation"])
        x, cm = _t(torch, a["x"]), a["ceil_mode"]
        if op == "max_pool2d":
            return (lambda: F.max_pool2d(x, k, s, p, d, cm, return_indices=True)), ""
        dy = _t(torch, a["dy"])
        _, idx = F.max_pool2d(x, k, s, p, d, cm, return_indices=True)
        return (lambda: aten.max_pool2d_with_indices_backward(
            dy, x, list(k), list(s), list(p), list(d), cm, idx)), ""
    if op == "global_max_pool2d":
        x = _t(torch, a["x"])
        return (lambda: x.flatten(2).max(2)), "flatten(2).max(2)"
    return None, f"no twin for {op}"


def _loss(torch: Any, c: Any) -> Twin:
    aten = torch.ops.aten
    a = _bound(c)
    x = _t(torch, a["logits"])
    y = torch.from_numpy(np.asarray(a["labels"]).astype(np.int64))
    one = torch.ones((), dtype=torch.float32)

    def ce() -> Any:
        ls = aten._log_softmax(x, 1, False)
        loss, tw = aten.nll_loss_forward(ls, y, None, 1, -100)
        g = aten.nll_loss_backward(one, ls, y, None, 1, -100, tw)
        return loss, aten._log_softmax_backward_data(g, ls, 1, torch.float32)
    return ce, "log_softmax + nll_loss, forward and backward"


def _layer_method(torch: Any, c: Any) -> Twin:
    cls, _, meth = c.op.partition(".")
    if cls == "Add" and meth == "forward":
        xs = [_t(torch, v) for v in c.args[0]] if isinstance(c.args[0], (list, tuple)) else []
        if xs:
            def add() -> Any:
                y = xs[0] + xs[1]
                for v in xs[2:]:
                    y += v
                return y
            return add, "torch.add"
    if cls == "Add" and meth == "backward":
        return (lambda: None), "nothing: autograd passes the gradient on"
    if cls in ("Flatten", "Reshape"):
        return (lambda: None), "nothing: a view"
    return None, f"no twin for {c.op}"


def twin(torch: Any, c: Any, kind: str) -> Twin:
    """``(fn, note)``: PyTorch's call for the row ``kind`` of the captured call ``c``
    (``fn`` None where there is none; the note says what it runs)."""
    try:
        if c.op.startswith("conv2d"):
            return _conv(torch, c, kind)
        if c.op.startswith("linear"):
            return _linear(torch, c, kind)
        if c.op.startswith("batch_norm"):
            return _batch_norm(torch, c)
        if "pool" in c.op:
            return _pooling(torch, c)
        if c.op == "cross_entropy":
            return _loss(torch, c)
        if "." in c.op:
            return _layer_method(torch, c)
        return _activation(torch, c)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        return None, f"no twin ({type(e).__name__}: {e})"


def optimizer_twin(torch: Any, calls: list[Any]) -> Twin:
    """``torch.optim.SGD`` / ``Adam`` with the captured updates' settings over tensors of the
    same shapes, gradients set; one ``step()`` per call."""
    a0 = _bound(calls[0])
    params = [torch.nn.Parameter(torch.from_numpy(np.array(c.args[0]))) for c in calls]
    for p, c in zip(params, calls, strict=True):
        p.grad = torch.from_numpy(np.array(c.args[1]).reshape(p.shape))
    if calls[0].op == "sgd_update":
        opt = torch.optim.SGD(params, lr=a0["lr"], momentum=a0["momentum"],
                              nesterov=a0["nesterov"], weight_decay=a0["weight_decay"])
        note = "optim.SGD.step"
    else:
        opt = torch.optim.Adam(params, lr=a0["lr"], betas=(a0["beta_1"], a0["beta_2"]),
                               eps=a0["epsilon"])
        note = "optim.Adam.step"
    opt.step()  # the state exists (momentum buffers): a steady step from now on
    return opt.step, note
