"""The benchmark run: suites x thread counts x implementations, then the training step and the
layer API overhead; returns one JSON-ready document (see :func:`run_benchmark`). ``--device
cuda`` runs the GPU benchmark instead (:mod:`fastcnn.bench.cuda_harness`)."""

from __future__ import annotations

import datetime as _dt
import fnmatch
import functools
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

import numpy as np

from .. import _cpu, info
from . import impls as _impls
from . import memory as _memory
from . import suites as _suites
from . import training as _training
from .timing import (
    BackgroundLoad,
    ThreadControl,
    Timing,
    max_rel_err,
    measure,
    probe_machine,
    wait_idle,
)

__all__ = ["SCHEMA", "Config", "require_cuda", "run_benchmark", "selection"]

SCHEMA = "fastcnn.bench/1"
CHECK_TOL = 1e-3  # max |a - b| / max |b| between implementations' results


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
    n = max(1, _cpu.num_threads())
    return [1] if n == 1 else [1, n]


def quick_config(**overrides: Any) -> Config:
    """The ``--quick`` settings: seeds at batch 64, 3 repeats, short samples and fit epochs."""
    cfg = Config(quick=True, repeats=3, warmup=1, min_sample_s=0.002, numpy_cap_s=0.25,
                 fit_steps=4)
    for k, v in overrides.items():
        setattr(cfg, k, v)
    return cfg


def _import_torch(cfg: Config) -> tuple[Any, str]:
    if not cfg.torch:
        return None, "--no-torch"
    try:
        import torch
    except ImportError as e:
        return None, f"torch not importable ({e})"
    return torch, f"torch {torch.__version__}"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def _machine(torch: Any, tc: ThreadControl) -> dict[str, Any]:
    m: dict[str, Any] = {
        "cpu": _cpu_model(), "logical_cpus": os.cpu_count(), "platform": platform.platform(),
        "python": sys.version.split()[0], "numpy": np.__version__, "fastcnn": info(),
        "numpy_blas_threads": tc.blas, "loadavg_start": _loadavg(),
    }
    if torch is not None:
        m["torch"] = torch.__version__
        m["torch_default_threads"] = torch.get_num_threads()
    return m


def _rate(work: int, ms: float) -> float | None:
    return work / (ms * 1e-3) / 1e9 if ms and math.isfinite(ms) and ms > 0 else None


def _apply_peaks(cfg: Config, doc: dict[str, Any]) -> None:
    """Fill ``peak``, ``pct_peak`` and ``pct_gemm`` of every row from the final probes."""
    probes = doc.get("probes", {})
    for row in doc.get("cases", []) + doc.get("train", []):
        p = probes.get(str(row["threads"]), {})
        if row["unit"] == "flop":
            peak = cfg.peak_gflops * row["threads"] if cfg.peak_gflops else p.get("fma_gflops")
            gemm = p.get("gemm_gflops")
        else:
            peak, gemm = p.get("bandwidth_gbs"), None
        rate = row.get("rate")
        row["peak"] = peak
        row["pct_peak"] = 100.0 * rate / peak if rate is not None and peak else None
        row["pct_gemm"] = 100.0 * rate / gemm if rate is not None and gemm else None


def _best_probes(first: dict[str, dict[str, Any]],
                 second: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per thread count and metric, the better of two probe runs (noise only lowers a peak)."""
    out: dict[str, dict[str, Any]] = {}
    for n, a in first.items():
        b = second.get(n, {})
        merged = dict(a)
        for key in ("fma_gflops", "bandwidth_gbs", "gemm_gflops"):
            vals = [v for v in (a.get(key), b.get(key)) if v is not None]
            merged[key] = max(vals) if vals else None
            merged[key + "_runs"] = [a.get(key), b.get(key)]
        out[n] = merged
    return out


class _Progress:
    def __init__(self, stream: TextIO | None, total: int) -> None:
        self.stream, self.total, self.i = stream, total, 0

    def line(self, text: str) -> None:
        if self.stream is not None:
            print(text, file=self.stream, flush=True)

    def case(self, label: str, threads: int, timings: dict[str, Timing]) -> None:
        self.i += 1
        parts = [f"{k} {t.median_ms:.3g} ms" + ("*" if t.single_shot else "")
                 for k, t in timings.items()]
        self.line(f"[{self.i:>3}/{self.total}] {label:<34} t={threads}  " + " | ".join(parts))


def summary(work: int, unit: str, timings: dict[str, Timing], skipped: dict[str, str],
            impls: tuple[str, ...] = _impls.IMPLS,
            others: tuple[str, ...] = ("numpy", "torch")) -> dict[str, Any]:
    """The JSON fields of one measured row: every implementation's timing (or why it was
    skipped) and rate, fastcnn's rate and the speed-ups ``t_other / t_fastcnn``."""
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
    """An ``on_first`` callback comparing every implementation's first result with fastcnn's."""
    base: dict[str, list[np.ndarray]] = {}

    def on_first(name: str, result: Any) -> None:
        arrays = _impls.outputs_as_arrays(result)
        if name == "fastcnn":  # a copy: the out= passes write every result into one buffer
            base["fastcnn"] = [np.array(a, copy=True) for a in arrays]
        elif "fastcnn" in base:
            errs[name] = max_rel_err(base["fastcnn"], arrays)

    return on_first


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


def run_benchmark(cfg: Config, *, progress: TextIO | None = sys.stderr) -> dict[str, Any]:
    """Run the benchmark described by ``cfg``.

    Args:
        cfg: the settings.
        progress: where to print one line per measured case (None: silent).

    Returns:
        The results document (``schema`` ``fastcnn.bench/1``): ``config``, ``machine``,
        ``probes`` (peaks per thread count), ``cases`` (one row per case and thread count),
        ``train`` (whole training steps), ``fit`` (layer API overhead), ``interrupted``,
        ``elapsed_s``. Ctrl-C stops early and returns what was measured.

    Raises:
        ValueError: a bad setting (unknown suite, no case left, CUDA unavailable, ...).
    """
    if cfg.device == "cuda":
        require_cuda()
        from .cuda_harness import run_cuda_benchmark

        return run_cuda_benchmark(cfg, progress=progress)
    if cfg.device != "cpu":
        raise ValueError(f"--device must be cpu or cuda, got {cfg.device!r}")
    if not cfg.threads or any(n < 1 for n in cfg.threads):
        raise ValueError(f"--threads must be positive ints, got {cfg.threads}")
    case_list, train_batches = selection(cfg)

    t_start = time.perf_counter()
    torch, torch_note = _import_torch(cfg)
    tc = ThreadControl(torch)
    isa0 = _cpu.isa()
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "name": cfg.name,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": asdict(cfg),
        "interrupted": False,
    }
    try:
        if cfg.isa:
            active = _cpu.set_isa(cfg.isa)
            if active != cfg.isa:
                raise ValueError(f"--isa {cfg.isa}: this CPU/build gives {active!r} "
                                 f"(best: {_cpu.best_isa()!r})")
        doc["machine"] = _machine(torch, tc)
        doc["machine"]["torch_status"] = torch_note
        prog = _Progress(progress, len(case_list) * len(cfg.threads))
        prog.line(f"fastcnn bench: {len(case_list)} cases x threads {cfg.threads}, "
                  f"isa {_cpu.isa()}, {torch_note}; probing the machine...")
        small = cfg.quick or cfg.suite == "smoke"
        probe_args: dict[str, Any] = {"torch": torch, "seconds": 0.1 if small else 0.3,
                                      "nbytes": (16 if cfg.suite == "smoke" else 128) << 20}
        doc["probes"] = probe_machine(cfg.threads, tc, **probe_args)
        doc["cases"] = []
        doc["train"] = []
        doc["fit"] = {"skipped": "--no-train" if not cfg.train else "--no-fit" if not cfg.fit
                      else "no training step in the selected suite / filters"}
        doc["memory"] = {"skipped": "--no-train" if not cfg.train else "--no-memory"
                         if not cfg.memory else "no training step in the selected suite / "
                         "filters"}
        try:
            _run_cases(cfg, case_list, torch, tc, doc, prog)
            if cfg.train and train_batches:
                _run_train(cfg, train_batches, torch, tc, doc, prog)
            if cfg.fit and cfg.train and train_batches:
                doc["fit"] = _run_fit(cfg, min(train_batches), tc, prog)
            if cfg.memory and cfg.train and train_batches:
                doc["memory"] = _run_memory(cfg, train_batches, torch, prog)
            prog.line("probing the machine again (the better of two probes is the peak)...")
            doc["probes"] = _best_probes(doc["probes"],
                                         probe_machine(cfg.threads, tc, **probe_args))
        except KeyboardInterrupt:
            doc["interrupted"] = True
            prog.line("interrupted: reporting what was measured")
        _apply_peaks(cfg, doc)
    finally:
        tc.restore()
        _cpu.set_isa(isa0)
    doc["machine"]["loadavg_end"] = _loadavg()
    doc["elapsed_s"] = time.perf_counter() - t_start
    return doc


def _skips(cfg: Config, torch: Any, torch_note: str) -> dict[str, str]:
    out = {}
    if not cfg.numpy:
        out["numpy"] = "--no-numpy"
    if torch is None:
        out["torch"] = torch_note
    return out


def _run_cases(cfg: Config, case_list: list[_suites.Case], torch: Any, tc: ThreadControl,
               doc: dict[str, Any], prog: _Progress) -> None:
    rng = np.random.default_rng(cfg.seed)
    torch_note = doc["machine"]["torch_status"]
    for case in case_list:
        inputs = _impls.make_inputs(case, rng)
        fns: dict[str, Any] = {}
        skipped = _skips(cfg, torch, torch_note)
        for name in _impls.IMPLS:
            if name in skipped:
                continue
            fn = _impls.build(name, case, inputs, torch)
            if fn is None:
                skipped[name] = "no equivalent pass"
            else:
                fns[name] = fn
        errs: dict[str, float] = {}
        for i, n in enumerate(cfg.threads):
            tc.set(n)
            waited = wait_idle(cfg.wait_idle_s) if cfg.wait_idle_s > 0 else 0.0
            load = BackgroundLoad()
            timings = measure(
                fns, repeats=cfg.repeats, warmup=cfg.warmup, min_sample_s=cfg.min_sample_s,
                caps={"numpy": cfg.numpy_cap_s}, gap_s=cfg.gap_s,
                on_first=checker(errs) if i == 0 else None)
            row = {"id": case.id, "suite": case.layer.suite, "layer": case.layer.name,
                   "label": case.layer.label, "op": case.layer.op, "pass": case.pass_,
                   "dims": case.layer.d, "threads": n}
            row.update(summary(case.work, case.unit, timings, skipped))
            row["background_load"] = load.cores()
            row["waited_idle_s"] = waited
            row["max_rel_err"] = dict(errs)
            row["check_ok"] = all(e <= CHECK_TOL for e in errs.values())
            if i == 0 and not row["check_ok"]:
                prog.line(f"WARNING: {case.id}: results differ from fastcnn's: {errs}")
            doc["cases"].append(row)
            prog.case(case.id, n, timings)
        del fns, inputs


def _train_fns(batch: int, x: np.ndarray, y: np.ndarray, torch: Any,
               skipped: dict[str, str]) -> dict[str, Any]:
    """One training-step callable per implementation, each on its own copy of the weights."""
    params = _training.init_params()
    steps: dict[str, _training.StepFn] = {}
    if "fastcnn" not in skipped:
        steps["fastcnn"] = _training.fastcnn_step({k: v.copy() for k, v in params.items()})
    if "numpy" not in skipped:
        steps["numpy"] = _training.numpy_step({k: v.copy() for k, v in params.items()})
    if "torch" not in skipped:
        steps["torch"] = _training.torch_step(torch, params)
    return {name: functools.partial(step, x, y) for name, step in steps.items()}


def _run_train(cfg: Config, batches: list[int], torch: Any, tc: ThreadControl,
               doc: dict[str, Any], prog: _Progress) -> None:
    torch_note = doc["machine"]["torch_status"]
    for batch in batches:
        x, y = _training.data(batch)
        flops = _training.step_flops(batch)
        for n in cfg.threads:
            tc.set(n)
            skipped = _skips(cfg, torch, torch_note)
            fns = _train_fns(batch, x, y, torch, skipped)
            losses: dict[str, float] = {}

            def on_first(name: str, loss: Any, losses: dict[str, float] = losses) -> None:
                losses[name] = float(loss)

            if cfg.wait_idle_s > 0:
                wait_idle(cfg.wait_idle_s)
            load = BackgroundLoad()
            timings = measure(fns, repeats=cfg.repeats, warmup=cfg.warmup,
                              min_sample_s=cfg.min_sample_s, caps={"numpy": cfg.numpy_cap_s},
                              gap_s=cfg.gap_s, on_first=on_first)
            row: dict[str, Any] = {"id": f"train.b{batch}", "label":
                                   f"seeds CNN train step N={batch}", "batch": batch,
                                   "threads": n}
            row.update(summary(flops, "flop", timings, skipped))
            row["background_load"] = load.cores()
            row["first_loss"] = losses
            ref = losses.get("fastcnn")
            row["check_ok"] = ref is not None and all(
                abs(v - ref) <= 1e-3 * max(1.0, abs(ref)) for v in losses.values())
            if not row["check_ok"]:
                prog.line(f"WARNING: train step N={batch}: first losses differ: {losses}")
            doc["train"].append(row)
            prog.line(f"[train] N={batch} t={n}  " + " | ".join(
                f"{k} {t.median_ms:.3g} ms" + ("*" if t.single_shot else "")
                for k, t in timings.items()))


def _run_memory(cfg: Config, batches: list[int], torch: Any,
                prog: _Progress) -> dict[str, Any]:
    threads = max(cfg.threads)
    prog.line(f"[memory] peak memory of {len(batches)} x training steps, one process per "
              f"implementation, {threads} thread(s)...")
    res = _memory.run_memory(batches, threads, torch=torch is not None, isa=cfg.isa)
    for r in res.get("rows", []):
        prog.line(f"[memory] N={r['batch']} {r['impl']}: " + (
            f"{r['peak_mib']:.1f} MiB" if "peak_mib" in r else f"skipped ({r['skipped']})"))
    return res


def _run_fit(cfg: Config, batch: int, tc: ThreadControl, prog: _Progress) -> dict[str, Any]:
    try:
        fit_epoch, bare_epoch = _training.fit_and_bare_epoch(batch, cfg.fit_steps)
    except (ImportError, AttributeError, TypeError, ValueError) as e:
        prog.line(f"[fit] skipped: fastcnn.Sequential unavailable ({e})")
        return {"skipped": f"fastcnn.Sequential unavailable: {type(e).__name__}: {e}"}
    rows = []
    repeats = max(3, min(cfg.repeats, 7))
    for n in cfg.threads:
        tc.set(n)
        load = BackgroundLoad()
        try:
            t = measure({"fit": fit_epoch, "ops": bare_epoch}, repeats=repeats, warmup=1,
                        min_sample_s=0.0, gap_s=cfg.gap_s)
        except Exception as e:  # a broken fit() is reported, not fatal
            prog.line(f"[fit] skipped: fit() failed ({type(e).__name__}: {e})")
            return {"skipped": f"fit() failed: {type(e).__name__}: {e}"}
        fit_ms, ops_ms = t["fit"].median_ms, t["ops"].median_ms
        overhead = 100.0 * (fit_ms / ops_ms - 1.0)
        rows.append({"threads": n, "batch": batch, "steps": cfg.fit_steps,
                     "fit_epoch": t["fit"].to_dict(), "ops_epoch": t["ops"].to_dict(),
                     "overhead_pct": overhead, "target_pct": 10.0, "ok": overhead < 10.0,
                     "background_load": load.cores()})
        prog.line(f"[fit] N={batch} x {cfg.fit_steps} batches t={n}  fit {fit_ms:.4g} ms | "
                  f"ops loop {ops_ms:.4g} ms | overhead {overhead:+.1f} %")
    return {"rows": rows}
