"""The ReLU + max-pool gradient fused into the blocked backward passes (csrc/cpu/
conv2d_blocked_dy.cpp: BlockedDy, built image by image in the passes' scratch) and the bias
gradient taken inside the blocked weight gradient (csrc/cpu/conv2d_blocked_wgrad.cpp).

Against the float64 reference (integers: exact), and bit for bit against the materialised route
(``max_pool2d_backward`` then ``relu_backward`` as separate ops, then the plain blocked passes;
the bias gradient of a call without the weight gradient, i.e. conv2d_backward_bias's pass), at 1
and 2 threads. Shapes: the seeds' 32->64 @26 (+2x2 pool) at N = 2, N = 1, odd planes under the
pool, overlapping pool windows with padding, channel counts around the block (7, 8, 9, 17),
stride 2 (the phase form), NaN in the pooled gradient; every ISA for the bitwise check.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import fastcnn
from conftest import check_bitwise, check_exact, f64, normal, small_ints
from fastcnn import ops
from fastcnn import reference as ref

ROUTE = "FASTCNN_CONV_ROUTE"

# name, N, C, H, K, kernel, stride, padding, pool (size, stride, padding) or None, relu
CASES = [
    ("seeds 32->64 @26 +pool", 2, 32, 26, 64, 3, 1, 0, (2, 2, 0), True),
    ("N=1 odd plane 9->7 @9 +pool", 1, 9, 9, 7, 3, 1, 1, (2, 2, 0), True),
    ("8->8 @10 overlapping pool", 2, 8, 10, 8, 3, 1, 1, (3, 2, 1), True),
    ("7->9 @8 s2 +pool", 3, 7, 8, 9, 3, 2, 1, (2, 2, 0), True),
    ("16->17 @7 relu only", 2, 16, 7, 17, 3, 1, 1, None, True),
    ("8->16 @9 pool only", 2, 8, 9, 16, 3, 1, 1, (2, 2, 0), False),
]


def _forward(rng: np.random.Generator, case: tuple[Any, ...], ints: bool) -> dict[str, Any]:
    _, n, c, h, k, r, s, pad, pool, relu = case
    make = small_ints if ints else normal
    x, w, b = make(rng, (n, c, h, h)), make(rng, (k, c, r, r)), make(rng, (k,))
    y = ops.conv2d(x, w, b, stride=s, padding=pad, relu=relu)
    kw: dict[str, Any] = {"stride": s, "padding": pad}
    if relu:
        kw["relu_y"] = y
    dy = make(rng, y.shape)
    if pool is not None:
        ps, pst, pp = pool
        pooled, idx = ops.max_pool2d(y, ps, stride=pst, padding=pp, return_indices=True)
        dy = make(rng, pooled.shape)
        kw.update(pool_indices=idx, pool_size=ps, pool_stride=pst, pool_padding=pp)
    return {"x": x, "w": w, "y": y, "dy": dy, "kw": kw, "pool": pool, "relu": relu}


def _materialised(f: dict[str, Any]) -> np.ndarray:
    """The conv output's gradient as separate ops (the route before the fusion)."""
    g = f["dy"]
    if f["pool"] is not None:
        ps, pst, pp = f["pool"]
        g = ops.max_pool2d_backward(g, f["y"], ps, stride=pst, padding=pp,
                                    indices=f["kw"]["pool_indices"])
    return ops.relu_backward(g, f["y"]) if f["relu"] else g


def _reference(f: dict[str, Any]) -> tuple[np.ndarray, ...]:
    g = f64(f["dy"])
    y = f64(f["y"])
    if f["pool"] is not None:
        ps, pst, pp = f["pool"]
        g = ref.max_pool2d_backward(g, y, ps, stride=pst, padding=pp,
                                    indices=f["kw"]["pool_indices"])
    if f["relu"]:
        g = ref.relu_backward(g, y)
    kw = f["kw"]
    return ref.conv2d_backward(g, f64(f["x"]), f64(f["w"]), stride=kw["stride"],
                               padding=kw["padding"])


@pytest.fixture
def blocked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ROUTE, "blocked")


@pytest.fixture
def threads() -> Any:
    before = fastcnn.num_threads()
    yield fastcnn.set_num_threads
    fastcnn.set_num_threads(before)


@pytest.mark.parametrize("case", CASES[:4], ids=[c[0] for c in CASES[:4]])
def test_fused_matches_reference(blocked: None, case: tuple[Any, ...]) -> None:
    rng = np.random.default_rng(1)
    f = _forward(rng, case, ints=True)
    dx, dw, db = ops.conv2d_backward(f["dy"], f["x"], f["w"], **f["kw"])
    rdx, rdw, rdb = _reference(f)
    check_exact(dx, rdx, f"{case[0]} dx")
    check_exact(dw, rdw, f"{case[0]} dw")
    check_exact(db, rdb, f"{case[0]} db")


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_fused_bitwise_materialised(isa: str, blocked: None, threads: Any,
                                    case: tuple[Any, ...]) -> None:
    """Every ISA (its channel block: 8 or 16 lanes), 1 and 2 threads, the passes together and
    alone: the materialised route's bits."""
    rng = np.random.default_rng(2)
    f = _forward(rng, case, ints=False)
    f["dy"].flat[3] = np.nan  # a NaN of the pooled gradient reaches the same elements
    kw = f["kw"]
    geo = {"stride": kw["stride"], "padding": kw["padding"]}
    threads(1)
    dz = _materialised(f)
    mdx, mdw, _ = ops.conv2d_backward(dz, f["x"], f["w"], bias=False, **geo)
    _, _, mdb = ops.conv2d_backward(dz, f["x"], f["w"], compute_dx=False, compute_dw=False,
                                    **geo)  # conv2d_backward_bias's own pass
    _, _, pdb = ops.conv2d_backward(dz, f["x"], f["w"], compute_dx=False, **geo)
    check_bitwise(pdb, mdb, f"{case[0]} db inside the weight gradient (plain dy)")
    for nt in (1, 2):
        threads(nt)
        dx, dw, db = ops.conv2d_backward(f["dy"], f["x"], f["w"], **kw)
        check_bitwise(dx, mdx, f"{case[0]} dx, {nt} threads")
        check_bitwise(dw, mdw, f"{case[0]} dw, {nt} threads")
        check_bitwise(db, mdb, f"{case[0]} db, {nt} threads")
        # the passes alone (the profile's rows) give the same bits
        dx1, _, _ = ops.conv2d_backward(f["dy"], f["x"], f["w"], compute_dw=False, bias=False,
                                        **kw)
        _, dw1, db1 = ops.conv2d_backward(f["dy"], f["x"], f["w"], compute_dx=False, **kw)
        check_bitwise(dx1, mdx, f"{case[0]} dx alone, {nt} threads")
        check_bitwise(dw1, mdw, f"{case[0]} dw alone, {nt} threads")
        check_bitwise(db1, mdb, f"{case[0]} db alone, {nt} threads")


def test_seeds_rule_route_bitwise(threads: Any) -> None:
    """The shape rule's own route (no override) on the seeds' layer: the same bits fused."""
    rng = np.random.default_rng(3)
    f = _forward(rng, CASES[0], ints=False)
    threads(2)
    dz = _materialised(f)
    geo = {"stride": 1, "padding": 0}
    mdx, mdw, _ = ops.conv2d_backward(dz, f["x"], f["w"], bias=False, **geo)
    _, _, mdb = ops.conv2d_backward(dz, f["x"], f["w"], compute_dx=False, compute_dw=False,
                                    **geo)
    dx, dw, db = ops.conv2d_backward(f["dy"], f["x"], f["w"], **f["kw"])
    check_bitwise(dx, mdx, "seeds dx")
    check_bitwise(dw, mdw, "seeds dw")
    check_bitwise(db, mdb, "seeds db")
