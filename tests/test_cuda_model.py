"""Models on the GPU: ``model.to("cuda")`` and training, evaluation, prediction, saving there.

Every test takes the ``cp`` fixture: skipped unless CuPy imports, fastcnn was built with its CUDA
module and a GPU is usable (exactly as tests/test_cuda.py). On a machine without a GPU they run
on the CPU emulator (tools/cuda_emu/run.sh, with its NumPy-backed fake CuPy). The models are
tiny (the emulator runs one fiber per CUDA thread).

GPU against CPU: the same seeds give the same initial weights, shuffles and Dropout masks (drawn
on the host), so a short fit on the GPU must end within float32 tolerance of the same fit on the
CPU (the kernels sum in another order; the optimizer updates themselves are bit-identical).
Runs on the GPU itself are compared bit for bit (determinism, save/load, custom loops).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

import fastcnn as fc
from fastcnn import callbacks, data, losses, metrics, optimizers
from fastcnn import layers as L

cuda = pytest.mark.cuda
pytestmark = cuda

RTOL, ATOL = 2e-4, 2e-5  # GPU vs CPU after a few steps (float32, other summation order)


def _model(seed: int = 0, dropout: float = 0.3, out: str = "softmax",
           units: int = 4) -> fc.Sequential:
    return fc.Sequential([L.Conv2D(3, 3, activation="relu"), L.MaxPool2D(2), L.Flatten(),
                          L.Dropout(dropout), L.Dense(units, activation=out)],
                         input_shape=(1, 6, 6), seed=seed)


def _data(n: int = 20, classes: int = 4, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 1, 6, 6)).astype(np.float32), rng.integers(0, classes, n)


def _arrays(model: fc.Sequential) -> list[Any]:
    out = [a for lay in model.layers for d in (lay.params, lay.grads) for a in d.values()]
    if model.optimizer is not None:
        out += [a for st in model.optimizer.state.values() for k, a in st.items() if k != "step"]
    return out


def _close(a: list[np.ndarray], b: list[np.ndarray], rtol: float = RTOL,
           atol: float = ATOL) -> None:
    assert len(a) == len(b)
    for i, (u, v) in enumerate(zip(a, b, strict=True)):
        np.testing.assert_allclose(u, v, rtol=rtol, atol=atol, err_msg=f"weight {i}")


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    assert len(a) == len(b)
    for i, (u, v) in enumerate(zip(a, b, strict=True)):
        np.testing.assert_array_equal(u, v, err_msg=f"weight {i}")


# ------------------------------------------------------------------------------------------------
# moving


def test_to_cuda_moves_params_grads_and_state_and_back(cp: Any) -> None:
    model = _model()
    model.compile(optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    x, y = _data()
    model.fit(x, y, batch_size=10, epochs=1, verbose=0, seed=0)  # state and grads exist
    before = [np.array(a, copy=True) for a in _arrays(model)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert model.to("cuda", strict=True) is model
    assert model.device == "cuda"
    moved = _arrays(model)
    assert moved and all(isinstance(a, cp.ndarray) for a in moved)
    assert all(a.flags.c_contiguous and a.dtype == np.float32 for a in moved)
    _same([cp.asnumpy(a) for a in moved], before)
    steps = [st["step"] for st in model.optimizer.state.values()]
    assert all(type(s) is np.ndarray and s.dtype == np.int64 for s in steps)  # on the host
    assert all(isinstance(p, cp.ndarray) and isinstance(g, cp.ndarray)
               for p, g in model.parameters())
    assert model.to("cuda") is model and model.device == "cuda"  # again: nothing to do
    model.to("cpu")
    assert model.device == "cpu"
    back = _arrays(model)
    assert all(type(a) is np.ndarray for a in back)
    _same(back, before)


def test_auto_picks_the_gpu(cp: Any) -> None:
    model = _model()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.to("auto")
    assert model.device == "cuda"
    assert all(isinstance(p, cp.ndarray) for p in _arrays(model))


def test_layers_built_or_added_later_follow_the_device(cp: Any) -> None:
    model = fc.Sequential([L.Flatten(), L.Dense(3)], seed=0).to("cuda")
    assert not model.built
    model.build((1, 4, 4))
    assert all(isinstance(p, cp.ndarray) for p in _arrays(model))
    model.add(L.Dense(2, activation="softmax"))
    assert isinstance(model.layers[-1].params["kernel"], cp.ndarray)
    lazy = fc.Sequential([L.Flatten(), L.Dense(3)], seed=0).to("cuda")
    out = lazy(np.ones((2, 1, 4, 4), np.float32))  # built from the first call
    assert isinstance(out, cp.ndarray) and out.shape == (2, 3)


# ------------------------------------------------------------------------------------------------
# training: GPU against CPU


@pytest.mark.parametrize("opt", [
    lambda: optimizers.SGD(0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
    lambda: optimizers.SGD(0.1),
    lambda: optimizers.Adam(1e-2, weight_decay=1e-3),
    lambda: optimizers.AdamW(1e-2),
    lambda: optimizers.RMSprop(1e-3, momentum=0.5, centered=True),
], ids=["sgd-nesterov", "sgd", "adam", "adamw", "rmsprop"])
def test_fit_on_gpu_matches_cpu(cp: Any, opt: Any) -> None:
    x, y = _data()
    runs = []
    for device in ("cpu", "cuda"):
        model = _model().to(device)
        model.compile(opt(), "sparse_categorical_crossentropy", ["accuracy"])
        hist = model.fit(x, y, batch_size=8, epochs=2, verbose=0, seed=3,
                         validation_data=(x[:6], y[:6]))
        runs.append((model, hist))
    (cpu, hc), (gpu, hg) = runs
    assert all(isinstance(p, cp.ndarray) for p in _arrays(gpu))
    _close(gpu.get_weights(), cpu.get_weights())
    for k in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert all(isinstance(v, float) for v in hg.history[k])
        np.testing.assert_allclose(hg.history[k], hc.history[k], rtol=1e-4, atol=1e-5,
                                   err_msg=k)
    st_c, st_g = cpu.optimizer.get_state(), gpu.optimizer.get_state()
    assert st_c.keys() == st_g.keys()
    assert all(type(v) is np.ndarray for v in st_g.values())
    _close([st_g[k] for k in st_c], [st_c[k] for k in st_c], rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize(("out", "loss", "labels"), [
    ("sigmoid", "binary_crossentropy", "binary"),
    (None, "mse", "targets"),
    ("softmax", "categorical_crossentropy", "onehot"),
])
def test_other_losses_on_gpu_match_cpu(cp: Any, out: str | None, loss: str,
                                       labels: str) -> None:
    x, ids = _data(16)
    if labels == "binary":
        y: Any = (ids % 2).astype(np.float32)
        units = 1
    elif labels == "targets":
        y = np.random.default_rng(5).normal(size=(16, 4)).astype(np.float32)
        units = 4
    else:
        y = np.eye(4, dtype=np.float32)[ids]
        units = 4
    res = []
    for device in ("cpu", "cuda"):
        model = _model(out=out, units=units, dropout=0.0).to(device)
        model.compile(optimizers.SGD(0.05), loss,
                      ["accuracy"] if labels != "targets" else None)
        hist = model.fit(x, y, batch_size=8, epochs=2, verbose=0, seed=0)
        res.append((model.get_weights(), hist.history))
    _close(res[1][0], res[0][0])
    for k in res[0][1]:
        np.testing.assert_allclose(res[1][1][k], res[0][1][k], rtol=1e-4, atol=1e-6)


def test_unfused_probability_losses_and_metrics_on_gpu(cp: Any) -> None:
    rng = np.random.default_rng(2)
    p = rng.uniform(0.05, 1.0, size=(7, 5)).astype(np.float32)
    ids = rng.integers(0, 5, 7)
    onehot = np.eye(5, dtype=np.float32)[ids]
    for loss, t in ((losses.SparseCategoricalCrossentropy(), ids),
                    (losses.CategoricalCrossentropy(), onehot),
                    (losses.MeanSquaredError(), onehot)):
        vc, gc = loss.value_and_grad(p, t)
        vg, gg = loss.value_and_grad(cp.asarray(p), cp.asarray(t))
        assert isinstance(vg, float) and isinstance(gg, cp.ndarray)
        np.testing.assert_allclose(vg, vc, rtol=1e-6)
        np.testing.assert_allclose(cp.asnumpy(gg), gc, rtol=1e-5, atol=1e-7)
        vh, _ = loss.value_and_grad(cp.asarray(p), t)  # host labels are uploaded
        assert vh == vg
    pb = rng.uniform(0.01, 0.99, size=(7, 1)).astype(np.float32)
    tb = rng.integers(0, 2, 7).astype(np.float32)
    bce = losses.BinaryCrossentropy()
    np.testing.assert_allclose(bce.value_and_grad(cp.asarray(pb), cp.asarray(tb))[0],
                               bce.value_and_grad(pb, tb)[0], rtol=1e-6)
    with pytest.raises(ValueError, match="class ids must be in"):
        losses.SparseCategoricalCrossentropy().value_and_grad(cp.asarray(p),
                                                              cp.asarray(ids + 5))
    for m in (metrics.get("accuracy"), metrics.get("top_2"),
              metrics.get("categorical_accuracy")):
        labels = onehot if m.name == "categorical_accuracy" else ids
        m.reset()
        m.update(labels, p)
        want = m.result()
        m.reset()
        m.update(cp.asarray(labels), cp.asarray(p))
        assert m.result() == want


def test_maxpool_same_with_explicit_padding_on_gpu(cp: Any) -> None:
    # an even window with stride 1 pads with -inf explicitly (xp.pad) and crops dx
    x, y = _data(8, seed=4)
    res = []
    for device in ("cpu", "cuda"):
        model = fc.Sequential([L.MaxPool2D(2, strides=1, padding="same"), L.Flatten(),
                               L.Dense(4, activation="softmax")],
                              input_shape=(1, 6, 6), seed=0).to(device)
        model.compile(optimizers.SGD(0.1), "sparse_categorical_crossentropy")
        model.fit(x, y, batch_size=4, epochs=1, verbose=0, seed=0)
        res.append(model.get_weights())
    _close(res[1], res[0])


def test_gpu_training_is_deterministic_and_a_custom_loop_equals_fit(cp: Any) -> None:
    x, y = _data(16)
    a = _model(seed=7).to("cuda")
    a.compile(optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    a.fit(x, y, batch_size=8, epochs=2, verbose=0, seed=1, shuffle=False)
    b = _model(seed=7).to("cuda")
    b.compile(optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    for _ in range(2):
        for i in range(0, 16, 8):
            xb, yb = cp.asarray(x[i:i + 8]), cp.asarray(y[i:i + 8])
            fused = b.output_fused
            out = b(xb, training=True, logits=fused)
            assert isinstance(out, cp.ndarray)
            _, dout = b.loss.value_and_grad(out, yb, logits=fused)
            assert b.backward(dout, compute_dx=False) is None
            b.optimizer.step(b)
    _same(b.get_weights(), a.get_weights())


# ------------------------------------------------------------------------------------------------
# evaluate / predict / inputs


def test_evaluate_and_predict_on_gpu(cp: Any) -> None:
    x, y = _data(23)
    cpu = _model()
    cpu.compile("adam", "sparse_categorical_crossentropy", ["accuracy", "top_2"])
    gpu = _model().to("cuda")
    gpu.compile("adam", "sparse_categorical_crossentropy", ["accuracy", "top_2"])
    pc, pg = cpu.predict(x, batch_size=5), gpu.predict(x, batch_size=5)
    assert type(pg) is np.ndarray and pg.dtype == np.float32 and pg.shape == (23, 4)
    np.testing.assert_allclose(pg, pc, rtol=1e-5, atol=1e-6)
    ec = cpu.evaluate(x, y, batch_size=5, return_dict=True)
    eg = gpu.evaluate(x, y, batch_size=5, return_dict=True)
    assert all(type(v) is float for v in eg.values())
    assert eg.keys() == ec.keys()
    for k in ec:
        np.testing.assert_allclose(eg[k], ec[k], rtol=1e-5, atol=1e-7, err_msg=k)
    lst = gpu.evaluate(x, y, batch_size=5)
    assert isinstance(lst, list) and all(type(v) is float for v in lst)
    # datasets, cupy inputs, uint8 inputs
    ds = data.ArrayDataset(x, y, batch_size=4, shuffle=False)
    np.testing.assert_allclose(gpu.evaluate(ds, return_dict=True)["loss"], ec["loss"],
                               rtol=1e-5)
    np.testing.assert_array_equal(gpu.predict(cp.asarray(x), batch_size=5), pg)
    empty = gpu.predict(x[:0])
    assert type(empty) is np.ndarray and empty.shape == (0, 4)
    u8 = (np.abs(x) * 40).astype(np.uint8)
    np.testing.assert_allclose(gpu.predict(u8, batch_size=7), cpu.predict(u8, batch_size=7),
                               rtol=1e-5, atol=1e-6)


def test_predict_outputs_are_not_upload_buffers(cp: Any) -> None:
    # a model whose output is a view of its input: upload buffers are reused two batches later
    x = np.arange(7 * 2 * 3, dtype=np.float32).reshape(7, 2, 3)
    model = fc.Sequential([L.Flatten()], input_shape=(2, 3)).to("cuda")
    np.testing.assert_array_equal(model.predict(x, batch_size=2), x.reshape(7, 6))


def test_fit_with_cupy_arrays_and_datasets(cp: Any) -> None:
    x, y = _data(16)
    ref = _model().to("cuda")
    ref.compile(optimizers.SGD(0.1, momentum=0.9), "sparse_categorical_crossentropy")
    ref.fit(x, y, batch_size=8, epochs=2, verbose=0, seed=0)
    dev = _model().to("cuda")
    dev.compile(optimizers.SGD(0.1, momentum=0.9), "sparse_categorical_crossentropy")
    dev.fit(cp.asarray(x), cp.asarray(y), batch_size=8, epochs=2, verbose=0, seed=0)
    _same(dev.get_weights(), ref.get_weights())
    ds_model = _model().to("cuda")
    ds_model.compile(optimizers.SGD(0.1, momentum=0.9), "sparse_categorical_crossentropy")
    hist = ds_model.fit(data.ArrayDataset(x, y, batch_size=8, shuffle=True, seed=0), epochs=2,
                        verbose=0, validation_data=data.ArrayDataset(x, y, batch_size=8))
    assert len(hist.history["val_loss"]) == 2
    assert all(np.isfinite(hist.history["loss"]))


def test_mixing_devices(cp: Any) -> None:
    x, _ = _data(4)
    gpu = _model().to("cuda")
    out = gpu(x)  # host input to a GPU model: uploaded
    assert isinstance(out, cp.ndarray)
    np.testing.assert_array_equal(cp.asnumpy(gpu(cp.asarray(x))), cp.asnumpy(out))
    cpu = _model()
    with pytest.raises(TypeError, match="model is on the CPU"):
        cpu(cp.asarray(x))
    with pytest.raises(TypeError, match="model is on the CPU"):
        cpu.predict(cp.asarray(x))
    # weights in and out
    w = cpu.get_weights()
    gpu.set_weights([cp.asarray(a) * 0 for a in w])
    assert all(not np.any(a) for a in gpu.get_weights())
    gpu.set_weights(w)
    _same(gpu.get_weights(), w)
    assert all(isinstance(p, cp.ndarray) for p in _arrays(gpu))
    gpu.layers[0].set_weights(cpu.layers[0].get_weights())
    assert isinstance(gpu.layers[0].params["kernel"], cp.ndarray)


# ------------------------------------------------------------------------------------------------
# saving, optimizer state, callbacks


def test_save_load_round_trip_from_gpu(cp: Any, tmp_path: Any) -> None:
    x, y = _data(16)
    gpu = _model().to("cuda")
    gpu.compile(optimizers.Adam(1e-2), "sparse_categorical_crossentropy", ["accuracy"])
    gpu.fit(x, y, batch_size=8, epochs=1, verbose=0, seed=0)
    path = tmp_path / "m.npz"
    gpu.save(path)
    gpu.save_weights(tmp_path / "w.npz")
    with np.load(path) as f:
        assert all(f[k].dtype != object for k in f.files)
    loaded = fc.load_model(path)
    assert loaded.device == "cpu"
    assert all(type(a) is np.ndarray for a in _arrays(loaded))
    _same(loaded.get_weights(), gpu.get_weights())
    st_g, st_l = gpu.optimizer.get_state(), loaded.optimizer.get_state()
    assert st_g.keys() == st_l.keys()
    _same([st_l[k] for k in st_g], [st_g[k] for k in st_g])
    # both continue on the GPU identically (weights, optimizer state, Dropout generator)
    loaded.to("cuda")
    assert all(isinstance(a, cp.ndarray) for a in _arrays(loaded))
    gpu.fit(x, y, batch_size=8, epochs=1, verbose=0, seed=5)
    loaded.fit(x, y, batch_size=8, epochs=1, verbose=0, seed=5)
    _same(loaded.get_weights(), gpu.get_weights())
    # weights only, into a model on the GPU
    other = _model(seed=9).to("cuda")
    other.load_weights(tmp_path / "w.npz")
    assert isinstance(other.layers[0].params["kernel"], cp.ndarray)
    np.testing.assert_array_equal(cp.asnumpy(other.layers[0].params["kernel"]),
                                  fc.load_model(path).layers[0].params["kernel"])


def test_optimizer_state_follows_the_model(cp: Any) -> None:
    x, y = _data(16)
    model = _model()
    opt = optimizers.RMSprop(1e-3, momentum=0.9, centered=True)
    model.compile(opt, "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, seed=0)
    slots = {k for st in opt.state.values() for k in st}
    assert slots == {"step", "v", "mg", "momentum"}
    model.to("cuda")
    assert all(isinstance(a, cp.ndarray) for st in opt.state.values()
               for k, a in st.items() if k != "step")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, seed=0)
    assert all(isinstance(a, cp.ndarray) for st in opt.state.values()
               for k, a in st.items() if k != "step")
    # state set from host arrays while the model is on the GPU moves at the next step
    opt.set_state(opt.get_state())
    assert all(type(a) is np.ndarray for st in opt.state.values() for a in st.values())
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, seed=0)
    assert all(isinstance(a, cp.ndarray) for st in opt.state.values()
               for k, a in st.items() if k != "step")
    # compiling with an optimizer holding host state moves it to the model's device
    opt2 = optimizers.RMSprop(1e-3, momentum=0.9, centered=True)
    opt2.set_state(opt.get_state())
    model.compile(opt2, "sparse_categorical_crossentropy")
    assert all(isinstance(a, cp.ndarray) for st in opt2.state.values()
               for k, a in st.items() if k != "step")
    model.to("cpu")
    assert all(type(a) is np.ndarray for st in opt2.state.values() for a in st.values())


def test_early_stopping_restores_best_weights_on_gpu(cp: Any) -> None:
    x, y = _data(16)
    model = _model().to("cuda")
    model.compile(optimizers.SGD(0.5), "sparse_categorical_crossentropy")
    es = callbacks.EarlyStopping(monitor="loss", patience=1, restore_best_weights=True)
    model.fit(x, y, batch_size=8, epochs=4, verbose=0, seed=0, callbacks=[es])
    assert es.best_weights is not None and all(type(w) is np.ndarray for w in es.best_weights)
    assert all(isinstance(p, cp.ndarray) for p in _arrays(model))
    _same(model.get_weights(), es.best_weights)
