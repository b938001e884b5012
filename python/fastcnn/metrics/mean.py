"""Metrics that average a per-sample value: accuracy (binary / sparse / categorical), top-k
accuracy, mean absolute error, and any function ``fn(y_true, y_pred) -> values``."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._arrays import array_module
from ..losses import as_targets
from .base import Metric, as_class_ids, probabilities


class Accuracy(Metric):
    """Fraction of correct predictions.

    Args:
        kind: ``"auto"`` (inferred per batch, see the module docstring), ``"binary"``,
            ``"sparse"`` or ``"categorical"``.
        threshold: decision threshold of binary accuracy on probabilities (on logits its logit,
            ``log(t / (1 - t))``, is used: 0 for the default 0.5).
    """

    _KINDS = ("auto", "binary", "sparse", "categorical")

    def __init__(self, name: str = "accuracy", kind: str = "auto",
                 threshold: float = 0.5) -> None:
        if kind not in self._KINDS:
            raise ValueError(f"Accuracy: kind must be one of {self._KINDS}, got {kind!r}")
        self.kind = kind
        self.threshold = float(threshold)
        super().__init__(name)

    def _infer(self, y_true: np.ndarray, y_pred: np.ndarray) -> str:
        if self.kind != "auto":
            return self.kind
        if y_pred.ndim == 1 or (y_pred.ndim == 2 and y_pred.shape[1] == 1):
            return "binary"
        y = as_targets(y_true, y_pred)
        if y.ndim == 2 and y.shape[1] == y_pred.shape[1]:
            return "categorical"
        return "sparse"

    def batch_values(self, y_true, y_pred, logits=False):
        kind = self._infer(y_true, y_pred)
        n = y_pred.shape[0]
        xp = array_module(y_pred)
        if kind == "binary":
            thr = self.threshold
            if logits:  # sigmoid(z) > t  <=>  z > logit(t)
                thr = float(np.log(thr / (1.0 - thr))) if 0.0 < thr < 1.0 else thr
            pred = y_pred.reshape(n, -1) > thr
            true = as_targets(y_true, y_pred).reshape(n, -1) > 0.5
            return xp.mean(pred == true, axis=1)
        pred = xp.argmax(y_pred.reshape(n, -1), axis=1)
        return (pred == as_class_ids(y_true, y_pred.reshape(n, -1))).astype(np.float64)

    def get_config(self):
        return {"name": self.name, "kind": self.kind, "threshold": self.threshold}


class TopKAccuracy(Metric):
    """Fraction of samples whose true class is among the ``k`` highest scores.

    Ties follow TensorFlow's ``in_top_k``: the true class counts as in the top k when fewer
    than ``k`` classes score strictly higher. Labels may be sparse or one-hot.
    """

    def __init__(self, k: int = 5, name: str | None = None) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"TopKAccuracy: k must be a positive int, got {k!r}")
        self.k = k
        super().__init__(name or f"top_{k}_accuracy")

    def batch_values(self, y_true, y_pred, logits=False):
        n = y_pred.shape[0]
        xp = array_module(y_pred)
        scores = y_pred.reshape(n, -1)
        ids = as_class_ids(y_true, scores)
        true_score = scores[xp.arange(n), ids]
        higher = xp.sum(scores > true_score[:, None], axis=1)
        return ((higher < self.k) & ~xp.isnan(true_score)).astype(np.float64)

    def get_config(self):
        return {"name": self.name, "k": self.k}


class TopKCategoricalAccuracy(TopKAccuracy):
    """Keras' ``TopKCategoricalAccuracy(k=5)``: top-k accuracy with one-hot labels (integer
    class ids are accepted too)."""

    def __init__(self, k: int = 5, name: str | None = "top_k_categorical_accuracy") -> None:
        super().__init__(k, name)


class SparseTopKCategoricalAccuracy(TopKAccuracy):
    """Keras' ``SparseTopKCategoricalAccuracy(k=5)``: top-k accuracy with integer class ids
    ``(N,)`` (one-hot rows are accepted too)."""

    def __init__(self, k: int = 5,
                 name: str | None = "sparse_top_k_categorical_accuracy") -> None:
        super().__init__(k, name)



class MeanAbsoluteError(Metric):
    """Mean of ``|y_true - y_pred|``: per sample over its values, then over samples (Keras'
    ``MeanAbsoluteError``). On logits the output activation is applied first (see the module
    docstring), so the error is that of the probabilities ``predict`` returns."""

    def __init__(self, name: str = "mean_absolute_error") -> None:
        super().__init__(name)

    def batch_values(self, y_true, y_pred, logits=False):
        p = probabilities(y_pred, logits)
        t = as_targets(y_true, p)
        n = p.shape[0]
        if t.size != p.size:
            raise ValueError(f"{self.name}: targets of shape {tuple(t.shape)} don't match "
                             f"predictions of shape {tuple(p.shape)}; expected the same number "
                             f"of values")
        diff = array_module(p).abs(t.reshape(p.shape).astype(np.float64) - p)
        return diff.reshape(n, -1).mean(axis=1) if n else diff.reshape(0)


class MeanMetricWrapper(Metric):
    """Keras' ``MeanMetricWrapper``: the (weighted) mean of ``fn(y_true, y_pred) -> values
    (N,)`` (or (N, ...), averaged over the trailing axes) since :meth:`reset`; ``y_pred`` are
    probabilities (the output activation applied to logits). Named ``fn.__name__``; not
    saved with the model."""

    def __init__(self, fn: Any, name: str | None = None) -> None:
        if not callable(fn):
            raise TypeError(f"MeanMetricWrapper: fn must be callable, got {fn!r}")
        self.fn = fn
        super().__init__(name or getattr(fn, "__name__", "metric"))

    def batch_values(self, y_true, y_pred, logits=False):
        p = probabilities(y_pred, logits)
        n = p.shape[0] if p.ndim else 1
        v = as_targets(self.fn(as_targets(y_true, p), p), p).astype(np.float64)
        if v.ndim == 0 or v.shape[0] != n:
            raise ValueError(f"metric function {self.name!r} returned shape {tuple(v.shape)} "
                             f"for a batch of {n}; expected the per-sample values ({n},)")
        return v.reshape(n, -1).mean(axis=1)

    def get_config(self):
        raise ValueError(f"the metric function {self.name!r} can't be serialised")

    def __repr__(self) -> str:
        return f"MeanMetricWrapper({self.name})"
