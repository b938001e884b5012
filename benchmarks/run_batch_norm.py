"""Batch norm on the CPU: fastcnn.ops vs torch's F.batch_norm (forward in training) and its
backward through autograd, side by side in one run, in GB/s of the minimum traffic
(forward 2 reads + 1 write of x = 12 B/element; backward 2 reads of dy and x + 1 write of
dx = 20 B/element) and as a share of the machine's copy bandwidth (_cpu.probe_bandwidth).
``--relu`` adds the fused BatchNorm -> ReLU (``batch_norm(..., relu=True)``, ``relu_y=``)
against the unfused pair (``relu`` after, ``relu_backward`` before), interleaved; ``--resnet``
times the ResNet-20 training step (batch 128) with that fusion on and off, interleaved in one
process (``fastcnn.layers.base._FUSE_ACTIVATIONS``).

    PYTHONPATH=python python benchmarks/run_batch_norm.py [--threads 2] [--repeat 7] [--relu]
        [--resnet]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import fastcnn
from fastcnn import _cpu, ops

SHAPES = [
    ("small C, large HW", (32, 16, 112, 112)),
    ("resnet 64x56x56", (128, 64, 56, 56)),
    ("large C, small HW", (2048, 256, 7, 7)),
    ("(N, C) dense", (65536, 512)),
    ("resnet-20 8x8", (512, 64, 8, 8)),
    ("resnet-20 16x16", (512, 32, 16, 16)),
]


def best(fn: Callable[[], Any], repeat: int) -> float:
    """The fastest of `repeat` timed calls (after one warm-up), in seconds."""
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    """Parses the options, probes the copy bandwidth and times every shape."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--relu", action="store_true", help="also the fused BatchNorm -> ReLU")
    ap.add_argument("--resnet", action="store_true",
                    help="only the ResNet-20 step with the fusion on and off")
    args = ap.parse_args()
    if args.resnet:
        fastcnn.set_num_threads(args.threads)
        resnet_step(args.repeat)
        return
    fastcnn.set_num_threads(args.threads)
    copy = _cpu.probe_bandwidth(1 << 29, args.threads)
    print(f"isa {_cpu.isa()}, {args.threads} threads, copy bandwidth {copy:.1f} GB/s")
    try:
        import torch
        torch.set_num_threads(args.threads)
    except ImportError:
        torch = None
    rng = np.random.default_rng(0)
    print(f"{'shape':36} {'pass':4} {'fastcnn ms':>10} {'GB/s':>6} {'%copy':>6} "
          f"{'torch ms':>9} {'GB/s':>6} {'speed-up':>8}")
    for name, shape in SHAPES:
        measure(name, shape, rng, copy, args.repeat, torch)
    if args.relu:
        print(f"\nfused BatchNorm -> ReLU against batch_norm + relu (fwd) and relu_backward + "
              f"batch_norm_backward (bwd), median of {args.repeat} interleaved rounds")
        for name, shape in SHAPES:
            measure_relu(name, shape, rng, args.repeat)


def _interleaved(fns: dict[str, Callable[[], Any]], repeat: int) -> dict[str, float]:
    """Median seconds per call of each function, the functions alternated round by round."""
    for f in fns.values():
        f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for k, f in fns.items():
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    return {k: float(np.median(v)) for k, v in times.items()}


def measure_relu(name: str, shape: tuple[int, ...], rng: np.random.Generator,
                 repeat: int) -> None:
    """Times the fused BatchNorm -> ReLU against the unfused pair, forward and backward."""
    c = shape[1]
    x = rng.standard_normal(shape, dtype=np.float32)
    dy = rng.standard_normal(shape, dtype=np.float32)
    w, b = np.ones(c, np.float32), np.zeros(c, np.float32)
    rm, rv = np.zeros(c, np.float32), np.ones(c, np.float32)
    y, mean, invstd = ops.batch_norm(x, w, b, rm, rv, training=True, relu=True)
    t = _interleaved({
        "fwd pair": lambda: ops.relu(ops.batch_norm(x, w, b, rm, rv, training=True)[0]),
        "fwd fused": lambda: ops.batch_norm(x, w, b, rm, rv, training=True, relu=True),
        "bwd pair": lambda: ops.batch_norm_backward(ops.relu_backward(dy, y), x, w, mean, invstd),
        "bwd fused": lambda: ops.batch_norm_backward(dy, x, w, mean, invstd, relu_y=y),
    }, repeat)
    print(f"{name + ' ' + str(shape):36} fwd {t['fwd pair'] * 1e3:7.2f} -> "
          f"{t['fwd fused'] * 1e3:7.2f} ms ({t['fwd pair'] / t['fwd fused']:.2f}x)   bwd "
          f"{t['bwd pair'] * 1e3:7.2f} -> {t['bwd fused'] * 1e3:7.2f} ms "
          f"({t['bwd pair'] / t['bwd fused']:.2f}x)")


def resnet_step(repeat: int) -> None:
    """The ResNet-20 training step (batch 128) with the BatchNorm -> ReLU fusion on and off."""
    from fastcnn.bench.timing import measure as bench_measure
    from fastcnn.layers import base as layers_base

    rng = np.random.default_rng(0)
    x = rng.standard_normal((128, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, 128)
    models = {}
    for key in ("fused", "unfused"):
        m = fastcnn.models.resnet(20, (3, 32, 32), 10, seed=0)
        m.compile(fastcnn.optimizers.SGD(1e-3, momentum=0.9), "sparse_categorical_crossentropy")
        models[key] = m

    def step(key: str) -> Callable[[], Any]:
        def run() -> Any:
            layers_base._FUSE_ACTIVATIONS = key == "fused"
            try:
                return models[key].train_on_batch(x, y)
            finally:
                layers_base._FUSE_ACTIVATIONS = True
        return run

    t = bench_measure({k: step(k) for k in models}, repeats=repeat, warmup=1, min_sample_s=0.0)
    f, u = t["fused"].median_ms, t["unfused"].median_ms
    fm, um = min(t["fused"].samples_ms), min(t["unfused"].samples_ms)
    print(f"resnet20 b128 {fastcnn.num_threads()} thread(s), median (min) of {repeat}: fused "
          f"{f:.1f} ({fm:.1f}) ms, unfused {u:.1f} ({um:.1f}) ms: {u / f:.3f}x ({um / fm:.3f}x)")


def measure(name: str, shape: tuple[int, ...], rng: np.random.Generator, copy: float,
            repeat: int, torch: Any) -> None:
    """Times one shape's forward (training) and backward, fastcnn and torch, and prints them."""
    c = shape[1]
    x = 1000 + rng.standard_normal(shape, dtype=np.float32)
    dy = rng.standard_normal(shape, dtype=np.float32)
    w, b = np.ones(c, np.float32), np.zeros(c, np.float32)
    rm, rv = np.zeros(c, np.float32), np.ones(c, np.float32)
    _, mean, invstd = ops.batch_norm(x, w, b, rm, rv, training=True)
    fwd = best(lambda: ops.batch_norm(x, w, b, rm, rv, training=True), repeat)
    bwd = best(lambda: ops.batch_norm_backward(dy, x, w, mean, invstd), repeat)
    t_fwd = t_bwd = float("nan")
    if torch is not None:
        F = torch.nn.functional
        xt, dyt = torch.from_numpy(x), torch.from_numpy(dy)
        wt, bt = torch.from_numpy(w.copy()), torch.from_numpy(b.copy())
        rmt, rvt = torch.zeros(c), torch.ones(c)
        with torch.no_grad():
            t_fwd = best(lambda: F.batch_norm(xt, rmt, rvt, wt, bt, training=True), repeat)
        xg = xt.clone().requires_grad_(True)
        wg, bg = wt.clone().requires_grad_(True), bt.clone().requires_grad_(True)
        y = F.batch_norm(xg, rmt, rvt, wg, bg, training=True)
        t_bwd = best(lambda: torch.autograd.grad(y, (xg, wg, bg), dyt, retain_graph=True),
                     repeat)
    n = x.size
    for p, t, tt, per in (("fwd", fwd, t_fwd, 12), ("bwd", bwd, t_bwd, 20)):
        gbs, tgbs = per * n / t / 1e9, per * n / tt / 1e9
        print(f"{name + ' ' + str(shape):36} {p:4} {t * 1e3:10.2f} {gbs:6.1f} "
              f"{100 * gbs / copy:5.0f}% {tt * 1e3:9.2f} {tgbs:6.1f} {tt / t:7.2f}x")


if __name__ == "__main__":
    main()
