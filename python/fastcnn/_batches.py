"""How a model's inputs become batches: arrays, datasets, Sequences or generators, on the
model's device.

The kinds of input (:func:`source_kind`), as Keras takes them:

* ``"arrays"``: ``x`` / ``y`` / ``sample_weight`` arrays (anything array-like: NumPy / CuPy
  arrays, tensors, lists), sliced by :class:`ArrayBatches` in a (re)shuffled order;
* ``"dataset"``: an object with ``__iter__`` and ``__len__`` (the number of batches), e.g.
  :class:`fastcnn.data.ArrayDataset`: ``iter(ds)`` once per pass;
* ``"sequence"``: a Keras ``Sequence``-style object with ``__getitem__(i)`` and ``__len__``
  and either no ``__iter__`` or an ``on_epoch_end`` method: batches ``seq[0] .. seq[len(seq)
  - 1]`` per pass, in order; ``seq.on_epoch_end()`` is called after every epoch;
* ``"iterable"``: a Python generator or any other iterator (or iterable without ``__len__``):
  consumed as it comes; a generator is one pass only.

Each batch is ``(x, y)`` or ``(x, y, sample_weight)`` (``x`` or ``(x,)`` alone for predict).
:class:`BatchSource` cuts a source into epochs: a full pass each epoch, or, with ``steps``
(``steps_per_epoch``), the next ``steps`` batches of a pass that continues across epochs (Keras
3's rule); a new pass starts when one ends (a reshuffle for arrays), and an epoch in which the
pass ended early is shorter, with a warning. A generator that runs out (``exhausted``) ends
training with a warning. :func:`fit_batches` / :func:`eval_batches` convert each batch to the
model's input (float32, C-contiguous), turn ``class_weight`` into sample weights and build the
model on the first batch; :func:`device_batches` uploads them one batch ahead on the GPU.
Used by :mod:`fastcnn.training`; like it, this never imports :mod:`fastcnn.model`.
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from ._arrays import array_module, as_array, is_array_like, is_cupy
from ._device import BatchUploader
from ._layout import check_input_layout, warn_if_channels_last
from ._outputs import output_weights
from ._structure import Arrays
from .distributed import _fit as _dist
from .losses import as_sample_weight

if TYPE_CHECKING:  # the model is known here only by the methods called on it
    from .model import Sequential

__all__ = ["ArrayBatches", "BatchSource", "check_arrays", "check_batch_size",
           "check_class_weight", "check_steps", "check_validation_freq", "class_sample_weight",
           "close_iterator", "device_batches", "eval_batches", "fit_batches", "fit_sources",
           "is_dataset", "make_source", "source_kind", "split_item", "validate_now"]


def source_kind(obj: Any) -> str:
    """``"arrays"``, ``"dataset"``, ``"sequence"`` or ``"iterable"`` (see the module
    docstring); ValueError for anything else. Array-likes (tensors, lists, tuples) are always
    ``"arrays"``: a tensor is one array, never a dataset of rows."""
    if is_array_like(obj):
        return "arrays"
    if isinstance(obj, Mapping):
        raise ValueError(f"expected arrays, a dataset, a Sequence or a generator, got a "
                         f"{type(obj).__name__} (a mapping); pass x and y separately")
    if hasattr(obj, "__getitem__") and hasattr(obj, "__len__") and (
            not hasattr(obj, "__iter__") or callable(getattr(obj, "on_epoch_end", None))):
        return "sequence"
    if hasattr(obj, "__iter__"):
        return "dataset" if hasattr(obj, "__len__") else "iterable"
    raise ValueError(f"expected arrays, a dataset (__iter__ and __len__), a Sequence "
                     f"(__getitem__ and __len__) or a generator, got {type(obj).__name__}")


def is_dataset(obj: Any) -> bool:
    """True for any input that yields its own batches (a dataset, a Sequence, a generator),
    False for anything array-like (which iterates and has a length too but is one array) or
    not an input at all."""
    try:
        return obj is not None and source_kind(obj) != "arrays"
    except ValueError:
        return False


class ArrayBatches:
    """Batches ``(x, y, sample_weight)`` of arrays (``y`` / ``sample_weight`` may be None), in
    the order ``order`` (None: as stored); with ``rng`` set, every pass takes a new
    ``order = rng.permutation(n)`` first."""

    def __init__(self, x: Any, y: Any, batch_size: int, sample_weight: Any = None) -> None:
        self.x, self.y, self.w, self.batch_size = x, y, sample_weight, batch_size
        self.order: np.ndarray | None = None
        self.rng: np.random.Generator | None = None

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Any, Any, Any]]:
        n, bs = len(self.x), self.batch_size
        if self.rng is not None:
            self.order = self.rng.permutation(n)
        for i in range(0, n, bs):
            idx: Any = slice(i, i + bs) if self.order is None else self.order[i:i + bs]
            yield tuple(None if a is None else a[index_for(a, idx)]  # type: ignore[misc]
                        for a in (self.x, self.y, self.w))


def index_for(a: Any, idx: Any) -> Any:
    """An index for ``a``: a NumPy index array is uploaded when ``a`` is a cupy array."""
    if is_cupy(a) and isinstance(idx, np.ndarray):
        import cupy

        return cupy.asarray(idx)
    return idx


def check_steps(steps: Any, name: str, who: str) -> int | None:
    """None or a positive int (``steps_per_epoch``, ``validation_steps``, ``steps``)."""
    if steps is None:
        return None
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 1:
        raise ValueError(f"{who}: {name} must be None or a positive int, got {steps!r}")
    return int(steps)


def check_validation_freq(freq: Any) -> Any:
    """``validation_freq``: an int >= 1 or a collection of 1-based epochs."""
    if isinstance(freq, int | np.integer) and not isinstance(freq, bool) and freq >= 1:
        return int(freq)
    if isinstance(freq, list | tuple | set | frozenset | range) and all(
            isinstance(e, int | np.integer) and not isinstance(e, bool) for e in freq):
        return {int(e) for e in freq}
    raise ValueError(f"fit: validation_freq must be an int >= 1 (validate every n epochs) or "
                     f"a list of 1-based epochs, got {freq!r}")


def validate_now(freq: Any, epoch: int) -> bool:
    """Keras' rule: after 0-based ``epoch``, validate when ``epoch + 1`` is a multiple of an
    int ``freq`` or is in a list of them."""
    return (epoch + 1) % freq == 0 if isinstance(freq, int) else epoch + 1 in freq


class BatchSource:
    """A source of batches cut into epochs (see the module docstring).

    Args:
        data: :class:`ArrayBatches`, a dataset, a Sequence or an iterable.
        steps: batches per epoch (None: one full pass).
        who: the caller's name, for messages.
    """

    def __init__(self, data: Any, steps: int | None, who: str) -> None:
        self.data, self.steps, self.who = data, steps, who
        self.kind = "arrays" if isinstance(data, ArrayBatches) else source_kind(data)
        self.one_shot = self.kind == "iterable" and iter(data) is data  # a generator
        self.exhausted = False  # a one-shot source has nothing left
        self._it: Iterator[Any] | None = None
        #: called just before each new pass starts (BackupAndRestore records the data's state)
        self.on_new_pass: Callable[[], None] | None = None

    @property
    def length(self) -> int | None:
        """Batches per epoch (None when unknown: a generator without ``steps``)."""
        if self.steps is not None:
            return self.steps
        return None if self.kind == "iterable" else len(self.data)

    def _new_pass(self) -> Iterator[Any]:
        if self.on_new_pass is not None:
            self.on_new_pass()
        if self.kind == "sequence":
            seq = self.data
            return (seq[i] for i in range(len(seq)))
        return iter(self.data)

    def epoch(self) -> Iterator[Any]:
        """The next epoch's raw items (a generator; closing it leaves a pass that continues
        across epochs open)."""
        if self.steps is None:
            it = self._new_pass()
            try:
                yield from it
            finally:
                close_iterator(it)
                self.exhausted = self.one_shot
                self.on_epoch_end()
            return
        taken = 0
        try:
            while taken < self.steps:
                fresh = self._it is None
                if self._it is None:
                    self._it = self._new_pass()
                try:
                    item = next(self._it)
                except StopIteration:
                    close_iterator(self._it)
                    self._it = None
                    if self.one_shot or (fresh and taken == 0):
                        self.exhausted = True
                        warnings.warn(
                            f"{self.who}: your input ran out of data after {taken} of "
                            f"{self.steps} steps of this epoch; make sure the generator can "
                            f"yield at least steps * epochs batches", UserWarning, stacklevel=3)
                        return
                    if taken:
                        warnings.warn(
                            f"{self.who}: a pass over the data ended after {taken} of the "
                            f"epoch's {self.steps} steps; this epoch is shorter and the next "
                            f"starts a new pass (make the number of batches a multiple of the "
                            f"steps to avoid this)", UserWarning, stacklevel=3)
                        return
                    continue
                taken += 1
                yield item
        finally:
            self.on_epoch_end()

    def on_epoch_end(self) -> None:
        """A Sequence's ``on_epoch_end()``, when it has one."""
        if self.kind == "sequence" and callable(getattr(self.data, "on_epoch_end", None)):
            self.data.on_epoch_end()

    def close(self) -> None:
        """Close a pass left open by ``steps``."""
        if self._it is not None:
            close_iterator(self._it)
            self._it = None


def split_item(item: Any, who: str, need_y: bool) -> tuple[Any, Any, Any]:
    """A batch as ``(x, y, sample_weight)``: from ``(x, y)``, ``(x, y, w)``, or (when labels
    are not needed) ``(x,)`` / ``x``; ValueError with what was expected otherwise."""
    if isinstance(item, tuple | list) and len(item) in (2, 3):
        return item[0], item[1], (item[2] if len(item) == 3 else None)
    if not need_y:
        if isinstance(item, tuple | list) and len(item) == 1:
            return item[0], None, None
        if not isinstance(item, tuple | list):
            return item, None, None
    raise ValueError(f"{who}: the data must yield (x_batch, y_batch) pairs or (x_batch, "
                     f"y_batch, sample_weight) triples, got {type(item).__name__}"
                     + (f" of length {len(item)}" if isinstance(item, tuple | list) else ""))


def check_arrays(x: Any, y: Any, who: str) -> tuple[Any, Any]:
    """``x`` and ``y`` as backend arrays (:func:`fastcnn._arrays.as_array`: NumPy and CuPy
    arrays as they are, tensors viewed without a copy, lists converted), checked. A model's
    several inputs / outputs come as :class:`fastcnn._structure.Arrays` (as they are)."""
    if isinstance(x, Arrays) or isinstance(y, Arrays):
        return _check_structured(x, y, who)
    x = as_array(x, "x", who)
    if x.ndim < 2:
        raise ValueError(f"{who}: x must have a batch axis, got shape {x.shape}")
    if y is not None:
        y = as_array(y, "y", who)
        if y.ndim == 0 or len(y) != len(x):
            raise ValueError(f"{who}: x and y must have the same number of samples, got "
                             f"{len(x)} and {y.shape}")
    return x, y


def _check_structured(x: Any, y: Any, who: str) -> tuple[Any, Any]:
    """:func:`check_arrays` where ``x`` or ``y`` is an :class:`Arrays`: one sample count."""
    x = x if isinstance(x, Arrays) else as_array(x, "x", who)
    if y is not None and not isinstance(y, Arrays):
        y = as_array(y, "y", who)
    if y is not None and len(y) != len(x):
        raise ValueError(f"{who}: x and y must have the same number of samples, got "
                         f"{len(x)} and {len(y)}")
    return x, y


def _check_sample_weight(w: Any, n: int, who: str) -> Any:
    if w is None or isinstance(w, Arrays):  # per-output weights: checked by the model
        return w
    w = as_array(w, "sample_weight", who)
    if w.ndim == 0 or len(w) != n or w.size != n:
        raise ValueError(f"{who}: sample_weight must have shape ({n},), one weight per "
                         f"sample of x, got shape {tuple(w.shape)}")
    return w


def check_batch_size(batch_size: Any) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) \
            or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    return int(batch_size)


def check_class_weight(class_weight: Any) -> dict[int, float] | None:
    """``{class id: weight}`` checked (int keys >= 0, finite weights >= 0), or None."""
    if class_weight is None:
        return None
    if not isinstance(class_weight, Mapping) or not class_weight:
        raise ValueError(f"fit: class_weight must be a non-empty dict {{class id: weight}}, "
                         f"got {class_weight!r}")
    out: dict[int, float] = {}
    for k, v in class_weight.items():
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 0:
            raise ValueError(f"fit: class_weight keys must be class ids (ints >= 0), got {k!r}")
        if isinstance(v, bool) or not isinstance(v, int | float | np.number) \
                or not math.isfinite(float(v)) or float(v) < 0:
            raise ValueError(f"fit: class_weight[{k}] must be a finite number >= 0, got {v!r}")
        out[int(k)] = float(v)
    return out


def class_sample_weight(class_weight: dict[int, float], y: Any) -> Any:
    """Keras' ``class_weight`` as sample weights (N,) float32 on ``y``'s device: ``w_i =
    class_weight[c_i]`` with ``c_i`` the class id (the arg-max of a one-hot row, the rounded
    label of class ids or 0/1 targets); classes not in the dict weigh 1.0."""
    y = as_array(y, "y", "fit")
    xp = array_module(y)
    if y.ndim == 0:
        raise ValueError(f"fit: class_weight needs labels with a batch axis, got shape {y.shape}")
    if y.ndim == 2 and y.shape[1] > 1:
        ids = xp.argmax(y, axis=1)
    elif y.ndim > 2 or (y.ndim == 2 and y.shape[1] != 1):
        raise ValueError(f"fit: class_weight needs class ids (N,) or one-hot rows (N, "
                         f"classes), got labels of shape {tuple(y.shape)}")
    else:
        ids = xp.round(y.reshape(len(y)).astype(np.float64)).astype(np.int64)
    if len(ids) and int(ids.min()) < 0:
        raise ValueError(f"fit: class_weight needs class ids >= 0, got {int(ids.min())}")
    size = max(max(class_weight) + 1, int(ids.max()) + 1 if len(ids) else 0)
    table = np.ones(size, dtype=np.float32)
    for k, v in class_weight.items():
        table[k] = v
    return xp.asarray(table)[ids]


def close_iterator(it: Any) -> None:
    """Stop a dataset's epoch iterator early (a background producer thread, a generator)."""
    close = getattr(it, "close", None)
    if callable(close):
        close()


def device_batches(model: Sequential,
                    items: Iterator[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
    """Batches (tuples of arrays or None) on the model's device: uploaded one batch ahead on
    the GPU (:class:`fastcnn._device.BatchUploader`), passed through on the CPU."""
    try:
        if model.device != "cuda" or getattr(model, "_multi_in", False) \
                or getattr(model, "_multi_out", False):  # Arrays: uploaded by the model
            yield from items
            return
        up = BatchUploader()
        try:
            pending = None
            for item in items:
                started = up.start(item)  # before batch i's work is queued
                if pending is not None:
                    yield up.finish(pending)
                pending = started
            if pending is not None:
                yield up.finish(pending)
        finally:
            up.close()
    finally:
        close_iterator(items)


def _model_batches(model: Sequential, items: Iterator[Any], who: str, need_y: bool,
                   class_weight: dict[int, float] | None = None) -> Iterator[tuple[Any, ...]]:
    try:
        for item in _dist.local_items(items, who):  # this rank's part (identity for 1)
            xb, yb, wb = split_item(item, who, need_y)
            given, xb = xb, model._input(xb, who)
            built = model.built
            check_input_layout(model, xb, who, given)  # channels-last images: the fixes
            model._ensure_built(xb)
            if not built:
                warn_if_channels_last(model, xb, who)
            if need_y and yb is None:
                raise ValueError(f"{who}: the data yielded no labels (y is None)")
            yb = None if yb is None else model._targets(yb, who)
            if class_weight is not None:
                if wb is not None:
                    raise ValueError(f"{who}: class_weight and sample weights can't be used "
                                     f"together (the data yields (x, y, sample_weight)); fold "
                                     f"the class weights into the sample weights")
                wb = class_sample_weight(class_weight, yb)
            wb = output_weights(model, wb, len(xb), who)  # several outputs: per output
            if wb is not None and not isinstance(wb, Arrays):  # checked here, on the host
                wb = as_array(wb, "sample_weight", who)
                wb = as_sample_weight(wb, len(xb), wb, who)
            yield xb, yb, wb
    finally:
        close_iterator(items)


def fit_batches(model: Sequential, items: Iterator[Any],
                class_weight: dict[int, float] | None = None) -> Iterator[tuple[Any, ...]]:
    """Training batches ``(x float32, y, sample_weight or None)`` as host (or CuPy) arrays,
    the model built, ``class_weight`` turned into sample weights."""
    return _model_batches(model, items, "fit", True, class_weight)


def make_source(x: Any, y: Any, sample_weight: Any, batch_size: Any, steps: int | None,
                who: str) -> BatchSource:
    """A :class:`BatchSource` for arrays (``y`` / ``sample_weight`` optional) or for data
    that yields its own batches (then ``y`` and ``sample_weight`` must be None)."""
    if x is None:
        raise ValueError(f"{who}: x is required (arrays, a dataset, a Sequence or a generator)")
    if source_kind(x) != "arrays":
        if y is not None:
            raise ValueError(f"{who}: y must be None when x is a dataset, Sequence or "
                             f"generator (it yields the labels)")
        if sample_weight is not None:
            raise ValueError(f"{who}: sample_weight must be None when x is a dataset, Sequence "
                             f"or generator; yield (x, y, sample_weight) batches instead")
        return BatchSource(x, steps, who)
    xa, ya = check_arrays(x, y, who)
    if sample_weight is not None and ya is None:
        raise ValueError(f"{who}: sample_weight needs y")
    wa = _check_sample_weight(sample_weight, len(xa), who)
    return BatchSource(ArrayBatches(xa, ya, check_batch_size(batch_size), wa), steps, who)


def eval_batches(model: Sequential, source: BatchSource, who: str,
                 verbose: int, need_y: bool) -> Iterator[tuple[Any, ...]]:
    """One epoch of ``source`` as ``(x, y or None, sample_weight or None)`` batches on the
    model's device, with a progress bar when ``verbose == 1``."""
    bar = tqdm(total=source.length, desc=who, unit="batch", disable=verbose != 1,
               file=sys.stdout, leave=True)
    batches = device_batches(model, _model_batches(model, source.epoch(), who, need_y))
    try:
        for b in batches:
            yield b
            bar.update(1)
    finally:
        bar.close()
        close_iterator(batches)


def fit_sources(x: Any, y: Any, batch_size: int, validation_split: float, validation_data: Any,
                sample_weight: Any = None, steps_per_epoch: int | None = None,
                validation_steps: int | None = None,
                validation_batch_size: Any = None) -> tuple[BatchSource, BatchSource | None]:
    """``fit``'s training source and validation source (None without validation)."""
    val: BatchSource | None = None
    vbs = batch_size if validation_batch_size is None else validation_batch_size
    if x is not None and source_kind(x) != "arrays":
        if validation_split:
            raise ValueError("fit: validation_split needs arrays; pass validation_data "
                             "for a dataset, Sequence or generator")
        train = make_source(x, y, sample_weight, batch_size, steps_per_epoch, "fit")
        if train.kind != "iterable" and len(x) == 0:
            raise ValueError("fit: the dataset has no batches")
    else:
        if x is None or y is None:
            raise ValueError("fit: pass x and y arrays, or a dataset, Sequence or generator "
                             "as x")
        xa, ya = check_arrays(x, y, "fit")
        wa = _check_sample_weight(sample_weight, len(xa), "fit")
        if validation_split and validation_data is None:  # validation_data wins (Keras)
            if not 0.0 < float(validation_split) < 1.0:
                raise ValueError(f"fit: validation_split must be in (0, 1), got "
                                 f"{validation_split}")
            split = math.ceil(len(xa) * (1.0 - float(validation_split)))
            if split == len(xa) or split == 0:
                raise ValueError(f"fit: validation_split={validation_split} of "
                                 f"{len(xa)} samples leaves an empty set")
            val = make_source(xa[split:], ya[split:], None if wa is None else wa[split:], vbs,
                              validation_steps, "validation")
            xa, ya = xa[:split], ya[:split]
            wa = None if wa is None else wa[:split]
        if len(xa) == 0:
            raise ValueError("fit: no training samples")
        train = BatchSource(ArrayBatches(xa, ya, check_batch_size(batch_size), wa),
                            steps_per_epoch, "fit")
    if validation_data is not None:
        if source_kind(validation_data) != "arrays":
            val = BatchSource(validation_data, validation_steps, "validation")
        elif isinstance(validation_data, tuple | list) and len(validation_data) in (2, 3):
            vw = validation_data[2] if len(validation_data) == 3 else None
            val = make_source(validation_data[0], validation_data[1], vw, vbs,
                              validation_steps, "validation")
        else:
            raise ValueError("fit: validation_data must be (x_val, y_val), (x_val, y_val, "
                             "sample_weight_val), a dataset, a Sequence or a generator")
    return train, val
