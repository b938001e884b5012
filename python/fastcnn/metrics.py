"""Metrics: accuracy (sparse / categorical / binary, inferred), top-k accuracy, precision,
recall, AUC (ROC / PR) and mean absolute error.

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
* ``"top_k"``, ``"top_k_accuracy"``: :class:`TopKAccuracy` with k = 5;
  ``"top_k_categorical_accuracy"``: :class:`TopKCategoricalAccuracy`,
  ``"sparse_top_k_categorical_accuracy"``: :class:`SparseTopKCategoricalAccuracy` (k = 5);
  ``"top_3"`` / ``"top_3_accuracy"``: any explicit k;
* ``"precision"``, ``"recall"``, ``"auc"``: :class:`Precision`, :class:`Recall`, :class:`AUC`
  with Keras' defaults;
* ``"mae"``, ``"mean_absolute_error"``: :class:`MeanAbsoluteError`.

Precision, recall and AUC count a confusion matrix as Keras does: every element of the
predictions ``(N, ...)`` is one binary decision against the label of the same position (a label
is positive when non-zero); integer class ids ``(N,)`` with a multi-column output are taken as
their one-hot rows first. They need probabilities: on logits (``logits=True``) they apply the
output's activation first: sigmoid to one column, softmax over several (``logits="sigmoid"``
or ``"softmax"`` says which).

``update(..., sample_weight=w)`` (N,) weighs samples as Keras: a mean metric gives ``sum(w *
v) / sum(w)``, precision / recall / AUC count ``w_i`` for each decision of sample ``i``. As in
Keras, ``fit`` / ``evaluate`` weigh a model's ``weighted_metrics``, never its ``metrics``. A
function ``fn(y_true, y_pred) -> values (N,)`` is a metric too (:class:`MeanMetricWrapper`).

Metrics are computed on the predictions' device (NumPy or CuPy arrays; labels on the other
device are moved to it); only the batch's sum of per-sample values comes back to the host (one
scalar per update).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._arrays import array_module, is_cupy, to_host
from .losses import as_sample_weight, as_targets

__all__ = [
    "AUC",
    "Accuracy",
    "MeanAbsoluteError",
    "MeanMetricWrapper",
    "Metric",
    "Precision",
    "Recall",
    "SparseTopKCategoricalAccuracy",
    "TopKAccuracy",
    "TopKCategoricalAccuracy",
    "get",
    "get_list",
]


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
        self._count: float = 0

    def batch_values(self, y_true: np.ndarray, y_pred: np.ndarray,
                     logits: bool = False) -> np.ndarray:
        """Per-sample values ``(N,)`` of this metric for one batch."""
        raise NotImplementedError

    def update(self, y_true: np.ndarray, y_pred: np.ndarray, logits: bool = False,
               sample_weight: Any = None) -> float:
        """Add one batch (``y_pred`` ``(N, ...)``, optional weights (N,)); returns the batch's
        own (weighted) value."""
        if not is_cupy(y_pred):
            y_pred = np.asarray(y_pred)
        v = self.batch_values(y_true, y_pred, logits)
        xp = array_module(v)
        if sample_weight is None:
            total = float(xp.sum(v, dtype=np.float64))  # the one device-to-host copy
            count: float = int(v.size)
        else:
            w = _row_weights(sample_weight, v, self.name)
            total, count = (float(c) for c in to_host(xp.stack([xp.sum(w * v), xp.sum(w)])))
        self._total += total
        self._count += count
        return total / count if count else 0.0

    def result(self) -> float:
        """(Sample-weighted) mean over everything since the last :meth:`reset` (0 when
        empty)."""
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


def _row_weights(sample_weight: Any, a: Any, who: str) -> Any:
    """Sample weights (N,) as float64 shaped (N, 1, ...) to broadcast over ``a`` (N, ...)."""
    w = as_sample_weight(sample_weight, a.shape[0] if a.ndim else 1, a, who)
    return w.astype(np.float64).reshape(w.shape + (1,) * max(a.ndim - 1, 0))


def _probabilities(y_pred: Any, logits: bool | str) -> Any:
    """``y_pred`` (N, ...) as probabilities: as it is when ``logits`` is False, else through
    the output activation (``"sigmoid"`` / ``"softmax"``; True: sigmoid for one column,
    softmax over the last axis for several)."""
    if not logits:
        return y_pred
    xp = array_module(y_pred)
    z = y_pred.astype(np.float64)
    act = logits if isinstance(logits, str) else (
        "sigmoid" if z.ndim == 1 or z.shape[-1] == 1 else "softmax")
    if act == "sigmoid":
        e = xp.exp(-xp.abs(z))
        return xp.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    if act == "softmax":
        e = xp.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    raise ValueError(f"logits must be a bool, 'sigmoid' or 'softmax', got {logits!r}")


def _binary_pairs(y_true: Any, y_pred: Any, who: str) -> tuple[Any, Any]:
    """Labels as a boolean array of the predictions' shape (N, ...) (positive = non-zero);
    integer class ids (N,) / (N, 1) with a multi-column output become one-hot rows."""
    t = as_targets(y_true, y_pred)
    xp = array_module(y_pred)
    n = y_pred.shape[0]
    if (y_pred.ndim == 2 and y_pred.shape[1] > 1 and t.size == n
            and (t.ndim == 1 or t.shape[-1] == 1)):
        ids = t.reshape(n).astype(np.int64)
        c = y_pred.shape[1]
        if n and (int(ids.min()) < 0 or int(ids.max()) >= c):
            raise ValueError(f"{who}: class ids must be in [0, {c}) for an output of {c} "
                             f"columns, got ids in [{int(ids.min())}, {int(ids.max())}]")
        return xp.arange(c)[None, :] == ids[:, None], y_pred
    if t.size != y_pred.size:
        raise ValueError(f"{who}: labels of shape {tuple(t.shape)} don't match predictions of "
                         f"shape {tuple(y_pred.shape)}; expected the same shape (or class ids "
                         f"(N,) for a multi-column output)")
    return t.reshape(y_pred.shape) != 0, y_pred


def _class_column(a: Any, class_id: int | None, who: str) -> Any:
    if class_id is None:
        return a
    if a.ndim < 2 or not 0 <= class_id < a.shape[-1]:
        raise ValueError(f"{who}: class_id={class_id} needs predictions with more than "
                         f"{class_id} columns, got shape {tuple(a.shape)}")
    return a[..., class_id]


def _check_optional_int(v: Any, name: str, who: str, low: int) -> int | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < low:
        raise ValueError(f"{who}: {name} must be None or an int >= {low}, got {v!r}")
    return int(v)


class _ConfusionMetric(Metric):
    """Base of Precision / Recall: tp, fp, fn counts at one threshold (Keras' rules)."""

    def __init__(self, thresholds: float | Sequence[float] | None = None,
                 top_k: int | None = None, class_id: int | None = None,
                 name: str | None = None) -> None:
        who = type(self).__name__
        if thresholds is not None and not isinstance(thresholds, int | float):
            ts = list(thresholds)
            if len(ts) != 1:
                raise ValueError(f"{who}: one threshold only (a float), got {thresholds!r}; "
                                 f"use AUC for a curve over many thresholds")
            thresholds = ts[0]
        if thresholds is not None and not 0.0 <= float(thresholds) <= 1.0:
            raise ValueError(f"{who}: thresholds must be in [0, 1], got {thresholds!r}")
        self.thresholds = None if thresholds is None else float(thresholds)
        self.top_k = _check_optional_int(top_k, "top_k", who, 1)
        self.class_id = _check_optional_int(class_id, "class_id", who, 0)
        super().__init__(name or who.lower())

    def reset(self) -> None:
        self.true_positives = self.false_positives = self.false_negatives = 0

    def _counts(self, y_true: Any, y_pred: Any, logits: bool | str,
                sample_weight: Any = None) -> tuple[float, float, float]:
        who = type(self).__name__
        if not is_cupy(y_pred):
            y_pred = np.asarray(y_pred)
        pos, _ = _binary_pairs(y_true, y_pred, who)
        p = _probabilities(y_pred, logits)
        xp = array_module(p)
        if self.top_k is not None:
            # Keras: only each row's k highest (the first on ties) are predicted positive
            if p.ndim < 2:
                raise ValueError(f"{who}: top_k needs predictions (N, classes), got shape "
                                 f"{tuple(p.shape)}")
            rank = xp.argsort(xp.argsort(-p, axis=-1, kind="stable"), axis=-1, kind="stable")
            pred = rank < self.top_k
            if self.thresholds is not None:
                pred &= p > self.thresholds
        else:
            pred = p > (0.5 if self.thresholds is None else self.thresholds)
        pred = _class_column(pred, self.class_id, who)
        pos = _class_column(pos, self.class_id, who)
        if sample_weight is None:
            c = to_host(xp.stack([xp.sum(pred & pos), xp.sum(pred & ~pos),
                                  xp.sum(~pred & pos)]))  # the one device-to-host copy
            return int(c[0]), int(c[1]), int(c[2])
        w = _row_weights(sample_weight, pred, who)  # every decision of sample i weighs w_i
        c = to_host(xp.stack([xp.sum((pred & pos) * w), xp.sum((pred & ~pos) * w),
                              xp.sum((~pred & pos) * w)]))
        return float(c[0]), float(c[1]), float(c[2])

    def update(self, y_true, y_pred, logits=False, sample_weight=None):
        tp, fp, fn = self._counts(y_true, y_pred, logits, sample_weight)
        self.true_positives += tp
        self.false_positives += fp
        self.false_negatives += fn
        return self._value(tp, fp, fn)

    def result(self) -> float:
        return self._value(self.true_positives, self.false_positives, self.false_negatives)

    def _value(self, tp: int, fp: int, fn: int) -> float:
        raise NotImplementedError

    def get_config(self):
        return {"name": self.name, "thresholds": self.thresholds, "top_k": self.top_k,
                "class_id": self.class_id}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class Precision(_ConfusionMetric):
    """``tp / (tp + fp)`` over everything since :meth:`reset` (0 when nothing is predicted
    positive), Keras' ``Precision``.

    Args:
        thresholds: a prediction is positive when above it (default 0.5; with ``top_k`` the
            default is none: the top k are positive).
        top_k: only each row's ``k`` highest predictions can be positive.
        class_id: count only this column of (N, classes) predictions.
        name: the key in the History (default ``"precision"``).
    """

    def _value(self, tp, fp, fn):
        return tp / (tp + fp) if tp + fp else 0.0


class Recall(_ConfusionMetric):
    """``tp / (tp + fn)`` over everything since :meth:`reset` (0 when there is no positive
    label), Keras' ``Recall``; arguments as :class:`Precision` (default name ``"recall"``)."""

    def _value(self, tp, fp, fn):
        return tp / (tp + fn) if tp + fn else 0.0


class AUC(Metric):
    """Area under the ROC or precision-recall curve, Keras' ``AUC`` (its thresholds, counts
    and Riemann sums).

    The thresholds are ``-1e-7``, ``i / (num_thresholds - 1)`` for ``i = 1 .. num_thresholds -
    2`` and ``1 + 1e-7`` (float32), or ``[-1e-7, *sorted(thresholds), 1 + 1e-7]``. At each the
    tp / fp / tn / fn counts of ``prediction > threshold`` are accumulated (labels: see the
    module docstring). ``summation_method="interpolation"`` takes the mean of neighbouring
    heights for ROC and Davis & Goadrich's interpolation of tp and fp for PR; ``"minoring"`` /
    ``"majoring"`` the smaller / larger height.

    Args:
        num_thresholds: > 1 (default 200).
        curve: ``"ROC"`` or ``"PR"``.
        summation_method: ``"interpolation"``, ``"minoring"`` or ``"majoring"``.
        name: the key in the History (default ``"auc"``).
        thresholds: explicit thresholds in [0, 1] (``num_thresholds`` is then ignored).
        from_logits: predictions are logits (a sigmoid is applied), as Keras.
    """

    _CURVES = ("ROC", "PR")
    _SUMMATIONS = ("interpolation", "minoring", "majoring")

    def __init__(self, num_thresholds: int = 200, curve: str = "ROC",
                 summation_method: str = "interpolation", name: str | None = None,
                 thresholds: Sequence[float] | None = None, from_logits: bool = False) -> None:
        if str(curve).upper() not in self._CURVES:
            raise ValueError(f"AUC: curve must be one of {self._CURVES}, got {curve!r}")
        if str(summation_method).lower() not in self._SUMMATIONS:
            raise ValueError(f"AUC: summation_method must be one of {self._SUMMATIONS}, got "
                             f"{summation_method!r}")
        self.curve = str(curve).upper()
        self.summation_method = str(summation_method).lower()
        self.from_logits = bool(from_logits)
        if thresholds is not None:
            inner = sorted(float(t) for t in thresholds)
            if any(not 0.0 <= t <= 1.0 for t in inner):
                raise ValueError(f"AUC: thresholds must lie in [0, 1], got {thresholds!r}")
            self._custom: list[float] | None = inner
            self.num_thresholds = len(inner) + 2
        else:
            if isinstance(num_thresholds, bool) or not isinstance(num_thresholds, int) \
                    or num_thresholds <= 1:
                raise ValueError(f"AUC: num_thresholds must be an int > 1, got "
                                 f"{num_thresholds!r}")
            self._custom = None
            self.num_thresholds = num_thresholds
            inner = [(i + 1) / (num_thresholds - 1) for i in range(num_thresholds - 2)]
        self.thresholds = np.array([-1e-7, *inner, 1.0 + 1e-7], dtype=np.float32)
        super().__init__(name or "auc")

    def reset(self) -> None:
        t = self.num_thresholds
        self.true_positives = np.zeros(t, np.int64)  # float64 once weighted
        self.false_positives = np.zeros(t, np.int64)
        self.true_negatives = np.zeros(t, np.int64)
        self.false_negatives = np.zeros(t, np.int64)

    def update(self, y_true, y_pred, logits=False, sample_weight=None):
        """Add one batch's counts (each decision of sample ``i`` counts ``sample_weight[i]``
        when given); returns the batch's own AUC."""
        if not is_cupy(y_pred):
            y_pred = np.asarray(y_pred)
        pos, _ = _binary_pairs(y_true, y_pred, "AUC")
        p = _probabilities(y_pred, logits or ("sigmoid" if self.from_logits else False))
        xp = array_module(p)
        w = None if sample_weight is None else xp.broadcast_to(
            _row_weights(sample_weight, p, "AUC"), p.shape).ravel()
        p = p.astype(np.float32).ravel()
        pos = pos.ravel()
        t = self.num_thresholds
        # idx = how many thresholds lie strictly below the prediction: p > thr[j] <=> j < idx
        thr = xp.asarray(self.thresholds)
        idx = xp.searchsorted(thr, p, side="left")
        idx = xp.where(xp.isnan(p), 0, idx)  # NaN is above no threshold
        if w is None:
            hist = xp.stack([xp.bincount(idx[pos], minlength=t + 1),
                             xp.bincount(idx[~pos], minlength=t + 1)])
            hist = to_host(hist).astype(np.int64)  # the one device-to-host copy
        else:
            hist = to_host(xp.stack([xp.bincount(idx[pos], weights=w[pos], minlength=t + 1),
                                     xp.bincount(idx[~pos], weights=w[~pos],
                                                 minlength=t + 1)]))
        above = np.cumsum(hist[:, ::-1], axis=1)[:, ::-1][:, 1:]  # above[:, j]: idx > j
        tp, fp = above[0], above[1]
        fn, tn = hist[0].sum() - tp, hist[1].sum() - fp
        self.true_positives = self.true_positives + tp
        self.false_positives = self.false_positives + fp
        self.false_negatives = self.false_negatives + fn
        self.true_negatives = self.true_negatives + tn
        return self._auc(tp, fp, tn, fn)

    def result(self) -> float:
        return self._auc(self.true_positives, self.false_positives, self.true_negatives,
                         self.false_negatives)

    def _auc(self, tp: np.ndarray, fp: np.ndarray, tn: np.ndarray, fn: np.ndarray) -> float:
        tp, fp, tn, fn = (a.astype(np.float64) for a in (tp, fp, tn, fn))
        if self.curve == "PR" and self.summation_method == "interpolation":
            return _interpolate_pr_auc(tp, fp, fn)
        recall = _div(tp, tp + fn)
        if self.curve == "ROC":
            x, y = _div(fp, fp + tn), recall
        else:
            x, y = recall, _div(tp, tp + fp)
        if self.summation_method == "interpolation":
            heights = (y[:-1] + y[1:]) / 2.0
        elif self.summation_method == "minoring":
            heights = np.minimum(y[:-1], y[1:])
        else:
            heights = np.maximum(y[:-1], y[1:])
        return float(np.sum((x[:-1] - x[1:]) * heights))

    def get_config(self):
        cfg: dict[str, Any] = {"name": self.name, "num_thresholds": self.num_thresholds,
                               "curve": self.curve, "summation_method": self.summation_method,
                               "from_logits": self.from_logits}
        if self._custom is not None:
            cfg["thresholds"] = list(self._custom)
        return cfg


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a / b`` with 0 where ``b`` is 0 (Keras' divide_no_nan)."""
    out = np.zeros_like(a)
    np.divide(a, b, out=out, where=b != 0)
    return out


def _interpolate_pr_auc(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> float:
    """Keras' PR-AUC: tp and p = tp + fp linear between neighbouring thresholds (Davis &
    Goadrich 2006), integrated in closed form."""
    dtp = tp[:-1] - tp[1:]
    p = tp + fp
    dp = p[:-1] - p[1:]
    slope = _div(dtp, np.maximum(dp, 0))
    intercept = tp[1:] - slope * p[1:]
    both = (p[:-1] > 0) & (p[1:] > 0)
    ratio = np.where(both, _div(p[:-1], np.maximum(p[1:], 0)), 1.0)
    with np.errstate(divide="ignore"):
        log_ratio = np.log(np.where(ratio > 0, ratio, 1.0))
    inc = _div(slope * (dtp + intercept * log_ratio), np.maximum(tp[1:] + fn[1:], 0))
    return float(np.sum(inc))


class MeanAbsoluteError(Metric):
    """Mean of ``|y_true - y_pred|``: per sample over its values, then over samples (Keras'
    ``MeanAbsoluteError``). On logits the output activation is applied first (see the module
    docstring), so the error is that of the probabilities ``predict`` returns."""

    def __init__(self, name: str = "mean_absolute_error") -> None:
        super().__init__(name)

    def batch_values(self, y_true, y_pred, logits=False):
        p = _probabilities(y_pred, logits)
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
        p = _probabilities(y_pred, logits)
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


_TOP_RE = re.compile(r"^top_(\d+)(_accuracy|_categorical_accuracy)?$")
_CLASSES: dict[str, type[Metric]] = {
    c.__name__: c for c in (Accuracy, TopKAccuracy, TopKCategoricalAccuracy,
                            SparseTopKCategoricalAccuracy, Precision, Recall, AUC,
                            MeanAbsoluteError)
}
_BY_NAME: dict[str, type[Metric]] = {
    "top_k_categorical_accuracy": TopKCategoricalAccuracy,
    "sparse_top_k_categorical_accuracy": SparseTopKCategoricalAccuracy,
    "precision": Precision, "recall": Recall, "auc": AUC,
    "mae": MeanAbsoluteError, "mean_absolute_error": MeanAbsoluteError,
}


def get(identifier: Any) -> Metric:
    """Metric from a name (see the module docstring), a :class:`Metric`, or a config dict
    ``{"class_name": ..., "config": {...}}``. The metric's ``name`` is the name given."""
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Metric):
        raise TypeError(f"metric: pass an instance, {identifier.__name__}(), not the class")
    if callable(identifier):
        return MeanMetricWrapper(identifier)
    if isinstance(identifier, dict) and identifier.get("class_name") in _CLASSES:
        return _CLASSES[identifier["class_name"]](**identifier.get("config", {}))
    if not isinstance(identifier, str):
        raise TypeError(f"metric must be a name, a fastcnn.metrics.Metric or a function "
                        f"fn(y_true, y_pred) -> per-sample values, got {identifier!r}")
    key = identifier.lower()
    if key in ("accuracy", "acc"):
        return Accuracy(identifier)
    kinds = {"binary_accuracy": "binary", "sparse_categorical_accuracy": "sparse",
             "categorical_accuracy": "categorical"}
    if key in kinds:
        return Accuracy(identifier, kind=kinds[key])
    if key in _BY_NAME:
        return _BY_NAME[key](name=identifier)  # type: ignore[call-arg]
    if key in ("top_k", "top_k_accuracy"):
        return TopKAccuracy(5, name=identifier)
    m = _TOP_RE.match(key)
    if m and int(m.group(1)) >= 1:
        return TopKAccuracy(int(m.group(1)), name=identifier)
    raise ValueError(f"unknown metric {identifier!r}; expected 'accuracy', 'binary_accuracy', "
                     f"'sparse_categorical_accuracy', 'categorical_accuracy', 'top_k', "
                     f"'top_<k>', {', '.join(repr(k) for k in _BY_NAME)}, a "
                     f"fastcnn.metrics.Metric or a function fn(y_true, y_pred) -> values")


def get_list(identifiers: Any) -> list[Metric]:
    """Metrics for ``compile(metrics=...)``: None, one identifier or a list; names unique."""
    if identifiers is None:
        return []
    if isinstance(identifiers, str | Metric | dict) or callable(identifiers):
        identifiers = [identifiers]
    out = [get(i) for i in identifiers]
    names = [m.name for m in out]
    dup = {n for n in names if names.count(n) > 1}
    if dup or "loss" in names:
        raise ValueError(f"metric names must be unique and not 'loss', got {names}")
    return out
