"""The layers' output buffers, reused across calls of a model: :class:`Workspace`, one per model
(``model.workspace``), and :func:`active`, which makes a model's workspace the one its layers
draw from while it runs.

Why: a fresh NumPy array of more than glibc's mmap threshold (dynamic, at most 32 MiB) is a
fresh mapping, and the kernel zeroes each of its pages on the first write: on a large batch
norm (2048, 256, 7, 7) that page zeroing was 29 % of the forward. Below the threshold glibc
reuses its heap, but a step of ResNet-20 at batch 128 still faulted ~1,700 pages (6.9 MB).
Reusing the last step's arrays makes steady-state training and predict allocate nothing large.

How: while a model runs a forward or backward pass (``Sequential`` / ``Model``: ``_forward``
and ``backward``, which ``fit``, ``evaluate``, ``predict``, ``train_on_batch`` and ``model(x)``
all go through) its workspace is the :func:`current` one; :func:`fastcnn.layers.base.pooled`
asks it for an array of the shape a layer is about to compute, a view of a pooled buffer of
that byte size; the layer passes it to the op as ``out=`` / ``dx_out=`` (which writes every
element) and returns it. A pooled buffer is handed out again only when nothing but the pool
references it (``sys.getrefcount``; a view, a torch tensor made with ``torch.from_numpy`` or a
DLPack capsule each hold a reference). So an array is never overwritten while anything can still
read it: predict's result the user keeps, a layer output a callback captured, the inputs a
layer's forward cache keeps for its backward (the next layer's cached input is this layer's
output), a graph's fan-out. A buffer is free again as soon as its last reader drops it, which
also makes it available to the other layers of the same byte size (a stage of ResNet): the pool
holds about what the step holds at its peak, not a copy per layer.

Ownership: each model owns its workspace, and its buffers go with the model (no process-wide
pool: nothing is shared between models or kept after one is deleted). A model used as a layer of
another runs on the outer model's workspace (the outermost active one wins). A layer called on
its own, outside any model, allocates its result as an op does. The current workspace is a
:class:`contextvars.ContextVar`, so each thread (and each asyncio task) sees only the model it
runs. CPU only: on the GPU (CuPy arrays) :meth:`Workspace.empty` returns None and the ops
allocate from CuPy's pool, which already reuses device memory. Thread-safe (a lock around the
hand-out; a buffer another thread is filling is referenced by that thread's view). Buffers that
have not been handed out during the last :attr:`Workspace.idle` hand-outs are dropped (the odd
shape of an epoch's last batch is not kept); :meth:`Workspace.clear` drops every free buffer now.

Switch: the environment variable ``FASTCNN_WORKSPACE=0`` (read at import: :data:`ENABLED`, the
default of every new workspace) or ``model.workspace.enabled = False`` for one model: every op
then allocates its result, as before; the results are bit-identical either way
(tests/test_workspace.py).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import numpy as np

__all__ = ["ENABLED", "Workspace", "active", "current", "in_model_workspace"]

_F32 = np.dtype(np.float32)


def _refs(buffers: list[np.ndarray], i: int) -> int:
    """The reference count of ``buffers[i]`` as seen from here (the list's reference and this
    call's own temporaries included; :data:`_FREE` is the count of an unreferenced one)."""
    return sys.getrefcount(buffers[i])


#: :func:`_refs` of a buffer that only the pool's list holds (measured, so that the rule does
#: not depend on how this Python version counts a call's temporaries).
_FREE = _refs([np.empty(1, np.float32)], 0)


class Workspace:
    """A pool of float32 buffers, by byte size, handed out as arrays of the requested shape.

    Attributes:
        enabled: False: :meth:`empty` returns None (every op allocates its own result);
            default :data:`ENABLED`.
        min_bytes: smaller arrays are not pooled (malloc reuses its heap for those).
        idle: a free buffer not handed out during this many hand-outs is dropped.
        poison: fill every array handed out with NaN first (for tests: an op that read its
            ``out=`` before writing all of it would then show NaN).
    """

    def __deepcopy__(self, memo: dict[int, Any]) -> Workspace:
        """A copy of a model gets an empty workspace of the same settings (buffers and the
        lock are never shared or copied)."""
        new = Workspace(enabled=self.enabled, min_bytes=self.min_bytes, idle=self.idle)
        new.poison = self.poison
        return new

    def __init__(self, *, enabled: bool | None = None, min_bytes: int = 1 << 18,
                 idle: int = 4096) -> None:
        self.enabled = ENABLED if enabled is None else bool(enabled)
        self.poison = False
        self.min_bytes = int(min_bytes)
        self.idle = int(idle)
        self._buffers: dict[int, list[np.ndarray]] = {}  # nbytes -> 1-D float32 buffers
        self._last: dict[int, int] = {}  # id(buffer) -> tick of its last hand-out
        self._tick = 0
        self._lock = threading.Lock()

    def empty(self, shape: tuple[int, ...], like: Any) -> np.ndarray | None:
        """An uninitialised C-contiguous float32 array of ``shape`` from the pool, for an op's
        ``out=``, or None (the op then allocates) when the pool is disabled, ``like`` (an
        input of the op) is not a NumPy array (CuPy: the GPU has its own pool) or the array is
        smaller than :attr:`min_bytes`. The array is a view of a pooled buffer that nothing
        else references; it stays the caller's until every reference to it is dropped."""
        if not self.enabled or type(like) is not np.ndarray:
            return None
        n = 1
        for s in shape:
            n *= s
        nbytes = 4 * n
        if nbytes < self.min_bytes:
            return None
        with self._lock:
            self._tick += 1
            buffers = self._buffers.setdefault(nbytes, [])
            # the most recently handed out first (kept last): the likeliest still in cache
            for i in range(len(buffers) - 1, -1, -1):
                if _refs(buffers, i) == _FREE:
                    buf = buffers.pop(i)
                    buffers.append(buf)
                    break
            else:
                buf = np.empty(n, _F32)
                buffers.append(buf)
                self._trim()
            self._last[id(buf)] = self._tick
            if self._tick % 1024 == 0:
                self._trim()
            if self.poison:
                buf.fill(np.nan)
            return buf.reshape(shape)

    def _trim(self) -> None:
        """Drop the free buffers not handed out during the last :attr:`idle` hand-outs (with
        the lock held)."""
        old = self._tick - self.idle
        for nbytes in list(self._buffers):
            buffers = self._buffers[nbytes]
            keep = []
            for i in range(len(buffers)):
                if _refs(buffers, i) != _FREE or self._last.get(id(buffers[i]), 0) > old:
                    keep.append(buffers[i])
                else:
                    self._last.pop(id(buffers[i]), None)
            if keep:
                self._buffers[nbytes] = keep
            else:
                del self._buffers[nbytes]

    def clear(self) -> None:
        """Drop every free buffer now (those still referenced are dropped by the pool too and
        freed when their last reference goes)."""
        with self._lock:
            self._buffers.clear()
            self._last.clear()

    def nbytes(self) -> int:
        """Bytes held by the pool (free or in use)."""
        with self._lock:
            return sum(k * len(v) for k, v in self._buffers.items())


#: Whether a new :class:`Workspace` is on (``FASTCNN_WORKSPACE=0`` / ``false`` / ``off`` / ``no``
#: in the environment at import turns every model's off).
ENABLED = os.environ.get("FASTCNN_WORKSPACE", "1").strip().lower() not in ("0", "false", "off",
                                                                          "no")

_CURRENT: contextvars.ContextVar[Workspace | None] = contextvars.ContextVar(
    "fastcnn_workspace", default=None)


def current() -> Workspace | None:
    """The workspace of the model running in this thread / task (None outside a model)."""
    return _CURRENT.get()


@contextlib.contextmanager
def active(pool: Workspace) -> Iterator[None]:
    """Make ``pool`` the :func:`current` workspace for the block, unless one already is (a
    model run as a layer of another uses the outer model's)."""
    if _CURRENT.get() is not None:
        yield
        return
    token = _CURRENT.set(pool)
    try:
        yield
    finally:
        _CURRENT.reset(token)


_F = TypeVar("_F", bound=Callable[..., Any])


def in_model_workspace(method: _F) -> _F:
    """Decorate a model's pass (``_forward`` / ``backward``): it runs with the model's
    :attr:`~fastcnn.Model.workspace` :func:`active`."""
    @functools.wraps(method)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        with active(self.workspace):
            return method(self, *args, **kwargs)

    return run  # type: ignore[return-value]
