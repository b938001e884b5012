"""The functional API: every fastcnn op, the single door to the compiled kernels.

Same functions and signatures as :mod:`fastcnn.reference` (the NumPy oracle). Each function
normalises its options once (``stride=2`` -> ``(2, 2)``, ``padding="same"`` -> explicit
``(top, left, bottom, right)``, by :mod:`fastcnn._geometry`), then calls the compiled module for
the arrays' kind through :mod:`fastcnn._native`: ``numpy.ndarray`` -> ``fastcnn._cpu`` (C++ /
AVX2 / AVX-512 kernels, chosen at import), CuPy arrays -> ``fastcnn._cuda`` (through its adapter
:mod:`fastcnn._cuda_ops`, the same signatures) when it is built. Shapes and dtypes are checked in
C++ (the compiled module is a public door too) and reported as ``ValueError`` / ``TypeError``
naming the argument.

Array kinds: NumPy and CuPy arrays, PyTorch tensors (CPU and CUDA) and any object with
``__dlpack__`` are accepted, viewed without a copy (:mod:`fastcnn._arrays` holds the rules), and
results come back in the first array argument's kind: a torch tensor for torch tensors, on
their device (an op on CUDA tensors runs on PyTorch's current stream); NumPy / CuPy for NumPy,
CuPy and other DLPack inputs. Kinds may be mixed within a device (NumPy with CPU tensors), not
across devices (TypeError). A tensor that requires grad is refused while autograd records
(TypeError: pass ``x.detach()``, or use :mod:`fastcnn.torch`'s differentiable ops); an ``out=``
tensor is written in place and returned as itself.

Input rule: arrays must be float32 (``x.astype(numpy.float32)`` converts); class labels may be
any integer dtype; pooling indices are int64. No silent casts, no promotion. Non-contiguous,
Fortran-order, negative-stride, broadcast, misaligned and read-only arrays are accepted (copied
once). Results are fresh C-contiguous arrays of the inputs' kind.

Options beyond PyTorch's signatures (also in the reference): ``conv2d(..., relu=True)`` and
``linear(..., relu=True)`` apply ReLU in the GEMM epilogue (one pass over the output instead of
two); ``conv2d_backward(..., compute_dx=False)`` and ``linear_backward(..., compute_dx=False)``
skip the input gradient (a network's first layer doesn't need it), ``compute_dw=False`` the
weights' gradient. ``conv2d_stats`` (CPU) is ``conv2d`` returning its output's per-channel batch
mean and variance too, gathered in the convolution's epilogue, for ``batch_norm(...,
training=True, batch_stats=(mean, var))``, which then skips its own pass over the output.

Optimizer updates: :func:`sgd_update` and :func:`adam_update` update a parameter and its state
in place, in one pass, with the same float32 operations as the NumPy formulas
(:func:`fastcnn.reference.sgd_update` / :func:`~fastcnn.reference.adam_update`), bit for bit, on
either device; :mod:`fastcnn.optimizers` calls them.

The ops live in submodules by family (``convolution``, ``pooling``, ``activation``, ``dense``,
``probability``, ``optim``, ``normalization``; the array door in ``_door``), re-exported here:
call them as ``fastcnn.ops.<name>``.
"""

from __future__ import annotations

from .. import _native  # noqa: F401  (tests replace _native.cpu through here)
from .activation import (
    gelu,
    gelu_backward,
    leaky_relu,
    leaky_relu_backward,
    relu,
    relu_backward,
    sigmoid,
    sigmoid_backward,
    silu,
    silu_backward,
    tanh,
    tanh_backward,
)
from .convolution import conv2d, conv2d_backward, conv2d_stats
from .dense import linear, linear_backward
from .normalization import batch_norm, batch_norm_backward  # normalization family
from .optim import adam_update, sgd_update
from .pooling import (
    avg_pool2d,
    avg_pool2d_backward,
    global_avg_pool2d,
    global_avg_pool2d_backward,
    global_max_pool2d,
    global_max_pool2d_backward,
    max_pool2d,
    max_pool2d_backward,
)
from .probability import cross_entropy, log_softmax, softmax

__all__ = [
    "adam_update",
    "avg_pool2d",
    "avg_pool2d_backward",
    "batch_norm",
    "batch_norm_backward",
    "conv2d",
    "conv2d_backward",
    "conv2d_stats",
    "cross_entropy",
    "gelu",
    "gelu_backward",
    "global_avg_pool2d",
    "global_avg_pool2d_backward",
    "global_max_pool2d",
    "global_max_pool2d_backward",
    "leaky_relu",
    "leaky_relu_backward",
    "linear",
    "linear_backward",
    "log_softmax",
    "max_pool2d",
    "max_pool2d_backward",
    "relu",
    "relu_backward",
    "sgd_update",
    "sigmoid",
    "sigmoid_backward",
    "silu",
    "silu_backward",
    "softmax",
    "tanh",
    "tanh_backward",
]


def __dir__() -> list[str]:
    """``dir(fastcnn.ops)``: the ops only (PEP 562), not the modules of the package."""
    return sorted(__all__)
