"""The GEMM paths under ops.linear / linear_backward, one by one, for every ISA.

Every linear GEMM reads its A operand in place (GemmProblem::a_base: x or w rows for the
forward, dy rows for dx, dy's columns for dw) and packs only B; a last row panel of fewer than
MR rows is packed. The forward computes y^T = w x^T when out > N (w read in place, x packed) and
y = x w^T otherwise, swapped when that avoids a last column panel of <= NR/3 columns; B is
packed once into a shared workspace when several row blocks (> 256 rows) read it; K splits into
shape-fixed chunks for long reductions into small outputs. The in-place kernel computes only the
column vectors a tile's last panel needs (1, 2 or 3 of 8 floats on AVX2, of 16 on AVX-512):
every last-panel width class is taken for each GEMM. Each path is taken at tile-1 / tile /
tile+1 of MR (4, 8), NR (8, 24, 48), KC (128), the row block (256) and the column block (480),
checked exactly against fastcnn.reference with small integers, within the summation tolerance
with normals, and bit-identical on 1 to 4 threads.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastcnn
from conftest import normal
from fastcnn import ops
from test_ops_linear import run_linear_case

CASES = [
    # forward y^T = w x^T (out > N): w rows in place around MR, x packed around NR
    pytest.param(3, 20, 7, id="wT-out7"), pytest.param(5, 20, 8, id="wT-out8"),
    pytest.param(5, 20, 9, id="wT-out9"), pytest.param(23, 31, 47, id="wT-N23"),
    pytest.param(24, 31, 49, id="wT-N24"), pytest.param(25, 31, 50, id="wT-N25"),
    # forward y = x w^T (out <= N): x rows in place around MR
    pytest.param(7, 20, 5, id="x-N7"), pytest.param(8, 20, 6, id="x-N8"),
    pytest.param(9, 20, 3, id="x-N9"),
    # K around KC = 128 and several slices
    pytest.param(6, 127, 10, id="in127"), pytest.param(6, 128, 10, id="in128"),
    pytest.param(6, 129, 10, id="in129"), pytest.param(6, 385, 11, id="in385"),
    # shared packed B: more than one row block of 256 (out > 256 forward and dw; N > 256 dx)
    pytest.param(10, 33, 257, id="shared-out257"), pytest.param(10, 33, 300, id="shared-out300"),
    pytest.param(301, 30, 20, id="rows-N301"), pytest.param(257, 140, 261, id="shared-both"),
    # column blocks around NC = 480
    pytest.param(5, 479, 3, id="in479"), pytest.param(5, 481, 3, id="in481"),
    pytest.param(479, 6, 481, id="N479-out481"),
    # split K (in >= 1024, small output), both orientations, with row and column tails
    pytest.param(9, 1030, 13, id="splitk-wT"), pytest.param(13, 1031, 9, id="splitk-x"),
    pytest.param(3, 2177, 301, id="splitk-shared"),
    # orientation by the last column panel (AVX2, NR 24): out <= N with a thin last panel
    # (<= 8 columns) and N without one runs as y^T = w x^T; a 2-row tail of w's row panels;
    # with split K (partials computed straight into the padded chunk buffer) and without
    pytest.param(41, 1030, 30, id="thin-out-splitk"), pytest.param(40, 130, 32, id="thin-out"),
    pytest.param(48, 129, 24, id="out-tile"), pytest.param(49, 1029, 25, id="out-tile+1-splitk"),
]


@pytest.mark.parametrize(("N", "fin", "fout"), CASES)
def test_linear_paths_against_reference(isa: str, rng: np.random.Generator, N: int, fin: int,
                                        fout: int) -> None:
    run_linear_case(rng, N, fin, fout, what=f"[{isa}] N={N} in={fin} out={fout}")


@pytest.mark.parametrize("v", [8, 9, 16, 17, 23, 32, 33, 40, 41, 47, 48, 49, 128])
def test_linear_last_panel_widths(isa: str, rng: np.random.Generator, v: int) -> None:
    """GEMM N = v for every pass: forward y = x w^T (out = v <= N), dx and dw (in = v); then
    the forward y^T = w x^T with batch = v < out."""
    run_linear_case(rng, 130, v, v, what=f"[{isa}] in=out={v}")
    run_linear_case(rng, v, 40, 140, what=f"[{isa}] batch={v}")


@pytest.mark.parametrize(("N", "fin", "fout"), [
    pytest.param(64, 1100, 130, id="splitk-wT"), pytest.param(130, 1100, 61, id="splitk-x"),
    pytest.param(37, 300, 301, id="shared-B"), pytest.param(301, 200, 45, id="rows-x"),
    pytest.param(70, 481, 1000, id="wT-big"), pytest.param(41, 1030, 30, id="thin-out-splitk"),
])
def test_linear_paths_bit_identical_for_any_thread_count(isa: str, rng: np.random.Generator,
                                                         N: int, fin: int, fout: int) -> None:
    x, w, b, dy = (normal(rng, s) for s in [(N, fin), (fout, fin), (fout,), (N, fout)])
    before = fastcnn.num_threads()

    def run() -> list[bytes]:
        y = ops.linear(x, w, b, relu=True)
        dx, dw, db = ops.linear_backward(dy, x, w)
        return [a.tobytes() for a in (y, dx, dw, db)]

    try:
        fastcnn.set_num_threads(1)
        expected = run()
        for n in (2, 3, 4):
            fastcnn.set_num_threads(n)
            assert run() == expected, f"[{isa}] N={N} in={fin} out={fout}: {n} threads differ"
    finally:
        fastcnn.set_num_threads(before)


@pytest.mark.parametrize("N", [1, 32, 40, 64])
def test_linear_output_columns_do_not_depend_on_out(isa: str, rng: np.random.Generator,
                                                    N: int) -> None:
    """y[:, :o] of a layer with out = 48 equals, bit for bit, the layer made of w's first o rows:
    every output is one fixed-order sum whichever edge kernel (a last panel of 8, 16 or 24
    columns), orientation (y = x w^T or y^T = w x^T) or row tail computes it. in = 1030 with
    N * out <= 32768: both split K into the same chunks, fixed by in alone."""
    fin = 1030
    x, w, b = normal(rng, (N, fin)), normal(rng, (48, fin)), normal(rng, (48,))
    full = ops.linear(x, w, b)
    for o in (7, 8, 9, 16, 17, 24, 25, 30):
        part = ops.linear(x, np.ascontiguousarray(w[:o]), b[:o].copy())
        np.testing.assert_array_equal(part, full[:, :o], err_msg=f"[{isa}] N={N} out={o}")
