"""The fused BatchNorm -> ReLU: ``ops.batch_norm(..., relu=True)`` and
``ops.batch_norm_backward(..., relu_y=y)``, for every ISA.

* the fused op gives the unfused pair's bits (``relu(batch_norm(x))``, then
  ``batch_norm_backward(relu_backward(dy, y))``) in training and inference, at the kernels'
  edges (column form, row form, the 4096-value tile, the sweeps' 16 Ki-float tasks), with and
  without dx / dweight, NaN included (a NaN channel stays NaN; a NaN ``relu_y`` passes ``dy``);
* bit-identical for 1, 2 and 3 threads;
* the reference's fused form against the compiled one and against PyTorch's
  ``relu(F.batch_norm(...))`` with autograd (the gradient at exactly 0 is 0, as PyTorch);
* bad input: ``relu`` not a bool, ``relu_y`` of the wrong shape (errors naming the argument).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import fastcnn
from fastcnn import ops
from fastcnn import reference as ref

SHAPES = [
    (37, 5), (40, 257), (20, 513), (300, 3), (7, 3, 7), (3, 4, 17), (2, 3, 63), (2, 3, 64),
    (65, 2, 64), (2, 2, 4097), (9, 4, 7, 7), (3, 2, 8, 8), (2, 2, 31, 33), (130, 3, 8, 8),
    (2, 300, 8, 8), (3, 5, 128, 130),
]


def _case(rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    c = shape[1]
    x = (0.5 + 2.0 * rng.standard_normal(shape)).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    w = (1.0 + 0.5 * rng.standard_normal(c)).astype(np.float32)
    b = (0.5 * rng.standard_normal(c)).astype(np.float32)
    rm = rng.standard_normal(c).astype(np.float32)
    rv = (0.5 + rng.random(c)).astype(np.float32)
    return x, dy, w, b, rm, rv


def _bits(a: Any) -> np.ndarray:
    return np.asarray(a).view(np.uint32)


def _same(a: Any, b: Any, what: str) -> None:
    if a is None or b is None:
        assert a is None and b is None, what
        return
    assert a.shape == b.shape and np.array_equal(_bits(a), _bits(b)), what


def _fused_and_unfused(x, dy, w, b, rm, rv, training, **bwd) -> tuple[list[Any], list[Any]]:
    r1, v1, r2, v2 = rm.copy(), rv.copy(), rm.copy(), rv.copy()
    yf, mf, sf = ops.batch_norm(x, w, b, r1, v1, training=training, relu=True)
    y, m, s = ops.batch_norm(x, w, b, r2, v2, training=training)
    y = ops.relu(y)
    gf = ops.batch_norm_backward(dy, x, w, mf, sf, training=training, relu_y=yf, **bwd)
    g = ops.batch_norm_backward(ops.relu_backward(dy, y), x, w, m, s, training=training, **bwd)
    return [yf, mf, sf, r1, v1, *gf], [y, m, s, r2, v2, *g]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_fused_equals_the_unfused_pair(isa: str, rng: np.random.Generator,
                                       shape: tuple[int, ...]) -> None:
    x, dy, w, b, rm, rv = _case(rng, shape)
    for training in (True, False):
        for bwd in ({}, {"compute_dx": False}, {"compute_dw": False}):
            fused, unfused = _fused_and_unfused(x, dy, w, b, rm, rv, training, **bwd)
            names = ["y", "mean", "invstd", "running_mean", "running_var", "dx", "dw", "db"]
            for n, a, e in zip(names, fused, unfused, strict=True):
                _same(a, e, f"[{isa}] {shape} training={training} {bwd}: {n}")
            assert (fused[0] >= 0).all() and (fused[0] == 0).any()


def test_fused_nan_as_the_unfused_pair(isa: str, rng: np.random.Generator) -> None:
    for shape in [(40, 6), (6, 3, 20), (4, 3, 9, 9)]:
        x, dy, w, b, rm, rv = _case(rng, shape)
        x[1, 1] = np.nan  # channel 1 of sample 1 (all of its positions)
        rv[2] = np.nan  # inference: channel 2's statistics
        for training in (True, False):
            fused, unfused = _fused_and_unfused(x, dy, w, b, rm, rv, training)
            for i, (a, e) in enumerate(zip(fused, unfused, strict=True)):
                _same(a, e, f"[{isa}] {shape} training={training} output {i}")
            y = fused[0]
            assert np.isnan(y[:, 1]).all() if training else np.isnan(y[1, 1]).all()
            if not training:
                assert np.isnan(y[:, 2]).all()
    # a NaN in relu_y passes dy (relu_backward's rule), 0 where relu_y <= 0
    x, dy, w, _, _, _ = _case(rng, (5, 2, 10))
    _, mean, invstd = ops.batch_norm(x, w, None, None, None, training=True)
    ry = np.abs(rng.standard_normal(x.shape)).astype(np.float32)
    ry[0, 0, :3] = np.nan
    ry[1, 1, :4] = 0.0
    ry[2, 0, :2] = -0.0
    got = ops.batch_norm_backward(dy, x, w, mean, invstd, training=False, relu_y=ry)[0]
    want = ops.batch_norm_backward(ops.relu_backward(dy, ry), x, w, mean, invstd,
                                   training=False)[0]
    _same(got, want, f"[{isa}] NaN relu_y")
    assert (got[1, 1, :4] == 0).all() and (got[2, 0, :2] == 0).all()
    assert (got[0, 0, :3] != 0).all()


@pytest.mark.parametrize("shape", [(4096, 8), (600, 40), (8, 3, 5000), (64, 4, 100),
                                   (300, 20, 3, 3), (64, 300, 8, 8)], ids=str)
def test_fused_threads_bit_identical(isa: str, rng: np.random.Generator,
                                     shape: tuple[int, ...]) -> None:
    x, dy, w, b, rm, rv = _case(rng, shape)
    runs = []
    previous = fastcnn.num_threads()
    try:
        for nt in (1, 2, 3):
            fastcnn.set_num_threads(nt)
            out = []
            for training in (True, False):
                out += _fused_and_unfused(x, dy, w, b, rm, rv, training)[0]
            runs.append(out)
    finally:
        fastcnn.set_num_threads(previous)
    for other in runs[1:]:
        for a, e in zip(runs[0], other, strict=True):
            _same(a, e, f"[{isa}] {shape}")


@pytest.mark.parametrize("shape", [(37, 5), (6, 4, 19), (5, 3, 7, 9), (3, 2, 70, 70)], ids=str)
def test_fused_against_the_reference(isa: str, rng: np.random.Generator,
                                     shape: tuple[int, ...]) -> None:
    x, dy, w, b, rm, rv = _case(rng, shape)
    for training in (True, False):
        y, mean, invstd = ops.batch_norm(x, w, b, rm.copy(), rv.copy(), training=training,
                                         relu=True)
        y2, _, _ = ref.batch_norm(x.astype(np.float64), w.astype(np.float64),
                                    b.astype(np.float64), rm.astype(np.float64),
                                    rv.astype(np.float64), training=training, relu=True)
        np.testing.assert_allclose(y, y2, rtol=1e-5, atol=1e-5)
        assert (y2 >= 0).all()
        # the reference's backward on the same statistics and relu_y: where the two ReLU
        # masks agree (a value within rounding of 0 may fall on either side)
        agree = (y > 0) == (y2 > 0)
        dx, dw, db = ops.batch_norm_backward(dy, x, w, mean, invstd, training=training,
                                             relu_y=y)
        dx2, dw2, db2 = ref.batch_norm_backward(dy.astype(np.float64), x.astype(np.float64),
                                                w.astype(np.float64), mean.astype(np.float64),
                                                invstd.astype(np.float64), training=training,
                                                relu_y=y.astype(np.float64))
        np.testing.assert_allclose(db, db2, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(dw, dw2, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(dx, dx2, rtol=1e-4, atol=1e-5)
        assert agree.mean() > 0.999


def test_reference_fused_is_relu_of_the_unfused(rng: np.random.Generator) -> None:
    x, dy, w, b, rm, rv = _case(rng, (6, 3, 5))
    for training in (True, False):
        y = ref.batch_norm(x, w, b, rm.copy(), rv.copy(), training=training)[0]
        yf, mean, invstd = ref.batch_norm(x, w, b, rm.copy(), rv.copy(), training=training,
                                          relu=True)
        _same(yf, ref.relu(y), "reference y")
        g = ref.batch_norm_backward(dy, x, w, mean, invstd, training=training, relu_y=yf)
        g2 = ref.batch_norm_backward(ref.relu_backward(dy, yf), x, w, mean, invstd,
                                     training=training)
        for a, e in zip(g, g2, strict=True):
            _same(a, e, "reference gradients")


@pytest.mark.parametrize("impl", ["ops", "reference"])
@pytest.mark.parametrize("shape", [(37, 5), (6, 4, 19), (5, 3, 7, 9)], ids=str)
def test_fused_matches_torch(rng: np.random.Generator, shape: tuple[int, ...],
                             impl: str) -> None:
    """relu(F.batch_norm(...)) and its autograd, in train and eval mode."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    mod = ops if impl == "ops" else ref
    x, dy, w, b, rm, rv = _case(rng, shape)
    for training in (True, False):
        xt = torch.tensor(x, requires_grad=True)
        wt, bt = torch.tensor(w, requires_grad=True), torch.tensor(b, requires_grad=True)
        rmt, rvt = torch.tensor(rm), torch.tensor(rv)
        yt = F.relu(F.batch_norm(xt, rmt, rvt, wt, bt, training=training, momentum=0.1))
        yt.backward(torch.tensor(dy))
        r, v = rm.copy(), rv.copy()
        y, mean, invstd = mod.batch_norm(x, w, b, r, v, training=training, relu=True)
        dx, dw, db = mod.batch_norm_backward(dy, x, w, mean, invstd, training=training,
                                             relu_y=y)
        what = f"{impl} {shape} training={training}"
        np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-5, atol=2e-5, err_msg=what)
        np.testing.assert_allclose(r, rmt.numpy(), rtol=1e-5, atol=1e-6, err_msg=what)
        np.testing.assert_allclose(v, rvt.numpy(), rtol=1e-5, atol=1e-6, err_msg=what)
        np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-4, atol=3e-5, err_msg=what)
        np.testing.assert_allclose(dw, wt.grad.numpy(), rtol=1e-4, atol=5e-5, err_msg=what)
        np.testing.assert_allclose(db, bt.grad.numpy(), rtol=1e-5, atol=5e-5, err_msg=what)


def test_fused_gradient_at_zero_is_torchs(rng: np.random.Generator) -> None:
    """An output exactly 0 (x equal to the running mean, bias 0, eval) gets gradient 0, as
    PyTorch's relu gives at 0; a -0.0 output too."""
    torch = pytest.importorskip("torch")
    z = torch.tensor([0.0, -0.0, 1.0], requires_grad=True)
    torch.relu(z).backward(torch.ones(3))
    assert z.grad.tolist() == [0.0, 0.0, 1.0]
    x, dy, w, _, rm, rv = _case(rng, (6, 3, 4))
    x[0] = rm[:, None]
    y, mean, invstd = ops.batch_norm(x, w, None, rm, rv, relu=True)
    assert (y[0] == 0).all() and (y[1:] > 0).any()
    dx, dw, db = ops.batch_norm_backward(dy, x, w, mean, invstd, training=False, relu_y=y)
    assert (dx[0] == 0).all() and (dx[y > 0] != 0).all()
    _, dw2, db2 = ops.batch_norm_backward(dy * (y > 0), x, w, mean, invstd, training=False)
    _same(dw, dw2, "dweight")
    _same(db, db2, "dbias")


@pytest.mark.parametrize("mod", [ops, ref], ids=["ops", "reference"])
def test_fused_bad_input(mod: Any, rng: np.random.Generator) -> None:
    x, dy, w, b, rm, rv = _case(rng, (4, 3, 5))
    with pytest.raises(TypeError, match="relu"):
        mod.batch_norm(x, w, b, rm, rv, relu=1)
    y, mean, invstd = mod.batch_norm(x, w, b, rm, rv, relu=True)
    with pytest.raises(ValueError, match="relu_y"):
        mod.batch_norm_backward(dy, x, w, mean, invstd, relu_y=y[:, :2])
    with pytest.raises(ValueError, match="relu_y"):
        mod.batch_norm_backward(dy, x, w, mean, invstd, relu_y=y.reshape(4, 15))
