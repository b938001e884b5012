"""Callbacks: EarlyStopping, ModelCheckpoint, LearningRateScheduler, hooks order."""

from __future__ import annotations

import numpy as np
import pytest

import fastcnn as fc
from fastcnn import callbacks as C
from fastcnn import layers as L
from fastcnn import optimizers as O


def _model() -> fc.Sequential:
    m = fc.Sequential([L.Dense(3, activation="softmax")], input_shape=(4,), seed=0)
    m.compile(O.SGD(learning_rate=0.1), "sparse_categorical_crossentropy", ["accuracy"])
    return m


def _data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((16, 4)).astype(np.float32), rng.integers(0, 3, 16)


class _Scripted(C.Callback):
    """Writes a scripted 'score' into the epoch logs and records the weights of each epoch."""

    def __init__(self, scores):
        super().__init__()
        self.scores = scores
        self.weights = []

    def on_epoch_end(self, epoch, logs=None):
        logs["score"] = self.scores[epoch]
        self.weights.append(self.model.get_weights())


def test_early_stopping_and_restore_best_weights():
    model = _model()
    script = _Scripted([1.0, 0.5, 0.6, 0.55, 0.7, 0.1])
    es = C.EarlyStopping(monitor="score", patience=2, restore_best_weights=True)
    x, y = _data()
    hist = model.fit(x, y, epochs=6, batch_size=8, callbacks=[script, es], verbose=0)
    assert hist.epoch == [0, 1, 2, 3] and es.stopped_epoch == 3
    assert es.best == 0.5 and es.best_epoch == 1
    assert hist.history["score"] == [1.0, 0.5, 0.6, 0.55]
    for a, b in zip(model.get_weights(), script.weights[1], strict=True):
        np.testing.assert_array_equal(a, b)


def test_early_stopping_max_mode_min_delta_and_missing_monitor():
    model = _model()
    script = _Scripted([0.5, 0.505, 0.509, 0.6])
    es = C.EarlyStopping(monitor="val_accuracy_like", patience=1, min_delta=0.01, mode="max")
    x, y = _data()
    # the monitor is missing from the logs: a clear error
    with pytest.raises(ValueError, match="val_accuracy_like"):
        model.fit(x, y, epochs=2, callbacks=[es], verbose=0)
    es = C.EarlyStopping(monitor="score", patience=1, min_delta=0.01)
    assert es.mode == "min"
    assert C.EarlyStopping(monitor="val_accuracy").mode == "max"
    es = C.EarlyStopping(monitor="score", patience=1, min_delta=0.01, mode="max")
    hist = model.fit(x, y, epochs=4, callbacks=[script, es], verbose=0)
    assert hist.epoch == [0, 1]  # +0.005 is no improvement with min_delta 0.01


def test_model_checkpoint_best_only(tmp_path):
    model = _model()
    script = _Scripted([0.9, 0.5, 0.7, 0.3])
    ckpt = C.ModelCheckpoint(str(tmp_path / "ck-{epoch:02d}-{score:.1f}.npz"), monitor="score",
                             save_best_only=True)
    x, y = _data()
    model.fit(x, y, epochs=4, callbacks=[script, ckpt], verbose=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ck-01-0.9.npz", "ck-02-0.5.npz", "ck-04-0.3.npz"]
    restored = fc.load_model(tmp_path / "ck-04-0.3.npz")
    for a, b in zip(restored.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    wonly = C.ModelCheckpoint(str(tmp_path / "w.npz"), save_weights_only=True)
    model.fit(x, y, epochs=1, callbacks=[wonly], verbose=0)
    _model().load_weights(tmp_path / "w.npz")


def test_learning_rate_scheduler():
    model = _model()
    seen = []
    lrs = C.LearningRateScheduler(lambda epoch, lr: lr * 0.5 if epoch else lr)
    spy = C.LambdaCallback(on_epoch_begin=lambda e, logs: seen.append(
        model.optimizer.learning_rate))
    x, y = _data()
    hist = model.fit(x, y, epochs=3, callbacks=[lrs, spy], verbose=0)
    assert seen == pytest.approx([0.1, 0.05, 0.025])
    assert hist.history["learning_rate"] == pytest.approx([0.1, 0.05, 0.025])
    bad = C.LearningRateScheduler(lambda epoch, lr: "fast")
    with pytest.raises(ValueError, match="number"):
        model.fit(x, y, epochs=1, callbacks=[bad], verbose=0)


def test_hook_order_and_stop_training():
    events = []

    class Rec(C.Callback):
        def on_train_begin(self, logs=None):
            events.append("train_begin")

        def on_epoch_begin(self, epoch, logs=None):
            events.append(f"epoch_begin {epoch}")

        def on_train_batch_end(self, batch, logs=None):
            events.append(f"batch_end {batch} {sorted(logs)}")
            if batch == 1:
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            events.append(f"epoch_end {epoch}")

        def on_train_end(self, logs=None):
            events.append("train_end")

    model = _model()
    x, y = _data()
    model.fit(x, y, epochs=3, batch_size=4, callbacks=[Rec()], verbose=0)
    assert events == ["train_begin", "epoch_begin 0", "batch_end 0 ['accuracy', 'loss']",
                      "batch_end 1 ['accuracy', 'loss']", "epoch_end 0", "train_end"]
    with pytest.raises(TypeError, match="Callback"):
        model.fit(x, y, callbacks=[object()], verbose=0)
