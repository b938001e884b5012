"""Tests of fastcnn.reference, the NumPy oracle of every op.

1. every backward against float64 central finite differences;
2. forwards against naive loop implementations written here;
3. against torch.nn.functional in float64 when torch is importable;
4. "same" padding sizes; 5. argument errors.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from fastcnn import reference as ref

SEED = 1234
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def make_rng(seed: int = SEED) -> np.random.Generator:
    return np.random.default_rng(seed)


# ----------------------------------------------------------------------------------------------
# helpers: finite differences, naive implementations
# ----------------------------------------------------------------------------------------------
def numeric_grad(f: Callable[[], np.ndarray], a: np.ndarray, dy: np.ndarray,
                 eps: float = 1e-6) -> np.ndarray:
    """d sum(f() * dy) / d a by central differences, perturbing ``a`` in place (float64)."""
    g = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
        old = a[idx]
        a[idx] = old + eps
        plus = float(np.sum(f() * dy))
        a[idx] = old - eps
        minus = float(np.sum(f() * dy))
        a[idx] = old
        g[idx] = (plus - minus) / (2 * eps)
    return g


def tf_same_padding(size: int, k: int, stride: int, dil: int) -> tuple[int, int]:
    """TensorFlow's "same": (before, after), the odd extra after."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + dil * (k - 1) + 1 - size, 0)
    return total // 2, total - total // 2


def explicit_padding(padding: Any, H: int, W: int, R: int, S: int, stride: tuple[int, int],
                     dilation: tuple[int, int]) -> tuple[int, int, int, int]:
    """(top, left, bottom, right), computed independently of fastcnn._args."""
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        t, b = tf_same_padding(H, R, stride[0], dilation[0])
        left, r = tf_same_padding(W, S, stride[1], dilation[1])
        return (t, left, b, r)
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    return (ph, pw, ph, pw)


def naive_conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray | None,
                 stride: tuple[int, int], pad: tuple[int, int, int, int],
                 dilation: tuple[int, int], groups: int) -> np.ndarray:
    N, _, H, W = x.shape
    K, Cg, R, S = w.shape
    top, left, bottom, right = pad
    P = (H + top + bottom - dilation[0] * (R - 1) - 1) // stride[0] + 1
    Q = (W + left + right - dilation[1] * (S - 1) - 1) // stride[1] + 1
    Kg = K // groups
    y = np.zeros((N, K, P, Q))
    for n in range(N):
        for k in range(K):
            g = k // Kg
            for p in range(P):
                for q in range(Q):
                    acc = 0.0 if b is None else float(b[k])
                    for c in range(Cg):
                        for r in range(R):
                            for s in range(S):
                                h = p * stride[0] - top + r * dilation[0]
                                ww = q * stride[1] - left + s * dilation[1]
                                if 0 <= h < H and 0 <= ww < W:
                                    acc += x[n, g * Cg + c, h, ww] * w[k, c, r, s]
                    y[n, k, p, q] = acc
    return y


def naive_max_pool2d(x: np.ndarray, k: tuple[int, int], s: tuple[int, int],
                     p: tuple[int, int], d: tuple[int, int], P: int, Q: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch's CPU loop, literally: `if (val > maxval || isnan(val))`."""
    N, C, H, W = x.shape
    y = np.zeros((N, C, P, Q), dtype=x.dtype)
    idx = np.zeros((N, C, P, Q), dtype=np.int64)
    for n in range(N):
        for c in range(C):
            for oh in range(P):
                for ow in range(Q):
                    h0, w0 = oh * s[0] - p[0], ow * s[1] - p[1]
                    taps = [(h0 + i * d[0], w0 + j * d[1])
                            for i in range(k[0]) for j in range(k[1])]
                    taps = [(h, w) for h, w in taps if 0 <= h < H and 0 <= w < W]
                    maxval, maxidx = -math.inf, taps[0][0] * W + taps[0][1]
                    for h, w in taps:
                        val = x[n, c, h, w]
                        if val > maxval or math.isnan(val):
                            maxval, maxidx = val, h * W + w
                    y[n, c, oh, ow], idx[n, c, oh, ow] = maxval, maxidx
    return y, idx


def naive_pool_size(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """PyTorch's pooling_output_shape, in float maths."""
    span = (size + 2 * p - d * (k - 1) - 1) / s
    out = (math.ceil(span) if ceil_mode else math.floor(span)) + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


# ----------------------------------------------------------------------------------------------
# strategies
# ----------------------------------------------------------------------------------------------
@st.composite
def conv_cases(draw: st.DrawFn, max_groups: int = 3, max_extra: int = 4) -> dict[str, Any]:
    groups = draw(st.integers(1, max_groups))
    Cg, Kg = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    R, S = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = draw(st.one_of(st.integers(0, 3), st.tuples(st.integers(0, 3), st.integers(0, 3)),
                             st.sampled_from(["valid", "same"])))
    ph, pw = (0, 0) if isinstance(padding, str) else ref.pair(padding, "padding")
    H = max(1, dilation[0] * (R - 1) + 1 - 2 * ph) + draw(st.integers(0, max_extra))
    W = max(1, dilation[1] * (S - 1) + 1 - 2 * pw) + draw(st.integers(0, max_extra))
    return dict(N=draw(st.integers(0, 2)), C=Cg * groups, K=Kg * groups, H=H, W=W, R=R, S=S,
                stride=stride, padding=padding, dilation=dilation, groups=groups,
                bias=draw(st.booleans()), seed=draw(st.integers(0, 2**32 - 1)))


def conv_arrays(case: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    rng = make_rng(case["seed"])
    x = rng.standard_normal((case["N"], case["C"], case["H"], case["W"]))
    w = rng.standard_normal((case["K"], case["C"] // case["groups"], case["R"], case["S"]))
    b = rng.standard_normal(case["K"]) if case["bias"] else None
    return x, w, b


def conv_kwargs(case: dict[str, Any]) -> dict[str, Any]:
    return {k: case[k] for k in ("stride", "padding", "dilation", "groups")}


@st.composite
def pool_cases(draw: st.DrawFn, max_extra: int = 4) -> dict[str, Any]:
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    padding = (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    ceil_mode = draw(st.booleans())
    H = max(1, dilation[0] * (k[0] - 1) + 1 - 2 * padding[0]) + draw(st.integers(0, max_extra))
    W = max(1, dilation[1] * (k[1] - 1) + 1 - 2 * padding[1]) + draw(st.integers(0, max_extra))
    kw = dict(stride=stride, padding=padding, dilation=dilation, ceil_mode=ceil_mode)
    try:
        P, Q = ref.pool_output_size(H, W, k, stride, padding, dilation, ceil_mode)
    except ValueError:  # a dilated window that covers no input element (tested elsewhere)
        assume(False)
    return dict(N=draw(st.integers(0, 2)), C=draw(st.integers(1, 2)), H=H, W=W, k=k, kw=kw,
                P=P, Q=Q, seed=draw(st.integers(0, 2**32 - 1)))


def distinct_values(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Values 0.1 apart in random order: no ties, safe for finite differences."""
    n = math.prod(shape)
    return (rng.permutation(n) * 0.1 - n * 0.05).reshape(shape)


# ----------------------------------------------------------------------------------------------
# (1) backward passes against central finite differences (float64)
# ----------------------------------------------------------------------------------------------
@SLOW
@given(conv_cases(max_groups=2, max_extra=3))
def test_conv2d_backward_finite_differences(case: dict[str, Any]) -> None:
    x, w, b = conv_arrays(case)
    kw = conv_kwargs(case)
    y = ref.conv2d(x, w, b, **kw)
    dy = make_rng(case["seed"] + 1).standard_normal(y.shape)
    dx, dw, db = ref.conv2d_backward(dy, x, w, bias=case["bias"], **kw)
    assert dx.shape == x.shape and dw.shape == w.shape

    def f() -> np.ndarray:
        return ref.conv2d(x, w, b, **kw)

    np.testing.assert_allclose(dx, numeric_grad(f, x, dy), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dw, numeric_grad(f, w, dy), rtol=1e-6, atol=1e-7)
    if case["bias"]:
        np.testing.assert_allclose(db, numeric_grad(f, b, dy), rtol=1e-6, atol=1e-7)
    else:
        assert db is None


@pytest.mark.parametrize(
    "kw",
    [
        dict(stride=2, padding="same"),                      # "same" with stride 2
        dict(stride=(3, 2), padding=(2, 1)),                 # stride not dividing, pad >= k/2
        dict(stride=1, padding=2, dilation=2, groups=2),     # dilation and groups
        dict(stride=(2, 3), padding="same", dilation=(1, 2)),
    ],
)
def test_conv2d_backward_finite_differences_fixed(kw: dict[str, Any]) -> None:
    rng = make_rng()
    x = rng.standard_normal((2, 4, 7, 8))
    w = rng.standard_normal((4, 4 // kw.get("groups", 1), 3, 3))
    b = rng.standard_normal(4)
    y = ref.conv2d(x, w, b, **kw)
    dy = rng.standard_normal(y.shape)
    dx, dw, db = ref.conv2d_backward(dy, x, w, **kw)

    def f() -> np.ndarray:
        return ref.conv2d(x, w, b, **kw)

    np.testing.assert_allclose(dx, numeric_grad(f, x, dy), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dw, numeric_grad(f, w, dy), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(db, numeric_grad(f, b, dy), rtol=1e-6, atol=1e-7)


@FAST
@given(pool_cases(max_extra=3))
def test_max_pool2d_backward_finite_differences(case: dict[str, Any]) -> None:
    rng = make_rng(case["seed"])
    x = distinct_values(rng, (case["N"], case["C"], case["H"], case["W"]))
    y, idx = ref.max_pool2d(x, case["k"], return_indices=True, **case["kw"])
    dy = rng.standard_normal(y.shape)
    dx = ref.max_pool2d_backward(dy, x, case["k"], **case["kw"])
    dx_given = ref.max_pool2d_backward(dy, x, case["k"], indices=idx, **case["kw"])
    np.testing.assert_array_equal(dx, dx_given)

    def f() -> np.ndarray:
        return ref.max_pool2d(x, case["k"], **case["kw"])

    np.testing.assert_allclose(dx, numeric_grad(f, x, dy), rtol=1e-6, atol=1e-7)


def test_max_pool2d_backward_overlapping_windows_accumulate() -> None:
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 1, 1] = 5.0  # the max of all four 2x2 windows with stride 1
    dy = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    dx = ref.max_pool2d_backward(dy, x, 2, stride=1)
    expected = np.zeros((1, 1, 3, 3))
    expected[0, 0, 1, 1] = 10.0
    np.testing.assert_array_equal(dx, expected)


def test_linear_backward_finite_differences() -> None:
    rng = make_rng()
    x, w, b = rng.standard_normal((3, 5)), rng.standard_normal((4, 5)), rng.standard_normal(4)
    dy = rng.standard_normal((3, 4))
    dx, dw, db = ref.linear_backward(dy, x, w)

    def f() -> np.ndarray:
        return ref.linear(x, w, b)

    np.testing.assert_allclose(dx, numeric_grad(f, x, dy), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dw, numeric_grad(f, w, dy), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(db, numeric_grad(f, b, dy), rtol=1e-6, atol=1e-8)
    assert ref.linear_backward(dy, x, w, bias=False)[2] is None


def test_relu_backward_finite_differences() -> None:
    rng = make_rng()
    x = rng.standard_normal((2, 3, 4, 5))
    x[np.abs(x) < 0.1] = 0.5  # keep away from the kink
    dy = rng.standard_normal(x.shape)
    dx = ref.relu_backward(dy, ref.relu(x))
    np.testing.assert_allclose(dx, numeric_grad(lambda: ref.relu(x), x, dy), atol=1e-8)


@pytest.mark.parametrize("kind", ["ids", "probs", "unnormalised"])
def test_cross_entropy_gradient_finite_differences(kind: str) -> None:
    rng = make_rng()
    logits = rng.standard_normal((4, 5)) * 3
    if kind == "ids":
        labels: np.ndarray = rng.integers(0, 5, 4)
    else:
        labels = rng.random((4, 5))
        if kind == "probs":
            labels /= labels.sum(axis=1, keepdims=True)
    _, dlogits = ref.cross_entropy(logits, labels)
    num = numeric_grad(lambda: np.array(ref.cross_entropy(logits, labels)[0]), logits,
                       np.array(1.0))
    np.testing.assert_allclose(dlogits, num, rtol=1e-6, atol=1e-8)


def test_log_softmax_is_consistent_with_softmax() -> None:
    x = make_rng().standard_normal((3, 4, 5))
    for axis in (0, 1, -1):
        np.testing.assert_allclose(np.exp(ref.log_softmax(x, axis)), ref.softmax(x, axis))
        np.testing.assert_allclose(ref.softmax(x, axis).sum(axis=axis), 1.0)


# ----------------------------------------------------------------------------------------------
# (2) forwards against naive loops
# ----------------------------------------------------------------------------------------------
@FAST
@given(conv_cases())
def test_conv2d_matches_naive_loops(case: dict[str, Any]) -> None:
    x, w, b = conv_arrays(case)
    kw = conv_kwargs(case)
    y = ref.conv2d(x, w, b, **kw)
    pad = explicit_padding(case["padding"], case["H"], case["W"], case["R"], case["S"],
                           case["stride"], case["dilation"])
    expected = naive_conv2d(x, w, b, case["stride"], pad, case["dilation"], case["groups"])
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


@FAST
@given(pool_cases(), st.booleans())
def test_max_pool2d_matches_naive_loops(case: dict[str, Any], special: bool) -> None:
    rng = make_rng(case["seed"])
    shape = (case["N"], case["C"], case["H"], case["W"])
    x = rng.integers(-2, 3, shape).astype(np.float64)  # many ties
    if special:
        x[rng.random(shape) < 0.15] = np.nan
        x[rng.random(shape) < 0.25] = -np.inf
    y, idx = ref.max_pool2d(x, case["k"], return_indices=True, **case["kw"])
    kw = case["kw"]
    k, s, p, d = ref.pool_args(case["k"], kw["stride"], kw["padding"], kw["dilation"])
    assert (case["P"], case["Q"]) == tuple(
        naive_pool_size(n, k[i], s[i], p[i], d[i], kw["ceil_mode"])
        for i, n in enumerate((case["H"], case["W"])))
    y_ex, idx_ex = naive_max_pool2d(x, k, s, p, d, case["P"], case["Q"])
    np.testing.assert_array_equal(y, y_ex)  # NaN == NaN for assert_array_equal
    np.testing.assert_array_equal(idx, idx_ex)
    assert idx.dtype == np.int64


def test_max_pool2d_semantics_by_hand() -> None:
    nan, inf = np.nan, np.inf
    x = np.array([[[[1.0, 3.0, 3.0, 0.0],     # window 0: tie 3 -> first (index 1)
                    [3.0, 2.0, nan, 1.0],     # window 1: NaN wins -> index 6 ...
                    [-inf, -inf, 1.0, nan],   # window 2: all -inf -> first in-bounds (8)
                    [-inf, -inf, nan, 5.0]]]])  # window 3: last NaN (index 14)
    y, idx = ref.max_pool2d(x, 2, return_indices=True)
    np.testing.assert_array_equal(y, [[[[3.0, nan], [-inf, nan]]]])
    np.testing.assert_array_equal(idx, [[[[1, 6], [8, 14]]]])
    # padding is never chosen, even against -inf: index of the first in-bounds element
    y, idx = ref.max_pool2d(np.full((1, 1, 3, 3), -inf), 2, padding=1, return_indices=True)
    np.testing.assert_array_equal(y, np.full((1, 1, 2, 2), -inf))
    np.testing.assert_array_equal(idx, [[[[0, 1], [3, 4]]]])


def test_linear_softmax_cross_entropy_match_naive_loops() -> None:
    rng = make_rng()
    x, w, b = rng.standard_normal((3, 4)), rng.standard_normal((2, 4)), rng.standard_normal(2)
    y = ref.linear(x, w, b)
    for n in range(3):
        for o in range(2):
            assert y[n, o] == pytest.approx(sum(x[n, i] * w[o, i] for i in range(4)) + b[o])
    logits = rng.standard_normal((3, 4))
    p, lp = ref.softmax(logits), ref.log_softmax(logits)
    labels = np.array([0, 3, 1])
    loss, _ = ref.cross_entropy(logits, labels)
    expected_loss = 0.0
    for n in range(3):
        z = sum(math.exp(v) for v in logits[n])
        for c in range(4):
            assert p[n, c] == pytest.approx(math.exp(logits[n, c]) / z)
            assert lp[n, c] == pytest.approx(logits[n, c] - math.log(z))
        expected_loss -= (logits[n, labels[n]] - math.log(z)) / 3
    assert loss == pytest.approx(expected_loss)
    assert isinstance(loss, float)
    y = ref.relu(np.array([-1.0, 0.0, 2.0, np.nan]))
    np.testing.assert_array_equal(y, [0.0, 0.0, 2.0, np.nan])


def test_softmax_is_numerically_stable() -> None:
    x = np.array([[1000.0, 1001.0, 999.0], [-1000.0, -1001.0, -np.inf]])
    p = ref.softmax(x)
    assert np.all(np.isfinite(p))
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    lp = ref.log_softmax(x)
    assert np.isfinite(lp[:, :2]).all() and lp[1, 2] == -np.inf
    loss, grad = ref.cross_entropy(x, np.array([1, 0]))
    assert math.isfinite(loss) and np.isfinite(grad).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_op_keeps_the_dtype(dtype: type) -> None:
    rng = make_rng()
    x = rng.standard_normal((2, 3, 6, 6)).astype(dtype)
    w = rng.standard_normal((4, 3, 3, 3)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    y = ref.conv2d(x, w, b, padding="same")
    assert y.dtype == dtype and y.flags.c_contiguous
    assert all(g.dtype == dtype for g in ref.conv2d_backward(y, x, w, padding="same"))
    assert ref.relu(x).dtype == dtype and ref.relu_backward(x, x).dtype == dtype
    py = ref.max_pool2d(x, 2)
    assert py.dtype == dtype and ref.max_pool2d_backward(py, x, 2).dtype == dtype
    xf, wf = x.reshape(2, -1), rng.standard_normal((5, 108)).astype(dtype)
    d = ref.linear(xf, wf, b[:1].repeat(5))
    assert d.dtype == dtype
    assert all(g.dtype == dtype for g in ref.linear_backward(d, xf, wf))
    assert ref.softmax(d).dtype == dtype and ref.log_softmax(d).dtype == dtype
    loss, dl = ref.cross_entropy(d, np.array([0, 4]))
    assert isinstance(loss, float) and dl.dtype == dtype


def test_float32_agrees_with_float64() -> None:
    rng = make_rng()
    x, w = rng.standard_normal((2, 3, 9, 9)), rng.standard_normal((5, 3, 3, 3))
    y64 = ref.conv2d(x, w, stride=2, padding="same")
    y32 = ref.conv2d(x.astype(np.float32), w.astype(np.float32), stride=2, padding="same")
    np.testing.assert_allclose(y32, y64, rtol=1e-4, atol=1e-5)


def test_empty_batch() -> None:
    rng = make_rng()
    x, w, b = np.zeros((0, 4, 6, 6)), rng.standard_normal((6, 2, 3, 3)), rng.standard_normal(6)
    y = ref.conv2d(x, w, b, groups=2, padding=1)
    assert y.shape == (0, 6, 6, 6)
    dx, dw, db = ref.conv2d_backward(y, x, w, groups=2, padding=1)
    assert dx.shape == x.shape
    np.testing.assert_array_equal(dw, np.zeros_like(w))
    np.testing.assert_array_equal(db, np.zeros(6))
    py, pidx = ref.max_pool2d(x, 2, return_indices=True)
    assert py.shape == pidx.shape == (0, 4, 3, 3)
    assert ref.max_pool2d_backward(py, x, 2).shape == x.shape
    xf, wf = np.zeros((0, 5)), rng.standard_normal((3, 5))
    assert ref.linear(xf, wf, b[:3]).shape == (0, 3)
    dx, dw, db = ref.linear_backward(np.zeros((0, 3)), xf, wf)
    assert dx.shape == (0, 5)
    np.testing.assert_array_equal(dw, np.zeros((3, 5)))
    np.testing.assert_array_equal(db, np.zeros(3))
    assert ref.softmax(np.zeros((0, 3))).shape == (0, 3)
    loss, dl = ref.cross_entropy(np.zeros((0, 3)), np.zeros(0, dtype=np.int64))
    assert loss == 0.0 and dl.shape == (0, 3)
    loss, dl = ref.cross_entropy(np.zeros((0, 3)), np.zeros((0, 3)))
    assert loss == 0.0 and dl.shape == (0, 3)


# ----------------------------------------------------------------------------------------------
# (3) against torch (float64)
# ----------------------------------------------------------------------------------------------
def _torch_pad_conv(torch: Any, F: Any, x: np.ndarray, w: np.ndarray, b: np.ndarray | None,
                    case: dict[str, Any]) -> tuple[Any, Any, Any, Any]:
    """torch conv2d with the padding done by F.pad (torch's "same" only allows stride 1)."""
    top, left, bottom, right = explicit_padding(case["padding"], case["H"], case["W"],
                                                case["R"], case["S"], case["stride"],
                                                case["dilation"])
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    bt = None if b is None else torch.tensor(b, requires_grad=True)
    yt = F.conv2d(F.pad(xt, (left, right, top, bottom)), wt, bt, stride=case["stride"],
                  dilation=case["dilation"], groups=case["groups"])
    return xt, wt, bt, yt


@FAST
@given(conv_cases())
def test_conv2d_and_backward_match_torch(case: dict[str, Any]) -> None:
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x, w, b = conv_arrays(case)
    kw = conv_kwargs(case)
    xt, wt, bt, yt = _torch_pad_conv(torch, F, x, w, b, case)
    y = ref.conv2d(x, w, b, **kw)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    dy = make_rng(case["seed"] + 1).standard_normal(y.shape)
    yt.backward(torch.tensor(dy))
    dx, dw, db = ref.conv2d_backward(dy, x, w, bias=case["bias"], **kw)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dw, wt.grad.numpy(), rtol=1e-10, atol=1e-12)
    if case["bias"]:
        np.testing.assert_allclose(db, bt.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("R,S,dilation", [(3, 3, 1), (2, 4, 1), (3, 2, (2, 3)), (1, 5, 2)])
def test_conv2d_same_stride1_matches_torch_same(R: int, S: int, dilation: Any) -> None:
    torch = pytest.importorskip("torch")
    rng = make_rng()
    x, w = rng.standard_normal((2, 3, 7, 6)), rng.standard_normal((4, 3, R, S))
    y = ref.conv2d(x, w, padding="same", dilation=dilation)
    yt = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), padding="same",
                                    dilation=dilation)
    np.testing.assert_allclose(y, yt.numpy(), rtol=1e-10, atol=1e-12)


@FAST
@given(pool_cases(), st.booleans())
def test_max_pool2d_and_backward_match_torch(case: dict[str, Any], special: bool) -> None:
    torch = pytest.importorskip("torch")
    rng = make_rng(case["seed"])
    shape = (case["N"], case["C"], case["H"], case["W"])
    x = rng.integers(-2, 3, shape).astype(np.float64)  # ties
    if special:
        x[rng.random(shape) < 0.15] = np.nan
        x[rng.random(shape) < 0.25] = -np.inf
    kw = case["kw"]
    y, idx = ref.max_pool2d(x, case["k"], return_indices=True, **kw)
    xt = torch.tensor(x, requires_grad=True)
    yt, it = torch.nn.functional.max_pool2d(xt, case["k"], return_indices=True, **kw)
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_array_equal(idx, it.numpy())
    dy = rng.standard_normal(y.shape)
    yt.backward(torch.tensor(dy))
    np.testing.assert_allclose(ref.max_pool2d_backward(dy, x, case["k"], **kw),
                               xt.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ref.max_pool2d_backward(dy, x, case["k"], indices=idx, **kw),
                               xt.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_relu_linear_softmax_match_torch() -> None:
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = make_rng()
    x = rng.standard_normal((3, 4, 5))
    x[0, 0, :2] = [np.nan, -np.inf]
    np.testing.assert_array_equal(ref.relu(x), torch.relu(torch.tensor(x)).numpy())
    xr = rng.standard_normal((3, 4, 5))  # relu_backward: dy passes at NaN, as in torch
    xr[1, 2, :3] = [np.nan, 0.0, -0.0]
    xt = torch.tensor(xr, requires_grad=True)
    dy = rng.standard_normal(xr.shape)
    torch.relu(xt).backward(torch.tensor(dy))
    np.testing.assert_array_equal(ref.relu_backward(dy, ref.relu(xr)), xt.grad.numpy())

    xl, w, b = rng.standard_normal((6, 5)), rng.standard_normal((3, 5)), rng.standard_normal(3)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (xl, w, b))
    yt = F.linear(xt, wt, bt)
    np.testing.assert_allclose(ref.linear(xl, w, b), yt.detach().numpy(), rtol=1e-12)
    dy = rng.standard_normal((6, 3))
    yt.backward(torch.tensor(dy))
    for mine, theirs in zip(ref.linear_backward(dy, xl, w), (xt, wt, bt), strict=True):
        np.testing.assert_allclose(mine, theirs.grad.numpy(), rtol=1e-12, atol=1e-14)

    s = rng.standard_normal((2, 3, 4)) * 50
    s[0, 0, 0] = -np.inf
    for axis in (0, 1, 2, -1):
        np.testing.assert_allclose(ref.softmax(s, axis), F.softmax(torch.tensor(s), axis),
                                   rtol=1e-12, atol=1e-300)
        np.testing.assert_allclose(ref.log_softmax(s, axis),
                                   F.log_softmax(torch.tensor(s), axis).numpy(), rtol=1e-12)


@pytest.mark.parametrize("kind", ["ids", "probs", "unnormalised"])
def test_cross_entropy_matches_torch(kind: str) -> None:
    torch = pytest.importorskip("torch")
    rng = make_rng()
    logits = rng.standard_normal((6, 5)) * 4
    if kind == "ids":
        labels: np.ndarray = rng.integers(0, 5, 6)
        target = torch.tensor(labels)
    else:
        labels = rng.random((6, 5))
        if kind == "probs":
            labels /= labels.sum(axis=1, keepdims=True)
        target = torch.tensor(labels)
    lt = torch.tensor(logits, requires_grad=True)
    loss_t = torch.nn.functional.cross_entropy(lt, target)
    loss_t.backward()
    loss, dlogits = ref.cross_entropy(logits, labels)
    assert loss == pytest.approx(loss_t.item(), rel=1e-12)
    np.testing.assert_allclose(dlogits, lt.grad.numpy(), rtol=1e-10, atol=1e-14)


# ----------------------------------------------------------------------------------------------
# (4) "same" padding sizes
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("dilation", [1, 2])
def test_same_padding_output_size_is_ceil(stride: int, dilation: int) -> None:
    for H in range(1, 12):
        for R in range(1, 6):
            top, left, bottom, right = ref.conv_padding("same", H, H + 1, R, R, stride, dilation)
            assert (top, bottom) == tf_same_padding(H, R, stride, dilation)
            assert bottom - top in (0, 1) and right - left in (0, 1)
            P, Q = ref.conv_output_size(H, H + 1, R, R, stride, (top, left, bottom, right),
                                        dilation)
            assert (P, Q) == (math.ceil(H / stride), math.ceil((H + 1) / stride))
    x = make_rng().standard_normal((1, 2, 7, 10))
    y = ref.conv2d(x, np.ones((3, 2, 3, 2)), stride=stride, dilation=dilation, padding="same")
    assert y.shape == (1, 3, math.ceil(7 / stride), math.ceil(10 / stride))


def test_same_padding_extra_goes_bottom_right() -> None:
    # H=6, R=2, stride 2: P=3, total = (3-1)*2 + 2 - 6 = 0; H=5: P=3, total 1 -> bottom.
    assert ref.conv_padding("same", 5, 5, 2, 2, 2, 1) == (0, 0, 1, 1)
    assert ref.conv_padding("same", 6, 6, 2, 2, 2, 1) == (0, 0, 0, 0)
    assert ref.conv_padding("same", 4, 4, 4, 4, 1, 1) == (1, 1, 2, 2)
    assert ref.conv_padding("valid", 4, 4, 4, 4) == (0, 0, 0, 0)
    assert ref.conv_padding((1, 2), 4, 4, 3, 3) == (1, 2, 1, 2)


# ----------------------------------------------------------------------------------------------
# (5) bad arguments
# ----------------------------------------------------------------------------------------------
_X = np.zeros((2, 4, 6, 6))
_W = np.zeros((8, 4, 3, 3))
_P = np.zeros((2, 4, 3, 3))  # max_pool2d(_X, 2) output

BAD_ARGS: list[tuple[str, Callable[[], Any], type[Exception], str]] = [
    ("stride0", lambda: ref.conv2d(_X, _W, stride=0), ValueError, "stride"),
    ("stride_float", lambda: ref.conv2d(_X, _W, stride=1.5), TypeError, "stride"),
    ("stride_bool", lambda: ref.conv2d(_X, _W, stride=True), TypeError, "stride"),
    ("stride_len3", lambda: ref.conv2d(_X, _W, stride=(1, 1, 1)), ValueError, "stride"),
    ("padding_neg", lambda: ref.conv2d(_X, _W, padding=-1), ValueError, "padding"),
    ("padding_str", lambda: ref.conv2d(_X, _W, padding="full"), ValueError, "padding"),
    ("padding_float", lambda: ref.conv2d(_X, _W, padding=(1.0, 1)), TypeError, "padding"),
    ("dilation0", lambda: ref.conv2d(_X, _W, dilation=(1, 0)), ValueError, "dilation"),
    ("groups0", lambda: ref.conv2d(_X, _W, groups=0), ValueError, "groups"),
    ("groups_bool", lambda: ref.conv2d(_X, _W, groups=True), TypeError, "groups"),
    ("groups_c", lambda: ref.conv2d(_X, np.zeros((6, 1, 3, 3)), groups=3), ValueError,
     "groups"),
    ("groups_k", lambda: ref.conv2d(_X, np.zeros((3, 2, 3, 3)), groups=2), ValueError,
     "groups"),
    ("w_channels", lambda: ref.conv2d(_X, np.zeros((8, 3, 3, 3))), ValueError,
     "conv2d: w has shape (8, 3, 3, 3) but x has 4 channels and groups=1: "
     "expected w.shape[1] == 4"),
    ("x_ndim", lambda: ref.conv2d(_X[0], _W), ValueError, "x must be 4-D"),
    ("x_int", lambda: ref.conv2d(_X.astype(int), _W), TypeError, "x"),
    ("bias_shape", lambda: ref.conv2d(_X, _W, np.zeros(7)), ValueError, "b has shape (7,)"),
    ("kernel_big", lambda: ref.conv2d(_X, np.zeros((8, 4, 7, 3))), ValueError, "kernel"),
    ("dy_shape", lambda: ref.conv2d_backward(np.zeros((2, 8, 5, 5)), _X, _W), ValueError,
     "dy has shape (2, 8, 5, 5)"),
    ("bias_flag", lambda: ref.conv2d_backward(np.zeros((2, 8, 4, 4)), _X, _W, bias="yes"),
     TypeError, "bias"),
    ("pool_pad", lambda: ref.max_pool2d(_X, 3, padding=2), ValueError, "padding"),
    ("pool_k0", lambda: ref.max_pool2d(_X, 0), ValueError, "kernel_size"),
    ("pool_stride0", lambda: ref.max_pool2d(_X, 2, stride=0), ValueError, "stride"),
    ("pool_ceil", lambda: ref.max_pool2d(_X, 2, ceil_mode=1), TypeError, "ceil_mode"),
    ("pool_big", lambda: ref.max_pool2d(_X, 7), ValueError, "window"),
    ("pool_empty_window", lambda: ref.max_pool2d(np.zeros((1, 1, 2, 2)), 2, padding=1,
                                                 dilation=3), ValueError, "covers no input"),
    ("pool_idx_range", lambda: ref.max_pool2d_backward(_P, _X, 2, indices=np.full(_P.shape, 36)),
     ValueError, "indices"),
    ("pool_idx_dtype", lambda: ref.max_pool2d_backward(_P, _X, 2, indices=_P), TypeError,
     "indices"),
    ("pool_idx_shape", lambda: ref.max_pool2d_backward(
        _P, _X, 2, indices=np.zeros((2, 4, 3), np.int64)), ValueError, "indices"),
    ("pool_dy", lambda: ref.max_pool2d_backward(_P[:, :, :2], _X, 2), ValueError, "dy"),
    ("linear_in", lambda: ref.linear(np.zeros((2, 5)), np.zeros((3, 4))), ValueError,
     "w.shape[1] == x.shape[1] == 5"),
    ("linear_b", lambda: ref.linear(np.zeros((2, 4)), np.zeros((3, 4)), np.zeros(4)),
     ValueError, "b has shape (4,)"),
    ("linear_dy", lambda: ref.linear_backward(np.zeros((2, 4)), np.zeros((2, 4)),
                                              np.zeros((3, 4))), ValueError, "dy"),
    ("relu_dy", lambda: ref.relu_backward(np.zeros(3), np.zeros(4)), ValueError, "dy"),
    ("softmax_axis", lambda: ref.softmax(np.zeros((2, 3)), axis=2), ValueError, "axis"),
    ("softmax_axis_type", lambda: ref.softmax(np.zeros((2, 3)), axis=1.0), TypeError, "axis"),
    ("ce_range", lambda: ref.cross_entropy(np.zeros((2, 3)), np.array([0, 3])), ValueError,
     "labels"),
    ("ce_shape", lambda: ref.cross_entropy(np.zeros((2, 3)), np.zeros((2, 4))), ValueError,
     "labels"),
    ("ce_float_ids", lambda: ref.cross_entropy(np.zeros((2, 3)), np.array([0.0, 1.0])),
     ValueError, "labels"),
    ("ce_bool", lambda: ref.cross_entropy(np.zeros((2, 3)), np.array([True, False])),
     TypeError, "labels"),
    ("ce_logits", lambda: ref.cross_entropy(np.zeros(3), np.array([0])), ValueError, "logits"),
    ("pair_str", lambda: ref.pair("ab", "kernel_size"), TypeError, "kernel_size"),
]


@pytest.mark.parametrize("call,exc,text", [c[1:] for c in BAD_ARGS], ids=[c[0] for c in BAD_ARGS])
def test_bad_arguments_raise(call: Callable[[], Any], exc: type[Exception], text: str) -> None:
    with pytest.raises(exc) as info:
        call()
    assert text in str(info.value)


def test_pair_accepts_ints_and_pairs() -> None:
    assert ref.pair(2, "stride") == (2, 2)
    assert ref.pair(np.int64(3), "stride") == (3, 3)
    assert ref.pair([1, 2], "stride") == (1, 2)
    assert ref.pair((np.int32(4), 5), "stride") == (4, 5)
    assert all(type(v) is int for v in ref.pair(np.int64(3), "stride"))
