"""A graph fastcnn.Model through the rest of the API: fit / evaluate / predict / train_on_batch,
save / load_model / save_weights, to_json / model_from_json, ONNX export (run with onnxruntime),
to("cuda"), and PyTorch parity of a residual model (forward and one SGD step)."""

from __future__ import annotations

import numpy as np
import pytest

import fastcnn as fc
from fastcnn import layers as L


def _resnet_like(seed: int = 0, classes: int = 3) -> fc.Model:
    """A stem conv, one residual block with a 1x1 projection, pooling and a softmax head."""
    x = fc.Input((2, 8, 8))
    h = L.Conv2D(4, 3, padding="same", activation="relu")(x)
    r = L.Conv2D(4, 3, padding="same", activation="relu")(h)
    r = L.Conv2D(4, 3, padding="same")(r)
    h = L.ReLU()(L.Add()([r, h]))
    b = L.Conv2D(2, 1)(h)
    h = L.Concatenate()([h, b])  # (6, 8, 8)
    h = L.MaxPool2D(2)(h)
    h = L.Dropout(0.25)(h)
    y = L.Dense(classes, activation="softmax")(L.Flatten()(h))
    return fc.Model(x, y, seed=seed, name="resnet_like")


def _data(n: int = 48, classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, classes, n)
    x = rng.standard_normal((n, 2, 8, 8)).astype(np.float32) * 0.5
    x[:, 0, :, :] += y[:, None, None]  # learnable
    return x, y


def test_fit_evaluate_predict_a_residual_model() -> None:
    m = _resnet_like()
    m.compile(fc.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", ["accuracy"])
    assert m.output_fused
    x, y = _data()
    h = m.fit(x, y, batch_size=16, epochs=6, verbose=0, seed=0, validation_split=0.25)
    assert h.history["loss"][-1] < 0.7 * h.history["loss"][0]
    loss, acc = m.evaluate(x, y, batch_size=16)
    assert np.isfinite(loss) and 0 <= acc <= 1
    p = m.predict(x, batch_size=7)
    assert p.shape == (48, 3)
    np.testing.assert_allclose(p.sum(1), 1, rtol=1e-5)
    np.testing.assert_array_equal(m.predict_on_batch(x), m(x))
    assert np.all(np.isfinite(m.train_on_batch(x[:8], y[:8])))
    assert np.all(np.isfinite(m.test_on_batch(x[:8], y[:8])))


def test_fit_is_deterministic() -> None:
    x, y = _data()
    ws = []
    for _ in range(2):
        m = _resnet_like(seed=5)
        m.compile("sgd", "sparse_categorical_crossentropy")
        m.fit(x, y, batch_size=16, epochs=2, seed=1)
        ws.append(m.get_weights())
    for a, b in zip(*ws, strict=True):
        np.testing.assert_array_equal(a, b)


def test_save_load_model_round_trip(tmp_path) -> None:
    m = _resnet_like()
    m.compile(fc.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", ["accuracy"])
    x, y = _data()
    m.fit(x, y, batch_size=16, epochs=1, seed=0)
    m.metadata = {"classes": ["a", "b", "c"]}
    m.save(tmp_path / "m.npz")
    back = fc.load_model(tmp_path / "m.npz")
    assert isinstance(back, fc.Functional) and back.name == "resnet_like"
    assert [lay.name for lay in back.layers] == [lay.name for lay in m.layers]
    np.testing.assert_array_equal(back.predict(x), m.predict(x))
    assert back.metadata == m.metadata
    # the optimizer state and the Dropout generator came back: the next step is the same
    assert back.train_on_batch(x[:16], y[:16]) == m.train_on_batch(x[:16], y[:16])
    for a, b in zip(back.get_weights(), m.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    m.save_weights(tmp_path / "w.npz")
    other = _resnet_like(seed=9)
    other.load_weights(tmp_path / "w.npz")
    np.testing.assert_array_equal(other.predict(x), m.predict(x))
    with pytest.raises(ValueError, match=r"no \.safetensors layout"):
        m.save_weights(tmp_path / "w.safetensors")
    try:  # a graph converts to PyTorch too (fastcnn.torch.graph)
        import torch
    except ImportError:
        return
    with torch.no_grad():
        np.testing.assert_allclose(m.to_torch().eval()(torch.from_numpy(x)).numpy(),
                                   m.predict(x), rtol=1e-5, atol=1e-6)


def test_json_round_trip() -> None:
    m = _resnet_like(seed=3)
    text = m.to_json()
    assert '"class_name": "Functional"' in text and "inbound_nodes" in text
    again = fc.model_from_json(text)
    assert again.get_config() == m.get_config()
    for a, b in zip(again.get_weights(), m.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)  # fresh weights from the same seed
    x, _ = _data(4)
    np.testing.assert_array_equal(again(x), m(x))


def test_shared_layer_round_trips() -> None:
    x = fc.Input((4,))
    d = L.Dense(4, activation="relu")
    m = fc.Model(x, L.Dense(2)(d(d(x))), seed=0)
    again = fc.model_from_json(m.to_json())
    assert len(again.layers) == 3 and again._shared == m._shared
    xs = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_array_equal(again(xs), m(xs))


def test_onnx_export_runs_in_onnxruntime(tmp_path) -> None:
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    m = _resnet_like()
    x = fc.Input((3,))
    d = L.Dense(3, activation="sigmoid")
    shared = fc.Model(x, L.Add()([d(d(x)), x, x]))  # a shared layer and a 3-input Add
    for model, xs in ((m, _data(5)[0]), (shared, np.ones((2, 3), np.float32))):
        path = tmp_path / f"{model.name}.onnx"
        model.export(path)
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = sess.run(None, {"input": xs})[0]
        np.testing.assert_allclose(got, model.predict(xs), rtol=1e-5, atol=1e-6)
    import onnx

    ops = [n.op_type for n in onnx.load(str(tmp_path / "resnet_like.onnx")).graph.node]
    assert "Add" in ops and "Concat" in ops
    assert ops.count("Conv") == 4
    ops = [n.op_type for n in onnx.load(str(tmp_path / "model.onnx")).graph.node]
    assert ops.count("Gemm") == 2 and "Sum" in ops


def test_sequential_onnx_export_is_unchanged(tmp_path) -> None:
    onnx = pytest.importorskip("onnx")
    m = fc.models.seeds_cnn((1, 8, 8), 3, padding="same")
    names = [(n.name, list(n.input), list(n.output)) for n in fc.onnx.to_onnx(m).graph.node]
    assert names[0] == ("conv2d", ["input", "conv2d/kernel", "conv2d/bias"],
                        ["conv2d/output"])
    assert names[-1][2] == ["output"]
    assert onnx is not None


def test_to_cuda_falls_back_with_a_warning(monkeypatch) -> None:
    from fastcnn import _device

    monkeypatch.setattr(_device, "cuda_unavailable_reason", lambda: "no GPU here")
    m = _resnet_like()
    with pytest.warns(RuntimeWarning, match="no GPU here"):
        assert m.to("cuda") is m
    assert m.device == "cpu"


@pytest.mark.cuda
def test_a_graph_trains_on_the_gpu_like_on_the_cpu(cp) -> None:
    x, y = _data(16)
    cpu, gpu = _resnet_like(), _resnet_like()
    gpu.to("cuda")
    assert all(isinstance(w, cp.ndarray) for w in gpu.weights)
    for m in (cpu, gpu):
        m.compile(fc.optimizers.SGD(0.05), "sparse_categorical_crossentropy")
    got = [gpu.train_on_batch(x, y) for _ in range(3)]
    want = [cpu.train_on_batch(x, y) for _ in range(3)]
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(gpu.predict(x), cpu.predict(x), rtol=2e-4, atol=2e-5)


# --------------------------------------------------------------------------------------------
# against PyTorch


def test_residual_model_matches_pytorch_forward_and_one_sgd_step() -> None:
    torch = pytest.importorskip("torch")
    nn = torch.nn
    x = fc.Input((3, 8, 8))
    h = L.Conv2D(4, 3, padding="same", activation="relu")(x)
    r = L.Conv2D(4, 3, padding="same", activation="relu")(h)
    r = L.Conv2D(4, 3, padding="same")(r)
    h = L.ReLU()(L.Add()([r, h]))
    h = L.Concatenate()([h, L.Conv2D(2, 1)(h)])
    y = L.Dense(5)(L.Flatten()(L.MaxPool2D(2)(h)))
    m = fc.Model(x, y, seed=0)
    m.compile(fc.optimizers.SGD(0.1), fc.losses.SparseCategoricalCrossentropy(from_logits=True))

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, 4, 3, padding=1)
            self.c1 = nn.Conv2d(4, 4, 3, padding=1)
            self.c2 = nn.Conv2d(4, 4, 3, padding=1)
            self.proj = nn.Conv2d(4, 2, 1)
            self.fc = nn.Linear(6 * 4 * 4, 5)

        def forward(self, t):  # type: ignore[no-untyped-def]
            h = torch.relu(self.stem(t))
            h = torch.relu(self.c2(torch.relu(self.c1(h))) + h)
            h = torch.cat([h, self.proj(h)], dim=1)
            return self.fc(torch.flatten(nn.functional.max_pool2d(h, 2), 1))

    net = Net().double()
    mods = [net.stem, net.c1, net.c2, net.proj, net.fc]
    convs = [lay for lay in m.layers if lay.params]
    with torch.no_grad():
        for mod, lay in zip(mods, convs, strict=True):
            mod.weight.copy_(torch.from_numpy(lay.params["kernel"].astype(np.float64)))
            mod.bias.copy_(torch.from_numpy(lay.params["bias"].astype(np.float64)))
    rng = np.random.default_rng(1)
    xs = rng.standard_normal((6, 3, 8, 8)).astype(np.float32)
    ys = rng.integers(0, 5, 6)
    tx = torch.from_numpy(xs.astype(np.float64))
    np.testing.assert_allclose(m(xs), net(tx).detach().numpy(), rtol=1e-4, atol=1e-5)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    loss = nn.functional.cross_entropy(net(tx), torch.from_numpy(ys))
    loss.backward()
    opt.step()
    assert m.train_on_batch(xs, ys) == pytest.approx(float(loss.detach()), rel=1e-5)
    for mod, lay in zip(mods, convs, strict=True):
        np.testing.assert_allclose(lay.params["kernel"], mod.weight.detach().numpy(),
                                   rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(lay.params["bias"], mod.bias.detach().numpy(),
                                   rtol=1e-4, atol=1e-6)
