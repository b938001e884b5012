"""A fake, NumPy-backed `cupy` for running fastcnn's CUDA path on the CPU emulator.

Arrays are numpy.ndarray subclasses whose type's module is "cupy" and whose `.data.ptr` is the
host address (the emulated kernels read host memory). `empty` fills new arrays with garbage
(NaN / a byte pattern) so that outputs a kernel forgets to write are caught.
"""
from __future__ import annotations

import types

import numpy as np

float32 = np.float32
float64 = np.float64
int64 = np.int64
int32 = np.int32
uint8 = np.uint8
uint64 = np.uint64
bool_ = np.bool_


class _Mem:
    def __init__(self, ptr: int) -> None:
        self.ptr = ptr


class _Device:
    def __init__(self, id: int | None = 0) -> None:
        self.id = 0 if id is None else int(id)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class ndarray(np.ndarray):
    @property
    def data(self):  # type: ignore[override]
        return _Mem(self.__array_interface__["data"][0])

    @property
    def device(self):
        return _Device(0)

    def get(self):
        return np.array(self, copy=True, subok=False)


ndarray.__module__ = "cupy"


def _wrap(a):
    return a.view(ndarray)


def asarray(a, dtype=None):
    return _wrap(np.array(a, dtype=dtype, copy=True, subok=False))


array = asarray


def asnumpy(a):
    return np.array(a, copy=True, subok=False)


def ascontiguousarray(a, dtype=None):
    if isinstance(a, ndarray) and a.flags.c_contiguous and (dtype is None or a.dtype == dtype):
        return a
    return _wrap(np.ascontiguousarray(np.asarray(a), dtype=dtype))


def empty(shape, dtype=float):
    a = np.empty(shape, dtype=dtype)
    if a.dtype.kind == "f":
        a.fill(np.nan)
    else:
        a.view(np.uint8).fill(0x7A)
    return _wrap(a)


def empty_like(a, dtype=None):
    return empty(a.shape, a.dtype if dtype is None else dtype)


def zeros(shape, dtype=float):
    return _wrap(np.zeros(shape, dtype=dtype))


def zeros_like(a):
    return _wrap(np.zeros_like(np.asarray(a)))


def moveaxis(a, src, dst):
    return _wrap(np.moveaxis(np.asarray(a), src, dst))


def broadcast_to(a, shape):
    return _wrap(np.broadcast_to(np.asarray(a), shape))


class _Stream:
    def __init__(self, null: bool = False) -> None:
        self.ptr = 0 if null else 0x5EED

    def __enter__(self):
        _state["stream"].append(self)
        return self

    def __exit__(self, *exc):
        _state["stream"].pop()
        return False

    def synchronize(self):
        pass

    def use(self):
        _state["stream"][0] = self
        return self


_state = {"stream": [_Stream(null=True)]}


def _get_current_stream():
    return _state["stream"][-1]


cuda = types.SimpleNamespace(
    is_available=lambda: True,
    get_current_stream=_get_current_stream,
    Device=_Device,
    Stream=_Stream,
    runtime=types.SimpleNamespace(getDevice=lambda: 0),
)
