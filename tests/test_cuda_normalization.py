"""The CUDA batch_norm / batch_norm_backward (fastcnn._cuda through fastcnn._cuda_ops) against the
float64 reference and the CPU ops.

GPU tests take the ``cp`` fixture (skipped without CuPy, the CUDA module or a GPU; they also run
on the CPU emulator of tools/cuda_emu: ``TESTS="tests/test_cuda_normalization.py"``). Shapes
cover the chunk size (4096 values per block), channels of one value per image ((N, C)), S % 4
== 0 (the float4 path) and misaligned buffers (the scalar path); results must be deterministic
(same bits on two runs), the running statistics are updated in place in the caller's cupy
arrays, and user errors read like the CPU's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from conftest import EPS32
from fastcnn import ops
from fastcnn import reference as ref

cuda = pytest.mark.cuda

SHAPES = [(2, 1), (37, 5), (300, 3), (6, 4, 19), (3, 2, 64), (2, 3, 4097), (5, 3, 7, 9),
          (2, 2, 8, 8), (1, 2, 70, 70)]


def host(cp: Any, a: Any) -> Any:
    if a is None:
        return None
    assert isinstance(a, cp.ndarray), f"expected a cupy.ndarray, got {type(a).__name__}"
    assert a.flags.c_contiguous
    return cp.asnumpy(a)


def misaligned(cp: Any, a: np.ndarray) -> Any:
    """``a`` on the GPU at an address that is 4 but not 16-byte aligned (the scalar path)."""
    buf = cp.zeros(a.size + 1, dtype=cp.float32)
    buf[1:] = cp.asarray(a.ravel())
    return buf[1:].reshape(a.shape)


def _inputs(rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    c = shape[1]
    x = (1000 + rng.standard_normal(shape)).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    w = (1 + 0.5 * rng.standard_normal(c)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    rm = rng.standard_normal(c).astype(np.float32)
    rv = (0.5 + rng.random(c)).astype(np.float32)
    return x, dy, w, b, rm, rv


def _close(got: np.ndarray, want: np.ndarray, scale: Any, what: str, k: float = 64) -> None:
    err = np.abs(got.astype(np.float64) - want)
    tol = k * EPS32 * (np.abs(want) + scale) + 1e-6
    assert (err <= tol).all(), f"{what}: off by {err.max():.3g}"


@cuda
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("aligned", [True, False])
def test_batch_norm_against_reference(cp: Any, rng: np.random.Generator,
                                      shape: tuple[int, ...], aligned: bool) -> None:
    x, dy, w, b, rm, rv = _inputs(rng, shape)
    put = (lambda a: cp.asarray(a)) if aligned else (lambda a: misaligned(cp, a))
    for training in (True, False):
        what = f"{shape} training={training} aligned={aligned}"
        rm_g, rv_g = cp.asarray(rm), cp.asarray(rv)
        rm64, rv64 = rm.astype(np.float64), rv.astype(np.float64)
        y, mean, invstd = ops.batch_norm(put(x), cp.asarray(w), cp.asarray(b), rm_g, rv_g,
                                         training=training, momentum=0.2)
        y2, mean2, invstd2 = ref.batch_norm(x.astype(np.float64), w, b, rm64, rv64,
                                            training=training, momentum=0.2)
        y, mean, invstd = host(cp, y), host(cp, mean), host(cp, invstd)
        _close(mean, mean2, 1e-3, what + " mean", 4)
        _close(invstd, invstd2, 0.0, what + " invstd", 16)
        _close(y, y2, np.abs(b).max() + 1, what + " y", 8)
        _close(host(cp, rm_g), rm64, 1e-3, what + " running_mean", 4)
        _close(host(cp, rv_g), rv64, 1e-3, what + " running_var", 16)
        dx, dw, db = ops.batch_norm_backward(put(dy), put(x), cp.asarray(w), cp.asarray(mean),
                                             cp.asarray(invstd), training=training)
        dx2, dw2, db2 = ref.batch_norm_backward(dy.astype(np.float64), x.astype(np.float64), w,
                                                mean.astype(np.float64),
                                                invstd.astype(np.float64), training=training)
        m = x.size // shape[1]
        _close(host(cp, db), db2, np.sqrt(m) * 4, what + " dbias")
        _close(host(cp, dw), dw2, np.sqrt(m) * 4 * invstd.max(), what + " dweight")
        _close(host(cp, dx), dx2, 4 * np.abs(w).max() * invstd.max(), what + " dx")


@cuda
def test_batch_norm_deterministic_and_like_cpu(cp: Any, rng: np.random.Generator) -> None:
    x, dy, w, b, rm, rv = _inputs(rng, (3, 4, 3000))
    runs = []
    for _ in range(2):
        rm_g, rv_g = cp.asarray(rm), cp.asarray(rv)
        y, mean, invstd = ops.batch_norm(cp.asarray(x), cp.asarray(w), cp.asarray(b), rm_g, rv_g,
                                         training=True)
        grads = ops.batch_norm_backward(cp.asarray(dy), cp.asarray(x), cp.asarray(w), mean,
                                        invstd)
        runs.append([host(cp, a) for a in (y, mean, invstd, rm_g, rv_g, *grads)])
    for a, b_ in zip(*runs, strict=True):
        assert np.array_equal(a.view(np.uint32), b_.view(np.uint32))
    cpu_rm, cpu_rv = rm.copy(), rv.copy()
    y_cpu, mean_cpu, invstd_cpu = ops.batch_norm(x, w, b, cpu_rm, cpu_rv, training=True)
    np.testing.assert_allclose(runs[0][0], y_cpu, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(runs[0][1], mean_cpu, rtol=1e-7)
    np.testing.assert_allclose(runs[0][2], invstd_cpu, rtol=1e-5)
    np.testing.assert_allclose(runs[0][3], cpu_rm, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(runs[0][4], cpu_rv, rtol=1e-5)


@cuda
def test_batch_norm_flags_none_and_empty(cp: Any, rng: np.random.Generator) -> None:
    x, dy, _, _, rm, rv = _inputs(rng, (4, 3, 10))
    y, mean, invstd = ops.batch_norm(cp.asarray(x), None, None, None, None, training=True)
    y2, _, _ = ops.batch_norm(x, None, None, None, None, training=True)
    np.testing.assert_allclose(host(cp, y), y2, rtol=1e-5, atol=1e-5)
    dx, dw, db = ops.batch_norm_backward(cp.asarray(dy), cp.asarray(x), None, mean, invstd,
                                         compute_dw=False)
    assert dw is None and db is None and dx.shape == x.shape
    dx, dw, db = ops.batch_norm_backward(cp.asarray(dy), cp.asarray(x), None, mean, invstd,
                                         training=False, compute_dx=False)
    assert dx is None
    np.testing.assert_allclose(host(cp, db), dy.sum(axis=(0, 2)), rtol=1e-5, atol=1e-5)
    empty = cp.zeros((0, 3, 4), dtype=cp.float32)
    rm_g, rv_g = cp.asarray(rm), cp.asarray(rv)
    y, mean, invstd = ops.batch_norm(empty, None, None, rm_g, rv_g, training=True)
    assert y.shape == (0, 3, 4) and np.isnan(host(cp, mean)).all()
    assert np.array_equal(host(cp, rm_g), rm) and np.array_equal(host(cp, rv_g), rv)
    dx, dw, db = ops.batch_norm_backward(empty, empty, None, rm_g, rv_g)
    assert dx.shape == (0, 3, 4) and (host(cp, dw) == 0).all() and (host(cp, db) == 0).all()


@cuda
def test_batch_norm_errors_like_cpu(cp: Any) -> None:
    x = np.ones((4, 3, 5), np.float32)
    c3, c2 = np.ones(3, np.float32), np.ones(2, np.float32)
    cases = [
        (lambda m: m.batch_norm(m.x, m.c2, None, None, None, training=True),
         r"weight must have shape \(3,\)"),
        (lambda m: m.batch_norm(m.x1, None, None, None, None, training=True),
         "more than 1 value per channel when training"),
        (lambda m: m.batch_norm(m.x, None, None, None, None), "training=False normalises"),
        (lambda m: m.batch_norm_backward(m.x, m.x, None, m.c3, m.c2), r"invstd must have shape"),
    ]

    class NS:
        def __init__(self, conv: Any) -> None:
            self.x, self.x1 = conv(x), conv(np.ones((1, 3), np.float32))
            self.c3, self.c2 = conv(c3), conv(c2)
            self.batch_norm, self.batch_norm_backward = ops.batch_norm, ops.batch_norm_backward

    for call, msg in cases:
        with pytest.raises(ValueError, match=msg):
            call(NS(lambda a: a))
        with pytest.raises(ValueError, match=msg):
            call(NS(cp.asarray))
    strided = cp.ones(6, dtype=cp.float32)[::2]
    with pytest.raises(ValueError, match="running_mean must be C-contiguous"):
        ops.batch_norm(cp.asarray(x), None, None, strided, cp.ones(3, dtype=cp.float32),
                       training=True)
    with pytest.raises(TypeError, match="x has dtype float64"):
        ops.batch_norm(cp.asarray(x, dtype=cp.float64), None, None, cp.asarray(c3),
                       cp.asarray(c3))


@cuda
@pytest.mark.parametrize("shape", [(37, 5), (6, 4, 19), (3, 2, 64), (2, 3, 4097), (5, 3, 7, 9),
                                   (2, 2, 8, 8)], ids=str)
@pytest.mark.parametrize("aligned", [True, False])
def test_batch_norm_fused_relu(cp: Any, rng: np.random.Generator, shape: tuple[int, ...],
                               aligned: bool) -> None:
    """relu=True / relu_y: the bits of the GPU's unfused pair (relu, relu_backward), close to
    the CPU's fused op; train and eval, float4 and scalar paths."""
    x, dy, w, b, rm, rv = _inputs(rng, shape)
    x = x - 1000  # centred: the ReLU cuts about half
    rm = rm * 0
    put = (lambda a: cp.asarray(a)) if aligned else (lambda a: misaligned(cp, a))
    for training in (True, False):
        what = f"{shape} training={training} aligned={aligned}"
        xg, dyg, wg, bg = put(x), put(dy), cp.asarray(w), cp.asarray(b)
        yf, mf, sf = ops.batch_norm(xg, wg, bg, cp.asarray(rm), cp.asarray(rv),
                                    training=training, relu=True)
        y, m, s = ops.batch_norm(xg, wg, bg, cp.asarray(rm), cp.asarray(rv), training=training)
        y = ops.relu(y)
        yf_h = host(cp, yf)
        assert np.array_equal(yf_h.view(np.uint32), host(cp, y).view(np.uint32)), what
        assert (yf_h == 0).any() and (yf_h > 0).any(), what
        ry = yf if aligned else misaligned(cp, yf_h)
        gf = ops.batch_norm_backward(dyg, xg, wg, mf, sf, training=training, relu_y=ry)
        g = ops.batch_norm_backward(ops.relu_backward(dyg, y), xg, wg, m, s, training=training)
        for a, e in zip(gf, g, strict=True):
            assert np.array_equal(host(cp, a).view(np.uint32), host(cp, e).view(np.uint32)), what
        y_cpu, _, _ = ops.batch_norm(x, w, b, rm.copy(), rv.copy(), training=training,
                                     relu=True)
        np.testing.assert_allclose(yf_h, y_cpu, rtol=1e-5, atol=1e-5, err_msg=what)
        g_cpu = ops.batch_norm_backward(dy, x, w, host(cp, mf), host(cp, sf), training=training,
                                        relu_y=yf_h)
        for a, e in zip(gf, g_cpu, strict=True):
            np.testing.assert_allclose(host(cp, a), e, rtol=1e-4, atol=1e-4, err_msg=what)
    with pytest.raises(ValueError, match="relu_y has shape"):
        ops.batch_norm_backward(dyg, xg, wg, mf, sf, relu_y=cp.zeros((1, *shape[1:]),
                                                                     dtype=cp.float32))
