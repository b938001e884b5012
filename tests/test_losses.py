"""Losses (fused and unfused, label forms) and metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

import fastcnn as fc
from fastcnn import layers as L
from fastcnn import losses as LS
from fastcnn import metrics as M


def _logits(rng, n=5, c=4, scale=2.0):
    return (rng.standard_normal((n, c)) * scale).astype(np.float32)


def _softmax64(z):
    z = z.astype(np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# ----------------------------------------------------------------------------------------------
# cross-entropy


def test_fused_cross_entropy_is_ops_cross_entropy(rng):
    z = _logits(rng)
    y = np.array([0, 3, 1, 1, 2])
    loss, dz = LS.SparseCategoricalCrossentropy().value_and_grad(z, y, logits=True)
    ref_loss, ref_dz = fc.ops.cross_entropy(z, y)
    assert loss == ref_loss
    np.testing.assert_array_equal(dz, ref_dz)
    expected = -np.mean(np.log(_softmax64(z))[np.arange(5), y])
    assert loss == pytest.approx(expected, rel=1e-5)


def test_label_forms_agree(rng):
    z = _logits(rng)
    y = np.array([0, 3, 1, 1, 2])
    onehot = np.eye(4, dtype=np.float32)[y]
    results = [LS.CategoricalCrossentropy().value_and_grad(z, lab, logits=True)
               for lab in (y, y.astype(np.int32), y[:, None], y.astype(np.float32), onehot)]
    for loss, dz in results[1:]:
        assert loss == pytest.approx(results[0][0], rel=1e-6)
        np.testing.assert_allclose(dz, results[0][1], rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize(("labels", "match"), [
    (np.array([0, 4, 1, 1, 2]), r"\[0, 4\)"),
    (np.array([0, -1, 1, 1, 2]), r"\[0, 4\)"),
    (np.array([0.5, 1, 1, 1, 2]), "whole numbers"),
    (np.array([0, 1, 2]), "shape"),
])
def test_bad_labels(rng, labels, match):
    with pytest.raises(ValueError, match=match):
        LS.SparseCategoricalCrossentropy().value_and_grad(_logits(rng), labels, logits=True)


def test_probability_cross_entropy_and_its_gradient(rng):
    p = _softmax64(_logits(rng)).astype(np.float32)
    y = np.array([0, 3, 1, 1, 2])
    loss_fn = LS.SparseCategoricalCrossentropy()
    loss, dp = loss_fn.value_and_grad(p, y)
    assert loss == pytest.approx(-np.mean(np.log(p[np.arange(5), y])), rel=1e-5)
    assert loss_fn(y, p) == loss
    v = (p * rng.standard_normal(p.shape) * 1e-3).astype(np.float32)  # relative steps
    numeric = (loss_fn.value_and_grad(p + v, y)[0] - loss_fn.value_and_grad(p - v, y)[0]) / 2
    assert numeric == pytest.approx(float(np.sum(dp * v)), rel=2e-2)


def test_binary_crossentropy_logits_and_probabilities(rng):
    z = (rng.standard_normal((6, 1)) * 3).astype(np.float32)
    t = np.array([0, 1, 1, 0, 1, 0])
    bce = LS.BinaryCrossentropy()
    lz, dz = bce.value_and_grad(z, t, logits=True)
    p = (1 / (1 + np.exp(-z.astype(np.float64))))
    expected = -np.mean(t[:, None] * np.log(p) + (1 - t[:, None]) * np.log(1 - p))
    assert lz == pytest.approx(expected, rel=1e-5)
    np.testing.assert_allclose(dz, (p - t[:, None]) / 6, rtol=1e-5, atol=1e-7)
    lp, dp = bce.value_and_grad(p.astype(np.float32), t)
    assert lp == pytest.approx(lz, rel=1e-4)
    # chain rule through the sigmoid gives the logit gradient back
    np.testing.assert_allclose(dp * p * (1 - p), dz, rtol=1e-3, atol=1e-6)
    assert LS.BinaryCrossentropy(from_logits=True).value_and_grad(z, t)[0] == lz
    # stable for huge logits
    big = np.array([[1000.0], [-1000.0]], np.float32)
    loss, grad = bce.value_and_grad(big, np.array([0, 1]), logits=True)
    assert loss == pytest.approx(1000.0) and np.isfinite(grad).all()
    with pytest.raises(ValueError, match="elements"):
        bce.value_and_grad(z, np.zeros(5), logits=True)


def test_mean_squared_error(rng):
    y_pred = rng.standard_normal((4, 3)).astype(np.float32)
    t = rng.standard_normal((4, 3)).astype(np.float32)
    loss, d = LS.get("mse").value_and_grad(y_pred, t)
    assert loss == pytest.approx(np.mean((y_pred - t) ** 2), rel=1e-6)
    np.testing.assert_allclose(d, 2 * (y_pred - t) / 12, rtol=1e-6)
    loss1, _ = LS.MeanSquaredError().value_and_grad(y_pred[:, :1], t[:, 0])
    assert loss1 == pytest.approx(np.mean((y_pred[:, 0] - t[:, 0]) ** 2), rel=1e-6)


def test_get_losses():
    assert isinstance(LS.get("sparse_categorical_crossentropy"), LS.SparseCategoricalCrossentropy)
    assert isinstance(LS.get("categorical_crossentropy"), LS.CategoricalCrossentropy)
    assert isinstance(LS.get("binary_crossentropy"), LS.BinaryCrossentropy)
    assert isinstance(LS.get("mean_squared_error"), LS.MeanSquaredError)
    with pytest.raises(ValueError, match="unknown loss"):
        LS.get("hinge")


# ----------------------------------------------------------------------------------------------
# fusion in the model


def _dense_model(activation, weight):
    m = fc.Sequential([L.Dense(3, activation=activation, kernel_initializer=fc.initializers
                                .Constant(weight))], input_shape=(2,))
    return m


def test_softmax_output_fused_with_cross_entropy_is_stable():
    x = np.array([[1.0, -1.0], [2.0, 0.5]], np.float32)
    m = _dense_model("softmax", 400.0)  # logits in the hundreds: probabilities underflow
    m.layers[0].params["kernel"][...] = [[400, -400], [-400, 400], [0, 0]]
    m.compile("sgd", "sparse_categorical_crossentropy")
    assert m.output_fused
    y = np.array([1, 2])  # the wrong classes: log(p) would be -inf unfused
    loss = m.evaluate(x, y)
    assert math.isfinite(loss) and loss > 100
    probs = m.predict(x)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    m.fit(x, y, epochs=1, verbose=0)  # no NaN / inf


def test_unfused_and_from_logits_paths():
    x = np.random.default_rng(0).standard_normal((8, 2)).astype(np.float32)
    y = np.arange(8) % 3
    logits_model = fc.Sequential([L.Dense(3)], input_shape=(2,), seed=1)
    logits_model.compile("sgd", LS.SparseCategoricalCrossentropy(from_logits=True))
    soft_model = fc.Sequential([L.Dense(3, activation="softmax")], input_shape=(2,), seed=1)
    soft_model.compile("sgd", "sparse_categorical_crossentropy")
    sep_model = fc.Sequential([L.Dense(3), L.Softmax()], input_shape=(2,), seed=1)
    sep_model.compile("sgd", "sparse_categorical_crossentropy")
    assert not logits_model.output_fused and soft_model.output_fused and sep_model.output_fused
    losses = [m.evaluate(x, y) for m in (logits_model, soft_model, sep_model)]
    assert losses[1] == pytest.approx(losses[0], rel=1e-6)
    assert losses[2] == pytest.approx(losses[0], rel=1e-6)
    with pytest.raises(ValueError, match="from_logits"):
        soft_model.compile("sgd", LS.SparseCategoricalCrossentropy(from_logits=True))


# ----------------------------------------------------------------------------------------------
# metrics


def test_accuracy_kinds():
    acc = M.get("accuracy")
    p = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]], np.float32)
    assert acc.update(np.array([1, 0, 0]), p) == pytest.approx(2 / 3)
    assert acc.update(np.eye(2)[[1, 1, 1]], p) == pytest.approx(2 / 3)
    assert acc.result() == pytest.approx(4 / 6)
    acc.reset()
    assert acc.result() == 0.0
    pb = np.array([[0.2], [0.7], [0.6]], np.float32)
    assert acc.update(np.array([0, 1, 0]), pb) == pytest.approx(2 / 3)
    # logits: threshold 0
    assert M.Accuracy().update(np.array([0, 1, 1]), np.array([[-1.0], [2.0], [-0.5]]),
                               logits=True) == pytest.approx(2 / 3)
    assert M.get("binary_accuracy").kind == "binary"
    assert M.get("categorical_accuracy").kind == "categorical"


def test_top_k_accuracy():
    scores = np.array([[0.5, 0.3, 0.2, 0.0], [0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25]])
    y = np.array([1, 0, 3])
    top2 = M.get("top_2")
    assert top2.k == 2 and top2.name == "top_2"
    assert top2.update(y, scores) == pytest.approx(2 / 3)  # ties count as in the top k
    assert M.get("top_k").k == 5
    assert M.TopKAccuracy(1).update(np.eye(4)[y], scores) == pytest.approx(1 / 3)


def test_metric_names_and_errors():
    names = [m.name for m in M.get_list(["accuracy", "top_3_accuracy", "acc"])]
    assert names == ["accuracy", "top_3_accuracy", "acc"]
    with pytest.raises(ValueError, match="unknown metric"):
        M.get("f1")
    with pytest.raises(ValueError, match="unique"):
        M.get_list(["accuracy", "accuracy"])
