"""The batched convolution forms for small planes (csrc/cpu/conv2d_route.cpp), for every ISA.

Small planes put several images in one problem: side by side on one wide grid (stride-1
forward and backward-data) or as the (image, pixel) columns of one GEMM (strided forwards and
the col2im backward-data). The shape rule picks them for batches of >= 17 images; the private
FASTCNN_CONV_ROUTE variable ("wide:B", "gemm:B", "legacy") forces a form and an image count
here, so that image counts around the tiles (B - 1, B, B + 1 images: a last block cut short),
channel counts around MR and plane widths around NR are all reached with small problems.
Integer inputs: every form must match the float64 reference exactly. Every output of every form
is one reduction in a fixed order whatever the number of images per problem, so forced counts
and the rule must agree bit for bit with one image per problem, and with any thread count.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import fastcnn
from conftest import check_bitwise, check_exact, f64, normal, small_ints
from fastcnn import ops
from fastcnn import reference as ref
from test_ops_conv import run_conv_case

ROUTE = "FASTCNN_CONV_ROUTE"


def _all_passes(x: Any, w: Any, b: Any, dy: Any, opts: dict[str, Any]) -> list[Any]:
    """Forward (plain, ReLU) and the backward passes (plain, through the ReLU)."""
    y = ops.conv2d(x, w, b, **opts)
    yr = ops.conv2d(x, w, b, relu=True, **opts)
    return [y, yr, *ops.conv2d_backward(dy, x, w, **opts),
            *ops.conv2d_backward(dy, x, w, relu_y=yr, **opts)]


def _exact_case(rng: np.random.Generator, xs: tuple[int, ...], ws: tuple[int, ...],
                opts: dict[str, Any], what: str) -> list[Any]:
    """Every pass on integer inputs against the reference, exactly; returns the results."""
    x, w, b = small_ints(rng, xs), small_ints(rng, ws), small_ints(rng, (ws[0],))
    y_ref = ref.conv2d(f64(x), f64(w), f64(b), **opts)
    dy = small_ints(rng, y_ref.shape)
    got = _all_passes(x, w, b, dy, opts)
    yr_ref = np.maximum(y_ref, 0.0)
    exp = [y_ref, yr_ref, *ref.conv2d_backward(f64(dy), f64(x), f64(w), **opts),
           *ref.conv2d_backward(f64(dy), f64(x), f64(w), relu_y=yr_ref, **opts)]
    names = ["y", "relu(y)", "dx", "dw", "db", "dx(relu)", "dw(relu)", "db(relu)"]
    for name, g, e in zip(names, got, exp, strict=True):
        check_exact(g, e, f"{what} {name}")
    return got


# (x shape without N, w shape, options): stride-1 planes the wide grid batches, strided ones the
# GEMM batches; widths around NR (8 / 24 / 48) and channels around MR (4 / 8)
SHAPES = [
    pytest.param((3, 8, 8), (4, 3, 3, 3), {"padding": 1}, id="8x8-same"),
    pytest.param((5, 7, 7), (9, 5, 3, 3), {"padding": 1}, id="7x7-K9"),
    pytest.param((4, 5, 9), (8, 4, 3, 3), {"padding": (1, 2)}, id="5x9-asym-pad"),
    pytest.param((2, 6, 6), (3, 2, 3, 3), {}, id="6x6-valid"),
    pytest.param((4, 6, 6), (6, 2, 3, 3), {"padding": 1, "groups": 2}, id="groups"),
    pytest.param((3, 9, 9), (4, 3, 3, 3), {"padding": 2, "dilation": 2}, id="dilated"),
    pytest.param((3, 7, 7), (5, 3, 5, 5), {"padding": 2}, id="5x5"),
    pytest.param((4, 8, 8), (8, 4, 3, 3), {"padding": 1, "stride": 2}, id="3x3-stride2"),
    pytest.param((4, 9, 7), (5, 4, 1, 1), {"stride": 2}, id="1x1-stride2"),
    pytest.param((5, 4, 4), (7, 5, 1, 1), {}, id="1x1"),
]


@pytest.mark.parametrize(("xs", "ws", "opts"), SHAPES)
@pytest.mark.parametrize("form", ["wide", "gemm"])
@pytest.mark.parametrize("imgs", [2, 3, 8])
def test_forced_batches_against_reference(isa: str, rng: np.random.Generator,
                                          monkeypatch: pytest.MonkeyPatch, xs: Any, ws: Any,
                                          opts: dict[str, Any], form: str, imgs: int) -> None:
    """B images per problem with B - 1, B and B + 1 images in the batch (one short block, one
    full one, a full one and a single image): exact, and bitwise equal to one image per
    problem."""
    for n in (imgs - 1, imgs, imgs + 1):
        seed = int(rng.integers(1 << 30))
        what = f"[{isa}] {form}:{imgs} N={n} x{xs} w{ws} {opts}"
        monkeypatch.setenv(ROUTE, f"{form}:{imgs}")
        got = _exact_case(np.random.default_rng(seed), (n, *xs), ws, opts, what)
        monkeypatch.setenv(ROUTE, f"{form}:1")
        one = _exact_case(np.random.default_rng(seed), (n, *xs), ws, opts, what + " (B=1)")
        for g, e in zip(got, one, strict=True):
            check_bitwise(g, e, f"{what} vs one image per problem")


@pytest.mark.parametrize("width", [7, 8, 9, 23, 24, 25])
def test_forced_batches_plane_widths(isa: str, rng: np.random.Generator,
                                     monkeypatch: pytest.MonkeyPatch, width: int) -> None:
    """Output widths around NR, so that strips and panels straddle two images at every offset."""
    for form in ("wide:5", "gemm:5"):
        monkeypatch.setenv(ROUTE, form)
        _exact_case(rng, (6, 3, 3, width), (5, 3, 3, 3), {"padding": 1},
                    f"[{isa}] {form} width {width}")
        _exact_case(rng, (6, 2, 5, width), (4, 2, 3, 3), {"padding": 1, "stride": 2},
                    f"[{isa}] {form} stride 2 width {width}")


# ResNet-20's small-plane layers at a batch the rule batches (>= 17 images), scaled down in
# channels; (x shape, w shape, options)
RULE_SHAPES = [
    pytest.param((17, 8, 8, 8), (8, 8, 3, 3), {"padding": 1}, id="8x8-N17"),
    pytest.param((33, 5, 8, 8), (9, 5, 3, 3), {"padding": 1}, id="8x8-N33"),
    pytest.param((35, 4, 16, 16), (4, 4, 3, 3), {"padding": 1}, id="16x16-N35"),
    pytest.param((18, 4, 16, 16), (8, 4, 3, 3), {"padding": 1, "stride": 2}, id="16->8-stride2"),
    pytest.param((40, 4, 16, 16), (8, 4, 1, 1), {"stride": 2}, id="1x1-16->8-stride2"),
    pytest.param((20, 3, 4, 4), (4, 3, 3, 3), {"padding": 1}, id="4x4"),
]


@pytest.mark.parametrize(("xs", "ws", "opts"), RULE_SHAPES)
def test_rule_routed_against_reference(isa: str, rng: np.random.Generator,
                                       monkeypatch: pytest.MonkeyPatch, xs: Any, ws: Any,
                                       opts: dict[str, Any]) -> None:
    """The rule's own choice (ints exact, normals within the tolerance; the full case of
    test_ops_conv); y and dx bitwise the same as the routing before the rule (batching never
    changes a sum; the weight gradient of few output channels may change form, so dw and db
    are held to the reference only)."""
    monkeypatch.delenv(ROUTE, raising=False)
    run_conv_case(rng, xs, ws, opts, what=f"[{isa}] rule x{xs} w{ws} {opts}")
    x, w, b = normal(rng, xs), normal(rng, ws), normal(rng, (ws[0],))
    dy = normal(rng, ops.conv2d(x, w, b, **opts).shape)
    got = _all_passes(x, w, b, dy, opts)
    monkeypatch.setenv(ROUTE, "legacy")
    old = _all_passes(x, w, b, dy, opts)
    for i in (0, 1, 2, 5):  # y, relu(y), dx, dx through the ReLU
        check_bitwise(got[i], old[i], f"[{isa}] rule vs legacy x{xs} w{ws} {opts} ({i})")


@pytest.mark.parametrize("form", ["rule", "wide:3", "gemm:3"])
def test_batched_bit_identical_for_any_thread_count(isa: str, rng: np.random.Generator,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    form: str) -> None:
    monkeypatch.setenv(ROUTE, form)
    cases = [((40, 16, 8, 8), (16, 16, 3, 3), {"padding": 1}),
             ((40, 8, 16, 16), (16, 8, 3, 3), {"padding": 1, "stride": 2}),
             ((37, 8, 16, 16), (16, 8, 1, 1), {"stride": 2})]
    for xs, ws, opts in cases:
        x, w, b = normal(rng, xs), normal(rng, ws), normal(rng, (ws[0],))
        dy = normal(rng, ops.conv2d(x, w, b, **opts).shape)
        fastcnn.set_num_threads(1)
        one = _all_passes(x, w, b, dy, opts)
        for n in (2, 3, 4):
            fastcnn.set_num_threads(n)
            for g, e in zip(_all_passes(x, w, b, dy, opts), one, strict=True):
                check_bitwise(g, e, f"[{isa}] {form} x{xs} {opts}: {n} threads vs 1")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("form", ["rule", "gemm:3"])
def test_batched_col2im_nonfinite_weight_stays_local(isa: str, monkeypatch: pytest.MonkeyPatch,
                                                     bad: float, form: str) -> None:
    """A NaN / inf weight sends backward-data to the col2im GEMM (batched here): dx is then
    non-finite exactly where the reference's is (only real taps contribute)."""
    monkeypatch.setenv(ROUTE, form)
    rng = np.random.default_rng(3)
    x = small_ints(rng, (20, 2, 6, 6))
    w = small_ints(rng, (3, 2, 3, 3))
    w[1, 0, 0, 2] = bad
    dy = small_ints(rng, (20, 3, 6, 6))
    dx, _, _ = ops.conv2d_backward(dy, x, w, padding=1)
    with np.errstate(invalid="ignore"):
        dx_ref, _, _ = ref.conv2d_backward(f64(dy), f64(x), f64(w), padding=1)
    assert np.array_equal(np.isnan(dx), np.isnan(dx_ref))
    assert np.array_equal(dx[np.isfinite(dx_ref)], dx_ref[np.isfinite(dx_ref)])


@pytest.mark.parametrize("form", ["rule", "wide:3", "wide:4"])
def test_side_by_side_through_pooling(isa: str, rng: np.random.Generator,
                                      monkeypatch: pytest.MonkeyPatch, form: str) -> None:
    """The wide backward-data with several images per grid reads dy through the fused pooling
    (one unpooled plane per image): bitwise the unfused form, exact against the reference."""
    monkeypatch.setenv(ROUTE, form)
    x, w, b = small_ints(rng, (20, 4, 8, 8)), small_ints(rng, (5, 4, 3, 3)), small_ints(rng, (5,))
    y = ops.conv2d(x, w, b, relu=True, padding=1)
    pooled, idx = ops.max_pool2d(y, 2, return_indices=True)
    dp = small_ints(rng, pooled.shape)
    full = ops.max_pool2d_backward(dp, y, 2, indices=idx)
    got = ops.conv2d_backward(dp, x, w, relu_y=y, pool_indices=idx, pool_size=2, padding=1)
    want = ops.conv2d_backward(full, x, w, relu_y=y, padding=1)
    exp = ref.conv2d_backward(f64(full), f64(x), f64(w), relu_y=f64(y), padding=1)
    for name, g, e, r in zip(("dx", "dw", "db"), got, want, exp, strict=True):
        check_bitwise(g, e, f"[{isa}] {form} {name} fused vs unfused")
        check_exact(g, r, f"[{isa}] {form} {name} vs the reference")
