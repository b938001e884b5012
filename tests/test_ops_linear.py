"""fastcnn.ops.linear / linear_backward against fastcnn.reference, for every ISA.

Like the convolution tests: small-integer inputs must match the float64 reference exactly,
random-normal ones within conftest.sum_tolerance. The GEMMs are y = x w^T (M = N, N = out,
K = in), dx = dy w (M = N, N = in, K = out) and dw = dy^T x (M = out, N = in, K = batch), so
every dimension is taken around the micro-tiles (MR 4/8, NR 8/24/48) and beyond KC = 256.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import abs64, check_exact, check_sum_close, f64, normal, small_ints
from fastcnn import ops
from fastcnn import reference as ref

WIDTHS = [7, 8, 9, 15, 16, 17, 23, 24, 25, 31, 32, 33, 47, 48, 49]


def run_linear_case(rng: np.random.Generator, N: int, fin: int, fout: int, *, bias: bool = True,
                    what: str = "") -> None:
    # 1. small integers: exact
    x, w = small_ints(rng, (N, fin)), small_ints(rng, (fout, fin))
    b = small_ints(rng, (fout,)) if bias else None
    y_ref = ref.linear(f64(x), f64(w), f64(b))
    check_exact(ops.linear(x, w, b), y_ref, f"{what} y (ints)")
    check_exact(ops.linear(x, w, b, relu=True), np.maximum(y_ref, 0), f"{what} relu(y) (ints)")
    dy = small_ints(rng, (N, fout))
    dx, dw, db = ops.linear_backward(dy, x, w, bias=bias)
    dx_ref, dw_ref, db_ref = ref.linear_backward(f64(dy), f64(x), f64(w), bias=bias)
    check_exact(dx, dx_ref, f"{what} dx (ints)")
    check_exact(dw, dw_ref, f"{what} dw (ints)")
    if bias:
        check_exact(db, db_ref, f"{what} db (ints)")
    else:
        assert db is None

    # 2. random normal: within the summation tolerance
    x, w = normal(rng, (N, fin)), normal(rng, (fout, fin))
    b = normal(rng, (fout,)) if bias else None
    y_ref = ref.linear(f64(x), f64(w), f64(b))
    y_abs = ref.linear(abs64(x), abs64(w), abs64(b))
    check_sum_close(ops.linear(x, w, b), y_ref, y_abs, fin + 1, f"{what} y")
    check_sum_close(ops.linear(x, w, b, relu=True), np.maximum(y_ref, 0), y_abs, fin + 1,
                    f"{what} relu(y)")
    dy = normal(rng, (N, fout))
    dx, dw, db = ops.linear_backward(dy, x, w, bias=bias)
    exact = ref.linear_backward(f64(dy), f64(x), f64(w), bias=bias)
    absd = ref.linear_backward(abs64(dy), abs64(x), abs64(w), bias=bias)
    check_sum_close(dx, exact[0], absd[0], fout, f"{what} dx")
    check_sum_close(dw, exact[1], absd[1], N, f"{what} dw")
    if bias:
        check_sum_close(db, exact[2], absd[2], N, f"{what} db")


@settings(max_examples=8 * settings.default.max_examples)
@given(N=st.integers(0, 40), fin=st.integers(1, 70), fout=st.integers(1, 70),
       bias=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_linear_random_against_reference(isa: str, N: int, fin: int, fout: int, bias: bool,
                                         seed: int) -> None:
    run_linear_case(np.random.default_rng(seed), N, fin, fout, bias=bias,
                    what=f"[{isa}] N={N} in={fin} out={fout}")


@settings(max_examples=2 * settings.default.max_examples)
@given(N=st.integers(1, 300), fin=st.integers(1, 600), fout=st.integers(1, 300),
       seed=st.integers(0, 2**32 - 1))
def test_linear_random_large_against_reference(isa: str, N: int, fin: int, fout: int,
                                               seed: int) -> None:
    run_linear_case(np.random.default_rng(seed), N, fin, fout,
                    what=f"[{isa}] N={N} in={fin} out={fout}")


@pytest.mark.fuzz
@settings(max_examples=20 * settings.default.max_examples)
@given(N=st.integers(0, 300), fin=st.integers(1, 800), fout=st.integers(1, 300),
       seed=st.integers(0, 2**32 - 1))
def test_linear_fuzz(isa: str, N: int, fin: int, fout: int, seed: int) -> None:
    """Developers' long run (``-m fuzz``)."""
    run_linear_case(np.random.default_rng(seed), N, fin, fout,
                    what=f"[{isa}] N={N} in={fin} out={fout}")


@pytest.mark.parametrize("v", WIDTHS)
def test_linear_tile_widths(isa: str, rng: np.random.Generator, v: int) -> None:
    """Each of N, in, out at tile-1 / tile / tile+1, alone and together."""
    run_linear_case(rng, v, v, v, what=f"[{isa}] all={v}")
    run_linear_case(rng, 3, 5, v, what=f"[{isa}] out={v}")
    run_linear_case(rng, v, 5, 3, what=f"[{isa}] N={v}")
    run_linear_case(rng, 2, v, 3, what=f"[{isa}] in={v}")


@pytest.mark.parametrize(
    ("N", "fin", "fout"),
    [
        pytest.param(1, 1, 1, id="1x1x1"),
        pytest.param(1, 700, 10, id="in=700>KC-batch1"),
        pytest.param(8, 700, 130, id="in=700>KC"),
        pytest.param(4, 256, 24, id="in=KC"),
        pytest.param(4, 257, 48, id="in=KC+1"),
        pytest.param(9, 40, 600, id="out=600>KC-for-dx"),
        pytest.param(600, 20, 9, id="batch=600>KC-for-dw"),
        pytest.param(1030, 3, 50, id="batch=1030-for-dw"),
        pytest.param(64, 9216, 12, id="seeds-dense-like"),
        pytest.param(0, 5, 3, id="empty-batch"),
    ],
)
def test_linear_edges(isa: str, rng: np.random.Generator, N: int, fin: int, fout: int) -> None:
    run_linear_case(rng, N, fin, fout, what=f"[{isa}] N={N} in={fin} out={fout}")


def test_linear_no_bias(isa: str, rng: np.random.Generator) -> None:
    run_linear_case(rng, 5, 17, 9, bias=False, what=f"[{isa}] no bias")


def test_linear_does_not_modify_inputs(isa: str, rng: np.random.Generator) -> None:
    arrays = [normal(rng, s) for s in [(5, 7), (3, 7), (3,), (5, 3)]]
    copies = [a.copy() for a in arrays]
    x, w, b, dy = arrays
    y = ops.linear(x, w, b, relu=True)
    assert not any(np.shares_memory(y, a) for a in arrays)
    ops.linear_backward(dy, x, w)
    for a, c in zip(arrays, copies, strict=True):
        assert np.array_equal(a, c)


def test_linear_specials(isa: str) -> None:
    """inf and NaN propagate as in the reference; denormal products are kept (no FTZ)."""
    x = np.array([[np.inf, 1.0], [np.nan, 1.0], [2.0**-140, 2.0**-140]], np.float32)
    w = np.array([[1.0, 0.0], [0.5, 3.0]], np.float32)
    y = ops.linear(x, w)
    with np.errstate(invalid="ignore"):
        expected = ref.linear(f64(x), f64(w))
    check_exact(y, expected, f"[{isa}] specials")
    assert y[2, 0] == np.float32(2.0**-140) and y[2, 1] == np.float32(3.5 * 2.0**-140)


def test_linear_relu_keeps_nan(isa: str) -> None:
    x = np.array([[np.nan, 1.0], [-1.0, -1.0]], np.float32)
    w = np.eye(2, dtype=np.float32)
    y = ops.linear(x, w, relu=True)
    assert np.isnan(y[0]).all() and (y[1] == 0).all()  # NaN * 0 is NaN: the whole row
