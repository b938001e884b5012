"""Random augmentations of image batches, with Keras' preprocessing-layer semantics.

Every augmentation is a callable ``aug(batch, rng) -> batch``:

- ``batch`` is a float32 NCHW array (N, C, H, W); it is never modified in place, the result is
  a new float32 array (N, C, H', W') (only the croppers change H and W).
- ``rng`` is a :class:`numpy.random.Generator`; all randomness is drawn from it, once per call
  and vectorised over the batch (one random parameter per image), so a seeded generator
  reproduces the result exactly. The datasets in :mod:`fastcnn.data` pass one generator per
  batch derived from their ``seed``, the epoch and the batch index.

Geometric augmentations (rotation, zoom, translation) map every output pixel back to input
coordinates through a per-image affine matrix and sample the input there with bilinear (or
nearest) interpolation, written in NumPy. Coordinates are pixel indices (pixel centres at
integers, the image centre at ((W - 1) / 2, (H - 1) / 2)), as in Keras / TensorFlow.
Samples outside the image are filled according to ``fill_mode``:

- ``"reflect"`` (default, as in Keras): ``d c b a | a b c d | d c b a``
- ``"wrap"``: ``a b c d | a b c d | a b c d``
- ``"nearest"``: ``a a a a | a b c d | d d d d``
- ``"constant"``: ``k k k k | a b c d | k k k k`` with ``k = fill_value``

The intensity augmentations (brightness, contrast) clip to ``value_range``; the datasets apply
augmentations to the raw pixel values (0..255 for 8-bit images) *before* ``rescale``, which is
why ``value_range`` defaults to (0, 255).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._args import check_choice, check_int
from .._geometry import split_margin

__all__ = [
    "Augmentation",
    "CenterCrop",
    "RandomBrightness",
    "RandomContrast",
    "RandomCrop",
    "RandomFlip",
    "RandomRotation",
    "RandomTranslation",
    "RandomZoom",
]

FILL_MODES = ("reflect", "wrap", "constant", "nearest")
INTERPOLATIONS = ("bilinear", "nearest")


def _as_batch(batch: np.ndarray, name: str) -> np.ndarray:
    """Check that ``batch`` is a 4-D NCHW array and return it as float32 (no copy if it is)."""
    batch = np.asarray(batch)
    if batch.ndim != 4:
        raise ValueError(f"{name} expects a 4-D (N, C, H, W) batch, got shape {batch.shape}")
    return batch.astype(np.float32, copy=False)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _factor_range(
    factor: float | Sequence[float], name: str, lo_bound: float, hi_bound: float
) -> tuple[float, float]:
    """Keras' factor convention: a number f gives (-f, f), a pair gives (lo, hi) as is.

    Raises ValueError when the range is empty, reversed, or leaves [lo_bound, hi_bound].
    """
    if _is_number(factor):
        f = float(factor)  # type: ignore[arg-type]
        if f < 0:
            raise ValueError(f"{name} must be >= 0 when given as one number, got {factor!r}")
        lo, hi = -f, f
    else:
        try:
            lo, hi = (float(v) for v in factor)  # type: ignore[union-attr]
        except (TypeError, ValueError):
            raise ValueError(
                f"{name} must be a number or a (lower, upper) pair, got {factor!r}"
            ) from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise ValueError(f"{name} must be a finite range with lower <= upper, got {factor!r}")
    if lo < lo_bound or hi > hi_bound:
        raise ValueError(f"{name} must lie within [{lo_bound}, {hi_bound}], got {factor!r}")
    return lo, hi


def _value_range(value_range: Sequence[float], name: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value_range)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name}: value_range must be a (low, high) pair, got {value_range!r}"
        ) from None
    if not lo < hi:
        raise ValueError(f"{name}: value_range must have low < high, got {value_range!r}")
    return lo, hi


def _map_index(idx: np.ndarray, size: int, fill_mode: str) -> np.ndarray:
    """Map integer sample indices (any shape) into [0, size) according to ``fill_mode``.

    For ``"constant"`` the indices are clamped; the caller masks the out-of-range ones.
    """
    if fill_mode == "reflect":
        period = 2 * size
        m = np.mod(idx, period)
        return np.where(m >= size, period - 1 - m, m)
    if fill_mode == "wrap":
        return np.mod(idx, size)
    return np.clip(idx, 0, size - 1)  # "nearest" and "constant"


def _axis_taps(coord: np.ndarray, size: int, fill_mode: str, interpolation: str,
               scale: int = 1) -> list[tuple[np.ndarray, np.ndarray]]:
    """Interpolation taps along one axis: [(index * scale, weight)], each (N, L), for input
    coordinates ``coord`` (N, L). Indices are mapped into [0, size) by ``fill_mode`` (through a
    lookup table over the range the coordinates span); with "constant" the weights of taps
    outside the image are zero (the caller adds the fill)."""
    if interpolation == "nearest":
        first = np.floor(coord + 0.5)
        raw = [(first, np.ones(coord.shape, np.float32))]
    else:
        first = np.floor(coord)
        f = (coord - first).astype(np.float32)
        raw = [(first, 1 - f), (first, f)]
    lo = int(first.min()) if first.size else 0
    hi = (int(first.max()) if first.size else 0) + len(raw)
    span = np.arange(lo, hi + 1)
    table = (_map_index(span, size, fill_mode) * scale).astype(np.intp)
    inside = (span >= 0) & (span < size)
    offset = (first - lo).astype(np.intp)  # index into table of the first tap
    out = []
    for k, (_, w) in enumerate(raw):
        pos = offset + k if k else offset
        if fill_mode == "constant" and not inside.all():
            w = np.where(inside.take(pos), w, np.float32(0))
        out.append((table.take(pos), w))
    return out


def affine_sample(
    batch: np.ndarray,
    matrices: np.ndarray,
    *,
    out_size: tuple[int, int] | None = None,
    fill_mode: str = "reflect",
    fill_value: float = 0.0,
    interpolation: str = "bilinear",
) -> np.ndarray:
    """Resample each image of ``batch`` through its inverse affine map.

    Args:
        batch: (N, C, H, W) float32.
        matrices: (N, 2, 3); row 0 gives the input x (column), row 1 the input y (row), of
            output pixel (x, y): ``[x_in, y_in] = M @ [x, y, 1]``.
        out_size: (H', W') of the result; defaults to (H, W).
        fill_mode, fill_value: see the module docstring. With "constant", every interpolation
            tap outside the image reads ``fill_value`` (as TensorFlow does).
        interpolation: "bilinear" or "nearest".

    Returns:
        (N, C, H', W') float32.

    Axis-aligned maps (zoom, translation) are resampled separably, rows then columns; general
    ones (rotation) gather all four taps of every output pixel. Both work one image at a time,
    which keeps the arrays in cache (about 2 ms per 3x224x224 image for a rotation).
    """
    batch = np.ascontiguousarray(batch, dtype=np.float32)
    n, c, h, w = batch.shape
    oh, ow = out_size if out_size is not None else (h, w)
    m = np.asarray(matrices, dtype=np.float64).reshape(n, 2, 3)
    fill = np.float32(fill_value) if fill_mode == "constant" else np.float32(0)
    ys = np.arange(oh, dtype=np.float64)
    xs = np.arange(ow, dtype=np.float64)

    if not (np.any(m[:, 0, 1]) or np.any(m[:, 1, 0])):
        # Separable: x_in depends on x only, y_in on y only.
        ty = _axis_taps(m[:, 1, 1:2] * ys + m[:, 1, 2:3], h, fill_mode, interpolation)
        tx = _axis_taps(m[:, 0, 0:1] * xs + m[:, 0, 2:3], w, fill_mode, interpolation)
        out = np.empty((n, c, oh, ow), dtype=np.float32)
        for k in range(n):
            img = batch[k]
            rows = sum(img.take(iy[k], axis=1) * wy[k][None, :, None] for iy, wy in ty)
            out[k] = sum(rows.take(ix[k], axis=2) * wx[k] for ix, wx in tx)
        if fill:
            sy = sum(wy for _, wy in ty)
            sx = sum(wx for _, wx in tx)
            out += fill * (1 - sy[:, None, :, None] * sx[:, None, None, :])
        return out

    gy, gx = np.meshgrid(ys, xs, indexing="ij")
    gx = gx.reshape(1, -1)
    gy = gy.reshape(1, -1)
    out = np.empty((n, c, oh, ow), dtype=np.float32)
    for k in range(n):  # one image at a time: its working set stays in cache
        mk = m[k]
        ty = _axis_taps(mk[1, 0] * gx + mk[1, 1] * gy + mk[1, 2], h, fill_mode, interpolation,
                        scale=w)  # (1, H'W') each, as row offsets
        tx = _axis_taps(mk[0, 0] * gx + mk[0, 1] * gy + mk[0, 2], w, fill_mode, interpolation)
        planes = batch[k].reshape(c, h * w)
        acc = np.zeros((c, oh * ow), dtype=np.float32)
        weight_sum = np.zeros(oh * ow, dtype=np.float32) if fill else None
        for iy, wy in ty:
            for ix, wx in tx:
                weight = (wy * wx).reshape(-1)
                acc += planes.take((iy + ix).reshape(-1), axis=1) * weight
                if weight_sum is not None:
                    weight_sum += weight
        if weight_sum is not None:
            acc += fill * (1 - weight_sum)
        out[k] = acc.reshape(c, oh, ow)
    return out


class Augmentation:
    """Base class: a random transform of a float32 NCHW batch.

    Subclasses implement ``__call__(batch, rng)`` and ``get_config()``; croppers also
    ``output_shape``.
    """

    def __call__(self, batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Transform ``batch`` (N, C, H, W) with randomness from ``rng``; returns a new array."""
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments, so that ``type(aug)(**aug.get_config())`` is equivalent."""
        return {}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Augmentation:
        """Rebuild an augmentation from :meth:`get_config`'s dict."""
        return cls(**config)

    def output_shape(self, shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """Shape (C, H, W) of one output image for an input image of ``shape``."""
        return shape

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class _AffineAugmentation(Augmentation):
    """Shared parts of the augmentations that resample through an affine map."""

    def __init__(self, fill_mode: str, interpolation: str, fill_value: float) -> None:
        self.fill_mode = check_choice(fill_mode, FILL_MODES, "fill_mode")
        self.interpolation = check_choice(interpolation, INTERPOLATIONS, "interpolation")
        if not _is_number(fill_value):
            raise ValueError(f"fill_value must be a number, got {fill_value!r}")
        self.fill_value = float(fill_value)

    def _sample(self, batch: np.ndarray, matrices: np.ndarray) -> np.ndarray:
        return affine_sample(batch, matrices, fill_mode=self.fill_mode,
                             fill_value=self.fill_value, interpolation=self.interpolation)

    def _fill_config(self) -> dict[str, Any]:
        return {"fill_mode": self.fill_mode, "interpolation": self.interpolation,
                "fill_value": self.fill_value}


class RandomFlip(Augmentation):
    """Flip each image, independently, with probability 1/2 per enabled axis.

    Args:
        mode: "horizontal" (left-right, the W axis), "vertical" (up-down, the H axis) or
            "horizontal_and_vertical" (each axis decided independently; Keras' default).
    """

    MODES = ("horizontal", "vertical", "horizontal_and_vertical")

    def __init__(self, mode: str = "horizontal_and_vertical") -> None:
        self.mode = check_choice(mode, self.MODES, "mode")

    def __call__(self, batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        batch = _as_batch(batch, type(self).__name__)
        out = batch.copy()
        n = batch.shape[0]
        if self.mode in ("horizontal", "horizontal_and_vertical"):
            flip = rng.random(n) < 0.5
            out[flip] = out[flip][..., ::-1]
        if self.mode in ("vertical", "horizontal_and_vertical"):
            flip = rng.random(n) < 0.5
            out[flip] = out[flip][:, :, ::-1, :]
        return out

    def get_config(self) -> dict[str, Any]:
        return {"mode": self.mode}


class RandomRotation(_AffineAugmentation):
    """Rotate each image about its centre by a random angle.

    Args:
        factor: a fraction of a full turn (2π), as in Keras. A number f draws the angle
            uniformly from [-f·2π, f·2π]; a pair (lo, hi) from [lo·2π, hi·2π]. Positive angles
            turn the content counter-clockwise (a quarter turn, factor (0.25, 0.25), equals
            ``np.rot90(image, 1, axes=(-2, -1))`` on a square image).
        fill_mode, interpolation, fill_value: see the module docstring.
    """

    def __init__(self, factor: float | Sequence[float], fill_mode: str = "reflect",
                 interpolation: str = "bilinear", fill_value: float = 0.0) -> None:
        super().__init__(fill_mode, interpolation, fill_value)
        self.factor = factor if _is_number(factor) else tuple(factor)  # type: ignore[arg-type]
        self._lo, self._hi = _factor_range(factor, "RandomRotation factor", -math.inf, math.inf)

    def __call__(self, batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        batch = _as_batch(batch, type(self).__name__)
        n, _, h, w = batch.shape
        angle = rng.uniform(self._lo, self._hi, size=n) * (2 * math.pi)
        cos, sin = np.cos(angle), np.sin(angle)
        # Keras / TF: output (x, y) -> input (cos x - sin y + x0, sin x + cos y + y0), which keeps
        # the centre ((w - 1) / 2, (h - 1) / 2) fixed.
        x0 = ((w - 1) - (cos * (w - 1) - sin * (h - 1))) / 2
        y0 = ((h - 1) - (sin * (w - 1) + cos * (h - 1))) / 2
        mats = np.stack([np.stack([cos, -sin, x0], 1), np.stack([sin, cos, y0], 1)], 1)
        return self._sample(batch, mats)

    def get_config(self) -> dict[str, Any]:
        return {"factor": self.factor, **self._fill_config()}


class RandomZoom(_AffineAugmentation):
    """Zoom each image about its centre by a random factor.

    Args:
        height_factor: a number f draws the vertical zoom z from [-f, f], a pair (lo, hi) from
            [lo, hi], within [-1, 1]. Input coordinates are scaled by 1 + z about the centre, so
            a positive z zooms *out* (content shrinks) and a negative z zooms *in* (content
            grows), as in Keras.
        width_factor: the same for the horizontal zoom; ``None`` (default) reuses the vertical
            value of each image, which keeps the aspect ratio.
        fill_mode, interpolation, fill_value: see the module docstring.
    """

    def __init__(self, height_factor: float | Sequence[float],
                 width_factor: float | Sequence[float] | None = None,
                 fill_mode: str = "reflect", interpolation: str = "bilinear",
                 fill_value: float = 0.0) -> None:
        super().__init__(fill_mode, interpolation, fill_value)
        self.height_factor = (height_factor if _is_number(height_factor)
                              else tuple(height_factor))  # type: ignore[arg-type]
        self._h = _factor_range(height_factor, "RandomZoom height_factor", -1.0, 1.0)
        self.width_factor = (width_factor if width_factor is None or _is_number(width_factor)
                             else tuple(width_factor))  # type: ignore[arg-type]
        self._w = (None if width_factor is None
                   else _factor_range(width_factor, "RandomZoom width_factor", -1.0, 1.0))

    def __call__(self, batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        batch = _as_batch(batch, type(self).__name__)
        n, _, h, w = batch.shape
        zh = 1.0 + rng.uniform(*self._h, size=n)
        zw = zh if self._w is None else 1.0 + rng.uniform(*self._w, size=n)
        zeros = np.zeros(n)
        mats = np.stack([np.stack([zw, zeros, (w - 1) / 2 * (1 - zw)], 1),
                         np.stack([zeros, zh, (h - 1) / 2 * (1 - zh)], 1)], 1)
        return self._sample(batch, mats)

    def get_config(self) -> dict[str, Any]:
        return {"height_factor": self.height_factor, "width_factor": self.width_factor,
                **self._fill_config()}


class RandomTranslation(_AffineAugmentation):
    """Shift each image by a random fraction of its height and width.

    Args:
        height_factor: a number f draws the vertical shift from [-f·H, f·H], a pair (lo, hi)
            from [lo·H, hi·H], within [-1, 1]; positive moves the content down.
        width_factor: the same for the horizontal shift, in units of W; positive moves right.
            Shifts are not rounded: a fractional shift is interpolated.
        fill_mode, interpolation, fill_value: see the module docstring.
    """

    def __init__(self, height_factor: float | Sequence[float],
                 width_factor: float | Sequence[float], fill_mode: str = "reflect",
                 interpolation: str = "bilinear", fill_value: float = 0.0) -> None:
        super().__init__(fill_mode, interpolation, fill_value)
        self.height_factor = (height_factor if _is_number(height_factor)
                              else tuple(height_factor))  # type: ignore[arg-type]
        self.width_factor = (width_factor if _is_number(width_factor)
                             else tuple(width_factor))  # type: ignore[arg-type]
        self._h = _factor_range(height_factor, "RandomTranslation height_factor", -1.0, 1.0)
        self._w = _factor_range(width_factor, "RandomTranslation width_factor", -1.0, 1.0)

    def __call__(self, batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        batch = _as_batch(batch, type(self).__name__)
        n, _, h, w = batch.shape
        dy = rng.uniform(*self._h, size=n) * h
        dx = rng.uniform(*self._w, size=n) * w
        ones, zeros = np.ones(n), np.zeros(n)
        mats = np.stack([np.stack([ones, zeros, -dx], 1), np.stack([zeros, ones, -dy], 1)], 1)
        return self._sample(batch, mats)

    def get_config(self) -> dict[str, Any]:
        return {"height_factor": self.height_factor, "width_factor": self.width_factor,
                **self._fill_config()}


class RandomCrop(Augmentation):
    """Cut a random (height, width) window out of each image: the output is (N, C, height, width).

    Every image gets its own offset, uniform over all windows that fit. An input smaller than
    the window in either dimension raises ValueError (resize it first, with the dataset's
    ``target_size``). For evaluation data without this randomness use :class:`CenterCrop`
    with the same size.
    """

    def __init__(self, height: int, width: int) -> None:
        self.height = check_int(height, "height", op=type(self).__name__, minimum=1)
        self.width = check_int(width, "width", op=type(self).__name__, minimum=1)

    def _check(self, h: int, w: int) -> None:
        if h < self.height or w < self.width:
            raise ValueError(f"{type(self).__name__}({self.height}, {self.width}) needs images "
                             f"at least that large, got {h}x{w}")

    def __call__(self, batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        batch = _as_batch(batch, type(self).__name__)
        n, _, h, w = batch.shape
        self._check(h, w)
        top = rng.integers(0, h - self.height + 1, size=n)
        left = rng.integers(0, w - self.width + 1, size=n)
        rows = top[:, None] + np.arange(self.height)  # (N, height)
        cols = left[:, None] + np.arange(self.width)  # (N, width)
        ni = np.arange(n)[:, None, None, None]
        ci = np.arange(batch.shape[1])[None, :, None, None]
        return batch[ni, ci, rows[:, None, :, None], cols[:, None, None, :]]

    def output_shape(self, shape: tuple[int, int, int]) -> tuple[int, int, int]:
        self._check(shape[1], shape[2])
        return (shape[0], self.height, self.width)

    def get_config(self) -> dict[str, Any]:
        return {"height": self.height, "width": self.width}


class CenterCrop(RandomCrop):
    """Cut the central (height, width) window out of each image (deterministic; ``rng`` unused).

    When the margin is odd the extra row / column is cut from the bottom / right (as "same"
    padding puts its odd row / column there: :func:`fastcnn._geometry.split_margin`).
    """

    def __call__(self, batch: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        batch = _as_batch(batch, type(self).__name__)
        _, _, h, w = batch.shape
        self._check(h, w)
        top, _ = split_margin(h - self.height)
        left, _ = split_margin(w - self.width)
        return batch[:, :, top:top + self.height, left:left + self.width].copy()


class RandomBrightness(Augmentation):
    """Add a random offset to each image, then clip to ``value_range``.

    Args:
        factor: a number f draws the offset from [-f, f], a pair (lo, hi) from [lo, hi], within
            [-1, 1], in units of the value range's width (Keras): -1 makes every image black,
            +1 white.
        value_range: (low, high) of the pixel values the batches hold; (0, 255) for raw 8-bit
            images (the datasets augment before ``rescale``), (0, 1) for rescaled ones.
    """

    def __init__(self, factor: float | Sequence[float],
                 value_range: Sequence[float] = (0, 255)) -> None:
        self.factor = factor if _is_number(factor) else tuple(factor)  # type: ignore[arg-type]
        self._f = _factor_range(factor, "RandomBrightness factor", -1.0, 1.0)
        self.value_range = _value_range(value_range, "RandomBrightness")

    def __call__(self, batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        batch = _as_batch(batch, type(self).__name__)
        lo, hi = self.value_range
        delta = (rng.uniform(*self._f, size=batch.shape[0]) * (hi - lo)).astype(np.float32)
        return np.clip(batch + delta[:, None, None, None], lo, hi).astype(np.float32, copy=False)

    def get_config(self) -> dict[str, Any]:
        return {"factor": self.factor, "value_range": self.value_range}


class RandomContrast(Augmentation):
    """Scale each image's deviation from its per-channel mean by a random factor, then clip.

    ``out = (x - mean) * a + mean`` with ``mean`` the mean of each channel of each image and
    ``a`` drawn per image from [1 - lower, 1 + upper] (Keras).

    Args:
        factor: a number f gives lower = upper = f; a pair gives (lower, upper). lower must be
            in [0, 1], upper >= 0.
        value_range: (low, high) to clip the result to; see :class:`RandomBrightness`.
    """

    def __init__(self, factor: float | Sequence[float],
                 value_range: Sequence[float] = (0, 255)) -> None:
        self.factor = factor if _is_number(factor) else tuple(factor)  # type: ignore[arg-type]
        if _is_number(factor):
            lower = upper = float(factor)  # type: ignore[arg-type]
        else:
            try:
                lower, upper = (float(v) for v in factor)  # type: ignore[union-attr]
            except (TypeError, ValueError):
                raise ValueError("RandomContrast factor must be a number or a (lower, upper) "
                                 f"pair, got {factor!r}") from None
        if not (0.0 <= lower <= 1.0 and 0.0 <= upper < math.inf):
            raise ValueError("RandomContrast factor needs 0 <= lower <= 1 and upper >= 0, "
                             f"got {factor!r}")
        self._range = (1.0 - lower, 1.0 + upper)
        self.value_range = _value_range(value_range, "RandomContrast")

    def __call__(self, batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        batch = _as_batch(batch, type(self).__name__)
        a = rng.uniform(*self._range, size=batch.shape[0]).astype(np.float32)[:, None, None, None]
        mean = batch.mean(axis=(2, 3), keepdims=True, dtype=np.float64).astype(np.float32)
        out = (batch - mean) * a + mean
        return np.clip(out, *self.value_range).astype(np.float32, copy=False)

    def get_config(self) -> dict[str, Any]:
        return {"factor": self.factor, "value_range": self.value_range}
