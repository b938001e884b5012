"""Host CPU time per GPU training step, eager ``train_step`` vs a ``CompiledStep`` replay, on the
CPU emulator with its kernels off (issue 14, item 2): what the host does per step, not the GPU.

    FASTCNN_EMU_KERNELS=0 RUN="benchmarks/run_cuda_graph_host_cost.py 100" \
        PYTHON=python bash tools/cuda_emu/run.sh

Interleaved (eager step, replayed step, ...), medians of ``time.process_time`` per step; the
seeds' CNN on (64, 1, 28, 28). On the emulator a replay runs the fake CuPy's recorded NumPy
nodes and the recorded kernel closures in Python / C++, so its number is an upper bound of what
a real ``cudaGraphLaunch`` plus fastcnn's per-replay bookkeeping costs.
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

import numpy as np

import fastcnn as fc
from fastcnn import _deferred, optimizers
from fastcnn.training import CompiledStep, train_step


def _model(opt: Any) -> Any:
    m = fc.models.seeds_cnn((1, 28, 28), 10, seed=0)
    m.compile(optimizer=opt, loss="sparse_categorical_crossentropy")
    return m.to("cuda")


def main(reps: int) -> None:
    import cupy as cp

    for name, make in (("SGD(momentum)", lambda: optimizers.SGD(0.01, momentum=0.9)),
                       ("Adam", optimizers.Adam)):
        eager, graph = _model(make()), _model(make())
        step = CompiledStep(graph)
        rng = np.random.default_rng(0)
        x = cp.asarray(rng.normal(size=(64, 1, 28, 28)).astype(np.float32))
        y = cp.asarray(rng.integers(0, 10, 64))
        te: list[float] = []
        tg: list[float] = []
        with _deferred.scope(final_check=False):
            for _ in range(3):  # warm-up, capture
                train_step(eager, x, y)
                step(x, y)
            for _ in range(reps):
                t = time.process_time()
                train_step(eager, x, y)
                te.append(time.process_time() - t)
                t = time.process_time()
                step(x, y)
                tg.append(time.process_time() - t)
                _deferred.discard()
        print(f"{name}: eager {statistics.median(te) * 1e3:.2f} ms/step, replay "
              f"{statistics.median(tg) * 1e3:.2f} ms/step ({step.captures} capture, "
              f"{step.replays} replays)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100)
