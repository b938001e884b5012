"""The small-channel direct convolution (csrc/cpu/conv2d_smallc.cpp), forward (+bias, +ReLU) and
weight gradient (+db, the fused ReLU backward), on every ISA.

FASTCNN_CONV_ROUTE=smallc forces it wherever it applies (groups = 1, pads >= 0, C*R*S <= 32);
the shape rule (conv2d_route.cpp) takes it for first layers (C <= 4) on AVX2 / AVX-512. Cases:
the seeds' 1->32 @28 and ResNet-20's 3->16 @32 stem, C = 1..4, K around the register tiles
(forward 5-6 channels on generic / avx2, 8 on avx512; weight gradient 2), Q around the vector
(VL - 1, VL, VL + 1), stride 2, dilation 2, padding 0 / 1 / asymmetric, N = 1. Integer inputs
match the float64 reference exactly, random-normal ones within the summation tolerance; the
weight gradient's chunks come from the shape, so 1 and 2 threads give the same bits; a NaN in an
input column no output reads stays out of dw.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import fastcnn
from conftest import abs64, check_bitwise, check_exact, check_sum_close, f64, normal, small_ints
from fastcnn import _cpu, ops
from fastcnn import reference as ref

ROUTE = "FASTCNN_CONV_ROUTE"
VL = {"generic": 8, "avx2": 8, "avx512": 16}
TILE_K = {"generic": 6, "avx2": 6, "avx512": 8}  # forward tiles' channels (Q <= 2 VL)


@pytest.fixture
def smallc(monkeypatch: pytest.MonkeyPatch) -> None:
    """Force the small-channel form for the test."""
    monkeypatch.setenv(ROUTE, "smallc")


def check_pass(rng: np.random.Generator, xs: tuple[int, ...], ws: tuple[int, ...],
               opts: dict[str, Any], what: str, *, normals: bool = True) -> None:
    """y, relu(y), dw, db (plain and through the fused ReLU) against the reference: integers
    exactly, normals (unless `normals` is False) within the tolerance."""
    K, C, R, S = ws
    x, w, b = small_ints(rng, xs), small_ints(rng, ws), small_ints(rng, (K,))
    y_ref = ref.conv2d(f64(x), f64(w), f64(b), **opts)
    check_exact(ops.conv2d(x, w, b, **opts), y_ref, f"{what} y (ints)")
    yr = ops.conv2d(x, w, b, relu=True, **opts)
    check_exact(yr, np.maximum(y_ref, 0.0), f"{what} relu(y) (ints)")
    dy = small_ints(rng, y_ref.shape)
    _, dw, db = ops.conv2d_backward(dy, x, w, compute_dx=False, **opts)
    _, rdw, rdb = ref.conv2d_backward(f64(dy), f64(x), f64(w), compute_dx=False, **opts)
    check_exact(dw, rdw, f"{what} dw (ints)")
    check_exact(db, rdb, f"{what} db (ints)")
    _, dw, db = ops.conv2d_backward(dy, x, w, compute_dx=False, relu_y=yr, **opts)
    _, rdw, rdb = ref.conv2d_backward(f64(dy), f64(x), f64(w), compute_dx=False,
                                      relu_y=f64(yr), **opts)
    check_exact(dw, rdw, f"{what} dw through the ReLU (ints)")
    check_exact(db, rdb, f"{what} db through the ReLU (ints)")
    if not normals:
        return
    x, w, b = normal(rng, xs), normal(rng, ws), normal(rng, (K,))
    y_ref = ref.conv2d(f64(x), f64(w), f64(b), **opts)
    y_abs = ref.conv2d(abs64(x), abs64(w), abs64(b), **opts)
    check_sum_close(ops.conv2d(x, w, b, **opts), y_ref, y_abs, C * R * S + 1, f"{what} y")
    dy = normal(rng, y_ref.shape)
    _, dw, _ = ops.conv2d_backward(dy, x, w, compute_dx=False, bias=False, **opts)
    _, rdw, _ = ref.conv2d_backward(f64(dy), f64(x), f64(w), compute_dx=False, bias=False,
                                    **opts)
    _, adw, _ = ref.conv2d_backward(abs64(dy), abs64(x), abs64(w), compute_dx=False,
                                    bias=False, **opts)
    check_sum_close(dw, rdw, adw, y_ref.shape[0] * y_ref.shape[2] * y_ref.shape[3], f"{what} dw")


def test_first_layers(isa: str, smallc: None, rng: np.random.Generator) -> None:
    """The seeds' 1->32 3x3 @28 and ResNet-20's 3->16 3x3 @32 "same" stem, batch 2."""
    check_pass(rng, (2, 1, 28, 28), (32, 1, 3, 3), {}, f"[{isa}] seeds 1->32")
    check_pass(rng, (2, 3, 32, 32), (16, 3, 3, 3), {"padding": 1}, f"[{isa}] resnet 3->16")


@pytest.mark.parametrize("c", [1, 2, 3, 4])
@pytest.mark.parametrize("dk", [-1, 0, 1])
def test_channels_tiles_and_row_tails(isa: str, smallc: None, rng: np.random.Generator, c: int,
                                      dk: int) -> None:
    """C = 1..4, K = tile - 1 / tile / tile + 1 (and 2 +- 1 for the weight gradient's tile), Q =
    VL - 1 / VL / VL + 1 (3x3, no padding: W = Q + 2), N = 1."""
    vl = VL[isa]
    for k in (TILE_K[isa] + dk, 2 + dk):
        for q in (vl - 1, vl, vl + 1):
            check_pass(rng, (1, c, 4, q + 2), (k, c, 3, 3), {},
                       f"[{isa}] C={c} K={k} Q={q}", normals=q == vl + 1)


def test_strides_dilation_padding(isa: str, smallc: None, rng: np.random.Generator) -> None:
    """Stride 2 (and (2, 1), (1, 3)), dilation 2, padding 0 / 1 / asymmetric ("same" with an even
    kernel: the extra row and column at the bottom / right), 5x5 and 1x1 kernels."""
    cases = [((2, 3, 13, 13), (16, 3, 3, 3), {"stride": 2}),
             ((1, 3, 32, 32), (16, 3, 3, 3), {"stride": 2, "padding": 1}),
             ((2, 1, 11, 19), (8, 1, 3, 3), {"stride": (2, 1), "padding": (0, 1)}),
             ((1, 2, 9, 20), (5, 2, 3, 3), {"stride": (1, 3), "padding": 1}),
             ((2, 1, 12, 14), (9, 1, 3, 3), {"dilation": 2, "padding": 2}),
             ((1, 2, 9, 10), (7, 2, 4, 4), {"padding": "same"}),
             ((1, 3, 8, 9), (6, 3, 2, 2), {"padding": "same", "stride": 2}),
             ((1, 1, 12, 12), (4, 1, 5, 5), {"padding": 2}),
             ((2, 4, 5, 17), (3, 4, 1, 1), {})]
    for xs, ws, opts in cases:
        check_pass(rng, xs, ws, opts, f"[{isa}] x{xs} w{ws} {opts}")


def test_bit_identical_for_1_and_2_threads(isa: str, smallc: None,
                                           rng: np.random.Generator) -> None:
    """The forward's bands and the weight gradient's chunks come from the shape: 1 and 2
    threads give the same bits (N = 3: chunks that cut images; N = 1: bands)."""
    for xs, ws, opts in (((3, 1, 28, 28), (32, 1, 3, 3), {}),
                         ((1, 3, 32, 32), (16, 3, 3, 3), {"padding": 1})):
        x, w, b = normal(rng, xs), normal(rng, ws), normal(rng, (ws[0],))
        got = []
        for n in (1, 2):
            fastcnn.set_num_threads(n)
            y = ops.conv2d(x, w, b, relu=True, **opts)
            dy = normal(np.random.default_rng(7), y.shape)
            got.append((y, *ops.conv2d_backward(dy, x, w, compute_dx=False, relu_y=y,
                                                **opts)[1:]))
        for g, e, name in zip(got[1], got[0], ("y", "dw", "db"), strict=True):
            check_bitwise(g, e, f"[{isa}] x{xs} {name}: 2 threads vs 1")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_stays_local(isa: str, smallc: None, rng: np.random.Generator,
                               bad: float) -> None:
    """A NaN / inf in an input column no output reads (stride 2 leaves W = 10's last column
    unread) stays out of dw; one in a read column and one in dy reach exactly the reference's
    elements (inf * 0 = NaN included)."""
    opts = {"stride": 2}
    x, w = small_ints(rng, (2, 2, 9, 10)), small_ints(rng, (5, 2, 3, 3))
    x[0, 1, 4, 9] = bad
    dy = small_ints(rng, ops.conv2d(x, w, **opts).shape)
    _, dw, db = ops.conv2d_backward(dy, x, w, compute_dx=False, **opts)
    assert np.isfinite(dw).all() and np.isfinite(db).all()
    x[1, 0, 2, 3] = bad
    dy[0, 3, 1, 2] = bad
    with np.errstate(invalid="ignore", over="ignore"):
        want = ref.conv2d(f64(x), f64(w), **opts)
        wdw = ref.conv2d_backward(f64(dy), f64(x), f64(w), compute_dx=False, **opts)
    check_exact(ops.conv2d(x, w, **opts), want, f"[{isa}] {bad} y")
    got = ops.conv2d_backward(dy, x, w, compute_dx=False, **opts)
    for g, e, name in zip(got[1:], wdw[1:], ("dw", "db"), strict=True):
        check_exact(g, e, f"[{isa}] {bad} {name}")


def test_rule_takes_it_for_first_layers(rng: np.random.Generator,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Under the rule (no override) the seeds' and ResNet's first layers are the small-channel
    form's bits on AVX2 / AVX-512, and "nosmallc" (the routing before it) is a different form."""
    if _cpu.isa() == "generic":
        pytest.skip("the rule never takes the small-channel form on the generic ISA")
    for xs, ws, opts in (((4, 1, 28, 28), (32, 1, 3, 3), {}),
                         ((4, 3, 32, 32), (16, 3, 3, 3), {"padding": 1})):
        x, w = normal(rng, xs), normal(rng, ws)
        dy = normal(rng, ops.conv2d(x, w, **opts).shape)
        got = {}
        for route in ("smallc", None, "nosmallc"):
            if route:
                monkeypatch.setenv(ROUTE, route)
            else:
                monkeypatch.delenv(ROUTE, raising=False)
            got[route] = (ops.conv2d(x, w, **opts),
                          ops.conv2d_backward(dy, x, w, compute_dx=False, bias=False,
                                              **opts)[1])
        for g, e, name in zip(got[None], got["smallc"], ("y", "dw"), strict=True):
            check_bitwise(g, e, f"rule vs smallc x{xs} {name}")
        assert not np.array_equal(got["nosmallc"][1], got["smallc"][1]), f"x{xs}: same dw"
