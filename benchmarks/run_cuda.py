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

import os
import sys
from collections.abc import Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run_cpu  # the shared driver: same options, names and files


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options, run the GPU benchmark, write the files; returns the exit status."""
    return run_cpu.main(argv, device="cuda", description=__doc__.splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
