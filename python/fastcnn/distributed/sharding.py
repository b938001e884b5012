"""Sharding data by rank: every rank reads the same batches in the same (seeded) order and
keeps its own contiguous part of each.

The rule: a global batch of ``n`` samples gives rank ``r`` of ``W`` the rows
``[r * n // W, (r + 1) * n // W)``: equal parts when ``W`` divides ``n``, else parts that
differ by one sample (``fit`` then weighs each rank's gradient by its share, so the update is
still the global batch's mean gradient). A training batch with fewer samples than ranks (only
an epoch's last, short batch can be) is skipped by every rank, with one warning; an evaluation
or prediction batch that small is computed by rank 0 alone.

This works for anything ``fit`` takes (arrays, ``ImageFolder`` and other datasets, Sequences,
generators), as the same seed gives every rank the same order. The price: every rank
produces the whole global batch before keeping its part (for arrays a gather in memory; a
dataset that decodes files decodes the whole batch on every rank). ``seed=None`` is replaced
by one seed drawn on rank 0 and broadcast (:func:`common_seed`), so the ranks' shuffles agree.
"""

from __future__ import annotations

import secrets
import warnings
import zlib
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from . import _state
from ._comm import DistributedError

__all__ = ["common_seed", "local_items", "shard_batches", "shard_range"]

#: the global row indices of this rank's outputs in the last ``predict`` pass
_predict_rows: list[np.ndarray] = []
_warned_short = False


def shard_range(n: int, rank: int | None = None, size: int | None = None) -> tuple[int, int]:
    """``(lo, hi)``: rank ``rank``'s rows of a batch of ``n`` (default: this process's)."""
    c = _state.comm()
    r = c.rank if rank is None else int(rank)
    w = c.size if size is None else int(size)
    if w < 1 or not 0 <= r < w:
        raise ValueError(f"shard_range: rank must be in [0, size), got rank={r}, size={w}")
    return r * n // w, (r + 1) * n // w


def _slice(item: Any, lo: int, hi: int) -> Any:
    """Rows ``lo:hi`` of a batch: ``(x, y[, w])`` / ``(x,)`` element-wise (None kept), else
    the array itself."""
    if isinstance(item, tuple | list) and len(item) in (1, 2, 3):
        return tuple(None if a is None else a[lo:hi] for a in item)
    return item[lo:hi]


def _batch_len(item: Any) -> int:
    x = item[0] if isinstance(item, tuple | list) and len(item) in (1, 2, 3) else item
    return len(x)


def local_items(items: Iterable[Any], who: str) -> Iterator[Any]:
    """This rank's part of every batch of ``items`` (what ``fit`` / ``evaluate`` /
    ``predict`` read under several ranks; unchanged at world size 1). ``who``: ``"fit"``
    (short batches skipped on every rank) or an evaluation (short batches on rank 0)."""
    global _warned_short
    c = _state.comm()
    if c.size == 1 or not _state.shard_data():
        yield from items
        return
    rows: list[np.ndarray] = []
    if who == "predict":
        _predict_rows.clear()
        rows = _predict_rows
    start = 0
    for item in items:
        n = _batch_len(item)
        if start == 0:
            _check_same_batch(item, who)
        if n >= c.size:
            lo, hi = shard_range(n, c.rank, c.size)
        elif who == "fit":
            if not _warned_short and c.rank == 0:
                warnings.warn(f"fastcnn.distributed: a training batch of {n} sample(s) is "
                              f"shorter than the {c.size} ranks and is skipped on every rank "
                              f"(the last batch of an epoch: choose a batch_size whose "
                              f"remainder is 0 or >= world_size)", UserWarning, stacklevel=2)
                _warned_short = True
            start += n
            continue
        else:
            lo, hi = (0, n) if c.rank == 0 else (0, 0)
        if hi > lo:
            rows.append(np.arange(start + lo, start + hi, dtype=np.int64))
            yield _slice(item, lo, hi)
        start += n


def _check_same_batch(item: Any, who: str) -> None:
    """The first batch of a pass must be the same on every rank (else the shards would
    overlap and miss samples): compare a CRC-32 of its inputs over the ranks."""
    x = item[0] if isinstance(item, tuple | list) and len(item) in (1, 2, 3) else item
    if hasattr(x, "get") and not isinstance(x, np.ndarray):
        x = x.get()  # CuPy
    elif hasattr(x, "numpy") and hasattr(x, "detach"):
        x = x.detach().cpu().numpy()  # a torch tensor
    mine = zlib.crc32(np.ascontiguousarray(np.asarray(x)).tobytes()) if len(x) else 0
    crcs = np.concatenate(_state.comm().allgather(np.array([mine], np.int64)))
    bad = [r for r, v in enumerate(crcs.tolist()) if v != crcs[0]]
    if bad:
        raise DistributedError(
            f"{who}: rank {bad[0]} read another first batch than rank 0 (CRC-32 {crcs[bad[0]]:08x} "
            f"vs {crcs[0]:08x}): under several ranks every rank must read the same data in "
            f"the same order, and each keeps its part of every batch. Give the dataset or "
            f"generator a fixed seed (e.g. ImageFolder(..., seed=0)), or, if each rank reads "
            f"its own data on purpose, call fastcnn.distributed.init(shard_data=False)")


def shard_batches(batches: Iterable[Any], who: str = "fit") -> Iterator[Any]:
    """This rank's part of each batch of any iterable of batches (``(x, y)``, ``(x, y, w)``
    or ``x``; a dataset, a Sequence, a generator) for a custom loop, by the rule above; give
    every rank the same data in the same order (the same seed)."""
    return local_items(iter(batches), who)


def common_seed(seed: int | None) -> int | None:
    """``seed`` itself, or (``seed=None`` under several ranks) a seed drawn on rank 0 and
    broadcast, so every rank shuffles alike."""
    c = _state.comm()
    if seed is not None or c.size == 1:
        return seed
    buf = np.array([secrets.randbits(62) if c.rank == 0 else 0], dtype=np.int64)
    c.ibcast(buf).wait("the broadcast of the shuffling seed")
    return int(buf[0])
