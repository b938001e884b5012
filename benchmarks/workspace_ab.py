"""A/B of the layers' reused output buffers (python/fastcnn/_workspace.py), interleaved in one
process: pages faulted and CPU time per call with the pool on and off, medians.

Cases: the ResNet-20 training step at batch 128 (``fastcnn.models.resnet``, SGD with momentum,
``train_on_batch``), its ``predict_on_batch``, and a BatchNormalization layer's training forward
and backward on (2048, 256, 7, 7) (102.8 MB per tensor, over glibc's 32 MiB mmap ceiling).

    PYTHONPATH=python python benchmarks/workspace_ab.py [--reps 7] [--threads 1]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import fastcnn as fc
from fastcnn import _workspace
from fastcnn import layers as L


def _sample(fn: Callable[[], Any]) -> tuple[float, float]:
    """(CPU ms, pages faulted) of one call."""
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.process_time()
    fn()
    t1 = time.process_time()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return 1e3 * (t1 - t0), float(r1.ru_minflt - r0.ru_minflt)


def ab(name: str, fn: Callable[[], Any], pool: _workspace.Workspace,
       reps: int) -> dict[str, Any]:
    """Run ``fn`` alternately with ``pool`` (a model's workspace) on and off (2 warm-ups each),
    ``reps`` times."""
    got: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    for i in range(reps + 2):
        for on in (True, False) if i % 2 == 0 else (False, True):
            pool.enabled = on
            s = _sample(fn)
            if i >= 2:
                got[on].append(s)
    pool.enabled = True
    row = {"case": name}
    for on, key in ((True, "on"), (False, "off")):
        row[f"{key}_ms"] = statistics.median(t for t, _ in got[on])
        row[f"{key}_faults"] = statistics.median(f for _, f in got[on])
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cases", default="bn,resnet,predict")
    a = p.parse_args()
    fc._cpu.set_num_threads(a.threads)
    rng = np.random.default_rng(0)
    rows = []
    cases = a.cases.split(",")
    if "bn" in cases:
        bn = L.BatchNormalization()
        bn.build((256, 7, 7))
        x = rng.standard_normal((2048, 256, 7, 7), dtype=np.float32)
        dy = rng.standard_normal(x.shape, dtype=np.float32)
        pool = _workspace.Workspace()  # as the layer's model would give it

        def bn_step() -> None:
            with _workspace.active(pool):
                bn.forward(x, training=True)
                bn.backward(dy)

        rows.append(ab("BatchNormalization fwd+bwd (2048, 256, 7, 7)", bn_step, pool, a.reps))
        del bn, x, dy
    if "resnet" in cases or "predict" in cases:
        model = fc.models.resnet(20, (3, 32, 32), 10, seed=0)
        model.compile(fc.optimizers.SGD(0.01, momentum=0.9), "sparse_categorical_crossentropy")
        xb = rng.standard_normal((128, 3, 32, 32), dtype=np.float32)
        yb = rng.integers(0, 10, 128)
        if "resnet" in cases:
            rows.append(ab("ResNet-20 train_on_batch, batch 128",
                           lambda: model.train_on_batch(xb, yb), model.workspace, a.reps))
        if "predict" in cases:
            rows.append(ab("ResNet-20 predict_on_batch, batch 128",
                           lambda: model.predict_on_batch(xb), model.workspace, a.reps))
    print(f"threads={a.threads} reps={a.reps} (medians; CPU time of the process)")
    print("| case | CPU ms on | CPU ms off | on/off | pages faulted on | off |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['on_ms']:.1f} | {r['off_ms']:.1f} | "
              f"{r['on_ms'] / r['off_ms']:.3f} | {r['on_faults']:.0f} | {r['off_faults']:.0f} |")


if __name__ == "__main__":
    main()
