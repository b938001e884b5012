"""Precision, Recall, AUC, top-k categorical accuracies and MAE: hand-computed values, an
independent NumPy computation, names in compile, saving and loading."""

from __future__ import annotations

import math

import numpy as np
import pytest

import fastcnn as fc
from fastcnn import layers as L
from fastcnn import metrics as M

# -- Precision / Recall -----------------------------------------------------------------------


def test_precision_recall_hand_computed() -> None:
    y, p = np.array([0, 1, 1, 1]), np.array([1.0, 0.0, 1.0, 1.0])  # tp 2, fp 1, fn 1
    for cls, want in ((M.Precision, 2 / 3), (M.Recall, 2 / 3)):
        m = cls()
        assert m.update(y, p) == pytest.approx(want)
        assert m.result() == pytest.approx(want)
    # threshold: a prediction counts when strictly above it
    m = M.Precision(thresholds=0.6)
    m.update(np.array([1, 0, 1, 0]), np.array([0.6, 0.7, 0.9, 0.2]))  # positives: 0.7, 0.9
    assert m.result() == pytest.approx(0.5)
    r = M.Recall(thresholds=0.6)
    r.update(np.array([1, 0, 1, 0]), np.array([0.6, 0.7, 0.9, 0.2]))
    assert r.result() == pytest.approx(0.5)
    # nothing predicted positive / no positive label: 0, as Keras' divide_no_nan
    m = M.Precision()
    m.update(np.array([1, 1]), np.array([0.1, 0.2]))
    assert m.result() == 0.0
    r = M.Recall()
    r.update(np.array([0, 0]), np.array([0.9, 0.2]))
    assert r.result() == 0.0


def test_precision_accumulates_over_batches() -> None:
    m = M.Precision()
    m.update(np.array([1, 0]), np.array([0.9, 0.8]))  # tp 1, fp 1
    m.update(np.array([1, 1, 1]), np.array([0.9, 0.9, 0.9]))  # tp 3
    assert m.result() == pytest.approx(4 / 5)
    m.reset()
    assert m.result() == 0.0


def test_top_k_and_class_id() -> None:
    y = np.array([[0, 0, 1, 1], [1, 0, 0, 1]])
    p = np.array([[0.1, 0.5, 0.4, 0.9], [0.8, 0.7, 0.1, 0.2]])
    # top 2 of row 0: cols 3, 1 (tp 1, fp 1); row 1: cols 0, 1 (tp 1, fp 1)
    m = M.Precision(top_k=2)
    m.update(y, p)
    assert m.result() == pytest.approx(0.5)
    r = M.Recall(top_k=2)
    r.update(y, p)
    assert r.result() == pytest.approx(2 / 4)
    # with top_k and a threshold both must hold: row 0 keeps 0.9 (tp), 0.5 dropped; row 1 0.8, 0.7
    m = M.Precision(top_k=2, thresholds=0.6)
    m.update(y, p)
    assert m.result() == pytest.approx(2 / 3)
    # class_id: column 3 only: preds 0.9 (label 1), 0.2 (label 1) -> precision 1, recall 1/2
    m, r = M.Precision(class_id=3), M.Recall(class_id=3)
    m.update(y, p)
    r.update(y, p)
    assert (m.result(), r.result()) == (1.0, 0.5)
    # ties: the first column wins, as Keras' top_k
    m = M.Precision(top_k=2)
    m.update(np.array([[0, 0, 1, 1]]), np.array([[1.0, 1.0, 1.0, 1.0]]))
    assert m.result() == 0.0


def test_sparse_labels_are_their_one_hot_rows_and_logits() -> None:
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((20, 4))
    ids = rng.integers(0, 4, 20)
    one_hot = np.eye(4)[ids]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    for cls in (M.Precision, M.Recall, M.AUC):
        a, b, c = cls(), cls(), cls()
        a.update(ids, probs)
        b.update(one_hot, probs)
        c.update(ids, logits, logits=True)  # softmax over several columns
        assert a.result() == pytest.approx(b.result()) and a.result() == pytest.approx(
            c.result(), abs=1e-12)
    # one column: sigmoid
    z = rng.standard_normal(30)
    t = (rng.random(30) > 0.5).astype(np.int64)
    a, b = M.Recall(), M.Recall()
    a.update(t, 1 / (1 + np.exp(-z)))
    b.update(t, z[:, None], logits=True)
    assert a.result() == pytest.approx(b.result())


def test_precision_errors() -> None:
    with pytest.raises(ValueError, match="one threshold"):
        M.Precision(thresholds=[0.3, 0.6])
    with pytest.raises(ValueError, match="thresholds must be in"):
        M.Recall(thresholds=1.5)
    with pytest.raises(ValueError, match="top_k"):
        M.Precision(top_k=0)
    with pytest.raises(ValueError, match="class_id=5"):
        M.Precision(class_id=5).update(np.eye(3), np.eye(3))
    with pytest.raises(ValueError, match=r"don't match predictions of shape \(4, 3\)"):
        M.Recall().update(np.zeros((4, 2)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"class ids must be in \[0, 3\)"):
        M.Recall().update(np.array([0, 3]), np.zeros((2, 3)))


# -- AUC ---------------------------------------------------------------------------------------


def test_auc_hand_computed() -> None:
    y, p = np.array([0, 0, 1, 1]), np.array([0.0, 0.5, 0.3, 0.9])
    # thresholds [-1e-7, 0.5, 1 + 1e-7]: tp [2, 1, 0], fp [2, 0, 0], fn [0, 1, 2], tn [0, 2, 2]
    # recall [1, .5, 0], fp rate [1, 0, 0]
    cases = {("ROC", "interpolation"): (1 + 0.5) / 2,
             ("ROC", "minoring"): 0.5, ("ROC", "majoring"): 1.0,
             # Davis & Goadrich: slope [1/3, 1], intercept [2/3, 0], p ratio [4, 1]
             ("PR", "interpolation"): (1 / 3) * (1 + 2 / 3 * math.log(4)) / 2 + 1 * 1 / 2,
             # precision [.5, 1, 0], recall [1, .5, 0]
             ("PR", "minoring"): 0.5 * 0.5, ("PR", "majoring"): 0.5 * 1 + 0.5 * 1}
    for (curve, how), want in cases.items():
        m = M.AUC(num_thresholds=3, curve=curve, summation_method=how)
        m.update(y, p)
        assert m.result() == pytest.approx(want), (curve, how)
    np.testing.assert_array_equal(m.true_positives, [2, 1, 0])
    np.testing.assert_array_equal(m.true_negatives, [0, 2, 2])


def _auc_numpy(y: np.ndarray, p: np.ndarray, num_thresholds: int) -> float:
    """ROC AUC by the definition, with broadcasting (no sorting, no histogram)."""
    inner = [(i + 1) / (num_thresholds - 1) for i in range(num_thresholds - 2)]
    thr = np.array([-1e-7, *inner, 1 + 1e-7], dtype=np.float32)[:, None]
    pred = p.astype(np.float32)[None, :] > thr
    pos = y.astype(bool)[None, :]
    tp, fp = (pred & pos).sum(1), (pred & ~pos).sum(1)
    fn, tn = (~pred & pos).sum(1), (~pred & ~pos).sum(1)
    tpr, fpr = tp / np.maximum(tp + fn, 1), fp / np.maximum(fp + tn, 1)
    return float(np.sum((fpr[:-1] - fpr[1:]) * (tpr[:-1] + tpr[1:]) / 2))


def _exact_roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counting half."""
    pos, neg = p[y == 1], p[y == 0]
    d = pos[:, None] - neg[None, :]
    return float(((d > 0) + 0.5 * (d == 0)).mean())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_against_independent_numpy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 500
    y = (rng.random(n) > 0.6).astype(np.int64)
    p = np.clip(0.35 * y + rng.random(n) * 0.7, 0, 1)
    m = M.AUC()
    for i in range(0, n, 64):  # batches accumulate to the whole set's counts
        m.update(y[i:i + 64], p[i:i + 64])
    assert m.result() == pytest.approx(_auc_numpy(y, p, 200), abs=1e-12)
    assert m.result() == pytest.approx(_exact_roc_auc(y, p), abs=0.01)
    try:
        from sklearn.metrics import roc_auc_score
    except ImportError:
        return
    assert m.result() == pytest.approx(roc_auc_score(y, p), abs=0.01)


def test_auc_pr_close_to_average_precision_and_edges() -> None:
    rng = np.random.default_rng(3)
    y = (rng.random(2000) > 0.7).astype(np.int64)
    p = np.clip(0.3 * y + rng.random(2000) * 0.7, 0, 1)
    m = M.AUC(curve="PR", num_thresholds=1000)
    m.update(y, p)
    # average precision by the definition: mean precision at each positive's rank
    order = np.argsort(-p, kind="stable")
    hits = y[order]
    ap = float(np.sum(np.cumsum(hits) / np.arange(1, len(y) + 1) * hits) / hits.sum())
    assert m.result() == pytest.approx(ap, abs=0.01)
    # a perfect ranking gives 1; NaN predictions are above no threshold
    perfect = M.AUC()
    perfect.update(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9]))
    assert perfect.result() == pytest.approx(1.0)
    nan = M.AUC(num_thresholds=3)
    nan.update(np.array([1, 0]), np.array([np.nan, 0.2]))
    np.testing.assert_array_equal(nan.true_positives, [0, 0, 0])
    with pytest.raises(ValueError, match="num_thresholds"):
        M.AUC(num_thresholds=1)
    with pytest.raises(ValueError, match="curve"):
        M.AUC(curve="PRGAIN")


def test_auc_custom_thresholds_and_from_logits() -> None:
    m = M.AUC(thresholds=[0.5])  # the same as num_thresholds=3
    m.update(np.array([0, 0, 1, 1]), np.array([0.0, 0.5, 0.3, 0.9]))
    assert m.result() == pytest.approx(0.75) and m.num_thresholds == 3
    z = np.array([-3.0, 0.1, -0.2, 2.0])
    a, b = M.AUC(from_logits=True), M.AUC()
    a.update(np.array([0, 0, 1, 1]), z)
    b.update(np.array([0, 0, 1, 1]), 1 / (1 + np.exp(-z)))
    assert a.result() == b.result()


# -- top-k, MAE --------------------------------------------------------------------------------


def test_top_k_categorical_accuracies() -> None:
    p = np.array([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3], [0.2, 0.3, 0.5]])
    ids = np.array([2, 1, 0])  # ranks: 2nd, 3rd, 3rd
    m = M.TopKCategoricalAccuracy(k=2)
    m.update(np.eye(3)[ids], p)
    assert m.result() == pytest.approx(1 / 3) and m.name == "top_k_categorical_accuracy"
    s = M.SparseTopKCategoricalAccuracy(k=2)
    s.update(ids, p)
    assert s.result() == pytest.approx(1 / 3) and s.name == "sparse_top_k_categorical_accuracy"
    assert M.TopKCategoricalAccuracy().k == 5


def test_mean_absolute_error() -> None:
    m = M.MeanAbsoluteError()
    m.update(np.array([[0.0, 1.0], [0.0, 0.0]]), np.array([[1.0, 1.0], [1.0, 0.0]]))
    assert m.result() == pytest.approx(0.5)  # per sample 0.5 and 0.5
    m.update(np.array([[2.0, 2.0]]), np.array([[0.0, 1.0]]))  # 1.5
    assert m.result() == pytest.approx((0.5 + 0.5 + 1.5) / 3)
    with pytest.raises(ValueError, match="don't match"):
        m.update(np.zeros((2, 3)), np.zeros((2, 2)))


# -- compile, fit, save / load -----------------------------------------------------------------


def test_names_in_compile_fit_and_saving(tmp_path) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.float32)
    model = fc.Sequential([L.Dense(4, activation="relu"), L.Dense(1, activation="sigmoid")],
                          input_shape=(5,), seed=0)
    names = ["precision", "recall", "auc", "mae"]
    model.compile("adam", "binary_crossentropy", names)
    assert [type(m).__name__ for m in model.metrics] == ["Precision", "Recall", "AUC",
                                                         "MeanAbsoluteError"]
    hist = model.fit(x, y, epochs=2, batch_size=16, verbose=0, validation_split=0.25)
    for n in names:
        assert len(hist.history[n]) == 2 and len(hist.history[f"val_{n}"]) == 2
    # the fused sigmoid: fit passes logits, the metrics see probabilities
    probs = model.predict(x[48:])[:, 0]
    ref = M.AUC()
    ref.update(y[48:], probs)
    assert hist.history["val_auc"][-1] == pytest.approx(ref.result(), abs=1e-6)
    mae = float(np.abs(y[48:] - probs).mean())
    assert hist.history["val_mae"][-1] == pytest.approx(mae, rel=1e-5)

    model.compile("adam", "binary_crossentropy",
                  [M.Precision(thresholds=0.3, name="p3"), M.AUC(curve="PR", num_thresholds=50),
                   M.Recall(class_id=0)])
    path = tmp_path / "m.npz"
    model.save(path)
    loaded = fc.load_model(path)
    got = [(type(m).__name__, m.get_config()) for m in loaded.metrics]
    assert got == [(type(m).__name__, m.get_config()) for m in model.metrics]
    assert loaded.metrics[1].curve == "PR" and loaded.metrics[1].num_thresholds == 50

    multi = fc.Sequential([L.Dense(6, activation="softmax")], input_shape=(5,), seed=0)
    multi.compile("adam", "sparse_categorical_crossentropy",
                  ["top_k_categorical_accuracy", "sparse_top_k_categorical_accuracy"])
    assert [type(m).__name__ for m in multi.metrics] == ["TopKCategoricalAccuracy",
                                                         "SparseTopKCategoricalAccuracy"]
    h = multi.fit(x, rng.integers(0, 6, 64), epochs=1, verbose=0)
    assert 0 <= h.history["top_k_categorical_accuracy"][0] <= 1


def test_metrics_on_the_gpu_match_the_cpu() -> None:
    cp = pytest.importorskip("cupy")
    if not fc.cuda_available():
        pytest.skip("no CUDA device")
    rng = np.random.default_rng(0)
    p = rng.random((40, 3))
    ids = rng.integers(0, 3, 40)
    for m in (M.Precision(), M.Recall(top_k=1), M.AUC(), M.AUC(curve="PR"),
              M.MeanAbsoluteError(), M.Precision(class_id=2)):
        cpu, gpu = m, type(m)(**m.get_config())
        y = np.eye(3)[ids] if isinstance(m, M.MeanAbsoluteError) else ids
        cpu.update(y, p)
        gpu.update(cp.asarray(y), cp.asarray(p))
        assert gpu.result() == pytest.approx(cpu.result(), abs=1e-12), m


def test_fit_tells_metrics_which_activation_its_logits_need() -> None:
    """A 3-column sigmoid output trained with binary cross-entropy is fused (fit sees logits):
    the metrics must apply the sigmoid, not a softmax over the 3 columns. Their values after an
    epoch equal the same metrics computed on predict's probabilities."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((64, 5)).astype(np.float32)
    y = (rng.random((64, 3)) < 0.5).astype(np.float32)
    model = fc.Sequential([fc.layers.Dense(3, activation="sigmoid")], input_shape=(5,), seed=0)
    model.compile(fc.optimizers.SGD(learning_rate=0.0), "binary_crossentropy",
                  metrics=["precision", "recall", "auc"])
    assert model.output_fused
    hist = model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    probs = model.predict(x)
    for name in ("precision", "recall", "auc"):
        m = fc.metrics.get(name)
        m.update(y, probs)
        assert hist.history[name][0] == pytest.approx(m.result(), rel=1e-6), name
