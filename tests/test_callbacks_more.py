"""CSVLogger, ReduceLROnPlateau and TerminateOnNaN (Keras' names, arguments and rules)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

import fastcnn as fc
from fastcnn import callbacks as C
from fastcnn import layers as L
from fastcnn import optimizers as O


def _model(lr: float | O.LearningRateSchedule = 0.1) -> fc.Sequential:
    m = fc.Sequential([L.Dense(3, activation="softmax")], input_shape=(4,), seed=0)
    m.compile(O.SGD(learning_rate=lr), "sparse_categorical_crossentropy", ["accuracy"])
    return m


def _data(n: int = 16):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, 4)).astype(np.float32), rng.integers(0, 3, n)


class _Scripted(C.Callback):
    """Puts a scripted 'score' into each epoch's logs (before the callbacks under test)."""

    def __init__(self, scores):
        super().__init__()
        self.scores = scores

    def on_epoch_end(self, epoch, logs=None):
        logs["score"] = self.scores[epoch]


# -- CSVLogger ---------------------------------------------------------------------------------


def test_csv_logger_writes_keras_format(tmp_path: Path) -> None:
    x, y = _data()
    path = tmp_path / "log.csv"
    hist = _model().fit(x, y, epochs=3, verbose=0, validation_split=0.25,
                        callbacks=[C.CSVLogger(path)])
    rows = list(csv.reader(path.read_text().splitlines()))
    assert rows[0] == ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]  # sorted
    assert [r[0] for r in rows[1:]] == ["0", "1", "2"]  # 0-based, as Keras writes it
    for r, loss in zip(rows[1:], hist.history["loss"], strict=True):
        assert float(r[2]) == pytest.approx(loss, rel=1e-12)

    # append: the header is kept and not repeated; a second separator works
    _model().fit(x, y, epochs=2, verbose=0, validation_split=0.25,
                 callbacks=[C.CSVLogger(path, append=True)])
    rows = list(csv.reader(path.read_text().splitlines()))
    assert len(rows) == 6 and rows[4][0] == "0" and rows.count(rows[0]) == 1
    semi = tmp_path / "semi.csv"
    _model().fit(x, y, epochs=1, verbose=0, callbacks=[C.CSVLogger(semi, separator=";")])
    assert semi.read_text().splitlines()[0] == "epoch;accuracy;loss"


def test_csv_logger_flushes_every_epoch_and_fills_missing_keys(tmp_path: Path) -> None:
    x, y = _data()
    path = tmp_path / "log.csv"
    seen: list[str] = []

    class Peek(C.Callback):  # after the logger: the file already holds this epoch's line
        def on_epoch_end(self, epoch, logs=None):
            seen.append(path.read_text())

    class Drop(C.Callback):  # removes 'accuracy' from the second epoch's results
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                del logs["accuracy"]

    _model().fit(x, y, epochs=2, verbose=0, callbacks=[Drop(), C.CSVLogger(path), Peek()])
    assert [len(s.splitlines()) for s in seen] == [2, 3]
    assert path.read_text().splitlines()[2].split(",")[1] == "NA"


def test_csv_logger_file_errors_name_the_path(tmp_path: Path) -> None:
    x, y = _data()
    bad = tmp_path / "no-such-folder" / "log.csv"
    with pytest.raises(OSError, match="no-such-folder"):
        _model().fit(x, y, epochs=1, verbose=0, callbacks=[C.CSVLogger(bad)])
    with pytest.raises(ValueError, match="separator"):
        C.CSVLogger(tmp_path / "x.csv", separator=", ")


# -- ReduceLROnPlateau -------------------------------------------------------------------------


def test_reduce_lr_on_plateau_follows_keras_rules() -> None:
    x, y = _data()
    model = _model(lr=1.0)
    # improves, then flat: after `patience` flat epochs the rate drops, then cooldown
    scores = [1.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
    cb = C.ReduceLROnPlateau(monitor="score", factor=0.5, patience=2, cooldown=2,
                             min_lr=0.2)
    hist = model.fit(x, y, epochs=len(scores), verbose=0, callbacks=[_Scripted(scores), cb])
    # the rate logged is the one used during the epoch
    # epoch 2: wait 1; 3: wait 2 -> 0.5, cooldown 2; 4: cooldown 1; 5: cooldown 0, wait 1
    # (Keras counts down first); 6: wait 2 -> 0.25; 7: cooldown 1; 8: cooldown 0, wait 1
    assert hist.history["learning_rate"] == [1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25]
    assert model.optimizer.learning_rate == 0.25
    # at min_lr it stays there
    model2 = _model(lr=0.3)
    cb2 = C.ReduceLROnPlateau(monitor="score", factor=0.1, patience=1, min_lr=0.2)
    model2.fit(x, y, epochs=4, verbose=0, callbacks=[_Scripted([1.0] * 4), cb2])
    assert model2.optimizer.learning_rate == 0.2


def test_reduce_lr_on_plateau_mode_and_min_delta() -> None:
    x, y = _data()
    model = _model(lr=1.0)
    # 'val_accuracy'-like names are maximised in auto mode; a gain under min_delta is no gain
    cb = C.ReduceLROnPlateau(monitor="score_acc", patience=1, min_delta=0.1)

    class Acc(C.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["score_acc"] = [0.5, 0.55, 0.7][epoch]

    model.fit(x, y, epochs=3, verbose=0, callbacks=[Acc(), cb])
    assert cb.mode == "max"
    assert model.optimizer.learning_rate == pytest.approx(0.1)  # reduced once, after epoch 1


def test_reduce_lr_on_plateau_errors() -> None:
    x, y = _data()
    with pytest.raises(ValueError, match="factor"):
        C.ReduceLROnPlateau(factor=1.0)
    with pytest.raises(ValueError, match="patience"):
        C.ReduceLROnPlateau(patience=-1)
    sched = _model(lr=O.ExponentialDecay(0.1, 10, 0.5))
    with pytest.raises(TypeError, match="schedule"):
        sched.fit(x, y, epochs=1, verbose=0, callbacks=[C.ReduceLROnPlateau(monitor="loss")])
    with pytest.raises(ValueError, match="val_loss"):  # no validation data
        _model().fit(x, y, epochs=1, verbose=0, callbacks=[C.ReduceLROnPlateau()])


# -- TerminateOnNaN ----------------------------------------------------------------------------

def _nan_at_batch(batch: int, batch_size: int = 4):
    x, y = _data(16)
    x[batch * batch_size + 1, 2] = np.nan
    return x, y


def test_without_terminate_on_nan_fit_raises() -> None:
    x, y = _nan_at_batch(2)
    model = _model()
    with pytest.raises(fc.NonFiniteLossError, match="epoch 1, batch 3"):
        model.fit(x, y, batch_size=4, epochs=2, verbose=0, shuffle=False)


def test_terminate_on_nan_hooks() -> None:
    model = _model()
    cb = C.TerminateOnNaN()
    lst = C.CallbackList([C.Callback(), cb], model=model)
    assert C.CallbackList([C.Callback()], model=model).on_train_batch_nonfinite(0, {}) is False
    lst.on_epoch_begin(4, {})
    assert lst.on_train_batch_nonfinite(7, {"loss": float("nan")}) is True
    assert model.stop_training and cb.stopped == (4, 7)
    # a custom step reporting a NaN running loss
    model.stop_training = False
    cb.on_train_batch_end(0, {"loss": float("inf")})
    assert model.stop_training


def test_terminate_on_nan_stops_cleanly_with_the_weights_before_the_batch(capsys) -> None:
    x, y = _nan_at_batch(2)  # epoch 2 (0-based 1), batch 3 (0-based 2)
    x[8 + 1, 2] = 1.0  # clean for the first epoch ...
    model = _model()

    class NanInSecondEpoch(C.Callback):
        def on_epoch_end(self, epoch, logs=None):
            x[8 + 1, 2] = np.nan  # ... then poisoned

    weights: list[list[np.ndarray]] = []
    track = C.LambdaCallback(on_train_batch_end=lambda b, logs: weights.append(
        model.get_weights()))
    ended: list[bool] = []
    end = C.LambdaCallback(on_train_end=lambda logs: ended.append(True))
    cb = C.TerminateOnNaN()
    hist = model.fit(x, y, batch_size=4, epochs=5, verbose=0, shuffle=False,
                     callbacks=[NanInSecondEpoch(), track, cb, end])
    assert cb.stopped == (1, 2) and ended == [True]
    assert hist.epoch == [0] and len(hist.history["loss"]) == 1  # the broken epoch not recorded
    assert len(weights) == 4 + 2
    for a, b in zip(model.get_weights(), weights[-1], strict=True):
        np.testing.assert_array_equal(a, b)  # the weights after batch 2 of epoch 2
    assert np.all([np.isfinite(w).all() for w in model.get_weights()])
    assert "Epoch 2, batch 3: the loss is nan; terminating training" in capsys.readouterr().out
