"""NumPy implementations of every fastcnn op: the oracle for the kernels and the benchmark baseline.

Same functions and signatures as :mod:`fastcnn.ops`, but written for clarity over speed (while
staying vectorised: no per-element Python loops). Every function works in the dtype of its
inputs (float32 or float64; mixed inputs are promoted with ``numpy.result_type``), so tests can
run it in float64 as a ground truth. It imports only numpy (and the pure-Python argument helpers
in :mod:`fastcnn._args`, re-exported here).

Approaches:

* ``conv2d``: zero-pad, im2col with ``sliding_window_view`` (a strided view, copied once into a
  ``(groups, C/groups*R*S, N*P*Q)`` matrix; this order keeps the copy's inner loop running along
  W), then one batched matmul ``w (groups, K/groups, C/groups*R*S) @ cols``.
* ``conv2d_backward``: ``dw`` is ``dy @ cols^T``; ``dx`` is ``w^T @ dy`` back in column space,
  scattered into the padded input by a loop over the R*S kernel taps, each adding a whole
  strided slice (col2im), then cropped.
* ``max_pool2d``: ``-inf`` padding, window view flattened to ``(..., kh*kw)`` in row-major
  order; the PyTorch CPU selection rule ``val > maxval || isnan(val)`` is reproduced with
  vectorised argmax (first maximum; the last NaN and the first in-bounds element of an all
  ``-inf`` window are patched in only where they occur). The backward scatter-adds ``dy`` at
  the indices with ``numpy.add.at``.
* ``softmax`` / ``log_softmax`` / ``cross_entropy``: shift by the row maximum first.
* ``sgd_update`` / ``adam_update``: the optimizer formulas in place, one NumPy operation per
  float32 operation of the compiled updates, in their order (so the two agree bit for bit).

* the activations (``sigmoid``, ``tanh``, ``gelu``, ``silu`` and their backward): float64
  formulas that neither overflow nor cancel (``x * sigmoid(v)`` for silu and the tanh GELU,
  ``erfc`` for the exact GELU), rounded once to the inputs' dtype; ``leaky_relu`` in the input
  dtype, exactly as the kernels.

``out=`` (``relu``, the other activations, their backward, ``max_pool2d_backward``) copies the
result into the given array of the result's shape and returns it.

The functions live in submodules by family, as in :mod:`fastcnn.ops` (``convolution``,
``pooling``, ``activation``, ``dense``, ``probability``, ``optim``; the array checks in
``_checks``), re-exported here.
"""

from __future__ import annotations

from .._args import check_bool, check_int
from .._geometry import conv_output_size, conv_padding, pair, pool_args, pool_output_size
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
    "check_bool",
    "check_int",
    "conv2d",
    "conv2d_backward",
    "conv2d_stats",
    "conv_output_size",
    "conv_padding",
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
    "pair",
    "pool_args",
    "pool_output_size",
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
    """``dir(fastcnn.reference)``: its public names only (PEP 562), not its modules."""
    return sorted(__all__)
