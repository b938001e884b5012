"""A/B of the small-channel direct convolution (csrc/cpu/conv2d_smallc.cpp) on first layers.

The seeds' 1->32 3x3 @28 (batch 64) and ResNet-20's 3->16 3x3 @32 "same" stem (batch 128), each
pass as a training step runs it: the forward with its bias (and the seeds' fused ReLU), the
weight gradient with db (through the fused ReLU's backward for the seeds; no dx: a first layer
needs none). Routes: FASTCNN_CONV_ROUTE=nosmallc (the rule without this form: the routing before
it), "smallc" and the rule (unset; fastcnn's forward into a reused output, as its layers do),
with PyTorch's same work alongside (conv2d + relu;
threshold_backward + convolution_backward for dw, db), interleaved in one process (the order
reversed every other round); medians in ms, GFLOP/s and % of the FMA peak (--peak GFLOP/s per
thread; default: the clock in /proc/cpuinfo x 32 flops a cycle, AVX2's 2 FMA ports x 8 lanes x
2).

    python benchmarks/run_conv_smallc_ab.py --threads 1 --repeats 15 --cpu
    python benchmarks/run_conv_smallc_ab.py --threads 2 --routes nosmallc,rule --pass wgrad
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import fastcnn
from fastcnn import ops

# name, N, C, H (= W), K, kernel, padding, fused ReLU
SHAPES = [
    ("seeds 1->32 @28", 64, 1, 28, 32, 3, 0, True),
    ("resnet 3->16 @32", 128, 3, 32, 16, 3, 1, False),
]


def _clock_ghz() -> float:
    try:
        with open("/proc/cpuinfo") as f:
            mhz = [float(line.split(":")[1]) for line in f if line.startswith("cpu MHz")]
        return max(mhz) / 1e3 if mhz else 0.0
    except OSError:
        return 0.0


def _fns(which: str, routes: list[str], x: np.ndarray, w: np.ndarray, b: np.ndarray, pad: int,
         relu: bool, torch: Any) -> dict[str, Callable[[], Any]]:
    y = ops.conv2d(x, w, b, padding=pad, relu=relu)
    dy = np.random.default_rng(1).standard_normal(y.shape, dtype=np.float32)
    fns: dict[str, Callable[[], Any]] = {}
    out = np.empty_like(y)  # fastcnn's layers reuse their outputs (fastcnn._workspace)
    for rt in routes:
        if which == "forward":
            fns[rt] = lambda: ops.conv2d(x, w, b, padding=pad, relu=relu, out=out)
        else:
            fns[rt] = lambda: ops.conv2d_backward(dy, x, w, padding=pad, compute_dx=False,
                                                  relu_y=y if relu else None)
    if torch is None:
        return fns
    tx, tw, tb, ty, tdy = (torch.from_numpy(a) for a in (x, w, b, y, dy))
    if which == "forward":
        def tf() -> Any:
            with torch.no_grad():
                out = torch.nn.functional.conv2d(tx, tw, tb, padding=pad)
                return torch.relu_(out) if relu else out
        fns["torch"] = tf
    else:
        def tg() -> Any:
            g = torch.ops.aten.threshold_backward(tdy, ty, 0.0) if relu else tdy
            return torch.ops.aten.convolution_backward(
                g, tx, tw, [tw.shape[0]], [1, 1], [pad, pad], [1, 1], False, [0, 0], 1,
                [False, True, True])
        fns["torch"] = tg
    return fns


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--routes", default="nosmallc,rule")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--cpu", action="store_true", help="process CPU time instead of wall time")
    ap.add_argument("--peak", type=float, default=None, help="GFLOP/s of one thread's FMA peak")
    ap.add_argument("--pass", dest="which", default="both", choices=["forward", "wgrad", "both"])
    args = ap.parse_args()
    routes = args.routes.split(",")
    clock = time.process_time if args.cpu else time.perf_counter
    fastcnn.set_num_threads(args.threads)
    try:
        import torch
        torch.set_num_threads(args.threads)
    except ImportError:
        torch = None
    peak = (args.peak or _clock_ghz() * 32.0) * args.threads
    print(f"{args.threads} thread(s), {'CPU' if args.cpu else 'wall'} time, peak {peak:.1f} "
          f"GFLOP/s, ISA {fastcnn.info().get('isa')}, load average {os.getloadavg()}")
    rng = np.random.default_rng(0)
    passes = ["forward", "wgrad"] if args.which == "both" else [args.which]
    for name, n, c, h, k, r, pad, relu in SHAPES:
        x = rng.standard_normal((n, c, h, h), dtype=np.float32)
        w = rng.standard_normal((k, c, r, r), dtype=np.float32) * np.float32(0.3)
        b = rng.standard_normal(k, dtype=np.float32)
        p = h + 2 * pad - r + 1
        flops = 2.0 * n * k * p * p * c * r * r
        for which in passes:
            fns = _fns(which, routes, x, w, b, pad, relu, torch)
            keys = list(fns)
            times: dict[str, list[float]] = {key: [] for key in keys}
            for it in range(args.repeats + 1):  # round 0: warm-up
                for key in keys if it % 2 == 0 else keys[::-1]:
                    if key in ("rule", "torch"):
                        os.environ.pop("FASTCNN_CONV_ROUTE", None)
                    else:
                        os.environ["FASTCNN_CONV_ROUTE"] = key
                    t = clock()
                    fns[key]()
                    t = clock() - t
                    if it:
                        times[key].append(t)
            os.environ.pop("FASTCNN_CONV_ROUTE", None)
            med = {key: float(np.median(v)) for key, v in times.items()}
            cells = "  ".join(f"{key}={med[key] * 1e3:6.2f}ms {flops / med[key] / 1e9:5.1f}GF/s "
                              f"{100 * flops / med[key] / 1e9 / peak:3.0f}%" for key in keys)
            ratio = (" ".join(f"torch/{rt}={med['torch'] / med[rt]:.2f}" for rt in routes)
                     if "torch" in med else "")
            print(f"{name:17s} {which:7s} {cells}  {ratio}", flush=True)


if __name__ == "__main__":
    main()
