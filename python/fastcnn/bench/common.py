"""What the CPU and the GPU benchmark share; :mod:`fastcnn.bench.cpu` and
:mod:`fastcnn.bench.cuda` both import it, and neither imports the other.

* Settings: :class:`Config` (``fastcnn bench``'s options one to one), :func:`default_threads`,
  :func:`quick_config` (``--quick``), :func:`selection` (the cases and training-step batches a
  config selects) and :func:`require_cuda`.
* PyTorch: :func:`import_torch` (the module and the note the results record, for a device).
* Machine facts: :func:`cpu_machine` and :func:`gpu_machine` (the document's ``machine``),
  :func:`gpu_info`, :func:`loadavg`.
* Peaks: :func:`probe_cpu` (per thread count: FMA GFLOP/s from the compiled module's probe,
  copy bandwidth, fastcnn's own SGEMM), :func:`probe_gpu` (copy bandwidth, cuBLAS SGEMM) and
  the theoretical FP32 rate of a GPU (:func:`theoretical_fp32_gflops`); :func:`best_probes`
  (the better of the start and end probes) and :func:`apply_peaks` (every row's ``% peak`` and
  ``% GEMM``).
* Rows: :func:`case_row` / :func:`train_row` (a row's identity), :func:`summary` (timings ->
  the row's JSON fields), :func:`checker` (results against fastcnn's), :func:`losses_agree`,
  :func:`skips`; :class:`Progress`, the progress lines on stderr.

CuPy and PyTorch are passed in as modules; only :func:`import_torch` imports PyTorch.
"""

from __future__ import annotations

import fnmatch
import math
import os
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np

from .. import _native, info, ops
from . import impls as _impls
from . import suites as _suites
from .cuda_timing import CupyEventClock
from .timing import ThreadControl, Timing, best_rate, max_rel_err

__all__ = [
    "CHECK_TOL",
    "FP32_LANES_PER_SM",
    "GEMM_SIZE",
    "Config",
    "Progress",
    "apply_peaks",
    "best_probes",
    "case_row",
    "checker",
    "cpu_machine",
    "default_threads",
    "gpu_info",
    "gpu_machine",
    "import_torch",
    "loadavg",
    "losses_agree",
    "probe_cpu",
    "probe_gpu",
    "quick_config",
    "require_cuda",
    "selection",
    "skips",
    "summary",
    "theoretical_fp32_gflops",
    "train_row",
]

CHECK_TOL = 1e-3  # max |a - b| / max |b| between implementations' results


# ----------------------------------------------------------------------------------------------
# settings
# ----------------------------------------------------------------------------------------------
@dataclass
class Config:
    """Everything a run depends on (``fastcnn bench`` options map one to one)."""

    suite: str = "seeds"
    quick: bool = False
    threads: list[int] = field(default_factory=lambda: default_threads())
    repeats: int = 15
    warmup: int = 2
    min_sample_s: float = 0.01
    numpy: bool = True
    numpy_cap_s: float = 1.0
    torch: bool = True
    cupy: bool = True
    train: bool = True
    fit: bool = True
    memory: bool = True
    fit_steps: int = 16
    filters: list[str] = field(default_factory=list)
    isa: str | None = None
    peak_gflops: float | None = None
    gap_s: float = 0.005
    wait_idle_s: float = 0.0
    device: str = "cpu"
    seed: int = 0
    name: str = ""


def default_threads() -> list[int]:
    """``[1, all]``: one thread and fastcnn's default count (the cores, or OMP_NUM_THREADS)."""
    n = max(1, _native.cpu.num_threads())
    return [1] if n == 1 else [1, n]


def quick_config(**overrides: Any) -> Config:
    """The ``--quick`` settings: seeds at batch 64, 3 repeats, short samples and fit epochs."""
    cfg = Config(quick=True, repeats=3, warmup=1, min_sample_s=0.002, numpy_cap_s=0.25,
                 fit_steps=4)
    for k, v in overrides.items():
        setattr(cfg, k, v)
    return cfg


def require_cuda() -> None:
    """Raise the ValueError of ``--device cuda`` on a machine where fastcnn can't use a GPU."""
    if not info()["cuda_available"]:
        raise ValueError("--device cuda: fastcnn was not built with CUDA or no CUDA device "
                         "is usable (fastcnn info shows cuda_built / cuda_available)")


def selection(cfg: Config) -> tuple[list[_suites.Case], list[int]]:
    """The cases and the training-step batch sizes ``cfg`` selects (suite, ``--quick``,
    ``--filter``); ValueError for bad repeats / warm-up or when nothing is left."""
    if cfg.repeats < 1 or cfg.warmup < 0:
        raise ValueError(f"--repeats must be >= 1 and --warmup >= 0, got {cfg.repeats}, "
                         f"{cfg.warmup}")
    case_list = _suites.cases(cfg.suite, quick=cfg.quick, filters=cfg.filters)
    train_batches = [b for s in _suites.suite_names(cfg.suite)
                     for b in _suites.TRAIN_BATCHES.get(s, ())]
    if cfg.quick:
        train_batches = [b for b in train_batches if b <= 64]
    if cfg.filters:  # the training step's ids are train.b<batch>
        train_batches = [b for b in train_batches
                         if any(fnmatch.fnmatchcase(f"train.b{b}", f) for f in cfg.filters)]
    if not case_list and not train_batches:
        raise ValueError(f"no benchmark case matches --suite {cfg.suite}"
                         + (" --quick" if cfg.quick else "")
                         + (f" --filter {' '.join(cfg.filters)}" if cfg.filters else ""))
    return case_list, train_batches


def import_torch(cfg: Config, device: str = "cpu") -> tuple[Any, str]:
    """PyTorch (None when ``--no-torch``, not importable or, for ``device="cuda"``, without a
    usable CUDA device) and the note the results record (its version, or why not)."""
    if not cfg.torch:
        return None, "--no-torch"
    try:
        import torch
    except ImportError as e:
        return None, f"torch not importable ({e})"
    if device == "cpu":
        return torch, f"torch {torch.__version__}"
    if not torch.cuda.is_available():
        return None, f"torch {torch.__version__} has no usable CUDA device"
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return torch, f"torch {torch.__version__} (CUDA {torch.version.cuda}, cuDNN {cudnn})"


# ----------------------------------------------------------------------------------------------
# machine facts
# ----------------------------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def loadavg() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the OS doesn't give them)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def _host() -> dict[str, Any]:
    return {"cpu": _cpu_model(), "logical_cpus": os.cpu_count(),
            "platform": platform.platform(), "python": sys.version.split()[0],
            "numpy": np.__version__, "fastcnn": info()}


def cpu_machine(torch: Any, tc: ThreadControl) -> dict[str, Any]:
    """The CPU document's ``machine``: the host, NumPy's BLAS threads, the load average and
    PyTorch's version and default thread count."""
    m = {**_host(), "numpy_blas_threads": tc.blas, "loadavg_start": loadavg()}
    if torch is not None:
        m["torch"] = torch.__version__
        m["torch_default_threads"] = torch.get_num_threads()
    return m


def gpu_machine(cp: Any, torch: Any, torch_note: str) -> dict[str, Any]:
    """The GPU document's ``machine``: :func:`gpu_info`, the host and PyTorch's status."""
    m = {"gpu": gpu_info(cp), **_host(), "torch_status": torch_note}
    if torch is not None:
        m["torch"] = torch.__version__
    return m


# FP32 multiply-add results per clock per SM, by compute capability (the CUDA C++ Programming
# Guide's arithmetic-instruction throughput table): 64 on GP100, Volta, Turing and GA100; 128 on
# the other Pascal chips, GA10x, Orin, Ada and Hopper. Other capabilities: unknown (no peak).
FP32_LANES_PER_SM: dict[tuple[int, int], int] = {
    (6, 0): 64, (6, 1): 128, (6, 2): 128, (7, 0): 64, (7, 2): 64, (7, 5): 64, (8, 0): 64,
    (8, 6): 128, (8, 7): 128, (8, 9): 128, (9, 0): 128,
}


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
    what this CuPy / driver doesn't report), and the theoretical FP32 peak."""
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


# ----------------------------------------------------------------------------------------------
# peaks
# ----------------------------------------------------------------------------------------------
GEMM_SIZE = 1024  # the CPU's SGEMM probe: (1024 x 1024) @ (1024 x 1024)^T, 2.1 GFLOP
_CPU_PEAKS = ("fma_gflops", "bandwidth_gbs", "gemm_gflops")
_GPU_PEAKS = ("bandwidth_gbs", "sgemm_gflops")


def _probe_seconds(cfg: Config) -> float:
    return 0.1 if cfg.quick or cfg.suite == "smoke" else 0.3


def _fma_peak(n: int, seconds: float) -> tuple[float | None, str]:
    """GFLOP/s of independent FMA chains of the active ISA on ``n`` threads, from the compiled
    module's probe (``probe_fma(seconds, threads)``), when it is built."""
    cpu = _native.cpu
    probe = getattr(cpu, "probe_fma", None)
    if probe is None:
        return None, "unknown: fastcnn._cpu.probe_fma is not built"
    try:
        gflops = float(probe(seconds=seconds, threads=n))
    except (TypeError, ValueError, RuntimeError) as e:
        return None, f"unknown: probe_fma failed ({e})"
    return gflops, f"fastcnn._cpu.probe_fma ({cpu.isa()}, {n} threads)"


def _bandwidth(n: int, seconds: float, nbytes: int, torch: Any) -> tuple[float, str]:
    """GB/s of a large copy (bytes read + written): the compiled module's probe
    (``probe_bandwidth(bytes, threads)``), else a PyTorch ``copy_`` on ``n`` threads, else a
    NumPy copy (one thread)."""
    probe = getattr(_native.cpu, "probe_bandwidth", None)
    if probe is not None:
        try:
            return (float(probe(bytes=nbytes, threads=n)),
                    f"fastcnn._cpu.probe_bandwidth ({nbytes >> 20} MiB copy, {n} threads)")
        except (TypeError, ValueError, RuntimeError):
            pass
    count = nbytes // 4
    src = np.ones(count, dtype=np.float32)
    dst = np.empty_like(src)
    if torch is not None:
        ts, td = torch.from_numpy(src), torch.from_numpy(dst)
        rate = best_rate(lambda: td.copy_(ts), 2 * nbytes, seconds)
        return rate / 1e9, f"torch copy_ of {nbytes >> 20} MiB ({n} threads)"
    rate = best_rate(lambda: np.copyto(dst, src), 2 * nbytes, seconds)
    return rate / 1e9, f"numpy copyto of {nbytes >> 20} MiB (1 thread)"


def probe_cpu(cfg: Config, tc: ThreadControl, torch: Any = None) -> dict[str, dict[str, Any]]:
    """The CPU's peaks per thread count of ``cfg``: FMA GFLOP/s (when fastcnn has the probe),
    copy bandwidth GB/s (128 MiB; smoke: 16 MiB) and fastcnn's own SGEMM on a ``GEMM_SIZE``^3
    problem (``linear``: 12 MB, L3-resident), the best a convolution can reach in practice.
    Each is the best rate over ~0.3 s of samples (quick and smoke runs: 0.1 s).

    Returns:
        ``{str(n): {"fma_gflops", "fma_source", "bandwidth_gbs", "bandwidth_source",
        "gemm_gflops", "gemm_source"}}``.
    """
    seconds = _probe_seconds(cfg)
    nbytes = (16 if cfg.suite == "smoke" else 128) << 20
    rng = np.random.default_rng(0)
    a = rng.standard_normal((GEMM_SIZE, GEMM_SIZE), dtype=np.float32)
    b = rng.standard_normal((GEMM_SIZE, GEMM_SIZE), dtype=np.float32)
    out: dict[str, dict[str, Any]] = {}
    for n in cfg.threads:
        tc.set(n)
        fma, fma_src = _fma_peak(n, seconds)
        bw, bw_src = _bandwidth(n, seconds, nbytes, torch)
        gemm = best_rate(lambda: ops.linear(a, b), 2 * GEMM_SIZE**3, seconds) / 1e9
        out[str(n)] = {"fma_gflops": fma, "fma_source": fma_src, "bandwidth_gbs": bw,
                       "bandwidth_source": bw_src, "gemm_gflops": gemm,
                       "gemm_source": f"fastcnn.ops.linear {GEMM_SIZE}^3"}
    return out


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


def probe_gpu(cp: Any, cfg: Config) -> dict[str, Any]:
    """The GPU's peaks: the device-to-device copy bandwidth (GB/s, bytes read + written) of
    ``cupy.copyto`` of 256 MiB and the rate of ``cupy.matmul`` of two 8192 x 8192 float32
    matrices (GFLOP/s; cuBLAS SGEMM, float32 unless ``CUPY_TF32=1``), each the best sample over
    about 0.3 s (CUDA events). Smoke runs: 16 MiB, 256 x 256, 0.1 s; quick runs: 0.1 s."""
    smoke = cfg.suite == "smoke"
    copy_bytes, gemm_n = (16 if smoke else 256) << 20, 256 if smoke else 8192
    bw = _copy_gbs(cp, copy_bytes, _probe_seconds(cfg))
    gemm = _sgemm_gflops(cp, gemm_n, _probe_seconds(cfg))
    tf32 = "TF32 ON: CUPY_TF32=1" if os.environ.get("CUPY_TF32") == "1" else "TF32 off"
    return {"bandwidth_gbs": bw,
            "bandwidth_source": f"cupy.copyto of {copy_bytes >> 20} MiB (read + written)",
            "sgemm_gflops": gemm,
            "sgemm_source": f"cupy.matmul {gemm_n}^3 float32 (cuBLAS SGEMM, {tf32})"}


def _best_of(a: dict[str, Any], b: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    out = dict(a)
    for key in keys:
        vals = [v for v in (a.get(key), b.get(key)) if v is not None]
        out[key] = max(vals) if vals else None
        out[key + "_runs"] = [a.get(key), b.get(key)]
    return out


def best_probes(first: dict[str, Any], second: dict[str, Any], *,
                gpu: bool = False) -> dict[str, Any]:
    """Per metric the better of two probe runs (noise only lowers a peak), with both runs
    (``<metric>_runs``): per thread count for :func:`probe_cpu`'s, as is for ``gpu``
    (:func:`probe_gpu`'s)."""
    if gpu:
        return _best_of(first, second, _GPU_PEAKS)
    return {n: _best_of(a, second.get(n, {}), _CPU_PEAKS) for n, a in first.items()}


def apply_peaks(doc: dict[str, Any], peak_gflops: float | None = None) -> None:
    """Fill ``peak``, ``pct_peak`` and ``pct_gemm`` of every row from the document's probes.

    CPU document: the peak at the row's thread count is the FMA peak (``peak_gflops`` x threads
    when given: ``--peak-gflops``) for FLOPs, the copy bandwidth for bytes; ``pct_gemm`` is of
    fastcnn's SGEMM. GPU document (``device`` ``"cuda"``): the theoretical FP32 rate (FLOPs;
    None when unknown) or the copy bandwidth (bytes); ``pct_gemm`` of the cuBLAS SGEMM probe.
    """
    gpu = doc.get("device") == "cuda"
    probes = doc.get("probes", {})
    fp32 = (doc.get("machine", {}).get("gpu") or {}).get("fp32_peak_gflops")
    for row in doc.get("cases", []) + doc.get("train", []):
        p = probes if gpu else probes.get(str(row["threads"]), {})
        if row["unit"] != "flop":
            peak, gemm = p.get("bandwidth_gbs"), None
        elif gpu:
            peak, gemm = fp32, p.get("sgemm_gflops")
        else:
            peak = peak_gflops * row["threads"] if peak_gflops else p.get("fma_gflops")
            gemm = p.get("gemm_gflops")
        rate = row.get("rate")
        row["peak"] = peak
        row["pct_peak"] = 100.0 * rate / peak if rate is not None and peak else None
        row["pct_gemm"] = 100.0 * rate / gemm if rate is not None and gemm else None


# ----------------------------------------------------------------------------------------------
# rows
# ----------------------------------------------------------------------------------------------
def case_row(case: _suites.Case) -> dict[str, Any]:
    """The identity fields of a case's row: id, suite, layer, label, op, pass and dims."""
    lay = case.layer
    return {"id": case.id, "suite": lay.suite, "layer": lay.name, "label": lay.label,
            "op": lay.op, "pass": case.pass_, "dims": lay.d}


def train_row(batch: int) -> dict[str, Any]:
    """The identity fields of a training-step row (id ``train.b<batch>``)."""
    return {"id": f"train.b{batch}", "label": f"seeds CNN train step N={batch}", "batch": batch}


def _rate(work: int, ms: float) -> float | None:
    return work / (ms * 1e-3) / 1e9 if ms and math.isfinite(ms) and ms > 0 else None


def summary(work: int, unit: str, timings: dict[str, Timing], skipped: dict[str, str],
            impls: tuple[str, ...], others: tuple[str, ...]) -> dict[str, Any]:
    """The JSON fields of one measured row: every implementation's timing (or why it was
    skipped) and rate, fastcnn's rate and the speed-ups ``t_other / t_fastcnn`` of ``others``.

    Args:
        work: FLOPs (``unit`` ``"flop"``) or bytes (``"byte"``) of one call.
        timings: implementation -> its timing; ``skipped``: implementation -> why not timed.
        impls: every implementation of the device, fastcnn first; ``others``: the rest.
    """
    impl_out: dict[str, Any] = {}
    for name in impls:
        if name in timings:
            d = timings[name].to_dict()
            d["rate"] = _rate(work, timings[name].median_ms)
            impl_out[name] = d
        else:
            impl_out[name] = {"skipped": skipped.get(name, "not run")}
    fc = timings.get("fastcnn")
    fc_ms = fc.median_ms if fc else math.nan
    rate = _rate(work, fc_ms)
    speedup = {other: (timings[other].median_ms / fc_ms if other in timings and fc_ms > 0
                       else None) for other in others}
    return {
        "unit": unit, "work": work, "rate_unit": "GFLOP/s" if unit == "flop" else "GB/s",
        "impls": impl_out, "rate": rate, "speedup": speedup,
    }


def checker(errs: dict[str, float]) -> Any:
    """An ``on_first`` callback comparing every implementation's first result with fastcnn's
    (``errs``: implementation -> max |a - b| / max |b|, filled in)."""
    base: dict[str, list[np.ndarray]] = {}

    def on_first(name: str, result: Any) -> None:
        arrays = _impls.outputs_as_arrays(result)
        if name == "fastcnn":  # a copy: the out= passes write every result into one buffer
            base["fastcnn"] = [np.array(a, copy=True) for a in arrays]
        elif "fastcnn" in base:
            errs[name] = max_rel_err(base["fastcnn"], arrays)

    return on_first


def losses_agree(losses: dict[str, float]) -> bool:
    """The first training-step losses agree with fastcnn's (within 1e-3, relative above 1)."""
    ref = losses.get("fastcnn")
    return ref is not None and all(abs(v - ref) <= 1e-3 * max(1.0, abs(ref))
                                   for v in losses.values())


def skips(reference: str, use_reference: bool, torch: Any, torch_note: str) -> dict[str, str]:
    """The implementations not run and why: the reference (``numpy`` / ``cupy``) when
    switched off, PyTorch when unavailable."""
    out = {}
    if not use_reference:
        out[reference] = f"--no-{reference}"
    if torch is None:
        out["torch"] = torch_note
    return out


class Progress:
    """The progress lines on ``stream`` (None: silent); :meth:`case` numbers the cases."""

    def __init__(self, stream: TextIO | None, total: int) -> None:
        self.stream, self.total, self.i = stream, total, 0

    def line(self, text: str) -> None:
        """Print one line (flushed)."""
        if self.stream is not None:
            print(text, file=self.stream, flush=True)

    @staticmethod
    def times(timings: dict[str, Timing]) -> str:
        """``name median ms`` per implementation (``*``: single-shot), ``|``-separated."""
        return " | ".join(f"{k} {t.median_ms:.3g} ms" + ("*" if t.single_shot else "")
                          for k, t in timings.items())

    def case(self, label: str, timings: dict[str, Timing], threads: int | None = None) -> None:
        """The numbered line of one measured case (``threads``: the CPU's count)."""
        self.i += 1
        where = f"t={threads}  " if threads is not None else ""
        self.line(f"[{self.i:>3}/{self.total}] {label:<34} {where}" + self.times(timings))
