"""Export of models with several inputs / outputs and of nested models (issue 17): ONNX export
(one graph input / output per model input / output, the model's names; nested models inlined,
their weights under ``<model>/<layer>``), ``load_onnx`` back to a ``fastcnn.Model`` with the same
names and structure, and ``to_torch`` (a module whose forward takes / returns the same structure),
each checked against ``predict`` with onnxruntime / PyTorch to float32 tolerance."""

from __future__ import annotations

import io
import json
import warnings
from typing import Any

import numpy as np
import pytest

import fastcnn as fc
from fastcnn import layers as L

TOL = dict(rtol=1e-5, atol=1e-5)


def _model() -> fc.Model:
    """Two inputs (an image, a vector), two outputs (a softmax classifier, a regression head),
    holding a nested Sequential (with a BatchNormalization to fold), a nested functional Model
    and a Dense layer called twice."""
    img, meta = fc.Input((3, 8, 8), name="img"), fc.Input((5,), name="meta")
    enc = fc.Sequential([L.Conv2D(4, 3, padding="same"), L.BatchNormalization(), L.ReLU(),
                         L.GlobalAveragePooling2D()], input_shape=(3, 8, 8), name="enc", seed=1)
    xi = fc.Input((4,))
    sub = fc.Model(xi, L.Dense(4, activation="tanh")(L.Dense(4)(xi)), name="sub", seed=2)
    shared = L.Dense(4, activation="relu", name="shared")
    h = L.Concatenate()([sub(enc(img)), shared(L.Dense(4)(meta))])
    cls = L.Dense(3, activation="softmax", name="cls")(shared(L.Dense(4)(h)))
    reg = L.Dense(1, name="reg")(h)
    m = fc.Model([img, meta], [cls, reg], name="two", seed=0)
    bn = m.get_layer("enc").layers[1]  # non-trivial moving statistics, so the fold shows
    rng = np.random.default_rng(5)
    bn.params["moving_mean"][...] = rng.standard_normal(4).astype(np.float32)
    bn.params["moving_variance"][...] = rng.uniform(0.5, 2.0, 4).astype(np.float32)
    return m


def _data(n: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return (rng.standard_normal((n, 3, 8, 8)).astype(np.float32),
            rng.standard_normal((n, 5)).astype(np.float32))


def _ort(ort: Any, proto: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


# --------------------------------------------------------------------------------------------
# ONNX


@pytest.mark.parametrize("fold", [True, False])
def test_onnx_two_inputs_two_outputs_nested_and_shared(fold: bool) -> None:
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from fastcnn.onnx import load_onnx, to_onnx

    m = _model()
    xa, xb = _data()
    want = m.predict([xa, xb])
    proto = to_onnx(m, fold_batch_norm=fold)
    g = proto.graph
    assert [v.name for v in g.input] == ["img", "meta"]
    assert [v.name for v in g.output] == ["cls", "reg"]
    dims = [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in g.output]
    assert dims == [["N", 3], ["N", 1]]
    inits = [t.name for t in g.initializer]
    # nested weights under nested names; the shared layer's weights once
    assert "enc/conv2d/kernel" in inits and "sub/dense/kernel" in inits
    assert inits.count("shared/kernel") == 1
    assert ("enc/batch_normalization/gamma" in inits) == (not fold)
    assert any(n.name == "shared/call1" for n in g.node)
    got = _ort(ort, proto, {"img": xa, "meta": xb})
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, **TOL)
    back = load_onnx(proto)
    assert back.input_names == ["img", "meta"] and back.output_names == ["cls", "reg"]
    out = back.predict([xa, xb])
    assert isinstance(out, list) and len(out) == 2
    for a, b in zip(out, want, strict=True):
        np.testing.assert_allclose(a, b, **TOL)
    # and exported again, the same graph interface
    again = to_onnx(back)
    assert [v.name for v in again.graph.output] == ["cls", "reg"]


def test_onnx_dict_model_round_trips_as_dicts(tmp_path) -> None:
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from fastcnn.onnx import load_onnx

    a = fc.Input((5,), name="a_in")
    h = L.Dense(3, name="h")(a)
    # "copy" is the same tensor as "logits" after an identity (Dropout): one graph output each
    m = fc.Model({"x": a}, {"logits": h, "score": L.Dense(1)(a), "copy": L.Dropout(0.3)(h)},
                 seed=3)
    xb = _data()[1]
    want = m.predict({"x": xb})
    path = tmp_path / "d.onnx"
    m.export(path)
    import onnx

    proto = onnx.load(path)
    assert [v.name for v in proto.graph.input] == ["x"]
    assert [v.name for v in proto.graph.output] == ["logits", "score", "copy"]
    st = json.loads({p.key: p.value for p in proto.metadata_props}["fastcnn.structure"])
    assert st == {"inputs": ["x"], "outputs": ["logits", "score", "copy"], "input_keys": True,
                  "output_keys": True}
    got = _ort(ort, proto, {"x": xb})
    for k, v in zip(["logits", "score", "copy"], got, strict=True):
        np.testing.assert_allclose(v, want[k], **TOL)
    back = load_onnx(path)
    out = back.predict({"x": xb})
    assert isinstance(out, dict) and list(out) == ["logits", "score", "copy"]
    for k in want:
        np.testing.assert_allclose(out[k], want[k], **TOL)


def test_onnx_nested_model_called_twice_and_inside_a_sequential() -> None:
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from fastcnn.onnx import load_onnx, to_onnx

    xi = fc.Input((5,))
    block = fc.Model(xi, L.Add()([xi, L.Dense(5, activation="relu")(xi)]), name="block",
                     seed=4)
    x = fc.Input((5,))
    m = fc.Model(x, L.Dense(2)(block(block(x))), seed=0)  # one nested model, two calls
    proto = to_onnx(m)
    inits = [t.name for t in proto.graph.initializer]
    assert inits.count("block/dense/kernel") == 1
    assert {"block/dense", "block/dense/call1", "block/add", "block/add/call1"} <= {
        n.name for n in proto.graph.node}
    xb = _data()[1]
    (got,) = _ort(ort, proto, {"input": xb})
    np.testing.assert_allclose(got, m.predict(xb), **TOL)
    np.testing.assert_allclose(load_onnx(proto).predict(xb), m.predict(xb), **TOL)
    # a Sequential holding a Sequential and a graph model: one input, one output
    inner = fc.Sequential([L.Dense(5, activation="tanh")], input_shape=(5,), name="inner")
    seq = fc.Sequential([inner, block, L.Dense(3)], input_shape=(5,), seed=1)
    proto = to_onnx(seq)
    assert [v.name for v in proto.graph.input] == ["input"]
    assert "inner/dense/kernel" in [t.name for t in proto.graph.initializer]
    (got,) = _ort(ort, proto, {"input": xb})
    np.testing.assert_allclose(got, seq.predict(xb), **TOL)


def test_load_onnx_of_a_torch_module_with_two_inputs_and_two_outputs() -> None:
    torch = pytest.importorskip("torch")
    onnx = pytest.importorskip("onnx")
    from fastcnn.onnx import load_onnx

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.pool = torch.nn.AdaptiveAvgPool2d(1)
            self.fc_meta = torch.nn.Linear(5, 4)
            self.cls = torch.nn.Linear(8, 3)
            self.reg = torch.nn.Linear(8, 1)

        def forward(self, img: Any, meta: Any) -> Any:
            h = torch.cat([torch.flatten(self.pool(torch.relu(self.conv(img))), 1),
                           torch.relu(self.fc_meta(meta))], 1)
            return torch.softmax(self.cls(h), 1), self.reg(h)

    torch.manual_seed(0)
    net = Net().eval()
    xa, xb = _data()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.zeros(1, 3, 8, 8), torch.zeros(1, 5)), buf,
                          dynamo=False, input_names=["img", "meta"],
                          output_names=["probs", "value"],
                          dynamic_axes={k: {0: "n"} for k in ("img", "meta", "probs", "value")})
    m = load_onnx(onnx.load_from_string(buf.getvalue()))
    assert m.input_names == ["img", "meta"] and m.output_names == ["probs", "value"]
    with torch.no_grad():
        want = net(torch.from_numpy(xa), torch.from_numpy(xb))
    for a, b in zip(m.predict([xa, xb]), want, strict=True):
        np.testing.assert_allclose(a, b.numpy(), **TOL)


def test_load_onnx_input_shape_for_several_inputs_and_bad_structure() -> None:
    onnx = pytest.importorskip("onnx")
    from fastcnn.onnx import load_onnx, to_onnx

    m = _model()
    proto = to_onnx(m)
    back = load_onnx(proto, input_shape=[(3, 8, 8), None])
    assert back.input_shape == [(3, 8, 8), (5,)]
    assert load_onnx(proto, input_shape={"meta": (5,)}).input_names == ["img", "meta"]
    with pytest.raises(ValueError, match=r"has 2 inputs \['img', 'meta'\]; pass input_shape "
                                         r"as a list of 2"):
        load_onnx(proto, input_shape=(3, 8, 8))
    with pytest.raises(ValueError, match=r"input_shape names \['x'\]"):
        load_onnx(proto, input_shape={"x": (5,)})
    bad = onnx.ModelProto()
    bad.CopyFrom(proto)
    for p in bad.metadata_props:
        if p.key == "fastcnn.structure":
            p.value = json.dumps({"inputs": ["a", "b"], "outputs": ["cls", "reg"]})
    with pytest.raises(ValueError, match="does not match the graph's inputs"):
        load_onnx(bad)


# --------------------------------------------------------------------------------------------
# PyTorch


def test_to_torch_two_inputs_two_outputs_nested_and_shared() -> None:
    torch = pytest.importorskip("torch")
    m = _model()
    xa, xb = _data()
    want = m.predict([xa, xb])
    t = m.to_torch().eval()
    ta, tb = torch.from_numpy(xa), torch.from_numpy(xb)
    with torch.no_grad():
        for out in (t(ta, tb), t([ta, tb]), t({"meta": tb, "img": ta})):
            assert isinstance(out, tuple) and len(out) == 2
            for a, b in zip(out, want, strict=True):
                np.testing.assert_allclose(a.numpy(), b, **TOL)
        logits = m.to_torch(logits=True).eval()(ta, tb)
    np.testing.assert_allclose(torch.softmax(logits[0], 1).numpy(), want[0], **TOL)
    np.testing.assert_allclose(logits[1].numpy(), want[1], **TOL)
    # the shared Dense is one module: one set of parameters in the torch model (the moving
    # statistics, which count_params counts, are buffers there)
    n_params = sum(p.numel() for p in t.parameters()) + sum(
        b.numel() for n, b in t.named_buffers() if "running" in n)
    assert n_params == m.count_params()
    with pytest.raises(ValueError, match=r"takes 2 input\(s\) \['img', 'meta'\]"):
        t(ta)
    with pytest.raises(ValueError, match=r"takes inputs \['img', 'meta'\]; got a dict"):
        t({"img": ta})


def test_to_torch_trains_like_fastcnn_and_exports_through_torch_onnx() -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    m = _model()
    xa, xb = _data()
    t = m.to_torch()
    t.eval()
    buf = io.BytesIO()  # the module traces with two inputs and two outputs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(t, (torch.from_numpy(xa), torch.from_numpy(xb)), buf, dynamo=False,
                          input_names=["img", "meta"], output_names=["cls", "reg"])
    got = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"]).run(
        None, {"img": xa, "meta": xb})
    for a, b in zip(got, m.predict([xa, xb]), strict=True):
        np.testing.assert_allclose(a, b, **TOL)
    # gradients: d(sum(cls * c1) + sum(reg * c2)) in training mode, weights and inputs
    t.train()
    rng = np.random.default_rng(1)
    c1 = rng.standard_normal((6, 3)).astype(np.float32)
    c2 = rng.standard_normal((6, 1)).astype(np.float32)
    ta = torch.from_numpy(xa).requires_grad_(True)
    cls, reg = t(ta, torch.from_numpy(xb))
    ((cls * torch.from_numpy(c1)).sum() + (reg * torch.from_numpy(c2)).sum()).backward()
    outs = m([xa, xb], training=True)
    dx = m.backward([c1, c2])
    np.testing.assert_allclose(outs[0], cls.detach().numpy(), **TOL)
    np.testing.assert_allclose(dx[0], ta.grad.numpy(), rtol=1e-4, atol=1e-5)
    shared = m.get_layer("shared")
    tw = [p for p in t.parameters() if tuple(p.shape) == (4, 4)]
    assert any(np.allclose(p.grad.numpy(), shared.grads["kernel"], rtol=1e-4, atol=1e-5)
               for p in tw)


def test_to_torch_dict_model_and_nested_in_a_sequential() -> None:
    torch = pytest.importorskip("torch")
    a = fc.Input((5,))
    m = fc.Model({"x": a}, {"p": L.Dense(2)(a), "q": L.Dense(1, activation="sigmoid")(a)},
                 seed=0)
    xb = _data()[1]
    with torch.no_grad():
        out = m.to_torch()({"x": torch.from_numpy(xb)})
    assert isinstance(out, dict) and list(out) == ["p", "q"]
    want = m.predict({"x": xb})
    for k in want:
        np.testing.assert_allclose(out[k].numpy(), want[k], **TOL)
    xi = fc.Input((5,))
    block = fc.Model(xi, L.Add()([xi, L.Dense(5)(xi)]), name="block", seed=4)
    inner = fc.Sequential([L.Dense(5, activation="relu")], input_shape=(5,), name="inner")
    seq = fc.Sequential([inner, block, L.Dense(3)], input_shape=(5,), seed=1)
    t = seq.to_torch()
    assert isinstance(t, torch.nn.Sequential)
    with torch.no_grad():
        np.testing.assert_allclose(t(torch.from_numpy(xb)).numpy(), seq.predict(xb), **TOL)
