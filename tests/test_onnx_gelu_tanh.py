"""``load_onnx`` of GELU's tanh form (issue 17): the opset-20 ``Gelu(approximate="tanh")`` and the
subgraph ``torch.onnx.export`` (and fastcnn's export) writes below opset 20 for
``nn.GELU(approximate="tanh")`` (``Mul(x, x) -> Mul x -> Mul 0.044715 -> Add x -> Mul sqrt(2/pi)
-> Tanh -> Add 1 -> Mul x -> Mul 0.5``, or ``Pow(x, 3)`` first) read as
``GELU(approximate=True)``; a subgraph that starts so and then differs is refused naming the
node."""

from __future__ import annotations

import io
import math
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import fastcnn as fc
from fastcnn import layers as L

onnx = pytest.importorskip("onnx")
sys.path.insert(0, str(Path(__file__).parent))

TOL = dict(rtol=2e-5, atol=2e-6)


def _gelus(model: Any) -> list[Any]:
    return [lay for lay in model.layers if isinstance(lay, L.Activation)
            and lay.activation == "gelu"]


@pytest.mark.parametrize("opset", [17, 18, 20])
def test_fastcnn_export_of_the_tanh_gelu_reads_back(opset: int) -> None:
    ort = pytest.importorskip("onnxruntime")
    from fastcnn.onnx import load_onnx, to_onnx

    m = fc.Sequential([L.Conv2D(4, 3), L.GELU(approximate=True), L.Flatten(), L.Dense(5),
                       L.Activation("gelu", approximate=True), L.Dense(3), L.GELU()],
                      input_shape=(2, 6, 6), seed=0)
    proto = to_onnx(m, opset)
    ops = [n.op_type for n in proto.graph.node]
    assert ("Tanh" in ops) == (opset < 20)
    back = load_onnx(proto)
    gelus = _gelus(back)  # the tanh ones as GELU layers; the exact one folds into the Dense
    assert [(type(g).__name__, g.approximate) for g in gelus] == [("GELU", True)] * 2
    assert back.layers[-1].activation == "gelu" and not back.layers[-1].approximate
    x = np.random.default_rng(0).standard_normal((4, 2, 6, 6)).astype(np.float32) * 2
    want = m.predict(x)
    np.testing.assert_allclose(back.predict(x), want, **TOL)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {"input": x})[0], want, **TOL)


@pytest.mark.parametrize("opset", [17, 18, 20])
def test_torch_export_of_gelu_tanh_reads_as_gelu_approximate(opset: int) -> None:
    torch = pytest.importorskip("torch")
    from fastcnn.onnx import load_onnx

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.GELU(approximate="tanh"),
                              torch.nn.Linear(8, 3)).eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, torch.zeros(1, 6), buf, dynamo=False, opset_version=opset,
                          input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
    m = load_onnx(onnx.load_from_string(buf.getvalue()))
    assert [type(lay).__name__ for lay in m.layers] == ["Dense", "GELU", "Dense"]
    assert m.layers[1].approximate is True
    x = np.random.default_rng(1).standard_normal((7, 6)).astype(np.float32) * 3
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(m.predict(x), want, **TOL)


# --------------------------------------------------------------------------------------------
# hand-written subgraphs: the Pow form, and partial matches


def _proto(nodes: list[Any], consts: dict[str, float]) -> Any:
    h = onnx.helper
    f32 = onnx.TensorProto.FLOAT
    graph = h.make_graph(
        nodes, "g", [h.make_tensor_value_info("x", f32, ["N", 4])],
        [h.make_tensor_value_info(nodes[-1].output[0], f32, ["N", 4])],
        initializer=[onnx.numpy_helper.from_array(np.array(v, np.float32), name=k)
                     for k, v in consts.items()])
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])


_C = {"three": 3.0, "k": 0.044715, "s": math.sqrt(2 / math.pi), "one": 1.0, "half": 0.5,
      "bad": 0.05}


def _tail(start: str, tanh: str = "Tanh", k: str = "k") -> list[Any]:
    mk = onnx.helper.make_node
    return [mk("Mul", [k, start], ["kx3"], name="kx3"), mk("Add", ["x", "kx3"], ["in"], name="in"),
            mk("Mul", ["s", "in"], ["sc"], name="sc"), mk(tanh, ["sc"], ["t"], name="t"),
            mk("Add", ["one", "t"], ["a"], name="a"), mk("Mul", ["x", "a"], ["m"], name="m"),
            mk("Mul", ["half", "m"], ["y"], name="y")]


def _ref(x: np.ndarray) -> np.ndarray:
    x64 = x.astype(np.float64)
    return 0.5 * x64 * (1 + np.tanh(math.sqrt(2 / math.pi) * (x64 + 0.044715 * x64 ** 3)))


def test_pow_form_and_mul_form() -> None:
    from fastcnn.onnx import load_onnx

    mk = onnx.helper.make_node
    x = np.random.default_rng(2).standard_normal((5, 4)).astype(np.float32) * 3
    for head in ([mk("Pow", ["x", "three"], ["x3"], name="pow")],
                 [mk("Mul", ["x", "x"], ["x2"], name="sq"),
                  mk("Mul", ["x2", "x"], ["x3"], name="cube")]):
        m = load_onnx(_proto([*head, *_tail("x3")], _C))
        assert [type(lay).__name__ for lay in m.layers] == ["GELU"]
        assert m.layers[0].approximate is True
        np.testing.assert_allclose(m.predict(x), _ref(x), rtol=1e-5, atol=1e-6)


def test_partial_matches_are_refused_naming_the_node() -> None:
    from fastcnn.onnx import load_onnx

    mk = onnx.helper.make_node
    sq = [mk("Mul", ["x", "x"], ["x2"], name="sq"), mk("Mul", ["x2", "x"], ["x3"], name="cube")]
    with pytest.raises(ValueError, match=r"starts GELU's tanh form.*node #5 \(Sigmoid 't'\) "
                                         r"is not Tanh\(\.\)"):
        load_onnx(_proto([*sq, *_tail("x3", tanh="Sigmoid")], _C))
    with pytest.raises(ValueError, match=r"node #2 \(Mul 'kx3'\) is not Mul\(0\.044715, \.\)"):
        load_onnx(_proto([*sq, *_tail("x3", k="bad")], _C))
    with pytest.raises(ValueError, match=r"node #1 \(Mul 'cube'\) is not Mul\(x, x \* x\)"):
        load_onnx(_proto([sq[0], mk("Mul", ["x2", "x2"], ["x3"], name="cube"),
                          *_tail("x3")], _C))
    # an intermediate tensor read twice: not the activation's private subgraph
    tail = _tail("x3")
    tail[-1] = mk("Add", ["m", "in"], ["y"], name="y")
    with pytest.raises(ValueError, match=r"the output of node #3 \(Add 'in'\) is read by "
                                         r"other nodes too"):
        load_onnx(_proto([*sq, *tail], _C))
    # the graph ends before the subgraph completes
    with pytest.raises(ValueError, match=r"the output of node #4 \(Mul 'sc'\) is read by other "
                                         r"nodes too \(or is a graph output\)"):
        load_onnx(_proto([*sq, *_tail("x3")[:3]], _C))
