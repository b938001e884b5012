"""Strided convolutions through the implicit-GEMM form on every ISA: the im2col packers' strided
gathers (csrc/cpu/{avx2,avx512}/conv2d_im2col_*.cpp: stride-2 lanes picked by shuffles /
permutes, 3-4 by permute tables, wider by a gather or scalar copies; masked at row ends).

FASTCNN_CONV_ROUTE=gemm (csrc/cpu/conv2d_route.cpp) forces the GEMM form for every pass, so the
forward reads its B panels through conv2d_im2col_batch and the weight gradient through
conv2d_im2col_wgrad. Output widths sit at tile - 1 / tile / tile + 1 of the vector widths (8,
16) and of the micro-kernels' NR (8 generic, 24 avx2, 48 avx512), plus odd ones, and the input
width leaves 0 .. stride - 1 spare columns at the row end so that the last window ends at every
offset from the row's end. Integer inputs: exact against fastcnn.reference and bit-identical to
the generic ISA (a packer only moves values). Normal inputs: the strided forward is bitwise the
stride-1 forward's subsampled outputs on the same ISA (same GEMM, same reduction order; only
the packer's strided path differs), and a 1x1 strided weight gradient bitwise that of the
subsampled input at stride 1.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from conftest import check_bitwise, check_exact, f64, normal, small_ints
from fastcnn import _cpu, ops
from fastcnn import reference as ref

ROUTE = "FASTCNN_CONV_ROUTE"

# (kernel, stride, dilation): ResNet's 1x1/2 and 3x3/2, a 5x5/3, a dilated 3x3/2, a 3x3/3 and
# a 2x2/4 (the strides past the permute tables: gathers / scalar copies)
GEOMETRIES = [
    pytest.param(1, 2, 1, id="1x1s2"),
    pytest.param(3, 2, 1, id="3x3s2"),
    pytest.param(5, 3, 1, id="5x5s3"),
    pytest.param(3, 2, 2, id="3x3s2d2"),
    pytest.param(3, 3, 1, id="3x3s3"),
    pytest.param(2, 5, 1, id="2x2s5"),
]
# output widths: vector widths (8, 16) and NR (8, 24, 48) - 1 / + 0 / + 1, odd ones
WIDTHS = [1, 3, 7, 8, 9, 13, 15, 16, 17, 23, 24, 25, 47, 48, 49]


def _input_width(q: int, k: int, s: int, d: int, p: int, spare: int) -> int:
    """The input width whose output width is q, with `spare` unused columns at the row end."""
    return max((q - 1) * s + d * (k - 1) + 1 - 2 * p + spare, 1)


def _passes(x: np.ndarray, w: np.ndarray, dy: np.ndarray | None,
            opts: dict[str, Any]) -> list[np.ndarray]:
    """y, and with dy: dx, dw, db (the GEMM form when the route is forced)."""
    y = ops.conv2d(x, w, None, **opts)
    if dy is None:
        return [y]
    return [y, *ops.conv2d_backward(dy, x, w, **opts)]


def _on_isa(name: str, fn: Any) -> Any:
    previous = _cpu.isa()
    _cpu.set_isa(name)
    try:
        return fn()
    finally:
        _cpu.set_isa(previous)


@pytest.mark.parametrize(("k", "s", "d"), GEOMETRIES)
@pytest.mark.parametrize("pad", [0, 1, 2])
@pytest.mark.parametrize("imgs", [1, 3])
def test_strided_gemm_exact_and_bitwise_generic(isa: str, rng: np.random.Generator,
                                                monkeypatch: pytest.MonkeyPatch, k: int, s: int,
                                                d: int, pad: int, imgs: int) -> None:
    """Forward, dx, dw, db on integers: exact, and bitwise the generic ISA's; one image per GEMM
    problem and three (panels straddling images)."""
    monkeypatch.setenv(ROUTE, f"gemm:{imgs}")
    for q in WIDTHS:
        if (q - 1) * s + d * (k - 1) + 1 - 2 * pad < 1:
            continue  # no such input width
        spare = int(rng.integers(0, s))
        wd = _input_width(q, k, s, d, pad, spare)
        h = int(rng.integers(max(d * (k - 1) + 1 - 2 * pad, 1), 9))
        opts = {"stride": s, "padding": pad, "dilation": d}
        x, w = small_ints(rng, (4, 3, h, wd)), small_ints(rng, (5, 3, k, k))
        y_ref = ref.conv2d(f64(x), f64(w), None, **opts)
        dy = small_ints(rng, y_ref.shape)
        what = f"[{isa}] gemm:{imgs} {k}x{k}/{s} d{d} pad {pad} x{x.shape} -> q {y_ref.shape[3]}"
        got = _passes(x, w, dy, opts)
        exp = [y_ref, *ref.conv2d_backward(f64(dy), f64(x), f64(w), **opts)]
        for name, g, e in zip(("y", "dx", "dw", "db"), got, exp, strict=True):
            check_exact(g, e, f"{what} {name}")
        if isa != "generic":
            base = _on_isa("generic", lambda x=x, w=w, dy=dy, opts=opts: _passes(x, w, dy, opts))
            for name, g, e in zip(("y", "dx", "dw", "db"), got, base, strict=True):
                check_bitwise(g, e, f"{what} {name} vs generic")


@pytest.mark.parametrize(("k", "s", "d"), GEOMETRIES)
@pytest.mark.parametrize("pad", [0, 1, 2])
def test_strided_forward_is_subsampled_stride1(isa: str, rng: np.random.Generator,
                                               monkeypatch: pytest.MonkeyPatch, k: int, s: int,
                                               d: int, pad: int) -> None:
    """Normal inputs: the strided GEMM forward equals the stride-1 GEMM forward at every s-th
    output, bit for bit (only the B packer's strided gather differs between the two)."""
    monkeypatch.setenv(ROUTE, "gemm:2")
    for q in (7, 8, 9, 16, 17, 23, 24, 25, 48, 49):
        if (q - 1) * s + d * (k - 1) + 1 - 2 * pad < 1:
            continue
        wd = _input_width(q, k, s, d, pad, int(rng.integers(0, s)))
        x, w = normal(rng, (3, 4, 2 * s + d * (k - 1) + 1, wd)), normal(rng, (6, 4, k, k))
        opts = {"padding": pad, "dilation": d}
        y = ops.conv2d(x, w, None, stride=s, **opts)
        y1 = ops.conv2d(x, w, None, stride=1, **opts)[:, :, ::s, ::s]
        check_bitwise(y, np.ascontiguousarray(y1[:, :, : y.shape[2], : y.shape[3]]),
                      f"[{isa}] {k}x{k}/{s} d{d} pad {pad} x{x.shape}: strided vs stride 1")


@pytest.mark.parametrize("s", [2, 3, 4, 5])
@pytest.mark.parametrize("q", [7, 8, 9, 23, 24, 25, 31])
def test_strided_1x1_weight_gradient_is_subsampled(isa: str, rng: np.random.Generator,
                                                   monkeypatch: pytest.MonkeyPatch, s: int,
                                                   q: int) -> None:
    """Normal inputs: a 1x1/s weight gradient (and forward) equals the stride-1 one of the
    input's every s-th pixel, bit for bit (same K = N*P*Q reduction, only the packer differs)."""
    monkeypatch.setenv(ROUTE, "gemm")
    x = normal(rng, (5, 6, 3 * s, (q - 1) * s + 1 + int(rng.integers(0, s))))
    w = normal(rng, (7, 6, 1, 1))
    sub = np.ascontiguousarray(x[:, :, ::s, ::s])
    dy = normal(rng, ops.conv2d(sub, w, None).shape)
    got = ops.conv2d_backward(dy, x, w, stride=s, compute_dx=False)
    exp = ops.conv2d_backward(dy, sub, w, compute_dx=False)
    for name, g, e in zip(("dw", "db"), got[1:], exp[1:], strict=True):
        check_bitwise(g, e, f"[{isa}] 1x1/{s} q {q} {name}: strided vs subsampled")
    check_bitwise(ops.conv2d(x, w, None, stride=s), ops.conv2d(sub, w, None),
                  f"[{isa}] 1x1/{s} q {q} y: strided vs subsampled")


def test_strided_groups_and_asymmetric(isa: str, rng: np.random.Generator,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Groups, unequal strides and paddings through the strided packers: exact."""
    monkeypatch.setenv(ROUTE, "gemm:2")
    cases: list[tuple[tuple[int, ...], tuple[int, ...], dict[str, Any]]] = [
        ((3, 4, 11, 27), (6, 2, 3, 3), {"stride": 2, "padding": 1, "groups": 2}),
        ((2, 3, 9, 26), (4, 3, 3, 5), {"stride": (1, 3), "padding": (2, 1)}),
        ((2, 3, 13, 19), (4, 3, 3, 3), {"stride": (3, 2), "padding": 1, "dilation": (1, 2)}),
    ]
    for xs, ws, opts in cases:
        x, w, b = small_ints(rng, xs), small_ints(rng, ws), small_ints(rng, (ws[0],))
        y_ref = ref.conv2d(f64(x), f64(w), f64(b), **opts)
        dy = small_ints(rng, y_ref.shape)
        check_exact(ops.conv2d(x, w, b, **opts), y_ref, f"[{isa}] {xs} {ws} {opts} y")
        got = ops.conv2d_backward(dy, x, w, **opts)
        exp = ref.conv2d_backward(f64(dy), f64(x), f64(w), **opts)
        for name, g, e in zip(("dx", "dw", "db"), got, exp, strict=True):
            check_exact(g, e, f"[{isa}] {xs} {ws} {opts} {name}")
