"""Per-output ``sample_weight`` for models with several outputs (issue 17), as Keras takes it:
one array for every output, a list (one per output, None: unweighted) or a dict by output name,
in ``fit`` / ``evaluate`` / ``train_on_batch`` / ``test_on_batch`` and from a generator's
``(x, y, w)`` batches; each output's loss is ``sum(w_k * l_k) / N`` and the model's
``sum(loss_weight_k * loss_k)``; the weighted metrics of an output take that output's weights;
a wrong length is a ValueError naming the output."""

from __future__ import annotations

import numpy as np
import pytest

import fastcnn as fc
from fastcnn import layers as L

N = 10


def _model() -> fc.Model:
    a = fc.Input((4,), name="a")
    h = L.Dense(5, activation="relu")(a)
    m = fc.Model(a, [L.Dense(3, activation="softmax", name="cls")(h), L.Dense(1, name="reg")(h)],
                 seed=0)
    m.compile("sgd", ["sparse_categorical_crossentropy", "mse"],
              weighted_metrics=[["accuracy"], ["mae"]], loss_weights=[1.0, 0.5])
    return m


def _data() -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, 4)).astype(np.float32)
    y1 = rng.integers(0, 3, N)
    y2 = rng.standard_normal((N, 1)).astype(np.float32)
    w1 = rng.uniform(0, 2, N).astype(np.float32)
    w2 = rng.uniform(0, 2, N).astype(np.float32)
    return x, y1, y2, w1, w2


def _manual(m: fc.Model, x: np.ndarray, y1: np.ndarray, y2: np.ndarray, w1: np.ndarray | None,
            w2: np.ndarray | None) -> dict[str, float]:
    """The logs computed here in float64 from the predictions, with Keras' rules."""
    p1, p2 = (p.astype(np.float64) for p in m.predict(x))
    ones = np.ones(N)
    w1 = ones if w1 is None else w1.astype(np.float64)
    w2 = ones if w2 is None else w2.astype(np.float64)
    l1 = -np.log(p1[np.arange(N), y1])
    l2 = ((p2 - y2) ** 2)[:, 0]
    cls, reg = (w1 * l1).sum() / N, (w2 * l2).sum() / N
    acc = (w1 * (p1.argmax(1) == y1)).sum() / w1.sum()
    mae = (w2 * np.abs(p2 - y2)[:, 0]).sum() / w2.sum()
    return {"loss": cls + 0.5 * reg, "cls_loss": cls, "reg_loss": reg, "cls_accuracy": acc,
            "reg_mae": mae}


def _close(got: dict[str, float], want: dict[str, float]) -> None:
    assert list(got) == list(want)
    for k in want:
        assert got[k] == pytest.approx(want[k], rel=2e-5, abs=1e-6), k


def test_evaluate_list_dict_and_shared_weights() -> None:
    m = _model()
    x, y1, y2, w1, w2 = _data()
    _close(m.evaluate(x, [y1, y2], sample_weight=[w1, w2], batch_size=4, return_dict=True),
           _manual(m, x, y1, y2, w1, w2))
    _close(m.evaluate(x, {"cls": y1, "reg": y2}, sample_weight={"reg": w2}, return_dict=True),
           _manual(m, x, y1, y2, None, w2))
    _close(m.evaluate(x, [y1, y2], sample_weight=[None, w2], return_dict=True),
           _manual(m, x, y1, y2, None, w2))
    _close(m.evaluate(x, [y1, y2], sample_weight=w1, return_dict=True),  # one for all
           _manual(m, x, y1, y2, w1, w1))
    _close(m.evaluate(x, [y1, y2], sample_weight=list(map(float, w1)), return_dict=True),
           _manual(m, x, y1, y2, w1, w1))  # a list of numbers is one array


def test_train_and_test_on_batch_take_per_output_weights() -> None:
    m = _model()
    x, y1, y2, w1, w2 = _data()
    want = _manual(m, x, y1, y2, w1, w2)
    _close(m.test_on_batch(x, [y1, y2], sample_weight={"cls": w1, "reg": w2},
                           return_dict=True), want)
    # the per-output gradient: each sample's scaled by its output's weight
    twin = _model()
    twin.set_weights(m.get_weights())
    logs = m.train_on_batch(x, [y1, y2], sample_weight=[w1, w2], return_dict=True)
    _close(logs, want)  # the loss before the update
    # the same step from a loss whose per-sample terms carry the weights: duplicate rows
    # with integer weights give the same update as weighting, so check on integer weights
    k1, k2 = np.array([1, 2] * 5), np.array([2, 0] * 5)
    m2, m3 = _model(), _model()
    m3.set_weights(m2.get_weights())
    m2.train_on_batch(x, [y1, y2], sample_weight=[k1.astype(np.float32),
                                                   k2.astype(np.float32)])
    # explicit gradient: OutputLosses with the weights in, then backward / SGD by hand
    out = m3([x], training=True)
    from fastcnn.losses import get

    ce, mse = get("sparse_categorical_crossentropy"), get("mse")
    _, g1 = ce.value_and_grad(out[0], y1, sample_weight=k1.astype(np.float32))
    _, g2 = mse.value_and_grad(out[1], y2, sample_weight=k2.astype(np.float32))
    m3.backward([g1, g2 * np.float32(0.5)])
    lr = m3.optimizer.learning_rate
    for lay in m3.layers:
        for name, gr in getattr(lay, "grads", {}).items():
            lay.params[name] -= np.float32(lr) * gr
    for a, b in zip(m2.get_weights(), m3.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_fit_with_per_output_weights_and_validation() -> None:
    m = _model()
    x, y1, y2, w1, w2 = _data()
    want = _manual(m, x, y1, y2, w1, w2)
    h = m.fit(x, [y1, y2], sample_weight={"cls": w1, "reg": w2}, epochs=1, batch_size=N,
              shuffle=False, verbose=0, validation_data=(x, [y1, y2], [w1, w2]))
    # one batch of all the samples: the epoch's training loss is the weighted loss before
    # the update
    assert h.history["loss"][0] == pytest.approx(want["loss"], rel=2e-5)
    assert h.history["reg_loss"][0] == pytest.approx(want["reg_loss"], rel=2e-5)
    after = _manual(m, x, y1, y2, w1, w2)
    assert h.history["val_loss"][0] == pytest.approx(after["loss"], rel=2e-5)
    assert h.history["val_reg_mae"][0] == pytest.approx(after["reg_mae"], rel=2e-5)
    # validation_split slices the per-output weights with the data
    h = m.fit(x, [y1, y2], sample_weight=[w1, w2], epochs=1, verbose=0, validation_split=0.3)
    xs = slice(7, None)
    m_val = _manual_subset(m, x[xs], y1[xs], y2[xs], w1[xs], w2[xs])
    assert h.history["val_loss"][0] == pytest.approx(m_val, rel=2e-5)


def _manual_subset(m: fc.Model, x, y1, y2, w1, w2) -> float:
    p1, p2 = (p.astype(np.float64) for p in m.predict(x))
    n = len(x)
    l1 = -np.log(p1[np.arange(n), y1])
    l2 = ((p2 - y2) ** 2)[:, 0]
    return float((w1 * l1).sum() / n + 0.5 * (w2 * l2).sum() / n)


def test_a_generator_may_yield_per_output_weights() -> None:
    m = _model()
    x, y1, y2, w1, w2 = _data()

    def batches():
        for s in (slice(0, 5), slice(5, 10)):
            yield x[s], [y1[s], y2[s]], {"cls": w1[s], "reg": w2[s]}

    _close(m.evaluate(batches(), return_dict=True), _manual(m, x, y1, y2, w1, w2))


def test_errors_name_the_output() -> None:
    m = _model()
    x, y1, y2, w1, w2 = _data()
    with pytest.raises(ValueError, match=r"fit: sample_weight\['reg'\] \(output 'reg' of model "
                                         r"'model'\) must have shape \(10,\).*got shape \(5,\)"):
        m.fit(x, [y1, y2], sample_weight=[w1, w2[:5]], verbose=0)
    with pytest.raises(ValueError, match=r"evaluate: sample_weight\['cls'\].*shape \(10,\)"):
        m.evaluate(x, [y1, y2], sample_weight={"cls": w1[:3]})
    with pytest.raises(ValueError, match=r"unknown keys \['rg'\]; sample_weight is one array"):
        m.fit(x, [y1, y2], sample_weight={"rg": w1}, verbose=0)
    with pytest.raises(ValueError, match=r"has 2 outputs \['cls', 'reg'\].*got a list of 3"):
        m.train_on_batch(x, [y1, y2], sample_weight=[w1, w2, w2])
    with pytest.raises(ValueError, match=r"train_on_batch: sample_weight\['reg'\]: sample "
                                         r"weights must be finite and >= 0"):
        m.train_on_batch(x, [y1, y2], sample_weight=[w1, -w2])
    with pytest.raises(ValueError, match=r"fit: sample_weight must have shape \(10,\)"):
        m.fit(x, [y1, y2], sample_weight=w1[:4], verbose=0)  # one array: the old check

    def bad():
        yield x, [y1, y2], [w1, w2[:3]]

    with pytest.raises(ValueError, match=r"sample_weight\['reg'\]"):
        m.evaluate(bad())


def test_one_output_model_on_batch_takes_sample_weight_too() -> None:
    m = fc.Sequential([L.Dense(1)], input_shape=(4,), seed=0)
    m.compile("sgd", "mse", weighted_metrics=["mae"])
    x, _, y2, w1, _ = _data()
    want = m.evaluate(x, y2, sample_weight=w1, return_dict=True)
    got = m.test_on_batch(x, y2, sample_weight=w1, return_dict=True)
    _close(got, want)
    assert m.test_on_batch(x, y2, return_dict=True)["loss"] != pytest.approx(want["loss"])
    _close(m.train_on_batch(x, y2, sample_weight=w1, return_dict=True), want)
    with pytest.raises(ValueError, match=r"sample weights must have shape \(10,\)"):
        m.train_on_batch(x, y2, sample_weight=w1[:3])


def test_two_inputs_and_validation_weights() -> None:
    a, b = fc.Input((4,), name="a"), fc.Input((4,), name="b")
    h = L.Concatenate()([a, b])
    m = fc.Model([a, b], [L.Dense(3, activation="softmax", name="cls")(h),
                          L.Dense(1, name="reg")(h)], seed=0)
    m.compile("sgd", ["sparse_categorical_crossentropy", "mse"])
    x, y1, y2, w1, w2 = _data()
    h = m.fit([x, x], [y1, y2], sample_weight=[w1, w2], epochs=1, verbose=0,
              validation_data=([x, x], [y1, y2], {"reg": w2}))
    p1, p2 = (p.astype(np.float64) for p in m.predict([x, x]))
    want = (-np.log(p1[np.arange(N), y1])).mean() + (w2 * ((p2 - y2) ** 2)[:, 0]).mean()
    assert h.history["val_loss"][0] == pytest.approx(want, rel=2e-5)
