"""The CUDA path of avg_pool2d / global_avg_pool2d / global_max_pool2d (and backwards).

The CUDA kernels sum in the CPU kernels' orders, so every result is compared with the CPU
module's bit for bit (and thus with the reference and PyTorch). Tests take the ``cp`` fixture:
skipped without CuPy and a usable device; they also run on the CPU emulator of the CUDA
execution model (``TESTS="tests/test_cuda_pooling.py" bash tools/cuda_emu/run.sh``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from conftest import check_bitwise, normal, small_ints
from fastcnn import ops

cuda = pytest.mark.cuda


def gpu(cp: Any, a: Any) -> Any:
    return None if a is None else cp.asarray(a)


def host(cp: Any, a: Any) -> Any:
    """A GPU result as numpy, after checking it is a C-contiguous cupy array."""
    assert isinstance(a, cp.ndarray), f"expected a cupy.ndarray, got {type(a).__name__}"
    assert a.flags.c_contiguous
    return cp.asnumpy(a)


AVG_CASES: list[tuple[tuple[int, ...], dict[str, Any]]] = [
    ((2, 3, 8, 8), dict(kernel_size=2)),
    ((2, 3, 9, 7), dict(kernel_size=3, stride=2, padding=1)),
    ((1, 2, 9, 9), dict(kernel_size=3, stride=1, padding=1, count_include_pad=False)),
    ((2, 2, 10, 11), dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 1), ceil_mode=True)),
    ((1, 3, 5, 5), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True,
                        count_include_pad=False)),
    ((1, 2, 7, 9), dict(kernel_size=2, stride=3, divisor_override=3)),    # stride > kernel
    ((1, 1, 7, 7), dict(kernel_size=7)),                                   # kernel = input
    ((2, 2, 5, 9), dict(kernel_size=4, stride=3, ceil_mode=True, padding=2, divisor_override=-2)),
    ((0, 2, 4, 4), dict(kernel_size=2)),
]


def avg_input(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    x = normal(rng, shape)
    if x.size:
        u = rng.random(shape)
        x[u < 0.03] = np.nan
        x[(u >= 0.03) & (u < 0.05)] = -0.0
    return x


@cuda
@pytest.mark.parametrize("case", AVG_CASES, ids=lambda c: f"{c[0]}-{c[1]}")
def test_avg_pool2d_against_cpu(cp: Any, rng: np.random.Generator, case: Any) -> None:
    xs, opts = case
    x = avg_input(rng, xs)
    y = ops.avg_pool2d(x, **opts)
    check_bitwise(host(cp, ops.avg_pool2d(gpu(cp, x), **opts)), y, "y")
    yo = cp.asarray(np.full(y.shape, 7.0, np.float32))
    assert ops.avg_pool2d(gpu(cp, x), **opts, out=yo) is yo
    check_bitwise(host(cp, yo), y, "y (out=)")
    dy = avg_input(rng, y.shape)
    dx = ops.avg_pool2d_backward(dy, x, **opts)
    check_bitwise(host(cp, ops.avg_pool2d_backward(gpu(cp, dy), gpu(cp, x), **opts)), dx, "dx")
    out = cp.asarray(np.full(xs, 7.0, np.float32))
    r = ops.avg_pool2d_backward(gpu(cp, dy), gpu(cp, x), **opts, out=out)
    assert r is out
    check_bitwise(host(cp, out), dx, "dx (out=)")


GLOBAL_SHAPES = [(2, 3, 1, 1), (3, 5, 8, 8), (2, 4, 7, 7), (1, 3, 3, 11), (2, 3, 2, 33),
                 (2, 64, 8, 8), (1, 2, 9, 9), (0, 3, 4, 4)]


def global_input(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    x = small_ints(rng, shape, -3, 3)
    x[(x == 0) & (rng.random(shape) < 0.5)] = -0.0
    if x.size:
        planes = x.reshape(-1, shape[2] * shape[3])
        planes[0, rng.integers(0, planes.shape[1], 2)] = np.nan
        if planes.shape[0] > 1:
            planes[1] = -np.inf
    return x


@cuda
@pytest.mark.parametrize("shape", GLOBAL_SHAPES, ids=str)
def test_global_pools_against_cpu(cp: Any, rng: np.random.Generator,
                                  shape: tuple[int, ...]) -> None:
    xn = normal(rng, shape)
    check_bitwise(host(cp, ops.global_avg_pool2d(gpu(cp, xn))), ops.global_avg_pool2d(xn), "avg")
    x = global_input(rng, shape)
    check_bitwise(host(cp, ops.global_avg_pool2d(gpu(cp, x))), ops.global_avg_pool2d(x),
                  "avg (specials)")
    y, i = ops.global_max_pool2d(x, return_indices=True)
    yg, ig = ops.global_max_pool2d(gpu(cp, x), return_indices=True)
    check_bitwise(host(cp, yg), y, "max y")
    gi = host(cp, ig)
    assert gi.dtype == np.int64 and np.array_equal(gi, i), "max indices"
    check_bitwise(host(cp, ops.global_max_pool2d(gpu(cp, x))), y, "max y without indices")
    dy = normal(rng, shape[:2])
    check_bitwise(host(cp, ops.global_avg_pool2d_backward(gpu(cp, dy), gpu(cp, x))),
                  ops.global_avg_pool2d_backward(dy, x), "avg dx")
    dx = ops.global_max_pool2d_backward(dy, x)
    check_bitwise(host(cp, ops.global_max_pool2d_backward(gpu(cp, dy), gpu(cp, x))), dx,
                  "max dx (recomputed)")
    check_bitwise(host(cp, ops.global_max_pool2d_backward(gpu(cp, dy), gpu(cp, x), indices=ig)),
                  dx, "max dx (indices)")


@cuda
def test_global_max_pool2d_user_indices(cp: Any, rng: np.random.Generator) -> None:
    x = normal(rng, (2, 3, 4, 4))
    dy = normal(rng, (2, 3))
    idx = rng.integers(0, 16, size=(2, 3)).astype(np.int64)
    check_bitwise(host(cp, ops.global_max_pool2d_backward(gpu(cp, dy), gpu(cp, x),
                                                          indices=gpu(cp, idx))),
                  ops.global_max_pool2d_backward(dy, x, indices=idx), "dx (any indices)")
    idx[1, 2] = 16
    with pytest.raises(ValueError) as cpu_err:
        ops.global_max_pool2d_backward(dy, x, indices=idx)
    with pytest.raises(ValueError) as gpu_err:
        ops.global_max_pool2d_backward(gpu(cp, dy), gpu(cp, x), indices=gpu(cp, idx))
    assert str(gpu_err.value) == str(cpu_err.value)
    with pytest.raises(TypeError, match="int64"):
        ops.global_max_pool2d_backward(gpu(cp, dy), gpu(cp, x),
                                       indices=gpu(cp, idx.astype(np.int32)))


@cuda
def test_errors_match_cpu(cp: Any) -> None:
    x = np.zeros((2, 3, 8, 8), np.float32)
    for call in [lambda a: ops.avg_pool2d(a, 2, padding=2),
                 lambda a: ops.avg_pool2d(a, 9),
                 lambda a: ops.avg_pool2d_backward(a[:, :, :3], a, 2),
                 lambda a: ops.global_avg_pool2d(a[0]),
                 lambda a: ops.global_max_pool2d_backward(a[:, :, 0, 0][:, :2], a)]:
        with pytest.raises(ValueError) as cpu_err:
            call(x)
        with pytest.raises(ValueError) as gpu_err:
            call(gpu(cp, x))
        assert str(gpu_err.value) == str(cpu_err.value)
    with pytest.raises(TypeError, match="float32"):
        ops.global_avg_pool2d(gpu(cp, x.astype(np.float64)))
