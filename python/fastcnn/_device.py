"""Devices: where GPU arrays go (the CUDA backend, fastcnn._cuda_ops over fastcnn._cuda, when it
is built and a GPU is present; :func:`cuda_built` and :func:`cuda_device_count` are
:mod:`fastcnn._native`'s), why the GPU can't be used (:func:`cuda_unavailable_reason`) and the
uploader that feeds batches to the GPU one batch ahead (:class:`BatchUploader`). Array kinds and
the helpers for code that runs on NumPy and CuPy arrays alike are :mod:`fastcnn._arrays`'s. CuPy
is imported only when a cupy array or the GPU is involved."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from . import _native
from ._arrays import is_cupy
from ._native import cuda_built, cuda_device_count

__all__ = [
    "BatchUploader",
    "cuda_available",
    "cuda_built",
    "cuda_device_count",
    "cuda_module",
    "cuda_unavailable_reason",
]


def cuda_module(op: str) -> ModuleType:
    """Return the CUDA backend for CuPy arrays (``fastcnn._cuda_ops``: the compiled CPU module's
    function names and signatures), or raise a RuntimeError saying why GPU arrays can't be used."""
    try:
        _native.cuda()
    except ImportError as exc:
        raise RuntimeError(f"{op}: got cupy arrays, but this fastcnn was built without its CUDA "
                           "module (install with a CUDA toolkit present, FASTCNN_CUDA=ON)") from exc
    from . import _cuda_ops

    return _cuda_ops


def cuda_available() -> bool:
    """True when the CUDA module is built, a GPU is usable and CuPy (which fastcnn uses for GPU
    arrays) imports and sees it."""
    return cuda_unavailable_reason() is None


# ------------------------------------------------------------------------------------------------
# which device, and why not


def cuda_unavailable_reason() -> str | None:
    """None when GPU arrays can be used (:func:`cuda_available`), else a sentence saying why not:
    no CUDA module, no CuPy, no device / driver. Never raises."""
    if not cuda_built():
        return ("this fastcnn was built without its CUDA module (reinstall with a CUDA toolkit "
                "present, FASTCNN_CUDA=ON)")
    if cuda_device_count() < 1:
        return "no CUDA device is usable (no GPU, or no NVIDIA driver)"
    try:
        import cupy
    except Exception as exc:  # ImportError, or a CuPy that fails to load its CUDA libraries
        return (f"CuPy, which fastcnn uses for GPU arrays, cannot be imported ({exc}); install "
                "it with pip install 'fastcnn[cuda]'")
    try:
        if not bool(cupy.cuda.is_available()):
            return "CuPy sees no usable CUDA device"
    except Exception as exc:
        return f"CuPy cannot use the GPU ({exc})"
    return None


# ------------------------------------------------------------------------------------------------
# feeding batches to the GPU


class _Slot:
    """One of the uploader's two buffer sets: per array position a pinned host buffer and a
    device buffer (raw bytes, grown on demand), and the event of the last copy out of them."""

    def __init__(self) -> None:
        self.host: dict[int, np.ndarray] = {}
        self.dev: dict[int, Any] = {}
        self.event: Any = None

    def buffers(self, cupy: Any, i: int, nbytes: int) -> tuple[np.ndarray, Any]:
        h = self.host.get(i)
        if h is None or h.size < nbytes:
            cap = max(nbytes, 1)
            h = self.host[i] = np.frombuffer(cupy.cuda.alloc_pinned_memory(cap), np.uint8, cap)
            self.dev[i] = cupy.empty(cap, dtype=np.uint8)
        return h, self.dev[i]


class BatchUploader:
    """Copies host batches to the GPU one batch ahead of the computation.

    ``start(arrays)`` begins the copies of a tuple of arrays (NumPy arrays are uploaded; cupy
    arrays and None pass through) and returns a handle; ``finish(handle)`` makes the current
    stream wait for those copies and returns the cupy arrays. Calling ``start`` for batch
    i + 1 before the work of batch i is queued lets the copy overlap that work.

    With CuPy's pinned host memory, ``Stream.record`` / ``wait_event`` and ``ndarray.set`` (all
    checked with ``hasattr``), each batch is staged in pinned memory and copied asynchronously
    on a separate non-blocking stream into a persistent device buffer; two buffer sets
    alternate, and a set is refilled only after (host side) its previous copy finished and
    (device side) the work queued so far on the compute stream, which may still read it, is
    done. Without them (or if creating the stream fails) each array is uploaded with
    ``cupy.asarray`` on the current stream, synchronously.

    Because buffers are reused two batches later, an array returned by ``finish`` is valid
    until the second next ``finish``: keep a copy of anything that must live longer.
    """

    def __init__(self) -> None:
        import cupy

        self.cp = cupy
        cuda = cupy.cuda
        self.overlap = (hasattr(cuda, "alloc_pinned_memory") and hasattr(cuda, "Stream")
                        and hasattr(cuda.Stream, "record") and hasattr(cuda.Stream, "wait_event")
                        and hasattr(cupy.ndarray, "set"))
        self.stream: Any = None
        if self.overlap:
            try:
                self.stream = cuda.Stream(non_blocking=True)
            except Exception:  # an old CuPy, an odd build: plain synchronous uploads
                self.overlap = False
        self._slots = [_Slot(), _Slot()]
        self._next = 0

    def start(self, arrays: tuple[Any, ...]) -> Any:
        cp = self.cp
        if not self.overlap:
            return tuple(a if a is None or is_cupy(a) else cp.asarray(a) for a in arrays)
        slot = self._slots[self._next]
        self._next ^= 1
        if slot.event is not None and not slot.event.done:  # a query: no wait when done
            slot.event.synchronize()  # the pinned buffers' previous copy is done
        # the device buffers may still be read by work queued on the compute stream
        self.stream.wait_event(cp.cuda.get_current_stream().record())
        out: list[Any] = []
        for i, a in enumerate(arrays):
            if a is None or is_cupy(a):
                out.append(a)
                continue
            a = np.ascontiguousarray(a)
            h, d = slot.buffers(cp, i, a.nbytes)
            hv = h[:a.nbytes].view(a.dtype).reshape(a.shape)
            hv[...] = a
            dv = d[:a.nbytes].view(a.dtype).reshape(a.shape)
            dv.set(hv, stream=self.stream)
            out.append(dv)
        slot.event = self.stream.record()
        return tuple(out), slot.event

    def finish(self, handle: Any) -> tuple[Any, ...]:
        if not self.overlap:
            return handle  # type: ignore[no-any-return]
        arrays, event = handle
        self.cp.cuda.get_current_stream().wait_event(event)
        return arrays  # type: ignore[no-any-return]

    def close(self) -> None:
        """Wait for copies still in flight (so the pinned buffers can be freed)."""
        for slot in self._slots:
            if slot.event is not None:
                slot.event.synchronize()
                slot.event = None
