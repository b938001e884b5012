"""The model zoo (fastcnn.models): parameter counts, training with fit, PyTorch twins.

ResNet-20 must have the paper's 0.27M parameters (Keras' resnet_v1 count: 274,442, of which
273,066 trainable); a ResNet trained with ``fit`` must track the same network in PyTorch, from
the same weights on the same batches (BatchNorm in training mode, SGD with momentum); a graph
model's ``to_torch`` must compute what the model computes.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastcnn as fc
from fastcnn import layers as L


def test_resnet20_has_the_papers_parameter_count() -> None:
    m = fc.models.resnet(20)
    assert m.count_params() == 274_442
    assert sum(int(p.size) for p in m.trainable_weights) == 273_066
    assert len([lay for lay in m.layers if isinstance(lay, L.Conv2D)]) == 19 + 2  # + 2 shortcuts
    assert m.output_shape == (10,)


@pytest.mark.parametrize("depth", [8, 14, 32])
def test_resnet_depths(depth: int) -> None:
    m = fc.models.resnet(depth, (3, 16, 16), 5)
    n = (depth - 2) // 6
    convs = [lay for lay in m.layers if isinstance(lay, L.Conv2D) and lay.kernel_size == (3, 3)]
    assert len(convs) == 1 + 6 * n
    assert m.predict(np.zeros((2, 3, 16, 16), np.float32)).shape == (2, 5)


@pytest.mark.parametrize("depth", [0, 7, 21, 2.0, True, "20"])
def test_resnet_depth_is_checked(depth: object) -> None:
    with pytest.raises(ValueError, match="6n \\+ 2"):
        fc.models.resnet(depth)  # type: ignore[arg-type]


def test_vgg_bn_and_the_model_names() -> None:
    v = fc.models.vgg_bn()
    assert v.count_params() == 289_642
    assert set(fc.models.MODELS) >= {"seeds_cnn", "resnet20", "resnet56", "vgg_bn"}
    assert fc.models.build("resnet20", (3, 32, 32), 10).count_params() == 274_442
    with pytest.raises(ValueError, match="resnet20"):
        fc.models.build("resnet21", (3, 32, 32), 10)


def test_resnet_trains_with_fit_and_round_trips(tmp_path) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 3, 8, 8)).astype(np.float32)
    y = (x[:, 0].mean((1, 2)) > 0).astype(np.int64)
    m = fc.models.resnet(8, (3, 8, 8), 2, seed=1)
    m.compile(fc.optimizers.SGD(0.05, momentum=0.9), "sparse_categorical_crossentropy",
              ["accuracy"])
    h = m.fit(x, y, batch_size=16, epochs=4, verbose=0, seed=0)
    assert h.history["loss"][-1] < h.history["loss"][0]
    m.save(tmp_path / "r.npz")
    back = fc.load_model(tmp_path / "r.npz")
    assert np.array_equal(back.predict(x), m.predict(x))


def test_a_resnet_tracks_its_pytorch_twin_over_an_epoch() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((96, 3, 8, 8)).astype(np.float32)
    y = rng.integers(0, 4, 96)
    m = fc.models.resnet(8, (3, 8, 8), 4, seed=2)
    twin = m.to_torch(logits=True).double()  # float64: the reference for fastcnn's float32
    twin.train()
    # a small learning rate: at 0.05 float32 itself drifts from float64 by 0.25 % within six
    # steps (PyTorch's float32 twin as much as fastcnn: chaos, not a bug)
    m.compile(fc.optimizers.SGD(0.005, momentum=0.9), "sparse_categorical_crossentropy")
    opt = torch.optim.SGD(twin.parameters(), lr=0.005, momentum=0.9)
    ours, theirs = [], []
    for b in range(0, 96, 16):
        xb, yb = x[b:b + 16], y[b:b + 16]
        ours.append(float(m.train_on_batch(xb, yb)))
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(twin(torch.from_numpy(xb).double()),
                                                 torch.from_numpy(yb))
        loss.backward()
        opt.step()
        theirs.append(float(loss.detach()))
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
    # and the moving statistics / weights after the epoch
    bn = next(lay for lay in m.layers if isinstance(lay, L.BatchNormalization))
    tbn = next(mod for mod in twin.modules() if isinstance(mod, torch.nn.BatchNorm2d))
    np.testing.assert_allclose(bn.params["moving_mean"], tbn.running_mean.numpy(),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bn.params["moving_variance"], tbn.running_var.numpy(),
                               rtol=1e-4, atol=1e-5)


def test_graph_to_torch_computes_what_the_model_computes() -> None:
    torch = pytest.importorskip("torch")
    inp = fc.Input((3, 9, 9))
    a = L.Conv2D(4, 3, padding="same", activation="relu")(inp)
    b = L.Conv2D(4, 1)(inp)
    shared = L.Conv2D(4, 3, padding="same")
    c = L.Concatenate()([shared(a), shared(b)])
    out = L.Dense(3, activation="softmax")(L.GlobalAveragePooling2D()(L.Add()([c, c])))
    m = fc.Model(inp, out, seed=0)
    x = np.random.default_rng(0).standard_normal((5, 3, 9, 9)).astype(np.float32)
    t = m.to_torch()
    with torch.no_grad():
        np.testing.assert_allclose(t(torch.from_numpy(x)).numpy(), m.predict(x), rtol=1e-5,
                                   atol=1e-6)
        logits = m.to_torch(logits=True)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(np.exp(logits) / np.exp(logits).sum(1, keepdims=True),
                               m.predict(x), rtol=1e-5, atol=1e-6)


def test_cli_trains_a_resnet_and_refuses_an_unknown_model(tmp_path, capsys) -> None:
    from fastcnn.cli import main

    out = tmp_path / "r.npz"
    assert main(["train", "--model", "resnet20", "--epochs", "1", "--quiet", "--out",
                 str(out)]) == 0
    back = fc.load_model(out)
    assert back.count_params() == 274_442 - 16 * 9 * 2  # digits: 1 input channel, not 3
    assert main(["train", "--model", "resnet21", "--epochs", "1"]) == 2
    assert "--model must be one of" in capsys.readouterr().err


def test_safetensors_from_pytorch_with_batchnorm_load(tmp_path) -> None:
    torch = pytest.importorskip("torch")
    st = pytest.importorskip("safetensors.torch")
    m = fc.Sequential([L.Conv2D(4, 3, use_bias=False), L.BatchNormalization(), L.ReLU(),
                       L.GlobalAveragePooling2D(), L.Dense(2)], input_shape=(3, 8, 8), seed=0)
    net = m.to_torch()
    with torch.no_grad():
        net[1].running_mean.add_(0.5)
    sd = net.state_dict()
    assert any(k.endswith("num_batches_tracked") for k in sd)
    st.save_file(sd, str(tmp_path / "w.safetensors"))
    m.load_weights(tmp_path / "w.safetensors")   # the step counter is ignored, not refused
    np.testing.assert_allclose(m.layers[1].params["moving_mean"], 0.5)
    sd["bogus"] = torch.zeros(1)
    st.save_file(sd, str(tmp_path / "x.safetensors"))
    with pytest.raises(ValueError, match="unexpected tensors \\['bogus'\\]"):
        m.load_weights(tmp_path / "x.safetensors")
