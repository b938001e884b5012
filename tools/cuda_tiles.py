#!/usr/bin/env python
"""The CUDA GEMM tile rule's choice for every GPU case of the benchmark suites (issue 14, item 4).

For each convolution and dense layer of the seeds' CNN (batch 64 and 256), the ImageNet suite
and ResNet-20 at batch 128 (CIFAR shapes), and for each of its passes (forward, backward-data:
conv2d's dcol GEMMs / dense dx, backward-weights), this prints the GEMM(s) the pass launches --
groups G, M x N, reduction K, the split-K (splits x chunk), the block tile -- and the grid's
blocks and waves on a GPU of ``--sms`` multiprocessors (132: an H100 / H200 SXM), counting
``blocks_per_sm`` = 2 resident blocks per SM (the GEMM kernels' ``__launch_bounds__`` minimum)::

    waves = blocks / (blocks_per_sm * sms)      eff = blocks / (ceil(waves) * blocks_per_sm * sms)

``eff`` is the share of the waves' block slots the grid fills (a tail wave counts whole). A
case ``fills`` the GPU when its blocks reach one full wave, or else it uses split-K; the
GEMMs that neither do are listed with their size (tiny GEMMs are latency-bound: see
csrc/cuda/gemm_rule.h).

No Python copy of the rule: the rows come from the compiled CUDA module itself
(``fastcnn._cuda.Conv2dPlan.gemms`` / ``LinearPlan.gemms``, which call the split and tile
functions of ``csrc/cuda/gemm_rule.h`` through the same descriptor functions the launchers in
conv2d.cu / linear.cu use). It needs no GPU, only the built module (a CUDA build imports
without a GPU; or the CPU emulator's)::

    python tools/cuda_tiles.py [--sms 132] [--suite seeds imagenet resnet] [--json out.json]
    RUN="tools/cuda_tiles.py" PYTHON=python bash tools/cuda_emu/run.sh     # the emulator's
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

PASSES = ("forward", "backward_data", "backward_weights")
SUITES = ("seeds", "imagenet", "resnet")
RESNET_BATCH = 128


@dataclass(frozen=True)
class GemmCase:
    """One convolution or dense layer shape: ``plan`` holds the plan constructor's arguments
    (Conv2dPlan: x_shape, w_shape, b_shape, the geometry; LinearPlan: x_shape, w_shape,
    b_shape); ``layers``: how many layers of the network have this shape."""

    suite: str
    name: str
    op: str  # "conv2d" or "linear"
    plan: tuple[Any, ...]
    label: str
    layers: int = 1


def _conv_case(suite: str, name: str, N: int, C: int, H: int, W: int, K: int, R: int, S: int,
               stride: tuple[int, int], pads: tuple[int, int, int, int],
               dilation: tuple[int, int] = (1, 1), groups: int = 1, label: str = "",
               layers: int = 1) -> GemmCase:
    plan = ((N, C, H, W), (K, C // groups, R, S), (K,), stride[0], stride[1], *pads,
            dilation[0], dilation[1], groups)
    return GemmCase(suite, name, "conv2d", plan, label or name, layers)


def _dense_case(suite: str, name: str, N: int, fin: int, fout: int, label: str = "",
                layers: int = 1) -> GemmCase:
    return GemmCase(suite, name, "linear", ((N, fin), (fout, fin), (fout,)), label or name,
                    layers)


def suite_cases(suite: str) -> list[GemmCase]:
    """The convolution and dense layers of ``suite`` (``seeds``, ``imagenet``: the benchmark
    suites of :mod:`fastcnn.bench.suites`; ``resnet``: ResNet-20's distinct layer shapes at
    batch 128, from :func:`fastcnn.models.resnet`)."""
    if suite == "resnet":
        return _resnet_cases()
    from fastcnn.bench.suites import SUITES as BENCH

    out = []
    for lay in BENCH[suite]:
        d = lay.d
        if lay.op == "conv2d":
            p = d["pad"]
            out.append(_conv_case(suite, lay.name, d["N"], d["C"], d["H"], d["W"], d["K"],
                                  d["R"], d["S"], (d["stride"], d["stride"]), (p, p, p, p),
                                  label=lay.label))
        elif lay.op == "linear":
            out.append(_dense_case(suite, lay.name, d["N"], d["fin"], d["fout"], lay.label))
    return out


def _resnet_cases(depth: int = 20, batch: int = RESNET_BATCH) -> list[GemmCase]:
    from fastcnn._geometry import conv_padding
    from fastcnn.layers import Conv2D, Dense
    from fastcnn.models import resnet

    model = resnet(depth, (3, 32, 32), 10, seed=0)
    seen: dict[tuple[Any, ...], GemmCase] = {}
    for lay in model.layers:
        if isinstance(lay, Conv2D):
            C, H, W = lay.input_shape
            R, S = lay.kernel_size
            pads = conv_padding(lay.padding, H, W, R, S, lay.strides, lay.dilation_rate)
            sh = lay.strides[0]
            label = (f"conv {C}->{lay.filters} {R}x{S}" + (f" s{sh}" if sh > 1 else "")
                     + f" @{H}x{W} N={batch}")
            case = _conv_case("resnet", label, batch, C, H, W, lay.filters, R, S, lay.strides,
                              pads, lay.dilation_rate, lay.groups, label)
        elif isinstance(lay, Dense):
            (fin,) = lay.input_shape
            label = f"dense {fin}->{lay.units} N={batch}"
            case = _dense_case("resnet", label, batch, fin, lay.units, label)
        else:
            continue
        prev = seen.get(case.plan)
        seen[case.plan] = case if prev is None else GemmCase(
            prev.suite, prev.name, prev.op, prev.plan, prev.label, prev.layers + 1)
    return list(seen.values())


def rows(cases: Iterable[GemmCase], sms: int = 132, cuda: Any = None) -> list[dict[str, Any]]:
    """One row per GEMM launch of every pass of ``cases`` on a GPU of ``sms`` SMs: the plan's
    ``gemms`` dict (what, count, G, M, N, K, splits, chunk, tile, bm, bn, blocks,
    blocks_per_sm, sms) plus suite, layer, pass, waves, eff, fills, mflop."""
    if cuda is None:
        from fastcnn import _native

        try:
            cuda = _native.cuda()
        except ImportError as e:
            raise RuntimeError("fastcnn's CUDA module is not built here (a CUDA build, which "
                               "needs no GPU to import, or the emulator's: "
                               "tools/cuda_emu/run.sh)") from e
    out = []
    for case in cases:
        plan = (cuda.Conv2dPlan(*case.plan) if case.op == "conv2d"
                else cuda.LinearPlan(*case.plan))
        for pass_ in PASSES:
            for g in plan.gemms(pass_, sms):
                slots = g["blocks_per_sm"] * g["sms"]
                waves = g["blocks"] / slots
                eff = g["blocks"] / (max(math.ceil(waves), 1) * slots)
                fills = ("wave" if g["blocks"] >= slots else "split" if g["splits"] > 1
                         else "no")
                mflop = 2 * g["count"] * g["G"] * g["M"] * g["N"] * g["K"] / 1e6
                out.append({"suite": case.suite, "layer": case.label, "layers": case.layers,
                            "pass": pass_, **g, "waves": waves, "eff": eff, "fills": fills,
                            "mflop": mflop})
    return out


_SHORT = {"forward": "fwd", "backward_data": "data", "backward_weights": "wgt"}


def table(rs: list[dict[str, Any]]) -> str:
    """The rows as a markdown table."""
    head = ("| suite | layer | pass | GEMM launches | G | M x N x K | splits x chunk | tile | "
            "blocks | waves | eff | fills | MFLOP |")
    lines = [head, "|---|---|---|---|---:|---|---|---|---:|---:|---:|---|---:|"]
    for r in rs:
        layer = r["layer"] + (f" (x{r['layers']})" if r["layers"] > 1 else "")
        what = r["what"] + (f" x{r['count']}" if r["count"] > 1 else "")
        lines.append(
            f"| {r['suite']} | {layer} | {_SHORT[r['pass']]} | {what} | {r['G']} | "
            f"{r['M']} x {r['N']} x {r['K']} | {r['splits']} x {r['chunk']} | {r['tile']} | "
            f"{r['blocks']} | {r['waves']:.2f} | {r['eff']:.0%} | {r['fills']} | "
            f"{r['mflop']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sms", type=int, default=132,
                    help="the GPU's multiprocessor count (132: H100 / H200 SXM)")
    ap.add_argument("--suite", nargs="+", choices=SUITES, default=list(SUITES))
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args(argv)
    if args.sms < 1:
        ap.error(f"--sms must be >= 1, got {args.sms}")
    rs = rows([c for s in args.suite for c in suite_cases(s)], args.sms)
    print(f"GEMM tile rule on a {args.sms}-SM GPU ({rs[0]['blocks_per_sm'] if rs else 2} "
          "blocks per SM per wave)\n")
    print(table(rs))
    short = [r for r in rs if r["fills"] == "no"]
    print(f"\n{len(rs)} GEMM launches; {len(rs) - len(short)} fill a wave or split; "
          f"{len(short)} neither" + (": " + ", ".join(
              f"{r['suite']} {r['layer']} {_SHORT[r['pass']]} ({r['mflop']:.1f} MFLOP)"
              for r in short) if short else ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"schema": "fastcnn.cuda_tiles/1", "sms": args.sms, "rows": rs}, f,
                      indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
