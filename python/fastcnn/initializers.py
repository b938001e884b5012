"""Weight initializers (Keras names and formulas).

An initializer is called as ``init(shape, rng) -> float32 array`` where ``rng`` is a
``numpy.random.Generator``; all randomness comes from that generator, so a model built with the
same seed gets the same weights.

Fans follow the PyTorch weight layouts used by fastcnn:

* dense weight ``(out, in)``: ``fan_in = in``, ``fan_out = out``;
* conv weight ``(K, C/groups, R, S)``: ``fan_in = C/groups * R * S``, ``fan_out = K * R * S``
  (the same numbers Keras computes from its ``(R, S, C/groups, K)`` layout);
* a 1-D shape (a bias) has ``fan_in = fan_out = shape[0]``.

Names accepted by :func:`get`: ``"zeros"``, ``"ones"``, ``"glorot_uniform"``,
``"glorot_normal"``, ``"he_uniform"``, ``"he_normal"``, ``"lecun_uniform"``, ``"lecun_normal"``
(``"xavier_*"`` / ``"kaiming_*"`` are aliases). The ``*_normal`` variants draw from a normal
truncated at two standard deviations whose standard deviation is corrected (divided by
0.87962566103423978) so the variance is the target one, as Keras does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = [
    "Constant",
    "GlorotNormal",
    "GlorotUniform",
    "HeNormal",
    "HeUniform",
    "Initializer",
    "LecunNormal",
    "LecunUniform",
    "Ones",
    "RandomNormal",
    "RandomUniform",
    "Zeros",
    "compute_fans",
    "get",
    "serialize",
]

_TRUNC_STD_CORRECTION = 0.87962566103423978  # std of a unit normal truncated to [-2, 2]


def compute_fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight of ``shape`` in PyTorch layout (see module docstring)."""
    shape = tuple(int(s) for s in shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[2:]) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def _truncated_normal(shape: tuple[int, ...], rng: np.random.Generator, std: float,
                      mean: float = 0.0) -> np.ndarray:
    """Normal(mean, std) truncated to two standard deviations (redraws outside values)."""
    out = rng.standard_normal(shape)
    bad = np.abs(out) > 2.0
    while bad.any():
        out[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(out) > 2.0
    return (out * std + mean).astype(np.float32)


class Initializer:
    """Base class: ``__call__(shape, rng) -> float32 array``; ``get_config()`` for saving."""

    name = "initializer"

    def __call__(self, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments (JSON-serialisable)."""
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class Zeros(Initializer):
    """All zeros."""

    name = "zeros"

    def __call__(self, shape, rng):
        return np.zeros(shape, dtype=np.float32)


class Ones(Initializer):
    """All ones."""

    name = "ones"

    def __call__(self, shape, rng):
        return np.ones(shape, dtype=np.float32)


class Constant(Initializer):
    """Every element equal to ``value``."""

    name = "constant"

    def __init__(self, value: float = 0.0) -> None:
        self.value = float(value)

    def __call__(self, shape, rng):
        return np.full(shape, self.value, dtype=np.float32)

    def get_config(self):
        return {"value": self.value}


class RandomUniform(Initializer):
    """Uniform on ``[minval, maxval)``."""

    name = "random_uniform"

    def __init__(self, minval: float = -0.05, maxval: float = 0.05) -> None:
        self.minval, self.maxval = float(minval), float(maxval)

    def __call__(self, shape, rng):
        return rng.uniform(self.minval, self.maxval, size=shape).astype(np.float32)

    def get_config(self):
        return {"minval": self.minval, "maxval": self.maxval}


class RandomNormal(Initializer):
    """Normal(``mean``, ``stddev``)."""

    name = "random_normal"

    def __init__(self, mean: float = 0.0, stddev: float = 0.05) -> None:
        self.mean, self.stddev = float(mean), float(stddev)

    def __call__(self, shape, rng):
        return (rng.standard_normal(shape) * self.stddev + self.mean).astype(np.float32)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev}


class _VarianceScaling(Initializer):
    """``scale / fan`` variance; ``fan`` is fan_in, fan_out or their average."""

    scale = 1.0
    mode = "fan_in"
    distribution = "uniform"

    def _variance(self, shape: tuple[int, ...]) -> float:
        fan_in, fan_out = compute_fans(shape)
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        return self.scale / max(1.0, fan)

    def __call__(self, shape, rng):
        var = self._variance(tuple(shape))
        if self.distribution == "uniform":
            limit = math.sqrt(3.0 * var)
            return rng.uniform(-limit, limit, size=shape).astype(np.float32)
        return _truncated_normal(tuple(shape), rng, math.sqrt(var) / _TRUNC_STD_CORRECTION)


class GlorotUniform(_VarianceScaling):
    """Uniform on ``[-limit, limit]``, ``limit = sqrt(6 / (fan_in + fan_out))``."""

    name, mode, distribution = "glorot_uniform", "fan_avg", "uniform"


class GlorotNormal(_VarianceScaling):
    """Truncated normal, ``stddev = sqrt(2 / (fan_in + fan_out))``."""

    name, mode, distribution = "glorot_normal", "fan_avg", "normal"


class HeUniform(_VarianceScaling):
    """Uniform on ``[-limit, limit]``, ``limit = sqrt(6 / fan_in)``."""

    name, scale, distribution = "he_uniform", 2.0, "uniform"


class HeNormal(_VarianceScaling):
    """Truncated normal, ``stddev = sqrt(2 / fan_in)``."""

    name, scale, distribution = "he_normal", 2.0, "normal"


class LecunUniform(_VarianceScaling):
    """Uniform on ``[-limit, limit]``, ``limit = sqrt(3 / fan_in)``."""

    name, distribution = "lecun_uniform", "uniform"


class LecunNormal(_VarianceScaling):
    """Truncated normal, ``stddev = sqrt(1 / fan_in)``."""

    name, distribution = "lecun_normal", "normal"


_REGISTRY: dict[str, type[Initializer]] = {
    cls.name: cls
    for cls in (Zeros, Ones, Constant, RandomUniform, RandomNormal, GlorotUniform, GlorotNormal,
                HeUniform, HeNormal, LecunUniform, LecunNormal)
}
_ALIASES = {
    "zero": "zeros", "one": "ones",
    "xavier_uniform": "glorot_uniform", "xavier_normal": "glorot_normal",
    "kaiming_uniform": "he_uniform", "kaiming_normal": "he_normal",
}
_CLASS_NAMES = {cls.__name__: cls for cls in _REGISTRY.values()}


def get(identifier: Any) -> Initializer | Callable[..., np.ndarray]:
    """Resolve an initializer from a name, an :class:`Initializer`, a config dict
    ``{"class_name": ..., "config": {...}}`` or a callable ``f(shape, rng)``.

    Raises:
        ValueError: unknown name or class.
        TypeError: anything else.
    """
    if isinstance(identifier, Initializer):
        return identifier
    if isinstance(identifier, str):
        key = _ALIASES.get(identifier.lower(), identifier.lower())
        if key in _REGISTRY:
            return _REGISTRY[key]()
        if identifier in _CLASS_NAMES:
            return _CLASS_NAMES[identifier]()
        raise ValueError(f"unknown initializer {identifier!r}; expected one of "
                         f"{sorted(_REGISTRY)} or an Initializer object")
    if isinstance(identifier, dict):
        cls = _CLASS_NAMES.get(identifier.get("class_name", ""))
        if cls is None:
            raise ValueError(f"unknown initializer config {identifier!r}")
        return cls(**identifier.get("config", {}))
    if callable(identifier):
        return identifier
    raise TypeError(f"initializer must be a name, an Initializer or a callable, "
                    f"got {identifier!r}")


def serialize(init: Any) -> Any:
    """JSON form of an initializer: its registry name when it has no arguments, else a
    ``{"class_name", "config"}`` dict. Plain callables cannot be serialised (ValueError)."""
    if isinstance(init, Initializer):
        cfg = init.get_config()
        if not cfg:
            return init.name
        return {"class_name": type(init).__name__, "config": cfg}
    raise ValueError(f"cannot serialise the custom initializer {init!r}; use an "
                     f"fastcnn.initializers.Initializer subclass or a name")
