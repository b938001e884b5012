"""The door of every op: array kinds in and out (:func:`_converts`), the compiled module
for the arrays' device (:func:`_backend`) and the memo of normalised options (:func:`_memo`).

Host cost (issue 14, item 6): the common call (NumPy or CuPy arrays, options given as plain
ints, strings and pairs of ints) costs a type lookup per array and one dict lookup for its
normalised options; the CUDA adapter module is found once, not per call."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from .. import _native
from .._arrays import NATIVE, call_converted, is_cupy, is_foreign, torch_plain_types
from .._device import cuda_module

_F = TypeVar("_F", bound=Callable[..., Any])

# type -> True (a CuPy array), False (anything else: NumPy arrays, non-arrays the CPU module
# reports); filled as types are seen, so the common call costs one dict lookup per array
_GPU_TYPES: dict[type, bool] = {}
_CUDA_OPS: list[Any] = []  # [fastcnn._cuda_ops] once found (cuda_module's checks passed)
_ARRAY_TYPES: set[type] = {np.ndarray}  # types _check_array accepted (cupy's once seen)
_MEMO_MAX = 1024  # entries per memo; a full memo is emptied


def _converts(*names: str) -> Callable[[_F], _F]:
    """Make an op take any array kind: its array parameters ``names`` are viewed as backend
    arrays once (:func:`fastcnn._arrays.call_converted`, the one crossing, also used by
    :mod:`fastcnn.torch`: torch tensors and DLPack objects, zero-copy) and its results given
    back once in the first array argument's kind. Calls whose arrays are all NumPy / CuPy go
    straight to the op (one type test per array argument), plain torch tensors straight to the
    crossing (one more set lookup)."""

    def wrap(fn: _F) -> _F:
        params = list(inspect.signature(fn).parameters.values())
        assert {p.name for p in params} >= set(names), (fn.__name__, names)
        positions = tuple((i, p.name) for i, p in enumerate(params)
                          if p.name in names and p.kind is p.POSITIONAL_OR_KEYWORD)
        indices = tuple(i for i, _ in positions)
        op = fn.__name__

        @functools.wraps(fn)
        def converting(*args: Any, **kwargs: Any) -> Any:
            # the fast path: one type test per array argument given
            n = len(args)
            for i in indices:
                if i < n:
                    t = type(args[i])
                    if t not in NATIVE and (t in torch_plain_types or is_foreign(args[i])):
                        return call_converted(fn, op, positions, names, args, kwargs)
            if kwargs:
                for k in names:
                    if k in kwargs and type(kwargs[k]) not in NATIVE and is_foreign(kwargs[k]):
                        return call_converted(fn, op, positions, names, args, kwargs)
            return fn(*args, **kwargs)

        return converting  # type: ignore[return-value]

    return wrap


def _backend(op: str, *arrays: Any) -> Any:
    """The compiled module for these arrays: numpy -> _cpu, cupy -> the CUDA adapter over
    _cuda; mixing is a TypeError."""
    gpu = given = 0
    for a in arrays:
        if a is not None:
            given += 1
            k = _GPU_TYPES.get(type(a))
            if k is None:
                k = _GPU_TYPES[type(a)] = is_cupy(a)
            gpu += k
    if not gpu:
        return _native.cpu
    if gpu != given:
        raise TypeError(f"{op}: all arrays must be on the same device; got a mix of numpy and "
                        "cupy arrays (move them with cupy.asarray / cupy.asnumpy)")
    if _CUDA_OPS:
        return _CUDA_OPS[0]
    mod = cuda_module(op)
    _CUDA_OPS.append(mod)
    return mod


def _check_array(a: Any, name: str, op: str) -> None:
    if type(a) in _ARRAY_TYPES:
        return
    if not (isinstance(a, np.ndarray) or is_cupy(a)):
        raise TypeError(f"{op}: {name} must be an array of float32 (numpy, cupy, a torch tensor "
                        f"or a DLPack object), got {type(a).__name__}; convert it with "
                        f"numpy.asarray({name}, dtype=numpy.float32)")
    _ARRAY_TYPES.add(type(a))


def _plain_key(*values: Any) -> tuple[Any, ...] | None:
    """``values`` as a memo key when each is an exact ``int``, ``str``, ``None`` or a pair of
    exact ints, else None. Two such keys are equal only for equal arguments (a bool, a float or
    a NumPy integer is never a key: ``True == 1`` and ``1.0 == 1`` would alias)."""
    for v in values:
        t = type(v)
        if t is int or t is str or v is None:
            continue
        if t is tuple and len(v) == 2 and type(v[0]) is int and type(v[1]) is int:
            continue
        return None
    return values


def _memo(memo: dict[Any, Any], key: Any, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` (a pure normalisation of options: same key, same result) from ``memo``
    when ``key`` (None: don't memoise) was seen before. A call that raises is not memoised."""
    if key is None:
        return fn(*args)
    r = memo.get(key)
    if r is None:
        r = fn(*args)
        if len(memo) >= _MEMO_MAX:
            memo.clear()
        memo[key] = r
    return r
