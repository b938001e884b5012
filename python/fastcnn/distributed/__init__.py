"""Data-parallel training over processes and machines: MPI (mpi4py) on CPUs, NCCL (CuPy) on
GPUs. Launch one process per core group / GPU with ``mpiexec -n N`` (or Slurm's ``srun``)::

    import fastcnn as fc
    from fastcnn import distributed as dist

    dist.init()                     # world size 1, no MPI needed, when not under a launcher
    model = fc.models.seeds_cnn(seed=0)      # the same seed on every rank (checked)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=64, epochs=3, seed=0)   # 64 = the GLOBAL batch

What ``fit`` does under ``N`` ranks: every rank reads the same batches in the same seeded order
and keeps its part (:mod:`.sharding`: ``batch_size / N`` samples, parts differing by one when
``N`` does not divide it, weighted so the update is the global batch's mean gradient); the
loss is reduced every step (the same NaN verdict everywhere), the gradients are averaged in
buckets whose nonblocking allreduce starts as each layer's backward finishes
(:mod:`.gradients`), the metrics are reduced at the end of each epoch, so the ``History`` is the
global one on every rank; only rank 0 shows the progress bar and runs ``ModelCheckpoint`` /
``CSVLogger``; ``evaluate`` / ``predict`` shard their batches and return the global results on
every rank. At the start of ``fit`` every rank's model and optimizer are checked against rank
0's (:func:`check_consistent`).

Custom loops: ``reducer = dist.attach(model)`` makes :func:`fastcnn.train_step` data-parallel
on the batches of :func:`shard_batches`; or by hand: ``model.backward(...)``,
:func:`allreduce_gradients`, ``optimizer.step(model)``; :func:`allreduce_sum`,
:func:`reduce_metrics`, :func:`mean_logs` for the numbers.

Faults: after ``init()`` under several ranks, an uncaught exception on any rank prints that
rank's traceback and calls ``MPI_Abort``, which ends every rank (no rank waits forever in a
collective); every collective polls against a timeout (``init(timeout=)``,
``FASTCNN_DIST_TIMEOUT``, default 300 s) and raises :class:`DistributedTimeoutError`.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from typing import Any

from . import _state
from ._comm import (
    DistributedError,
    DistributedTimeoutError,
    MPIComm,
    NCCLComm,
    SelfComm,
    default_timeout,
    launched_by_mpi,
)
from .consistency import broadcast_parameters, check_consistent
from .gradients import GradientReducer, allreduce_gradients, attach, detach
from .reduce import allreduce_sum, gather_rows, mean_logs, reduce_metrics
from .sharding import common_seed, shard_batches, shard_range

__all__ = ["DistributedError", "DistributedTimeoutError", "GradientReducer",
           "allreduce_gradients", "allreduce_sum", "attach", "backend", "barrier",
           "broadcast_parameters", "check_consistent", "common_seed", "detach", "gather_rows",
           "init", "is_initialized", "is_main", "local_rank", "mean_logs", "rank",
           "reduce_metrics", "shard_batches", "shard_range", "shutdown", "world_size"]

_old_excepthook: Any = None


def init(backend: str = "auto", *, device: str = "cpu", timeout: float | None = None,
         abort_on_exception: bool = True, shard_data: bool = True) -> int:
    """Join the job: read the MPI environment and set up the communicators. Returns the world
    size. Calling it again is a no-op (call :func:`shutdown` first to change settings).

    Args:
        backend: ``"auto"`` (MPI when started by an MPI launcher, else a single process
            without MPI), ``"mpi"`` (MPI even without a launcher: a singleton MPI job),
            ``"nccl"`` (NCCL for the GPU gradients, MPI or nothing for the rest; implies
            ``device="cuda"``) or ``"none"`` (world size 1).
        device: ``"cpu"`` or ``"cuda"``: one GPU per local rank (``local_rank %
            device_count``) is made current, and with ``backend`` ``"auto"`` / ``"nccl"``
            the gradients of a model on the GPU are reduced with NCCL.
        timeout: seconds any collective may take before :class:`DistributedTimeoutError`
            (default ``FASTCNN_DIST_TIMEOUT`` or 300).
        abort_on_exception: under several ranks, an uncaught exception on a rank prints its
            traceback and aborts the whole job (``MPI_Abort``) instead of leaving the other
            ranks waiting.
        shard_data: ``fit`` / ``evaluate`` / ``predict`` read the same batches on every rank
            and each keeps its part (checked on each pass's first batch); False: each rank's
            data is its own shard already and is used whole (the gradients are still
            weighted by each rank's share of the global batch).

    Raises:
        DistributedError: a launcher started this process but mpi4py is missing; NCCL or a
            GPU asked for and not usable.
        ValueError: an unknown backend / device, a bad timeout.
    """
    global _old_excepthook
    if backend not in ("auto", "mpi", "nccl", "none"):
        raise ValueError(f"init: backend must be 'auto', 'mpi', 'nccl' or 'none', got "
                         f"{backend!r}")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"init: device must be 'cpu' or 'cuda', got {device!r}")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float)
                                or not timeout > 0):
        raise ValueError(f"init: timeout must be a number of seconds > 0, got {timeout!r}")
    if _state.initialised():
        return _state.comm().size
    t = float(timeout) if timeout is not None else default_timeout()
    use_mpi = backend == "mpi" or (backend in ("auto", "nccl") and launched_by_mpi())
    host: SelfComm | MPIComm = MPIComm(t) if use_mpi else SelfComm(t)
    dev = None
    if backend == "nccl" or device == "cuda":
        dev = _select_gpu(host.local_rank)
        if backend in ("auto", "nccl"):
            dev = NCCLComm(host)
    _state.set_comms(host, dev, shard_data)
    if abort_on_exception and host.size > 1 and _old_excepthook is None:
        _old_excepthook = sys.excepthook
        sys.excepthook = _abort_hook
    return host.size


def _select_gpu(local: int) -> None:
    try:
        import cupy
    except ImportError as e:
        raise DistributedError(f"init(device='cuda'): CuPy is not importable ({e}); pip "
                               f"install \"fastcnn[cuda]\"") from e
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:
        raise DistributedError(f"init(device='cuda'): no usable GPU ({e})") from e
    if n < 1:
        raise DistributedError("init(device='cuda'): no GPU is visible")
    cupy.cuda.Device(local % n).use()
    return None


def _abort_hook(tp: type[BaseException], value: BaseException, tb: Any) -> None:
    c = _state.comm()
    text = "".join(traceback.format_exception(tp, value, tb))
    head = f"{tp.__name__}: {value}".splitlines()[0] if str(value) else tp.__name__
    sys.stdout.flush()
    sys.stderr.write(f"[fastcnn.distributed] rank {c.rank} of {c.size} failed ({head}); "
                     f"aborting the whole job (MPI_Abort):\n{text}")
    sys.stderr.flush()
    time.sleep(0.3)  # let the launcher forward the message before the job is torn down
    c.abort(1)
    os._exit(1)  # pragma: no cover (Abort does not return)


def shutdown() -> None:
    """Leave the job: free the communicators, restore ``sys.excepthook``; back to world size
    1. (MPI itself is finalised by mpi4py when the process exits.)"""
    global _old_excepthook
    dev = _state.device_comm()
    if dev is not None:
        dev.close()
    _state.comm().close()
    _state.set_comms(None)
    if _old_excepthook is not None:
        if sys.excepthook is _abort_hook:
            sys.excepthook = _old_excepthook
        _old_excepthook = None


def is_initialized() -> bool:
    """Whether :func:`init` ran (and :func:`shutdown` did not)."""
    return _state.initialised()


def rank() -> int:
    """This process's rank, 0 .. world_size - 1 (0 before ``init()``)."""
    return _state.comm().rank


def world_size() -> int:
    """The number of ranks (1 before ``init()`` or without a launcher)."""
    return _state.comm().size


def local_rank() -> int:
    """The rank among the processes of this machine (selects the GPU)."""
    return _state.comm().local_rank


def is_main() -> bool:
    """True on rank 0: the rank that prints, logs and writes checkpoints."""
    return _state.comm().rank == 0


def barrier() -> None:
    """Wait until every rank is here (with the collective timeout)."""
    _state.comm().barrier()


def backend() -> str:
    """``"self"`` (one process, no MPI), ``"mpi"``, or ``"mpi+nccl"`` / ``"self+nccl"``."""
    dev = _state.device_comm()
    return _state.comm().name + ("+nccl" if dev is not None else "")
