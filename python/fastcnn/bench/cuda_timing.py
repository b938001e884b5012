"""GPU timing for the CUDA benchmark: CUDA-event clocks, the GPU's peaks, its description and the
TF32 switch.

Clocks (:class:`CupyEventClock`, :class:`TorchEventClock`) plug into
:func:`fastcnn.bench.timing.measure` (its ``clocks`` argument): a sample synchronises the whole
device (so no work of another implementation is still running), records a start event on the
library's current stream (CuPy's for fastcnn and the CuPy reference, PyTorch's for PyTorch),
makes ``number`` calls, records a stop event, waits for it and reads the time between the
two events. When the host launches work more slowly than the GPU runs it, the events measure
the host's pace: that is the time a user of the library sees.

Peaks (:func:`probe_gpu`): the device-to-device copy bandwidth of a large ``cupy.copyto``
(bytes read + written), the float32 rate of a large ``cupy.matmul`` (cuBLAS SGEMM; CuPy
computes float32 products in float32 unless ``CUPY_TF32=1``) and, where this module knows the
FP32 lanes per SM of the compute capability, the theoretical FP32 rate ``SMs x clock x lanes x
2`` (:func:`theoretical_fp32_gflops`).

CuPy and PyTorch are passed in as modules, never imported here.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from .timing import best_rate

__all__ = [
    "FP32_LANES_PER_SM",
    "CupyEventClock",
    "TorchEventClock",
    "gpu_info",
    "probe_gpu",
    "tf32_off",
    "theoretical_fp32_gflops",
]

# FP32 multiply-add results per clock per SM, by compute capability (the CUDA C++ Programming
# Guide's arithmetic-instruction throughput table): 64 on GP100, Volta, Turing and GA100; 128 on
# the other Pascal chips, GA10x, Orin, Ada and Hopper. Other capabilities: unknown (no peak).
FP32_LANES_PER_SM: dict[tuple[int, int], int] = {
    (6, 0): 64, (6, 1): 128, (6, 2): 128, (7, 0): 64, (7, 2): 64, (7, 5): 64, (8, 0): 64,
    (8, 6): 128, (8, 7): 128, (8, 9): 128, (9, 0): 128,
}


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


def theoretical_fp32_gflops(sms: int | None, clock_khz: int | None,
                            cc: tuple[int, int] | None) -> float | None:
    """``SMs x clock x FP32 lanes per SM x 2`` in GFLOP/s, or None when a factor is unknown."""
    lanes = FP32_LANES_PER_SM.get(cc) if cc is not None else None
    if not lanes or not sms or not clock_khz:
        return None
    return sms * clock_khz * 1e3 * lanes * 2 / 1e9


def _try(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception:  # a field this CuPy / driver doesn't report
        return None


def _compute_capability(cp: Any) -> tuple[int, int] | None:
    cc = _try(lambda: str(cp.cuda.Device().compute_capability))  # e.g. "90"
    if not cc or not cc.isdigit() or len(cc) < 2:
        return None
    return int(cc[:-1]), int(cc[-1])


def gpu_info(cp: Any) -> dict[str, Any]:
    """Name, compute capability, SMs, clock, memory, CUDA versions and CuPy's version (None for
    what this CuPy / driver doesn't report)."""
    dev = _try(lambda: int(cp.cuda.runtime.getDevice())) or 0
    props = _try(lambda: cp.cuda.runtime.getDeviceProperties(dev)) or {}
    attrs = _try(lambda: cp.cuda.Device(dev).attributes) or {}
    name = props.get("name")
    if isinstance(name, bytes):
        name = name.decode(errors="replace")
    cc = _compute_capability(cp)
    sms = attrs.get("MultiProcessorCount") or props.get("multiProcessorCount")
    clock_khz = attrs.get("ClockRate") or props.get("clockRate")
    mem = props.get("totalGlobalMem")
    return {
        "name": name, "device": dev, "compute_capability": list(cc) if cc else None,
        "sms": sms, "clock_mhz": clock_khz / 1e3 if clock_khz else None,
        "memory_gib": mem / 2**30 if mem else None,
        "l2_mib": (attrs["L2CacheSize"] / 2**20) if attrs.get("L2CacheSize") else None,
        "cuda_runtime": _try(lambda: int(cp.cuda.runtime.runtimeGetVersion())),
        "cuda_driver": _try(lambda: int(cp.cuda.runtime.driverGetVersion())),
        "cupy": getattr(cp, "__version__", "unknown"),
        "cupy_tf32_env": os.environ.get("CUPY_TF32"),
        "nvidia_tf32_override_env": os.environ.get("NVIDIA_TF32_OVERRIDE"),
        "fp32_peak_gflops": theoretical_fp32_gflops(sms, clock_khz, cc),
        "fp32_lanes_per_sm": FP32_LANES_PER_SM.get(cc) if cc else None,
    }


def _copy_gbs(cp: Any, nbytes: int, seconds: float) -> float:
    src = cp.ones(nbytes // 4, dtype=np.float32)
    dst = cp.empty_like(src)
    return best_rate(lambda: cp.copyto(dst, src), 2 * src.nbytes, seconds,
                     CupyEventClock(cp)) / 1e9


def _sgemm_gflops(cp: Any, n: int, seconds: float) -> float:
    rng = np.random.default_rng(0)
    a = cp.asarray(rng.random((n, n), dtype=np.float32) - np.float32(0.5))
    b = cp.asarray(rng.random((n, n), dtype=np.float32) - np.float32(0.5))
    c = cp.empty((n, n), dtype=np.float32)
    return best_rate(lambda: cp.matmul(a, b, out=c), 2 * n**3, seconds,
                     CupyEventClock(cp)) / 1e9


def probe_gpu(cp: Any, *, copy_bytes: int, gemm_n: int, seconds: float) -> dict[str, Any]:
    """The copy bandwidth (GB/s, bytes read + written) of ``cupy.copyto`` of ``copy_bytes``
    and the rate of ``cupy.matmul`` of two ``gemm_n`` x ``gemm_n`` float32 matrices (GFLOP/s),
    each the best sample over about ``seconds`` (CUDA events)."""
    bw = _copy_gbs(cp, copy_bytes, seconds)
    gemm = _sgemm_gflops(cp, gemm_n, seconds)
    tf32 = "TF32 ON: CUPY_TF32=1" if os.environ.get("CUPY_TF32") == "1" else "TF32 off"
    return {"bandwidth_gbs": bw,
            "bandwidth_source": f"cupy.copyto of {copy_bytes >> 20} MiB (read + written)",
            "sgemm_gflops": gemm,
            "sgemm_source": f"cupy.matmul {gemm_n}^3 float32 (cuBLAS SGEMM, {tf32})"}


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
