"""fastcnn: hand-written AVX2 / AVX-512 (and CUDA) kernels for small CNNs, with a Keras-like API.

``fastcnn.ops`` is the functional API over the compiled kernels, ``fastcnn.reference`` the NumPy
oracle with the same signatures; ``fastcnn.Sequential`` (a stack), ``fastcnn.Model`` (a graph of
layers called on ``fastcnn.Input``) and ``fastcnn.layers`` build models,
``fastcnn.training`` trains them (``fit`` around one ``train_step``), ``fastcnn.saving`` writes
and reads them; ``fastcnn.models`` holds ready-made networks; ``fastcnn.data`` loads image
folders; ``fastcnn.torch`` runs fastcnn's kernels inside PyTorch (optional torch);
``fastcnn.onnx`` exports and imports ONNX graphs (with the optional onnx package).
ARCHITECTURE.md is the map.
"""

from __future__ import annotations

import os

from . import (
    callbacks,
    data,
    datasets,
    initializers,
    layers,
    losses,
    metrics,
    models,
    onnx,
    ops,
    optimizers,
    plot,
    reference,
    saving,
    training,
)
from ._device import cuda_available, cuda_built
from ._native import cpu as _cpu
from ._native import cuda_archs as _cuda_archs
from .functional import Functional
from .layers import Input
from .model import Model, Sequential
from .onnx import load_onnx
from .saving import load_model, model_from_json
from .training import NonFiniteLossError, StepResult, train_step

__version__: str = _cpu.__version__

__all__ = [
    "Functional",
    "Input",
    "Model",
    "NonFiniteLossError",
    "Sequential",
    "StepResult",
    "__version__",
    "callbacks",
    "data",
    "datasets",
    "info",
    "initializers",
    "layers",
    "load_model",
    "load_onnx",
    "losses",
    "metrics",
    "model_from_json",
    "models",
    "num_threads",
    "onnx",
    "ops",
    "optimizers",
    "plot",
    "reference",
    "saving",
    "set_num_threads",
    "train_step",
    "training",
]


def __getattr__(name: str) -> object:
    """``fastcnn.from_torch``: :func:`fastcnn.torch.from_torch`, imported on first use so that
    ``import fastcnn`` never imports PyTorch."""
    if name == "from_torch":
        from .torch import from_torch

        return from_torch
    raise AttributeError(f"module 'fastcnn' has no attribute {name!r}")


def info() -> dict[str, object]:
    """Build and runtime facts.

    Returns:
        dict with keys ``version``, ``cpu_isa`` (the active kernels: "avx512" | "avx2" |
        "generic", capped by the FASTCNN_ISA environment variable), ``cpu_isa_best`` (what the CPU
        supports), ``num_threads``, ``cuda_built``, ``cuda_available`` and ``cuda_archs`` (the GPU
        code in the CUDA module: ``sm_NN`` machine code, ``compute_NN`` PTX; empty without it).
    """
    return {
        "version": __version__,
        "cpu_isa": _cpu.isa(),
        "cpu_isa_best": _cpu.best_isa(),
        "num_threads": _cpu.num_threads(),
        "cuda_built": cuda_built(),
        "cuda_available": cuda_available(),
        "cuda_archs": _cuda_archs(),
    }


def set_num_threads(n: int) -> None:
    """Set the number of CPU threads the kernels use (default: OpenMP's, i.e. the core count
    or OMP_NUM_THREADS). Results are bit-identical for any thread count."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"set_num_threads: n must be an int, got {n!r}")
    _cpu.set_num_threads(n)


def num_threads() -> int:
    """The number of CPU threads the kernels use."""
    return _cpu.num_threads()


# libgomp can't run a parallel region in a child forked after it has used 2+ threads (the child
# hangs). A forked child therefore runs the kernels on one thread (spawn/forkserver children
# start fresh and are unaffected).
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: _cpu.set_num_threads(1))
