"""The activation family on CUDA (fastcnn._cuda through fastcnn._cuda_ops): sigmoid, tanh,
leaky_relu, gelu (both forms), silu and their backward, against the float64 reference within the
SIMD kernels' ulp bounds (+1 ulp: nvcc may contract a multiply-add the CPU rounds twice) and
against the CPU ops; PyTorch's special values; misaligned (scalar path) and aligned (float4)
starts, edge lengths, empty arrays, in place and out=, determinism, errors with the CPU's
messages. Skipped without a usable GPU (the ``cp`` fixture); runs on the CPU emulator with
``TESTS=tests/test_cuda_activation.py bash tools/cuda_emu/run.sh``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from conftest import normal
from fastcnn import ops
from fastcnn import reference as ref
from test_ops_activation import ACT_ULPS as _ULPS
from test_ops_activation import (
    ALL,
    FROM_OUTPUT,
    SPECIALS,
    _bwd,
    _fwd,
    _same_specials,
    grad_scale,
    sweep,
    ulps,
)

cuda = pytest.mark.cuda


def host(cp: Any, a: Any) -> np.ndarray:
    assert isinstance(a, cp.ndarray), f"expected a cupy.ndarray, got {type(a).__name__}"
    assert a.flags.c_contiguous
    return cp.asnumpy(a)


def _bound(key: str) -> float:
    return _ULPS["simd"][key] + 1.0


@cuda
@pytest.mark.parametrize("name", ALL)
def test_sweep_against_reference(cp: Any, name: str) -> None:
    x = sweep(stride=99991)  # 2.3e4 inputs over [-128, 128] plus the specials
    fn, rfn = _fwd(name)
    bfn, rbfn = _bwd(name)
    y = host(cp, fn(cp.asarray(x)))
    if name == "leaky_relu":
        assert np.array_equal(y, ops.leaky_relu(x), equal_nan=True)
        dy = normal(np.random.default_rng(0), x.shape)
        assert np.array_equal(host(cp, bfn(cp.asarray(dy), cp.asarray(x))),
                              ops.leaky_relu_backward(dy, x), equal_nan=True)
        return
    err = ulps(y, rfn(x.astype(np.float64)))
    assert err.max() <= _bound(name), f"{name}: {err.max():.2f} ulp at x={x[np.argmax(err)]}"
    t = x
    scale = grad_scale(name, x.astype(np.float64)) if name not in FROM_OUTPUT else None
    if name in FROM_OUTPUT:
        t = ref.sigmoid(x) if name == "sigmoid" else ref.tanh(x)
    one = np.ones_like(t)
    dx = host(cp, bfn(cp.asarray(one), cp.asarray(t)))
    err = ulps(dx, rbfn(one.astype(np.float64), t.astype(np.float64)), scale)
    assert err.max() <= _bound(name + "_backward"), f"{name}_backward: {err.max():.2f} ulp"


@cuda
def test_specials_match_cpu(cp: Any) -> None:
    x = SPECIALS
    for name in ALL:
        fn, _ = _fwd(name)
        bfn, _ = _bwd(name)
        got = host(cp, fn(cp.asarray(x)))
        _same_specials(got, fn(x), f"cuda {name}")
        zero = x == 0
        assert np.array_equal(np.signbit(got[zero]), np.signbit(fn(x)[zero])), name
        t = fn(x) if name in FROM_OUTPUT else x
        one = np.ones_like(x)
        _same_specials(host(cp, bfn(cp.asarray(one), cp.asarray(t))), bfn(one, t),
                       f"cuda {name}_backward")
    assert np.signbit(host(cp, ops.tanh(cp.asarray(np.float32([-0.0]))))[0])
    assert np.isnan(host(cp, ops.silu(cp.asarray(np.float32([-np.inf]))))[0])


@cuda
@pytest.mark.parametrize("n", [0, 1, 3, 4, 5, 63, 64, 65, 1000, 4097])
@pytest.mark.parametrize("offset", [0, 1])
def test_lengths_offsets_against_cpu(cp: Any, n: int, offset: int) -> None:
    rng = np.random.default_rng(n + 7 * offset)
    x = normal(rng, (n + offset,)) * np.float32(4)
    dy = normal(rng, (n + offset,))
    xg, dyg = cp.asarray(x)[offset:], cp.asarray(dy)[offset:]  # offset 1: the scalar path
    for name in ALL:
        fn, _ = _fwd(name)
        bfn, _ = _bwd(name)
        y_cpu = fn(x[offset:])
        y = host(cp, fn(xg))
        np.testing.assert_allclose(y, y_cpu, rtol=8 * 2.0**-23, atol=1e-37, err_msg=name)
        t = y_cpu if name in FROM_OUTPUT else x[offset:]
        dx = host(cp, bfn(dyg, cp.asarray(t)))
        np.testing.assert_allclose(dx, bfn(dy[offset:], t), rtol=16 * 2.0**-23, atol=1e-6,
                                   err_msg=name + "_backward")


@cuda
@pytest.mark.parametrize("name", ALL)
def test_out_in_place_determinism_errors(cp: Any, rng: np.random.Generator, name: str) -> None:
    fn, _ = _fwd(name)
    bfn, _ = _bwd(name)
    x = cp.asarray(normal(rng, (7, 143)))
    dy = cp.asarray(normal(rng, (7, 143)))
    y = fn(x)
    assert host(cp, fn(x)).tobytes() == host(cp, y).tobytes()  # deterministic
    out = cp.empty_like(x)
    assert fn(x, out=out) is out and host(cp, out).tobytes() == host(cp, y).tobytes()
    xc = x.copy()
    assert fn(xc, out=xc) is xc and host(cp, xc).tobytes() == host(cp, y).tobytes()
    dx = bfn(dy, x)
    dyc = dy.copy()
    assert bfn(dyc, x, out=dyc) is dyc and host(cp, dyc).tobytes() == host(cp, dx).tobytes()
    with pytest.raises(ValueError, match="dy has shape"):
        bfn(dy, x[:3])
    with pytest.raises(ValueError, match="out has shape"):
        fn(x, out=cp.empty((7, 142), np.float32))
    with pytest.raises(TypeError, match="float32"):
        fn(x.astype(np.float64))
    e = cp.empty((0, 5), np.float32)
    assert host(cp, fn(e)).shape == (0, 5)


@cuda
def test_option_errors(cp: Any) -> None:
    x = cp.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="gelu: approximate must be 'none' or 'tanh'"):
        ops.gelu(x, "erf")
    with pytest.raises(ValueError, match="gelu_backward: approximate must be"):
        ops.gelu_backward(x, x, "TANH")
    with pytest.raises(TypeError, match="approximate must be a str"):
        ops.gelu(x, 1)
    with pytest.raises(TypeError, match="negative_slope must be a real number"):
        ops.leaky_relu(x, "0.2")
    with pytest.raises(TypeError, match="negative_slope must be a real number"):
        ops.leaky_relu_backward(x, x, None)
    np.testing.assert_array_equal(host(cp, ops.leaky_relu(x - 1, 0.5)), np.full((2, 3), -0.5))
