"""Issue 17's layers: BatchNormalization (training / inference / frozen, moving statistics,
Keras' parameter counts, folding into the Conv2D / Dense before it at inference),
AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D, the new activations (Activation,
``activation=`` of Conv2D / Dense, LeakyReLU), ZeroPadding2D and Reshape: forward against the
reference formulas (NumPy, float64), backward against finite differences and, where torch is
installed, against torch's modules; configs, saving, bad arguments, and a small CNN trained with
``fit``."""

from __future__ import annotations

import math

import numpy as np
import pytest

import fastcnn as fc
from fastcnn import layers as L


def _build(layer: L.Layer, shape: tuple[int, ...], seed: int = 0) -> L.Layer:
    layer.name = layer.name or layer.default_name
    layer.build(shape, np.random.default_rng(seed))
    return layer


def _x(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def _check_grads(layer: L.Layer, x: np.ndarray, rng: np.random.Generator, *,
                 eps: float = 1e-2, rtol: float = 2e-2, training_f: bool = False) -> None:
    """<grad, v> against (f(+eps v) - f(-eps v)) / 2 eps, for x and every trainable weight;
    ``training_f``: f is the training forward (BatchNormalization's batch statistics)."""
    y = layer.forward(x, training=True)
    r = rng.standard_normal(y.shape).astype(np.float32)
    dx = layer.backward(r)
    assert dx.shape == x.shape and dx.dtype == np.float32
    grads = {k: np.array(g) for k, g in layer.grads.items()}

    def f() -> float:
        return float(np.sum(layer.forward(x, training=training_f).astype(np.float64) * r))

    targets = [("x", x, dx)] + [(k, layer.params[k], grads[k]) for k, _, _ in
                                layer.named_parameters()]
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


# ----------------------------------------------------------------------------------------------
# activations


def _erf(a: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf)(a)


_REF = {
    "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
    "tanh": np.tanh,
    "leaky_relu": lambda z: np.where(z > 0, z, 0.2 * z),
    "gelu": lambda z: 0.5 * z * (1 + _erf(z / math.sqrt(2))),
    "silu": lambda z: z / (1 + np.exp(-z)),
    "relu": lambda z: np.maximum(z, 0),
}
NEW_ACTS = ["sigmoid", "tanh", "leaky_relu", "gelu", "silu"]


@pytest.mark.parametrize("act", NEW_ACTS)
def test_activation_layer_forward_and_backward(rng, act):
    x = _x(rng, (3, 2, 4, 5))
    layer = _build(L.Activation(act), (2, 4, 5))
    np.testing.assert_allclose(layer.forward(x), _REF[act](x.astype(np.float64)), rtol=1e-5,
                               atol=1e-6)
    _check_grads(layer, x, rng, eps=1e-3 if act == "leaky_relu" else 1e-2)
    assert layer.flops == L.base.ACT_FLOPS[act] * 40


@pytest.mark.parametrize("act", NEW_ACTS)
def test_new_activations_as_conv_and_dense_activation(rng, act):
    x = _x(rng, (2, 3, 6, 6))
    conv = _build(L.Conv2D(4, 3, activation=act), (3, 6, 6))
    lin = _build(L.Conv2D(4, 3), (3, 6, 6))
    lin.set_weights(conv.get_weights())
    np.testing.assert_allclose(conv.forward(x), _REF[act](lin.forward(x).astype(np.float64)),
                               rtol=1e-5, atol=1e-5)
    eps = 1e-3 if act == "leaky_relu" else 1e-2  # smaller steps across the kink
    _check_grads(conv, x, rng, eps=eps)
    dense = _build(L.Dense(5, activation=act), (7,))
    _check_grads(dense, _x(rng, (4, 7)), rng, eps=eps)


def test_swish_is_silu_and_leaky_relu_slopes():
    assert L.Activation("swish").activation == "silu"
    assert L.Conv2D(2, 3, activation="swish").get_config()["activation"] == "silu"
    assert L.Activation("leaky_relu").negative_slope == 0.2  # keras.activations.leaky_relu
    assert L.LeakyReLU().negative_slope == 0.3  # keras.layers.LeakyReLU
    x = np.array([[-2.0, 3.0]], np.float32)
    np.testing.assert_allclose(_build(L.LeakyReLU(0.5), (2,)).forward(x), [[-1.0, 3.0]])
    np.testing.assert_allclose(_build(L.LeakyReLU(0), (2,)).forward(x), [[0.0, 3.0]])


def test_leaky_relu_gradients(rng):
    _check_grads(_build(L.LeakyReLU(0.1), (6,)), _x(rng, (3, 6)), rng)


def test_activations_against_torch(rng):
    torch = pytest.importorskip("torch")
    nn = torch.nn
    x = _x(rng, (2, 3, 4, 4))
    pairs = [(L.Activation("sigmoid"), nn.Sigmoid()), (L.Activation("tanh"), nn.Tanh()),
             (L.LeakyReLU(0.3), nn.LeakyReLU(0.3)), (L.Activation("gelu"), nn.GELU()),
             (L.Activation("silu"), nn.SiLU())]
    dy = _x(rng, x.shape)
    for ours, theirs in pairs:
        _build(ours, (3, 4, 4))
        t = torch.from_numpy(x.copy()).requires_grad_(True)
        ty = theirs(t)
        ty.backward(torch.from_numpy(dy))
        y = ours.forward(x, training=True)
        np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ours.backward(dy), t.grad.numpy(), rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# BatchNormalization


def _bn_ref(x, gamma, beta, mean, var, eps):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    x = x.astype(np.float64)
    return (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps) * gamma.reshape(shape) \
        + beta.reshape(shape)


def test_batch_norm_keras_defaults_weights_and_counts():
    bn = L.BatchNormalization()
    cfg = bn.get_config()
    assert (cfg["axis"], cfg["momentum"], cfg["epsilon"], cfg["center"], cfg["scale"]) == (
        1, 0.99, 1e-3, True, True)
    assert (cfg["gamma_initializer"], cfg["beta_initializer"], cfg["moving_mean_initializer"],
            cfg["moving_variance_initializer"]) == ("ones", "zeros", "zeros", "ones")
    model = fc.Sequential([L.Conv2D(8, 3), L.BatchNormalization(), L.Flatten(), L.Dense(4),
                           L.BatchNormalization()], input_shape=(3, 6, 6))
    bn2 = model.layers[1]
    assert list(bn2.params) == ["gamma", "beta", "moving_mean", "moving_variance"]  # Keras' order
    assert set(bn2.grads) == {"gamma", "beta"}
    assert bn2.count_params() == 32 and bn2.count_trainable_params() == 16
    lines: list[str] = []
    model.summary(print_fn=lines.append)
    total = 8 * 27 + 8 + 32 + 4 * 128 + 4 + 16
    assert f"Total params: {total:,}" in "\n".join(lines)
    assert f"Trainable params: {total - 24:,}" in "\n".join(lines)
    assert "Non-trainable params: 24 " in "\n".join(lines)
    assert [k for k, _, _ in model.named_parameters()] == [
        "conv2d/kernel", "conv2d/bias", "batch_normalization/gamma", "batch_normalization/beta",
        "dense/kernel", "dense/bias", "batch_normalization_1/gamma", "batch_normalization_1/beta"]
    assert len(model.trainable_weights) == 8 and len(model.non_trainable_weights) == 4
    assert model.non_trainable_weights[0] is bn2.params["moving_mean"]
    frozen = L.BatchNormalization(trainable=False)
    _build(frozen, (5,))
    assert frozen.count_trainable_params() == 0 and list(frozen.named_parameters()) == []


def test_batch_norm_center_scale_off():
    bn = _build(L.BatchNormalization(center=False, scale=False), (3, 4, 4))
    assert list(bn.params) == ["moving_mean", "moving_variance"]
    assert bn.count_params() == 6 and bn.count_trainable_params() == 0
    bn = _build(L.BatchNormalization(center=False), (3,))
    assert list(bn.params) == ["gamma", "moving_mean", "moving_variance"]


@pytest.mark.parametrize("shape", [(5,), (3, 7), (3, 4, 5)])
def test_batch_norm_training_and_inference_formulas(rng, shape):
    bn = _build(L.BatchNormalization(momentum=0.9, epsilon=1e-3), shape)
    C = shape[0]
    bn.set_weights([rng.uniform(0.5, 2, C).astype(np.float32), _x(rng, (C,)),
                    _x(rng, (C,)), rng.uniform(0.5, 2, C).astype(np.float32)])
    g, b, mm, mv = (a.copy() for a in bn.get_weights())
    x = _x(rng, (6, *shape)) * 2 + 1
    axes = (0, *range(2, x.ndim))
    mean, var = x.astype(np.float64).mean(axes), x.astype(np.float64).var(axes)
    n = x.size // C
    y = bn.forward(x, training=True)  # batch statistics, biased variance
    np.testing.assert_allclose(y, _bn_ref(x, g, b, mean, var, 1e-3), rtol=1e-4, atol=1e-5)
    # moving = momentum * moving + (1 - momentum) * batch, unbiased variance (PyTorch)
    np.testing.assert_allclose(bn.params["moving_mean"], 0.9 * mm + 0.1 * mean, rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(bn.params["moving_variance"], 0.9 * mv + 0.1 * var * n / (n - 1),
                               rtol=1e-5, atol=1e-6)
    mm2, mv2 = bn.params["moving_mean"].copy(), bn.params["moving_variance"].copy()
    y = bn.forward(x)  # inference: the moving statistics, not updated
    np.testing.assert_allclose(y, _bn_ref(x, g, b, mm2, mv2, 1e-3), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(bn.params["moving_mean"], mm2)


def test_frozen_batch_norm_runs_in_inference_mode(rng):
    bn = _build(L.BatchNormalization(trainable=False), (3, 4, 4))
    bn.set_weights([np.full(3, 2, np.float32), np.ones(3, np.float32),
                    np.full(3, 0.5, np.float32), np.full(3, 4, np.float32)])
    before = bn.get_weights()
    x = _x(rng, (4, 3, 4, 4))
    y = bn.forward(x, training=True)
    np.testing.assert_allclose(y, _bn_ref(x, *before, 1e-3), rtol=1e-5, atol=1e-5)
    for a, b in zip(bn.get_weights(), before, strict=True):
        np.testing.assert_array_equal(a, b)
    dx = bn.backward(np.ones_like(x))  # through fixed statistics
    np.testing.assert_allclose(dx, np.full_like(x, 2 / np.sqrt(4 + 1e-3)), rtol=1e-5)
    _check_grads(bn, x, np.random.default_rng(1))


@pytest.mark.parametrize("shape", [(4,), (3, 6), (3, 4, 5)])
def test_batch_norm_gradients_through_batch_statistics(rng, shape):
    bn = _build(L.BatchNormalization(), shape)
    bn.set_weights([rng.uniform(0.5, 2, shape[0]).astype(np.float32),
                    _x(rng, (shape[0],)), np.zeros(shape[0], np.float32),
                    np.ones(shape[0], np.float32)])
    _check_grads(bn, _x(rng, (5, *shape)), rng, eps=1e-2, rtol=3e-2, training_f=True)


def test_batch_norm_against_torch_train_and_eval(rng):
    torch = pytest.importorskip("torch")
    bn = _build(L.BatchNormalization(momentum=0.8, epsilon=1e-4), (3, 5, 5))
    tbn = torch.nn.BatchNorm2d(3, eps=1e-4, momentum=0.2)
    with torch.no_grad():
        tbn.weight.uniform_(0.5, 2)
        tbn.bias.uniform_(-1, 1)
    bn.set_weights([tbn.weight.detach().numpy(), tbn.bias.detach().numpy(),
                    np.zeros(3, np.float32), np.ones(3, np.float32)])
    for _ in range(3):
        x = _x(rng, (4, 3, 5, 5)) * 3 + 1
        dy = _x(rng, x.shape)
        t = torch.from_numpy(x.copy()).requires_grad_(True)
        tbn.train()
        ty = tbn(t)
        ty.backward(torch.from_numpy(dy))
        y = bn.forward(x, training=True)
        np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(bn.backward(dy), t.grad.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(bn.grads["gamma"], tbn.weight.grad.numpy(), rtol=1e-4,
                                   atol=1e-4)
        np.testing.assert_allclose(bn.grads["beta"], tbn.bias.grad.numpy(), rtol=1e-4,
                                   atol=1e-4)
        tbn.weight.grad = tbn.bias.grad = None
    np.testing.assert_allclose(bn.params["moving_mean"], tbn.running_mean.numpy(), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(bn.params["moving_variance"], tbn.running_var.numpy(),
                               rtol=1e-5, atol=1e-6)
    tbn.eval()
    x = _x(rng, (2, 3, 5, 5))
    np.testing.assert_allclose(bn.forward(x), tbn(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-5, atol=1e-5)


def _bn_cnn(seed: int = 0) -> fc.Sequential:
    return fc.Sequential([L.Conv2D(6, 3, padding="same"), L.BatchNormalization(),
                          L.ReLU(), L.MaxPool2D(2), L.Conv2D(8, 3, use_bias=False),
                          L.BatchNormalization(momentum=0.9), L.Activation("silu"),
                          L.GlobalAveragePooling2D(), L.Dense(12), L.BatchNormalization(),
                          L.Activation("gelu"), L.Dense(3, activation="softmax")],
                         input_shape=(2, 8, 8), seed=seed)


def _data(n: int = 48, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 2, 8, 8)).astype(np.float32)
    y = (x[:, 0, :4].mean(axis=(1, 2)) > 0).astype(np.int64) + (x[:, 1].mean(axis=(1, 2)) > 0)
    return x, y


def test_small_bn_cnn_trains_with_fit():
    x, y = _data(96)
    model = _bn_cnn()
    model.compile(fc.optimizers.Adam(learning_rate=0.01), "sparse_categorical_crossentropy",
                  ["accuracy"])
    hist = model.fit(x, y, epochs=8, batch_size=16, verbose=0, seed=0)
    losses = hist.history["loss"]
    assert losses[-1] < 0.8 * losses[0], losses
    acc = model.evaluate(x, y, verbose=0)[1]
    assert acc > 0.6
    # the moving statistics moved away from their initial values, only through training
    bn = model.layers[1]
    assert not np.allclose(bn.params["moving_mean"], 0)
    before = [w.copy() for w in model.get_weights()]
    model.predict(x, verbose=0)
    model.evaluate(x, y, verbose=0)
    for a, b in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(a, b)


def test_moving_statistics_after_fit_match_torch():
    torch = pytest.importorskip("torch")
    x, y = _data(64)
    model = fc.Sequential([L.Conv2D(4, 3, padding="same"), L.BatchNormalization(momentum=0.9),
                           L.ReLU(), L.GlobalAveragePooling2D(), L.Dense(6),
                           L.BatchNormalization(), L.Dense(3, activation="softmax")],
                          input_shape=(2, 8, 8), seed=3)
    tm = model.to_torch()
    tm[-1] = torch.nn.Identity()  # the softmax is in torch's cross-entropy
    assert isinstance(tm[1], torch.nn.BatchNorm2d) and tm[1].momentum == pytest.approx(0.1)
    assert isinstance(tm[6], torch.nn.BatchNorm1d) and tm[6].momentum == pytest.approx(0.01)
    lr, bs = 0.1, 16
    model.compile(fc.optimizers.SGD(learning_rate=lr), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=3, batch_size=bs, shuffle=False, verbose=0)
    opt = torch.optim.SGD(tm.parameters(), lr=lr)
    tm.train()
    for _ in range(3):
        for i in range(0, len(x), bs):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(tm(torch.from_numpy(x[i:i + bs])),
                                                     torch.from_numpy(y[i:i + bs]))
            loss.backward()
            opt.step()
    sd = tm.state_dict()
    for layer, key in ((model.layers[1], "1"), (model.layers[5], "6")):
        np.testing.assert_allclose(layer.params["moving_mean"], sd[f"{key}.running_mean"],
                                   rtol=1e-3, atol=1e-5)
        np.testing.assert_allclose(layer.params["moving_variance"], sd[f"{key}.running_var"],
                                   rtol=1e-3, atol=1e-5)
        np.testing.assert_allclose(layer.params["gamma"], sd[f"{key}.weight"], rtol=1e-3,
                                   atol=1e-5)
    tm.eval()
    with torch.no_grad():
        want = torch.softmax(tm(torch.from_numpy(x)), 1).numpy()
    np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=1e-3, atol=1e-5)


# ----------------------------------------------------------------------------------------------
# folding


def _unfolded(model: fc.Sequential, x: np.ndarray) -> np.ndarray:
    for layer in model.layers:
        x = layer.forward(x, training=False)
    return x


def _randomise_bn(model: fc.Sequential, rng: np.random.Generator) -> None:
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            C = layer.params["moving_mean"].shape[0]
            for k in layer.params:
                layer.params[k][...] = rng.uniform(0.5, 2, C) if k in (
                    "gamma", "moving_variance") else rng.standard_normal(C)


def test_inference_folds_batch_norm_and_matches_the_unfolded_chain(rng):
    model = _bn_cnn()
    _randomise_bn(model, rng)
    folded = L.inference_layers(model.layers)
    kinds = [type(lay).__name__ for lay in folded]
    assert kinds == ["Conv2D", "ReLU", "MaxPool2D", "Conv2D", "Activation",
                     "GlobalAveragePooling2D", "Dense", "Activation", "Dense"]
    assert all(a is not b for a, b in zip(folded, model.layers, strict=False))
    assert folded[1] is model.layers[2]  # the others are the model's own layers
    x = _x(rng, (5, 2, 8, 8))
    np.testing.assert_allclose(model.predict(x, verbose=0), _unfolded(model, x), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(model(x), _unfolded(model, x), rtol=1e-5, atol=1e-6)
    # the folded weights themselves
    conv, bn = model.layers[4], model.layers[5]
    f = L.fold_batch_norm(conv, bn)
    p = bn.params
    s = p["gamma"].astype(np.float64) / np.sqrt(p["moving_variance"].astype(np.float64) + 1e-3)
    np.testing.assert_allclose(f.params["kernel"], conv.params["kernel"] * s[:, None, None, None],
                               rtol=1e-6)
    np.testing.assert_allclose(f.params["bias"], p["beta"] - p["moving_mean"] * s, rtol=1e-5,
                               atol=1e-6)
    assert "bias" not in conv.params and f.use_bias and not conv.use_bias  # original untouched


def test_folding_is_never_stale(rng):
    x, y = _data(32)
    model = _bn_cnn()
    model.compile("adam", "sparse_categorical_crossentropy")
    first = model.predict(x, verbose=0)
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    trained = model.predict(x, verbose=0)
    assert not np.allclose(first, trained)
    np.testing.assert_allclose(trained, _unfolded(model, x), rtol=1e-5, atol=1e-6)
    weights = model.get_weights()
    weights[3] = weights[3] + 1.0  # moving_mean of the first BatchNormalization
    model.set_weights(weights)
    np.testing.assert_allclose(model.predict(x, verbose=0), _unfolded(model, x), rtol=1e-5,
                               atol=1e-6)
    assert not np.allclose(model.predict(x, verbose=0), trained)
    loss, = [model.evaluate(x, y, verbose=0)]
    probs = _unfolded(model, x)
    want = -np.mean(np.log(probs[np.arange(len(y)), y]))
    assert loss == pytest.approx(want, rel=1e-4)


@pytest.mark.parametrize("first", [
    lambda: L.Conv2D(6, 3, strides=2, padding="same", groups=2),
    lambda: L.Conv2D(6, (1, 3), use_bias=False),
    lambda: L.Dense(6),
])
@pytest.mark.parametrize("bn_kwargs", [{}, {"center": False}, {"scale": False},
                                       {"center": False, "scale": False, "epsilon": 0.1}])
def test_fold_variants(rng, first, bn_kwargs):
    layer = first()
    shape = (6,) if isinstance(layer, L.Dense) else (4, 7, 7)
    x = _x(rng, (3, 10) if shape == (6,) else (3, *shape))
    model = fc.Sequential([layer, L.BatchNormalization(**bn_kwargs)],
                          input_shape=x.shape[1:], seed=0)
    _randomise_bn(model, rng)
    assert len(L.inference_layers(model.layers)) == 1
    np.testing.assert_allclose(model.predict(x, verbose=0), _unfolded(model, x), rtol=1e-5,
                               atol=1e-5)


def test_what_does_not_fold():
    model = fc.Sequential([L.Conv2D(4, 3, activation="relu"), L.BatchNormalization(),
                           L.MaxPool2D(), L.BatchNormalization(), L.Flatten(), L.Dense(3),
                           L.Dropout(0.5), L.BatchNormalization()], input_shape=(2, 8, 8))
    assert L.inference_layers(model.layers) == model.layers
    assert L.fold_batch_norm(model.layers[0], model.layers[1]) is None
    assert L.fold_batch_norm(L.Dense(3), L.BatchNormalization()) is None  # not built


# ----------------------------------------------------------------------------------------------
# pooling


def _avg_pool_keras(x, k, s, padding):
    """Keras / TensorFlow average pooling: "same" averages over the real elements only."""
    N, C, H, W = x.shape
    if padding == "valid":
        P, Q, t, l = (H - k[0]) // s[0] + 1, (W - k[1]) // s[1] + 1, 0, 0
    else:
        P, Q = -(-H // s[0]), -(-W // s[1])
        t = max((P - 1) * s[0] + k[0] - H, 0) // 2
        l = max((Q - 1) * s[1] + k[1] - W, 0) // 2
    y = np.zeros((N, C, P, Q))
    for p in range(P):
        for q in range(Q):
            h0, w0 = p * s[0] - t, q * s[1] - l
            win = x[:, :, max(h0, 0):min(h0 + k[0], H), max(w0, 0):min(w0 + k[1], W)]
            y[:, :, p, q] = win.astype(np.float64).mean(axis=(2, 3))
    return y


@pytest.mark.parametrize(("k", "s", "padding", "hw"), [
    (2, None, "valid", (6, 7)), (3, 2, "valid", (7, 8)), (3, 1, "same", (5, 6)),
    (2, 2, "same", (5, 7)), (2, 1, "same", (4, 5)), ((3, 2), (2, 1), "same", (6, 5)),
    (4, 3, "same", (10, 9)),
])
def test_average_pooling_forward_backward(rng, k, s, padding, hw):
    layer = _build(L.AveragePooling2D(k, s, padding), (3, *hw))
    x = _x(rng, (2, 3, *hw))
    kk = k if isinstance(k, tuple) else (k, k)
    ss = kk if s is None else (s if isinstance(s, tuple) else (s, s))
    want = _avg_pool_keras(x, kk, ss, padding)
    assert layer.output_shape == want.shape[1:]
    np.testing.assert_allclose(layer.forward(x), want, rtol=1e-5, atol=1e-6)
    _check_grads(layer, x, rng)


def test_average_pooling_against_torch(rng):
    torch = pytest.importorskip("torch")
    x = _x(rng, (2, 3, 7, 7))
    dy_shape = (2, 3, 7, 7)
    layer = _build(L.AveragePooling2D(3, 1, "same"), (3, 7, 7))
    t = torch.from_numpy(x.copy()).requires_grad_(True)
    ty = torch.nn.functional.avg_pool2d(t, 3, 1, 1, count_include_pad=False)
    dy = _x(rng, dy_shape)
    ty.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(layer.forward(x, training=True), ty.detach().numpy(), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(layer.backward(dy), t.grad.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("keepdims", [False, True])
def test_global_poolings(rng, keepdims):
    x = _x(rng, (3, 4, 5, 6))
    x[0, 0, 2, 3] = 9.0
    avg = _build(L.GlobalAveragePooling2D(keepdims=keepdims), (4, 5, 6))
    mx = _build(L.GlobalMaxPooling2D(keepdims=keepdims), (4, 5, 6))
    shape = (3, 4, 1, 1) if keepdims else (3, 4)
    assert avg.output_shape == shape[1:] == mx.output_shape
    np.testing.assert_allclose(avg.forward(x), x.mean(axis=(2, 3)).reshape(shape), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_array_equal(mx.forward(x), x.max(axis=(2, 3)).reshape(shape))
    _check_grads(avg, x, rng)
    _check_grads(mx, x, rng)
    mx.forward(x, training=True)
    dx = mx.backward(np.ones(shape, np.float32))
    assert dx[0, 0, 2, 3] == 1 and dx[0, 0].sum() == 1 and dx.sum() == 12


def test_global_max_pooling_ties_go_to_the_first_maximum():
    x = np.zeros((1, 1, 2, 2), np.float32)
    mx = _build(L.GlobalMaxPooling2D(), (1, 2, 2))
    mx.forward(x, training=True)
    np.testing.assert_array_equal(mx.backward(np.ones((1, 1), np.float32)),
                                  [[[[1, 0], [0, 0]]]])


# ----------------------------------------------------------------------------------------------
# ZeroPadding2D, Reshape


@pytest.mark.parametrize(("padding", "pads"), [
    (1, (1, 1, 1, 1)), ((2, 1), (2, 1, 2, 1)), (((1, 0), (2, 3)), (1, 2, 0, 3)), ([0, 0], (0,) * 4),
])
def test_zero_padding(rng, padding, pads):
    layer = _build(L.ZeroPadding2D(padding), (2, 3, 4))
    t, l, b, r = pads
    assert layer.pads == pads and layer.output_shape == (2, 3 + t + b, 4 + l + r)
    x = _x(rng, (2, 2, 3, 4))
    np.testing.assert_array_equal(layer.forward(x), np.pad(x, ((0, 0), (0, 0), (t, b), (l, r))))
    _check_grads(layer, x, rng)
    assert L.ZeroPadding2D().padding == ((1, 1), (1, 1))  # Keras' default (1, 1)


@pytest.mark.parametrize(("target", "in_shape", "out_shape"), [
    ((-1,), (2, 3, 4), (24,)), ((4, 6), (24,), (4, 6)), ((3, -1, 2), (2, 3, 4), (3, 4, 2)),
    ((6, 2, 2), (3, 8), (6, 2, 2)),
])
def test_reshape(rng, target, in_shape, out_shape):
    layer = _build(L.Reshape(target), in_shape)
    assert layer.output_shape == out_shape
    x = _x(rng, (3, *in_shape))
    np.testing.assert_array_equal(layer.forward(x), x.reshape(3, *out_shape))
    _check_grads(layer, x, rng)


# ----------------------------------------------------------------------------------------------
# configs, saving


ALL_NEW = [
    lambda: L.BatchNormalization(momentum=0.9, epsilon=1e-5, center=False,
                                 gamma_initializer="he_normal", name="bn"),
    lambda: L.AveragePooling2D((3, 2), strides=1, padding="same"),
    lambda: L.GlobalAveragePooling2D(keepdims=True), lambda: L.GlobalMaxPooling2D(),
    lambda: L.Activation("gelu"), lambda: L.LeakyReLU(0.05),
    lambda: L.ZeroPadding2D(((1, 2), (0, 3))),
    lambda: L.Reshape((2, -1)), lambda: L.Conv2D(2, 3, activation="swish"),
    lambda: L.Dense(2, activation="tanh"),
]


@pytest.mark.parametrize("make", ALL_NEW)
def test_config_round_trip(make):
    layer = make()
    cfg = layer.get_config()
    again = L.deserialize({"class_name": type(layer).__name__, "config": cfg})
    assert type(again) is type(layer) and again.get_config() == cfg


def test_keras_aliases():
    assert L.AvgPool2D is L.AveragePooling2D and L.GlobalAvgPool2D is L.GlobalAveragePooling2D
    assert L.GlobalMaxPool2D is L.GlobalMaxPooling2D
    assert L.get_layer_class("AvgPool2D") is L.AveragePooling2D


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_save_load_round_trip(tmp_path, rng, suffix):
    if suffix == ".safetensors":
        pytest.importorskip("safetensors")
    x, y = _data(32)
    model = fc.Sequential([L.ZeroPadding2D(1), L.Conv2D(4, 3), L.BatchNormalization(),
                           L.LeakyReLU(), L.AveragePooling2D(3, 1, "same"),
                           L.Conv2D(4, 3, activation="tanh"), L.GlobalMaxPooling2D(keepdims=True),
                           L.Reshape((-1,)), L.Dense(6, activation="silu"),
                           L.BatchNormalization(), L.Dense(3, activation="softmax")],
                          input_shape=(2, 8, 8), seed=0)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    want = model.predict(x, verbose=0)
    if suffix == ".npz":
        path = tmp_path / "m.npz"
        model.save(path)
        loaded = fc.load_model(path)
        assert loaded.get_config() == model.get_config()
    else:
        path = tmp_path / "w.safetensors"
        model.save_weights(path)
        loaded = fc.Sequential.from_config(model.get_config())
        loaded.load_weights(path)
    for a, b in zip(loaded.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), want)


# ----------------------------------------------------------------------------------------------
# bad arguments


@pytest.mark.parametrize(("make", "exc", "match"), [
    (lambda: L.BatchNormalization(momentum=1.5), ValueError, "BatchNormalization: momentum"),
    (lambda: L.BatchNormalization(momentum="0.9"), TypeError, "BatchNormalization: momentum"),
    (lambda: L.BatchNormalization(epsilon=0), ValueError, "BatchNormalization: epsilon"),
    (lambda: L.BatchNormalization(axis=1.0), TypeError, "BatchNormalization: axis"),
    (lambda: L.BatchNormalization(center=1), TypeError, "BatchNormalization: center"),
    (lambda: L.AveragePooling2D(0), ValueError, "AveragePooling2D.*pool_size"),
    (lambda: L.AveragePooling2D(2, padding="full"), ValueError, "AveragePooling2D: padding"),
    (lambda: L.GlobalAveragePooling2D(keepdims="yes"), TypeError,
     "GlobalAveragePooling2D: keepdims"),
    (lambda: L.LeakyReLU(-0.1), ValueError, "LeakyReLU: negative_slope"),
    (lambda: L.LeakyReLU("a"), TypeError, "LeakyReLU: negative_slope"),
    (lambda: L.Activation("mish"), ValueError, "Activation: unknown activation 'mish'"),
    (lambda: L.Activation(np.tanh), TypeError, "Activation: activation must be a string"),
    (lambda: L.ZeroPadding2D(-1), ValueError, "ZeroPadding2D: padding"),
    (lambda: L.ZeroPadding2D((1, 2, 3)), TypeError, "ZeroPadding2D: padding"),
    (lambda: L.Reshape((2, -1, -1)), ValueError, "Reshape: target_shape"),
    (lambda: L.Reshape(4), TypeError, "Reshape: target_shape"),
    (lambda: L.Reshape((2, 0)), ValueError, "Reshape: target_shape"),
])
def test_bad_arguments(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


@pytest.mark.parametrize(("layer", "shape", "match"), [
    (L.BatchNormalization(axis=-1), (3, 4, 5), r"BatchNormalization.*axis=-1.*channels-first"),
    (L.BatchNormalization(axis=2), (3, 4), r"axis=2"),
    (L.AveragePooling2D(2), (8,), r"AveragePooling2D.*\(C, H, W\)"),
    (L.AveragePooling2D(5), (1, 3, 3), "AveragePooling2D"),
    (L.GlobalMaxPooling2D(), (3, 4), r"GlobalMaxPooling2D.*\(C, H, W\)"),
    (L.ZeroPadding2D(1), (4,), r"ZeroPadding2D.*\(C, H, W\)"),
    (L.Reshape((5, -1)), (2, 3), r"Reshape.*not a multiple of 5"),
    (L.Reshape((5, 2)), (2, 3), r"Reshape.*\(5, 2\)"),
])
def test_build_errors_name_the_layer(layer, shape, match):
    with pytest.raises(ValueError, match=match):
        _build(layer, shape)


def test_channel_axis_spellings_build():
    _build(L.BatchNormalization(axis=-3), (3, 4, 5))
    _build(L.BatchNormalization(axis=-1), (7,))
    _build(L.BatchNormalization(axis=-2), (3, 7))
