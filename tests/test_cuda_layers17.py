"""Issue 17's layers on the GPU: BatchNormalization (its moving statistics updated in place on
the device, folding at inference), AveragePooling2D (both of its "same" paths), the global
poolings, the new activations, ZeroPadding2D and Reshape, after ``model.to("cuda")``.

Every test takes the ``cp`` fixture: skipped unless CuPy imports, fastcnn was built with its CUDA
module and a GPU is usable (as tests/test_cuda_model.py). On a machine without a GPU they run on
the CPU emulator (tools/cuda_emu/run.sh). The models are tiny (the emulator runs one fiber per
CUDA thread).

GPU against CPU: the same seeds give the same initial weights and batches, so each layer's
forward / backward and a short fit on the GPU end within float32 tolerance of the CPU's (the
kernels sum in another order).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import fastcnn as fc
from fastcnn import layers as L

pytestmark = pytest.mark.cuda

RTOL, ATOL = 2e-4, 2e-5


def _model(seed: int = 0) -> fc.Sequential:
    return fc.Sequential([
        L.ZeroPadding2D(((1, 0), (0, 1))), L.Conv2D(3, 3, padding="same"),
        L.BatchNormalization(momentum=0.9), L.Activation("silu"),
        L.AveragePooling2D(2, strides=1, padding="same"),  # the explicit-pad path
        L.Conv2D(4, 3, activation="gelu"), L.AveragePooling2D(2, padding="same"),
        L.BatchNormalization(), L.Activation("tanh"), L.GlobalMaxPooling2D(keepdims=True),
        L.Reshape((-1,)), L.Dense(5, activation="leaky_relu"), L.BatchNormalization(),
        L.LeakyReLU(0.1), L.Dense(3, activation="softmax"),
    ], input_shape=(2, 6, 6), seed=seed)


def _data(n: int = 16, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 2, 6, 6)).astype(np.float32), rng.integers(0, 3, n)


def _close(a: list[np.ndarray], b: list[np.ndarray], rtol: float = RTOL,
           atol: float = ATOL) -> None:
    assert len(a) == len(b)
    for i, (u, v) in enumerate(zip(a, b, strict=True)):
        np.testing.assert_allclose(u, v, rtol=rtol, atol=atol, err_msg=f"array {i}")


LAYERS = [
    (lambda: L.BatchNormalization(), (3, 5, 5)),
    (lambda: L.BatchNormalization(center=False), (4,)),
    (lambda: L.BatchNormalization(trainable=False), (3, 4, 4)),
    (lambda: L.AveragePooling2D(3, 2, "same"), (2, 7, 6)),
    (lambda: L.AveragePooling2D(2, 1, "same"), (2, 5, 5)),
    (lambda: L.AveragePooling2D(2), (2, 6, 6)),
    (lambda: L.GlobalAveragePooling2D(), (3, 4, 5)),
    (lambda: L.GlobalMaxPooling2D(keepdims=True), (3, 4, 5)),
    (lambda: L.ZeroPadding2D(((2, 0), (1, 3))), (2, 3, 4)),
    (lambda: L.Reshape((3, -1)), (3, 2, 2)),
    (lambda: L.LeakyReLU(), (3, 4)),
    *[(lambda a=a: L.Activation(a), (3, 4, 4)) for a in ("sigmoid", "tanh", "gelu", "silu",
                                                         "leaky_relu")],
    *[(lambda a=a: L.Conv2D(2, 3, activation=a), (2, 5, 5)) for a in ("tanh", "gelu", "silu")],
    (lambda: L.Dense(3, activation="leaky_relu"), (4,)),
]


@pytest.mark.parametrize(("make", "shape"), LAYERS)
def test_layer_forward_backward_on_gpu_matches_cpu(cp: Any, make: Any,
                                                   shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, *shape)).astype(np.float32)
    results = []
    for device in ("cpu", "cuda"):
        model = fc.Sequential([make()], input_shape=shape, seed=0).to(device)
        layer = model.layers[0]
        xd = cp.asarray(x) if device == "cuda" else x
        y = layer.forward(xd, training=True)
        dy = np.random.default_rng(1).standard_normal(y.shape).astype(np.float32)
        dx = layer.backward(cp.asarray(dy) if device == "cuda" else dy)
        inf = layer.forward(xd)
        if device == "cuda":
            assert all(isinstance(a, cp.ndarray) for a in (y, dx, inf))
            assert all(isinstance(p, cp.ndarray) for p in layer.params.values())
        host = [cp.asnumpy(a) if device == "cuda" else a for a in
                (y, dx, inf, *layer.params.values(), *layer.grads.values())]
        results.append(host)
    _close(results[1], results[0])


def test_fit_predict_on_gpu_matches_cpu(cp: Any) -> None:
    x, y = _data()
    runs = []
    for device in ("cpu", "cuda"):
        model = _model().to(device)
        # SGD: a bias before a BatchNormalization has a zero gradient up to rounding, which
        # Adam would scale up to a step of lr whatever its sign
        model.compile(fc.optimizers.SGD(0.05, momentum=0.9), "sparse_categorical_crossentropy",
                      ["accuracy"])
        hist = model.fit(x, y, batch_size=8, epochs=2, verbose=0, seed=3)
        runs.append((model, hist, model.predict(x, verbose=0)))
    (cpu, hc, pc), (gpu, hg, pg) = runs
    bn = gpu.layers[2]
    assert isinstance(bn.params["moving_mean"], cp.ndarray) and set(bn.grads) == {"gamma",
                                                                                 "beta"}
    _close(gpu.get_weights(), cpu.get_weights())  # moving statistics included
    np.testing.assert_allclose(hg.history["loss"], hc.history["loss"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(pg, pc, rtol=RTOL, atol=ATOL)
    # predict folds the BatchNormalizations on the GPU too: the unfolded chain agrees
    z = cp.asarray(x)
    for layer in gpu.layers:
        z = layer.forward(z)
    np.testing.assert_allclose(cp.asnumpy(z), pg, rtol=1e-5, atol=1e-6)


def test_save_load_and_export_from_gpu(cp: Any, tmp_path: Any) -> None:
    x, y = _data()
    model = _model().to("cuda")
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    want = model.predict(x, verbose=0)
    path = tmp_path / "m.npz"
    model.save(path)
    back = fc.load_model(path)
    np.testing.assert_allclose(back.predict(x, verbose=0), want, rtol=RTOL, atol=ATOL)
    back.to("cuda")
    np.testing.assert_allclose(back.predict(x, verbose=0), want, rtol=1e-6, atol=1e-7)
    try:
        import onnx  # noqa: F401
    except ImportError:
        return
    from fastcnn.onnx import load_onnx, to_onnx

    for fold in (True, False):
        again = load_onnx(to_onnx(model, fold_batch_norm=fold))
        np.testing.assert_allclose(again.predict(x, verbose=0), want, rtol=RTOL, atol=ATOL)
