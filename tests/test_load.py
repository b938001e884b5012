"""Load: 16 Python threads hammering different ops at once get bit for bit the answers of one
thread, for a while, with the library's thread count changing under them.

The kernels release the GIL, so the threads really run concurrently (on top of the OpenMP
threads of each call). Every thread cycles through all the workloads, starting at a different
one, so at any moment most ops run next to other ops and next to themselves. A seventeenth thread
keeps changing ``fastcnn.set_num_threads`` (results don't depend on it).

Duration: FASTCNN_LOAD_SECONDS (default 10 s; the ``fuzz``-marked variant runs 60 s).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import fastcnn
from conftest import normal
from fastcnn import ops

N_THREADS = 16
SECONDS = float(os.environ.get("FASTCNN_LOAD_SECONDS", "10"))


def _bits(result: Any) -> list[Any]:
    items = result if isinstance(result, tuple) else (result,)
    return [(r.dtype.str, r.shape, r.tobytes()) if isinstance(r, np.ndarray) else r
            for r in items]


def _workloads() -> dict[str, Callable[[], Any]]:
    """Mid-sized problems (a few ms each): every op, several code paths."""
    rng = np.random.default_rng(2024)
    x1, w1, b1 = normal(rng, (4, 8, 16, 16)), normal(rng, (16, 8, 3, 3)), normal(rng, (16,))
    dy1 = normal(rng, (4, 16, 16, 16))
    x2, w2 = normal(rng, (2, 6, 15, 13)), normal(rng, (12, 3, 3, 3))  # groups 2, stride 2
    dy2 = normal(rng, (2, 12, 7, 6))
    x3, w3 = normal(rng, (1, 40, 10, 10)), normal(rng, (24, 40, 3, 3))  # N = 1: gather form
    dy3 = normal(rng, (1, 24, 8, 8))
    xl, wl, bl = normal(rng, (48, 300)), normal(rng, (100, 300)), normal(rng, (100,))
    dyl = normal(rng, (48, 100))
    xp, dyp = normal(rng, (4, 8, 20, 20)), normal(rng, (4, 8, 10, 10))
    xs = normal(rng, (64, 300)) * np.float32(3)
    logits, labels = normal(rng, (128, 10)), rng.integers(0, 10, 128)
    probs = rng.random((128, 10)).astype(np.float32)
    _, idx = ops.max_pool2d(xp, 3, stride=2, padding=1, return_indices=True)
    return {
        "conv2d": lambda: ops.conv2d(x1, w1, b1, padding=1, relu=True),
        "conv2d_backward": lambda: ops.conv2d_backward(dy1, x1, w1, padding=1),
        "conv2d_groups_stride2": lambda: ops.conv2d(x2, w2, stride=2, groups=2),
        "conv2d_groups_stride2_backward": lambda: ops.conv2d_backward(
            dy2, x2, w2, stride=2, groups=2),
        "conv2d_gather_backward": lambda: ops.conv2d_backward(dy3, x3, w3),
        "linear": lambda: ops.linear(xl, wl, bl),
        "linear_backward": lambda: ops.linear_backward(dyl, xl, wl),
        "relu": lambda: ops.relu(x1),
        "relu_backward": lambda: ops.relu_backward(dy1, dy1),
        "max_pool2d": lambda: ops.max_pool2d(xp, 3, stride=2, padding=1, return_indices=True),
        "max_pool2d_backward": lambda: ops.max_pool2d_backward(dyp, xp, 2),
        "max_pool2d_backward_indices": lambda: ops.max_pool2d_backward(
            dyp, xp, 3, stride=2, padding=1, indices=idx),
        "softmax": lambda: ops.softmax(xs),
        "log_softmax_axis0": lambda: ops.log_softmax(xs, axis=0),
        "cross_entropy": lambda: ops.cross_entropy(logits, labels),
        "cross_entropy_probs": lambda: ops.cross_entropy(logits, probs),
    }


def hammer(seconds: float) -> None:
    work = _workloads()
    names = list(work)
    fastcnn.set_num_threads(1)
    expected = {n: _bits(work[n]()) for n in names}  # one thread, one call at a time
    fastcnn.set_num_threads(2)
    for n in names:
        assert _bits(work[n]()) == expected[n], f"{n}: 2 kernel threads differ from 1"

    stop = threading.Event()
    start = threading.Barrier(N_THREADS + 1)
    calls = [0] * N_THREADS
    mismatches: list[str] = []
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            start.wait(timeout=60)
            i = t
            while not stop.is_set():
                name = names[i % len(names)]
                if _bits(work[name]()) != expected[name]:
                    mismatches.append(f"thread {t}, call {calls[t]}: {name}")
                calls[t] += 1
                i += 1
        except BaseException as e:  # reported below
            errors.append(e)

    def chaos() -> None:
        try:
            start.wait(timeout=60)
            k = 0
            while not stop.wait(0.05):
                fastcnn.set_num_threads(1 + k % 3)
                k += 1
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(t,), daemon=True,
                                name=f"fastcnn-load-{t}") for t in range(N_THREADS)]
    threads.append(threading.Thread(target=chaos, daemon=True, name="fastcnn-load-chaos"))
    for th in threads:
        th.start()
    time.sleep(seconds)
    stop.set()
    for th in threads:
        th.join(timeout=120)
    assert not any(th.is_alive() for th in threads), "a thread hung"
    assert not errors, errors
    assert not mismatches, f"{len(mismatches)} results differ: {mismatches[:10]}"
    assert min(calls) >= 1, f"a thread never got to run: {calls}"
    assert sum(calls) >= len(names), calls


def test_sixteen_threads_get_the_single_thread_answers(isa: str) -> None:
    hammer(SECONDS / 3)  # for each of up to 3 ISAs


@pytest.mark.fuzz
def test_sixteen_threads_for_a_minute() -> None:
    hammer(max(SECONDS, 60.0))
