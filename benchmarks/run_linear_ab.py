#!/usr/bin/env python
"""Dense layers A/B: fastcnn's ``_cpu`` against an older build of it and PyTorch CPU, in one
process, calls interleaved (old, new, torch per round), medians of wall and CPU time
(time.process_time: on a machine other jobs load, CPU time is the steadier of the two).

Passes: ``fwd`` is linear (torch.nn.functional.linear); ``bwd`` is linear_backward with dx, dw
and db (torch: autograd.grad of that linear's output, the backward alone). Ratios are CPU-time
ratios: ``new/old`` > 1 means the new build is faster, ``torch/new`` > 1 that fastcnn is.
The old build is any ``_cpu*.so`` (copy one aside before rebuilding). ``--cold`` evicts the
caches before every timed call (a 64 MiB buffer written, untimed): x and w then come from DRAM,
as inside a training step where the other layers' data runs between two dense calls (the
``profile_step.py`` rows). Example::

    python benchmarks/run_linear_ab.py --old /tmp/old/_cpu.cpython-311-x86_64-linux-gnu.so \\
        --shapes 9216,128,64 9216,128,256 4096,1000,64 4096,1000,256 --threads 1 2
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

from fastcnn import _cpu as new


def _load(path: str) -> ModuleType:
    """Load another build of the extension under a different package name."""
    spec = importlib.util.spec_from_file_location("fastcnn_old_build._cpu", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_EVICT: np.ndarray | None = None


def _evict() -> None:
    """Write a 64 MiB buffer: pushes x, w and the workspaces out of L2 and L3 (untimed)."""
    global _EVICT
    if _EVICT is None:
        _EVICT = np.zeros(16 << 20, dtype=np.float32)
    _EVICT += np.float32(1.0)


def _time(f: Callable[[], Any], cold: bool = False) -> tuple[float, float]:
    """Wall and CPU seconds of one call of ``f`` (after evicting the caches when ``cold``)."""
    if cold:
        _evict()
    w0, c0 = time.perf_counter(), time.process_time()
    f()
    return time.perf_counter() - w0, time.process_time() - c0


def _passes(old: ModuleType, arrays: tuple[Any, ...],
            tensors: tuple[Any, ...]) -> dict[str, dict[str, Callable[[], Any]]]:
    """The timed calls of one shape: {pass: {"old" | "new" | "torch": call}}."""
    import torch
    import torch.nn.functional as F

    x, w, b, dy = arrays
    tx, tw, tb, tdy, ty = tensors
    return {
        "fwd": {"old": lambda: old.linear(x, w, b, False),
                "new": lambda: new.linear(x, w, b, False),
                "torch": lambda: F.linear(tx.detach(), tw.detach(), tb.detach())},
        "bwd": {"old": lambda: old.linear_backward(dy, x, w, True, True, True),
                "new": lambda: new.linear_backward(dy, x, w, True, True, True),
                "torch": lambda: torch.autograd.grad(ty, (tx, tw, tb), tdy, retain_graph=True)},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", required=True, help="path of the older _cpu*.so")
    ap.add_argument("--shapes", nargs="+", default=["9216,128,64", "9216,128,256",
                                                     "4096,1000,64", "4096,1000,256"],
                    help="in,out,batch")
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--cold", action="store_true",
                    help="evict the caches before each timed call (as inside a training step)")
    ap.add_argument("--passes", nargs="+", default=["fwd", "bwd"], choices=["fwd", "bwd"])
    args = ap.parse_args()
    import torch
    import torch.nn.functional as F

    old = _load(args.old)
    print(f"isa {new.isa()}  load {os.getloadavg()}  {'cold' if args.cold else 'warm'} caches")
    rng = np.random.default_rng(0)
    for shape in args.shapes:
        fin, fout, n = (int(v) for v in shape.split(","))
        x = rng.standard_normal((n, fin), dtype=np.float32)
        w = rng.standard_normal((fout, fin), dtype=np.float32) * np.float32(0.01)
        b = rng.standard_normal(fout, dtype=np.float32)
        dy = rng.standard_normal((n, fout), dtype=np.float32)
        tx, tw, tb = (torch.from_numpy(a).requires_grad_() for a in (x, w, b))
        tdy = torch.from_numpy(dy)
        for nt in args.threads:
            new.set_num_threads(nt)
            old.set_num_threads(nt)
            torch.set_num_threads(nt)
            ty = F.linear(tx, tw, tb)
            passes = _passes(old, (x, w, b, dy), (tx, tw, tb, tdy, ty))
            for name, fs in passes.items():
                if name not in args.passes:
                    continue
                for f in fs.values():
                    f()
                times: dict[str, list[tuple[float, float]]] = {k: [] for k in fs}
                for _ in range(args.rounds):
                    for k, f in fs.items():
                        times[k].append(_time(f, args.cold))
                wall = {k: statistics.median(t[0] for t in v) * 1e3 for k, v in times.items()}
                cpu = {k: statistics.median(t[1] for t in v) * 1e3 for k, v in times.items()}
                cols = "  ".join(f"{k} {wall[k]:.2f}/{cpu[k]:.2f}" for k in fs)
                print(f"{fin}->{fout} batch {n} threads {nt} {name}: wall/cpu ms {cols}  "
                      f"new/old {cpu['old'] / cpu['new']:.2f}x  torch/new "
                      f"{cpu['torch'] / cpu['new']:.2f}x", flush=True)
    print(f"load {os.getloadavg()}")


if __name__ == "__main__":
    main()
