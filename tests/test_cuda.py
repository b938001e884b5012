"""The CUDA backend (fastcnn._cuda through fastcnn._cuda_ops) against the CPU ops and the reference.

GPU tests take the ``cp`` fixture: they are skipped unless CuPy imports, fastcnn was built with
its CUDA module and a GPU is usable. Every op is compared forward and backward on random and
edge shapes: with small-integer inputs every sum is exact in float32, so the GPU must equal the
CPU bit for bit whatever its summation order (conv, linear, pooling, ReLU); with random-normal
inputs it must be within conftest.sum_tolerance of the float64 reference. Selections (ReLU, max
pooling, its indices, including NaN / ties / signed zeros) are compared bitwise, optimizer
updates too (same float32 operations as the NumPy formulas). Results must be deterministic (two
runs, same bits) and user errors must read like the CPU's.

``test_module_imports_without_gpu`` runs wherever the CUDA module is built, GPU or not: the module
imports, reports its devices without raising, and on a machine without a GPU ``available()`` is
False and a launch raises RuntimeError naming the CUDA error.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastcnn
from conftest import abs64, check_bitwise, check_exact, check_sum_close, f64, normal, small_ints
from fastcnn import ops, optimizers
from fastcnn import reference as ref
from fastcnn._device import cuda_built

cuda = pytest.mark.cuda


def gpu(cp: Any, a: Any) -> Any:
    return None if a is None else cp.asarray(a)


def host(cp: Any, a: Any) -> Any:
    """A GPU result as numpy, after checking it is a fresh C-contiguous cupy array."""
    if a is None:
        return None
    assert isinstance(a, cp.ndarray), f"expected a cupy.ndarray, got {type(a).__name__}"
    assert a.flags.c_contiguous
    return cp.asnumpy(a)


# ================================================================================================
# no GPU needed
# ================================================================================================


def test_module_imports_without_gpu() -> None:
    if not cuda_built():
        pytest.skip("fastcnn was built without its CUDA module")
    from fastcnn import _cpu, _cuda

    n = _cuda.device_count()
    assert isinstance(n, int) and n >= 0
    assert isinstance(_cuda.available(), bool)
    assert _cuda.available() == (n > 0)
    assert _cuda.runtime_version() >= 11000
    assert _cuda.driver_version() >= 0
    info = fastcnn.info()
    assert info["cuda_built"] is True
    if n == 0:
        assert info["cuda_available"] is False
        with pytest.raises(RuntimeError, match="cudaError"):
            _cuda.relu(0, 0, 16, 0)  # no device: the launch fails and nothing is touched
    # shape errors come from the CPU's checks, before any launch: the same messages
    x, w = np.zeros((2, 3, 9, 9), np.float32), np.zeros((4, 2, 3, 3), np.float32)
    with pytest.raises(ValueError) as cpu_err:
        _cpu.conv2d(x, w, None, 1, 1, 0, 0, 0, 0, 1, 1, 1)
    with pytest.raises(ValueError) as gpu_err:
        _cuda.conv2d_plan(x.shape, w.shape, None, 1, 1, 0, 0, 0, 0, 1, 1, 1)
    assert str(gpu_err.value) == str(cpu_err.value)
    with pytest.raises(ValueError) as cpu_err:
        _cpu.max_pool2d(x, 2, 2, 2, 2, 2, 0, 1, 1, False, False)
    with pytest.raises(ValueError) as gpu_err:
        _cuda.max_pool2d_plan(x.shape, 2, 2, 2, 2, 2, 0, 1, 1, False)
    assert str(gpu_err.value) == str(cpu_err.value)
    with pytest.raises(ValueError, match="cross_entropy: integer labels must have shape"):
        _cuda.cross_entropy_plan((4, 3), (5,), "int")
    # the GPU tests below include shapes that take the split-K paths (workspace > 0)
    assert _cuda.conv2d_plan((1, 64, 4, 4), (8, 64, 3, 3), None, 1, 1, 1, 1, 1, 1, 1, 1,
                             1)["forward_workspace"] > 0
    assert _cuda.conv2d_plan((8, 4, 32, 32), (8, 4, 3, 3), None, 1, 1, 0, 0, 0, 0, 1, 1,
                             1)["backward_weights_workspace"] > 0
    assert _cuda.linear_plan((4, 2048), (16, 2048), None)["forward_workspace"] > 0
    assert _cuda.linear_plan((1024, 8), (8, 8), None)["backward_weights_workspace"] > 0
    assert _cuda.conv2d_plan((2, 3, 9, 9), (4, 3, 3, 3), None, 1, 1, 0, 0, 0, 0, 1, 1,
                             1)["forward_workspace"] == 0


# ================================================================================================
# conv2d
# ================================================================================================

# (x shape, w shape, options)
CONV_CASES: list[tuple[tuple[int, ...], tuple[int, ...], dict[str, Any]]] = [
    ((2, 3, 9, 9), (4, 3, 3, 3), {}),
    ((2, 3, 9, 9), (4, 3, 3, 3), {"padding": 1}),
    ((1, 2, 10, 7), (3, 2, 3, 2), {"stride": 2, "padding": "same"}),  # asymmetric padding
    ((2, 3, 11, 12), (5, 3, 4, 4), {"stride": (2, 3), "padding": "same"}),
    ((1, 2, 12, 12), (3, 2, 3, 3), {"dilation": 2, "padding": 2}),
    ((1, 2, 13, 11), (2, 2, 3, 3), {"dilation": (2, 3), "stride": (3, 2), "padding": (3, 1)}),
    ((2, 4, 8, 8), (6, 2, 3, 3), {"groups": 2, "padding": 1}),
    ((2, 6, 7, 7), (6, 1, 3, 3), {"groups": 6, "stride": 2}),  # depthwise
    ((3, 5, 6, 6), (7, 5, 1, 1), {}),  # 1x1
    ((1, 1, 5, 5), (2, 1, 5, 5), {}),  # kernel = input
    ((2, 2, 9, 9), (3, 2, 2, 2), {"stride": 4}),  # stride > kernel: pixels no tap reaches
    ((1, 3, 4, 4), (2, 3, 3, 3), {"padding": 4}),  # padding larger than the kernel
    ((1, 2, 5, 5), (2, 2, 3, 3), {"stride": 3, "dilation": 2, "padding": "same"}),
    ((2, 3, 17, 70), (65, 3, 3, 3), {"padding": 1}),  # > one 64 x 128 tile in M and N
    ((1, 64, 4, 4), (8, 64, 3, 3), {"padding": 1}),  # CRS 576, one tile: forward split-K
    ((8, 4, 32, 32), (8, 4, 3, 3), {}),  # N*P*Q 7200: backward-weights split-K
    ((0, 3, 5, 5), (2, 3, 3, 3), {}),  # empty batch
    ((4, 32, 26, 26), (64, 32, 3, 3), {}),  # the seeds' CNN's conv2 (smaller batch)
]


def _conv_lengths(xs: tuple[int, ...], ws: tuple[int, ...], y_shape: tuple[int, ...],
                  opts: dict[str, Any]) -> dict[str, int]:
    K, Cg, R, S = ws
    G = opts.get("groups", 1)
    NPQ = y_shape[0] * y_shape[2] * y_shape[3]
    return {"y": Cg * R * S + 1, "dx": K // G * R * S, "dw": NPQ, "db": NPQ}


def run_conv_gpu_case(cp: Any, rng: np.random.Generator, xs: tuple[int, ...],
                      ws: tuple[int, ...], opts: dict[str, Any], bias: bool = True) -> None:
    K = ws[0]
    # small integers: the GPU must equal the CPU exactly (both are exact)
    x, w = small_ints(rng, xs), small_ints(rng, ws)
    b = small_ints(rng, (K,)) if bias else None
    y_cpu = ops.conv2d(x, w, b, **opts)
    y = host(cp, ops.conv2d(gpu(cp, x), gpu(cp, w), gpu(cp, b), **opts))
    check_exact(y, y_cpu.astype(np.float64), "y (ints)")
    yr = host(cp, ops.conv2d(gpu(cp, x), gpu(cp, w), gpu(cp, b), relu=True, **opts))
    check_bitwise(yr, ops.conv2d(x, w, b, relu=True, **opts), "relu(y) (ints)")
    dy = small_ints(rng, y_cpu.shape)
    grads_cpu = ops.conv2d_backward(dy, x, w, bias=bias, **opts)
    grads = ops.conv2d_backward(gpu(cp, dy), gpu(cp, x), gpu(cp, w), bias=bias, **opts)
    for name, g, c in zip(("dx", "dw", "db"), grads, grads_cpu, strict=True):
        if c is None:
            assert g is None
        else:
            check_exact(host(cp, g), c.astype(np.float64), f"{name} (ints)")
    # random normal: within the float32 summation tolerance of the float64 reference
    L = _conv_lengths(xs, ws, y_cpu.shape, opts)
    x, w = normal(rng, xs), normal(rng, ws)
    b = normal(rng, (K,)) if bias else None
    y = host(cp, ops.conv2d(gpu(cp, x), gpu(cp, w), gpu(cp, b), **opts))
    check_sum_close(y, ref.conv2d(f64(x), f64(w), f64(b), **opts),
                    ref.conv2d(abs64(x), abs64(w), abs64(b), **opts), L["y"], "y")
    dy = normal(rng, y.shape)
    grads = ops.conv2d_backward(gpu(cp, dy), gpu(cp, x), gpu(cp, w), bias=bias, **opts)
    exact = ref.conv2d_backward(f64(dy), f64(x), f64(w), bias=bias, **opts)
    absd = ref.conv2d_backward(abs64(dy), abs64(x), abs64(w), bias=bias, **opts)
    for i, name in enumerate(("dx", "dw", "db")):
        if exact[i] is not None:
            check_sum_close(host(cp, grads[i]), exact[i], absd[i], L[name], name)


@cuda
@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: f"{c[0]}-{c[1]}-{c[2]}")
def test_conv2d_against_cpu(cp: Any, rng: np.random.Generator, case: Any) -> None:
    xs, ws, opts = case
    run_conv_gpu_case(cp, rng, xs, ws, opts)


@cuda
def test_conv2d_without_bias(cp: Any, rng: np.random.Generator) -> None:
    run_conv_gpu_case(cp, rng, (2, 3, 8, 8), (4, 3, 3, 3), {"padding": 1}, bias=False)


@st.composite
def conv_geometry(draw: Any) -> tuple[tuple[int, ...], tuple[int, ...], dict[str, Any]]:
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cg, kg = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    R, S = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dh, dw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    H = draw(st.integers(dh * (R - 1) + 1, 14))
    W = draw(st.integers(dw * (S - 1) + 1, 14))
    padding: Any = draw(st.one_of(st.sampled_from(["same", "valid"]),
                                  st.tuples(st.integers(0, 3), st.integers(0, 3))))
    opts = {"stride": (sh, sw), "dilation": (dh, dw), "groups": groups, "padding": padding}
    return (draw(st.integers(1, 3)), cg * groups, H, W), (kg * groups, cg, R, S), opts


@cuda
@given(case=conv_geometry(), seed=st.integers(0, 2**31))
def test_conv2d_random_geometry(cp: Any, case: Any, seed: int) -> None:
    xs, ws, opts = case
    run_conv_gpu_case(cp, np.random.default_rng(seed), xs, ws, opts)


@cuda
def test_backward_gradients_on_request(cp: Any, rng: np.random.Generator) -> None:
    from fastcnn import _cuda_ops

    x, w = small_ints(rng, (2, 3, 7, 7)), small_ints(rng, (4, 3, 3, 3))
    dy = small_ints(rng, (2, 4, 4, 4))
    want = ops.conv2d_backward(dy, x, w, stride=2, padding=1)
    args = (2, 2, 1, 1, 1, 1, 1, 1, 1)
    for need in [(True, False, False), (False, True, False), (False, False, True)]:
        got = _cuda_ops.conv2d_backward(gpu(cp, dy), gpu(cp, x), gpu(cp, w), *args, *need)
        for n, g, c in zip(need, got, want, strict=True):
            assert (g is None) == (not n)
            if n:
                check_exact(host(cp, g), f64(c), "conv gradient")
    x, w, dy = small_ints(rng, (5, 6)), small_ints(rng, (3, 6)), small_ints(rng, (5, 3))
    want = ops.linear_backward(dy, x, w)
    for need in [(True, False, False), (False, True, False), (False, False, True)]:
        got = _cuda_ops.linear_backward(gpu(cp, dy), gpu(cp, x), gpu(cp, w), *need)
        for n, g, c in zip(need, got, want, strict=True):
            assert (g is None) == (not n)
            if n:
                check_exact(host(cp, g), f64(c), "linear gradient")


@cuda
def test_conv2d_deterministic_and_inputs_untouched(cp: Any, rng: np.random.Generator) -> None:
    x, w, b = normal(rng, (8, 4, 32, 32)), normal(rng, (8, 4, 3, 3)), normal(rng, (8,))
    xg, wg, bg = gpu(cp, x), gpu(cp, w), gpu(cp, b)
    y1 = host(cp, ops.conv2d(xg, wg, bg, padding=1))
    y2 = host(cp, ops.conv2d(xg, wg, bg, padding=1))
    check_bitwise(y1, y2, "y run to run")
    dy = gpu(cp, normal(rng, y1.shape))
    g1 = [host(cp, g) for g in ops.conv2d_backward(dy, xg, wg, padding=1)]
    g2 = [host(cp, g) for g in ops.conv2d_backward(dy, xg, wg, padding=1)]
    for a, c, name in zip(g1, g2, ("dx", "dw", "db"), strict=True):
        check_bitwise(a, c, f"{name} run to run")
    check_bitwise(host(cp, xg), x, "x after the calls")
    check_bitwise(host(cp, wg), w, "w after the calls")


@cuda
def test_conv2d_non_contiguous_inputs(cp: Any, rng: np.random.Generator) -> None:
    x = small_ints(rng, (2, 3, 10, 20))
    w = small_ints(rng, (4, 3, 3, 3))
    xs = gpu(cp, x)[:, :, :, ::2]  # strided view
    wt = gpu(cp, np.ascontiguousarray(w.transpose(1, 0, 2, 3))).transpose(1, 0, 2, 3)
    y = host(cp, ops.conv2d(xs, wt, padding=1))
    check_bitwise(y, ops.conv2d(np.ascontiguousarray(x[:, :, :, ::2]), w, padding=1), "y")


@cuda
def test_conv2d_backward_relu_y(cp: Any, rng: np.random.Generator) -> None:
    """relu_y= (the ReLU's backward fused on the CPU, a separate pass on the GPU): the same
    gradients as the CPU, exactly on integers."""
    x, w = small_ints(rng, (2, 3, 7, 6)), small_ints(rng, (4, 3, 3, 3))
    y = ops.conv2d(x, w, relu=True, padding=1)
    dy = small_ints(rng, y.shape)
    want = ops.conv2d_backward(dy, x, w, padding=1, relu_y=y)
    got = ops.conv2d_backward(gpu(cp, dy), gpu(cp, x), gpu(cp, w), padding=1, relu_y=gpu(cp, y))
    for name, g, e in zip(("dx", "dw", "db"), got, want, strict=True):
        check_exact(host(cp, g), e.astype(np.float64), f"{name} (relu_y)")
    with pytest.raises(TypeError, match="same device"):
        ops.conv2d_backward(gpu(cp, dy), gpu(cp, x), gpu(cp, w), padding=1, relu_y=y)


@cuda
def test_conv2d_backward_through_pooling(cp: Any, rng: np.random.Generator) -> None:
    """pool_indices= (a max pooling of the output, routed back before the ReLU): the same
    gradients as the CPU, exactly on integers; disjoint and overlapping windows."""
    x, w = small_ints(rng, (2, 3, 10, 9)), small_ints(rng, (4, 3, 3, 3))
    y = ops.conv2d(x, w, relu=True)
    for popts in ({"pool_size": 2}, {"pool_size": 3, "pool_stride": 2}):
        k, s = popts["pool_size"], popts.get("pool_stride")
        _, idx = ops.max_pool2d(y, k, stride=s, return_indices=True)
        dp = small_ints(rng, idx.shape)
        want = ops.conv2d_backward(dp, x, w, relu_y=y, pool_indices=idx, **popts)
        got = ops.conv2d_backward(gpu(cp, dp), gpu(cp, x), gpu(cp, w), relu_y=gpu(cp, y),
                                  pool_indices=gpu(cp, idx), **popts)
        for name, g, e in zip(("dx", "dw", "db"), got, want, strict=True):
            check_exact(host(cp, g), e.astype(np.float64), f"{name} (pool {popts})")


@cuda
@pytest.mark.parametrize("batch", [1, 3, 4])
def test_conv2d_backward_nonfinite_weight_stays_local(cp: Any, batch: int) -> None:
    """A NaN / inf weight may only reach the dx elements it multiplies (PyTorch, the reference and
    the CPU: dx = col2im(w^T dy)); test_fuzz's regression of the same name, on the GPU. A gather
    GEMM over zero-padded dy multiplies the weight by those zeros: 0 * NaN / 0 * inf = NaN."""
    dy = np.ones((batch, 4, 1, 1), np.float32)
    x = np.ones((batch, 2, 1, 4), np.float32)
    w = np.ones((4, 2, 1, 4), np.float32)
    w[0, 1, 0, 2] = np.nan  # reaches dx[:, 1, 0, 2] only
    dx = host(cp, ops.conv2d_backward(gpu(cp, dy), gpu(cp, x), gpu(cp, w))[0])
    want = np.ones((batch, 2, 1, 4), np.float32) * 4
    want[:, 1, 0, 2] = np.nan
    check_exact(dx, want, "dx (NaN weight)")
    check_exact(dx, ref.conv2d_backward(dy, x, w)[0], "dx (NaN weight) vs the reference")

    dy = np.ones((batch, 1, 3, 3), np.float32)
    x = np.ones((batch, 1, 3, 3), np.float32)
    w = np.ones((1, 1, 3, 3), np.float32)
    w[0, 0, 0, 0] = np.inf  # with padding 1: reaches dx[:, :, :2, :2] only
    dx = host(cp, ops.conv2d_backward(gpu(cp, dy), gpu(cp, x), gpu(cp, w), padding=1)[0])
    want = np.broadcast_to(np.array([[np.inf, np.inf, 4], [np.inf, np.inf, 6], [4, 6, 4]],
                                    np.float32), (batch, 1, 3, 3))
    check_exact(dx, want, "dx (inf weight, padding 1)")
    check_exact(dx, ref.conv2d_backward(dy, x, w, padding=1)[0],
                "dx (inf weight, padding 1) vs the reference")


@cuda
@pytest.mark.parametrize("case", CONV_CASES[:14], ids=lambda c: f"{c[0]}-{c[1]}-{c[2]}")
def test_conv2d_backward_nonfinite_weights_every_option(cp: Any, rng: np.random.Generator,
                                                         case: Any) -> None:
    """NaN, inf and -inf weights (small integers elsewhere) with every option (stride, padding
    incl. asymmetric "same" and larger than the kernel, dilation, groups): dx equals the CPU's
    exactly, NaN where the CPU has NaN, and every gradient is deterministic."""
    xs, ws, opts = case
    x, w = small_ints(rng, xs), small_ints(rng, ws)
    flat = w.reshape(-1)
    picks = rng.choice(flat.size, size=min(3, flat.size), replace=False)
    for i, v in zip(picks, (np.nan, np.inf, -np.inf), strict=False):
        flat[i] = v
    dy = small_ints(rng, ops.conv2d(x, np.nan_to_num(w), **opts).shape)
    dx_cpu = ops.conv2d_backward(dy, x, w, **opts)[0]
    dx = host(cp, ops.conv2d_backward(gpu(cp, dy), gpu(cp, x), gpu(cp, w), **opts)[0])
    check_exact(dx, dx_cpu.astype(np.float64), "dx (non-finite weights)")
    again = host(cp, ops.conv2d_backward(gpu(cp, dy), gpu(cp, x), gpu(cp, w), **opts)[0])
    check_bitwise(again, dx, "dx run to run")


# ================================================================================================
# relu
# ================================================================================================


def _specials(rng: np.random.Generator, n: int) -> np.ndarray:
    x = normal(rng, (n,))
    u = rng.random(n)
    x[u < 0.05] = np.nan
    x[(u >= 0.05) & (u < 0.1)] = -0.0
    x[(u >= 0.1) & (u < 0.15)] = 0.0
    x[(u >= 0.15) & (u < 0.2)] = np.inf
    x[(u >= 0.2) & (u < 0.25)] = -np.inf
    return x


@cuda
@pytest.mark.parametrize("n", [0, 1, 3, 4, 5, 31, 1000, 4099])
@pytest.mark.parametrize("offset", [0, 1, 2])
def test_relu_against_cpu(cp: Any, rng: np.random.Generator, n: int, offset: int) -> None:
    x = _specials(rng, n + offset)
    dy = _specials(rng, n + offset)
    xg, dyg = gpu(cp, x)[offset:], gpu(cp, dy)[offset:]  # offsets: misaligned for float4
    y = host(cp, ops.relu(xg))
    check_bitwise(y, ops.relu(x[offset:]), "relu")
    dx = host(cp, ops.relu_backward(dyg, gpu(cp, y)))
    check_bitwise(dx, ops.relu_backward(dy[offset:], y), "relu_backward")


@cuda
def test_relu_shapes_and_errors(cp: Any, rng: np.random.Generator) -> None:
    x = normal(rng, (3, 4, 5))
    check_bitwise(host(cp, ops.relu(gpu(cp, x))), ops.relu(x), "relu 3-D")
    with pytest.raises(ValueError, match="relu_backward: dy has shape"):
        ops.relu_backward(gpu(cp, x), gpu(cp, x[:2]))


@cuda
def test_relu_out(cp: Any, rng: np.random.Generator) -> None:
    """out= on the GPU: the CPU's rules and bits (in place included)."""
    x, dy = _specials(rng, 1001).reshape(7, 143), _specials(rng, 1001).reshape(7, 143)
    y_cpu = ops.relu(x)
    out = gpu(cp, np.full(x.shape, np.nan, np.float32))
    assert ops.relu(gpu(cp, x), out=out) is out
    check_bitwise(host(cp, out), y_cpu, "relu out=")
    xg = gpu(cp, x)
    assert ops.relu(xg, out=xg) is xg
    check_bitwise(host(cp, xg), y_cpu, "relu in place")
    dx_cpu = ops.relu_backward(dy, y_cpu)
    for target in ("new", "dy", "y"):
        dyg, yg = gpu(cp, dy), gpu(cp, y_cpu)
        o = {"new": cp.empty(x.shape, cp.float32), "dy": dyg, "y": yg}[target]
        assert ops.relu_backward(dyg, yg, out=o) is o
        check_bitwise(host(cp, o), dx_cpu, f"relu_backward out={target}")
    with pytest.raises(ValueError, match="relu: out has shape"):
        ops.relu(gpu(cp, x), out=cp.empty((7, 142), cp.float32))
    with pytest.raises(TypeError, match="relu: out has dtype float64"):
        ops.relu(gpu(cp, x), out=cp.empty(x.shape, cp.float64))
    with pytest.raises(TypeError, match="same device"):
        ops.relu(gpu(cp, x), out=np.empty(x.shape, np.float32))
    with pytest.raises(ValueError, match="out must be C-contiguous"):
        ops.relu(gpu(cp, x), out=cp.empty((143, 7), cp.float32).T)
    buf = cp.zeros(1002, cp.float32)
    with pytest.raises(ValueError, match="out overlaps x without being the same array"):
        ops.relu(buf[:1001].reshape(7, 143), out=buf[1:].reshape(7, 143))


# ================================================================================================
# max_pool2d
# ================================================================================================


def pool_input(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Integers in [-2, 2] (ties everywhere), signed zeros, NaN and infinities."""
    x = small_ints(rng, shape, -2, 2)
    x[(x == 0) & (rng.random(shape) < 0.5)] = -0.0
    u = rng.random(shape)
    x[u < 0.03] = np.nan
    x[(u >= 0.03) & (u < 0.06)] = -np.inf
    x[(u >= 0.06) & (u < 0.08)] = np.inf
    return x


POOL_CASES: list[tuple[tuple[int, ...], dict[str, Any]]] = [
    ((2, 3, 8, 8), {"kernel_size": 2}),
    ((2, 3, 9, 7), {"kernel_size": 3, "stride": 2}),
    ((1, 2, 9, 9), {"kernel_size": 3, "stride": 1, "padding": 1}),  # overlapping
    ((2, 2, 10, 11), {"kernel_size": (3, 2), "stride": (2, 1), "padding": (1, 1),
                      "ceil_mode": True}),
    ((1, 3, 12, 12), {"kernel_size": 3, "stride": 2, "dilation": 2, "padding": 1}),
    ((1, 1, 7, 7), {"kernel_size": 7}),  # global
    ((2, 2, 5, 9), {"kernel_size": 4, "stride": 3, "ceil_mode": True, "padding": 2}),
    ((0, 2, 4, 4), {"kernel_size": 2}),
]


@cuda
@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: f"{c[0]}-{c[1]}")
def test_max_pool2d_against_cpu(cp: Any, rng: np.random.Generator, case: Any) -> None:
    xs, opts = case
    x = pool_input(rng, xs)
    y_cpu, i_cpu = ops.max_pool2d(x, **opts, return_indices=True)
    yg, ig = ops.max_pool2d(gpu(cp, x), **opts, return_indices=True)
    check_bitwise(host(cp, yg), y_cpu, "y")
    i = host(cp, ig)
    assert i.dtype == np.int64 and np.array_equal(i, i_cpu), "indices"
    check_bitwise(host(cp, ops.max_pool2d(gpu(cp, x), **opts)), y_cpu, "y without indices")
    # backward: integer gradients (exact whatever the order), from x and from the indices
    dy = small_ints(rng, y_cpu.shape)
    dx_cpu = ops.max_pool2d_backward(dy, x, **opts)
    check_bitwise(host(cp, ops.max_pool2d_backward(gpu(cp, dy), gpu(cp, x), **opts)), dx_cpu,
                  "dx (recomputed argmax)")
    check_bitwise(host(cp, ops.max_pool2d_backward(gpu(cp, dy), gpu(cp, x), **opts,
                                                   indices=ig)), dx_cpu, "dx (indices)")
    # normal gradients: overlapping windows add in the CPU's order, so the same bits
    dy = normal(rng, y_cpu.shape)
    check_bitwise(host(cp, ops.max_pool2d_backward(gpu(cp, dy), gpu(cp, x), **opts)),
                  ops.max_pool2d_backward(dy, x, **opts), "dx (normal dy)")


@cuda
def test_max_pool2d_user_indices(cp: Any, rng: np.random.Generator) -> None:
    x = pool_input(rng, (2, 2, 6, 6))
    dy = normal(rng, (2, 2, 3, 3))
    # indices inside the plane but outside their window: CPU semantics (scatter) are kept
    idx = rng.integers(0, 36, size=(2, 2, 3, 3)).astype(np.int64)
    check_bitwise(host(cp, ops.max_pool2d_backward(gpu(cp, dy), gpu(cp, x), 2,
                                                   indices=gpu(cp, idx))),
                  ops.max_pool2d_backward(dy, x, 2, indices=idx), "dx (any in-plane indices)")
    # outside the plane: the CPU's ValueError
    idx[1, 0, 2, 1] = 36
    with pytest.raises(ValueError) as cpu_err:
        ops.max_pool2d_backward(dy, x, 2, indices=idx)
    with pytest.raises(ValueError) as gpu_err:
        ops.max_pool2d_backward(gpu(cp, dy), gpu(cp, x), 2, indices=gpu(cp, idx))
    assert str(gpu_err.value) == str(cpu_err.value)
    with pytest.raises(TypeError, match="int64"):
        ops.max_pool2d_backward(gpu(cp, dy), gpu(cp, x), 2, indices=gpu(cp, idx.astype(np.int32)))


@cuda
def test_max_pool2d_backward_out(cp: Any, rng: np.random.Generator) -> None:
    """out= on the GPU: the CPU's bits and rules (x itself allowed, partial overlap refused)."""
    x = pool_input(rng, (2, 3, 7, 9))
    for opts in ({"kernel_size": 2}, {"kernel_size": 3, "stride": 2, "padding": 1}):
        y, idx = ops.max_pool2d(x, return_indices=True, **opts)
        dy = normal(rng, y.shape)
        want = ops.max_pool2d_backward(dy, x, indices=idx, **opts)
        for ind in (gpu(cp, idx), None):
            out = gpu(cp, np.full(x.shape, np.nan, np.float32))
            assert ops.max_pool2d_backward(gpu(cp, dy), gpu(cp, x), indices=ind, out=out,
                                           **opts) is out
            check_bitwise(host(cp, out), want, f"out= {opts}")
            xg = gpu(cp, x)
            assert ops.max_pool2d_backward(gpu(cp, dy), xg, indices=ind, out=xg, **opts) is xg
            check_bitwise(host(cp, xg), want, f"out=x {opts}")
    buf = cp.zeros(x.size + y.size, cp.float32)
    with pytest.raises(ValueError, match="out overlaps dy without being the same array"):
        ops.max_pool2d_backward(buf[:y.size].reshape(y.shape), gpu(cp, x), indices=gpu(cp, idx),
                                out=buf[1:1 + x.size].reshape(x.shape), **opts)
    with pytest.raises(TypeError, match="same device"):
        ops.max_pool2d_backward(gpu(cp, dy), gpu(cp, x), indices=gpu(cp, idx),
                                out=np.empty(x.shape, np.float32), **opts)


# ================================================================================================
# linear
# ================================================================================================

LINEAR_CASES = [(1, 1, 1), (5, 7, 3), (64, 300, 10), (65, 129, 130), (0, 4, 3), (4, 2048, 16),
                (1024, 8, 8), (3, 5, 200), (8, 9216, 128)]


@cuda
@pytest.mark.parametrize(("N", "fin", "fout"), LINEAR_CASES)
@pytest.mark.parametrize("bias", [True, False])
def test_linear_against_cpu(cp: Any, rng: np.random.Generator, N: int, fin: int, fout: int,
                            bias: bool) -> None:
    x, w = small_ints(rng, (N, fin)), small_ints(rng, (fout, fin))
    b = small_ints(rng, (fout,)) if bias else None
    y_cpu = ops.linear(x, w, b)
    check_exact(host(cp, ops.linear(gpu(cp, x), gpu(cp, w), gpu(cp, b))), f64(y_cpu), "y (ints)")
    check_bitwise(host(cp, ops.linear(gpu(cp, x), gpu(cp, w), gpu(cp, b), relu=True)),
                  ops.linear(x, w, b, relu=True), "relu(y) (ints)")
    dy = small_ints(rng, (N, fout))
    for name, g, c in zip(("dx", "dw", "db"),
                          ops.linear_backward(gpu(cp, dy), gpu(cp, x), gpu(cp, w), bias=bias),
                          ops.linear_backward(dy, x, w, bias=bias), strict=True):
        if c is None:
            assert g is None
        else:
            check_exact(host(cp, g), f64(c), f"{name} (ints)")
    # normal
    x, w = normal(rng, (N, fin)), normal(rng, (fout, fin))
    b = normal(rng, (fout,)) if bias else None
    y = host(cp, ops.linear(gpu(cp, x), gpu(cp, w), gpu(cp, b)))
    check_sum_close(y, ref.linear(f64(x), f64(w), f64(b)), ref.linear(abs64(x), abs64(w),
                                                                        abs64(b)), fin + 1, "y")
    dy = normal(rng, (N, fout))
    grads = ops.linear_backward(gpu(cp, dy), gpu(cp, x), gpu(cp, w), bias=bias)
    exact = ref.linear_backward(f64(dy), f64(x), f64(w), bias=bias)
    absd = ref.linear_backward(abs64(dy), abs64(x), abs64(w), bias=bias)
    for i, length in enumerate((fout, N, N)):
        if exact[i] is not None:
            check_sum_close(host(cp, grads[i]), exact[i], absd[i], length, ("dx", "dw", "db")[i])


@cuda
def test_linear_deterministic(cp: Any, rng: np.random.Generator) -> None:
    x, w = gpu(cp, normal(rng, (64, 2304))), gpu(cp, normal(rng, (32, 2304)))
    y1, y2 = host(cp, ops.linear(x, w)), host(cp, ops.linear(x, w))
    check_bitwise(y1, y2, "y run to run")
    dy = gpu(cp, normal(rng, (64, 32)))
    a, c = ops.linear_backward(dy, x, w), ops.linear_backward(dy, x, w)
    for name, g1, g2 in zip(("dx", "dw", "db"), a, c, strict=True):
        check_bitwise(host(cp, g1), host(cp, g2), f"{name} run to run")


# ================================================================================================
# softmax / cross-entropy
# ================================================================================================


def assert_close(got: np.ndarray, want: np.ndarray, what: str, rtol: float = 1e-5,
                 atol: float = 1e-7) -> None:
    assert got.shape == want.shape and got.dtype == np.float32, what
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=what)


@cuda
@pytest.mark.parametrize("shape", [(1, 1), (4, 10), (3, 33), (2, 3, 100), (7, 1000)])
@pytest.mark.parametrize("axis", [-1, 0])
def test_softmax_against_cpu(cp: Any, rng: np.random.Generator, shape: tuple[int, ...],
                             axis: int) -> None:
    x = normal(rng, shape) * 5
    assert_close(host(cp, ops.softmax(gpu(cp, x), axis=axis)), ops.softmax(x, axis=axis),
                 "softmax")
    assert_close(host(cp, ops.log_softmax(gpu(cp, x), axis=axis)), ops.log_softmax(x, axis=axis),
                 "log_softmax", atol=2e-6)


@cuda
def test_softmax_special_rows(cp: Any) -> None:
    inf, nan = np.inf, np.nan
    x = np.array([[0, 0, 0], [-inf, -inf, -inf], [1, inf, 2], [nan, 1, 2], [-inf, 0, 1],
                  [1e30, -1e30, 0]], np.float32)
    for log in (False, True):
        f = ops.log_softmax if log else ops.softmax
        got, want = host(cp, f(gpu(cp, x))), f(x)
        assert np.array_equal(np.isnan(got), np.isnan(want)), f"NaN pattern, log={log}"
        ok = ~np.isnan(want)
        np.testing.assert_allclose(got[ok], want[ok], rtol=1e-5, atol=1e-7)


@cuda
@pytest.mark.parametrize(("N", "C"), [(1, 1), (5, 3), (64, 10), (37, 100), (300, 7)])
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8])
def test_cross_entropy_labels(cp: Any, rng: np.random.Generator, N: int, C: int,
                              dtype: Any) -> None:
    logits = normal(rng, (N, C)) * 3
    labels = rng.integers(0, C, size=N).astype(dtype)
    loss_cpu, d_cpu = ops.cross_entropy(logits, labels)
    loss, d = ops.cross_entropy(gpu(cp, logits), gpu(cp, labels))
    # issue 14: a 0-d float64 device array (no copy, no sync); float() reads it
    assert isinstance(loss, cp.ndarray) and loss.shape == () and loss.dtype == np.float64
    assert float(loss) == pytest.approx(loss_cpu, rel=1e-5, abs=1e-7)
    assert_close(host(cp, d), d_cpu, "dlogits")


@cuda
def test_cross_entropy_probabilities(cp: Any, rng: np.random.Generator) -> None:
    logits = normal(rng, (33, 12)) * 2
    t = rng.random((33, 12)).astype(np.float32)
    t[:20] /= t[:20].sum(axis=1, keepdims=True)  # some rows sum to 1, others don't
    loss_cpu, d_cpu = ops.cross_entropy(logits, t)
    loss, d = ops.cross_entropy(gpu(cp, logits), gpu(cp, t))
    assert float(loss) == pytest.approx(loss_cpu, rel=1e-5)
    assert_close(host(cp, d), d_cpu, "dlogits", atol=1e-6)


@cuda
def test_cross_entropy_edges_and_errors(cp: Any, rng: np.random.Generator) -> None:
    loss, d = ops.cross_entropy(gpu(cp, np.zeros((0, 4), np.float32)),
                                gpu(cp, np.zeros(0, np.int64)))
    assert float(loss) == 0.0 and host(cp, d).shape == (0, 4)
    logits, labels = normal(rng, (6, 4)), np.array([0, 1, 2, 3, 4, 1])
    with pytest.raises(ValueError) as cpu_err:
        ops.cross_entropy(logits, labels)
    with pytest.raises(ValueError) as gpu_err:
        ops.cross_entropy(gpu(cp, logits), gpu(cp, labels))
    assert str(gpu_err.value) == str(cpu_err.value)
    labels[2] = -1
    with pytest.raises(ValueError, match=r"labels\[2\] = -1 is not a class id in \[0, 4\)"):
        ops.cross_entropy(gpu(cp, logits), gpu(cp, labels))
    with pytest.raises(TypeError, match="float32"):
        ops.cross_entropy(gpu(cp, logits), gpu(cp, np.zeros((6, 4), np.float64)))
    with pytest.raises(ValueError, match="probability labels have shape"):
        ops.cross_entropy(gpu(cp, logits), gpu(cp, np.zeros((6, 5), np.float32)))


# ================================================================================================
# input rule, devices, streams
# ================================================================================================


@cuda
def test_mixing_numpy_and_cupy_is_a_type_error(cp: Any, rng: np.random.Generator) -> None:
    x, w = normal(rng, (1, 2, 5, 5)), normal(rng, (3, 2, 3, 3))
    with pytest.raises(TypeError, match="same device"):
        ops.conv2d(gpu(cp, x), w)
    with pytest.raises(TypeError, match="same device"):
        ops.conv2d(x, gpu(cp, w))
    with pytest.raises(TypeError, match="same device"):
        ops.linear(gpu(cp, x[0, 0]), x[0, 0])
    with pytest.raises(TypeError, match="same device"):
        ops.cross_entropy(gpu(cp, x[0, 0]), np.zeros(5, np.int64))


@cuda
def test_dtype_errors_name_the_argument(cp: Any) -> None:
    x = cp.asarray(np.zeros((1, 2, 5, 5), np.float64))
    w = cp.asarray(np.zeros((3, 2, 3, 3), np.float32))
    with pytest.raises(TypeError, match=r"conv2d: x has dtype float64 .*float32"):
        ops.conv2d(x, w)
    with pytest.raises(TypeError, match=r"relu: x has dtype"):
        ops.relu(cp.asarray(np.zeros(3, np.int32)))
    with pytest.raises(ValueError) as cpu_err:
        ops.conv2d(np.zeros((1, 3, 5, 5), np.float32), np.zeros((3, 2, 3, 3), np.float32))
    with pytest.raises(ValueError) as gpu_err:
        ops.conv2d(cp.asarray(np.zeros((1, 3, 5, 5), np.float32)), w)
    assert str(gpu_err.value) == str(cpu_err.value)


@cuda
def test_runs_on_the_current_stream(cp: Any, rng: np.random.Generator) -> None:
    x, w = small_ints(rng, (2, 3, 9, 9)), small_ints(rng, (4, 3, 3, 3))
    with cp.cuda.Stream() as s:
        y = ops.conv2d(gpu(cp, x), gpu(cp, w), padding=1)
        p = ops.max_pool2d(ops.relu(y), 2)
        s.synchronize()
    check_bitwise(host(cp, p), ops.max_pool2d(ops.relu(ops.conv2d(x, w, padding=1)), 2), "p")


# ================================================================================================
# optimizer updates
# ================================================================================================


@cuda
@pytest.mark.parametrize(("momentum", "nesterov", "wd"),
                         [(0.0, False, 0.0), (0.9, False, 0.0), (0.9, True, 1e-4),
                          (0.5, False, 0.01)])
def test_sgd_update_matches_numpy(cp: Any, rng: np.random.Generator, momentum: float,
                                  nesterov: bool, wd: float) -> None:
    from fastcnn import _cuda_ops

    p = normal(rng, (1000,))
    opt = optimizers.SGD(learning_rate=0.05, momentum=momentum, nesterov=nesterov,
                         weight_decay=wd)
    pg = gpu(cp, p)
    buf = cp.asarray(np.zeros_like(p))
    for step in range(3):
        g = normal(rng, (1000,))
        opt.step([(p, g)])
        _cuda_ops.sgd_update(pg, gpu(cp, g), buf, lr=0.05, momentum=momentum, nesterov=nesterov,
                             weight_decay=wd, first=step == 0)
        check_bitwise(host(cp, pg), p, f"p after step {step + 1}")


@cuda
@pytest.mark.parametrize(("cls", "wd"), [(optimizers.Adam, 0.0), (optimizers.Adam, 0.01),
                                         (optimizers.AdamW, 0.01)])
def test_adam_update_matches_numpy(cp: Any, rng: np.random.Generator, cls: Any,
                                   wd: float) -> None:
    p = normal(rng, (777,))
    opt = cls(learning_rate=1e-3, weight_decay=wd)
    pg, m, v = gpu(cp, p), cp.asarray(np.zeros_like(p)), cp.asarray(np.zeros_like(p))
    for step in range(1, 4):
        g = normal(rng, (777,))
        opt.step([(p, g)])
        ops.adam_update(pg, gpu(cp, g), m, v, lr=1e-3, beta_1=opt.beta_1,
                        beta_2=opt.beta_2, epsilon=opt.epsilon, step=step,
                        weight_decay=wd, decoupled=cls is optimizers.AdamW)
        check_bitwise(host(cp, pg), p, f"p after step {step}")
        check_bitwise(host(cp, m), opt.state["0"]["m"], f"m after step {step}")
        check_bitwise(host(cp, v), opt.state["0"]["v"], f"v after step {step}")
