"""A fake, NumPy-backed `cupy` for running fastcnn's CUDA path on the CPU emulator.

Arrays are numpy.ndarray subclasses whose type's module is "cupy" and whose `.data.ptr` is the
host address (the emulated kernels read host memory). `empty` fills new arrays with garbage
(NaN / a byte pattern) so that outputs a kernel forgets to write are caught.

Honesty: the fake refuses what real CuPy refuses, as far as a NumPy subclass can.

- NumPy ufuncs (`np.exp(a)`, `a * b`, `a += b`, reductions) and NumPy API functions
  (`np.sum(a)`, `np.where(...)`, `np.concatenate(...)`) on fake arrays run only when this module
  implements them (CuPy's `__array_ufunc__` / `__array_function__`), and return fake arrays;
  an operand that is a plain `numpy.ndarray` (a host array mixed with a device array) is a
  TypeError, as in CuPy. Reductions return 0-d arrays, not NumPy scalars, as in CuPy.
- The functions of this module (`cupy.sum`, `cupy.ascontiguousarray`, ...) refuse NumPy arrays
  except where CuPy takes them (`asarray`, `array`: an upload).
- `ndarray.set` / `get` check what CuPy checks (a NumPy array of the same shape and dtype).
- `__array__` raises TypeError like CuPy's ("Implicit conversion to a NumPy array is not
  allowed"), but NumPy never calls it for an ndarray subclass: `np.asarray(a)`, `np.array(a)`,
  `np.ascontiguousarray(a)` of a fake array silently give a host array where CuPy raises, and
  `isinstance(a, numpy.ndarray)` is True where CuPy's is False. fastcnn's own mixing checks
  (fastcnn.ops, the ufunc rule above) usually catch the host array that follows.

Streams, events and pinned memory exist so that the code paths that use them run, but every
copy and kernel is synchronous here: whether a copy really overlaps computation (and any race
between streams) can only be seen on a GPU. An event records the host clock
(``time.perf_counter``) when recorded, so ``cuda.get_elapsed_time`` gives the host time between
two events: with synchronous kernels that is the emulated work's time, nothing like a GPU's.
``cuda.runtime.getDeviceProperties`` names the emulator and reports nothing else.

Counters (``cupy._emu``, not in real CuPy): what a GPU would make the host wait for or copy
back. ``_emu.counts()`` gives ``{"syncs", "d2h", "h2d", "launches", ...}``: ``syncs`` counts
stream / device / event synchronisations and blocking reads (``get``, ``asnumpy``, ``float(a)``,
``int(a)``, ``bool(a)``, ``item``, ``tolist``, printing), ``d2h`` the device-to-host copies among
them, ``h2d`` uploads; the compiled emulated kernels' own stream syncs, copies and launches
(``native_syncs``, ``native_d2h``, ``launches``) are added, read from ``fastcnn._cuda`` once it is
loaded. ``_emu.reset()`` zeroes them; ``_emu.kernels(False)`` is the host-cost mode: emulated
kernels, memsets and device copies return at once and ``empty`` skips its garbage fill, so a
timing measures only the host's work per call (results are then meaningless).

Stream capture and CUDA graphs (``Stream.begin_capture`` / ``end_capture`` / ``is_capturing``,
``cupy.cuda.graph.Graph.launch``) are emulated by ``cupy._capture`` (read its docstring: what
is recorded, what is refused with CUDA's error); ``captures`` / ``replays`` count them, and the
native ``recorded`` the kernels, memsets and copies a capture recorded. Allocations go through
``cupy.cuda.using_allocator`` / ``get_default_memory_pool().malloc`` when an allocator is set
(a ``MemoryPointer`` owns the memory, as in CuPy).
"""
from __future__ import annotations

import ctypes
import itertools
import os
import sys
import time
import types
import weakref
from typing import Any

import numpy as np

from . import _capture as _cap
from ._memory import ALLOCATORS as _ALLOCATORS
from ._memory import _MemoryPointer, _MemoryPool, _UsingAllocator

float16 = np.float16
float32 = np.float32
float64 = np.float64
int8 = np.int8
int32 = np.int32
int64 = np.int64
uint8 = np.uint8
uint64 = np.uint64
bool_ = np.bool_
dtype = np.dtype
inf = np.inf
nan = np.nan
__version__ = f"fake (tools/cuda_emu/fake_cupy over NumPy {np.__version__})"


class _Counters:
    """See the module docstring (``cupy._emu``)."""

    _KEYS = ("stream_syncs", "device_syncs", "event_syncs", "reads", "d2h", "h2d", "captures",
             "replays")

    def __init__(self) -> None:
        self.kernels_on = os.environ.get("FASTCNN_EMU_KERNELS", "1") != "0"
        self.reset()

    def _native(self) -> Any:
        mod = sys.modules.get("fastcnn._cuda")
        if mod is None or not hasattr(mod, "__file__"):
            return None
        lib = ctypes.CDLL(mod.__file__)  # the already loaded module: the same handle
        lib.fastcnn_emu_counter.restype = ctypes.c_longlong
        lib.fastcnn_emu_counter.argtypes = [ctypes.c_int]
        lib.fastcnn_emu_set_kernels.argtypes = [ctypes.c_int]
        return lib

    def reset(self) -> None:
        """Zero every counter (the native ones too)."""
        self.c = dict.fromkeys(self._KEYS, 0)
        lib = self._native()
        if lib is not None:
            lib.fastcnn_emu_counter(-1)

    def counts(self) -> dict[str, int]:
        """The counters since the last reset; ``syncs`` / ``d2h`` include the native ones."""
        out = dict(self.c)
        lib = self._native()
        ns, nd, nl, nr = ((lib.fastcnn_emu_counter(0), lib.fastcnn_emu_counter(1),
                           lib.fastcnn_emu_counter(2), lib.fastcnn_emu_counter(3))
                          if lib is not None else (0, 0, 0, 0))
        out.update(native_syncs=ns, native_d2h=nd, launches=nl, recorded=nr)
        out["syncs"] = (self.c["stream_syncs"] + self.c["device_syncs"] + self.c["event_syncs"]
                        + self.c["reads"] + ns)
        out["d2h"] = self.c["d2h"] + nd
        return out

    def kernels(self, on: bool) -> bool:
        """Switch the emulated kernels on / off (off: the host-cost mode); returns the old
        setting. Applies to the compiled module once it is loaded (call again after import)."""
        old = self.kernels_on
        self.kernels_on = bool(on)
        if not on:  # like CuPy's pool: large blocks reused, not mmap-ed and unmapped each time
            try:
                libc = ctypes.CDLL(None)
                libc.mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD
                libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD
            except (OSError, AttributeError):
                pass
        lib = self._native()
        if lib is not None:
            lib.fastcnn_emu_set_kernels(1 if on else 0)
        return old

    def read(self) -> None:  # a blocking device-to-host read
        self.c["reads"] += 1
        self.c["d2h"] += 1
        _cap.refuse(_state["stream"][-1], "a blocking device-to-host read")


_emu = _Counters()


class _Mem:
    def __init__(self, ptr: int) -> None:
        self.ptr = ptr


class _Data:
    """``a.data`` (a ``_Mem`` with ``ptr``, the host address), made at the first read and kept
    in the array's ``__dict__``: a non-data descriptor, so every later read is a plain instance
    attribute found in C, as CuPy's ``data`` and ``data.ptr`` are stored attributes of its
    Cython ``ndarray`` and ``MemoryPointer`` (tens of ns a read; not the ~1.5 us of a buffer
    export per read that the fake cost before). An array's memory never moves (NumPy's in-place
    ``resize`` drops the kept pointer); views are new objects with their own."""

    def __get__(self, a, owner=None):
        if a is None:
            return self
        try:  # the fast way (a few us less than __array_interface__)
            m = _Mem(ctypes.addressof(ctypes.c_char.from_buffer(a)))
        except (TypeError, ValueError, BufferError):  # read-only, non-contiguous, empty
            m = _Mem(a.__array_interface__["data"][0])
        a.__dict__["data"] = m
        return m


class _Device:
    def __init__(self, id: int | None = 0) -> None:
        self.id = 0 if id is None else int(id)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def synchronize(self):
        _emu.c["device_syncs"] += 1
        _cap.refuse(_state["stream"][-1], "Device.synchronize", any_stream=True)


# ------------------------------------------------------------------------------------------------
# host <-> device rules


def _unwrap(a: Any, where: str) -> Any:
    """A fake array as a plain NumPy view; a NumPy array is refused (CuPy's TypeError);
    nested lists / tuples are walked; anything else (scalars, dtypes, None) passes."""
    if isinstance(a, ndarray):
        return a.view(np.ndarray)
    if isinstance(a, np.ndarray):
        raise TypeError(f"{where}: Unsupported type <class 'numpy.ndarray'> (a host array mixed "
                        "with device arrays; use cupy.asarray to upload it)")
    if isinstance(a, list | tuple):
        return type(a)(_unwrap(e, where) for e in a)
    if isinstance(a, dict):
        return {k: _unwrap(v, where) for k, v in a.items()}
    return a


def _wrap(a: Any) -> Any:
    """NumPy results as fake arrays (NumPy scalars as 0-d arrays, as CuPy returns)."""
    if isinstance(a, ndarray):
        return a
    if isinstance(a, np.ndarray):
        return a.view(ndarray)
    if isinstance(a, np.generic):
        return np.asarray(a).view(ndarray)
    if isinstance(a, tuple):
        return tuple(_wrap(e) for e in a)
    if isinstance(a, list):
        return [_wrap(e) for e in a]
    return a


class ndarray(np.ndarray):
    data = _Data()  # type: ignore[assignment]  # a.data: the MemoryPointer, made once

    def resize(self, *args, **kwargs):  # NumPy's in-place resize may move the memory
        self.__dict__.pop("data", None)
        return np.ndarray.resize(self, *args, **kwargs)

    @property
    def device(self):
        return _Device(0)

    def get(self, stream=None, order="C", out=None):
        _emu.read()
        host = np.array(self.view(np.ndarray), copy=True, order=order)
        if out is not None:
            out[...] = host
            return out
        return host

    def set(self, arr, stream=None):
        """Copy a host array into this one (CuPy's checks: a NumPy array, same shape and dtype,
        this array contiguous)."""
        if not isinstance(arr, np.ndarray) or isinstance(arr, ndarray):
            raise TypeError("Only numpy.ndarray can be set to cupy.ndarray")
        if self.shape != arr.shape:
            raise ValueError(f"Shape mismatch. Old shape: {self.shape}, new shape: {arr.shape}")
        if self.dtype != arr.dtype:
            raise TypeError(f"{arr.dtype} array cannot be set to {self.dtype} array")
        if not self.flags.c_contiguous:
            raise RuntimeError("Cannot set to non-contiguous array")
        _emu.c["h2d"] += 1
        _cap.refuse(_state["stream"][-1], "ndarray.set (an upload from pageable host memory)")
        self.view(np.ndarray)[...] = arr

    # reading values on the host: a device-to-host copy that waits for the stream (counted)
    def __float__(self):
        _emu.read()
        return float(self.view(np.ndarray))

    def __int__(self):
        _emu.read()
        return int(self.view(np.ndarray))

    def __bool__(self):
        _emu.read()
        return bool(self.view(np.ndarray))

    def item(self, *args):
        _emu.read()
        return self.view(np.ndarray).item(*args)

    def tolist(self):
        _emu.read()
        return self.view(np.ndarray).tolist()

    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use "
                        "`.get()` to construct a NumPy array explicitly.")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        where = f"cupy.{ufunc.__name__}"
        args = _unwrap(inputs, where)
        out = kwargs.get("out")
        if _cap._active and (cap := _recording()) is not None:
            _unwrap(kwargs, where)  # host arrays refused as below
            f = getattr(ufunc, method)
            if out is not None or method == "at":
                _cap.capture_inplace(cap, f, inputs, kwargs)
                return None if out is None else (out[0] if len(out) == 1 else out)
            return _cap.capture_call(cap, f, inputs, kwargs)
        if out is not None:
            kwargs["out"] = _unwrap(out, where)
        if "where" in kwargs:
            kwargs["where"] = _unwrap(kwargs["where"], where)
        result = getattr(ufunc, method)(*args, **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _wrap(result)

    def __array_function__(self, func, types, args, kwargs):
        impl = _API.get(func.__name__)
        if impl is None:
            return NotImplemented  # NumPy raises TypeError: no implementation found
        return impl(*args, **kwargs)

    def __repr__(self):
        _emu.read()
        return repr(self.view(np.ndarray))

    def __str__(self):
        _emu.read()
        return str(self.view(np.ndarray))

    def __format__(self, spec):
        _emu.read()
        return format(self.view(np.ndarray)[()] if self.ndim == 0 else self.view(np.ndarray),
                      spec)


ndarray.__module__ = "cupy"

_API: dict[str, Any] = {}


def _api(np_func, name=None):
    """A cupy function doing what ``np_func`` does, on fake arrays only."""
    name = name or np_func.__name__

    def f(*args, **kwargs):
        out = kwargs.get("out")
        u_args = _unwrap(args, f"cupy.{name}")
        u_kwargs = _unwrap(kwargs, f"cupy.{name}")
        if _cap._active and (cap := _recording()) is not None:
            if name == "copyto" or out is not None:
                _cap.capture_inplace(cap, np_func, args, kwargs)
                return out
            return _cap.capture_call(cap, np_func, args, kwargs)
        r = np_func(*u_args, **u_kwargs)
        return out if isinstance(out, ndarray) else _wrap(r)

    f.__name__ = name
    _API[name] = f
    return f


# ------------------------------------------------------------------------------------------------
# creation and transfer


def asarray(a, dtype=None, order=None):
    """Upload (a copy) from host data; a fake array of the right dtype is returned as is."""
    if isinstance(a, ndarray):
        return a if dtype is None or a.dtype == np.dtype(dtype) else a.astype(dtype)
    _emu.c["h2d"] += 1
    _cap.refuse(_state["stream"][-1], "cupy.asarray of host data (an upload from pageable "
                "host memory)")
    return _wrap(np.array(a, dtype=dtype, copy=True, subok=False, order=order or "K"))


def array(a, dtype=None, copy=True, order="K"):
    if isinstance(a, ndarray):
        return a.astype(a.dtype if dtype is None else dtype, order=order, copy=True)
    _emu.c["h2d"] += 1
    _cap.refuse(_state["stream"][-1], "cupy.array of host data (an upload from pageable "
                "host memory)")
    return _wrap(np.array(a, dtype=dtype, copy=True, subok=False, order=order))


def asnumpy(a, stream=None, order="C", out=None):
    if isinstance(a, ndarray):
        return a.get(stream=stream, order=order, out=out)
    return np.asarray(a, order=order)


def ascontiguousarray(a, dtype=None):
    if not isinstance(a, ndarray):
        raise TypeError(f"Argument 'a' has incorrect type (expected cupy.ndarray, got "
                        f"{type(a).__name__})")
    if a.flags.c_contiguous and (dtype is None or a.dtype == np.dtype(dtype)):
        return a
    if _cap._active and (cap := _recording()) is not None:  # a copy kernel: recorded
        return _cap.capture_call(cap, np.ascontiguousarray, (a,), {"dtype": dtype})
    return _wrap(np.ascontiguousarray(a.view(np.ndarray), dtype=dtype))


def empty(shape, dtype=float, order="C"):
    a = _new(shape, dtype, order)
    if not _emu.kernels_on:
        pass  # host-cost mode: CuPy's empty is a pool allocation, no fill
    elif a.dtype.kind == "f":
        a.fill(np.nan)
    else:
        a.reshape(-1).view(np.uint8).fill(0x7A)  # (0-d arrays too)
    return _wrap(a)


def empty_like(a, dtype=None, order="K", shape=None):
    if not isinstance(a, ndarray):
        raise TypeError("cupy.empty_like: expected a cupy.ndarray")
    return empty(a.shape if shape is None else shape, a.dtype if dtype is None else dtype)


def zeros(shape, dtype=float, order="C"):
    if _cap._active or _allocator:
        a = empty(shape, dtype, order)
        a.fill(0)  # a memset: recorded while capturing
        return a
    return _wrap(np.zeros(shape, dtype=dtype, order=order))


def ones(shape, dtype=float, order="C"):
    if _cap._active or _allocator:
        a = empty(shape, dtype, order)
        a.fill(1)
        return a
    return _wrap(np.ones(shape, dtype=dtype, order=order))


_API.update(empty_like=empty_like)
zeros_like = _api(np.zeros_like)
ones_like = _api(np.ones_like)
arange = _api(np.arange)
moveaxis = _api(np.moveaxis)
broadcast_to = _api(np.broadcast_to)
concatenate = _api(np.concatenate)
stack = _api(np.stack)
copyto = _api(np.copyto)
pad = _api(np.pad)
where = _api(np.where)
clip = _api(np.clip)
sum = _api(np.sum)
mean = _api(np.mean)
argmax = _api(np.argmax)
any = _api(np.any)
all = _api(np.all)
round = _api(np.round)
around = _api(np.around, "around")
shape = _api(np.shape)
reshape = _api(np.reshape)
shares_memory = _api(np.shares_memory)
matmul = _api(np.matmul, "matmul")

for _name in ("exp", "log", "log1p", "sqrt", "square", "abs", "absolute", "maximum", "minimum",
              "isnan", "isfinite", "add", "subtract", "multiply", "divide", "true_divide",
              "negative", "greater", "less", "equal", "logical_and", "logical_or",
              "searchsorted", "bincount", "cumsum", "argsort", "isclose"):
    globals()[_name] = _api(getattr(np, _name), _name)
del _name


# ------------------------------------------------------------------------------------------------
# cuda: streams, events, pinned memory (all synchronous here)


class _Event:
    def __init__(self, block=False, disable_timing=False, interprocess=False) -> None:
        self.done = True
        self.disable_timing = disable_timing
        self.time: float | None = None

    def record(self, stream=None):
        self.done = True
        self.time = time.perf_counter()
        self.stream = _get_current_stream() if stream is None else stream

    def synchronize(self):
        _emu.c["event_syncs"] += 1
        stream = getattr(self, "stream", None)
        if stream is not None:
            _cap.refuse(stream, "Event.synchronize of an event recorded in the capture")


_stream_ids = itertools.count(0x5EED0, 0x10)  # distinct handles: captures compare them


class _Stream:
    def __init__(self, null: bool = False, non_blocking: bool = False, ptds: bool = False) -> None:
        if null:
            self.ptr = 0
        else:
            self.ptr = next(_stream_ids)
        self.non_blocking = non_blocking

    def __enter__(self):
        _state["stream"].append(self)
        return self

    def __exit__(self, *exc):
        _state["stream"].pop()
        return False

    def synchronize(self):
        _emu.c["stream_syncs"] += 1
        _cap.refuse(self, "Stream.synchronize of the capturing stream")

    def begin_capture(self, mode=None):
        """Start recording the work issued on this stream (CuPy's default mode: relaxed)."""
        _cap.begin(self, mode)

    def end_capture(self):
        """End the capture: the recorded work as a ``cupy.cuda.graph.Graph``."""
        return _cap.end(self, _emu)

    def is_capturing(self):
        cap = _cap.active()
        return cap is not None and cap.stream is self

    def use(self):
        _state["stream"][0] = self
        return self

    def record(self, event=None):
        event = _Event() if event is None else event
        event.record(self)
        return event

    def wait_event(self, event):
        if not isinstance(event, _Event):
            raise TypeError("wait_event: expected a cupy.cuda.Event")

    @property
    def done(self):
        return True


_state = {"stream": [_Stream(null=True)]}


def _get_current_stream():
    return _state["stream"][-1]


def _get_elapsed_time(start_event, end_event) -> float:
    """Milliseconds between two recorded events (host time here; CuPy's errors otherwise)."""
    for e in (start_event, end_event):
        if not isinstance(e, _Event):
            raise TypeError("get_elapsed_time: expected cupy.cuda.Event")
        if e.disable_timing:
            raise RuntimeError("cudaErrorInvalidResourceHandle: event created with "
                               "disable_timing=True")
        if e.time is None:
            raise RuntimeError("cudaErrorInvalidResourceHandle: event not recorded")
    return (end_event.time - start_event.time) * 1e3


def _alloc_pinned_memory(size: int):
    """Page-locked host memory; a writable buffer (``numpy.frombuffer`` gives an array)."""
    return bytearray(int(size))


# ------------------------------------------------------------------------------------------------
# memory: CuPy's allocator hooks (only used when an allocator is set; the plain path is np.empty)


_pool = _MemoryPool()
_allocator = _ALLOCATORS  # using_allocator's stack (innermost last)


def get_default_memory_pool() -> _MemoryPool:
    return _pool


def _new(shape, dtype, order):
    """A new uninitialised host array: through the allocator when one is set; tracked by a
    capture in progress (and refused in its non-relaxed modes: the fake has no pool)."""
    cap = _cap.active()
    if cap is not None and cap.mode != _cap.RELAXED:
        cap.invalidate("an allocation (cudaMalloc) in global / thread-local capture mode")
        raise _cap.error(900, "cudaMalloc during a capture in global / thread-local mode")
    alloc = _allocator[-1] if _allocator else None
    if alloc is None:
        a = np.empty(shape, dtype=dtype, order=order)
    else:
        dt = np.dtype(dtype)
        shp = (int(shape),) if np.ndim(shape) == 0 else tuple(int(d) for d in shape)
        mem = alloc(int(np.prod(shp, dtype=np.int64)) * dt.itemsize)
        a = np.ndarray(shp, dt, buffer=mem._buf, order=order)
    if cap is not None:
        cap.allocs.append(weakref.ref(_cap._root(a)))
    return a


# ------------------------------------------------------------------------------------------------
# recording while the current stream captures (cupy._capture)


def _recording():
    return _cap.on_capturing_stream(_state["stream"][-1])


# every method that may launch work (a copy, a reduction): recorded while capturing (views are
# returned as they are)
for _name in ("astype", "copy", "flatten", "ravel", "reshape", "__getitem__", "argmax",
              "argmin", "sum", "mean", "max", "min", "any", "all", "prod", "std", "var", "clip",
              "round", "dot", "cumsum", "take", "repeat", "argsort", "nonzero", "squeeze",
              "transpose", "swapaxes", "__copy__", "__deepcopy__"):
    setattr(ndarray, _name, _cap.method(_name, _recording))
for _name in ("fill", "__setitem__", "sort", "put"):
    setattr(ndarray, _name, _cap.method(_name, _recording, writes=True))
del _name


cuda = types.SimpleNamespace(
    is_available=lambda: True,
    get_current_stream=_get_current_stream,
    Device=_Device,
    Stream=_Stream,
    Event=_Event,
    get_elapsed_time=_get_elapsed_time,
    alloc_pinned_memory=_alloc_pinned_memory,
    using_allocator=_UsingAllocator,
    MemoryPointer=_MemoryPointer,
    graph=types.SimpleNamespace(Graph=_cap.Graph),
    runtime=types.SimpleNamespace(
        CUDARuntimeError=_cap.CUDARuntimeError,
        streamCaptureModeGlobal=_cap.GLOBAL, streamCaptureModeThreadLocal=_cap.THREAD_LOCAL,
        streamCaptureModeRelaxed=_cap.RELAXED,
        getDevice=lambda: 0, getDeviceCount=lambda: 1,
        getDeviceProperties=lambda device: {"name": b"CPU emulation (tools/cuda_emu)"}),
)
