"""The process's distributed state: the communicator :func:`fastcnn.distributed.init` made
(a :class:`~fastcnn.distributed._comm.SelfComm` of world size 1 until then) and, on GPUs, the
NCCL communicator for device buffers. The other modules of the package read it from here."""

from __future__ import annotations

from ._comm import MPIComm, NCCLComm, SelfComm, default_timeout

__all__ = ["comm", "device_comm", "set_comms"]

_comm: SelfComm | MPIComm = SelfComm(300.0)
_device_comm: NCCLComm | None = None
_initialised = False
_shard_data = True


def comm() -> SelfComm | MPIComm:
    """The host communicator (world size 1 before ``init()`` or without a launcher)."""
    return _comm


def device_comm() -> NCCLComm | None:
    """The NCCL communicator, when ``init(device="cuda")`` made one."""
    return _device_comm


def initialised() -> bool:
    return _initialised


def shard_data() -> bool:
    """Whether fit / evaluate / predict split every batch over the ranks (``init(shard_data=)``)."""
    return _shard_data


def set_comms(host: SelfComm | MPIComm | None, device: NCCLComm | None = None,
              shard: bool = True) -> None:
    """Install the communicators (``host=None``: back to world size 1, not initialised)."""
    global _comm, _device_comm, _initialised, _shard_data
    _comm = host if host is not None else SelfComm(default_timeout())
    _device_comm = device
    _initialised = host is not None
    _shard_data = bool(shard)


def timeout() -> float:
    return _comm.timeout
