"""Helpers of the fusion tests, which compare a fused model with its unfused twin bit for bit
(tests/test_batch_norm_relu_models.py, tests/test_conv_relu_fusion.py)."""

from __future__ import annotations

from typing import Any

import numpy as np


def same_bits(a: list[Any], b: list[Any]) -> None:
    """Assert the two lists of arrays / numbers are equal bit for bit (shapes too)."""
    assert len(a) == len(b)
    for i, (u, v) in enumerate(zip(a, b, strict=True)):
        u, v = np.atleast_1d(np.asarray(u)), np.atleast_1d(np.asarray(v))
        assert u.shape == v.shape and np.array_equal(u.view(np.uint8), v.view(np.uint8)), i


def step_data(rng: np.random.Generator, steps: int, n: int, shape: tuple[int, ...],
              classes: int) -> tuple[np.ndarray, np.ndarray]:
    """``steps`` batches of ``n`` standard-normal samples of ``shape`` and their class ids."""
    xs = rng.standard_normal((steps, n, *shape)).astype(np.float32)
    ys = rng.integers(0, classes, (steps, n))
    return xs, ys
