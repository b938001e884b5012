"""Fuzzing fastcnn.ops: any arguments give either the reference's answer or a TypeError /
ValueError -- never another exception, a wrong answer or a crash.

hypothesis draws calls of every op: mostly a plausible geometry (so the calls reach the kernels),
then perturbed -- ranks 0 to 5, dimensions of 0 and 1, options of every kind (ints, pairs,
strings, bools, floats, None, negative and huge values, numpy scalars, wrong lengths, unknown
keywords), array arguments of every dtype (float16/32/64, ints, bool, complex, object) and memory
layout (C, Fortran, strided, negative strides, broadcast, misaligned, read-only, big-endian,
transposed) or not arrays at all, and values with NaN, +-inf, -0.0 and denormals.

The oracle is fastcnn.reference, which shares the option helpers and raises for the same bad
inputs. For every call:

* ops raises TypeError or ValueError -> fine (the reference may still accept some of these: it
  computes in float64 too, ops only in float32);
* ops raises anything else (RuntimeError, SystemError, IndexError, OverflowError, ...) -> failure;
* ops returns -> the reference must accept the same call, and every result must have its dtype,
  shape and layout, and match: exactly for relu and pooling (selections: NaN, -0.0, indices), and
  for the sums (conv, linear) and exp/log (softmax, cross_entropy) within float32 rounding of the
  float64 reference with NaN and +-inf in the same places.

Calls whose outputs would need more than 64 MiB (but are not beyond 2^62 elements, which the ops
reject) are not made; calls whose reference would need much memory are checked for shape only.

The default run uses the hypothesis profile (HYPOTHESIS_PROFILE, "ci": 20 derandomised examples
per op and ISA, a few seconds); ``pytest -m fuzz tests/test_fuzz.py`` runs the long version
(2,000 random examples per op and ISA, about 5 minutes on 2 cores). A crash (SIGSEGV / abort)
kills the pytest process: run the long version under .ci/sanitize's build to get a report
(CONTRIBUTING.md). What the fuzzing found is kept as plain regression tests at the end.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any

import numpy as np
import pytest
from hypothesis import event, given, note, settings
from hypothesis import strategies as st

from fastcnn import ops
from fastcnn import reference as ref
from fastcnn._geometry import conv_output_size, conv_padding, pair, pool_args, pool_output_size

EPS32 = float(np.finfo(np.float32).eps)
OPS = ["conv2d", "conv2d_backward", "relu", "relu_backward", "max_pool2d",
       "max_pool2d_backward", "linear", "linear_backward", "softmax", "log_softmax",
       "cross_entropy",
       # pooling family (issue 17)
       "avg_pool2d", "avg_pool2d_backward", "global_avg_pool2d", "global_avg_pool2d_backward",
       "global_max_pool2d", "global_max_pool2d_backward"]
# the activation family (issue 17)
ACTIVATIONS = ["sigmoid", "tanh", "silu", "gelu", "leaky_relu"]
OPS += [*ACTIVATIONS, *(a + "_backward" for a in ACTIVATIONS)]
LONG = settings(max_examples=2000, derandomize=False)


# ----------------------------------------------------------------------------------------------
# array arguments: a printable spec, built in the test
# ----------------------------------------------------------------------------------------------
SPECIALS = [np.nan, np.inf, -np.inf, -0.0, 0.0, 1e-40, -3e-42, 1.4e-45, 1.2e-38, 1.0, -1.0]
DENORMALS = [1e-40, -3e-41, 0.0, -0.0, 1.4e-45, -1.4e-45]
OTHER_DTYPES = ["float16", "float64", "int32", "int64", "uint8", "bool", "complex64", "object",
                "longdouble"]
LAYOUTS = ["C", "F", "strided", "reversed", "broadcast", "misaligned", "readonly", "bigendian",
           "transposed", "misaligned+reversed+readonly"]
PROFILES = ["ints", "normal", "specials", "denormals", "zeros", "large"]


@dataclasses.dataclass(frozen=True)
class Arr:
    """An array argument: built from a seed, so hypothesis prints a short description."""

    shape: tuple[int, ...]
    dtype: str = "float32"
    layout: str = "C"
    profile: str = "normal"
    seed: int = 0

    def values(self) -> np.ndarray:
        rng = np.random.default_rng(self.seed)
        shape = self.shape
        if self.profile == "ints":
            return rng.integers(-3, 4, size=shape).astype(np.float64)
        if self.profile == "zeros":
            return np.where(rng.random(shape) < 0.5, -0.0, 0.0)
        if self.profile == "denormals":
            return rng.choice(DENORMALS, size=shape)
        v = rng.standard_normal(shape)
        if self.profile == "large":
            v *= 1e3
        if self.profile == "specials":
            pick = rng.random(shape) < 0.3
            v = np.where(pick, rng.choice(SPECIALS, size=shape), v)
        return v

    def build(self) -> np.ndarray:
        v = np.asarray(self.values())  # rng draws of shape () are scalars
        dt = np.dtype(self.dtype)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if dt.kind in "iu":
                a = np.nan_to_num(v, posinf=3, neginf=-3).astype(dt)
            elif dt.kind == "b":
                a = v > 0
            else:
                a = v.astype(dt)
        return _layout(a, self.layout)


def _misaligned(a: np.ndarray) -> np.ndarray:
    raw = bytearray(a.nbytes + a.itemsize)
    m = np.ndarray(a.shape, a.dtype, buffer=raw, offset=1)
    m[...] = a
    return m


def _layout(a: np.ndarray, layout: str) -> np.ndarray:
    if layout == "C" or (a.ndim == 0 and layout not in ("readonly", "bigendian", "misaligned")):
        return np.ascontiguousarray(a)
    if a.dtype == object and layout in ("misaligned", "bigendian",
                                        "misaligned+reversed+readonly"):
        return a
    if layout == "F":
        return np.asfortranarray(a)
    if layout == "strided":
        buf = np.zeros((*a.shape[:-1], 2 * a.shape[-1]), a.dtype)
        buf[..., ::2] = a
        return buf[..., ::2]
    if layout == "reversed":
        return np.flip(np.flip(a).copy())
    if layout == "broadcast":
        return np.broadcast_to(a[:1], a.shape) if a.shape[0] != 0 else a
    if layout == "misaligned":
        return _misaligned(a)
    if layout == "readonly":
        c = a.copy()
        c.flags.writeable = False
        return c
    if layout == "bigendian":
        return a.astype(a.dtype.newbyteorder(">"))
    if layout == "transposed":
        return np.ascontiguousarray(a.T).T
    if layout == "misaligned+reversed+readonly":
        v = np.flip(_misaligned(np.flip(a)))
        v.flags.writeable = False
        return v
    raise AssertionError(layout)


@dataclasses.dataclass(frozen=True)
class Junk:
    """A non-array argument."""

    value: Any

    def build(self) -> Any:
        return self.value


JUNK = [None, 1.0, 0, "x", [1.0, 2.0], [[1.0]], (), np.float32(1.0), b"\x00" * 16, {"a": 1}]


@dataclasses.dataclass(frozen=True)
class Indices:
    """max_pool2d_backward's indices: from the forward pass, random, or out of range."""

    kind: str
    dtype: str = "int64"
    layout: str = "C"
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class Labels:
    """cross_entropy's labels: class ids (some dtype), out-of-range ids, or probabilities."""

    kind: str
    n: int
    classes: int
    dtype: str = "int64"
    layout: str = "C"
    seed: int = 0

    def build(self) -> np.ndarray:
        rng = np.random.default_rng(self.seed)
        hi = max(self.classes, 1)
        ids = rng.integers(0, hi, size=self.n)
        if self.kind == "oob" and self.n:
            ids[rng.integers(0, self.n)] = rng.choice([-1, hi, 2**40])
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = ids.astype(np.dtype(self.dtype))
        return _layout(a, self.layout)


def _small_dim(hi: int = 6) -> st.SearchStrategy[int]:
    return st.integers(1, hi)


@st.composite
def shapes(draw: st.DrawFn, base: tuple[int, ...]) -> tuple[int, ...]:
    """``base`` mostly; sometimes a dimension set to 0 / 1 / +-1, or a rank from 0 to 5."""
    roll = draw(st.integers(0, 19))
    s = list(base)
    if roll < 14 or not s:
        return tuple(base)
    if roll < 17:
        i = draw(st.integers(0, len(s) - 1))
        s[i] = max(0, draw(st.sampled_from([0, 1, s[i] + 1, s[i] - 1])))
        return tuple(s)
    rank = draw(st.integers(0, 5))
    return tuple(draw(st.lists(st.integers(0, 4), min_size=rank, max_size=rank)))


@st.composite
def arrays(draw: st.DrawFn, base: tuple[int, ...], perturb: bool = True,
           profiles: list[str] | None = None) -> Arr | Junk:
    roll = draw(st.integers(0, 39))  # hypothesis starts from 0: the plain case
    if perturb and roll == 39:
        return Junk(draw(st.sampled_from(JUNK)))
    shape = draw(shapes(base)) if perturb else base
    dtype = "float32"
    if perturb and roll in (36, 37, 38):
        dtype = draw(st.sampled_from(OTHER_DTYPES))
    layout = draw(st.sampled_from(LAYOUTS)) if draw(st.integers(0, 3)) == 3 else "C"
    profile = draw(st.sampled_from(profiles or PROFILES))
    return Arr(shape, dtype, layout, profile, draw(st.integers(0, 2**32 - 1)))


# ----------------------------------------------------------------------------------------------
# options
# ----------------------------------------------------------------------------------------------
WILD_OPTIONS = [0, -1, -2, 2**31 - 1, 2**31, 2**40, 2**63, -(2**63), 2**80, True, False, 1.0, 2.5,
                float("nan"), "same", "valid", "full", "", None, (), (1,), (1, 2, 3), (1, 1.0),
                [2, 2], (-1, 1), (True, 1), np.int8(2), np.uint64(2**64 - 1), np.int64(2**40),
                np.float32(1), np.bool_(True), np.array([1, 1]), np.array(2), range(2), b"1"]


def option(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A valid value 7 times in 8, else anything from WILD_OPTIONS."""
    return st.integers(0, 7).flatmap(
        lambda r: valid if r < 7 else st.sampled_from(WILD_OPTIONS))


def int_or_pair(lo: int, hi: int) -> st.SearchStrategy[Any]:
    return st.one_of(st.integers(lo, hi), st.tuples(st.integers(lo, hi), st.integers(lo, hi)),
                     st.integers(lo, hi).map(np.int64))


def flags() -> st.SearchStrategy[Any]:
    return option(st.booleans())


@st.composite
def kwargs_of(draw: st.DrawFn, **options: st.SearchStrategy[Any]) -> dict[str, Any]:
    """Each option given or left at its default; rarely an unknown keyword."""
    out = {k: draw(v) for k, v in options.items() if draw(st.booleans())}
    if draw(st.integers(0, 49)) == 49:
        out["bogus"] = 1
    return out


# ----------------------------------------------------------------------------------------------
# calls of each op: (args, kwargs) with Arr / Junk / Indices / Labels placeholders
# ----------------------------------------------------------------------------------------------
@st.composite
def conv_geometry(draw: st.DrawFn) -> tuple[tuple[int, ...], tuple[int, ...], dict[str, Any]]:
    g = draw(st.sampled_from([1, 1, 1, 2, 3]))
    N, Cg, Kg = draw(st.integers(0, 3)), draw(_small_dim(3)), draw(_small_dim(4))
    H, W, R, S = draw(_small_dim(9)), draw(_small_dim(9)), draw(_small_dim(4)), draw(_small_dim(4))
    kw = draw(kwargs_of(
        stride=option(int_or_pair(1, 3)),
        padding=option(st.one_of(int_or_pair(0, 3), st.sampled_from(["same", "valid"]))),
        dilation=option(int_or_pair(1, 3)),
        groups=option(st.just(g)),
    ))
    return (N, Cg * g, H, W), (Kg * g, Cg, R, S), kw


@st.composite
def conv2d_calls(draw: st.DrawFn) -> tuple[tuple[Any, ...], dict[str, Any]]:
    xs, ws, kw = draw(conv_geometry())
    b = draw(st.one_of(st.just(None), arrays((ws[0],))))
    if draw(st.booleans()):
        kw["relu"] = draw(flags())
    return (draw(arrays(xs)), draw(arrays(ws)), b), kw


@st.composite
def conv2d_backward_calls(draw: st.DrawFn) -> tuple[tuple[Any, ...], dict[str, Any]]:
    xs, ws, kw = draw(conv_geometry())
    ys = _small(_conv_out_shape(xs, ws, kw)) or (xs[0], ws[0], 1, 1)
    for k in ("bias", "compute_dx"):
        if draw(st.booleans()):
            kw[k] = draw(flags())
    return (draw(arrays(ys)), draw(arrays(xs)), draw(arrays(ws))), kw


@st.composite
def relu_calls(draw: st.DrawFn) -> tuple[tuple[Any, ...], dict[str, Any]]:
    rank = draw(st.integers(0, 5))
    shape = tuple(draw(st.lists(st.integers(0, 9), min_size=rank, max_size=rank)))
    return (draw(arrays(shape)),), draw(kwargs_of())


@st.composite
def relu_backward_calls(draw: st.DrawFn) -> tuple[tuple[Any, ...], dict[str, Any]]:
    rank = draw(st.integers(0, 5))
    shape = tuple(draw(st.lists(st.integers(0, 9), min_size=rank, max_size=rank)))
    return (draw(arrays(shape)), draw(arrays(shape))), draw(kwargs_of())


@st.composite
def pool_geometry(draw: st.DrawFn) -> tuple[tuple[int, ...], dict[str, Any], tuple[Any, ...]]:
    N, C, H, W = draw(st.integers(0, 3)), draw(_small_dim(3)), draw(_small_dim(10)), \
        draw(_small_dim(10))
    k = draw(option(int_or_pair(1, 4)))
    kw = draw(kwargs_of(stride=option(st.one_of(st.none(), int_or_pair(1, 3))),
                        padding=option(int_or_pair(0, 2)), dilation=option(int_or_pair(1, 3)),
                        ceil_mode=flags()))
    return (N, C, H, W), kw, (k,)


@st.composite
def max_pool2d_calls(draw: st.DrawFn) -> tuple[tuple[Any, ...], dict[str, Any]]:
    xs, kw, rest = draw(pool_geometry())
    if draw(st.booleans()):
        kw["return_indices"] = draw(flags())
    return (draw(arrays(xs)), *rest), kw


@st.composite
def max_pool2d_backward_calls(draw: st.DrawFn) -> tuple[tuple[Any, ...], dict[str, Any]]:
    xs, kw, rest = draw(pool_geometry())
    ys = _small(_pool_out_shape(xs, rest[0], kw)) or (xs[0], xs[1], 1, 1)
    if draw(st.booleans()):
        kind = draw(st.sampled_from(["forward", "forward", "random", "oob", "junk"]))
        if kind == "junk":
            kw["indices"] = Junk(draw(st.sampled_from(JUNK)))
        else:
            dtype = "int64" if draw(st.integers(0, 5)) < 5 else draw(
                st.sampled_from(["int32", "uint64", "float32", "bool"]))
            layout = draw(st.sampled_from(LAYOUTS)) if draw(st.integers(0, 3)) == 3 else "C"
            kw["indices"] = Indices(kind, dtype, layout, draw(st.integers(0, 2**32 - 1)))
    return (draw(arrays(ys)), draw(arrays(xs)), *rest), kw


@st.composite
def linear_geometry(draw: st.DrawFn) -> tuple[int, int, int]:
    return draw(st.integers(0, 9)), draw(st.integers(1, 70)), draw(st.integers(1, 60))


@st.composite
def linear_calls(draw: st.DrawFn) -> tuple[tuple[Any, ...], dict[str, Any]]:
    n, fin, fout = draw(linear_geometry())
    b = draw(st.one_of(st.just(None), arrays((fout,))))
    kw = draw(kwargs_of(relu=flags()))
    return (draw(arrays((n, fin))), draw(arrays((fout, fin))), b), kw


@st.composite
def linear_backward_calls(draw: st.DrawFn) -> tuple[tuple[Any, ...], dict[str, Any]]:
    n, fin, fout = draw(linear_geometry())
    kw = draw(kwargs_of(bias=flags(), compute_dx=flags()))
    return (draw(arrays((n, fout))), draw(arrays((n, fin))), draw(arrays((fout, fin)))), kw


SOFT_PROFILES = ["ints", "normal", "specials", "denormals", "zeros"]


@st.composite
def softmax_calls(draw: st.DrawFn) -> tuple[tuple[Any, ...], dict[str, Any]]:
    rank = draw(st.integers(0, 5))
    shape = tuple(draw(st.lists(st.integers(0, 7), min_size=rank, max_size=rank)))
    valid_axis = st.integers(-rank, rank - 1) if rank else st.integers(-1, 0)
    kw = draw(kwargs_of(axis=option(st.one_of(valid_axis, st.integers(-6, 5)))))
    return (draw(arrays(shape, profiles=SOFT_PROFILES)),), kw


@st.composite
def cross_entropy_calls(draw: st.DrawFn) -> tuple[tuple[Any, ...], dict[str, Any]]:
    n, classes = draw(st.integers(0, 9)), draw(st.integers(0, 40))
    logits = draw(arrays((n, classes), profiles=SOFT_PROFILES))
    kind = draw(st.sampled_from(["ids", "ids", "oob", "probs", "probs", "junk"]))
    seed = draw(st.integers(0, 2**32 - 1))
    layout = draw(st.sampled_from(LAYOUTS)) if draw(st.integers(0, 3)) == 3 else "C"
    if kind == "probs":
        labels: Any = draw(arrays((n, classes), profiles=["ints", "normal", "specials", "zeros"]))
    elif kind == "junk":
        labels = Junk(draw(st.sampled_from(JUNK)))
    else:
        dtype = draw(st.sampled_from(["int64", "int64", "int32", "uint8", "int8", "uint64",
                                      "bool", "float16"]))
        m = n if draw(st.integers(0, 9)) < 9 else draw(st.integers(0, 10))
        labels = Labels(kind, m, classes, dtype, layout, seed)
    return (logits, labels), draw(kwargs_of())


# pooling family (issue 17): average pooling (no dilation) and the global pools
@st.composite
def avg_geometry(draw: st.DrawFn) -> tuple[tuple[int, ...], dict[str, Any], tuple[Any, ...]]:
    N, C, H, W = draw(st.integers(0, 3)), draw(_small_dim(3)), draw(_small_dim(10)), \
        draw(_small_dim(10))
    k = draw(option(int_or_pair(1, 4)))
    kw = draw(kwargs_of(stride=option(st.one_of(st.none(), int_or_pair(1, 3))),
                        padding=option(int_or_pair(0, 2)), ceil_mode=flags(),
                        count_include_pad=flags(),
                        divisor_override=option(st.one_of(st.none(), st.integers(-3, 5)))))
    return (N, C, H, W), kw, (k,)


@st.composite
def avg_pool2d_calls(draw: st.DrawFn) -> tuple[tuple[Any, ...], dict[str, Any]]:
    xs, kw, rest = draw(avg_geometry())
    return (draw(arrays(xs)), *rest), kw


@st.composite
def avg_pool2d_backward_calls(draw: st.DrawFn) -> tuple[tuple[Any, ...], dict[str, Any]]:
    xs, kw, rest = draw(avg_geometry())
    kp = {k: v for k, v in kw.items() if k in ("stride", "padding", "ceil_mode")}
    ys = _small(_pool_out_shape(xs, rest[0], kp)) or (xs[0], xs[1], 1, 1)
    return (draw(arrays(ys)), draw(arrays(xs)), *rest), kw


@st.composite
def global_pool2d_calls(draw: st.DrawFn, indices: bool = False
                        ) -> tuple[tuple[Any, ...], dict[str, Any]]:
    xs = (draw(st.integers(0, 3)), draw(_small_dim(4)), draw(_small_dim(9)), draw(_small_dim(9)))
    kw = draw(kwargs_of(return_indices=flags())) if indices else draw(kwargs_of())
    return (draw(arrays(xs)),), kw


@st.composite
def global_pool2d_backward_calls(draw: st.DrawFn, indices: bool = False
                                 ) -> tuple[tuple[Any, ...], dict[str, Any]]:
    xs = (draw(st.integers(0, 3)), draw(_small_dim(4)), draw(_small_dim(9)), draw(_small_dim(9)))
    kw = draw(kwargs_of())
    if indices and draw(st.booleans()):
        kind = draw(st.sampled_from(["random", "random", "oob", "junk"]))
        if kind == "junk":
            kw["indices"] = Junk(draw(st.sampled_from(JUNK)))
        else:
            dtype = "int64" if draw(st.integers(0, 5)) < 5 else draw(
                st.sampled_from(["int32", "uint64", "float32", "bool"]))
            kw["indices"] = Indices(kind, dtype, "C", draw(st.integers(0, 2**32 - 1)))
    return (draw(arrays(xs[:2])), draw(arrays(xs))), kw


@st.composite
def activation_calls(draw: st.DrawFn, op: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
    rank = draw(st.integers(0, 5))
    shape = tuple(draw(st.lists(st.integers(0, 9), min_size=rank, max_size=rank)))
    n = 2 if op.endswith("_backward") else 1
    args = tuple(draw(arrays(shape)) for _ in range(n))
    if op.startswith("gelu"):
        return args, draw(kwargs_of(approximate=option(st.sampled_from(["none", "tanh"]))))
    if op.startswith("leaky_relu"):
        return args, draw(kwargs_of(negative_slope=option(
            st.sampled_from([0.01, 0.2, 0.0, -0.5, 2.0, np.float32(0.1), 3]))))
    return args, draw(kwargs_of())


CALLS = {
    "conv2d": conv2d_calls(), "conv2d_backward": conv2d_backward_calls(),
    "relu": relu_calls(), "relu_backward": relu_backward_calls(),
    "max_pool2d": max_pool2d_calls(), "max_pool2d_backward": max_pool2d_backward_calls(),
    "linear": linear_calls(), "linear_backward": linear_backward_calls(),
    "softmax": softmax_calls(), "log_softmax": softmax_calls(),
    "cross_entropy": cross_entropy_calls(),
    # pooling family (issue 17)
    "avg_pool2d": avg_pool2d_calls(), "avg_pool2d_backward": avg_pool2d_backward_calls(),
    "global_avg_pool2d": global_pool2d_calls(),
    "global_avg_pool2d_backward": global_pool2d_backward_calls(),
    "global_max_pool2d": global_pool2d_calls(indices=True),
    "global_max_pool2d_backward": global_pool2d_backward_calls(indices=True),
}
CALLS.update({op: activation_calls(op) for op in OPS if op.split("_backward")[0] in ACTIVATIONS})


# ----------------------------------------------------------------------------------------------
# sizes: skip calls that would allocate too much, shapes for dy
# ----------------------------------------------------------------------------------------------
def _conv_out_shape(xs: tuple[int, ...], ws: tuple[int, ...], kw: dict[str, Any]
                    ) -> tuple[int, ...] | None:
    try:
        pads = conv_padding(kw.get("padding", 0), xs[2], xs[3], ws[2], ws[3],
                            kw.get("stride", 1), kw.get("dilation", 1))
        P, Q = conv_output_size(xs[2], xs[3], ws[2], ws[3], kw.get("stride", 1), pads,
                                kw.get("dilation", 1))
    except Exception:
        return None
    return (xs[0], ws[0], P, Q)


def _small(shape: tuple[int, ...] | None) -> tuple[int, ...] | None:
    """The shape of dy for a backward call, unless it is too large to build here."""
    return shape if shape is not None and math.prod(max(d, 1) for d in shape) <= 2**20 else None


def _pool_out_shape(xs: tuple[int, ...], k: Any, kw: dict[str, Any]) -> tuple[int, ...] | None:
    try:
        P, Q = pool_output_size(xs[2], xs[3], k, kw.get("stride"), kw.get("padding", 0),
                                kw.get("dilation", 1), bool(kw.get("ceil_mode", False)))
    except Exception:
        return None
    return (xs[0], xs[1], P, Q)


OPS_LIMIT = 2**24  # output elements an ops call may allocate here (64 MiB of float32)
REF_LIMIT = 2**22  # elements of the reference's padded input / im2col / window copies


def _costs(op: str, args: tuple[Any, ...], kw: dict[str, Any]) -> tuple[int, int]:
    """(output elements of the ops call, elements the reference materialises), 0 when unknown
    (the call is then expected to fail on its arguments or to be small)."""
    try:
        if op.startswith("conv2d"):
            x, w = (args[0], args[1]) if op == "conv2d" else (args[1], args[2])
            N, C, H, W = x.shape
            K, _, R, S = w.shape
            st_, dil = kw.get("stride", 1), kw.get("dilation", 1)
            t, l_, b, r = conv_padding(kw.get("padding", 0), H, W, R, S, st_, dil)
            P, Q = conv_output_size(H, W, R, S, st_, (t, l_, b, r), dil)
            out = N * K * P * Q + N * C * H * W
            n = max(N, 1)  # numpy refuses shapes beyond 2^63 elements even when empty
            return out, n * C * (H + t + b) * (W + l_ + r) + C * R * S * n * P * Q + out
        if op.startswith("max_pool2d"):
            x = args[0] if op == "max_pool2d" else args[1]
            N, C, H, W = x.shape
            k, s, p, d = pool_args(args[1] if op == "max_pool2d" else args[2], kw.get("stride"),
                                   kw.get("padding", 0), kw.get("dilation", 1))
            eh, ew = d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1
            P = (H + 2 * p[0] - eh + s[0]) // s[0] + 1
            Q = (W + 2 * p[1] - ew + s[1]) // s[1] + 1
            return N * C * P * Q, max(N, 1) * C * ((H + 2 * p[0] + eh) * (W + 2 * p[1] + ew)
                                                   + P * Q * k[0] * k[1])
    except Exception:
        return 0, 0
    return 0, 0


# ----------------------------------------------------------------------------------------------
# comparing
# ----------------------------------------------------------------------------------------------
def _as_f64(a: Any) -> Any:
    return a.astype(np.float64) if isinstance(a, np.ndarray) and a.dtype == np.float32 else a


def _abs(a: Any) -> Any:
    return np.abs(a) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a


def _items(r: Any) -> list[Any]:
    return list(r) if isinstance(r, tuple) else [r]


def _check_layout(got: Any, exp: Any, what: str) -> None:
    assert isinstance(got, np.ndarray), f"{what}: got {type(got).__name__}"
    want = np.int64 if exp.dtype.kind in "iu" else np.float32
    assert got.dtype == want, f"{what}: dtype {got.dtype}, expected {np.dtype(want)}"
    assert got.shape == exp.shape, f"{what}: shape {got.shape}, expected {exp.shape}"
    assert got.flags.c_contiguous and got.flags.writeable, f"{what}: not a fresh C array"


def _fail_where(bad: np.ndarray, got: np.ndarray, exp: np.ndarray, tol: Any, what: str) -> None:
    if bad.any():
        i = tuple(int(v) for v in np.argwhere(bad)[0])
        t = f" (tolerance {np.broadcast_to(tol, bad.shape)[i]:.3g})" if tol is not None else ""
        pytest.fail(f"{what}: {int(bad.sum())} of {bad.size} elements differ; first at {i}: "
                    f"got {got[i]!r}, expected {exp[i]!r}{t}")


def check_same(got: np.ndarray, exp: np.ndarray, what: str) -> None:
    """Selections (relu, pooling): equal values, NaN where NaN, the same sign of zero."""
    _check_layout(got, exp, what)
    if exp.dtype.kind in "iu":
        _fail_where(got != exp, got, exp, None, what)
        return
    e = exp.astype(np.float32)
    bad = ~((got == e) | (np.isnan(got) & np.isnan(e))) | (np.signbit(got) != np.signbit(e)) & (
        got == 0)
    _fail_where(bad, got, e, None, what)


def check_close(got: np.ndarray, exp: np.ndarray, tol: np.ndarray, what: str) -> None:
    """NaN and +-inf in the same places, finite values within ``tol`` of the float64 ``exp``."""
    _check_layout(got, exp, what)
    g = got.astype(np.float64)
    with np.errstate(invalid="ignore"):
        ok = np.where(np.isnan(exp), np.isnan(g),
                      np.where(np.isinf(exp), g == exp, np.abs(g - exp) <= tol))
    _fail_where(~ok, got, exp, tol, what)


def sum_tol(exp: np.ndarray, abs_terms: np.ndarray, length: int) -> np.ndarray:
    L = max(int(length), 1)
    with np.errstate(invalid="ignore", over="ignore"):
        return 4 * EPS32 * math.sqrt(L) * abs_terms + EPS32 * np.abs(exp) + L * 2.0**-149


def _reference(op: str, args: tuple[Any, ...], kw: dict[str, Any], f64: bool) -> Any:
    conv = _as_f64 if f64 else (lambda a: a)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return getattr(ref, op)(*[conv(a) for a in args],
                                **{k: conv(v) for k, v in kw.items()})


# compared bit for bit with the float32 reference (selections, or sums in the kernels' order)
BITWISE_OPS = ("relu", "relu_backward", "max_pool2d", "avg_pool2d", "avg_pool2d_backward",
               "global_avg_pool2d", "global_avg_pool2d_backward", "global_max_pool2d",
               "global_max_pool2d_backward")


def compare(op: str, got: Any, args: tuple[Any, ...], kw: dict[str, Any]) -> None:
    """ops returned ``got``: the reference must accept the call and agree."""
    try:
        exp = _reference(op, args, kw, f64=op not in BITWISE_OPS
                         and not op.startswith("leaky_relu"))
    except MemoryError:
        event("reference: MemoryError")
        return
    except (TypeError, ValueError) as e:
        pytest.fail(f"{op} returned a result, but the reference rejects the call: "
                    f"{type(e).__name__}: {e}")
    gots, exps = _items(got), _items(exp)
    assert len(gots) == len(exps), f"{op}: {len(gots)} results, expected {len(exps)}"
    for i, (g, e) in enumerate(zip(gots, exps, strict=True)):
        what = f"{op} result {i}"
        if e is None:
            assert g is None, f"{what}: expected None, got {type(g).__name__}"
        elif isinstance(e, float | np.floating):
            assert isinstance(g, float), f"{what}: expected a Python float, got {type(g)}"
            _compare_loss(g, float(e), args, what)
        elif op in BITWISE_OPS or op.startswith("leaky_relu") or e.dtype.kind in "iu":
            check_same(g, e, what)
        elif op.split("_backward")[0] in ACTIVATIONS:
            # within the kernels' ulp bounds (tests/test_ops_activation.py), in units of the
            # result, of |dy| for the backward (whose derivative is at most ~1.13 in size) and
            # of the smallest subnormal
            dy = np.abs(args[0].astype(np.float64)) if op.endswith("_backward") else 0.0
            with np.errstate(invalid="ignore"):
                tol = 8 * EPS32 * (np.abs(e) + 2 * dy) + 8 * 2.0**-149
            check_close(g, e, np.where(np.isfinite(tol), tol, 0.0), what)
        elif op == "max_pool2d_backward":
            kk = pair(args[2], "kernel_size")
            absr = _reference(op, (_abs(args[0]), *args[1:]), kw, f64=True)
            check_close(g, e, sum_tol(e, absr, int(kk[0]) * int(kk[1])), what)
        elif op in ("conv2d", "conv2d_backward", "linear", "linear_backward"):
            _compare_sums(op, i, g, e, args, kw, what)
        else:  # softmax, log_softmax, cross_entropy's dlogits
            _compare_exp(op, g, e, args, kw, what)


def _compare_sums(op: str, i: int, g: np.ndarray, e: np.ndarray, args: tuple[Any, ...],
                  kw: dict[str, Any], what: str) -> None:
    kwa = {k: v for k, v in kw.items() if k != "relu"}
    absr = _items(_reference(op, tuple(_abs(a) for a in args), kwa, f64=True))[i]
    if op == "conv2d":
        w = args[1]
        length = w.shape[1] * w.shape[2] * w.shape[3]
    elif op == "conv2d_backward":
        dy, _, w = args
        length = max(w.shape[0] * w.shape[2] * w.shape[3],
                     dy.shape[0] * dy.shape[2] * dy.shape[3])
    elif op == "linear":
        length = args[0].shape[1]
    else:
        length = max(args[0].shape[0], args[0].shape[1])
    check_close(g, e, sum_tol(e, absr, length + 1), what)


def _compare_exp(op: str, g: np.ndarray, e: np.ndarray, args: tuple[Any, ...],
                 kw: dict[str, Any], what: str) -> None:
    """exp / log results: float32 rounding of x - max(x) (relative error eps * |x - max| in
    the exponentials), of the row sums (classes * eps) and of the final products."""
    x = args[0].astype(np.float64)
    if op == "cross_entropy":
        axis = 1
    else:
        axis = kw.get("axis", -1)
    with np.errstate(all="ignore"):
        fin = np.where(np.isfinite(x), np.abs(x), 0.0)
        scale = fin.max(axis=axis, keepdims=True) if x.size else fin
        L = x.shape[axis] if x.ndim else 1
        rel = 8 * EPS32 * (1 + 2 * scale + L)
        if op == "log_softmax":
            tol = rel * (1 + np.abs(e))
        elif op == "softmax":
            tol = rel * np.abs(e) + 1e-42
        else:  # (softmax * sum(target) - target) / N
            lab = args[1]
            n = max(x.shape[0], 1)
            if lab.dtype.kind == "f":
                t = np.abs(lab.astype(np.float64))
                mag = np.abs(e) + (t + t.sum(axis=1, keepdims=True)) / n
            else:
                mag = np.abs(e) + 1.0 / n
            tol = rel * mag + 1e-42
    check_close(g, e, tol, what)


def _compare_loss(g: float, e: float, args: tuple[Any, ...], what: str) -> None:
    x, lab = args[0].astype(np.float64), args[1]
    if math.isnan(e) or math.isinf(e):
        assert (math.isnan(g) and math.isnan(e)) or g == e, f"{what}: loss {g!r}, expected {e!r}"
        return
    with np.errstate(all="ignore"):
        fin = np.where(np.isfinite(x), np.abs(x), 0.0)
        scale = float(fin.max()) if x.size else 0.0
        tsum = float(np.abs(lab.astype(np.float64)).sum(axis=1).max()) if (
            lab.dtype.kind == "f" and lab.size) else 1.0
    tol = 16 * EPS32 * (1 + abs(e) + tsum * (2 * scale + x.shape[1] + 1))
    assert abs(g - e) <= tol, f"{what}: loss {g!r}, expected {e!r} (tolerance {tol:.3g})"


# ----------------------------------------------------------------------------------------------
# the property
# ----------------------------------------------------------------------------------------------
def _build(v: Any, built: dict[str, Any]) -> Any:
    if isinstance(v, Arr | Junk | Labels):
        return v.build()
    if isinstance(v, Indices):
        return _indices(v, built)
    return v


def _indices(spec: Indices, built: dict[str, Any]) -> Any:
    dy, x = built["args"][0], built["args"][1]
    rng = np.random.default_rng(spec.seed)
    shape = getattr(dy, "shape", (1,))
    hw = x.shape[2] * x.shape[3] if isinstance(x, np.ndarray) and x.ndim == 4 else 1
    if spec.kind == "forward" and isinstance(x, np.ndarray) and x.dtype == np.float32:
        try:
            with np.errstate(all="ignore"):
                _, idx = ref.max_pool2d(x, *built["args"][2:], return_indices=True,
                                        **{k: v for k, v in built["kw"].items()
                                           if k in ("stride", "padding", "dilation",
                                                    "ceil_mode")})
        except Exception:
            idx = np.zeros(shape, np.int64)
    else:
        idx = rng.integers(0, max(hw, 1), size=shape)
    if spec.kind == "oob" and idx.size:
        idx.reshape(-1)[rng.integers(0, idx.size)] = rng.choice([-1, hw, 2**40])
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _layout(np.asarray(idx).astype(spec.dtype), spec.layout)


def run_call(op: str, call: tuple[tuple[Any, ...], dict[str, Any]]) -> None:
    specs, kw_specs = call
    built: dict[str, Any] = {"args": [], "kw": {}}
    built["args"] = [_build(a, built) for a in specs]
    built["kw"] = {k: v for k, v in kw_specs.items() if not isinstance(v, Indices)}
    for k, v in kw_specs.items():
        built["kw"][k] = _build(v, built)
    args, kw = tuple(built["args"]), built["kw"]
    out_cost, ref_cost = _costs(op, args, kw)
    if OPS_LIMIT < out_cost <= 2**62:
        event("skipped: the output would be too large")
        return
    note(f"{op}: args {[_describe(a) for a in args]}, kwargs "
         f"{ {k: _describe(v) for k, v in kw.items()} }")
    try:
        got = getattr(ops, op)(*args, **kw)
    except (TypeError, ValueError) as e:
        event(f"{op}: {type(e).__name__}")
        return
    event(f"{op}: result")
    if ref_cost > REF_LIMIT:
        event("reference skipped: too large")
        return
    compare(op, got, args, kw)


def _describe(a: Any) -> str:
    if isinstance(a, np.ndarray):
        return (f"ndarray{a.shape} {a.dtype.str} C={a.flags.c_contiguous} "
                f"aligned={a.flags.aligned} strides={a.strides}")
    return repr(a)


@pytest.mark.parametrize("op", OPS)
@given(data=st.data())
def test_fuzz_short(op: str, isa: str, data: st.DataObject) -> None:
    """The default run: the hypothesis profile's examples per op and ISA."""
    run_call(op, data.draw(CALLS[op], label="call"))


@pytest.mark.fuzz
@pytest.mark.parametrize("op", OPS)
@LONG
@given(data=st.data())
def test_fuzz_long(op: str, isa: str, data: st.DataObject) -> None:
    """``pytest -m fuzz``: 2,000 random examples per op and ISA."""
    run_call(op, data.draw(CALLS[op], label="call"))


# ----------------------------------------------------------------------------------------------
# found by fuzzing: kept as plain regression tests
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch", [1, 3, 4])
def test_conv2d_backward_nonfinite_weight_stays_local(isa: str, batch: int) -> None:
    """A NaN / inf weight may only reach the dx elements it multiplies (PyTorch and the
    reference: dx = col2im(w^T dy)). Found by test_fuzz_long[conv2d_backward]: for
    N * groups < 4, conv2d_backward_data (csrc/cpu/conv2d.cpp, the gather form) multiplies every
    weight tap by the zeros it packs for dy positions outside the output (pack_windows), so
    0 * NaN / 0 * inf turns whole dx rows / planes into NaN; with N * groups >= 4 (col2im form)
    the result is right -- the answer depends on the batch size."""
    dy = np.ones((batch, 4, 1, 1), np.float32)
    x = np.ones((batch, 2, 1, 4), np.float32)
    w = np.ones((4, 2, 1, 4), np.float32)
    w[0, 1, 0, 2] = np.nan  # reaches dx[:, 1, 0, 2] only
    _same_dx(ops.conv2d_backward(dy, x, w)[0], ref.conv2d_backward(dy, x, w)[0], batch)

    dy = np.ones((batch, 1, 3, 3), np.float32)
    x = np.ones((batch, 1, 3, 3), np.float32)
    w = np.ones((1, 1, 3, 3), np.float32)
    w[0, 0, 0, 0] = np.inf  # with padding 1: reaches dx[:, :, :2, :2] only
    _same_dx(ops.conv2d_backward(dy, x, w, padding=1)[0],
             ref.conv2d_backward(dy, x, w, padding=1)[0], batch)


def _same_dx(dx: np.ndarray, expected: np.ndarray, batch: int) -> None:
    if not np.array_equal(dx, expected, equal_nan=True):
        pytest.fail(f"batch {batch}: dx[0] = {dx[0].tolist()}, expected {expected[0].tolist()}")


def test_empty_batch_with_an_output_too_large_to_describe(isa: str) -> None:
    """Found by test_fuzz_long under .ci/sanitize (UBSan: signed integer overflow in
    pybind11/buffer_info.h, undefined behaviour). check_conv2d_args (csrc/common/args.cpp) bounds
    the output with checked_numel({N, K, P, Q}), which is 0 for an empty batch, so an output
    whose other dimensions K * P * Q (* 4 bytes) pass 2^63 is accepted, and new_float
    (csrc/bindings/module_cpu.cpp) asks pybind11 for an array whose C strides overflow int64.
    A normal build happens to end in numpy's ValueError ("array is too big"); under the
    sanitizers the process aborts. Expected: a ValueError from the size check."""
    x, w = np.ones((0, 1, 1, 1), np.float32), np.ones((1, 1, 1, 1), np.float32)
    with pytest.raises(ValueError):
        ops.conv2d(x, w, padding=2**31 - 1)
    with pytest.raises(ValueError):
        ops.conv2d(x, np.ones((3, 1, 1, 1), np.float32), padding=(2**31 - 1, 2**31 - 1))
