"""Reducing results over the ranks: sums of numbers, metrics' accumulated state, predictions.

* :func:`allreduce_sum` -- element-wise sums of a float64 vector over the ranks.
* :func:`reduce_metrics` -- a metric accumulates sums (totals, counts, confusion counts); its
  state is the attributes its ``reset()`` rebinds, and they are summed over the ranks in place,
  after which ``result()`` is the global value (a custom metric whose state is not additive,
  e.g. a running maximum, is not supported).
* :func:`mean_logs` -- the sample-weighted mean of per-rank ``{name: value}`` logs.
* :func:`gather_rows` -- the rows every rank computed, put back in their global order.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from . import _state

__all__ = ["allreduce_sum", "gather_rows", "mean_logs", "reduce_metrics"]

_SENTINEL = object()


def allreduce_sum(values: Any, what: str = "a reduction") -> np.ndarray:
    """Element-wise sum over the ranks of ``values`` (numbers or an array), as a new float64
    array of the same shape (the input is not changed)."""
    buf = np.array(values, dtype=np.float64, copy=True, ndmin=1)
    c = _state.comm()
    if c.size > 1:
        c.iallreduce(buf).wait(what)
    return buf


def _state_names(metric: Any) -> list[str]:
    """The attributes ``metric.reset()`` rebinds (its accumulators), found on copies."""
    names = []
    for k, v in vars(metric).items():
        if isinstance(v, bool) or not isinstance(v, int | float | np.number | np.ndarray):
            continue
        probe = copy.copy(metric)
        setattr(probe, k, _SENTINEL)
        try:
            probe.reset()
        except Exception:  # reset reads it: a setting, not an accumulator
            continue
        if getattr(probe, k, _SENTINEL) is not _SENTINEL:
            names.append(k)
    return names


def reduce_metrics(metrics: list[Any]) -> None:
    """Sum every metric's accumulated state over the ranks, in place (``metrics``: Metric
    objects, or ``(metric, weighted)`` pairs as ``fit`` keeps them). Call once per pass."""
    if _state.comm().size == 1:
        return
    ms = [m[0] if isinstance(m, tuple) else m for m in metrics]
    plan = [(m, k, getattr(m, k)) for m in ms for k in _state_names(m)]
    if not plan:
        return
    flat = allreduce_sum(np.concatenate([np.ravel(np.asarray(v, np.float64))
                                         for _, _, v in plan]), "the metrics' reduction")
    off = 0
    for m, k, v in plan:
        size = int(np.size(v))
        part = flat[off:off + size]
        off += size
        if isinstance(v, np.ndarray):
            new: Any = part.reshape(v.shape).astype(v.dtype, copy=False)
            if np.issubdtype(v.dtype, np.integer):
                new = np.rint(part).reshape(v.shape).astype(v.dtype)
        elif isinstance(v, int | np.integer):
            new = int(np.rint(part[0]))
        else:
            new = float(part[0])
        setattr(m, k, new)


def mean_logs(logs: dict[str, float], weight: float = 1.0) -> dict[str, float]:
    """The mean over the ranks of per-rank logs, each rank's values weighted by ``weight``
    (e.g. its number of samples); the same keys on every rank are required."""
    keys = list(logs)
    vals = allreduce_sum([weight, *(weight * float(logs[k]) for k in keys)], "mean_logs")
    return {k: float(v / vals[0]) for k, v in zip(keys, vals[1:], strict=True)}


def gather_rows(local: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Every rank's ``local`` outputs (n_r, ...) whose global row indices are ``rows``
    (n_r,), as one array (N, ...) in global order, on every rank."""
    c = _state.comm()
    local = np.ascontiguousarray(local, dtype=np.float32)
    if c.size == 1:
        return local
    rest = tuple(int(s) for s in local.shape[1:])
    idx = np.concatenate(c.allgather(np.asarray(rows, np.int64)))
    vals = np.concatenate(c.allgather(local.reshape(-1)))
    out = np.empty((len(idx), *rest), np.float32)
    out[idx] = vals.reshape(len(idx), *rest)
    return out
