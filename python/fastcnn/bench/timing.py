"""Interleaved timing, thread control and the background load (the machine's peaks are probed
in :mod:`fastcnn.bench.common`, with :func:`best_rate` from here).

Method (:func:`measure`), for the implementations of one case:

1. Warm-up, one implementation after the other: the first call is timed on its own (its result
   is handed to a checker, then dropped); an implementation with a time cap whose first call
   took longer than the cap is measured **single-shot**: that one time is its only sample, and
   it sits out the rest. Then ``warmup - 1`` more calls; the fastest warm-up call sets
   ``number``, the calls per sample, so that a sample lasts at least ``min_sample_s`` (timer
   resolution and call overhead of microsecond kernels average out).
2. ``repeats`` rounds; each round takes one sample of every implementation, in an order rotated
   by one every round (round-robin), so a slow phase of a noisy machine hits all of them alike
   and none always runs right after another. ``gap_s`` of sleep after each sample lets spinning
   OpenMP workers (libgomp spins a few ms after a parallel region) park before the next
   implementation starts. Keep it short: on a VM an idle vCPU is halted after a while (tens of
   ms), and waking it costs the next multi-threaded call milliseconds. The garbage collector is
   off during the rounds.
3. Statistics per implementation: median (the reported time), min, quartiles and IQR over the
   samples (each sample is the mean of its ``number`` calls).

Threads: :class:`ThreadControl` sets fastcnn's and PyTorch's thread counts together, and keeps
NumPy's BLAS on one thread (through threadpoolctl): a multi-threaded OpenBLAS keeps its workers
spinning ~100 ms after every call, stealing a core from whatever runs next in the interleaved
rounds (and sleeping that out lets the VM halt the vCPU, which costs as much). The NumPy
reference's own code (im2col copies, elementwise ops) is single-threaded anyway.
"""

from __future__ import annotations

import gc
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import _native
from .. import set_num_threads as _fc_set_num_threads

__all__ = [
    "BackgroundLoad",
    "Clock",
    "ThreadControl",
    "Timing",
    "best_rate",
    "max_rel_err",
    "measure",
    "wait_idle",
]


@dataclass
class Timing:
    """Samples of one implementation on one case, in milliseconds per call."""

    samples_ms: list[float] = field(default_factory=list)
    number: int = 1
    single_shot: bool = False
    first_ms: float = math.nan

    def _pct(self, q: float) -> float:
        return float(np.percentile(self.samples_ms, q)) if self.samples_ms else math.nan

    @property
    def median_ms(self) -> float:
        return self._pct(50)

    @property
    def min_ms(self) -> float:
        return min(self.samples_ms) if self.samples_ms else math.nan

    @property
    def q1_ms(self) -> float:
        return self._pct(25)

    @property
    def q3_ms(self) -> float:
        return self._pct(75)

    @property
    def iqr_ms(self) -> float:
        return self.q3_ms - self.q1_ms

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (samples included)."""
        return {
            "median_ms": self.median_ms, "min_ms": self.min_ms, "q1_ms": self.q1_ms,
            "q3_ms": self.q3_ms, "iqr_ms": self.iqr_ms, "first_ms": self.first_ms,
            "samples": len(self.samples_ms), "number": self.number,
            "single_shot": self.single_shot, "samples_ms": list(self.samples_ms),
        }


Clock = Callable[[Callable[[], Any], int], float]
"""``clock(fn, number)``: seconds per call of ``fn`` over ``number`` back-to-back calls."""


def _time_call(fn: Callable[[], Any], number: int) -> float:
    """Seconds per call, over ``number`` back-to-back calls (results dropped at once)."""
    t0 = time.perf_counter_ns()
    for _ in range(number):
        fn()
    return (time.perf_counter_ns() - t0) * 1e-9 / number


def measure(
    fns: dict[str, Callable[[], Any]],
    *,
    repeats: int,
    warmup: int,
    min_sample_s: float,
    caps: dict[str, float | None] | None = None,
    gap_s: float = 0.0,
    on_first: Callable[[str, Any], None] | None = None,
    clocks: dict[str, Clock] | None = None,
) -> dict[str, Timing]:
    """Time several implementations of one case, interleaved (see the module docstring).

    Args:
        fns: implementation name -> zero-argument callable.
        repeats: samples per implementation (rounds).
        warmup: calls before the rounds (at least one is always made: it is checked and
            calibrates ``number``).
        min_sample_s: the shortest sample; ``number`` calls are made per sample to reach it.
        caps: implementation -> seconds; a first call slower than this makes that
            implementation single-shot. None = no cap.
        gap_s: sleep after each sample and warm-up call.
        on_first: called with (name, result of the first call).
        clocks: implementation -> ``clock(fn, number)``, seconds per call over ``number``
            back-to-back calls, replacing the host timer for that implementation (the GPU
            benchmark times with CUDA events: :mod:`fastcnn.bench.cuda_timing`).

    Returns:
        name -> :class:`Timing`.
    """
    caps = caps or {}
    clocks = clocks or {}

    def pause() -> None:
        if gap_s > 0:
            time.sleep(gap_s)

    out: dict[str, Timing] = {}
    for name, fn in fns.items():
        clock = clocks.get(name, _time_call)
        if name in clocks:
            box: list[Any] = []
            first = clock(lambda fn=fn, box=box: box.append(fn()), 1)
            result = box.pop()
        else:
            t0 = time.perf_counter_ns()
            result = fn()
            first = (time.perf_counter_ns() - t0) * 1e-9
        if on_first is not None:
            on_first(name, result)
        del result
        tim = Timing(first_ms=first * 1e3)
        out[name] = tim
        pause()
        cap = caps.get(name)
        if cap is not None and first > cap:
            tim.single_shot = True
            tim.samples_ms.append(first * 1e3)
            continue
        best = first
        for _ in range(max(warmup, 1) - 1):
            best = min(best, clock(fn, 1))
            pause()
        tim.number = max(1, min(100_000, math.ceil(min_sample_s / max(best, 1e-9))))

    active = [n for n in fns if not out[n].single_shot]
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(repeats):
            k = r % len(active) if active else 0
            for name in active[k:] + active[:k]:
                tim = out[name]
                clock = clocks.get(name, _time_call)
                tim.samples_ms.append(clock(fns[name], tim.number) * 1e3)
                pause()
    finally:
        if was_enabled:
            gc.enable()
    return out


def max_rel_err(got: list[np.ndarray], ref: list[np.ndarray]) -> float:
    """The largest ``max|got - ref| / max|ref|`` over matching arrays (inf on a shape
    mismatch or a different number of arrays; NaN in the same places counts as equal)."""
    if len(got) != len(ref):
        return math.inf
    worst = 0.0
    for g, r in zip(got, ref, strict=True):
        if g.shape != r.shape:
            return math.inf
        if g.size == 0:
            continue
        g64, r64 = g.astype(np.float64), r.astype(np.float64)
        both_nan = np.isnan(g64) & np.isnan(r64)
        diff = np.where(both_nan, 0.0, np.abs(g64 - r64))
        scale = float(np.nanmax(np.abs(r64))) if not np.isnan(r64).all() else 1.0
        err = float(np.max(diff)) / max(scale, 1e-30)
        worst = max(worst, err if not math.isnan(err) else math.inf)
    return worst


class ThreadControl:
    """Sets the thread count of fastcnn and PyTorch together and holds NumPy's BLAS at one thread
    (through threadpoolctl, when installed; see the module docstring); :meth:`restore` puts the
    previous settings back."""

    def __init__(self, torch: Any = None) -> None:
        self.torch = torch
        self._fc0 = _native.cpu.num_threads()
        self._torch0 = torch.get_num_threads() if torch is not None else None
        self._limiter: Any = None
        self.blas = ("uncontrolled: threadpoolctl is not installed, so OpenBLAS/MKL use every "
                     "core and their spinning workers disturb multi-thread timings")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import threadpoolctl

                self._tpc: Any = threadpoolctl
                libs = [m.get("internal_api", "?") for m in threadpoolctl.threadpool_info()
                        if m.get("user_api") == "blas"]
            self.blas = ("1 thread (threadpoolctl: " + (", ".join(sorted(set(libs)))
                                                         or "no BLAS found") + ")")
        except Exception:  # any failure just leaves BLAS threads alone
            self._tpc = None

    def set(self, n: int) -> None:
        """Use ``n`` threads in fastcnn and PyTorch (NumPy's BLAS: one)."""
        _fc_set_num_threads(n)
        if self.torch is not None:
            self.torch.set_num_threads(n)
        if self._tpc is not None and self._limiter is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._limiter = self._tpc.threadpool_limits(limits=1, user_api="blas")

    def restore(self) -> None:
        """Put back the thread counts found at construction."""
        _fc_set_num_threads(self._fc0)
        if self.torch is not None and self._torch0 is not None:
            self.torch.set_num_threads(self._torch0)
        if self._limiter is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._limiter.restore_original_limits()
            self._limiter = None


class BackgroundLoad:
    """CPU time the rest of the machine used while we measured, in cores (Linux ``/proc/stat``
    busy + steal time, minus this process's user + system time, per wall-clock second).

    Noise indicator: on a 2-core machine a background load near 1 means another process held a
    core, and a 2-thread run was time-sliced. None where ``/proc/stat`` is unreadable.
    """

    def __init__(self) -> None:
        self._t0 = self._snapshot()

    @staticmethod
    def _snapshot() -> tuple[float, float, float] | None:
        try:
            with open("/proc/stat", encoding="ascii") as f:
                vals = [int(v) for v in f.readline().split()[1:9]]
            hz = os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, AttributeError):
            return None
        user, nice, system, _idle, _iowait, irq, softirq, steal = (vals + [0] * 8)[:8]
        t = os.times()
        busy = (user + nice + system + irq + softirq + steal) / hz
        return time.perf_counter(), busy, t.user + t.system

    def cores(self) -> float | None:
        """Background cores since construction (or the previous call), >= 0."""
        t1 = self._snapshot()
        t0, self._t0 = self._t0, t1
        if t0 is None or t1 is None or t1[0] - t0[0] <= 0:
            return None
        return max(0.0, ((t1[1] - t0[1]) - (t1[2] - t0[2])) / (t1[0] - t0[0]))


def wait_idle(timeout_s: float, *, threshold: float = 0.25, window_s: float = 0.25) -> float:
    """Wait until other processes use less than ``threshold`` cores over a ``window_s`` window,
    at most ``timeout_s``; returns the seconds waited (0 when the machine was already idle or
    the load can't be read)."""
    t0 = time.perf_counter()
    while True:
        load = BackgroundLoad()
        time.sleep(window_s)
        cores = load.cores()
        if cores is None or cores < threshold or time.perf_counter() - t0 >= timeout_s:
            return time.perf_counter() - t0 if cores is not None else 0.0


# ----------------------------------------------------------------------------------------------
# peaks
# ----------------------------------------------------------------------------------------------
def best_rate(fn: Callable[[], Any], work: float, seconds: float,
              clock: Clock = _time_call) -> float:
    """``work / fastest sample`` of repeated calls of ``fn`` for about ``seconds``: a peak is
    what the machine can do, and noise only ever lowers it. ``clock``: the host timer, or a
    CUDA-event clock for GPU work."""
    fn()
    once = max(clock(fn, 1), 1e-9)
    number = max(1, math.ceil(0.005 / once))
    reps = max(5, min(200, int(seconds / (once * number)) + 1))
    return work / min(clock(fn, number) for _ in range(reps))
