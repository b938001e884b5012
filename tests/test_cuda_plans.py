"""The CUDA launch plans of issue 14: the GEMM tile rule's report (tools/cuda_tiles.py, item 4)
against hand-computed rows and the rule's promise on the benchmark suites; the dense layer's
split backward-data; the one-call conv backward through a pooling and a ReLU and batch_norm's
one allocation (item 6, host cost).

The report's rows come from the compiled CUDA module (``Conv2dPlan.gemms`` /
``LinearPlan.gemms``: csrc/cuda/gemm_rule.h through the launchers' own descriptor functions), so
these tests need that module but no GPU and no kernel launch: a CUDA build imports without a
GPU, and the CPU emulator's module (tools/cuda_emu/run.sh) has the same rule. Each expected row
below is worked out by hand from gemm_rule.h's text (see the comments); a change of the rule
that moves one fails here, on purpose: update the rows and benchmarks/README.md's table with it.
The tests marked ``cuda`` run the kernels (a GPU or the emulator: tools/cuda_emu/run.sh with
TESTS="tests/test_cuda_plans.py") on small shapes.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from conftest import check_bitwise, check_exact, small_ints
from fastcnn import _native, ops

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cuda() -> Any:
    try:
        mod = _native.cuda()
    except ImportError:
        pytest.skip("fastcnn's CUDA module is not built")
    if not hasattr(mod.Conv2dPlan, "gemms"):  # a module built from older sources
        pytest.skip("this CUDA module predates the tile report: rebuild it (pip install .)")
    return mod


@pytest.fixture(scope="module")
def tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_fastcnn_cuda_tiles",
                                                  ROOT / "tools" / "cuda_tiles.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # (its dataclass looks its module up)
    spec.loader.exec_module(mod)
    return mod


def _row(rows: list[dict[str, Any]], layer: str, pass_: str) -> tuple[Any, ...]:
    (r,) = [r for r in rows if r["layer"] == layer and r["pass"] == pass_]
    return (r["count"], r["G"], r["M"], r["N"], r["K"], r["splits"], r["chunk"], r["tile"],
            r["blocks"])


# (layer label, pass): (count, G, M, N, K, splits, chunk, tile, blocks) on 132 SMs
SEEDS_B64 = {
    # dense 9216 -> 128 at batch 64, dx: 64 x 9216 x 128; 144 tiles of 64 x 64 < 264 and K 128
    # >= 2 x 64: the short split, ceil(264 / 144) = 2 chunks of 64; 2 x 144 = 288 blocks
    ("dense 9216->128 N=64", "backward_data"): (1, 1, 64, 9216, 128, 2, 64, "64x64", 288),
    # dw: 128 x 9216 x 64, K < 128: no split; 2 x 72 = 144 tiles of 64 x 128 < 264 -> 64 x 64
    ("dense 9216->128 N=64", "backward_weights"): (1, 1, 128, 9216, 64, 1, 64, "64x64", 288),
    # forward: 64 x 128 x 9216: 1 tile of 64 x 128, min(264, 9216 / 256 = 36, 64) = 36 splits of
    # 256; 36 blocks of 64 x 128 < 264 -> 64 x 64, 72 blocks
    ("dense 9216->128 N=64", "forward"): (1, 1, 64, 128, 9216, 36, 256, "64x64", 72),
    # conv 32->64 3x3 on 26x26: G 64 images, 64 x 576 x 288; 64 x 9 = 576 fine tiles >= 264:
    # no split; 64 x 5 = 320 tiles of 64 x 128 >= 264
    ("conv 32->64 3x3 @26x26 N=64", "forward"): (1, 64, 64, 576, 288, 1, 288, "64x128", 320),
    # backward-data: 32*9*576 floats per image, 2^23 / 165888 = 50 images at most -> 2 chunks
    # of 32; dcol 288 x 576 x 64 per image, 32 x 5 x 5 = 800 blocks
    ("conv 32->64 3x3 @26x26 N=64", "backward_data"):
        (2, 32, 288, 576, 64, 1, 64, "64x128", 800),
    # conv 1->32 dw: 32 x 9 x 43264 (64 x 26 x 26): 1 tile, min(264, 169, 64) = 64 splits of
    # round_up(676, 8) = 680 -> ceil(43264 / 680) = 64; M 32 -> 32 x 128, 64 blocks
    ("conv 1->32 3x3 @28x28 N=64", "backward_weights"):
        (1, 1, 32, 9, 43264, 64, 680, "32x128", 64),
}


def _default_col_budget(cuda: Any) -> None:
    """The backward-data rows assume the default column budget (2^23 floats); the emulator's CI
    build lowers it (-DFASTCNN_CUDA_COL_BUDGET=2000) to run several chunks."""
    budget = getattr(cuda, "COL_BUDGET_FLOATS", 1 << 23)
    if budget != 1 << 23:
        pytest.skip(f"this CUDA module was built with a column budget of {budget} floats, not "
                    f"the default 2^23 its backward-data rows assume")


def test_seeds_rows_match_the_hand_computed_ones(cuda: Any, tool: ModuleType) -> None:
    _default_col_budget(cuda)
    rows = tool.rows(tool.suite_cases("seeds"), 132, cuda)
    for (layer, pass_), want in SEEDS_B64.items():
        assert _row(rows, layer, pass_) == want, (layer, pass_)
    r = [r for r in rows if r["layer"] == "dense 9216->128 N=64" and r["pass"] == "backward_data"]
    assert r[0]["waves"] == pytest.approx(288 / 264) and r[0]["fills"] == "wave"
    assert r[0]["eff"] == pytest.approx(288 / 528)


def test_tile_follows_the_sm_count_and_the_split_does_not(cuda: Any, tool: ModuleType) -> None:
    """The tile may use the SM count (it never changes the bits), the split never does."""
    case = [c for c in tool.suite_cases("seeds") if c.label == "conv 32->64 3x3 @26x26 N=64"]
    (small,) = [r for r in tool.rows(case, 200, cuda) if r["pass"] == "forward"]
    (big,) = [r for r in tool.rows(case, 132, cuda) if r["pass"] == "forward"]
    # 320 tiles of 64 x 128 < 2 x 200: the 64 x 64 tile, 64 x 9 = 576 blocks
    assert (small["tile"], small["blocks"], big["tile"]) == ("64x64", 576, "64x128")
    for sms in (16, 132, 200):
        assert [(r["splits"], r["chunk"]) for r in tool.rows(case, sms, cuda)] == \
            [(r["splits"], r["chunk"]) for r in tool.rows(case, 132, cuda)]


def test_every_seeds_and_imagenet_gemm_fills_a_wave_splits_or_is_tiny(cuda: Any,
                                                                       tool: ModuleType) -> None:
    """Issue 14's promise: each GEMM of the seeds' CNN and the ImageNet suite fills a wave of a
    132-SM GPU or uses split-K; the ones that do neither are the dense 128 -> 10 layer's (under
    1 MFLOP: latency-bound, a split would only add a launch)."""
    _default_col_budget(cuda)
    rows = tool.rows([c for s in ("seeds", "imagenet") for c in tool.suite_cases(s)], 132, cuda)
    # 4 layers x 2 batches + 4 layers, 3 passes each; backward-data: a row per distinct chunk
    assert {(r["layer"], r["pass"]) for r in rows} == {
        (c.label, p) for s in ("seeds", "imagenet") for c in tool.suite_cases(s)
        for p in tool.PASSES}
    assert len({r["layer"] for r in rows}) == 12
    rest = {(r["layer"], r["pass"]) for r in rows if r["fills"] == "no"}
    assert all(layer.startswith("dense 128->10") for layer, _ in rest), rest
    assert all(r["mflop"] < 1 for r in rows if r["fills"] == "no")


def test_resnet_cases_and_the_table(cuda: Any, tool: ModuleType) -> None:
    cases = tool.suite_cases("resnet")
    # ResNet-20: 21 convolutions (2 of them the 1x1 projections) in 8 shapes, and the dense
    assert sum(c.layers for c in cases if c.op == "conv2d") == 21
    assert len([c for c in cases if c.op == "conv2d"]) == 8
    assert [c.label for c in cases if c.op == "linear"] == ["dense 64->10 N=128"]
    text = tool.table(tool.rows(cases[:1], 132, cuda))
    assert text.splitlines()[2].startswith("| resnet | conv 3->16 3x3 @32x32 N=128 | fwd |")


def test_gemms_rejects_a_bad_pass_or_sm_count(cuda: Any) -> None:
    plan = cuda.LinearPlan((4, 8), (3, 8), None)
    with pytest.raises(ValueError, match="linear: pass_ must be 'forward', 'backward_data'"):
        plan.gemms("dx", 132)
    with pytest.raises(ValueError, match="sms must be a multiprocessor count >= 1, got 0"):
        plan.gemms("forward", 0)


# ---- kernels (GPU or emulator) -------------------------------------------------------------------


@pytest.mark.cuda
def test_dense_backward_data_short_split_is_exact(cp: Any, rng: np.random.Generator) -> None:
    """A dense layer whose dx grid is short of a wave on 32 x 128 tiles (batch 1, in 16896:
    133 tiles) with K 128: the short split (2 chunks of 64, a workspace, the ordered reduction),
    exact on integers against the CPU. (The smallest such GEMM is 266 blocks of 8 k-steps: a
    few seconds on the emulator, so dx alone, once.)"""
    N, fin, fout = 1, 16896, 128
    plan = _native.cuda().LinearPlan((N, fin), (fout, fin), None, (N, fout))
    assert [(g["splits"], g["chunk"]) for g in plan.gemms("backward_data")] == [(2, 64)]
    assert plan.backward_data_workspace == 2 * N * fin
    x, w, dy = (small_ints(rng, s) for s in ((N, fin), (fout, fin), (N, fout)))
    want = ops.linear_backward(dy, x, w, compute_dw=False, bias=False)[0]
    got = ops.linear_backward(cp.asarray(dy), cp.asarray(x), cp.asarray(w), compute_dw=False,
                              bias=False)
    assert got[1] is None and got[2] is None
    check_exact(cp.asnumpy(got[0]), want.astype(np.float64), "dx")


def _pooled_case(cp: Any, rng: np.random.Generator) -> tuple[Any, ...]:
    x, w, b = small_ints(rng, (2, 3, 10, 9)), small_ints(rng, (4, 3, 3, 3)), small_ints(rng, (4,))
    xg, wg, bg = cp.asarray(x), cp.asarray(w), cp.asarray(b)
    y = ops.conv2d(xg, wg, bg, relu=True)
    _, idx = ops.max_pool2d(y, 3, stride=2, return_indices=True)  # fastcnn's own indices
    dp = cp.asarray(small_ints(rng, tuple(idx.shape)))
    return xg, wg, y, idx, dp


@pytest.mark.cuda
@pytest.mark.parametrize("relu", [True, False])
def test_pooled_conv_backward_one_call_matches_the_separate_passes(
        cp: Any, rng: np.random.Generator, relu: bool) -> None:
    """fastcnn's own pooling indices take the one-call plan (pool backward, ReLU backward, the
    conv passes): the same bits as the passes called one by one, for every flag combination."""
    xg, wg, y, idx, dp = _pooled_case(cp, rng)
    popts = {"pool_size": 3, "pool_stride": 2}
    dyc = ops.max_pool2d_backward(dp, y, 3, stride=2, indices=idx)
    if relu:
        dyc = ops.relu_backward(dyc, y)
    relu_y = y if relu else None
    for flags in ({}, {"compute_dx": False}, {"compute_dw": False}, {"bias": False},
                  {"compute_dw": False, "bias": False}):
        want = ops.conv2d_backward(dyc, xg, wg, **flags)
        got = ops.conv2d_backward(dp, xg, wg, relu_y=relu_y, pool_indices=idx, **popts, **flags)
        for name, g, e in zip(("dx", "dw", "db"), got, want, strict=True):
            assert (g is None) == (e is None), (name, flags)
            if g is not None:
                assert g.shape == e.shape and g.flags.c_contiguous
                check_bitwise(cp.asnumpy(g), cp.asnumpy(e), f"{name} {flags}")
    out = cp.empty(xg.shape, cp.float32)
    dx = ops.conv2d_backward(dp, xg, wg, relu_y=relu_y, pool_indices=idx, dx_out=out,
                             **popts)[0]
    assert dx is out
    check_bitwise(cp.asnumpy(out), cp.asnumpy(ops.conv2d_backward(dyc, xg, wg)[0]), "dx_out")


@pytest.mark.cuda
def test_pooled_conv_backward_errors(cp: Any, rng: np.random.Generator) -> None:
    """The one-call plan validates like the separate passes: the CPU's messages."""
    xg, wg, y, idx, dp = _pooled_case(cp, rng)
    with pytest.raises(ValueError, match="conv2d_backward"):
        ops.conv2d_backward(dp[:, :, :1], xg, wg, relu_y=y, pool_indices=idx, pool_size=3,
                            pool_stride=2)
    with pytest.raises(ValueError, match="relu_y has shape"):
        ops.conv2d_backward(dp, xg, wg, relu_y=y[:1], pool_indices=idx, pool_size=3,
                            pool_stride=2)
    plan = _native.cuda().Conv2dPooledBackwardPlan(
        xg.shape, wg.shape, 1, 1, 0, 0, 0, 0, 1, 1, 1, dp.shape, idx.shape, 3, 3, 2, 2, 0, 0,
        False, y.shape)
    with pytest.raises(ValueError, match="workspace of 0 elements is smaller"):
        plan.backward(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0)
    with pytest.raises(ValueError, match="built with relu_y_shape: pass relu_y"):
        plan.backward(1, 1, 0, 1, 1, 1, 1, 1, 1, 10**9, 0)


@pytest.mark.cuda
@pytest.mark.parametrize("shape", [(3, 5, 4, 3), (2, 6)])
def test_batch_norm_one_allocation_gives_the_same_results(cp: Any, rng: np.random.Generator,
                                                          shape: tuple[int, ...]) -> None:
    """batch_norm's y, mean and invstd (and its backward's dweight, dbias) carved out of one
    allocation: the CPU's values, C-contiguous arrays of the right shapes, with out= too."""
    c = shape[1]
    x = rng.normal(size=shape).astype(np.float32)
    gamma, beta = rng.normal(size=c).astype(np.float32), rng.normal(size=c).astype(np.float32)
    want = ops.batch_norm(x, gamma, beta, None, None, training=True, relu=True)
    xg, gg, bg = cp.asarray(x), cp.asarray(gamma), cp.asarray(beta)
    got = ops.batch_norm(xg, gg, bg, None, None, training=True, relu=True)
    out = cp.empty(shape, cp.float32)
    got_out = ops.batch_norm(xg, gg, bg, None, None, training=True, relu=True, out=out)
    assert got_out[0] is out
    for name, g, g2, e in zip(("y", "mean", "invstd"), got, got_out, want, strict=True):
        assert g.shape == e.shape and g.flags.c_contiguous, name
        np.testing.assert_allclose(cp.asnumpy(g), e, rtol=2e-5, atol=2e-5, err_msg=name)
        check_bitwise(cp.asnumpy(g2), cp.asnumpy(g), f"{name} with out=")
    dy = rng.normal(size=shape).astype(np.float32)
    bwant = ops.batch_norm_backward(dy, x, gamma, want[1], want[2], relu_y=want[0])
    bgot = ops.batch_norm_backward(cp.asarray(dy), xg, gg, got[1], got[2], relu_y=got[0])
    for name, g, e in zip(("dx", "dweight", "dbias"), bgot, bwant, strict=True):
        assert g.shape == e.shape and g.flags.c_contiguous, name
        np.testing.assert_allclose(cp.asnumpy(g), e, rtol=1e-4, atol=1e-4, err_msg=name)
    dx_only = ops.batch_norm_backward(cp.asarray(dy), xg, gg, got[1], got[2], relu_y=got[0],
                                      compute_dw=False)
    assert dx_only[1] is None and dx_only[2] is None
    check_bitwise(cp.asnumpy(dx_only[0]), cp.asnumpy(bgot[0]), "dx alone")
