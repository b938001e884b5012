"""GELU's tanh form as a layer: ``Activation("gelu", approximate=True)`` (Keras'
``keras.activations.gelu(x, approximate=True)``) and ``layers.GELU(approximate=...)``: forward
and backward against the formula (and PyTorch), the config, the ONNX export (the ``Gelu`` op from
opset 20, its decomposition below) and ``to_torch``."""

from __future__ import annotations

import numpy as np
import pytest

import fastcnn as fc
from fastcnn import layers as L


def _tanh_gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))


def _x() -> np.ndarray:
    return (np.random.default_rng(0).standard_normal((6, 5)) * 2.5).astype(np.float32)


@pytest.mark.parametrize("layer", [lambda: L.Activation("gelu", approximate=True),
                                   lambda: L.GELU(approximate=True), lambda: L.GELU("tanh")])
def test_tanh_form_forward_and_backward(layer) -> None:
    lay = layer()
    lay.build((5,))
    x = _x()
    y = lay.forward(x, training=True)
    np.testing.assert_allclose(y, _tanh_gelu(x.astype(np.float64)), rtol=1e-5, atol=1e-6)
    dy = np.random.default_rng(1).standard_normal(x.shape).astype(np.float32)
    dx = lay.backward(dy)
    eps = 1e-6
    x64 = x.astype(np.float64)
    num = (_tanh_gelu(x64 + eps) - _tanh_gelu(x64 - eps)) / (2 * eps) * dy
    np.testing.assert_allclose(dx, num, rtol=1e-4, atol=1e-5)
    exact = L.Activation("gelu")
    exact.build((5,))
    assert np.abs(exact.forward(x) - y).max() > 1e-5  # really the other form


def test_default_is_the_exact_form_and_the_config_round_trips() -> None:
    x = _x()
    a, b = L.GELU(), L.Activation("gelu")
    for lay in (a, b):
        lay.build((5,))
    np.testing.assert_array_equal(a.forward(x), b.forward(x))
    m = fc.Sequential([L.Dense(4), L.GELU(approximate=True), L.Dense(3),
                       L.Activation("gelu", approximate=True)], input_shape=(5,), seed=0)
    cfg = m.get_config()["layers"]
    assert cfg[1]["config"]["approximate"] is True and cfg[3]["config"]["approximate"] is True
    assert "approximate" not in L.Activation("relu").get_config()  # unchanged configs
    back = fc.model_from_json(m.to_json())
    back.set_weights(m.get_weights())
    np.testing.assert_array_equal(back.predict(x), m.predict(x))
    assert back.layers[1].approximate and back.layers[3].approximate


def test_errors() -> None:
    with pytest.raises(ValueError, match="approximate=True is GELU's tanh form; it needs "
                                         "activation='gelu', got 'relu'"):
        L.Activation("relu", approximate=True)
    with pytest.raises(TypeError, match="approximate must be a bool"):
        L.GELU(approximate="yes")


def test_matches_pytorch_and_to_torch() -> None:
    torch = pytest.importorskip("torch")
    x = _x()
    m = fc.Sequential([L.Dense(4), L.GELU(approximate=True)], input_shape=(5,), seed=0)
    t = m.to_torch()
    assert isinstance(t[1], torch.nn.GELU) and t[1].approximate == "tanh"
    np.testing.assert_allclose(t(torch.from_numpy(x)).detach().numpy(), m.predict(x),
                               rtol=1e-5, atol=1e-6)
    ref = torch.nn.functional.gelu(torch.from_numpy(x), approximate="tanh").numpy()
    lay = L.GELU(approximate=True)
    lay.build((5,))
    np.testing.assert_allclose(lay.forward(x), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("opset", [17, 20])
def test_onnx_export(tmp_path, opset: int) -> None:
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    m = fc.Sequential([L.Dense(8), L.GELU(approximate=True), L.Dense(3),
                       L.Activation("gelu", approximate=True)], input_shape=(5,), seed=0)
    path = tmp_path / "g.onnx"
    m.export(path, opset=opset)
    import onnx

    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert ("Gelu" in ops) == (opset >= 20) and ("Tanh" in ops) == (opset < 20)
    s = ort.InferenceSession(str(path))
    x = _x()
    y = s.run(None, {s.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(y, m.predict(x), rtol=1e-5, atol=1e-6)
