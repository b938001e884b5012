#!/usr/bin/env python
"""Run fastcnn's GPU benchmark and keep the results.

The same as ``fastcnn bench --device cuda``: fastcnn's CUDA kernels against a CuPy reference
and PyTorch's CUDA path (cuDNN / cuBLAS, TF32 off), timed with CUDA events. Writes
``results.json``, ``results.md``, ``table.txt`` and ``speedup.png`` under
``benchmarks/results/<name>/`` (``<name>`` defaults to a UTC timestamp with ``-cuda``, and
``-quick`` for a quick run) and prints the table. Takes every ``fastcnn bench`` option that
applies to the GPU; the suite defaults to ``all`` here (seeds + imagenet). Needs fastcnn built
with CUDA, CuPy and a GPU. Examples::

    python benchmarks/run_cuda.py --quick
    python benchmarks/run_cuda.py --name h100
    python benchmarks/run_cuda.py --suite imagenet --no-cupy --filter '*.conv*'
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from collections.abc import Sequence

from fastcnn import bench

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options, run the GPU benchmark, write the files; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    bench.add_arguments(parser)
    parser.set_defaults(suite="all", device="cuda")
    args = parser.parse_args(argv)
    if not args.list:
        if not args.name:
            stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
            args.name = stamp + "-cuda" + ("-quick" if args.quick else "")
        if args.out is None:
            args.out = os.path.join(RESULTS, args.name)
    try:
        return bench.run(args)
    except (ValueError, TypeError, OSError) as e:
        print(f"run_cuda.py: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
