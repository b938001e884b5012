"""The metric protocol (:class:`Metric`) and the helpers every metric shares: class ids from
labels, per-row sample weights, probabilities from logits, binary decision pairs."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._arrays import array_module, is_cupy, to_host
from .._deferred import defer, deferring
from ..losses import as_sample_weight, as_targets


def as_class_ids(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
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
        if is_cupy(v):  # accumulated on the device: nothing is read until result()
            if sample_weight is None:
                dtotal, dcount = xp.sum(v, dtype=np.float64), int(v.size)
            else:
                w = row_weights(sample_weight, v, self.name)
                dtotal, dcount = xp.sum(w * v), xp.sum(w)
            self._total = self._total + dtotal
            self._count = self._count + dcount
            if deferring():  # fit's steps: the batch's value stays on the device too
                return dtotal / xp.where(dcount == 0, 1.0, dcount)  # type: ignore[no-any-return]
            total, count = _read(dtotal, dcount)
            return total / count if count else 0.0
        if sample_weight is None:
            total = float(xp.sum(v, dtype=np.float64))
            count: float = int(v.size)
        else:
            w = row_weights(sample_weight, v, self.name)
            total, count = (float(c) for c in to_host(xp.stack([xp.sum(w * v), xp.sum(w)])))
        self._total += total
        self._count += count
        return total / count if count else 0.0

    def result(self) -> float:
        """(Sample-weighted) mean over everything since the last :meth:`reset` (0 when
        empty). On the GPU this is where the device-side sums are read (one copy)."""
        if is_cupy(self._total) or is_cupy(self._count):
            total, count = _read(self._total, self._count)
            return total / count if count else 0.0
        return self._total / self._count if self._count else 0.0

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments."""
        return {"name": self.name}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"



def _read(*values: Any) -> list[float]:
    """Device (and host) scalars as floats, with one device-to-host copy."""
    dev = [v for v in values if is_cupy(v)]
    if not dev:
        return [float(v) for v in values]
    xp = array_module(dev[0])
    host = iter(to_host(xp.stack([xp.asarray(v, dtype=np.float64).reshape(())
                                  for v in dev])).tolist())
    return [float(next(host)) if is_cupy(v) else float(v) for v in values]


def row_weights(sample_weight: Any, a: Any, who: str) -> Any:
    """Sample weights (N,) as float64 shaped (N, 1, ...) to broadcast over ``a`` (N, ...)."""
    w = as_sample_weight(sample_weight, a.shape[0] if a.ndim else 1, a, who)
    return w.astype(np.float64).reshape(w.shape + (1,) * max(a.ndim - 1, 0))


def probabilities(y_pred: Any, logits: bool | str) -> Any:
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


def binary_pairs(y_true: Any, y_pred: Any, who: str) -> tuple[Any, Any]:
    """Labels as a boolean array of the predictions' shape (N, ...) (positive = non-zero);
    integer class ids (N,) / (N, 1) with a multi-column output become one-hot rows."""
    t = as_targets(y_true, y_pred)
    xp = array_module(y_pred)
    n = y_pred.shape[0]
    if (y_pred.ndim == 2 and y_pred.shape[1] > 1 and t.size == n
            and (t.ndim == 1 or t.shape[-1] == 1)):
        ids = t.reshape(n).astype(np.int64)
        c = y_pred.shape[1]
        if n and is_cupy(ids):  # checked on the device, read now or at fit's next read
            rec = xp.stack([xp.any((ids < 0) | (ids >= c)).astype(np.int64), ids.min(),
                            ids.max()])
            defer(rec, lambda r: (f"{who}: class ids must be in [0, {c}) for an output of {c} "
                                  f"columns, got ids in [{int(r[1])}, {int(r[2])}]")
                  if r[0] else None)
            ids = xp.clip(ids, 0, c - 1)
        elif n and (int(ids.min()) < 0 or int(ids.max()) >= c):
            raise ValueError(f"{who}: class ids must be in [0, {c}) for an output of {c} "
                             f"columns, got ids in [{int(ids.min())}, {int(ids.max())}]")
        return xp.arange(c)[None, :] == ids[:, None], y_pred
    if t.size != y_pred.size:
        raise ValueError(f"{who}: labels of shape {tuple(t.shape)} don't match predictions of "
                         f"shape {tuple(y_pred.shape)}; expected the same shape (or class ids "
                         f"(N,) for a multi-column output)")
    return t.reshape(y_pred.shape) != 0, y_pred


def class_column(a: Any, class_id: int | None, who: str) -> Any:
    if class_id is None:
        return a
    if a.ndim < 2 or not 0 <= class_id < a.shape[-1]:
        raise ValueError(f"{who}: class_id={class_id} needs predictions with more than "
                         f"{class_id} columns, got shape {tuple(a.shape)}")
    return a[..., class_id]


def check_optional_int(v: Any, name: str, who: str, low: int) -> int | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < low:
        raise ValueError(f"{who}: {name} must be None or an int >= {low}, got {v!r}")
    return int(v)
