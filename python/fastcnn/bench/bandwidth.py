"""Bandwidth-bound ops against a copy of the same bytes, out of cache (issue 17 item 7).

Every op here moves a tensor far larger than the last-level cache (``--mib`` MiB per input,
default 128: 4x a 32 MiB L3); its rate is the minimum traffic (bytes read + written once each,
float32, int64 indices; batch norm in training: x read twice, forward 12 B/element, backward
20) over the time of one call, and is compared with a copy (``np.copyto``) of one input's bytes
timed the same way, interleaved with the ops in one process (copy, op, copy, op, ...). Names
ending in ``_out`` write into a warm destination (``out=`` / ``dx_out=``): the kernel alone.

Times are CPU time (``time.process_time``) divided by the thread count, so other processes on a
shared machine cost little; wall-clock medians are kept too. Each rate is the median over
``--repeat`` rounds. Ops with ``out=`` write into a warm array; the others allocate their result,
so their time includes the fresh pages' faults unless malloc is told to keep freed memory
(``MALLOC_MMAP_THRESHOLD_=8589934592 MALLOC_TRIM_THRESHOLD_=8589934592``, then the second call
on reuses warm pages; run both ways to see the page faults' share).

    PYTHONPATH=python python -m fastcnn.bench.bandwidth [--threads 1 2] [--mib 128]
        [--repeat 9] [--filter 'bn*']
"""

from __future__ import annotations

import argparse
import fnmatch
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import _native, ops

__all__ = ["main", "make_cases", "run"]

Case = tuple[str, int, Callable[[], Any]]  # name, bytes per call, the call


def _copy_fn(src: np.ndarray, dst: np.ndarray, threads: int) -> Callable[[], None]:
    """A copy of src into dst on `threads` Python threads (NumPy releases the GIL)."""
    if threads == 1:
        return lambda: np.copyto(dst, src)
    s, d = np.array_split(src.reshape(-1), threads), np.array_split(dst.reshape(-1), threads)

    def run() -> None:
        ts = [threading.Thread(target=np.copyto, args=(d[i], s[i])) for i in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    return run


def make_cases(mib: int) -> list[Case]:
    """The ops, each on tensors of about `mib` MiB per input."""
    rng = np.random.default_rng(0)
    n = mib * (1 << 20) // 4
    out: list[Case] = []

    def arr(shape: tuple[int, ...]) -> np.ndarray:
        return rng.standard_normal(shape, dtype=np.float32)

    flat = arr((n,))
    dy = arr((n,))
    o = np.empty_like(flat)
    out += [("relu.fwd_out", 8 * n, lambda: ops.relu(flat, out=o)),
            ("relu.bwd_out", 12 * n, lambda: ops.relu_backward(dy, flat, out=o))]
    for approx in ("none", "tanh"):
        out += [(f"gelu_{approx}.fwd_out", 8 * n,
                 lambda a=approx: ops.gelu(flat, a, out=o)),
                (f"gelu_{approx}.bwd_out", 12 * n,
                 lambda a=approx: ops.gelu_backward(dy, flat, a, out=o))]
    out += [("silu.fwd_out", 8 * n, lambda: ops.silu(flat, out=o)),
            ("sigmoid.fwd_out", 8 * n, lambda: ops.sigmoid(flat, out=o))]
    # batch norm: the row form (large planes) and the column form (ResNet-20's 8x8 / 16x16)
    for name, (c, h) in {"bn_56x56": (64, 56), "bn_16x16": (32, 16), "bn_8x8": (64, 8),
                         "bn_nc": (512, 1)}.items():
        nb = max(1, n // (c * h * h))
        shape = (nb, c, h, h) if h > 1 else (nb, c)
        x4, d4 = flat[: nb * c * h * h].reshape(shape), dy[: nb * c * h * h].reshape(shape)
        m = x4.size
        w, b = np.ones(c, np.float32), np.zeros(c, np.float32)
        rm, rv = np.zeros(c, np.float32), np.ones(c, np.float32)
        _, mean, inv = ops.batch_norm(x4, w, b, rm, rv, training=True)
        yo = np.empty_like(x4)  # warm destinations: the kernels alone, no fresh-page faults
        out += [(f"{name}.fwd", 12 * m,
                 lambda x4=x4, w=w, b=b, rm=rm, rv=rv: ops.batch_norm(x4, w, b, rm, rv,
                                                                      training=True)),
                (f"{name}.fwd_out", 12 * m,
                 lambda x4=x4, w=w, b=b, rm=rm, rv=rv, yo=yo:
                 ops.batch_norm(x4, w, b, rm, rv, training=True, out=yo)),
                (f"{name}.fwd_infer", 8 * m,
                 lambda x4=x4, w=w, b=b, rm=rm, rv=rv: ops.batch_norm(x4, w, b, rm, rv)),
                (f"{name}.bwd", 20 * m,
                 lambda d4=d4, x4=x4, w=w, mean=mean, inv=inv:
                 ops.batch_norm_backward(d4, x4, w, mean, inv)),
                (f"{name}.bwd_out", 20 * m,
                 lambda d4=d4, x4=x4, w=w, mean=mean, inv=inv, yo=yo:
                 ops.batch_norm_backward(d4, x4, w, mean, inv, dx_out=yo))]
    # pools on (N, 64, 32, 32) / (N, 16, 112, 112)-like planes
    for name, (c, h, k, s, p) in {"avg2x2s2": (64, 56, 2, 2, 0), "avg3x3s2p1": (64, 56, 3, 2, 1),
                                  "avg3x3s1p1": (64, 56, 3, 1, 1),
                                  "max2x2s2": (64, 56, 2, 2, 0),
                                  "max3x3s2p1": (64, 56, 3, 2, 1)}.items():
        nb = max(1, n // (c * h * h))
        x4 = flat[: nb * c * h * h].reshape(nb, c, h, h)
        nx = x4.size
        if name.startswith("avg"):
            y = ops.avg_pool2d(x4, k, stride=s, padding=p)
            g = rng.standard_normal(y.shape, dtype=np.float32)
            dxo = np.empty_like(x4)
            ny = y.size
            out += [(f"{name}.fwd", 4 * (nx + ny),
                     lambda x4=x4, k=k, s=s, p=p: ops.avg_pool2d(x4, k, stride=s, padding=p)),
                    (f"{name}.bwd_out", 4 * (nx + ny),
                     lambda g=g, x4=x4, k=k, s=s, p=p, dxo=dxo:
                     ops.avg_pool2d_backward(g, x4, k, stride=s, padding=p, out=dxo))]
        else:
            y, idx = ops.max_pool2d(x4, k, stride=s, padding=p, return_indices=True)
            g = rng.standard_normal(y.shape, dtype=np.float32)
            dxo = np.empty_like(x4)
            ny = y.size
            out += [(f"{name}.fwd_idx", 4 * nx + 12 * ny,
                     lambda x4=x4, k=k, s=s, p=p: ops.max_pool2d(x4, k, stride=s, padding=p,
                                                                 return_indices=True)),
                    (f"{name}.bwd_out", 12 * ny + 4 * nx,
                     lambda g=g, x4=x4, k=k, s=s, p=p, idx=idx, dxo=dxo:
                     ops.max_pool2d_backward(g, x4, k, stride=s, padding=p, indices=idx,
                                             out=dxo))]
    return out


def _time(fn: Callable[[], Any]) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def run(threads: list[int], mib: int, repeat: int, filters: list[str] | None = None,
        ) -> list[dict[str, Any]]:
    """Times every case at each thread count; one result row per (case, threads)."""
    cases = make_cases(mib)
    if filters:
        cases = [c for c in cases if any(fnmatch.fnmatchcase(c[0], f) for f in filters)]
    n = mib * (1 << 20) // 4
    src = np.ones(n, np.float32)
    dst = np.zeros(n, np.float32)
    rows: list[dict[str, Any]] = []
    for th in threads:
        _native.cpu.set_num_threads(th)
        copy = _copy_fn(src, dst, th)
        copy()
        for _, _, fn in cases:
            fn()
        cw: list[float] = []
        cc: list[float] = []
        res: dict[str, tuple[list[float], list[float]]] = {c[0]: ([], []) for c in cases}
        for _ in range(repeat):
            for name, _, fn in cases:
                w, c = _time(copy)
                cw.append(w)
                cc.append(c / th)
                w, c = _time(fn)
                res[name][0].append(w)
                res[name][1].append(c / th)
        copy_cpu = 8 * n / statistics.median(cc) / 1e9
        copy_wall = 8 * n / statistics.median(cw) / 1e9
        for name, nbytes, _ in cases:
            wall = nbytes / statistics.median(res[name][0]) / 1e9
            cpu = nbytes / statistics.median(res[name][1]) / 1e9
            rows.append({"op": name, "threads": th, "gbs_cpu": cpu, "gbs_wall": wall,
                         "copy_cpu": copy_cpu, "copy_wall": copy_wall,
                         "pct_cpu": 100 * cpu / copy_cpu, "pct_wall": 100 * wall / copy_wall})
    return rows


def main(argv: list[str] | None = None) -> None:
    """Prints the table (markdown) of every case against the copy."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--mib", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--filter", action="append")
    a = ap.parse_args(argv)
    rows = run(a.threads, a.mib, a.repeat, a.filter)
    print("| op | threads | GB/s (CPU time) | % of copy | GB/s (wall) | % of copy (wall) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['op']} | {r['threads']} | {r['gbs_cpu']:.1f} | {r['pct_cpu']:.0f} % | "
              f"{r['gbs_wall']:.1f} | {r['pct_wall']:.0f} % |")
    for th in a.threads:
        r = next(x for x in rows if x["threads"] == th)
        print(f"copy ({th} thread(s)): {r['copy_cpu']:.1f} GB/s CPU time, "
              f"{r['copy_wall']:.1f} GB/s wall")


if __name__ == "__main__":
    main()
