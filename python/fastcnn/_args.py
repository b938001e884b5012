"""Checks of scalar arguments (ints, bools, a choice among names), shared by every module that
takes them.

Messages read ``"<op>: <name> must be ..."``: a TypeError for a value of the wrong type (bools
are not ints), a ValueError for one out of range or not among the choices. Geometry (pairs,
padding, output sizes) is in :mod:`fastcnn._geometry`.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import numpy as np

__all__ = ["check_bool", "check_choice", "check_int", "check_range", "is_int", "op_prefix"]


def op_prefix(op: str | None) -> str:
    """``"<op>: "``, the start of an error message (empty without an op)."""
    return f"{op}: " if op else ""


def is_int(v: Any) -> bool:
    """True for Python / NumPy integers, False for bools (which are ints in Python)."""
    return isinstance(v, int | np.integer) and not isinstance(v, bool | np.bool_)


_INT_LIMIT = 2**31  # sizes, strides, paddings and counts beyond this can't describe an array


def check_range(value: int | tuple[int, int], v: Any, name: str, op: str | None) -> None:
    values = value if isinstance(value, tuple) else (value,)
    if any(abs(i) >= _INT_LIMIT for i in values):
        raise ValueError(f"{op_prefix(op)}{name} must be below 2^31 in magnitude, got {v!r}")


def check_int(v: Any, name: str, *, op: str | None = None, minimum: int | None = None) -> int:
    """Return ``v`` as a Python int; TypeError unless it is an int (bool rejected), ValueError
    when below ``minimum``. Messages read ``"<op>: <name> must be ..."``."""
    if not is_int(v):
        raise TypeError(f"{op_prefix(op)}{name} must be an int, got {v!r} ({type(v).__name__})")
    iv = int(v)
    check_range(iv, v, name, op)
    if minimum is not None and iv < minimum:
        raise ValueError(f"{op_prefix(op)}{name} must be >= {minimum}, got {iv}")
    return iv


def check_bool(v: Any, name: str, *, op: str | None = None) -> bool:
    """Return ``v`` as a Python bool; TypeError unless it is a bool (or ``numpy.bool_``)."""
    if not isinstance(v, bool | np.bool_):
        raise TypeError(f"{op_prefix(op)}{name} must be a bool, got {v!r} ({type(v).__name__})")
    return bool(v)


def check_choice(value: Any, choices: Collection[Any], name: str, *, op: str | None = None) -> Any:
    """Return ``value`` when it is one of ``choices`` (a sequence, a set, or a dict's keys);
    ValueError listing them otherwise."""
    if value not in choices:
        raise ValueError(f"{op_prefix(op)}{name} must be one of "
                         f"{', '.join(map(repr, choices))}, got {value!r}")
    return value
