"""The timed callables: one per implementation (fastcnn, NumPy reference, PyTorch) and case.

Every implementation of a case works on the same input arrays (PyTorch's tensors share the
NumPy buffers through ``torch.from_numpy``) and allocates its outputs, as each library's API
does, except in the ``*_out`` passes (ReLU forward and backward, max pooling backward), where
all of them write into one preallocated ``out`` array (fastcnn: ``out=``; NumPy and CuPy:
``maximum`` / ``multiply`` with ``out=``, for pooling the reference's result copied in;
PyTorch: ``clamp_min(out=)`` / ``threshold_backward(grad_input=)`` /
``max_pool2d_with_indices_backward(grad_input=)``).
One function maps a case to its call (``_dispatch``), the same for every implementation; each
library's calls are a small class (``_ApiCalls`` for the APIs with fastcnn.ops's signatures,
``_TorchCalls``). A builder returns None where an implementation has no equivalent of the pass
(the NumPy reference has no dx-only convolution backward).

* fastcnn: :mod:`fastcnn.ops` (``bwd_weights``: ``conv2d_backward(..., compute_dx=False)``),
  except ``bwd_data``, which calls the compiled module's ``conv2d_backward`` directly, its flags
  ``compute_dx=True, compute_dw=False, bias=False`` passed positionally (the CPU module,
  ``fastcnn._native.cpu``, or for CuPy arrays the CUDA adapter ``fastcnn._cuda_ops``: same
  signature).
* NumPy: :mod:`fastcnn.reference` (no ``bwd_data``).
* PyTorch: ``torch.nn.functional`` forwards; backward passes through the ATen kernels autograd
  itself calls (``convolution_backward`` with an output mask, ``max_pool2d_with_indices_backward``,
  ``threshold_backward``, and two ``mm`` + a sum for the dense layer), fed the same ``dy``.
  The tensors wrap the inputs without a copy: ``torch.from_numpy`` here, ``torch.from_dlpack``
  for the GPU benchmark's CuPy arrays (:mod:`fastcnn.bench.cuda_impls`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import numpy as np

from .. import _native, ops, reference
from .._arrays import array_module, is_cupy, to_host
from .._device import cuda_module
from .suites import Case

__all__ = ["IMPLS", "api_fn", "build", "make_inputs", "outputs_as_arrays", "torch_fn"]

IMPLS: tuple[str, ...] = ("fastcnn", "numpy", "torch")

Fn = Callable[[], Any]


def make_inputs(case: Case, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random float32 inputs of a case (weights scaled by 1/sqrt(fan-in)); backward passes also
    get ``dy`` (and the forward output ``y`` / pooling ``idx`` they need)."""
    lay, p = case.layer, case.pass_
    d = lay.d
    bwd = p.startswith("bwd")

    def normal(*shape: int, scale: float = 1.0) -> np.ndarray:
        a = rng.standard_normal(shape, dtype=np.float32)
        if scale != 1.0:
            a *= np.float32(scale)
        return a

    inp: dict[str, np.ndarray] = {}
    if lay.op == "conv2d":
        P, Q = lay.out_hw()
        fan_in = d["C"] * d["R"] * d["S"]
        inp["x"] = normal(d["N"], d["C"], d["H"], d["W"])
        inp["w"] = normal(d["K"], d["C"], d["R"], d["S"], scale=fan_in ** -0.5)
        inp["b"] = normal(d["K"], scale=0.1)
        if bwd:
            inp["dy"] = normal(d["N"], d["K"], P, Q)
    elif lay.op == "linear":
        inp["x"] = normal(d["N"], d["fin"])
        inp["w"] = normal(d["fout"], d["fin"], scale=d["fin"] ** -0.5)
        inp["b"] = normal(d["fout"], scale=0.1)
        if bwd:
            inp["dy"] = normal(d["N"], d["fout"])
    elif lay.op == "relu":
        shape = ((d["N"], d["C"]) if d["H"] == 1 and d["W"] == 1
                 else (d["N"], d["C"], d["H"], d["W"]))
        inp["x"] = normal(*shape)
        if bwd:
            inp["y"] = ops.relu(inp["x"])
            inp["dy"] = normal(*shape)
        if case.pass_.endswith("_out"):
            inp["out"] = np.zeros(shape, np.float32)  # pages touched once, here
    elif lay.op == "max_pool2d":
        inp["x"] = normal(d["N"], d["C"], d["H"], d["W"])
        if bwd:
            y, idx = ops.max_pool2d(inp["x"], d["k"], stride=d["stride"], return_indices=True)
            inp["idx"] = idx
            inp["dy"] = normal(*y.shape)
            if case.pass_ == "bwd_out":
                inp["out"] = np.zeros(inp["x"].shape, np.float32)  # pages touched once, here
    elif lay.op == "avg_pool2d":
        inp["x"] = normal(d["N"], d["C"], d["H"], d["W"])
        if bwd:
            inp["dy"] = normal(d["N"], d["C"], *lay.out_hw())
            if case.pass_ == "bwd_out":
                inp["out"] = np.zeros(inp["x"].shape, np.float32)  # pages touched once, here
    elif lay.op in ("global_avg_pool2d", "global_max_pool2d"):
        inp["x"] = normal(d["N"], d["C"], d["H"], d["W"])
        if bwd:
            inp["dy"] = normal(d["N"], d["C"])
            if lay.op == "global_max_pool2d":
                inp["idx"] = ops.global_max_pool2d(inp["x"], return_indices=True)[1]
    else:
        raise ValueError(f"unknown op {lay.op!r}")
    return inp


def _dispatch(calls: Any, case: Case, a: dict[str, Any]) -> Fn | None:
    """The one map from a case to its call: ``calls`` (:class:`_ApiCalls` or
    :class:`_TorchCalls`) builds the zero-argument callable of the op and pass on ``a``."""
    lay, p = case.layer, case.pass_
    d = lay.d
    if lay.op == "conv2d":
        x, w, b, s, pad = a["x"], a["w"], a["b"], d["stride"], d["pad"]
        if p.startswith("fwd"):
            return calls.conv2d(x, w, b, s, pad, relu=p == "fwd_relu")
        # bwd: every gradient; bwd_data: dx only; bwd_weights: dw and db (a first layer's)
        return calls.conv2d_backward(a["dy"], x, w, s, pad, compute_dx=p != "bwd_weights",
                                     compute_dw=p != "bwd_data")
    if lay.op == "linear":
        if p == "fwd":
            return calls.linear(a["x"], a["w"], a["b"])
        return calls.linear_backward(a["dy"], a["x"], a["w"])
    if lay.op == "relu":  # out: the *_out passes' array, else None
        if p.startswith("fwd"):
            return calls.relu(a["x"], a.get("out"))
        return calls.relu_backward(a["dy"], a["y"], a.get("out"))
    if lay.op == "avg_pool2d":
        if p == "fwd":
            return calls.avg_pool2d(a["x"], d["k"], d["stride"], d["pad"])
        return calls.avg_pool2d_backward(a["dy"], a["x"], d["k"], d["stride"], d["pad"],
                                         a.get("out"))
    if lay.op == "global_avg_pool2d":
        if p == "fwd":
            return calls.global_avg_pool2d(a["x"])
        return calls.global_avg_pool2d_backward(a["dy"], a["x"])
    if lay.op == "global_max_pool2d":
        if p.startswith("fwd"):
            return calls.global_max_pool2d(a["x"], return_indices=p == "fwd_idx")
        return calls.global_max_pool2d_backward(a["dy"], a["x"], a["idx"])
    k, s = d["k"], d["stride"]
    if p.startswith("fwd"):
        return calls.max_pool2d(a["x"], k, s, return_indices=p == "fwd_idx")
    return calls.max_pool2d_backward(a["dy"], a["x"], k, s, a["idx"], a.get("out"))


class _ApiCalls:
    """The calls of an API with :mod:`fastcnn.ops`'s signatures (fastcnn.ops, fastcnn.reference,
    fastcnn.bench.cupy_ref). The references have no ``out=``: NumPy's / CuPy's ufuncs write the
    ``*_out`` passes' array (pooling: the reference's result copied in)."""

    def __init__(self, api: Any) -> None:
        self.api = api

    def conv2d(self, x: Any, w: Any, b: Any, s: int, pad: int, *, relu: bool) -> Fn:
        api = self.api
        if relu:
            return lambda: api.conv2d(x, w, b, stride=s, padding=pad, relu=True)
        return lambda: api.conv2d(x, w, b, stride=s, padding=pad)

    def conv2d_backward(self, dy: Any, x: Any, w: Any, s: int, pad: int, *, compute_dx: bool,
                        compute_dw: bool) -> Fn | None:
        api = self.api
        if compute_dx and compute_dw:
            return lambda: api.conv2d_backward(dy, x, w, stride=s, padding=pad, bias=True)
        if compute_dw:
            return lambda: api.conv2d_backward(dy, x, w, stride=s, padding=pad, bias=True,
                                               compute_dx=False)
        if api is not ops:  # dx only: only the compiled module can skip dw
            return None
        mod = cuda_module("conv2d_backward") if is_cupy(x) else _native.cpu
        # stride (h, w), pads (top, left, bottom, right), dilation (h, w), groups, compute_dx,
        # compute_dw, bias
        return lambda: mod.conv2d_backward(dy, x, w, s, s, pad, pad, pad, pad, 1, 1, 1, True,
                                           False, False)

    def linear(self, x: Any, w: Any, b: Any) -> Fn:
        api = self.api
        return lambda: api.linear(x, w, b)

    def linear_backward(self, dy: Any, x: Any, w: Any) -> Fn:
        api = self.api
        return lambda: api.linear_backward(dy, x, w, bias=True)

    def relu(self, x: Any, out: Any) -> Fn:
        api = self.api
        if out is None:
            return lambda: api.relu(x)
        if api is ops:
            return lambda: ops.relu(x, out=out)
        xp = array_module(x)
        return lambda: xp.maximum(x, np.float32(0), out=out)

    def relu_backward(self, dy: Any, y: Any, out: Any) -> Fn:
        api = self.api
        if out is None:
            return lambda: api.relu_backward(dy, y)
        if api is ops:
            return lambda: ops.relu_backward(dy, y, out=out)
        xp = array_module(dy)
        return lambda: xp.multiply(dy, y > 0, out=out)

    def max_pool2d(self, x: Any, k: int, s: int, *, return_indices: bool) -> Fn:
        api = self.api
        if return_indices:
            return lambda: api.max_pool2d(x, k, stride=s, return_indices=True)
        return lambda: api.max_pool2d(x, k, stride=s)

    def max_pool2d_backward(self, dy: Any, x: Any, k: int, s: int, idx: Any, out: Any) -> Fn:
        api = self.api
        if out is None:
            return lambda: api.max_pool2d_backward(dy, x, k, stride=s, indices=idx)
        if api is ops:
            return lambda: ops.max_pool2d_backward(dy, x, k, stride=s, indices=idx, out=out)
        xp = array_module(x)

        def ref_into_out() -> Any:  # the references allocate: their result copied into out
            xp.copyto(out, api.max_pool2d_backward(dy, x, k, stride=s, indices=idx))
            return out

        return ref_into_out

    # pooling family (issue 17); None where the API lacks the op (the CuPy reference)
    def avg_pool2d(self, x: Any, k: int, s: int, pad: int) -> Fn | None:
        f = getattr(self.api, "avg_pool2d", None)
        return None if f is None else (lambda: f(x, k, stride=s, padding=pad))

    def avg_pool2d_backward(self, dy: Any, x: Any, k: int, s: int, pad: int, out: Any
                            ) -> Fn | None:
        f = getattr(self.api, "avg_pool2d_backward", None)
        if f is None:
            return None
        if out is None:
            return lambda: f(dy, x, k, stride=s, padding=pad)
        if self.api is ops:
            return lambda: ops.avg_pool2d_backward(dy, x, k, stride=s, padding=pad, out=out)
        xp = array_module(x)

        def ref_into_out() -> Any:
            xp.copyto(out, f(dy, x, k, stride=s, padding=pad))
            return out

        return ref_into_out

    def global_avg_pool2d(self, x: Any) -> Fn | None:
        f = getattr(self.api, "global_avg_pool2d", None)
        return None if f is None else (lambda: f(x))

    def global_avg_pool2d_backward(self, dy: Any, x: Any) -> Fn | None:
        f = getattr(self.api, "global_avg_pool2d_backward", None)
        return None if f is None else (lambda: f(dy, x))

    def global_max_pool2d(self, x: Any, *, return_indices: bool) -> Fn | None:
        f = getattr(self.api, "global_max_pool2d", None)
        return None if f is None else (lambda: f(x, return_indices=return_indices))

    def global_max_pool2d_backward(self, dy: Any, x: Any, idx: Any) -> Fn | None:
        f = getattr(self.api, "global_max_pool2d_backward", None)
        return None if f is None else (lambda: f(dy, x, indices=idx))


class _TorchCalls(_ApiCalls):
    """PyTorch's calls: the forwards of ``torch.nn.functional`` (whose convolution, dense and
    pooling forwards take the arguments fastcnn.ops's take, as :class:`_ApiCalls` passes them)
    and the ATen backward kernels autograd calls (``out``: their ``out=`` / ``grad_input=``
    overloads)."""

    def __init__(self, torch: Any) -> None:
        super().__init__(torch.nn.functional)
        self.torch, self.aten = torch, torch.ops.aten

    def conv2d(self, x: Any, w: Any, b: Any, s: int, pad: int, *, relu: bool) -> Fn:
        if not relu:
            return super().conv2d(x, w, b, s, pad, relu=False)
        F = self.api
        return lambda: F.relu(F.conv2d(x, w, b, stride=s, padding=pad), inplace=True)

    def conv2d_backward(self, dy: Any, x: Any, w: Any, s: int, pad: int, *, compute_dx: bool,
                        compute_dw: bool) -> Fn:
        aten = self.aten
        mask = [compute_dx, compute_dw, compute_dw]  # dx, dw, db (the bias's goes with dw)
        bias_sizes = [int(w.shape[0])] if compute_dw else None
        return lambda: aten.convolution_backward(dy, x, w, bias_sizes, [s, s], [pad, pad],
                                                 [1, 1], False, [0, 0], 1, mask)

    def linear_backward(self, dy: Any, x: Any, w: Any) -> Fn:
        torch = self.torch
        return lambda: (torch.mm(dy, w), torch.mm(dy.t(), x), dy.sum(0))

    def relu(self, x: Any, out: Any) -> Fn:
        torch = self.torch
        if out is None:
            return lambda: torch.relu(x)
        return lambda: torch.clamp_min(x, 0.0, out=out)

    def relu_backward(self, dy: Any, y: Any, out: Any) -> Fn:
        aten = self.aten
        if out is None:
            return lambda: aten.threshold_backward(dy, y, 0)
        return lambda: aten.threshold_backward.grad_input(dy, y, 0, grad_input=out)

    def max_pool2d_backward(self, dy: Any, x: Any, k: int, s: int, idx: Any, out: Any) -> Fn:
        aten = self.aten
        if out is None:
            return lambda: aten.max_pool2d_with_indices_backward(
                dy, x, [k, k], [s, s], [0, 0], [1, 1], False, idx)
        return lambda: aten.max_pool2d_with_indices_backward.grad_input(
            dy, x, [k, k], [s, s], [0, 0], [1, 1], False, idx, grad_input=out)

    # pooling family (issue 17): the ATen kernels autograd calls; the global pools as
    # adaptive pools to 1x1 (dy and the indices viewed as (N, C, 1, 1), the outputs as (N, C))
    def avg_pool2d_backward(self, dy: Any, x: Any, k: int, s: int, pad: int, out: Any) -> Fn:
        aten = self.aten
        if out is None:
            return lambda: aten.avg_pool2d_backward(dy, x, [k, k], [s, s], [pad, pad], False,
                                                    True, None)
        return lambda: aten.avg_pool2d_backward.grad_input(
            dy, x, [k, k], [s, s], [pad, pad], False, True, None, grad_input=out)

    def global_avg_pool2d(self, x: Any) -> Fn:
        aten = self.aten
        return lambda: aten._adaptive_avg_pool2d(x, [1, 1]).flatten(1)

    def global_avg_pool2d_backward(self, dy: Any, x: Any) -> Fn:
        aten, g = self.aten, dy.view(*dy.shape, 1, 1)
        return lambda: aten._adaptive_avg_pool2d_backward(g, x)

    def global_max_pool2d(self, x: Any, *, return_indices: bool) -> Fn:
        aten = self.aten
        if return_indices:
            return lambda: tuple(t.flatten(1) for t in aten.adaptive_max_pool2d(x, [1, 1]))
        return lambda: aten.adaptive_max_pool2d(x, [1, 1])[0].flatten(1)

    def global_max_pool2d_backward(self, dy: Any, x: Any, idx: Any) -> Fn:
        aten = self.aten
        g, i = dy.view(*dy.shape, 1, 1), idx.view(*idx.shape, 1, 1)
        return lambda: aten.adaptive_max_pool2d_backward(g, x, i)


def api_fn(api: Any, case: Case, a: dict[str, Any]) -> Fn | None:
    """The call of ``api`` (fastcnn.ops, fastcnn.reference or fastcnn.bench.cupy_ref: same
    signatures) for one case; None for a pass the API has no call for (a dx-only convolution
    backward, except fastcnn.ops's)."""
    return _dispatch(_ApiCalls(api), case, a)


def torch_fn(case: Case, a: dict[str, Any], torch: Any,
             to_tensor: Callable[[Any], Any] | None = None) -> Fn:
    """PyTorch's call for one case on tensors wrapping ``a`` (``to_tensor``: default
    ``torch.from_numpy``; ``torch.from_dlpack`` for CuPy arrays). PyTorch has every pass."""
    to_tensor = to_tensor or torch.from_numpy
    return cast(Fn, _dispatch(_TorchCalls(torch), case, {k: to_tensor(v) for k, v in a.items()}))


def build(impl: str, case: Case, inputs: dict[str, np.ndarray], torch: Any = None) -> Fn | None:
    """The zero-argument callable timing ``impl`` on ``case``, or None when it has none."""
    if impl == "fastcnn":
        return api_fn(ops, case, inputs)
    if impl == "numpy":
        return api_fn(reference, case, inputs)
    if impl == "torch":
        return None if torch is None else torch_fn(case, inputs, torch)
    raise ValueError(f"unknown implementation {impl!r}")


def outputs_as_arrays(out: Any) -> list[np.ndarray]:
    """The arrays of a call's result, in order, on the host (None entries dropped; CuPy arrays
    and tensors -> NumPy; a float -> a 0-d array), for comparing implementations."""
    if out is None:
        return []
    if isinstance(out, tuple | list):
        return [a for o in out for a in outputs_as_arrays(o)]
    if is_cupy(out):
        return [to_host(out)]
    if isinstance(out, np.ndarray):
        return [out]
    if hasattr(out, "detach"):  # a torch tensor
        return [out.detach().cpu().numpy()]
    return [np.asarray(out)]
