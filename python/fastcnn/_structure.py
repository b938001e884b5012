"""Several arrays that share one batch axis: the inputs of a model with several inputs, the
targets of a model with several outputs (:class:`Arrays`).

``fit`` / ``evaluate`` / ``predict`` slice a data set batch by batch with one index (one
shuffle for all the arrays); :class:`Arrays` is what they slice: ``len(a)`` is the number of
samples, ``a[idx]`` takes the same rows of every array (``None`` entries stay ``None``: an
output trained without a loss needs no targets), ``a.arrays`` the arrays in the model's order
(its inputs' or outputs'). The model converts the user's list / dict into one
(``Functional._input`` / ``_targets``); nothing else here knows about models.

This module imports only :mod:`fastcnn._arrays` (the losses, metrics and batching import it).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._arrays import is_cupy

__all__ = ["Arrays", "parts"]


class Arrays:
    """Arrays (N, ...) with one batch axis, in a model's input or output order.

    Args:
        arrays: the arrays (NumPy / CuPy / anything sliceable with a batch axis) or None.
        names: one name per array (the model's input or output names), for messages.
        who: the caller, for messages.

    Raises:
        ValueError: the arrays have different numbers of samples (the message lists them).
    """

    __slots__ = ("arrays", "names")

    def __init__(self, arrays: list[Any], names: list[str], who: str = "fastcnn") -> None:
        self.arrays = list(arrays)
        self.names = list(names)
        lengths = {n: len(a) for n, a in zip(self.names, self.arrays, strict=True)
                   if a is not None}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"{who}: all the arrays need the same number of samples (one "
                             f"batch axis), got {lengths}")

    def __len__(self) -> int:
        for a in self.arrays:
            if a is not None:
                return len(a)
        return 0

    def __getitem__(self, idx: Any) -> Arrays:
        """The same samples (a slice or an index array) of every array."""
        out = []
        for a in self.arrays:
            if a is None:
                out.append(None)
            elif is_cupy(a) and isinstance(idx, np.ndarray):
                import cupy

                out.append(a[cupy.asarray(idx)])
            else:
                out.append(a[idx])
        return Arrays(out, self.names)

    def __array__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"these are several arrays ({', '.join(self.names)}), one per model "
                        f"input or output; they can't be one array")

    def __repr__(self) -> str:
        shapes = ", ".join(f"{n}: {None if a is None else tuple(a.shape)}"
                           for n, a in zip(self.names, self.arrays, strict=True))
        return f"Arrays({shapes})"


def parts(y: Any) -> list[Any]:
    """The arrays of an :class:`Arrays` (or a list / tuple as it is)."""
    if isinstance(y, Arrays):
        return y.arrays
    return list(y)
