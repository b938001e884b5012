"""Models with several inputs and several outputs (``fastcnn.Model([a, b], [y1, y2])``, dicts):
the structure of their data, compile with losses / loss_weights / metrics per output, fit /
evaluate / predict, History keys, the batching of several arrays, files, and the errors.

The per-output losses of one step are checked against NumPy, the gradients of a two-input model
against float64 central differences of the same graph written in NumPy and (when installed)
against a PyTorch twin.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastcnn as fc
from fastcnn import layers as L
from fastcnn._batches import ArrayBatches
from fastcnn._structure import Arrays


def _two_in_two_out(seed: int = 0, loss_free_reg: bool = False) -> fc.Model:
    """a (4,) -> Dense(5, relu); concat with b (3,) -> cls Dense(3, softmax), reg Dense(2)."""
    a, b = fc.Input((4,), name="a"), fc.Input((3,), name="b")
    h = L.Concatenate()([L.Dense(5, activation="relu", name="ha")(a), b])
    cls = L.Dense(3, activation="softmax", name="cls")(h)
    reg = L.Dense(2, name="reg")(h)
    return fc.Model([a, b], [cls, reg], seed=seed, name="two")


def _data(n: int = 24, seed: int = 1) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    xa = rng.standard_normal((n, 4)).astype(np.float32)
    xb = rng.standard_normal((n, 3)).astype(np.float32)
    y1 = rng.integers(0, 3, n)
    y2 = rng.standard_normal((n, 2)).astype(np.float32)
    return xa, xb, y1, y2


def _numpy_forward(m: fc.Model, xa: np.ndarray, xb: np.ndarray,
                   w: dict[str, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The logits of ``cls`` and the ``reg`` output of :func:`_two_in_two_out`, float64."""
    w = w or {k: v.astype(np.float64) for k, v in m._all_weights().items()}
    h = np.maximum(xa @ w["ha/kernel"].T + w["ha/bias"], 0.0)
    c = np.concatenate([h, xb], axis=1)
    return c @ w["cls/kernel"].T + w["cls/bias"], c @ w["reg/kernel"].T + w["reg/bias"]


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# --------------------------------------------------------------------------------------------
# structure


def test_lists_in_lists_out_and_dicts_by_input_name() -> None:
    m = _two_in_two_out()
    xa, xb, _, _ = _data()
    assert m.input_names == ["a", "b"] and m.output_names == ["cls", "reg"]
    assert m.input_shape == [(4,), (3,)] and m.output_shape == [(3,), (2,)]
    assert len(m.inputs) == 2 and len(m.outputs) == 2
    out = m([xa, xb])
    assert isinstance(out, list) and [o.shape for o in out] == [(24, 3), (24, 2)]
    z, r = _numpy_forward(m, xa, xb)
    np.testing.assert_allclose(out[0], _softmax(z), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out[1], r, rtol=1e-5, atol=1e-5)
    by_dict = m({"b": xb, "a": xa})  # a dict keyed by the Input names, any order
    for p, q in zip(by_dict, out, strict=True):
        np.testing.assert_array_equal(p, q)
    pred = m.predict([xa, xb], batch_size=5)
    assert isinstance(pred, list)
    for p, q in zip(pred, out, strict=True):
        np.testing.assert_allclose(p, q, rtol=1e-6, atol=1e-7)


def test_dict_inputs_and_outputs() -> None:
    img, meta = fc.Input((4,), name="img_in"), fc.Input((3,), name="meta_in")
    h = L.Concatenate()([img, meta])
    m = fc.Model({"img": img, "meta": meta},
                 {"score": L.Dense(1, name="s")(h), "probs": L.Dense(2, activation="softmax")(h)},
                 seed=0)
    assert m.input_names == ["img", "meta"] and m.output_names == ["score", "probs"]
    xa, xb, _, _ = _data()
    out = m({"img": xa, "meta": xb})
    assert isinstance(out, dict) and set(out) == {"score", "probs"}
    assert out["score"].shape == (24, 1) and out["probs"].shape == (24, 2)
    pred = m.predict({"img": xa, "meta": xb}, batch_size=7)
    np.testing.assert_allclose(pred["probs"], out["probs"], rtol=1e-6)
    m.compile("sgd", loss={"score": "mse", "probs": "sparse_categorical_crossentropy"},
              metrics={"probs": "accuracy"})
    h = m.fit({"img": xa, "meta": xb}, {"score": np.zeros((24, 1), np.float32),
                                         "probs": np.zeros(24, np.int64)},
              epochs=1, batch_size=8, verbose=0)
    assert list(h.history) == ["loss", "score_loss", "probs_loss", "probs_accuracy"]
    again = fc.model_from_json(m.to_json())
    assert again.output_names == ["score", "probs"] and again.input_names == ["img", "meta"]
    again.set_weights(m.get_weights())
    np.testing.assert_allclose(again.predict({"img": xa, "meta": xb})["score"],
                               m.predict({"img": xa, "meta": xb})["score"], rtol=1e-6)


def test_single_input_several_outputs_and_model_with_one_of_each_unchanged() -> None:
    x = fc.Input((4,))
    h = L.Dense(3, activation="relu")(x)
    m = fc.Model(x, [L.Dense(2, name="o1")(h), L.Dense(1, name="o2")(h)], seed=0)
    xa = _data()[0]
    out = m.predict(xa)
    assert [o.shape for o in out] == [(24, 2), (24, 1)]
    one = fc.Model(x, [L.Dense(2)(x)])  # a list of one: one array, as before
    assert isinstance(one.predict(xa), np.ndarray)


# --------------------------------------------------------------------------------------------
# errors


def test_errors_name_the_model_the_names_and_what_was_expected() -> None:
    m = _two_in_two_out()
    xa, xb, y1, y2 = _data()
    with pytest.raises(ValueError, match=r"model 'two' has 2 inputs \['a', 'b'\].*got a list "
                                         r"of 3"):
        m([xa, xb, xb])
    with pytest.raises(ValueError, match=r"model 'two' has 2 inputs.*got one array of shape "
                                         r"\(24, 4\)"):
        m.predict(xa)
    with pytest.raises(ValueError, match=r"missing keys \['b'\]"):
        m({"a": xa})
    with pytest.raises(ValueError, match=r"unknown keys \['c'\]"):
        m({"a": xa, "b": xb, "c": xb})
    with pytest.raises(ValueError, match=r"input 'b'\) expects inputs of shape \(N, 3\), got "
                                         r"\(N, 4\)"):
        m([xa, xa])
    with pytest.raises(ValueError, match=r"compile: loss names \['clss'\], which are not "
                                         r"outputs of model 'two'; its outputs are \['cls', "
                                         r"'reg'\]"):
        m.compile("sgd", loss={"clss": "mse"})
    with pytest.raises(ValueError, match=r"has 2 outputs \['cls', 'reg'\]; loss must be one "
                                         r"entry per output"):
        m.compile("sgd", loss=["mse", "mse", "mse"])
    with pytest.raises(ValueError, match=r"metrics names \['x'\]"):
        m.compile("sgd", loss="mse", metrics={"x": ["mae"]})
    with pytest.raises(ValueError, match=r"loss_weights names \['r'\]"):
        m.compile("sgd", loss="mse", loss_weights={"r": 1.0})
    with pytest.raises(ValueError, match="needs a loss for at least one"):
        m.compile("sgd", loss={"cls": None})
    with pytest.raises(ValueError, match="loss_weights weighs the losses of a model with "
                                         "several outputs"):
        fc.Sequential([L.Dense(1)], input_shape=(2,)).compile("sgd", "mse", loss_weights=[1])
    m.compile("sgd", loss=["sparse_categorical_crossentropy", "mse"])
    with pytest.raises(ValueError, match=r"model 'two' has 2 outputs \['cls', 'reg'\].*got a "
                                         r"list of 1"):
        m.fit([xa, xb], [y1], verbose=0)
    with pytest.raises(ValueError, match=r"missing keys \['reg'\]"):
        m.fit([xa, xb], {"cls": y1}, verbose=0)
    with pytest.raises(ValueError, match="class_weight is not supported for model 'two'"):
        m.fit([xa, xb], [y1, y2], class_weight={0: 1.0}, verbose=0)
    with pytest.raises(ValueError, match="the same number of samples"):
        m.fit([xa, xb[:10]], [y1, y2], verbose=0)
    # several inputs / outputs export now (tests/test_export_multi_io.py); the flat graph
    # helper of the reference tests still takes one of each
    with pytest.raises(ValueError, match="_nodes\\(\\) lists models with one input and one"):
        m._nodes()
    x = fc.Input((2,))
    d = L.Dense(2, name="same_out")
    with pytest.raises(ValueError, match="two outputs have one name"):
        fc.Model(x, [d(x), d(L.Dense(2)(x))])
    with pytest.raises(ValueError, match="the same tensor is given twice"):
        fc.Model([x, x], L.Dense(1)(x))


# --------------------------------------------------------------------------------------------
# the losses of one step, against NumPy


def test_per_output_losses_of_one_step_match_numpy() -> None:
    m = _two_in_two_out()
    xa, xb, y1, y2 = _data(8)
    m.compile(fc.optimizers.SGD(0.1), loss={"cls": "sparse_categorical_crossentropy",
                                            "reg": "mse"},
              loss_weights={"cls": 1.0, "reg": 0.5}, metrics={"cls": ["accuracy"]})
    z, r = _numpy_forward(m, xa, xb)  # before the update
    logs = m.train_on_batch([xa, xb], {"cls": y1, "reg": y2}, return_dict=True)
    p = _softmax(z)
    ce = -np.mean(np.log(p[np.arange(8), y1]))
    mse = np.mean((r - y2) ** 2)
    assert list(logs) == ["loss", "cls_loss", "reg_loss", "cls_accuracy"]
    np.testing.assert_allclose(logs["cls_loss"], ce, rtol=1e-5)
    np.testing.assert_allclose(logs["reg_loss"], mse, rtol=1e-5)
    np.testing.assert_allclose(logs["loss"], ce + 0.5 * mse, rtol=1e-5)
    assert logs["cls_accuracy"] == np.mean(p.argmax(1) == y1)
    # evaluate: the same names, as a list in that order
    ev = m.evaluate([xa, xb], [y1, y2])
    assert isinstance(ev, list) and len(ev) == 4
    d = m.evaluate([xa, xb], [y1, y2], return_dict=True)
    np.testing.assert_allclose(d["loss"], d["cls_loss"] + 0.5 * d["reg_loss"], rtol=1e-6)


def test_one_sgd_step_matches_a_pytorch_twin() -> None:
    torch = pytest.importorskip("torch")
    m = _two_in_two_out(seed=3)
    xa, xb, y1, y2 = _data(8, seed=4)
    w = {k: torch.tensor(v.astype(np.float64), requires_grad=True)
         for k, v in m._all_weights().items()}
    lr = 0.05
    m.compile(fc.optimizers.SGD(lr), loss=["sparse_categorical_crossentropy", "mse"],
              loss_weights=[0.7, 2.0])
    m.train_on_batch([xa, xb], [y1, y2])
    ta, tb = torch.tensor(xa, dtype=torch.float64), torch.tensor(xb, dtype=torch.float64)
    h = torch.relu(ta @ w["ha/kernel"].T + w["ha/bias"])
    c = torch.cat([h, tb], 1)
    z, r = c @ w["cls/kernel"].T + w["cls/bias"], c @ w["reg/kernel"].T + w["reg/bias"]
    loss = 0.7 * torch.nn.functional.cross_entropy(z, torch.tensor(y1)) \
        + 2.0 * torch.mean((r - torch.tensor(y2, dtype=torch.float64)) ** 2)
    loss.backward()
    for k, p in m._all_weights().items():
        want = (w[k] - lr * w[k].grad).detach().numpy()
        np.testing.assert_allclose(p, want, rtol=1e-5, atol=1e-6, err_msg=k)


# --------------------------------------------------------------------------------------------
# gradients of a two-input model


def test_two_input_gradients_against_finite_differences() -> None:
    m = _two_in_two_out(seed=5)
    xa, xb, _, _ = _data(6, seed=6)
    rng = np.random.default_rng(7)
    out = m([xa, xb], training=True, logits=(True, False))  # cls logits, as fit fuses them
    r1, r2 = rng.standard_normal(out[0].shape), rng.standard_normal(out[1].shape)
    dxa, dxb = m.backward([r1.astype(np.float32), r2.astype(np.float32)])
    grads = {f"{lay.name}/{k}": g for lay in m.layers for k, g in lay.grads.items()}
    w64 = {k: v.astype(np.float64) for k, v in m._all_weights().items()}

    def f(a: np.ndarray, b: np.ndarray, w: dict[str, np.ndarray]) -> float:
        z, r = _numpy_forward(m, a, b, w)
        return float(np.sum(z * r1) + np.sum(r * r2))

    eps = 1e-6
    a64, b64 = xa.astype(np.float64), xb.astype(np.float64)
    for arr, g, which in ((a64, dxa, "a"), (b64, dxb, "b")):
        for idx in [(0, 0), (2, 1), (5, 2)]:
            hi, lo = arr.copy(), arr.copy()
            hi[idx] += eps
            lo[idx] -= eps
            args_hi = (hi, b64) if which == "a" else (a64, hi)
            args_lo = (lo, b64) if which == "a" else (a64, lo)
            num = (f(*args_hi, w64) - f(*args_lo, w64)) / (2 * eps)
            np.testing.assert_allclose(g[idx], num, rtol=2e-4, atol=1e-5, err_msg=which)
    for k in w64:
        for flat in (0, w64[k].size - 1):
            idx = np.unravel_index(flat, w64[k].shape)
            hi, lo = dict(w64), dict(w64)
            hi[k], lo[k] = w64[k].copy(), w64[k].copy()
            hi[k][idx] += eps
            lo[k][idx] -= eps
            num = (f(a64, b64, hi) - f(a64, b64, lo)) / (2 * eps)
            np.testing.assert_allclose(grads[k][idx], num, rtol=2e-4, atol=1e-5, err_msg=k)


def test_backward_with_one_output_gradient_left_out() -> None:
    m = _two_in_two_out(seed=1)
    xa, xb, _, _ = _data(4)
    out = m([xa, xb], training=True)
    _, dxb = m.backward([None, np.ones_like(out[1])])
    w = m.get_layer("reg").params["kernel"]
    # only reg's gradient flows: dx_b is the column sum of reg's kernel's b part
    np.testing.assert_allclose(dxb, np.tile(w[:, 5:].sum(0), (4, 1)), rtol=1e-5)
    with pytest.raises(ValueError, match="got no gradient for any of its outputs"):
        m.backward([None, None])


# --------------------------------------------------------------------------------------------
# fit: batching, History, validation, weights, generators


def test_batches_slice_every_array_with_one_shuffle() -> None:
    n = 23
    base = np.arange(n, dtype=np.float32)
    x = Arrays([base[:, None] * np.ones((1, 4), np.float32), -base[:, None] * np.ones(
        (1, 3), np.float32)], ["a", "b"])
    y = Arrays([base.astype(np.int64), 2 * base[:, None]], ["cls", "reg"])
    ab = ArrayBatches(x, y, 5)
    ab.rng = np.random.default_rng(0)
    seen = []
    for xb, yb, _ in ab:
        ids = xb.arrays[0][:, 0]
        np.testing.assert_array_equal(xb.arrays[1][:, 0], -ids)
        np.testing.assert_array_equal(yb.arrays[0], ids.astype(np.int64))
        np.testing.assert_array_equal(yb.arrays[1][:, 0], 2 * ids)
        seen.extend(ids.tolist())
    assert sorted(seen) == list(range(n)) and seen != list(range(n))  # shuffled, all once


def test_fit_equals_a_hand_loop_of_train_steps_on_the_same_permutation() -> None:
    xa, xb, y1, y2 = _data(20)
    models = [_two_in_two_out(seed=2) for _ in range(2)]
    for mm in models:
        mm.compile(fc.optimizers.SGD(0.1), loss=["sparse_categorical_crossentropy", "mse"],
                   loss_weights=[1.0, 0.25])
    models[0].fit([xa, xb], [y1, y2], batch_size=6, epochs=2, seed=11, verbose=0)
    rng = np.random.default_rng(11)
    for _ in range(2):
        perm = rng.permutation(20)
        for i in range(0, 20, 6):
            idx = perm[i:i + 6]
            fc.training.train_step(models[1], [xa[idx], xb[idx]], [y1[idx], y2[idx]])
    for p, q in zip(models[0].get_weights(), models[1].get_weights(), strict=True):
        np.testing.assert_array_equal(p, q)


def test_history_keys_validation_and_sample_weights() -> None:
    m = _two_in_two_out()
    xa, xb, y1, y2 = _data(30)
    m.compile("adam", loss={"cls": "sparse_categorical_crossentropy", "reg": "mse"},
              metrics=[["accuracy"], ["mae"]])
    h = m.fit([xa, xb], [y1, y2], epochs=2, batch_size=8, verbose=0,
              validation_data=([xa[:10], xb[:10]], {"cls": y1[:10], "reg": y2[:10]}))
    names = ["loss", "cls_loss", "reg_loss", "cls_accuracy", "reg_mae"]
    assert list(h.history) == names + [f"val_{k}" for k in names]
    assert len(h.history["val_cls_loss"]) == 2
    h2 = m.fit([xa, xb], [y1, y2], epochs=1, batch_size=8, verbose=0, validation_split=0.2)
    assert "val_reg_loss" in h2.history
    # sample weights: every output's loss weighted; zeros for half the batch = that half alone
    w = np.r_[np.ones(15), np.zeros(15)].astype(np.float32)
    full = m.evaluate([xa[:15], xb[:15]], [y1[:15], y2[:15]], return_dict=True)
    weighted = m.evaluate([xa, xb], [y1, y2], sample_weight=w, return_dict=True, batch_size=30)
    np.testing.assert_allclose(weighted["cls_loss"], full["cls_loss"] / 2, rtol=1e-5)
    # a flat metrics list applies to every output (each its own copy)
    m.compile("sgd", loss="mse", metrics=["mae"])
    assert [x.name for x in m.metrics] == ["cls_loss", "reg_loss", "cls_mae", "reg_mae"]
    assert m.metrics[2].metric is not m.metrics[3].metric


def test_an_output_without_loss_needs_no_targets_and_a_generator_trains() -> None:
    m = _two_in_two_out()
    xa, xb, y1, _ = _data(16)
    m.compile("sgd", loss={"cls": "sparse_categorical_crossentropy"})
    h = m.fit([xa, xb], {"cls": y1}, epochs=1, batch_size=8, verbose=0)
    assert list(h.history) == ["loss", "cls_loss"]
    np.testing.assert_allclose(h.history["loss"], h.history["cls_loss"])
    before = m.get_layer("reg").get_weights()
    m.fit([xa, xb], [y1, None], epochs=1, verbose=0)
    for p, q in zip(before, m.get_layer("reg").get_weights(), strict=True):
        np.testing.assert_array_equal(p, q)  # no loss: the reg head is not trained

    def gen():
        for i in range(0, 16, 4):
            yield [xa[i:i + 4], xb[i:i + 4]], {"cls": y1[i:i + 4]}

    h = m.fit(gen(), epochs=1, verbose=0)
    assert len(h.history["cls_loss"]) == 1


# --------------------------------------------------------------------------------------------
# files


def test_save_load_model_round_trip_with_compile_settings(tmp_path) -> None:
    m = _two_in_two_out()
    xa, xb, y1, y2 = _data(16)
    m.compile("adam", loss={"cls": "sparse_categorical_crossentropy", "reg": "mse"},
              loss_weights={"reg": 0.3}, metrics={"cls": "accuracy"},
              weighted_metrics={"reg": ["mae"]})
    m.fit([xa, xb], [y1, y2], epochs=1, batch_size=8, verbose=0)
    path = tmp_path / "multi.npz"
    m.save(path)
    back = fc.load_model(path)
    assert back.output_names == ["cls", "reg"] and back.input_names == ["a", "b"]
    for p, q in zip(back.predict([xa, xb]), m.predict([xa, xb]), strict=True):
        np.testing.assert_array_equal(p, q)
    assert back.loss.loss_weights == [1.0, 0.3]
    assert [x.name for x in back.metrics] == [x.name for x in m.metrics]
    assert [x.name for x in back.weighted_metrics] == ["reg_mae"]
    assert m.evaluate([xa, xb], [y1, y2], return_dict=True) == \
        back.evaluate([xa, xb], [y1, y2], return_dict=True)
    # training resumes identically (the optimizer state came back)
    m.fit([xa, xb], [y1, y2], epochs=1, batch_size=8, verbose=0, seed=3)
    back.fit([xa, xb], [y1, y2], epochs=1, batch_size=8, verbose=0, seed=3)
    for p, q in zip(m.get_weights(), back.get_weights(), strict=True):
        np.testing.assert_array_equal(p, q)
    js = fc.model_from_json(m.to_json())
    assert js.get_config() == m.get_config()


def test_an_output_consumed_by_another_node_is_not_fused_and_from_logits_checked() -> None:
    x = fc.Input((4,))
    probs = L.Dense(3, activation="softmax", name="probs")(x)
    score = L.Dense(1, name="score")(probs)  # the softmax output feeds the other output
    m = fc.Model(x, [probs, score], seed=0)
    m.compile("sgd", loss=["sparse_categorical_crossentropy", "mse"])
    assert m.output_fused == (False, False)
    xa = _data(8)[0]
    y1, y2 = np.arange(8) % 3, np.zeros((8, 1), np.float32)
    p, s = m.predict(xa)
    logs = m.test_on_batch(xa, [y1, y2], return_dict=True)
    np.testing.assert_allclose(logs["probs_loss"], -np.mean(np.log(p[np.arange(8), y1])),
                               rtol=1e-5)
    np.testing.assert_allclose(logs["score_loss"], np.mean(s ** 2), rtol=1e-5)
    with pytest.raises(ValueError, match="other layers consume its output"):
        m(xa, logits=True)
    x2 = fc.Input((4,))
    m2 = fc.Model(x2, [L.Dense(3, activation="softmax", name="a")(x2), L.Dense(1)(x2)])
    m2.compile("sgd", loss=[fc.losses.SparseCategoricalCrossentropy(), "mse"])
    assert m2.output_fused == (True, False)
    with pytest.raises(ValueError, match="the loss of output 'a' has from_logits=True"):
        m2.compile("sgd", loss=[fc.losses.SparseCategoricalCrossentropy(from_logits=True),
                                "mse"])


def test_one_input_given_as_a_list_or_dict() -> None:
    x = fc.Input((4,), name="inp")
    m = fc.Model(x, L.Dense(2, name="o")(x), seed=0)
    xa = _data(10)[0]
    want = m.predict(xa)
    np.testing.assert_array_equal(m.predict([xa]), want)
    np.testing.assert_array_equal(m.predict({"inp": xa}), want)
    m.compile("sgd", "mse")
    y = np.zeros((10, 2), np.float32)
    assert m.evaluate({"inp": xa}, {"o": y}) == m.evaluate(xa, y)


@pytest.mark.cuda
def test_several_inputs_and_outputs_train_on_the_gpu_like_on_the_cpu(cp) -> None:
    xa, xb, y1, y2 = _data(16)
    cpu, gpu = _two_in_two_out(seed=2), _two_in_two_out(seed=2)
    gpu.to("cuda")
    enc_x = fc.Input((4,))
    for m in (cpu, gpu):
        m.compile(fc.optimizers.SGD(0.05), loss=["sparse_categorical_crossentropy", "mse"],
                  loss_weights=[1.0, 0.5], metrics=[["accuracy"], []])
    hc = cpu.fit([xa, xb], [y1, y2], batch_size=8, epochs=2, seed=0, verbose=0)
    hg = gpu.fit([xa, xb], [y1, y2], batch_size=8, epochs=2, seed=0, verbose=0)
    for k in hc.history:
        np.testing.assert_allclose(hg.history[k], hc.history[k], rtol=2e-4, atol=2e-5)
    for p, q in zip(gpu.predict([xa, xb]), cpu.predict([xa, xb]), strict=True):
        assert isinstance(p, np.ndarray)
        np.testing.assert_allclose(p, q, rtol=2e-4, atol=2e-5)
    enc = fc.Sequential([L.Dense(3)], input_shape=(4,), seed=0)
    nested = fc.Model(enc_x, L.Dense(1)(enc(enc_x)), seed=0)
    want = nested.predict(xa)
    nested.to("cuda")
    assert all(isinstance(w, cp.ndarray) for w in enc.weights)
    np.testing.assert_allclose(nested.predict(xa), want, rtol=2e-4, atol=2e-5)


def test_on_batch_methods_and_data_format_with_several_inputs() -> None:
    # the channels-last checks are per image array: a list of inputs trains as it is, and
    # data_format="channels_last" (one image array) is refused naming the fix
    m = _two_in_two_out()
    m.compile("sgd", loss=["sparse_categorical_crossentropy", "mse"])
    xa, xb, y1, y2 = _data()
    before = m.test_on_batch([xa, xb], [y1, y2])  # [loss, cls_loss, reg_loss], as Keras
    logs = m.train_on_batch([xa, xb], [y1, y2], return_dict=True)
    assert list(logs) == ["loss", "cls_loss", "reg_loss"]
    assert list(logs.values()) == pytest.approx(before, rel=1e-6)  # the loss before the update
    assert m.test_on_batch([xa, xb], [y1, y2])[0] < before[0]
    out = m.predict_on_batch([xa, xb])
    assert [o.shape for o in out] == [(len(xa), 3), (len(xa), 2)]
    m.fit([xa, xb], [y1, y2], epochs=1, batch_size=8, verbose=0)
    for call in (lambda: m.fit([xa, xb], [y1, y2], verbose=0, data_format="channels_last"),
                 lambda: m.predict([xa, xb], data_format="channels_last"),
                 lambda: m.train_on_batch([xa, xb], [y1, y2], data_format="channels_last")):
        with pytest.raises(ValueError, match="to_channels_first"):
            call()
