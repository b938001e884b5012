"""ArrayDataset: the ImageFolder batching protocol over arrays already in memory."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from ._pipeline import BatchDataset, Produced, _Stopped

__all__ = ["ArrayDataset"]


class ArrayDataset(BatchDataset):
    """Batches of in-memory images, shuffled and augmented like :class:`ImageFolder`.

    Iterating gives one epoch of ``(x[idx], y[idx])`` batches (``x`` alone when ``y`` is None),
    with x float32 (N, C, H, W) augmented, then multiplied by ``rescale``; y is returned as
    stored. Batches are made in a background thread (``prefetch`` ahead). The arrays are not
    copied: later changes to them show in later batches.

    Args:
        x: (samples, C, H, W) array of any real dtype.
        y: None, or an array whose first dimension is ``samples`` (labels, one-hot, ...).
        batch_size, shuffle, seed, augment, rescale, drop_last, prefetch: as in ImageFolder.
            Augmentations see the values of ``x`` as stored, so set the intensity
            augmentations' ``value_range`` to match (e.g. (0, 1)).
    """

    def __init__(self, x: Any, y: Any = None, batch_size: int = 32, shuffle: bool = True,
                 seed: int | None = None, augment: Any = None, rescale: float | None = None,
                 drop_last: bool = False, prefetch: int = 2) -> None:
        super().__init__(batch_size=batch_size, shuffle=shuffle, seed=seed, augment=augment,
                         rescale=rescale, drop_last=drop_last, prefetch=prefetch)
        x = np.asarray(x)
        if x.ndim != 4:
            raise ValueError(f"x must be a 4-D (samples, C, H, W) array, got shape {x.shape}")
        if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_) or np.iscomplexobj(x):
            raise ValueError(f"x must hold real numbers, got dtype {x.dtype}")
        if y is not None:
            y = np.asarray(y)
            if y.ndim == 0 or len(y) != len(x):
                raise ValueError(f"y must have one entry per image: x has {len(x)} samples, "
                                 f"y has shape {y.shape}")
        self.x = x
        self.y = y
        self.samples = len(x)
        self._items = np.arange(self.samples, dtype=np.int64)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one output image (after any cropping augmentation)."""
        return self._augmented_shape(tuple(self.x.shape[1:]))  # type: ignore[arg-type]

    def _active_items(self) -> np.ndarray:
        return self._items

    def _produce(self, order: np.ndarray, epoch: int,
                 stop: threading.Event) -> Iterator[Produced]:
        n = len(order)
        stop_at = n - n % self.batch_size if self.drop_last else n
        for b, start in enumerate(range(0, stop_at, self.batch_size)):
            if stop.is_set():
                raise _Stopped
            idx = order[start:start + self.batch_size]
            if not self.shuffle:
                idx = slice(int(idx[0]), int(idx[-1]) + 1)  # contiguous: a view, not a gather
            xb = self._transform(np.asarray(self.x[idx], dtype=np.float32), epoch, b)
            if xb is self.x or np.shares_memory(xb, self.x):
                xb = xb.copy()
            yield (xb if self.y is None else (xb, self.y[idx].copy())), []

    def __repr__(self) -> str:
        return (f"ArrayDataset({self.samples} samples of shape {tuple(self.x.shape[1:])}, "
                f"batch_size={self.batch_size})")
