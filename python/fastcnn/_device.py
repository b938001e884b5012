"""Where GPU arrays go: the CUDA module when it is built and a GPU is present."""

from __future__ import annotations

from types import ModuleType


def cuda_module(op: str) -> ModuleType:
    """Return ``fastcnn._cuda`` or raise a RuntimeError saying why GPU arrays can't be used."""
    try:
        from . import _cuda  # type: ignore[attr-defined]
    except ImportError as exc:
        raise RuntimeError(f"{op}: got cupy arrays, but this fastcnn was built without its CUDA "
                           "module (install with a CUDA toolkit present, FASTCNN_CUDA=ON)") from exc
    return _cuda


def cuda_built() -> bool:
    """True when the CUDA module was compiled into this install."""
    try:
        from . import _cuda  # type: ignore[attr-defined]  # noqa: F401
    except ImportError:
        return False
    return True


def cuda_available() -> bool:
    """True when the CUDA module is built, CuPy imports and a GPU can be used."""
    if not cuda_built():
        return False
    try:
        import cupy

        return bool(cupy.cuda.is_available())
    except Exception:  # no cupy, no driver: the CPU path is used
        return False
