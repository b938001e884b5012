"""A model with several outputs used as a layer of another functional model (issue 17): the call
gives one symbolic tensor per output (a list to unpack or index, a dict for a model with dict
outputs, as Keras); forward, backward (fan-out sums, an unread output getting no gradient),
fit, config / save round trips, ONNX and torch export all see the same graph as the flat model
made of the same layers."""

from __future__ import annotations

import numpy as np
import pytest

import fastcnn as fc
from fastcnn import layers as L


def _two(dict_out: bool = False) -> fc.Model:
    xi = fc.Input((4,))
    h = L.Dense(6, activation="tanh", name="trunk")(xi)
    cls = L.Dense(3, activation="softmax", name="cls")(h)
    reg = L.Dense(2, name="reg")(h)
    outs = {"c": cls, "r": reg} if dict_out else [cls, reg]
    return fc.Model(xi, outs, name="two", seed=0)


def _x(n: int = 5) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, 4)).astype(np.float32)


def _outer(two: fc.Model) -> fc.Model:
    x = fc.Input((4,))
    a, b = two(x)  # unpacking
    mixed = L.Dense(2, name="mix")(L.Concatenate()([a, b]))
    return fc.Model(x, [L.Add()([mixed, b]), b], seed=1)  # b read twice and returned


def _flat_twin(two: fc.Model) -> fc.Model:
    """The same graph from the same layer objects (shared weights), without nesting."""
    x = fc.Input((4,))
    h = two.get_layer("trunk")(x)
    a, b = two.get_layer("cls")(h), two.get_layer("reg")(h)
    outer = _outer(_two())  # only for the outer layers' weights below
    mix = L.Dense(2, name="mix")
    y = mix(L.Concatenate()([a, b]))
    flat = fc.Model(x, [L.Add()([y, b]), b], seed=1)
    mix.set_weights(outer.get_layer("mix").get_weights())
    return flat


def test_unpacking_indexing_and_dict_outputs() -> None:
    two, x = _two(), fc.Input((4,))
    outs = two(x)
    assert isinstance(outs, list) and [t.shape for t in outs] == [(3,), (2,)]
    only = fc.Model(x, two(x)[1])  # indexing: one output of the nested model
    np.testing.assert_array_equal(only.predict(_x()), two.predict(_x())[1])
    d = _two(dict_out=True)
    y = d(x)
    assert isinstance(y, dict) and list(y) == ["c", "r"]
    m = fc.Model(x, {"score": L.Dense(1)(y["r"]), "probs": y["c"]}, seed=2)
    out = m.predict(_x())
    np.testing.assert_array_equal(out["probs"], d.predict(_x())["c"])
    assert "two" in [lay.name for lay in m.layers] and len(m.layers) == 3  # input, two, dense
    assert m.output_names == ["score", "probs"]
    lst = fc.Model(x, list(two(x)))
    assert lst.output_names == ["cls", "reg"]  # the nested model's output names


def test_forward_and_backward_equal_the_flat_model() -> None:
    two = _two()
    m, flat = _outer(two), _flat_twin(two)
    xa = _x()
    for a, b in zip(m.predict(xa), flat.predict(xa), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    rng = np.random.default_rng(3)
    dys = [rng.standard_normal((5, 2)).astype(np.float32) for _ in range(2)]

    def grads(model: fc.Model) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        model(xa, training=True)
        dx = model.backward(dys)
        return dx, {n: two.get_layer(n).grads["kernel"].copy() for n in ("trunk", "cls", "reg")}

    dx_n, g_n = grads(m)
    dx_f, g_f = grads(flat)
    np.testing.assert_allclose(dx_n, dx_f, rtol=1e-5, atol=1e-6)
    for k in g_f:
        np.testing.assert_allclose(g_n[k], g_f[k], rtol=1e-5, atol=1e-6, err_msg=k)
    # and against finite differences of sum(dy * y) in float64 terms (float32 model: loose)
    eps, num = 1e-2, np.zeros_like(xa)
    for i in range(xa.shape[0]):
        for j in range(xa.shape[1]):
            e = np.zeros_like(xa)
            e[i, j] = eps
            f = [sum(float((dy * o).sum()) for dy, o in zip(dys, m.predict(xa + s * e),
                                                            strict=True)) for s in (1, -1)]
            num[i, j] = (f[0] - f[1]) / (2 * eps)
    np.testing.assert_allclose(dx_n, num, rtol=2e-2, atol=2e-3)


def test_an_unread_output_gets_no_gradient_and_fit_trains() -> None:
    two = _two()
    x = fc.Input((4,))
    m = fc.Model(x, two(x)[1], seed=1)
    m.compile("sgd", "mse")
    k0 = two.get_layer("cls").params["kernel"].copy()
    r0 = two.get_layer("reg").params["kernel"].copy()
    xa, ya = _x(16), np.ones((16, 2), np.float32)
    h = m.fit(xa, ya, epochs=5, verbose=0)
    assert h.history["loss"][-1] < h.history["loss"][0]
    np.testing.assert_array_equal(two.get_layer("cls").params["kernel"], k0)
    assert not np.array_equal(two.get_layer("reg").params["kernel"], r0)


def test_config_and_save_round_trips(tmp_path) -> None:
    two = _two()
    m = _outer(two)
    xa = _x()
    cfg = m.get_config()
    refs = [ref for spec in cfg["layers"] for call in spec["inbound_nodes"] for ref in call]
    assert ["two", 0, 1] in refs and ["two", 0, 0] in refs  # Keras' [layer, node, tensor]
    assert cfg["output_layers"][1] == ["two", 0, 1]
    back = fc.Model.from_config(cfg)
    back.set_weights(m.get_weights())
    for a, b in zip(back.predict(xa), m.predict(xa), strict=True):
        np.testing.assert_array_equal(a, b)
    path = tmp_path / "m.npz"
    m.save(path)
    loaded = fc.load_model(path)
    for a, b in zip(loaded.predict(xa), m.predict(xa), strict=True):
        np.testing.assert_array_equal(a, b)
    assert "two[0][1]" in " ".join(c for row in m._connections() for c in row)


def test_onnx_and_torch_export_of_a_nested_multi_output_model() -> None:
    m = _outer(_two())
    xa = _x()
    want = m.predict(xa)
    torch = pytest.importorskip("torch")
    with torch.no_grad():
        got = m.to_torch()(torch.from_numpy(xa))
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a.numpy(), b, rtol=1e-5, atol=1e-6)
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from fastcnn.onnx import load_onnx, to_onnx

    proto = to_onnx(m)
    assert [o.name for o in proto.graph.output] == m.output_names
    res = ort.InferenceSession(proto.SerializeToString(),
                               providers=["CPUExecutionProvider"]).run(None, {"input": xa})
    for a, b in zip(res, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(load_onnx(proto).predict(xa), want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_errors() -> None:
    two = _two()
    with pytest.raises(ValueError, match=r"model 'two': input 'input_layer' takes per-sample "
                                         r"shape \(4,\)"):
        two(fc.Input((3,)))
    with pytest.raises(ValueError, match=r"model 'two' takes 1 input\(s\).*got 2"):
        two([fc.Input((4,)), fc.Input((4,))])
    with pytest.raises(ValueError, match=r"model 'two' takes inputs \['input_layer'\]; got a "
                                         r"dict with keys \['x'\]"):
        two({"x": fc.Input((4,))})


def test_a_multi_output_model_called_twice_shares_its_weights() -> None:
    two = _two()
    x1, x2 = fc.Input((4,)), fc.Input((4,))
    a1, _b1 = two(x1)
    a2, b2 = two(x2)
    m = fc.Model([x1, x2], L.Concatenate()([a1, b2, a2]), seed=0)
    t, c, r = (two.get_layer(n) for n in ("trunk", "cls", "reg"))
    f1, f2 = t(x1), t(x2)
    flat = fc.Model([x1, x2], L.Concatenate()([c(f1), r(f2), c(f2)]), seed=0)
    xa, xb = _x(), _x()[::-1].copy()
    np.testing.assert_allclose(m.predict([xa, xb]), flat.predict([xa, xb]), rtol=1e-6)
    dy = np.random.default_rng(4).standard_normal((5, 8)).astype(np.float32)
    res = []
    for model in (m, flat):
        model([xa, xb], training=True)
        dx = model.backward(dy)
        res.append((dx, {n: two.get_layer(n).grads["kernel"].copy()
                         for n in ("trunk", "cls", "reg")}))
    for a, b in zip(res[0][0], res[1][0], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for k in res[1][1]:
        np.testing.assert_allclose(res[0][1][k], res[1][1][k], rtol=1e-5, atol=1e-6)
