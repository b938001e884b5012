"""The communicators behind :mod:`fastcnn.distributed`: one small interface, three engines.

* :class:`SelfComm` -- world size 1, no MPI needed (not launched by ``mpiexec`` / ``srun``):
  every collective is the identity.
* :class:`MPIComm` -- MPI through mpi4py (a duplicate of ``COMM_WORLD``): host (NumPy)
  buffers; every collective is nonblocking (``Iallreduce`` / ``Ibcast`` / ``Iallgather`` /
  ``Ibarrier``) and waited for by polling ``Test`` against a deadline, so a rank that died or
  took another code path ends in :class:`DistributedTimeoutError`, never in a hang.
* :class:`NCCLComm` -- NCCL through CuPy (``cupy.cuda.nccl``) for CuPy gradient buffers, on a
  stream of its own that waits for the compute stream; bootstrapped (its unique id) over MPI.
  Its wait polls a CUDA event against the same deadline and aborts the communicator on expiry.

A collective's :class:`Work` handle has ``test()`` (True when done; also drives MPI's progress)
and ``wait(what)``. Reductions are sums; the callers scale (the mean of the gradients is a sum
of gradients pre-scaled by ``n_rank / n_global``).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import numpy as np

__all__ = ["DistributedError", "DistributedTimeoutError", "MPIComm", "NCCLComm", "SelfComm",
           "Work", "default_timeout", "launched_by_mpi"]

#: environment variables by which MPI launchers (MPICH / Intel MPI hydra, Open MPI, PMIx,
#: Slurm's srun, MVAPICH) tell a process it is one rank of several
_LAUNCHER_VARS = ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK",
                  "SLURM_NTASKS", "MV2_COMM_WORLD_SIZE", "MPI_LOCALNRANKS")


class DistributedError(RuntimeError):
    """A distributed-training error: ranks that disagree, a missing MPI, a misuse."""


class DistributedTimeoutError(DistributedError, TimeoutError):
    """A collective did not complete before its deadline (a rank died, hangs or runs another
    code path)."""


def launched_by_mpi() -> bool:
    """True when an MPI launcher started this process as one of several ranks."""
    for var in _LAUNCHER_VARS:
        v = os.environ.get(var)
        if v is not None and (var.endswith("RANK") or v.strip() not in ("", "1")):
            return True
    return False


def default_timeout() -> float:
    """Seconds a collective may take: ``FASTCNN_DIST_TIMEOUT`` (default 300)."""
    raw = os.environ.get("FASTCNN_DIST_TIMEOUT", "300")
    try:
        t = float(raw)
    except ValueError:
        raise ValueError(f"FASTCNN_DIST_TIMEOUT must be a number of seconds, got {raw!r}") from None
    if not t > 0:
        raise ValueError(f"FASTCNN_DIST_TIMEOUT must be > 0 seconds, got {raw!r}")
    return t


def _poll(done: Any, timeout: float, what: str, on_expiry: Any = None) -> None:
    """Call ``done()`` until it is True: spin for the first 50 ms (MPI progresses only inside
    MPI calls, and a sleeping rank delays its partners), then sleep with a backoff of up to
    1 ms; past ``timeout`` seconds raise DistributedTimeoutError."""
    start = time.monotonic()
    spin_until, deadline = start + 0.05, start + timeout
    sleep, i = 5e-5, 0
    while not done():
        i += 1
        if i & 63:
            continue
        now = time.monotonic()
        if now < spin_until:
            continue
        if now > deadline:
            if on_expiry is not None:
                on_expiry()
            raise DistributedTimeoutError(
                f"{what} did not complete within the collective timeout ({timeout:g} s): "
                f"another rank died, hangs, or runs another code path (e.g. a different "
                f"number of batches). Raise the timeout with fastcnn.distributed.init("
                f"timeout=...) or FASTCNN_DIST_TIMEOUT if a rank is just slow")
        time.sleep(sleep)
        sleep = min(sleep * 2, 1e-3)


class Work:
    """A collective in flight: ``test()`` (done yet?) and ``wait(what)``; ``then`` runs after
    completion (e.g. copying a reduced buffer back)."""

    def __init__(self, test: Any, timeout: float, then: Any = None, on_expiry: Any = None) -> None:
        self._test, self._timeout, self._then, self._expiry = test, timeout, then, on_expiry
        self.done = False
        self._lock = threading.Lock()  # a progress thread may test too: one at a time

    def test(self) -> bool:
        if self.done:
            return True
        if self._lock.acquire(blocking=False):
            try:
                if not self.done and self._test():
                    self.done = True
            finally:
                self._lock.release()
        return self.done

    def wait(self, what: str) -> None:
        if not self.done:
            _poll(self.test, self._timeout, what, self._expiry)
        if self._then is not None:
            then, self._then = self._then, None
            then()


class SelfComm:
    """World size 1: the collectives return at once, the data unchanged."""

    rank, size, local_rank, local_size = 0, 1, 0, 1
    name = "self"
    #: whether several threads may call MPI at once (the progress thread needs it)
    thread_multiple = False

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout

    def iallreduce(self, buf: np.ndarray) -> Work:
        """Sum ``buf`` (any shape, float32 / float64 / int64) in place over the ranks."""
        return Work(lambda: True, self.timeout)

    def ibcast(self, buf: np.ndarray, root: int = 0) -> Work:
        """Overwrite ``buf`` in place with rank ``root``'s."""
        return Work(lambda: True, self.timeout)

    def allgather(self, a: np.ndarray) -> list[np.ndarray]:
        """Every rank's 1-D array ``a`` (lengths may differ), in rank order."""
        return [np.ascontiguousarray(a)]

    def barrier(self) -> None:
        """Wait for every rank."""

    def abort(self, code: int = 1) -> None:
        os._exit(code)

    def close(self) -> None:
        pass


class MPIComm(SelfComm):
    """MPI through mpi4py: nonblocking collectives on a duplicate of ``COMM_WORLD``."""

    name = "mpi"

    def __init__(self, timeout: float) -> None:
        super().__init__(timeout)
        try:
            from mpi4py import MPI
        except ImportError as e:
            raise DistributedError(
                f"this process was started by an MPI launcher, but mpi4py is not importable "
                f"({e}); install it with pip install \"fastcnn[mpi]\" (mpi4py and mpich)") from e
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD.Dup()
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.local = self.comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank, self.local_size = self.local.Get_rank(), self.local.Get_size()
        self.thread_multiple = MPI.Query_thread() >= MPI.THREAD_MULTIPLE

    def _typed(self, buf: np.ndarray) -> list[Any]:
        if not (isinstance(buf, np.ndarray) and buf.flags.c_contiguous):
            raise TypeError(f"MPI collectives take C-contiguous NumPy buffers, got "
                            f"{type(buf).__name__}")
        return [buf, self.MPI._typedict[buf.dtype.char]]

    def iallreduce(self, buf: np.ndarray) -> Work:
        req = self.comm.Iallreduce(self.MPI.IN_PLACE, self._typed(buf), op=self.MPI.SUM)
        return Work(req.Test, self.timeout)

    def ibcast(self, buf: np.ndarray, root: int = 0) -> Work:
        req = self.comm.Ibcast(self._typed(buf), root=root)
        return Work(req.Test, self.timeout)

    def allgather(self, a: np.ndarray) -> list[np.ndarray]:
        a = np.ascontiguousarray(a)
        counts = np.zeros(self.size, np.int64)
        mine = np.array([a.size], np.int64)
        req = self.comm.Iallgather([mine, self.MPI.INT64_T], [counts, self.MPI.INT64_T])
        Work(req.Test, self.timeout).wait("allgather (sizes)")
        out = np.empty(int(counts.sum()), a.dtype)
        displ = np.concatenate([[0], np.cumsum(counts)[:-1]])
        req = self.comm.Iallgatherv(self._typed(a), [out, (counts, displ),
                                                     self.MPI._typedict[a.dtype.char]])
        Work(req.Test, self.timeout).wait("allgather")
        return [out[d:d + c] for d, c in zip(displ.tolist(), counts.tolist(), strict=True)]

    def barrier(self) -> None:
        Work(self.comm.Ibarrier().Test, self.timeout).wait("barrier")

    def abort(self, code: int = 1) -> None:
        self.MPI.COMM_WORLD.Abort(code)

    def close(self) -> None:
        for c in (self.local, self.comm):
            if c != self.MPI.COMM_NULL:
                c.Free()


class NCCLComm:
    """NCCL through CuPy for device (CuPy) buffers; ``host`` (an MPIComm) bootstraps it and
    carries everything small. One rank per GPU: the caller selected the device first."""

    name = "nccl"

    def __init__(self, host: MPIComm | SelfComm) -> None:
        try:
            import cupy
            from cupy.cuda import nccl

            nccl.get_version()  # loads libnccl
        except Exception as e:  # ImportError, or the library missing at load time
            raise DistributedError(
                f"the NCCL backend needs CuPy with NCCL (pip install cupy-cuda13x "
                f"nvidia-nccl-cu13): {type(e).__name__}: {e}") from e
        self.cp, self.nccl, self.host = cupy, nccl, host
        self.rank, self.size, self.timeout = host.rank, host.size, host.timeout
        uid = np.zeros(128, np.int64)  # nccl.get_unique_id(): a tuple of 128 signed chars
        if host.rank == 0:
            uid[:] = np.asarray(nccl.get_unique_id(), dtype=np.int64)
        host.ibcast(uid).wait("NCCL bootstrap (unique id)")
        self.comm = nccl.NcclCommunicator(self.size, tuple(int(v) for v in uid), self.rank)
        self.stream = cupy.cuda.Stream(non_blocking=True)

    def iallreduce(self, buf: Any) -> Work:
        """Sum the CuPy array ``buf`` in place over the ranks, on the communication stream
        after the work already queued on the current stream (the gradients)."""
        cp, nccl = self.cp, self.nccl
        if not (isinstance(buf, cp.ndarray) and buf.flags.c_contiguous):
            raise TypeError(f"NCCL collectives take C-contiguous CuPy buffers, got "
                            f"{type(buf).__name__}")
        types = {np.dtype(np.float32): nccl.NCCL_FLOAT32, np.dtype(np.float64):
                 nccl.NCCL_FLOAT64, np.dtype(np.int64): nccl.NCCL_INT64}
        ready = cp.cuda.Event(disable_timing=True)
        ready.record(cp.cuda.get_current_stream())
        self.stream.wait_event(ready)
        self.comm.allReduce(buf.data.ptr, buf.data.ptr, buf.size, types[buf.dtype],
                            nccl.NCCL_SUM, self.stream.ptr)
        done = cp.cuda.Event(disable_timing=True)
        done.record(self.stream)
        return Work(lambda: done.done, self.timeout,
                    then=lambda: cp.cuda.get_current_stream().wait_event(done),
                    on_expiry=self.comm.abort)

    def close(self) -> None:
        self.stream.synchronize()
        self.comm.destroy()
