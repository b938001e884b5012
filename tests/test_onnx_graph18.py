"""load_onnx on graphs (issue 18): the flatten subgraph ``x.view(x.size(0), -1)`` exports
(Shape / Gather / Unsqueeze / Concat / Reshape) and ``torch.flatten(x, 1)`` read as Flatten;
residual graphs (Add, Concat) exported by fastcnn (``models.resnet(20)``) and by PyTorch read as
a fastcnn.Functional whose outputs equal onnxruntime's (max rel err <= 1e-5) and which
fine-tunes; what the graph reader refuses, named.

Skipped without onnx / onnxruntime (and the PyTorch graphs without torch).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import fastcnn as fc
from _torch_onnx import torch_onnx

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from fastcnn.onnx import load_onnx  # noqa: E402


def _max_rel(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-30))


def _ort(proto: Any, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _fit_one_step(model: Any, x: np.ndarray, classes: int) -> None:
    before = [w.copy() for w in model.get_weights()]
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    y = np.arange(len(x)) % classes
    history = model.fit(x, y, batch_size=len(x), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights(),
                                                         strict=True))


@pytest.mark.parametrize("flatten", ["view", "flatten"])
def test_torch_cnn_with_view_or_flatten_reads_as_flatten(flatten: str) -> None:
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.fc = nn.Conv2d(2, 4, 3), nn.Linear(4 * 4 * 4, 3)

        def forward(self, x: Any) -> Any:
            h = torch.relu(self.conv(x))
            h = h.view(h.size(0), -1) if flatten == "view" else torch.flatten(h, 1)
            return self.fc(h)

    torch.manual_seed(0)
    proto = torch_onnx(torch, Net(), (2, 6, 6), onnx)
    ops = [n.op_type for n in proto.graph.node]
    if flatten == "view":
        assert {"Shape", "Gather", "Unsqueeze", "Concat", "Reshape"} <= set(ops), ops
    model = load_onnx(proto)
    assert [type(lay).__name__ for lay in model.layers] == ["Conv2D", "Flatten", "Dense"]
    x = np.random.default_rng(1).standard_normal((5, 2, 6, 6)).astype(np.float32)
    assert _max_rel(model.predict(x, verbose=0), _ort(proto, x)) <= 1e-5


def test_fastcnn_resnet20_export_reads_back_as_a_graph(tmp_path: Any) -> None:
    net = fc.models.resnet(20)
    path = tmp_path / "resnet20.onnx"
    net.export(path)
    proto = onnx.load(str(path))
    assert "Add" in {n.op_type for n in proto.graph.node}
    model = load_onnx(path)
    assert type(model).__name__ == "Functional"
    assert sum(type(lay).__name__ == "Add" for lay in model.layers) == 9
    x = np.random.default_rng(2).standard_normal((4, 3, 32, 32)).astype(np.float32)
    want = _ort(proto, x)
    assert _max_rel(model.predict(x, verbose=0), want) <= 1e-5
    assert _max_rel(net.predict(x, verbose=0), want) <= 1e-5
    _fit_one_step(model, x, 10)


def test_torch_residual_module_with_concat_reads_as_a_graph() -> None:
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(3, 3, 3, padding=1)
            self.bn = nn.BatchNorm2d(3)
            self.b = nn.Conv2d(3, 3, 3, padding=1)
            self.side = nn.Conv2d(3, 2, 1)
            self.fc = nn.Linear(5 * 3 * 3, 4)

        def forward(self, x: Any) -> Any:
            h = torch.relu(self.bn(self.a(x)))
            h = torch.relu(self.b(h) + x)  # the residual Add
            h = torch.cat([h, self.side(x)], dim=1)  # a Concat of two branches
            h = torch.max_pool2d(h, 2)
            return self.fc(h.view(h.size(0), -1))

    torch.manual_seed(0)
    net = Block()
    with torch.no_grad():  # BatchNorm statistics that are not the identity
        net.bn.running_mean.uniform_(-0.5, 0.5)
        net.bn.running_var.uniform_(0.5, 2.0)
    proto = torch_onnx(torch, net, (3, 6, 6), onnx)
    ops = {n.op_type for n in proto.graph.node}
    assert {"Add", "Concat", "Shape"} <= ops, ops
    model = load_onnx(proto)
    kinds = [type(lay).__name__ for lay in model.layers]
    assert type(model).__name__ == "Functional"
    assert "Add" in kinds and "Concatenate" in kinds and "Flatten" in kinds, kinds
    x = np.random.default_rng(3).standard_normal((4, 3, 6, 6)).astype(np.float32)
    want = _ort(proto, x)
    assert _max_rel(model.predict(x, verbose=0), want) <= 1e-5
    assert _max_rel(net(torch.from_numpy(x)).detach().numpy(), want) <= 1e-5
    _fit_one_step(model, x, 4)


def _graph(nodes: list[Any], inits: dict[str, np.ndarray], shape: list[Any],
           output: str | None = None) -> Any:
    h = onnx.helper
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, shape)],
                     [h.make_tensor_value_info(output or nodes[-1].output[0],
                                               onnx.TensorProto.FLOAT, None)],
                     [onnx.numpy_helper.from_array(v, k) for k, v in inits.items()])
    # the checker wants the output's shape: onnx's shape inference writes it (or, where it
    # can't infer one, a rank-2 shape of free dimensions)
    proto = onnx.shape_inference.infer_shapes(h.make_model(g, opset_imports=[
        h.make_opsetid("", 17)]))
    out = proto.graph.output[0].type.tensor_type
    if not out.HasField("shape"):
        out.shape.dim.add()
        out.shape.dim.add()
    return proto


def test_concat_and_sum_of_branches_match_onnxruntime() -> None:
    mk = onnx.helper.make_node
    rng = np.random.default_rng(4)
    w = {"W": rng.standard_normal((3, 2, 3, 3)).astype(np.float32)}
    nodes = [mk("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1]), mk("Relu", ["x"], ["r"]),
             mk("Concat", ["c", "r", "x"], ["cat"], axis=-3),
             mk("Sigmoid", ["cat"], ["s"]), mk("Sum", ["cat", "s", "cat"], ["y"])]
    proto = _graph(nodes, w, ["N", 2, 5, 5])
    model = load_onnx(proto)
    x = rng.standard_normal((2, 2, 5, 5)).astype(np.float32)
    assert _max_rel(model.predict(x, verbose=0), _ort(proto, x)) <= 1e-5
    # the Relu whose input (the graph input) has other consumers stays a layer, and the
    # Sigmoid after the Concat (used three times) is not folded into anything
    kinds = [type(lay).__name__ for lay in model.layers]
    assert kinds.count("Concatenate") == 1 and kinds.count("Add") == 1, kinds


def test_an_activation_is_not_folded_into_a_convolution_with_fan_out() -> None:
    mk = onnx.helper.make_node
    rng = np.random.default_rng(5)
    w = {"W": rng.standard_normal((2, 2, 3, 3)).astype(np.float32)}
    # c feeds the Relu and the Add: folding the Relu into the Conv would change the Add's c
    nodes = [mk("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1]), mk("Relu", ["c"], ["r"]),
             mk("Add", ["c", "r"], ["y"])]
    proto = _graph(nodes, w, ["N", 2, 5, 5])
    model = load_onnx(proto)
    assert [type(lay).__name__ for lay in model.layers] == ["InputLayer", "Conv2D", "ReLU",
                                                            "Add"]
    assert model.layers[1].activation is None
    x = rng.standard_normal((2, 2, 5, 5)).astype(np.float32)
    assert _max_rel(model.predict(x, verbose=0), _ort(proto, x)) <= 1e-5
    # without fan-out it folds, as in a chain
    nodes = [mk("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1]), mk("Relu", ["c"], ["r"]),
             mk("Add", ["r", "x"], ["y"])]
    model = load_onnx(_graph(nodes, w, ["N", 2, 5, 5]))
    assert [type(lay).__name__ for lay in model.layers] == ["InputLayer", "Conv2D", "Add"]
    assert model.layers[1].activation == "relu"


def test_what_the_graph_reader_refuses_is_named() -> None:
    mk = onnx.helper.make_node
    shape = ["N", 2, 4, 4]
    with pytest.raises(ValueError, match=r"node #1 \(Concat 'c'\): axis 0: fastcnn joins "
                                         r"along a non-batch axis"):
        load_onnx(_graph([mk("Relu", ["x"], ["r"]),
                          mk("Concat", ["r", "x"], ["y"], axis=0, name="c")], {}, shape))
    with pytest.raises(ValueError, match=r"node #2 \(Add 'a'\): inputs of shapes "
                                         r"\[\(2, 4, 4\), \(2, 2, 2\)\]"):
        load_onnx(_graph([mk("Relu", ["x"], ["r"]),
                          mk("MaxPool", ["x"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
                          mk("Add", ["r", "p"], ["y"], name="a")], {}, shape))
    with pytest.raises(ValueError, match=r"node #1 \(Mul 'm'\): a shape value .* used as data"):
        load_onnx(_graph([mk("Shape", ["x"], ["s"]), mk("Mul", ["x", "s"], ["y"], name="m")],
                         {}, shape))
    with pytest.raises(ValueError, match=r"node #2 \(Reshape 'r'\): shape \[2, 'N', 4\]: "
                                         r"the batch size moves off axis 0"):
        load_onnx(_graph([mk("Shape", ["x"], ["s"]),
                          mk("Gather", ["s", "perm"], ["t"], axis=0),
                          mk("Reshape", ["x", "t"], ["y"], name="r")],
                         {"perm": np.array([1, 0, 2], np.int64)}, shape))
