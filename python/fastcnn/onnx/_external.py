"""ONNX external data for :func:`fastcnn.onnx.export`: the weights in a file beside the
``.onnx`` (ONNX's external-data format), needed above protobuf's 2 GB message limit.

:func:`needs_external_data` is the size rule: the initializers' bytes against
:data:`PROTOBUF_LIMIT` less :data:`HEADROOM` (the graph, names and attributes need room too).
:func:`write_with_external_data` moves every initializer of at least
:data:`SIZE_THRESHOLD` bytes into ``<file>.data`` (``all_tensors_to_one_file``: offsets aligned to
:data:`ALIGNMENT` bytes, so a runtime may map them; each tensor's ``external_data`` holds
``location`` / ``offset`` / ``length`` as ``onnx.external_data_helper.set_external_data`` writes
them), then writes the data file and the model file, each atomically (a complete new file
replaces the old one, ``fastcnn.saving.atomic_write``): the data first, then the model that
refers to it, so the model file never names data that is not complete on disk.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, BinaryIO

from ..saving import atomic_write

__all__ = ["ALIGNMENT", "HEADROOM", "PROTOBUF_LIMIT", "SIZE_THRESHOLD", "data_file_name",
           "initializer_bytes", "needs_external_data", "write_with_external_data"]

#: protobuf's limit on one serialized message (2 GiB - 1 bytes).
PROTOBUF_LIMIT = 2**31 - 1
#: room kept under the limit for everything but the weights (nodes, names, attributes).
HEADROOM = 64 * 2**20
#: initializers smaller than this stay inside the ``.onnx`` (onnx's default threshold).
SIZE_THRESHOLD = 1024
#: offset alignment of each tensor in the data file.
ALIGNMENT = 4096


def _initializers(proto: Any) -> Iterator[Any]:
    yield from proto.graph.initializer


def initializer_bytes(proto: Any) -> int:
    """The bytes of the model's weights held inside the proto (``raw_data`` and the typed
    fields' payload)."""
    total = 0
    for t in _initializers(proto):
        if t.HasField("raw_data"):
            total += len(t.raw_data)
        else:
            total += 4 * (len(t.float_data) + len(t.int32_data)) + 8 * (
                len(t.int64_data) + len(t.double_data) + len(t.uint64_data))
    return total


def needs_external_data(proto: Any) -> bool:
    """Whether the model is too large for one protobuf message: its weights' bytes above
    :data:`PROTOBUF_LIMIT` - :data:`HEADROOM` (read at call time, so tests may lower them)."""
    return initializer_bytes(proto) > PROTOBUF_LIMIT - HEADROOM


def data_file_name(filepath: str | os.PathLike[str]) -> str:
    """The data file's name for the model file ``filepath``: ``<basename>.data`` (e.g.
    ``model.onnx.data``), in the same directory (the ``location`` written in the model)."""
    return os.path.basename(os.fspath(filepath)) + ".data"


def write_with_external_data(onnx: Any, proto: Any, filepath: str | os.PathLike[str]) -> str:
    """Write ``proto`` to ``filepath`` with its initializers of :data:`SIZE_THRESHOLD` bytes or
    more moved into the data file beside it (module docstring). ``proto`` is changed in place
    (its big initializers become external references): pass one built for writing.

    Returns:
        the data file's path.

    Raises:
        ValueError: ``filepath`` names a directory.
    """
    path = os.fspath(filepath)
    if os.path.basename(path) == "" or os.path.isdir(path):
        raise ValueError(f"export: filepath {path!r} names a directory; give a file name "
                         f"(e.g. model.onnx)")
    location = data_file_name(path)
    data_path = os.path.join(os.path.dirname(os.path.abspath(path)), location)
    moved: list[tuple[int, bytes]] = []  # (offset, bytes) in the data file
    offset = 0
    for t in _initializers(proto):
        raw = t.raw_data if t.HasField("raw_data") else onnx.numpy_helper.to_array(t).tobytes()
        if len(raw) < SIZE_THRESHOLD:
            continue
        offset = -(-offset // ALIGNMENT) * ALIGNMENT
        moved.append((offset, raw))
        for field in ("float_data", "int32_data", "int64_data", "double_data", "uint64_data"):
            t.ClearField(field)
        t.raw_data = raw  # set_external_data wants it (typed fields: their bytes)
        onnx.external_data_helper.set_external_data(t, location, offset, len(raw))
        t.data_location = onnx.TensorProto.EXTERNAL
        t.ClearField("raw_data")
        offset += len(raw)

    def write_data(f: BinaryIO) -> None:
        pos = 0
        for start, raw in moved:
            f.write(b"\0" * (start - pos))
            f.write(raw)
            pos = start + len(raw)

    atomic_write(data_path, write_data)
    model_bytes = proto.SerializeToString()
    atomic_write(path, lambda f: f.write(model_bytes))
    return data_path
