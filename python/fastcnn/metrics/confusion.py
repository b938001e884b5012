"""Metrics that count a confusion matrix over binary decisions: precision, recall and AUC
(ROC / PR, Keras's thresholds and interpolation).

On CuPy arrays the counts accumulate on the device: nothing is read back per batch inside
``fit`` (the batch's value is returned as a 0-d device array there, read at the progress bar's
refresh); :meth:`result` and the count attributes read the device once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .._arrays import array_module, is_cupy, to_host
from .._deferred import deferring
from .base import (
    Metric,
    binary_pairs,
    check_optional_int,
    class_column,
    probabilities,
    row_weights,
)


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
        self.top_k = check_optional_int(top_k, "top_k", who, 1)
        self.class_id = check_optional_int(class_id, "class_id", who, 0)
        super().__init__(name or who.lower())

    def reset(self) -> None:
        self._c: Any = np.zeros(3, np.int64)  # tp, fp, fn (float64 once weighted; CuPy on GPU)

    @property
    def true_positives(self) -> float:
        """Positive decisions on positive labels since :meth:`reset` (an int unweighted)."""
        return self._host_counts()[0]

    @property
    def false_positives(self) -> float:
        """Positive decisions on negative labels since :meth:`reset`."""
        return self._host_counts()[1]

    @property
    def false_negatives(self) -> float:
        """Negative decisions on positive labels since :meth:`reset`."""
        return self._host_counts()[2]

    def _host_counts(self) -> tuple[float, float, float]:
        c = to_host(self._c)  # one device-to-host copy on the GPU
        if c.dtype.kind in "iu":
            return int(c[0]), int(c[1]), int(c[2])
        return float(c[0]), float(c[1]), float(c[2])

    def _counts(self, y_true: Any, y_pred: Any, logits: bool | str,
                sample_weight: Any = None) -> Any:
        """This batch's (tp, fp, fn) as a (3,) array on the predictions' device (int64, or
        float64 with sample weights)."""
        who = type(self).__name__
        if not is_cupy(y_pred):
            y_pred = np.asarray(y_pred)
        pos, _ = binary_pairs(y_true, y_pred, who)
        p = probabilities(y_pred, logits)
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
        pred = class_column(pred, self.class_id, who)
        pos = class_column(pos, self.class_id, who)
        if sample_weight is None:
            return xp.stack([xp.sum(pred & pos), xp.sum(pred & ~pos),
                             xp.sum(~pred & pos)]).astype(np.int64)
        w = row_weights(sample_weight, pred, who)  # every decision of sample i weighs w_i
        return xp.stack([xp.sum((pred & pos) * w), xp.sum((pred & ~pos) * w),
                         xp.sum((~pred & pos) * w)])

    def update(self, y_true, y_pred, logits=False, sample_weight=None):
        c = self._counts(y_true, y_pred, logits, sample_weight)
        if is_cupy(c):
            if not is_cupy(self._c):
                self._c = array_module(c).asarray(self._c)
            self._c = self._c + c
            if deferring():  # fit's steps: the batch's value stays on the device too
                return self._device_value(c)
        else:
            self._c = self._c + c
        c = to_host(c)
        return self._value(*(v.item() for v in c))

    def result(self) -> float:
        return self._value(*self._host_counts())

    def _value(self, tp: float, fp: float, fn: float) -> float:
        num, den = self._ratio(tp, fp, fn)
        return num / den if den else 0.0

    def _device_value(self, c: Any) -> Any:
        """:meth:`_value` of device counts (3,), as a 0-d float64 device array (no read)."""
        xp = array_module(c)
        c = c.astype(np.float64)
        num, den = self._ratio(c[0], c[1], c[2])
        return xp.where(den != 0, num / xp.where(den != 0, den, 1.0), 0.0)

    def _ratio(self, tp: Any, fp: Any, fn: Any) -> tuple[Any, Any]:
        """(numerator, denominator) of the metric from the counts."""
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

    def _ratio(self, tp, fp, fn):
        return tp, tp + fp


class Recall(_ConfusionMetric):
    """``tp / (tp + fn)`` over everything since :meth:`reset` (0 when there is no positive
    label), Keras' ``Recall``; arguments as :class:`Precision` (default name ``"recall"``)."""

    def _ratio(self, tp, fp, fn):
        return tp, tp + fn


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
        pos, _ = binary_pairs(y_true, y_pred, "AUC")
        p = probabilities(y_pred, logits or ("sigmoid" if self.from_logits else False))
        xp = array_module(p)
        w = None if sample_weight is None else xp.broadcast_to(
            row_weights(sample_weight, p, "AUC"), p.shape).ravel()
        p = p.astype(np.float32).ravel()
        pos = pos.ravel()
        t = self.num_thresholds
        # idx = how many thresholds lie strictly below the prediction: p > thr[j] <=> j < idx
        thr = xp.asarray(self.thresholds)
        idx = xp.searchsorted(thr, p, side="left")
        idx = xp.where(xp.isnan(p), 0, idx)  # NaN is above no threshold
        if w is None:
            hist = xp.stack([xp.bincount(idx[pos], minlength=t + 1),
                             xp.bincount(idx[~pos], minlength=t + 1)]).astype(np.int64)
        else:
            hist = xp.stack([xp.bincount(idx[pos], weights=w[pos], minlength=t + 1),
                             xp.bincount(idx[~pos], weights=w[~pos], minlength=t + 1)])
        device = is_cupy(hist)
        if not device:
            hist = np.asarray(hist)
        above = xp.cumsum(hist[:, ::-1], axis=1)[:, ::-1][:, 1:]  # above[:, j]: idx > j
        tp, fp = above[0], above[1]
        fn, tn = hist[0].sum() - tp, hist[1].sum() - fp
        if device and not is_cupy(self.true_positives):  # the first batch, or a restored state
            for k in ("true_positives", "false_positives", "false_negatives", "true_negatives"):
                setattr(self, k, xp.asarray(getattr(self, k)))
        self.true_positives = self.true_positives + tp
        self.false_positives = self.false_positives + fp
        self.false_negatives = self.false_negatives + fn
        self.true_negatives = self.true_negatives + tn
        if device and deferring():  # fit's steps: the batch's AUC stays on the device
            return self._auc(xp, tp, fp, tn, fn)
        return float(self._auc(xp, tp, fp, tn, fn))  # on the GPU, one read

    def result(self) -> float:
        """The AUC of everything since :meth:`reset` (on the GPU: the counts are read once)."""
        c = [self.true_positives, self.false_positives, self.true_negatives,
             self.false_negatives]
        if any(is_cupy(a) for a in c):
            xp = array_module(next(a for a in c if is_cupy(a)))
            c = list(to_host(xp.stack([xp.asarray(a, dtype=np.float64) for a in c])))
        return float(self._auc(np, *c))

    def _auc(self, xp: Any, tp: Any, fp: Any, tn: Any, fn: Any) -> Any:
        """The area from the counts at each threshold (t,), as a 0-d array of ``xp``."""
        tp, fp, tn, fn = (a.astype(np.float64) for a in (tp, fp, tn, fn))
        if self.curve == "PR" and self.summation_method == "interpolation":
            return _interpolate_pr_auc(xp, tp, fp, fn)
        recall = _div(xp, tp, tp + fn)
        if self.curve == "ROC":
            x, y = _div(xp, fp, fp + tn), recall
        else:
            x, y = recall, _div(xp, tp, tp + fp)
        if self.summation_method == "interpolation":
            heights = (y[:-1] + y[1:]) / 2.0
        elif self.summation_method == "minoring":
            heights = xp.minimum(y[:-1], y[1:])
        else:
            heights = xp.maximum(y[:-1], y[1:])
        return xp.sum((x[:-1] - x[1:]) * heights)

    def get_config(self):
        cfg: dict[str, Any] = {"name": self.name, "num_thresholds": self.num_thresholds,
                               "curve": self.curve, "summation_method": self.summation_method,
                               "from_logits": self.from_logits}
        if self._custom is not None:
            cfg["thresholds"] = list(self._custom)
        return cfg


def _div(xp: Any, a: Any, b: Any) -> Any:
    """``a / b`` with 0 where ``b`` is 0 (Keras' divide_no_nan), on ``xp``'s device."""
    nz = b != 0
    return xp.where(nz, a / xp.where(nz, b, 1.0), 0.0)


def _interpolate_pr_auc(xp: Any, tp: Any, fp: Any, fn: Any) -> Any:
    """Keras' PR-AUC: tp and p = tp + fp linear between neighbouring thresholds (Davis &
    Goadrich 2006), integrated in closed form; a 0-d array of ``xp``."""
    dtp = tp[:-1] - tp[1:]
    p = tp + fp
    dp = p[:-1] - p[1:]
    slope = _div(xp, dtp, xp.maximum(dp, 0))
    intercept = tp[1:] - slope * p[1:]
    both = (p[:-1] > 0) & (p[1:] > 0)
    ratio = xp.where(both, _div(xp, p[:-1], xp.maximum(p[1:], 0)), 1.0)
    log_ratio = xp.log(xp.where(ratio > 0, ratio, 1.0))
    inc = _div(xp, slope * (dtp + intercept * log_ratio), xp.maximum(tp[1:] + fn[1:], 0))
    return xp.sum(inc)
