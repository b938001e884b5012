"""fastcnn.training.train_step: the one training step of fit, callable from a custom loop
(bitwise equal to fit for the same seeds; a non-finite loss raises before any weight changes)."""

from __future__ import annotations

import numpy as np
import pytest

import fastcnn as fc
from fastcnn import layers as L
from fastcnn import optimizers as O
from fastcnn.training import NonFiniteLossError, StepResult, train_step


def _tiny_cnn(seed: int = 0) -> fc.Sequential:
    # Conv2D(relu) -> MaxPool2D exercises the pooled-gradient fusion, Dropout the model's
    # generator
    return fc.Sequential([L.Conv2D(4, 3, padding="same", activation="relu"), L.MaxPool2D(2),
                          L.Flatten(), L.Dropout(0.25), L.Dense(3, activation="softmax")],
                         input_shape=(1, 6, 6), seed=seed)


def _data(n: int = 44, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 1, 6, 6)), rng.integers(0, 3, n)


def _fit_order(n: int, bs: int, epochs: int, seed: int) -> list[list[np.ndarray]]:
    """The batches' sample indices, epoch by epoch, as fit takes them (one generator, one
    permutation per epoch)."""
    rng = np.random.default_rng(seed)
    perms = [rng.permutation(n) for _ in range(epochs)]
    return [[perm[i:i + bs] for i in range(0, n, bs)] for perm in perms]


def test_hand_loop_with_train_step_is_bitwise_equal_to_fit():
    x, y = _data()
    bs, epochs, seed = 8, 2, 7

    fitted = _tiny_cnn(seed=3)
    fitted.compile(O.Adam(learning_rate=0.01), "sparse_categorical_crossentropy", ["accuracy"])
    hist = fitted.fit(x, y, batch_size=bs, epochs=epochs, shuffle=True, seed=seed, verbose=0)

    model = _tiny_cnn(seed=3)
    model.compile(O.Adam(learning_rate=0.01), "sparse_categorical_crossentropy", ["accuracy"])
    losses = []
    for batches in _fit_order(len(x), bs, epochs, seed):
        total = 0.0
        for idx in batches:
            step = train_step(model, x[idx], y[idx])  # float64 inputs: converted as fit does
            assert isinstance(step, StepResult) and isinstance(step.loss, float)
            assert step.outputs.shape == (len(idx), 3) and step.outputs.dtype == np.float32
            assert step.logits  # softmax output fused with the cross-entropy
            total += step.loss * len(idx)
        losses.append(total / len(x))
    for a, b in zip(fitted.get_weights(), model.get_weights(), strict=True):
        assert a.tobytes() == b.tobytes()
    assert model.optimizer.iterations == fitted.optimizer.iterations == epochs * 6
    assert losses == hist.history["loss"]


def test_train_step_raises_before_any_weight_changes():
    x, y = _data(8)
    model = _tiny_cnn()
    model.compile(O.SGD(learning_rate=0.1, momentum=0.9), "sparse_categorical_crossentropy")
    train_step(model, x, y)  # a good step first: the optimizer has state to keep
    before = model.get_weights()
    grads = [g.copy() for _, g in model.parameters()]
    iterations = model.optimizer.iterations
    x[3, 0, 2, 2] = np.nan
    with pytest.raises(NonFiniteLossError, match="nan") as info:
        train_step(model, x, y)
    assert isinstance(info.value, FloatingPointError) and isinstance(info.value, ValueError)
    assert np.isnan(info.value.loss)
    assert model.optimizer.iterations == iterations
    for a, b in zip(before, model.get_weights(), strict=True):
        assert a.tobytes() == b.tobytes()
    for a, (_, b) in zip(grads, model.parameters(), strict=True):
        assert a.tobytes() == b.tobytes()


def test_train_step_needs_a_compiled_model():
    x, y = _data(4)
    with pytest.raises(RuntimeError, match="compile"):
        train_step(_tiny_cnn(), x, y)
