"""fit / evaluate / predict options a Keras user reaches for: generators and Sequences,
steps_per_epoch / validation_steps / validation_freq, sample_weight / class_weight, loss and
metric functions; each checked against a hand computation (train_step loops, per-sample losses,
duplicated samples)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import fastcnn as fc
from fastcnn import layers as L
from fastcnn import losses as LS
from fastcnn import metrics as M
from fastcnn import optimizers as O
from fastcnn.training import train_step


def _model(seed: int = 0, out: int = 3, act: str = "softmax") -> fc.Sequential:
    return fc.Sequential([L.Dense(8, activation="relu"), L.Dense(out, activation=act)],
                         input_shape=(5,), seed=seed)


def _compiled(loss: object = "sparse_categorical_crossentropy", metrics: object = None,
              **kw: object) -> fc.Sequential:
    m = _model(**kw)  # type: ignore[arg-type]
    m.compile(O.SGD(learning_rate=0.1, momentum=0.9), loss, metrics)
    return m


def _data(n: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 5)).astype(np.float32), rng.integers(0, 3, n)


def _same(a: fc.Sequential, b: fc.Sequential) -> bool:
    return all(p.tobytes() == q.tobytes()
               for p, q in zip(a.get_weights(), b.get_weights(), strict=True))


def _batches(x, y, bs, w=None):
    for i in range(0, len(x), bs):
        s = slice(i, i + bs)
        yield (x[s], y[s]) if w is None else (x[s], y[s], w[s])


class _Seq:
    """A Keras Sequence-style object: __getitem__ + __len__ + on_epoch_end."""

    def __init__(self, x, y, bs):
        self.x, self.y, self.bs, self.ends = x, y, bs, 0

    def __len__(self):
        return -(-len(self.x) // self.bs)

    def __getitem__(self, i):
        return self.x[i * self.bs:(i + 1) * self.bs], self.y[i * self.bs:(i + 1) * self.bs]

    def on_epoch_end(self):
        self.ends += 1


# --------------------------------------------------------------------------------------------
# losses: sum(w * l) / N and w-scaled gradient rows


_CASES = [
    (LS.SparseCategoricalCrossentropy(), True, "ids", 3),
    (LS.SparseCategoricalCrossentropy(), False, "ids", 3),
    (LS.CategoricalCrossentropy(), True, "onehot", 3),
    (LS.CategoricalCrossentropy(), False, "onehot", 3),
    (LS.BinaryCrossentropy(), True, "binary", 2),
    (LS.BinaryCrossentropy(), False, "binary", 2),
    (LS.MeanSquaredError(), False, "real", 2),
]


@pytest.mark.parametrize(("loss", "logits", "labels", "c"), _CASES)
def test_weighted_loss_is_the_weighted_sum_of_per_sample_losses(loss, logits, labels, c):
    rng = np.random.default_rng(1)
    n = 7
    z = rng.standard_normal((n, c)).astype(np.float32)
    pred = z if logits else (np.exp(z) / np.exp(z).sum(1, keepdims=True)).astype(np.float32)
    y = {"ids": rng.integers(0, c, n), "onehot": np.eye(c, dtype=np.float32)[rng.integers(0, c, n)],
         "binary": rng.integers(0, 2, (n, c)).astype(np.float32),
         "real": rng.standard_normal((n, c)).astype(np.float32)}[labels]
    w = rng.uniform(0, 3, n).astype(np.float32)
    value, grad = loss.value_and_grad(pred, y, logits=logits, sample_weight=w)
    singles = [loss.value_and_grad(pred[i:i + 1], y[i:i + 1], logits=logits) for i in range(n)]
    # each sample's own loss (a batch of one), weighted, over N: Keras' sum_over_batch_size
    assert value == pytest.approx(sum(w[i] * singles[i][0] for i in range(n)) / n, rel=1e-6)
    np.testing.assert_allclose(grad, np.stack([w[i] * singles[i][1][0] / n for i in range(n)]),
                               rtol=1e-5, atol=1e-7)
    v1, g1 = loss.value_and_grad(pred, y, logits=logits)
    vo, go = loss.value_and_grad(pred, y, logits=logits, sample_weight=np.ones(n))
    assert go.tobytes() == g1.tobytes() and go.dtype == np.float32
    assert vo == pytest.approx(v1, rel=1e-6)  # the fused kernel sums in float32
    assert loss(y, pred, sample_weight=w) == loss.value_and_grad(pred, y, sample_weight=w)[0]


def test_bad_sample_weights_are_refused():
    pred = np.full((4, 3), 1 / 3, np.float32)
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        LS.CategoricalCrossentropy().value_and_grad(pred, [0, 1, 2, 0], sample_weight=[1, 2])
    with pytest.raises(ValueError, match="finite and >= 0"):
        LS.MeanSquaredError().value_and_grad(pred, pred, sample_weight=[1, -1, 1, 1])


# --------------------------------------------------------------------------------------------
# sample_weight / class_weight in fit


def test_sample_weight_of_ones_is_bitwise_the_unweighted_training():
    x, y = _data()
    a, b = _compiled(metrics=["accuracy"]), _compiled(metrics=["accuracy"])
    ha = a.fit(x, y, batch_size=8, epochs=2, seed=3, verbose=0)
    hb = b.fit(x, y, batch_size=8, epochs=2, seed=3, verbose=0, sample_weight=np.ones(len(x)))
    assert _same(a, b)
    np.testing.assert_allclose(ha.history["loss"], hb.history["loss"], rtol=1e-6)


def test_sample_weight_matches_a_hand_loop_of_weighted_train_steps():
    x, y = _data()
    w = np.random.default_rng(2).uniform(0, 2, len(x)).astype(np.float32)
    fitted, hand = _compiled(), _compiled()
    fitted.fit(x, y, batch_size=8, epochs=2, seed=5, verbose=0, sample_weight=w)
    rng = np.random.default_rng(5)
    for _ in range(2):
        perm = rng.permutation(len(x))
        for i in range(0, len(x), 8):
            idx = perm[i:i + 8]
            train_step(hand, x[idx], y[idx], sample_weight=w[idx])
    assert _same(fitted, hand)
    # and the weighted step is the unweighted gradient with rows scaled by w (one SGD step)
    m1, m2 = _compiled(), _compiled()
    train_step(m1, x[:8], y[:8], sample_weight=w[:8])
    out = m2(x[:8], training=True, logits=True)
    _, dout = m2.loss.value_and_grad(out, y[:8], logits=True)
    m2.backward(dout * w[:8, None], compute_dx=False)
    m2.optimizer.step(m2)
    assert _same(m1, m2)
    assert not _same(m1, _compiled())


@pytest.mark.parametrize("onehot", [False, True])
def test_class_weight_equals_the_sample_weight_built_from_it(onehot):
    x, y = _data()
    cw = {0: 0.5, 1: 2.0}  # class 2 missing: weight 1.0 (Keras)
    yl = np.eye(3, dtype=np.float32)[y] if onehot else y
    loss = "categorical_crossentropy" if onehot else "sparse_categorical_crossentropy"
    a, b = _compiled(loss), _compiled(loss)
    a.fit(x, yl, batch_size=8, epochs=2, seed=1, verbose=0, class_weight=cw)
    w = np.array([cw.get(int(c), 1.0) for c in y], np.float32)
    b.fit(x, yl, batch_size=8, epochs=2, seed=1, verbose=0, sample_weight=w)
    assert _same(a, b)
    c = _compiled(loss)
    c.fit(x, yl, batch_size=8, epochs=2, seed=1, verbose=0)
    assert not _same(a, c)


def test_weights_yielded_by_a_generator_equal_the_arrays():
    x, y = _data()
    w = np.random.default_rng(3).uniform(0, 2, len(x))
    a, b = _compiled(), _compiled()
    a.fit(x, y, batch_size=8, shuffle=False, verbose=0, sample_weight=w)
    b.fit(_batches(x, y, 8, w), verbose=0)
    assert _same(a, b)


def test_weight_argument_errors():
    x, y = _data()
    m = _compiled()
    with pytest.raises(ValueError, match="not both"):
        m.fit(x, y, verbose=0, class_weight={0: 1.0}, sample_weight=np.ones(len(x)))
    with pytest.raises(ValueError, match=r"sample_weight must have shape \(40,\)"):
        m.fit(x, y, verbose=0, sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="yield \\(x, y, sample_weight\\)"):
        m.fit(_batches(x, y, 8), verbose=0, sample_weight=np.ones(len(x)))
    with pytest.raises(ValueError, match="class_weight keys"):
        m.fit(x, y, verbose=0, class_weight={"cat": 1.0})
    with pytest.raises(ValueError, match="class_weight and sample weights"):
        m.fit(_batches(x, y, 8, np.ones(len(x))), verbose=0, class_weight={0: 2.0})


def test_validation_and_evaluate_with_sample_weights():
    x, y = _data()
    xv, yv = _data(12, seed=9)
    wv = np.random.default_rng(4).uniform(0, 2, 12)
    m = _compiled()
    h = m.fit(x, y, epochs=1, verbose=0, validation_data=(xv, yv, wv))
    ev = m.evaluate(xv, yv, sample_weight=wv, batch_size=32)
    assert h.history["val_loss"][0] == pytest.approx(ev, rel=1e-12)
    # by hand: each sample's loss (a batch of one), weighted, over N
    per = [m.evaluate(xv[i:i + 1], yv[i:i + 1]) for i in range(12)]
    assert ev == pytest.approx(float(np.dot(wv, per)) / 12, rel=1e-5)
    assert ev != pytest.approx(m.evaluate(xv, yv), rel=1e-3)
    # validation_split holds out the weights of the last samples too (Keras)
    w = np.random.default_rng(5).uniform(0, 2, len(x))
    m = _compiled()
    h = m.fit(x, y, epochs=1, verbose=0, sample_weight=w, validation_split=0.25)
    assert h.history["val_loss"][0] == pytest.approx(
        m.evaluate(x[30:], y[30:], sample_weight=w[30:]), rel=1e-12)


# --------------------------------------------------------------------------------------------
# generators, Sequences, steps


def test_generator_and_sequence_train_as_the_arrays_they_yield():
    x, y = _data(44)
    a, g, s = _compiled(), _compiled(), _compiled()
    a.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0)
    seq = _Seq(x, y, 8)
    hs = s.fit(seq, epochs=3, verbose=0)
    assert _same(a, s) and seq.ends == 3 and len(hs.epoch) == 3
    a1 = _compiled()
    a1.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    hg = g.fit(_batches(x, y, 8), epochs=1, verbose=0)
    assert _same(a1, g) and hg.params["steps"] is None


def test_a_finite_generator_without_steps_trains_one_epoch_then_warns():
    x, y = _data()
    m = _compiled()
    with pytest.warns(UserWarning, match="ran out of data"):
        h = m.fit(_batches(x, y, 8), epochs=3, verbose=0)
    assert h.epoch == [0] and m.optimizer.iterations == 5


def test_steps_per_epoch_with_an_infinite_generator():
    x, y = _data()

    def forever():
        while True:
            yield from _batches(x, y, 8)

    m, hand = _compiled(), _compiled()
    h = m.fit(forever(), epochs=3, steps_per_epoch=4, verbose=0)
    assert h.epoch == [0, 1, 2] and m.optimizer.iterations == 12 and h.params["steps"] == 4
    it = forever()
    for _ in range(12):  # the pass continues across epochs
        train_step(hand, *next(it))
    assert _same(m, hand)


def test_a_generator_that_runs_out_before_steps_stops_training():
    x, y = _data()
    m = _compiled()
    with pytest.warns(UserWarning, match="ran out of data"):
        h = m.fit(_batches(x, y, 8), epochs=3, steps_per_epoch=3, verbose=0)
    assert h.epoch == [0, 1] and m.optimizer.iterations == 5  # 3 + 2, then stop


def test_steps_per_epoch_with_arrays_continues_the_pass_across_epochs():
    x, y = _data()  # 40 samples, 5 batches of 8
    m, hand = _compiled(), _compiled()
    with pytest.warns(UserWarning, match="pass over the data ended"):
        h = m.fit(x, y, batch_size=8, epochs=4, steps_per_epoch=2, shuffle=False, verbose=0)
    assert h.epoch == [0, 1, 2, 3] and m.optimizer.iterations == 7  # 2, 2, 1 (end), 2
    for b in [0, 1, 2, 3, 4, 0, 1]:
        train_step(hand, x[8 * b:8 * b + 8], y[8 * b:8 * b + 8])
    assert _same(m, hand)
    m2 = _compiled()
    with pytest.warns(UserWarning, match="pass over the data ended"):  # 5 per pass
        m2.fit(x, y, batch_size=8, epochs=2, steps_per_epoch=10, verbose=0)
    assert m2.optimizer.iterations == 10


def test_validation_freq_and_validation_steps():
    x, y = _data()
    xv, yv = _data(16, seed=7)
    m = _compiled()
    h = m.fit(x, y, epochs=5, verbose=0, validation_data=(xv, yv), validation_freq=2)
    assert len(h.history["loss"]) == 5 and len(h.history["val_loss"]) == 2
    m = _compiled()
    seen = []

    class Rec(fc.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append((epoch + 1, "val_loss" in logs))

    m.fit(x, y, epochs=4, verbose=0, validation_data=(xv, yv), validation_freq=[1, 3],
          callbacks=[Rec()])
    assert seen == [(1, True), (2, False), (3, True), (4, False)]
    with pytest.raises(ValueError, match="validation_freq"):
        m.fit(x, y, verbose=0, validation_data=(xv, yv), validation_freq=0)

    def val_forever():
        while True:
            yield from _batches(xv, yv, 4)

    with pytest.raises(ValueError, match="validation_steps"):
        _compiled().fit(x, y, epochs=2, verbose=0, validation_data=_batches(xv, yv, 4))
    h = _compiled().fit(x, y, epochs=1, verbose=0, validation_data=_batches(xv, yv, 4))
    assert len(h.history["val_loss"]) == 1  # one validation: the generator is read once
    m = _compiled()
    h = m.fit(x, y, epochs=2, verbose=0, validation_data=val_forever(), validation_steps=2)
    # the first validation saw the first 8 samples, the second the next 8 (the pass continues)
    assert len(h.history["val_loss"]) == 2
    assert h.history["val_loss"][1] == pytest.approx(m.evaluate(xv[8:], yv[8:]), rel=1e-6)


def test_source_kinds():
    from fastcnn._batches import is_dataset, source_kind

    x, y = _data(8)

    class KerasSeq(_Seq):  # a keras.utils.Sequence has __iter__ too: still indexed
        def __iter__(self):
            raise AssertionError("iterated")

    assert source_kind(KerasSeq(x, y, 4)) == "sequence"
    assert source_kind(_Seq(x, y, 4)) == "sequence"
    assert source_kind(_batches(x, y, 4)) == "iterable"
    assert source_kind(fc.data.ArrayDataset(x.reshape(8, 5, 1, 1), y)) == "dataset"
    assert source_kind([[1.0, 2.0]]) == "arrays" and not is_dataset(x) and not is_dataset(5)
    with pytest.raises(ValueError, match="a mapping"):
        source_kind({"x": x})
    m = _compiled()
    seq = KerasSeq(x, y, 4)
    m.fit(seq, epochs=2, verbose=0)
    assert seq.ends == 2


def test_evaluate_and_predict_on_generators_and_sequences():
    x, y = _data(20)
    m = _compiled(metrics=["accuracy"])
    m.fit(x, y, verbose=0)
    ref = m.evaluate(x, y, batch_size=4)
    assert m.evaluate(_batches(x, y, 4)) == pytest.approx(ref, rel=1e-12)
    assert m.evaluate(_Seq(x, y, 4)) == pytest.approx(ref, rel=1e-12)
    p = m.predict(x)
    np.testing.assert_array_equal(m.predict(_Seq(x, y, 6)), p)
    np.testing.assert_array_equal(m.predict((xb for xb, _ in _batches(x, y, 6))), p)

    def forever():
        while True:
            yield from _batches(x, y, 4)

    np.testing.assert_array_equal(m.predict(forever(), steps=2), p[:8])
    assert m.evaluate(forever(), steps=5) == pytest.approx(ref, rel=1e-12)
    with pytest.raises(ValueError, match="steps must be None or a positive int"):
        m.predict(forever(), steps=0)


# --------------------------------------------------------------------------------------------
# loss and metric functions


def _mse_fn(y_true, y_pred):
    d = y_pred - y_true.reshape(y_pred.shape)
    k = d[0].size
    return (d ** 2).reshape(len(d), -1).mean(axis=1), 2.0 * d / k


def test_a_loss_function_returning_losses_and_grads_trains_like_the_builtin():
    x, _ = _data()
    t = np.random.default_rng(0).standard_normal((len(x), 2)).astype(np.float32)
    a = _compiled("mse", out=2, act=None)
    b = _compiled(_mse_fn, out=2, act=None)
    assert isinstance(b.loss, LS.LossFunction) and b.loss.name == "_mse_fn"
    w = np.random.default_rng(1).uniform(0, 2, len(x))
    ha = a.fit(x, t, batch_size=8, epochs=2, seed=0, verbose=0, sample_weight=w)
    hb = b.fit(x, t, batch_size=8, epochs=2, seed=0, verbose=0, sample_weight=w)
    for p, q in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_allclose(p, q, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(ha.history["loss"], hb.history["loss"], rtol=1e-5)


def test_a_loss_function_returning_only_values_is_a_clear_type_error():
    x, y = _data()

    def keras_style(y_true, y_pred):
        return ((y_pred - y_true) ** 2).mean(axis=1)

    m = _compiled(keras_style, out=1, act=None)
    with pytest.raises(TypeError, match=r"must return \(losses, grads\).*subclass"):
        m.fit(x, y.astype(np.float32), verbose=0)
    with pytest.raises(TypeError, match="instance"):
        LS.get(LS.MeanSquaredError)


def test_a_custom_loss_without_sample_weight_trains_unweighted_and_refuses_weights():
    class Half(LS.Loss):
        def value_and_grad(self, y_pred, y_true, logits=False):
            v, g = LS.MeanSquaredError().value_and_grad(y_pred, y_true)
            return v / 2, g / 2

    x, _ = _data()
    t = np.zeros((len(x), 1), np.float32)
    m = _compiled(Half(), out=1, act=None)
    m.fit(x, t, verbose=0)
    with pytest.raises(TypeError, match="no sample_weight argument"):
        m.fit(x, t, verbose=0, sample_weight=np.ones(len(x)))


def test_a_metric_function_is_a_sample_weighted_mean_named_after_it():
    x, y = _data(23)

    def hits(y_true, y_pred):
        return (y_pred.argmax(axis=1) == y_true).astype(np.float64)

    m = _compiled(metrics=[hits, "accuracy"])
    h = m.fit(x, y, batch_size=5, verbose=0)  # uneven last batch: weighted by samples
    assert list(h.history) == ["loss", "hits", "accuracy"]
    assert h.history["hits"] == h.history["accuracy"]
    logs = m.evaluate(x, y, return_dict=True)
    hand = float(np.mean(m.predict(x).argmax(axis=1) == y))
    assert logs["hits"] == pytest.approx(hand) == pytest.approx(logs["accuracy"])
    mm = M.get(hits)
    mm.update(y[:4], np.eye(3)[y[:4]], sample_weight=[1, 0, 0, 0])
    assert mm.result() == 1.0
    with pytest.raises(TypeError, match="instance"):
        M.get(M.Accuracy)


# --------------------------------------------------------------------------------------------
# metrics with sample weights: an integer weight is the sample repeated


@pytest.mark.parametrize("make", [
    lambda: M.Accuracy(), lambda: M.TopKAccuracy(2), lambda: M.Precision(),
    lambda: M.Recall(), lambda: M.AUC(num_thresholds=50), lambda: M.AUC(curve="PR")])
def test_integer_sample_weights_equal_repeated_samples(make):
    rng = np.random.default_rng(6)
    n = 30
    p = rng.uniform(0, 1, (n, 3)).astype(np.float32)
    y = rng.integers(0, 3, n)
    w = rng.integers(0, 4, n)
    weighted, repeated, plain = make(), make(), make()
    weighted.update(y[:17], p[:17], sample_weight=w[:17])
    weighted.update(y[17:], p[17:], sample_weight=w[17:])
    repeated.update(np.repeat(y, w), np.repeat(p, w, axis=0))
    plain.update(y, p)
    assert weighted.result() == pytest.approx(repeated.result(), rel=1e-9, abs=1e-12)
    ones = make()
    ones.update(y, p, sample_weight=np.ones(n))
    assert ones.result() == pytest.approx(plain.result(), rel=1e-12)


def test_weighted_metrics_of_a_model_are_weighted_and_its_metrics_are_not():
    x, y = _data()
    w = (y == 0).astype(np.float32)  # only class 0 counts
    m = _compiled(metrics=["accuracy"])
    m.weighted_metrics = M.get_list(["sparse_categorical_accuracy"])
    m.fit(x, y, epochs=3, verbose=0)
    logs = m.evaluate(x, y, sample_weight=w, return_dict=True)
    pred = m.predict(x).argmax(axis=1)
    assert logs["accuracy"] == pytest.approx(float(np.mean(pred == y)))
    assert logs["sparse_categorical_accuracy"] == pytest.approx(
        float(np.mean(pred[y == 0] == 0)))


def test_no_warnings_on_the_plain_paths():
    x, y = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _compiled().fit(x, y, epochs=2, verbose=0, validation_split=0.25)
        _compiled().fit(_Seq(x, y, 8), epochs=2, steps_per_epoch=5, verbose=0)


def test_compile_weighted_metrics_are_weighted_named_and_saved(tmp_path) -> None:
    """compile(weighted_metrics=...) (Keras): weighted by sample_weight, plain metrics not; a
    name in both lists is reported as weighted_<name>; both lists survive save / load_model."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((40, 6)).astype(np.float32)
    y = rng.integers(0, 3, 40)
    w = rng.integers(0, 3, 40).astype(np.float32)
    model = fc.Sequential([fc.layers.Dense(3, activation="softmax")], input_shape=(6,), seed=1)
    model.compile(fc.optimizers.SGD(learning_rate=0.0), "sparse_categorical_crossentropy",
                  metrics=["accuracy"], weighted_metrics=["accuracy"])
    assert [m.name for m in model.weighted_metrics] == ["weighted_accuracy"]
    hist = model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False, sample_weight=w)
    hit = (model.predict(x).argmax(1) == y).astype(np.float64)
    assert hist.history["accuracy"][0] == pytest.approx(hit.mean())
    assert hist.history["weighted_accuracy"][0] == pytest.approx((w * hit).sum() / w.sum())
    model.save(tmp_path / "m.npz")
    back = fc.load_model(tmp_path / "m.npz")
    assert [m.name for m in back.metrics] == ["accuracy"]
    assert [m.name for m in back.weighted_metrics] == ["weighted_accuracy"]
    with pytest.raises(ValueError, match="unique"):
        model.compile("sgd", "mse", metrics=["mae"], weighted_metrics=["mae", "mae"])
