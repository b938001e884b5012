"""The batching protocol shared by the datasets: seeds, epochs, background prefetch.

A dataset is iterable; each ``iter(ds)`` is one epoch and returns a :class:`BatchIterator`.
The iterator runs the dataset's batch producer in one daemon thread ("fastcnn-data-producer"),
which may in turn use a few daemon decode threads ("fastcnn-data-worker-i"), and hands the
finished batches over through a queue of ``prefetch`` slots, so the consumer finds the next
batch ready while it trains on the current one.

Stopping early is clean: ``close()``, leaving a ``with`` block, or dropping the last reference
to the iterator (a ``for`` loop left with ``break``) stops and joins the threads. The producer
threads never hold a reference to the iterator, so garbage collection can always reach it, and
they are daemons, so an iterator still alive at interpreter exit cannot hang it.

Randomness: the shuffle of epoch e comes from ``SeedSequence(seed, spawn_key=(0, e))`` and the
augmentation of batch b of epoch e from ``SeedSequence(seed, spawn_key=(1, e, b))``, so results
do not depend on thread timing and the same seed replays the same epochs.
"""

from __future__ import annotations

import atexit
import concurrent.futures as cf
import math
import queue
import sys
import threading
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from .._args import check_int
from .augment import Augmentation

__all__ = ["BatchIterator", "DataWarning"]

_POLL_S = 0.05


class DataWarning(UserWarning):
    """Something in the data was skipped or is suspicious (e.g. an unreadable image file)."""


class _Stopped(Exception):
    """Raised inside a producer when its iterator was closed."""


def resolve_seed(seed: int | None) -> int:
    """A non-negative int seed; ``None`` draws fresh OS entropy (still fixed for the dataset)."""
    if seed is None:
        return int(np.random.SeedSequence().entropy)  # type: ignore[arg-type]
    return check_int(seed, "seed", minimum=0)


def derived_rng(seed: int, *key: int) -> np.random.Generator:
    """An independent generator for ``key`` (e.g. (0, epoch) or (1, epoch, batch))."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=tuple(key)))


def check_augment(augment: Any) -> list[Callable[[np.ndarray, np.random.Generator], np.ndarray]]:
    """Normalise ``augment`` (None, one augmentation, or a sequence of them) to a list."""
    if augment is None:
        return []
    if isinstance(augment, Augmentation) or (callable(augment) and not isinstance(augment,
                                                                                  Sequence)):
        augment = [augment]
    out = list(augment)
    for a in out:
        if not callable(a):
            raise ValueError(f"augment entries must be callables (batch, rng) -> batch, got {a!r}")
    return out


def check_rescale(rescale: Any) -> float | None:
    if rescale is None:
        return None
    if isinstance(rescale, bool) or not isinstance(rescale, (int, float, np.integer,
                                                             np.floating)):
        raise ValueError(f"rescale must be a number or None, got {rescale!r}")
    if not math.isfinite(rescale):
        raise ValueError(f"rescale must be finite, got {rescale!r}")
    return float(rescale)


def wait_future(fut: cf.Future[Any], stop: threading.Event) -> Any:
    """``fut.result()``, but give up with _Stopped as soon as ``stop`` is set."""
    while not fut.done():
        if stop.is_set():
            raise _Stopped
        cf.wait([fut], timeout=_POLL_S)
    return fut.result()


def _pool_worker(tasks: queue.SimpleQueue[Any]) -> None:
    while True:
        item = tasks.get()
        if item is None:
            return
        fut, fn, args = item
        del item
        if fut.set_running_or_notify_cancel():
            try:
                result = fn(*args)
            except BaseException as exc:
                fut.set_exception(exc)
            else:
                fut.set_result(result)
        del fut, fn, args


class WorkerPool:
    """A minimal pool of daemon threads (unlike ThreadPoolExecutor's, which exit joins)."""

    def __init__(self, num_workers: int, name: str = "fastcnn-data-worker") -> None:
        self._tasks: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=_pool_worker, args=(self._tasks,), daemon=True,
                                          name=f"{name}-{i}") for i in range(num_workers)]
        for t in self._threads:
            t.start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> cf.Future[Any]:
        fut: cf.Future[Any] = cf.Future()
        self._tasks.put((fut, fn, args))
        return fut

    def close(self, timeout: float = 5.0) -> None:
        """Stop the threads after their current task (cancel pending futures first)."""
        for _ in self._threads:
            self._tasks.put(None)
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout)


#: One item of a producer: a finished batch (or None) and the files newly found unreadable
#: while making it, as (path, error) pairs.
Produced = tuple[Any, list[tuple[str, BaseException]]]


def _warn_bad(bad: list[tuple[str, BaseException]], stacklevel: int) -> None:
    lines = "; ".join(f"{path} ({type(err).__name__}: {err})" for path, err in bad)
    warnings.warn(DataWarning(f"skipped {len(bad)} unreadable image file(s), which later "
                              f"epochs leave out: {lines}"), stacklevel=stacklevel + 1)


def _producer_main(produce: Iterator[Produced], out: queue.Queue[Any],
                   stop: threading.Event) -> None:
    def put(msg: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                out.put(msg, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    try:
        for item in produce:
            if not put(("item", item)):
                return
        put(("end", None))
    except _Stopped:
        return
    except BaseException as exc:
        put(("error", exc))
    finally:
        close = getattr(produce, "close", None)
        if close is not None:
            close()


_LIVE: weakref.WeakSet[BatchIterator] = weakref.WeakSet()


@atexit.register
def _close_live_iterators() -> None:
    """Stop the producers of iterators still alive at exit, while threads can still run."""
    for it in list(_LIVE):
        it.close()


class BatchIterator(Iterator[Any]):
    """One epoch of batches, produced ahead in a background thread.

    Use it as a plain iterator, or as a context manager / with ``close()`` to stop early.
    Files that could not be decoded are reported with one :class:`DataWarning` (in the
    consuming thread) naming them.
    """

    def __init__(self, make_producer: Callable[[threading.Event], Iterator[Produced]],
                 prefetch: int) -> None:
        self._stop = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        producer = make_producer(self._stop)
        if prefetch <= 0:
            self._gen: Iterator[Produced] | None = producer
            return
        self._gen = None
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=prefetch)
        self._thread = threading.Thread(target=_producer_main,
                                        args=(producer, self._queue, self._stop),
                                        daemon=True, name="fastcnn-data-producer")
        self._thread.start()
        _LIVE.add(self)

    def __iter__(self) -> BatchIterator:
        return self

    def _next_item(self) -> Produced:
        if self._gen is not None:
            return next(self._gen)
        assert self._thread is not None
        while True:
            try:
                kind, payload = self._queue.get(timeout=_POLL_S)
                break
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    raise RuntimeError(
                        "fastcnn data producer thread exited unexpectedly") from None
        if kind == "end":
            raise StopIteration
        if kind == "error":
            raise payload
        return payload  # type: ignore[no-any-return]

    def __next__(self) -> Any:
        while True:
            if self._closed:
                raise StopIteration
            try:
                batch, bad = self._next_item()
            except BaseException:
                self.close()
                raise
            if bad:
                _warn_bad(bad, stacklevel=2)
            if batch is not None:
                return batch

    def close(self) -> None:
        """Stop producing; joins the background threads. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._gen is not None:
            close = getattr(self._gen, "close", None)
            if close is not None:
                close()
            self._gen = None
        if self._thread is not None:
            try:
                while True:
                    self._queue.get_nowait()
            except queue.Empty:
                pass
            # While the interpreter finalizes, daemon threads can no longer run: don't wait.
            if self._thread is not threading.current_thread() and not sys.is_finalizing():
                self._thread.join(timeout=10.0)

    def __enter__(self) -> BatchIterator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: nothing left to clean
            pass


class BatchDataset:
    """Base of ImageFolder and ArrayDataset: epochs, shuffling, augmentation, ``len``.

    Subclasses define ``_active_items()`` (the item ids this epoch may use) and
    ``_produce(order, epoch, stop)`` (a generator of :data:`Produced`).
    """

    def __init__(self, *, batch_size: int, shuffle: bool, seed: int | None,
                 augment: Any, rescale: float | None, drop_last: bool, prefetch: int) -> None:
        self.batch_size = check_int(batch_size, "batch_size", minimum=1)
        self.shuffle = bool(shuffle)
        self.seed = resolve_seed(seed)
        self.augment = check_augment(augment)
        self.rescale = check_rescale(rescale)
        self.drop_last = bool(drop_last)
        self.prefetch = check_int(prefetch, "prefetch", minimum=0)
        #: The number the next ``iter()`` gives its epoch (0, 1, ...); may be set to replay one.
        self.epoch = 0

    def _active_items(self) -> np.ndarray:
        raise NotImplementedError

    def _produce(self, order: np.ndarray, epoch: int,
                 stop: threading.Event) -> Iterator[Produced]:
        raise NotImplementedError

    def __len__(self) -> int:
        """Batches per epoch."""
        n = len(self._active_items())
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def epoch_order(self, epoch: int) -> np.ndarray:
        """Item ids in the order epoch ``epoch`` visits them (int64)."""
        items = self._active_items()
        if not self.shuffle:
            return items
        return derived_rng(self.seed, 0, epoch).permutation(items)

    def __iter__(self) -> BatchIterator:
        """Start the next epoch: a new (reproducibly) shuffled pass over the data."""
        epoch = self.epoch
        self.epoch += 1
        order = self.epoch_order(epoch)
        return BatchIterator(lambda stop: self._produce(order, epoch, stop), self.prefetch)

    def _transform(self, x: np.ndarray, epoch: int, batch_index: int) -> np.ndarray:
        """Augment (raw values), then rescale; x (N, C, H, W) float32."""
        if self.augment:
            rng = derived_rng(self.seed, 1, epoch, batch_index)
            for aug in self.augment:
                x = aug(x, rng)
        if self.rescale is not None:
            x = x * np.float32(self.rescale)
        return np.ascontiguousarray(x, dtype=np.float32)

    def _augmented_shape(self, shape: tuple[int, int, int]) -> tuple[int, int, int]:
        for aug in self.augment:
            out = getattr(aug, "output_shape", None)
            if out is not None:
                shape = tuple(out(shape))  # type: ignore[assignment]
        return shape

