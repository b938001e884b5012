"""What every CUDA adapter function shares: the input rule (float32, contiguous copies),
the arrays' device, raw pointers, the current stream, outputs and workspaces from CuPy's pool,
and the launch-plan cache.

Host cost (issue 14, item 6): a launch plan (``_cuda.Conv2dPlan`` and the like: a validation
in C++, kept as its bound launch methods and sizes) or a ``*_plan`` call is made once per
distinct set of shapes and options and then served from :func:`_plan`'s cache, keyed by all of
them, so a repeated call launches with pointers only (the one-off launch functions of the ops
without a plan class validate again, cheaply); the arrays' device context is entered only
when it is not the current one, and with a single visible GPU it is never looked up. The hot
helpers (:func:`_f32`, :func:`_empty`, :func:`_stream`) test the common case first (a float32
C-contiguous ``cupy.ndarray``) and reach CuPy through names bound once at import, not through
attribute chains per call.
"""

from __future__ import annotations

from typing import Any

import cupy
import numpy as np

from .. import _native

_cuda = _native.cuda()


_F32 = np.dtype(np.float32)


_I64 = np.dtype(np.int64)

_ND = cupy.ndarray
_cupy_empty = cupy.empty
_current_stream = cupy.cuda.get_current_stream
_get_device = cupy.cuda.runtime.getDevice


def _visible_gpus() -> int:
    try:
        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception:  # no count: check every call's devices
        return 0


_ONE_GPU = _visible_gpus() == 1  # then every array is on the current device


def _type_name(a: Any) -> str:
    return type(a).__name__


def _f32(a: Any, op: str, name: str) -> Any:
    """``a`` as a C-contiguous float32 cupy array; TypeError (the CPU's wording) otherwise."""
    if a.__class__ is _ND and a.dtype is _F32 and a.flags.c_contiguous:
        return a  # the common case: three tests
    if not isinstance(a, cupy.ndarray):
        raise TypeError(f"{op}: {name} must be a cupy.ndarray of float32, got {_type_name(a)}")
    if a.dtype != _F32:
        raise TypeError(f"{op}: {name} has dtype {a.dtype} but fastcnn computes in float32 only; "
                        f"convert it with {name}.astype(cupy.float32)")
    return cupy.ascontiguousarray(a)


def _f32_opt(a: Any, op: str, name: str) -> Any:
    return None if a is None else _f32(a, op, name)


class _Nothing(str):
    """A context that does nothing, entered and left without a Python frame: ``__enter__`` and
    ``__exit__`` are ``str.format`` bound to the empty string (C code returning ``""``, which
    is falsy, so an exception inside the block propagates). What :func:`_device` returns when
    the arrays are on the current device (every call, with one GPU)."""

    __slots__ = ()
    __enter__ = str.format
    __exit__ = str.format


_SAME = _Nothing()  # reusable

_PLANS: dict[tuple[Any, ...], Any] = {}
_PLANS_MAX = 1024  # distinct (op, shapes, options) kept; the cache is emptied when full


def _plan(fn: Any, *args: Any) -> Any:
    """``fn(*args)`` (a ``_cuda.*_plan`` function: a validation and the sizes it implies) from
    the cache when these hashable arguments were seen before. A plan that raises is not
    cached (the error is raised again the next time). The result is shared: read it only.
    Hot callers look ``_PLANS.get((fn, *args))`` up themselves and call this on a miss."""
    key = (fn, *args)
    r = _PLANS.get(key)
    if r is None:
        r = fn(*args)
        if len(_PLANS) >= _PLANS_MAX:
            _PLANS.clear()
        _PLANS[key] = r
    return r


def _device(op: str, *arrays: Any) -> Any:
    """The one device of ``arrays`` as a context (``cupy.cuda.Device``, or nothing to do when
    it is the current device); ValueError if several."""
    if _ONE_GPU:
        return _SAME
    dev = None
    for a in arrays:
        if a is None:
            continue
        d = a.device.id
        if dev is None:
            dev = d
        elif d != dev:
            raise ValueError(f"{op}: the arrays are on different GPUs ({dev} and {d}); move them "
                             "to one device first")
    if dev is None or dev == _get_device():
        return _SAME
    return cupy.cuda.Device(dev)


def _ptr(a: Any) -> int:
    return 0 if a is None else int(a.data.ptr)


def _shape(a: Any) -> tuple[int, ...] | None:
    return None if a is None else tuple(a.shape)


def _stream() -> int:
    return int(_current_stream().ptr)


def _empty(shape: Any, dtype: Any = _F32) -> Any:
    return _cupy_empty(shape, dtype)


def _workspace(n: int, dtype: Any = _F32) -> tuple[Any, int]:
    """A workspace of n elements (None when n == 0: nothing allocated) and n."""
    n = int(n)
    return (_cupy_empty(n, dtype) if n > 0 else None), n


def _same_shape(a: Any, b: Any, op: str, an: str, bn: str) -> None:
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(f"{op}: {an} has shape {tuple(a.shape)} but {bn} has shape "
                         f"{tuple(b.shape)}: expected the same shape")


def _out(out: Any, shape: tuple[int, ...], op: str, **inputs: Any) -> Any:
    """An ``out=`` destination (the CPU's rules): a C-contiguous float32 cupy array of
    ``shape``, used as it is; it may be one of ``inputs`` (in place) but not overlap one
    partially."""
    if not isinstance(out, cupy.ndarray):
        raise TypeError(f"{op}: out must be a cupy.ndarray of float32, got {_type_name(out)}")
    if out.dtype != _F32:
        raise TypeError(f"{op}: out has dtype {out.dtype}; expected float32")
    if tuple(out.shape) != tuple(shape):
        raise ValueError(f"{op}: out has shape {tuple(out.shape)} but the result has shape "
                         f"{tuple(shape)}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{op}: out must be C-contiguous (it is written in place), got strides "
                         f"{out.strides}")
    lo, hi = _ptr(out), _ptr(out) + out.nbytes
    for name, a in inputs.items():
        alo, ahi = _ptr(a), _ptr(a) + a.nbytes
        if not (alo == lo and ahi == hi) and alo < hi and lo < ahi and lo != hi:
            raise ValueError(f"{op}: out overlaps {name} without being the same array; pass "
                             f"{name} itself (in place) or a separate array")
    return out


def _inplace(a: Any, op: str, name: str, like: Any = None) -> Any:
    if (a.__class__ is _ND and a.dtype is _F32 and a.flags.c_contiguous
            and (like is None or a.size == like.size)):
        return a  # the common case
    if not isinstance(a, cupy.ndarray):
        raise TypeError(f"{op}: {name} must be a cupy.ndarray of float32, got {_type_name(a)}")
    if a.dtype != _F32:
        raise TypeError(f"{op}: {name} has dtype {a.dtype}; expected float32")
    if not a.flags.c_contiguous:
        raise ValueError(f"{op}: {name} must be C-contiguous (it is updated in place)")
    if like is not None and a.size != like.size:
        raise ValueError(f"{op}: {name} has {a.size} elements but p has {like.size}")
    return a


def _f32_like(a: Any, op: str, name: str) -> Any:
    """``a`` checked as a float32 cupy array whose values are not read (only its shape and
    device): never copied."""
    if not isinstance(a, cupy.ndarray):
        raise TypeError(f"{op}: {name} must be a cupy.ndarray of float32, got {_type_name(a)}")
    if a.dtype != _F32:
        raise TypeError(f"{op}: {name} has dtype {a.dtype} but fastcnn computes in float32 only; "
                        f"convert it with {name}.astype(cupy.float32)")
    return a
