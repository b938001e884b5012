"""How a model's inputs become batches: arrays or datasets, on the model's device.

:func:`fit_sources` turns ``fit``'s ``x, y, batch_size, validation_split, validation_data``
into a training source and a validation pair; :class:`ArrayBatches` slices arrays (in a given
order) into ``(x, y)`` batches; :func:`fit_batches` / :func:`eval_batches` convert each batch to
the model's input (float32, C-contiguous) and build the model on the first one;
:func:`device_batches` uploads them one batch ahead on the GPU. An object is a dataset only when
it is not array-like (:func:`is_dataset`): a tensor or a list is one array, never a dataset.
Used by :mod:`fastcnn.training`; like it, this never imports :mod:`fastcnn.model`.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from ._arrays import as_array, is_array_like, is_cupy
from ._device import BatchUploader

if TYPE_CHECKING:  # the model is known here only by the methods called on it
    from .model import Sequential

__all__ = ["ArrayBatches", "check_arrays", "check_batch_size", "close_iterator",
           "device_batches", "eval_batches", "fit_batches", "fit_sources", "is_dataset",
           "split_item"]


def is_dataset(obj: Any) -> bool:
    """True for a dataset object (iterable of batches with ``__len__``), False for anything
    array-like (NumPy / CuPy arrays, tensors, DLPack and ``__array__`` objects, lists, tuples),
    which iterate and have a length too but are one array."""
    return (not is_array_like(obj) and hasattr(obj, "__iter__") and hasattr(obj, "__len__"))


class ArrayBatches:
    """Batches of ``(x, y)`` arrays in a given order."""

    def __init__(self, x: np.ndarray, y: np.ndarray | None, batch_size: int) -> None:
        self.x, self.y, self.batch_size = x, y, batch_size
        self.order: np.ndarray | None = None

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[np.ndarray, Any]]:
        n, bs = len(self.x), self.batch_size
        for i in range(0, n, bs):
            if self.order is None:
                idx: Any = slice(i, i + bs)
            else:
                idx = self.order[i:i + bs]
            xi = index_for(self.x, idx)
            yi = None if self.y is None else index_for(self.y, idx)
            yield self.x[xi], (None if self.y is None else self.y[yi])


def index_for(a: Any, idx: Any) -> Any:
    """An index for ``a``: a NumPy index array is uploaded when ``a`` is a cupy array."""
    if is_cupy(a) and isinstance(idx, np.ndarray):
        import cupy

        return cupy.asarray(idx)
    return idx


def split_item(item: Any, who: str) -> tuple[Any, Any]:
    """Split a dataset item into ``(x_batch, y_batch)`` with a clear error."""
    if isinstance(item, tuple | list) and len(item) == 2:
        return item[0], item[1]
    raise ValueError(f"{who}: a training dataset must yield (x_batch, y_batch) pairs, got "
                     f"{type(item).__name__}" + (f" of length {len(item)}"
                                                 if isinstance(item, tuple | list) else ""))


def check_arrays(x: Any, y: Any, who: str) -> tuple[np.ndarray, np.ndarray | None]:
    """``x`` and ``y`` as backend arrays (:func:`fastcnn._arrays.as_array`: NumPy and CuPy
    arrays as they are, tensors viewed without a copy, lists converted), checked."""
    x = as_array(x, "x", who)
    if x.ndim < 2:
        raise ValueError(f"{who}: x must have a batch axis, got shape {x.shape}")
    if y is not None:
        y = as_array(y, "y", who)
        if y.ndim == 0 or len(y) != len(x):
            raise ValueError(f"{who}: x and y must have the same number of samples, got "
                             f"{len(x)} and {y.shape}")
    return x, y


def check_batch_size(batch_size: Any) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) \
            or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    return int(batch_size)


def close_iterator(it: Any) -> None:
    """Stop a dataset's epoch iterator early (a background producer thread, a generator)."""
    close = getattr(it, "close", None)
    if callable(close):
        close()


def device_batches(model: Sequential,
                    pairs: Iterator[tuple[Any, Any]]) -> Iterator[tuple[Any, Any]]:
    """``(x, y)`` batches on the model's device: uploaded one batch ahead on the GPU
    (:class:`fastcnn._device.BatchUploader`), passed through on the CPU."""
    try:
        if model.device != "cuda":
            yield from pairs
            return
        up = BatchUploader()
        try:
            pending = None
            for xb, yb in pairs:
                started = up.start((xb, yb))  # before batch i's work is queued
                if pending is not None:
                    yield up.finish(pending)  # type: ignore[misc]
                pending = started
            if pending is not None:
                yield up.finish(pending)  # type: ignore[misc]
        finally:
            up.close()
    finally:
        close_iterator(pairs)


def fit_batches(model: Sequential, batches: Iterator[Any]) -> Iterator[tuple[Any, Any]]:
    """Training items as ``(x float32, y)`` host (or CuPy) arrays, the model built."""
    try:
        for item in batches:
            xb_raw, yb = split_item(item, "fit")
            xb = model._input(xb_raw, "fit")
            yb = None if yb is None else as_array(yb, "y", "fit")
            model._ensure_built(xb)
            yield xb, yb
    finally:
        close_iterator(batches)


def eval_batches(model: Sequential, x: Any, y: Any, batch_size: int, who: str,
                  verbose: int) -> Iterator[tuple[np.ndarray, Any]]:
    """``(x, y or None)`` batches of an array pair or a dataset on the model's device, with a
    progress bar when ``verbose == 1``."""
    if is_dataset(x):
        if y is not None:
            raise ValueError(f"{who}: y must be None when x is a dataset")
        source: Any = x
    else:
        xa, ya = check_arrays(x, y, who)
        source = ArrayBatches(xa, ya, check_batch_size(batch_size))
    bar = tqdm(total=len(source), desc=who, unit="batch", disable=verbose != 1,
               file=sys.stdout, leave=True)

    def host_batches(batches: Iterator[Any]) -> Iterator[tuple[Any, Any]]:
        try:
            for item in batches:
                if isinstance(item, tuple | list) and len(item) == 2:
                    xb, yb = item
                elif isinstance(item, tuple | list) and len(item) == 1:
                    xb, yb = item[0], None
                else:
                    xb, yb = item, None
                xb = model._input(xb, who)
                model._ensure_built(xb)
                yield xb, (None if yb is None else as_array(yb, "y", who))
        finally:
            close_iterator(batches)

    batches = device_batches(model, host_batches(iter(source)))
    try:
        for xb, yb in batches:
            yield xb, yb
            bar.update(1)
    finally:
        bar.close()
        close_iterator(batches)


def fit_sources(x: Any, y: Any, batch_size: int, validation_split: float,
                 validation_data: Any) -> tuple[Any, tuple[Any, Any] | None]:
    val: tuple[Any, Any] | None = None
    if is_dataset(x):
        if y is not None:
            raise ValueError("fit: y must be None when x is a dataset (it yields labels)")
        if validation_split:
            raise ValueError("fit: validation_split needs arrays; pass validation_data "
                             "for a dataset")
        if len(x) == 0:
            raise ValueError("fit: the dataset has no batches")
        train: Any = x
    else:
        if x is None or y is None:
            raise ValueError("fit: pass x and y arrays, or a dataset as x")
        xa, ya = check_arrays(x, y, "fit")
        assert ya is not None
        bs = check_batch_size(batch_size)
        if validation_split and validation_data is None:  # validation_data wins (Keras)
            if not 0.0 < float(validation_split) < 1.0:
                raise ValueError(f"fit: validation_split must be in (0, 1), got "
                                 f"{validation_split}")
            split = math.ceil(len(xa) * (1.0 - float(validation_split)))
            if split == len(xa) or split == 0:
                raise ValueError(f"fit: validation_split={validation_split} of "
                                 f"{len(xa)} samples leaves an empty set")
            val = (xa[split:], ya[split:])
            xa, ya = xa[:split], ya[:split]
        if len(xa) == 0:
            raise ValueError("fit: no training samples")
        train = ArrayBatches(xa, ya, bs)
    if validation_data is not None:
        if is_dataset(validation_data):
            val = (validation_data, None)
        elif isinstance(validation_data, tuple | list) and len(validation_data) == 2:
            xv, yv = check_arrays(validation_data[0], validation_data[1], "validation")
            val = (xv, yv)
        else:
            raise ValueError("fit: validation_data must be (x_val, y_val) or a dataset")
    return train, val
