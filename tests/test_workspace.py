"""The layers' reused output buffers (python/fastcnn/_workspace.py) and the ops' ``out=`` /
``dx_out=`` destinations they use.

* steady-state training and predict of a model with tensors over glibc's 32 MiB mmap ceiling
  fault (almost) no pages per step with the workspace, thousands without;
* the results are bit-identical with and without it (train_on_batch, fit, evaluate, predict, a
  graph model with fan-out and a residual Add, an activation layer, pooling);
* an array the caller holds (a model's output, a layer's output, a view of it) is never
  overwritten, and buffers are only shared when free;
* the ops' ``out=`` / ``dx_out=`` checks (shape, dtype, layout, overlap, compute_dx=False), on
  ops and their reference twins.
"""

from __future__ import annotations

import contextlib
import resource
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import fastcnn as fc
from _bitwise import same_bits
from fastcnn import _workspace, ops, reference
from fastcnn import layers as L


def workspace(model: Any, enabled: bool, poison: bool = True, min_bytes: int = 0) -> Any:
    """``model`` with its workspace on or off; ``poison``: every buffer it hands out is NaN
    first, so an op that left part of its ``out=`` unwritten shows; ``min_bytes``: 0 pools
    every array (small test shapes then take the pooled paths)."""
    pool = model.workspace
    pool.enabled, pool.poison, pool.min_bytes = enabled, poison, min_bytes
    return model


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


@contextlib.contextmanager
def small_pages() -> Iterator[None]:
    """NumPy without its MADV_HUGEPAGE advice on large arrays, so that a fault is one 4 KiB
    page (with transparent huge pages one fault zeroes 2 MiB and the counts say little)."""
    try:
        madvise = np._core.multiarray._set_madvise_hugepage
    except AttributeError:  # NumPy 1.x
        madvise = np.core.multiarray._set_madvise_hugepage
    old = madvise(False)
    try:
        yield
    finally:
        madvise(old)


# --------------------------------------------------------------------------------------------
# the pool itself


def test_a_held_buffer_is_never_handed_out_again() -> None:
    pool = _workspace.Workspace()
    like = np.zeros(1, np.float32)
    a = pool.empty((256, 1024), like)
    assert a is not None and a.shape == (256, 1024) and a.dtype == np.float32
    assert a.flags.c_contiguous and a.flags.writeable
    b = pool.empty((256, 1024), like)
    assert not np.shares_memory(a, b)  # a is held
    view = a[3:5]
    del a
    c = pool.empty((1024, 256), like)  # the same byte size, another shape
    assert not np.shares_memory(c, view) and not np.shares_memory(c, b)  # a view holds a
    del view, c
    d = pool.empty((256, 1024), like)
    e = pool.empty((256, 1024), like)
    assert not np.shares_memory(d, e)
    assert pool.nbytes() == 3 * 256 * 1024 * 4  # a's buffer came back, nothing more was made


def test_a_freed_buffer_is_reused() -> None:
    pool = _workspace.Workspace()
    like = np.zeros(1, np.float32)
    a = pool.empty((512, 512), like)
    ptr = a.ctypes.data
    del a
    b = pool.empty((512, 512), like)
    assert b.ctypes.data == ptr and pool.nbytes() == 512 * 512 * 4


def test_when_the_pool_gives_nothing() -> None:
    pool = _workspace.Workspace()
    assert pool.empty((8, 8), np.zeros(1, np.float32)) is None  # small: malloc's heap
    assert pool.empty((512, 512), [1.0]) is None  # not a NumPy array (a CuPy one: its pool)
    pool.enabled = False
    assert pool.empty((512, 512), np.zeros(1, np.float32)) is None


def test_idle_buffers_are_dropped() -> None:
    pool = _workspace.Workspace(idle=8)
    like = np.zeros(1, np.float32)
    a = pool.empty((300, 300), like)
    del a
    for _ in range(20):
        b = pool.empty((400, 400), like)
        del b
    c = pool.empty((500, 500), like)  # a miss: trims
    assert pool.nbytes() == 400 * 400 * 4 + c.nbytes  # the 300x300 buffer is gone
    pool.clear()
    assert pool.nbytes() == 0


def test_threads_never_share_a_buffer() -> None:
    pool = _workspace.Workspace()
    like = np.zeros(1, np.float32)
    errors: list[str] = []

    def work(k: int) -> None:
        for _ in range(200):
            a = pool.empty((256, 256), like)
            a.fill(k)
            if not (a == k).all():
                errors.append(f"thread {k} saw another thread's values")
            del a

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


# --------------------------------------------------------------------------------------------
# models


def _big_model(seed: int = 0) -> fc.Sequential:
    """Over 32 MiB per activation (16 x 64 x 96 x 96 float32 = 37.7 MB): a convolution, BN,
    ReLU, pooling, another convolution, Dense. (The first layer is a convolution: a first
    BatchNormalization with a fused ReLU allocates a scratch of its input's size inside its
    backward, csrc/cpu/batch_norm.cpp, which the workspace can't reach.)"""
    model = fc.Sequential([
        L.Conv2D(64, 1), L.BatchNormalization(), L.ReLU(), L.MaxPool2D(2),
        L.Conv2D(4, 3, padding="same"), L.BatchNormalization(), L.Activation("relu"),
        L.GlobalAveragePooling2D(), L.Dense(10),
    ], input_shape=(8, 96, 96), seed=seed)
    model.compile(optimizer="sgd", loss=fc.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _step_faults(enabled: bool, steps: int = 3) -> tuple[float, list[Any]]:
    """Pages faulted per steady-state training step, and the losses and weights."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 8, 96, 96), dtype=np.float32)
    y = rng.integers(0, 10, 16)
    with small_pages():
        # (poison: would write each page itself)
        model = workspace(_big_model(), enabled, poison=False, min_bytes=1 << 18)
        losses = [model.train_on_batch(x, y) for _ in range(2)]  # warm-up: the pool fills
        before = _faults()
        for _ in range(steps):
            losses.append(model.train_on_batch(x, y))
        per_step = (_faults() - before) / steps
        got = [*losses, *model.get_weights()]
        del model
    return per_step, got


def test_steady_state_steps_fault_no_pages() -> None:
    """The big BN / ReLU / pooling tensors are mmapped fresh every step without the pool
    (9,200 pages each); with it a step faults almost nothing, with the same bits."""
    without, a = _step_faults(False)
    with_pool, b = _step_faults(True)
    # Without the pool each step maps several fresh 37.7 MB arrays (9,216 pages each): 38,000-
    # 41,000 faults here, 24,600 on a CI machine (glibc's mmap threshold and the kernel's page
    # handling differ between machines, so the count is a floor, not a fixed number). What
    # remains with it: the max pooling's int64 indices (not pooled) and the convolution
    # backward's internal scratch (csrc/cpu), 0-4,600 pages.
    assert without > 2 * 9_216, without
    assert without - with_pool > 9_216, (with_pool, without)  # at least one big array's pages
    assert with_pool < 0.3 * without, (with_pool, without)
    same_bits(a, b)


def test_predict_faults_no_pages_and_keeps_results() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((16, 8, 96, 96), dtype=np.float32)
    with small_pages():
        model = workspace(_big_model(), True, poison=False, min_bytes=1 << 18)
        first = model.predict(x, batch_size=16)
        keep = first.copy()
        model.predict(x, batch_size=16)
        before = _faults()
        again = model.predict(x * 2, batch_size=16)
        assert _faults() - before < 2_000
        same_bits([first], [keep])  # the held result is untouched
        assert not np.array_equal(again, first)


def _resnet_block_model(seed: int = 3) -> fc.Model:
    """A graph with fan-out: the input of each block feeds its convolution and the Add."""
    inp = L.Input((4, 12, 12))
    t = L.Conv2D(8, 3, padding="same")(inp)
    t = L.BatchNormalization()(t)
    x = L.Activation("relu")(t)
    y = L.Conv2D(8, 3, padding="same")(x)
    y = L.BatchNormalization()(y)
    y = L.Activation("relu")(y)
    y = L.Conv2D(8, 3, padding="same", activation="tanh")(y)
    x = L.Activation("relu")(L.Add()([x, y]))
    x = L.MaxPool2D(2)(x)
    x = L.Conv2D(8, 3, padding="same")(x)
    x = L.Activation("silu")(x)
    x = L.Flatten()(x)
    x = L.Dense(32, activation="relu")(x)
    out = L.Dense(10)(x)
    model = fc.Model(inp, out, seed=seed)
    model.compile(optimizer="adam",
                  loss=fc.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def _run_everything(enabled: bool, make: Any, shape: tuple[int, ...]) -> list[Any]:
    rng = np.random.default_rng(7)
    xs = rng.standard_normal((3, 16, *shape), dtype=np.float32)
    ys = rng.integers(0, 10, (3, 16))
    model = workspace(make(), enabled)
    got: list[Any] = []
    for x, y in zip(xs, ys, strict=True):
        got.append(model.train_on_batch(x, y))
    hist = model.fit(xs.reshape(-1, *shape), ys.reshape(-1), batch_size=20, epochs=2,
                     verbose=0, shuffle=False)
    got += [hist.history["loss"], model.evaluate(xs[0], ys[0], verbose=0)]
    got += [model.predict(xs[1], batch_size=10), model(xs[2]), *model.get_weights()]
    if enabled:
        assert model.workspace.nbytes() > 0  # the pool was used
    return got


def test_graph_model_is_bit_identical_with_and_without_the_pool() -> None:
    a = _run_everything(True, _resnet_block_model, (4, 12, 12))
    b = _run_everything(False, _resnet_block_model, (4, 12, 12))
    same_bits(a[:4], b[:4])
    for u, v in zip(a[4:], b[4:], strict=True):
        same_bits(list(np.atleast_1d(u)) if isinstance(u, list) else [u],
                  list(np.atleast_1d(v)) if isinstance(v, list) else [v])


def test_resnet_is_bit_identical_with_and_without_the_pool() -> None:
    def make() -> Any:
        model = fc.models.resnet(8, input_shape=(3, 8, 8))
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
        return model

    a = _run_everything(True, make, (3, 8, 8))
    b = _run_everything(False, make, (3, 8, 8))
    for u, v in zip(a, b, strict=True):
        same_bits([np.asarray(u, dtype=np.float64)], [np.asarray(v, dtype=np.float64)])


def test_held_outputs_are_never_overwritten() -> None:
    rng = np.random.default_rng(5)
    model = workspace(_resnet_block_model(), True)
    x1, x2 = (rng.standard_normal((16, 4, 12, 12), dtype=np.float32) for _ in range(2))
    conv = next(lay for lay in model.layers if isinstance(lay, L.Conv2D))
    with _workspace.active(model.workspace):  # the layer run as its model runs it
        h1 = conv(x1)  # a layer's output, held
        h1_keep = h1.copy()
        view = conv(x2)[::2]  # only a view of the second is held
        view_keep = view.copy()
    p1 = model(x1)  # a model's output, held
    p1_keep = p1.copy()
    for _ in range(3):
        model.train_on_batch(x2, rng.integers(0, 10, 16))
        with _workspace.active(model.workspace):
            conv(x2)
        model(x2)
    same_bits([h1, view, p1], [h1_keep, view_keep, p1_keep])


def test_a_callback_keeping_outputs_sees_them_unchanged() -> None:
    rng = np.random.default_rng(6)
    x = rng.standard_normal((48, 4, 12, 12), dtype=np.float32)
    y = rng.integers(0, 10, 48)
    kept: list[tuple[np.ndarray, np.ndarray]] = []

    class Keep(fc.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            convs = [lay for lay in self.model.layers if isinstance(lay, L.Conv2D)]
            for lay in convs[1:]:  # a convolution's saved input and output, as a user might
                for a in lay._cache[:2]:
                    kept.append((a, a.copy()))

    model = workspace(_resnet_block_model(), True)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[Keep()])
    assert kept
    for held, copy in kept:
        same_bits([held], [copy])


def test_each_model_owns_its_workspace() -> None:
    """Buffers belong to one model: another model, a nested model and a layer called on its own
    draw nothing from it, and they go with the model."""
    import copy
    import weakref

    rng = np.random.default_rng(8)
    x = rng.standard_normal((16, 4, 12, 12), dtype=np.float32)
    y = rng.integers(0, 10, 16)
    a = workspace(_resnet_block_model(), True)
    b = workspace(_resnet_block_model(), True)
    a.train_on_batch(x, y)
    assert a.workspace.nbytes() > 0 and b.workspace.nbytes() == 0
    assert _workspace.current() is None  # nothing stays active after a call
    conv = next(lay for lay in a.layers if isinstance(lay, L.Conv2D))
    before = a.workspace.nbytes()
    conv(x)  # on its own: allocates, takes nothing from its model's workspace
    assert a.workspace.nbytes() == before
    held = [weakref.ref(buf) for bufs in a.workspace._buffers.values() for buf in bufs]
    assert held
    twin = copy.deepcopy(a)  # a copy starts with an empty workspace of the same settings
    assert twin.workspace is not a.workspace and twin.workspace.nbytes() == 0
    assert twin.workspace.min_bytes == 0 and twin.workspace.poison
    del a, conv, twin
    import gc

    gc.collect()
    assert all(r() is None for r in held)  # the buffers went with the model

    inner = workspace(_resnet_block_model(), True)
    inp = fc.Input((4, 12, 12))
    outer = workspace(fc.Model(inp, L.Dense(3)(inner(inp))), True)
    outer.compile(optimizer="sgd",
                  loss=fc.losses.SparseCategoricalCrossentropy(from_logits=True))
    outer.train_on_batch(x, rng.integers(0, 3, 16))
    assert outer.workspace.nbytes() > 0 and inner.workspace.nbytes() == 0  # the outer's


def test_the_active_workspace_is_per_thread() -> None:
    model = workspace(_resnet_block_model(), True)
    seen: list[Any] = []
    with _workspace.active(model.workspace):
        assert _workspace.current() is model.workspace
        t = threading.Thread(target=lambda: seen.append(_workspace.current()))
        t.start()
        t.join()
        other = _workspace.Workspace()
        with _workspace.active(other):  # the outermost stays
            assert _workspace.current() is model.workspace
    assert seen == [None] and _workspace.current() is None


# --------------------------------------------------------------------------------------------
# the ops' destinations


def _conv_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 4, 6, 6), dtype=np.float32)
    w = rng.standard_normal((4, 4, 1, 1), dtype=np.float32)
    b = rng.standard_normal(4, dtype=np.float32)
    return x, w, b


@pytest.mark.parametrize("mod", [ops, reference], ids=["ops", "reference"])
def test_out_is_written_and_returned(mod: Any) -> None:
    x, w, b = _conv_case()
    out = np.full((2, 4, 6, 6), np.nan, np.float32)
    y = mod.conv2d(x, w, b, out=out)
    assert y is out
    same_bits([out], [mod.conv2d(x, w, b)])
    dy = np.ones_like(out)
    dxo = np.full_like(x, np.nan)
    dx, dw, db = mod.conv2d_backward(dy, x, w, dx_out=dxo)
    assert dx is dxo
    same_bits([dx, dw, db], list(mod.conv2d_backward(dy, x, w)))
    xs = x.reshape(2, -1)[:, :16].copy()
    wl = np.ones((3, 16), np.float32)
    yo = np.empty((2, 3), np.float32)
    assert mod.linear(xs, wl, out=yo) is yo
    dxo = np.empty_like(xs)
    assert mod.linear_backward(np.ones((2, 3), np.float32), xs, wl, dx_out=dxo)[0] is dxo
    g, bb = np.ones(4, np.float32), np.zeros(4, np.float32)
    rm, rv = np.zeros(4, np.float32), np.ones(4, np.float32)
    yo = np.empty_like(x)
    y, mean, invstd = mod.batch_norm(x, g, bb, rm, rv, training=False, out=yo)
    assert y is yo
    dxo = np.empty_like(x)
    assert mod.batch_norm_backward(dy, x, g, mean, invstd, dx_out=dxo)[0] is dxo
    yo = np.empty((2, 4, 3, 3), np.float32)
    assert mod.max_pool2d(x, 2, out=yo) is yo


@pytest.mark.parametrize("mod", [ops, reference], ids=["ops", "reference"])
def test_out_of_the_wrong_shape_names_the_argument(mod: Any) -> None:
    x, w, b = _conv_case()
    with pytest.raises(ValueError, match=r"out has shape \(2, 4, 6, 5\)"):
        mod.conv2d(x, w, b, out=np.empty((2, 4, 6, 5), np.float32))
    with pytest.raises(ValueError, match=r"dx_out has shape \(2, 4, 6, 7\)"):
        mod.conv2d_backward(np.ones((2, 4, 6, 6), np.float32), x, w,
                            dx_out=np.empty((2, 4, 6, 7), np.float32))
    with pytest.raises(ValueError, match="dx_out is given but compute_dx=False"):
        mod.conv2d_backward(np.ones((2, 4, 6, 6), np.float32), x, w, compute_dx=False,
                            dx_out=np.empty_like(x))
    with pytest.raises(ValueError, match=r"dx_out has shape \(2, 5\)"):
        mod.linear_backward(np.ones((2, 3), np.float32), np.ones((2, 4), np.float32),
                            np.ones((3, 4), np.float32), dx_out=np.empty((2, 5), np.float32))
    with pytest.raises(ValueError, match=r"out has shape \(2, 4\)"):
        mod.linear(np.ones((2, 4), np.float32), np.ones((3, 4), np.float32),
                   out=np.empty((2, 4), np.float32))
    g = np.ones(4, np.float32)
    with pytest.raises(ValueError, match=r"out has shape \(2, 4, 6\)"):
        mod.batch_norm(x, g, g, g, g, out=np.empty((2, 4, 6), np.float32))
    with pytest.raises(ValueError, match=r"dx_out has shape \(1, 4, 6, 6\)"):
        mod.batch_norm_backward(x, x, g, g, g, dx_out=np.empty((1, 4, 6, 6), np.float32))
    with pytest.raises(ValueError, match=r"out has shape \(2, 4, 2, 2\)"):
        mod.max_pool2d(x, 2, out=np.empty((2, 4, 2, 2), np.float32))


def test_out_checks_dtype_layout_and_overlap() -> None:
    x, w, b = _conv_case()
    with pytest.raises(TypeError, match="out has dtype float64; expected float32"):
        ops.conv2d(x, w, b, out=np.empty((2, 4, 6, 6)))
    with pytest.raises(TypeError, match=r"out must be a numpy\.ndarray"):
        ops.linear(np.ones((2, 4), np.float32), np.ones((3, 4), np.float32), out=[0.0] * 6)
    strided = np.empty((2, 4, 6, 12), np.float32)[..., ::2]
    with pytest.raises(ValueError, match="out must be C-contiguous"):
        ops.conv2d(x, w, b, out=strided)
    frozen = np.empty((2, 4, 6, 6), np.float32)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="out is read-only"):
        ops.conv2d(x, w, b, out=frozen)
    with pytest.raises(ValueError, match="out overlaps x; pass a separate array"):
        ops.conv2d(x, w, b, out=x)  # same shape (1x1 conv, 4 -> 4): never in place
    g = np.ones(4, np.float32)
    with pytest.raises(ValueError, match="out overlaps x"):
        ops.batch_norm(x, g, g, g, g, out=x)
    dy = np.ones_like(x)
    mean, invstd = np.zeros(4, np.float32), np.ones(4, np.float32)
    with pytest.raises(ValueError, match="dx_out overlaps dy"):
        ops.batch_norm_backward(dy, x, g, mean, invstd, dx_out=dy)
    relu_y = np.ones_like(x)
    with pytest.raises(ValueError, match="dx_out overlaps relu_y"):
        ops.conv2d_backward(dy, x, w, relu_y=relu_y, dx_out=relu_y)
    with pytest.raises(ValueError, match="dx_out overlaps relu_y"):
        ops.batch_norm_backward(dy, x, g, mean, invstd, relu_y=relu_y, dx_out=relu_y)
    big = np.empty(2 * 4 * 6 * 6 + 8, np.float32)
    with pytest.raises(ValueError, match="dx_out overlaps dy"):
        ops.conv2d_backward(big[:288].reshape(x.shape), x, w,
                            dx_out=big[8:].reshape(x.shape))


def test_cuda_ops_take_out_and_leave_the_pool_alone() -> None:
    """On the GPU (or the CUDA emulator, tools/cuda_emu) the ops take ``out=`` / ``dx_out=``
    with the CPU's rules, and the layers never ask the (CPU-only) pool."""
    cp = pytest.importorskip("cupy")
    if not fc.cuda_available():
        pytest.skip("no usable GPU")
    x, w, b = (cp.asarray(a) for a in _conv_case())
    out = cp.empty((2, 4, 6, 6), dtype=cp.float32)
    assert ops.conv2d(x, w, b, out=out) is out
    same_bits([cp.asnumpy(out)], [cp.asnumpy(ops.conv2d(x, w, b))])
    dy = cp.ones_like(out)
    dxo = cp.empty_like(x)
    dx, dw, db = ops.conv2d_backward(dy, x, w, dx_out=dxo)
    assert dx is dxo
    same_bits([cp.asnumpy(a) for a in (dx, dw, db)],
              [cp.asnumpy(a) for a in ops.conv2d_backward(dy, x, w)])
    with pytest.raises(ValueError, match="out overlaps x"):
        ops.conv2d(x, w, b, out=x)
    with pytest.raises(ValueError, match=r"dx_out has shape \(2, 4, 6, 7\)"):
        ops.conv2d_backward(dy, x, w, dx_out=cp.empty((2, 4, 6, 7), dtype=cp.float32))
    xs, wl = cp.ones((2, 16), dtype=cp.float32), cp.ones((3, 16), dtype=cp.float32)
    yo = cp.empty((2, 3), dtype=cp.float32)
    assert ops.linear(xs, wl, out=yo) is yo
    dxo = cp.empty_like(xs)
    assert ops.linear_backward(cp.ones((2, 3), dtype=cp.float32), xs, wl, dx_out=dxo)[0] is dxo
    g = cp.ones(4, dtype=cp.float32)
    yo = cp.empty_like(x)
    y, mean, invstd = ops.batch_norm(x, g, g * 0, g * 0, g, training=False, out=yo)
    assert y is yo
    dxo = cp.empty_like(x)
    assert ops.batch_norm_backward(dy, x, g, mean, invstd, dx_out=dxo)[0] is dxo
    yo = cp.empty((2, 4, 3, 3), dtype=cp.float32)
    assert ops.max_pool2d(x, 2, out=yo) is yo
    model = workspace(_resnet_block_model(), True).to("cuda")
    model.train_on_batch(cp.asarray(np.ones((16, 4, 12, 12), np.float32)), np.zeros(16))
    model.predict(np.ones((16, 4, 12, 12), np.float32))
    assert model.workspace.nbytes() == 0
