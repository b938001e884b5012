"""fastcnn.Sequential: building, summary, fit / evaluate / predict, custom loops (bitwise equal
to fit), determinism, NaN detection, Ctrl-C, datasets, devices."""

from __future__ import annotations

import signal
import warnings

import numpy as np
import pytest

import fastcnn as fc
from fastcnn import callbacks as C
from fastcnn import layers as L
from fastcnn import optimizers as O


def _seeds_cnn() -> fc.Sequential:
    return fc.Sequential([L.Conv2D(32, 3, activation="relu"), L.Conv2D(64, 3, activation="relu"),
                          L.MaxPool2D(2), L.Flatten(), L.Dense(128, activation="relu"),
                          L.Dense(10, activation="softmax")], input_shape=(1, 28, 28))


def _tiny_cnn(seed: int = 0, dropout: float = 0.0, classes: int = 3) -> fc.Sequential:
    layers = [L.Conv2D(4, 3, padding="same", activation="relu"), L.MaxPool2D(2), L.Flatten()]
    if dropout:
        layers.append(L.Dropout(dropout))
    layers.append(L.Dense(classes, activation="softmax"))
    return fc.Sequential(layers, input_shape=(1, 6, 6), seed=seed)


def _tiny_data(n: int = 40, classes: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 1, 6, 6)), rng.integers(0, classes, n)


def _separable_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """4 classes: a bright 3x3 patch in one quadrant of a noisy 8x8 image."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    x = rng.normal(0.0, 0.3, (n, 1, 8, 8)).astype(np.float32)
    for i, c in enumerate(y):
        r, s = divmod(int(c), 2)
        x[i, 0, 4 * r:4 * r + 3, 4 * s:4 * s + 3] += 1.5
    return x, y


# ----------------------------------------------------------------------------------------------
# structure and summary


def test_summary_counts_like_keras():
    model = _seeds_cnn()
    lines: list[str] = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "Layer (type)" in text and "Output Shape" in text and "Param #" in text
    assert "FLOPs" in text
    assert "conv2d (Conv2D)" in text and "(None, 32, 26, 26)" in text
    assert "dense_1 (Dense)" in text and "1,179,776" in text
    assert "Total params: 1,199,882" in text
    assert "Trainable params: 1,199,882" in text
    assert "Non-trainable params: 0" in text
    assert model.count_params() == 1_199_882
    assert f"{model.layers[0].flops:,}" in text  # 2 * 32 * 26 * 26 * 9 + bias + relu
    assert model.layers[0].flops == 2 * 32 * 26 * 26 * 9 + 2 * 32 * 26 * 26


def test_summary_non_trainable():
    model = _seeds_cnn()
    model.layers[0].trainable = False
    model.layers[-1].trainable = False
    lines: list[str] = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "Trainable params: 1,198,272" in text
    assert "Non-trainable params: 1,610" in text


def test_lazy_build_and_shape_errors():
    model = fc.Sequential([L.Flatten(), L.Dense(2)])
    with pytest.raises(ValueError, match="not built"):
        model.summary()
    y = model(np.ones((3, 2, 2, 2)))
    assert y.shape == (3, 2) and model.input_shape == (2, 2, 2)
    with pytest.raises(ValueError, match="expected inputs of shape"):
        model(np.ones((3, 2, 2, 3)))
    with pytest.raises(ValueError, match="duplicate layer name"):
        fc.Sequential([L.Dense(2, name="a"), L.Dense(2, name="a")])
    assert [lay.name for lay in fc.Sequential([L.Dense(1), L.Dense(1), L.ReLU()]).layers] == [
        "dense", "dense_1", "relu"]


def test_fit_requires_compile():
    model = _tiny_cnn()
    x, y = _tiny_data()
    with pytest.raises(RuntimeError, match="compile"):
        model.fit(x, y, verbose=0)


# ----------------------------------------------------------------------------------------------
# fit / evaluate / predict


def test_fit_evaluate_predict_api(capsys):
    model = _tiny_cnn()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy", "top_2"])
    x, y = _tiny_data(40)
    xv, yv = _tiny_data(10, seed=1)
    hist = model.fit(x, y, batch_size=8, epochs=3, validation_data=(xv, yv), verbose=0, seed=0)
    assert set(hist.history) == {"loss", "accuracy", "top_2", "val_loss", "val_accuracy",
                                 "val_top_2"}
    assert all(len(v) == 3 for v in hist.history.values())
    assert hist.epoch == [0, 1, 2] and model.history is hist
    assert capsys.readouterr().out == ""  # verbose=0 is silent
    # the last val_* values are evaluate() on the validation data
    loss, acc, _top2 = model.evaluate(xv, yv, batch_size=8)
    assert loss == pytest.approx(hist.history["val_loss"][-1], rel=1e-6)
    assert acc == pytest.approx(hist.history["val_accuracy"][-1])
    d = model.evaluate(xv, yv, return_dict=True)
    assert list(d) == ["loss", "accuracy", "top_2"]
    p = model.predict(x, batch_size=7)
    assert p.shape == (40, 3) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    model.compile("sgd", "sparse_categorical_crossentropy")
    assert isinstance(model.evaluate(x, y), float)


def test_verbose_progress_shows_loss_and_metrics(capsys):
    model = _tiny_cnn()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = _tiny_data(16)
    model.fit(x, y, batch_size=8, epochs=1, verbose=1)
    out = capsys.readouterr().out
    assert "Epoch 1/1" in out and "loss=" in out and "accuracy=" in out
    model.fit(x, y, batch_size=8, epochs=1, verbose=2, validation_split=0.25)
    out = capsys.readouterr().out
    assert "Epoch 1/1" in out and "val_loss:" in out


def test_validation_split_holds_out_the_last_samples():
    model = _tiny_cnn()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = _tiny_data(40)
    hist = model.fit(x, y, batch_size=8, epochs=2, validation_split=0.25, verbose=0, seed=1)
    assert hist.params["steps"] == 4  # 30 training samples
    assert model.evaluate(x[30:], y[30:], batch_size=8) == pytest.approx(
        [hist.history["val_loss"][-1], hist.history["val_accuracy"][-1]], rel=1e-6)
    with pytest.raises(ValueError, match="validation_split"):
        model.fit(x, y, validation_split=1.5, verbose=0)


def test_inputs_converted_to_float32(rng):
    model = _tiny_cnn()
    x8 = rng.integers(0, 255, (5, 1, 6, 6)).astype(np.uint8)
    np.testing.assert_array_equal(model.predict(x8), model.predict(x8.astype(np.float32)))
    assert model(x8.astype(np.float64)).dtype == np.float32


def test_trains_a_small_cnn_to_high_accuracy():
    x, y = _separable_images(512, seed=0)
    xt, yt = _separable_images(200, seed=1)
    model = fc.Sequential([L.Conv2D(8, 3, padding="same", activation="relu"),
                           L.MaxPool2D(2), L.Conv2D(8, 3, activation="relu"), L.Flatten(),
                           L.Dense(4, activation="softmax")], input_shape=(1, 8, 8), seed=0)
    model.compile(O.Adam(learning_rate=0.01), "sparse_categorical_crossentropy", ["accuracy"])
    hist = model.fit(x, y, batch_size=32, epochs=6, verbose=0, seed=0)
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    loss, acc = model.evaluate(xt, yt)
    assert acc >= 0.97, (loss, acc)


def test_binary_classification_with_sigmoid_output():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 3)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5]) > 0).astype(np.int64)
    model = fc.Sequential([L.Dense(1, activation="sigmoid")], input_shape=(3,), seed=0)
    model.compile(O.Adam(learning_rate=0.05), "binary_crossentropy", ["accuracy"])
    assert model.output_fused
    model.fit(x, y, batch_size=20, epochs=10, verbose=0, seed=0)
    _loss, acc = model.evaluate(x, y)
    assert acc > 0.95
    p = model.predict(x[:4])
    assert p.shape == (4, 1) and ((p > 0) & (p < 1)).all()


def test_one_hot_labels_and_categorical_crossentropy():
    model = _tiny_cnn()
    model.compile("adam", "categorical_crossentropy", ["accuracy"])
    x, y = _tiny_data(24)
    onehot = np.eye(3, dtype=np.float32)[y]
    h1 = model.fit(x, onehot, batch_size=8, epochs=1, verbose=0, seed=3)
    model2 = _tiny_cnn()
    model2.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    h2 = model2.fit(x, y, batch_size=8, epochs=1, verbose=0, seed=3)
    assert h1.history["loss"] == pytest.approx(h2.history["loss"], rel=1e-5)
    assert h1.history["accuracy"] == h2.history["accuracy"]


# ----------------------------------------------------------------------------------------------
# custom loops and determinism


def test_hand_written_loop_is_bitwise_equal_to_fit():
    x, y = _tiny_data(44)
    bs, epochs, seed = 8, 2, 123

    fitted = _tiny_cnn(seed=5, dropout=0.3)
    fitted.compile(O.Adam(learning_rate=0.01), "sparse_categorical_crossentropy")
    fitted.fit(x, y, batch_size=bs, epochs=epochs, shuffle=True, seed=seed, verbose=0)

    model = _tiny_cnn(seed=5, dropout=0.3)
    opt = O.Adam(learning_rate=0.01)
    rng = np.random.default_rng(seed)  # fit: one generator, one permutation per epoch
    for _ in range(epochs):
        perm = rng.permutation(len(x))
        for i in range(0, len(x), bs):
            idx = perm[i:i + bs]
            logits = model(np.asarray(x[idx], dtype=np.float32), training=True, logits=True)
            _loss, dlogits = fc.ops.cross_entropy(logits, y[idx])
            model.backward(dlogits)
            opt.step(model)
            opt.zero_grad(model)
    for a, b in zip(fitted.get_weights(), model.get_weights(), strict=True):
        assert a.tobytes() == b.tobytes()
    assert opt.iterations == fitted.optimizer.iterations == epochs * 6


def test_probability_gradients_match_fused_logit_gradients():
    x, y = _tiny_data(6)
    a, b = _tiny_cnn(seed=2), _tiny_cnn(seed=2)
    probs = a(x, training=True)
    onehot = np.eye(3)[y]
    dx = a.backward(-onehot / probs / len(y))  # d(mean CE)/d(probs), through the softmax
    assert dx.shape == (6, 1, 6, 6) and dx.dtype == np.float32
    logits = b(x, training=True, logits=True)
    _, dlogits = fc.ops.cross_entropy(logits, y)
    b.backward(dlogits)
    for (_, ga), (_, gb) in zip(a.parameters(), b.parameters(), strict=True):
        np.testing.assert_allclose(ga, gb, rtol=1e-4, atol=1e-6)


def test_fit_is_deterministic_for_a_seed():
    x, y = _tiny_data(32)

    def run() -> list[np.ndarray]:
        m = _tiny_cnn(seed=9, dropout=0.2)
        m.compile(O.SGD(learning_rate=0.1, momentum=0.9), "sparse_categorical_crossentropy")
        m.fit(x, y, batch_size=8, epochs=2, seed=4, verbose=0)
        return m.get_weights()

    for a, b in zip(run(), run(), strict=True):
        assert a.tobytes() == b.tobytes()


# ----------------------------------------------------------------------------------------------
# NaN / inf and Ctrl-C


@pytest.mark.parametrize(("bad_sample", "batch"), [(0, 1), (9, 3)])
def test_nan_loss_names_epoch_and_batch_and_keeps_weights(bad_sample, batch):
    x, y = _tiny_data(16)
    x[bad_sample, 0, 0, 0] = np.nan
    model = _tiny_cnn()
    model.compile("sgd", "sparse_categorical_crossentropy")
    ref = _tiny_cnn()
    ref.compile("sgd", "sparse_categorical_crossentropy")
    if batch > 1:  # the weights are those after the good batches before it
        ref.fit(x[:4 * (batch - 1)], y[:4 * (batch - 1)], batch_size=4, shuffle=False, verbose=0)
    with pytest.raises(FloatingPointError, match=f"epoch 1, batch {batch}") as info:
        model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    assert isinstance(info.value, ValueError)
    for a, b in zip(model.get_weights(), ref.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_diverging_learning_rate_raises():
    x, y = _tiny_data(16)
    model = _tiny_cnn()
    model.compile(O.SGD(learning_rate=1e30), "sparse_categorical_crossentropy")
    with pytest.raises(FloatingPointError, match=r"epoch \d+, batch \d+"):
        model.fit(x, y, batch_size=4, epochs=5, verbose=0)


class _SigintAt(C.Callback):
    def __init__(self, iteration: int) -> None:
        super().__init__()
        self.iteration = iteration

    def on_train_batch_end(self, batch, logs=None):
        if self.model.optimizer.iterations == self.iteration:
            signal.raise_signal(signal.SIGINT)


def test_ctrl_c_stops_after_the_batch_and_returns_history(capsys):
    x, y = _tiny_data(32)
    model = _tiny_cnn()
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    hist = model.fit(x, y, batch_size=8, epochs=3, verbose=1, callbacks=[_SigintAt(6)])
    assert hist.interrupted
    assert hist.epoch == [0] and len(hist.history["loss"]) == 1
    assert model.optimizer.iterations == 6
    assert "interrupted" in capsys.readouterr().out.lower()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


class _SigintInsideStep(O.SGD):
    """Raises SIGINT between the updates of two parameters."""

    def _update(self, p, g, st, lr, t):
        super()._update(p, g, st, lr, t)
        if self.iterations == 1:
            signal.raise_signal(signal.SIGINT)


def test_ctrl_c_inside_the_update_completes_the_update():
    x, y = _tiny_data(16)
    model = _tiny_cnn()
    model.compile(_SigintInsideStep(learning_rate=0.1), "sparse_categorical_crossentropy")
    ref = _tiny_cnn()
    ref.compile(O.SGD(learning_rate=0.1), "sparse_categorical_crossentropy")
    ref.fit(x[:8], y[:8], batch_size=8, epochs=1, shuffle=False, verbose=0)
    hist = model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    assert hist.interrupted and model.optimizer.iterations == 2
    ref.fit(x[8:], y[8:], batch_size=8, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(model.get_weights(), ref.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


class _Batches:
    """The dataset protocol: iterable of (x_batch, y_batch) with __len__."""

    def __init__(self, x, y, bs, interrupt_at=None, onehot=False):
        self.x, self.y, self.bs, self.interrupt_at, self.onehot = x, y, bs, interrupt_at, onehot
        self.class_indices = {"a": 0, "b": 1, "c": 2}

    def __len__(self):
        return -(-len(self.x) // self.bs)

    def __iter__(self):
        for b, i in enumerate(range(0, len(self.x), self.bs)):
            if b == self.interrupt_at:
                raise KeyboardInterrupt
            yb = self.y[i:i + self.bs]
            yield self.x[i:i + self.bs], (np.eye(3, dtype=np.float32)[yb] if self.onehot else yb)


def test_keyboard_interrupt_from_the_data_loader(capsys):
    x, y = _tiny_data(32)
    model = _tiny_cnn()
    model.compile("adam", "sparse_categorical_crossentropy")
    hist = model.fit(_Batches(x, y, 8, interrupt_at=2), epochs=2, verbose=0)
    assert hist.interrupted and hist.history == {} and model.optimizer.iterations == 2
    assert "interrupted" in capsys.readouterr().out.lower()


# ----------------------------------------------------------------------------------------------
# datasets


@pytest.mark.parametrize("onehot", [False, True])
def test_fit_accepts_dataset_objects(onehot):
    x, y = _tiny_data(30)
    model = _tiny_cnn()
    model.compile("adam", "categorical_crossentropy", ["accuracy"])
    hist = model.fit(_Batches(x, y, 8, onehot=onehot), epochs=2,
                     validation_data=_Batches(x[:10], y[:10], 4, onehot=onehot), verbose=0)
    assert len(hist.history["val_accuracy"]) == 2 and hist.params["steps"] == 4
    assert model.evaluate(_Batches(x, y, 8, onehot=onehot), return_dict=True)["loss"] > 0
    assert model.predict(_Batches(x, y, 8)).shape == (30, 3)
    with pytest.raises(ValueError, match="y must be None"):
        model.fit(_Batches(x, y, 8), y, verbose=0)


def test_fit_with_fastcnn_array_dataset():
    data = pytest.importorskip("fastcnn.data")
    x, y = _tiny_data(30)
    ds = data.ArrayDataset(x, y, batch_size=8, shuffle=True, seed=0)
    model = _tiny_cnn()
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    hist = model.fit(ds, epochs=2, validation_data=data.ArrayDataset(x, y, batch_size=16,
                                                                      shuffle=False), verbose=0)
    assert len(hist.history["loss"]) == 2 and "val_accuracy" in hist.history


# ----------------------------------------------------------------------------------------------
# devices


def test_to_cpu_and_cuda_fallback(monkeypatch):
    monkeypatch.setattr(fc._device, "cuda_built", lambda: False)  # as on a machine without CUDA
    model = _tiny_cnn()
    assert model.to("cpu") is model and model.device == "cpu"
    with pytest.warns(RuntimeWarning, match="stays on the CPU") as rec:
        assert model.to("cuda") is model
    assert len(rec) == 1 and model.device == "cpu"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert model.to("auto") is model  # "auto" picks the CPU silently
    with pytest.raises(ValueError, match="device"):
        model.to("tpu")


def test_dataset_must_yield_pairs():
    x, _ = _tiny_data(8)
    model = _tiny_cnn()
    model.compile("adam", "sparse_categorical_crossentropy")

    class XOnly:
        def __len__(self):
            return 1

        def __iter__(self):
            yield x

    with pytest.raises(ValueError, match=r"\(x_batch, y_batch\) pairs"):
        model.fit(XOnly(), verbose=0)
    assert model.predict(XOnly()).shape == (8, 3)  # predict takes x-only batches
