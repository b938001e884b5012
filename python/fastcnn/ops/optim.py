"""Optimizer updates in place, one pass each: :func:`sgd_update`, :func:`adam_update`."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._args import check_bool, check_int
from ._door import _backend, _converts


@_converts("p", "g", "buf")
def sgd_update(p: Any, g: Any, buf: Any = None, *, lr: float, momentum: float = 0.0,
               nesterov: bool = False, weight_decay: float = 0.0, first: bool = False) -> None:
    """One SGD step in place, PyTorch's formula (:class:`fastcnn.optimizers.SGD`)::

        g = g + weight_decay * p
        buf = g  (first)  |  momentum * buf + g
        g = g + momentum * buf  (nesterov)  |  buf  (momentum != 0)
        p -= lr * g

    Args:
        p: the parameter, float32 of any shape, C-contiguous and writable (updated in place).
        g: its gradient, float32 with p's number of elements (not modified).
        buf: the momentum buffer (p's size, updated in place); needed when ``momentum != 0``.
        lr, momentum, weight_decay: rounded to float32, as NumPy rounds them.
        first: the first step: ``buf = g`` (buf's old contents are ignored).
    """
    op = "sgd_update"
    f32 = np.float32
    _backend(op, p, g, buf).sgd_update(
        p, g, buf, lr=float(f32(lr)), momentum=float(f32(momentum)),
        nesterov=check_bool(nesterov, "nesterov", op=op),
        weight_decay=float(f32(weight_decay)), first=check_bool(first, "first", op=op))


@_converts("p", "g", "m", "v")
def adam_update(p: Any, g: Any, m: Any, v: Any, *, lr: float, beta_1: float, beta_2: float,
                epsilon: float, step: int, weight_decay: float = 0.0,
                decoupled: bool = False) -> None:
    """One Adam step in place (AdamW with ``decoupled``), PyTorch's formula
    (:class:`fastcnn.optimizers.Adam` / ``AdamW``)::

        p = p * (1 - lr * weight_decay)  (decoupled)  |  g = g + weight_decay * p
        m = beta_1 m + (1 - beta_1) g;   v = beta_2 v + (1 - beta_2) g^2
        p -= lr / (1 - beta_1^step) * m / (sqrt(v) / sqrt(1 - beta_2^step) + epsilon)

    Args:
        p: the parameter, float32, C-contiguous and writable (updated in place).
        g: its gradient (p's number of elements; not modified).
        m, v: the moment estimates (p's size, updated in place; zeros before the first step).
        lr, beta_1, beta_2, epsilon, weight_decay: the scalars are formed in float64 (the bias
            corrections, ``lr / (1 - beta_1^step)``, ...), then rounded to float32.
        step: the step number, counting from 1.
    """
    op = "adam_update"
    t = check_int(step, "step", op=op, minimum=1)
    decoupled = check_bool(decoupled, "decoupled", op=op)
    lr, beta_1, beta_2, wd = float(lr), float(beta_1), float(beta_2), float(weight_decay)
    f32 = np.float32
    b1, b2 = f32(beta_1), f32(beta_2)
    _backend(op, p, g, m, v).adam_update(
        p, g, m, v, step_size=float(f32(lr / (1.0 - beta_1 ** t))), beta1=float(b1),
        one_minus_beta1=float(f32(1) - b1), beta2=float(b2), one_minus_beta2=float(f32(1) - b2),
        sqrt_bc2=float(f32(math.sqrt(1.0 - beta_2 ** t))), eps=float(f32(epsilon)),
        l2=float(f32(wd)), decay=float(f32(1.0 - lr * wd)) if decoupled and wd else 1.0,
        has_l2=bool(wd and not decoupled), has_decay=bool(wd and decoupled))
