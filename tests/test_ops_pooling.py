"""fastcnn.ops.avg_pool2d / global_avg_pool2d / global_max_pool2d (and backwards) on every ISA.

The kernels reproduce the reference's summation orders (PyTorch's row-major window sums and
(p, q)-ordered backward for average pooling; one fixed 32-lane order for the global average),
so every comparison with the reference is bit for bit, and so is the one with PyTorch for
avg_pool2d (forward and backward) and the global max. The reference itself is checked against
float64 finite differences.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastcnn
from conftest import check_bitwise, normal, small_ints
from fastcnn import ops
from fastcnn import reference as ref

WIDTHS = [1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 48, 49]

AVG_OPTIONS = [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=1, padding=1),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=3, stride=2, padding=1, count_include_pad=False),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
    dict(kernel_size=2, stride=2, padding=1, ceil_mode=True),
    dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 1), divisor_override=5),
    dict(kernel_size=3, stride=2, divisor_override=-3, ceil_mode=True),
    dict(kernel_size=2, stride=3),                       # stride > kernel: gaps
    dict(kernel_size=(1, 2), stride=(3, 4), ceil_mode=True),
    dict(kernel_size=5, stride=1, padding=2, count_include_pad=False),
    dict(kernel_size=4, stride=3, padding=2, ceil_mode=True),
]


def avg_input(rng: np.random.Generator, shape: tuple[int, ...], specials: bool = False
              ) -> np.ndarray:
    x = normal(rng, shape)
    if specials and x.size:
        u = rng.random(shape)
        x[u < 0.02] = np.nan
        x[(u >= 0.02) & (u < 0.03)] = np.inf
        x[(u >= 0.03) & (u < 0.05)] = -0.0
    return x


def check_avg(rng: np.random.Generator, xs: tuple[int, ...], opts: dict[str, Any],
              what: str = "", specials: bool = False) -> None:
    x = avg_input(rng, xs, specials)
    y_ref = ref.avg_pool2d(x, **opts)
    check_bitwise(ops.avg_pool2d(x, **opts), y_ref, f"{what} {xs} {opts} y")
    dy = avg_input(rng, y_ref.shape, specials)
    dx_ref = ref.avg_pool2d_backward(dy, x, **opts)
    check_bitwise(ops.avg_pool2d_backward(dy, x, **opts), dx_ref, f"{what} {xs} {opts} dx")


@st.composite
def avg_cases(draw: st.DrawFn) -> tuple[tuple[int, ...], dict[str, Any]]:
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    sh, sw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    H = draw(st.integers(max(1, kh - 2 * ph), 20))
    W = draw(st.integers(max(1, kw - 2 * pw), 40))
    opts: dict[str, Any] = dict(kernel_size=(kh, kw), stride=(sh, sw), padding=(ph, pw),
                                ceil_mode=draw(st.booleans()),
                                count_include_pad=draw(st.booleans()))
    if draw(st.booleans()):
        opts["divisor_override"] = draw(st.sampled_from([1, 3, 7, -2]))
    return (draw(st.integers(0, 2)), draw(st.integers(1, 3)), H, W), opts


@given(case=avg_cases(), seed=st.integers(0, 2**32 - 1))
def test_avg_pool2d_random_against_reference(isa: str, case: Any, seed: int) -> None:
    xs, opts = case
    check_avg(np.random.default_rng(seed), xs, opts, isa, specials=seed % 3 == 0)


@pytest.mark.parametrize("opts", AVG_OPTIONS, ids=str)
@pytest.mark.parametrize("w", WIDTHS)
def test_avg_pool2d_widths(isa: str, rng: np.random.Generator, w: int, opts: dict[str, Any]
                           ) -> None:
    """Vector width - 1 / width / width + 1 (8 and 16 lanes, 4 interleaved blocks) and tails."""
    k = opts["kernel_size"]
    kh, kw = (k, k) if isinstance(k, int) else k
    p = opts.get("padding", 0)
    pw = p if isinstance(p, int) else p[1]
    if w + 2 * pw < kw:
        pytest.skip("window wider than the padded input")
    check_avg(rng, (2, 3, max(kh, 5), w), opts, isa)
    check_avg(rng, (1, 2, max(kh, 3), 4 * w + 3), opts, isa)  # long rows: 4-block path


@pytest.mark.parametrize("opts", [dict(kernel_size=2), dict(kernel_size=2, ceil_mode=True),
                                  dict(kernel_size=(3, 2), stride=(3, 2)),
                                  dict(kernel_size=(3, 2), stride=(3, 2), ceil_mode=True),
                                  dict(kernel_size=(1, 2), stride=(1, 2), divisor_override=3)],
                         ids=str)
@pytest.mark.parametrize("q", [1, 7, 8, 9, 15, 16, 17, 33])
def test_avg_pool2d_backward_non_overlapping_2_wide(isa: str, rng: np.random.Generator,
                                                    q: int, opts: dict[str, Any]) -> None:
    """The 2x2/2-style backward (each dx element in at most one window, no scratch pass): Q
    around the 8 and 16 lane widths, even and odd W (ceil_mode: a last window of one column),
    rows no window covers."""
    for w in (2 * q, 2 * q + 1):
        for h in (6, 7, 8):
            check_avg(rng, (2, 3, h, w), opts, isa, specials=True)


@pytest.mark.parametrize("h,w", [(3, 2047), (3, 2048), (3, 2049), (2049, 3), (2050, 9)])
@pytest.mark.parametrize("opts", [dict(kernel_size=2), dict(kernel_size=3, stride=1, padding=1),
                                  dict(kernel_size=3, stride=3, padding=1, ceil_mode=True)],
                         ids=str)
def test_avg_pool2d_long_axes(isa: str, rng: np.random.Generator, h: int, w: int,
                              opts: dict[str, Any]) -> None:
    """The backward tables every row's and column's windows for axes up to 2048 long and
    divides per row beyond: both sides of that limit give the reference's bits."""
    check_avg(rng, (1, 2, h, w), opts, isa, specials=True)


@pytest.mark.parametrize("h,w", [(56, 56), (112, 112), (8, 8), (7, 7), (14, 15)])
@pytest.mark.parametrize("opts", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
                                  dict(kernel_size=3, stride=1, padding=1)], ids=str)
def test_avg_pool2d_cnn_shapes(isa: str, rng: np.random.Generator, h: int, w: int,
                               opts: dict[str, Any]) -> None:
    check_avg(rng, (2, 4, h, w), opts, isa, specials=True)


def test_avg_pool2d_kernel_equals_input(isa: str, rng: np.random.Generator) -> None:
    x = normal(rng, (2, 3, 5, 7))
    y = ops.avg_pool2d(x, (5, 7))
    assert y.shape == (2, 3, 1, 1)
    check_bitwise(y, ref.avg_pool2d(x, (5, 7)), "kernel = input")
    np.testing.assert_allclose(y[:, :, 0, 0], x.astype(np.float64).mean(axis=(2, 3)), rtol=1e-5)
    dy = normal(rng, y.shape)
    dx = ops.avg_pool2d_backward(dy, x, (5, 7))
    check_bitwise(dx, np.broadcast_to(np.float32(0) + dy / np.float32(35), x.shape).copy(), "dx")


def test_avg_pool2d_divisors_at_ceil_mode_edge(isa: str) -> None:
    """PyTorch's divisors: a ceil_mode window past the padded input counts padding only up to
    the padded edge; count_include_pad=False counts input elements only."""
    x = np.ones((1, 1, 5, 5), np.float32)
    # k 3, s 2, pad 1, ceil: windows start at -1, 1, 3 -> ends 2, 4, min(6, 5 + 1) = 6
    y = ops.avg_pool2d(x, 3, stride=2, padding=1, ceil_mode=True)
    assert y.shape == (1, 1, 3, 3)
    counts = np.array([2, 3, 2], np.float32)  # input elements of each window along one axis
    pads = np.array([3, 3, 3], np.float32)    # elements counted with padding (edge-clipped)
    np.testing.assert_array_equal(y[0, 0], np.outer(counts, counts) / np.outer(pads, pads))
    y2 = ops.avg_pool2d(x, 3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)
    np.testing.assert_array_equal(y2, np.ones_like(y2))
    # k 2, s 2, no padding, ceil on W=5: the last window holds one element and divides by 1
    y3 = ops.avg_pool2d(np.ones((1, 1, 2, 5), np.float32), 2, ceil_mode=True)
    np.testing.assert_array_equal(y3[0, 0], [[1, 1, 1]])
    y4 = ops.avg_pool2d(np.ones((1, 1, 2, 5), np.float32), 2, ceil_mode=True, divisor_override=4)
    np.testing.assert_array_equal(y4[0, 0], [[1, 1, 0.5]])


def test_avg_pool2d_exact_integers(isa: str, rng: np.random.Generator) -> None:
    x = small_ints(rng, (2, 3, 9, 19))
    y = ops.avg_pool2d(x, 3, stride=1, padding=1, divisor_override=1)
    want = np.zeros_like(y)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    for i, j in itertools.product(range(3), range(3)):
        want += xp[:, :, i:i + 9, j:j + 19]
    np.testing.assert_array_equal(y, want)


# ---- global pools ------------------------------------------------------------------------------

GLOBAL_SHAPES = [(2, 3, 1, 1), (2, 3, 1, 7), (3, 5, 8, 8), (2, 4, 7, 7), (1, 3, 3, 11),
                 (2, 2, 4, 8), (1, 2, 5, 13), (2, 3, 2, 33), (1, 2, 16, 16), (2, 64, 8, 8),
                 (0, 3, 4, 4), (1, 1, 56, 57)]


def global_input(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    x = small_ints(rng, shape, -3, 3)  # many ties
    x[(x == 0) & (rng.random(shape) < 0.5)] = -0.0
    if x.size:
        planes = x.reshape(-1, shape[2] * shape[3])
        planes[0, rng.integers(0, planes.shape[1], 2)] = np.nan     # NaN wins (the last)
        if planes.shape[0] > 1:
            planes[1] = -np.inf                                     # all -inf: index 0
        if planes.shape[0] > 2:
            planes[2, -1] = np.inf
    return x


@pytest.mark.parametrize("shape", GLOBAL_SHAPES, ids=str)
def test_global_pools_against_reference(isa: str, rng: np.random.Generator,
                                        shape: tuple[int, ...]) -> None:
    x = global_input(rng, shape)
    xn = normal(rng, shape)
    check_bitwise(ops.global_avg_pool2d(xn), ref.global_avg_pool2d(xn), "global_avg")
    check_bitwise(ops.global_avg_pool2d(x), ref.global_avg_pool2d(x), "global_avg specials")
    y_ref, i_ref = ref.global_max_pool2d(x, return_indices=True)
    y, i = ops.global_max_pool2d(x, return_indices=True)
    check_bitwise(y, y_ref, "global_max y")
    check_bitwise(ops.global_max_pool2d(x), y_ref, "global_max y (no indices)")
    assert i.dtype == np.int64 and i.shape == shape[:2]
    np.testing.assert_array_equal(i, i_ref)
    dy = normal(rng, shape[:2])
    check_bitwise(ops.global_avg_pool2d_backward(dy, x), ref.global_avg_pool2d_backward(dy, x),
                  "global_avg dx")
    dx_ref = ref.global_max_pool2d_backward(dy, x)
    check_bitwise(ops.global_max_pool2d_backward(dy, x), dx_ref, "global_max dx")
    check_bitwise(ops.global_max_pool2d_backward(dy, x, indices=i), dx_ref, "global_max dx (idx)")


@given(n=st.integers(0, 3), c=st.integers(1, 9), h=st.integers(1, 12), w=st.integers(1, 40),
       seed=st.integers(0, 2**32 - 1))
def test_global_pools_random(isa: str, n: int, c: int, h: int, w: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = global_input(rng, (n, c, h, w)) if seed % 2 else normal(rng, (n, c, h, w))
    check_bitwise(ops.global_avg_pool2d(x), ref.global_avg_pool2d(x), "global_avg")
    y_ref, i_ref = ref.global_max_pool2d(x, return_indices=True)
    y, i = ops.global_max_pool2d(x, return_indices=True)
    check_bitwise(y, y_ref, "global_max")
    np.testing.assert_array_equal(i, i_ref)


@pytest.mark.parametrize("plane,index", [
    ([1, 3, 3, 2], 1), ([-0.0, 0.0, 0.0], 0), ([0.0, -0.0], 0), ([np.nan, 5, np.nan, 1], 2),
    ([-np.inf] * 5, 0), ([-np.inf, -np.inf, -1e38], 2), ([np.inf, np.nan], 1), ([2.0], 0)])
def test_global_max_selection(isa: str, plane: list[float], index: int) -> None:
    for pad in (0, 8, 15, 16, 17, 40):  # the same plane after `pad` smaller leading elements
        x = np.array([-5.0] * pad + plane, np.float32).reshape(1, 1, 1, -1)
        if pad and plane[0] == -np.inf:
            continue
        y, i = ops.global_max_pool2d(x, return_indices=True)
        assert i[0, 0] == pad + index, (plane, pad, i)
        check_bitwise(y, x.reshape(1, -1)[:, pad + index:pad + index + 1], "y")


def test_global_avg_fixed_order(isa: str) -> None:
    """The 32-lane order: 2^24 + 1 + ... loses the ones a sequential sum would also lose, in
    exactly the lanes the documented order says."""
    x = np.ones((1, 1, 1, 64), np.float32)
    x[0, 0, 0, 0] = 2.0**24   # lane 0: 2^24 + 1 rounds back to 2^24 in float32
    got = ops.global_avg_pool2d(x)[0, 0] * 64
    assert got == np.float32(2.0**24 + 62)  # lanes 1..31 keep their 2 ones, lane 0 none


# ---- PyTorch -----------------------------------------------------------------------------------


@pytest.mark.parametrize("opts", AVG_OPTIONS, ids=str)
def test_avg_pool2d_against_torch(isa: str, rng: np.random.Generator, opts: dict[str, Any]
                                  ) -> None:
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    for xs in [(2, 3, 9, 11), (1, 2, 8, 8), (2, 2, 7, 17), (1, 1, 5, 33)]:
        x = avg_input(rng, xs)
        xt = torch.from_numpy(x).requires_grad_()
        yt = F.avg_pool2d(xt, opts["kernel_size"], opts.get("stride"), opts.get("padding", 0),
                          opts.get("ceil_mode", False), opts.get("count_include_pad", True),
                          opts.get("divisor_override"))
        y = ops.avg_pool2d(x, **opts)
        check_bitwise(y, yt.detach().numpy(), f"torch y {xs} {opts}")
        dy = avg_input(rng, y.shape)
        yt.backward(torch.from_numpy(dy))
        check_bitwise(ops.avg_pool2d_backward(dy, x, **opts), xt.grad.numpy(),
                      f"torch dx {xs} {opts}")
        tx = torch.from_numpy(x)  # tensors in, tensors out
        assert isinstance(ops.avg_pool2d(tx, **opts), torch.Tensor)


def test_global_pools_against_torch(isa: str, rng: np.random.Generator) -> None:
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    for shape in [(2, 64, 8, 8), (3, 5, 7, 7), (1, 2, 1, 1), (2, 3, 13, 9)]:
        x = normal(rng, shape)
        xt = torch.from_numpy(x).requires_grad_()
        yt = F.adaptive_avg_pool2d(xt, 1).flatten(1)
        np.testing.assert_allclose(ops.global_avg_pool2d(x), yt.detach().numpy(), rtol=2e-6,
                                   atol=1e-7)
        dy = normal(rng, shape[:2])
        yt.backward(torch.from_numpy(dy))
        np.testing.assert_allclose(ops.global_avg_pool2d_backward(dy, x), xt.grad.numpy(),
                                   rtol=2e-7, atol=0)
        xi = global_input(rng, shape)
        xt = torch.from_numpy(xi).requires_grad_()
        yt, it = F.adaptive_max_pool2d(xt, 1, return_indices=True)
        y, i = ops.global_max_pool2d(xi, return_indices=True)
        check_bitwise(y, yt.detach().flatten(1).numpy(), "torch global max")
        np.testing.assert_array_equal(i, it.flatten(1).numpy())
        yt.backward(torch.from_numpy(dy).reshape(*shape[:2], 1, 1))
        check_bitwise(ops.global_max_pool2d_backward(dy, xi, indices=i), xt.grad.numpy(),
                      "torch global max dx")


# ---- the reference against finite differences ----------------------------------------------


@pytest.mark.parametrize("opts", AVG_OPTIONS[:9], ids=str)
def test_reference_avg_pool2d_gradient_finite_differences(rng: np.random.Generator,
                                                          opts: dict[str, Any]) -> None:
    x = rng.standard_normal((1, 2, 6, 7))
    y = ref.avg_pool2d(x, **opts)
    dy = rng.standard_normal(y.shape)
    dx = ref.avg_pool2d_backward(dy, x, **opts)
    assert dx.dtype == np.float64
    fd = np.zeros_like(x)
    eps = 1e-6
    for j in range(x.size):
        e = np.zeros(x.size)
        e[j] = eps
        e = e.reshape(x.shape)
        fd.flat[j] = np.sum(dy * (ref.avg_pool2d(x + e, **opts) - ref.avg_pool2d(x - e, **opts)))
    np.testing.assert_allclose(dx, fd / (2 * eps), rtol=1e-6, atol=1e-8)


def test_reference_global_gradients_finite_differences(rng: np.random.Generator) -> None:
    x = rng.standard_normal((2, 3, 4, 5))
    dy = rng.standard_normal((2, 3))
    eps = 1e-6
    for fwd, bwd in [(ref.global_avg_pool2d, ref.global_avg_pool2d_backward),
                     (ref.global_max_pool2d, ref.global_max_pool2d_backward)]:
        dx = bwd(dy, x)
        fd = np.zeros_like(x)
        for j in range(x.size):
            e = np.zeros(x.size)
            e[j] = eps
            e = e.reshape(x.shape)
            fd.flat[j] = np.sum(dy * (fwd(x + e) - fwd(x - e)))
        np.testing.assert_allclose(dx, fd / (2 * eps), rtol=1e-6, atol=1e-8)


# ---- threads, out=, inputs, errors --------------------------------------------------------------


def test_bit_identical_for_1_and_2_threads(isa: str, rng: np.random.Generator) -> None:
    x = normal(rng, (4, 16, 29, 29))
    dy = normal(rng, (4, 16, 15, 15))
    g = normal(rng, (4, 16))
    opts = dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)
    results = []
    for t in (1, 2):
        fastcnn.set_num_threads(t)
        results.append([ops.avg_pool2d(x, **opts), ops.avg_pool2d_backward(dy, x, **opts),
                        ops.global_avg_pool2d(x), ops.global_max_pool2d(x, return_indices=True)[1],
                        ops.global_avg_pool2d_backward(g, x), ops.global_max_pool2d_backward(g, x)])
    for a, b in zip(*results, strict=True):
        assert np.array_equal(a.view(np.uint8), b.view(np.uint8))


@pytest.mark.parametrize("opts", [dict(kernel_size=2), dict(kernel_size=3, stride=1, padding=1),
                                  dict(kernel_size=3, stride=2, padding=1)], ids=str)
def test_avg_pool2d_threads_1_to_4_bit_identical(isa: str, rng: np.random.Generator,
                                                 opts: dict[str, Any]) -> None:
    """The 2x2/2 direct backward, the masked stride-1 borders and the overlapping last blocks:
    the same bits on 1-4 threads (planes split differently), widths around the lane count."""
    for w in (7, 8, 9, 17, 56):
        x = normal(rng, (3, 7, 12, w))
        y = ops.avg_pool2d(x, **opts)
        dy = normal(rng, y.shape)
        results = []
        previous = fastcnn.num_threads()
        for t in (1, 2, 3, 4):
            fastcnn.set_num_threads(t)
            try:
                results.append((ops.avg_pool2d(x, **opts), ops.avg_pool2d_backward(dy, x, **opts)))
            finally:
                fastcnn.set_num_threads(previous)
        for r in results[1:]:
            for a, b in zip(results[0], r, strict=True):
                assert np.array_equal(a.view(np.uint8), b.view(np.uint8))
        check_bitwise(results[0][0], ref.avg_pool2d(x, **opts), f"{w} {opts} y")
        check_bitwise(results[0][1], ref.avg_pool2d_backward(dy, x, **opts), f"{w} {opts} dx")


@pytest.mark.parametrize("opts", [dict(kernel_size=2, stride=1), dict(kernel_size=3, stride=1),
                                  dict(kernel_size=4, stride=1, padding=2),
                                  dict(kernel_size=3, stride=2), dict(kernel_size=3, stride=2,
                                                                      padding=1),
                                  dict(kernel_size=5, stride=2, padding=2)], ids=str)
def test_avg_pool2d_backward_unrolled_rows(isa: str, rng: np.random.Generator,
                                           opts: dict[str, Any]) -> None:
    """The backward's interior rows with the tap count (stride 1: kw 2, 3; others at run time)
    or the two phases' window runs (stride 2: 3x3 pad 0 and pad 1; others at run time) fixed
    at compile time: the reference's bits, widths around the 4-vector block (31, 32, 33) and
    one odd width; N = 1."""
    for w in (31, 32, 33, 45):
        x = normal(rng, (1, 2, 5, w))
        dy = normal(rng, ops.avg_pool2d(x, **opts).shape)
        check_bitwise(ops.avg_pool2d_backward(dy, x, **opts),
                      ref.avg_pool2d_backward(dy, x, **opts), f"{w} {opts} dx")


def test_out_semantics(isa: str, rng: np.random.Generator) -> None:
    x = normal(rng, (2, 3, 8, 9))
    dy = normal(rng, (2, 3, 4, 4))
    g = normal(rng, (2, 3))
    for call, want in [
        (lambda o: ops.avg_pool2d_backward(dy, x, 2, out=o), ref.avg_pool2d_backward(dy, x, 2)),
        (lambda o: ops.global_avg_pool2d_backward(g, x, out=o),
         ref.global_avg_pool2d_backward(g, x)),
        (lambda o: ops.global_max_pool2d_backward(g, x, out=o),
         ref.global_max_pool2d_backward(g, x))]:
        out = np.full(x.shape, 7.0, np.float32)
        assert call(out) is out
        check_bitwise(out, want, "out")
        with pytest.raises(ValueError, match="out has shape"):
            call(np.zeros((2, 3, 8, 8), np.float32))
        with pytest.raises(TypeError, match="out"):
            call(np.zeros(x.shape, np.float64))
    y = np.full((2, 3, 4, 4), 7.0, np.float32)  # the forward's y into out
    assert ops.avg_pool2d(x, 2, out=y) is y
    check_bitwise(y, ref.avg_pool2d(x, 2), "forward out")
    with pytest.raises(ValueError, match="out has shape"):
        ops.avg_pool2d(x, 2, out=np.zeros((2, 3, 4, 5), np.float32))
    with pytest.raises(TypeError, match="out"):
        ops.avg_pool2d(x, 2, out=np.zeros((2, 3, 4, 4), np.float64))
    with pytest.raises(ValueError, match="overlap"):
        ops.avg_pool2d(x, 2, out=x.reshape(-1)[:96].reshape(2, 3, 4, 4))
    xc = x.copy()  # out may be x itself: only its shape is used
    r = ops.avg_pool2d_backward(dy, xc, 2, out=xc)
    assert r is xc
    check_bitwise(xc, ref.avg_pool2d_backward(dy, x, 2), "out = x")


def test_non_contiguous_inputs_and_no_mutation(isa: str, rng: np.random.Generator) -> None:
    base = normal(rng, (2, 3, 10, 18))
    x = base[:, :, :, ::2]
    keep = base.copy()
    check_bitwise(ops.avg_pool2d(x, 3, stride=2, padding=1),
                  ref.avg_pool2d(np.ascontiguousarray(x), 3, stride=2, padding=1), "strided")
    check_bitwise(ops.global_avg_pool2d(x), ref.global_avg_pool2d(np.ascontiguousarray(x)), "g")
    np.testing.assert_array_equal(base, keep)


def test_bad_arguments() -> None:
    x = np.zeros((2, 3, 8, 8), np.float32)
    with pytest.raises(TypeError, match="avg_pool2d: x has dtype float64"):
        ops.avg_pool2d(x.astype(np.float64), 2)
    with pytest.raises(ValueError, match="avg_pool2d: x must be 4-D"):
        ops.avg_pool2d(x[0], 2)
    with pytest.raises(ValueError, match=r"padding .* at most half"):
        ops.avg_pool2d(x, 2, padding=2)
    with pytest.raises(ValueError, match="divisor_override must not be 0"):
        ops.avg_pool2d(x, 2, divisor_override=0)
    with pytest.raises(TypeError, match="divisor_override"):
        ops.avg_pool2d(x, 2, divisor_override=1.5)
    with pytest.raises(TypeError, match="count_include_pad"):
        ops.avg_pool2d(x, 2, count_include_pad="yes")
    with pytest.raises(ValueError, match="larger than the padded input"):
        ops.avg_pool2d(x, 9)
    with pytest.raises(ValueError, match="avg_pool2d_backward: dy has shape"):
        ops.avg_pool2d_backward(np.zeros((2, 3, 3, 4), np.float32), x, 2)
    with pytest.raises(ValueError, match="global_avg_pool2d: x must be 4-D"):
        ops.global_avg_pool2d(x[0])
    with pytest.raises(ValueError, match="empty channel or spatial"):
        ops.global_max_pool2d(np.zeros((2, 3, 0, 4), np.float32))
    with pytest.raises(TypeError, match="global_max_pool2d: x has dtype"):
        ops.global_max_pool2d(x.astype(np.float16))
    with pytest.raises(ValueError, match="global_avg_pool2d_backward: dy has shape"):
        ops.global_avg_pool2d_backward(np.zeros((2, 4), np.float32), x)
    g = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"indices\[1, 2\] = 64 is outside"):
        ops.global_max_pool2d_backward(g, x, indices=np.array([[0, 1, 2], [3, 4, 64]]))
    with pytest.raises(ValueError, match="indices has shape"):
        ops.global_max_pool2d_backward(g, x, indices=np.zeros((3, 2), np.int64))
    with pytest.raises(TypeError, match="indices has dtype int32"):
        ops.global_max_pool2d_backward(g, x, indices=np.zeros((2, 3), np.int32))


def test_reference_bad_arguments() -> None:
    x = np.zeros((2, 3, 8, 8))
    with pytest.raises(ValueError, match="divisor_override must not be 0"):
        ref.avg_pool2d(x, 2, divisor_override=0)
    with pytest.raises(ValueError, match="dy has shape"):
        ref.avg_pool2d_backward(np.zeros((2, 3, 3, 3)), x, 2)
    with pytest.raises(ValueError, match="indices must lie in"):
        ref.global_max_pool2d_backward(np.zeros((2, 3)), x, indices=np.full((2, 3), 64))
    with pytest.raises(TypeError, match="floating-point"):
        ref.global_avg_pool2d(np.zeros((2, 3, 4, 4), np.int32))
