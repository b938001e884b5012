"""The GEMM's tall edge kernel and the dense forward's orientation, for every ISA.

A GEMM whose last column panel is thin (<= NR/3 columns: 8 of 24 on AVX2, 16 of 48 on AVX-512,
2 of 8 generic) and whose A rows are read in place runs that panel three row panels at a time
(``gemm_ukernel_sa_tall``: 3*MR rows); the rows left over (fewer than three whole panels, and a
last panel of fewer than MR rows) take the narrow in-place and packed kernels. The dense forward
puts the larger of x and w in place: ``y = x w^T`` when out <= N, ``y^T = w x^T`` otherwise
(``FASTCNN_LINEAR_ORIENT=x|w`` forces one, privately, for these tests and the A/B benchmark).

Checked against fastcnn.reference (exact with small integers, within the summation tolerance
with normals) for the forward, dx and dw at 3*MR - 1, 3*MR and 3*MR + 1 rows (and 2 * 3*MR + 1)
with thin last panels of 1 and NR/3 columns, an odd K and a split K; the two orientations and
1 or 2 threads give the same bits.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastcnn
from conftest import normal
from fastcnn import ops
from test_ops_linear import run_linear_case

# (MR, NR) of each ISA's GEMM tile: the tall edge covers 3*MR rows x <= NR/3 columns
TILE = {"generic": (4, 8), "avx2": (4, 24), "avx512": (8, 48)}


def _shapes(isa: str) -> list[tuple[int, int, int]]:
    """(N, in, out) with out <= N (x in place) around 3*MR rows, thin last panels of 1 and
    NR/3 columns; in odd (one K slice and a tail) or past 1024 (split K)."""
    mr, nr = TILE[isa]
    tall = 3 * mr
    return [(tall - 1, 131, nr + nr // 3), (tall, 131, nr + 1), (tall + 1, 131, nr // 3),
            (2 * tall + 1, 1031, nr + nr // 3)]


def test_tall_edge_against_reference(isa: str, rng: np.random.Generator) -> None:
    for n, fin, fout in _shapes(isa):
        # forward x in place (out <= N) with a thin last panel of out; dx: N = in (not thin),
        # dw: in place rows of dy's columns (out) x N = in
        run_linear_case(rng, n, fin, fout, what=f"[{isa}] N={n} in={fin} out={fout}")
        # dx with a thin last panel: in = thin width, dy rows in place
        run_linear_case(rng, n, fout, 3, what=f"[{isa}] N={n} in={fout} out=3")


@pytest.mark.parametrize("orient", ["x", "w"])
def test_forced_orientation_against_reference(isa: str, rng: np.random.Generator,
                                              monkeypatch: pytest.MonkeyPatch,
                                              orient: str) -> None:
    """Each orientation forced on shapes the rule would give the other (and a thin panel)."""
    monkeypatch.setenv("FASTCNN_LINEAR_ORIENT", orient)
    mr, nr = TILE[isa]
    run_linear_case(rng, 3 * mr + 1, 1031, nr + nr // 3, what=f"[{isa}] orient={orient} a")
    run_linear_case(rng, nr // 3, 131, 3 * mr, what=f"[{isa}] orient={orient} b")


def test_orientations_and_threads_give_the_same_bits(isa: str, rng: np.random.Generator,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    mr, nr = TILE[isa]
    before = fastcnn.num_threads()
    try:
        for n, fin, fout in [(6 * mr + 1, 1031, nr + nr // 3), (3 * mr, 131, 2 * nr + 1)]:
            x, w, b = normal(rng, (n, fin)), normal(rng, (fout, fin)), normal(rng, (fout,))
            results = {}
            for orient in ("x", "w"):
                monkeypatch.setenv("FASTCNN_LINEAR_ORIENT", orient)
                for threads in (1, 2):
                    fastcnn.set_num_threads(threads)
                    results[orient, threads] = ops.linear(x, w, b, relu=True).tobytes()
            monkeypatch.delenv("FASTCNN_LINEAR_ORIENT")
            fastcnn.set_num_threads(2)
            results["rule", 2] = ops.linear(x, w, b, relu=True).tobytes()
            first = results["x", 1]
            for key, got in results.items():
                assert got == first, f"[{isa}] N={n} in={fin} out={fout}: {key} differs"
    finally:
        fastcnn.set_num_threads(before)



@pytest.mark.parametrize(("c", "h", "k", "form"), [
    pytest.param(16, 32, 32, "blocked", id="1x1-16-32@32"),
    pytest.param(32, 16, 64, "gemm", id="1x1-32-64@16"),
])
def test_1x1_stride2_weight_gradient_form(isa: str, rng: np.random.Generator,
                                          monkeypatch: pytest.MonkeyPatch, c: int, h: int, k: int,
                                          form: str) -> None:
    """The rule's 1x1 / 2 weight gradient (conv2d_route.cpp blocked_wgrad_wins, fitted on AVX2)
    is the form its cost picks: bit-identical to that form forced, not to the other (the two
    sum in different orders). Batch 16: >= 4 MFLOP, the blocked form's threshold."""
    if isa != "avx2":
        pytest.skip("the 1x1 / 2 costs are fitted to AVX2 timings")
    x = normal(rng, (16, c, h, h))
    w = normal(rng, (k, c, 1, 1))
    dy = normal(rng, (16, k, h // 2, h // 2))

    def dw() -> bytes:
        return ops.conv2d_backward(dy, x, w, stride=2, padding=0, bias=False, compute_dx=False,
                                   compute_dw=True)[1].tobytes()

    got = {}
    for route in ("blocked", "gemm"):
        monkeypatch.setenv("FASTCNN_CONV_ROUTE", route)
        got[route] = dw()
    monkeypatch.delenv("FASTCNN_CONV_ROUTE")
    assert got["blocked"] != got["gemm"], "the two forms gave the same bits: the test can't tell"
    rule = dw()
    other = "gemm" if form == "blocked" else "blocked"
    assert rule == got[form] and rule != got[other], f"[{isa}] 1x1 {c}->{k} @{h}/2: not {form}"
