"""The GPU benchmark behind ``fastcnn bench --device cuda``: the suites' cases and the seeds' CNN
training step, timed for fastcnn's CUDA kernels, the CuPy reference and PyTorch's CUDA path.

For every case the host inputs (the CPU benchmark's) are uploaded once and the three
implementations (:mod:`fastcnn.bench.cuda_impls`) run on those buffers: the first call of each
is checked against fastcnn's (max |a - b| / max |b| <= 1e-3, else flagged), then
:func:`fastcnn.bench.timing.measure` takes warm-up calls and interleaved rounds, timed with
CUDA events (:mod:`fastcnn.bench.cuda_timing`). PyTorch runs with TF32 off for matmuls and
cuDNN convolutions (restored afterwards), so every implementation computes in float32. The
GPU's peaks are probed at the start and at the end (the better of the two counts). An
implementation that raises is skipped for that case with the error recorded (``errors`` in the
document; ``fastcnn bench`` then exits with status 1), so one failure doesn't lose the run.
The settings, probes, peaks, machine facts and row fields it shares with the CPU benchmark
(:mod:`fastcnn.bench.cpu`) are in :mod:`fastcnn.bench.common`.
"""

from __future__ import annotations

import datetime as _dt
import functools
import sys
import time
from dataclasses import asdict
from typing import Any, TextIO

import numpy as np

from . import common, cupy_ref
from . import cuda_impls as _gpu
from . import training as _training
from .common import Config, Progress
from .cuda_timing import tf32_off
from .impls import make_inputs
from .suites import Case
from .timing import Timing, measure

__all__ = ["CPU_ONLY", "OTHERS", "SCHEMA", "run_cuda_benchmark"]

SCHEMA = "fastcnn.bench.cuda/1"
OTHERS: tuple[str, ...] = ("cupy", "torch")
# Config fields that mean nothing on the GPU (left out of the results' config)
CPU_ONLY = ("threads", "isa", "numpy", "numpy_cap_s", "fit", "fit_steps", "peak_gflops",
            "gap_s", "wait_idle_s")


class _Run(Progress):
    """State of one GPU run: settings, libraries, the document and the progress lines."""

    def __init__(self, cfg: Config, cp: Any, torch: Any, torch_note: str, doc: dict[str, Any],
                 progress: TextIO | None, total: int) -> None:
        super().__init__(progress, total)
        self.cfg, self.cp, self.torch, self.torch_note = cfg, cp, torch, torch_note
        self.doc = doc
        self.clocks = _gpu.clocks(cp, torch)

    def skips(self) -> dict[str, str]:
        return common.skips("cupy", self.cfg.cupy, self.torch, self.torch_note)

    def error(self, what: str, name: str, e: BaseException) -> str:
        msg = f"{type(e).__name__}: {e}"
        self.doc["errors"].append(f"{what}: {name}: {msg}")
        self.line(f"ERROR: {what}: {name} failed: {msg}")
        return f"failed: {msg}"

    def first_calls(self, what: str, fns: dict[str, Any], skipped: dict[str, str],
                    on_first: Any) -> None:
        """Call each implementation once and hand its result to ``on_first``; one that raises
        is dropped from ``fns`` (and fastcnn's failure drops them all)."""
        for name in list(fns):
            try:
                result = fns[name]()
                self.cp.cuda.Device().synchronize()  # an asynchronous failure shows here
                on_first(name, result)
                del result
            except Exception as e:  # reported in the results; the run goes on
                skipped[name] = self.error(what, name, e)
                del fns[name]
                if name == "fastcnn":
                    for other in list(fns):
                        skipped[other] = "not timed: fastcnn failed"
                        del fns[other]
                    return

    def measure(self, what: str, fns: dict[str, Any],
                skipped: dict[str, str]) -> dict[str, Timing]:
        cfg = self.cfg
        if not fns:
            return {}
        try:
            return measure(fns, repeats=cfg.repeats, warmup=cfg.warmup,
                           min_sample_s=cfg.min_sample_s, gap_s=0.0,
                           clocks={n: self.clocks[n] for n in fns})
        except Exception as e:  # e.g. out of memory: reported, the run goes on
            note = self.error(what, "timing", e)
            for name in fns:
                skipped[name] = note
            return {}


def _case_fns(run: _Run, case: Case, inputs: dict[str, Any],
              skipped: dict[str, str]) -> dict[str, Any]:
    fns: dict[str, Any] = {}
    for name in _gpu.IMPLS:
        if name in skipped:
            continue
        try:
            fn = _gpu.build(name, case, inputs, run.torch)
        except Exception as e:  # e.g. DLPack refused
            skipped[name] = run.error(case.id, name, e)
            continue
        if fn is None:
            skipped[name] = "no equivalent pass"
        else:
            fns[name] = fn
    return fns


def _run_cases(run: _Run, case_list: list[Case]) -> None:
    rng = np.random.default_rng(run.cfg.seed)
    for case in case_list:
        inputs = _gpu.upload(make_inputs(case, rng), run.cp)
        skipped = run.skips()
        fns = _case_fns(run, case, inputs, skipped)
        errs: dict[str, float] = {}
        run.first_calls(case.id, fns, skipped, common.checker(errs))
        timings = run.measure(case.id, fns, skipped)
        row = common.case_row(case)
        row.update(common.summary(case.work, case.unit, timings, skipped, _gpu.IMPLS, OTHERS))
        row["max_rel_err"] = dict(errs)
        agree = all(e <= common.CHECK_TOL for e in errs.values())
        row["check_ok"] = "fastcnn" in timings and agree
        if not agree:
            run.line(f"WARNING: {case.id}: results differ from fastcnn's: {errs}")
        run.doc["cases"].append(row)
        run.case(case.id, timings)
        del fns, inputs


def _train_fns(run: _Run, x: Any, y: Any, skipped: dict[str, str]) -> dict[str, Any]:
    """One training-step callable per implementation, each on its own copy of the weights."""
    cp = run.cp
    params = _training.init_params()

    def on_gpu() -> dict[str, Any]:
        return {k: cp.asarray(v) for k, v in params.items()}

    steps: dict[str, Any] = {"fastcnn": lambda: _training.fastcnn_step(on_gpu()),
                             "cupy": lambda: _training.api_step(cupy_ref, on_gpu()),
                             "torch": lambda: _training.torch_step(
                                 run.torch, params, device="cuda",
                                 to_tensor=run.torch.from_dlpack)}
    fns: dict[str, Any] = {}
    for name, make in steps.items():
        if name in skipped:
            continue
        try:
            fns[name] = functools.partial(make(), x, y)
        except Exception as e:
            skipped[name] = run.error(f"train.b{x.shape[0]}", name, e)
    return fns


def _run_train(run: _Run, batches: list[int]) -> None:
    for batch in batches:
        host_x, host_y = _training.data(batch)
        x, y = run.cp.asarray(host_x), run.cp.asarray(host_y)
        skipped = run.skips()
        fns = _train_fns(run, x, y, skipped)
        losses: dict[str, float] = {}

        def on_first(name: str, loss: Any, losses: dict[str, float] = losses) -> None:
            losses[name] = float(loss)

        row = common.train_row(batch)
        what = row["id"]
        run.first_calls(what, fns, skipped, on_first)
        timings = run.measure(what, fns, skipped)
        row.update(common.summary(_training.step_flops(batch), "flop", timings, skipped,
                                  _gpu.IMPLS, OTHERS))
        row["first_loss"] = losses
        row["check_ok"] = common.losses_agree(losses)
        if not row["check_ok"]:
            run.line(f"WARNING: train step N={batch}: first losses differ: {losses}")
        run.doc["train"].append(row)
        run.case(what, timings)


def run_cuda_benchmark(cfg: Config, *, progress: TextIO | None = sys.stderr) -> dict[str, Any]:
    """Run the GPU benchmark described by ``cfg`` (its CPU-only fields are ignored).

    Returns:
        The results document (``schema`` ``fastcnn.bench.cuda/1``, ``device`` ``"cuda"``):
        ``config``, ``machine`` (``gpu``: name, SMs, clock, theoretical FP32 peak, ...),
        ``tf32`` (PyTorch's settings found and set), ``probes`` (copy bandwidth, cuBLAS
        SGEMM), ``cases``, ``train``, ``errors``, ``interrupted``, ``elapsed_s``. Ctrl-C stops
        early and returns what was measured.

    Raises:
        ValueError: a bad setting, or no usable GPU.
    """
    common.require_cuda()
    case_list, train_batches = common.selection(cfg)
    if not cfg.train:
        train_batches = []
    import cupy as cp

    t_start = time.perf_counter()
    torch, torch_note = common.import_torch(cfg, "cuda")
    doc: dict[str, Any] = {
        "schema": SCHEMA, "device": "cuda", "name": cfg.name,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": {k: v for k, v in asdict(cfg).items() if k not in CPU_ONLY},
        "interrupted": False, "errors": [], "cases": [], "train": [],
    }
    with tf32_off(torch) as tf32:
        doc["tf32"] = tf32
        doc["machine"] = common.gpu_machine(cp, torch, torch_note)
        run = _Run(cfg, cp, torch, torch_note, doc, progress, len(case_list) + len(train_batches))
        gpu = doc["machine"]["gpu"]
        run.line(f"fastcnn bench --device cuda: {len(case_list)} cases on {gpu['name']}, "
                 f"{torch_note}; probing the GPU...")
        if gpu.get("cupy_tf32_env") == "1":
            run.line("WARNING: CUPY_TF32=1: CuPy's matmuls (the SGEMM probe, the CuPy "
                     "reference) use TF32, not float32")
        doc["probes"] = common.probe_gpu(cp, cfg)
        try:
            _run_cases(run, case_list)
            _run_train(run, train_batches)
            run.line("probing the GPU again (the better of two probes is the peak)...")
            doc["probes"] = common.best_probes(doc["probes"], common.probe_gpu(cp, cfg), gpu=True)
        except KeyboardInterrupt:
            doc["interrupted"] = True
            run.line("interrupted: reporting what was measured")
        common.apply_peaks(doc)
    doc["elapsed_s"] = time.perf_counter() - t_start
    return doc
