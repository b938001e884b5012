"""Metrics: accuracy (sparse / categorical / binary, inferred) and top-k accuracy.

A metric accumulates over batches: ``reset()``, ``update(y_true, y_pred, logits=False)`` per
batch, ``result()`` for the running value (weighted by samples). ``logits=True`` tells a metric
that ``y_pred`` holds the output layer's pre-activation values (the model passes it when a
softmax/sigmoid output is fused with the loss); only binary accuracy cares (threshold 0 instead
of 0.5), arg-max based metrics are unchanged by a softmax.

Names accepted by ``model.compile(metrics=[...])`` (the name given is the key in
``History.history`` and the progress bar):

* ``"accuracy"`` / ``"acc"``: :class:`Accuracy` with the kind inferred per batch: binary when
  the output has one unit, sparse when labels are integer class ids ``(N,)``, categorical when
  labels are one-hot / probabilities ``(N, classes)``;
* ``"binary_accuracy"``, ``"sparse_categorical_accuracy"``, ``"categorical_accuracy"``: a fixed
  kind;
* ``"top_k"``, ``"top_k_accuracy"``, ``"top_k_categorical_accuracy"``,
  ``"sparse_top_k_categorical_accuracy"``: :class:`TopKAccuracy` with k = 5;
  ``"top_3"`` / ``"top_3_accuracy"``: any explicit k.

Metrics are computed on the predictions' device (NumPy or CuPy arrays; labels on the other
device are moved to it); only the batch's sum of per-sample values comes back to the host (one
scalar per update).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from ._arrays import array_module, is_cupy
from .losses import as_targets

__all__ = ["Accuracy", "Metric", "TopKAccuracy", "get", "get_list"]


def _as_class_ids(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Integer class ids from sparse ``(N,)`` / ``(N, 1)`` labels or one-hot ``(N, C)``."""
    y = as_targets(y_true, y_pred)
    n = y_pred.shape[0]
    if y.ndim == 2 and y.shape[1] == y_pred.shape[1] and y_pred.shape[1] > 1:
        return array_module(y).argmax(y, axis=1)
    y = y.reshape(n)
    return y.astype(np.int64, copy=False)


class Metric:
    """Base class: accumulate with :meth:`update`, read with :meth:`result`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated."""
        self._total = 0.0
        self._count = 0

    def batch_values(self, y_true: np.ndarray, y_pred: np.ndarray,
                     logits: bool = False) -> np.ndarray:
        """Per-sample values ``(N,)`` of this metric for one batch."""
        raise NotImplementedError

    def update(self, y_true: np.ndarray, y_pred: np.ndarray, logits: bool = False) -> float:
        """Add one batch (``y_pred`` ``(N, ...)``); returns the batch's own value."""
        if not is_cupy(y_pred):
            y_pred = np.asarray(y_pred)
        v = self.batch_values(y_true, y_pred, logits)
        total = float(array_module(v).sum(v, dtype=np.float64))  # the one device-to-host copy
        self._total += total
        self._count += int(v.size)
        return total / v.size if v.size else 0.0

    def result(self) -> float:
        """Sample-weighted mean over everything since the last :meth:`reset` (0 when empty)."""
        return self._total / self._count if self._count else 0.0

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments."""
        return {"name": self.name}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


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
        return (pred == _as_class_ids(y_true, y_pred.reshape(n, -1))).astype(np.float64)

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
        ids = _as_class_ids(y_true, scores)
        true_score = scores[xp.arange(n), ids]
        higher = xp.sum(scores > true_score[:, None], axis=1)
        return ((higher < self.k) & ~xp.isnan(true_score)).astype(np.float64)

    def get_config(self):
        return {"name": self.name, "k": self.k}


_TOP_RE = re.compile(r"^top_(\d+)(_accuracy|_categorical_accuracy)?$")
_CLASSES = {"Accuracy": Accuracy, "TopKAccuracy": TopKAccuracy}


def get(identifier: Any) -> Metric:
    """Metric from a name (see the module docstring), a :class:`Metric`, or a config dict
    ``{"class_name": ..., "config": {...}}``. The metric's ``name`` is the name given."""
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, dict) and identifier.get("class_name") in _CLASSES:
        return _CLASSES[identifier["class_name"]](**identifier.get("config", {}))
    if not isinstance(identifier, str):
        raise TypeError(f"metric must be a name or a fastcnn.metrics.Metric, got {identifier!r}")
    key = identifier.lower()
    if key in ("accuracy", "acc"):
        return Accuracy(identifier)
    kinds = {"binary_accuracy": "binary", "sparse_categorical_accuracy": "sparse",
             "categorical_accuracy": "categorical"}
    if key in kinds:
        return Accuracy(identifier, kind=kinds[key])
    if key in ("top_k", "top_k_accuracy", "top_k_categorical_accuracy",
               "sparse_top_k_categorical_accuracy"):
        return TopKAccuracy(5, name=identifier)
    m = _TOP_RE.match(key)
    if m and int(m.group(1)) >= 1:
        return TopKAccuracy(int(m.group(1)), name=identifier)
    raise ValueError(f"unknown metric {identifier!r}; expected 'accuracy', 'binary_accuracy', "
                     f"'sparse_categorical_accuracy', 'categorical_accuracy', 'top_k', "
                     f"'top_<k>' or a fastcnn.metrics.Metric")


def get_list(identifiers: Any) -> list[Metric]:
    """Metrics for ``compile(metrics=...)``: None, one identifier or a list; names unique."""
    if identifiers is None:
        return []
    if isinstance(identifiers, str | Metric | dict):
        identifiers = [identifiers]
    out = [get(i) for i in identifiers]
    names = [m.name for m in out]
    dup = {n for n in names if names.count(n) > 1}
    if dup or "loss" in names:
        raise ValueError(f"metric names must be unique and not 'loss', got {names}")
    return out
