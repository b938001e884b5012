"""Image layouts of a model's inputs: ``data_format="channels_last"`` (NHWC arrays converted to
fastcnn's NCHW, once per array or once per batch of a dataset / Sequence / generator), and the
check that catches channels-last images fed as if they were channels-first.

* :func:`to_channels_first`: ``(N, H, W, C) -> (N, C, H, W)`` float32, C-contiguous, in one
  copy, the same kind as the input (NumPy, CuPy, a torch tensor on its device).
* :func:`channels_first_data`: the same for whatever ``fit`` / ``evaluate`` / ``predict`` take:
  a whole array converted at once, a dataset / Sequence / generator wrapped so that each batch's
  ``x`` is converted as it comes (the wrapper keeps the kind: ``len``, ``on_epoch_end``).
* :func:`check_input_layout`: before a built model sees ``x``: a ValueError when ``x`` does not
  have the model's input shape and looks channels-last (its last axis holds the model's
  channels), naming both fixes (``x.transpose(0, 3, 1, 2)`` or ``data_format="channels_last"``).
* :func:`warn_if_channels_last`: after an unbuilt model was built from ``x`` (so the shape was a
  legal NCHW one): one :class:`fastcnn.data.DataWarning` line when ``x`` (N, A, B, C) looks like
  HWC images: C in (1, 3, 4), A and B both > 4 * C, and the first layer is spatial (a
  convolution, pooling, padding or BatchNormalization: a Flatten / Dense model does not care).
  Never an error: (N, 16, 16, 3) is also 16 channels of 16x3 images.

The rule for a built model is exact (the model's input shape is known); the warning is a
heuristic and says how to silence it (``input_shape=`` on the model, or ``warnings``).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from . import layers as _layers
from ._arrays import array_module, as_array, is_torch, restore_kind
from .data import DataWarning

if TYPE_CHECKING:
    from .model_base import Model

__all__ = [
    "DATA_FORMATS",
    "channels_first_data",
    "check_channels_last_input",
    "check_data_format",
    "check_input_layout",
    "looks_channels_last",
    "model_channels_first",
    "to_channels_first",
    "validation_channels_first",
    "warn_if_channels_last",
]

#: the values ``data_format=`` takes (``"channels_first"``: NCHW, fastcnn's own layout)
DATA_FORMATS = ("channels_first", "channels_last")

_SPATIAL = (_layers.Conv2D, _layers.MaxPool2D, _layers.AveragePooling2D,
            _layers.BatchNormalization, _layers.ZeroPadding2D,
            _layers.GlobalAveragePooling2D, _layers.GlobalMaxPooling2D)
_PASS_THROUGH = (_layers.InputLayer, _layers.Dropout, _layers.Activation)


def check_data_format(data_format: Any, who: str = "data_format") -> str:
    """``data_format`` checked: ``"channels_first"`` or ``"channels_last"``; ValueError
    listing both otherwise."""
    if not isinstance(data_format, str) or data_format not in DATA_FORMATS:
        raise ValueError(f'{who}: data_format must be "channels_first" (N, C, H, W: fastcnn\'s '
                         f'layout, the default) or "channels_last" (N, H, W, C: converted '
                         f'once), got {data_format!r}')
    return data_format


def _permute_fix(x: Any, name: str = "x") -> str:
    return f"{name}.permute(0, 3, 1, 2)" if is_torch(x) else f"{name}.transpose(0, 3, 1, 2)"


def to_channels_first(x: Any, data_format: str = "channels_last", who: str = "fastcnn",
                      name: str = "x") -> Any:
    """``x`` in fastcnn's NCHW layout.

    Args:
        x: ``(N, H, W, C)`` images (any numeric dtype; NumPy, CuPy, a torch tensor, a list)
            for ``"channels_last"``; anything for ``"channels_first"`` (returned unchanged).
        data_format: ``"channels_last"`` or ``"channels_first"``.
        who, name: the caller and the argument, for messages.

    Returns:
        ``(N, C, H, W)`` float32, C-contiguous, made in one copy, of ``x``'s kind (a torch
        tensor stays a torch tensor on its device; a list becomes a NumPy array).

    Raises:
        ValueError: ``data_format`` not one of :data:`DATA_FORMATS`; ``x`` not 4-D.
    """
    if check_data_format(data_format, who) == "channels_first":
        return x
    a = as_array(x, name, who)
    if a.ndim != 4:
        raise ValueError(f'{who}: data_format="channels_last" takes images of shape (N, H, W, '
                         f'C), got {name} of shape {tuple(a.shape)}; leave data_format at '
                         f'"channels_first" for inputs that are not images')
    xp = array_module(a)
    out = xp.ascontiguousarray(a.transpose(0, 3, 1, 2), dtype=np.float32)  # the one copy
    return restore_kind(out, x)


def model_channels_first(model: Model | None, x: Any, who: str, name: str = "x") -> Any:
    """:func:`to_channels_first` of channels-last ``x`` for ``model``, after
    :func:`check_channels_last_input`."""
    a = as_array(x, name, who)  # viewed once (a list converted once)
    check_channels_last_input(model, a, who)
    return restore_kind(to_channels_first(a, "channels_last", who, name), x)


def _convert_item(item: Any, who: str, model: Model | None) -> Any:
    """A batch ``x``, ``(x,)``, ``(x, y)`` or ``(x, y, w)`` with ``x`` made channels-first."""
    if isinstance(item, tuple | list) and 1 <= len(item) <= 3:
        return (model_channels_first(model, item[0], who), *item[1:])
    return model_channels_first(model, item, who)


class _Batches:
    """A dataset (``__iter__`` + ``__len__``) whose batches' ``x`` are made channels-first."""

    def __init__(self, data: Any, who: str, model: Model | None) -> None:
        self.data, self.who, self.model = data, who, model

    def __iter__(self) -> Iterator[Any]:
        it = iter(self.data)
        try:
            for item in it:
                yield _convert_item(item, self.who, self.model)
        finally:
            close = getattr(it, "close", None)
            if callable(close):
                close()

    def __len__(self) -> int:
        return len(self.data)


class _OneShot:
    """A generator / iterator (no ``__len__``): iterating it continues the user's iterator, so
    it stays one pass only (``iter(self) is self``)."""

    def __init__(self, data: Any, who: str, model: Model | None) -> None:
        self.it, self.who, self.model = iter(data), who, model

    def __iter__(self) -> _OneShot:
        return self

    def __next__(self) -> Any:
        return _convert_item(next(self.it), self.who, self.model)

    def close(self) -> None:
        close = getattr(self.it, "close", None)
        if callable(close):
            close()


class _Sequence:
    """A Keras-style Sequence (``__getitem__`` + ``__len__``, ``on_epoch_end`` passed on)."""

    def __init__(self, data: Any, who: str, model: Model | None) -> None:
        self.data, self.who, self.model = data, who, model

    def __getitem__(self, i: int) -> Any:
        return _convert_item(self.data[i], self.who, self.model)

    def __len__(self) -> int:
        return len(self.data)

    def on_epoch_end(self) -> None:
        end = getattr(self.data, "on_epoch_end", None)
        if callable(end):
            end()


def channels_first_data(data: Any, data_format: str, who: str, kind: str,
                        model: Model | None = None) -> Any:
    """What ``fit`` / ``evaluate`` / ``predict`` take as ``x``, in NCHW.

    Args:
        data: arrays, a dataset, a Sequence or a generator (None passes through).
        data_format: ``"channels_first"`` (``data`` returned as it is) or ``"channels_last"``.
        who: the caller, for messages.
        kind: ``data``'s kind, :func:`fastcnn._batches.source_kind` (which imports this
            module, so the caller asks it).
        model: the model the data is for: channels-first data of its input shape passed as
            channels-last is a ValueError (:func:`check_channels_last_input`).

    Returns:
        arrays converted at once (:func:`to_channels_first`: one copy); a dataset, Sequence or
        generator wrapped so that each batch's ``x`` is converted when it is produced, keeping
        its kind (``len``, ``on_epoch_end``, one pass only for a generator).
    """
    if check_data_format(data_format, who) == "channels_first" or data is None:
        return data
    if kind == "sequence":
        return _Sequence(data, who, model)
    if kind == "dataset":
        return _Batches(data, who, model)
    if kind == "iterable":
        return _OneShot(data, who, model)
    return model_channels_first(model, data, who)


def validation_channels_first(validation_data: Any, data_format: str, kind: str,
                              model: Model | None = None) -> Any:
    """``fit``'s ``validation_data`` in NCHW: the ``x`` of an ``(x_val, y_val[, w])`` tuple, or
    each batch of a dataset / Sequence / generator (``kind``: as :func:`channels_first_data`)."""
    if check_data_format(data_format, "fit") == "channels_first" or validation_data is None:
        return validation_data
    if kind == "arrays" and isinstance(validation_data, tuple | list) \
            and len(validation_data) in (2, 3):
        return (model_channels_first(model, validation_data[0], "fit", "x_val"),
                *validation_data[1:])
    return channels_first_data(validation_data, data_format, "fit", kind, model)


def _known_shape(model: Model) -> tuple[int, ...] | None:
    """The model's per-sample input shape when it is known and an image's (C, H, W)."""
    want = getattr(model, "input_shape", None) if model.built else None
    if want is None or len(want) != 3:
        return None
    return tuple(int(s) for s in want)


def check_input_layout(model: Model, x: Any, who: str, given: Any = None) -> None:
    """ValueError when a built ``model`` gets channels-first ``x`` (N, ...) that is not of its
    input shape and looks channels-last (the last axis holds the model's channels and the
    first does not), naming both fixes (for ``given``'s kind: ``x.permute`` for a tensor,
    ``given`` defaulting to ``x``); nothing otherwise (the model's own shape check reports plain
    mismatches)."""
    want = _known_shape(model)
    if want is None or getattr(x, "ndim", None) != 4:
        return
    shape = tuple(int(s) for s in x.shape[1:])
    c = want[0]
    if shape == want or shape[2] != c or shape[0] == c:
        return
    expected = (f"expected inputs of shape (N, {', '.join(map(str, want))}) for the model's "
                f"input_shape={want}, got (N, {', '.join(map(str, shape))})")
    fix = f'pass {_permute_fix(x if given is None else given)} or data_format="channels_last"'
    if (shape[2], shape[0], shape[1]) == want:
        raise ValueError(f"{who}: {expected}. The inputs look channels-last (N, H, W, C); "
                         f"fastcnn is channels-first (NCHW): {fix}")
    raise ValueError(f"{who}: {expected}. The last axis holds the model's {c} channel(s): the "
                     f"inputs look channels-last (N, H, W, C), with {shape[0]}x{shape[1]} "
                     f"images where the model takes {want[1]}x{want[2]}; fastcnn is "
                     f"channels-first (NCHW): {fix}, and resize the images")


def check_channels_last_input(model: Model | None, x: Any, who: str) -> None:
    """ValueError when ``x``, passed with ``data_format="channels_last"``, already has a built
    ``model``'s channels-first input shape (and is not also its channels-last one)."""
    want = None if model is None else _known_shape(model)
    if want is None or getattr(x, "ndim", None) != 4:
        return
    shape = tuple(int(s) for s in x.shape[1:])
    if shape == want and shape != (want[1], want[2], want[0]):
        raise ValueError(f'{who}: data_format="channels_last" but x of shape (N, '
                         f'{", ".join(map(str, shape))}) is channels-first already: it is the '
                         f"model's input_shape={want}; drop data_format=\"channels_last\"")


def _first_layer(model: Model) -> Any:
    for layer in getattr(model, "layers", ()):
        if not isinstance(layer, _PASS_THROUGH):
            return layer
    return None


def looks_channels_last(shape: tuple[int, ...]) -> bool:
    """The unbuilt-model rule: a per-sample ``shape`` (A, B, C) with C in (1, 3, 4) (grey,
    RGB, RGBA) and A, B > 4 * C (images much larger than the would-be width)."""
    if len(shape) != 3:
        return False
    a, b, c = shape
    return c in (1, 3, 4) and a > 4 * c and b > 4 * c


def warn_if_channels_last(model: Model, x: Any, who: str) -> None:
    """One :class:`fastcnn.data.DataWarning` line when a model was just built from ``x`` whose
    per-sample shape :func:`looks_channels_last` and whose first layer is spatial."""
    if getattr(x, "ndim", None) is None:  # several inputs (one per model input): not checked
        return
    shape = tuple(int(s) for s in x.shape[1:])
    if not looks_channels_last(shape) or not isinstance(_first_layer(model), _SPATIAL):
        return
    h, w, c = shape
    warnings.warn(DataWarning(
        f"{who}: the model was built for inputs {shape} (channels-first: {h} channels of "
        f"{w}x{c} images), which look like channels-last {h}x{w} images with {c} channel(s); "
        f'if they are, pass {_permute_fix(x)} or data_format="channels_last" (to keep this '
        f"layout, give the model input_shape={shape})"), stacklevel=3)
