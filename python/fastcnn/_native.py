"""The one door to fastcnn's compiled modules: nothing else imports ``_cpu`` or ``_cuda``.

* :data:`cpu` is ``fastcnn._cpu`` (always built): the C++ / AVX2 / AVX-512 kernels, the ISA
  dispatch table, the thread count and the machine probes.
* :func:`cuda` returns ``fastcnn._cuda`` (built when nvcc was found at install), imported on
  first use so that ``import fastcnn`` never loads the CUDA runtime; :func:`cuda_built` says
  whether it exists. The CUDA adapter (:mod:`fastcnn._cuda_ops`) is the one caller that uses
  it (it turns CuPy arrays into the pointers and streams the module takes); :mod:`fastcnn._device`
  only asks whether it is there.

Layering: ``ops`` (and the adapter, ``_device``, the benchmark probes, ``info()``) -> ``_native``
-> ``_cpu`` / ``_cuda``. Layers, models, optimizers and training never come here; they call
:mod:`fastcnn.ops`.
"""

from __future__ import annotations

from types import ModuleType

from . import _cpu as cpu

__all__ = ["cpu", "cuda", "cuda_archs", "cuda_built", "cuda_device_count"]


def cuda() -> ModuleType:
    """The compiled CUDA module ``fastcnn._cuda``.

    Raises:
        ImportError: this fastcnn was built without it (no nvcc at install, or
            ``FASTCNN_CUDA=OFF``).
    """
    from . import _cuda  # type: ignore[attr-defined]

    return _cuda


def cuda_built() -> bool:
    """True when the CUDA module was compiled into this install."""
    try:
        cuda()
    except ImportError:
        return False
    return True


def cuda_device_count() -> int:
    """CUDA devices the CUDA module sees: 0 when it is not built, without a driver or without a
    GPU. Never raises."""
    try:
        mod = cuda()
    except ImportError:
        return 0
    return int(mod.device_count())


def cuda_archs() -> list[str]:
    """The GPU code the CUDA module holds: ``sm_NN`` (machine code for compute capability N.N)
    and ``compute_NN`` (PTX, compiled by the driver for newer GPUs), e.g. ``["sm_75", "sm_90",
    "compute_90"]``; empty when it is not built. Never raises."""
    try:
        mod = cuda()
    except ImportError:
        return []
    return str(getattr(mod, "cuda_archs", "")).split()
