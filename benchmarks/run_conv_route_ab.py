"""A/B of the convolution routing (csrc/cpu/conv2d_route.cpp) on ResNet-20's layer shapes.

Each pass (forward, backward-data, weight gradient) of each shape is timed under several values
of the private FASTCNN_CONV_ROUTE variable, interleaved in one process (the order reversed
every other round), with PyTorch's same pass alongside; medians in ms. "legacy" is the routing
before the shape rule (the wide grid wherever applicable, one image per grid / GEMM problem),
"rule" the shape rule (the variable unset), "wide:B" / "gemm:B" force a form and image count.

    python benchmarks/run_conv_route_ab.py --routes legacy,rule --threads 1 --repeats 11 --cpu

--cpu times process CPU time instead of wall time (steadier on a loaded machine; with several
threads set OMP_WAIT_POLICY=PASSIVE so that idle threads don't spin into it). --seeds: the
seeds' CNN shapes (1->32 on 28x28, 32->64 on 26x26, batch 64) instead.
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

# name, C, H (= W), K, kernel, stride, padding
RESNET = [
    ("16->16 @32", 16, 32, 16, 3, 1, 1),
    ("32->32 @16", 32, 16, 32, 3, 1, 1),
    ("64->64 @8", 64, 8, 64, 3, 1, 1),
    ("16->32 @32/2", 16, 32, 32, 3, 2, 1),
    ("32->64 @16/2", 32, 16, 64, 3, 2, 1),
    ("1x1 16->32 /2", 16, 32, 32, 1, 2, 0),
    ("1x1 32->64 /2", 32, 16, 64, 1, 2, 0),
]
SEEDS = [("seeds 1->32 @28", 1, 28, 32, 3, 1, 0), ("seeds 32->64 @26", 32, 26, 64, 3, 1, 0)]


def _passes(x: np.ndarray, w: np.ndarray, b: np.ndarray, dy: np.ndarray, s: int,
            pad: int) -> dict[str, Callable[[], Any]]:
    """fastcnn's three passes of one convolution (x (N, C, H, W), w (K, C, R, R))."""
    return {
        "fwd": lambda: ops.conv2d(x, w, b, stride=s, padding=pad),
        "bwd_data": lambda: ops.conv2d_backward(dy, x, w, stride=s, padding=pad,
                                                compute_dw=False, bias=False),
        "bwd_weights": lambda: ops.conv2d_backward(dy, x, w, stride=s, padding=pad,
                                                   compute_dx=False),
    }


def _torch_passes(torch: Any, x: np.ndarray, w: np.ndarray, b: np.ndarray, dy: np.ndarray,
                  s: int, pad: int) -> dict[str, Callable[[], Any]]:
    """PyTorch's same passes (aten.convolution_backward with the matching output mask)."""
    tx, tw, tb, tdy = (torch.from_numpy(a) for a in (x, w, b, dy))
    conv_bwd = torch.ops.aten.convolution_backward
    k = [w.shape[0]]

    def bwd(mask: list[bool]) -> Callable[[], Any]:
        return lambda: conv_bwd(tdy, tx, tw, k, [s, s], [pad, pad], [1, 1], False, [0, 0], 1,
                                mask)

    def fwd() -> Any:
        with torch.no_grad():
            return torch.nn.functional.conv2d(tx, tw, tb, stride=s, padding=pad)

    return {"fwd": fwd, "bwd_data": bwd([True, False, False]),
            "bwd_weights": bwd([False, True, True])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--routes", default="legacy,rule")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--batch", type=int, default=None, help="default 128 (seeds: 64)")
    ap.add_argument("--cpu", action="store_true", help="process CPU time instead of wall time")
    ap.add_argument("--seeds", action="store_true")
    args = ap.parse_args()
    routes = args.routes.split(",")
    clock = time.process_time if args.cpu else time.perf_counter
    fastcnn.set_num_threads(args.threads)
    try:
        import torch
        torch.set_num_threads(args.threads)
    except ImportError:
        torch = None
    shapes = SEEDS if args.seeds else RESNET
    n = args.batch or (64 if args.seeds else 128)
    rng = np.random.default_rng(0)
    print(f"batch {n}, {args.threads} thread(s), {'CPU' if args.cpu else 'wall'} time, "
          f"load average {os.getloadavg()}")

    def timed(f: Callable[[], Any]) -> float:
        t = clock()
        f()
        return (clock() - t) * 1e3

    for name, c, h, k, r, s, pad in shapes:
        x = rng.standard_normal((n, c, h, h), dtype=np.float32)
        w = rng.standard_normal((k, c, r, r), dtype=np.float32) * np.float32(0.1)
        b = np.zeros(k, np.float32)
        dy = rng.standard_normal(ops.conv2d(x, w, b, stride=s, padding=pad).shape,
                                 dtype=np.float32)
        fns = _passes(x, w, b, dy, s, pad)
        tfns = _torch_passes(torch, x, w, b, dy, s, pad) if torch is not None else {}
        for what, f in fns.items():
            times: dict[str, list[float]] = {rt: [] for rt in routes}
            ttimes: list[float] = []
            for it in range(args.repeats + 1):  # round 0: warm-up
                for rt in routes if it % 2 == 0 else routes[::-1]:
                    if rt == "rule":
                        os.environ.pop("FASTCNN_CONV_ROUTE", None)
                    else:
                        os.environ["FASTCNN_CONV_ROUTE"] = rt
                    t = timed(f)
                    if it:
                        times[rt].append(t)
                if tfns:
                    t = timed(tfns[what])
                    if it:
                        ttimes.append(t)
            os.environ.pop("FASTCNN_CONV_ROUTE", None)
            med = {rt: float(np.median(v)) for rt, v in times.items()}
            tmed = float(np.median(ttimes)) if ttimes else float("nan")
            cells = " ".join(f"{rt}={med[rt]:7.2f}" for rt in routes)
            ratios = " ".join(f"x{rt}={tmed / med[rt]:.2f}" for rt in routes)
            print(f"{name:18s} {what:11s} {cells} torch={tmed:7.2f}  vs torch: {ratios}",
                  flush=True)


if __name__ == "__main__":
    main()
