"""The model-facing training methods: :class:`Trainer`, the mixin every model inherits (Keras 3's
``Trainer``): ``fit`` / ``evaluate`` / ``predict`` around :mod:`fastcnn.training`'s functions and
the ``*_on_batch`` methods. It never imports :mod:`fastcnn.model` (the models import it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _layout
from . import callbacks as _callbacks
from ._arrays import as_array, is_cupy
from ._batches import source_kind
from ._outputs import output_weights
from .evaluation import _loss, _metric_logits, evaluate, predict
from .training import fit, train_step

if TYPE_CHECKING:
    from .model import Sequential


class Trainer:
    """The training methods of a model: :class:`fastcnn.Sequential` inherits them (Keras 3's
    ``Model(Trainer, ...)`` layout): fit / evaluate / predict call fastcnn.training's functions of
    those names, the ``*_on_batch`` methods one step; this module never imports the model."""

    def fit(self, x: Any = None, y: Any = None, batch_size: int = 32, epochs: int = 1,
            verbose: int = 1, callbacks: list[_callbacks.Callback] | None = None,
            validation_split: float = 0.0, validation_data: Any = None, shuffle: bool = True,
            seed: int | None = None, initial_epoch: int = 0, class_weight: Any = None,
            sample_weight: Any = None, steps_per_epoch: int | None = None,
            validation_steps: int | None = None, validation_batch_size: int | None = None,
            validation_freq: Any = 1,
            data_format: str = "channels_first",
            cuda_graph: Any = "auto") -> _callbacks.History:
        """Train for ``epochs`` epochs: one :func:`train_step` per batch (:mod:`fastcnn.training`'s
        docstring gives the exact steps and the rules of generators, steps and weights).

        Args:
            x, y: arrays (N, *input_shape) and labels (N, ...), or ``x`` a dataset object
                (iterable of ``(x_batch, y_batch)`` with ``__len__``), a Sequence-style object
                (``__getitem__(i)`` + ``__len__``) or a generator / iterator of batches, and
                ``y`` None; any batch may be ``(x, y, sample_weight)``. A graph model with
                several inputs / outputs takes lists (model order) or dicts (by
                ``input_names`` / ``output_names``) of arrays, sliced with one shuffle.
            batch_size: samples per batch (arrays only).
            epochs: train until this epoch index (``initial_epoch`` to ``epochs - 1``).
            verbose: 0 silent, 1 a tqdm progress bar per epoch with the running loss and
                metrics, 2 one line per epoch.
            callbacks: :mod:`fastcnn.callbacks` objects.
            validation_split: fraction of the arrays held out (the last samples) for
                validation; ignored when ``validation_data`` is given.
            validation_data: ``(x_val, y_val)``, ``(x_val, y_val, sample_weight_val)``, a
                dataset, a Sequence or a generator, evaluated after every epoch (``val_loss``,
                ``val_<metric>``; see ``validation_freq``).
            shuffle: reshuffle the arrays every epoch (every pass with ``steps_per_epoch``).
            seed: seed of the shuffling generator (``np.random.default_rng(seed)``).
            initial_epoch: the first epoch's index (to resume training).
            class_weight: ``{class id: weight}``: each sample's loss is weighted by its class's
                weight (missing classes: 1.0); not together with sample weights.
            sample_weight: per-sample loss weights (N,), arrays only (a dataset or generator
                yields ``(x, y, w)`` instead): loss ``sum(w * l) / batch_size``.
            steps_per_epoch: batches per epoch, taken from a pass over the data that continues
                across epochs (required for an infinite generator).
            validation_steps: batches per validation (same rule).
            validation_batch_size: batch size of validation arrays (default ``batch_size``).
            validation_freq: validate every n-th epoch (an int) or after the listed 1-based
                epochs.
            data_format: ``"channels_first"`` (N, C, H, W: fastcnn's layout) or
                ``"channels_last"`` (N, H, W, C, e.g. Keras' or PIL's): ``x`` and the
                validation inputs are converted to NCHW float32 once (arrays: one copy before
                training; a dataset, Sequence or generator: each batch as it comes).
            cuda_graph: ``"auto"`` (a GPU model replays each batch shape's step as one CUDA
                graph: :class:`fastcnn.training.CompiledStep`; the same bits as eager), True
                (the same, a ValueError on a CPU model) or False (eager steps).

        Returns:
            :class:`fastcnn.callbacks.History` (also kept as ``model.history``).

        Raises:
            NonFiniteLossError: the loss became NaN / inf (names epoch and batch).
        """
        x, validation_data = _nchw_fit(self, x, validation_data, data_format)
        return fit(self, x, y, batch_size, epochs, verbose,  # type: ignore[arg-type]
                   callbacks, validation_split, validation_data, shuffle, seed, initial_epoch,
                   class_weight, sample_weight, steps_per_epoch, validation_steps,
                   validation_batch_size, validation_freq, cuda_graph)

    def evaluate(self, x: Any, y: Any = None, batch_size: int = 32, verbose: int = 0,
                 return_dict: bool = False, sample_weight: Any = None,
                 steps: int | None = None,
                 data_format: str = "channels_first") -> float | list[float] | dict[str, float]:
        """Loss and metrics over ``(x, y)``, a dataset, a Sequence or a generator.

        Args:
            sample_weight: per-sample loss weights (N,) for arrays (Keras' rule, as ``fit``).
            steps: evaluate this many batches (required for an infinite generator).
            data_format: ``"channels_first"`` or ``"channels_last"`` (as :meth:`fit`).

        Returns:
            the loss (no metrics), ``[loss, metric, ...]`` in compile order, or a dict
            ``{"loss": ..., "<metric>": ...}`` with ``return_dict=True``.
        """
        x = _nchw(self, x, data_format, "evaluate")
        return evaluate(self, x, y, batch_size, verbose,  # type: ignore[arg-type]
                        return_dict, sample_weight, steps)

    def predict(self, x: Any, batch_size: int = 32, verbose: int = 0,
                steps: int | None = None, data_format: str = "channels_first") -> Any:
        """Outputs (probabilities for a softmax / sigmoid output) for ``x`` (an array of any
        kind, a list, or a dataset, Sequence or generator yielding ``(x_batch, y_batch)`` or
        ``x_batch``), batch by batch; ``steps`` batches at most (required for an infinite
        generator); ``data_format="channels_last"`` takes (N, H, W, C) images (as :meth:`fit`).

        Returns:
            float32 NumPy array (N, *output_shape), also for a model on the GPU (its outputs
            are gathered on the device and copied to the host once, at the end); a torch
            tensor on ``x``'s device when ``x`` is a torch tensor.
        """
        x = _nchw(self, x, data_format, "predict")
        return predict(self, x, batch_size, verbose, steps)  # type: ignore[arg-type]

    def train_on_batch(self: Sequential, x: Any, y: Any, return_dict: bool = False,
                       data_format: str = "channels_first", sample_weight: Any = None,
                       ) -> float | list[float] | dict[str, float]:
        """One :func:`train_step` on the batch ``x`` (N, *input_shape), ``y`` (N, ...);
        ``data_format="channels_last"``: ``x`` is (N, H, W, C), converted first;
        ``sample_weight``: per-sample loss weights (N,), as :meth:`fit` takes them (for
        several outputs also one per output, a list or a dict by output name); the
        ``weighted_metrics`` then take them too.

        Returns, as Keras (metrics reset first: the values are this batch's), Python floats:
        the loss (no metrics), ``[loss, metric, ...]`` in compile order, or ``{"loss": ...,
        "<metric>": ...}`` with ``return_dict=True``; the loss is the one before the update."""
        built = self.built
        x = _batch_nchw(self, x, data_format, "train_on_batch")
        y = self._targets(y, "train_on_batch")
        n = len(self._input(x, "train_on_batch")) if sample_weight is not None else 0
        w = output_weights(self, sample_weight, n, "train_on_batch")
        step = train_step(self, x, y, sample_weight=w)
        if not built and not _several_inputs(self, x, data_format, "train_on_batch"):
            _layout.warn_if_channels_last(self, as_array(x), "train_on_batch")
        return self._batch_logs(y, step.outputs, step.loss, step.logits, return_dict, w)

    def test_on_batch(self: Sequential, x: Any, y: Any, return_dict: bool = False,
                      data_format: str = "channels_first", sample_weight: Any = None,
                      ) -> float | list[float] | dict[str, float]:
        """Loss and metrics of one batch, no update; returns what :meth:`train_on_batch` does
        (``data_format`` and ``sample_weight`` as there)."""
        loss_fn, _ = self._require_compiled("test_on_batch")
        y = self._targets(y, "test_on_batch")
        xb = self._input(_batch_nchw(self, x, data_format, "test_on_batch"), "test_on_batch")
        built = self.built
        self._ensure_built(xb)
        if not built:
            _layout.warn_if_channels_last(self, xb, "test_on_batch")
        out = self._forward(self._on_device(xb), False, self.output_fused)
        w = output_weights(self, sample_weight, len(xb), "test_on_batch")
        if w is None:
            value, _ = loss_fn.value_and_grad(out, y, logits=self.output_fused)
        else:
            value, _ = _loss(loss_fn, out, y, self.output_fused, w)
        return self._batch_logs(y, out, value, self.output_fused, return_dict, w)

    def predict_on_batch(self: Sequential, x: Any,
                         data_format: str = "channels_first") -> np.ndarray:
        """Outputs of one forward pass on the batch ``x`` (N, *input_shape): a float32 NumPy
        array (N, *output_shape), also for a model on the GPU (as Keras);
        ``data_format="channels_last"``: ``x`` is (N, H, W, C), converted first."""
        built = self.built
        x = _batch_nchw(self, x, data_format, "predict_on_batch")
        out = self(x)
        if not built and not _several_inputs(self, x, data_format, "predict_on_batch"):
            _layout.warn_if_channels_last(self, as_array(x), "predict_on_batch")
        return out.get() if is_cupy(out) else out

    def _batch_logs(self: Sequential, y: Any, out: Any, value: float, logits: bool,
                    return_dict: bool, sample_weight: Any = None,
                    ) -> float | list[float] | dict[str, float]:
        logs = {"loss": float(value)}
        for m in self.metrics:
            m.reset()
            m.update(y, out, logits=_metric_logits(self.loss, logits))
            logs[m.name] = m.result()
        for m in self.weighted_metrics:  # as fit logs them (unweighted without weights)
            m.reset()
            if sample_weight is None:
                m.update(y, out, logits=_metric_logits(self.loss, logits))
            else:
                m.update(y, out, logits=_metric_logits(self.loss, logits),
                         sample_weight=sample_weight)
            logs[m.name] = m.result()
        if return_dict:
            return logs
        return logs["loss"] if len(logs) == 1 else list(logs.values())


def _several_inputs(model: Any, x: Any, data_format: str, who: str) -> bool:
    """Whether ``x`` is a graph model's inputs by name or in a list of several (no layout check,
    which is per image array); ``data_format="channels_last"`` is then a ValueError (convert
    each image input with :func:`fastcnn._layout.to_channels_first`)."""
    names = getattr(model, "input_names", None) or ()
    if not names or (len(names) == 1 and not isinstance(x, Mapping)):
        return False
    if _layout.check_data_format(data_format, who) == "channels_last":
        raise ValueError(f'{who}: data_format="channels_last" converts one image array; this '
                         f"model takes inputs {list(names)} by name or in a list: "
                         f"convert each image input with fastcnn._layout.to_channels_first(x) "
                         f"and pass the list / dict channels-first")
    return True


def _nchw(model: Any, x: Any, data_format: str, who: str) -> Any:
    """``x`` (arrays, a dataset, a Sequence or a generator) in NCHW for ``data_format``
    (:func:`fastcnn._layout.channels_first_data`; unchanged for ``"channels_first"``), arrays
    checked against a built model's input shape (:func:`fastcnn._layout.check_input_layout`)."""
    if x is None or _several_inputs(model, x, data_format, who):
        return x
    kind = source_kind(x)
    if _layout.check_data_format(data_format, who) == "channels_last":
        x = _layout.channels_first_data(x, data_format, who, kind, model)
    if kind == "arrays":  # checked here, where the user's kind is known (for the hint)
        _layout.check_input_layout(model, as_array(x, "x", who), who, x)
    return x


def _nchw_fit(model: Any, x: Any, validation_data: Any, data_format: str) -> tuple[Any, Any]:
    """``fit``'s ``x`` and ``validation_data`` in NCHW for ``data_format``; arrays ``x`` checked
    against a built model's input shape, or the model built from them (and a warning when they
    look channels-last: :func:`fastcnn._layout.warn_if_channels_last`)."""
    x = _nchw(model, x, data_format, "fit")
    if _several_inputs(model, x, data_format, "fit"):
        return x, validation_data
    if x is not None and source_kind(x) == "arrays":  # fit builds the model from x[:1] first
        xa = as_array(x, "x", "fit")
        if not model.built and xa.ndim >= 2 and len(xa) and model.optimizer is not None \
                and model.loss is not None:  # (fit reports an uncompiled model first)
            model._ensure_built(model._input(xa[:1], "fit"))
            _layout.warn_if_channels_last(model, xa, "fit")
    if data_format == "channels_last" and validation_data is not None:
        validation_data = _layout.validation_channels_first(
            validation_data, data_format, source_kind(validation_data), model)
    return x, validation_data


def _batch_nchw(model: Any, x: Any, data_format: str, who: str) -> Any:
    """One batch ``x`` in NCHW for ``data_format``, then checked against a built model's input
    shape (:func:`fastcnn._layout.check_input_layout`: channels-last images are a ValueError
    naming the fixes)."""
    if _several_inputs(model, x, data_format, who):
        return x
    if _layout.check_data_format(data_format, who) == "channels_last":
        x = _layout.model_channels_first(model, x, who)
    _layout.check_input_layout(model, as_array(x, "x", who), who, x)
    return x
