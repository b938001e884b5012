"""PyTorch conversion of issue 17's layers: ``to_torch`` / ``from_torch`` for BatchNormalization
(``BatchNorm1d`` / ``BatchNorm2d``, momentum converted, eps, running statistics), AveragePooling2D
(``AvgPool2d``), the global poolings (``AdaptiveAvgPool2d(1)`` / ``AdaptiveMaxPool2d(1)`` and
``Flatten``), Tanh, LeakyReLU, GELU, SiLU, ZeroPadding2D (``ZeroPad2d``), Reshape
(``Unflatten``); ``.safetensors`` weights loaded into the torch model; what is refused.
Skipped without torch."""

from __future__ import annotations

import numpy as np
import pytest

import fastcnn as fc
from fastcnn import layers as L

torch = pytest.importorskip("torch")
nn = torch.nn
ft = pytest.importorskip("fastcnn.torch")


def _model(seed: int = 0) -> fc.Sequential:
    return fc.Sequential([
        L.ZeroPadding2D(((1, 0), (2, 1))), L.Conv2D(4, 3, padding="same"),
        L.BatchNormalization(momentum=0.9, epsilon=1e-4), L.Activation("silu"),
        L.AveragePooling2D(3, strides=1, padding="same"), L.Conv2D(4, 3, activation="gelu"),
        L.AveragePooling2D(2, padding="same"), L.Activation("tanh"),
        L.GlobalAveragePooling2D(keepdims=True), L.Reshape((-1,)), L.Dense(6),
        L.BatchNormalization(), L.LeakyReLU(0.1), L.Reshape((2, 3)), L.Reshape((6,)),
        L.Dense(3, activation="leaky_relu"), L.Activation(None),
    ], input_shape=(2, 9, 8), seed=seed)


def _train_a_little(model: fc.Sequential, rng: np.random.Generator) -> np.ndarray:
    x = rng.standard_normal((16, *model.input_shape)).astype(np.float32)
    model.compile("adam", "mse")
    model.fit(x, np.zeros((16, *model.output_shape), np.float32), epochs=2, batch_size=8,
              verbose=0)
    return x


def test_to_torch_and_back(rng):
    model = _model()
    x = _train_a_little(model, rng)
    tm = model.to_torch()
    kinds = [type(m).__name__ for m in tm]
    assert kinds == ["ZeroPad2d", "Conv2d", "BatchNorm2d", "SiLU", "AvgPool2d", "Conv2d", "GELU",
                     "AvgPool2d", "Tanh", "AdaptiveAvgPool2d", "Flatten", "Linear",
                     "BatchNorm1d", "LeakyReLU", "Unflatten", "Flatten", "Linear", "LeakyReLU",
                     "Identity"]
    bn = tm[2]
    assert bn.momentum == pytest.approx(0.1) and bn.eps == pytest.approx(1e-4)
    assert tm[12].momentum == pytest.approx(0.01) and tm[12].eps == pytest.approx(1e-3)
    assert tm[13].negative_slope == pytest.approx(0.1) and tm[17].negative_slope == 0.2
    assert not bn.running_mean.requires_grad and bn.weight.requires_grad
    np.testing.assert_array_equal(bn.running_var.numpy(),
                                  model.layers[2].params["moving_variance"])
    tm.eval()
    with torch.no_grad():
        want = tm(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=1e-5, atol=1e-6)
    back = ft.from_torch(tm, model.input_shape)
    np.testing.assert_allclose(back.predict(x, verbose=0), want, rtol=1e-5, atol=1e-6)
    names = [type(lay).__name__ for lay in back.layers]
    assert names.count("BatchNormalization") == 2 and "ZeroPadding2D" in names
    assert back.layers[2].momentum == pytest.approx(0.9)
    gap = next(lay for lay in back.layers if isinstance(lay, L.GlobalAveragePooling2D))
    assert not gap.keepdims  # AdaptiveAvgPool2d(1) + Flatten (the Reshape((-1,)))


def test_from_torch_merges_a_flatten_after_global_pooling_and_a_same_pad(rng):
    tm = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(2, 3, 2), nn.BatchNorm2d(3),
                       nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(3, 4), nn.BatchNorm1d(4),
                       nn.Unflatten(1, (2, 2)), nn.Flatten())
    model = ft.from_torch(tm, (2, 6, 6))
    assert [type(lay).__name__ for lay in model.layers] == [
        "Conv2D", "BatchNormalization", "GlobalMaxPooling2D", "Dense", "BatchNormalization",
        "Reshape", "Flatten"]
    assert model.layers[0].padding == "same" and not model.layers[2].keepdims
    tm.eval()
    x = rng.standard_normal((3, 2, 6, 6)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(model.predict(x, verbose=0), tm(torch.from_numpy(x)).numpy(),
                                   rtol=1e-5, atol=1e-6)


def test_frozen_batch_norm_and_affine_false():
    tm = nn.Sequential(nn.BatchNorm1d(3, affine=False), nn.Linear(3, 2), nn.BatchNorm1d(2))
    tm[2].weight.requires_grad_(False)
    tm[2].bias.requires_grad_(False)
    model = ft.from_torch(tm, (3,))
    bn0, _, bn2 = model.layers
    assert not bn0.center and not bn0.scale and bn0.count_params() == 6
    assert not bn2.trainable
    back = model.to_torch()
    assert not back[2].weight.requires_grad and back[0].weight is None


def test_safetensors_weights_load_into_the_torch_model(tmp_path, rng):
    pytest.importorskip("safetensors")
    st_torch = pytest.importorskip("safetensors.torch")
    model = _model()
    x = _train_a_little(model, rng)
    path = tmp_path / "w.safetensors"
    model.save_weights(path)
    tm = _model(seed=5).to_torch()
    tm.load_state_dict(st_torch.load_file(str(path)))  # strict: num_batches_tracked filled in
    tm.eval()
    with torch.no_grad():
        np.testing.assert_allclose(tm(torch.from_numpy(x)).numpy(), model.predict(x, verbose=0),
                                   rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("module", "shape", "match"), [
    (nn.AvgPool2d(3, 1, 1), (1, 5, 5), "count_include_pad"),
    (nn.AvgPool2d(2, divisor_override=3), (1, 4, 4), "divisor_override"),
    (nn.BatchNorm2d(2, momentum=None), (2, 4, 4), "momentum=None"),
    (nn.BatchNorm2d(2, track_running_stats=False), (2, 4, 4), "track_running_stats=False"),
    (nn.BatchNorm2d(3), (2, 4, 4), "normalises 3 channels"),
    (nn.BatchNorm1d(2), (2, 4, 4), r"\(N, C\) or \(N, C, L\)"),
    (nn.AdaptiveAvgPool2d(2), (1, 4, 4), "output_size=1"),
    (nn.LeakyReLU(-0.1), (3,), "negative slope"),
    (nn.ZeroPad2d(-1), (1, 4, 4), "negative padding"),
])
def test_from_torch_refuses(module, shape, match):
    with pytest.raises(ValueError, match=rf"from_torch: module \[0\].*{match}"):
        ft.from_torch(nn.Sequential(module), shape)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_both_forms_convert_both_ways(approximate):
    net = nn.Sequential(nn.Linear(4, 6), nn.GELU(approximate=approximate))
    model = ft.from_torch(net, (4,))
    assert model.layers[-1].approximate is (approximate == "tanh")
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32) * 3
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=1e-5, atol=1e-6)
    back = model.to_torch()
    assert isinstance(back[-1], nn.GELU) and back[-1].approximate == approximate


def test_to_torch_refuses_an_average_pooling_it_cannot_express():
    model = fc.Sequential([L.AveragePooling2D(2, 1, "same")], input_shape=(1, 4, 4))
    with pytest.raises(ValueError, match=r"no torch\.nn equivalent.*odd pool_size"):
        model.to_torch()
