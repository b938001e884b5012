"""fastcnn.ops.max_pool2d / max_pool2d_backward against fastcnn.reference, for every ISA.

Pooling selects input elements, so the forward output is compared bit for bit (sign of zero,
NaN, denormals) and the indices exactly. Inputs are small integers (many ties), with signed zeros,
NaN and infinities sprinkled in. The backward pass is exact for integer gradients and within the
summation tolerance for normal ones (overlapping windows add up). PyTorch's semantics: ties go to
the first maximum in row-major window order, NaN wins (the last NaN of the window), an all -inf
window gives -inf and the index of its first in-bounds element, padding is never chosen.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import abs64, check_bitwise, check_exact, check_sum_close, f64, normal, small_ints
from fastcnn import ops
from fastcnn import reference as ref

WIDTHS = [7, 8, 9, 15, 16, 17, 23, 24, 25, 31, 32, 33, 47, 48, 49]


def pool_input(rng: np.random.Generator, shape: tuple[int, ...], specials: bool = True
               ) -> np.ndarray:
    """Integers in [-2, 2] (ties everywhere), some -0.0, and optionally NaN / +-inf."""
    x = small_ints(rng, shape, -2, 2)
    x[(x == 0) & (rng.random(shape) < 0.5)] = -0.0
    if specials:
        u = rng.random(shape)
        x[u < 0.03] = np.nan
        x[(u >= 0.03) & (u < 0.06)] = -np.inf
        x[(u >= 0.06) & (u < 0.08)] = np.inf
    return x


def _overlap(k: tuple[int, int], s: tuple[int, int], d: tuple[int, int]) -> int:
    """Most windows that can contain one input element (the longest backward sum)."""
    return (-(-(d[0] * (k[0] - 1) + 1) // s[0])) * (-(-(d[1] * (k[1] - 1) + 1) // s[1]))


def run_pool_case(rng: np.random.Generator, xs: tuple[int, ...], opts: dict[str, Any],
                  *, specials: bool = True, what: str = "") -> None:
    x = pool_input(rng, xs, specials)
    y_ref, idx_ref = ref.max_pool2d(x, return_indices=True, **opts)
    y = ops.max_pool2d(x, **opts)
    check_bitwise(y, y_ref, f"{what} y")
    y2, idx = ops.max_pool2d(x, return_indices=True, **opts)
    check_bitwise(y2, y_ref, f"{what} y (with indices)")
    assert idx.dtype == np.int64 and idx.flags.c_contiguous
    assert np.array_equal(idx, idx_ref), f"{what} indices differ"

    dy = small_ints(rng, y_ref.shape)
    dx_ref = ref.max_pool2d_backward(f64(dy), x, **opts)
    check_exact(ops.max_pool2d_backward(dy, x, **opts), dx_ref, f"{what} dx (ints)")
    check_exact(ops.max_pool2d_backward(dy, x, indices=idx, **opts), dx_ref,
                f"{what} dx (ints, given indices)")

    dy = normal(rng, y_ref.shape)
    dx = ops.max_pool2d_backward(dy, x, **opts)
    k, s, _, d = ref.pool_args(opts["kernel_size"], opts.get("stride"), opts.get("padding", 0),
                               opts.get("dilation", 1))
    check_sum_close(dx, ref.max_pool2d_backward(f64(dy), x, **opts),
                    ref.max_pool2d_backward(abs64(dy), x, **opts), _overlap(k, s, d), f"{what} dx")


# ----------------------------------------------------------------------------------------------
# hypothesis
# ----------------------------------------------------------------------------------------------
@st.composite
def pool_cases(draw: st.DrawFn) -> tuple[tuple[int, ...], dict[str, Any], int]:
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    ints13 = st.integers(1, 3)
    stride = draw(st.one_of(st.none(), ints13, st.tuples(ints13, ints13)))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    padding = draw(st.sampled_from([(ph, pw), ph])) if ph == pw else (ph, pw)
    dilation = draw(st.one_of(st.just(1), ints13, st.tuples(ints13, ints13)))
    dh, dw = ref.pair(dilation, "dilation")
    ph, pw = ref.pair(padding, "padding")
    lo_h = max(1, dh * (kh - 1) + 1 - 2 * ph)
    lo_w = max(1, dw * (kw - 1) + 1 - 2 * pw)
    xs = (draw(st.integers(0, 2)), draw(st.integers(1, 3)), draw(st.integers(lo_h, lo_h + 9)),
          draw(st.integers(lo_w, lo_w + 9)))
    opts = {"kernel_size": draw(st.sampled_from([(kh, kw), kh])) if kh == kw else (kh, kw),
            "stride": stride, "padding": padding, "dilation": dilation,
            "ceil_mode": draw(st.booleans())}
    return xs, opts, draw(st.integers(0, 2**32 - 1))


def run_random_pool_case(isa: str, case: Any) -> None:
    xs, opts, seed = case
    rng = np.random.default_rng(seed)
    what = f"[{isa}] x{xs} {opts}"
    try:
        ref.pool_output_size(xs[2], xs[3], opts["kernel_size"], opts["stride"], opts["padding"],
                             opts["dilation"], opts["ceil_mode"])
    except ValueError:  # a window with no input element: both must refuse it
        with pytest.raises(ValueError):
            ops.max_pool2d(np.zeros(xs, np.float32), **opts)
        return
    run_pool_case(rng, xs, opts, what=what)


@settings(max_examples=15 * settings.default.max_examples)
@given(case=pool_cases())
def test_max_pool2d_random_against_reference(isa: str, case: Any) -> None:
    run_random_pool_case(isa, case)


@pytest.mark.fuzz
@settings(max_examples=50 * settings.default.max_examples)
@given(case=pool_cases())
def test_max_pool2d_fuzz(isa: str, case: Any) -> None:
    """Developers' long run (``-m fuzz``)."""
    run_random_pool_case(isa, case)


# ----------------------------------------------------------------------------------------------
# named edge shapes
# ----------------------------------------------------------------------------------------------
def _edge(name: str, xs: tuple[int, ...], kernel_size: Any, **opts: Any) -> Any:
    return pytest.param(xs, {"kernel_size": kernel_size, **opts}, id=name)


EDGES = [
    _edge("2x2", (2, 3, 8, 8), 2),
    _edge("2x2-odd-input", (2, 3, 7, 9), 2),
    _edge("2x2-ceil", (2, 3, 7, 9), 2, ceil_mode=True),
    _edge("3x3-s2-p1", (2, 4, 11, 12), 3, stride=2, padding=1),
    _edge("3x3-s2-p1-ceil", (1, 2, 10, 10), 3, stride=2, padding=1, ceil_mode=True),
    _edge("3x3-s1-overlap", (1, 3, 9, 9), 3, stride=1),
    _edge("3x3-s1-p1", (1, 3, 6, 7), 3, stride=1, padding=1),
    _edge("1x1", (2, 2, 5, 6), 1),
    _edge("1x1-s2", (1, 2, 5, 6), 1, stride=2),
    _edge("kernel=input", (2, 3, 5, 7), (5, 7)),
    _edge("global-1pixel", (2, 3, 1, 1), 1),
    _edge("7x7-p3", (1, 2, 9, 10), 7, stride=2, padding=3),
    _edge("nonsquare", (2, 2, 9, 12), (2, 3), stride=(1, 2), padding=(1, 0)),
    _edge("stride>kernel", (1, 2, 11, 11), 2, stride=3),
    _edge("stride-nondividing", (2, 2, 10, 11), 3, stride=3),
    _edge("dilation2", (1, 2, 9, 10), 3, stride=1, dilation=2),
    _edge("dilation2-p1-ceil", (1, 2, 10, 10), 3, stride=2, padding=1, dilation=2,
          ceil_mode=True),
    _edge("many-planes", (8, 33, 4, 4), 2),
    _edge("empty-batch", (0, 3, 4, 4), 2),
    _edge("tall", (1, 1, 40, 3), (4, 1), stride=(3, 1)),
]


@pytest.mark.parametrize(("xs", "opts"), EDGES)
def test_max_pool2d_edges(isa: str, rng: np.random.Generator, xs: tuple[int, ...],
                          opts: dict[str, Any]) -> None:
    run_pool_case(rng, xs, opts, what=f"[{isa}] x{xs} {opts}")
    run_pool_case(rng, xs, opts, specials=False, what=f"[{isa}] x{xs} {opts} no specials")


@pytest.mark.parametrize("v", WIDTHS)
def test_max_pool2d_widths(isa: str, rng: np.random.Generator, v: int) -> None:
    """Output widths Q and input widths W around the vector lengths (8 and 16 lanes)."""
    run_pool_case(rng, (1, 2, 4, 2 * v), {"kernel_size": 2}, what=f"[{isa}] 2x2 Q={v}")
    run_pool_case(rng, (1, 2, 3, v), {"kernel_size": 3, "stride": 1, "padding": 1},
                  what=f"[{isa}] 3x3 s1 W={v}")
    run_pool_case(rng, (1, 1, 5, 2 * v + 1), {"kernel_size": 3, "stride": 2, "padding": 1},
                  what=f"[{isa}] 3x3 s2 Q={v + 1}")


# ----------------------------------------------------------------------------------------------
# selection semantics, spelled out
# ----------------------------------------------------------------------------------------------
def _pool1(row: list[float], **opts: Any) -> tuple[np.ndarray, np.ndarray]:
    """Pool a (1, 1, 1, len) row with a (1, len) window."""
    x = np.array(row, np.float32).reshape(1, 1, 1, -1)
    return ops.max_pool2d(x, (1, len(row)), return_indices=True, **opts)


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    ("row", "value", "index"),
    [
        ([1.0, 3.0, 3.0, 2.0, 3.0], 3.0, 1),  # ties: the first maximum
        ([1.0, NAN, 3.0, NAN, 2.0], NAN, 3),  # NaN wins, the last NaN
        ([NAN, INF, 1.0], NAN, 0),
        ([INF, 1.0, NAN], NAN, 2),
        ([-INF, -INF, -INF], -INF, 0),  # all -inf: -inf and the first index
        ([-INF, NAN, -INF], NAN, 1),
        ([INF, INF, 0.0], INF, 0),
        ([-1.0, -0.5, -2.0], -0.5, 1),
        ([0.0, -0.0], 0.0, 0),  # 0.0 == -0.0: a tie, the first wins (sign kept)
        ([-0.0, 0.0], -0.0, 0),
        ([-3.0] * 17 + [-2.0] + [-3.0] * 30, -2.0, 17),  # beyond one vector
        ([5.0] * 33, 5.0, 0),
        ([1.0] * 40 + [NAN] + [2.0] * 7 + [NAN], NAN, 48),
    ],
)
def test_max_pool2d_selection(isa: str, row: list[float], value: float, index: int) -> None:
    y, idx = _pool1(row)
    expected = np.array([[[[value]]]], np.float32)
    if np.isnan(value):
        assert np.isnan(y[0, 0, 0, 0])
    else:
        check_bitwise(y, expected, f"[{isa}] {row}")
    assert idx[0, 0, 0, 0] == index
    y_ref, idx_ref = ref.max_pool2d(np.array(row, np.float32).reshape(1, 1, 1, -1),
                                    (1, len(row)), return_indices=True)
    check_bitwise(y, y_ref, f"[{isa}] {row} vs reference")
    assert np.array_equal(idx, idx_ref)


def test_max_pool2d_all_neg_inf_window_with_padding(isa: str) -> None:
    """A window of -inf elements and padding: -inf and its first in-bounds element's index."""
    x = np.full((1, 1, 4, 5), -np.inf, np.float32)
    x[0, 0, 3, 4] = 1.0
    y, idx = ops.max_pool2d(x, 3, stride=2, padding=1, return_indices=True)
    y_ref, idx_ref = ref.max_pool2d(x, 3, stride=2, padding=1, return_indices=True)
    check_bitwise(y, y_ref, f"[{isa}] y")
    assert np.array_equal(idx, idx_ref)
    assert y[0, 0, 0, 0] == -np.inf and idx[0, 0, 0, 0] == 0  # top-left: taps (0,0),(0,1),...
    assert idx[0, 0, 0, 1] == 1  # window rows -1..1, cols 1..3: first in-bounds is (0, 1)
    assert y[0, 0, 1, 2] == 1.0 and idx[0, 0, 1, 2] == 3 * 5 + 4
    assert (idx >= 0).all() and (idx < 20).all()


def test_max_pool2d_denormals_bit_exact(isa: str, rng: np.random.Generator) -> None:
    """No flush-to-zero: denormal maxima come back bit for bit, and their gradients land."""
    tiny = np.float32(2.0**-140)
    x = (small_ints(rng, (2, 3, 6, 8)) * tiny).astype(np.float32)
    assert (np.abs(x[x != 0]) < np.finfo(np.float32).tiny).all()
    y, idx = ops.max_pool2d(x, 2, return_indices=True)
    y_ref, idx_ref = ref.max_pool2d(x, 2, return_indices=True)
    check_bitwise(y, y_ref, f"[{isa}] denormal y")
    assert np.array_equal(idx, idx_ref)
    dy = (small_ints(rng, y.shape) * tiny).astype(np.float32)
    check_bitwise(ops.max_pool2d_backward(dy, x, 2),
                  ref.max_pool2d_backward(dy, x, 2).astype(np.float32), f"[{isa}] denormal dx")


def test_max_pool2d_backward_user_indices(isa: str, rng: np.random.Generator) -> None:
    """Given indices are used as they are (even when they are not the argmax)."""
    x = normal(rng, (2, 3, 6, 6))
    dy = small_ints(rng, (2, 3, 3, 3))
    custom = rng.integers(0, 36, size=(2, 3, 3, 3)).astype(np.int64)  # any valid index
    dx = ops.max_pool2d_backward(dy, x, 2, indices=custom)
    check_exact(dx, ref.max_pool2d_backward(f64(dy), x, 2, indices=custom), f"[{isa}] dx")
    # non-contiguous indices are accepted (copied once)
    big = np.zeros((2, 3, 3, 6), np.int64)
    big[..., ::2] = custom
    check_exact(ops.max_pool2d_backward(dy, x, 2, indices=big[..., ::2]), dx.astype(np.float64),
                f"[{isa}] dx (strided indices)")


@pytest.mark.parametrize("q", [1, 7, 8, 15, 16, 17, 31, 32, 33])
def test_max_pool2d_backward_tiled_2x2(isa: str, rng: np.random.Generator, q: int) -> None:
    """2x2 / stride-2 windows tiling the plane (the vector unpooling path) around the 16-window
    blocks: bit for bit the scatter into zeros (-0.0 becomes +0.0; NaN, inf pass), with argmax
    indices, with any index of its own window, and with a stray index elsewhere in the plane
    (which must give the scatter's answer, collisions included)."""
    x = pool_input(rng, (2, 3, 6, 2 * q))
    dy = normal(rng, (2, 3, 3, q))
    dy[rng.random(dy.shape) < 0.2] = -0.0
    dy.flat[::7] = np.nan
    dy.flat[3::11] = -np.inf
    _, idx = ops.max_pool2d(x, 2, return_indices=True)

    def expect(ind: np.ndarray) -> np.ndarray:
        return ref.max_pool2d_backward(dy, x, 2, indices=ind).astype(np.float32)

    check_bitwise(ops.max_pool2d_backward(dy, x, 2, indices=idx), expect(idx), f"[{isa}] argmax")
    check_bitwise(ops.max_pool2d_backward(dy, x, 2), expect(idx), f"[{isa}] recomputed")
    p_, q_ = np.meshgrid(np.arange(3), np.arange(q), indexing="ij")
    own = (2 * p_ + rng.integers(0, 2, (2, 3, 3, q))) * (2 * q) + 2 * q_ + rng.integers(
        0, 2, (2, 3, 3, q))
    check_bitwise(ops.max_pool2d_backward(dy, x, 2, indices=own), expect(own),
                  f"[{isa}] own windows")
    for pos, target in (((1, 2, 2, q - 1), 0), ((0, 0, 0, 0), 6 * 2 * q - 1),
                        ((1, 1, 1, q // 2), int(own[1, 1, 0, 0]))):
        stray = own.copy()
        stray[pos] = target  # inside the plane, outside its window: may collide with another
        check_bitwise(ops.max_pool2d_backward(dy, x, 2, indices=stray), expect(stray),
                      f"[{isa}] stray index at {pos} -> {target}")


@pytest.mark.parametrize("xs", [(2, 3, 6, 8), (1, 2, 7, 5)])
def test_max_pool2d_backward_out(isa: str, rng: np.random.Generator, xs: tuple[int, ...]) -> None:
    """out= receives dx (tiled 2x2 and the scatter path with overlapping windows), whatever it
    held, and is returned; x itself may be the destination; partial overlaps are refused."""
    x = pool_input(rng, xs)
    for opts in ({"kernel_size": 2}, {"kernel_size": 3, "stride": 2, "padding": 1}):
        y, idx = ops.max_pool2d(x, return_indices=True, **opts)
        dy = small_ints(rng, y.shape)
        want = ops.max_pool2d_backward(dy, x, indices=idx, **opts)
        for ind in (idx, None):
            out = np.full(x.shape, np.nan, np.float32)
            assert ops.max_pool2d_backward(dy, x, indices=ind, out=out, **opts) is out
            check_bitwise(out, want, f"[{isa}] out= {opts} indices={ind is not None}")
            xi = x.copy()
            assert ops.max_pool2d_backward(dy, xi, indices=ind, out=xi, **opts) is xi
            check_bitwise(xi, want, f"[{isa}] out=x {opts} indices={ind is not None}")
    buf = np.zeros(x.size + y.size, np.float32)
    dyv = buf[:y.size].reshape(y.shape)
    dyv[...] = dy
    with pytest.raises(ValueError, match="out overlaps dy without being the same array"):
        ops.max_pool2d_backward(dyv, x, indices=idx, out=buf[1:1 + x.size].reshape(x.shape),
                                **opts)
    with pytest.raises(ValueError, match=r"max_pool2d_backward: out has shape"):
        ops.max_pool2d_backward(dy, x, indices=idx, out=np.empty(y.shape, np.float32), **opts)
    with pytest.raises(TypeError, match="out has dtype float64"):
        ops.max_pool2d_backward(dy, x, indices=idx, out=np.empty(x.shape), **opts)


@pytest.mark.parametrize("bad", [-1, 36, 2**40, -(2**62)])
def test_max_pool2d_backward_out_of_range_indices(isa: str, rng: np.random.Generator,
                                                  bad: int) -> None:
    x = normal(rng, (2, 3, 6, 6))
    dy = normal(rng, (2, 3, 3, 3))
    _, idx = ops.max_pool2d(x, 2, return_indices=True)
    idx = idx.copy()
    idx[1, 2, 2, 1] = bad
    with pytest.raises(ValueError, match="indices"):
        ops.max_pool2d_backward(dy, x, 2, indices=idx)


def test_max_pool2d_backward_bad_indices_type_and_shape(rng: np.random.Generator) -> None:
    x = normal(rng, (1, 2, 4, 4))
    dy = normal(rng, (1, 2, 2, 2))
    _, idx = ops.max_pool2d(x, 2, return_indices=True)
    with pytest.raises(TypeError, match="indices"):
        ops.max_pool2d_backward(dy, x, 2, indices=idx.astype(np.int32))
    with pytest.raises(TypeError, match="indices"):
        ops.max_pool2d_backward(dy, x, 2, indices=idx.astype(np.float32))
    with pytest.raises(TypeError, match="indices"):
        ops.max_pool2d_backward(dy, x, 2, indices=idx.tolist())
    with pytest.raises(ValueError, match="indices"):
        ops.max_pool2d_backward(dy, x, 2, indices=idx[:, :1])


def test_max_pool2d_does_not_modify_inputs(isa: str, rng: np.random.Generator) -> None:
    x, dy = pool_input(rng, (2, 3, 6, 6)), normal(rng, (2, 3, 3, 3))
    xc, dyc = x.copy(), dy.copy()
    _, idx = ops.max_pool2d(x, 2, return_indices=True)
    idxc = idx.copy()
    ops.max_pool2d_backward(dy, x, 2)
    ops.max_pool2d_backward(dy, x, 2, indices=idx)
    check_bitwise(x, xc, "x")
    check_bitwise(dy, dyc, "dy")
    assert np.array_equal(idx, idxc)


def test_max_pool2d_against_torch(isa: str, rng: np.random.Generator) -> None:
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    for xs, opts in [((2, 3, 9, 10), {"kernel_size": 3, "stride": 2, "padding": 1}),
                     ((1, 2, 8, 11), {"kernel_size": 2, "ceil_mode": True}),
                     ((1, 2, 9, 9), {"kernel_size": 3, "stride": 1, "dilation": 2}),
                     ((2, 2, 7, 7), {"kernel_size": (3, 2), "stride": (2, 1),
                                     "padding": (1, 1)})]:
        x = pool_input(rng, xs)
        y, idx = ops.max_pool2d(x, return_indices=True, **opts)
        tx = torch.from_numpy(x.copy()).requires_grad_(True)
        ty, tidx = F.max_pool2d(tx, return_indices=True, **opts)
        check_bitwise(y, ty.detach().numpy(), f"[{isa}] y vs torch {xs} {opts}")
        assert np.array_equal(idx, tidx.numpy()), f"[{isa}] indices vs torch {xs} {opts}"
        dy = small_ints(rng, y.shape)
        ty.backward(torch.from_numpy(dy))
        check_exact(ops.max_pool2d_backward(dy, x, **opts), tx.grad.numpy(),
                    f"[{isa}] dx vs torch {xs} {opts}")
