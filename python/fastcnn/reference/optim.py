"""Reference optimizer updates: one NumPy operation per float32 operation of the compiled
updates, in their order (the two agree bit for bit)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._args import check_int


def sgd_update(p: Any, g: Any, buf: Any = None, *, lr: float, momentum: float = 0.0,
               nesterov: bool = False, weight_decay: float = 0.0, first: bool = False) -> None:
    """One SGD step in place (:func:`fastcnn.ops.sgd_update`), p, g and buf of one shape::

        g = g + weight_decay * p;  buf = g (first) | momentum * buf + g
        g = g + momentum * buf (nesterov) | buf (momentum != 0);  p -= lr * g
    """
    f32 = np.float32
    if weight_decay:
        g = g + f32(weight_decay) * p
    if momentum:
        if buf is None:
            raise ValueError(f"sgd_update: momentum={momentum} needs a momentum buffer")
        if first:
            buf[...] = g
        else:
            buf *= f32(momentum)
            buf += g
        g = g + f32(momentum) * buf if nesterov else buf
    p -= f32(lr) * g


def adam_update(p: Any, g: Any, m: Any, v: Any, *, lr: float, beta_1: float, beta_2: float,
                epsilon: float, step: int, weight_decay: float = 0.0,
                decoupled: bool = False) -> None:
    """One Adam (AdamW with ``decoupled``) step in place (:func:`fastcnn.ops.adam_update`)::

        p = p * (1 - lr * weight_decay) (decoupled) | g = g + weight_decay * p
        m = beta_1 m + (1 - beta_1) g;  v = beta_2 v + (1 - beta_2) g^2
        p -= lr / (1 - beta_1^step) * m / (sqrt(v) / sqrt(1 - beta_2^step) + epsilon)
    """
    f32 = np.float32
    t = check_int(step, "step", op="adam_update", minimum=1)
    lr, beta_1, beta_2, wd = float(lr), float(beta_1), float(beta_2), float(weight_decay)
    if wd:
        if decoupled:
            p *= f32(1.0 - lr * wd)
        else:
            g = g + f32(wd) * p
    b1, b2 = f32(beta_1), f32(beta_2)
    m *= b1
    m += (f32(1) - b1) * g
    v *= b2
    v += (f32(1) - b2) * (g * g)
    denom = np.sqrt(v) / f32(math.sqrt(1.0 - beta_2 ** t))
    denom += f32(epsilon)
    p -= f32(lr / (1.0 - beta_1 ** t)) * (m / denom)
