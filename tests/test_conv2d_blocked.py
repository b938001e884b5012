"""The blocked direct convolution (csrc/cpu/conv2d_blocked.cpp), the forward's third form, for
every ISA.

FASTCNN_CONV_ROUTE=blocked forces it wherever it applies (groups = 1); the shape rule
(conv2d_route.cpp) picks it by itself for the shapes where it wins. Channel counts around the
blocks (VL = 8 on generic / avx2, 16 on avx512: 7, 8, 9, 15, 16, 17), output widths and pixel
counts around the register tiles (1 x 8, 2 x 6, 3 x 4 on avx2; up to 16 pixels on avx512), 1x1,
3x3 and 5x5 kernels, strides 1 and 2, padding 0 / 1 / 2, batch 1 and odd, bias or none, the
fused ReLU. Integer inputs match the float64 reference exactly, random-normal ones within the
summation tolerance; every output is one sum in a fixed order, so any thread count gives the
same bits; NaN / inf reach exactly the outputs the reference's im2col form puts them in.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastcnn
from conftest import abs64, check_bitwise, check_exact, check_sum_close, f64, normal, small_ints
from fastcnn import ops
from fastcnn import reference as ref

ROUTE = "FASTCNN_CONV_ROUTE"
CHANNELS = [7, 8, 9, 15, 16, 17]


@pytest.fixture
def blocked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Force the blocked form for the test."""
    monkeypatch.setenv(ROUTE, "blocked")


def check_forward(rng: np.random.Generator, xs: tuple[int, ...], ws: tuple[int, ...],
                  opts: dict[str, Any], *, bias: bool = True, what: str = "") -> None:
    """y and relu(y) against the reference: integers exactly, normals within the tolerance."""
    K, C, R, S = ws
    x, w = small_ints(rng, xs), small_ints(rng, ws)
    b = small_ints(rng, (K,)) if bias else None
    y_ref = ref.conv2d(f64(x), f64(w), f64(b), **opts)
    check_exact(ops.conv2d(x, w, b, **opts), y_ref, f"{what} y (ints)")
    check_exact(ops.conv2d(x, w, b, relu=True, **opts), np.maximum(y_ref, 0.0),
                f"{what} relu(y) (ints)")
    x, w = normal(rng, xs), normal(rng, ws)
    b = normal(rng, (K,)) if bias else None
    y_ref = ref.conv2d(f64(x), f64(w), f64(b), **opts)
    y_abs = ref.conv2d(abs64(x), abs64(w), abs64(b), **opts)
    check_sum_close(ops.conv2d(x, w, b, **opts), y_ref, y_abs, C * R * S + 1, f"{what} y")
    yr = ops.conv2d(x, w, b, relu=True, **opts)
    check_sum_close(yr, np.maximum(y_ref, 0.0), y_abs, C * R * S + 1, f"{what} relu(y)")
    assert not (yr < 0).any(), what


@pytest.mark.parametrize("c", CHANNELS)
@pytest.mark.parametrize("k", CHANNELS)
def test_channel_tails(isa: str, blocked: None, rng: np.random.Generator, c: int, k: int) -> None:
    """Input and output channels around the block width, 3x3 "same" and 1x1 / 2."""
    check_forward(rng, (3, c, 6, 7), (k, c, 3, 3), {"padding": 1}, what=f"[{isa}] C={c} K={k}")
    check_forward(rng, (1, c, 5, 6), (k, c, 1, 1), {"stride": 2}, bias=False,
                  what=f"[{isa}] 1x1/2 C={c} K={k}")


@pytest.mark.parametrize("ksize", [1, 3, 5])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("padding", [0, 1, 2])
@pytest.mark.parametrize("bias", [True, False])
def test_kernels_strides_padding(isa: str, blocked: None, rng: np.random.Generator, ksize: int,
                                 stride: int, padding: int, bias: bool) -> None:
    for n, c, k in ((1, 16, 16), (3, 9, 24), (5, 8, 17)):
        check_forward(rng, (n, c, 9, 11), (k, c, ksize, ksize),
                      {"stride": stride, "padding": padding}, bias=bias,
                      what=f"[{isa}] N={n} C={c} K={k} {ksize}x{ksize}/{stride} pad {padding}")


@pytest.mark.parametrize("q", [1, 3, 4, 5, 6, 7, 8, 9, 12, 13, 15, 16, 17, 24, 25, 33])
def test_output_widths(isa: str, blocked: None, rng: np.random.Generator, q: int) -> None:
    """Output rows around every tile width (4, 6, 8, 12, 16 pixels), tiles that wrap rows, and
    planes of fewer pixels than one tile."""
    check_forward(rng, (2, 16, 3, q), (16, 16, 3, 3), {"padding": 1}, what=f"[{isa}] Q={q}")
    check_forward(rng, (1, 8, 5, 2 * q + 1), (24, 8, 3, 3), {"padding": 1, "stride": 2},
                  what=f"[{isa}] stride 2 Q={q + 1}")
    check_forward(rng, (1, 32, 1, q), (8, 32, 1, 1), {}, what=f"[{isa}] 1x1 row Q={q}")


def test_asymmetric_padding_dilation_and_rectangles(isa: str, blocked: None,
                                                    rng: np.random.Generator) -> None:
    cases = [((2, 9, 7, 10), (9, 9, 2, 4), {"padding": "same"}),
             ((3, 8, 12, 9), (16, 8, 3, 3), {"padding": 2, "dilation": 2}),
             ((1, 5, 9, 9), (6, 5, 3, 1), {"padding": (1, 0), "stride": (2, 1)}),
             ((2, 17, 6, 6), (7, 17, 6, 6), {}),                     # kernel = input: 1 pixel
             ((1, 3, 13, 13), (32, 3, 3, 3), {"stride": 3, "padding": 1})]
    for xs, ws, opts in cases:
        check_forward(rng, xs, ws, opts, what=f"[{isa}] x{xs} w{ws} {opts}")


def test_groups_take_another_form(isa: str, blocked: None, rng: np.random.Generator) -> None:
    """groups > 1 is not the blocked form's: the override leaves it to the others, still right."""
    check_forward(rng, (2, 8, 6, 6), (8, 4, 3, 3), {"padding": 1, "groups": 2},
                  what=f"[{isa}] groups")


def test_resnet_shapes(isa: str, blocked: None, rng: np.random.Generator) -> None:
    """The ResNet-20 stages and the seeds' conv2, at a small batch."""
    cases = [((2, 16, 32, 32), (16, 16, 3, 3), {"padding": 1}),
             ((3, 32, 16, 16), (32, 32, 3, 3), {"padding": 1}),
             ((3, 64, 8, 8), (64, 64, 3, 3), {"padding": 1}),
             ((2, 16, 32, 32), (32, 16, 3, 3), {"padding": 1, "stride": 2}),
             ((3, 32, 16, 16), (64, 32, 3, 3), {"padding": 1, "stride": 2}),
             ((2, 32, 26, 26), (64, 32, 3, 3), {})]
    for xs, ws, opts in cases:
        check_forward(rng, xs, ws, opts, what=f"[{isa}] x{xs} w{ws} {opts}")


@pytest.mark.parametrize("route", ["blocked", None])
def test_bit_identical_for_any_thread_count(isa: str, rng: np.random.Generator,
                                            monkeypatch: pytest.MonkeyPatch,
                                            route: str | None) -> None:
    """Bands and images spread over threads never change a sum (batch 1 cuts rows into bands)."""
    if route:
        monkeypatch.setenv(ROUTE, route)
    else:
        monkeypatch.delenv(ROUTE, raising=False)
    cases = [((1, 16, 32, 32), (16, 16, 3, 3), {"padding": 1}),
             ((5, 17, 9, 9), (9, 17, 3, 3), {"padding": 1, "stride": 2}),
             ((3, 32, 8, 8), (64, 32, 3, 3), {"padding": 1})]
    for xs, ws, opts in cases:
        x, w, b = normal(rng, xs), normal(rng, ws), normal(rng, (ws[0],))
        fastcnn.set_num_threads(1)
        one = [ops.conv2d(x, w, b, **opts), ops.conv2d(x, w, b, relu=True, **opts)]
        for n in (2, 3, 4):
            fastcnn.set_num_threads(n)
            got = [ops.conv2d(x, w, b, **opts), ops.conv2d(x, w, b, relu=True, **opts)]
            for g, e in zip(got, one, strict=True):
                check_bitwise(g, e, f"[{isa}] {route} x{xs} {opts}: {n} threads vs 1")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize(("k", "stride"), [(3, 1), (5, 2)])
def test_nonfinite_weight_meets_the_padding(isa: str, blocked: None, bad: float, k: int,
                                            stride: int) -> None:
    """The padding is real zeros times every weight: 0 * NaN / 0 * inf = NaN on the border rows,
    as the reference (im2col) and PyTorch give; the other output channel stays finite."""
    x = np.ones((1, 9, 4 * stride, 20 * stride), np.float32)
    w = np.ones((2, 9, k, k), np.float32)
    w[1, 0, 0, 0] = bad
    with np.errstate(invalid="ignore"):
        want = ref.conv2d(x, w, padding=k - 1, stride=stride)
    got = ops.conv2d(x, w, padding=k - 1, stride=stride)
    assert np.array_equal(got, want, equal_nan=True), (got.tolist(), want.tolist())
    assert np.isnan(got[0, 1]).any() and np.isfinite(got[0, 0]).all()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_input_stays_local(isa: str, blocked: None, rng: np.random.Generator,
                                     bad: float) -> None:
    """An inf / NaN input reaches exactly the outputs whose window holds it (inf * 0 weight =
    NaN there, as im2col gives); the channel tail's zero lanes and the padding spread nothing."""
    x = small_ints(rng, (2, 9, 7, 8))
    x[1, 8, 3, 5] = bad
    w = small_ints(rng, (10, 9, 3, 3))
    w[3] = 0.0
    b = small_ints(rng, (10,))
    for opts in ({"padding": 1}, {"padding": 2, "stride": 2}):
        with np.errstate(invalid="ignore"):
            want = ref.conv2d(f64(x), f64(w), f64(b), **opts)
        got = ops.conv2d(x, w, b, **opts)
        check_exact(got, want, f"[{isa}] {bad} {opts}")
        assert np.isfinite(got[0]).all()
    xs = np.array([np.inf, -np.inf, np.nan, 1.0], np.float32).reshape(1, 1, 1, 4)
    check_exact(ops.conv2d(xs, np.ones((1, 1, 1, 1), np.float32)),
                ref.conv2d(xs, np.ones((1, 1, 1, 1), np.float32)), "inf/nan 1x1")


def test_relu_keeps_nan(isa: str, blocked: None) -> None:
    """The fused ReLU is store_tile's: max(0, v) keeps a NaN."""
    x = np.ones((1, 8, 3, 3), np.float32)
    x[0, 0, 1, 1] = np.nan
    w = -np.ones((8, 8, 1, 1), np.float32)
    got = ops.conv2d(x, w, relu=True)
    assert np.isnan(got[:, :, 1, 1]).all()
    assert (got[:, :, 0, 0] == 0).all()


@st.composite
def shapes(draw: st.DrawFn) -> tuple[tuple[int, ...], tuple[int, ...], dict[str, Any], bool, int]:
    N, C, K = draw(st.integers(1, 3)), draw(st.integers(1, 20)), draw(st.integers(1, 40))
    R, S = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    same = draw(st.booleans())
    ph, pw = (0, 0) if same else (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    H = draw(st.integers(1 if same else max(1, dh * (R - 1) + 1 - 2 * ph), 14))
    W = draw(st.integers(1 if same else max(1, dw * (S - 1) + 1 - 2 * pw), 20))
    opts = {"stride": (sh, sw), "dilation": (dh, dw), "padding": "same" if same else (ph, pw)}
    return (N, C, H, W), (K, C, R, S), opts, draw(st.booleans()), draw(st.integers(0, 2**32 - 1))


@settings(max_examples=5 * settings.default.max_examples)
@given(case=shapes())
def test_random_shapes(isa: str, case: Any) -> None:
    xs, ws, opts, bias, seed = case
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ROUTE, "blocked")
        check_forward(np.random.default_rng(seed), xs, ws, opts, bias=bias,
                      what=f"[{isa}] x{xs} w{ws} {opts}")


def test_against_torch(isa: str, blocked: None, rng: np.random.Generator) -> None:
    """PyTorch's conv2d (+ ReLU) on the same float32 inputs, within a float32 tolerance."""
    torch = pytest.importorskip("torch")
    cases = [((3, 16, 12, 12), (16, 16, 3, 3), 1, 1), ((2, 17, 11, 11), (9, 17, 3, 3), 2, 1),
             ((1, 8, 9, 9), (24, 8, 5, 5), 1, 2), ((2, 32, 7, 7), (15, 32, 1, 1), 2, 0)]
    for xs, ws, stride, pad in cases:
        x, w, b = normal(rng, xs), normal(rng, ws), normal(rng, (ws[0],))
        want = torch.relu(torch.nn.functional.conv2d(
            torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), stride=stride,
            padding=pad)).numpy()
        got = ops.conv2d(x, w, b, stride=stride, padding=pad, relu=True)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def check_backward_data(rng: np.random.Generator, xs: tuple[int, ...], ws: tuple[int, ...],
                        opts: dict[str, Any], what: str) -> None:
    """dx (plain and through the forward's ReLU) against the reference: integers exactly,
    normals within the tolerance."""
    K, _, R, S = ws
    x, w = small_ints(rng, xs), small_ints(rng, ws)
    y = ops.conv2d(x, w, **opts)
    dy = small_ints(rng, y.shape)
    dx, _, _ = ops.conv2d_backward(dy, x, w, compute_dw=False, bias=False, **opts)
    dx_ref = ref.conv2d_backward(f64(dy), f64(x), f64(w), bias=False, **opts)[0]
    check_exact(dx, dx_ref, f"{what} dx (ints)")
    yr = ops.conv2d(x, w, relu=True, **opts)
    dxr, _, _ = ops.conv2d_backward(dy, x, w, relu_y=yr, compute_dw=False, bias=False, **opts)
    check_exact(dxr, ref.conv2d_backward(f64(dy), f64(x), f64(w), bias=False, relu_y=f64(yr),
                                         **opts)[0], f"{what} dx (ints, relu_y)")
    x, w = normal(rng, xs), normal(rng, ws)
    dy = normal(rng, y.shape)
    dx, _, _ = ops.conv2d_backward(dy, x, w, compute_dw=False, bias=False, **opts)
    exact = ref.conv2d_backward(f64(dy), f64(x), f64(w), bias=False, **opts)[0]
    absd = ref.conv2d_backward(abs64(dy), abs64(x), abs64(w), bias=False, **opts)[0]
    check_sum_close(dx, exact, absd, K * R * S, f"{what} dx")


@pytest.mark.parametrize("c", [7, 8, 9, 16, 17])
@pytest.mark.parametrize(("ksize", "padding"), [(1, 0), (3, 0), (3, 1), (3, 2), (5, 2), (5, 3)])
def test_backward_data(isa: str, blocked: None, rng: np.random.Generator, c: int, ksize: int,
                       padding: int) -> None:
    """Stride-1 backward-data as the blocked forward of dy padded by (R-1) - pad with the
    flipped, transposed weights; channel counts around the blocks on both sides."""
    for n, k in ((1, 16), (3, 9)):
        check_backward_data(rng, (n, c, 9, 10), (k, c, ksize, ksize), {"padding": padding},
                            f"[{isa}] N={n} C={c} K={k} {ksize}x{ksize} pad {padding}")


def test_backward_data_other_geometry(isa: str, blocked: None, rng: np.random.Generator) -> None:
    """Asymmetric "same" padding, dilation, a padding past R-1 (not the blocked form's: another
    form runs it), strides (likewise) and groups."""
    cases = [((2, 9, 7, 10), (9, 9, 2, 4), {"padding": "same"}),
             ((2, 8, 11, 9), (16, 8, 3, 3), {"padding": 2, "dilation": 2}),
             ((1, 8, 6, 6), (8, 8, 3, 3), {"padding": 3}),
             ((2, 8, 9, 9), (8, 8, 3, 3), {"padding": 1, "stride": 2}),
             ((2, 8, 6, 6), (8, 4, 3, 3), {"padding": 1, "groups": 2})]
    for xs, ws, opts in cases:
        check_backward_data(rng, xs, ws, opts, f"[{isa}] x{xs} w{ws} {opts}")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_backward_data_nonfinite(isa: str, blocked: None, bad: float) -> None:
    """A NaN / inf weight keeps backward-data off the padded form (the col2im GEMM keeps it
    local); a NaN / inf in dy reaches the dx elements its taps reach, as in the reference."""
    x = np.ones((1, 8, 5, 9), np.float32)
    w = np.ones((8, 8, 3, 3), np.float32)
    w[2, 3, 0, 0] = bad
    dy = np.ones((1, 8, 5, 9), np.float32)
    dx, _, _ = ops.conv2d_backward(dy, x, w, padding=1, compute_dw=False, bias=False)
    with np.errstate(invalid="ignore"):
        want = ref.conv2d_backward(dy, x, w, padding=1, bias=False)[0]
    assert np.array_equal(dx, want, equal_nan=True)
    assert np.isfinite(dx).sum() == np.isfinite(want).sum() > 0
    w = np.ones((8, 8, 3, 3), np.float32)
    w[4] = 0.0
    dy[0, 4, 2, 3] = bad
    dx, _, _ = ops.conv2d_backward(dy, x, w, padding=1, compute_dw=False, bias=False)
    with np.errstate(invalid="ignore"):
        want = ref.conv2d_backward(dy, x, w, padding=1, bias=False)[0]
    assert np.array_equal(dx, want, equal_nan=True)
    assert np.isfinite(dx).sum() == np.isfinite(want).sum() > 0


@pytest.mark.parametrize("route", ["blocked", None])
def test_backward_data_bit_identical_for_any_thread_count(isa: str, rng: np.random.Generator,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          route: str | None) -> None:
    if route:
        monkeypatch.setenv(ROUTE, route)
    else:
        monkeypatch.delenv(ROUTE, raising=False)
    x, w = normal(rng, (3, 16, 16, 16)), normal(rng, (32, 16, 3, 3))
    dy = normal(rng, (3, 32, 16, 16))
    fastcnn.set_num_threads(1)
    one = ops.conv2d_backward(dy, x, w, padding=1, compute_dw=False, bias=False)[0]
    for n in (2, 3, 4):
        fastcnn.set_num_threads(n)
        got = ops.conv2d_backward(dy, x, w, padding=1, compute_dw=False, bias=False)[0]
        check_bitwise(got, one, f"[{isa}] {route} dx: {n} threads vs 1")
