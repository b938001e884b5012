"""ONNX export (``model.export(path, format="onnx")``, ``fastcnn export``) and import
(``fastcnn.onnx.load_onnx``): every layer type and option combination, run in onnxruntime
against ``model.predict`` (max relative error <= 1e-5), the round trip fastcnn -> ONNX ->
fastcnn, a CNN exported by ``torch.onnx.export(..., dynamo=False)``, and the errors.

Max relative error: ``max |a - b| / max |b|`` (an elementwise ratio would blow up at zeros).
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

import fastcnn
from _torch_onnx import torch_onnx
from fastcnn import layers as L
from fastcnn.cli import main as cli_main
from fastcnn.models import seeds_cnn

TOL = 1e-5


@pytest.fixture(scope="module")
def onnx() -> Any:
    return pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def ort() -> Any:
    return pytest.importorskip("onnxruntime")


def _max_rel(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-30))


def _run(ort: Any, proto: Any, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    (name,) = [i.name for i in sess.get_inputs()]
    return sess.run(None, {name: x})[0]


def _check(ort: Any, model: fastcnn.Sequential, x: np.ndarray, opset: int = 17) -> Any:
    """Export ``model``, check the ONNX graph in onnxruntime and its re-import against
    ``model.predict``; returns the ModelProto."""
    from fastcnn.onnx import load_onnx, to_onnx

    proto = to_onnx(model, opset=opset)
    want = model.predict(x, verbose=0)
    assert _max_rel(_run(ort, proto, x), want) <= TOL
    back = load_onnx(proto)
    assert back.input_shape == model.input_shape
    assert _max_rel(back.predict(x, verbose=0), want) <= TOL
    return proto


def _randomise(model: fastcnn.Sequential, rng: np.random.Generator) -> None:
    """Random weights everywhere (biases too: the initialisers give zero biases)."""
    model.set_weights([rng.standard_normal(w.shape).astype(np.float32) * 0.5
                       for w in model.get_weights()])


# --------------------------------------------------------------------------------------------
# export: every layer and option


CONV_CASES = list(itertools.product(
    [3, (2, 3)],                      # kernel_size (an even kernel: asymmetric "same" pads)
    [1, 2],                           # strides
    ["valid", "same", 1, (1, 2)],     # padding
    [1, 2],                           # dilation_rate
    [1, 2],                           # groups
    [True, False],                    # use_bias
    [None, "relu", "sigmoid", "softmax"],
))


@pytest.mark.parametrize(("kernel", "stride", "padding", "dilation", "groups", "bias", "act"),
                         CONV_CASES)
def test_conv2d_every_option(onnx: Any, ort: Any, rng: np.random.Generator, kernel: Any,
                             stride: int, padding: Any, dilation: int, groups: int, bias: bool,
                             act: str | None) -> None:
    model = fastcnn.Sequential([L.Conv2D(4, kernel, strides=stride, padding=padding,
                                         dilation_rate=dilation, groups=groups,
                                         activation=act, use_bias=bias)],
                               input_shape=(4, 9, 8), seed=1)
    _randomise(model, rng)
    x = rng.standard_normal((3, 4, 9, 8)).astype(np.float32)
    proto = _check(ort, model, x)
    conv = proto.graph.node[0]
    assert conv.op_type == "Conv" and len(conv.input) == (3 if bias else 2)
    ops = [n.op_type for n in proto.graph.node]
    assert ops == ["Conv", *{"relu": ["Relu"], "sigmoid": ["Sigmoid"],
                             "softmax": ["Softmax"]}.get(act or "", [])]


def test_conv2d_pads_are_in_onnx_order(onnx: Any) -> None:
    from fastcnn.onnx import to_onnx

    # "same" with a (2, 3) kernel, stride 1 on 9 x 8: H total 1 (0 top, 1 bottom), W total 2
    model = fastcnn.Sequential([L.Conv2D(2, (2, 3), padding="same")], input_shape=(1, 9, 8))
    (conv,) = to_onnx(model).graph.node
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in conv.attribute}
    assert list(attrs["pads"]) == [0, 1, 1, 1]  # [top, left, bottom, right]
    model = fastcnn.Sequential([L.Conv2D(2, 3, padding=(1, 2))], input_shape=(1, 9, 8))
    (conv,) = to_onnx(model).graph.node
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in conv.attribute}
    assert list(attrs["pads"]) == [1, 2, 1, 2]


@pytest.mark.parametrize(("pool", "stride", "padding"), list(itertools.product(
    [1, 2, 3, (2, 3)], [None, 1, 2, (1, 2)], ["valid", "same"])))
def test_maxpool2d_every_option(onnx: Any, ort: Any, rng: np.random.Generator, pool: Any,
                                stride: Any, padding: str) -> None:
    model = fastcnn.Sequential([L.MaxPool2D(pool, strides=stride, padding=padding)],
                               input_shape=(3, 7, 8))
    # all negative: a zero padding (instead of -inf) would show in the output
    x = rng.standard_normal((2, 3, 7, 8)).astype(np.float32) - 10
    _check(ort, model, x)


def test_maxpool2d_explicit_inf_padding_case(onnx: Any, ort: Any,
                                             rng: np.random.Generator) -> None:
    layer = L.MaxPool2D(2, strides=1, padding="same")
    model = fastcnn.Sequential([layer], input_shape=(2, 5, 6))
    assert layer._explicit_pad is not None  # the case fastcnn pads with -inf itself
    x = -np.abs(rng.standard_normal((2, 2, 5, 6))).astype(np.float32) - 1
    _check(ort, model, x)


@pytest.mark.parametrize(("act", "bias"), list(itertools.product(
    [None, "relu", "sigmoid", "softmax"], [True, False])))
def test_dense_every_option(onnx: Any, ort: Any, rng: np.random.Generator, act: str | None,
                            bias: bool) -> None:
    model = fastcnn.Sequential([L.Dense(7, activation=act, use_bias=bias)], input_shape=(12,))
    _randomise(model, rng)
    proto = _check(ort, model, rng.standard_normal((5, 12)).astype(np.float32))
    assert proto.graph.node[0].op_type == "Gemm"


@pytest.mark.parametrize("layer", [L.ReLU, L.Softmax, lambda: L.Activation("sigmoid"),
                                   lambda: L.Activation(None), lambda: L.Dropout(0.3),
                                   L.Flatten])
@pytest.mark.parametrize("shape", [(3, 4, 5), (6,)])
def test_shape_keeping_layers(onnx: Any, ort: Any, rng: np.random.Generator, layer: Any,
                              shape: tuple[int, ...]) -> None:
    model = fastcnn.Sequential([layer()], input_shape=shape)
    _check(ort, model, rng.standard_normal((4, *shape)).astype(np.float32))


def test_dropout_is_dropped(onnx: Any, ort: Any, rng: np.random.Generator) -> None:
    from fastcnn.onnx import to_onnx

    model = fastcnn.Sequential([L.Flatten(), L.Dropout(0.5), L.Dense(3)], input_shape=(2, 3, 3))
    assert [n.op_type for n in to_onnx(model).graph.node] == ["Flatten", "Gemm"]
    _check(ort, model, rng.standard_normal((4, 2, 3, 3)).astype(np.float32))


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_seeds_cnn_dynamic_batch_and_checker(onnx: Any, ort: Any, rng: np.random.Generator,
                                             padding: str) -> None:
    from fastcnn.onnx import to_onnx

    model = seeds_cnn((1, 12, 11), 10, seed=3, padding=padding)
    _randomise(model, rng)
    proto = to_onnx(model)
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version == 17
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "N" and [d.dim_value for d in dims[1:]] == [1, 12, 11]
    for n in (1, 7):
        x = rng.standard_normal((n, 1, 12, 11)).astype(np.float32)
        assert _max_rel(_run(ort, proto, x), model.predict(x, verbose=0)) <= TOL


def test_export_to_a_file_and_newer_opset(onnx: Any, ort: Any, rng: np.random.Generator,
                                          tmp_path: Any) -> None:
    from fastcnn.onnx import load_onnx

    model = seeds_cnn((1, 8, 8), 10, seed=0, padding="same")
    path = tmp_path / "m.onnx"
    model.export(path)  # format="onnx" by default
    model.export(tmp_path / "m21.onnx", format="onnx", opset=21)
    x = rng.standard_normal((5, 1, 8, 8)).astype(np.float32)
    for p, opset in ((path, 17), (tmp_path / "m21.onnx", 21)):
        proto = onnx.load(p)
        assert proto.opset_import[0].version == opset
        assert _max_rel(_run(ort, proto, x), model.predict(x, verbose=0)) <= TOL
        assert _max_rel(load_onnx(p).predict(x, verbose=0), model.predict(x, verbose=0)) <= TOL
    assert sorted(q.name for q in tmp_path.iterdir()) == ["m.onnx", "m21.onnx"]  # no tmp left


def test_metadata_travels_in_metadata_props(onnx: Any, tmp_path: Any) -> None:
    from fastcnn.onnx import load_onnx, to_onnx

    model = seeds_cnn((1, 8, 8), 10)
    assert load_onnx(to_onnx(model)).metadata == {}
    model.metadata = {"class_names": ["a", "b"], "rescale": 1 / 255}
    proto = to_onnx(model)
    assert {p.key for p in proto.metadata_props} == {"fastcnn.metadata"}
    assert load_onnx(proto).metadata == model.metadata
    proto.metadata_props[0].value = "[1, 2]"
    with pytest.raises(ValueError, match="is not a JSON object"):
        load_onnx(proto)
    model.metadata = {"f": object()}
    with pytest.raises(ValueError, match="metadata must be JSON-serialisable"):
        to_onnx(model)


def test_export_errors(onnx: Any, tmp_path: Any) -> None:
    model = seeds_cnn((1, 8, 8), 10)
    with pytest.raises(ValueError, match=r"format must be one of \['onnx'\], got 'tf_saved"):
        model.export(tmp_path / "m", format="tf_saved_model")
    for bad in (16, 99, "17", True):
        with pytest.raises(ValueError, match="opset must be an int from 17"):
            model.export(tmp_path / "m.onnx", opset=bad)
    with pytest.raises(ValueError, match="not built"):
        fastcnn.Sequential([L.Dense(2)]).export(tmp_path / "m.onnx")

    class Custom(L.Layer):
        pass

    with pytest.raises(ValueError, match="no ONNX translation for layer Custom"):
        fastcnn.Sequential([Custom()], input_shape=(3,)).export(tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------------------------
# the CLI


def test_cli_export(onnx: Any, ort: Any, tmp_path: Any, capsys: Any,
                    rng: np.random.Generator) -> None:
    model = seeds_cnn((1, 8, 8), 10, seed=0, padding="same")
    model.save(tmp_path / "m.npz")
    assert cli_main(["export", str(tmp_path / "m.npz"), str(tmp_path / "m.onnx")]) == 0
    assert "exported" in capsys.readouterr().out
    x = rng.standard_normal((3, 1, 8, 8)).astype(np.float32)
    proto = onnx.load(tmp_path / "m.onnx")
    assert _max_rel(_run(ort, proto, x), model.predict(x, verbose=0)) <= TOL


@pytest.mark.parametrize(("args", "message"), [
    (["missing.npz", "out.onnx"], "No such file"),
    (["m.npz", "out.onnx", "--opset", "12"], "opset must be an int from 17"),
])
def test_cli_export_errors(onnx: Any, tmp_path: Any, capsys: Any, monkeypatch: Any,
                           args: list[str], message: str) -> None:
    monkeypatch.chdir(tmp_path)
    seeds_cnn((1, 8, 8), 10).save("m.npz")
    assert cli_main(["export", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fastcnn: error:") and message in err and err.count("\n") == 1


# --------------------------------------------------------------------------------------------
# without onnx


def test_importing_fastcnn_does_not_import_onnx() -> None:
    code = ("import sys, fastcnn, fastcnn.onnx; fastcnn.Sequential; "
            "assert 'onnx' not in sys.modules and 'onnxruntime' not in sys.modules, "
            "sorted(m for m in sys.modules if 'onnx' in m)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_without_onnx_an_import_error_names_the_extra(monkeypatch: Any, tmp_path: Any,
                                                      capsys: Any) -> None:
    from fastcnn.onnx import load_onnx

    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` raises ImportError
    with pytest.raises(ImportError, match=r'pip install "fastcnn\[onnx\]"'):
        load_onnx(tmp_path / "m.onnx")
    model = seeds_cnn((1, 8, 8), 10)
    with pytest.raises(ImportError, match=r'pip install "fastcnn\[onnx\]"'):
        model.export(tmp_path / "m.onnx")
    model.save(tmp_path / "m.npz")
    assert cli_main(["export", str(tmp_path / "m.npz"), str(tmp_path / "m.onnx")]) == 2
    assert 'pip install "fastcnn[onnx]"' in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# import: a CNN exported by PyTorch


def _torch_check(torch: Any, onnx: Any, ort: Any, net: Any, shape: tuple[int, ...],
                 rng: np.random.Generator) -> fastcnn.Sequential:
    """Import ``net``'s ONNX graph; its predictions equal onnxruntime's and PyTorch's."""
    from fastcnn.onnx import load_onnx

    proto = torch_onnx(torch, net, shape, onnx)
    model = load_onnx(proto)
    x = rng.standard_normal((6, *shape)).astype(np.float32)
    got = model.predict(x)
    assert _max_rel(got, _run(ort, proto, x)) <= TOL
    with torch.no_grad():
        assert _max_rel(got, net(torch.from_numpy(x)).numpy()) <= TOL
    return model


def test_torch_seeds_cnn_imports_and_fine_tunes(onnx: Any, ort: Any,
                                                rng: np.random.Generator) -> None:
    torch = pytest.importorskip("torch")
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 16, 3), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 4 * 4, 32), nn.ReLU(),
                        nn.Linear(32, 10))
    model = _torch_check(torch, onnx, ort, net, (1, 12, 12), rng)
    kinds = [(type(lay).__name__, getattr(lay, "activation", None)) for lay in model.layers]
    assert kinds == [("Conv2D", "relu"), ("Conv2D", "relu"), ("MaxPool2D", None),
                     ("Flatten", None), ("Dense", "relu"), ("Dense", None)]
    np.testing.assert_array_equal(model.layers[0].params["kernel"],
                                  net[0].weight.detach().numpy())
    # fine-tune with fastcnn: the logits output trains with a from_logits loss
    x = rng.standard_normal((64, 1, 12, 12)).astype(np.float32)
    y = rng.integers(0, 10, 64)
    model.compile(fastcnn.optimizers.Adam(1e-2),
                  fastcnn.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = model.evaluate(x, y)
    model.fit(x, y, batch_size=16, epochs=5, verbose=0, seed=0)
    assert model.evaluate(x, y) < before


def _net(torch: Any, *mods: Any) -> Any:
    torch.manual_seed(1)
    net = torch.nn.Sequential(*mods)
    with torch.no_grad():  # non-zero biases everywhere
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return net


@pytest.mark.parametrize("conv", [
    dict(stride=2), dict(padding=1), dict(padding=(1, 2)), dict(dilation=2),
    dict(groups=2), dict(bias=False), dict(padding="same"), dict(stride=(2, 1), padding=2),
], ids=str)
def test_torch_conv_options(onnx: Any, ort: Any, rng: np.random.Generator,
                            conv: dict[str, Any]) -> None:
    torch = pytest.importorskip("torch")
    nn = torch.nn
    kernel = (2, 3) if conv.get("padding") == "same" else 3
    net = _net(torch, nn.Conv2d(4, 6, kernel, **conv), nn.ReLU(), nn.Flatten())
    model = _torch_check(torch, onnx, ort, net, (4, 9, 10), rng)
    layer = model.layers[0]
    assert isinstance(layer, L.Conv2D) and layer.activation == "relu"
    assert layer.use_bias == conv.get("bias", True)


@pytest.mark.parametrize("pool", [
    dict(kernel_size=2), dict(kernel_size=3, stride=1, padding=1),
    dict(kernel_size=2, ceil_mode=True), dict(kernel_size=(2, 3), stride=(1, 2)),
], ids=str)
def test_torch_maxpool_options(onnx: Any, ort: Any, rng: np.random.Generator,
                               pool: dict[str, Any]) -> None:
    torch = pytest.importorskip("torch")
    net = _net(torch, torch.nn.MaxPool2d(**pool))
    model = _torch_check(torch, onnx, ort, net, (3, 7, 9), rng)
    assert isinstance(model.layers[0], L.MaxPool2D)


def test_torch_activations_and_flattens(onnx: Any, ort: Any, rng: np.random.Generator) -> None:
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 3, 3, padding=1)
            self.fc = nn.Linear(3 * 5 * 5, 4)
            self.fc2 = nn.Linear(4, 3)

        def forward(self, x: Any) -> Any:
            x = torch.softmax(torch.relu(torch.sigmoid(self.conv(x))), dim=1)
            x = torch.flatten(x, 1)
            return torch.softmax(torch.sigmoid(self.fc2(torch.relu(self.fc(x)))), dim=1)

    model = _torch_check(torch, onnx, ort, _net(torch, Net()), (2, 5, 5), rng)
    kinds = [(type(lay).__name__, getattr(lay, "activation", None)) for lay in model.layers]
    assert kinds == [("Conv2D", "sigmoid"), ("ReLU", "relu"), ("Softmax", "softmax"),
                     ("Flatten", None), ("Dense", "relu"), ("Dense", "sigmoid"),
                     ("Softmax", "softmax")]


def test_torch_view_flatten_reads_as_flatten(onnx: Any, ort: Any,
                                             rng: np.random.Generator) -> None:
    # issue 18: the Shape / Gather / Unsqueeze / Concat / Reshape subgraph is a Flatten (it was
    # refused at its Shape node before)
    torch = pytest.importorskip("torch")
    from fastcnn.onnx import load_onnx

    class Net(torch.nn.Module):
        def forward(self, x: Any) -> Any:
            return x.view(x.size(0), -1)

    proto = torch_onnx(torch, Net(), (2, 3, 3), onnx)
    model = load_onnx(proto)
    assert [type(lay).__name__ for lay in model.layers] == ["Flatten"]
    x = rng.standard_normal((4, 2, 3, 3)).astype(np.float32)
    assert _max_rel(model.predict(x, verbose=0), _run(ort, proto, x)) == 0.0


# --------------------------------------------------------------------------------------------
# import: graphs written with onnx.helper


def _graph(onnx: Any, nodes: list[Any], inits: dict[str, np.ndarray], shape: list[Any],
           opset: int = 17, output: str | None = None, out_type: int = 1) -> Any:
    h = onnx.helper
    f32 = onnx.TensorProto.FLOAT
    graph = h.make_graph(
        nodes, "g", [h.make_tensor_value_info("x", f32, shape)],
        [h.make_tensor_value_info(output or nodes[-1].output[0], out_type, None)],
        initializer=[onnx.numpy_helper.from_array(v, name=k) for k, v in inits.items()])
    # the checker wants the output's shape: onnx's shape inference writes it (or, for a graph
    # it can't infer, a rank-2 shape of free dimensions)
    proto = onnx.shape_inference.infer_shapes(
        h.make_model(graph, opset_imports=[h.make_opsetid("", opset)]))
    out = proto.graph.output[0].type.tensor_type
    if not out.HasField("shape"):
        out.shape.dim.add()
        out.shape.dim.add()
    return proto


def _same_as_ort(ort: Any, proto: Any, shape: tuple[int, ...], rng: np.random.Generator,
                 **kw: Any) -> fastcnn.Sequential:
    from fastcnn.onnx import load_onnx

    model = load_onnx(proto, **kw)
    x = rng.standard_normal((5, *shape)).astype(np.float32)
    assert _max_rel(model.predict(x), _run(ort, proto, x)) <= TOL
    return model


def _f32(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("swap", [False, True])
def test_matmul_add_is_a_dense(onnx: Any, ort: Any, rng: np.random.Generator,
                               swap: bool) -> None:
    mk = onnx.helper.make_node
    nodes = [mk("Flatten", ["x"], ["f"]), mk("MatMul", ["f", "W"], ["m"]),
             mk("Add", ["b", "m"] if swap else ["m", "b"], ["a"]), mk("Relu", ["a"], ["y"])]
    proto = _graph(onnx, nodes, {"W": _f32(rng, 12, 5), "b": _f32(rng, 5)}, ["N", 3, 2, 2])
    model = _same_as_ort(ort, proto, (3, 2, 2), rng)
    dense = model.layers[1]
    assert isinstance(dense, L.Dense) and dense.use_bias and dense.activation == "relu"


def test_gemm_attributes_reshape_constant_identity_dropout(onnx: Any, ort: Any,
                                                          rng: np.random.Generator) -> None:
    mk = onnx.helper.make_node
    shape_c = onnx.numpy_helper.from_array(np.array([0, -1], dtype=np.int64))
    nodes = [mk("Identity", ["x"], ["i"]),
             mk("Constant", [], ["shape"], value=shape_c),
             mk("Reshape", ["i", "shape"], ["r"]),
             mk("Dropout", ["r", "ratio"], ["d"]),
             mk("Gemm", ["d", "B", "C"], ["y"], alpha=0.5, beta=2.0, transB=0)]
    inits = {"B": _f32(rng, 18, 4), "C": _f32(rng, 1, 4), "ratio": np.array(0.25, np.float32)}
    model = _same_as_ort(ort, _graph(onnx, nodes, inits, ["N", 2, 3, 3]), (2, 3, 3), rng)
    assert [type(lay).__name__ for lay in model.layers] == ["Flatten", "Dropout", "Dense"]
    assert model.layers[1].rate == 0.25


@pytest.mark.parametrize("auto_pad", ["VALID", "SAME_UPPER", "SAME_LOWER"])
@pytest.mark.parametrize("stride", [1, 2])
def test_auto_pad(onnx: Any, ort: Any, rng: np.random.Generator, auto_pad: str,
                  stride: int) -> None:
    mk = onnx.helper.make_node
    # SAME_UPPER is Keras' "same"; SAME_LOWER puts an odd total's extra row/column first: the
    # conv's along W with stride 2 on 7 x 6, the (3, 2) pooling's along W
    nodes = [mk("Conv", ["x", "W"], ["c"], auto_pad=auto_pad, strides=[stride, stride]),
             mk("MaxPool", ["c"], ["y"], kernel_shape=[3, 2], auto_pad=auto_pad)]
    proto = _graph(onnx, nodes, {"W": _f32(rng, 3, 2, 3, 3)}, ["N", 2, 7, 6])
    if auto_pad == "SAME_LOWER":  # the pooling's (and with stride 2 the conv's) odd total
        from fastcnn.onnx import load_onnx

        first = r"#0 \(Conv ''\): pads" if stride == 2 else r"#1 \(MaxPool ''\): pads"
        with pytest.raises(ValueError, match=first):
            load_onnx(proto)
        return
    model = _same_as_ort(ort, proto, (2, 7, 6), rng)
    assert model.layers[1].padding == ("valid" if auto_pad == "VALID" else "same")


def test_free_spatial_dims_need_input_shape(onnx: Any, ort: Any,
                                            rng: np.random.Generator) -> None:
    from fastcnn.onnx import load_onnx

    mk = onnx.helper.make_node
    proto = _graph(onnx, [mk("Conv", ["x", "W"], ["y"], pads=[1, 1, 1, 1])],
                   {"W": _f32(rng, 3, 2, 3, 3)}, ["N", 2, "H", "W"])
    with pytest.raises(ValueError, match=r"pass input_shape=\(C, H, W\)"):
        load_onnx(proto)
    _same_as_ort(ort, proto, (2, 6, 5), rng, input_shape=(2, 6, 5))
    with pytest.raises(ValueError, match="does not fit the graph input"):
        load_onnx(proto, input_shape=(3, 6, 5))


@pytest.mark.parametrize(("layers", "shape"), [
    ([L.Conv2D(3, 3, padding="same", activation="relu"), L.Conv2D(4, 2, strides=2),
      L.ReLU(), L.MaxPool2D(2, padding="same"), L.Dropout(0.1), L.Flatten(),
      L.Dense(6, activation="sigmoid"), L.Dense(3), L.Softmax()], (2, 9, 7)),
    ([L.Dense(5, use_bias=False), L.Activation("sigmoid"), L.Dense(2, activation="softmax")],
     (4,)),
    ([L.Dropout(0.5)], (3,)),
])
def test_round_trip(onnx: Any, ort: Any, rng: np.random.Generator, tmp_path: Any,
                    layers: list[L.Layer], shape: tuple[int, ...]) -> None:
    from fastcnn.onnx import load_onnx

    model = fastcnn.Sequential(layers, input_shape=shape, seed=2)
    _randomise(model, rng)
    model.export(tmp_path / "m.onnx")
    back = load_onnx(tmp_path / "m.onnx")
    x = rng.standard_normal((4, *shape)).astype(np.float32)
    assert _max_rel(back.predict(x), model.predict(x)) <= TOL
    back.export(tmp_path / "again.onnx")  # and once more: the same graph
    again = load_onnx(tmp_path / "again.onnx")
    np.testing.assert_array_equal(again.predict(x), back.predict(x))


# --------------------------------------------------------------------------------------------
# import: what fastcnn can't read


def _fails(onnx: Any, nodes: list[Any], inits: dict[str, np.ndarray], shape: list[Any],
           match: str, **kw: Any) -> None:
    from fastcnn.onnx import load_onnx

    with pytest.raises(ValueError, match=match):
        load_onnx(_graph(onnx, nodes, inits, shape, **kw))


def test_unsupported_nodes_and_attributes(onnx: Any, rng: np.random.Generator) -> None:
    mk = onnx.helper.make_node
    w = {"W": _f32(rng, 3, 2, 3, 3)}
    x4 = ["N", 2, 7, 6]
    _fails(onnx, [mk("Conv", ["x", "W"], ["c"], name="c0"), mk("Relu", ["c"], ["r"]),
                  mk("Elu", ["r"], ["y"], name="act")], w, x4,
           r"node #2 \(Elu 'act'\): op 'Elu' is not supported; fastcnn reads Add, AveragePool")
    _fails(onnx, [mk("Conv", ["x", "W"], ["y"], name="c", auto_pad="SAME_LOWER",
                     strides=[2, 2])], w, x4,
           r"node #0 \(Conv 'c'\): pads \[top, left, bottom, right\] = \[1, 1, 1, 0\] for input "
           r"7x6")
    _fails(onnx, [mk("Conv", ["x", "W"], ["y"], pads=[0, 1, 2, 1])], w, x4,
           r"node #0 \(Conv ''\): pads .* = \[0, 1, 2, 1\]")
    _fails(onnx, [mk("Conv", ["x", "W"], ["y"], auto_pad="WEIRD")], w, x4,
           "auto_pad 'WEIRD' is not supported")
    _fails(onnx, [mk("Conv", ["x", "W"], ["y"], foo=1)], w, x4,
           "not a valid ONNX model: Unrecognized attribute: foo")  # onnx's checker
    # a dilated MaxPool loads (dilation_rate, tests/test_maxpool_dilation.py) unless its pads
    # are neither "valid" nor "same"
    _fails(onnx, [mk("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], dilations=[2, 2],
                     pads=[1, 0, 0, 0])], {}, x4, "neither fastcnn's 'valid'")
    _fails(onnx, [mk("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2],
                     pads=[1, 1, 1, 1])], {}, x4, "neither fastcnn's 'valid'")
    _fails(onnx, [mk("MaxPool", ["x"], ["y", "idx"], kernel_shape=[2, 2]),
                  mk("Identity", ["idx"], ["z"])], {}, x4,
           r"node #0 \(MaxPool ''\): its extra outputs \['idx'\] are used", output="z",
           out_type=onnx.TensorProto.INT64)
    _fails(onnx, [mk("Softmax", ["x"], ["y"], axis=-1)], {}, x4,
           "softmax is over axis 1")
    _fails(onnx, [mk("Softmax", ["x"], ["y"], axis=1)], {}, x4, "opset 11", opset=11)
    _fails(onnx, [mk("Flatten", ["x"], ["f"]), mk("Gemm", ["f", "B"], ["y"], transA=1)],
           {"B": _f32(rng, 84, 2)}, x4, "transA=1")
    _fails(onnx, [mk("Flatten", ["x"], ["f"]), mk("Add", ["f", "b"], ["y"])],
           {"b": _f32(rng, 84)}, x4, "Add is read only as the bias of the MatMul")
    _fails(onnx, [mk("Reshape", ["x", "s"], ["y"])], {"s": np.array([1, -1], np.int64)}, x4,
           r"shape \[1, -1\]: fastcnn reads only a flatten to \(N, -1\)")
    _fails(onnx, [mk("Dropout", ["x", "r", "t"], ["y"])],
           {"r": np.array(0.5, np.float32), "t": np.array(True)}, x4, "training_mode is true")
    _fails(onnx, [mk("Conv", ["x", "W"], ["y"])], {"W": _f32(rng, 3, 4, 3, 3)}, x4,
           "input channels 2 != weight channels 4")
    _fails(onnx, [mk("Flatten", ["x"], ["f"]), mk("Gemm", ["f", "B"], ["y"])],
           {"B": _f32(rng, 80, 2)}, x4, "weight for 80 input features, the input has 84")


def test_a_branch_reads_as_a_graph_and_dead_nodes_are_refused(
        onnx: Any, ort: Any, rng: np.random.Generator) -> None:
    # issue 18: a residual connection (conv(x) + x) is a fastcnn.Functional now (it was
    # refused as "not a chain" before); a node the output doesn't use is still refused
    from fastcnn.onnx import load_onnx

    mk = onnx.helper.make_node
    w = {"W": _f32(rng, 2, 2, 3, 3)}
    proto = _graph(onnx, [mk("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1], name="conv"),
                          mk("Add", ["c", "x"], ["y"], name="skip")], w, ["N", 2, 5, 5])
    model = load_onnx(proto)
    assert type(model).__name__ == "Functional"
    x = rng.standard_normal((3, 2, 5, 5)).astype(np.float32)
    assert _max_rel(model.predict(x, verbose=0), _run(ort, proto, x)) <= 1e-5
    _fails(onnx, [mk("Relu", ["x"], ["a"]), mk("Relu", ["x"], ["y"], name="second")], {},
           ["N", 2, 5, 5], r"node #0 \(Relu ''\): computes 'a', which the graph output 'y' "
           r"does not use")
    _fails(onnx, [mk("Relu", ["x"], ["a"]), mk("Relu", ["a"], ["y"])], {}, ["N", 2, 5, 5],
           r"node #1 \(Relu ''\): computes 'y', which the graph output 'a' does not use",
           output="a")


def test_bad_inputs(onnx: Any, tmp_path: Any) -> None:
    from fastcnn.onnx import load_onnx

    with pytest.raises(FileNotFoundError, match="no such file"):
        load_onnx(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x00not an onnx model at all")
    with pytest.raises(ValueError, match=r"junk\.onnx.*not a readable ONNX model"):
        load_onnx(tmp_path / "junk.onnx")
    with pytest.raises(TypeError, match=r"a path or an onnx\.ModelProto, got int"):
        load_onnx(3)  # type: ignore[arg-type]
    _fails(onnx, [onnx.helper.make_node("Relu", ["x"], ["y"])], {}, ["N", 3, 4, 5, 6],
           r"needs \(N, C, H, W\) or \(N, features\)")
