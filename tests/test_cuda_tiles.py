"""The CUDA GEMM core's tile shapes (csrc/cuda/gemm_core.cuh) give the same bits.

Every output element of the GEMM core is one FMA chain over k in increasing order, whatever the
block tile; only the split-K (chosen from the shapes alone) decides the order. So conv2d forward
and backward and linear forward and backward must give identical bits under every tile the
rule can pick, forced with the ``FASTCNN_CUDA_TILE`` test hook, and must match the CPU within
the float32 summation tolerance. Runs on a GPU or on the CUDA emulator (tools/cuda_emu/run.sh
with TESTS="tests/test_cuda_tiles.py").
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from conftest import check_bitwise, check_exact, f64, normal, small_ints
from fastcnn import ops

TILES = ["64x128", "64x64", "32x128"]

CONV_CASES = [
    # (x shape, w shape, options): many k steps, tails in M, N and K, padding, stride, groups
    ((2, 5, 11, 9), (70, 5, 3, 3), {"padding": 1}),
    ((3, 6, 9, 10), (6, 3, 2, 3), {"stride": (2, 1), "dilation": (1, 2), "groups": 2,
                                   "padding": "same"}),
    ((1, 3, 6, 6), (5, 3, 1, 1), {}),
]
LINEAR_CASES = [(33, 70, 129), (5, 600, 7), (70, 9, 300)]


def _run_all_tiles(monkeypatch: pytest.MonkeyPatch, fn: Any) -> list[list[np.ndarray]]:
    outs = []
    for tile in TILES:
        monkeypatch.setenv("FASTCNN_CUDA_TILE", tile)
        outs.append(fn())
    monkeypatch.delenv("FASTCNN_CUDA_TILE")
    outs.append(fn())  # the rule's own choice
    return outs


def _host(cp: Any, arrays: Any) -> list[np.ndarray]:
    return [cp.asnumpy(a) for a in arrays if a is not None]


@pytest.mark.cuda
@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: f"{c[0]}-{c[1]}")
def test_conv2d_same_bits_on_every_tile(cp: Any, rng: np.random.Generator,
                                        monkeypatch: pytest.MonkeyPatch, case: Any) -> None:
    xs, ws, opts = case
    x, w, b = normal(rng, xs), normal(rng, ws), normal(rng, (ws[0],))
    y = ops.conv2d(x, w, b, **opts)
    dy = normal(rng, y.shape)
    xg, wg, bg, dyg = (cp.asarray(a) for a in (x, w, b, dy))

    def run() -> list[np.ndarray]:
        return _host(cp, [ops.conv2d(xg, wg, bg, relu=True, **opts),
                          *ops.conv2d_backward(dyg, xg, wg, **opts)])

    outs = _run_all_tiles(monkeypatch, run)
    for tile, got in zip([*TILES, "rule"], outs, strict=True):
        for name, a, ref in zip(("y", "dx", "dw", "db"), got, outs[0], strict=True):
            check_bitwise(a, ref, f"{name} on tile {tile} vs 64x128")
    # and exact against the CPU with small integers (every sum exact in float32)
    xi, wi, dyi = small_ints(rng, xs), small_ints(rng, ws), small_ints(rng, y.shape)
    for tile in TILES:
        monkeypatch.setenv("FASTCNN_CUDA_TILE", tile)
        check_exact(cp.asnumpy(ops.conv2d(cp.asarray(xi), cp.asarray(wi), **opts)),
                    f64(ops.conv2d(xi, wi, **opts)), f"y (ints) on {tile}")
        for name, g, c in zip(("dx", "dw"),
                              ops.conv2d_backward(cp.asarray(dyi), cp.asarray(xi),
                                                  cp.asarray(wi), bias=False, **opts),
                              ops.conv2d_backward(dyi, xi, wi, bias=False, **opts), strict=False):
            check_exact(cp.asnumpy(g), f64(c), f"{name} (ints) on {tile}")


@pytest.mark.cuda
@pytest.mark.parametrize(("N", "fin", "fout"), LINEAR_CASES)
def test_linear_same_bits_on_every_tile(cp: Any, rng: np.random.Generator,
                                        monkeypatch: pytest.MonkeyPatch, N: int, fin: int,
                                        fout: int) -> None:
    x, w, b = normal(rng, (N, fin)), normal(rng, (fout, fin)), normal(rng, (fout,))
    dy = normal(rng, (N, fout))
    xg, wg, bg, dyg = (cp.asarray(a) for a in (x, w, b, dy))

    def run() -> list[np.ndarray]:
        return _host(cp, [ops.linear(xg, wg, bg, relu=True), *ops.linear_backward(dyg, xg, wg)])

    outs = _run_all_tiles(monkeypatch, run)
    for tile, got in zip([*TILES, "rule"], outs, strict=True):
        for name, a, ref in zip(("y", "dx", "dw", "db"), got, outs[0], strict=True):
            check_bitwise(a, ref, f"{name} on tile {tile} vs 64x128")
    xi, wi = small_ints(rng, (N, fin)), small_ints(rng, (fout, fin))
    for tile in TILES:
        monkeypatch.setenv("FASTCNN_CUDA_TILE", tile)
        check_exact(cp.asnumpy(ops.linear(cp.asarray(xi), cp.asarray(wi))),
                    f64(ops.linear(xi, wi)), f"y (ints) on {tile}")
