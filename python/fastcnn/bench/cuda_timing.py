"""GPU timing for the CUDA benchmark: CUDA-event clocks and the TF32 switch.

Clocks (:class:`CupyEventClock`, :class:`TorchEventClock`) plug into
:func:`fastcnn.bench.timing.measure` (its ``clocks`` argument) and
:func:`fastcnn.bench.timing.best_rate` (the GPU's peaks, :func:`fastcnn.bench.common.probe_gpu`):
a sample synchronises the whole device (so no work of another implementation is still
running), records a start event on the library's current stream (CuPy's for fastcnn and the
CuPy reference, PyTorch's for PyTorch), makes ``number`` calls, records a stop event, waits for
it and reads the time between the two events. When the host launches work more slowly than the
GPU runs it, the events measure the host's pace: that is the time a user of the library sees.

:func:`tf32_off` makes PyTorch compute float32 matmuls and convolutions in float32 for a run.

CuPy and PyTorch are passed in as modules, never imported here.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["CupyEventClock", "TorchEventClock", "tf32_off"]


class CupyEventClock:
    """``clock(fn, number)``: seconds per call from CUDA events on CuPy's current stream."""

    def __init__(self, cupy: Any) -> None:
        self.cp = cupy
        self.start = cupy.cuda.Event()
        self.stop = cupy.cuda.Event()

    def __call__(self, fn: Callable[[], Any], number: int) -> float:
        cuda = self.cp.cuda
        cuda.Device().synchronize()
        stream = cuda.get_current_stream()
        self.start.record(stream)
        for _ in range(number):
            fn()
        self.stop.record(stream)
        self.stop.synchronize()
        return float(cuda.get_elapsed_time(self.start, self.stop)) * 1e-3 / number


class TorchEventClock:
    """``clock(fn, number)``: seconds per call from CUDA events on PyTorch's current stream."""

    def __init__(self, torch: Any) -> None:
        self.torch = torch
        self.start = torch.cuda.Event(enable_timing=True)
        self.stop = torch.cuda.Event(enable_timing=True)

    def __call__(self, fn: Callable[[], Any], number: int) -> float:
        self.torch.cuda.synchronize()
        self.start.record()
        for _ in range(number):
            fn()
        self.stop.record()
        self.stop.synchronize()
        return float(self.start.elapsed_time(self.stop)) * 1e-3 / number


@contextlib.contextmanager
def tf32_off(torch: Any) -> Iterator[dict[str, Any]]:
    """Within the block PyTorch computes float32 matmuls and convolutions in float32
    (``torch.backends.cuda.matmul.allow_tf32 = False``, ``torch.backends.cudnn.allow_tf32 =
    False``); the previous settings are restored on exit. Yields what was found and set (for
    the results). ``torch`` None: nothing to do."""
    state: dict[str, Any] = {}
    if torch is None:
        yield state
        return
    flags = ((torch.backends.cuda.matmul, "allow_tf32", "matmul_allow_tf32"),
             (torch.backends.cudnn, "allow_tf32", "cudnn_allow_tf32"))
    saved = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # newer PyTorch suggests its fp32_precision API
        for obj, attr, key in flags:
            try:
                old = getattr(obj, attr)
                setattr(obj, attr, False)
                saved.append((obj, attr, old))
                state[key] = {"was": bool(old), "now": bool(getattr(obj, attr))}
            except RuntimeError:  # PyTorch refuses allow_tf32 after its new API was used
                old = obj.fp32_precision
                obj.fp32_precision = "ieee"
                saved.append((obj, "fp32_precision", old))
                state[key] = {"fp32_precision_was": old, "now": obj.fp32_precision}
        state["cudnn_benchmark"] = bool(torch.backends.cudnn.benchmark)
    try:
        yield state
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for obj, attr, old in saved:
                setattr(obj, attr, old)
