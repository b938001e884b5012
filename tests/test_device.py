"""Device selection without a GPU: ``model.to("cuda")`` falls back to the CPU with one
RuntimeWarning naming why, ``strict=True`` raises instead, ``"auto"`` picks the CPU silently.

The GPU is made unusable by patching ``fastcnn._device`` (no CUDA module, no device, no CuPy), so
these tests mean the same on a machine with a GPU. The GPU side is tests/test_cuda_model.py.
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest

import fastcnn as fc
from fastcnn import _arrays, _device
from fastcnn import layers as L


def _model() -> fc.Sequential:
    model = fc.Sequential([L.Conv2D(3, 3, activation="relu"), L.MaxPool2D(2), L.Flatten(),
                           L.Dropout(0.25), L.Dense(4, activation="softmax")],
                          input_shape=(1, 8, 8), seed=0)
    model.compile(fc.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", ["accuracy"])
    return model


def _data(n: int = 16) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 1, 8, 8)).astype(np.float32), rng.integers(0, 4, n)


def _all_numpy(model: fc.Sequential) -> bool:
    arrays = [a for lay in model.layers for d in (lay.params, lay.grads) for a in d.values()]
    if model.optimizer is not None:
        arrays += [a for st in model.optimizer.state.values() for a in st.values()]
    return all(type(a) is np.ndarray for a in arrays)


@pytest.fixture
def no_cuda_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_device, "cuda_built", lambda: False)


@pytest.mark.usefixtures("no_cuda_module")
def test_to_cuda_without_cuda_warns_once_and_stays_on_cpu() -> None:
    model = _model()
    x, y = _data()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, seed=0)  # optimizer state exists
    with pytest.warns(RuntimeWarning) as rec:
        assert model.to("cuda") is model
    assert len(rec) == 1
    msg = str(rec[0].message)
    assert "model.to('cuda')" in msg and "built without its CUDA module" in msg
    assert "stays on the CPU" in msg
    assert rec[0].filename == __file__  # points at the caller
    assert model.device == "cpu" and _all_numpy(model)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, seed=0)  # still trains
    assert isinstance(model.predict(x), np.ndarray)


@pytest.mark.usefixtures("no_cuda_module")
def test_to_cuda_strict_raises_naming_why() -> None:
    model = _model()
    with pytest.raises(RuntimeError, match=r"strict=True.*built without its CUDA module"):
        model.to("cuda", strict=True)
    assert model.device == "cpu" and _all_numpy(model)


@pytest.mark.usefixtures("no_cuda_module")
def test_to_auto_picks_cpu_silently() -> None:
    model = _model()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert model.to("auto") is model
        assert model.to("auto", strict=True) is model  # auto never raises
    assert model.device == "cpu" and _all_numpy(model)
    assert fc.info()["cuda_available"] is False


def test_to_cpu_is_silent_and_unknown_devices_raise() -> None:
    model = _model()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert model.to("cpu") is model
    assert model.device == "cpu"
    for bad in ("tpu", "gpu", "CUDA", None):
        with pytest.raises(ValueError, match="device must be"):
            model.to(bad)  # type: ignore[arg-type]


def test_unavailable_reasons(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_device, "cuda_built", lambda: False)
    assert "built without its CUDA module" in _device.cuda_unavailable_reason()
    assert _device.cuda_available() is False
    monkeypatch.setattr(_device, "cuda_built", lambda: True)
    monkeypatch.setattr(_device, "cuda_device_count", lambda: 0)
    assert "no CUDA device" in _device.cuda_unavailable_reason()
    monkeypatch.setattr(_device, "cuda_device_count", lambda: 1)
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy -> ImportError
    assert "CuPy" in _device.cuda_unavailable_reason()
    assert _device.cuda_available() is False


def test_each_reason_reaches_the_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_device, "cuda_built", lambda: True)
    monkeypatch.setattr(_device, "cuda_device_count", lambda: 0)
    model = _model()
    with pytest.warns(RuntimeWarning, match="no CUDA device is usable") as rec:
        model.to("cuda")
    assert len(rec) == 1
    with pytest.raises(RuntimeError, match="no CUDA device is usable"):
        model.to("cuda", strict=True)


def test_array_helpers_on_the_cpu() -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert _arrays.array_module(a) is np and not _arrays.is_cupy(a)
    assert _arrays.to_host(a) is a
    assert _arrays.move(a, "cpu") is a
    c = _arrays.host_copy(a)
    assert c is not a and np.array_equal(c, a)
    dst = np.zeros((2, 3), np.float32)
    _arrays.assign(dst, [[1, 2, 3], [4, 5, 6]])
    assert dst.dtype == np.float32 and dst[1, 2] == 6


def test_cpu_model_refuses_device_arrays() -> None:
    class cupy_like(np.ndarray):  # a stand-in whose type module says "cupy"
        pass

    cupy_like.__module__ = "cupy"
    model = _model()
    x = _data()[0].view(cupy_like)
    with pytest.raises(TypeError, match="model is on the CPU"):
        model(x)
    with pytest.raises(TypeError, match="model is on the CPU"):
        model.predict(x)
