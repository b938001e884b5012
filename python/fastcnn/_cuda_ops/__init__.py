"""The CUDA backend for CuPy arrays: what :mod:`fastcnn.ops` calls instead of ``fastcnn._cpu``.

Same function names and positional signatures as the compiled CPU module (``conv2d(x, w, b,
stride_h, stride_w, pad_top, pad_left, pad_bottom, pad_right, dil_h, dil_w, groups, relu)``, ...),
taking and returning ``cupy.ndarray``. The input rule is the CPU's: float32 arrays (class labels:
any integer dtype; pooling indices: int64), anything else is a TypeError naming the argument;
non-contiguous inputs are copied once (``cupy.ascontiguousarray``); outputs are fresh C-contiguous
arrays allocated with CuPy (its memory pool), as are the kernels' workspaces.

Shapes and options are validated in C++ by the same ``check_<op>_args`` functions as the CPU
module (ValueError, same messages) through ``fastcnn._cuda``'s launch plans (``Conv2dPlan``,
``LinearPlan``, ``MaxPool2dPlan``, ``BatchNormPlan``, ``SoftmaxPlan``, ... built with the
``*_plan`` functions' arguments) or ``*_plan`` functions, before anything is allocated; the
kernels are then launched with raw device pointers on CuPy's current stream of the arrays'
device (all arrays of a call must be on one device). Plans are cached under every shape and
option they were built from (``_common._plan``), so a repeated call validates nothing again in
C++ and passes only pointers, sizes and the stream. Calls are asynchronous
like any CuPy operation: ``cross_entropy`` returns its loss as a 0-d float64 device array and
checks class ids on the device (the 16-byte record is read at once, or at ``fit``'s next read
inside a :func:`fastcnn._deferred.scope`); the pooling indices that ``max_pool2d`` /
``global_max_pool2d`` return are trusted by their backward (no check, no copy). Only user-given
pooling ``indices`` are validated with one small copy and a sync.

Optimizer updates (``sgd_update``, ``adam_update``) work in place on C-contiguous float32
parameters and state and are bit-identical to the NumPy formulas of :mod:`fastcnn.reference`
(``adam_update`` takes the CPU module's prepared float32 scalars, formed by
:func:`fastcnn.ops.adam_update`).

``fastcnn._cuda`` is reached through :mod:`fastcnn._native`, the one door to the compiled modules.
The functions live in a module per op family, as in :mod:`fastcnn.ops` (the shared helpers in
``_common``), re-exported here.
"""

from __future__ import annotations

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
from .normalization import batch_norm, batch_norm_backward
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
from .probability import cross_entropy, softmax

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
