"""A/B of the blocked direct convolution (csrc/cpu/conv2d_blocked*.cpp) on each pass.

ResNet-20's 3x3 layers at batch 128 and the seeds' conv2 (32->64, 26x26, batch 64), timed under
FASTCNN_CONV_ROUTE=blocked, the other forms ("wide", "gemm", "unblocked": the rule without the
blocked forms, i.e. the routing before them) and the rule (unset), interleaved in one process
(the order reversed every other round), with PyTorch's same pass alongside at the same thread
count; medians in ms, GFLOP/s and % of the FMA peak (--peak GFLOP/s per thread; default: the
clock in /proc/cpuinfo x 32 flops a cycle, AVX2's 2 FMA ports x 8 lanes x 2).
--pass forward (y = conv(x, w) + b), wgrad (dw alone) or dgrad (dx alone).

    python benchmarks/run_conv_blocked_ab.py --routes rule,blocked --threads 1 --repeats 9 --cpu
    python benchmarks/run_conv_blocked_ab.py --pass wgrad --routes unblocked,rule --cpu
    python benchmarks/run_conv_blocked_ab.py --pass dgrad --only "16->32 @32/2,32->64 @16/2"

--step-call times a backward pass as a layer's training step calls it: the bias gradient on,
and for the seeds' layer (a ReLU and a 2x2 max pool after it) dy given as the pooled gradient
with relu_y and pool_indices (conv2d_backward's fused ReLU + max-pool backward).
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

# name, N, C, H (= W), K, kernel, stride, padding
SHAPES = [
    ("16->16 @32", 128, 16, 32, 16, 3, 1, 1),
    ("32->32 @16", 128, 32, 16, 32, 3, 1, 1),
    ("64->64 @8", 128, 64, 8, 64, 3, 1, 1),
    ("16->32 @32/2", 128, 16, 32, 32, 3, 2, 1),
    ("32->64 @16/2", 128, 32, 16, 64, 3, 2, 1),
    ("seeds 32->64 @26", 64, 32, 26, 64, 3, 1, 0),
    # ResNet-20's first layer and projection shortcuts
    ("3->16 @32", 128, 3, 32, 16, 3, 1, 1),
    ("1x1 16->32 @32/2", 128, 16, 32, 32, 1, 2, 0),
    ("1x1 32->64 @16/2", 128, 32, 16, 64, 1, 2, 0),
]


def _clock_ghz() -> float:
    try:
        with open("/proc/cpuinfo") as f:
            mhz = [float(line.split(":")[1]) for line in f if line.startswith("cpu MHz")]
        return max(mhz) / 1e3 if mhz else 0.0
    except OSError:
        return 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--routes", default="rule,blocked")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--cpu", action="store_true", help="process CPU time instead of wall time")
    ap.add_argument("--peak", type=float, default=None, help="GFLOP/s of one thread's FMA peak")
    ap.add_argument("--only", default=None, help="comma-separated shape names")
    ap.add_argument("--pass", dest="which", default="forward",
                    choices=["forward", "wgrad", "dgrad"])
    ap.add_argument("--step-call", action="store_true",
                    help="backward passes with db and (seeds) the fused ReLU + 2x2 max pool")
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
    print(f"{args.which}: {args.threads} thread(s), {'CPU' if args.cpu else 'wall'} time, "
          f"peak {peak:.1f} "
          f"GFLOP/s, ISA {fastcnn.info().get('isa')}, load average {os.getloadavg()}")
    rng = np.random.default_rng(0)
    for name, n, c, h, k, r, s, pad in SHAPES:
        if args.only and name not in args.only.split(","):
            continue
        x = rng.standard_normal((n, c, h, h), dtype=np.float32)
        w = rng.standard_normal((k, c, r, r), dtype=np.float32) * np.float32(0.1)
        b = rng.standard_normal(k, dtype=np.float32)
        y = ops.conv2d(x, w, b, stride=s, padding=pad)
        flops = 2.0 * y.size * c * r * r
        fns: dict[str, Callable[[], Any]] = {}
        dy = rng.standard_normal(y.shape, dtype=np.float32)
        dy_conv = dy  # PyTorch's twin: the conv output's gradient (its ReLU / pool not timed)
        step_kw: dict[str, Any] = {}
        if args.step_call and args.which != "forward":
            step_kw["bias"] = True  # the layer's call: db with the weight gradient
            if name.startswith("seeds"):
                yr = ops.conv2d(x, w, b, stride=s, padding=pad, relu=True)
                pooled, idx = ops.max_pool2d(yr, 2, return_indices=True)
                step_kw.update(relu_y=yr, pool_indices=idx, pool_size=2)
                dy = rng.standard_normal(pooled.shape, dtype=np.float32)
        for rt in routes:
            if args.which == "forward":
                fns[rt] = lambda x=x, w=w, b=b, s=s, pad=pad: ops.conv2d(x, w, b, stride=s,
                                                                         padding=pad)
            else:
                kw = {"bias": False, **step_kw}
                if args.which == "dgrad":
                    kw["bias"] = False  # the profile's backward-data row: no db
                fns[rt] = lambda x=x, w=w, dy=dy, s=s, pad=pad, kw=kw: ops.conv2d_backward(
                    dy, x, w, stride=s, padding=pad,
                    compute_dx=args.which == "dgrad", compute_dw=args.which == "wgrad", **kw)
        if torch is not None and args.which != "forward":
            tx, tw, tdy = (torch.from_numpy(a) for a in (x, w, dy_conv))
            mask = [args.which == "dgrad", args.which == "wgrad", False]

            def tb(tx: Any = tx, tw: Any = tw, tdy: Any = tdy, s: int = s, pad: int = pad,
                   mask: list[bool] = mask) -> Any:
                return torch.ops.aten.convolution_backward(
                    tdy, tx, tw, None, [s, s], [pad, pad], [1, 1], False, [0, 0], 1, mask)
            fns["torch"] = tb
        elif torch is not None:
            tx, tw, tb = (torch.from_numpy(a) for a in (x, w, b))

            def tf(tx: Any = tx, tw: Any = tw, tb: Any = tb, s: int = s, pad: int = pad) -> Any:
                with torch.no_grad():
                    return torch.nn.functional.conv2d(tx, tw, tb, stride=s, padding=pad)
            fns["torch"] = tf
        times: dict[str, list[float]] = {key: [] for key in fns}
        keys = list(fns)
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
        cells = "  ".join(f"{key}={med[key] * 1e3:7.2f}ms {flops / med[key] / 1e9:6.1f}GF/s "
                          f"{100 * flops / med[key] / 1e9 / peak:4.0f}%" for key in keys)
        ratio = (" ".join(f"torch/{rt}={med['torch'] / med[rt]:.2f}" for rt in routes)
                 if "torch" in med else "")
        print(f"{name:17s} {cells}  {ratio}", flush=True)


if __name__ == "__main__":
    main()
