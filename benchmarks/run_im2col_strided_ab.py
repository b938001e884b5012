"""A/B of the implicit-GEMM packers' strided gathers on ResNet-20's strided convolutions.

Two builds of the CPU module in one process: the working tree's fastcnn._cpu ("new") and an
older _cpu .so given by --old (e.g. a copy of the module built before a change, placed in a
directory of its own), with PyTorch's same pass alongside. Each pass (the forward, and the
weight gradient: dw + db) of each shape is timed old / new / torch interleaved, the order of
old and new reversed every other round; medians of process CPU time, GFLOP/s (2*N*K*C*R*S*P*Q
per pass) and the ratios. --route gemm forces the GEMM form (the packers' path) for every pass
(the 3x3/2 weight gradient takes the wide form under the rule, so its packer is unused there).

    python benchmarks/run_im2col_strided_ab.py --old /tmp/old/_cpu.cpython-311-x86_64-linux-gnu.so \
        --repeats 21 --route gemm
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from fastcnn import _cpu

# name, C, H (= W), K, kernel, stride, padding
SHAPES = [
    ("3x3 16->32 @32/2", 16, 32, 32, 3, 2, 1),
    ("3x3 32->64 @16/2", 32, 16, 64, 3, 2, 1),
    ("1x1 16->32 @32/2", 16, 32, 32, 1, 2, 0),
    ("1x1 32->64 @16/2", 32, 16, 64, 1, 2, 0),
]


def _load_old(path: str) -> Any:
    """The .so at `path` as a second module named _cpu (its own package name, same init)."""
    spec = importlib.util.spec_from_file_location("fastcnn_old_build._cpu", path)
    assert spec is not None and spec.loader is not None, f"--old {path}: not a module"
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _passes(m: Any, x: np.ndarray, w: np.ndarray, b: np.ndarray, dy: np.ndarray, s: int,
            p: int) -> dict[str, Callable[[], Any]]:
    """One module's forward and weight gradient (x (N, C, H, W), w (K, C, R, R))."""
    return {
        "fwd": lambda: m.conv2d(x, w, b, s, s, p, p, p, p, 1, 1, 1),
        "wgrad": lambda: m.conv2d_backward(dy, x, w, s, s, p, p, p, p, 1, 1, 1,
                                           compute_dx=False),
    }


def _torch_passes(torch: Any, x: np.ndarray, w: np.ndarray, b: np.ndarray, dy: np.ndarray,
                  s: int, p: int) -> dict[str, Callable[[], Any]]:
    tx, tw, tb, tdy = (torch.from_numpy(a) for a in (x, w, b, dy))

    def fwd() -> Any:
        with torch.no_grad():
            return torch.nn.functional.conv2d(tx, tw, tb, stride=s, padding=p)

    def wgrad() -> Any:
        return torch.ops.aten.convolution_backward(tdy, tx, tw, [w.shape[0]], [s, s], [p, p],
                                                   [1, 1], False, [0, 0], 1,
                                                   [False, True, True])

    return {"fwd": fwd, "wgrad": wgrad}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", required=True, help="path of the older _cpu .so")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--route", default="", help="FASTCNN_CONV_ROUTE for both builds")
    args = ap.parse_args()
    if args.route:
        os.environ["FASTCNN_CONV_ROUTE"] = args.route
    old = _load_old(args.old)
    mods = {"old": old, "new": _cpu}
    for m in mods.values():
        m.set_num_threads(1)
    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:
        torch = None
    rng = np.random.default_rng(0)
    n = args.batch
    print(f"batch {n}, 1 thread, CPU time, route {args.route or 'rule'}, isa {_cpu.isa()}, "
          f"load average {os.getloadavg()}")
    for name, c, h, k, r, s, p in SHAPES:
        x = rng.standard_normal((n, c, h, h), dtype=np.float32)
        w = rng.standard_normal((k, c, r, r), dtype=np.float32) * np.float32(0.1)
        b = np.zeros(k, np.float32)
        q = (h + 2 * p - r) // s + 1
        dy = rng.standard_normal((n, k, q, q), dtype=np.float32)
        flops = 2.0 * n * k * c * r * r * q * q
        fns = {tag: _passes(m, x, w, b, dy, s, p) for tag, m in mods.items()}
        if torch is not None:
            fns["torch"] = _torch_passes(torch, x, w, b, dy, s, p)
        for what in ("fwd", "wgrad"):
            ref = fns["old"][what]()
            got = fns["new"][what]()
            same = all(np.array_equal(a.view(np.uint32), g.view(np.uint32))
                       for a, g in zip(np.atleast_1d(ref) if what == "fwd" else ref[1:],
                                       np.atleast_1d(got) if what == "fwd" else got[1:],
                                       strict=True))
            times: dict[str, list[float]] = {tag: [] for tag in fns}
            for it in range(args.repeats + 1):  # round 0: warm-up
                order = ["old", "new"] if it % 2 == 0 else ["new", "old"]
                for tag in order + (["torch"] if torch is not None else []):
                    t = time.process_time()
                    fns[tag][what]()
                    if it:
                        times[tag].append(time.process_time() - t)
            med = {tag: float(np.median(v)) for tag, v in times.items()}
            gf = {tag: flops / v / 1e9 for tag, v in med.items()}
            cells = " ".join(f"{tag} {med[tag] * 1e3:7.2f} ms {gf[tag]:5.1f} GF/s" for tag in med)
            rt = f" new/old x{med['old'] / med['new']:.2f}"
            if "torch" in med:
                rt += f" | vs torch: old x{med['torch'] / med['old']:.2f} " \
                      f"new x{med['torch'] / med['new']:.2f}"
            print(f"{name:18s} {what:5s} {cells}{rt} bitwise={'yes' if same else 'NO'}",
                  flush=True)


if __name__ == "__main__":
    main()
