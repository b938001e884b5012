"""The GPU benchmark's timed callables: fastcnn's CUDA kernels, the CuPy reference and PyTorch's
CUDA path (cuDNN / cuBLAS), on the same device buffers.

The inputs of a case are drawn on the host (:func:`fastcnn.bench.impls.make_inputs`, the CPU
benchmark's) and uploaded once (:func:`upload`); every implementation reads those CuPy arrays
and allocates its outputs, as its API does:

* fastcnn: :mod:`fastcnn.ops` on CuPy arrays (``bwd_data``: the CUDA adapter
  ``fastcnn._cuda_ops``'s ``conv2d_backward`` with ``compute_dx=True, compute_dw=False,
  bias=False``), as on the CPU (:func:`fastcnn.bench.impls.api_fn`).
* cupy: :mod:`fastcnn.bench.cupy_ref` (``bwd_data``: its ``compute_dw=False``).
* torch: the CPU benchmark's PyTorch calls (:func:`fastcnn.bench.impls.torch_fn`) on tensors
  that wrap the CuPy arrays through DLPack (``torch.from_dlpack``: no copy).

:func:`clocks` gives each its CUDA-event clock: CuPy's current stream for fastcnn and the CuPy
reference, PyTorch's for PyTorch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .. import ops
from . import cupy_ref
from .cuda_timing import CupyEventClock, TorchEventClock
from .impls import api_fn, torch_fn
from .suites import Case
from .timing import Clock

__all__ = ["IMPLS", "build", "clocks", "upload"]

IMPLS: tuple[str, ...] = ("fastcnn", "cupy", "torch")

Fn = Callable[[], Any]


def upload(inputs: dict[str, np.ndarray], cp: Any) -> dict[str, Any]:
    """The host inputs of a case as CuPy arrays (copies on the current device)."""
    return {k: cp.asarray(v) for k, v in inputs.items()}


def _cupy(case: Case, a: dict[str, Any]) -> Fn | None:
    if case.layer.op == "conv2d" and case.pass_ == "bwd_data":
        d = case.layer.d
        dy, x, w, s, pad = a["dy"], a["x"], a["w"], d["stride"], d["pad"]
        return lambda: cupy_ref.conv2d_backward(dy, x, w, stride=s, padding=pad, bias=False,
                                                compute_dw=False)
    return api_fn(cupy_ref, case, a)


def build(impl: str, case: Case, inputs: dict[str, Any], torch: Any = None) -> Fn | None:
    """The zero-argument callable timing ``impl`` on ``case`` (``inputs``: CuPy arrays), or
    None when it has none (PyTorch not usable)."""
    if impl == "fastcnn":
        return api_fn(ops, case, inputs)
    if impl == "cupy":
        return _cupy(case, inputs)
    if impl == "torch":
        return None if torch is None else torch_fn(case, inputs, torch, torch.from_dlpack)
    raise ValueError(f"unknown GPU implementation {impl!r}")


def clocks(cp: Any, torch: Any = None) -> dict[str, Clock]:
    """Implementation -> its CUDA-event clock."""
    out: dict[str, Clock] = {"fastcnn": CupyEventClock(cp), "cupy": CupyEventClock(cp)}
    if torch is not None:
        out["torch"] = TorchEventClock(torch)
    return out
