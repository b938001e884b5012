"""Command line of the step profile (:mod:`fastcnn.bench.profile`): ``benchmarks/profile_step.py``
and ``fastcnn bench --profile MODEL`` parse and run through here."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["add_arguments", "add_bench_arguments", "from_bench", "main", "run"]


def _threads(text: str) -> list[int]:
    try:
        out = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        out = []
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"expected thread counts like 1,2, got {text!r}")
    return out


_BATCH_HELP = "batch size (default 128 for ResNets, 64 for the others)"
_TARGET_HELP = "a speed-up over PyTorch to size the gap to (e.g. 2.0, 1.5)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``benchmarks/profile_step.py``."""
    p.add_argument("--model", default="resnet20",
                   help="a fastcnn.models name (seeds_cnn, resnet20, ...; default resnet20)")
    p.add_argument("--batch", type=int, default=None, help=_BATCH_HELP)
    p.add_argument("--threads", type=_threads, default=[1, 2], metavar="LIST",
                   help="thread counts, comma-separated (default 1,2)")
    p.add_argument("--repeats", type=int, default=7,
                   help="interleaved rounds (medians over them; default 7)")
    p.add_argument("--min-sample-ms", type=float, default=5.0,
                   help="a sample repeats a call until it lasts this long (default 5)")
    p.add_argument("--target", type=float, default=None, help=_TARGET_HELP)
    p.add_argument("--peak-gflops", type=float, default=None,
                   help="one thread's FMA peak for %% of peak (default: probed)")
    p.add_argument("--no-torch", action="store_true", help="fastcnn only")
    p.add_argument("--json", metavar="FILE", default=None, help="also write the document")


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """``fastcnn bench --profile MODEL [--batch N] [--target X]`` (with the benchmark's
    ``--threads``, ``--repeats``, ``--min-sample-ms``, ``--no-torch``, ``--out``)."""
    g = parser.add_argument_group("step profile")
    g.add_argument("--profile", metavar="MODEL", default=None,
                   help="profile a fastcnn.models network's training step per layer and pass "
                        "against PyTorch instead (benchmarks/profile_step.py)")
    g.add_argument("--batch", type=int, default=None, help="with --profile: " + _BATCH_HELP)
    g.add_argument("--target", type=float, default=None, help="with --profile: " + _TARGET_HELP)


def from_bench(args: argparse.Namespace) -> int:
    """Run the profile from parsed ``fastcnn bench`` options (``--out DIR``: also
    ``DIR/profile.json``; ``--json``: print the document instead of the table)."""
    if getattr(args, "device", "cpu") != "cpu":
        raise ValueError("--profile: the step profile runs on the CPU; leave out --device "
                         f"{args.device}")
    json_path = None
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        json_path = str(Path(args.out) / "profile.json")
    return run(args.profile, args.batch, args.threads or [1, 2], args.repeats or 7,
               not args.no_torch, args.target,
               args.min_sample_ms if args.min_sample_ms is not None else 5.0, json_path,
               args.peak_gflops, print_json=bool(getattr(args, "json", False)))


def run(model: str, batch: int | None, threads: list[int], repeats: int, use_torch: bool,
        target: float | None, min_sample_ms: float, json_path: str | None,
        peak_gflops: float | None = None, out: Any = None, print_json: bool = False) -> int:
    """Profile and print the table (``print_json``: the document instead; see
    :func:`fastcnn.bench.profile.profile_step`); 0 on success."""
    from .profile import profile_step
    from .profile_report import table

    torch = None
    if use_torch:
        try:
            import torch
        except ImportError as e:
            print(f"PyTorch not importable ({e}): fastcnn rows only", file=sys.stderr)
    if batch is None:
        batch = 128 if model.startswith("resnet") else 64
    doc = profile_step(model, batch, threads=threads, rounds=repeats,
                       min_sample_s=min_sample_ms / 1e3, torch=torch, peak_gflops=peak_gflops)
    print(json.dumps(doc, indent=1) if print_json else table(doc, target),
          file=out if out is not None else sys.stdout)
    if json_path:
        Path(json_path).write_text(json.dumps(doc, indent=1) + "\n")
    return 0


def main(argv: Sequence[str] | None = None, *, prog: str = "profile_step.py") -> int:
    """``benchmarks/profile_step.py``'s entry point."""
    p = argparse.ArgumentParser(prog=prog, description=(__doc__ or "").splitlines()[0])
    add_arguments(p)
    a = p.parse_args(argv)
    try:
        return run(a.model, a.batch, a.threads, a.repeats, not a.no_torch, a.target,
                   a.min_sample_ms, a.json, a.peak_gflops)
    except (ValueError, TypeError, OSError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
