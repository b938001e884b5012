"""The model as a Keras user handles it: ``get_layer``, ``pop``, ``weights`` /
``trainable_weights`` / ``non_trainable_weights``, frozen layers (``trainable=False``) under
every optimizer and in ``summary`` and saved files, ``train_on_batch`` / ``test_on_batch`` /
``predict_on_batch``, ``to_json`` / ``model_from_json``, and custom layers: the registry
(``fastcnn.layers.register_layer``) and ``custom_objects``."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

import fastcnn as fc
from fastcnn import layers as L
from fastcnn import optimizers as O
from fastcnn.saving import model_from_json
from fastcnn.training import train_step


def _cnn(seed: int = 0, frozen: tuple[int, ...] = ()) -> fc.Sequential:
    layers = [L.Conv2D(4, 3, padding="same", activation="relu"), L.MaxPool2D(2), L.Flatten(),
              L.Dense(5, activation="relu"), L.Dense(3, activation="softmax")]
    for i in frozen:
        layers[i].trainable = False
    return fc.Sequential(layers, input_shape=(1, 6, 6), seed=seed)


def _data(n: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 1, 6, 6)).astype(np.float32), rng.integers(0, 3, n)


def _compiled(opt: Any = "adam", metrics: Any = None, seed: int = 0,
              frozen: tuple[int, ...] = ()) -> fc.Sequential:
    m = _cnn(seed, frozen)
    m.compile(opt, "sparse_categorical_crossentropy", metrics)
    return m


# --------------------------------------------------------------------------------------------
# a custom layer, as the protocol in fastcnn/layers/__init__.py describes it


class Scale(L.Layer):
    """``y = x * s``, one learned factor per element of a sample (never registered)."""

    default_name = "scale"

    def __init__(self, init: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.init = float(init)

    def _build(self, input_shape, rng):
        self.params = {"kernel": np.full(input_shape, self.init, dtype=np.float32)}
        self.flops = int(np.prod(input_shape))
        return input_shape

    def forward(self, x, training=False):
        self._cache = x if training else None
        return x * self.params["kernel"]

    def backward(self, dy, accumulate=False):
        x = self._need_cache()
        self._store_grad("kernel", (dy * x).sum(axis=0), accumulate)
        return dy * self.params["kernel"]

    def get_config(self):
        return {**super().get_config(), "init": self.init}


@L.register_layer
class RegisteredScale(Scale):
    """The same layer, registered at import (as a user's module would)."""


def _custom_model(cls: type[L.Layer], seed: int = 0) -> fc.Sequential:
    m = fc.Sequential([L.Flatten(), cls(init=0.5), L.Dense(3, activation="softmax")],
                      input_shape=(1, 6, 6), seed=seed)
    m.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    return m


# --------------------------------------------------------------------------------------------
# get_layer / pop


def test_get_layer_by_name_and_index():
    m = _cnn()
    assert m.get_layer("dense_1") is m.layers[4]
    assert m.get_layer(name="conv2d") is m.layers[0]
    assert m.get_layer(index=1) is m.layers[1]
    assert m.get_layer(index=-1) is m.layers[-1]
    assert m.get_layer(index=np.int64(2)) is m.layers[2]


@pytest.mark.parametrize(("kwargs", "exc", "match"), [
    ({}, ValueError, "exactly one of name= and index="),
    ({"name": "dense", "index": 0}, ValueError, "exactly one of name= and index="),
    ({"name": "nope"}, ValueError, r"no layer named 'nope'.*'conv2d', 'max_pool2d'"),
    ({"index": 5}, ValueError, r"index 5 is out of range for a model of 5 layer\(s\)"),
    ({"index": -6}, ValueError, "valid: -5 to 4"),
    ({"index": 1.0}, TypeError, "index must be an int"),
    ({"index": True}, TypeError, "index must be an int"),
    ({"name": 3}, TypeError, "name must be a string"),
])
def test_get_layer_errors(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        _cnn().get_layer(**kwargs)


def test_get_layer_on_an_empty_model():
    with pytest.raises(ValueError, match="the model has no layers"):
        fc.Sequential().get_layer(index=0)


def test_pop_removes_the_last_layer_and_keeps_the_model_built():
    m = _cnn()
    last = m.layers[-1]
    assert m.pop() is last
    assert m.built and len(m.layers) == 4 and m.output_shape == (5,)
    assert m.count_params() == sum(lay.count_params() for lay in m.layers)
    assert m(np.zeros((2, 1, 6, 6))).shape == (2, 5)
    m.add(L.Dense(2, activation="softmax"))  # a new head, built at once
    assert m.output_shape == (2,) and m(np.zeros((2, 1, 6, 6))).shape == (2, 2)


def test_pop_to_empty_then_error():
    m = fc.Sequential([L.Flatten()], input_shape=(4,))
    m.pop()
    assert m.layers == [] and not m.built and m.output_shape is None
    assert m.input_shape == (4,)
    with pytest.raises(ValueError, match="pop: the model has no layers"):
        m.pop()
    m.add(L.Dense(2))
    m.build(m.input_shape)
    assert m.output_shape == (2,)


def test_pop_drops_the_removed_layers_optimizer_state(tmp_path):
    """Fine-tuning: train, replace the head by one of another size under the same automatic
    name, train again, save and load: Adam's moments of the old head must not linger."""
    x, y = _data()
    m = _compiled("adam")
    m.fit(x, y, epochs=1, batch_size=4, verbose=0)
    assert "dense_1/kernel" in m.optimizer.state
    m.pop()
    assert not any(k.startswith("dense_1/") for k in m.optimizer.state)
    m.add(L.Dense(4, activation="softmax"))
    assert m.layers[-1].name == "dense_1"
    m.compile(m.optimizer, "sparse_categorical_crossentropy")
    m.fit(x, y, epochs=1, batch_size=4, verbose=0)  # a stale (3, 5) moment would not fit (4, 5)
    assert m.optimizer.state["dense_1/kernel"]["m"].shape == (4, 5)
    m.save(tmp_path / "m.npz")
    back = fc.load_model(tmp_path / "m.npz")
    np.testing.assert_array_equal(back.predict(x), m.predict(x))


# --------------------------------------------------------------------------------------------
# weights


def test_weights_lists_in_keras_order_and_live():
    m = _cnn(frozen=(3,))
    w = m.weights
    assert [a.shape for a in w] == [(4, 1, 3, 3), (4,), (5, 36), (5,), (3, 5), (3,)]
    for a, b in zip(w, m.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert w[0] is m.layers[0].params["kernel"]  # the model's own arrays, not copies
    assert [id(a) for a in m.trainable_weights] == [id(a) for a in (w[0], w[1], w[4], w[5])]
    assert [id(a) for a in m.non_trainable_weights] == [id(w[2]), id(w[3])]
    assert [id(p) for p, _ in m.parameters()] == [id(a) for a in m.trainable_weights]
    assert fc.Sequential([L.Dense(2)]).weights == []  # not built yet


# --------------------------------------------------------------------------------------------
# frozen layers under every optimizer


OPTIMIZERS = {
    "sgd": lambda: O.SGD(0.1),
    "sgd_momentum_wd": lambda: O.SGD(0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    "adam": lambda: O.Adam(0.01, weight_decay=0.01),
    "adamw": lambda: O.AdamW(0.01, weight_decay=0.1),
    "rmsprop": lambda: O.RMSprop(0.01, momentum=0.5, centered=True, weight_decay=0.01),
    "adam_clipped": lambda: O.Adam(0.01, global_clipnorm=0.1),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_frozen_layers_are_untouched_by_every_optimizer(name, tmp_path):
    x, y = _data()
    m = _compiled(OPTIMIZERS[name](), frozen=(0, 3))
    before = m.get_weights()
    m.fit(x, y, epochs=2, batch_size=4, verbose=0, seed=0)
    after = m.get_weights()
    for i in (0, 1, 2, 3):  # conv2d and dense: frozen
        np.testing.assert_array_equal(after[i], before[i])
    assert not np.array_equal(after[4], before[4])  # the head trains
    assert set(m.optimizer.state) == {"dense_1/kernel", "dense_1/bias"}
    assert all(np.all(g == 0) for g in m.layers[0].grads.values())  # nothing written
    m.save(tmp_path / "m.npz")
    assert not any(k.startswith(("optimizer/m/conv2d", "optimizer/m/dense/"))
                   for k in np.load(tmp_path / "m.npz").files)
    back = fc.load_model(tmp_path / "m.npz")
    assert [lay.trainable for lay in back.layers] == [lay.trainable for lay in m.layers]
    for a, b in zip(back.get_weights(), after, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_freezing_after_compile_and_training(name, tmp_path):
    """``trainable`` may change after compile (no re-compile: it acts at the next step). The
    optimizer keeps a newly frozen layer's state, untouched, and saves it; loading a model
    whose frozen layer has state works (it used to be refused as 'names no trainable
    parameter'), and unfreezing resumes from that state."""
    x, y = _data()
    m = _compiled(OPTIMIZERS[name]())
    m.fit(x, y, epochs=1, batch_size=4, verbose=0, seed=0)
    m.get_layer("conv2d").trainable = False
    frozen = [a.copy() for a in m.layers[0].params.values()]
    state = {k: {s: np.copy(a) for s, a in st.items()} for k, st in m.optimizer.state.items()
             if k.startswith("conv2d/")}
    m.fit(x, y, epochs=1, batch_size=4, verbose=0, seed=1)
    for a, b in zip(m.layers[0].params.values(), frozen, strict=True):
        np.testing.assert_array_equal(a, b)
    for k, st in state.items():
        for s, a in st.items():
            np.testing.assert_array_equal(m.optimizer.state[k][s], a)
    m.save(tmp_path / "m.npz")
    back = fc.load_model(tmp_path / "m.npz")
    assert not back.layers[0].trainable
    assert set(back.optimizer.state) == set(m.optimizer.state)
    for mod in (m, back):  # unfreeze: both resume from the same state, bit for bit
        mod.layers[0].trainable = True
        mod.fit(x, y, epochs=1, batch_size=4, verbose=0, seed=2)
    assert not np.array_equal(m.layers[0].params["kernel"], frozen[0])
    for a, b in zip(back.get_weights(), m.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_summary_counts_frozen_layers_as_keras_prints_them():
    m = _cnn(frozen=(3,))
    lines: list[str] = []
    m.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "Total params: 243 (972.00 B)" in text
    assert "Trainable params: 58 (232.00 B)" in text
    assert "Non-trainable params: 185 (740.00 B)" in text
    assert "Trainable" not in lines[2]  # the column is opt-in, as in Keras
    lines.clear()
    m.summary(print_fn=lines.append, show_trainable=True)
    assert lines[2].split()[-1] == "Trainable"
    flags = [ln.split()[-1] for ln in lines if ln.split() and ln.split()[0] in
             {lay.name for lay in m.layers}]
    assert flags == ["Y", "-", "-", "N", "Y"]
    m.layers[3].trainable = True  # the counts follow the flag at once
    lines.clear()
    m.summary(print_fn=lines.append)
    assert "Non-trainable params: 0 (0.00 B)" in lines


# --------------------------------------------------------------------------------------------
# train_on_batch / test_on_batch / predict_on_batch


def test_train_on_batch_is_one_train_step():
    x, y = _data()
    a, b = _compiled("adam"), _compiled("adam")
    loss = a.train_on_batch(x, y)
    step = train_step(b, x, y)
    assert isinstance(loss, float) and loss == step.loss
    for p, q in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(p, q)
    c = _compiled("adam")  # and fit on one full, unshuffled batch
    c.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    for p, q in zip(a.get_weights(), c.get_weights(), strict=True):
        np.testing.assert_array_equal(p, q)


def test_on_batch_return_values_follow_keras():
    x, y = _data()
    m = _compiled("sgd", metrics=["accuracy"])
    ref = _compiled("sgd", metrics=["accuracy"])
    want = ref.evaluate(x, y, batch_size=len(x), return_dict=True)  # before the update
    got = m.train_on_batch(x, y)
    assert isinstance(got, list) and len(got) == 2
    np.testing.assert_allclose(got, [want["loss"], want["accuracy"]], rtol=1e-6)
    assert set(m.train_on_batch(x, y, return_dict=True)) == {"loss", "accuracy"}
    # the metrics are this batch's alone (reset first), not a running mean
    first = m.test_on_batch(x[:6], y[:6], return_dict=True)
    m.test_on_batch(x[6:], y[6:])
    again = m.test_on_batch(x[:6], y[:6], return_dict=True)
    assert again == first


def test_test_on_batch_evaluates_without_changing_weights():
    x, y = _data()
    m = _compiled("adam", metrics=["accuracy", "top_k"])
    m.fit(x, y, epochs=1, batch_size=4, verbose=0)
    before = m.get_weights()
    got = m.test_on_batch(x, y)
    want = m.evaluate(x, y, batch_size=len(x))
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert list(m.test_on_batch(x, y, return_dict=True)) == ["loss", "accuracy", "top_k"]
    for a, b in zip(m.get_weights(), before, strict=True):
        np.testing.assert_array_equal(a, b)
    plain = _compiled("adam")
    assert isinstance(plain.test_on_batch(x, y), float)


def test_predict_on_batch():
    x, _ = _data()
    m = _compiled()
    out = m.predict_on_batch(x.astype(np.float64))
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == (12, 3)
    np.testing.assert_array_equal(out, m.predict(x, batch_size=len(x)))
    fresh = _cnn()  # no compile needed; built from the batch
    assert fresh.predict_on_batch(x).shape == (12, 3)


def test_on_batch_errors():
    x, y = _data()
    m = _cnn()
    with pytest.raises(RuntimeError, match="compile"):
        m.train_on_batch(x, y)
    with pytest.raises(RuntimeError, match=r"test_on_batch: call model\.compile"):
        m.test_on_batch(x, y)
    m.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"expected inputs of shape \(N, 1, 6, 6\)"):
        m.test_on_batch(np.zeros((2, 1, 5, 5)), y[:2])


# --------------------------------------------------------------------------------------------
# to_json / model_from_json


def test_to_json_round_trip():
    m = _cnn(seed=3, frozen=(0,))
    s = m.to_json()
    assert json.loads(s) == m.get_config()
    assert m.to_json(indent=2) == json.dumps(m.get_config(), indent=2)
    back = model_from_json(s)
    assert back.get_config() == m.get_config()
    assert back.built and not back.layers[0].trainable
    for a, b in zip(back.get_weights(), m.get_weights(), strict=True):  # the seed's weights
        np.testing.assert_array_equal(a, b)
    assert model_from_json(s.encode()).get_config() == m.get_config()


@pytest.mark.parametrize(("arg", "exc", "match"), [
    ("{not json", ValueError, "model_from_json: not valid JSON"),
    ('{"class_name": "Model"}', ValueError, "not a fastcnn model architecture"),
    ("[1, 2]", ValueError, "not a fastcnn model architecture"),
    ({"class_name": "Sequential"}, TypeError, "json_string must be the string"),
])
def test_model_from_json_errors(arg, exc, match):
    with pytest.raises(exc, match=match):
        model_from_json(arg)


# --------------------------------------------------------------------------------------------
# custom layers: registry and custom_objects


def test_a_registered_custom_layer_trains_saves_and_loads(tmp_path):
    x, y = _data()
    m = _custom_model(RegisteredScale)
    k0 = m.layers[1].params["kernel"].copy()
    m.fit(x, y, epochs=2, batch_size=4, verbose=0, seed=0)
    assert not np.array_equal(m.layers[1].params["kernel"], k0)  # its gradient flows
    m.save(tmp_path / "m.npz")
    back = fc.load_model(tmp_path / "m.npz")
    assert type(back.layers[1]) is RegisteredScale and back.layers[1].init == 0.5
    np.testing.assert_array_equal(back.predict(x), m.predict(x))
    for mod in (m, back):  # the optimizer state came back too: training continues alike
        mod.fit(x, y, epochs=1, batch_size=4, verbose=0, seed=1)
    for a, b in zip(back.get_weights(), m.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert type(model_from_json(m.to_json()).layers[1]) is RegisteredScale


def test_custom_layer_gradient_matches_finite_differences():
    m = fc.Sequential([L.Flatten(), Scale(init=0.7)], input_shape=(1, 2, 2))
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 1, 2, 2)).astype(np.float32)
    dy = rng.standard_normal((3, 4)).astype(np.float32)
    m(x, training=True)
    dx = m.backward(dy)
    np.testing.assert_allclose(m.layers[1].grads["kernel"], (dy * x.reshape(3, 4)).sum(0),
                               rtol=1e-6)
    np.testing.assert_allclose(dx, (dy * 0.7).reshape(3, 1, 2, 2), rtol=1e-6)


def test_an_unknown_custom_layer_is_named_with_the_fix(tmp_path):
    x, y = _data()
    m = _custom_model(Scale)
    m.fit(x, y, epochs=1, batch_size=4, verbose=0)
    m.save(tmp_path / "m.npz")
    with pytest.raises(ValueError, match=r"unknown layer class 'Scale'.*register_layer.*"
                                         r"custom_objects=\{'Scale': Scale\}"):
        fc.load_model(tmp_path / "m.npz")
    with pytest.raises(ValueError, match="unknown layer class 'Scale'"):
        model_from_json(m.to_json())
    with pytest.raises(ValueError, match="unknown layer class 'Scale'"):
        fc.Sequential.from_config(m.get_config())
    back = fc.load_model(tmp_path / "m.npz", custom_objects={"Scale": Scale})
    assert type(back.layers[1]) is Scale
    np.testing.assert_array_equal(back.predict(x), m.predict(x))
    assert type(model_from_json(m.to_json(), {"Scale": Scale}).layers[1]) is Scale
    cfg = m.get_config()
    assert type(fc.Sequential.from_config(cfg, custom_objects={"Scale": Scale}).layers[1]) \
        is Scale
    assert "Scale" not in L._LAYER_CLASSES  # custom_objects are per call, never stored


def test_custom_objects_win_over_the_registry(tmp_path):
    class LoudDense(L.Dense):
        pass

    m = _cnn()
    m.save(tmp_path / "m.npz")
    back = fc.load_model(tmp_path / "m.npz", custom_objects={"Dense": LoudDense})
    assert [type(lay) for lay in back.layers[3:]] == [LoudDense, LoudDense]
    assert type(fc.load_model(tmp_path / "m.npz").layers[3]) is L.Dense


@pytest.mark.parametrize(("custom", "match"), [
    ([("Scale", Scale)], "custom_objects must be a dict"),
    ({"Scale": Scale()}, r"custom_objects\['Scale'\] must map a class name to a subclass"),
    ({"Scale": dict}, r"custom_objects\['Scale'\]"),
])
def test_bad_custom_objects(custom, match, tmp_path):
    m = _cnn()
    m.save(tmp_path / "m.npz")
    with pytest.raises(TypeError, match=match):
        fc.load_model(tmp_path / "m.npz", custom_objects=custom)
    with pytest.raises(TypeError, match=match):
        model_from_json(m.to_json(), custom)


def test_load_model_refuses_custom_objects_in_the_compile_slot(tmp_path):
    m = _cnn()
    m.save(tmp_path / "m.npz")
    with pytest.raises(TypeError, match=r"compile must be a bool.*by keyword"):
        fc.load_model(tmp_path / "m.npz", {"Scale": Scale})  # Keras' positional order


def test_a_custom_layer_whose_init_refuses_its_config_is_explained(tmp_path):
    class Rigid(Scale):
        def __init__(self, init: float = 1.0) -> None:  # no name= / trainable=
            super().__init__(init)

    m = fc.Sequential([L.Flatten(), Rigid()], input_shape=(4,))
    why = r"Rigid\.from_config.*unexpected keyword argument 'name'.*accept \*\*kwargs"
    with pytest.raises(TypeError, match=why):
        model_from_json(m.to_json(), {"Rigid": Rigid})
    m.save(tmp_path / "m.npz")
    with pytest.raises(ValueError, match="bad architecture: " + why):
        fc.load_model(tmp_path / "m.npz", custom_objects={"Rigid": Rigid})


def _redefine() -> type[L.Layer]:
    class Redefined(Scale):
        pass

    return Redefined


def test_register_layer_rules():
    assert L.register_layer(RegisteredScale) is RegisteredScale  # again: a no-op
    first, second = _redefine(), _redefine()  # a re-run notebook cell: same qualified name
    assert L.register_layer(first) is first
    assert L.register_layer(second) is second
    assert L.get_layer_class("Redefined") is second

    class Redefined(Scale):  # another class (another qualified name) under a taken name
        pass

    with pytest.raises(ValueError, match=r"'Redefined' is already registered to "
                                         r"test_model_api\._redefine\.<locals>\.Redefined"):
        L.register_layer(Redefined)
    assert L.get_layer_class("Redefined") is second

    class Dense(L.Layer):
        pass

    with pytest.raises(ValueError, match=r"'Dense' is already registered to "
                                         r"fastcnn\.layers\.core\.Dense"):
        L.register_layer(Dense)
    assert L.get_layer_class("Dense") is L.Dense
    with pytest.raises(TypeError, match=r"expected a subclass of fastcnn\.layers\.Layer"):
        L.register_layer(dict)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="expected a subclass"):
        L.register_layer(Scale())  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# on the GPU (skipped unless fastcnn's CUDA backend can run here)


@pytest.mark.cuda
def test_on_batch_frozen_and_custom_layers_on_the_gpu(cp, tmp_path):
    x, y = _data()
    cpu = _custom_model(RegisteredScale)
    cpu.layers[2].trainable = False
    gpu = _custom_model(RegisteredScale)
    gpu.layers[2].trainable = False
    gpu.to("cuda")
    assert all(isinstance(a, cp.ndarray) for a in gpu.weights)
    frozen = gpu.get_weights()[1:]
    got = [gpu.train_on_batch(x, y) for _ in range(3)]
    want = [cpu.train_on_batch(x, y) for _ in range(3)]
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)
    for a, b in zip(gpu.get_weights()[1:], frozen, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(gpu.test_on_batch(x, y), cpu.test_on_batch(x, y), rtol=2e-4)
    out = gpu.predict_on_batch(x)
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, cpu.predict_on_batch(x), rtol=2e-4, atol=2e-5)
    gpu.save(tmp_path / "g.npz")
    back = fc.load_model(tmp_path / "g.npz").to("cuda")
    np.testing.assert_array_equal(back.predict_on_batch(x), out)


def test_backward_stops_at_the_lowest_trainable_layer() -> None:
    """With compute_dx=False the backward pass ends at the lowest layer with trainable weights
    (which skips its dx): frozen layers below it are never run, frozen layers above it compute
    only their dx, and the trainable layers' gradients are bitwise those of a full backward."""
    def build() -> fc.Sequential:
        return fc.Sequential([L.Conv2D(4, 3, activation="relu"), L.Conv2D(6, 3, activation="relu"),
                              L.MaxPool2D(2), L.Flatten(), L.Dense(8, activation="relu"),
                              L.Dense(5)], input_shape=(2, 10, 10), seed=4)

    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2, 10, 10)).astype(np.float32)
    dy = rng.standard_normal((3, 5)).astype(np.float32)
    full, frozen = build(), build()
    for lay in frozen.layers[:2] + frozen.layers[5:]:
        lay.trainable = False
    calls: list[str] = []
    for lay in frozen.layers:
        original = lay.backward

        def spy(*args: Any, _orig: Any = original, _name: str = lay.name, **kw: Any) -> Any:
            calls.append(_name)
            return _orig(*args, **kw)

        lay.backward = spy  # type: ignore[method-assign]
    full(x, training=True)
    full.backward(dy, compute_dx=False)
    frozen(x, training=True)
    assert frozen.backward(dy, compute_dx=False) is None
    assert calls == ["dense_1", "dense"]  # Flatten and below: never run
    np.testing.assert_array_equal(frozen.layers[4].grads["kernel"], full.layers[4].grads["kernel"])
    np.testing.assert_array_equal(frozen.layers[4].grads["bias"], full.layers[4].grads["bias"])
    assert frozen.layers[4].compute_dx is True  # restored after the pass
