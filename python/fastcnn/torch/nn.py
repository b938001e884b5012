"""Drop-in ``torch.nn`` modules on fastcnn's kernels, and :func:`accelerate`.

:class:`Conv2d`, :class:`MaxPool2d`, :class:`ReLU` and :class:`Linear` subclass their torch.nn
namesakes: the same constructor arguments, attributes, ``repr`` and state_dict keys
(``weight``, ``bias``); only ``forward`` differs, running :mod:`fastcnn.torch`'s operators.
What fastcnn can't do is refused when the module is made, with a ValueError naming the
argument: ``padding_mode`` other than ``"zeros"``, ``ReLU(inplace=True)``, parameters of a dtype
other than float32.

:func:`accelerate` switches every supported submodule of an existing model to these classes in
place (the objects stay, with their parameters, buffers and hooks: an optimizer made before
keeps working), and returns the model and the names it switched.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ._ops import conv2d, linear, max_pool2d, relu

__all__ = ["Conv2d", "Linear", "MaxPool2d", "ReLU", "accelerate", "unsupported_reason"]


def _param_problem(module: nn.Module) -> str | None:
    for name, p in module.named_parameters(recurse=False):
        if p.dtype != torch.float32:
            return f"{name} is {p.dtype} (fastcnn runs float32 only: call .float() first)"
        if p.device.type not in ("cpu", "cuda", "meta"):
            return f"{name} is on {p.device} (fastcnn runs on CPU and CUDA tensors)"
    return None


def unsupported_reason(module: nn.Module) -> str | None:
    """Why ``module`` (a torch.nn Conv2d / MaxPool2d / ReLU / Linear) can't run on fastcnn's
    kernels, naming the argument, or None when it can."""
    if isinstance(module, nn.Conv2d) and module.padding_mode != "zeros":
        return (f"padding_mode={module.padding_mode!r} is not supported (fastcnn pads with "
                f"zeros: padding_mode='zeros')")
    if isinstance(module, nn.ReLU) and module.inplace:
        return ("inplace=True is not supported (fastcnn.torch.ReLU returns a new tensor: "
                "inplace=False)")
    return _param_problem(module)


def _refuse(module: nn.Module) -> None:
    reason = unsupported_reason(module)
    if reason is not None:
        raise ValueError(f"fastcnn.torch.{type(module).__name__}: {reason}")


class Conv2d(nn.Conv2d):
    """``torch.nn.Conv2d`` on fastcnn's kernels (``padding_mode="zeros"`` only).

    Shapes: x (N, C, H, W) or (C, H, W) float32 -> (N, K, P, Q); weight (K, C/groups, R, S).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _refuse(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                      self.groups)


class MaxPool2d(nn.MaxPool2d):
    """``torch.nn.MaxPool2d`` on fastcnn's kernels (every argument supported).

    Shapes: x (N, C, H, W) or (C, H, W) float32 -> (N, C, P, Q) (and int64 indices with
    ``return_indices=True``).
    """

    def forward(self, x: torch.Tensor) -> Any:
        return max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation,
                          self.ceil_mode, self.return_indices)


class ReLU(nn.ReLU):
    """``torch.nn.ReLU`` on fastcnn's kernel (``inplace=False`` only). Any shape, float32."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__(inplace)
        _refuse(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return relu(x)


class Linear(nn.Linear):
    """``torch.nn.Linear`` on fastcnn's kernels. Shapes: x (*, in) float32 -> (*, out);
    weight (out, in)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _refuse(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


#: torch.nn class -> its fastcnn replacement (exact types: a subclass may have its own forward)
_SWAPS: dict[type[nn.Module], type[nn.Module]] = {
    nn.Conv2d: Conv2d, nn.MaxPool2d: MaxPool2d, nn.ReLU: ReLU, nn.Linear: Linear}


def accelerate(module: nn.Module, *, strict: bool = False) -> tuple[nn.Module, list[str]]:
    """Switch every supported submodule of ``module`` (itself included) to fastcnn's kernels,
    in place.

    A submodule whose type is exactly ``nn.Conv2d``, ``nn.MaxPool2d``, ``nn.ReLU`` or
    ``nn.Linear`` becomes :class:`Conv2d` / :class:`MaxPool2d` / :class:`ReLU` / :class:`Linear`
    (its class changes; the object, its parameters, buffers and hooks stay, so the weights and
    an existing optimizer are kept). Subclasses of those types are left alone (they may have
    their own ``forward``), and so are configurations fastcnn can't run (see
    :func:`unsupported_reason`), unless ``strict``.

    Args:
        module: any ``torch.nn.Module``.
        strict: raise ValueError for a supported type with an unsupported configuration
            (e.g. ``padding_mode="reflect"``, ``ReLU(inplace=True)``, float64 weights) instead
            of leaving it on PyTorch's kernels.

    Returns:
        ``(module, swapped)``: the same module, and the ``named_modules`` names switched
        (``""`` for ``module`` itself).
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"accelerate: module must be a torch.nn.Module, got "
                        f"{type(module).__name__}")
    swapped: list[str] = []
    for name, sub in module.named_modules():
        target = _SWAPS.get(type(sub))
        if target is None:
            continue
        reason = unsupported_reason(sub)
        if reason is not None:
            if strict:
                raise ValueError(f"accelerate: {name or type(sub).__name__} "
                                 f"({type(sub).__name__}): {reason}")
            continue
        sub.__class__ = target
        swapped.append(name)
    return module, swapped
