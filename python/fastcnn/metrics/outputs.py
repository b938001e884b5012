"""The metrics of a model with several outputs: :class:`OutputMetric` (a metric of one output,
named ``<output>_<metric>`` as Keras names it) and :class:`OutputLossMetric` (the
``<output>_loss`` entry of the logs).

Both are updated as every metric is, ``update(y_true, y_pred, logits, sample_weight)``, with
the model's outputs as a list, its targets as a list or :class:`fastcnn._structure.Arrays` and
``logits`` as one entry per output; each picks its own output (and, from per-output sample
weights, an :class:`~fastcnn._structure.Arrays`, its own weights). ``compile`` builds them
(:mod:`fastcnn._outputs`).
"""

from __future__ import annotations

from typing import Any

from .._structure import Arrays, parts
from .base import Metric

__all__ = ["OutputLossMetric", "OutputMetric"]


def _pick(logits: Any, index: int) -> Any:
    return logits[index] if isinstance(logits, tuple | list) else logits


class OutputMetric(Metric):
    """``metric`` computed on output ``index`` (named ``output``) of a several-output model.

    Args:
        metric: a :class:`Metric` (its own state holds the counts).
        output: the output's name.
        index: the output's position in the model's outputs.
        name: the log name (``"<output>_<metric name>"`` by default).
    """

    def __init__(self, metric: Metric, output: str, index: int, name: str | None = None) -> None:
        if not isinstance(metric, Metric):
            raise TypeError(f"OutputMetric: metric must be a fastcnn.metrics.Metric, got "
                            f"{metric!r}")
        self.metric, self.output, self.index = metric, str(output), int(index)
        super().__init__(name or f"{output}_{metric.name}")

    def reset(self) -> None:
        self.metric.reset()

    def update(self, y_true: Any, y_pred: Any, logits: Any = False,
               sample_weight: Any = None) -> float:
        y, p = parts(y_true)[self.index], list(y_pred)[self.index]
        if isinstance(sample_weight, Arrays):  # per-output weights: this output's (or None)
            sample_weight = sample_weight.arrays[self.index]
        if sample_weight is None:
            return self.metric.update(y, p, logits=_pick(logits, self.index))
        return self.metric.update(y, p, logits=_pick(logits, self.index),
                                  sample_weight=sample_weight)

    def result(self) -> float:
        return self.metric.result()

    def get_config(self) -> dict[str, Any]:
        return {"metric": {"class_name": type(self.metric).__name__,
                           "config": self.metric.get_config()},
                "output": self.output, "index": self.index, "name": self.name}


class OutputLossMetric(Metric):
    """The mean over the batches (weighted by their sizes, as the ``loss`` entry) of output
    ``index``'s own loss, as the model's :class:`fastcnn.losses.OutputLosses` computed it for
    each batch: fit / evaluate compute the loss of a batch, then update the metrics on it.

    Args:
        output: the output's name; index: its position.
        losses: the compiled :class:`~fastcnn.losses.OutputLosses` (set by ``compile``).
        name: the log name (``"<output>_loss"``).
    """

    def __init__(self, output: str, index: int, name: str | None = None,
                 losses: Any = None) -> None:
        self.output, self.index, self.losses = str(output), int(index), losses
        super().__init__(name or f"{output}_loss")

    def update(self, y_true: Any, y_pred: Any, logits: Any = False,
               sample_weight: Any = None) -> float:
        value = None if self.losses is None else self.losses.last_values[self.index]
        if value is None:
            raise RuntimeError(f"{self.name}: no loss was computed for output "
                               f"{self.output!r} on this batch (compile the model first)")
        n = len(list(y_pred)[self.index])
        self._total += value * n
        self._count += n
        return float(value)

    def get_config(self) -> dict[str, Any]:
        return {"output": self.output, "index": self.index, "name": self.name}
