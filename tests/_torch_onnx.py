"""Helper of the ONNX import tests: a torch module exported the way its users export it."""

from __future__ import annotations

import io
import warnings
from typing import Any


def torch_onnx(torch: Any, net: Any, shape: tuple[int, ...], onnx: Any) -> Any:
    """``net`` (eval mode) through ``torch.onnx.export(dynamo=False)`` with a dynamic batch
    (input ``x`` of per-sample ``shape``, output ``y``), as an ONNX ModelProto."""
    buf = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation warning
        warnings.simplefilter("ignore")
        torch.onnx.export(net.eval(), torch.zeros(1, *shape), buf, dynamo=False,
                          input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    return onnx.load_from_string(buf.getvalue())
