"""The capture of a training step for the profile (:mod:`fastcnn.bench.profile`): every
:mod:`fastcnn.ops` call of one step with copies of its arguments and whose call it is
(:func:`capture`), and a convolution call's geometry (:func:`conv_geometry`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import ops

__all__ = ["Call", "capture", "conv_geometry"]


@dataclass
class Call:
    """One recorded op call (or a layer method that calls no op): whose, which, with what."""

    layer: str
    layer_class: str
    scope: str  # forward / backward / loss / optimizer / step
    op: str
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


def _copier() -> Callable[[Any], Any]:
    """Deep-copies arrays (NumPy) in nested args, one copy per original object (aliasing kept;
    the originals are held so their ids are not reused during the capture)."""
    memo: dict[int, tuple[Any, Any]] = {}

    def copy(v: Any) -> Any:
        if isinstance(v, np.ndarray):
            hit = memo.get(id(v))
            if hit is None:
                hit = memo[id(v)] = (v, np.array(v, copy=True))
            return hit[1]
        if isinstance(v, (list, tuple)):
            return type(v)(copy(e) for e in v)
        if isinstance(v, dict):
            return {k: copy(e) for k, e in v.items()}
        return v

    return copy


def _all_layers(model: Any) -> list[Any]:
    out = []
    for lay in getattr(model, "layers", []):
        if getattr(lay, "layers", None) is not None and lay is not model:
            out.extend(_all_layers(lay))
        else:
            out.append(lay)
    return out


def capture(model: Any, step: Callable[[], Any]) -> list[Call]:
    """Run ``step()`` (one training step of ``model``) with the recording wrappers (see the
    module docstring) and return its calls in order; everything is restored afterwards."""
    calls: list[Call] = []
    copy = _copier()
    stack: list[tuple[str, str, str, list[int]]] = []  # (layer, class, scope, [op calls])
    saved_ops = {n: getattr(ops, n) for n in ops.__all__ if callable(getattr(ops, n))}

    def op_wrapper(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            lay, cls, scope, count = stack[-1] if stack else ("(model)", "", "step", [0])
            count[0] += 1
            calls.append(Call(lay, cls, scope, name, fn, copy(args), copy(kwargs)))
            return fn(*args, **kwargs)
        return wrapped

    def scope_wrapper(obj: Any, attr: str, lay: str, cls: str, scope: str) -> None:
        fn = getattr(obj, attr)

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            count = [0]
            stack.append((lay, cls, scope, count))
            at = len(calls)
            kept = (copy(args), copy(kwargs))
            try:
                return fn(*args, **kwargs)
            finally:
                stack.pop()
                if count[0] == 0 and scope in ("forward", "backward", "loss"):
                    calls.insert(at, Call(lay, cls, scope, f"{cls}.{attr}", fn, *kept))
        setattr(obj, attr, wrapped)

    patched: list[tuple[Any, str]] = []
    try:
        for n, fn in saved_ops.items():
            setattr(ops, n, op_wrapper(n, fn))
        for lay in _all_layers(model):
            for attr in ("forward", "backward"):
                scope_wrapper(lay, attr, lay.name, type(lay).__name__, attr)
                patched.append((lay, attr))
        scope_wrapper(model.loss, "value_and_grad", "(loss)", type(model.loss).__name__, "loss")
        patched.append((model.loss, "value_and_grad"))
        scope_wrapper(model.optimizer, "step", "(optimizer)", type(model.optimizer).__name__,
                      "optimizer")
        patched.append((model.optimizer, "step"))
        step()
    finally:
        for n, fn in saved_ops.items():
            setattr(ops, n, fn)
        for obj, attr in patched:
            obj.__dict__.pop(attr, None)
    return calls


#: the convolution forwards (conv2d_stats: with the batch statistics for a following BN)
_FORWARDS = ("conv2d", "conv2d_stats")


def conv_geometry(c: Call) -> tuple[int, ...]:
    """(sh, sw, pad top, left, bottom, right, dh, dw, groups) of a conv call."""
    from ..ops.convolution import _conv_args

    x, w = (c.args[0], c.args[1]) if c.op in _FORWARDS else (c.args[1], c.args[2])
    k = c.kwargs
    return _conv_args(c.op, x, w, k.get("stride", 1), k.get("padding", 0),
                      k.get("dilation", 1), k.get("groups", 1))
