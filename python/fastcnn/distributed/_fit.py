"""The calls :mod:`fastcnn.training` (and :mod:`fastcnn._batches`, :mod:`fastcnn.callbacks`)
make into the distributed machinery; each is the identity at world size 1, so a single
process trains exactly as before.

A data-parallel step (``train_step`` on a model with a reducer attached, as ``fit`` does under
several ranks): forward on this rank's shard; :func:`step_loss` sums ``(loss * n, n, bad)``
over the ranks (one tiny allreduce: every rank sees the global batch's loss, the same NaN
verdict, and its shard's weight ``n / N``); backward, during which the gradient buckets start;
:func:`sync_gradients` waits for them; the optimizer's step, identical on every rank.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import _arrays
from . import _state
from .consistency import check_consistent
from .gradients import _ATTACHED, attach, detach, reducer_of
from .reduce import allreduce_sum, gather_rows, reduce_metrics
from .sharding import _predict_rows, common_seed, local_items

__all__ = ["agree", "batch_count", "begin_fit", "common_seed", "end_fit", "gather_predictions",
           "is_main", "local_items", "reduce_evaluation", "reduce_metrics", "step_loss",
           "sync_gradients", "verbosity"]

_checked: set[int] = set()
_pending: set[int] = set()
_counts: dict[int, int] = {}


def active() -> bool:
    """Several ranks, or one GPU rank through NCCL."""
    return _state.comm().size > 1 or _state.device_comm() is not None


def is_main() -> bool:
    """True on rank 0 (and in a single process)."""
    return _state.comm().rank == 0


def verbosity(verbose: int) -> int:
    """``verbose`` on rank 0, 0 (silent) on the other ranks."""
    return verbose if is_main() else 0


def begin_fit(model: Any) -> bool:
    """Under several ranks: attach a reducer to ``model`` for this ``fit`` unless one is
    attached already (at once when the model is built, else at its first step), after
    checking that the ranks' models agree. Returns whether ``fit`` owns the attachment."""
    if not active() or reducer_of(model) is not None:
        return False
    if model.built:
        _ensure_checked(model)
        attach(model)
    else:
        _pending.add(id(model))
    return True


def end_fit(model: Any, owned: bool) -> None:
    """Undo :func:`begin_fit` (remove the reducer it attached)."""
    if owned:
        _pending.discard(id(model))
        detach(model)
        _checked.discard(id(model))


def _ensure_checked(model: Any) -> None:
    if id(model) not in _checked:
        check_consistent(model)
        _checked.add(id(model))


def step_loss(model: Any, value: float, n: int) -> float:
    """The global batch's mean loss from this rank's ``value`` over its ``n`` samples (NaN
    when any rank's is not finite); sets this step's gradient weight ``n / N``. Unchanged
    without a reducer attached (a single process, or a custom loop that did not attach)."""
    if id(model) in _pending:  # fit on an unbuilt model: built by its first batch
        _pending.discard(id(model))
        _ensure_checked(model)
        attach(model)
    r = _ATTACHED.get(model)
    if r is None:
        return value
    if not active():
        _counts[id(model)] = n
        return value
    ok = math.isfinite(value)
    total, count, bad = allreduce_sum([value * n if ok else 0.0, n, 0 if ok else 1],
                                      "the loss reduction")
    r.weight = n / count
    _counts[id(model)] = int(count)
    if bad:
        return math.nan if ok else value
    return float(total / count)


def batch_count(model: Any, n: int) -> int:
    """The global batch's number of samples of the last :func:`step_loss` (``n`` without a
    reducer attached)."""
    return _counts.get(id(model), n) if model in _ATTACHED else n


def agree(interrupted: bool, stop: bool) -> tuple[bool, bool]:
    """Under several ranks, True on every rank when it is True on any (Ctrl-C reaches the
    ranks at slightly different batches; a callback may stop training on one rank only):
    every rank then leaves the loop after the same batch. Unchanged at world size 1."""
    if _state.comm().size == 1:
        return interrupted, stop
    anyi, anys = allreduce_sum([bool(interrupted), bool(stop)], "the stop / Ctrl-C agreement")
    return bool(anyi), bool(anys)


def sync_gradients(model: Any) -> None:
    """Wait for the averaged gradients of the reducer attached to ``model`` (if any)."""
    r = _ATTACHED.get(model)
    if r is not None:
        r.wait()


def sync_state(model: Any) -> None:
    """Average the layers' non-trainable state (BatchNormalization's moving statistics) over the
    ranks after a training step, so every rank holds the same model. Each rank normalises with
    its own shard's batch statistics (PyTorch DDP's BatchNorm without SyncBatchNorm); the
    average of the ranks' moving means is the moving mean of the global batch for equal
    shards, the moving variance that of the shards' variances. One small allreduce per step;
    nothing at world size 1 or for a model without such state."""
    if _state.comm().size == 1:
        return
    entries = [(layer, k) for layer in model.layers if layer.trainable
               for k in sorted(getattr(layer, "non_trainable_keys", ()))]
    if not entries:
        return
    xp = _arrays.array_module(entries[0][0].params[entries[0][1]])
    flat = [np.asarray(_arrays.host_copy(layer.params[k]), np.float64).ravel()
            for layer, k in entries]
    total = allreduce_sum(np.concatenate(flat), "the BatchNorm statistics") / _state.comm().size
    i = 0
    for (layer, k), f in zip(entries, flat, strict=True):
        p = layer.params[k]
        p[...] = xp.asarray(total[i:i + f.size].reshape(p.shape).astype(p.dtype))
        i += f.size


def reduce_evaluation(total: float, count: int, metrics: list[Any]) -> tuple[float, int]:
    """The global loss sum and sample count of an evaluation pass (and its metrics, in
    place)."""
    if _state.comm().size == 1:
        return total, count
    t, c = allreduce_sum([total, count], "the evaluation's reduction")
    reduce_metrics(metrics)
    return float(t), int(c)


def gather_predictions(result: Any) -> Any:
    """Every rank's ``predict`` outputs in the global order, on every rank (a CuPy result
    goes through the host and comes back as CuPy)."""
    if _state.comm().size == 1:
        return result
    gpu = type(result).__module__.startswith("cupy")
    host = result.get() if gpu else np.asarray(result)
    rows = np.concatenate(_predict_rows) if _predict_rows else np.zeros(0, np.int64)
    out = gather_rows(host, rows)
    if gpu:
        import cupy

        return cupy.asarray(out)
    return out
