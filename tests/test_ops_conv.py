"""fastcnn.ops.conv2d / conv2d_backward against fastcnn.reference, for every ISA.

Every case is run twice: with small-integer inputs (every sum is exact in float32, so the
kernels must match the float64 reference exactly, whatever their summation order) and with
random-normal inputs (within conftest.sum_tolerance of the float64 reference). Shapes come from
hypothesis (random geometry and options) and from a named list of edges: 1x1 kernels, kernel =
input, widths around the micro-kernel tiles (MR 4/8, NR 8/24/48), strides that don't divide,
large padding, groups and depthwise, reductions longer than KC = 256.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import abs64, check_bitwise, check_exact, check_sum_close, f64, normal, small_ints
from fastcnn import ops
from fastcnn import reference as ref

# tile-1, tile, tile+1 for the micro-kernels' MR (4, 8) and NR (8, 24, 48)
WIDTHS = [7, 8, 9, 15, 16, 17, 23, 24, 25, 31, 32, 33, 47, 48, 49]


def _lengths(xs: tuple[int, ...], ws: tuple[int, ...], opts: dict[str, Any]) -> dict[str, int]:
    """Reduction lengths of y, dx, dw, db (upper bounds: every kernel tap counted)."""
    N = xs[0]
    K, Cg, R, S = ws
    G = opts.get("groups", 1)
    P, Q = ref.conv2d(np.zeros((1, *xs[1:])), np.zeros(ws), **opts).shape[2:]
    return {"y": Cg * R * S + 1, "dx": K // G * R * S, "dw": N * P * Q, "db": N * P * Q}


def run_conv_case(rng: np.random.Generator, xs: tuple[int, ...], ws: tuple[int, ...],
                  opts: dict[str, Any], *, bias: bool = True, what: str = "") -> None:
    """Forward (plain and fused ReLU) and backward against the reference, exact and normal."""
    L = _lengths(xs, ws, opts)
    K = ws[0]
    # 1. small integers: exact
    x, w = small_ints(rng, xs), small_ints(rng, ws)
    b = small_ints(rng, (K,)) if bias else None
    y_ref = ref.conv2d(f64(x), f64(w), f64(b), **opts)
    y = ops.conv2d(x, w, b, **opts)
    check_exact(y, y_ref, f"{what} y (ints)")
    check_exact(ops.conv2d(x, w, b, relu=True, **opts), np.maximum(y_ref, 0.0),
                f"{what} relu(y) (ints)")
    dy = small_ints(rng, y_ref.shape)
    dx, dw, db = ops.conv2d_backward(dy, x, w, bias=bias, **opts)
    dx_ref, dw_ref, db_ref = ref.conv2d_backward(f64(dy), f64(x), f64(w), bias=bias, **opts)
    check_exact(dx, dx_ref, f"{what} dx (ints)")
    check_exact(dw, dw_ref, f"{what} dw (ints)")
    if bias:
        check_exact(db, db_ref, f"{what} db (ints)")
    else:
        assert db is None
    # the ReLU's backward fused into the passes (relu_y: the forward's ReLU output, zeros and all)
    yr = ops.conv2d(x, w, b, relu=True, **opts)
    exp = ref.conv2d_backward(f64(dy), f64(x), f64(w), bias=bias, relu_y=f64(yr), **opts)
    for cdx in (True, False):
        got = ops.conv2d_backward(dy, x, w, bias=bias, relu_y=yr, compute_dx=cdx, **opts)
        if cdx:
            check_exact(got[0], exp[0], f"{what} dx (ints, relu_y)")
        else:
            assert got[0] is None
        check_exact(got[1], exp[1], f"{what} dw (ints, relu_y, compute_dx={cdx})")
        if bias:
            check_exact(got[2], exp[2], f"{what} db (ints, relu_y, compute_dx={cdx})")

    # 2. random normal: within the summation tolerance
    x, w = normal(rng, xs), normal(rng, ws)
    b = normal(rng, (K,)) if bias else None
    y = ops.conv2d(x, w, b, **opts)
    y_ref = ref.conv2d(f64(x), f64(w), f64(b), **opts)
    y_abs = ref.conv2d(abs64(x), abs64(w), abs64(b), **opts)
    check_sum_close(y, y_ref, y_abs, L["y"], f"{what} y")
    yr = ops.conv2d(x, w, b, relu=True, **opts)
    check_sum_close(yr, np.maximum(y_ref, 0.0), y_abs, L["y"], f"{what} relu(y)")
    assert not (yr < 0).any()
    dy = normal(rng, y_ref.shape)
    dx, dw, db = ops.conv2d_backward(dy, x, w, bias=bias, **opts)
    exact = ref.conv2d_backward(f64(dy), f64(x), f64(w), bias=bias, **opts)
    absd = ref.conv2d_backward(abs64(dy), abs64(x), abs64(w), bias=bias, **opts)
    check_sum_close(dx, exact[0], absd[0], L["dx"], f"{what} dx")
    check_sum_close(dw, exact[1], absd[1], L["dw"], f"{what} dw")
    if bias:
        check_sum_close(db, exact[2], absd[2], L["db"], f"{what} db")


# ----------------------------------------------------------------------------------------------
# hypothesis: random geometry and options
# ----------------------------------------------------------------------------------------------
@st.composite
def conv_cases(draw: st.DrawFn) -> tuple[tuple[int, ...], tuple[int, ...], dict[str, Any], bool,
                                         int]:
    groups = draw(st.integers(1, 3))
    Cg, Kg = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    N = draw(st.integers(0, 3))
    R, S = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    ints13 = st.integers(1, 3)
    stride = draw(st.one_of(ints13, st.tuples(ints13, ints13)))
    dilation = draw(st.one_of(st.just(1), ints13, st.tuples(ints13, ints13)))
    ints03 = st.integers(0, 3)
    padding = draw(st.one_of(st.sampled_from(["same", "valid"]), ints03,
                             st.tuples(ints03, ints03)))
    dh, dw = ref.pair(dilation, "dilation")
    if isinstance(padding, str):
        ph = pw = 0
    else:
        ph, pw = ref.pair(padding, "padding")
    lo_h = max(1, dh * (R - 1) + 1 - (0 if padding == "same" else 2 * ph))
    lo_w = max(1, dw * (S - 1) + 1 - (0 if padding == "same" else 2 * pw))
    if padding == "same":
        lo_h = lo_w = 1
    H, W = draw(st.integers(lo_h, lo_h + 8)), draw(st.integers(lo_w, lo_w + 8))
    opts = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    return ((N, groups * Cg, H, W), (groups * Kg, Cg, R, S), opts, draw(st.booleans()),
            draw(st.integers(0, 2**32 - 1)))


@settings(max_examples=20 * settings.default.max_examples)
@given(case=conv_cases())
def test_conv2d_random_against_reference(isa: str, case: Any) -> None:
    xs, ws, opts, bias, seed = case
    run_conv_case(np.random.default_rng(seed), xs, ws, opts, bias=bias,
                  what=f"[{isa}] x{xs} w{ws} {opts}")


@st.composite
def wide_conv_cases(draw: st.DrawFn) -> tuple[tuple[int, ...], tuple[int, ...], dict[str, Any],
                                              int]:
    """Fewer, larger problems: several tiles and KC slices in each GEMM dimension."""
    groups = draw(st.sampled_from([1, 2]))
    Cg, Kg = draw(st.integers(1, 40)), draw(st.integers(1, 60))
    N = draw(st.integers(1, 3))
    R, S = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = draw(st.integers(1, 2))
    H, W = draw(st.integers(R, 20)), draw(st.integers(S, 60))
    padding = draw(st.sampled_from([0, 1, "same"]))
    opts = {"stride": stride, "padding": padding, "groups": groups}
    return (N, groups * Cg, H, W), (groups * Kg, Cg, R, S), opts, draw(st.integers(0, 2**32 - 1))


@settings(max_examples=5 * settings.default.max_examples)
@given(case=wide_conv_cases())
def test_conv2d_random_wide_against_reference(isa: str, case: Any) -> None:
    xs, ws, opts, seed = case
    run_conv_case(np.random.default_rng(seed), xs, ws, opts, what=f"[{isa}] x{xs} w{ws} {opts}")


@pytest.mark.fuzz
@settings(max_examples=50 * settings.default.max_examples)
@given(case=conv_cases())
def test_conv2d_fuzz(isa: str, case: Any) -> None:
    """Developers' long run (``-m fuzz``; HYPOTHESIS_PROFILE=fuzz for even more)."""
    xs, ws, opts, bias, seed = case
    run_conv_case(np.random.default_rng(seed), xs, ws, opts, bias=bias,
                  what=f"[{isa}] x{xs} w{ws} {opts}")


@pytest.mark.fuzz
@settings(max_examples=10 * settings.default.max_examples)
@given(case=wide_conv_cases())
def test_conv2d_wide_fuzz(isa: str, case: Any) -> None:
    xs, ws, opts, seed = case
    run_conv_case(np.random.default_rng(seed), xs, ws, opts, what=f"[{isa}] x{xs} w{ws} {opts}")


# ----------------------------------------------------------------------------------------------
# named edge shapes
# ----------------------------------------------------------------------------------------------
def _edge(name: str, xs: tuple[int, ...], ws: tuple[int, ...], **opts: Any) -> Any:
    return pytest.param(xs, ws, opts, id=name)


EDGES = [
    _edge("1x1", (2, 5, 6, 7), (3, 5, 1, 1)),
    _edge("1x1-1pixel", (3, 4, 1, 1), (6, 4, 1, 1)),
    _edge("1x1-stride2", (2, 3, 9, 10), (4, 3, 1, 1), stride=2),
    _edge("1x1-padded", (1, 2, 3, 3), (2, 2, 1, 1), padding=1),
    _edge("kernel=input", (2, 3, 5, 7), (4, 3, 5, 7)),
    _edge("kernel=input-dilated", (2, 2, 5, 7), (3, 2, 3, 4), dilation=2),
    _edge("kernel=padded-input", (1, 2, 3, 3), (2, 2, 5, 5), padding=1),
    _edge("batch1", (1, 3, 8, 8), (4, 3, 3, 3)),
    _edge("stride3-nondividing", (2, 3, 10, 11), (5, 3, 3, 3), stride=3),
    _edge("stride-2x3-nondividing", (2, 2, 11, 13), (3, 2, 2, 3), stride=(2, 3)),
    _edge("stride>kernel", (1, 2, 9, 9), (2, 2, 2, 2), stride=3),
    _edge("stride>input", (1, 1, 3, 3), (1, 1, 2, 2), stride=5, padding=1),
    _edge("padding=k/2", (2, 3, 6, 6), (4, 3, 3, 3), padding=1),
    _edge("padding>k/2", (2, 3, 6, 6), (4, 3, 3, 3), padding=2),
    _edge("padding>=k", (1, 2, 4, 5), (3, 2, 3, 3), padding=4),
    _edge("padding-pair", (2, 3, 6, 7), (4, 3, 3, 5), padding=(0, 3)),
    _edge("same-even-kernel", (2, 3, 7, 8), (4, 3, 4, 2), padding="same"),
    _edge("same-stride2", (2, 3, 7, 8), (4, 3, 3, 3), padding="same", stride=2),
    _edge("same-stride3-dil2", (1, 2, 10, 11), (3, 2, 3, 2), padding="same", stride=3,
          dilation=2),
    _edge("valid", (1, 3, 7, 6), (2, 3, 3, 2), padding="valid"),
    _edge("dilation3-stride2", (2, 2, 13, 12), (3, 2, 3, 3), dilation=3, stride=2, padding=1),
    _edge("dilation-pair", (1, 2, 9, 10), (3, 2, 2, 3), dilation=(3, 1), padding=(1, 2)),
    _edge("groups2", (2, 6, 7, 7), (4, 3, 3, 3), groups=2),
    _edge("groups3-stride2", (2, 9, 8, 9), (6, 3, 3, 3), groups=3, stride=2, padding=1),
    _edge("depthwise", (2, 8, 9, 9), (8, 1, 3, 3), groups=8, padding=1),
    _edge("depthwise-x2", (2, 4, 7, 9), (8, 1, 3, 3), groups=4, stride=2),
    _edge("depthwise-1x1", (2, 16, 5, 5), (16, 1, 1, 1), groups=16),
    _edge("C=1-K=64", (2, 1, 10, 10), (64, 1, 3, 3)),
    _edge("K=1", (2, 16, 6, 6), (1, 16, 3, 3)),
    _edge("CRS=600>KC", (2, 24, 7, 8), (9, 24, 5, 5)),
    _edge("CRS=600-groups2", (1, 48, 6, 6), (8, 24, 5, 5), groups=2, padding=2),
    _edge("CRS=768=3KC", (1, 256, 3, 3), (5, 256, 1, 3)),
    _edge("KRS=360>KC-dx", (2, 3, 6, 6), (40, 3, 3, 3), padding=1),
    _edge("KRS>KC-dx-stride2", (1, 3, 9, 9), (120, 3, 3, 3), stride=2, padding=1),
    _edge("NPQ=972>KC-dw", (3, 4, 20, 20), (8, 4, 3, 3)),
    _edge("NPQ=1800-dw-1x1", (2, 3, 30, 30), (5, 3, 1, 1)),
    _edge("NPQ>KC-dw-stride2", (4, 2, 25, 25), (3, 2, 3, 3), stride=2, padding=1),
    _edge("empty-batch", (0, 3, 5, 5), (4, 3, 3, 3), padding=1),
    # the wide-grid paths' blockings (csrc/cpu/conv2d_wide.cpp): several row bands per image
    # (64 x 42 x 43 floats exceed a band), several tap chunks per strip, pixel chunks and both
    # 32-channel blocks of the weight gradient, 12-tap blocks with a tail (576 = 48 x 12; 3x2)
    _edge("wide-bands-chunks", (2, 64, 40, 41), (40, 64, 3, 3), padding=1),
    _edge("wide-crop-pad", (1, 3, 9, 7), (5, 3, 3, 2), padding=(3, 2), dilation=(1, 2)),
    _edge("wide-narrow-rows", (3, 2, 30, 2), (33, 2, 3, 2)),
    # strided weight gradients on the phase planes: a 7x7 / 2 stem (13 tap blocks, both
    # channel blocks, odd padded sizes), stride 3 with dilation, a phase no tap reads (1x1 / 2)
    _edge("wide-dw-stem-7x7-s2", (2, 3, 30, 29), (40, 3, 7, 7), stride=2, padding=3),
    _edge("wide-dw-s3-dil2", (2, 5, 17, 19), (36, 5, 3, 3), stride=3, dilation=2, padding=2),
    _edge("wide-dw-s2x1", (2, 4, 11, 40), (33, 4, 3, 5), stride=(2, 1), padding=(1, 2)),
    # strided forward passes on the phase planes: two row bands, kernel rows over the padding
    # skipped, strides (3, 2) with a grid column count that isn't a multiple of the stride
    _edge("wide-fwd-5x5-s2-bands", (1, 16, 64, 61), (9, 16, 5, 5), stride=2, padding=2),
    _edge("wide-fwd-7x7-s2-pad5", (2, 2, 9, 11), (5, 2, 7, 7), stride=2, padding=5),
    _edge("wide-fwd-7x5-s3x2", (2, 3, 23, 20), (10, 3, 7, 5), stride=(3, 2), padding=(2, 1)),
]


@pytest.mark.parametrize(("xs", "ws", "opts"), EDGES)
def test_conv2d_edges(isa: str, rng: np.random.Generator, xs: tuple[int, ...],
                      ws: tuple[int, ...], opts: dict[str, Any]) -> None:
    run_conv_case(rng, xs, ws, opts, what=f"[{isa}] x{xs} w{ws} {opts}")


@pytest.mark.parametrize("v", WIDTHS)
def test_conv2d_tile_widths(isa: str, rng: np.random.Generator, v: int) -> None:
    """Every GEMM dimension at tile-1 / tile / tile+1 (forward: M = K, N = P*Q; backward-data:
    M = C, N = H*W per stride phase; backward-weights: M = K, N = C*R*S)."""
    run_conv_case(rng, (1, v, 1, v), (v, v, 1, 1), {}, what=f"[{isa}] 1x1 v={v}")
    run_conv_case(rng, (2, 3, 3, v), (v, 3, 3, 3), {"padding": 1}, what=f"[{isa}] 3x3 v={v}")
    run_conv_case(rng, (1, 2, 3, 2 * v + 1), (v, 2, 3, 3), {"stride": 2},
                  what=f"[{isa}] stride2 Q={v}")
    run_conv_case(rng, (1, v, 4, 5), (3, v, 2, 2), {"padding": 1}, what=f"[{isa}] C={v}")


def test_conv2d_no_bias_backward(isa: str, rng: np.random.Generator) -> None:
    run_conv_case(rng, (2, 3, 6, 6), (4, 3, 3, 3), {"padding": 1}, bias=False,
                  what=f"[{isa}] no bias")


def test_conv2d_does_not_modify_inputs(isa: str, rng: np.random.Generator) -> None:
    x, w, b = normal(rng, (2, 3, 6, 6)), normal(rng, (4, 3, 3, 3)), normal(rng, (4,))
    dy = normal(rng, (2, 4, 6, 6))
    copies = [a.copy() for a in (x, w, b, dy)]
    ops.conv2d(x, w, b, padding=1, relu=True)
    ops.conv2d_backward(dy, x, w, padding=1)
    for a, c in zip((x, w, b, dy), copies, strict=True):
        assert np.array_equal(a, c)


def test_conv2d_results_are_fresh_arrays(isa: str, rng: np.random.Generator) -> None:
    x, w = normal(rng, (1, 2, 4, 4)), normal(rng, (3, 2, 1, 1))
    y1, y2 = ops.conv2d(x, w), ops.conv2d(x, w)
    assert y1.flags.owndata or y1.base is not None
    assert not np.shares_memory(y1, y2) and not np.shares_memory(y1, x)
    assert y1.flags.writeable and y1.flags.c_contiguous


def test_conv2d_denormals_and_specials(isa: str) -> None:
    """No flush-to-zero: denormal inputs and products give the float64 reference rounded (here a
    single-term sum: exact); inf and NaN propagate like the reference."""
    tiny = np.float32(2.0**-140)  # a denormal
    x = np.array([tiny, -tiny, 2 * tiny, 0.0], np.float32).reshape(1, 1, 1, 4)
    w = np.ones((1, 1, 1, 1), np.float32)
    y = ops.conv2d(x, w)
    assert np.array_equal(y.view(np.uint32), x.view(np.uint32))
    for scale in (0.5, 0.75, 2.0**-5, 3.0):  # products that stay denormal, and rounded ones
        ws = np.full((1, 1, 1, 1), scale, np.float32)
        expected = (f64(x) * scale).astype(np.float32)  # exact product, rounded once
        check_bitwise(ops.conv2d(x, ws), expected, f"denormal*{scale}")
    # a 3-tap sum of denormal products: integers times 2^-140 are exact in float32
    xd = (small_ints(np.random.default_rng(0), (2, 3, 4, 5)) * tiny).astype(np.float32)
    wd = small_ints(np.random.default_rng(1), (2, 3, 2, 2))
    check_exact(ops.conv2d(xd, wd, padding=1), ref.conv2d(f64(xd), f64(wd), padding=1),
                "denormal sums")
    xs = np.array([np.inf, -np.inf, np.nan, 1.0], np.float32).reshape(1, 1, 1, 4)
    check_exact(ops.conv2d(xs, w), ref.conv2d(xs, w), "inf/nan")


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("padding", [0, 1])
def test_conv2d_backward_nonfinite_input_stays_local(isa: str, padding: int, stride: int) -> None:
    """An inf / NaN in x may only reach the dw taps that multiply it (the reference's im2col
    form). Stride-1 weight gradients run on the padded grid (csrc/cpu/conv2d_wide.cpp), whose
    discarded columns multiply x by zeros: 0 * inf would put NaN in taps the inf never meets
    (here x[.., 1, 4] sits in a discarded column of taps (1, 0) and (1, 1)), so such inputs must
    take the im2col form. Strided ones run on the phase planes, with the same rule."""
    for bad in (np.inf, np.nan):
        x = np.ones((2, 1, 3, 5), np.float32)
        x[1, 0, 1, 4] = bad
        w = np.ones((2, 1, 3, 3), np.float32)
        dy = np.ones(ops.conv2d(np.ones_like(x), w, padding=padding, stride=stride).shape,
                     np.float32)
        _, dw, _ = ops.conv2d_backward(dy, x, w, padding=padding, stride=stride)
        with np.errstate(invalid="ignore"):
            _, dw_ref, _ = ref.conv2d_backward(dy, x, w, padding=padding, stride=stride)
        assert np.array_equal(dw, dw_ref, equal_nan=True), (bad, dw.tolist(), dw_ref.tolist())
        assert np.isfinite(dw).sum() == np.isfinite(dw_ref).sum() > 0


def test_conv2d_backward_relu_y_rules(isa: str, rng: np.random.Generator) -> None:
    """relu_y follows relu_backward: dy passes where relu_y > 0 or NaN, zero elsewhere (-0.0 and
    0.0 included); a relu_y of the wrong shape or dtype is refused by name."""
    x, w = normal(rng, (2, 3, 6, 7)), normal(rng, (4, 3, 3, 3))
    dy = normal(rng, (2, 4, 4, 5))
    ry = normal(rng, dy.shape)
    ry[0, 0, 0, :3] = [np.nan, -0.0, 0.0]
    for opts in ({}, {"padding": 1}, {"stride": 2}):
        d = normal(rng, ops.conv2d(x, w, **opts).shape)
        r = np.resize(ry, d.shape).astype(np.float32)
        got = ops.conv2d_backward(d, x, w, relu_y=r, **opts)
        want = ops.conv2d_backward(ops.relu_backward(d, r), x, w, **opts)
        for g, e in zip(got, want, strict=True):
            np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="relu_y"):
        ops.conv2d_backward(dy, x, w, relu_y=ry[:1])
    with pytest.raises(TypeError, match="relu_y"):
        ops.conv2d_backward(dy, x, w, relu_y=ry.astype(np.float64))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize(("k", "stride"), [(3, 1), (5, 2)])
def test_conv2d_nonfinite_weight_meets_the_padding(isa: str, bad: float, k: int,
                                                   stride: int) -> None:
    """Border rows of a padded convolution multiply the padding's zeros by every weight of the
    kernel rows that hang over the edge: 0 * NaN / 0 * inf = NaN there, as in the reference
    (im2col) and PyTorch. The wide-grid forward (stride 1, and 5x5 / 2 on the phase planes)
    skips such kernel rows only when every weight is finite (skipping 0 * w is exact then)."""
    x = np.ones((1, 1, 4 * stride, 60 * stride), np.float32)  # rows wider than every strip
    w = np.ones((2, 1, k, k), np.float32)
    w[1, 0, 0, 0] = bad
    with np.errstate(invalid="ignore"):
        want = ref.conv2d(x, w, padding=k - 1, stride=stride)
    got = ops.conv2d(x, w, padding=k - 1, stride=stride)
    assert np.array_equal(got, want, equal_nan=True), (got.tolist(), want.tolist())
    assert np.isnan(got[0, 1]).any() and np.isfinite(got[0, 0]).all()


POOL_CASES = [
    # (x, w, conv options, pool options): disjoint and overlapping windows, padding, ceil mode
    pytest.param((2, 3, 10, 10), (4, 3, 3, 3), {}, {"pool_size": 2}, id="2x2"),
    pytest.param((2, 3, 11, 9), (5, 3, 3, 3), {"padding": 1},
                 {"pool_size": 3, "pool_padding": 1}, id="3x3-pad"),
    pytest.param((1, 2, 9, 9), (3, 2, 3, 3), {}, {"pool_size": 2, "pool_ceil_mode": True},
                 id="2x2-ceil"),
    pytest.param((2, 3, 10, 10), (4, 3, 3, 3), {}, {"pool_size": 3, "pool_stride": 2},
                 id="overlapping"),
    pytest.param((2, 4, 12, 12), (6, 4, 3, 3), {"stride": 2}, {"pool_size": 2}, id="conv-stride2"),
    pytest.param((1, 40, 26, 26), (33, 40, 3, 3), {}, {"pool_size": (2, 3)}, id="2x3-tails"),
]


@pytest.mark.parametrize(("xs", "ws", "copts", "popts"), POOL_CASES)
def test_conv2d_backward_through_pooling(isa: str, rng: np.random.Generator, xs: Any, ws: Any,
                                          copts: dict[str, Any], popts: dict[str, Any]) -> None:
    """pool_indices= routes dy back through a max pooling of the output (then the ReLU): exactly
    max_pool2d_backward followed by conv2d_backward(relu_y=), and the reference."""
    x, w, b = small_ints(rng, xs), small_ints(rng, ws), small_ints(rng, (ws[0],))
    y = ops.conv2d(x, w, b, relu=True, **copts)
    k, s = popts["pool_size"], popts.get("pool_stride")
    pd, cm = popts.get("pool_padding", 0), popts.get("pool_ceil_mode", False)
    pooled, idx = ops.max_pool2d(y, k, stride=s, padding=pd, ceil_mode=cm, return_indices=True)
    dp = small_ints(rng, pooled.shape)
    full = ops.max_pool2d_backward(dp, y, k, stride=s, padding=pd, ceil_mode=cm, indices=idx)
    for relu_y in (y, None):
        for cdx in (True, False):
            got = ops.conv2d_backward(dp, x, w, relu_y=relu_y, pool_indices=idx,
                                      compute_dx=cdx, **popts, **copts)
            want = ops.conv2d_backward(full, x, w, relu_y=relu_y, compute_dx=cdx, **copts)
            exp = ref.conv2d_backward(f64(dp), f64(x), f64(w), relu_y=relu_y, pool_indices=idx,
                                      compute_dx=cdx, **popts, **copts)
            for name, g, e, r in zip(("dx", "dw", "db"), got, want, exp, strict=True):
                if e is None:
                    assert g is None
                    continue
                check_bitwise(g, e, f"[{isa}] {name} relu={relu_y is not None} dx={cdx}")
                check_exact(g, r, f"[{isa}] {name} vs the reference")


def test_conv2d_backward_pool_indices_outside_their_window(isa: str,
                                                           rng: np.random.Generator) -> None:
    """Indices given by the user may point anywhere in the plane: the fused form still routes
    each gradient exactly as max_pool2d_backward's scatter does (dx[idx] += dy)."""
    x, w = small_ints(rng, (1, 2, 8, 8)), small_ints(rng, (3, 2, 3, 3))
    y = ops.conv2d(x, w, relu=True)
    _, idx = ops.max_pool2d(y, 2, return_indices=True)
    idx = idx.copy()
    idx[0, 1, 1, 2] = 0  # window (1, 2) points at pixel (0, 0)
    dp = small_ints(rng, idx.shape)
    got = ops.conv2d_backward(dp, x, w, relu_y=y, pool_indices=idx, pool_size=2)
    full = ops.max_pool2d_backward(dp, y, 2, indices=idx)
    want = ops.conv2d_backward(full, x, w, relu_y=y)
    for g, e in zip(got, want, strict=True):
        check_bitwise(g, e, f"[{isa}] stray index")


def test_conv2d_backward_pool_argument_errors(isa: str, rng: np.random.Generator) -> None:
    x, w = normal(rng, (1, 2, 8, 8)), normal(rng, (3, 2, 3, 3))
    y = ops.conv2d(x, w, relu=True)
    p, idx = ops.max_pool2d(y, 2, return_indices=True)
    with pytest.raises(ValueError, match="pool_size"):
        ops.conv2d_backward(p, x, w, pool_indices=idx)
    with pytest.raises(ValueError, match="dy has shape"):
        ops.conv2d_backward(y, x, w, pool_indices=idx, pool_size=2)
    with pytest.raises(ValueError, match="pool_indices has shape"):
        ops.conv2d_backward(p, x, w, pool_indices=idx[:, :1], pool_size=2)
    with pytest.raises(TypeError, match="pool_indices"):
        ops.conv2d_backward(p, x, w, pool_indices=idx.astype(np.int32), pool_size=2)
    with pytest.raises(ValueError, match="outside"):
        ops.conv2d_backward(p, x, w, pool_indices=idx + 1000, pool_size=2)
    with pytest.raises(ValueError, match="pool_padding"):
        ops.conv2d_backward(p, x, w, pool_indices=idx, pool_size=2, pool_padding=2)
    with pytest.raises(ValueError, match="relu_y has shape"):
        ops.conv2d_backward(p, x, w, pool_indices=idx, pool_size=2, relu_y=p)
