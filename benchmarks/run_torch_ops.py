#!/usr/bin/env python
"""Time fastcnn.torch's operators against PyTorch's own and print the table.

For each op: through fastcnn.torch on tensors, through fastcnn.ops on NumPy arrays, and
PyTorch's op (median of many calls, round-robin); the "crossing" column is the cost of going
through PyTorch's dispatcher and autograd into fastcnn (fastcnn.torch - fastcnn.ops). Needs
torch (``pip install "fastcnn[torch]"``). Examples::

    python benchmarks/run_torch_ops.py
    python benchmarks/run_torch_ops.py --threads 1 --quick
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from fastcnn.bench.torch_ops import format_table, torch_ops_benchmark


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options, run the benchmark, print the table (and the rows as JSON with
    ``--json``); returns the exit status."""
    parser = argparse.ArgumentParser(prog="run_torch_ops.py",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for fastcnn and torch (default: fastcnn's)")
    parser.add_argument("--repeats", type=int, default=31, help="rounds (default 31)")
    parser.add_argument("--quick", action="store_true", help="batch 8 instead of 64")
    parser.add_argument("--json", action="store_true", help="also print the rows as JSON")
    args = parser.parse_args(argv)
    rows = torch_ops_benchmark(threads=args.threads, repeats=args.repeats, quick=args.quick)
    print(format_table(rows))
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
