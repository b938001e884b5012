"""``evaluate`` and ``predict`` (:class:`fastcnn.trainer.Trainer`'s methods of those names call
them), and what ``fit``'s training step and validation share with them: a batch's loss
(:func:`_loss`), what the metrics are told about logits, updating the metrics.

Both run the model batch by batch in inference mode (``model._forward(xb, training=False)``)
over the sources of :mod:`fastcnn._batches`; on the GPU ``evaluate``'s loss, metrics and checks
stay on the device until the end (:mod:`fastcnn._deferred`), and ``predict`` gathers the outputs
there. Several outputs: one entry per output (:mod:`fastcnn._outputs`). Under
:mod:`fastcnn.distributed` each rank evaluates its shard and the results are reduced / gathered
in rank order.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _deferred
from ._arrays import is_cupy, is_torch
from ._batches import BatchSource, check_steps, eval_batches, make_source, source_kind
from ._outputs import output_weights
from .distributed import _fit as _dist  # identity at world size 1

if TYPE_CHECKING:  # the model is known here only by the methods called on it
    from .model import Sequential

__all__ = ["evaluate", "predict"]


def _loss(loss_fn: Any, out: Any, y: Any, fused: bool, w: Any) -> tuple[float, Any]:
    """``loss_fn.value_and_grad``, with ``sample_weight`` only when there are weights (a custom
    Loss written without it still trains unweighted; weighted, it is a clear TypeError)."""
    if w is None:
        return loss_fn.value_and_grad(out, y, logits=fused)  # type: ignore[no-any-return]
    params = inspect.signature(loss_fn.value_and_grad).parameters
    if "sample_weight" not in params and not any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        raise TypeError(f"the loss {loss_fn!r} takes no sample weights: its value_and_grad "
                        f"has no sample_weight argument; add one (sum(w * l) / N, see "
                        f"fastcnn.losses) or train without sample_weight / class_weight")
    return loss_fn.value_and_grad(out, y, logits=fused,  # type: ignore[no-any-return]
                                  sample_weight=w)


def _metric_logits(loss_fn: Any, logits: bool) -> str | bool:
    """What a metric's ``update(..., logits=)`` is told about the outputs: the activation that
    turns them into probabilities (``"softmax"`` / ``"sigmoid"``, the loss's) when they are
    logits, else False. A metric can't tell a several-column sigmoid output from a softmax one
    by its shape, so it is told which. Several outputs (``logits`` one flag per output): one
    entry per output, from its own loss (:class:`fastcnn.losses.OutputLosses`)."""
    if isinstance(logits, tuple):
        return tuple(False if lo is None else _metric_logits(lo, f)
                     for lo, f in zip(loss_fn.losses, logits, strict=True))
    if logits or loss_fn.from_logits:
        return loss_fn.fused_activation or bool(logits or loss_fn.from_logits)
    return False


def predict(model: Sequential, x: Any, batch_size: int = 32, verbose: int = 0,
            steps: int | None = None) -> Any:
    """:meth:`fastcnn.Sequential.predict`: outputs (N, *output_shape) float32, batch by batch (on
    the GPU gathered on the device), as a NumPy array, or a torch tensor on ``x``'s device when
    ``x`` is one (a CUDA tensor's outputs never leave the GPU). ``steps`` batches at most."""
    verbose = _dist.verbosity(verbose)
    x, _ = model._pack_data(x)  # several inputs: one Arrays, sliced together
    source = make_source(x, None, None, batch_size, check_steps(steps, "steps", "predict"),
                         "predict")
    outs = []
    for xb, _, _ in eval_batches(model, source, "predict", verbose, need_y=False):
        out = model._forward(xb, False, False)
        if is_cupy(out) and (out is xb or out.base is not None):
            out = out.copy()  # a view of an upload buffer, which is reused
        outs.append(out)
    if getattr(model, "_multi_out", False):  # several outputs: a list / dict of arrays
        return _multi_predictions(model, outs)
    if not outs:
        model._require_built()
        result: Any = np.zeros((0, *model.output_shape), dtype=np.float32)  # type: ignore[misc]
    elif is_cupy(outs[0]):
        import cupy

        result = cupy.concatenate(outs, axis=0)
        if not (is_torch(x) and x.is_cuda):
            result = cupy.asnumpy(result)
    else:
        result = np.concatenate(outs, axis=0)
    result = _dist.gather_predictions(result)  # every rank's rows, in order
    if not is_torch(x):
        return result
    import torch

    if is_cupy(result):
        return torch.from_dlpack(result)
    return torch.from_numpy(result).to(x.device)


def _multi_predictions(model: Any, outs: list[Any]) -> Any:
    """``predict``'s result for a model with several outputs: per output its batches joined
    (NumPy arrays), as a list or a dict by output key (:mod:`fastcnn._outputs`)."""
    from . import _outputs

    if not outs:
        model._require_built()
        return model._present([np.zeros((0, *s), np.float32) for s in model.output_shape])
    return model._present(_outputs.gather(outs, len(model.output_names)))


def evaluate(model: Sequential, x: Any, y: Any = None, batch_size: int = 32, verbose: int = 0,
             return_dict: bool = False, sample_weight: Any = None,
             steps: int | None = None) -> float | list[float] | dict[str, float]:
    """:meth:`fastcnn.Sequential.evaluate`: the loss (no metrics), ``[loss, metric, ...]`` in
    compile order, or ``{"loss": ..., "<metric>": ...}`` with ``return_dict=True``."""
    model._require_compiled("evaluate")
    x, y = model._pack_data(x, y)
    if x is not None and source_kind(x) == "arrays" and y is None:
        raise ValueError("evaluate: y is required with array inputs")
    sample_weight = _array_weights(model, x, sample_weight, "evaluate")
    source = make_source(x, y, sample_weight, batch_size,
                         check_steps(steps, "steps", "evaluate"), "evaluate")
    logs = _evaluate_logs(model, source, _dist.verbosity(verbose), "evaluate")
    if return_dict:
        return logs
    if len(logs) == 1:
        return logs["loss"]
    return list(logs.values())


def _array_weights(model: Any, x: Any, sample_weight: Any, who: str) -> Any:
    """``sample_weight`` for arrays ``x`` as :func:`fastcnn._outputs.output_weights` gives it
    (per-output weights of a model with several outputs, checked against ``len(x)``); as it
    is otherwise (the batching checks it)."""
    if sample_weight is None or x is None or source_kind(x) != "arrays":
        return sample_weight
    return output_weights(model, sample_weight, len(x), who)


def _all_metrics(model: Sequential) -> list[tuple[Any, bool]]:
    """``(metric, weighted)``: the model's metrics (never weighted, as Keras) and its
    ``weighted_metrics`` (weighted by the sample / class weights)."""
    return ([(m, False) for m in model.metrics]
            + [(m, True) for m in model.weighted_metrics])


def _update_metrics(metrics: list[tuple[Any, bool]], yb: Any, out: Any, logits: Any,
                    wb: Any) -> None:
    for m, weighted in metrics:
        if weighted and wb is not None:
            m.update(yb, out, logits=logits, sample_weight=wb)
        else:
            m.update(yb, out, logits=logits)


def _evaluate_logs(model: Sequential, source: BatchSource, verbose: int,
                   who: str) -> dict[str, float]:
    loss_fn = model.loss
    assert loss_fn is not None
    fused = model.output_fused
    total, count = 0.0, 0
    metrics = _all_metrics(model)
    for m, _ in metrics:
        m.reset()
    with _deferred.scope():  # GPU: device values and checks, read once at the end
        for i, (xb, yb, wb) in enumerate(eval_batches(model, source, who, verbose,
                                                      need_y=True)):
            _deferred.set_where(f"{who} batch {i + 1}")
            out = model._forward(xb, False, fused)
            value, _ = _loss(loss_fn, out, yb, fused, wb)
            n = len(xb)
            total += value * n
            count += n
            _update_metrics(metrics, yb, out, _metric_logits(loss_fn, fused), wb)
    total = float(total)
    total, count = _dist.reduce_evaluation(total, count, metrics)  # over the ranks
    if count == 0:
        if source.exhausted:
            raise ValueError(f"{who}: the generator is exhausted (a generator can be read "
                             f"once): pass validation_steps / steps with a generator that "
                             f"yields forever, or a Sequence or dataset")
        raise ValueError(f"{who}: no samples")
    logs = {"loss": total / count}
    logs.update({m.name: m.result() for m, _ in metrics})
    return logs
