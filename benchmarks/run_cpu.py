#!/usr/bin/env python
"""Run fastcnn's CPU benchmark and keep the results.

Writes ``results.json``, ``results.md``, ``table.txt`` and ``speedup.png`` under
``benchmarks/results/<name>/`` (``<name>`` defaults to a UTC timestamp, with ``-quick`` for a
quick run) and prints the table. Takes every ``fastcnn bench`` option; the suite defaults to
``all`` here (seeds + imagenet: several minutes on 2 cores). Examples::

    python benchmarks/run_cpu.py --quick
    python benchmarks/run_cpu.py --name sapphire-rapids-2c
    python benchmarks/run_cpu.py --suite seeds --threads 1 --no-numpy
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from collections.abc import Sequence

from fastcnn import bench

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def main(argv: Sequence[str] | None = None, *, device: str = "cpu",
         description: str | None = None) -> int:
    """Parse the options, run the benchmark on ``device`` (the default of ``--device``), write
    the files; returns the exit status. ``benchmarks/run_cuda.py`` calls this with "cuda"."""
    prog = "run_cpu.py" if device == "cpu" else f"run_{device}.py"
    parser = argparse.ArgumentParser(prog=prog,
                                     description=description or __doc__.splitlines()[0])
    bench.add_arguments(parser)
    parser.set_defaults(suite="all", device=device)
    args = parser.parse_args(argv)
    if not args.list:
        if not args.name:
            stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
            tag = "" if args.device == "cpu" else f"-{args.device}"
            args.name = stamp + tag + ("-quick" if args.quick else "")
        if args.out is None:
            args.out = os.path.join(RESULTS, args.name)
    try:
        return bench.run(args)
    except (ValueError, TypeError, OSError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
