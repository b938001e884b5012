"""CUDA adapter: the optimizer updates, in place (optim.cu). Inside fit's deferred scope the
kernels take its skip flag (:func:`fastcnn._deferred.guard_ptr`): set on the device by a
non-finite loss, it turns every later update into a no-op until the host reads the checks."""

from __future__ import annotations

from typing import Any

from .._deferred import guard_ptr
from ._common import (
    _cuda,
    _device,
    _f32,
    _inplace,
    _stream,
)


def sgd_update(p: Any, g: Any, buf: Any, lr: float, momentum: float, nesterov: bool,
               weight_decay: float, first: bool) -> None:
    """One SGD step in place (:func:`fastcnn.ops.sgd_update`'s formula, the CPU's bits):
    ``g += wd*p``; ``buf = g`` (``first``) or ``momentum*buf + g``; ``g = g + momentum*buf``
    (nesterov) or ``buf``; ``p -= lr*g``. ``buf`` is needed when ``momentum != 0``."""
    op = "sgd_update"
    p = _inplace(p, op, "p")
    g = _f32(g, op, "g")
    if g.size != p.size:
        raise ValueError(f"{op}: g has {g.size} elements but p has {p.size}")
    if momentum:
        if buf is None:
            raise ValueError(f"{op}: momentum={momentum} needs a momentum buffer")
        buf = _inplace(buf, op, "buf", p)
    with _device(op, p, g, buf if momentum else None):
        _cuda.sgd_update(p.data.ptr, g.data.ptr, buf.data.ptr if momentum else 0, p.size,
                         float(lr),
                         float(momentum), float(weight_decay), bool(nesterov), bool(first),
                         _stream(), guard_ptr())


def adam_update(p: Any, g: Any, m: Any, v: Any, step_size: float, beta1: float,
                one_minus_beta1: float, beta2: float, one_minus_beta2: float, sqrt_bc2: float,
                eps: float, l2: float, decay: float, has_l2: bool, has_decay: bool) -> None:
    """One Adam (AdamW with ``has_decay``) step in place from the scalars
    :func:`fastcnn.ops.adam_update` prepares (the CPU module's signature, the CPU's bits)."""
    op = "adam_update"
    p = _inplace(p, op, "p")
    m = _inplace(m, op, "m", p)
    v = _inplace(v, op, "v", p)
    g = _f32(g, op, "g")
    if g.size != p.size:
        raise ValueError(f"{op}: g has {g.size} elements but p has {p.size}")
    with _device(op, p, g, m, v):
        _cuda.adam_update(p.data.ptr, g.data.ptr, m.data.ptr, v.data.ptr, p.size,
                          float(step_size),
                          float(beta1), float(one_minus_beta1), float(beta2),
                          float(one_minus_beta2), float(sqrt_bc2), float(eps), float(l2),
                          float(decay), bool(has_l2), bool(has_decay), _stream(), guard_ptr())
