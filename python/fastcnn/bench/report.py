"""Rendering a results document: the text table, markdown, JSON and the PNG chart.

Columns: fastcnn's median ms and its IQR, its rate (GFLOP/s for convolution and dense passes,
GB/s of bytes read + written for ReLU and pooling), the share of the machine's peak at that
thread count (FMA peak from the probe for FLOPs, copy bandwidth for bytes), and the other
implementations' medians with the speed-up ``t_other / t_fastcnn`` (above 1: fastcnn is faster).
``*`` marks a single-shot time (the NumPy reference over its time cap), ``!`` a result that did
not match fastcnn's, ``-`` a pass an implementation does not have or that was skipped.

A GPU document (``device`` ``"cuda"``, from :mod:`fastcnn.bench.cuda`) has no thread and
background-load columns; its others are the CuPy reference and PyTorch, its ``% peak`` is of the
theoretical FP32 rate (FLOPs) or the device-to-device copy bandwidth (bytes) and its ``% SGEMM``
of cuBLAS SGEMM; the header names the GPU and its peaks.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from typing import Any

__all__ = ["markdown", "table", "to_json", "write_chart", "write_json", "write_results"]

_OTHERS = (("numpy", "NumPy"), ("torch", "PyTorch"))
_GPU_OTHERS = (("cupy", "CuPy"), ("torch", "PyTorch"))


def _gpu(doc: dict[str, Any]) -> bool:
    return doc.get("device") == "cuda"


def _others(doc: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    return _GPU_OTHERS if _gpu(doc) else _OTHERS


def _clean(obj: Any) -> Any:
    """A JSON-safe copy: NaN and infinities become None, tuples lists."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


def to_json(doc: dict[str, Any]) -> str:
    """The document as strict JSON text (indent 1)."""
    return json.dumps(_clean(doc), indent=1, allow_nan=False)


def write_json(doc: dict[str, Any], path: str) -> None:
    """Write the document as strict JSON."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(to_json(doc) + "\n")


# ----------------------------------------------------------------------------------------------
# cells
# ----------------------------------------------------------------------------------------------
def _ms(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return "-"
    return f"{v:.3f}" if v < 1 else f"{v:.2f}" if v < 100 else f"{v:.0f}"


def _num(v: float | None, fmt: str = "{:.1f}") -> str:
    return "-" if v is None or not math.isfinite(v) else fmt.format(v)


def _impl_ms(row: dict[str, Any], name: str) -> str:
    d = row["impls"].get(name, {})
    if "median_ms" not in d:
        return "-"
    return _ms(d["median_ms"]) + ("*" if d.get("single_shot") else "")


def _speedup(row: dict[str, Any], name: str) -> str:
    v = row["speedup"].get(name)
    if v is None:
        return "-"
    bad = row.get("max_rel_err", {}).get(name)
    flag = "!" if bad is not None and not (bad <= 1e-3) else ""
    return f"{v:.2f}x{flag}"


def _row_cells(row: dict[str, Any], gpu: bool = False) -> list[str]:
    fc = row["impls"].get("fastcnn", {})
    cells = [f"{row['label']} {row.get('pass', '')}".strip()]
    if not gpu:  # a GPU row has no thread count
        cells.append(str(row["threads"]))
    cells += [
        _ms(fc.get("median_ms")), _ms(fc.get("iqr_ms")),
        f"{_num(row['rate'])} {row['rate_unit']}" if row.get("rate") is not None else "-",
        _num(row.get("pct_peak"), "{:.0f}%"), _num(row.get("pct_gemm"), "{:.0f}%"),
    ]
    for name, _ in (_GPU_OTHERS if gpu else _OTHERS):
        cells += [_impl_ms(row, name), _speedup(row, name)]
    if not gpu:
        cells.append(_num(row.get("background_load"), "{:.1f}"))
    return cells


_HEAD = ["case", "thr", "fastcnn ms", "IQR ms", "rate", "% peak", "% GEMM", "NumPy ms",
         "x NumPy", "PyTorch ms", "x PyTorch", "bg"]
_GPU_HEAD = ["case", "fastcnn ms", "IQR ms", "rate", "% peak", "% SGEMM", "CuPy ms", "x CuPy",
             "PyTorch ms", "x PyTorch"]


def _head(doc: dict[str, Any]) -> list[str]:
    return _GPU_HEAD if _gpu(doc) else _HEAD


def _sections(doc: dict[str, Any]) -> Iterable[tuple[str, list[dict[str, Any]]]]:
    suites: dict[str, list[dict[str, Any]]] = {}
    for row in doc.get("cases", []):
        suites.setdefault(row["suite"], []).append(row)
    yield from suites.items()
    if doc.get("train"):
        yield "training step (seeds CNN: forward, backward, SGD update)", doc["train"]


def _text_table(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]

    def fmt(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    return "\n".join([fmt(head), "  ".join("-" * w for w in widths), *map(fmt, rows)])


def _peaks_lines(doc: dict[str, Any]) -> list[str]:
    out = []
    for n, p in doc.get("probes", {}).items():
        fma = (f"{p['fma_gflops']:.0f} GFLOP/s" if p.get("fma_gflops") else "unknown")
        out.append(f"  {n} thread(s): FMA peak {fma}; copy bandwidth "
                   f"{p['bandwidth_gbs']:.1f} GB/s ({p['bandwidth_source']}); fastcnn SGEMM "
                   f"{p['gemm_gflops']:.0f} GFLOP/s ({p['gemm_source']})")
    return out


def _section(doc: dict[str, Any], key: str,
             title: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows of the optional section ``key`` (``fit``, ``memory``), or none and the line
    saying why it was skipped; nothing at all when the document has no such section (the GPU
    benchmark measures neither)."""
    if key not in doc:
        return [], []
    sec = doc.get(key) or {}
    if "skipped" in sec:
        return [], [f"{title}: skipped ({sec['skipped']})"]
    return sec.get("rows", []), []


def _fit_lines(doc: dict[str, Any]) -> list[str]:
    rows, out = _section(doc, "fit", "layer API overhead")
    for r in rows:
        out.append(
            f"layer API overhead (Sequential.fit vs the bare ops loop, {r['steps']} batches of "
            f"{r['batch']}, {r['threads']} thread(s)): fit {r['fit_epoch']['median_ms']:.1f} ms"
            f" vs {r['ops_epoch']['median_ms']:.1f} ms per epoch = {r['overhead_pct']:+.1f} % "
            f"({'OK' if r['ok'] else 'over'} the < {r['target_pct']:.0f} % target)"
            + (f"; bg {r['background_load']:.1f}" if r.get("background_load") is not None
               else ""))
    return out


def _memory_lines(doc: dict[str, Any]) -> list[str]:
    rows, out = _section(doc, "memory", "training step peak memory")
    for r in rows:
        what = (f"{r['peak_mib']:.1f} MiB" + (f" = {r['x_torch']:.2f}x PyTorch's"
                                              if "x_torch" in r and r["impl"] != "torch" else "")
                if "peak_mib" in r else f"skipped ({r['skipped']})")
        out.append(f"training step peak memory (N={r['batch']}, {r['steps']} steps, "
                   f"{r['threads']} thread(s), above the RSS before them), {r['impl']}: {what}")
    return out


def _header_lines(doc: dict[str, Any]) -> list[str]:
    m = doc.get("machine", {})
    fc = m.get("fastcnn", {})
    cfg = doc.get("config", {})
    return [
        f"fastcnn {fc.get('version')} ({fc.get('cpu_isa')}) on {m.get('cpu')}, "
        f"{m.get('logical_cpus')} logical CPUs; numpy {m.get('numpy')}, "
        f"{m.get('torch_status', 'torch not used')}; NumPy BLAS threads: "
        f"{m.get('numpy_blas_threads')}",
        f"suite {cfg.get('suite')}{' (quick)' if cfg.get('quick') else ''}, threads "
        f"{cfg.get('threads')}, {cfg.get('repeats')} repeats after {cfg.get('warmup')} warm-up "
        f"call(s), samples >= {1e3 * cfg.get('min_sample_s', 0):.0f} ms, interleaved; load "
        f"average {m.get('loadavg_start')} -> {m.get('loadavg_end')}",
        "peaks:", *_peaks_lines(doc),
    ]


_LEGEND = ("times: median over the repeats (IQR: interquartile range); rate: GFLOP/s (conv, "
           "dense, training step) or GB/s read+written (ReLU, pooling); % peak: of the FMA "
           "peak (FLOPs) or of the large-copy bandwidth (bytes: cache-resident cases can pass "
           "100 %); % GEMM: of fastcnn's 1024^3 SGEMM at that thread count; x NumPy / x "
           "PyTorch: t_other / t_fastcnn (> 1: fastcnn faster); * single-shot (over the time "
           "cap); ! results differ; - not available / skipped; bg: CPU cores other processes "
           "used meanwhile (noise: near 1 on 2 cores, multi-thread times are unreliable)")


def _gpu_peak_line(doc: dict[str, Any]) -> str:
    p = doc.get("probes", {})
    g = doc.get("machine", {}).get("gpu") or {}
    bw, sgemm = p.get("bandwidth_gbs"), p.get("sgemm_gflops")
    line = (f"  copy bandwidth {_num(bw)} GB/s ({p.get('bandwidth_source', '-')}); cuBLAS SGEMM "
            f"{_num(sgemm, '{:.0f}')} GFLOP/s ({p.get('sgemm_source', '-')}); theoretical FP32 ")
    if g.get("fp32_peak_gflops"):
        return line + (f"{g['fp32_peak_gflops']:.0f} GFLOP/s ({g['sms']} SMs x "
                       f"{g['clock_mhz']:.0f} MHz x {g['fp32_lanes_per_sm']} FP32 lanes x 2)")
    return line + "unknown for this GPU"


def _gpu_header_lines(doc: dict[str, Any]) -> list[str]:
    m = doc.get("machine", {})
    g = m.get("gpu") or {}
    fc = m.get("fastcnn", {})
    cfg = doc.get("config", {})
    tf32 = doc.get("tf32") or {}
    cc = g.get("compute_capability")
    about = ", ".join(x for x in (
        f"sm_{cc[0]}{cc[1]}" if cc else "", f"{g['sms']} SMs" if g.get("sms") else "",
        f"{g['clock_mhz']:.0f} MHz" if g.get("clock_mhz") else "",
        f"{g['memory_gib']:.0f} GiB" if g.get("memory_gib") else "") if x)
    torch_tf32 = ("PyTorch TF32 off (matmul, cuDNN)" if tf32 else "PyTorch not used")
    return [
        f"fastcnn {fc.get('version')} on {g.get('name')} ({about or 'no details'}); CUDA "
        f"runtime {g.get('cuda_runtime')}, driver {g.get('cuda_driver')}; cupy {g.get('cupy')}; "
        f"{m.get('torch_status', 'torch not used')}; host {m.get('cpu')}",
        f"suite {cfg.get('suite')}{' (quick)' if cfg.get('quick') else ''}, "
        f"{cfg.get('repeats')} repeats after {cfg.get('warmup')} warm-up call(s), samples >= "
        f"{1e3 * cfg.get('min_sample_s', 0):.0f} ms, CUDA events, interleaved; {torch_tf32}; "
        f"CUPY_TF32={g.get('cupy_tf32_env') or 'unset'}",
        "peaks:", _gpu_peak_line(doc),
    ]


_GPU_LEGEND = ("times: median over the repeats, from CUDA events (IQR: interquartile range); "
               "rate: GFLOP/s (conv, dense, training step) or GB/s read+written (ReLU, "
               "pooling); % peak: of the theoretical FP32 peak (FLOPs; - when unknown) or of "
               "the device-to-device copy bandwidth (bytes: L2-resident cases can pass 100 %); "
               "% SGEMM: of cuBLAS SGEMM (cupy.matmul, TF32 off); x CuPy / x PyTorch: t_other / "
               "t_fastcnn (> 1: fastcnn faster); ! results differ; - not available / skipped")


NOISY_CORES = 0.5  # background load from which a row is flagged as noisy


def _noise_lines(doc: dict[str, Any]) -> list[str]:
    rows = doc.get("cases", []) + doc.get("train", [])
    noisy = [r for r in rows if (r.get("background_load") or 0.0) >= NOISY_CORES]
    if not noisy:
        return []
    return [f"note: {len(noisy)} of {len(rows)} measurements ran while other processes used "
            f">= {NOISY_CORES} cores (bg column): their multi-thread times are unreliable; rerun "
            "on a quiet machine or with --wait-idle 30"]


def _error_lines(doc: dict[str, Any]) -> list[str]:
    errors = doc.get("errors") or []
    return [f"{len(errors)} error(s):", *(f"  {e}" for e in errors)] if errors else []


def _intro_lines(doc: dict[str, Any]) -> list[str]:
    return _gpu_header_lines(doc) if _gpu(doc) else _header_lines(doc)


def _legend(doc: dict[str, Any]) -> str:
    return _GPU_LEGEND if _gpu(doc) else _LEGEND


def table(doc: dict[str, Any]) -> str:
    """The readable text report printed by ``fastcnn bench``."""
    out = _intro_lines(doc)
    gpu = _gpu(doc)
    for title, rows in _sections(doc):
        out += ["", f"== {title} ==",
                _text_table(_head(doc), [_row_cells(r, gpu) for r in rows])]
    out += ["", *_fit_lines(doc), *_memory_lines(doc), *_noise_lines(doc), *_error_lines(doc),
            _legend(doc)]
    if doc.get("interrupted"):
        out.append("(interrupted: partial results)")
    return "\n".join(out)


def markdown(doc: dict[str, Any]) -> str:
    """The report as GitHub markdown (what README tables are pasted from)."""
    out = [f"# fastcnn benchmark {doc.get('name') or ''}".rstrip(), "",
           f"Created {doc.get('created')}, {doc.get('elapsed_s', 0):.0f} s.", ""]
    out += [line if not line.startswith("  ") else "- " + line.strip()
            for line in _intro_lines(doc)]
    head, gpu = _head(doc), _gpu(doc)
    for title, rows in _sections(doc):
        out += ["", f"## {title}", "", "| " + " | ".join(head) + " |",
                "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
        out += ["| " + " | ".join(c.replace("|", "\\|") for c in _row_cells(r, gpu)) + " |"
                for r in rows]
    out += ["", *_fit_lines(doc), *_memory_lines(doc), *_noise_lines(doc), *_error_lines(doc),
            "", _legend(doc)]
    if doc.get("interrupted"):
        out.append("\n(interrupted: partial results)")
    return "\n".join(out) + "\n"


def write_chart(doc: dict[str, Any], path: str) -> str | None:
    """Speed-up bars (vs NumPy and vs PyTorch, log scale), one panel per thread count (a GPU
    document: vs CuPy and vs PyTorch, one panel).

    Returns:
        None when written, else why not (matplotlib missing, nothing to plot).
    """
    rows = list(doc.get("cases", [])) + list(doc.get("train", []))
    if not rows:
        return "nothing to plot"
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install matplotlib)"
    threads = sorted({r.get("threads") or 0 for r in rows})  # 0: the GPU's one panel
    labels = list(dict.fromkeys(r["id"] for r in rows))
    gpu_name = (doc.get("machine", {}).get("gpu") or {}).get("name") or "the GPU"
    height = 1.2 + 0.22 * len(labels)
    fig, axes = plt.subplots(1, len(threads), figsize=(6.5 * len(threads), height),
                             sharey=True, squeeze=False)
    for ax, n in zip(axes[0], threads, strict=True):
        by_id = {r["id"]: r for r in rows if (r.get("threads") or 0) == n}
        ys = range(len(labels))
        for k, (name, title) in enumerate(_others(doc)):
            vals = [(by_id.get(lab) or {}).get("speedup", {}).get(name) or math.nan
                    for lab in labels]
            ax.barh([y + (k - 0.5) * 0.4 for y in ys], vals, height=0.4, label=f"vs {title}")
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_yticks(list(ys))
        ax.set_yticklabels(labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_title(f"fastcnn speed-up, {n} thread(s)" if n else
                     f"fastcnn speed-up on {gpu_name}")
        ax.set_xlabel("t_other / t_fastcnn (> 1: fastcnn faster)")
        ax.grid(axis="x", which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def write_results(doc: dict[str, Any], out_dir: str, *, chart: bool = True) -> dict[str, str]:
    """Write ``results.json``, ``results.md``, ``table.txt`` and ``speedup.png`` into
    ``out_dir`` (created).

    Returns:
        what -> path written, plus ``"chart_note"`` when the chart was skipped.
    """
    os.makedirs(out_dir, exist_ok=True)
    written = {"json": os.path.join(out_dir, "results.json"),
               "markdown": os.path.join(out_dir, "results.md"),
               "table": os.path.join(out_dir, "table.txt")}
    write_json(doc, written["json"])
    with open(written["markdown"], "w", encoding="utf-8") as f:
        f.write(markdown(doc))
    with open(written["table"], "w", encoding="utf-8") as f:
        f.write(table(doc) + "\n")
    if chart:
        png = os.path.join(out_dir, "speedup.png")
        note = write_chart(doc, png)
        if note is None:
            written["chart"] = png
        else:
            written["chart_note"] = note
    return written
