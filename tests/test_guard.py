"""Guard regions: no kernel reads or writes outside its buffers, and every output element is
written.

* Inputs are contiguous slices cut from the middle of larger buffers whose other elements are
  sentinels (a NaN with a payload; int64 -0x5EAD... for indices and labels), at a different
  alignment per size. The binding passes such a slice's own pointer to the kernels (it is
  C-contiguous and aligned: no copy), so the kernels run with live memory on both sides. After
  every call the whole buffer -- sentinels and the input itself -- must be bit for bit unchanged
  (an out-of-bounds or in-place *write* into an input shows there), and the outputs must match
  the reference (an out-of-bounds *read* of a NaN sentinel would leak into them).
* Outputs are fresh arrays the ops allocate, so they can't be fenced the same way. Instead each
  op runs twice, each time right after allocating and freeing arrays of the outputs' sizes filled
  with garbage (NaN, then a large finite value): the allocator hands the same memory to the op's
  outputs, so an element the kernels skip keeps garbage and differs from the reference (exact
  for the integer-valued inputs used here, NaN-free for the finite ones) and between the runs.
  (AddressSanitizer, see .ci/sanitize, catches out-of-bounds accesses past freshly allocated
  arrays; these tests catch the ones that land inside live memory.)

Every ISA (the `isa` fixture), every op -- conv forward / backward-data / backward-weights with
groups, depthwise, 1x1 and stride 2, relu forward / backward, max pooling forward / backward
with and without indices, linear forward / backward, softmax, log_softmax, cross_entropy,
batch_norm forward / backward -- at sizes around the vector widths (8, 16 floats) and the GEMM
micro-tiles (AVX2 4x24, AVX-512 8x48): 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 48, 49 along each
dimension that the kernels tile.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest

from conftest import check_bitwise, check_exact, normal, small_ints
from fastcnn import ops
from fastcnn import reference as ref

SIZES = [7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 48, 49]

SENTINEL_F32 = np.array([0x7FC0DEAD], dtype=np.uint32).view(np.float32)[0]  # quiet NaN, payload
SENTINEL_I64 = np.int64(-0x5EAD5EAD5EAD5EAD)
GARBAGE = (np.float32(np.nan), np.float32(-7.25e29))  # what an unwritten output element keeps
GUARD = 64  # sentinel elements on each side (256 or 512 bytes: several vector registers)


class Guarded:
    """``array`` copied into the middle of a sentinel-filled buffer; ``.a`` is the slice."""

    def __init__(self, array: np.ndarray, misalign: int) -> None:
        array = np.asarray(array)
        fill = SENTINEL_I64 if array.dtype == np.int64 else SENTINEL_F32
        lead = GUARD + misalign
        self.buf = np.full(lead + array.size + GUARD, fill, dtype=array.dtype)
        self.buf[lead:lead + array.size] = array.ravel()
        self.lead, self.size = lead, array.size
        self.a = self.buf[lead:lead + array.size].reshape(array.shape)
        # the kernels must get this very memory: no copy at the binding
        assert self.a.flags.c_contiguous and self.a.flags.aligned and self.a.flags.writeable
        assert self.a.base is self.buf or self.a.base.base is self.buf
        self.snapshot = self.buf.view(np.uint8).copy()

    def check(self, what: str) -> None:
        now = self.buf.view(np.uint8)
        if np.array_equal(now, self.snapshot):
            return
        item = self.buf.itemsize
        changed = np.flatnonzero((now != self.snapshot).reshape(-1, item).any(axis=1))
        where = ["before" if i < self.lead else "after" if i >= self.lead + self.size
                 else "inside" for i in changed]
        pytest.fail(f"{what}: {len(changed)} element(s) of an input's buffer changed, the first "
                    f"at offset {int(changed[0]) - self.lead} from the input's start ("
                    f"{where[0]} the input; elements before: {where.count('before')}, inside: "
                    f"{where.count('inside')}, after: {where.count('after')})")


def _misalign(n: int, k: int = 0) -> int:
    return (n + 5 * k) % 16  # 0..15 floats: every alignment modulo 64 bytes over the sizes


def _poison(like: Sequence[np.ndarray], value: np.float32) -> None:
    """Allocate and free garbage-filled arrays of the outputs' sizes, so the op's own output
    allocations are likely to reuse that memory."""
    junk = []
    for a in like:
        fill = np.int64(-777) if a.dtype == np.int64 else value
        junk.extend(np.full(a.shape, fill, dtype=a.dtype) for _ in range(3))
    del junk


def _arrays(result: Any) -> list[Any]:
    return list(result) if isinstance(result, tuple) else [result]


def run_guarded(call: Callable[..., Any], inputs: dict[str, np.ndarray],
                expected: Sequence[Any], compare: Callable[[Any, Any, str], None], what: str,
                n: int) -> None:
    """Run ``call(**guarded inputs)`` twice after poisoning; check guards and every output."""
    guards = {k: Guarded(v, _misalign(n, i)) for i, (k, v) in enumerate(inputs.items())}
    args = {k: g.a for k, g in guards.items()}
    like = [np.empty(np.shape(e), np.int64 if np.asarray(e).dtype == np.int64 else np.float32)
            for e in expected if e is not None and not isinstance(e, float)]
    runs = []
    for garbage in GARBAGE:
        tag = f"{what} (garbage {garbage})"
        _poison(like, garbage)
        got = _arrays(call(**args))
        for k, g in guards.items():
            g.check(f"{tag}: input {k}")
        assert len(got) == len(expected), tag
        for i, (u, e) in enumerate(zip(got, expected, strict=True)):
            if e is None:
                assert u is None, f"{tag}[{i}]: expected None"
            else:
                compare(u, e, f"{tag}[{i}]")
        runs.append(got)
    for i, (u, v) in enumerate(zip(*runs, strict=True)):  # the two runs agree bit for bit
        if isinstance(u, np.ndarray) and u.dtype == np.float32:
            check_bitwise(u, v, f"{what}[{i}]: run 2 vs run 1")
        elif isinstance(u, np.ndarray):
            assert np.array_equal(u, v), f"{what}[{i}]: run 2 vs run 1"
        else:
            assert u == v or (u != u and v != v), f"{what}[{i}]: run 2 vs run 1: {u} vs {v}"


def exact(got: Any, expected: Any, what: str) -> None:
    if isinstance(expected, np.ndarray) and expected.dtype == np.int64:
        assert isinstance(got, np.ndarray) and got.dtype == np.int64, what
        assert got.shape == expected.shape, f"{what}: shape {got.shape} vs {expected.shape}"
        assert np.array_equal(got, expected), f"{what}: indices differ"
    else:
        check_exact(got, np.asarray(expected), what)


def close(got: Any, expected: Any, what: str) -> None:
    """Softmax-like results: within float32 rounding of the float64 reference, never NaN."""
    if isinstance(expected, float):
        assert isinstance(got, float) and abs(got - expected) <= 1e-5 * (1 + abs(expected)), (
            f"{what}: {got} vs {expected}")
        return
    assert isinstance(got, np.ndarray) and got.dtype == np.float32, what
    assert got.shape == expected.shape and got.flags.c_contiguous, what
    assert not np.isnan(got).any(), f"{what}: NaN in the output (an unwritten element?)"
    err = np.abs(got.astype(np.float64) - expected)
    bad = ~(err <= 2e-6 + 2e-5 * np.abs(expected))
    assert not bad.any(), (f"{what}: {int(bad.sum())} elements differ; first at "
                           f"{np.argwhere(bad)[0]}: {got[bad][0]} vs {expected[bad][0]}")


def f64(**arrays: np.ndarray) -> dict[str, np.ndarray]:
    return {k: (v.astype(np.float64) if v.dtype == np.float32 else v) for k, v in arrays.items()}


# ----------------------------------------------------------------------------------------------
# element-wise and row-wise ops
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", SIZES)
def test_relu(isa: str, n: int) -> None:
    rng = np.random.default_rng(n)
    for shape in [(n,), (3, n), (n, n)]:
        x = small_ints(rng, shape)
        x[(x == 0) & (rng.random(shape) < 0.5)] = -0.0
        y = ref.relu(x)
        what = f"[{isa}] relu {shape}"
        run_guarded(lambda x: ops.relu(x), {"x": x}, [y], exact, what, n)
        dy = small_ints(rng, shape)
        run_guarded(lambda dy, y: ops.relu_backward(dy, y), {"dy": dy, "y": y},
                    [ref.relu_backward(dy, y)], exact, f"[{isa}] relu_backward {shape}", n)


@pytest.mark.parametrize("n", SIZES)
def test_softmax_and_cross_entropy(isa: str, n: int) -> None:
    rng = np.random.default_rng(100 + n)
    x = normal(rng, (3, n)) * np.float32(3)
    for log in (False, True):
        name = "log_softmax" if log else "softmax"
        f = getattr(ops, name)
        run_guarded(lambda x, f=f: f(x), {"x": x}, [getattr(ref, name)(f64(x=x)["x"])], close,
                    f"[{isa}] {name} (3, {n})", n)
        xt = np.ascontiguousarray(x.T)  # (n, 3) along axis 0: the moved-axis path
        run_guarded(lambda x, f=f: f(x, axis=0), {"x": xt},
                    [getattr(ref, name)(f64(x=xt)["x"], axis=0)], close,
                    f"[{isa}] {name} ({n}, 3) axis 0", n)
    labels = rng.integers(0, n, size=3).astype(np.int64)
    run_guarded(lambda logits, labels: ops.cross_entropy(logits, labels),
                {"logits": x, "labels": labels},
                list(ref.cross_entropy(f64(x=x)["x"], labels)), close,
                f"[{isa}] cross_entropy (3, {n}) class ids", n)
    probs = rng.random((3, n)).astype(np.float32)
    probs /= probs.sum(axis=1, keepdims=True)
    run_guarded(lambda logits, labels: ops.cross_entropy(logits, labels),
                {"logits": x, "labels": probs},
                list(ref.cross_entropy(f64(x=x)["x"], f64(p=probs)["p"])), close,
                f"[{isa}] cross_entropy (3, {n}) probabilities", n)


# ----------------------------------------------------------------------------------------------
# dense: M = batch, N = out, K = in; each in turn through the sizes
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", SIZES)
def test_linear(isa: str, n: int) -> None:
    rng = np.random.default_rng(200 + n)
    for batch, fin, fout in [(n, n, n), (n, 5, 13), (3, n, 7), (5, 9, n), (0, n, 3), (200, 3, n)]:
        x, w = small_ints(rng, (batch, fin)), small_ints(rng, (fout, fin))
        b, dy = small_ints(rng, (fout,)), small_ints(rng, (batch, fout))
        what = f"[{isa}] linear x {x.shape} w {w.shape}"
        run_guarded(lambda x, w, b: ops.linear(x, w, b), {"x": x, "w": w, "b": b},
                    [ref.linear(**f64(x=x, w=w, b=b))], exact, what, n)
        run_guarded(lambda x, w, b: ops.linear(x, w, b, relu=True), {"x": x, "w": w, "b": b},
                    [ref.linear(**f64(x=x, w=w, b=b), relu=True)], exact,
                    what + " relu", n)
        run_guarded(lambda x, w: ops.linear(x, w), {"x": x, "w": w},
                    [ref.linear(**f64(x=x, w=w))], exact, what + " no bias", n)
        run_guarded(lambda dy, x, w: ops.linear_backward(dy, x, w), {"dy": dy, "x": x, "w": w},
                    list(ref.linear_backward(**f64(dy=dy, x=x, w=w))), exact,
                    what + " backward", n)
        run_guarded(lambda dy, x, w: ops.linear_backward(dy, x, w, bias=False, compute_dx=False),
                    {"dy": dy, "x": x, "w": w},
                    list(ref.linear_backward(**f64(dy=dy, x=x, w=w), bias=False,
                                             compute_dx=False)), exact,
                    what + " backward dw only", n)


# ----------------------------------------------------------------------------------------------
# convolution: output width (GEMM N), output channels (GEMM M), input channels (GEMM K)
# ----------------------------------------------------------------------------------------------
def conv_cases(n: int) -> list[tuple[tuple[int, ...], tuple[int, ...], dict[str, Any]]]:
    return [
        ((2, 3, 4, n), (5, 3, 3, 3), {"padding": 1}),                  # Q = n
        ((1, 2, 5, 5), (n, 2, 3, 3), {"padding": 1}),                  # K = n
        ((1, n, 4, 4), (4, n, 3, 3), {}),                              # C*R*S = 9n
        ((2, 3, n, n), (4, 3, 3, 3), {"stride": 2, "padding": 1}),     # stride 2
        ((1, 4, 5, n), (6, 2, 3, 3), {"padding": (0, 1), "groups": 2}),  # groups
        ((1, n, 6, 6), (n, 1, 3, 3), {"stride": 2, "padding": "same", "groups": n}),  # depthwise
        ((2, 3, n, 3), (n, 3, 1, 1), {}),                              # 1x1
        ((4, 3, n, n), (4, 3, 3, 3), {"padding": 1}),  # dx by col2im (N >= 4), dw split-K
        ((0, 3, 5, n), (4, 3, 3, 3), {"padding": 1}),  # empty batch: dw, db must be zeros
    ]


@pytest.mark.parametrize("n", SIZES)
def test_conv2d(isa: str, n: int) -> None:
    rng = np.random.default_rng(300 + n)
    for xs, ws, opts in conv_cases(n):
        x, w, b = small_ints(rng, xs), small_ints(rng, ws), small_ints(rng, (ws[0],))
        what = f"[{isa}] conv2d x {xs} w {ws} {opts}"
        y = ref.conv2d(**f64(x=x, w=w, b=b), **opts)
        run_guarded(lambda x, w, b, o=opts: ops.conv2d(x, w, b, **o), {"x": x, "w": w, "b": b},
                    [y], exact, what, n)
        run_guarded(lambda x, w, o=opts: ops.conv2d(x, w, relu=True, **o), {"x": x, "w": w},
                    [ref.conv2d(**f64(x=x, w=w), relu=True, **opts)], exact, what + " relu", n)
        dy = small_ints(rng, y.shape)
        run_guarded(lambda dy, x, w, o=opts: ops.conv2d_backward(dy, x, w, **o),
                    {"dy": dy, "x": x, "w": w},
                    list(ref.conv2d_backward(**f64(dy=dy, x=x, w=w), **opts)), exact,
                    what + " backward", n)
        run_guarded(lambda dy, x, w, o=opts: ops.conv2d_backward(dy, x, w, bias=False,
                                                                 compute_dx=False, **o),
                    {"dy": dy, "x": x, "w": w},
                    list(ref.conv2d_backward(**f64(dy=dy, x=x, w=w), bias=False,
                                             compute_dx=False, **opts)), exact,
                    what + " backward dw only", n)


# ----------------------------------------------------------------------------------------------
# max pooling
# ----------------------------------------------------------------------------------------------
POOLS: list[dict[str, Any]] = [
    {"kernel_size": 2},
    {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True},
    {"kernel_size": 3, "stride": 1},  # overlapping windows: the backward pass accumulates
    {"kernel_size": (1, 4), "stride": (2, 3), "dilation": (1, 2)},
]


@pytest.mark.parametrize("n", SIZES)
def test_max_pool2d(isa: str, n: int) -> None:
    rng = np.random.default_rng(400 + n)
    for shape in [(2, 3, n, n), (1, 2, 5, n)]:
        x = normal(rng, shape)  # distinct values: no ties
        for opts in POOLS:
            if shape[2] < 5 + 2 * opts.get("padding", 0) and opts["kernel_size"] == 3:
                continue
            what = f"[{isa}] max_pool2d {shape} {opts}"
            y, idx = ref.max_pool2d(x, return_indices=True, **opts)
            run_guarded(lambda x, o=opts: ops.max_pool2d(x, **o), {"x": x}, [y], exact, what, n)
            run_guarded(lambda x, o=opts: ops.max_pool2d(x, return_indices=True, **o),
                        {"x": x}, [y, idx], exact, what + " indices", n)
            dy = small_ints(rng, y.shape)
            dx = ref.max_pool2d_backward(dy.astype(np.float64), x, **opts)
            run_guarded(lambda dy, x, o=opts: ops.max_pool2d_backward(dy, x, **o),
                        {"dy": dy, "x": x}, [dx], exact, what + " backward", n)
            run_guarded(lambda dy, x, indices, o=opts: ops.max_pool2d_backward(
                dy, x, indices=indices, **o), {"dy": dy, "x": x, "indices": idx}, [dx], exact,
                what + " backward with indices", n)


# ----------------------------------------------------------------------------------------------
# average and global pooling (pooling family, issue 17): float32 references in the kernels'
# order, so the comparisons are bit for bit
# ----------------------------------------------------------------------------------------------
AVG_POOLS: list[dict[str, Any]] = [
    {"kernel_size": 2},
    {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True},
    {"kernel_size": 3, "stride": 1, "padding": 1, "count_include_pad": False},
    {"kernel_size": (1, 4), "stride": (2, 3), "divisor_override": 3},
]


def bitwise(got: Any, expected: Any, what: str) -> None:
    if isinstance(expected, np.ndarray) and expected.dtype == np.int64:
        exact(got, expected, what)
    else:
        check_bitwise(got, np.asarray(expected), what)


@pytest.mark.parametrize("n", SIZES)
def test_avg_and_global_pools(isa: str, n: int) -> None:
    rng = np.random.default_rng(500 + n)
    for shape in [(2, 3, n, n), (1, 2, 5, n)]:
        x = normal(rng, shape)
        for opts in AVG_POOLS:
            what = f"[{isa}] avg_pool2d {shape} {opts}"
            y = ref.avg_pool2d(x, **opts)
            run_guarded(lambda x, o=opts: ops.avg_pool2d(x, **o), {"x": x}, [y], bitwise, what, n)
            dy = normal(rng, y.shape)
            dx = ref.avg_pool2d_backward(dy, x, **opts)
            run_guarded(lambda dy, x, o=opts: ops.avg_pool2d_backward(dy, x, **o),
                        {"dy": dy, "x": x}, [dx], bitwise, what + " backward", n)
        what = f"[{isa}] global pools {shape}"
        g = normal(rng, shape[:2])
        y, idx = ref.global_max_pool2d(x, return_indices=True)
        run_guarded(lambda x: ops.global_avg_pool2d(x), {"x": x}, [ref.global_avg_pool2d(x)],
                    bitwise, what + " avg", n)
        run_guarded(lambda x: ops.global_max_pool2d(x, return_indices=True), {"x": x},
                    [y, idx], bitwise, what + " max", n)
        run_guarded(lambda dy, x: ops.global_avg_pool2d_backward(dy, x), {"dy": g, "x": x},
                    [ref.global_avg_pool2d_backward(g, x)], bitwise, what + " avg backward", n)
        run_guarded(lambda dy, x, indices: ops.global_max_pool2d_backward(dy, x, indices=indices),
                    {"dy": g, "x": x, "indices": idx}, [ref.global_max_pool2d_backward(g, x)],
                    bitwise, what + " max backward", n)


# ----------------------------------------------------------------------------------------------
# the method itself
# ----------------------------------------------------------------------------------------------
def test_the_guards_and_the_garbage_work() -> None:
    """The harness catches what it is meant to: a changed sentinel fails the check, and an
    allocation right after _poison holds the garbage (glibc's allocator hands the freed memory
    back; AddressSanitizer quarantines freed memory, so under .ci/sanitize it need not)."""
    g = Guarded(np.arange(9, dtype=np.float32), misalign=3)
    g.buf[g.lead + g.size] = 0.0  # one element past the end
    with pytest.raises(pytest.fail.Exception, match="after the input"):
        g.check("demo")

    def leaky_relu(x: np.ndarray) -> np.ndarray:  # an "op" that forgets its last element
        y = np.empty(x.shape, np.float32)
        y.reshape(-1)[:-1] = ref.relu(x).reshape(-1)[:-1]
        return y

    x = np.arange(1, 50, dtype=np.float32)
    with pytest.raises(AssertionError, match="differ"):
        run_guarded(leaky_relu, {"x": x}, [ref.relu(x)], exact, "leaky", 49)
    if "asan" in os.environ.get("LD_PRELOAD", ""):
        return
    for n in (7, 48, 2401):  # the output sizes used above are all below malloc's mmap threshold
        like = [np.empty(n, np.float32)]  # kept alive, as run_guarded keeps its own
        _poison(like, GARBAGE[0])
        fresh = np.empty(n, np.float32)
        assert np.isnan(fresh).mean() > 0.5, f"{n}: the poisoned memory was not reused"


# ----------------------------------------------------------------------------------------------
# normalization family: batch_norm
# ----------------------------------------------------------------------------------------------
def _bn_close(got: Any, expected: Any, what: str) -> None:
    """Batch norm results: no NaN (an unwritten element), within float32 rounding of sums."""
    assert isinstance(got, np.ndarray) and got.dtype == np.float32, what
    assert got.shape == expected.shape and got.flags.c_contiguous, what
    assert not np.isnan(got).any(), f"{what}: NaN in the output (an unwritten element?)"
    scale = 1.0 + float(np.abs(expected).max(initial=0.0))
    err = float(np.abs(got.astype(np.float64) - expected).max(initial=0.0))
    assert err <= 2e-5 * scale, f"{what}: off by {err:.3g}"


@pytest.mark.parametrize("n", SIZES)
def test_batch_norm(isa: str, n: int) -> None:
    """Both tile forms (row: spatial >= 64; column: below), training and inference, forward and
    backward; the running statistics are guarded in inference (read only there)."""
    rng = np.random.default_rng(n)
    for shape in [(n, 3), (2, n, 5), (3, 2, n + 60), (2, 2, n, 9)]:
        c = shape[1]
        x = (5 + 2 * rng.standard_normal(shape)).astype(np.float32)
        dy = normal(rng, shape)
        w, b = normal(rng, (c,)), normal(rng, (c,))
        rm, rv = normal(rng, (c,)), (0.5 + rng.random(c)).astype(np.float32)
        what = f"[{isa}] batch_norm {shape}"
        for training in (True, False):
            stats = {} if training else {"rm": rm, "rv": rv}
            e = ref.batch_norm(x.astype(np.float64), w, b, None if training else rm,
                               None if training else rv, training=training)
            run_guarded(lambda x, w, b, t=training, **s: ops.batch_norm(
                x, w, b, s.get("rm"), s.get("rv"), training=t)[:3],
                {"x": x, "w": w, "b": b, **stats}, list(e), _bn_close,
                f"{what} training={training}", n)
            _, mean, invstd = ops.batch_norm(x, w, b, rm, rv, training=False) if not training \
                else ops.batch_norm(x, w, b, None, None, training=True)
            grads = ref.batch_norm_backward(dy.astype(np.float64), x.astype(np.float64), w,
                                            mean.astype(np.float64), invstd.astype(np.float64),
                                            training=training)
            run_guarded(lambda dy, x, w, mean, invstd, t=training: ops.batch_norm_backward(
                dy, x, w, mean, invstd, training=t),
                {"dy": dy, "x": x, "w": w, "mean": mean, "invstd": invstd}, list(grads),
                _bn_close, f"{what} backward training={training}", n)
