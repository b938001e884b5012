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
    if not (type(nesterov) is bool and type(first) is bool):
        nesterov = check_bool(nesterov, "nesterov", op=op)
        first = check_bool(first, "first", op=op)
    f32 = np.float32
    _backend(op, p, g, buf).sgd_update(
        p, g, buf, lr=float(f32(lr)), momentum=float(f32(momentum)), nesterov=nesterov,
        weight_decay=float(f32(weight_decay)), first=first)


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
    t = step if type(step) is int and 1 <= step < 2**31 else check_int(step, "step", op=op,
                                                                          minimum=1)
    if type(decoupled) is not bool:
        decoupled = check_bool(decoupled, "decoupled", op=op)
    lr, beta_1, beta_2 = float(lr), float(beta_1), float(beta_2)
    key = (lr, beta_1, beta_2, epsilon, weight_decay, decoupled)
    fixed = _ADAM.get(key) if type(epsilon) in _REALS and type(weight_decay) in _REALS else None
    if fixed is None:
        fixed = _adam_fixed(lr, beta_1, beta_2, float(epsilon), float(weight_decay), decoupled)
        if len(_ADAM) >= 64:
            _ADAM.clear()
        _ADAM[key] = fixed
    f32 = np.float32
    b1, omb1, b2, omb2, eps, l2, decay, has_l2, has_decay = fixed
    _backend(op, p, g, m, v).adam_update(
        p, g, m, v, step_size=float(f32(lr / (1.0 - beta_1 ** t))), beta1=b1,
        one_minus_beta1=omb1, beta2=b2, one_minus_beta2=omb2,
        sqrt_bc2=float(f32(math.sqrt(1.0 - beta_2 ** t))), eps=eps, l2=l2, decay=decay,
        has_l2=has_l2, has_decay=has_decay)


_REALS = (float, int)
_ADAM: dict[Any, tuple[Any, ...]] = {}  # the step-independent scalars per hyperparameters


def _adam_fixed(lr: float, beta_1: float, beta_2: float, epsilon: float, wd: float,
                decoupled: bool) -> tuple[Any, ...]:
    """Adam's float32 scalars that don't depend on the step, in the compiled modules' order
    (beta1, one_minus_beta1, beta2, one_minus_beta2; eps, l2, decay, has_l2, has_decay)."""
    f32 = np.float32
    b1, b2 = f32(beta_1), f32(beta_2)
    return (float(b1), float(f32(1) - b1), float(b2), float(f32(1) - b2), float(f32(epsilon)),
            float(f32(wd)), float(f32(1.0 - lr * wd)) if decoupled and wd else 1.0,
            bool(wd and not decoupled), bool(wd and decoupled))
