"""Merge layers: :class:`Add` and :class:`Concatenate`, called on a list of tensors.

They compute with the array module (NumPy or CuPy: ``x + y``, ``concatenate``, slices), which
runs at memory bandwidth; there is no compiled op behind them. Shapes are per sample, as in
every layer: ``build([shape_a, shape_b, ...])`` and ``forward([a, b, ...])``; ``backward(dy)``
returns one gradient per input, in the inputs' order.

* ``Add()([a, b, ...])``: the element-wise sum, summed left to right (``(a + b) + c``); every
  input has the same shape. Its backward hands the same ``dy`` array to every input (no copy;
  gradients are never written in place).
* ``Concatenate(axis=1)([a, b, ...])``: joined along ``axis``, which counts the batch axis as
  Keras' does: the default ``axis=1`` is the channel axis of NCHW images (``(N, C, H, W)``)
  and the feature axis of ``(N, features)``. Keras' default is ``-1`` because Keras is
  channels-last; ``-1`` here joins along the width. The backward slices ``dy`` back into one
  C-contiguous gradient per input.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._arrays import array_module
from .base import Layer, Shape, pooled
from .symbolic import batch_shape

__all__ = ["Add", "Concatenate"]


class _Merge(Layer):
    """Shared parts of the merge layers: a list of at least 2 inputs."""

    multi_input = True

    def build(self, input_shape: Any, rng: Any = None) -> Any:
        """Check the list of per-sample shapes; returns the per-sample output shape."""
        label = self._label()
        if not isinstance(input_shape, list | tuple) or not input_shape or not all(
                isinstance(s, list | tuple) for s in input_shape):
            raise ValueError(f"{label}: a merge layer should be called on a list of inputs, "
                             f"got input shape {input_shape!r}; it can't be used in a "
                             f"Sequential (build a fastcnn.Model with fastcnn.Input)")
        if len(input_shape) < 2:
            raise ValueError(f"{label}: a merge layer should be called on a list of at least "
                             f"2 inputs. Got {len(input_shape)} inputs.")
        shapes = tuple(tuple(int(s) for s in sh) for sh in input_shape)
        if any(s < 1 for sh in shapes for s in sh):
            raise ValueError(f"{label}: input shapes must be positive, got {list(shapes)}")
        self.input_shape = shapes  # type: ignore[assignment]
        self.output_shape = self._merged(shapes)
        self.flops = self._flops(shapes)
        self.grads = {}
        self.built = True
        return self.output_shape

    def _merged(self, shapes: tuple[Shape, ...]) -> Shape:
        raise NotImplementedError

    def _flops(self, shapes: tuple[Shape, ...]) -> int:
        return 0

    def _check_list(self, xs: Any) -> list[Any]:
        if not isinstance(xs, list | tuple) or len(xs) < 2:
            raise ValueError(f"{self._label()}: a merge layer should be called on a list of "
                             f"at least 2 inputs, got {type(xs).__name__}")
        return list(xs)


class Add(_Merge):
    """Element-wise sum of a list of tensors of one shape (Keras' ``Add``).

    Shapes: ``[(N, *s), (N, *s), ...]`` -> ``(N, *s)``; FLOPs: ``(inputs - 1) * prod(s)``.
    """

    default_name = "add"

    def _merged(self, shapes):
        first = shapes[0]
        for other in shapes[1:]:
            if other != first:
                raise ValueError(f"{self._label()}: Inputs have incompatible shapes. Received "
                                 f"shapes {batch_shape(first)} and {batch_shape(other)}")
        return first

    def _flops(self, shapes):
        return (len(shapes) - 1) * math.prod(shapes[0])

    def forward(self, xs, training=False):
        xs = self._check_list(xs)
        first = xs[0].shape
        for x in xs[1:]:
            if x.shape != first:
                raise ValueError(f"{self._label()}: Inputs have incompatible shapes. Received "
                                 f"shapes {tuple(first)} and {tuple(x.shape)}")
        out = pooled(tuple(first), xs[0]) if all(
            type(x) is np.ndarray and x.dtype == np.float32 for x in xs) else None
        y = xs[0] + xs[1] if out is None else np.add(xs[0], xs[1], out=out)  # out: reused
        for x in xs[2:]:
            y += x  # y is ours: add in place, left to right
        self._cache = len(xs) if training else None
        return y

    def backward(self, dy, accumulate=False):
        n = self._need_cache()
        return [dy] * n


class Concatenate(_Merge):
    """Join a list of tensors along ``axis`` (Keras' ``Concatenate``).

    Args:
        axis: the axis, counting the batch axis (0, which can't be joined): 1 (the default)
            is NCHW's channel axis and the feature axis of flat inputs; negative counts from
            the end. Keras' default, -1, is the channel axis there because Keras is
            channels-last; here -1 is the width.

    Shapes: inputs equal except along ``axis``; ``[(N, C1, H, W), (N, C2, H, W)]`` ->
    ``(N, C1 + C2, H, W)`` for ``axis=1``.
    """

    default_name = "concatenate"

    def __init__(self, axis: int = 1, *, name: str | None = None, trainable: bool = True) -> None:
        super().__init__(name=name, trainable=trainable)
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise TypeError(f"Concatenate: axis must be an int, got {axis!r}")
        if axis == 0:
            raise ValueError("Concatenate: axis=0 is the batch axis; join along 1 (channels "
                             "for NCHW) or another sample axis")
        self.axis = int(axis)
        self._split: list[int] = []

    def _sample_axis(self, rank: int) -> int:
        """``axis`` as an index into a per-sample shape of ``rank`` dims."""
        a = self.axis - 1 if self.axis > 0 else rank + self.axis
        if not 0 <= a < rank:
            raise ValueError(f"{self._label()}: axis {self.axis} is out of range for inputs "
                             f"of shape (N, ...) with {rank} sample dims (valid: 1 to {rank} "
                             f"or -{rank} to -1; 0 is the batch axis)")
        return a

    def _merged(self, shapes):
        rank = len(shapes[0])
        a = self._sample_axis(rank)
        bad = any(len(s) != rank or s[:a] + s[a + 1:] != shapes[0][:a] + shapes[0][a + 1:]
                  for s in shapes)
        if bad:
            raise ValueError(f"{self._label()}: A Concatenate layer requires inputs with "
                             f"matching shapes except for the concatenation axis (axis="
                             f"{self.axis}). Received: input_shape="
                             f"[{', '.join(batch_shape(s) for s in shapes)}]")
        self._split = [int(s[a]) for s in shapes]
        return (*shapes[0][:a], sum(self._split), *shapes[0][a + 1:])

    def forward(self, xs, training=False):
        xs = self._check_list(xs)
        a = self._sample_axis(xs[0].ndim - 1) + 1
        y = array_module(xs[0]).concatenate(xs, axis=a)
        self._cache = (a, [int(x.shape[a]) for x in xs]) if training else None
        return y

    def backward(self, dy, accumulate=False):
        a, sizes = self._need_cache()
        xp = array_module(dy)
        out, start = [], 0
        index: list[Any] = [slice(None)] * dy.ndim
        for n in sizes:
            index[a] = slice(start, start + n)
            out.append(xp.ascontiguousarray(dy[tuple(index)]))
            start += n
        return out

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}
