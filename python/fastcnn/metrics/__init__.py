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
device are moved to it). On the GPU the mean metrics (accuracy, top-k, MAE, functions)
accumulate on the device and ``result()`` reads them (one copy); ``update`` returns the batch's
value as a float, or as a 0-d device array inside ``fit``'s steps (a
:func:`fastcnn._deferred.scope`), where class-id checks are deferred too. Precision, recall and
AUC still copy their batch counts to the host at each update.
"""

from __future__ import annotations

import re
from typing import Any

from .base import Metric
from .confusion import AUC, Precision, Recall
from .mean import (
    Accuracy,
    MeanAbsoluteError,
    MeanMetricWrapper,
    SparseTopKCategoricalAccuracy,
    TopKAccuracy,
    TopKCategoricalAccuracy,
)
from .outputs import OutputLossMetric, OutputMetric

__all__ = [
    "AUC",
    "Accuracy",
    "MeanAbsoluteError",
    "MeanMetricWrapper",
    "Metric",
    "OutputLossMetric",
    "OutputMetric",
    "Precision",
    "Recall",
    "SparseTopKCategoricalAccuracy",
    "TopKAccuracy",
    "TopKCategoricalAccuracy",
    "get",
    "get_list",
]


_TOP_RE = re.compile(r"^top_(\d+)(_accuracy|_categorical_accuracy)?$")
_CLASSES: dict[str, type[Metric]] = {
    c.__name__: c for c in (Accuracy, TopKAccuracy, TopKCategoricalAccuracy,
                            SparseTopKCategoricalAccuracy, Precision, Recall, AUC,
                            MeanAbsoluteError, OutputLossMetric)
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
    if isinstance(identifier, dict) and identifier.get("class_name") == "OutputMetric":
        config = dict(identifier.get("config", {}))  # a saved several-output model's metric
        return OutputMetric(get(config.pop("metric", None)), **config)
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
