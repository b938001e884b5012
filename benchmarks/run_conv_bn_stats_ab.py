"""A/B of Conv2D -> BatchNorm's training forward with the batch statistics gathered in the
convolution's epilogue (ops.conv2d_stats + batch_norm(batch_stats=)) against the unfused pair
(conv2d, then batch_norm reducing y itself), on ResNet-20's Conv -> BN shapes at batch 128.

Interleaved in one process (A and B alternate, the order reversed every other round), process
CPU time, medians of --repeats rounds in ms, and the median of the rounds' paired differences
(A - B: less sensitive to a loaded machine's drift); the load average is printed (other
processes share the cores). --relu adds the fused ReLU of BN (ResNet's Conv -> BN -> ReLU).

    python benchmarks/run_conv_bn_stats_ab.py --threads 1 --repeats 21 --relu
    python benchmarks/run_conv_bn_stats_ab.py --conv-only   # the gathering's own cost
    python benchmarks/run_conv_bn_stats_ab.py --step --repeats 11   # ResNet-20 train steps

--step: whole ResNet-20 training steps (batch --batch, SGD) of one model, the fusion switched
on and off per step with FASTCNN_FUSE_BN_STATS (read on every call), interleaved the same way.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np

import fastcnn
from fastcnn import ops

# name, N, C, H (= W), K, stride: ResNet-20's 3x3 convolutions followed by a BatchNorm
SHAPES = [
    ("3->16 @32", 128, 3, 32, 16, 1),
    ("16->16 @32", 128, 16, 32, 16, 1),
    ("16->32 @32/2", 128, 16, 32, 32, 2),
    ("32->32 @16", 128, 32, 16, 32, 1),
    ("32->64 @16/2", 128, 32, 16, 64, 2),
    ("64->64 @8", 128, 64, 8, 64, 1),
]


def _time(fn: Callable[[], object]) -> float:
    t = time.process_time()
    fn()
    return time.process_time() - t


def _ab(args: argparse.Namespace, rng: np.random.Generator, n: int, c: int, h: int, k: int,
        s: int) -> tuple[float, float, float]:
    """(unfused ms, fused ms, median paired difference ms) of one shape."""
    x = rng.standard_normal((n, c, h, h), dtype=np.float32)
    w = (rng.standard_normal((k, c, 3, 3), dtype=np.float32) * 0.2).astype(np.float32)
    b = rng.standard_normal(k, dtype=np.float32)
    g, beta = np.ones(k, np.float32), np.zeros(k, np.float32)
    rm, rv = np.zeros(k, np.float32), np.ones(k, np.float32)
    p = (h + 2 - 3) // s + 1
    y = np.empty((n, k, p, p), np.float32)
    z = np.empty_like(y)

    def unfused() -> None:
        ops.conv2d(x, w, b, stride=s, padding=1, out=y)
        if not args.conv_only:
            ops.batch_norm(y, g, beta, rm, rv, training=True, momentum=0.01, eps=1e-3,
                           relu=args.relu, out=z)

    def fused() -> None:
        _, mean, var = ops.conv2d_stats(x, w, b, stride=s, padding=1, out=y)
        if not args.conv_only:
            ops.batch_norm(y, g, beta, rm, rv, training=True, momentum=0.01, eps=1e-3,
                           relu=args.relu, out=z, batch_stats=(mean, var))

    unfused(), fused()  # warm
    ta, tb = [], []
    for r in range(args.repeats):
        if r % 2:
            tb.append(_time(fused)), ta.append(_time(unfused))
        else:
            ta.append(_time(unfused)), tb.append(_time(fused))
    return (float(np.median(ta)) * 1e3, float(np.median(tb)) * 1e3,
            float(np.median(np.subtract(ta, tb))) * 1e3)


def _step_ab(args: argparse.Namespace) -> None:
    from fastcnn.models import resnet

    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, 3, 32, 32), dtype=np.float32)
    y = rng.integers(0, 10, args.batch)
    model = resnet(20, seed=0)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")

    def step(fuse: str) -> Callable[[], object]:
        def run() -> object:
            os.environ["FASTCNN_FUSE_BN_STATS"] = fuse
            return model.train_on_batch(x, y)
        return run

    on, off = step("1"), step("0")
    on(), off()  # warm
    ta, tb = [], []
    for r in range(args.repeats):
        if r % 2:
            tb.append(_time(on)), ta.append(_time(off))
        else:
            ta.append(_time(off)), tb.append(_time(on))
    a, b = float(np.median(ta)) * 1e3, float(np.median(tb)) * 1e3
    d = float(np.median(np.subtract(ta, tb))) * 1e3
    print(f"ResNet-20 train step, batch {args.batch}: unfused {a:.1f} ms, fused {b:.1f} ms, "
          f"saved {a - b:.1f} ms (paired median {d:.1f} ms), {a / b:.3f}x")
    print(f"load average after: {os.getloadavg()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--relu", action="store_true")
    ap.add_argument("--conv-only", action="store_true",
                    help="time conv2d against conv2d_stats alone (the gathering's cost)")
    ap.add_argument("--step", action="store_true", help="whole ResNet-20 training steps")
    ap.add_argument("--batch", type=int, default=128)
    args = ap.parse_args()
    fastcnn.set_num_threads(args.threads)
    if args.step:
        print(f"{args.threads} thread(s), CPU time, medians of {args.repeats}, ISA "
              f"{fastcnn._cpu.isa()}, load average {os.getloadavg()}")
        _step_ab(args)
        return
    print(f"conv + BN training forward, {args.threads} thread(s), CPU time, medians of "
          f"{args.repeats}, ISA {fastcnn._cpu.isa()}, load average {os.getloadavg()}")
    print(f"{'shape':<14} {'unfused ms':>10} {'fused ms':>9} {'saved ms':>9} {'paired':>7} "
          f"{'speed-up':>8}")
    rng = np.random.default_rng(0)
    tot_a = tot_b = tot_d = 0.0
    for name, n, c, h, k, s in SHAPES:
        a, bb, d = _ab(args, rng, n, c, h, k, s)
        tot_a, tot_b, tot_d = tot_a + a, tot_b + bb, tot_d + d
        print(f"{name:<14} {a:10.2f} {bb:9.2f} {a - bb:9.2f} {d:7.2f} {a / bb:8.3f}")
    print(f"{'sum':<14} {tot_a:10.2f} {tot_b:9.2f} {tot_a - tot_b:9.2f} {tot_d:7.2f} "
          f"{tot_a / tot_b:8.3f}")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
