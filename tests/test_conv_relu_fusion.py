"""The models fuse a Conv2D / Dense without an activation of its own with the ReLU layer that
alone reads its output (:func:`fastcnn.layers.base.fused_activation`): the kernel applies the
ReLU in its GEMM epilogue (``ops.conv2d(..., relu=True)`` / ``ops.linear(..., relu=True)``) and
masks the gradient in its backward (``relu_y``), the ReLU layer passes through. At inference
the copy of a Conv2D / Dense into which a BatchNormalization was folded applies the ReLU after
that BatchNormalization too (Conv -> BN -> ReLU is one conv call in a ResNet's predict).
Training steps, predictions and weights are the bits of the unfused models (the private switch
``fastcnn.layers.base._FUSE_ACTIVATIONS`` turns the fusion off); the pairs that must run apart
(fan-out, an own non-ReLU activation, a producer that is an output) do; the Conv2D -> MaxPool2D
fused backward still runs; the ONNX export keeps exactly one Relu per ReLU layer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import fastcnn as fc
from _bitwise import same_bits, step_data
from fastcnn import layers as L
from fastcnn import ops
from fastcnn.layers import base as layers_base


class _Counts:
    """Counts ops.relu calls (unfused ReLU layers), and the conv2d / linear calls with
    ``relu=True`` (own or fused ReLUs) and conv2d_backward calls with ``pool_indices``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.relu = self.conv_relu = self.linear_relu = self.pooled = 0
        real_relu, real_conv, real_lin = ops.relu, ops.conv2d, ops.linear
        real_conv_bw = ops.conv2d_backward

        def relu(*a: Any, **k: Any) -> Any:
            self.relu += 1
            return real_relu(*a, **k)

        def conv2d(*a: Any, **k: Any) -> Any:
            self.conv_relu += bool(k.get("relu"))
            return real_conv(*a, **k)

        def linear(*a: Any, **k: Any) -> Any:
            self.linear_relu += bool(k.get("relu"))
            return real_lin(*a, **k)

        def conv2d_backward(*a: Any, **k: Any) -> Any:
            self.pooled += k.get("pool_indices") is not None
            return real_conv_bw(*a, **k)

        monkeypatch.setattr(ops, "relu", relu)
        monkeypatch.setattr(ops, "conv2d", conv2d)
        monkeypatch.setattr(ops, "linear", linear)
        monkeypatch.setattr(ops, "conv2d_backward", conv2d_backward)

    def snapshot(self) -> tuple[int, int, int, int]:
        return (self.relu, self.conv_relu, self.linear_relu, self.pooled)


def _diff(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(v - u for u, v in zip(a, b, strict=True))


def _randomise_bn(model: Any, rng: np.random.Generator) -> None:
    """Random moving statistics and affine weights in every BatchNormalization (so a folded
    BN is no near-identity and the ReLU after it cuts something)."""
    for lay in model.layers:
        if isinstance(lay, L.BatchNormalization):
            c = lay.params["moving_mean"].shape
            lay.params["moving_mean"][...] = rng.standard_normal(c) * 0.3
            lay.params["moving_variance"][...] = rng.uniform(0.5, 2.0, c)
            lay.params["gamma"][...] = rng.uniform(0.5, 1.5, c)
            lay.params["beta"][...] = rng.standard_normal(c) * 0.3


def _run(make: Callable[[], Any], fuse: bool, monkeypatch: pytest.MonkeyPatch,
         xs: np.ndarray, ys: np.ndarray, steps: int
         ) -> tuple[list[Any], tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(results, counts in the last training step, in one predict, in one model(x))."""
    monkeypatch.setattr(layers_base, "_FUSE_ACTIVATIONS", fuse)
    m = make()
    _randomise_bn(m, np.random.default_rng(7))
    m.compile(fc.optimizers.SGD(0.05, momentum=0.9), "sparse_categorical_crossentropy")
    c = _Counts(monkeypatch)
    out: list[Any] = []
    train = c.snapshot()
    for i in range(steps):
        before = c.snapshot()
        out.append(m.train_on_batch(xs[i], ys[i]))
        train = _diff(before, c.snapshot())
    before = c.snapshot()
    out.append(m.predict(xs[0], verbose=0))
    pred = _diff(before, c.snapshot())
    before = c.snapshot()
    out.append(m(xs[1]))
    call = _diff(before, c.snapshot())
    out.append(m.evaluate(xs[0], ys[0], verbose=0))
    out.extend(m.get_weights())
    return out, train, pred, call


def _compare(make: Callable[[], Any], monkeypatch: pytest.MonkeyPatch, xs: np.ndarray,
             ys: np.ndarray, steps: int) -> tuple[tuple[int, ...], ...]:
    fused, f_train, f_pred, f_call = _run(make, True, monkeypatch, xs, ys, steps)
    unfused, u_train, u_pred, u_call = _run(make, False, monkeypatch, xs, ys, steps)
    same_bits(fused, unfused)
    assert f_pred == f_call and u_pred == u_call
    return f_train, u_train, f_pred, u_pred


# --------------------------------------------------------------------------------------------
# the hooks


def test_fused_activation_pairs() -> None:
    relu = L.ReLU()
    for prod in (L.Conv2D(2, 3), L.Conv2D(2, 3, activation="linear"), L.Dense(3)):
        assert layers_base.fused_activation(prod, relu) == "relu"
        assert layers_base.fused_activation(prod, L.Activation("relu")) == "relu"
        assert layers_base.fused_activation(prod, L.LeakyReLU()) is None
        assert layers_base.fused_activation(prod, L.Activation("sigmoid")) is None
    for act in ("relu", "tanh", "leaky_relu", "softmax"):  # an own activation: never
        assert layers_base.fused_activation(L.Conv2D(2, 3, activation=act), relu) is None
        assert layers_base.fused_activation(L.Dense(2, activation=act), relu) is None


class _ClippedReLU(L.ReLU):
    """A user subclass with its own forward: never run as a pass-through."""

    def forward(self, x, training=False, apply_activation=True):
        return np.minimum(super().forward(x, training, apply_activation), 0.5)


class _ScaledConv(L.Conv2D):
    """A user subclass whose forward has no ``fused_activation`` argument."""

    def forward(self, x, training=False, apply_activation=True):
        return super().forward(x, training, apply_activation) * np.float32(2)


def test_user_subclasses_run_apart(monkeypatch: pytest.MonkeyPatch,
                                   rng: np.random.Generator) -> None:
    assert layers_base.fused_activation(L.Conv2D(2, 3), _ClippedReLU()) is None
    assert layers_base.fused_activation(_ScaledConv(2, 3), L.ReLU()) is None
    m = fc.Sequential([_ScaledConv(3, 3), L.ReLU(), L.Conv2D(3, 3), _ClippedReLU()],
                      input_shape=(2, 7, 7), seed=1)
    x = rng.standard_normal((3, 2, 7, 7)).astype(np.float32)
    c = _Counts(monkeypatch)
    y = m.predict(x, verbose=0)
    assert c.snapshot()[:2] == (2, 0) and y.max() == np.float32(0.5)


def test_bad_fused_activation_is_a_value_error() -> None:
    conv, dense = L.Conv2D(2, 3, activation="tanh"), L.Dense(3)
    conv.build((1, 5, 5))
    dense.build((4,))
    with pytest.raises(ValueError, match=r"fused_activation.*'tanh'"):
        conv.forward(np.zeros((1, 1, 5, 5), np.float32), fused_activation="relu")
    with pytest.raises(ValueError, match=r"fused_activation.*'sigmoid'"):
        dense.forward(np.zeros((2, 4), np.float32), fused_activation="sigmoid")


@pytest.mark.parametrize("kind", ["conv", "dense"])
def test_layer_fused_forward_backward_is_the_pair(kind: str, rng: np.random.Generator) -> None:
    """The layer alone: forward(fused_activation='relu') and its backward are the bits of the
    layer then ops.relu / ops.relu_backward."""
    lay = L.Conv2D(4, 3, padding="same") if kind == "conv" else L.Dense(5)
    shape = (3, 6, 6) if kind == "conv" else (7,)
    lay.build(shape, np.random.default_rng(1))
    x = rng.standard_normal((4, *shape)).astype(np.float32)
    y = lay.forward(x, training=True, fused_activation="relu")
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = lay.backward(dy)
    grads = [g.copy() for g in lay.grads.values()]
    z = lay.forward(x, training=True)
    y0 = ops.relu(z)
    dx0 = lay.backward(ops.relu_backward(dy, y0))
    same_bits([y, dx, *grads], [y0, dx0, *lay.grads.values()])
    assert (y == 0).any() and (y > 0).any()


# --------------------------------------------------------------------------------------------
# Sequential


def _seq() -> Any:
    """Conv -> ReLU (fused), a frozen Conv -> Activation("relu") (fused, dx only), Conv ->
    ReLU -> MaxPool, Conv(relu) -> MaxPool (its pooled backward), Conv -> BN -> ReLU (folded at
    inference, the fold applies the ReLU), Conv(tanh) -> ReLU (apart), Dense -> ReLU (fused),
    Dense -> BN -> ReLU (folded), Dense -> softmax."""
    return fc.Sequential([
        L.Conv2D(6, 3, padding="same"), L.ReLU(),
        L.Conv2D(6, 3, padding="same", trainable=False), L.Activation("relu"),
        L.Conv2D(6, 3, padding="same"), L.ReLU(), L.MaxPool2D(2),
        L.Conv2D(6, 3, padding="same", activation="relu"), L.MaxPool2D(2),
        L.Conv2D(6, 1, use_bias=False), L.BatchNormalization(), L.ReLU(),
        L.Conv2D(6, 1, activation="tanh"), L.ReLU(), L.Flatten(),
        L.Dense(10), L.ReLU(), L.Dense(8), L.BatchNormalization(), L.ReLU(),
        L.Dense(4), L.Activation("softmax"),
    ], input_shape=(3, 8, 8), seed=3)


def test_sequential_fused_is_bitwise_the_unfused(monkeypatch: pytest.MonkeyPatch,
                                                 rng: np.random.Generator) -> None:
    xs, ys = step_data(rng, 4, 16, (3, 8, 8), 4)
    f_train, u_train, f_pred, u_pred = _compare(_seq, monkeypatch, xs, ys, 4)
    # (ops.relu, conv2d relu=True, linear relu=True, pooled conv backward)
    # training: 3 conv -> ReLU and 1 Dense -> ReLU fused; the BN pairs are fused with the BN
    # (not counted: ops.batch_norm relu=True); Conv(tanh) -> ReLU runs apart
    assert u_train == (7, 1, 0, 1)
    assert f_train == (1, 4, 1, 1)
    # inference: each BN folded into its conv / Dense, whose copy applies the ReLU
    assert u_pred == (7, 1, 0, 0)
    assert f_pred == (1, 5, 2, 0)


def test_sequential_relu_output_and_logits(monkeypatch: pytest.MonkeyPatch,
                                           rng: np.random.Generator) -> None:
    """A ReLU that is the model's output is fused (its value is the producer's); with
    ``logits=True`` the skipped last activation keeps the producer apart."""
    def make() -> Any:
        return fc.Sequential([L.Flatten(), L.Dense(6), L.ReLU()], input_shape=(2, 3, 3),
                             seed=2)

    x = rng.standard_normal((5, 2, 3, 3)).astype(np.float32)
    got = {}
    for fuse in (True, False):
        monkeypatch.setattr(layers_base, "_FUSE_ACTIVATIONS", fuse)
        m = make()
        c = _Counts(monkeypatch)
        got[fuse] = (m.predict(x, verbose=0), m._forward(x, False, logits=True), c.snapshot())
    same_bits(list(got[True][:2]), list(got[False][:2]))
    assert got[True][2] == (0, 0, 1, 0) and got[False][2] == (1, 0, 0, 0)
    assert (got[True][1] < 0).any()  # logits: the ReLU skipped, not fused


# --------------------------------------------------------------------------------------------
# graph models


def _graph() -> Any:
    x = fc.Input((3, 6, 6))
    relu = L.ReLU()  # a shared ReLU layer
    a = relu(L.Conv2D(4, 3, padding="same")(x))                    # fused
    shared = L.Conv2D(4, 3, padding="same")
    s1 = relu(shared(a))                                           # fused at this call
    s2 = shared(s1)                                                # fans out: apart
    b = L.Add()([L.ReLU()(s2), s2])
    t = L.ReLU()(L.Conv2D(4, 1, activation="tanh")(b))            # own activation: apart
    c = L.BatchNormalization()(L.Conv2D(4, 3, padding="same", use_bias=False)(t))
    c = L.Activation("relu")(c)                                    # BN pair; folded at inference
    d = L.ReLU()(L.Dense(5)(L.GlobalAveragePooling2D()(c)))       # fused
    y = L.Dense(3, activation="softmax")(d)
    return fc.Model(x, y, seed=5)


def test_graph_fused_is_bitwise_the_unfused(monkeypatch: pytest.MonkeyPatch,
                                            rng: np.random.Generator) -> None:
    xs, ys = step_data(rng, 3, 6, (3, 6, 6), 3)
    f_train, u_train, f_pred, u_pred = _compare(_graph, monkeypatch, xs, ys, 3)
    assert u_train == (6, 0, 0, 0) and u_pred == (6, 0, 0, 0)
    # training: conv, the shared conv's first call and the Dense fused, the BN pair fused
    # with the BN; the fan-out and tanh ReLUs apart
    assert f_train == (2, 2, 1, 0)
    # inference: and the BN folded into its conv, whose copy applies the ReLU
    assert f_pred == (2, 3, 1, 0)


def test_graph_producer_output_is_not_fused(monkeypatch: pytest.MonkeyPatch,
                                            rng: np.random.Generator) -> None:
    """A conv whose output is a model output keeps its own value: its ReLU runs apart."""
    def make() -> Any:
        x = fc.Input((2, 5, 5))
        h = L.Conv2D(3, 3)(x)
        return fc.Model(x, [h, L.ReLU()(h)], seed=1)

    x = rng.standard_normal((4, 2, 5, 5)).astype(np.float32)
    outs = {}
    for fuse in (True, False):
        monkeypatch.setattr(layers_base, "_FUSE_ACTIVATIONS", fuse)
        m = make()
        c = _Counts(monkeypatch)
        outs[fuse] = m.predict(x, verbose=0)
        assert c.snapshot() == (1, 0, 0, 0)
    same_bits(list(outs[True]), list(outs[False]))
    assert (outs[True][0] < 0).any()


def test_resnet20_predict_is_one_conv_call_per_conv_bn_relu(
        monkeypatch: pytest.MonkeyPatch, rng: np.random.Generator) -> None:
    xs, ys = step_data(rng, 2, 8, (3, 32, 32), 10)
    f_train, u_train, f_pred, u_pred = _compare(lambda: fc.models.resnet(20), monkeypatch,
                                                xs, ys, 2)
    # 19 ReLUs: 10 after a BN (stem + first conv of 9 blocks), 9 after an Add
    assert u_train[0] == 19 and f_train[0] == 9  # training: the BN pairs fused in the BN
    assert u_pred[:3] == (19, 0, 0)
    assert f_pred[:3] == (9, 10, 0)  # inference: the 10 folded convs apply their ReLU


# --------------------------------------------------------------------------------------------
# ONNX export: one Relu per ReLU layer, the runtime agrees


def _max_rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-30))


@pytest.mark.parametrize("which", ["conv_bn_relu", "resnet20"])
@pytest.mark.parametrize("fold", [True, False])
def test_onnx_export_keeps_each_relu_once(which: str, fold: bool,
                                          rng: np.random.Generator) -> None:
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from fastcnn.onnx import to_onnx

    if which == "resnet20":
        m, shape, relus = fc.models.resnet(20), (3, 32, 32), 19
    else:
        m = fc.Sequential([L.Conv2D(5, 3, padding="same"), L.BatchNormalization(), L.ReLU(),
                           L.Conv2D(4, 3), L.ReLU(), L.Flatten(), L.Dense(6),
                           L.BatchNormalization(), L.Activation("relu"), L.Dense(3)],
                          input_shape=(3, 8, 8), seed=4)
        shape, relus = (3, 8, 8), 3
    _randomise_bn(m, rng)
    x = rng.standard_normal((4, *shape)).astype(np.float32)
    proto = to_onnx(m, fold_batch_norm=fold)
    ops_in = [n.op_type for n in proto.graph.node]
    assert ops_in.count("Relu") == relus
    assert ("BatchNormalization" in ops_in) is not fold
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    want = m.predict(x, verbose=0)
    assert _max_rel(got, want) <= 1e-5
