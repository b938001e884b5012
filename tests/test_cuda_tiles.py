"""The CUDA GEMM core's tile shapes (csrc/cuda/gemm_core.cuh) give the same bits.

Every output element of the GEMM core is one FMA chain over k in increasing order, whatever the
block tile; only the split-K (chosen from the shapes alone) decides the order. So conv2d forward
and backward and linear forward and backward must give identical bits under every tile the
rule can pick, forced with the ``FASTCNN_CUDA_TILE`` test hook, and must match the CPU within
the float32 summation tolerance. The bias gradients' two-stage reduction (csrc/cuda/reduce.cu)
must give exactly the bits of its documented order (a NumPy mirror), whatever the launch caps.
Runs on a GPU or on the CUDA emulator (tools/cuda_emu/run.sh with
TESTS="tests/test_cuda_tiles.py"; CAP1D=1 CAPX=1 CAPYZ=1 and
EXTRA_CXXFLAGS=-DFASTCNN_CUDA_NO_CP_ASYNC run the other grids and the pre-sm_80 main loop).
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


# ---- the bias gradients' two-stage reduction (csrc/cuda/reduce.cu) -------------------------------
# A NumPy mirror of its documented order (chunks from the shapes alone, each thread's run in
# increasing order, the fixed trees, the partials added in chunk order): the GPU's bits must be
# exactly these under every launch cap (tools/cuda_emu/run.sh with CAP1D=1 and the defaults),
# run to run, and on every GPU.
_TARGET, _MIN_VALUES, _MIN_ROWS, _MAX_CHUNKS, _THREADS, _COLS = 264, 4096, 64, 1024, 256, 32
_LANES = _THREADS // _COLS


def _chunks(units: int, count: int, min_len: int, align: int) -> tuple[int, int]:
    up = lambda a, b: -(-a // b) * b  # noqa: E731
    want = min(-(-_TARGET // max(units, 1)), count // min_len, _MAX_CHUNKS)
    if want <= 1:
        return 1, up(max(count, 1), align)
    n = up(-(-count // want), align)
    return -(-count // n), n


def _strided_sums(seg: np.ndarray, lanes: int) -> np.ndarray:
    """Per lane t, the float32 sum of seg[t], seg[t + lanes], ... in order (seg: (n, ...))."""
    rows = -(-seg.shape[0] // lanes)
    pad = np.zeros((rows * lanes, *seg.shape[1:]), np.float32)
    pad[: seg.shape[0]] = seg
    acc = np.zeros((lanes, *seg.shape[1:]), np.float32)
    for r in range(rows):
        acc = acc + pad[r * lanes:(r + 1) * lanes]
    return acc


def _tree(s: np.ndarray) -> np.ndarray:
    s = s.copy()
    h = s.shape[0] // 2
    while h:
        s[:h] = s[:h] + s[h:2 * h]
        h //= 2
    return s[0]


def _bias_mirror(dy: np.ndarray, N: int, K: int, L: int) -> tuple[np.ndarray, int]:
    """db and the chunk count G of reduce.cu's order for dy seen as (N, K, L)."""
    v = dy.reshape(N, K, L).astype(np.float32)
    if L == 1:
        G, n = _chunks(-(-K // _COLS), N, _MIN_ROWS, _LANES)
        parts = [_tree(_strided_sums(v[g * n:(g + 1) * n, :, 0], _LANES)) for g in range(G)]
    else:
        G, n = _chunks(K, N * L, _MIN_VALUES, _THREADS)
        flat = v.transpose(1, 0, 2).reshape(K, N * L)
        parts = [np.array([_tree(_strided_sums(flat[k, g * n:(g + 1) * n], _THREADS))
                           for k in range(K)], np.float32) for g in range(G)]
    db = parts[0]
    for p in parts[1:]:
        db = db + p
    return np.asarray(db, np.float32), G


BIAS_CONV_CASES = [
    # (x shape, w shape): chunks G > 1 with a tail chunk; G == 1; a 1 x 1 output (the column
    # layout) with two row chunks
    ((5, 1, 43, 41), (3, 1, 1, 1)),
    ((2, 2, 5, 7), (3, 2, 3, 3)),
    ((130, 3, 1, 1), (5, 3, 1, 1)),
]


@pytest.mark.cuda
@pytest.mark.parametrize("case", BIAS_CONV_CASES, ids=lambda c: f"{c[0]}-{c[1]}")
def test_conv2d_bias_gradient_is_the_fixed_two_stage_order(cp: Any, rng: np.random.Generator,
                                                           case: Any) -> None:
    from fastcnn import _cuda

    xs, ws = case
    y = ops.conv2d(np.zeros(xs, np.float32), np.zeros(ws, np.float32))
    N, K, P, Q = y.shape
    dy = normal(rng, y.shape)
    dyg, xg, wg = cp.asarray(dy), cp.asarray(np.zeros(xs, np.float32)), cp.asarray(
        np.zeros(ws, np.float32))
    want, G = _bias_mirror(dy, N, K, P * Q)
    plan = _cuda.conv2d_plan(xs, ws, None, 1, 1, 0, 0, 0, 0, 1, 1, 1, y.shape)
    assert plan["backward_bias_workspace"] == (K * G if G > 1 else 0)
    for _ in range(2):  # and run to run
        _, _, db = ops.conv2d_backward(dyg, xg, wg, compute_dx=False, compute_dw=False)
        check_bitwise(cp.asnumpy(db), want, f"db of dy {y.shape} ({G} chunks)")
    # with the other gradients (one workspace shared in stream order): the same bits
    check_bitwise(cp.asnumpy(ops.conv2d_backward(dyg, xg, wg)[2]), want, "db with dx, dw")


@pytest.mark.cuda
@pytest.mark.parametrize(("N", "fout"), [(200, 40), (9, 5)])
def test_linear_bias_gradient_is_the_fixed_two_stage_order(cp: Any, rng: np.random.Generator,
                                                           N: int, fout: int) -> None:
    from fastcnn import _cuda

    dy = normal(rng, (N, fout))
    xg, wg = cp.asarray(normal(rng, (N, 3))), cp.asarray(normal(rng, (fout, 3)))
    want, G = _bias_mirror(dy, N, fout, 1)
    plan = _cuda.linear_plan((N, 3), (fout, 3), None, (N, fout))
    assert plan["backward_bias_workspace"] == (fout * G if G > 1 else 0)
    for compute in (False, True):
        _, _, db = ops.linear_backward(cp.asarray(dy), xg, wg, compute_dx=compute,
                                       compute_dw=compute)
        check_bitwise(cp.asnumpy(db), want, f"db of dy ({N}, {fout}) ({G} chunks)")


@pytest.mark.cuda
def test_bias_reduction_workspace_is_checked(cp: Any) -> None:
    from fastcnn import _cuda

    dy = cp.asarray(np.ones((200, 40), np.float32))
    x, w = cp.asarray(np.ones((200, 3), np.float32)), cp.asarray(np.ones((40, 3), np.float32))
    need = _cuda.linear_plan((200, 3), (40, 3), None, (200, 40))["backward_bias_workspace"]
    assert need > 0
    db = cp.empty((40,), cp.float32)
    with pytest.raises(ValueError, match="workspace"):
        _cuda.linear_backward(dy.data.ptr, dy.shape, x.data.ptr, x.shape, w.data.ptr, w.shape,
                              0, 0, db.data.ptr, 0, 0, cp.cuda.get_current_stream().ptr)


# ---- 16-byte copies and 128-bit epilogue stores (csrc/cuda/gemm_core.cuh) ------------------------
# The GEMM core copies operand rows that are contiguous along m / n 16 bytes at a time
# (cp.async.cg) when the launcher finds them aligned (dcol: C*R*S/groups and P*Q multiples of 4;
# dense dx / dw: in (and out) multiples of 4; every pointer 16-byte aligned), and stores each
# four-column group of an aligned output row with one 128-bit store (scalar stores for unaligned
# rows and the last group of a row). Neither changes arithmetic: the same data at an aligned and
# at an unaligned address give the same bits, and small integers give the CPU's exact results.
# On the emulator its counters (cuda_emu.h) also show which paths ran.


def _unaligned(cp: Any, a: np.ndarray) -> Any:
    """a on the device at an address 4 bytes past a 16-byte boundary (a contiguous view)."""
    buf = cp.zeros(a.size + 4, dtype=cp.float32)
    off = next(i for i in range(4) if (buf[i:].data.ptr % 16) == 4)
    view = buf[off:off + a.size].reshape(a.shape)
    view[...] = cp.asarray(a)
    assert view.data.ptr % 16 == 4 and view.flags.c_contiguous
    return view


def _widths(cp: Any, fn: Any) -> tuple[Any, dict[str, int] | None]:
    """fn()'s result and, on the emulator, the 128-bit stores and 16- / 4-byte cp.async copies
    it made (None on a GPU)."""
    lib = cp._emu._native() if hasattr(cp, "_emu") else None
    if lib is not None:
        lib.fastcnn_emu_counter(-1)
    out = fn()
    if lib is None:
        return out, None
    return out, {"st128": lib.fastcnn_emu_counter(4), "cp16": lib.fastcnn_emu_counter(5),
                 "cp4": lib.fastcnn_emu_counter(6)}


WIDTH_CONV_CASES = [
    # (x shape, w shape, options, 16-byte copies in the forward, in dcol): P*Q 36 and C*R*S 36
    # (aligned rows, k tails: K 8 of BK 8, C*R*S 36 -> 5 steps); P*Q 15 and C*R*S 27 (rows at
    # every alignment, the 4-byte copies); a 1 x 1 convolution with groups (the forward's x
    # rows contiguous: H*W 20; C*R*S/groups 2); a 1 x 1 one with H*W 15
    ((2, 4, 6, 6), (8, 4, 3, 3), {"padding": 1}, False, True),
    ((1, 3, 5, 7), (5, 3, 3, 3), {}, False, False),
    ((2, 4, 4, 5), (6, 2, 1, 1), {"groups": 2}, True, False),
    ((1, 8, 3, 5), (4, 8, 1, 1), {}, False, False),
]


@pytest.mark.cuda
@pytest.mark.parametrize("case", WIDTH_CONV_CASES, ids=lambda c: f"{c[0]}-{c[1]}")
def test_conv2d_128bit_paths_same_bits(cp: Any, rng: np.random.Generator, case: Any) -> None:
    xs, ws, opts, fwd_vec, vec = case
    x, w, b = small_ints(rng, xs), small_ints(rng, ws), small_ints(rng, (ws[0],))
    y = ops.conv2d(x, w, b, relu=True, **opts)
    dy = small_ints(rng, y.shape)
    dx, dw, _ = ops.conv2d_backward(dy, x, w, **opts)
    xg, wg, bg, dyg = (cp.asarray(a) for a in (x, w, b, dy))
    fwd = lambda xa: ops.conv2d(xa, wg, bg, relu=True, **opts)  # noqa: E731
    bwd = lambda dya, xa: ops.conv2d_backward(dya, xa, wg, **opts)[:2]  # noqa: E731
    yg, nf = _widths(cp, lambda: fwd(xg))
    (dxg, dwg), nb = _widths(cp, lambda: bwd(dyg, xg))
    check_exact(cp.asnumpy(yg), f64(y), "y")
    check_exact(cp.asnumpy(dxg), f64(dx), "dx")
    check_exact(cp.asnumpy(dwg), f64(dw), "dw")
    # the same data at unaligned addresses: 4-byte copies, the same bits
    xu, dyu = _unaligned(cp, x), _unaligned(cp, dy)
    yu, _ = _widths(cp, lambda: fwd(xu))
    (dxu, dwu), nu = _widths(cp, lambda: bwd(dyu, xu))
    for name, a, ref in (("y", yu, yg), ("dx", dxu, dxg), ("dw", dwu, dwg)):
        check_bitwise(cp.asnumpy(a), cp.asnumpy(ref), f"{name} from unaligned inputs")
    if nf is None:
        return
    P, Q = y.shape[2:]
    crs = ws[1] * ws[2] * ws[3]
    # 128-bit stores: y rows of P*Q and dw rows of C*R*S/groups floats, aligned when a multiple
    # of 4 (else only some rows, or none when a row has fewer than 4 columns)
    assert (nf["st128"] > 0) == (P * Q >= 4), nf
    assert (nb["st128"] > 0) == (crs >= 4 or P * Q >= 4), nb
    if nf["cp4"] + nf["cp16"] == 0:
        return  # the synchronous pre-sm_80 main loop (-DFASTCNN_CUDA_NO_CP_ASYNC): no cp.async
    assert (nf["cp16"] > 0) == fwd_vec, nf  # w is k-contiguous, x gathered unless 1 x 1
    assert (nb["cp16"] > 0) == vec, nb
    assert nu["cp16"] == 0 and nu["cp4"] > 0, nu


WIDTH_LINEAR_CASES = [
    # (N, in, out): dx and dw with 16-byte copies (in, out multiples of 4; K = N 6 and out 8:
    # one k step with a tail); dx only (out 9); neither (in 7)
    (6, 12, 8),
    (5, 8, 9),
    (5, 7, 9),
]


@pytest.mark.cuda
@pytest.mark.parametrize(("N", "fin", "fout"), WIDTH_LINEAR_CASES)
def test_linear_128bit_paths_same_bits(cp: Any, rng: np.random.Generator, N: int, fin: int,
                                       fout: int) -> None:
    x, w, b = small_ints(rng, (N, fin)), small_ints(rng, (fout, fin)), small_ints(rng, (fout,))
    dy = small_ints(rng, (N, fout))
    y = ops.linear(x, w, b, relu=True)
    dx, dw, _ = ops.linear_backward(dy, x, w)
    xg, wg, bg, dyg = (cp.asarray(a) for a in (x, w, b, dy))
    yg, nf = _widths(cp, lambda: ops.linear(xg, wg, bg, relu=True))
    (dxg, _, _), ndx = _widths(cp, lambda: ops.linear_backward(dyg, xg, wg, compute_dw=False))
    (_, dwg, _), ndw = _widths(cp, lambda: ops.linear_backward(dyg, xg, wg, compute_dx=False))
    check_exact(cp.asnumpy(yg), f64(y), "y")
    check_exact(cp.asnumpy(dxg), f64(dx), "dx")
    check_exact(cp.asnumpy(dwg), f64(dw), "dw")
    xu, wu, dyu = _unaligned(cp, x), _unaligned(cp, w), _unaligned(cp, dy)
    (dxu, dwu, _), nu = _widths(cp, lambda: ops.linear_backward(dyu, xu, wu))
    check_bitwise(cp.asnumpy(dxu), cp.asnumpy(dxg), "dx from unaligned inputs")
    check_bitwise(cp.asnumpy(dwu), cp.asnumpy(dwg), "dw from unaligned inputs")
    if nf is None:
        return
    assert nf["st128"] > 0 and nf["cp16"] == 0, nf  # x . w^T: both operands k-contiguous
    assert (ndx["st128"] > 0) == (fin >= 4), ndx
    if nf["cp4"] == 0:
        return  # the synchronous pre-sm_80 main loop (-DFASTCNN_CUDA_NO_CP_ASYNC): no cp.async
    assert (ndx["cp16"] > 0) == (fin % 4 == 0), ndx
    assert (ndw["cp16"] > 0) == (fin % 4 == 0 and fout % 4 == 0), ndw
    assert nu["cp16"] == 0 and nu["cp4"] > 0, nu
