"""The CPU benchmark behind ``fastcnn bench`` (``--device cpu``, the default): suites x thread
counts x implementations (fastcnn, the NumPy reference, PyTorch CPU), then the seeds' CNN
training step, the layer API overhead and the step's peak memory; returns one JSON-ready
document (see :func:`run_cpu_benchmark`). The settings, probes, peaks, machine facts and row
fields it shares with the GPU benchmark are in :mod:`fastcnn.bench.common`."""

from __future__ import annotations

import datetime as _dt
import functools
import sys
import time
from dataclasses import asdict
from typing import Any, TextIO

import numpy as np

from .. import _native
from . import common
from . import impls as _impls
from . import memory as _memory
from . import suites as _suites
from . import training as _training
from .common import Config, Progress
from .timing import BackgroundLoad, ThreadControl, measure, wait_idle

__all__ = ["OTHERS", "SCHEMA", "run_cpu_benchmark"]

SCHEMA = "fastcnn.bench/1"
OTHERS: tuple[str, ...] = ("numpy", "torch")


def run_cpu_benchmark(cfg: Config, *, progress: TextIO | None = sys.stderr) -> dict[str, Any]:
    """Run the CPU benchmark described by ``cfg`` (its GPU-only field ``cupy`` is ignored).

    Args:
        cfg: the settings.
        progress: where to print one line per measured case (None: silent).

    Returns:
        The results document (``schema`` ``fastcnn.bench/1``): ``config``, ``machine``,
        ``probes`` (peaks per thread count), ``cases`` (one row per case and thread count),
        ``train`` (whole training steps), ``fit`` (layer API overhead), ``memory`` (the
        step's peak memory), ``interrupted``, ``elapsed_s``. Ctrl-C stops early and returns
        what was measured.

    Raises:
        ValueError: a bad setting (unknown suite, no case left, bad threads or ISA, ...).
    """
    if not cfg.threads or any(n < 1 for n in cfg.threads):
        raise ValueError(f"--threads must be positive ints, got {cfg.threads}")
    case_list, train_batches = common.selection(cfg)

    t_start = time.perf_counter()
    torch, torch_note = common.import_torch(cfg)
    tc = ThreadControl(torch)
    cpu = _native.cpu
    isa0 = cpu.isa()
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "name": cfg.name,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": asdict(cfg),
        "interrupted": False,
    }
    try:
        if cfg.isa:
            active = cpu.set_isa(cfg.isa)
            if active != cfg.isa:
                raise ValueError(f"--isa {cfg.isa}: this CPU/build gives {active!r} "
                                 f"(best: {cpu.best_isa()!r})")
        doc["machine"] = common.cpu_machine(torch, tc)
        doc["machine"]["torch_status"] = torch_note
        prog = Progress(progress, len(case_list) * len(cfg.threads))
        prog.line(f"fastcnn bench: {len(case_list)} cases x threads {cfg.threads}, "
                  f"isa {cpu.isa()}, {torch_note}; probing the machine...")
        doc["probes"] = common.probe_cpu(cfg, tc, torch)
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
            doc["probes"] = common.best_probes(doc["probes"], common.probe_cpu(cfg, tc, torch))
        except KeyboardInterrupt:
            doc["interrupted"] = True
            prog.line("interrupted: reporting what was measured")
        common.apply_peaks(doc, cfg.peak_gflops)
    finally:
        tc.restore()
        cpu.set_isa(isa0)
    doc["machine"]["loadavg_end"] = common.loadavg()
    doc["elapsed_s"] = time.perf_counter() - t_start
    return doc


def _skips(cfg: Config, torch: Any, torch_note: str) -> dict[str, str]:
    return common.skips("numpy", cfg.numpy, torch, torch_note)


def _run_cases(cfg: Config, case_list: list[_suites.Case], torch: Any, tc: ThreadControl,
               doc: dict[str, Any], prog: Progress) -> None:
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
                on_first=common.checker(errs) if i == 0 else None)
            row = {**common.case_row(case), "threads": n}
            row.update(common.summary(case.work, case.unit, timings, skipped, _impls.IMPLS, OTHERS))
            row["background_load"] = load.cores()
            row["waited_idle_s"] = waited
            row["max_rel_err"] = dict(errs)
            row["check_ok"] = all(e <= common.CHECK_TOL for e in errs.values())
            if i == 0 and not row["check_ok"]:
                prog.line(f"WARNING: {case.id}: results differ from fastcnn's: {errs}")
            doc["cases"].append(row)
            prog.case(case.id, timings, n)
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
               doc: dict[str, Any], prog: Progress) -> None:
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
            row = {**common.train_row(batch), "threads": n}
            row.update(common.summary(flops, "flop", timings, skipped, _impls.IMPLS, OTHERS))
            row["background_load"] = load.cores()
            row["first_loss"] = losses
            row["check_ok"] = common.losses_agree(losses)
            if not row["check_ok"]:
                prog.line(f"WARNING: train step N={batch}: first losses differ: {losses}")
            doc["train"].append(row)
            prog.line(f"[train] N={batch} t={n}  " + prog.times(timings))


def _run_memory(cfg: Config, batches: list[int], torch: Any,
                prog: Progress) -> dict[str, Any]:
    threads = max(cfg.threads)
    prog.line(f"[memory] peak memory of {len(batches)} x training steps, one process per "
              f"implementation, {threads} thread(s)...")
    res = _memory.run_memory(batches, threads, torch=torch is not None, isa=cfg.isa)
    for r in res.get("rows", []):
        prog.line(f"[memory] N={r['batch']} {r['impl']}: " + (
            f"{r['peak_mib']:.1f} MiB" if "peak_mib" in r else f"skipped ({r['skipped']})"))
    return res


def _run_fit(cfg: Config, batch: int, tc: ThreadControl, prog: Progress) -> dict[str, Any]:
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
