"""The input rule of every op, and its errors.

* Arrays must be float32 numpy arrays (class labels: any integer dtype, pooling indices: int64):
  anything else is a TypeError whose message names the argument and says float32 / astype; no
  silent casts, no promotion.
* Fortran-order, strided, negative-stride, broadcast (zero-stride), misaligned and read-only
  arrays are accepted (copied once) and give bit-identical results to the C-contiguous case.
* Every impossible shape or option raises ValueError naming the argument (TypeError for a wrong
  type, e.g. a bool or a float where an int is expected); sizes that cannot be allocated give a
  clean ValueError / MemoryError, never a crash.
* An empty batch gives empty outputs and zero weight / bias gradients.
* fastcnn.info() and the FASTCNN_ISA environment variable.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import fastcnn
from conftest import normal
from fastcnn import ops

# ----------------------------------------------------------------------------------------------
# one valid call of every op: (function of the array arguments, the arrays)
# ----------------------------------------------------------------------------------------------
OpCase = tuple[Callable[..., Any], dict[str, np.ndarray]]


def op_cases() -> dict[str, OpCase]:
    rng = np.random.default_rng(7)
    x4 = normal(rng, (2, 3, 6, 7))
    w4 = normal(rng, (4, 3, 3, 3))
    _, idx = ops.max_pool2d(x4, 2, return_indices=True)
    probs = rng.random((5, 4)).astype(np.float32)
    return {
        "conv2d": (lambda x, w, b: ops.conv2d(x, w, b, padding=1),
                   {"x": x4, "w": w4, "b": normal(rng, (4,))}),
        "conv2d_backward": (lambda dy, x, w: ops.conv2d_backward(dy, x, w, padding=1),
                            {"dy": normal(rng, (2, 4, 6, 7)), "x": x4, "w": w4}),
        "conv2d_grouped": (lambda x, w: ops.conv2d(x, w, stride=2, groups=3),
                           {"x": x4, "w": normal(rng, (6, 1, 2, 2))}),
        "relu": (lambda x: ops.relu(x), {"x": normal(rng, (3, 4, 5))}),
        "relu_backward": (lambda dy, y: ops.relu_backward(dy, y),
                          {"dy": normal(rng, (3, 17)), "y": normal(rng, (3, 17))}),
        "max_pool2d": (lambda x: ops.max_pool2d(x, 2, return_indices=True), {"x": x4}),
        "max_pool2d_backward": (lambda dy, x: ops.max_pool2d_backward(dy, x, 2),
                                {"dy": normal(rng, (2, 3, 3, 3)), "x": x4}),
        "max_pool2d_backward_indices": (
            lambda dy, x, indices: ops.max_pool2d_backward(dy, x, 2, indices=indices),
            {"dy": normal(rng, (2, 3, 3, 3)), "x": x4, "indices": idx}),
        "linear": (lambda x, w, b: ops.linear(x, w, b),
                   {"x": normal(rng, (5, 9)), "w": normal(rng, (4, 9)), "b": normal(rng, (4,))}),
        "linear_backward": (lambda dy, x, w: ops.linear_backward(dy, x, w),
                            {"dy": normal(rng, (5, 4)), "x": normal(rng, (5, 9)),
                             "w": normal(rng, (4, 9))}),
        "softmax": (lambda x: ops.softmax(x, axis=1), {"x": normal(rng, (3, 5, 4))}),
        "log_softmax": (lambda x: ops.log_softmax(x), {"x": normal(rng, (3, 6))}),
        "cross_entropy": (lambda logits, labels: ops.cross_entropy(logits, labels),
                          {"logits": normal(rng, (5, 4)),
                           "labels": rng.integers(0, 4, size=5)}),
        "cross_entropy_probs": (lambda logits, labels: ops.cross_entropy(logits, labels),
                                {"logits": normal(rng, (5, 4)),
                                 "labels": probs / probs.sum(1, keepdims=True)}),
    }


CASES = op_cases()
FLOAT_ARGS = [(op, name) for op, (_, arrays) in CASES.items() for name, a in arrays.items()
              if a.dtype == np.float32]
BAD_KINDS = ["float64", "float16", "int32", "int64", "bool", "list"]
# integer probability "targets" are class ids: a different (valid) call, not a dtype error
DTYPE_CASES = [(op, name, kind) for op, name in FLOAT_ARGS for kind in BAD_KINDS
               if not (op == "cross_entropy_probs" and name == "labels"
                       and kind.startswith("int"))]


def _call(op: str, **replace: Any) -> Any:
    f, arrays = CASES[op]
    return f(**{**arrays, **replace})


def _flat(result: Any) -> list[Any]:
    return list(result) if isinstance(result, tuple) else [result]


def assert_same_results(a: Any, b: Any, what: str) -> None:
    for i, (u, v) in enumerate(zip(_flat(a), _flat(b), strict=True)):
        if isinstance(u, np.ndarray):
            assert u.dtype == v.dtype and u.shape == v.shape, f"{what}[{i}]"
            assert u.flags.c_contiguous and u.flags.writeable, f"{what}[{i}]: layout"
            assert np.array_equal(u.view(np.uint8), v.view(np.uint8)), f"{what}[{i}] differs"
        else:
            assert u == v or (u is None and v is None), f"{what}[{i}]: {u} vs {v}"


# ----------------------------------------------------------------------------------------------
# dtypes
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("op", "name", "kind"), DTYPE_CASES,
                         ids=[f"{o}-{n}-{k}" for o, n, k in DTYPE_CASES])
def test_non_float32_is_a_type_error(op: str, name: str, kind: str) -> None:
    a = CASES[op][1][name]
    bad = a.tolist() if kind == "list" else a.astype(kind)
    with pytest.raises(TypeError) as err:
        _call(op, **{name: bad})
    msg = str(err.value)
    assert re.sub(r"_(probs|indices|grouped)$", "", op) in msg, msg
    label = "labels" if name == "labels" else name
    assert f"{label} has dtype" in msg or f"{label} must be" in msg, msg
    assert "float32" in msg, msg
    if kind != "list" and name != "labels":
        assert f"{name}.astype(numpy.float32)" in msg, msg


def test_mixed_dtypes_name_the_float64_argument() -> None:
    x, w = CASES["conv2d"][1]["x"], CASES["conv2d"][1]["w"]
    with pytest.raises(TypeError, match=r"conv2d: w has dtype float64.*w\.astype"):
        ops.conv2d(x, w.astype(np.float64))
    with pytest.raises(TypeError, match=r"conv2d: x has dtype float64"):
        ops.conv2d(x.astype(np.float64), w)
    with pytest.raises(TypeError, match=r"linear: b has dtype float64"):
        ops.linear(np.zeros((2, 3), np.float32), np.zeros((4, 3), np.float32),
                   np.zeros(4, np.float64))


def test_scalars_and_other_objects_are_type_errors() -> None:
    for bad in (1.0, None, "x", np.float32(1.0)):
        with pytest.raises(TypeError, match=r"\bx\b"):
            ops.relu(bad)
    with pytest.raises(TypeError, match=r"\bw\b"):
        ops.linear(np.zeros((2, 3), np.float32), None)


@pytest.mark.parametrize("dtype", [np.int32, np.float32, np.uint64])
def test_indices_must_be_int64(dtype: Any) -> None:
    f, arrays = CASES["max_pool2d_backward_indices"]
    with pytest.raises(TypeError, match="indices"):
        f(**{**arrays, "indices": arrays["indices"].astype(dtype)})


def test_float32_with_a_non_canonical_dtype_object_is_accepted() -> None:
    """A float32 dtype carrying metadata is still native float32 and must be accepted (it is
    equivalent to numpy.float32: ``dtype == numpy.float32`` holds)."""
    x = CASES["relu"][1]["x"]
    dt = np.dtype(np.float32, metadata={"unit": "volt"})
    assert dt == np.float32
    assert np.array_equal(ops.relu(x.astype(dt)), ops.relu(x))
    xc, wc = CASES["conv2d"][1]["x"], CASES["conv2d"][1]["w"]
    assert np.array_equal(ops.conv2d(xc.astype(dt), wc), ops.conv2d(xc, wc))


def test_big_endian_float32_is_handled_or_refused() -> None:
    """Non-native byte order: either the right answer or a TypeError, never garbage."""
    x = CASES["relu"][1]["x"]
    try:
        y = ops.relu(x.astype(">f4"))
    except TypeError as err:
        assert "float32" in str(err)
    else:
        assert np.array_equal(y, ops.relu(x))


# ----------------------------------------------------------------------------------------------
# layouts: all copied once, same results
# ----------------------------------------------------------------------------------------------
def _misaligned(a: np.ndarray) -> np.ndarray:
    raw = bytearray(a.nbytes + a.itemsize)
    m = np.ndarray(a.shape, a.dtype, buffer=raw, offset=1)
    m[...] = a
    assert not m.flags.aligned
    return m


def _readonly(a: np.ndarray) -> np.ndarray:
    c = a.copy()
    c.flags.writeable = False
    return c


def _strided(a: np.ndarray) -> np.ndarray:
    buf = np.zeros((*a.shape[:-1], 2 * a.shape[-1]), a.dtype)
    buf[..., ::2] = a
    v = buf[..., ::2]
    assert not v.flags.c_contiguous
    return v


def _negative(a: np.ndarray) -> np.ndarray:
    v = np.flip(np.flip(a).copy())
    assert all(s < 0 for s in v.strides)
    return v


def _negative_last(a: np.ndarray) -> np.ndarray:
    return a[..., ::-1].copy()[..., ::-1]


def _broadcast_last(a: np.ndarray) -> np.ndarray:
    v = np.broadcast_to(a[..., :1], a.shape)
    assert v.strides[-1] == 0
    return v


def _broadcast_first(a: np.ndarray) -> np.ndarray:
    return np.broadcast_to(a[:1], a.shape)


def _everything(a: np.ndarray) -> np.ndarray:
    """Misaligned, read-only and negative-strided at once."""
    m = _misaligned(np.flip(a))
    v = np.flip(m)
    v.flags.writeable = False
    return v


LAYOUTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "fortran": np.asfortranarray,
    "strided": _strided,
    "negative": _negative,
    "negative-last": _negative_last,
    "broadcast-last": _broadcast_last,
    "broadcast-first": _broadcast_first,
    "misaligned": _misaligned,
    "readonly": _readonly,
    "misaligned-readonly-negative": _everything,
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("op", list(CASES))
def test_layouts_give_the_contiguous_result(isa: str, op: str, layout: str) -> None:
    make = LAYOUTS[layout]
    _, arrays = CASES[op]
    for name, a in arrays.items():
        v = make(a)
        assert np.array_equal(v, np.ascontiguousarray(v))
        expected = _call(op, **{name: np.ascontiguousarray(v)})
        before = v.copy()
        got = _call(op, **{name: v})
        assert_same_results(got, expected, f"[{isa}] {op} {name} {layout}")
        assert np.array_equal(v, before), f"{op}: {name} was modified"
    # every argument in that layout at once
    views = {name: make(a) for name, a in arrays.items()}
    expected = _call(op, **{n: np.ascontiguousarray(v) for n, v in views.items()})
    assert_same_results(_call(op, **views), expected, f"[{isa}] {op} all {layout}")


# ----------------------------------------------------------------------------------------------
# impossible shapes and options: ValueError (or TypeError for a wrong type) naming the argument
# ----------------------------------------------------------------------------------------------
def _z(*shape: int) -> np.ndarray:
    return np.zeros(shape, np.float32)


X, W, B = _z(2, 3, 6, 6), _z(4, 3, 3, 3), _z(4)
DY = _z(2, 4, 4, 4)  # conv2d(X, W) output
XP, DYP = _z(2, 3, 6, 6), _z(2, 3, 3, 3)  # pooling with kernel 2

VALUE_ERRORS: list[tuple[str, Callable[[], Any], str]] = [
    # conv2d options
    ("stride=0", lambda: ops.conv2d(X, W, stride=0), "stride"),
    ("stride=-1", lambda: ops.conv2d(X, W, stride=-1), "stride"),
    ("stride=(1,0)", lambda: ops.conv2d(X, W, stride=(1, 0)), "stride"),
    ("stride-3-tuple", lambda: ops.conv2d(X, W, stride=(1, 1, 1)), "stride"),
    ("dilation=0", lambda: ops.conv2d(X, W, dilation=0), "dilation"),
    ("dilation=(-1,1)", lambda: ops.conv2d(X, W, dilation=(-1, 1)), "dilation"),
    ("groups=0", lambda: ops.conv2d(X, W, groups=0), "groups"),
    ("groups=-3", lambda: ops.conv2d(X, W, groups=-3), "groups"),
    ("padding=-1", lambda: ops.conv2d(X, W, padding=-1), "padding"),
    ("padding=(1,-1)", lambda: ops.conv2d(X, W, padding=(1, -1)), "padding"),
    ("padding='full'", lambda: ops.conv2d(X, W, padding="full"), "padding"),
    ("groups-not-dividing-C", lambda: ops.conv2d(X, _z(4, 1, 3, 3), groups=2), "groups"),
    ("groups-not-dividing-K", lambda: ops.conv2d(_z(1, 6, 5, 5), _z(4, 2, 3, 3), groups=3),
     "groups"),
    ("w.shape[1]-mismatch", lambda: ops.conv2d(X, _z(4, 2, 3, 3)), r"\bw\b"),
    ("w.shape[1]-mismatch-groups", lambda: ops.conv2d(_z(1, 6, 5, 5), _z(4, 6, 3, 3), groups=2),
     r"\bw\b"),
    ("kernel>input", lambda: ops.conv2d(_z(1, 1, 2, 2), _z(1, 1, 3, 3)), "kernel"),
    ("kernel>input-width", lambda: ops.conv2d(_z(1, 1, 5, 2), _z(1, 1, 1, 4), padding=(0, 0)),
     "kernel"),
    ("dilated-kernel>padded-input", lambda: ops.conv2d(_z(1, 1, 3, 3), _z(1, 1, 2, 2),
                                                       dilation=3, padding=0), "kernel"),
    ("huge-dilation", lambda: ops.conv2d(X, W, dilation=2**30), "kernel|dilation"),
    ("huge-stride", lambda: ops.conv2d(X, W, stride=2**40), "stride"),
    ("x-3d", lambda: ops.conv2d(_z(3, 6, 6), W), r"\bx\b"),
    ("x-5d", lambda: ops.conv2d(_z(1, 2, 3, 6, 6), W), r"\bx\b"),
    ("w-2d", lambda: ops.conv2d(X, _z(4, 27)), r"\bw\b"),
    ("x-no-channels", lambda: ops.conv2d(_z(2, 0, 6, 6), _z(4, 0, 3, 3)), r"\bx\b|\bw\b"),
    ("x-no-width", lambda: ops.conv2d(_z(2, 3, 6, 0), W, padding=2), r"\bx\b"),
    ("w-no-filters", lambda: ops.conv2d(X, _z(0, 3, 3, 3)), r"\bw\b"),
    ("w-empty-kernel", lambda: ops.conv2d(X, _z(4, 3, 0, 3)), r"\bw\b"),
    ("bias-wrong-length", lambda: ops.conv2d(X, W, _z(5)), r"\bb\b"),
    ("bias-2d", lambda: ops.conv2d(X, W, _z(4, 1)), r"\bb\b"),
    # conv2d_backward
    ("conv-dy-shape", lambda: ops.conv2d_backward(_z(2, 4, 5, 4), X, W), r"\bdy\b"),
    ("conv-dy-channels", lambda: ops.conv2d_backward(_z(2, 3, 4, 4), X, W), r"\bdy\b"),
    ("conv-dy-batch", lambda: ops.conv2d_backward(_z(1, 4, 4, 4), X, W), r"\bdy\b"),
    ("conv-dy-rank", lambda: ops.conv2d_backward(_z(2, 4, 16), X, W), r"\bdy\b"),
    ("conv-dy-other-padding", lambda: ops.conv2d_backward(DY, X, W, padding=1), r"\bdy\b"),
    ("conv-bwd-stride=0", lambda: ops.conv2d_backward(DY, X, W, stride=0), "stride"),
    ("conv-bwd-groups", lambda: ops.conv2d_backward(DY, X, W, groups=2), "groups"),
    ("conv-bwd-w-mismatch", lambda: ops.conv2d_backward(DY, X, _z(4, 2, 3, 3)), r"\bw\b"),
    # max_pool2d
    ("pool-kernel=0", lambda: ops.max_pool2d(XP, 0), "kernel_size"),
    ("pool-kernel=(2,-1)", lambda: ops.max_pool2d(XP, (2, -1)), "kernel_size"),
    ("pool-stride=0", lambda: ops.max_pool2d(XP, 2, stride=0), "stride"),
    ("pool-dilation=0", lambda: ops.max_pool2d(XP, 2, dilation=0), "dilation"),
    ("pool-padding=-1", lambda: ops.max_pool2d(XP, 3, padding=-1), "padding"),
    ("pool-padding>k/2", lambda: ops.max_pool2d(XP, 3, padding=2), "padding"),
    ("pool-padding>k/2-pair", lambda: ops.max_pool2d(XP, (3, 2), padding=(1, 2)), "padding"),
    ("pool-padding-k1", lambda: ops.max_pool2d(XP, 1, padding=1), "padding"),
    ("pool-window>input", lambda: ops.max_pool2d(_z(1, 1, 2, 5), 3), "window|kernel"),
    ("pool-dilated-window>input", lambda: ops.max_pool2d(_z(1, 1, 4, 4), 2, dilation=4),
     "window|kernel"),
    ("pool-empty-window", lambda: ops.max_pool2d(_z(1, 1, 1, 1), 2, stride=1, padding=1,
                                                 dilation=2), "window"),
    ("pool-x-3d", lambda: ops.max_pool2d(_z(3, 6, 6), 2), r"\bx\b"),
    ("pool-x-no-channels", lambda: ops.max_pool2d(_z(2, 0, 6, 6), 2), r"\bx\b"),
    ("pool-x-no-height", lambda: ops.max_pool2d(_z(2, 3, 0, 6), 1), r"\bx\b|window"),
    ("pool-dy-shape", lambda: ops.max_pool2d_backward(_z(2, 3, 3, 2), XP, 2), r"\bdy\b"),
    ("pool-dy-rank", lambda: ops.max_pool2d_backward(_z(2, 3, 9), XP, 2), r"\bdy\b"),
    ("pool-dy-other-stride", lambda: ops.max_pool2d_backward(DYP, XP, 2, stride=1), r"\bdy\b"),
    ("pool-bwd-padding>k/2", lambda: ops.max_pool2d_backward(DYP, XP, 2, padding=2), "padding"),
    ("pool-indices-shape",
     lambda: ops.max_pool2d_backward(DYP, XP, 2, indices=np.zeros((2, 3, 3, 2), np.int64)),
     "indices"),
    ("pool-indices-range",
     lambda: ops.max_pool2d_backward(DYP, XP, 2, indices=np.full((2, 3, 3, 3), 36, np.int64)),
     "indices"),
    # linear
    ("linear-x-1d", lambda: ops.linear(_z(5), _z(4, 5)), r"\bx\b"),
    ("linear-x-3d", lambda: ops.linear(_z(2, 5, 1), _z(4, 5)), r"\bx\b"),
    ("linear-w-1d", lambda: ops.linear(_z(2, 5), _z(5)), r"\bw\b"),
    ("linear-in-mismatch", lambda: ops.linear(_z(2, 5), _z(4, 6)), r"\bw\b"),
    ("linear-bias-length", lambda: ops.linear(_z(2, 5), _z(4, 5), _z(5)), r"\bb\b"),
    ("linear-bias-2d", lambda: ops.linear(_z(2, 5), _z(4, 5), _z(1, 4)), r"\bb\b"),
    ("linear-no-outputs", lambda: ops.linear(_z(2, 5), _z(0, 5)), r"\bw\b"),
    ("linear-no-inputs", lambda: ops.linear(_z(2, 0), _z(4, 0)), r"\bw\b|\bx\b"),
    ("linear-dy-shape", lambda: ops.linear_backward(_z(2, 3), _z(2, 5), _z(4, 5)), r"\bdy\b"),
    ("linear-dy-batch", lambda: ops.linear_backward(_z(3, 4), _z(2, 5), _z(4, 5)), r"\bdy\b"),
    ("linear-dy-rank", lambda: ops.linear_backward(_z(8), _z(2, 5), _z(4, 5)), r"\bdy\b"),
    ("linear-bwd-in-mismatch", lambda: ops.linear_backward(_z(2, 4), _z(2, 5), _z(4, 6)),
     r"\bw\b"),
    # relu, softmax, cross-entropy
    ("relu-dy-shape", lambda: ops.relu_backward(_z(2, 3), _z(2, 4)), r"\bdy\b"),
    ("relu-dy-rank", lambda: ops.relu_backward(_z(6), _z(2, 3)), r"\bdy\b"),
    ("softmax-axis", lambda: ops.softmax(_z(2, 3), axis=2), "axis"),
    ("log_softmax-axis", lambda: ops.log_softmax(_z(2, 3), axis=-3), "axis"),
    ("ce-label-range", lambda: ops.cross_entropy(_z(2, 3), np.array([0, 3])), "labels"),
    ("ce-label-negative", lambda: ops.cross_entropy(_z(2, 3), np.array([-1, 0])), "labels"),
    ("ce-label-uint64-huge", lambda: ops.cross_entropy(_z(2, 3), np.array([0, 2**64 - 1],
                                                                          np.uint64)), "labels"),
    ("ce-label-shape", lambda: ops.cross_entropy(_z(2, 3), np.array([0, 1, 2])), "labels"),
    ("ce-probs-shape", lambda: ops.cross_entropy(_z(2, 3), _z(2, 4)), "labels"),
    ("ce-logits-1d", lambda: ops.cross_entropy(_z(3), np.array([0])), "logits"),
]


@pytest.mark.parametrize(("call", "pattern"), [pytest.param(c, p, id=i) for i, c, p in
                                               VALUE_ERRORS])
def test_impossible_arguments_are_value_errors(call: Callable[[], Any], pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        call()


TYPE_ERRORS: list[tuple[str, Callable[[], Any], str]] = [
    ("stride=True", lambda: ops.conv2d(X, W, stride=True), "stride"),
    ("stride=1.0", lambda: ops.conv2d(X, W, stride=1.0), "stride"),
    ("stride=(1,True)", lambda: ops.conv2d(X, W, stride=(1, True)), "stride"),
    ("stride=np.bool_", lambda: ops.conv2d(X, W, stride=np.True_), "stride"),
    ("stride='1'", lambda: ops.conv2d(X, W, stride="1"), "stride"),
    ("padding=False", lambda: ops.conv2d(X, W, padding=False), "padding"),
    ("padding=(0,True)", lambda: ops.conv2d(X, W, padding=(0, True)), "padding"),
    ("padding=1.5", lambda: ops.conv2d(X, W, padding=1.5), "padding"),
    ("dilation=True", lambda: ops.conv2d(X, W, dilation=True), "dilation"),
    ("groups=True", lambda: ops.conv2d(X, W, groups=True), "groups"),
    ("groups=1.0", lambda: ops.conv2d(X, W, groups=1.0), "groups"),
    ("conv-relu=1", lambda: ops.conv2d(X, W, relu=1), "relu"),
    ("conv-bwd-bias=1", lambda: ops.conv2d_backward(DY, X, W, bias=1), "bias"),
    ("conv-bwd-stride=True", lambda: ops.conv2d_backward(DY, X, W, stride=True), "stride"),
    ("pool-kernel=True", lambda: ops.max_pool2d(XP, True), "kernel_size"),
    ("pool-kernel=2.0", lambda: ops.max_pool2d(XP, 2.0), "kernel_size"),
    ("pool-stride=True", lambda: ops.max_pool2d(XP, 2, stride=True), "stride"),
    ("pool-padding=True", lambda: ops.max_pool2d(XP, 2, padding=True), "padding"),
    ("pool-dilation=(1,False)", lambda: ops.max_pool2d(XP, 2, dilation=(1, False)), "dilation"),
    ("pool-ceil_mode=1", lambda: ops.max_pool2d(XP, 2, ceil_mode=1), "ceil_mode"),
    ("pool-return_indices='yes'", lambda: ops.max_pool2d(XP, 2, return_indices="yes"),
     "return_indices"),
    ("pool-bwd-ceil_mode=0", lambda: ops.max_pool2d_backward(DYP, XP, 2, ceil_mode=0),
     "ceil_mode"),
    ("linear-relu=1", lambda: ops.linear(_z(2, 5), _z(4, 5), relu=1), "relu"),
    ("linear-bwd-bias=None", lambda: ops.linear_backward(_z(2, 4), _z(2, 5), _z(4, 5), bias=None),
     "bias"),
    ("softmax-axis=True", lambda: ops.softmax(_z(2, 3), axis=True), "axis"),
    ("softmax-axis=1.0", lambda: ops.softmax(_z(2, 3), axis=1.0), "axis"),
    ("set_num_threads(True)", lambda: fastcnn.set_num_threads(True), r"\bn\b"),
    ("set_num_threads(2.0)", lambda: fastcnn.set_num_threads(2.0), r"\bn\b"),
]


@pytest.mark.parametrize(("call", "pattern"), [pytest.param(c, p, id=i) for i, c, p in
                                               TYPE_ERRORS])
def test_wrong_option_types_are_type_errors(call: Callable[[], Any], pattern: str) -> None:
    with pytest.raises(TypeError, match=pattern):
        call()


def test_numpy_integers_are_accepted_as_ints() -> None:
    x, w = normal(np.random.default_rng(0), (1, 2, 7, 7)), normal(np.random.default_rng(1),
                                                                  (2, 2, 3, 3))
    a = ops.conv2d(x, w, stride=np.int64(2), padding=(np.int32(1), 1), groups=np.uint8(1))
    assert np.array_equal(a, ops.conv2d(x, w, stride=2, padding=1))
    p = ops.max_pool2d(x, np.int16(2), stride=np.int64(1))
    assert np.array_equal(p, ops.max_pool2d(x, 2, stride=1))


def test_set_num_threads_rejects_zero() -> None:
    with pytest.raises(ValueError, match=r"\bn\b"):
        fastcnn.set_num_threads(0)
    with pytest.raises(ValueError, match=r"\bn\b"):
        fastcnn.set_num_threads(-2)


# ----------------------------------------------------------------------------------------------
# sizes too large to exist: a clean error, never a crash
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("padding", [2**20, (2**21, 2**19), 2**30, 2**31 - 1, 2**31, 2**62])
def test_huge_padding_is_a_clean_error(padding: Any) -> None:
    """conv2d of a 1x1 image with enormous padding: 2^40+ output elements."""
    x, w = _z(1, 1, 1, 1), np.ones((1, 1, 1, 1), np.float32)
    with pytest.raises((ValueError, MemoryError)):
        ops.conv2d(x, w, padding=padding)


BEYOND_INT64: list[tuple[str, Callable[[], Any], str]] = [
    ("conv-padding", lambda: ops.conv2d(X, W, padding=2**80), "padding"),
    ("conv-stride", lambda: ops.conv2d(X, W, stride=(1, 2**64)), "stride"),
    ("conv-groups", lambda: ops.conv2d(X, W, groups=2**64), "groups"),
    ("pool-kernel", lambda: ops.max_pool2d(XP, 2**70), "kernel_size"),
]


@pytest.mark.parametrize(("call", "pattern"), [pytest.param(c, p, id=i) for i, c, p in
                                               BEYOND_INT64])
def test_options_beyond_int64_are_value_errors(call: Callable[[], Any], pattern: str) -> None:
    """An int option too large for the compiled module's int64 is an impossible value like any
    other: ValueError naming the argument (not pybind11's "incompatible function arguments")."""
    with pytest.raises(ValueError, match=pattern):
        call()


def test_huge_padding_in_backward_is_a_clean_error() -> None:
    x, w = _z(1, 1, 1, 1), np.ones((1, 1, 1, 1), np.float32)
    with pytest.raises((ValueError, MemoryError)):
        ops.conv2d_backward(_z(1, 1, 1, 1), x, w, padding=2**20)


def test_huge_broadcast_input_is_a_clean_error() -> None:
    """A zero-stride view of 2^44 elements must be copied: MemoryError, not a crash."""
    x = np.broadcast_to(np.zeros(1, np.float32), (2**16, 1, 2**14, 2**14))
    with pytest.raises((MemoryError, ValueError)):
        ops.relu(x)
    with pytest.raises((MemoryError, ValueError)):
        ops.max_pool2d(x, 2)


def test_huge_pool_kernel_is_a_clean_error() -> None:
    with pytest.raises(ValueError):
        ops.max_pool2d(_z(1, 1, 4, 4), 2**40)
    with pytest.raises(ValueError):
        ops.max_pool2d(_z(1, 1, 4, 4), 2, stride=2**40, dilation=2**40)


# ----------------------------------------------------------------------------------------------
# empty batch
# ----------------------------------------------------------------------------------------------
def test_empty_batch(isa: str) -> None:
    rng = np.random.default_rng(3)
    x, w, b = _z(0, 3, 6, 6), normal(rng, (4, 3, 3, 3)), normal(rng, (4,))
    y = ops.conv2d(x, w, b, padding=1, relu=True)
    assert y.shape == (0, 4, 6, 6) and y.dtype == np.float32
    dx, dw, db = ops.conv2d_backward(_z(0, 4, 3, 3), x, w, stride=2, padding=1)
    assert dx.shape == (0, 3, 6, 6)
    assert dw.shape == w.shape and not dw.any() and not np.signbit(dw).any()
    assert db.shape == (4,) and not db.any()

    y, idx = ops.max_pool2d(_z(0, 3, 6, 6), 2, return_indices=True)
    assert y.shape == idx.shape == (0, 3, 3, 3) and idx.dtype == np.int64
    assert ops.max_pool2d_backward(_z(0, 3, 3, 3), _z(0, 3, 6, 6), 2).shape == (0, 3, 6, 6)
    assert ops.max_pool2d_backward(_z(0, 3, 3, 3), _z(0, 3, 6, 6), 2,
                                   indices=idx).shape == (0, 3, 6, 6)

    wl, bl = normal(rng, (4, 5)), normal(rng, (4,))
    assert ops.linear(_z(0, 5), wl, bl, relu=True).shape == (0, 4)
    dx, dw, db = ops.linear_backward(_z(0, 4), _z(0, 5), wl)
    assert dx.shape == (0, 5) and dw.shape == (4, 5) and db.shape == (4,)
    assert not dw.any() and not db.any()

    assert ops.relu(_z(0, 7)).shape == (0, 7)
    assert ops.relu_backward(_z(0), _z(0)).shape == (0,)
    assert ops.softmax(_z(0, 7)).shape == (0, 7)
    loss, d = ops.cross_entropy(_z(0, 7), np.zeros(0, np.uint8))
    assert loss == 0.0 and d.shape == (0, 7)


# ----------------------------------------------------------------------------------------------
# info() and FASTCNN_ISA
# ----------------------------------------------------------------------------------------------
def test_info_keys_and_types() -> None:
    info = fastcnn.info()
    assert isinstance(info, dict)
    types = {"version": str, "cpu_isa": str, "num_threads": int, "cuda_built": bool,
             "cuda_available": bool}
    for key, t in types.items():
        assert key in info, key
        assert type(info[key]) is t, f"{key}: {type(info[key]).__name__}"
    assert info["version"] == fastcnn.__version__
    assert info["cpu_isa"] in ("avx512", "avx2", "generic")
    assert info["num_threads"] >= 1 and info["num_threads"] == fastcnn.num_threads()
    assert not info["cuda_available"] or info["cuda_built"]
    fastcnn.set_num_threads(1)
    assert fastcnn.info()["num_threads"] == 1


def test_set_isa_is_capped_and_validated() -> None:
    from fastcnn import _cpu

    order = ["generic", "avx2", "avx512"]
    best = _cpu.best_isa()
    assert fastcnn.info()["cpu_isa_best"] == best
    for name in order:
        got = _cpu.set_isa(name)
        assert got == order[min(order.index(name), order.index(best))]
        assert _cpu.isa() == got == fastcnn.info()["cpu_isa"]
    with pytest.raises(ValueError):
        _cpu.set_isa("sse9")


def _info_in_subprocess(isa_env: str) -> tuple[int, str, str]:
    env = {**os.environ, "FASTCNN_ISA": isa_env}
    code = "import fastcnn; i = fastcnn.info(); print(i['cpu_isa'], i['cpu_isa_best'])"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=120, check=False)
    return r.returncode, r.stdout.strip(), r.stderr


def test_fastcnn_isa_environment_caps_the_kernels() -> None:
    rc, out, err = _info_in_subprocess("generic")
    assert rc == 0, err
    assert out.split()[0] == "generic", out
    if fastcnn._cpu.best_isa() in ("avx2", "avx512"):
        rc, out, err = _info_in_subprocess("avx2")
        assert rc == 0 and out.split()[0] == "avx2", (out, err)


@pytest.mark.parametrize("value", ["bogus", "AVX9000", "", " generic"])
def test_invalid_fastcnn_isa_does_not_break_the_import(value: str) -> None:
    rc, out, err = _info_in_subprocess(value)
    assert rc == 0, err
    assert out.split()[0] in ("avx512", "avx2", "generic"), out
