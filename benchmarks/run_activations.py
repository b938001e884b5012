#!/usr/bin/env python
"""Time the activation family (sigmoid, tanh, leaky_relu, gelu, gelu-tanh, silu; forward and
backward) on a large float32 array against the machine's copy bandwidth and PyTorch CPU.

Rates are bytes moved per second (forward 8 bytes per element: x read, y written; backward 12:
dy and x / y read, dx written), best of ``--repeats`` calls, on one array of ``--elements``
floats (default 2^24 = 64 MB: far out of cache). ``copy`` is ``fastcnn._cpu.probe_bandwidth``
(a parallel copy, read + written) on the same threads. Columns: fastcnn allocating its result
(as PyTorch does), fastcnn into a preallocated ``out=`` (no page faults), their percentage of
the copy bandwidth, PyTorch (torch.sigmoid / tanh / nn.functional.*, backward: the ATen kernels
autograd calls) and fastcnn's speed-up over it. Needs torch for the last columns. Examples::

    python benchmarks/run_activations.py
    python benchmarks/run_activations.py --threads 1 --elements 4194304
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from fastcnn import _cpu, ops


def best(fn: Callable[[], Any], repeats: int) -> float:
    """The fastest of ``repeats`` calls (after one warm-up), in seconds."""
    fn()
    t = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        t = min(t, time.perf_counter() - t0)
    return t


def cases(x: np.ndarray, dy: np.ndarray, out: np.ndarray, torch: Any) -> list[tuple[Any, ...]]:
    """(name, pass, bytes per element, fastcnn fn, fastcnn out= fn, torch fn or None)."""
    y_sig, y_tanh = ops.sigmoid(x), ops.tanh(x)
    rows: list[tuple[Any, ...]] = []
    tx = tdy = ty_sig = ty_tanh = None
    if torch is not None:
        tx, tdy = torch.from_numpy(x), torch.from_numpy(dy)
        ty_sig, ty_tanh = torch.from_numpy(y_sig), torch.from_numpy(y_tanh)
    F = torch.nn.functional if torch is not None else None
    aten = torch.ops.aten if torch is not None else None

    def t(f: Callable[[], Any]) -> Callable[[], Any] | None:
        return f if torch is not None else None

    rows += [
        ("sigmoid", "fwd", 8, lambda: ops.sigmoid(x), lambda: ops.sigmoid(x, out=out),
         t(lambda: torch.sigmoid(tx))),
        ("sigmoid", "bwd", 12, lambda: ops.sigmoid_backward(dy, y_sig),
         lambda: ops.sigmoid_backward(dy, y_sig, out=out),
         t(lambda: aten.sigmoid_backward(tdy, ty_sig))),
        ("tanh", "fwd", 8, lambda: ops.tanh(x), lambda: ops.tanh(x, out=out),
         t(lambda: torch.tanh(tx))),
        ("tanh", "bwd", 12, lambda: ops.tanh_backward(dy, y_tanh),
         lambda: ops.tanh_backward(dy, y_tanh, out=out),
         t(lambda: aten.tanh_backward(tdy, ty_tanh))),
        ("leaky_relu", "fwd", 8, lambda: ops.leaky_relu(x), lambda: ops.leaky_relu(x, out=out),
         t(lambda: F.leaky_relu(tx, 0.01))),
        ("leaky_relu", "bwd", 12, lambda: ops.leaky_relu_backward(dy, x),
         lambda: ops.leaky_relu_backward(dy, x, out=out),
         t(lambda: aten.leaky_relu_backward(tdy, tx, 0.01, False))),
    ]
    for approx in ("none", "tanh"):
        name = "gelu" if approx == "none" else "gelu_tanh"
        rows += [
            (name, "fwd", 8, lambda a=approx: ops.gelu(x, a),
             lambda a=approx: ops.gelu(x, a, out=out),
             t(lambda a=approx: F.gelu(tx, approximate=a))),
            (name, "bwd", 12, lambda a=approx: ops.gelu_backward(dy, x, a),
             lambda a=approx: ops.gelu_backward(dy, x, a, out=out),
             t(lambda a=approx: aten.gelu_backward(tdy, tx, approximate=a))),
        ]
    rows += [
        ("silu", "fwd", 8, lambda: ops.silu(x), lambda: ops.silu(x, out=out),
         t(lambda: F.silu(tx))),
        ("silu", "bwd", 12, lambda: ops.silu_backward(dy, x),
         lambda: ops.silu_backward(dy, x, out=out),
         t(lambda: aten.silu_backward(tdy, tx))),
    ]
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options, time every case, print the table; returns the exit status."""
    parser = argparse.ArgumentParser(prog="run_activations.py",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for fastcnn and torch (default: fastcnn's)")
    parser.add_argument("--elements", type=int, default=1 << 24, help="array length")
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per case")
    args = parser.parse_args(argv)
    if args.threads:
        _cpu.set_num_threads(args.threads)
    threads = _cpu.num_threads()
    try:
        import torch
        torch.set_num_threads(threads)
    except ImportError:
        torch = None
    rng = np.random.default_rng(0)
    n = args.elements
    x = rng.standard_normal(n, dtype=np.float32) * np.float32(3)
    dy = rng.standard_normal(n, dtype=np.float32)
    out = np.zeros(n, np.float32)
    copy = _cpu.probe_bandwidth(max(8 * n, 1 << 20), threads)
    print(f"isa {_cpu.isa()}, {threads} thread(s), {n} elements ({4 * n / 2**20:.0f} MiB per "
          f"array); copy bandwidth {copy:.1f} GB/s (read + written)")
    head = (f"{'op':<11}{'pass':<5}{'fastcnn':>9}{'out=':>9}{'%copy':>7}{'(out=)':>8}"
            f"{'torch':>9}{'speed-up':>10}")
    print(head + "\n" + "-" * len(head))
    for name, p, bpe, f, fo, tf in cases(x, dy, out, torch):
        gb = bpe * n / 1e9
        r, ro = gb / best(f, args.repeats), gb / best(fo, args.repeats)
        tr = gb / best(tf, args.repeats) if tf is not None else float("nan")
        print(f"{name:<11}{p:<5}{r:>9.1f}{ro:>9.1f}{100 * r / copy:>6.0f}%{100 * ro / copy:>7.0f}%"
              f"{tr:>9.1f}{r / tr:>9.2f}x")
    print("(GB/s; %copy: of the copy bandwidth; speed-up: fastcnn / torch, both allocating)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
