"""Stream capture and CUDA graphs for the fake cupy (what ``Stream.begin_capture`` /
``end_capture`` / ``cupy.cuda.graph.Graph.launch`` do on a GPU, emulated).

While the current stream captures, every operation that would launch work on it is *recorded*
instead of run: the compiled emulated kernels, memsets and device copies of fastcnn._cuda (by
cuda_emu.h, on the stream they are issued on) and the fake's own NumPy-backed operations (ufuncs,
the cupy functions, ``astype`` / ``copy`` / ``fill`` / indexing / ``__setitem__``, ``zeros``'s
fill). An operation that returns a new array gets one now, filled with garbage as ``empty``
fills (nothing ran yet); its recorded node writes it at each replay. Views (``reshape`` of a
contiguous array, basic slicing, ``view``) launch nothing and are returned as usual. Nodes keep
no array alive, as a CUDA graph keeps none: a node whose array was freed after the capture fails
its replay, and a replay checks that every array allocated during the capture is still alive
(CuPy's pool would otherwise hand that memory to another array while the graph writes it).

Refused during a capture, as CUDA / CuPy refuse them (the capture is then invalidated and
``end_capture`` raises ``cudaErrorStreamCaptureInvalidated``): synchronising the capturing stream
or the device, blocking reads (``get``, ``float(a)``, ``bool(a)``, printing), uploads from host
memory (``asarray`` of NumPy data, ``set``), allocations in global / thread-local mode (the fake
has no pool: every allocation counts as a cudaMalloc; CuPy's default mode, relaxed, allows
them), and work on the legacy stream while a blocking stream captures.

Not emulated: several concurrent captures, capturing on more than one stream (events joining
streams), graph updates, conditional nodes; a replay runs at once, like every kernel here.
"""

from __future__ import annotations

import ctypes
import sys
import warnings
import weakref
from typing import Any

import numpy as np

RELAXED, THREAD_LOCAL, GLOBAL = 2, 1, 0


class CUDARuntimeError(RuntimeError):
    """CuPy's ``cupy.cuda.runtime.CUDARuntimeError``: ``status`` is the CUDA error code."""

    def __init__(self, status: int, name: str, text: str) -> None:
        super().__init__(f"{name}: {text}")
        self.status = status


_ERRORS = {
    400: ("cudaErrorInvalidResourceHandle", "invalid resource handle"),
    401: ("cudaErrorIllegalState", "the operation cannot be performed in the present state"),
    900: ("cudaErrorStreamCaptureUnsupported",
          "operation not permitted when stream is capturing"),
    901: ("cudaErrorStreamCaptureInvalidated",
          "operation failed due to a previous error during capture"),
    903: ("cudaErrorStreamCaptureUnmatched", "capture was not initiated in this stream"),
    906: ("cudaErrorStreamCaptureImplicit",
          "operation would make the legacy stream depend on a capturing blocking stream"),
}


def error(status: int, detail: str = "") -> CUDARuntimeError:
    name, text = _ERRORS.get(status, ("cudaErrorEmulated", "emulated error"))
    return CUDARuntimeError(status, name, text + (f" ({detail})" if detail else ""))


def _lib() -> Any:
    """The compiled emulated module's capture entry points, or None before it is loaded."""
    mod = sys.modules.get("fastcnn._cuda")
    if mod is None or not hasattr(mod, "__file__"):
        return None
    lib = _LIBS.get(mod.__file__)
    if lib is None:
        lib = ctypes.CDLL(mod.__file__)
        lib.fastcnn_emu_begin_capture.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        lib.fastcnn_emu_capture_size.restype = ctypes.c_longlong
        lib.fastcnn_emu_invalidate_capture.argtypes = [ctypes.c_char_p]
        lib.fastcnn_emu_end_capture.argtypes = [ctypes.c_void_p,
                                                ctypes.POINTER(ctypes.c_longlong)]
        lib.fastcnn_emu_capture_why.restype = ctypes.c_char_p
        lib.fastcnn_emu_graph_run.argtypes = [ctypes.c_longlong, ctypes.c_longlong,
                                              ctypes.c_longlong]
        lib.fastcnn_emu_graph_destroy.argtypes = [ctypes.c_longlong]
        _LIBS[mod.__file__] = lib
    return lib


_LIBS: dict[str, Any] = {}


class Capture:
    """The capture in progress: its stream, mode, recorded nodes, allocations."""

    def __init__(self, stream: Any, mode: int) -> None:
        self.stream = stream
        self.mode = mode
        self.nodes: list[tuple[Any, ...]] = []  # ("py", fn) or ("c", begin, end)
        self.c_mark = 0
        self.why: str | None = None  # what invalidated it
        self.allocs: list[weakref.ref] = []
        self.lib = _lib()

    def flush(self) -> None:
        """Close the segment of native nodes recorded since the last Python node."""
        if self.lib is None:
            return
        n = int(self.lib.fastcnn_emu_capture_size())
        if n > self.c_mark:
            self.nodes.append(("c", self.c_mark, n))
            self.c_mark = n

    def record(self, fn: Any) -> None:
        self.flush()
        self.nodes.append(("py", fn))

    def invalidate(self, why: str) -> None:
        if self.why is None:
            self.why = why
        if self.lib is not None:
            self.lib.fastcnn_emu_invalidate_capture(why.encode())


_active: list[Capture] = []  # at most one


def active() -> Capture | None:
    return _active[0] if _active else None


def on_capturing_stream(current: Any) -> Capture | None:
    """The capture when work issued now on ``current`` (the current stream) is recorded; raises
    when that work is illegal (the legacy stream while a blocking stream captures)."""
    if not _active:
        return None
    cap = _active[0]
    if current is cap.stream:
        if cap.why is not None:
            raise error(901, f"the capture was invalidated by {cap.why}")
        return cap
    if current.ptr == 0 and not cap.stream.non_blocking:
        cap.invalidate("work on the legacy stream")
        raise error(906)
    return None


def refuse(current: Any, what: str, any_stream: bool = False) -> None:
    """Raise CUDA's error for ``what`` (a sync, a blocking read, an upload from host memory)
    when it is illegal now: on the capturing stream, on the legacy stream while a blocking
    stream captures, or (``any_stream``) whenever something captures."""
    if not _active:
        return
    cap = _active[0]
    if any_stream or current is cap.stream or (current.ptr == 0
                                               and not cap.stream.non_blocking):
        cap.invalidate(what)
        raise error(900, what)


def begin(stream: Any, mode: int | None) -> None:
    if stream.ptr == 0:
        raise RuntimeError("cannot capture on the default (legacy) stream")
    if _active:
        raise error(401, "a capture is already in progress (the emulator captures one at a "
                         "time)")
    cap = Capture(stream, RELAXED if mode is None else int(mode))
    if cap.lib is not None:
        rc = cap.lib.fastcnn_emu_begin_capture(ctypes.c_void_p(stream.ptr), cap.mode,
                                               0 if stream.non_blocking else 1)
        if rc:
            raise error(rc)
    _active.append(cap)


def end(stream: Any, counters: Any) -> Graph:
    cap = active()
    if cap is None:
        raise error(401, "the stream is not capturing")
    if cap.stream is not stream:
        raise error(903)
    cap.flush()
    _active.clear()
    gid = ctypes.c_longlong(-1)
    if cap.lib is not None:
        rc = cap.lib.fastcnn_emu_end_capture(ctypes.c_void_p(stream.ptr), ctypes.byref(gid))
        if rc:
            why = cap.why or cap.lib.fastcnn_emu_capture_why().decode()
            raise error(rc, f"the capture was invalidated by {why}")
    if cap.why is not None:
        raise error(901, f"the capture was invalidated by {cap.why}")
    counters.c["captures"] += 1
    return Graph(cap.nodes, cap.allocs, int(gid.value), cap.lib, counters)


class Graph:
    """``cupy.cuda.graph.Graph``: what a capture recorded; :meth:`launch` replays it."""

    def __init__(self, nodes: list[tuple[Any, ...]], allocs: list[weakref.ref], gid: int,
                 lib: Any, counters: Any) -> None:
        self._nodes = nodes
        self._allocs = allocs
        self._gid = gid
        self._lib = lib
        self._counters = counters

    def launch(self, stream: Any = None) -> None:
        """Replay every recorded node in capture order (at once, like every kernel here)."""
        if any(r() is None for r in self._allocs):
            raise RuntimeError(
                "cuda_emu: Graph.launch after an array allocated during the capture was freed: "
                "CuPy's pool may have handed its memory to another array, which the graph "
                "would now overwrite; keep every allocation of the capture alive while the "
                "graph is used")
        if active() is not None and (stream is None or stream is active().stream):
            raise error(900, "launching a graph into a capture is not emulated")
        for node in self._nodes:
            if node[0] == "py":
                node[1]()
            else:
                rc = self._lib.fastcnn_emu_graph_run(self._gid, node[1], node[2])
                if rc:
                    raise error(rc, "Graph.launch")
        self._counters.c["replays"] += 1

    def upload(self, stream: Any = None) -> None:
        """Nothing to upload here (CuPy's pre-launch upload)."""

    def __del__(self) -> None:
        if self._lib is not None and self._gid >= 0:
            self._lib.fastcnn_emu_graph_destroy(self._gid)


# ------------------------------------------------------------------------------------------------
# operands held without keeping them alive


def _root(a: np.ndarray) -> np.ndarray:
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


class Weak:
    """An array operand of a recorded node: its memory (weakly) and its geometry."""

    __slots__ = ("dtype", "fake", "nbytes", "offset", "ref", "shape", "strides")

    def __init__(self, a: np.ndarray, fake: bool) -> None:
        root = _root(a)
        base = root.__array_interface__["data"][0]
        self.ref = weakref.ref(root)
        self.offset = a.__array_interface__["data"][0] - base
        self.shape, self.strides, self.dtype = a.shape, a.strides, a.dtype
        self.nbytes = root.nbytes
        self.fake = fake

    def get(self) -> np.ndarray:
        root = self.ref()
        if root is None:
            raise RuntimeError(
                "cuda_emu: a graph node uses an array that was freed after the capture (a CUDA "
                "graph keeps no memory alive); keep every array the capture used alive")
        buf = (ctypes.c_char * max(self.nbytes, 1)).from_address(
            root.__array_interface__["data"][0])
        return np.ndarray(self.shape, self.dtype, buffer=buf, offset=self.offset,
                          strides=self.strides)


def weaken(obj: Any, fake_type: type) -> Any:
    if isinstance(obj, np.ndarray):
        return Weak(obj, isinstance(obj, fake_type))
    if isinstance(obj, list | tuple):
        return type(obj)(weaken(e, fake_type) for e in obj)
    if isinstance(obj, dict):
        return {k: weaken(v, fake_type) for k, v in obj.items()}
    return obj


def resolve(obj: Any) -> Any:
    """Plain NumPy views of a node's operands (scalars and the rest as they are)."""
    if isinstance(obj, Weak):
        return obj.get()
    if isinstance(obj, list | tuple):
        return type(obj)(resolve(e) for e in obj)
    if isinstance(obj, dict):
        return {k: resolve(v) for k, v in obj.items()}
    return obj


def arrays_in(obj: Any) -> list[np.ndarray]:
    if isinstance(obj, np.ndarray):
        return [obj]
    if isinstance(obj, list | tuple):
        return [a for e in obj for a in arrays_in(e)]
    if isinstance(obj, dict):
        return [a for v in obj.values() for a in arrays_in(v)]
    return []


def dry_run(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` on the arrays' present contents (garbage for what the capture
    has not computed), for the result's shape and dtype only."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def is_view(result: Any, operands: list[np.ndarray]) -> bool:
    return any(np.may_share_memory(result, a) for a in operands)


# ------------------------------------------------------------------------------------------------
# recording the fake's own operations (cupy.__init__ calls these while the current stream captures)


def _fake() -> Any:
    return sys.modules[__package__]


def capture_call(cap, fn, args, kwargs):
    """Record ``fn(*args, **kwargs)`` (out of place): a view is returned as it is (no work);
    a new result gets a new array now, written by the node at each replay."""
    cp = _fake()
    u_args, u_kwargs = cp._unwrap(args, "capture"), cp._unwrap(kwargs, "capture")
    r = dry_run(fn, *u_args, **u_kwargs)
    if isinstance(r, np.ndarray) and is_view(r, arrays_in((u_args, u_kwargs))):
        return cp._wrap(r)
    if not isinstance(r, np.ndarray | np.generic):
        return r  # shapes, flags: nothing launched
    out = cp.empty(np.shape(r), np.asarray(r).dtype)
    w_args, w_kwargs = weaken(args, cp.ndarray), weaken(kwargs, cp.ndarray)
    w_out = Weak(out, True)

    def node():
        res = fn(*resolve(w_args), **resolve(w_kwargs))
        np.copyto(w_out.get(), res, casting="no")

    cap.record(node)
    return out


def capture_inplace(cap, fn, args, kwargs):
    """Record ``fn(*args, **kwargs)`` that writes its operands (``out=``, ``fill``, ...)."""
    cp = _fake()
    w_args, w_kwargs = weaken(args, cp.ndarray), weaken(kwargs, cp.ndarray)
    cap.record(lambda: fn(*resolve(w_args), **resolve(w_kwargs)))


def method(name: str, recording: Any, writes: bool = False) -> Any:
    base = getattr(np.ndarray, name)

    def m(self, *args, **kwargs):
        if _active and (cap := recording()) is not None:
            _fake()._unwrap(args, f"cupy.ndarray.{name}")  # host arrays refused
            if writes:
                capture_inplace(cap, base, (self, *args), kwargs)
                return None
            return capture_call(cap, base, (self, *args), kwargs)
        return base(self, *args, **kwargs)

    m.__name__ = name
    return m
