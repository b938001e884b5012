"""The models fuse a BatchNormalization with the ReLU that alone reads its output
(:func:`fastcnn.layers.base.fused_activation`): a Sequential and a graph Model (ResNet-20) run
it fused in training and, where the BatchNormalization is not folded, at inference; the ReLU
layer passes through. Training steps, predictions and weights are the bits of the unfused
models (the private switch ``fastcnn.layers.base._FUSE_ACTIVATIONS`` turns the fusion off);
a BatchNormalization whose output has another reader, or is followed by another activation,
runs apart.
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


def _count_relu(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the calls of ops.relu (the unfused ReLU layers' forward)."""
    calls = [0]
    real = ops.relu

    def counting(*a: Any, **k: Any) -> Any:
        calls[0] += 1
        return real(*a, **k)

    monkeypatch.setattr(ops, "relu", counting)
    return calls


def _run(make: Callable[[], Any], fuse: bool, monkeypatch: pytest.MonkeyPatch,
         xs: np.ndarray, ys: np.ndarray, steps: int) -> tuple[list[Any], int, int]:
    """(results, relu calls in one training forward, relu calls in one predict)."""
    monkeypatch.setattr(layers_base, "_FUSE_ACTIVATIONS", fuse)
    m = make()
    m.compile(fc.optimizers.SGD(0.05, momentum=0.9), "sparse_categorical_crossentropy")
    calls = _count_relu(monkeypatch)
    out: list[Any] = []
    for i in range(steps):
        before = calls[0]
        out.append(m.train_on_batch(xs[i], ys[i]))
        train_calls = calls[0] - before
    before = calls[0]
    out.append(m.predict(xs[0], verbose=0))
    predict_calls = calls[0] - before
    out.extend(m.get_weights())
    return out, train_calls, predict_calls


def test_resnet20_training_fused_is_bitwise_the_unfused(monkeypatch: pytest.MonkeyPatch,
                                                        rng: np.random.Generator) -> None:
    xs, ys = step_data(rng, 3, 8, (3, 32, 32), 10)
    make = lambda: fc.models.resnet(20)  # noqa: E731
    fused, f_train, f_pred = _run(make, True, monkeypatch, xs, ys, 3)
    unfused, u_train, u_pred = _run(make, False, monkeypatch, xs, ys, 3)
    same_bits(fused, unfused)
    # 19 ReLUs: 10 after a BatchNormalization (stem + first conv of 9 blocks), 9 after an Add
    assert (u_train, f_train) == (19, 9)
    # predict: the BatchNormalizations are folded into the convolutions, whose folded copies
    # apply the 10 ReLUs after them in the GEMM epilogue (tests/test_conv_relu_fusion.py)
    assert (u_pred, f_pred) == (19, 9)


def _seq_bn_not_folded() -> Any:
    """Conv (ReLU) -> BN -> ReLU (not folded: the conv has an activation), BN -> ReLU on (N, C)
    features, a BN -> ReLU pair whose BN is the lowest trainable layer of a stack cut below by
    compute_dx=False (Flatten first), and a BN -> LeakyReLU (not fused)."""
    return fc.Sequential([
        L.Conv2D(6, 3, padding="same", activation="relu"), L.BatchNormalization(), L.ReLU(),
        L.MaxPool2D(2), L.BatchNormalization(), L.LeakyReLU(0.1), L.Flatten(),
        L.Dense(12), L.BatchNormalization(), L.Activation("relu"), L.Dense(4),
        L.Activation("softmax"),
    ], input_shape=(3, 8, 8), seed=3)


def test_sequential_fused_is_bitwise_the_unfused(monkeypatch: pytest.MonkeyPatch,
                                                 rng: np.random.Generator) -> None:
    xs, ys = step_data(rng, 4, 16, (3, 8, 8), 4)
    fused, f_train, f_pred = _run(_seq_bn_not_folded, True, monkeypatch, xs, ys, 4)
    unfused, u_train, u_pred = _run(_seq_bn_not_folded, False, monkeypatch, xs, ys, 4)
    same_bits(fused, unfused)
    # ops.relu: the conv's own ReLU runs in its GEMM; the two ReLU layers run fused
    assert (u_train, f_train) == (2, 0)
    # inference: the first pair fused (its BN is not folded: the conv has an activation); the
    # Dense's BN is folded into it, whose folded copy applies that ReLU
    assert (u_pred, f_pred) == (2, 0)


def test_sequential_bn_first_without_dx(monkeypatch: pytest.MonkeyPatch,
                                        rng: np.random.Generator) -> None:
    """A fused BN that is the stack's lowest trainable layer skips its dx (the masked
    gradient then goes to a scratch array)."""
    def make() -> Any:
        return fc.Sequential([L.BatchNormalization(), L.ReLU(), L.Flatten(), L.Dense(3),
                              L.Activation("softmax")], input_shape=(2, 5, 5), seed=1)

    xs, ys = step_data(rng, 3, 10, (2, 5, 5), 3)
    fused, f_train, _ = _run(make, True, monkeypatch, xs, ys, 3)
    unfused, u_train, _ = _run(make, False, monkeypatch, xs, ys, 3)
    same_bits(fused, unfused)
    assert (u_train, f_train) == (1, 0)


def _graph(fan_out: bool) -> Any:
    x = fc.Input((4, 6, 6))
    h = L.Conv2D(5, 3, padding="same")(x)
    b = L.BatchNormalization()(h)
    r = L.ReLU()(b)
    if fan_out:  # the BN output read twice: the ReLU can't be fused
        r = L.Add()([r, b])
    h2 = L.BatchNormalization()(L.Conv2D(5, 1)(r))
    h2 = L.Activation("relu")(L.Add()([h2, r]))
    h3 = L.ReLU()(L.BatchNormalization()(h2))  # after an Add: not folded, fused at inference
    y = L.Dense(3, activation="softmax")(L.GlobalAveragePooling2D()(h3))
    return fc.Model(x, y, seed=5)


@pytest.mark.parametrize("fan_out", [False, True])
def test_graph_fused_is_bitwise_the_unfused(monkeypatch: pytest.MonkeyPatch,
                                            rng: np.random.Generator, fan_out: bool) -> None:
    xs, ys = step_data(rng, 3, 6, (4, 6, 6), 3)
    fused, f_train, f_pred = _run(lambda: _graph(fan_out), True, monkeypatch, xs, ys, 3)
    unfused, u_train, u_pred = _run(lambda: _graph(fan_out), False, monkeypatch, xs, ys, 3)
    same_bits(fused, unfused)
    assert u_train == u_pred == 3
    # training: the first pair (unless it fans out) and the last; inference: the first BN is
    # folded into its conv, whose folded copy applies the ReLU (unless the BN fans out: then
    # that ReLU runs apart), the Add's ReLU runs apart, the last pair is fused
    assert f_train == (2 if fan_out else 1)
    assert f_pred == (2 if fan_out else 1)


def test_fused_activation_pairs() -> None:
    bn, relu = L.BatchNormalization(), L.ReLU()
    assert layers_base.fused_activation(bn, relu) == "relu"
    assert layers_base.fused_activation(bn, L.Activation("relu")) == "relu"
    assert layers_base.fused_activation(bn, L.Activation("sigmoid")) is None
    assert layers_base.fused_activation(bn, L.LeakyReLU()) is None
    assert layers_base.fused_activation(L.Dense(3), relu) == "relu"  # see test_conv_relu_fusion
    assert layers_base.fused_activation(L.Dense(3, activation="tanh"), relu) is None
    assert layers_base.fused_activation(relu, relu) is None
    bn.build((3, 4, 4))
    with pytest.raises(ValueError, match="fused_activation"):
        bn.forward(np.zeros((2, 3, 4, 4), np.float32), fused_activation="tanh")
