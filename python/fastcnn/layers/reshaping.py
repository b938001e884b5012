"""The layers that move data without arithmetic: ZeroPadding2D and Reshape (Flatten is in
:mod:`~fastcnn.layers.core`).

Shapes: ZeroPadding2D ``(N, C, H, W)`` -> ``(N, C, top + H + bottom, left + W + right)``;
Reshape ``(N, *input_shape)`` -> ``(N, *target_shape)`` (C order, as NumPy / PyTorch reshape).
Both are memory copies done with the array module (NumPy or CuPy), no op of their own.
"""

from __future__ import annotations

import math
from typing import Any

from .._args import is_int
from .._arrays import array_module
from .base import Layer

__all__ = ["Reshape", "ZeroPadding2D"]


def _padding_pairs(padding: Any) -> tuple[tuple[int, int], tuple[int, int]]:
    """Keras' ``padding`` (int, ``(h, w)`` or ``((top, bottom), (left, right))``) as
    ``((top, bottom), (left, right))``; TypeError / ValueError naming ZeroPadding2D."""
    what = ("an int, a pair (symmetric height, width padding) or a pair of pairs "
            "((top, bottom), (left, right)), all >= 0")
    if is_int(padding):
        pairs: Any = ((padding, padding), (padding, padding))
    elif isinstance(padding, tuple | list) and len(padding) == 2:
        if all(is_int(p) for p in padding):
            pairs = ((padding[0], padding[0]), (padding[1], padding[1]))
        elif all(isinstance(p, tuple | list) and len(p) == 2 and all(is_int(v) for v in p)
                 for p in padding):
            pairs = (tuple(padding[0]), tuple(padding[1]))
        else:
            raise TypeError(f"ZeroPadding2D: padding must be {what}, got {padding!r}")
    else:
        raise TypeError(f"ZeroPadding2D: padding must be {what}, got {padding!r}")
    if any(v < 0 for p in pairs for v in p):
        raise ValueError(f"ZeroPadding2D: padding must be >= 0 (it adds rows and columns; "
                         f"to crop, slice the input), got {padding!r}")
    return ((int(pairs[0][0]), int(pairs[0][1])), (int(pairs[1][0]), int(pairs[1][1])))


class ZeroPadding2D(Layer):
    """Adds rows and columns of zeros around each image (Keras' ``ZeroPadding2D``, NCHW).

    Args:
        padding: an int (the same on all four sides), ``(h, w)`` (``h`` rows above and below,
            ``w`` columns left and right) or ``((top, bottom), (left, right))``.

    Shapes: x ``(N, C, H, W)`` -> y ``(N, C, top + H + bottom, left + W + right)``.
    """

    default_name = "zero_padding2d"

    def __init__(self, padding: Any = (1, 1), *, name: str | None = None,
                 trainable: bool = True) -> None:
        super().__init__(name=name, trainable=trainable)
        self.padding = _padding_pairs(padding)

    @property
    def pads(self) -> tuple[int, int, int, int]:
        """The padding as ``(top, left, bottom, right)`` (fastcnn's order of four pads)."""
        (t, b), (l, r) = self.padding
        return t, l, b, r

    def _build(self, input_shape, rng):
        if len(input_shape) != 3:
            raise ValueError(f"{self._label()}: expects inputs of shape (C, H, W), got "
                             f"{input_shape}")
        C, H, W = input_shape
        (t, b), (l, r) = self.padding
        self.flops = 0
        return (C, t + H + b, l + W + r)

    def forward(self, x, training=False):
        self._cache = True if training else None
        (t, b), (l, r) = self.padding
        return array_module(x).pad(x, ((0, 0), (0, 0), (t, b), (l, r)))

    def backward(self, dy, accumulate=False):
        self._need_cache()
        (t, _), (l, _) = self.padding
        _, H, W = self.input_shape  # type: ignore[misc]
        return array_module(dy).ascontiguousarray(dy[:, :, t:t + H, l:l + W])

    def get_config(self):
        return {**super().get_config(), "padding": [list(p) for p in self.padding]}


class Reshape(Layer):
    """Reshapes each sample to ``target_shape`` (Keras' ``Reshape``; C order).

    Args:
        target_shape: the per-sample output shape (no batch axis), positive ints and at most
            one -1, which is inferred from the input size.

    Shapes: x ``(N, *input_shape)`` -> y ``(N, *target_shape)``, the same number of elements
    per sample.
    """

    default_name = "reshape"

    def __init__(self, target_shape: tuple[int, ...] | list[int], *, name: str | None = None,
                 trainable: bool = True) -> None:
        super().__init__(name=name, trainable=trainable)
        if not isinstance(target_shape, tuple | list) or not target_shape or \
                not all(is_int(s) for s in target_shape):
            raise TypeError(f"Reshape: target_shape must be a non-empty tuple of ints (the "
                            f"per-sample shape, without the batch axis), got {target_shape!r}")
        shape = tuple(int(s) for s in target_shape)
        if any(s < 1 and s != -1 for s in shape) or shape.count(-1) > 1:
            raise ValueError(f"Reshape: target_shape {shape} must hold positive sizes and at "
                             f"most one -1 (inferred)")
        self.target_shape = shape

    def _build(self, input_shape, rng):
        size = math.prod(input_shape)
        known = math.prod(s for s in self.target_shape if s != -1)
        if -1 in self.target_shape:
            if size % known:
                raise ValueError(f"{self._label()}: can't reshape inputs {input_shape} "
                                 f"({size} elements per sample) to {self.target_shape}: "
                                 f"{size} is not a multiple of {known}")
            out = tuple(size // known if s == -1 else s for s in self.target_shape)
        else:
            out = self.target_shape
        if math.prod(out) != size:
            raise ValueError(f"{self._label()}: can't reshape inputs {input_shape} ({size} "
                             f"elements per sample) to {self.target_shape} "
                             f"({math.prod(out)} elements)")
        self.flops = 0
        return out

    def forward(self, x, training=False):
        self._cache = True if training else None
        return array_module(x).ascontiguousarray(x).reshape(x.shape[0],
                                                            *self.output_shape)  # type: ignore[misc]

    def backward(self, dy, accumulate=False):
        self._need_cache()
        return array_module(dy).ascontiguousarray(dy).reshape(dy.shape[0],
                                                              *self.input_shape)  # type: ignore[misc]

    def get_config(self):
        return {**super().get_config(), "target_shape": list(self.target_shape)}
