"""The blocked direct convolution's weight gradient (csrc/cpu/conv2d_blocked_wgrad.cpp) and its
backward-data of any stride as phase sub-convolutions (csrc/cpu/conv2d_blocked_bwd.cpp), on
every ISA.

FASTCNN_CONV_ROUTE=blocked forces both wherever they apply (groups = 1); "gemm" the GEMM forms
they are compared with. Channel counts around the blocks (VL = 8 on generic / avx2: 7, 8, 9),
1x1 / 3x3 / 5x5, strides 1 / 2 / 3, dilation 2, asymmetric padding, N = 1, planes of 1x1 and
2x3, ResNet-20's and the seeds' shapes at a small batch. Integer inputs match the float64
reference exactly, random-normal ones within the summation tolerance; each element is one
fixed-order sum (reduction chunks fixed by the shape), so any thread count gives the same bits;
NaN / inf reach exactly the elements the reference's im2col / col2im forms put them in.
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


@pytest.fixture
def blocked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Force the blocked forms for the test."""
    monkeypatch.setenv(ROUTE, "blocked")


def _out_shape(xs: tuple[int, ...], ws: tuple[int, ...], opts: dict[str, Any]) -> tuple[int, ...]:
    return ops.conv2d(np.zeros(xs, np.float32), np.zeros(ws, np.float32), **opts).shape


def check_backward(rng: np.random.Generator, xs: tuple[int, ...], ws: tuple[int, ...],
                   opts: dict[str, Any], what: str, *, normals: bool = True) -> None:
    """dx, dw, db against the reference: integers exactly, normals (unless `normals` is False)
    within the tolerance."""
    K, _, R, S = ws
    ys = _out_shape(xs, ws, opts)
    x, w, dy = small_ints(rng, xs), small_ints(rng, ws), small_ints(rng, ys)
    dx, dw, db = ops.conv2d_backward(dy, x, w, **opts)
    rdx, rdw, rdb = ref.conv2d_backward(f64(dy), f64(x), f64(w), **opts)
    check_exact(dx, rdx, f"{what} dx (ints)")
    check_exact(dw, rdw, f"{what} dw (ints)")
    check_exact(db, rdb, f"{what} db (ints)")
    if not normals:
        return
    x, w, dy = normal(rng, xs), normal(rng, ws), normal(rng, ys)
    dx, dw, _ = ops.conv2d_backward(dy, x, w, bias=False, **opts)
    rdx, rdw, _ = ref.conv2d_backward(f64(dy), f64(x), f64(w), bias=False, **opts)
    adx, adw, _ = ref.conv2d_backward(abs64(dy), abs64(x), abs64(w), bias=False, **opts)
    check_sum_close(dx, rdx, adx, K * R * S, f"{what} dx")
    check_sum_close(dw, rdw, adw, ys[0] * ys[2] * ys[3], f"{what} dw")


@pytest.mark.parametrize("c", [7, 8, 9])
@pytest.mark.parametrize("k", [7, 8, 9, 17])
def test_channel_tails(isa: str, blocked: None, rng: np.random.Generator, c: int, k: int) -> None:
    """Channels one below, at and one above the block on both sides; 3x3 / 1 and 3x3 / 2."""
    check_backward(rng, (2, c, 6, 7), (k, c, 3, 3), {"padding": 1}, f"[{isa}] C={c} K={k}")
    check_backward(rng, (1, c, 7, 6), (k, c, 3, 3), {"padding": 1, "stride": 2},
                   f"[{isa}] /2 C={c} K={k}")


@pytest.mark.parametrize("ksize", [1, 3, 5])
@pytest.mark.parametrize("stride", [1, 2, 3])
def test_kernels_and_strides(isa: str, blocked: None, rng: np.random.Generator, ksize: int,
                             stride: int) -> None:
    for n, c, k, pad in ((1, 16, 16, ksize // 2), (3, 9, 24, 0)):
        check_backward(rng, (n, c, 11, 10), (k, c, ksize, ksize),
                       {"stride": stride, "padding": pad},
                       f"[{isa}] N={n} C={c} K={k} {ksize}x{ksize}/{stride} pad {pad}")


def test_geometry(isa: str, blocked: None, rng: np.random.Generator) -> None:
    """Dilation, asymmetric padding, rectangles, tiny planes (1x1, 2x3), a kernel as large as
    the input, padding past the kernel, stride larger than the kernel."""
    cases = [((2, 8, 12, 9), (16, 8, 3, 3), {"padding": 2, "dilation": 2}),
             ((2, 9, 9, 11), (8, 9, 3, 3), {"padding": 2, "dilation": 2, "stride": 2}),
             ((2, 9, 7, 10), (9, 9, 2, 4), {"padding": "same"}),
             ((1, 5, 9, 9), (6, 5, 3, 1), {"padding": (1, 0), "stride": (2, 1)}),
             ((1, 8, 1, 1), (8, 8, 3, 3), {"padding": 1}),
             ((3, 8, 2, 3), (9, 8, 3, 3), {"padding": 1}),
             ((2, 8, 2, 3), (8, 8, 3, 3), {"padding": 1, "stride": 2}),
             ((2, 17, 6, 6), (7, 17, 6, 6), {}),
             ((1, 8, 6, 6), (8, 8, 3, 3), {"padding": 3}),
             ((1, 3, 13, 13), (16, 3, 1, 1), {"stride": 3, "padding": 1})]
    for xs, ws, opts in cases:
        check_backward(rng, xs, ws, opts, f"[{isa}] x{xs} w{ws} {opts}")


def test_resnet_and_seed_shapes(isa: str, blocked: None, rng: np.random.Generator) -> None:
    """ResNet-20's stages and the seeds' conv2 at batch 1 (integers: exact; the float64
    reference's cost keeps the normals to the smaller shapes)."""
    cases = [((1, 16, 32, 32), (16, 16, 3, 3), {"padding": 1}),
             ((1, 32, 16, 16), (32, 32, 3, 3), {"padding": 1}),
             ((1, 64, 8, 8), (64, 64, 3, 3), {"padding": 1}),
             ((1, 16, 32, 32), (32, 16, 3, 3), {"padding": 1, "stride": 2}),
             ((1, 32, 16, 16), (64, 32, 3, 3), {"padding": 1, "stride": 2}),
             ((1, 32, 26, 26), (64, 32, 3, 3), {})]
    for xs, ws, opts in cases:
        check_backward(rng, xs, ws, opts, f"[{isa}] x{xs} w{ws} {opts}", normals=False)


def test_against_the_gemm_forms(isa: str, rng: np.random.Generator,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The blocked passes against the GEMM forms (split-K weight gradient, col2im backward-data)
    on the same float32 inputs."""
    for xs, ws, opts in (((3, 16, 12, 12), (32, 16, 3, 3), {"padding": 1, "stride": 2}),
                         ((2, 9, 10, 10), (17, 9, 5, 5), {"padding": 2})):
        x, w = normal(rng, xs), normal(rng, ws)
        dy = normal(rng, _out_shape(xs, ws, opts))
        got = {}
        for route in ("blocked", "gemm"):
            monkeypatch.setenv(ROUTE, route)
            got[route] = ops.conv2d_backward(dy, x, w, bias=False, **opts)[:2]
        for a, b in zip(got["blocked"], got["gemm"], strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("route", ["blocked", None])
def test_bit_identical_for_any_thread_count(isa: str, rng: np.random.Generator,
                                            monkeypatch: pytest.MonkeyPatch,
                                            route: str | None) -> None:
    """Threads take chunks and k slices, never change a sum: 1, 2 and 3 threads, the same bits."""
    if route:
        monkeypatch.setenv(ROUTE, route)
    else:
        monkeypatch.delenv(ROUTE, raising=False)
    cases = [((1, 16, 32, 32), (16, 16, 3, 3), {"padding": 1}),
             ((5, 16, 16, 16), (32, 16, 3, 3), {"padding": 1, "stride": 2}),
             ((3, 32, 8, 8), (64, 32, 3, 3), {"padding": 1})]
    for xs, ws, opts in cases:
        x, w = normal(rng, xs), normal(rng, ws)
        dy = normal(rng, _out_shape(xs, ws, opts))
        fastcnn.set_num_threads(1)
        one = ops.conv2d_backward(dy, x, w, **opts)
        for n in (2, 3):
            fastcnn.set_num_threads(n)
            got = ops.conv2d_backward(dy, x, w, **opts)
            for g, e, name in zip(got, one, ("dx", "dw", "db"), strict=True):
                check_bitwise(g, e, f"[{isa}] {route} x{xs} {opts} {name}: {n} threads vs 1")


def test_rule_picks_the_blocked_passes_on_avx2(rng: np.random.Generator,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Under the rule (no override) ResNet-20's 3x3 weight gradients and stride-2
    backward-data are the blocked forms' bits (AVX2 / AVX-512 only; generic keeps the others)."""
    from fastcnn import _cpu
    if _cpu.isa() == "generic":
        pytest.skip("the rule never picks the blocked form on the generic ISA")
    for xs, ws, opts in (((4, 32, 16, 16), (32, 32, 3, 3), {"padding": 1}),
                         ((4, 32, 16, 16), (64, 32, 3, 3), {"padding": 1, "stride": 2})):
        x, w = normal(rng, xs), normal(rng, ws)
        dy = normal(rng, _out_shape(xs, ws, opts))
        monkeypatch.setenv(ROUTE, "blocked")
        want = ops.conv2d_backward(dy, x, w, bias=False, **opts)[:2]
        monkeypatch.delenv(ROUTE)
        got = ops.conv2d_backward(dy, x, w, bias=False, **opts)[:2]
        for g, e in zip(got, want, strict=True):
            check_bitwise(g, e, f"rule vs blocked x{xs} {opts}")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_stays_local(isa: str, blocked: None, rng: np.random.Generator,
                               bad: float) -> None:
    """A NaN / inf in x or dy reaches exactly the dw / dx elements the reference's products put
    it in (inf * 0 = NaN included): no discarded column, the channel tails' lanes dropped."""
    for opts in ({"padding": 1}, {"padding": 2, "stride": 2}, {"padding": 1, "stride": 3}):
        x, w = small_ints(rng, (2, 9, 8, 9)), small_ints(rng, (10, 9, 3, 3))
        dy = small_ints(rng, _out_shape(x.shape, w.shape, opts))
        x[1, 8, 3, 5] = bad
        dy[0, 3, 1, 2] = bad
        with np.errstate(invalid="ignore", over="ignore"):
            want = ref.conv2d_backward(f64(dy), f64(x), f64(w), **opts)
        got = ops.conv2d_backward(dy, x, w, **opts)
        for g, e, name in zip(got, want, ("dx", "dw", "db"), strict=True):
            check_exact(g, e, f"[{isa}] {bad} {opts} {name}")


def test_nonfinite_weight_keeps_dx_local(isa: str, blocked: None) -> None:
    """A NaN weight sends strided backward-data to the col2im form (the phases' padding would
    multiply it by zeros): dx matches the reference's NaN pattern."""
    x = np.ones((1, 8, 9, 9), np.float32)
    w = np.ones((8, 8, 3, 3), np.float32)
    w[2, 3, 0, 0] = np.nan
    dy = np.ones((1, 8, 5, 5), np.float32)
    dx = ops.conv2d_backward(dy, x, w, padding=1, stride=2, compute_dw=False, bias=False)[0]
    with np.errstate(invalid="ignore"):
        want = ref.conv2d_backward(dy, x, w, padding=1, stride=2, bias=False)[0]
    assert np.array_equal(dx, want, equal_nan=True)
    assert np.isfinite(dx).sum() == np.isfinite(want).sum() > 0


@st.composite
def shapes(draw: st.DrawFn) -> tuple[tuple[int, ...], tuple[int, ...], dict[str, Any], int]:
    N, C, K = draw(st.integers(1, 2)), draw(st.integers(1, 18)), draw(st.integers(1, 18))
    R, S = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    H = draw(st.integers(max(1, dh * (R - 1) + 1 - 2 * ph), 11))
    W = draw(st.integers(max(1, dw * (S - 1) + 1 - 2 * pw), 12))
    opts = {"stride": (sh, sw), "dilation": (dh, dw), "padding": (ph, pw)}
    return (N, C, H, W), (K, C, R, S), opts, draw(st.integers(0, 2**32 - 1))


@settings(max_examples=30, deadline=None)
@given(case=shapes())
def test_random_shapes(case: Any) -> None:
    xs, ws, opts, seed = case
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ROUTE, "blocked")
        check_backward(np.random.default_rng(seed), xs, ws, opts, f"x{xs} w{ws} {opts}")
