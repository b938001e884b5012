#!/usr/bin/env python
"""Time fastcnn.torch's operators against PyTorch's own and print the table.

For each op: through fastcnn.torch on tensors, through fastcnn.ops on NumPy arrays, and
PyTorch's op (median of many calls, round-robin); the "crossing" column is the cost of going
through PyTorch's dispatcher and autograd into fastcnn (fastcnn.torch - fastcnn.ops).

``--crossing`` times the tensor crossing alone instead (fastcnn._arrays.call_converted, which
both fastcnn.ops and fastcnn.torch use): ``ops.relu`` on a 16-element CPU tensor and through
``fastcnn.torch.relu``, against ``ops.relu`` on the NumPy array (the op itself) and against the
floor, the op plus the two unavoidable calls ``t.numpy()`` and ``torch.from_numpy``;
interleaved in one process (the machine may be loaded: compare the columns, not runs). Needs
torch (``pip install "fastcnn[torch]"``). Examples::

    python benchmarks/run_torch_ops.py
    python benchmarks/run_torch_ops.py --threads 1 --quick
    python benchmarks/run_torch_ops.py --crossing
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from fastcnn.bench.torch_ops import format_table, torch_ops_benchmark


def crossing_benchmark(rounds: int = 41, calls: int = 2000) -> dict[str, float]:
    """Median microseconds per call of the crossing cases (module docstring), interleaved:
    each round runs every case ``calls`` times, in an order rotated every round.

    Returns:
        ``{case: us}`` plus ``"crossing_over_op_us"`` (ops.relu(tensor) - ops.relu(array)) and
        ``"crossing_over_floor_us"`` (ops.relu(tensor) - the floor).
    """
    import torch

    import fastcnn.torch as ft
    from fastcnn import ops

    t = torch.randn(16)
    a = t.numpy()
    raw = ops.relu.__wrapped__
    cases: dict[str, Callable[[], Any]] = {
        "ops.relu(array)": lambda: ops.relu(a),
        "floor: from_numpy(op(t.numpy()))": lambda: torch.from_numpy(raw(t.numpy())),
        "ops.relu(tensor)": lambda: ops.relu(t),
        "fastcnn.torch.relu(tensor)": lambda: ft.relu(t),
    }
    names = list(cases)
    samples: dict[str, list[float]] = {k: [] for k in names}
    for fn in cases.values():
        fn()
    enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                fn = cases[name]
                start = time.perf_counter()
                for _ in range(calls):
                    fn()
                samples[name].append((time.perf_counter() - start) / calls * 1e6)
    finally:
        if enabled:
            gc.enable()
    med = {k: statistics.median(v) for k, v in samples.items()}
    med["crossing_over_op_us"] = med["ops.relu(tensor)"] - med["ops.relu(array)"]
    med["crossing_over_floor_us"] = med["ops.relu(tensor)"] - med[names[1]]
    return med


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options, run the benchmark, print the table (and the rows as JSON with
    ``--json``); returns the exit status."""
    parser = argparse.ArgumentParser(prog="run_torch_ops.py",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for fastcnn and torch (default: fastcnn's)")
    parser.add_argument("--repeats", type=int, default=31, help="rounds (default 31)")
    parser.add_argument("--quick", action="store_true", help="batch 8 instead of 64")
    parser.add_argument("--crossing", action="store_true",
                        help="time the tensor crossing alone (see the module docstring)")
    parser.add_argument("--json", action="store_true", help="also print the rows as JSON")
    args = parser.parse_args(argv)
    if args.crossing:
        med = crossing_benchmark(rounds=args.repeats)
        for k, v in med.items():
            print(f"{k:36s} {v:7.2f} us")
        print(f"(median of {args.repeats} interleaved rounds; load average "
              f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs)")
        if args.json:
            print(json.dumps(med, indent=2))
        return 0
    rows = torch_ops_benchmark(threads=args.threads, repeats=args.repeats, quick=args.quick)
    print(format_table(rows))
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
