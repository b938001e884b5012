"""The door of every op: array kinds in and out (:func:`_converts`) and the compiled module
for the arrays' device (:func:`_backend`)."""

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
    gpu = [a for a in arrays if a is not None and is_cupy(a)]
    if not gpu:
        return _native.cpu
    if len(gpu) != sum(a is not None for a in arrays):
        raise TypeError(f"{op}: all arrays must be on the same device; got a mix of numpy and "
                        "cupy arrays (move them with cupy.asarray / cupy.asnumpy)")
    return cuda_module(op)


def _check_array(a: Any, name: str, op: str) -> None:
    if not (isinstance(a, np.ndarray) or is_cupy(a)):
        raise TypeError(f"{op}: {name} must be an array of float32 (numpy, cupy, a torch tensor "
                        f"or a DLPack object), got {type(a).__name__}; convert it with "
                        f"numpy.asarray({name}, dtype=numpy.float32)")
