"""Results are bit-identical run to run and for any thread count, and the library is safe to use
from several Python threads at once and from a forked child.

The GEMM driver cuts the reduction into fixed KC = 256 slices and splits only the output among
threads (block sizes shrink when there are more threads), so no element's summation order may
depend on the thread count; these tests hold it to that for every op and every ISA, with
problems whose block split changes with the thread count and reductions much longer than KC.
"""

from __future__ import annotations

import multiprocessing
import sys
import threading
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import fastcnn
from conftest import normal
from fastcnn import ops


def _bits(result: Any) -> list[Any]:
    """Every array of a result as raw bytes (bitwise comparison; NaN-safe), floats as floats."""
    items = result if isinstance(result, tuple) else (result,)
    out: list[Any] = []
    for r in items:
        if isinstance(r, np.ndarray):
            out.append((r.dtype.str, r.shape, r.tobytes()))
        else:
            out.append(r)
    return out


def _workloads(rng: np.random.Generator) -> dict[str, Callable[[], Any]]:
    """One closure per op and shape: problems whose block split changes with the thread count,
    reductions longer than KC, and a dw reduction over N*P*Q >> 256."""
    x1, w1, b1 = normal(rng, (4, 16, 20, 20)), normal(rng, (32, 16, 3, 3)), normal(rng, (32,))
    dy1 = normal(rng, (4, 32, 20, 20))
    x2, w2 = normal(rng, (2, 40, 12, 12)), normal(rng, (24, 40, 3, 3))  # CRS = 360 > KC
    dy2 = normal(rng, (2, 24, 10, 10))
    x3, w3 = normal(rng, (8, 8, 24, 24)), normal(rng, (16, 8, 3, 3))  # NPQ = 3872 for dw
    dy3 = normal(rng, (8, 16, 22, 22))
    x4, w4 = normal(rng, (3, 12, 17, 15)), normal(rng, (12, 1, 3, 3))  # depthwise, stride 2
    dy4 = normal(rng, (3, 12, 9, 8))
    x5, w5 = normal(rng, (2, 6, 15, 13)), normal(rng, (50, 6, 5, 5))  # K*R*S > KC for dx
    dy5 = normal(rng, (2, 50, 6, 5))
    xl, wl, bl = normal(rng, (64, 700)), normal(rng, (130, 700)), normal(rng, (130,))
    dyl = normal(rng, (64, 130))
    xb, wb, dyb = normal(rng, (600, 40)), normal(rng, (33, 40)), normal(rng, (600, 33))
    xp = normal(rng, (8, 16, 24, 24))
    dyp = normal(rng, (8, 16, 12, 12))
    xs = normal(rng, (300, 1000)) * np.float32(4)
    logits, labels = normal(rng, (512, 100)) * np.float32(3), rng.integers(0, 100, size=512)
    probs = rng.random((512, 100)).astype(np.float32)
    return {
        "conv2d": lambda: ops.conv2d(x1, w1, b1, padding=1, relu=True),
        "conv2d_backward": lambda: ops.conv2d_backward(dy1, x1, w1, padding=1),
        "conv2d_long_reduction": lambda: ops.conv2d(x2, w2),
        "conv2d_long_reduction_backward": lambda: ops.conv2d_backward(dy2, x2, w2),
        "conv2d_dw_over_NPQ_3872": lambda: ops.conv2d_backward(dy3, x3, w3),
        "conv2d_depthwise_stride2": lambda: ops.conv2d(x4, w4, stride=2, padding=1, groups=12),
        "conv2d_depthwise_stride2_backward": lambda: ops.conv2d_backward(
            dy4, x4, w4, stride=2, padding=1, groups=12),
        "conv2d_dx_long_reduction": lambda: ops.conv2d_backward(dy5, x5, w5, stride=2),
        "linear": lambda: ops.linear(xl, wl, bl),
        "linear_backward": lambda: ops.linear_backward(dyl, xl, wl),
        "linear_backward_batch600": lambda: ops.linear_backward(dyb, xb, wb),
        "max_pool2d": lambda: ops.max_pool2d(xp, 3, stride=2, padding=1, return_indices=True),
        "max_pool2d_backward": lambda: ops.max_pool2d_backward(dyp, xp, 3, stride=2, padding=1),
        "relu": lambda: ops.relu(xp),
        "softmax": lambda: ops.softmax(xs),
        "log_softmax_axis0": lambda: ops.log_softmax(xs, axis=0),
        "cross_entropy": lambda: ops.cross_entropy(logits, labels),
        "cross_entropy_probs": lambda: ops.cross_entropy(logits, probs),
    }


WORKLOADS = list(_workloads(np.random.default_rng(0)))


@pytest.fixture(scope="module")
def workloads() -> dict[str, Callable[[], Any]]:
    return _workloads(np.random.default_rng(12345))


@pytest.mark.parametrize("name", WORKLOADS)
def test_bit_identical_for_any_thread_count(isa: str, workloads: dict[str, Callable[[], Any]],
                                           name: str) -> None:
    run = workloads[name]
    fastcnn.set_num_threads(1)
    reference = _bits(run())
    assert _bits(run()) == reference, f"[{isa}] {name}: two runs on 1 thread differ"
    for n in (2, 3, 4):  # 3 and 4: more threads than this machine may have cores
        fastcnn.set_num_threads(n)
        assert _bits(run()) == reference, f"[{isa}] {name}: {n} threads differ from 1"
        assert _bits(run()) == reference, f"[{isa}] {name}: {n} threads, second run differs"


def test_thread_count_setting() -> None:
    for n in (1, 2, 3, 7):
        fastcnn.set_num_threads(n)
        assert fastcnn.num_threads() == n
        assert fastcnn.info()["num_threads"] == n


# ----------------------------------------------------------------------------------------------
# several Python threads at once
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kernel_threads", [1, 2])
def test_concurrent_python_threads(isa: str, workloads: dict[str, Callable[[], Any]],
                                   kernel_threads: int) -> None:
    """8 Python threads calling different ops at the same time (the GIL is released in the
    kernels) get exactly the answers of sequential calls."""
    fastcnn.set_num_threads(kernel_threads)
    names = ["conv2d", "conv2d_backward", "conv2d_depthwise_stride2_backward", "linear",
             "linear_backward", "max_pool2d_backward", "softmax", "cross_entropy"]
    expected = {n: _bits(workloads[n]()) for n in names}
    results: dict[str, list[Any]] = {n: [] for n in names}
    errors: list[BaseException] = []
    start = threading.Barrier(len(names))

    def worker(n: str) -> None:
        try:
            start.wait(timeout=60)
            for _ in range(3):
                results[n].append(_bits(workloads[n]()))
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not errors, errors
    for n in names:
        assert len(results[n]) == 3
        for r in results[n]:
            assert r == expected[n], f"[{isa}] {n} differs when run concurrently"


def test_concurrent_python_threads_same_op(isa: str) -> None:
    """Many threads running the same op on different data do not mix up their workspaces."""
    fastcnn.set_num_threads(2)
    rng = np.random.default_rng(5)
    xs = [normal(rng, (2, 8, 14, 14)) for _ in range(6)]
    w = normal(rng, (16, 8, 3, 3))
    expected = [ops.conv2d(x, w, padding=1) for x in xs]
    got: list[Any] = [None] * len(xs)
    errors: list[BaseException] = []
    start = threading.Barrier(len(xs))

    def worker(i: int) -> None:
        try:
            start.wait(timeout=60)
            for _ in range(4):
                got[i] = ops.conv2d(xs[i], w, padding=1)
                assert np.array_equal(got[i], expected[i])
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not errors, errors


# ----------------------------------------------------------------------------------------------
# fork
# ----------------------------------------------------------------------------------------------
def _fork_child(x: np.ndarray, w: np.ndarray, y_expected: np.ndarray, dw_expected: np.ndarray,
                xl: np.ndarray, wl: np.ndarray, yl_expected: np.ndarray) -> None:
    ok = np.array_equal(ops.conv2d(x, w, padding=1), y_expected)
    _, dw, _ = ops.conv2d_backward(y_expected, x, w, padding=1)
    ok = ok and np.array_equal(dw, dw_expected)
    ok = ok and np.array_equal(ops.linear(xl, wl), yl_expected)
    sys.exit(0 if ok else 3)


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(),
                    reason="no fork on this platform")
def test_forked_child_after_threaded_kernels() -> None:
    """After the kernels ran on 2 threads (libgomp's pool exists), a fork child runs a conv, its
    backward and a linear, gets the right answers and does not hang."""
    rng = np.random.default_rng(9)
    x, w = normal(rng, (4, 8, 16, 16)), normal(rng, (16, 8, 3, 3))
    xl, wl = normal(rng, (64, 300)), normal(rng, (40, 300))
    fastcnn.set_num_threads(2)
    y = ops.conv2d(x, w, padding=1)
    _, dw, _ = ops.conv2d_backward(y, x, w, padding=1)
    yl = ops.linear(xl, wl)
    ctx = multiprocessing.get_context("fork")
    p = ctx.Process(target=_fork_child, args=(x, w, y, dw, xl, wl, yl))
    with warnings.catch_warnings():  # Python >= 3.12 warns about forking a threaded process
        warnings.simplefilter("ignore", DeprecationWarning)
        p.start()
    p.join(60)
    if p.is_alive():
        p.kill()
        p.join(10)
        pytest.fail("the forked child hung running the kernels")
    assert p.exitcode == 0, f"the forked child exited with {p.exitcode}"
    # the parent still works on its threads afterwards
    assert fastcnn.num_threads() == 2
    assert np.array_equal(ops.conv2d(x, w, padding=1), y)
