"""ONNX for issue 17's layers: every new layer exported (BatchNormalization folded or as its own
node, AveragePool, GlobalAveragePool / GlobalMaxPool, Tanh, LeakyRelu, Gelu or its
decomposition, SiLU, Pad, Reshape), run by onnxruntime against ``predict``, and read back by
``load_onnx``; graphs PyTorch exports for the same modules; the errors of the new readers.
Skipped without onnx / onnxruntime."""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np
import pytest

import fastcnn as fc
from fastcnn import layers as L

TOL = 1e-5


@pytest.fixture(scope="module")
def onnx() -> Any:
    return pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def ort() -> Any:
    return pytest.importorskip("onnxruntime")


def _run(ort: Any, proto: Any, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    (name,) = [i.name for i in sess.get_inputs()]
    return sess.run(None, {name: x})[0]


def _close(a: np.ndarray, b: np.ndarray, tol: float = TOL) -> None:
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * max(1.0, float(np.abs(b).max())))


def _randomise_bn(model: fc.Sequential, rng: np.random.Generator) -> None:
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            for k, p in layer.params.items():
                p[...] = rng.uniform(0.5, 2, p.shape) if k in ("gamma", "moving_variance") \
                    else rng.standard_normal(p.shape)


def _model(seed: int = 0) -> fc.Sequential:
    return fc.Sequential([
        L.ZeroPadding2D(((1, 0), (2, 1))), L.Conv2D(4, 3, padding="same"),
        L.BatchNormalization(momentum=0.9), L.Activation("silu"),
        L.AveragePooling2D(3, strides=1, padding="same"), L.Conv2D(4, 3, activation="gelu"),
        L.AveragePooling2D(2, padding="same"), L.BatchNormalization(center=False),
        L.Activation("tanh"), L.Conv2D(3, 1, activation="leaky_relu"),
        L.GlobalMaxPooling2D(keepdims=True), L.Reshape((3, 1)), L.Reshape((-1,)), L.Dense(5),
        L.BatchNormalization(scale=False), L.LeakyReLU(), L.Dense(4), L.Activation("sigmoid"),
    ], input_shape=(2, 9, 8), seed=seed)


@pytest.mark.parametrize("opset", [17, 20])
@pytest.mark.parametrize("fold", [True, False])
def test_export_run_and_load_every_new_layer(onnx, ort, rng, opset, fold):
    from fastcnn.onnx import load_onnx, to_onnx

    if opset > onnx.defs.onnx_opset_version():
        pytest.skip(f"onnx knows opsets up to {onnx.defs.onnx_opset_version()}")
    model = _model()
    _randomise_bn(model, rng)
    x = rng.standard_normal((5, 2, 9, 8)).astype(np.float32)
    want = model.predict(x, verbose=0)
    proto = to_onnx(model, opset, fold_batch_norm=fold)
    ops = [n.op_type for n in proto.graph.node]
    # folded: the BatchNormalization after a Conv2D / Dense is gone; the one after a pooling
    # can't fold and stays
    assert ops.count("BatchNormalization") == (1 if fold else 3)
    assert ("Gelu" in ops) == (opset >= 20) and ("Erf" in ops) == (opset < 20)
    for op in ("Pad", "AveragePool", "GlobalMaxPool", "Tanh", "LeakyRelu", "Reshape", "Mul"):
        assert op in ops
    _close(_run(ort, proto, x), want)
    back = load_onnx(proto)
    _close(back.predict(x, verbose=0), want)
    kinds = [type(lay).__name__ for lay in back.layers]
    assert kinds.count("BatchNormalization") == (1 if fold else 3)
    assert "ZeroPadding2D" in kinds and "GlobalMaxPooling2D" in kinds and "Reshape" in kinds
    acts = [getattr(lay, "activation", None) for lay in back.layers]
    assert "silu" in acts and "gelu" in acts


def test_folded_export_has_the_folded_weights(onnx, rng):
    from fastcnn.onnx import to_onnx

    model = fc.Sequential([L.Conv2D(3, 3, use_bias=False), L.BatchNormalization()],
                          input_shape=(2, 5, 5), seed=0)
    _randomise_bn(model, rng)
    proto = to_onnx(model)
    assert [n.op_type for n in proto.graph.node] == ["Conv"]
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    folded = L.fold_batch_norm(model.layers[0], model.layers[1])
    np.testing.assert_array_equal(inits["conv2d/kernel"], folded.params["kernel"])
    np.testing.assert_array_equal(inits["conv2d/bias"], folded.params["bias"])
    plain = to_onnx(model, fold_batch_norm=False)
    assert [n.op_type for n in plain.graph.node] == ["Conv", "BatchNormalization"]
    bn = next(n for n in plain.graph.node if n.op_type == "BatchNormalization")
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in bn.attribute}
    assert attrs["epsilon"] == pytest.approx(1e-3) and attrs["momentum"] == pytest.approx(0.99)
    with pytest.raises(TypeError, match="fold_batch_norm"):
        to_onnx(model, fold_batch_norm="yes")


def test_export_file_and_global_average_pooling(ort, tmp_path, rng):
    from fastcnn.onnx import load_onnx

    model = fc.Sequential([L.Conv2D(4, 3), L.BatchNormalization(), L.ReLU(),
                           L.GlobalAveragePooling2D(), L.Dense(3, activation="softmax")],
                          input_shape=(1, 6, 6), seed=0)
    _randomise_bn(model, rng)
    path = tmp_path / "m.onnx"
    model.export(path, fold_batch_norm=False)
    x = rng.standard_normal((4, 1, 6, 6)).astype(np.float32)
    back = load_onnx(path)
    assert [type(lay).__name__ for lay in back.layers] == [
        "Conv2D", "BatchNormalization", "ReLU", "GlobalAveragePooling2D", "Dense"]
    assert back.layers[3].keepdims is False  # GlobalAveragePool + Flatten
    assert back.layers[1].get_config()["epsilon"] == 1e-3  # the float32 attribute, shortened
    _close(back.predict(x, verbose=0), model.predict(x, verbose=0))
    model.export(path)  # folded: Conv (+ Relu, read back as the conv's activation)
    folded = load_onnx(path)
    assert [type(lay).__name__ for lay in folded.layers] == [
        "Conv2D", "GlobalAveragePooling2D", "Dense"]
    assert folded.layers[0].activation == "relu"
    _close(folded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_torch_exported_graphs_load(onnx, rng):
    torch = pytest.importorskip("torch")
    from fastcnn.onnx import load_onnx

    nn = torch.nn
    tm = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(4), nn.SiLU(),
                       nn.AvgPool2d(3, 1, 1, count_include_pad=False), nn.Conv2d(4, 3, 3),
                       nn.GELU(), nn.AvgPool2d(2), nn.Tanh(), nn.AdaptiveAvgPool2d(1),
                       nn.Flatten(), nn.Linear(3, 5), nn.BatchNorm1d(5), nn.LeakyReLU(0.1),
                       nn.Linear(5, 3), nn.Sigmoid())
    with torch.no_grad():
        for m in tm.modules():
            if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                m.weight.uniform_(0.5, 2)
    tm.eval()
    x = rng.standard_normal((3, 2, 9, 9)).astype(np.float32)
    with torch.no_grad():
        want = tm(torch.from_numpy(x)).numpy()
    for opset in (17, 20):
        f = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(tm, torch.from_numpy(x[:1]), f, dynamo=False, opset_version=opset,
                              input_names=["input"], dynamic_axes={"input": {0: "N"}})
        back = load_onnx(onnx.load_from_string(f.getvalue()))
        kinds = [type(lay).__name__ for lay in back.layers]
        assert "BatchNormalization" in kinds and "LeakyReLU" in kinds
        _close(back.predict(x, verbose=0), want)


def _graph(onnx: Any, nodes: list[Any], inits: dict[str, np.ndarray], shape: list[Any],
           opset: int = 17) -> Any:
    h = onnx.helper
    f32 = onnx.TensorProto.FLOAT
    graph = h.make_graph(
        nodes, "g", [h.make_tensor_value_info("x", f32, shape)],
        [h.make_tensor_value_info(nodes[-1].output[0], f32, None)],
        initializer=[onnx.numpy_helper.from_array(v, name=k) for k, v in inits.items()])
    proto = onnx.shape_inference.infer_shapes(
        h.make_model(graph, opset_imports=[h.make_opsetid("", opset)]))
    out = proto.graph.output[0].type.tensor_type
    if not out.HasField("shape"):
        out.shape.dim.add()
        out.shape.dim.add()
    return proto


def _fails(onnx: Any, nodes: list[Any], inits: dict[str, np.ndarray], shape: list[Any],
           match: str, opset: int = 17) -> None:
    from fastcnn.onnx import load_onnx

    with pytest.raises(ValueError, match=match):
        load_onnx(_graph(onnx, nodes, inits, shape, opset))


def test_new_readers_refuse_what_they_cannot_read(onnx, rng):
    mk = onnx.helper.make_node
    x4 = ["N", 2, 6, 6]
    c = {k: np.ones(2, np.float32) for k in ("s", "b", "m", "v")}
    _fails(onnx, [mk("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], name="bn",
                     training_mode=1)], c, x4, r"node #0 \(BatchNormalization 'bn'\): "
                                               r"training_mode=1")
    _fails(onnx, [mk("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"])],
           {**c, "v": np.ones(3, np.float32)}, x4, r"input_var of shape \(3,\), expected \(2,\)")
    _fails(onnx, [mk("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                     count_include_pad=1)], {}, x4, "count_include_pad=1")
    _fails(onnx, [mk("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2],
                     pads=[1, 1, 1, 1])], {}, x4, "neither fastcnn's 'valid'")
    if onnx.defs.onnx_opset_version() >= 20:  # the first opset with Gelu
        # approximate="tanh" reads as GELU(approximate=True) now (tests/test_onnx_gelu_tanh.py);
        # a form ONNX does not define is still refused
        _fails(onnx, [mk("Gelu", ["x"], ["y"], approximate="erf")], {}, x4,
               "approximate='erf'", opset=20)
    _fails(onnx, [mk("LeakyRelu", ["x"], ["y"], alpha=-0.5)], {}, x4, "alpha -0.5")
    pads = {"p": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)}
    _fails(onnx, [mk("Pad", ["x", "p"], ["y"], mode="reflect")], pads, x4, "mode 'reflect'")
    _fails(onnx, [mk("Pad", ["x", "p", "v"], ["y"])], {**pads, "v": np.array(1.0, np.float32)},
           x4, "constant_value other than 0")
    _fails(onnx, [mk("Pad", ["x", "p"], ["y"])],
           {"p": np.array([0, 1, 0, 0, 0, 0, 0, 0], np.int64)}, x4, "only H and W are padded")
    _fails(onnx, [mk("Reshape", ["x", "s"], ["y"])], {"s": np.array([0, 5, -1], np.int64)},
           x4, r"shape \[0, 5, -1\] does not fit")
    _fails(onnx, [mk("Reshape", ["x", "s"], ["y"])], {"s": np.array([-1, 2, -1], np.int64)},
           x4, "two sizes to infer")
    _fails(onnx, [mk("GlobalAveragePool", ["x"], ["g"]), mk("GlobalMaxPool", ["g"], ["y"])],
           {}, ["N", 4], r"GlobalAveragePool.*needs \(C, H, W\)")


def test_reshape_and_silu_subgraph_read_back(onnx, ort, rng):
    from fastcnn.onnx import load_onnx

    mk = onnx.helper.make_node
    nodes = [mk("Sigmoid", ["x"], ["s"]), mk("Mul", ["s", "x"], ["m"]),
             mk("Reshape", ["m", "shape"], ["r"]), mk("Reshape", ["r", "flat"], ["y"])]
    proto = _graph(onnx, nodes, {"shape": np.array([0, 0, 36], np.int64),
                                 "flat": np.array([-1, 72], np.int64)}, ["N", 2, 6, 6])
    model = load_onnx(proto)
    assert [type(lay).__name__ for lay in model.layers] == ["Activation", "Reshape", "Flatten"]
    assert model.layers[0].activation == "silu" and model.layers[1].target_shape == (2, 36)
    x = rng.standard_normal((3, 2, 6, 6)).astype(np.float32)
    _close(model.predict(x, verbose=0), _run(ort, proto, x))
    # a Sigmoid whose output is also used elsewhere is no SiLU: the chain reader refuses it
    bad = [mk("Sigmoid", ["x"], ["s"]), mk("Mul", ["s", "x"], ["m"]), mk("Add", ["m", "s"], ["y"])]
    with pytest.raises(ValueError, match=r"node #1 \(Mul ''\): op 'Mul' is not supported"):
        load_onnx(_graph(onnx, bad, {}, ["N", 2, 6, 6]))
