"""Averaging the gradients over the ranks: :class:`GradientReducer` and
:func:`allreduce_gradients`.

Buckets. The trainable weights are grouped, from the last layer down (the order in which the
backward pass produces them), into buckets of whole layers of about ``bucket_mb`` MiB each
(``FASTCNN_DIST_BUCKET_MB``, default 4): a few large messages instead of one per weight.

Overlap. :class:`GradientReducer` wraps each layer's ``backward`` (an attribute of the layer
instance; the class is untouched, :meth:`GradientReducer.close` removes it): when a layer has
written its gradients, every bucket whose layers are all done is copied into its flat buffer,
pre-scaled, and its nonblocking allreduce (MPI ``Iallreduce``; NCCL on its own stream for CuPy
gradients) starts while the layers below still run their backward. :meth:`GradientReducer.wait`
starts what is left, waits for every bucket (with the collective timeout) and points each
layer's ``grads`` at its slice of the reduced buffer, which the optimizer then reads.

Progress. MPI moves a nonblocking collective forward only inside MPI calls, and a layer's
backward is one long kernel call (the GIL released). With ``progress="thread"`` (the default;
``FASTCNN_DIST_PROGRESS=thread|poll``) a helper thread tests the buckets in flight every few
tens of microseconds while the kernels run, so the reduction really proceeds during the
backward pass (when MPI runs at ``MPI_THREAD_MULTIPLE``, mpi4py's default, else it falls
back to polling; a request is tested by one thread at a time); with ``"poll"`` only each
layer's hook and :meth:`GradientReducer.wait` test them. NCCL needs neither: it runs on its
own CUDA stream.

The mean. Each rank's gradient is scaled by ``weight`` before the sum: ``1 / world_size``
(equal shards: the plain mean of the ranks' mean gradients, which is the global batch's mean
gradient) or ``n_rank / n_global`` as ``fit`` sets it per step (shards that differ by a sample:
still exactly the global batch's mean).
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from . import _state
from ._comm import DistributedError, Work

__all__ = ["GradientReducer", "allreduce_gradients", "reducer_of"]

_ATTACHED: weakref.WeakKeyDictionary[Any, GradientReducer] = weakref.WeakKeyDictionary()
_PLAIN: weakref.WeakKeyDictionary[Any, GradientReducer] = weakref.WeakKeyDictionary()


def _bucket_bytes(bucket_mb: float | None) -> int:
    if bucket_mb is None:
        raw = os.environ.get("FASTCNN_DIST_BUCKET_MB", "4")
        try:
            bucket_mb = float(raw)
        except ValueError:
            raise ValueError(f"FASTCNN_DIST_BUCKET_MB must be a number, got {raw!r}") from None
    if isinstance(bucket_mb, bool) or not isinstance(bucket_mb, int | float) or not bucket_mb > 0:
        raise ValueError(f"bucket_mb must be a number > 0 (MiB per bucket), got {bucket_mb!r}")
    return max(1, int(bucket_mb * (1 << 20)))


class _Bucket:
    """Whole layers' gradients in one flat float32 buffer: ``entries`` (layer, key, offset,
    size, shape); ``work`` the allreduce in flight."""

    def __init__(self) -> None:
        self.entries: list[tuple[Any, str, int, int, tuple[int, ...]]] = []
        self.layers: set[int] = set()
        self.size = 0
        self.buf: Any = None
        self.work: Work | None = None


def reducer_of(model: Any) -> GradientReducer | None:
    """The :class:`GradientReducer` attached to ``model`` (by ``attach`` or ``fit``), if any."""
    return _ATTACHED.get(model)


class GradientReducer:
    """Averages a model's gradients over the ranks, overlapped with its backward pass.

    Args:
        model: a built :class:`fastcnn.Sequential`.
        bucket_mb: MiB per bucket (default ``FASTCNN_DIST_BUCKET_MB`` or 4).
        overlap: start each bucket's allreduce during the backward pass (layer hooks);
            False: everything starts in :meth:`wait`.
        progress: ``"thread"`` or ``"poll"`` (see Progress above; default
            ``FASTCNN_DIST_PROGRESS`` or ``"thread"``).

    Use: ``model.backward(...)`` then ``reducer.wait()`` (or
    :func:`allreduce_gradients`) before ``optimizer.step(model)``; gradient accumulation over
    several backward passes goes in ``with reducer.no_sync():`` (the last backward outside).
    ``stats`` holds ``steps``, ``bytes`` per step, ``wait_s`` (time blocked in :meth:`wait`: the
    communication not hidden behind the backward pass) and ``buckets``.
    """

    def __init__(self, model: Any, bucket_mb: float | None = None, overlap: bool = True,
                 progress: str | None = None) -> None:
        progress = progress or os.environ.get("FASTCNN_DIST_PROGRESS", "thread")
        if progress not in ("thread", "poll"):
            raise ValueError(f"progress must be 'thread' or 'poll' (FASTCNN_DIST_PROGRESS), "
                             f"got {progress!r}")
        if not getattr(model, "built", False):
            raise ValueError("GradientReducer: the model is not built; build it (input_shape= "
                             "or model.build) before attaching")
        self.model = model
        self.bucket_bytes = _bucket_bytes(bucket_mb)
        self.overlap = bool(overlap)
        #: this step's scale of the local gradients (None: 1 / world_size)
        self.weight: float | None = None
        self.enabled = True
        self.stats: dict[str, float] = {"steps": 0, "bytes": 0, "wait_s": 0.0, "buckets": 0}
        self._key: Any = None
        self._buckets: list[_Bucket] = []
        self._ready: set[int] = set()
        self._open = False
        self._hooked: list[Any] = []
        self.progress = progress
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self.overlap:
            for layer in model.layers:
                self._hook(layer)

    # -- hooks ------------------------------------------------------------------------------
    def _hook(self, layer: Any) -> None:
        orig = layer.backward

        def backward(*args: Any, **kwargs: Any) -> Any:
            out = orig(*args, **kwargs)
            self._layer_done(layer)
            return out

        backward.__fastcnn_reducer__ = self  # type: ignore[attr-defined]
        layer.__dict__["backward"] = backward
        self._hooked.append(layer)

    def close(self) -> None:
        """Remove the layer hooks (and detach from the model); pending buckets are waited for."""
        if self._open:
            self.wait()
        for layer in self._hooked:
            fn = layer.__dict__.get("backward")
            if getattr(fn, "__fastcnn_reducer__", None) is self:
                del layer.__dict__["backward"]
        self._hooked = []
        if self._thread is not None:
            self._stop.set()
            self._wake.set()
            self._thread.join()
            self._thread = None
        if _ATTACHED.get(self.model) is self:
            del _ATTACHED[self.model]

    @contextmanager
    def no_sync(self) -> Iterator[None]:
        """Backward passes inside accumulate gradients locally (no communication); the next
        one outside starts the reduction of the accumulated sums."""
        old, self.enabled = self.enabled, False
        try:
            yield
        finally:
            self.enabled = old

    # -- layout -----------------------------------------------------------------------------
    def _layout(self) -> None:
        """(Re)build the buckets when the trainable weights changed (shapes, frozen layers)."""
        layers = [(layer, list(layer.named_parameters())) for layer in self.model.layers]
        key = tuple((id(lay), k, tuple(g.shape)) for lay, named in layers for k, _, g in named)
        if key == self._key:
            return
        self._key, self._buckets = key, []
        cur = _Bucket()
        for layer, named in reversed(layers):
            if not named:
                continue
            for k, _, g in named:
                size = int(np.prod(g.shape))
                cur.entries.append((layer, k, cur.size, size, tuple(g.shape)))
                cur.size += size
            cur.layers.add(id(layer))
            if 4 * cur.size >= self.bucket_bytes:
                self._buckets.append(cur)
                cur = _Bucket()
        if cur.entries:
            self._buckets.append(cur)

    def _begin(self) -> None:
        self._layout()
        self._ready = set()
        self._open = True

    def _layer_done(self, layer: Any) -> None:
        if not self.enabled:
            return
        if not self._open:
            self._begin()
        lid = id(layer)
        if lid in self._ready and any(lid in b.layers for b in self._buckets):
            raise DistributedError(
                f"layer {layer.name!r} ran its backward twice before the gradients were "
                f"reduced: wrap the accumulation passes in `with reducer.no_sync():` and call "
                f"reducer.wait() (or allreduce_gradients) before optimizer.step")
        self._ready.add(lid)
        for b in self._buckets:
            if b.work is None and b.layers <= self._ready:
                self._start(b)
            elif b.work is not None:
                b.work.test()  # drives MPI's progress

    # -- communication ----------------------------------------------------------------------
    def _start(self, b: _Bucket) -> None:
        grads = [lay.grads[k] for lay, k, _, _, _ in b.entries]
        gpu = type(grads[0]).__module__.startswith("cupy")
        if gpu:
            import cupy as xp
        else:
            xp = np
        if b.buf is None or (type(b.buf).__module__.startswith("cupy")) != gpu:
            b.buf = xp.empty(b.size, dtype=np.float32)
        host = _state.comm()
        w = 1.0 / host.size if self.weight is None else float(self.weight)
        for (_, _, off, size, _), g in zip(b.entries, grads, strict=True):
            dst = b.buf[off:off + size]
            if w == 1.0:
                dst[...] = g.reshape(-1)
            else:
                xp.multiply(g.reshape(-1), np.float32(w), out=dst)
        dev = _state.device_comm()
        if gpu and dev is not None:
            b.work = dev.iallreduce(b.buf)
        elif gpu:  # CuPy gradients without NCCL: staged through the host
            staged = xp.asnumpy(b.buf)
            work = host.iallreduce(staged)
            buf = b.buf
            b.work = Work(work.test, host.timeout, then=lambda: buf.set(staged))
        else:
            b.work = host.iallreduce(b.buf)
            if self.progress == "thread" and host.thread_multiple:
                self._kick()

    def _kick(self) -> None:
        """Wake the progress thread (started on first use)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._progress, daemon=True,
                                            name="fastcnn-dist-progress")
            self._thread.start()
        self._wake.set()

    def _progress(self) -> None:
        """Test the buckets in flight until none is left, then sleep until the next start."""
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            while not self._stop.is_set():
                pending = [w for b in self._buckets if (w := b.work) is not None and not w.done]
                if not pending:
                    break
                for w in pending:
                    w.test()
                time.sleep(2e-5)

    def wait(self) -> None:
        """Start the buckets not started yet, wait for all (collective timeout), and point
        every layer's ``grads`` at the averaged values."""
        if not self._open:
            self._begin()
        t0 = time.perf_counter()
        try:
            for b in self._buckets:
                if b.work is None:
                    self._start(b)
            for i, b in enumerate(self._buckets):
                assert b.work is not None
                b.work.wait(f"the gradient allreduce (bucket {i + 1} of {len(self._buckets)}, "
                            f"{4 * b.size / 2**20:.2f} MiB)")
                for layer, k, off, size, shape in b.entries:
                    layer.grads[k] = b.buf[off:off + size].reshape(shape)
        finally:
            for b in self._buckets:
                b.work = None
            self._open = False
            self.weight = None
        s = self.stats
        s["wait_s"] += time.perf_counter() - t0
        s["steps"] += 1
        s["bytes"] = 4 * sum(b.size for b in self._buckets)
        s["buckets"] = len(self._buckets)


def allreduce_gradients(model: Any, weight: float | None = None) -> None:
    """Average ``model``'s gradients over the ranks, in place (call after ``model.backward``
    and before ``optimizer.step``; a no-op at world size 1 without NCCL).

    With a :class:`GradientReducer` attached (``fastcnn.distributed.attach(model)``, or inside
    ``fit``) this completes the buckets its hooks started during the backward pass; otherwise
    all buckets are reduced now. ``weight``: scale of this rank's gradients before the sum
    (default ``1 / world_size``; ``n_rank / n_global`` for unequal shards)."""
    if _state.comm().size == 1 and _state.device_comm() is None:
        return
    r = _ATTACHED.get(model)
    if r is None:
        r = _PLAIN.get(model)
        if r is None:
            r = _PLAIN[model] = GradientReducer(model, overlap=False)
    if weight is not None:
        r.weight = weight
    r.wait()


def attach(model: Any, bucket_mb: float | None = None, overlap: bool = True,
           progress: str | None = None) -> GradientReducer:
    """Attach a :class:`GradientReducer` to ``model`` (replacing one attached before): from
    now on :func:`fastcnn.train_step` on it trains data-parallel (global loss, averaged
    gradients), and its buckets start during ``model.backward``. Returns the reducer."""
    old = _ATTACHED.get(model)
    if old is not None:
        old.close()
    r = GradientReducer(model, bucket_mb, overlap, progress)
    _ATTACHED[model] = r
    return r


def detach(model: Any) -> None:
    """Remove the reducer :func:`attach` put on ``model`` (nothing when there is none)."""
    r = _ATTACHED.get(model)
    if r is not None:
        r.close()
