"""fastcnn inside PyTorch models (optional: ``pip install "fastcnn[torch]"``).

* Operators with autograd, on fastcnn's kernels (:mod:`fastcnn.torch._ops`):
  :func:`conv2d`, :func:`max_pool2d`, :func:`relu`, :func:`linear`, :func:`cross_entropy`
  (``torch.nn.functional``'s signatures; registered as ``torch.ops.fastcnn.*`` custom ops, so
  ``torch.compile`` keeps them as opaque nodes).
* Drop-in modules (:mod:`fastcnn.torch.nn`): :class:`Conv2d`, :class:`MaxPool2d`,
  :class:`ReLU`, :class:`Linear` (subclasses of torch.nn's, same constructor arguments and
  state_dict keys) and :func:`accelerate`, which switches the supported submodules of an
  existing model over to them in place.
* Conversion (:mod:`fastcnn.torch.convert`): :func:`from_torch` (``nn.Sequential`` ->
  ``fastcnn.Sequential``) and :func:`to_torch` (the reverse), weights copied.

This package never imports :mod:`fastcnn.model` (models are built through
:mod:`fastcnn.saving`'s class lookup), so ``Sequential.to_torch`` may import it lazily.
"""

from __future__ import annotations

try:
    import torch as _torch  # noqa: F401  (the real PyTorch: absolute import)
except ImportError as e:  # pragma: no cover - exercised by a subprocess test
    raise ImportError('fastcnn.torch needs PyTorch: pip install "fastcnn[torch]"') from e

from ._ops import conv2d, cross_entropy, linear, max_pool2d, relu
from .convert import from_torch, to_torch
from .nn import Conv2d, Linear, MaxPool2d, ReLU, accelerate

__all__ = ["Conv2d", "Linear", "MaxPool2d", "ReLU", "accelerate", "conv2d", "cross_entropy",
           "from_torch", "linear", "max_pool2d", "relu", "to_torch"]
