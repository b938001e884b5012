"""What the ONNX exporter and importer share: the lazy import of the ``onnx`` package (fastcnn
itself never imports it; only these functions do, when called) and the opset range."""

from __future__ import annotations

from types import ModuleType

__all__ = ["DEFAULT_OPSET", "MIN_OPSET", "require_onnx"]

#: The opset :meth:`fastcnn.Sequential.export` writes unless told otherwise.
DEFAULT_OPSET = 17
#: The oldest opset the exporter writes (Softmax over one axis needs >= 13; 17 is the floor).
MIN_OPSET = 17


def require_onnx(what: str) -> ModuleType:
    """The ``onnx`` module, or ImportError naming the extra that installs it."""
    try:
        import onnx
    except ImportError as e:
        raise ImportError(f"{what} needs the onnx package: pip install \"fastcnn[onnx]\" "
                          f"(or pip install onnx)") from e
    return onnx
