"""Layers: shapes, parameters, forward against fastcnn.reference, backward against finite
differences, MaxPool2D "same", Dropout, trainable, configs, initializers."""

from __future__ import annotations

import math

import numpy as np
import pytest

import fastcnn as fc
from fastcnn import initializers as I
from fastcnn import layers as L
from fastcnn import reference as ref


def _build(layer: L.Layer, shape: tuple[int, ...], seed: int = 0) -> L.Layer:
    layer.name = layer.name or layer.default_name
    layer.build(shape, np.random.default_rng(seed))
    return layer


def _x(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# shapes, parameter counts, FLOPs


@pytest.mark.parametrize(
    ("kwargs", "in_shape", "out_shape"),
    [
        ({"filters": 4, "kernel_size": 3}, (2, 8, 8), (4, 6, 6)),
        ({"filters": 4, "kernel_size": 3, "padding": "same"}, (2, 8, 7), (4, 8, 7)),
        ({"filters": 4, "kernel_size": 3, "strides": 2, "padding": "same"}, (2, 8, 7), (4, 4, 4)),
        ({"filters": 4, "kernel_size": 4, "strides": 3, "padding": "same"}, (2, 10, 9), (4, 4, 3)),
        ({"filters": 4, "kernel_size": (3, 1), "padding": 1}, (2, 5, 5), (4, 5, 7)),
        ({"filters": 4, "kernel_size": 3, "dilation_rate": 2}, (2, 9, 9), (4, 5, 5)),
        ({"filters": 6, "kernel_size": 3, "groups": 2, "strides": (2, 1)}, (4, 9, 9), (6, 4, 7)),
    ],
)
def test_conv2d_output_shape_matches_ops(rng, kwargs, in_shape, out_shape):
    layer = _build(L.Conv2D(**kwargs), in_shape)
    assert layer.output_shape == out_shape
    K, C = kwargs["filters"], in_shape[0]
    R, S = (kwargs["kernel_size"],) * 2 if isinstance(kwargs["kernel_size"], int) \
        else kwargs["kernel_size"]
    g = kwargs.get("groups", 1)
    assert layer.params["kernel"].shape == (K, C // g, R, S)
    assert layer.params["bias"].shape == (K,)
    assert layer.count_params() == K * (C // g) * R * S + K
    y = layer.forward(_x(rng, (2, *in_shape)))
    assert y.shape == (2, *out_shape) and y.dtype == np.float32
    P, Q = out_shape[1:]
    assert layer.flops == 2 * K * P * Q * (C // g) * R * S + K * P * Q


def test_keras_parameter_counts_of_the_seeds_cnn():
    model = fc.Sequential([L.Conv2D(32, 3, activation="relu"), L.Conv2D(64, 3, activation="relu"),
                           L.MaxPool2D(2), L.Flatten(), L.Dense(128, activation="relu"),
                           L.Dense(10, activation="softmax")], input_shape=(1, 28, 28))
    assert [lay.count_params() for lay in model.layers] == [320, 18_496, 0, 0, 1_179_776, 1_290]
    assert model.count_params() == 1_199_882
    assert [lay.output_shape for lay in model.layers] == [
        (32, 26, 26), (64, 24, 24), (64, 12, 12), (9216,), (128,), (10,)]


def test_dense_shapes_and_flat_input_required():
    layer = _build(L.Dense(5, use_bias=False), (7,))
    assert layer.params["kernel"].shape == (5, 7) and "bias" not in layer.params
    assert layer.flops == 2 * 5 * 7
    with pytest.raises(ValueError, match="Flatten"):
        _build(L.Dense(5), (2, 3, 3))


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: L.Conv2D(0, 3), "filters"),
        (lambda: L.Conv2D(4, 3, groups=3), "divisible"),
        (lambda: L.Conv2D(4, 3, padding="full"), "padding"),
        (lambda: L.Conv2D(4, 3, activation="mish"), "activation"),
        (lambda: L.Dense(4, activation="elu"), "activation"),
        (lambda: L.MaxPool2D(2, padding="full"), "padding"),
        (lambda: L.Dropout(1.0), "rate"),
    ],
)
def test_bad_layer_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_build_errors_name_the_problem():
    with pytest.raises(ValueError, match="divisible by groups"):
        _build(L.Conv2D(4, 3, groups=2), (3, 8, 8))
    with pytest.raises(ValueError, match="larger than"):
        _build(L.Conv2D(4, 5), (1, 3, 3))
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        _build(L.Conv2D(4, 3), (8,))


# ----------------------------------------------------------------------------------------------
# forward against the reference


@pytest.mark.parametrize("activation", [None, "relu", "sigmoid", "softmax"])
def test_conv2d_forward_matches_reference(rng, activation):
    layer = _build(L.Conv2D(6, 3, strides=2, padding="same", groups=2, activation=activation,
                            bias_initializer="he_uniform"), (4, 9, 8))
    x = _x(rng, (3, 4, 9, 8))
    w, b = layer.params["kernel"], layer.params["bias"]
    z = ref.conv2d(x, w, b, stride=2, padding="same", groups=2)
    expected = {None: z, "relu": ref.relu(z), "softmax": ref.softmax(z, axis=1),
                "sigmoid": 1 / (1 + np.exp(-z.astype(np.float64)))}[activation]
    np.testing.assert_allclose(layer.forward(x), expected, rtol=1e-5, atol=1e-5)
    # the pre-activation path used for fused losses
    np.testing.assert_allclose(layer.forward(x, apply_activation=False), z, rtol=1e-5,
                               atol=1e-5)


def test_dense_forward_matches_reference(rng):
    layer = _build(L.Dense(4, activation="softmax"), (6,))
    x = _x(rng, (5, 6))
    z = ref.linear(x, layer.params["kernel"], layer.params["bias"])
    y = layer.forward(x)
    np.testing.assert_allclose(y, ref.softmax(z), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-6)


# ----------------------------------------------------------------------------------------------
# backward: directional finite differences of loss = sum(y * r)


def _check_grads(layer: L.Layer, x: np.ndarray, rng: np.random.Generator,
                 eps: float = 1e-2, rtol: float = 2e-2) -> None:
    """Compare <grad, v> with (f(+eps v) - f(-eps v)) / 2 eps for x and every weight."""
    y = layer.forward(x, training=True)
    r = rng.standard_normal(y.shape).astype(np.float32)
    dx = layer.backward(r)
    assert dx.shape == x.shape and dx.dtype == np.float32

    def f() -> float:
        return float(np.sum(layer.forward(x, training=False).astype(np.float64) * r))

    targets = [("x", x, dx)] + [(k, p, layer.grads[k]) for k, p in layer.params.items()]
    for name, arr, grad in targets:
        v = rng.standard_normal(arr.shape).astype(np.float32)
        base = arr.copy()
        arr[...] = base + eps * v
        fp = f()
        arr[...] = base - eps * v
        fm = f()
        arr[...] = base
        numeric = (fp - fm) / (2 * eps)
        analytic = float(np.sum(grad.astype(np.float64) * v))
        assert math.isclose(analytic, numeric, rel_tol=rtol, abs_tol=rtol), (
            f"{type(layer).__name__} d/d{name}: analytic {analytic}, numeric {numeric}")


@pytest.mark.parametrize("activation", [None, "sigmoid", "softmax"])
@pytest.mark.parametrize("conv_kwargs", [
    {"kernel_size": 3},
    {"kernel_size": 3, "strides": 2, "padding": "same"},
    {"kernel_size": (2, 3), "dilation_rate": 2, "padding": 1, "groups": 2},
])
def test_conv2d_backward_finite_differences(rng, activation, conv_kwargs):
    layer = _build(L.Conv2D(4, activation=activation, **conv_kwargs), (2, 7, 6))
    _check_grads(layer, _x(rng, (2, 2, 7, 6)), rng)


@pytest.mark.parametrize("activation", [None, "sigmoid", "softmax"])
def test_dense_backward_finite_differences(rng, activation):
    layer = _build(L.Dense(5, activation=activation), (6,))
    _check_grads(layer, _x(rng, (4, 6)), rng)


def test_relu_backward_uses_output_mask(rng):
    layer = _build(L.Conv2D(3, 3, activation="relu"), (2, 5, 5))
    x = _x(rng, (2, 2, 5, 5))
    y = layer.forward(x, training=True)
    dy = np.ones_like(y)
    layer.backward(dy)
    z = layer.forward(x, apply_activation=False)
    _, dw, db = ref.conv2d_backward((z > 0).astype(np.float32), x, layer.params["kernel"])
    np.testing.assert_allclose(layer.grads["kernel"], dw, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer.grads["bias"], db, rtol=1e-5, atol=1e-5)


def test_backward_skips_activation_after_logits_forward(rng):
    layer = _build(L.Dense(3, activation="softmax"), (4,))
    x = _x(rng, (2, 4))
    layer.forward(x, training=True, apply_activation=False)
    dz = _x(rng, (2, 3))
    dx = layer.backward(dz)
    np.testing.assert_allclose(dx, dz @ layer.params["kernel"], rtol=1e-5, atol=1e-6)


def test_gradient_accumulation_and_overwrite(rng):
    layer = _build(L.Dense(3), (4,))
    x, dy = _x(rng, (2, 4)), _x(rng, (2, 3))
    layer.forward(x, training=True)
    layer.backward(dy)
    g1 = layer.grads["kernel"].copy()
    layer.backward(dy)  # overwrites
    np.testing.assert_array_equal(layer.grads["kernel"], g1)
    layer.backward(dy, accumulate=True)
    np.testing.assert_allclose(layer.grads["kernel"], 2 * g1, rtol=1e-6)


def test_backward_without_training_forward_is_an_error(rng):
    layer = _build(L.Dense(3), (4,))
    layer.forward(_x(rng, (2, 4)), training=False)
    with pytest.raises(RuntimeError, match="training=True"):
        layer.backward(_x(rng, (2, 3)))


# ----------------------------------------------------------------------------------------------
# MaxPool2D


def _naive_pool_same(x: np.ndarray, k: tuple[int, int], s: tuple[int, int],
                     dy: np.ndarray | None = None):
    """TF "same" max pooling by brute force (-inf padding, first maximum wins)."""
    N, C, H, W = x.shape
    P, Q = -(-H // s[0]), -(-W // s[1])
    th = max((P - 1) * s[0] + k[0] - H, 0) // 2
    tw = max((Q - 1) * s[1] + k[1] - W, 0) // 2
    y = np.empty((N, C, P, Q), np.float32)
    dx = np.zeros_like(x)
    for n in range(N):
        for c in range(C):
            for p in range(P):
                for q in range(Q):
                    best, arg = -np.inf, None
                    for i in range(p * s[0] - th, p * s[0] - th + k[0]):
                        for j in range(q * s[1] - tw, q * s[1] - tw + k[1]):
                            if 0 <= i < H and 0 <= j < W and (arg is None or x[n, c, i, j] > best):
                                best, arg = x[n, c, i, j], (i, j)
                    y[n, c, p, q] = best
                    if dy is not None:
                        dx[n, c, arg[0], arg[1]] += dy[n, c, p, q]
    return y, dx


@pytest.mark.parametrize(("H", "W", "k", "s"), [
    (6, 6, 2, 2),   # no padding needed
    (7, 5, 2, 2),   # odd total: ceil_mode path
    (7, 8, 3, 2),   # symmetric / odd mix
    (5, 6, 3, 1),   # symmetric padding 1
    (5, 6, 2, 1),   # odd total with stride 1: explicit -inf padding
    (9, 7, (3, 2), (2, 3)),
])
def test_maxpool_same_matches_tensorflow_rule(rng, H, W, k, s):
    layer = _build(L.MaxPool2D(k, strides=s, padding="same"), (2, H, W))
    kk = k if isinstance(k, tuple) else (k, k)
    ss = s if isinstance(s, tuple) else (s, s)
    assert layer.output_shape == (2, -(-H // ss[0]), -(-W // ss[1]))
    x = _x(rng, (2, 2, H, W))
    y = layer.forward(x, training=True)
    dy = _x(rng, y.shape)
    dx = layer.backward(dy)
    y_ref, dx_ref = _naive_pool_same(x, kk, ss, dy)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-6, atol=1e-6)
    assert dx.shape == x.shape


def test_maxpool_valid_default_strides(rng):
    layer = _build(L.MaxPool2D(2), (3, 5, 4))
    assert layer.output_shape == (3, 2, 2) and layer.strides == (2, 2)
    x = _x(rng, (1, 3, 5, 4))
    np.testing.assert_array_equal(layer.forward(x), ref.max_pool2d(x, 2))
    with pytest.raises(ValueError, match="larger than"):
        _build(L.MaxPool2D(3), (1, 2, 2))


def test_flatten_roundtrip(rng):
    layer = _build(L.Flatten(), (2, 3, 4))
    assert layer.output_shape == (24,)
    x = _x(rng, (2, 2, 3, 4))
    y = layer.forward(x, training=True)
    np.testing.assert_array_equal(y, x.reshape(2, -1))
    np.testing.assert_array_equal(layer.backward(y), x)


# ----------------------------------------------------------------------------------------------
# Dropout, activations layers


def test_dropout_training_and_inference(rng):
    layer = _build(L.Dropout(0.25, seed=3), (1000,))
    x = np.ones((4, 1000), np.float32)
    np.testing.assert_array_equal(layer.forward(x, training=False), x)
    y = layer.forward(x, training=True)
    kept = y != 0
    assert 0.7 < kept.mean() < 0.8
    np.testing.assert_allclose(y[kept], 1 / 0.75, rtol=1e-6)
    dy = _x(rng, y.shape)
    np.testing.assert_array_equal(layer.backward(dy), dy * y)  # x = 1: y is the mask
    # same seed -> same masks
    again = _build(L.Dropout(0.25, seed=3), (1000,))
    np.testing.assert_array_equal(again.forward(x, training=True), y)


def test_dropout_seeded_from_the_model_generator():
    a = _build(L.Dropout(0.5), (50,), seed=7)
    b = _build(L.Dropout(0.5), (50,), seed=7)
    x = np.ones((2, 50), np.float32)
    np.testing.assert_array_equal(a.forward(x, training=True), b.forward(x, training=True))


def test_activation_layers(rng):
    x = _x(rng, (3, 4, 2, 2))
    relu = _build(L.ReLU(), (4, 2, 2))
    np.testing.assert_array_equal(relu.forward(x), ref.relu(x))
    sm = _build(L.Softmax(), (4, 2, 2))
    np.testing.assert_allclose(sm.forward(x).sum(axis=1), 1.0, rtol=1e-6)
    _check_grads(_build(L.Softmax(), (5,)), _x(rng, (3, 5)), rng)
    _check_grads(_build(L.Activation("sigmoid"), (5,)), _x(rng, (3, 5)), rng)


# ----------------------------------------------------------------------------------------------
# trainable, weights, configs


def test_trainable_false_freezes_parameters(rng):
    layer = _build(L.Dense(3, trainable=False), (4,))
    assert list(layer.parameters()) == []
    layer.forward(_x(rng, (2, 4)), training=True)
    dx = layer.backward(_x(rng, (2, 3)))
    assert dx.shape == (2, 4)
    assert not layer.grads["kernel"].any()
    layer.trainable = True
    assert len(list(layer.parameters())) == 2


def test_set_weights_checks_shapes_first():
    layer = _build(L.Dense(3), (4,))
    before = layer.get_weights()
    with pytest.raises(ValueError, match="shape"):
        layer.set_weights([np.zeros((3, 4)), np.zeros(4)])
    for a, b in zip(before, layer.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("layer", [
    L.Conv2D(4, (3, 2), strides=(2, 1), padding="same", dilation_rate=2, groups=2,
             activation="relu", use_bias=False, kernel_initializer="he_normal",
             bias_initializer=I.Constant(0.5), name="c"),
    L.Conv2D(4, 3, padding=(1, 2), kernel_initializer=I.RandomNormal(0.0, 0.1)),
    L.Dense(3, activation="sigmoid", trainable=False),
    L.MaxPool2D((3, 2), strides=1, padding="same"),
    L.Flatten(), L.Dropout(0.3, seed=1), L.ReLU(), L.Softmax(), L.Activation("sigmoid"),
])
def test_config_roundtrip(layer):
    cfg = layer.get_config()
    import json

    json.dumps(cfg)
    clone = L.deserialize({"class_name": type(layer).__name__, "config": cfg})
    assert type(clone) is type(layer)
    assert clone.get_config() == cfg


# ----------------------------------------------------------------------------------------------
# initializers


def test_initializer_fans_and_ranges():
    assert I.compute_fans((8, 3, 5, 5)) == (75, 200)
    assert I.compute_fans((10, 20)) == (20, 10)
    rng = np.random.default_rng(0)
    w = I.get("glorot_uniform")((64, 32, 3, 3), rng)
    limit = math.sqrt(6 / (32 * 9 + 64 * 9))
    assert w.dtype == np.float32 and np.abs(w).max() <= limit
    assert np.abs(w).max() > 0.95 * limit
    w = I.get("he_uniform")((100, 400), rng)
    assert np.abs(w).max() <= math.sqrt(6 / 400)
    for name, std in (("he_normal", math.sqrt(2 / 400)),
                      ("glorot_normal", math.sqrt(2 / 500)),
                      ("lecun_normal", math.sqrt(1 / 400))):
        w = I.get(name)((100, 400), rng)
        assert abs(w.std() / std - 1) < 0.05, name
        assert np.abs(w).max() <= 2 * std / 0.87962566103423978 + 1e-6
    assert not I.get("zeros")((3,), rng).any()
    with pytest.raises(ValueError, match="unknown initializer"):
        I.get("orthogonal")


def test_seeded_build_is_deterministic():
    def make() -> fc.Sequential:
        return fc.Sequential([L.Conv2D(3, 3), L.Flatten(), L.Dense(2)], input_shape=(1, 5, 5),
                             seed=11)

    for a, b in zip(make().get_weights(), make().get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    other = fc.Sequential([L.Conv2D(3, 3), L.Flatten(), L.Dense(2)], input_shape=(1, 5, 5),
                          seed=12)
    assert not np.array_equal(other.get_weights()[0], make().get_weights()[0])


def test_compute_output_shape_leaves_the_layer_alone():
    layer = _build(L.Conv2D(4, 3, strides=2, padding="same"), (2, 9, 9))
    kernel = layer.params["kernel"]
    assert layer.compute_output_shape((2, 17, 16)) == (4, 9, 8)
    assert layer.params["kernel"] is kernel and layer.output_shape == (4, 5, 5)
