"""ONNX export with external data (issue 18): ``export(..., external_data=True)`` writes the
weights to ``<file>.data`` beside the ``.onnx``, which onnxruntime and load_onnx read back
(outputs equal); the size rule picks external data above protobuf's limit (the limit lowered
for the test: no 2 GB allocation), and ``external_data=False`` above it is refused.

Skipped without onnx / onnxruntime.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

import fastcnn as fc
from fastcnn import layers as L

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from fastcnn.onnx import _external, load_onnx  # noqa: E402


def _model() -> fc.Sequential:
    return fc.Sequential([L.Conv2D(16, 3, padding="same", activation="relu"), L.MaxPool2D(2),
                          L.Flatten(), L.Dense(10)], input_shape=(3, 8, 8), seed=0)


def _ort(path: Any, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x})[0]


def _external_tensors(path: Any) -> list[str]:
    proto = onnx.load(os.fspath(path), load_external_data=False)
    return [t.name for t in proto.graph.initializer
            if t.data_location == onnx.TensorProto.EXTERNAL]


def test_external_data_true_writes_a_data_file_onnxruntime_reads(tmp_path: Any) -> None:
    model = _model()
    path = tmp_path / "m.onnx"
    model.export(path, external_data=True)
    data = tmp_path / "m.onnx.data"
    assert data.is_file()
    # every weight of 1 KiB or more went out (the 16-float conv bias stays inline)
    assert set(_external_tensors(path)) == {"conv2d/kernel", "dense/kernel"}
    big = sum(w.nbytes for w in model.get_weights() if w.nbytes >= 1024)
    assert big <= data.stat().st_size < big + 2 * _external.ALIGNMENT
    assert path.stat().st_size < 2048  # the graph only
    onnx.checker.check_model(os.fspath(path), full_check=True)
    x = np.random.default_rng(0).standard_normal((4, 3, 8, 8)).astype(np.float32)
    want = model.predict(x, verbose=0)
    np.testing.assert_allclose(_ort(path, x), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(load_onnx(path).predict(x, verbose=0), want, rtol=1e-5,
                               atol=1e-6)
    # the default below the limit: one self-contained file
    plain = tmp_path / "p.onnx"
    model.export(plain)
    assert _external_tensors(plain) == [] and not (tmp_path / "p.onnx.data").exists()
    np.testing.assert_allclose(_ort(plain, x), want, rtol=1e-5, atol=1e-6)


def test_the_size_rule_picks_external_data_above_the_limit(tmp_path: Any,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    model = _model()
    from fastcnn.onnx.export import to_onnx

    proto = to_onnx(model)
    size = _external.initializer_bytes(proto)
    assert size == sum(w.nbytes for w in model.get_weights())
    assert not _external.needs_external_data(proto)
    # a limit just under this model's weights (headroom 0): over it
    monkeypatch.setattr(_external, "HEADROOM", 0)
    monkeypatch.setattr(_external, "PROTOBUF_LIMIT", size - 1)
    assert _external.needs_external_data(proto)
    monkeypatch.setattr(_external, "PROTOBUF_LIMIT", size)
    assert not _external.needs_external_data(proto)
    monkeypatch.setattr(_external, "PROTOBUF_LIMIT", size - 1)
    path = tmp_path / "auto.onnx"
    model.export(path)  # external_data=None: automatic
    assert (tmp_path / "auto.onnx.data").is_file() and _external_tensors(path)
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(_ort(path, x), model.predict(x, verbose=0), rtol=1e-5,
                               atol=1e-6)
    with pytest.raises(ValueError, match=r"over protobuf's 2 GB limit .*external_data=True.*"
                                         r"'never\.onnx\.data'"):
        model.export(tmp_path / "never.onnx", external_data=False)
    assert not (tmp_path / "never.onnx").exists()


def test_external_data_is_checked_and_rewritten_whole(tmp_path: Any) -> None:
    model = _model()
    with pytest.raises(TypeError, match="external_data must be True, False or None"):
        model.export(tmp_path / "m.onnx", external_data="yes")  # type: ignore[arg-type]
    path = tmp_path / "m.onnx"
    model.export(path, external_data=True)
    first = (tmp_path / "m.onnx.data").read_bytes()
    for w in model.layers[0].params.values():
        w[...] = 0.5
    model.export(path, external_data=True)  # replaces both files
    second = (tmp_path / "m.onnx.data").read_bytes()
    assert first != second and len(first) == len(second)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.onnx.data"]
    x = np.ones((1, 3, 8, 8), np.float32)
    np.testing.assert_allclose(_ort(path, x), model.predict(x, verbose=0), rtol=1e-5,
                               atol=1e-6)
