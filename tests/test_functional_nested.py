"""A model used as a layer (Keras' nested models): a Sequential or a graph Model called on a
symbolic tensor inside another graph, or put into a Sequential. The weights are the inner
model's own arrays (shared, trained through), summary shows it as one row, files and configs
nest it; a model called twice (a Siamese pair) gets the gradients of the same graph written
with its layers inline.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import fastcnn as fc
from fastcnn import layers as L


def _encoder(seed: int = 1, name: str = "enc") -> fc.Sequential:
    return fc.Sequential([L.Dense(6, activation="relu"), L.Dense(4)], input_shape=(5,),
                         seed=seed, name=name)


def _x(n: int = 12, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 5)).astype(np.float32)


def test_a_sequential_inside_a_graph_shares_its_weights_and_trains() -> None:
    enc = _encoder()
    x = fc.Input((5,))
    m = fc.Model(x, L.Dense(2, activation="softmax", name="head")(enc(x)), seed=0)
    assert m.get_layer("enc") is enc and m.layers[1] is enc
    kernel = enc.layers[0].params["kernel"]
    assert any(w is kernel for w in m.weights)  # the same array, not a copy
    assert [k for k, _, _ in m.named_parameters()][:2] == ["enc/dense/kernel", "enc/dense/bias"]
    xs = _x()
    head = m.get_layer("head")
    np.testing.assert_allclose(m.predict(xs), head(enc.predict(xs)), rtol=1e-6)
    before = kernel.copy()
    m.compile("sgd", "sparse_categorical_crossentropy")
    m.fit(xs, np.arange(12) % 2, epochs=2, verbose=0)
    assert not np.allclose(before, enc.layers[0].params["kernel"])  # trained through
    assert m.count_params() == enc.count_params() + head.count_params()


def test_summary_shows_the_nested_model_as_one_row() -> None:
    enc = _encoder()
    x = fc.Input((5,))
    m = fc.Model(x, L.Dense(2)(enc(x)))
    lines: list[str] = []
    m.summary(print_fn=lines.append)
    row = next(s for s in lines if s.startswith("enc "))
    assert "enc (Sequential)" in row and "(None, 4)" in row and "64" in row
    assert not any(s.startswith("dense_1 ") for s in lines)  # the inner layers are not listed
    s = fc.Sequential([enc, L.Dense(3)], input_shape=(5,))
    lines = []
    s.summary(print_fn=lines.append)
    assert any(r.startswith("enc (Sequential)") and "64" in r for r in lines)
    assert "Total params: 79" in "\n".join(lines)


def test_a_siamese_pair_matches_the_same_graph_written_inline() -> None:
    enc = _encoder(seed=4)
    a, b = fc.Input((5,)), fc.Input((5,))
    head = L.Dense(1, name="head")
    nested = fc.Model([a, b], head(L.Concatenate()([enc(a), enc(b)])), seed=0)
    d1, d2 = enc.layers
    a2, b2 = fc.Input((5,)), fc.Input((5,))
    flat = fc.Model([a2, b2], head(L.Concatenate()([d2(d1(a2)), d2(d1(b2))])), seed=0)
    xa, xb = _x(7, 1), _x(7, 2)
    dy = np.random.default_rng(3).standard_normal((7, 1)).astype(np.float32)

    def grads(model: fc.Model) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
        model([xa, xb], training=True)
        dx = model.backward(dy)
        g = {k: v.copy() for k, v in
             ((f"{n}/{p}", gg) for n, p, gg in (
                 (lay.name, k, lay.grads[k]) for lay in (d1, d2, head) for k in lay.grads))}
        return [d.copy() for d in dx], g

    dx_n, g_n = grads(nested)
    dx_f, g_f = grads(flat)
    np.testing.assert_allclose(nested.predict([xa, xb]), flat.predict([xa, xb]), rtol=1e-6)
    for p, q in zip(dx_n, dx_f, strict=True):
        np.testing.assert_allclose(p, q, rtol=1e-5, atol=1e-6)
    for k in g_f:
        np.testing.assert_allclose(g_n[k], g_f[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_a_graph_inside_a_graph_with_finite_differences() -> None:
    i = fc.Input((5,))
    inner = fc.Model(i, L.Add()([L.Dense(5, name="p")(i), i]), name="res", seed=2)
    x = fc.Input((5,))
    m = fc.Model(x, L.Dense(1, name="out")(inner(x)), seed=0)
    xs = _x(3).astype(np.float32)
    r = np.random.default_rng(5).standard_normal((3, 1))
    m(xs, training=True)
    dx = m.backward(r.astype(np.float32))
    w = {k: v.astype(np.float64) for k, v in m._all_weights().items()}

    def f(xx: np.ndarray, ww: dict[str, np.ndarray]) -> float:
        h = xx @ ww["res/p/kernel"].T + ww["res/p/bias"] + xx
        return float(np.sum((h @ ww["out/kernel"].T + ww["out/bias"]) * r))

    eps = 1e-6
    x64 = xs.astype(np.float64)
    for idx in [(0, 0), (1, 3), (2, 4)]:
        hi, lo = x64.copy(), x64.copy()
        hi[idx] += eps
        lo[idx] -= eps
        np.testing.assert_allclose(dx[idx], (f(hi, w) - f(lo, w)) / (2 * eps), rtol=2e-4,
                                   atol=1e-5)
    g = inner.get_layer("p").grads["kernel"]
    np.testing.assert_array_equal(m.grads["res/p/kernel"], g)
    for idx in [(0, 0), (4, 2)]:
        hi, lo = dict(w), dict(w)
        hi["res/p/kernel"], lo["res/p/kernel"] = w["res/p/kernel"].copy(), w["res/p/kernel"].copy()
        hi["res/p/kernel"][idx] += eps
        lo["res/p/kernel"][idx] -= eps
        np.testing.assert_allclose(g[idx], (f(x64, hi) - f(x64, lo)) / (2 * eps), rtol=2e-4,
                                   atol=1e-5)


def test_a_pretrained_model_keeps_its_weights_in_a_sequential_and_a_graph() -> None:
    enc = _encoder(seed=9)
    kept = enc.get_weights()
    s = fc.Sequential([enc, L.Dense(3)], input_shape=(5,), seed=0)
    x = fc.Input((5,))
    fc.Model(x, L.Dense(2)(enc(x)), seed=0)
    for p, q in zip(kept, enc.get_weights(), strict=True):
        np.testing.assert_array_equal(p, q)
    unbuilt = fc.Sequential([L.Dense(3)], name="late")
    s2 = fc.Sequential([unbuilt, L.Dense(2)], input_shape=(5,), seed=0)
    assert unbuilt.built and s2.output_shape == (2,)
    late = fc.Sequential([L.Dense(3)], name="late2")  # built by the call, then from the seed
    g1 = fc.Model(x, late(x), seed=5).get_weights()
    late2 = fc.Sequential([L.Dense(3)], name="late2")
    np.testing.assert_array_equal(fc.Model(x, late2(x), seed=5).get_weights()[0], g1[0])
    s.compile("adam", "mse")
    s.fit(_x(), np.zeros((12, 3), np.float32), verbose=0)
    assert not np.allclose(kept[0], enc.get_weights()[0])


def test_frozen_nested_model_is_not_trained() -> None:
    enc = _encoder()
    enc.trainable = False
    assert all(not lay.trainable for lay in enc.layers)
    x = fc.Input((5,))
    m = fc.Model(x, L.Dense(1, name="head")(enc(x)))
    assert m.count_params() - sum(lay.count_trainable_params() for lay in m.layers) == 64
    kept = enc.get_weights()
    m.compile("sgd", "mse")
    m.fit(_x(), np.ones((12, 1), np.float32), verbose=0)
    for p, q in zip(kept, enc.get_weights(), strict=True):
        np.testing.assert_array_equal(p, q)
    assert len(m.non_trainable_weights) == 4 and len(m.trainable_weights) == 2
    enc.trainable = True
    assert len(m.trainable_weights) == 6


def test_save_load_and_json_nest_the_config(tmp_path) -> None:
    enc = _encoder()
    i = fc.Input((4,))
    proj = fc.Model(i, L.Dense(5, name="d")(i), name="proj", seed=3)
    x = fc.Input((4,))
    m = fc.Model(x, L.Dense(2, name="head")(enc(proj(x))), seed=0)
    cfg = json.loads(m.to_json())
    kinds = {spec["config"]["name"]: spec["class_name"] for spec in cfg["layers"]}
    assert kinds["enc"] == "Sequential" and kinds["proj"] == "Functional"
    m.compile("adam", "mse")
    xs = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    m.fit(xs, np.zeros((8, 2), np.float32), verbose=0)
    path = tmp_path / "nested.npz"
    m.save(path)
    back = fc.load_model(path)
    np.testing.assert_array_equal(back.predict(xs), m.predict(xs))
    assert isinstance(back.get_layer("enc"), fc.Sequential)
    assert back.get_config() == m.get_config()
    again = fc.model_from_json(m.to_json())
    assert again.get_config() == m.get_config()
    # a stack holding a graph, saved and loaded
    s = fc.Sequential([proj, L.Dense(1)], input_shape=(4,))
    s.save(tmp_path / "stack.npz")
    np.testing.assert_array_equal(fc.load_model(tmp_path / "stack.npz").predict(xs),
                                  s.predict(xs))


def test_nested_dropout_state_and_default_names() -> None:
    a = fc.Sequential([L.Dense(3), L.Dropout(0.5)], input_shape=(5,), seed=0)
    b = fc.Sequential([L.Dense(3)], input_shape=(5,), seed=1)
    x = fc.Input((5,))
    m = fc.Model(x, L.Add()([a(x), b(x)]))
    assert {a.name, b.name} == {"sequential", "sequential_1"}  # unique, as Keras names them
    st = m.get_layer(a.name).get_state()
    assert st is None or isinstance(st, dict)


def test_errors() -> None:
    x = fc.Input((5,))
    two = fc.Model(x, [L.Dense(1, name="o1")(x), L.Dense(1, name="o2")(x)])
    # a model with several outputs is a layer now, one tensor per output
    # (tests/test_functional_multi_nested.py); a wrong input shape is refused naming it
    with pytest.raises(ValueError, match=r"model 'model': input 'input_layer' takes "
                                         r"per-sample shape \(5,\)"):
        two(fc.Input((4,)))
    enc = _encoder()
    with pytest.raises(ValueError, match=r"expects|takes inputs|shape"):
        fc.Model(fc.Input((6,)), enc(fc.Input((6,))))


class _Scale(L.Layer):
    """A custom layer (not registered): ``x * 2``."""

    def forward(self, x, training=False):
        return x * 2.0

    def backward(self, dy, accumulate=False):
        return dy * 2.0


def test_custom_objects_reach_nested_models(tmp_path) -> None:
    inner = fc.Sequential([L.Dense(3), _Scale()], input_shape=(5,), name="inner")
    x = fc.Input((5,))
    graph = fc.Model(x, inner(x), name="g")
    stack = fc.Sequential([graph, L.Dense(1)], input_shape=(5,))
    for m in (graph, stack):
        with pytest.raises(ValueError, match="unknown layer class '_Scale'"):
            fc.model_from_json(m.to_json())
        back = fc.model_from_json(m.to_json(), custom_objects={"_Scale": _Scale})
        back.set_weights(m.get_weights())
        np.testing.assert_array_equal(back.predict(_x()), m.predict(_x()))
