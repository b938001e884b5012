"""fastcnn.ops.batch_norm / batch_norm_backward, for every ISA.

* the float64 reference against finite differences and against PyTorch (y, mean / invstd, the
  running statistics over several training steps, dx / dweight / dbias in train and eval, for
  (N, C), (N, C, L) and (N, C, H, W));
* the compiled ops against the float64 reference on inputs with a large mean (1000 + N(0, 1),
  where a float32 E[x^2] - E[x]^2 is useless), at the kernels' edges: spatial sizes around the
  vector widths (8, 16), the row form's thresholds (64 before, 512 now) and tile (4096), C*S
  around the column tiles (256 before, 512 now), batch sizes around the tiles' row counts;
  hypothesis random shapes;
* the ops against PyTorch directly, torch tensors in and out (running statistics updated in
  place in the caller's tensors);
* bit-identical results for 1 and 2 threads; empty batches, NaN, bad input (ValueError /
  TypeError naming the argument).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastcnn
from conftest import EPS32
from fastcnn import ops
from fastcnn import reference as ref

SHAPES_BY_RANK = {2: (37, 5), 3: (6, 4, 19), 4: (5, 3, 7, 9)}


def _data(rng: np.random.Generator, shape: tuple[int, ...], *, loc: float = 1000.0,
          scale: float = 1.0) -> np.ndarray:
    return (loc + scale * rng.standard_normal(shape)).astype(np.float32)


def _params(rng: np.random.Generator, c: int) -> tuple[np.ndarray, ...]:
    w = (1.0 + 0.5 * rng.standard_normal(c)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    rm = rng.standard_normal(c).astype(np.float32)
    rv = (0.5 + rng.random(c)).astype(np.float32)
    return w, b, rm, rv


def _axes(x: np.ndarray) -> tuple[int, ...]:
    return (0, *range(2, x.ndim))


def _bc(v: np.ndarray, nd: int) -> np.ndarray:
    return np.asarray(v, np.float64).reshape((1, -1) + (1,) * (nd - 2))


def check_forward(x: np.ndarray, w: Any, b: Any, rm: np.ndarray, rv: np.ndarray,
                  training: bool, what: str, momentum: float = 0.1, eps: float = 1e-5) -> tuple:
    """ops.batch_norm against the float64 reference (statistics in float64 from the float32 x):
    mean / var to ~1e-6 relative, y to a few float32 ulps of its magnitude plus the input's."""
    rm32, rv32 = rm.copy(), rv.copy()
    rm64, rv64 = rm.astype(np.float64), rv.astype(np.float64)
    y, mean, invstd = ops.batch_norm(x, w, b, rm32, rv32, training=training, momentum=momentum,
                                     eps=eps)
    y2, mean2, invstd2 = ref.batch_norm(x.astype(np.float64), None if w is None else w.astype(
        np.float64), None if b is None else b.astype(np.float64), rm64, rv64,
        training=training, momentum=momentum, eps=eps)
    assert y.dtype == mean.dtype == invstd.dtype == np.float32, what
    assert y.shape == x.shape and mean.shape == invstd.shape == (x.shape[1],), what
    std = 1.0 / invstd2
    merr = np.abs(mean.astype(np.float64) - mean2)
    assert (merr <= 4 * EPS32 * np.abs(mean2) + 1e-6 * std).all(), f"{what}: mean {merr}"
    np.testing.assert_allclose(invstd, invstd2, rtol=2e-6, err_msg=what + " invstd")
    wabs = 1.0 if w is None else np.abs(_bc(w, x.ndim))
    babs = 0.0 if b is None else np.abs(_bc(b, x.ndim))
    tol = 8 * EPS32 * (np.abs(y2) + babs + wabs * (1 + np.abs(_bc(mean2, x.ndim)) * 1e-3))
    err = np.abs(y.astype(np.float64) - y2)
    assert (err <= tol + 1e-6).all(), f"{what}: y off by {err.max():.3g}"
    np.testing.assert_allclose(rm32, rm64, rtol=4 * EPS32, atol=1e-6,
                               err_msg=what + " running_mean")
    np.testing.assert_allclose(rv32, rv64, rtol=1e-5, err_msg=what + " running_var")
    return y, mean, invstd


def check_backward(dy: np.ndarray, x: np.ndarray, w: Any, mean: np.ndarray, invstd: np.ndarray,
                   training: bool, what: str) -> None:
    """ops.batch_norm_backward against the reference given the same float32 mean / invstd."""
    dx, dw, db = ops.batch_norm_backward(dy, x, w, mean, invstd, training=training)
    m64, i64 = mean.astype(np.float64), invstd.astype(np.float64)
    w64 = None if w is None else w.astype(np.float64)
    dx2, dw2, db2 = ref.batch_norm_backward(dy.astype(np.float64), x.astype(np.float64), w64, m64,
                                            i64, training=training)
    nd, axes = x.ndim, _axes(x)
    length = x.size // max(x.shape[1], 1)
    xmu = np.abs(x.astype(np.float64) - _bc(m64, nd))
    abs_db = np.abs(dy.astype(np.float64)).sum(axis=axes)
    abs_dw = (np.abs(dy.astype(np.float64)) * xmu).sum(axis=axes) * i64
    # float32 lanes within a tile (<= 4096 values), then double: ~sqrt(128) roundings
    np.testing.assert_allclose(db, db2, rtol=0, atol=1e-6 + 64 * EPS32 * abs_db.max(),
                               err_msg=what + " dbias")
    np.testing.assert_allclose(dw, dw2, rtol=0, atol=1e-6 + 64 * EPS32 * abs_dw.max(),
                               err_msg=what + " dweight")
    scale = np.abs(_bc(i64 * (1.0 if w is None else np.abs(w)), nd))
    if training:
        big = scale * (np.abs(dy) + abs_db.max() / max(length, 1)
                       + xmu * _bc(i64, nd) ** 2 * abs_dw.max() / max(length, 1) / i64.max())
    else:
        big = scale * np.abs(dy)
    err = np.abs(dx.astype(np.float64) - dx2)
    assert (err <= 64 * EPS32 * big + 1e-7).all(), f"{what}: dx off by {err.max():.3g}"


# ----------------------------------------------------------------------------------------------
# the reference
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("rank", [2, 3, 4])
def test_reference_backward_is_the_gradient(rng: np.random.Generator, rank: int,
                                            training: bool) -> None:
    """Central finite differences of sum(y * dy) in float64 (the statistics are recomputed from
    the perturbed x in training, held fixed in eval)."""
    shape = {2: (5, 3), 3: (3, 2, 4), 4: (2, 2, 3, 2)}[rank]
    x = rng.standard_normal(shape) * 2 + 1
    w, b = rng.standard_normal(shape[1]), rng.standard_normal(shape[1])
    rm, rv = rng.standard_normal(shape[1]), rng.random(shape[1]) + 0.5
    dy = rng.standard_normal(shape)

    def loss(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> float:
        y, _, _ = ref.batch_norm(x, w, b, rm.copy(), rv.copy(), training=training)
        return float((y * dy).sum())

    _, mean, invstd = ref.batch_norm(x, w, b, rm.copy(), rv.copy(), training=training)
    dx, dw, db = ref.batch_norm_backward(dy, x, w, mean, invstd, training=training)
    h = 1e-6
    for arr, grad in ((x, dx), (w, dw), (b, db)):
        num = np.zeros_like(arr)
        for i in np.ndindex(arr.shape):
            old = arr[i]
            arr[i] = old + h
            up = loss(x, w, b)
            arr[i] = old - h
            down = loss(x, w, b)
            arr[i] = old
            num[i] = (up - down) / (2 * h)
        np.testing.assert_allclose(grad, num, rtol=1e-6, atol=1e-7)


def test_reference_statistics_survive_a_large_mean(rng: np.random.Generator) -> None:
    """The input the compiled tests use is one where float32 E[x^2] - E[x]^2 is useless."""
    x = _data(rng, (64, 3, 32))
    x64 = x.astype(np.float64)
    exact = x64.var(axis=(0, 2))
    naive = (np.mean(x * x, axis=(0, 2), dtype=np.float32)
             - np.mean(x, axis=(0, 2), dtype=np.float32) ** 2)
    assert (np.abs(naive - exact) > 0.01 * exact).any()  # the naive formula is off by > 1%
    _, _, invstd = ref.batch_norm(x, None, None, None, None, training=True, eps=0.0)
    np.testing.assert_allclose(1 / invstd.astype(np.float64) ** 2, exact, rtol=1e-6)


# ----------------------------------------------------------------------------------------------
# the compiled ops against the reference, every ISA
# ----------------------------------------------------------------------------------------------
EDGE_SHAPES = [
    (2, 1), (3, 7), (9, 8), (17, 9), (5, 16), (4, 17), (300, 3),  # (N, C): across channels
    (40, 255), (40, 256), (40, 257), (20, 513),  # the column tile (256 columns)
    (3, 2, 1), (7, 3, 7), (5, 2, 8), (5, 2, 9), (3, 4, 15), (3, 4, 16), (3, 4, 17),
    (2, 3, 63), (2, 3, 64), (2, 3, 65), (65, 2, 64), (130, 1, 63),  # row form's threshold, R
    (2, 2, 4095), (2, 2, 4096), (3, 1, 4097), (1, 2, 8200),  # the 4096-value tile
    (4, 3, 5, 5), (3, 2, 8, 8), (2, 3, 9, 9), (2, 2, 1, 1), (9, 4, 7, 7), (2, 2, 31, 33),
    (40, 511), (40, 512), (65, 513), (65, 1025), (2, 3, 511), (2, 3, 512), (2, 3, 513),  # 512
    (65, 2, 16, 16), (129, 3, 8, 8), (64, 9, 8, 8), (3, 7, 22, 22), (2, 2, 23, 23),  # R = 64
    # the column kernels' two-row sweeps: N = 1 (no pair), odd / even rows left in a tile,
    # tails only (CS < 8) and none (CS % 16 == 0)
    (1, 3, 2, 3), (1, 64, 2, 3), (2, 7, 1, 1), (4, 1, 1, 9), (66, 8, 8, 8), (67, 8, 8, 8),
]


@pytest.mark.parametrize("shape", EDGE_SHAPES, ids=str)
def test_batch_norm_edges(isa: str, rng: np.random.Generator, shape: tuple[int, ...]) -> None:
    c = shape[1]
    x = _data(rng, shape)
    w, b, rm, rv = _params(rng, c)
    dy = rng.standard_normal(shape).astype(np.float32)
    for training in (True, False):
        what = f"[{isa}] {shape} training={training}"
        _, mean, invstd = check_forward(x, w, b, rm, rv, training, what)
        check_backward(dy, x, w, mean, invstd, training, what)


@given(n=st.integers(1, 40), c=st.integers(1, 20), spatial=st.sampled_from(
    [(), (1,), (3,), (33,), (70,), (2, 3), (5, 13), (9, 9)]),
    loc=st.sampled_from([0.0, 1e3, -50.0]),
    affine=st.booleans(), momentum=st.sampled_from([0.1, 0.0, 1.0, 0.37]))
def test_batch_norm_random(isa: str, n: int, c: int, spatial: tuple[int, ...], loc: float,
                           affine: bool, momentum: float) -> None:
    shape = (n, c, *spatial)
    rng = np.random.default_rng(n * 1000 + c)
    x = _data(rng, shape, loc=loc, scale=3.0)
    w, b, rm, rv = _params(rng, c)
    if not affine:
        w = b = None
    dy = rng.standard_normal(shape).astype(np.float32)
    for training in (True, False):
        if training and n * int(np.prod(spatial)) == 1:
            continue
        what = f"[{isa}] {shape} training={training}"
        _, mean, invstd = check_forward(x, w, b, rm, rv, training, what, momentum=momentum)
        check_backward(dy, x, w, mean, invstd, training, what)


def test_batch_norm_skips_what_is_not_asked(rng: np.random.Generator) -> None:
    x = _data(rng, (4, 3, 10))
    dy = rng.standard_normal(x.shape).astype(np.float32)
    _, mean, invstd = ops.batch_norm(x, None, None, None, None, training=True)
    full = ops.batch_norm_backward(dy, x, None, mean, invstd)
    dx, dw, db = ops.batch_norm_backward(dy, x, None, mean, invstd, compute_dw=False)
    assert dw is None and db is None and np.array_equal(dx, full[0])
    dx, dw, db = ops.batch_norm_backward(dy, x, None, mean, invstd, compute_dx=False)
    assert dx is None and np.array_equal(dw, full[1]) and np.array_equal(db, full[2])
    for training in (True, False):
        r = ref.batch_norm_backward(dy, x, None, mean, invstd, training=training,
                                    compute_dx=False, compute_dw=False)
        assert r == (None, None, None)
        assert ops.batch_norm_backward(dy, x, None, mean, invstd, training=training,
                                       compute_dx=False, compute_dw=False) == (None, None, None)


def test_batch_norm_large_offsets_keep_float32_accuracy(isa: str,
                                                        rng: np.random.Generator) -> None:
    """mean 1e4, std 1e-2: x has ~3 significant digits of spread; the variance must still come
    out to ~1e-4 relative (a float32 E[x^2] - E[x]^2 gives garbage or negative values)."""
    x = (1e4 + 1e-2 * rng.standard_normal((256, 2, 50))).astype(np.float32)
    _, _, invstd = ops.batch_norm(x, None, None, None, None, training=True, eps=0.0)
    exact = x.astype(np.float64).var(axis=(0, 2))
    np.testing.assert_allclose(1 / invstd.astype(np.float64) ** 2, exact, rtol=1e-5)


@pytest.mark.parametrize("shape", [(4096, 8), (600, 40), (8, 3, 5000), (64, 4, 100),
                                   (4, 2, 70, 70), (300, 20, 3, 3)], ids=str)
def test_batch_norm_threads_bit_identical(isa: str, rng: np.random.Generator,
                                          shape: tuple[int, ...]) -> None:
    x = _data(rng, shape)
    w, b, rm, rv = _params(rng, shape[1])
    dy = rng.standard_normal(shape).astype(np.float32)
    results = []
    for nt in (1, 2, 3):
        fastcnn.set_num_threads(nt)
        r1, v1 = rm.copy(), rv.copy()
        y, mean, invstd = ops.batch_norm(x, w, b, r1, v1, training=True)
        grads = ops.batch_norm_backward(dy, x, w, mean, invstd)
        ye, _, _ = ops.batch_norm(x, w, b, rm, rv)
        ge = ops.batch_norm_backward(dy, x, w, rm, 1 / np.sqrt(rv + 1e-5), training=False)
        results.append([y, mean, invstd, r1, v1, *grads, ye, *ge])
    for other in results[1:]:
        for a, b_ in zip(results[0], other, strict=True):
            assert np.array_equal(a.view(np.uint32), b_.view(np.uint32))


def test_batch_norm_nan_stays_in_its_channel(isa: str, rng: np.random.Generator) -> None:
    x = _data(rng, (6, 3, 20), loc=0.0)
    x[2, 1, 5] = np.nan
    y, mean, invstd = ops.batch_norm(x, None, None, None, None, training=True)
    assert np.isnan(y[:, 1]).all() and np.isnan(mean[1]) and np.isnan(invstd[1])
    assert np.isfinite(y[:, [0, 2]]).all() and np.isfinite(mean[[0, 2]]).all()


def test_batch_norm_empty_batch() -> None:
    x = np.zeros((0, 3, 4), np.float32)
    rm, rv = np.full(3, 2.0, np.float32), np.full(3, 3.0, np.float32)
    for f in (ops.batch_norm, ref.batch_norm):
        y, mean, invstd = f(x, None, None, rm, rv, training=True)
        assert y.shape == (0, 3, 4) and np.isnan(mean).all() and np.isnan(invstd).all()
        assert (rm == 2).all() and (rv == 3).all()  # PyTorch leaves them alone
        y, mean, invstd = f(x, None, None, rm, rv, training=False)
        assert y.shape == (0, 3, 4) and (mean == 2).all()
    dx, dw, db = ops.batch_norm_backward(x, x, None, rm, rv)
    assert dx.shape == x.shape and (dw == 0).all() and (db == 0).all()
    y, mean, _ = ops.batch_norm(np.zeros((4, 0, 2), np.float32), None, None, None, None,
                                training=True)
    assert y.shape == (4, 0, 2) and mean.shape == (0,)


def test_batch_norm_inputs_not_contiguous(rng: np.random.Generator) -> None:
    x = _data(rng, (6, 4, 10))[:, ::2]
    rm, rv = np.zeros(4, np.float32)[::2], np.ones(4, np.float32)[::2]
    y, _, _ = ops.batch_norm(x, None, None, rm, rv)  # inference: copied once
    np.testing.assert_allclose(y, ref.batch_norm(x, None, None, rm, rv)[0], rtol=1e-6)
    with pytest.raises(ValueError, match="running_mean must be C-contiguous"):
        ops.batch_norm(x, None, None, rm, rv, training=True)
    ro = np.zeros(2, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="running_mean is read-only"):
        ops.batch_norm(x, None, None, ro, np.ones(2, np.float32), training=True)


# ----------------------------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------------------------
def test_batch_norm_bad_input() -> None:
    x = np.ones((4, 3, 5), np.float32)
    c3, c2 = np.ones(3, np.float32), np.ones(2, np.float32)
    for f in (ops.batch_norm, ref.batch_norm):
        with pytest.raises(ValueError, match=r"x must be 2-D \(N, C\), 3-D"):
            f(np.ones(5, np.float32), None, None, None, None, training=True)
        with pytest.raises(ValueError, match=r"x must be 2-D"):
            f(np.ones((2, 2, 2, 2, 2), np.float32), None, None, None, None, training=True)
        with pytest.raises(ValueError, match=r"weight must have shape \(3,\)"):
            f(x, c2, None, None, None, training=True)
        with pytest.raises(ValueError, match=r"running_var must have shape \(3,\)"):
            f(x, None, None, c3, c2, training=True)
        with pytest.raises(ValueError, match="both running_mean and running_var or neither"):
            f(x, None, None, c3.copy(), None, training=True)
        with pytest.raises(ValueError, match="training=False normalises with running_mean"):
            f(x, None, None, None, None)
        with pytest.raises(ValueError, match="more than 1 value per channel when training"):
            f(np.ones((1, 3), np.float32), None, None, None, None, training=True)
        with pytest.raises(ValueError, match="more than 1 value per channel when training"):
            f(np.ones((1, 3, 1, 1), np.float32), None, None, None, None, training=True)
        with pytest.raises(ValueError, match="eps must be >= 0"):
            f(x, None, None, c3, c3, eps=-1.0)
        with pytest.raises(TypeError, match="momentum must be a real number"):
            f(x, None, None, c3, c3, momentum="0.1")
        with pytest.raises(TypeError, match="training must be a bool"):
            f(x, None, None, c3, c3, training=1)
    f(np.ones((1, 3), np.float32), None, None, c3, c3)  # inference with one value is fine
    with pytest.raises(TypeError, match=r"x has dtype float64 .* x.astype\(numpy.float32\)"):
        ops.batch_norm(x.astype(np.float64), None, None, c3, c3)
    with pytest.raises(TypeError, match="running_var has dtype float64"):
        ops.batch_norm(x, None, None, c3, c3.astype(np.float64))
    with pytest.raises(ValueError, match=r"running_mean and running_var are the same array"):
        ops.batch_norm(x, None, None, c3, c3, training=True)


def test_batch_norm_backward_bad_input() -> None:
    x = np.ones((4, 3, 5), np.float32)
    c3 = np.ones(3, np.float32)
    for f in (ops.batch_norm_backward, ref.batch_norm_backward):
        with pytest.raises(ValueError, match=r"dy has shape \(4, 3, 4\) but x has shape"):
            f(x[..., :4], x, None, c3, c3)
        with pytest.raises(ValueError, match=r"invstd must have shape \(3,\)"):
            f(x, x, None, c3, c3[:2])
        with pytest.raises(ValueError, match=r"mean must have shape \(3,\)"):
            f(x, x, None, c3[:1], c3)
        with pytest.raises(TypeError, match="compute_dx must be a bool"):
            f(x, x, None, c3, c3, compute_dx=None)
    with pytest.raises(TypeError, match=r"mean must be a numpy\.ndarray"):
        ops.batch_norm_backward(x, x, None, None, c3)


# ----------------------------------------------------------------------------------------------
# PyTorch
# ----------------------------------------------------------------------------------------------
def _torch_step(torch: Any, x: np.ndarray, dy: np.ndarray, w: np.ndarray, b: np.ndarray,
                rm: Any, rv: Any, training: bool, momentum: float) -> tuple:
    F = torch.nn.functional
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    bt = torch.tensor(b, requires_grad=True)
    y = F.batch_norm(xt, rm, rv, wt, bt, training=training, momentum=momentum, eps=1e-5)
    y.backward(torch.tensor(dy))
    return (y.detach().numpy(), xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy())


@pytest.mark.parametrize("impl", ["ops", "reference"])
@pytest.mark.parametrize("rank", [2, 3, 4])
def test_batch_norm_matches_torch(rng: np.random.Generator, rank: int, impl: str) -> None:
    """y, the running statistics over 4 training steps, then dx / dweight / dbias in train and
    eval mode, against torch's F.batch_norm and its autograd."""
    torch = pytest.importorskip("torch")
    shape = SHAPES_BY_RANK[rank]
    c = shape[1]
    w, b, rm0, rv0 = _params(rng, c)
    rm_t, rv_t = torch.tensor(rm0), torch.tensor(rv0)
    rm, rv = rm0.copy(), rv0.copy()
    mod = ops if impl == "ops" else ref
    for step in range(5):
        training = step < 4
        x = _data(rng, shape, loc=3.0 * step - 4, scale=2.0)
        dy = rng.standard_normal(shape).astype(np.float32)
        y_t, dx_t, dw_t, db_t = _torch_step(torch, x, dy, w, b, rm_t, rv_t, training, 0.1)
        y, mean, invstd = mod.batch_norm(x, w, b, rm, rv, training=training, momentum=0.1)
        dx, dw, db = mod.batch_norm_backward(dy, x, w, mean, invstd, training=training)
        what = f"{impl} rank {rank} step {step}"
        np.testing.assert_allclose(y, y_t, rtol=1e-5, atol=2e-5, err_msg=what + " y")
        np.testing.assert_allclose(rm, rm_t.numpy(), rtol=1e-5, atol=1e-6, err_msg=what)
        np.testing.assert_allclose(rv, rv_t.numpy(), rtol=1e-5, atol=1e-6, err_msg=what)
        np.testing.assert_allclose(dx, dx_t, rtol=1e-4, atol=2e-5, err_msg=what + " dx")
        np.testing.assert_allclose(dw, dw_t, rtol=1e-4, atol=5e-5, err_msg=what + " dweight")
        np.testing.assert_allclose(db, db_t, rtol=1e-5, atol=5e-5, err_msg=what + " dbias")


def test_batch_norm_takes_torch_tensors() -> None:
    """Tensors in, tensors out; the running statistics are the caller's tensors, updated in
    place (zero-copy views)."""
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, 5, 5, generator=g) * 2 + 7
    rm, rv = torch.zeros(3), torch.ones(3)
    rm_t, rv_t = torch.zeros(3), torch.ones(3)
    y, mean, invstd = ops.batch_norm(x, None, None, rm, rv, training=True, momentum=0.25)
    y_t = torch.nn.functional.batch_norm(x, rm_t, rv_t, training=True, momentum=0.25)
    assert isinstance(y, torch.Tensor) and isinstance(mean, torch.Tensor)
    torch.testing.assert_close(y, y_t, rtol=1e-5, atol=2e-5)
    torch.testing.assert_close(rm, rm_t)
    torch.testing.assert_close(rv, rv_t)
    dx, _, db = ops.batch_norm_backward(torch.ones_like(x), x, None, mean, invstd)
    assert isinstance(dx, torch.Tensor) and isinstance(db, torch.Tensor)
    torch.testing.assert_close(db, torch.full((3,), 200.0))
