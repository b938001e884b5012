"""Where GPU arrays go: the CUDA backend (fastcnn._cuda_ops over fastcnn._cuda) when it is built
and a GPU is present."""

from __future__ import annotations

from types import ModuleType


def cuda_module(op: str) -> ModuleType:
    """Return the CUDA backend for CuPy arrays (``fastcnn._cuda_ops``: the compiled CPU module's
    function names and signatures), or raise a RuntimeError saying why GPU arrays can't be used."""
    try:
        from . import _cuda  # type: ignore[attr-defined]  # noqa: F401
    except ImportError as exc:
        raise RuntimeError(f"{op}: got cupy arrays, but this fastcnn was built without its CUDA "
                           "module (install with a CUDA toolkit present, FASTCNN_CUDA=ON)") from exc
    from . import _cuda_ops

    return _cuda_ops


def cuda_built() -> bool:
    """True when the CUDA module was compiled into this install."""
    try:
        from . import _cuda  # type: ignore[attr-defined]  # noqa: F401
    except ImportError:
        return False
    return True


def cuda_device_count() -> int:
    """Number of CUDA devices the CUDA module sees (0 when it is not built, without a driver or
    without a GPU; never raises)."""
    try:
        from . import _cuda  # type: ignore[attr-defined]
    except ImportError:
        return 0
    return int(_cuda.device_count())


def cuda_available() -> bool:
    """True when the CUDA module is built, a GPU is usable and CuPy (which fastcnn uses for GPU
    arrays) imports and sees it."""
    if cuda_device_count() < 1:
        return False
    try:
        import cupy

        return bool(cupy.cuda.is_available())
    except Exception:  # no cupy, no driver: the CPU path is used
        return False
