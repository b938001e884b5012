"""ONNX interop: :meth:`fastcnn.Sequential.export` (``format="onnx"``) writes a model as an ONNX
graph (:mod:`fastcnn.onnx.export`), :func:`load_onnx` reads one back into a Sequential
(:mod:`fastcnn.onnx.load`).

The ``onnx`` package is imported only when one of these runs (``import fastcnn`` never imports
it); without it they raise ImportError naming ``pip install "fastcnn[onnx]"``. Running an
exported model needs an ONNX runtime (e.g. ``onnxruntime``), which fastcnn does not use.
"""

from __future__ import annotations

from ._common import DEFAULT_OPSET
from .export import SUPPORTED_FORMATS, Exportable, export, to_onnx
from .load import SUPPORTED_OPS, load_onnx

__all__ = ["DEFAULT_OPSET", "SUPPORTED_FORMATS", "SUPPORTED_OPS", "Exportable", "export",
           "load_onnx", "to_onnx"]
