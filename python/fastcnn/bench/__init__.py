"""The benchmark harness behind ``fastcnn bench``, ``benchmarks/run_cpu.py`` and
``benchmarks/run_cuda.py``.

Times fastcnn's kernels against the NumPy reference (:mod:`fastcnn.reference`) and PyTorch CPU
(when importable) on named shape suites (:mod:`fastcnn.bench.suites`), for every op and pass,
at one thread and at all threads, interleaved round-robin in one process
(:mod:`fastcnn.bench.timing`); then the seeds' CNN training step as a whole and the overhead of
``Sequential.fit`` over the bare ops (:mod:`fastcnn.bench.training`), and the step's peak
memory against PyTorch's (:mod:`fastcnn.bench.memory`). Reports median ms (min,
IQR), GFLOP/s or GB/s, the share of the machine's peak and the speed-ups, as a text table, JSON,
markdown and a PNG chart (:mod:`fastcnn.bench.report`).

``--device cuda`` times fastcnn's CUDA kernels against a CuPy reference
(:mod:`fastcnn.bench.cupy_ref`) and PyTorch's CUDA path on the same suites, with CUDA events
(:mod:`fastcnn.bench.cuda`). The CPU run is :mod:`fastcnn.bench.cpu`; what both share (the
settings, probes, peaks, machine facts, row fields) is :mod:`fastcnn.bench.common`. This module
holds the command line and :func:`run_benchmark`, which picks one of the two.

Use::

    python -m fastcnn.bench --quick                 # under a minute: seeds at batch 64
    python -m fastcnn.bench --suite all --out DIR   # everything, files written to DIR
    fastcnn bench --device cuda --suite all         # the GPU benchmark
    fastcnn bench --profile resnet20 --batch 128    # one step per layer and pass vs PyTorch
    fastcnn bench ...                               # the same options

or from Python: ``doc = fastcnn.bench.run_benchmark(fastcnn.bench.Config(suite="seeds"))``.
Importing this package is cheap: PyTorch and matplotlib are imported only when a run needs them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from .common import Config

__all__ = ["Config", "add_arguments", "config_from_args", "main", "run", "run_benchmark"]

_DESCRIPTION = ("benchmark fastcnn's CPU kernels against the NumPy reference and PyTorch, or "
                "with --device cuda its CUDA kernels against CuPy and PyTorch (ms, GFLOP/s or "
                "GB/s, % of peak, speed-ups)")


def __getattr__(name: str) -> Any:  # lazy: Config pulls in NumPy and the compiled module
    if name == "Config":
        from .common import Config

        return Config
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run_benchmark(cfg: Config, *, progress: TextIO | None = sys.stderr) -> dict[str, Any]:
    """Run the benchmark ``cfg`` describes: the CPU benchmark
    (:func:`fastcnn.bench.cpu.run_cpu_benchmark`) or, for ``device="cuda"``, the GPU benchmark
    (:func:`fastcnn.bench.cuda.run_cuda_benchmark`).

    Args:
        cfg: the settings.
        progress: where to print one line per measured case (None: silent).

    Returns:
        The results document (``schema`` ``fastcnn.bench/1``, or ``fastcnn.bench.cuda/1``
        for the GPU). Ctrl-C stops early and returns what was measured.

    Raises:
        ValueError: a bad setting (unknown device or suite, no case left, CUDA unavailable,
            ...).
    """
    if cfg.device == "cuda":
        from .cuda import run_cuda_benchmark

        return run_cuda_benchmark(cfg, progress=progress)
    if cfg.device != "cpu":
        raise ValueError(f"--device must be cpu or cuda, got {cfg.device!r}")
    if cfg.suite == "resnet":
        from .resnet import run_resnet_benchmark

        return run_resnet_benchmark(cfg, progress=progress)
    from .cpu import run_cpu_benchmark

    return run_cpu_benchmark(cfg, progress=progress)


def _threads(text: str) -> list[int]:
    try:
        vals = [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated list of thread counts such as 1,2, got {text!r}"
        ) from None
    if not vals or any(v < 1 for v in vals):
        raise argparse.ArgumentTypeError(f"thread counts must be >= 1, got {text!r}")
    return list(dict.fromkeys(vals))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``fastcnn bench`` options to ``parser`` (a sub-command parser of the CLI)."""
    g = parser.add_argument_group("what to run")
    g.add_argument("--suite", choices=("seeds", "imagenet", "all", "smoke", "resnet"),
                   default="seeds",
                   help="shape suite (default seeds; all = seeds + imagenet; smoke = tiny "
                        "shapes for tests; resnet = the ResNet-20 training step at batch 128 "
                        "against PyTorch, CPU)")
    g.add_argument("--quick", action="store_true",
                   help="a fast look (under a minute): seeds at batch 64 only, 3 repeats, "
                        "short samples, 4-batch fit epochs")
    g.add_argument("--filter", action="append", default=[], metavar="GLOB",
                   help="keep only cases whose id matches (e.g. 'seeds.b64.conv2.*', "
                        "'*.bwd*', 'train.*'); repeatable")
    g.add_argument("--threads", type=_threads, default=None, metavar="LIST",
                   help="thread counts, e.g. 1,2 (default: 1 and all cores; CPU only)")
    g.add_argument("--isa", choices=("generic", "avx2", "avx512"), default=None,
                   help="run fastcnn's kernels of this ISA (default: the best available; CPU "
                        "only)")
    g.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="cpu (default): the CPU kernels against NumPy and PyTorch CPU; cuda: "
                        "the CUDA kernels against a CuPy reference and PyTorch's CUDA path, "
                        "timed with CUDA events (needs fastcnn built with CUDA, CuPy and a "
                        "GPU; --threads and --isa don't apply)")
    g.add_argument("--no-numpy", action="store_true", help="skip the NumPy reference (CPU)")
    g.add_argument("--no-cupy", action="store_true",
                   help="skip the CuPy reference (--device cuda)")
    g.add_argument("--no-torch", action="store_true", help="skip PyTorch")
    g.add_argument("--no-train", action="store_true",
                   help="skip the whole training step (and the fit overhead)")
    g.add_argument("--no-fit", action="store_true",
                   help="skip the Sequential.fit overhead (CPU only)")
    g.add_argument("--no-memory", action="store_true",
                   help="skip the training step's peak memory (one child process per "
                        "implementation; CPU only)")
    g.add_argument("--list", action="store_true",
                   help="print the selected cases (id, shape, work) and exit")

    t = parser.add_argument_group("timing")
    t.add_argument("--repeats", type=int, default=None,
                   help="samples per implementation (default 15; --quick 3)")
    t.add_argument("--warmup", type=int, default=None,
                   help="untimed calls before the samples, at least 1 (default 2; --quick 1)")
    t.add_argument("--min-sample-ms", type=float, default=None,
                   help="a sample repeats a fast call until it lasts this long (default 10; "
                        "--quick 2)")
    t.add_argument("--numpy-cap", type=float, default=None, metavar="SECONDS",
                   help="a NumPy call slower than this is timed once (single-shot, marked *) "
                        "(default 1.0; --quick 0.25)")
    t.add_argument("--gap-ms", type=float, default=5.0,
                   help="pause after each sample so spinning OpenMP workers park (default 5)")
    t.add_argument("--wait-idle", type=float, default=0.0, metavar="SECONDS",
                   help="before each case, wait up to SECONDS for other processes to use "
                        "< 0.25 cores (shared machines; default 0: don't wait)")
    t.add_argument("--fit-steps", type=int, default=None,
                   help="batches per fit epoch in the overhead measurement (default 16; "
                        "--quick 4)")
    t.add_argument("--peak-gflops", type=float, default=None,
                   help="per-thread FMA peak to use for %% of peak instead of the probe")
    t.add_argument("--seed", type=int, default=0, help="seed of the random inputs")

    o = parser.add_argument_group("output")
    o.add_argument("--out", metavar="DIR", default=None,
                   help="write results.json, results.md and speedup.png into DIR")
    o.add_argument("--name", default="", help="a name recorded in the results")
    o.add_argument("--json", action="store_true",
                   help="print the JSON document to stdout instead of the table")
    o.add_argument("--no-chart", action="store_true", help="don't write the PNG chart")
    o.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    from .profile_cli import add_bench_arguments

    add_bench_arguments(parser)


def config_from_args(args: argparse.Namespace) -> Config:
    """The :class:`~fastcnn.bench.common.Config` for parsed ``fastcnn bench`` options."""
    from .common import Config, default_threads, quick_config, require_cuda

    if args.device == "cuda" and not args.list:
        require_cuda()  # no GPU: the same error as before any other option is looked at
        cpu_only = [opt for opt, given in (("--threads", args.threads is not None),
                                           ("--isa", args.isa is not None)) if given]
        if cpu_only:
            raise ValueError(f"{' and '.join(cpu_only)}: only for the CPU benchmark "
                             "(fastcnn's CPU kernels); leave out with --device cuda")
    cfg = quick_config() if args.quick else Config()
    cfg.suite = args.suite
    cfg.threads = args.threads or default_threads()
    for attr, value in (("repeats", args.repeats), ("warmup", args.warmup),
                        ("numpy_cap_s", args.numpy_cap), ("fit_steps", args.fit_steps)):
        if value is not None:
            setattr(cfg, attr, value)
    if args.min_sample_ms is not None:
        cfg.min_sample_s = args.min_sample_ms / 1e3
    if cfg.fit_steps < 1:
        raise ValueError(f"--fit-steps must be >= 1, got {cfg.fit_steps}")
    cfg.numpy = not args.no_numpy
    cfg.torch = not args.no_torch
    cfg.cupy = not args.no_cupy
    cfg.train = not args.no_train
    cfg.fit = not args.no_fit
    cfg.memory = not args.no_memory
    cfg.filters = list(args.filter)
    cfg.isa = args.isa
    cfg.device = args.device
    cfg.peak_gflops = args.peak_gflops
    cfg.gap_s = max(0.0, args.gap_ms) / 1e3
    cfg.wait_idle_s = max(0.0, args.wait_idle)
    cfg.seed = args.seed
    cfg.name = args.name
    return cfg


def run(args: argparse.Namespace) -> int:
    """Run ``fastcnn bench`` with parsed options; returns the exit status.

    Prints the table (or, with ``--json``, the JSON document) to stdout and progress to stderr;
    with ``--out`` writes the result files. Raises ValueError for a bad option (the CLI turns it
    into one error line and status 2). Status 130 after Ctrl-C, 1 when an implementation failed
    (the GPU benchmark's ``errors``), else 0.
    """
    from . import report

    if getattr(args, "profile", None):
        from .profile_cli import from_bench

        return from_bench(args)
    cfg = config_from_args(args)
    if args.list:
        return _list_cases(cfg)
    doc = run_benchmark(cfg, progress=None if args.quiet else sys.stderr)
    if doc.get("schema") == "fastcnn.bench.resnet/1":
        from pathlib import Path

        from .resnet import table

        if args.out:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            (Path(args.out) / "resnet.json").write_text(report.to_json(doc) + "\n")
        print(report.to_json(doc) if args.json else table(doc))
        return 0
    if args.out:
        written = report.write_results(doc, args.out, chart=not args.no_chart)
        doc["files"] = written
        if not args.quiet:
            for what, path in written.items():
                print(f"{what}: {path}", file=sys.stderr)
    print(report.to_json(doc) if args.json else report.table(doc))
    return 130 if doc.get("interrupted") else 1 if doc.get("errors") else 0


def _list_cases(cfg: Config) -> int:
    from .suites import cases

    for c in cases(cfg.suite, quick=cfg.quick, filters=cfg.filters):
        work = (f"{c.work / 1e9:.3f} GFLOP" if c.unit == "flop"
                else f"{c.work / 2**20:.1f} MiB")
        print(f"{c.id:<34} {c.layer.label + ' ' + c.pass_:<46} {work}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fastcnn.bench [options]``: parse, run, return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m fastcnn.bench", description=_DESCRIPTION)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (ValueError, TypeError, OSError) as e:
        print(f"fastcnn bench: error: {e}", file=sys.stderr)
        return 2
