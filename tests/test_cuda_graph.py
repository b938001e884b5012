"""The GPU training step as a CUDA graph (issue 14, item 2): fastcnn.training.CompiledStep and
``fit(..., cuda_graph=...)``, and the emulator's stream capture (tools/cuda_emu).

The GPU tests take the ``cp`` fixture (skipped without CuPy and fastcnn's CUDA module); they
run on a GPU and on the CPU emulator (``TESTS="tests/test_cuda_graph.py" bash
tools/cuda_emu/run.sh``). Those that count captures, replays and syncs, or test the emulator's
own capture rules, need the emulator's counters (``cupy._emu``) and are skipped on a GPU.
The argument checks at the end run everywhere.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import fastcnn as fc
from fastcnn import _deferred, layers, ops, optimizers
from fastcnn.training import CompiledStep, CudaGraphWarning, train_step


def _optimizer(name: str) -> Any:
    return (optimizers.SGD(0.05, momentum=0.9) if name == "sgd"
            else optimizers.Adam(0.01))


def _seeds_cnn(opt: str = "sgd", device: str = "cuda") -> Any:
    m = fc.models.seeds_cnn((1, 6, 6), 4, seed=0, padding="same")
    m.compile(optimizer=_optimizer(opt), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
    return m.to(device)


def _resnet_bn(opt: str = "sgd") -> Any:
    """A residual block with BatchNormalization (the ResNet pattern), small for the emulator."""
    inp = layers.Input((2, 6, 6))
    t = layers.Conv2D(4, 3, padding="same")(inp)
    t = layers.Activation("relu")(layers.BatchNormalization()(t))
    u = layers.BatchNormalization()(layers.Conv2D(4, 3, padding="same")(t))
    t = layers.Activation("relu")(layers.Add()([t, u]))
    out = layers.Dense(3, activation="softmax")(layers.GlobalAveragePooling2D()(t))
    m = fc.Model(inp, out, seed=0)
    m.compile(optimizer=_optimizer(opt), loss="sparse_categorical_crossentropy")
    return m.to("cuda")


def _padded_pool(opt: str = "sgd") -> Any:
    """Copies of strided views (ZeroPadding2D, a 'same' AveragePooling2D's explicit pad and its
    backward's crop): work CuPy launches outside fastcnn's kernels."""
    m = fc.Sequential([layers.ZeroPadding2D(((1, 0), (0, 1))), layers.Conv2D(3, 3),
                       layers.AveragePooling2D(2, strides=1, padding="same"), layers.Flatten(),
                       layers.Dense(4, activation="softmax")], input_shape=(1, 6, 6), seed=0)
    m.compile(optimizer=_optimizer(opt), loss="sparse_categorical_crossentropy")
    return m.to("cuda")


def _data(n: int, shape: tuple[int, ...], classes: int, seed: int = 1) -> tuple[Any, Any]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, *shape)).astype(np.float32), rng.integers(0, classes, n)


def _same_weights(a: Any, b: Any) -> None:
    for pa, pb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(pa, pb)


@pytest.mark.cuda
@pytest.mark.parametrize("opt", ["sgd", "adam"])
@pytest.mark.parametrize("arch", ["seeds_cnn", "resnet_bn", "padded_pool"])
def test_replay_is_bitwise_the_eager_step(cp: Any, arch: str, opt: str) -> None:
    make, shape, classes = {"seeds_cnn": (_seeds_cnn, (1, 6, 6), 4),
                            "resnet_bn": (_resnet_bn, (2, 6, 6), 3),
                            "padded_pool": (_padded_pool, (1, 6, 6), 4)}[arch]
    graph, eager = make(opt), make(opt)
    step = CompiledStep(graph)
    for i in range(5):
        x, y = _data(4, shape, classes, seed=i)
        xd, yd = cp.asarray(x), cp.asarray(y)
        with _deferred.scope():
            got = step(xd, yd)
            want = train_step(eager, xd, yd)
            assert float(got.loss) == float(want.loss), i
            np.testing.assert_array_equal(cp.asnumpy(got.outputs), cp.asnumpy(want.outputs))
        _same_weights(graph, eager)  # BatchNorm's moving statistics included
    assert (step.eager_steps, step.captures, step.replays) == (1, 1, 4)
    assert step.reason is None
    assert graph.optimizer.iterations == eager.optimizer.iterations == 5
    # the layers' gradients are the last step's, as after an eager step
    for (_, _, ga), (_, _, gb) in zip(graph.named_parameters(), eager.named_parameters(),
                                      strict=True):
        np.testing.assert_array_equal(cp.asnumpy(ga), cp.asnumpy(gb))


@pytest.mark.cuda
def test_compiled_step_outside_fit_reads_its_loss(cp: Any) -> None:
    model, ref = _seeds_cnn(), _seeds_cnn()
    step = CompiledStep(model)
    x, y = _data(4, (1, 6, 6), 4)
    for _ in range(3):
        got = step(cp.asarray(x), cp.asarray(y))
        want = train_step(ref, cp.asarray(x), cp.asarray(y))
        assert isinstance(got.loss, float) and got.loss == want.loss
    assert step.replays == 2


@pytest.mark.cuda
def test_a_changed_learning_rate_captures_again(cp: Any) -> None:
    model, ref = _seeds_cnn(), _seeds_cnn()
    step = CompiledStep(model)
    x, y = _data(4, (1, 6, 6), 4)
    for i in range(6):
        if i == 3:
            model.optimizer.learning_rate = ref.optimizer.learning_rate = 0.01
        with _deferred.scope():
            step(cp.asarray(x), cp.asarray(y))
            train_step(ref, cp.asarray(x), cp.asarray(y))
    _same_weights(model, ref)
    assert step.captures == 2  # steps 2 and 5 (step 4 re-warms at the new rate)


@pytest.mark.cuda
@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_fit_with_graphs_equals_eager_fit(cp: Any, opt: str) -> None:
    x, y = _data(13, (1, 6, 6), 4)  # 10 to train (batches of 4, 4 and 2), 3 to validate
    runs = []
    for mode in ("auto", False):
        m = _seeds_cnn(opt)
        hist = m.fit(x, y, batch_size=4, epochs=3, verbose=0, seed=3, cuda_graph=mode,
                     validation_split=0.2)
        runs.append((m, hist.history))
    assert runs[0][1] == runs[1][1]  # the History, every value bit for bit
    _same_weights(runs[0][0], runs[1][0])


@pytest.mark.cuda
def test_fit_captures_each_batch_shape_and_replays(cp: Any, emu: Any,
                                                   monkeypatch: Any) -> None:
    made: list[CompiledStep] = []
    real = CompiledStep.__init__

    def spy(self: Any, *a: Any, **k: Any) -> None:
        real(self, *a, **k)
        made.append(self)

    monkeypatch.setattr(CompiledStep, "__init__", spy)
    x, y = _data(10, (1, 6, 6), 4)
    emu.reset()
    _seeds_cnn().fit(cp.asarray(x), cp.asarray(y), batch_size=4, epochs=3, verbose=0,
                     shuffle=False)
    (step,) = made
    # epoch 1: 4 warm, 4 captured, 2 warm; epoch 2: 4, 4 replayed, 2 captured; epoch 3: replays
    assert (step.eager_steps, step.captures, step.replays) == (2, 2, 7)
    assert emu.counts()["captures"] == 2 and emu.counts()["replays"] == 7


@pytest.mark.cuda
def test_replayed_steps_make_no_sync_and_no_copy(cp: Any, emu: Any) -> None:
    model = _seeds_cnn()
    step = CompiledStep(model)
    x, y = _data(4, (1, 6, 6), 4)
    xd, yd = cp.asarray(x), cp.asarray(y)
    with _deferred.scope(final_check=False):
        step(xd, yd)  # eager: warms the pool and the momentum buffers
        step(xd, yd)  # captured, then replayed
        emu.reset()
        for _ in range(3):
            result = step(xd, yd)
        counts = emu.counts()
        assert counts["replays"] == 3 and counts["launches"] > 0, counts
        assert counts["syncs"] == 0 and counts["d2h"] == 0, counts
        assert _deferred.pending() >= 3  # each replay queued its batch's checks
        _deferred.check()
    assert np.isfinite(float(result.loss))
    assert emu.counts()["recorded"] == 0  # a replay records nothing


@pytest.mark.cuda
def test_nonfinite_loss_in_a_replay_names_its_batch(cp: Any, emu: Any,
                                                    monkeypatch: Any) -> None:
    monkeypatch.setattr("fastcnn._fit_checks.READ_INTERVAL", 1e9)
    x, y = _data(16, (1, 6, 6), 4)
    x[13] = np.nan  # batch 4, a replay
    model = _seeds_cnn()
    with pytest.raises(fc.training.NonFiniteLossError, match=r"epoch 1, batch 4 \(of 4\)"):
        model.fit(cp.asarray(x), cp.asarray(y), batch_size=4, epochs=1, verbose=0,
                  shuffle=False)
    ref = _seeds_cnn()  # the SGD kernels skipped batch 4 on the device: 3 batches applied
    ref.fit(cp.asarray(x[:12]), cp.asarray(y[:12]), batch_size=4, epochs=1, verbose=0,
            shuffle=False, cuda_graph=False)
    _same_weights(model, ref)


def _sync_in_forward(model: Any, monkeypatch: Any) -> None:
    """Make the model's last layer read the device in its forward (a capture can't)."""
    last = model.layers[-1]
    real = last.forward

    def forward(x: Any, *a: Any, **k: Any) -> Any:
        float(x.sum())  # a blocking read
        return real(x, *a, **k)

    monkeypatch.setattr(last, "forward", forward)


@pytest.mark.cuda
def test_a_failed_capture_falls_back_with_one_warning(cp: Any, monkeypatch: Any) -> None:
    x, y = _data(12, (1, 6, 6), 4)
    m = _seeds_cnn()
    _sync_in_forward(m, monkeypatch)
    with pytest.warns(CudaGraphWarning, match="capture failed") as caught:
        hist = m.fit(x, y, batch_size=4, epochs=2, verbose=0, seed=0, cuda_graph=True)
    assert len([w for w in caught if w.category is CudaGraphWarning]) == 1
    ref = _seeds_cnn()
    _sync_in_forward(ref, monkeypatch)
    want = ref.fit(x, y, batch_size=4, epochs=2, verbose=0, seed=0, cuda_graph=False)
    assert hist.history == want.history
    _same_weights(m, ref)


@pytest.mark.cuda
def test_dropout_runs_eagerly(cp: Any) -> None:
    def make() -> Any:
        m = fc.Sequential([layers.Conv2D(2, 3), layers.Flatten(), layers.Dropout(0.5),
                           layers.Dense(3, activation="softmax")], input_shape=(1, 5, 5),
                          seed=0)
        m.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
        return m.to("cuda")

    x, y = _data(8, (1, 5, 5), 3)
    a = make()
    a.fit(x, y, batch_size=4, epochs=2, verbose=0, seed=0)  # auto: eagerly, no warning
    with pytest.warns(CudaGraphWarning, match="draws its random numbers on the host"):
        b = make()
        b.fit(x, y, batch_size=4, epochs=2, verbose=0, seed=0, cuda_graph=True)
    _same_weights(a, b)  # the same masks either way


# ------------------------------------------------------------------------------------------------
# the emulator's capture rules (what CUDA / CuPy do on a GPU)


def _keeping(cp: Any, keep: list[Any]) -> Any:
    """An allocator keeping every block it hands out (as CompiledStep does during a capture)."""
    pool = cp.get_default_memory_pool()

    def allocate(size: int) -> Any:
        keep.append(pool.malloc(size))
        return keep[-1]

    return cp.cuda.using_allocator(allocate)


@pytest.mark.cuda
def test_emulated_capture_records_and_replays(cp: Any, emu: Any) -> None:
    x = cp.asarray(np.arange(-3, 5, dtype=np.float32))
    y = ops.relu(x)  # loads the compiled module
    s = cp.cuda.Stream(non_blocking=True)
    keep: list[Any] = []
    with s, _keeping(cp, keep):
        s.begin_capture()
        assert s.is_capturing()
        y2 = ops.relu(x)  # recorded, not run: its output is still garbage
        z = y2 * 2 + 1  # a CuPy-level op on it, recorded too
        g = s.end_capture()
    assert not s.is_capturing() and emu.counts()["recorded"] > 0
    assert np.isnan(cp.asnumpy(z)).all()
    g.launch(cp.cuda.get_current_stream())
    np.testing.assert_array_equal(cp.asnumpy(z), cp.asnumpy(y) * 2 + 1)
    x[...] = 7  # the graph reads x's memory at each launch
    g.launch()
    assert (cp.asnumpy(z) == 15).all() and emu.counts()["replays"] == 2


@pytest.mark.cuda
@pytest.mark.parametrize("illegal", ["read", "sync", "upload"])
def test_emulated_capture_refuses_what_cuda_refuses(cp: Any, emu: Any, illegal: str) -> None:
    x = cp.asarray(np.ones(4, np.float32))
    s = cp.cuda.Stream(non_blocking=True)
    RuntimeError_ = cp.cuda.runtime.CUDARuntimeError
    with s:
        s.begin_capture()
        with pytest.raises(RuntimeError_, match="cudaErrorStreamCaptureUnsupported"):
            if illegal == "read":
                float(x.sum())
            elif illegal == "sync":
                s.synchronize()
            else:
                cp.asarray(np.ones(4, np.float32))
        with pytest.raises(RuntimeError, match="cudaErrorStreamCaptureInvalidated"):
            ops.relu(x)  # a kernel after it on the stream fails too (fastcnn's error)
        with pytest.raises(RuntimeError_, match="cudaErrorStreamCaptureInvalidated"):
            s.end_capture()
    assert not s.is_capturing()
    with pytest.raises(RuntimeError, match="legacy"):
        cp.cuda.get_current_stream().begin_capture()


@pytest.mark.cuda
def test_emulated_graph_needs_its_memory_alive(cp: Any, emu: Any) -> None:
    x = cp.asarray(np.ones(4, np.float32))
    ops.relu(x)
    s = cp.cuda.Stream(non_blocking=True)
    with s:
        s.begin_capture()
        y = ops.relu(x)
        g = s.end_capture()
    del y  # the graph still writes it: CuPy's pool may give the block to another array
    with pytest.raises(RuntimeError, match="freed"):
        g.launch()


@pytest.mark.cuda
def test_emulated_capture_in_global_mode_refuses_allocations(cp: Any, emu: Any) -> None:
    s = cp.cuda.Stream(non_blocking=True)
    with s:
        s.begin_capture(cp.cuda.runtime.streamCaptureModeGlobal)
        with pytest.raises(cp.cuda.runtime.CUDARuntimeError, match="cudaMalloc"):
            cp.empty(4, np.float32)
        with pytest.raises(cp.cuda.runtime.CUDARuntimeError):
            s.end_capture()


# ------------------------------------------------------------------------------------------------
# the argument (everywhere)


def test_cuda_graph_argument_is_checked() -> None:
    m = _seeds_cnn(device="cpu")
    x, y = _data(8, (1, 6, 6), 4)
    with pytest.raises(ValueError, match=r"cuda_graph=True needs a model on the GPU"):
        m.fit(x, y, epochs=1, verbose=0, cuda_graph=True)
    with pytest.raises(ValueError, match=r"cuda_graph must be 'auto', True or False"):
        m.fit(x, y, epochs=1, verbose=0, cuda_graph="on")
    a, b = _seeds_cnn(device="cpu"), _seeds_cnn(device="cpu")
    ha = a.fit(x, y, batch_size=4, epochs=2, verbose=0, seed=0)  # auto: eager on the CPU
    hb = b.fit(x, y, batch_size=4, epochs=2, verbose=0, seed=0, cuda_graph=False)
    assert ha.history == hb.history
    _same_weights(a, b)
    step = CompiledStep(a)  # on the CPU: train_step itself
    assert isinstance(step(x[:4], y[:4]).loss, float) and step.eager_steps == 1
