"""CUDA adapter: the caller's destination of an op's main result (``out=`` of conv2d, linear,
batch_norm, max_pool2d; ``dx_out=`` of their backwards), the CPU binding's ``as_dest`` rules
(csrc/bindings/cpu_arrays.h) without in-place use.

fastcnn's layers pass these only on the CPU (their workspace, :mod:`fastcnn._workspace`, is
CPU-only: CuPy's memory pool already reuses device memory); on the GPU they are accepted for
the ops' users and checked here."""

from __future__ import annotations

from typing import Any

import cupy

from ._common import _F32, _cupy_empty, _empty, _ptr, _type_name


def _dest(out: Any, shape: tuple[int, ...], op: str, name: str, **inputs: Any) -> Any:
    """A fresh float32 array of ``shape`` from CuPy's pool when ``out`` is None (call it on the
    op's device), else ``out`` checked: a C-contiguous float32 cupy array of ``shape`` that
    overlaps none of ``inputs`` (the op reads them while it writes ``out``)."""
    if out is None:
        return _empty(shape)
    if not isinstance(out, cupy.ndarray):
        raise TypeError(f"{op}: {name} must be a cupy.ndarray of float32, got {_type_name(out)}")
    if out.dtype != _F32:
        raise TypeError(f"{op}: {name} has dtype {out.dtype}; expected float32")
    if tuple(out.shape) != tuple(shape):
        raise ValueError(f"{op}: {name} has shape {tuple(out.shape)} but the result has shape "
                         f"{tuple(shape)}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{op}: {name} must be C-contiguous (it is written in place), got "
                         f"strides {out.strides}")
    lo, hi = _ptr(out), _ptr(out) + out.nbytes
    for in_name, a in inputs.items():
        if a is None:
            continue
        alo, ahi = _ptr(a), _ptr(a) + a.nbytes
        if alo < hi and lo < ahi and lo != hi and alo != ahi:
            raise ValueError(f"{op}: {name} overlaps {in_name}; pass a separate array (this op "
                             f"reads {in_name} while it writes {name})")
    return out


def _dx_dest(dx_out: Any, compute_dx: bool, shape: tuple[int, ...], op: str,
             **inputs: Any) -> Any:
    """A backward's dx: None when not computed, else ``dx_out`` checked as :func:`_dest` does
    (the inputs it must not overlap as keywords), or a fresh array from CuPy's pool."""
    if not compute_dx:
        return None
    if dx_out is None:
        return _cupy_empty(shape, _F32)
    return _dest(dx_out, tuple(shape), op, "dx_out", **inputs)
