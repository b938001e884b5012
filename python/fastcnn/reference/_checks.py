"""Array checks shared by the reference ops: float arrays, ranks, shapes, ``out=``."""

from __future__ import annotations

from typing import Any

import numpy as np


def _float_array(a: Any, name: str, op: str) -> np.ndarray:
    """``numpy.asarray(a)``; TypeError unless its dtype is floating point."""
    arr = np.asarray(a)
    if arr.dtype.kind != "f":
        raise TypeError(f"{op}: {name} must be a floating-point array (float32 or float64), "
                        f"got dtype {arr.dtype}")
    return arr


def _check_ndim(a: np.ndarray, ndim: int, name: str, op: str, layout: str) -> None:
    if a.ndim != ndim:
        raise ValueError(f"{op}: {name} must be {ndim}-D {layout}, got shape {a.shape}")


def _check_shape(a: np.ndarray, expected: tuple[int, ...], name: str, op: str,
                 why: str = "") -> None:
    if a.shape != tuple(expected):
        raise ValueError(f"{op}: {name} has shape {a.shape}, expected {tuple(expected)}{why}")


def _into(out: Any, result: np.ndarray, op: str, name: str = "out") -> np.ndarray:
    """``result``, or with ``out`` given (the argument ``name``): ``result`` copied into it
    (same shape), ``out``."""
    if out is None:
        return result
    _check_shape(np.asarray(out), result.shape, name, op, " (the result's shape)")
    out[...] = result
    return out


def _dx_into(dx_out: Any, dx: np.ndarray | None, op: str) -> np.ndarray | None:
    """A backward's ``dx_out=``: dx copied into it (ValueError when dx is not computed)."""
    if dx_out is not None and dx is None:
        raise ValueError(f"{op}: dx_out is given but compute_dx=False")
    return None if dx is None else _into(dx_out, dx, op, "dx_out")
