"""fastcnn.ops.relu / relu_backward / softmax / log_softmax / cross_entropy, for every ISA.

ReLU is compared bit for bit with PyTorch's rule ``x < 0 ? +0.0 : x`` (NaN, -0.0, +inf and
denormals come back unchanged: no flush-to-zero) and with the reference by value, over lengths
around the vector widths and misaligned starts. Softmax, log-softmax and cross-entropy are
compared with the float64 reference within tolerances derived below, on any axis, plus special
rows (huge, -inf, NaN), every integer label dtype, probability targets, bad labels, and PyTorch
when it is importable.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import EPS32, check_bitwise, normal
from fastcnn import ops
from fastcnn import reference as ref

TINY = np.float32(2.0**-140)  # a denormal
SPECIALS = np.array([0.0, -0.0, np.nan, -np.nan, np.inf, -np.inf, TINY, -TINY, 1e-40, -1e-40,
                     np.finfo(np.float32).tiny, -np.finfo(np.float32).tiny,
                     np.finfo(np.float32).max, -np.finfo(np.float32).max, 1.0, -1.0],
                    dtype=np.float32)


def relu_expected(x: np.ndarray) -> np.ndarray:
    """PyTorch's relu bit for bit: negatives -> +0.0, everything else (NaN, -0.0) unchanged."""
    return np.where(x < 0, np.float32(0.0), x).astype(np.float32)


def relu_backward_expected(dy: np.ndarray, y: np.ndarray) -> np.ndarray:
    """PyTorch's threshold_backward: ``y <= 0 ? +0.0 : dy`` (a NaN in y passes dy through)."""
    return np.where(y <= 0, np.float32(0.0), dy).astype(np.float32)


def mixed_values(rng: np.random.Generator, n: int) -> np.ndarray:
    """Normal values with the special ones sprinkled in."""
    x = normal(rng, (n,))
    pick = rng.random(n) < 0.3
    x[pick] = rng.choice(SPECIALS, size=int(pick.sum()))
    return x


# ----------------------------------------------------------------------------------------------
# ReLU
# ----------------------------------------------------------------------------------------------
def test_relu_specials(isa: str) -> None:
    y = ops.relu(SPECIALS)
    check_bitwise(y, relu_expected(SPECIALS), f"[{isa}] relu")
    assert np.array_equal(y, ref.relu(SPECIALS), equal_nan=True)
    # spelled out: NaN propagates, -0.0 and denormals are kept
    assert np.isnan(y[2]) and np.isnan(y[3])
    assert y[1] == 0 and np.signbit(y[1])  # -0.0 stays -0.0 (PyTorch)
    assert y[4] == np.inf and y[5] == 0 and not np.signbit(y[5])
    assert y[6].view(np.uint32) == TINY.view(np.uint32)
    assert y[7] == 0 and not np.signbit(y[7])


@pytest.mark.parametrize("offset", [0, 1, 3])
def test_relu_lengths_and_offsets(isa: str, rng: np.random.Generator, offset: int) -> None:
    """Every length around the 8 / 16 lanes, starting at any element (masked tails)."""
    big = mixed_values(rng, 4200)
    for n in [*range(70), 127, 128, 129, 1000, 4097]:
        x = big[offset:offset + n]  # contiguous, only 4-byte aligned when offset is odd
        before = x.copy()
        y = ops.relu(x)
        check_bitwise(y, relu_expected(x), f"[{isa}] relu n={n} offset={offset}")
        check_bitwise(x, before, "relu modified its input")
        dy = big[::-1][offset:offset + n].copy()
        dx = ops.relu_backward(dy, y)
        check_bitwise(dx, relu_backward_expected(dy, y), f"[{isa}] relu_backward n={n}")
        assert np.array_equal(dx, ref.relu_backward(dy, y), equal_nan=True)


@settings(max_examples=5 * settings.default.max_examples)
@given(shape=st.lists(st.integers(0, 9), min_size=0, max_size=4), seed=st.integers(0, 2**32 - 1))
def test_relu_random_shapes(isa: str, shape: list[int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = mixed_values(rng, int(np.prod(shape))).reshape(shape)
    y = ops.relu(x)
    assert y.shape == x.shape and y.flags.c_contiguous
    check_bitwise(y, relu_expected(x), f"[{isa}] relu {shape}")
    assert np.array_equal(y, ref.relu(x), equal_nan=True)
    dy = mixed_values(rng, x.size).reshape(shape)
    check_bitwise(ops.relu_backward(dy, y), relu_backward_expected(dy, y), f"[{isa}] dx {shape}")
    check_bitwise(ops.relu_backward(dy, x), ref.relu_backward(dy, x), f"[{isa}] dx(x) {shape}")


def test_relu_against_torch(isa: str, rng: np.random.Generator) -> None:
    torch = pytest.importorskip("torch")
    x = np.concatenate([SPECIALS, mixed_values(rng, 100)])
    dy = np.concatenate([SPECIALS[::-1], mixed_values(rng, 100)])
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    ty = torch.relu(tx)
    ty.backward(torch.from_numpy(dy))
    y = ops.relu(x)
    check_bitwise(y, ty.detach().numpy(), f"[{isa}] relu vs torch")
    check_bitwise(ops.relu_backward(dy, y), tx.grad.numpy(), f"[{isa}] relu_backward vs torch")


def test_relu_aliasing_and_fresh_outputs(isa: str, rng: np.random.Generator) -> None:
    """Results never alias the inputs; the same array may be passed as dy and y."""
    x = mixed_values(rng, 100)
    xc = x.copy()
    y = ops.relu(x)
    assert not np.shares_memory(x, y)
    y2 = ops.relu(y)  # relu of a relu output: idempotent
    check_bitwise(y2, y, "relu(relu(x))")
    d = ops.relu_backward(y, y)
    check_bitwise(d, relu_backward_expected(y, y), "relu_backward(y, y)")
    check_bitwise(x, xc, "input modified")


@pytest.mark.parametrize("n", [0, 1, 15, 16, 17, 64, 65, 1000, (1 << 16) + 3])
def test_relu_out(isa: str, rng: np.random.Generator, n: int) -> None:
    """out= is written and returned: bit for bit the fresh result, in place (out=x, out=dy,
    out=y) included, whatever out held before."""
    x, dy = mixed_values(rng, n), mixed_values(rng, n)
    y_ref = ops.relu(x)
    out = np.full(n, np.nan, np.float32)
    assert ops.relu(x, out=out) is out
    check_bitwise(out, y_ref, f"[{isa}] relu out=")
    xi = x.copy()
    assert ops.relu(xi, out=xi) is xi
    check_bitwise(xi, y_ref, f"[{isa}] relu in place")
    dx_ref = ops.relu_backward(dy, y_ref)
    check_bitwise(dx_ref, relu_backward_expected(dy, y_ref), f"[{isa}] relu_backward")
    out = np.full(n, 7.0, np.float32)
    assert ops.relu_backward(dy, y_ref, out=out) is out
    check_bitwise(out, dx_ref, f"[{isa}] relu_backward out=")
    for name in ("dy", "y"):
        a, b = dy.copy(), y_ref.copy()
        target = a if name == "dy" else b
        assert ops.relu_backward(a, b, out=target) is target
        check_bitwise(target, dx_ref, f"[{isa}] relu_backward out={name}")
    # a 4-D out of the same shape
    x4 = normal(rng, (2, 3, 4, 5))
    out4 = np.empty_like(x4)
    ops.relu(x4, out=out4)
    check_bitwise(out4, np.maximum(x4, np.float32(0)), f"[{isa}] relu 4-D out=")


def test_relu_out_errors(rng: np.random.Generator) -> None:
    x = normal(rng, (3, 4))
    with pytest.raises(ValueError, match=r"relu: out has shape \(3, 5\) but the result has shape"):
        ops.relu(x, out=np.empty((3, 5), np.float32))
    with pytest.raises(TypeError, match="relu: out has dtype float64"):
        ops.relu(x, out=np.empty((3, 4)))
    with pytest.raises(TypeError, match=r"relu: out must be a numpy\.ndarray"):
        ops.relu(x, out=[0.0] * 12)
    with pytest.raises(ValueError, match="out must be C-contiguous"):
        ops.relu(x, out=np.empty((4, 3), np.float32).T)
    ro = np.empty_like(x)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out is read-only"):
        ops.relu(x, out=ro)
    buf = np.zeros(13, np.float32)
    with pytest.raises(ValueError, match="out overlaps x without being the same array"):
        ops.relu(buf[:12].reshape(3, 4), out=buf[1:].reshape(3, 4))
    y = ops.relu(x)
    buf2 = np.concatenate([x.ravel(), [0.0]]).astype(np.float32)
    with pytest.raises(ValueError, match="out overlaps dy"):
        ops.relu_backward(buf2[:12].reshape(3, 4), y, out=buf2[1:].reshape(3, 4))
    with pytest.raises(ValueError, match="relu_backward: out has shape"):
        ops.relu_backward(x, y, out=np.empty(12, np.float32))
    check_bitwise(y, ops.relu(x), "y untouched by the failed calls")


def test_relu_backward_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="dy"):
        ops.relu_backward(np.zeros((2, 3), np.float32), np.zeros((3, 2), np.float32))


# ----------------------------------------------------------------------------------------------
# softmax / log_softmax
# ----------------------------------------------------------------------------------------------
def _softmax_stats(x: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray, int]:
    """|x - max| and |log(sum(exp(x - max)))| in float64, broadcastable, and the row length."""
    x64 = x.astype(np.float64)
    mx = x64.max(axis=axis, keepdims=True)
    with np.errstate(invalid="ignore"):
        ls = np.log(np.exp(x64 - mx).sum(axis=axis, keepdims=True))
        return np.abs(x64 - mx), np.abs(ls), x.shape[axis]


def check_softmax(got: np.ndarray, x: np.ndarray, axis: int, log: bool, what: str) -> None:
    """Tolerance: x - max is rounded (relative error eps * |x - max| after exp), exp and log are
    ~1 ulp, the sum of L terms has relative error ~ sqrt(L) eps, its log an absolute error of the
    same size. Softmax: relative ``4 eps (2 + |x - max| + |lse| + sqrt(L))``; log-softmax:
    absolute ``4 eps (2 + |x - max| + |y| + |lse| + sqrt(L))``. Values that underflow to
    denormals (< 2^-126) get an absolute 2^-126 on top."""
    assert got.dtype == np.float32 and got.shape == x.shape and got.flags.c_contiguous, what
    exact = (ref.log_softmax if log else ref.softmax)(x.astype(np.float64), axis=axis)
    d, ls, L = _softmax_stats(x, axis)
    with np.errstate(invalid="ignore"):  # -inf inputs: inf * 0 tolerances, equal values
        budget = 4 * EPS32 * (2 + d + ls + np.sqrt(L))
        if log:
            tol = budget + 4 * EPS32 * np.abs(exact)
        else:
            tol = budget * exact + 2.0**-126
        bad = ~((got == exact) | (np.abs(got - exact) <= tol))
    assert not bad.any(), (
        f"{what}: {int(bad.sum())} elements off; first at {np.argwhere(bad)[0]}: got "
        f"{got[tuple(np.argwhere(bad)[0])]}, expected {exact[tuple(np.argwhere(bad)[0])]}")


@settings(max_examples=5 * settings.default.max_examples)
@given(shape=st.lists(st.integers(1, 12), min_size=1, max_size=4), data=st.data(),
       scale=st.sampled_from([0.1, 1.0, 10.0, 100.0]), seed=st.integers(0, 2**32 - 1))
def test_softmax_random_against_reference(isa: str, shape: list[int], data: Any, scale: float,
                                          seed: int) -> None:
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    x = (normal(np.random.default_rng(seed), tuple(shape)) * np.float32(scale))
    xc = x.copy()
    for log in (False, True):
        f = ops.log_softmax if log else ops.softmax
        check_softmax(f(x, axis=axis), x, axis % x.ndim, log, f"[{isa}] {f.__name__} {shape} "
                      f"axis={axis}")
    check_bitwise(x, xc, "input modified")


@pytest.mark.parametrize("L", [1, 2, 7, 8, 9, 16, 17, 100, 1000, 5000])
def test_softmax_row_lengths(isa: str, rng: np.random.Generator, L: int) -> None:
    x = normal(rng, (3, L)) * np.float32(5)
    p = ops.softmax(x)
    check_softmax(p, x, 1, False, f"softmax L={L}")
    check_softmax(ops.log_softmax(x), x, 1, True, f"log_softmax L={L}")
    assert np.allclose(p.sum(axis=1, dtype=np.float64), 1.0, rtol=0, atol=4 * EPS32 * np.sqrt(L))
    if L == 1:
        assert np.array_equal(p, np.ones((3, 1), np.float32))
        assert np.array_equal(ops.log_softmax(x), np.zeros((3, 1), np.float32))


def test_softmax_special_rows(isa: str) -> None:
    inf, nan = np.inf, np.nan
    x = np.array([[1e30, 1e30, -1e30, 0.0],  # huge: stable (max subtracted)
                  [-1e4, 0.0, 1e4, 1e4],
                  [-inf, 0.0, 1.0, -inf],  # -inf entries get probability 0
                  [5.0, 5.0, 5.0, 5.0],
                  [-inf, -inf, -inf, -inf],  # all -inf: NaN (as torch and the reference)
                  [inf, 0.0, 1.0, 2.0],  # +inf: NaN
                  [nan, 0.0, 1.0, 2.0]], np.float32)  # NaN: NaN
    for log in (False, True):
        got = (ops.log_softmax if log else ops.softmax)(x)
        with np.errstate(invalid="ignore"):
            exact = (ref.log_softmax if log else ref.softmax)(x.astype(np.float64))
        assert np.array_equal(np.isnan(got), np.isnan(exact)), f"log={log}: NaN pattern"
        check_softmax(got[:4], x[:4], 1, log, f"[{isa}] log={log} finite rows")
    p = ops.softmax(x[:4])
    assert p[0, 2] == 0 and p[2, 0] == 0 and p[2, 3] == 0
    assert np.array_equal(p[3], np.full(4, 0.25, np.float32))
    assert ops.log_softmax(x[2:3])[0, 0] == -np.inf


def test_softmax_empty_and_axis_errors() -> None:
    for shape in [(0, 5), (3, 0), (2, 0, 4)]:
        x = np.zeros(shape, np.float32)
        for axis in range(-len(shape), len(shape)):
            assert ops.softmax(x, axis=axis).shape == shape
            assert ops.log_softmax(x, axis=axis).shape == shape
    x = np.zeros((2, 3), np.float32)
    for bad in (2, -3, 10):
        with pytest.raises(ValueError, match="axis"):
            ops.softmax(x, axis=bad)
        with pytest.raises(ValueError, match="axis"):
            ops.log_softmax(x, axis=bad)
    for bad in (True, 1.0, None):
        with pytest.raises(TypeError, match="axis"):
            ops.softmax(x, axis=bad)
    with pytest.raises((TypeError, ValueError), match="x"):
        ops.softmax(np.float32(1.0))


# ----------------------------------------------------------------------------------------------
# cross-entropy
# ----------------------------------------------------------------------------------------------
def check_cross_entropy(logits: np.ndarray, labels: np.ndarray, what: str) -> None:
    loss, d = ops.cross_entropy(logits, labels)
    lab = labels.astype(np.float64) if labels.dtype.kind == "f" else labels
    loss_ref, d_ref = ref.cross_entropy(logits.astype(np.float64), lab)
    assert type(loss) is float, f"{what}: loss is {type(loss).__name__}"
    N, L = logits.shape
    # per row: lse and x_t - max are rounded at ~eps * (|x - max| + |lse| + sqrt(L)), summed
    # with the targets' weights; dlogits: softmax's relative error times |p * sum(t)| / N.
    diff, lse, _ = _softmax_stats(logits, 1)
    row_scale = 2 + diff.max(axis=1) + lse[:, 0] + np.sqrt(L)
    tsum = (np.abs(labels).sum(axis=1) if labels.dtype.kind == "f" else np.ones(N))
    loss_tol = 8 * EPS32 * float(np.mean(row_scale * np.maximum(tsum, 1))) + 1e-12
    assert abs(loss - loss_ref) <= loss_tol, f"{what}: loss {loss} vs {loss_ref} (tol {loss_tol})"
    assert d.dtype == np.float32 and d.shape == (N, L) and d.flags.c_contiguous
    p = ref.softmax(logits.astype(np.float64))
    tol = (8 * EPS32 * (2 + diff + lse + np.sqrt(L)) * p * np.maximum(tsum, 1)[:, None] / N
           + 4 * EPS32 * np.abs(d_ref) + 2.0**-126)
    bad = ~(np.abs(d - d_ref) <= tol)
    assert not bad.any(), f"{what}: dlogits off at {np.argwhere(bad)[0]}"


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.int8, np.uint16, np.int16,
                                   np.uint32, np.uint64])
def test_cross_entropy_int_labels(isa: str, rng: np.random.Generator, dtype: Any) -> None:
    top = int(np.iinfo(dtype).max) + 1
    for N, L in [(1, 1), (1, 10), (7, 10), (64, 10), (33, 17), (5, min(300, top)), (9, top)
                 if top <= 256 else (9, 1000)]:
        logits = normal(rng, (N, L)) * np.float32(3)
        labels = rng.integers(0, L, size=N).astype(dtype)
        check_cross_entropy(logits, labels, f"[{isa}] {np.dtype(dtype)} ({N}, {L})")


@settings(max_examples=3 * settings.default.max_examples)
@given(N=st.integers(1, 40), L=st.integers(1, 40), scale=st.sampled_from([0.1, 1.0, 30.0]),
       probs=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_cross_entropy_random(isa: str, N: int, L: int, scale: float, probs: bool,
                              seed: int) -> None:
    rng = np.random.default_rng(seed)
    logits = normal(rng, (N, L)) * np.float32(scale)
    if probs:
        t = rng.random((N, L)).astype(np.float32)
        labels = (t / t.sum(axis=1, keepdims=True)).astype(np.float32)
    else:
        labels = rng.integers(0, L, size=N)
    check_cross_entropy(logits, labels, f"[{isa}] ({N}, {L}) probs={probs}")


def test_cross_entropy_probability_targets(isa: str, rng: np.random.Generator) -> None:
    logits = normal(rng, (6, 5))
    onehot = np.eye(5, dtype=np.float32)[[0, 4, 2, 2, 1, 3]]
    check_cross_entropy(logits, onehot, "one-hot")
    loss_p, d_p = ops.cross_entropy(logits, onehot)
    loss_i, d_i = ops.cross_entropy(logits, np.array([0, 4, 2, 2, 1, 3]))
    assert abs(loss_p - loss_i) <= 1e-6 * (1 + abs(loss_i))
    assert np.allclose(d_p, d_i, rtol=1e-6, atol=1e-7)
    soft = rng.random((6, 5)).astype(np.float32)
    check_cross_entropy(logits, (soft / soft.sum(1, keepdims=True)).astype(np.float32), "soft")
    check_cross_entropy(logits, soft, "targets not summing to 1")  # grad: p * sum(t) - t
    check_cross_entropy(logits, np.zeros((6, 5), np.float32), "zero targets")


def test_cross_entropy_stable_for_huge_logits(isa: str) -> None:
    logits = np.array([[1e4, -1e4, 0.0], [-3e4, 3e4, 3e4], [80.0, 90.0, 100.0]], np.float32)
    loss, d = ops.cross_entropy(logits, np.array([1, 0, 2]))
    loss_ref, d_ref = ref.cross_entropy(logits.astype(np.float64), np.array([1, 0, 2]))
    assert np.isfinite(loss) and np.isfinite(d).all()
    assert abs(loss - loss_ref) <= 1e-6 * abs(loss_ref)
    assert np.allclose(d, d_ref, rtol=1e-6, atol=1e-7)


def test_cross_entropy_empty_batch(isa: str) -> None:
    for labels in (np.zeros(0, np.int64), np.zeros((0, 4), np.float32)):
        loss, d = ops.cross_entropy(np.zeros((0, 4), np.float32), labels)
        assert loss == 0.0 and type(loss) is float
        assert d.shape == (0, 4) and d.dtype == np.float32


@pytest.mark.parametrize("bad", [[0, 1, -1], [0, 3, 1], [0, 1, 2**40]])
def test_cross_entropy_bad_labels(bad: list[int]) -> None:
    logits = np.zeros((3, 3), np.float32)
    with pytest.raises(ValueError, match="labels"):
        ops.cross_entropy(logits, np.array(bad, np.int64))


def test_cross_entropy_bad_arguments() -> None:
    logits = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match="labels"):
        ops.cross_entropy(logits, np.array([0, 1], np.int64))  # wrong length
    with pytest.raises(ValueError, match="labels"):
        ops.cross_entropy(logits, np.zeros((3, 1), np.int64))  # 2-D integer labels
    with pytest.raises(ValueError, match="labels"):
        ops.cross_entropy(logits, np.zeros((3, 5), np.float32))  # targets of the wrong shape
    with pytest.raises(ValueError, match="labels"):
        ops.cross_entropy(logits, np.zeros(3, np.float32))  # 1-D float labels
    with pytest.raises(TypeError, match="labels"):
        ops.cross_entropy(logits, np.zeros((3, 4), np.float64))
    with pytest.raises(TypeError, match="labels"):
        ops.cross_entropy(logits, [0, 1, 2])
    with pytest.raises(TypeError, match="labels"):
        ops.cross_entropy(logits, np.zeros(3, bool))
    with pytest.raises(TypeError, match="logits"):
        ops.cross_entropy(logits.astype(np.float64), np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="logits"):
        ops.cross_entropy(np.zeros(4, np.float32), np.zeros(1, np.int64))
    with pytest.raises(ValueError, match=r"logits|classes"):
        ops.cross_entropy(np.zeros((3, 0), np.float32), np.zeros(3, np.int64))


def test_cross_entropy_against_torch(isa: str, rng: np.random.Generator) -> None:
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    for N, L in [(1, 3), (16, 10), (50, 37)]:
        logits = normal(rng, (N, L)) * np.float32(4)
        labels = rng.integers(0, L, size=N)
        soft = rng.random((N, L)).astype(np.float32)
        soft /= soft.sum(axis=1, keepdims=True)
        for lab, tlab in [(labels, torch.from_numpy(labels)),
                          (labels.astype(np.uint8), torch.from_numpy(labels)),
                          (soft, torch.from_numpy(soft.astype(np.float64)))]:
            tx = torch.from_numpy(logits.astype(np.float64)).requires_grad_(True)
            tl = F.cross_entropy(tx, tlab)
            tl.backward()
            loss, d = ops.cross_entropy(logits, lab)
            assert abs(loss - tl.item()) <= 1e-5 * (1 + abs(tl.item())), (N, L, lab.dtype)
            assert np.allclose(d, tx.grad.numpy(), rtol=1e-5, atol=1e-6 / N), (N, L, lab.dtype)
