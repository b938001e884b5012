"""fastcnn.ops against PyTorch itself (CPU, float64 as the truth): conv2d, max_pool2d, relu,
linear and cross_entropy, forward and backward, on random shapes and options, on every ISA.

Skipped when torch is not installed (it is not a test dependency: `pip install torch` to run).
Integer-valued inputs must match exactly; random-normal ones within the float32 summation
tolerance of conftest.sum_tolerance (computed from float64 torch results).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastcnn as fc
from conftest import check_sum_close

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _t(a: np.ndarray, grad: bool = False) -> object:
    return torch.tensor(a.astype(np.float64), requires_grad=grad)


conv_cases = st.tuples(
    st.integers(1, 3),                 # N
    st.integers(1, 3),                 # groups
    st.integers(1, 3), st.integers(1, 3),  # C/groups, K/groups
    st.integers(1, 4), st.integers(1, 4),  # R, S
    st.integers(1, 3), st.integers(1, 2),  # stride, dilation
    st.integers(0, 2),                 # padding
    st.integers(5, 12), st.integers(5, 12),  # H, W
    st.booleans(),                     # integer-valued inputs
)


@given(case=conv_cases)
def test_conv2d_forward_backward_match_torch(isa: str, case: tuple) -> None:
    N, g, cg, kg, R, S, stride, dil, pad, H, W, ints = case
    C, K = cg * g, kg * g
    if dil * (R - 1) + 1 > H + 2 * pad or dil * (S - 1) + 1 > W + 2 * pad:
        return
    rng = np.random.default_rng(hash(case) % 2**32)
    draw = ((lambda s: rng.integers(-3, 4, s).astype(np.float32)) if ints
            else (lambda s: rng.standard_normal(s).astype(np.float32)))
    x, w, b = draw((N, C, H, W)), draw((K, cg, R, S)), draw((K,))
    opts = {"stride": stride, "padding": pad, "dilation": dil, "groups": g}
    y = fc.ops.conv2d(x, w, b, **opts)
    xt, wt, bt = _t(x, True), _t(w, True), _t(b, True)
    yt = F.conv2d(xt, wt, bt, **opts)
    dy = draw(tuple(yt.shape))
    yt.backward(torch.tensor(dy.astype(np.float64)))
    dx, dw, db = fc.ops.conv2d_backward(dy, x, w, **opts)
    with torch.no_grad():
        ya = F.conv2d(_t(np.abs(x)), _t(np.abs(w)), _t(np.abs(b)), **opts).numpy()
        dxa = torch.nn.grad.conv2d_input(x.shape, _t(np.abs(w)), _t(np.abs(dy)), **opts).numpy()
        dwa = torch.nn.grad.conv2d_weight(_t(np.abs(x)), w.shape, _t(np.abs(dy)), **opts).numpy()
    L = cg * R * S
    if ints:
        np.testing.assert_array_equal(y, yt.detach().numpy().astype(np.float32))
        np.testing.assert_array_equal(dx, xt.grad.numpy().astype(np.float32))
        np.testing.assert_array_equal(dw, wt.grad.numpy().astype(np.float32))
        np.testing.assert_array_equal(db, bt.grad.numpy().astype(np.float32))
    else:
        check_sum_close(y, yt.detach().numpy(), ya, L + 1, "y")
        check_sum_close(dx, xt.grad.numpy(), dxa, kg * R * S, "dx")
        check_sum_close(dw, wt.grad.numpy(), dwa, N * y.shape[2] * y.shape[3], "dw")


pool_cases = st.tuples(st.integers(1, 4), st.integers(1, 3), st.integers(1, 2), st.booleans(),
                       st.integers(4, 13), st.integers(4, 13))


@given(case=pool_cases)
def test_max_pool2d_matches_torch_exactly(isa: str, case: tuple) -> None:
    k, stride, dil, ceil_mode, H, W = case
    pad = k // 2
    if dil * (k - 1) + 1 > min(H, W) + 2 * pad:
        return
    rng = np.random.default_rng(hash(case) % 2**32)
    x = rng.integers(-4, 5, (2, 3, H, W)).astype(np.float32)  # many ties
    x[0, 0, 0, :2] = np.nan
    opts = {"stride": stride, "padding": pad, "dilation": dil, "ceil_mode": ceil_mode}
    try:
        yt, it = F.max_pool2d(torch.tensor(x), k, return_indices=True, **opts)
    except RuntimeError:  # torch rejects the geometry: so must we
        with pytest.raises(ValueError):
            fc.ops.max_pool2d(x, k, **opts)
        return
    if (it.numpy() < 0).any() or (it.numpy() >= H * W).any():
        return  # a dilated window that covers no input: fastcnn refuses these geometries
    y, idx = fc.ops.max_pool2d(x, k, return_indices=True, **opts)
    np.testing.assert_array_equal(y, yt.numpy())
    np.testing.assert_array_equal(idx, it.numpy())
    dy = rng.integers(-3, 4, y.shape).astype(np.float32)
    xt = torch.tensor(x, requires_grad=True)
    F.max_pool2d(xt, k, **opts).backward(torch.tensor(dy))
    np.testing.assert_array_equal(fc.ops.max_pool2d_backward(dy, x, k, indices=idx, **opts),
                                  xt.grad.numpy())


def test_relu_linear_cross_entropy_match_torch(isa: str) -> None:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((37, 53)).astype(np.float32)
    x[0, :4] = [np.nan, -0.0, np.inf, -np.inf]
    np.testing.assert_array_equal(fc.ops.relu(x), torch.relu(torch.tensor(x)).numpy())
    dy = rng.standard_normal(x.shape).astype(np.float32)
    xt = torch.tensor(x, requires_grad=True)
    torch.relu(xt).backward(torch.tensor(dy))
    np.testing.assert_array_equal(fc.ops.relu_backward(dy, fc.ops.relu(x)), xt.grad.numpy())

    xi = rng.integers(-3, 4, (29, 61)).astype(np.float32)
    w = rng.integers(-3, 4, (50, 61)).astype(np.float32)
    b = rng.integers(-3, 4, 50).astype(np.float32)
    xt, wt, bt = (torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (xi, w, b))
    yt = F.linear(xt, wt, bt)
    dyl = rng.integers(-3, 4, (29, 50)).astype(np.float32)
    yt.backward(torch.tensor(dyl, dtype=torch.float64))
    np.testing.assert_array_equal(fc.ops.linear(xi, w, b), yt.detach().numpy())
    for got, want in zip(fc.ops.linear_backward(dyl, xi, w), (xt.grad, wt.grad, bt.grad),
                         strict=True):
        np.testing.assert_array_equal(got, want.numpy())

    logits = rng.standard_normal((16, 10)).astype(np.float32) * 3
    for labels in (rng.integers(0, 10, 16), rng.dirichlet(np.ones(10), 16).astype(np.float32)):
        lt = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
        target = torch.tensor(labels) if labels.dtype.kind == "i" else torch.tensor(
            labels, dtype=torch.float64)
        loss_t = F.cross_entropy(lt, target)
        loss_t.backward()
        loss, dlogits = fc.ops.cross_entropy(logits, labels)
        assert loss == pytest.approx(loss_t.item(), rel=1e-5)
        np.testing.assert_allclose(dlogits, lt.grad.numpy(), rtol=1e-4, atol=1e-7)
