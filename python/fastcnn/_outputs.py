"""Several inputs and outputs: how a model's data and compile settings are arranged per input /
output (used by :class:`fastcnn.functional.Functional`).

* :func:`arrange`: the user's list (in the model's order) or dict (keyed by the input / output
  names) as a list in the model's order, with a ValueError naming the model, what it takes and
  what came when the count or the keys are wrong.
* :func:`compile_outputs`: ``compile``'s ``loss`` (one for every output, a list, or a dict by
  output name), ``loss_weights`` (list or dict) and ``metrics`` / ``weighted_metrics`` (one
  list for every output, a list of lists, or a dict by output name), as Keras takes them, into
  a :class:`fastcnn.losses.OutputLosses` and the metrics: per output with a loss an
  ``<output>_loss`` entry (:class:`fastcnn.metrics.OutputLossMetric`), then each metric as
  ``<output>_<metric>`` (:class:`fastcnn.metrics.OutputMetric`).
* :func:`gather`: ``predict``'s batches of outputs joined per output, on the host.
* :func:`output_weights`: ``fit`` / ``evaluate`` / ``train_on_batch``'s ``sample_weight`` for
  a model with several outputs, as Keras takes it: one array (N,) for every output, or one per
  output as a list (None: that output unweighted) or a dict by output name (a missing output
  unweighted); the per-output form becomes an :class:`Arrays` of float32 weights (or None)
  that the batching slices with the data and that each output's loss and weighted metrics
  take their own entry of (:class:`fastcnn.losses.OutputLosses`,
  :class:`fastcnn.metrics.OutputMetric`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np

from . import losses as _losses
from . import metrics as _metrics
from ._arrays import as_array, is_cupy
from ._structure import Arrays

__all__ = ["arrange", "check_activations", "compile_outputs", "fused_flags", "gather",
           "output_weights", "pick_weight"]


def _describe(data: Any) -> str:
    if isinstance(data, Mapping):
        return f"a dict with keys {sorted(map(str, data))}"
    if isinstance(data, list | tuple):
        return f"a {type(data).__name__} of {len(data)}"
    shape = getattr(data, "shape", None)
    return f"one array of shape {tuple(shape)}" if shape is not None else type(data).__name__


def arrange(data: Any, names: list[str], model: str, what: str, who: str,
            optional: frozenset[str] = frozenset()) -> list[Any]:
    """``data`` (a list / tuple in the model's order, a dict keyed by ``names``, or
    :class:`Arrays`) as a list in ``names`` order; a dict may leave out the ``optional``
    names (None there).

    Args:
        names: the model's input (or output) names, in order.
        model: the model's name; what: ``"inputs"`` / ``"outputs"`` (for the messages).

    Raises:
        ValueError: a list of the wrong length, a dict with missing or unknown keys, or one
            array for several (the message names the model, its names and what came).
    """
    want = (f"model {model!r} has {len(names)} {what} {names}: pass a list of {len(names)} "
            f"arrays in that order or a dict keyed by those names")
    if isinstance(data, Arrays):
        data = data.arrays
    if isinstance(data, Mapping):
        unknown = sorted(str(k) for k in data if k not in names)
        missing = [n for n in names if n not in data and n not in optional]
        if unknown or missing:
            raise ValueError(f"{who}: {want}; got a dict with "
                             + (f"unknown keys {unknown}" if unknown else "")
                             + (" and " if unknown and missing else "")
                             + (f"missing keys {missing}" if missing else ""))
        return [data.get(n) for n in names]
    if isinstance(data, list | tuple) and len(data) == len(names) and not any(
            isinstance(d, int | float | np.number) for d in data):
        return list(data)
    raise ValueError(f"{who}: {want}; got {_describe(data)}")


def _per_output(spec: Any, names: list[str], model: str, arg: str, default: Any,
                flat: Any) -> list[Any]:
    """``compile``'s ``arg`` as one entry per output: ``flat(spec)`` for one value for all,
    a list of ``len(names)``, or a dict by output name (``default`` for the others)."""
    if isinstance(spec, Mapping):
        unknown = sorted(str(k) for k in spec if k not in names)
        if unknown:
            raise ValueError(f"compile: {arg} names {unknown}, which are not outputs of model "
                             f"{model!r}; its outputs are {names}")
        return [spec.get(n, default) for n in names]
    if isinstance(spec, list | tuple) and flat is None:
        if len(spec) != len(names):
            raise ValueError(f"compile: model {model!r} has {len(names)} outputs {names}; "
                             f"{arg} must be one entry per output (a list of {len(names)}) or "
                             f"a dict by output name, got a list of {len(spec)}")
        return list(spec)
    return [spec if flat is None else flat(spec) for _ in names]


def _metric_lists(spec: Any, names: list[str], model: str, arg: str) -> list[list[Any]]:
    """``metrics`` as a list of identifiers per output: one list for every output (each output
    gets its own copies), a list of lists (one per output) or a dict by output name."""
    if spec is None:
        return [[] for _ in names]
    nested = isinstance(spec, list | tuple) and bool(spec) and all(
        isinstance(s, list | tuple) or s is None for s in spec)
    if isinstance(spec, Mapping) or nested:
        per = _per_output(spec, names, model, arg, None, None)
    else:
        per = [copy.deepcopy(spec) for _ in names]
    return [[] if s is None else list(s) if isinstance(s, list | tuple) else [s] for s in per]


def compile_outputs(model: str, names: list[str], loss: Any, metrics: Any,
                    weighted_metrics: Any, loss_weights: Any) -> tuple[Any, list[Any], list[Any]]:
    """``(OutputLosses, metrics, weighted_metrics)`` for a model with outputs ``names`` from
    ``compile``'s arguments (see the module docstring). A saved model's settings come back as
    an :class:`~fastcnn.losses.OutputLosses` and ``OutputMetric`` objects, used as they are.

    Raises:
        ValueError: no loss for any output, an entry count that is not the number of outputs,
            a dict naming an unknown output, two metrics with one name.
    """
    if isinstance(loss, _losses.OutputLosses):
        if loss.output_names != names:
            raise ValueError(f"compile: the OutputLosses are for the outputs "
                             f"{loss.output_names}, model {model!r} has {names}")
        losses = loss
    else:
        per = _per_output(loss, names, model, "loss", None, None)
        weights = None if loss_weights is None else dict(zip(names, _per_output(
            loss_weights, names, model, "loss_weights", 1.0, None), strict=True))
        if all(p is None for p in per):
            raise ValueError(f"compile: model {model!r} needs a loss for at least one of its "
                             f"outputs {names}")
        losses = _losses.OutputLosses(dict(zip(names, per, strict=True)), weights)
    if loss_weights is not None and isinstance(loss, _losses.OutputLosses):
        raise ValueError("compile: pass loss_weights inside the OutputLosses, not both")
    built = []
    for arg, spec in (("metrics", metrics), ("weighted_metrics", weighted_metrics)):
        out: list[Any] = []
        if arg == "metrics":  # the <output>_loss entries first (Keras' order)
            out += [_metrics.OutputLossMetric(n, k, losses=losses)
                    for k, (n, lo) in enumerate(zip(names, losses.losses, strict=True))
                    if lo is not None]
        given = [m for m in (spec or []) if isinstance(m, _metrics.Metric)] \
            if isinstance(spec, list | tuple) else []
        if given and all(isinstance(m, _metrics.OutputMetric | _metrics.OutputLossMetric)
                         for m in given):  # a saved model's: already per output
            out += [m for m in given if isinstance(m, _metrics.OutputMetric)]
        else:
            for k, (n, ids) in enumerate(zip(names, _metric_lists(spec, names, model, arg),
                                             strict=True)):
                out += [_metrics.OutputMetric(m, n, k) for m in _metrics.get_list(ids)]
        built.append(out)
    taken = {m.name for m in built[0]}
    for m in built[1]:
        if m.name in taken:
            m.name = f"weighted_{m.name}"
    _metrics.get_list(built[0] + built[1])  # the names together: unique, not "loss"
    return losses, built[0], built[1]


def _output_layers(model: Any) -> list[tuple[int, Any, Any]]:
    """``(node, layer, its activation or None)`` per output of a graph model."""
    out = []
    for i in model._out_nodes:
        layer = model._graph[i].layer
        out.append((i, layer, getattr(layer, "activation", None) if layer.has_activation
                    else None))
    return out


def fused_flags(model: Any) -> tuple[bool, ...]:
    """Per output of a graph model with several outputs: is its activation fused into its
    compiled loss (softmax / sigmoid with the matching cross-entropy, ``from_logits=False``,
    an output node no other node consumes)?"""
    losses = getattr(model.loss, "losses", None) or [None] * len(model._out_nodes)
    return tuple(lo is not None and not lo.from_logits and act is not None
                 and act == lo.fused_activation and not model._consumers[i]
                 and bool(model._inputs_of[i])
                 for (i, _, act), lo in zip(_output_layers(model), losses, strict=True))


def check_activations(model: Any) -> None:
    """ValueError for an output whose loss has ``from_logits=True`` while its layer already
    applies softmax / sigmoid."""
    for (_, layer, act), n, lo in zip(_output_layers(model), model.output_names,
                                      model.loss.losses, strict=True):
        if lo is not None and lo.from_logits and act in ("softmax", "sigmoid"):
            raise ValueError(f"the loss of output {n!r} has from_logits=True but its layer "
                             f"{layer.name!r} already applies {act!r}; drop one of the two")


def gather(outs: list[list[Any]], count: int) -> list[np.ndarray]:
    """Per output, its batches joined on the batch axis as NumPy arrays (``outs``: per batch,
    the list of the outputs; ``count`` outputs)."""
    joined = []
    for k in range(count):
        parts = [o[k] for o in outs]
        if parts and is_cupy(parts[0]):
            import cupy

            joined.append(cupy.asnumpy(cupy.concatenate(parts, axis=0)))
        else:
            joined.append(np.concatenate(parts, axis=0))
    return joined


def _scalar_list(w: Any) -> bool:
    return isinstance(w, list | tuple) and all(
        isinstance(v, int | float | np.number) and not isinstance(v, bool) for v in w)


def output_weights(model: Any, sample_weight: Any, n: int, who: str) -> Any:
    """``sample_weight`` as the losses of ``model`` take it (see the module docstring): as it
    is for a model with one output, ``None`` or one array (a list of numbers is one array);
    for a list / tuple of per-output entries or a dict by output name, an :class:`Arrays`
    of float32 ``(n,)`` weights (None: that output unweighted), each checked.

    Raises:
        ValueError: a list with the wrong number of entries or a dict naming an unknown
            output, or an output's weights of another length than ``n`` (``n``: the number of
            samples of ``x``), not numbers, NaN / infinite or negative (the message names the
            output, e.g. ``sample_weight['reg']``).
    """
    names = list(getattr(model, "output_names", None) or [])
    if sample_weight is None or not getattr(model, "_multi_out", False):
        return sample_weight
    if isinstance(sample_weight, Arrays):
        if sample_weight.names == names:
            return sample_weight
        sample_weight = sample_weight.arrays
    if not isinstance(sample_weight, Mapping | list | tuple) or _scalar_list(sample_weight):
        return sample_weight  # one array for every output: each loss checks it
    try:
        per = arrange(sample_weight, names, model.name, "outputs", who, frozenset(names))
    except ValueError as e:
        raise ValueError(f"{e}; sample_weight is one array (N,) for every output or one per "
                         f"output (a list, or a dict by output name)") from None
    checked = []
    for name, w in zip(names, per, strict=True):
        if w is None:
            checked.append(None)
            continue
        arr = np.asarray(w) if isinstance(w, list | tuple) else as_array(
            w, f"sample_weight[{name!r}]", who)
        if arr.ndim == 0 or arr.shape[0] != n or arr.size != n:
            raise ValueError(f"{who}: sample_weight[{name!r}] (output {name!r} of model "
                             f"{model.name!r}) must have shape ({n},), one weight per sample "
                             f"of x, got shape {tuple(arr.shape)}")
        checked.append(_losses.as_sample_weight(arr, n, arr, f"{who}: sample_weight[{name!r}]"))
    return Arrays(checked, names, who)


def pick_weight(sample_weight: Any, index: int) -> Any:
    """Output ``index``'s weights: its entry of an :class:`Arrays` of per-output weights (None:
    unweighted), or the one array every output shares."""
    if isinstance(sample_weight, Arrays):
        return sample_weight.arrays[index]
    return sample_weight
