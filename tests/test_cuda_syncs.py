"""Host synchronisations and device-to-host copies of the GPU training step (issue 14, item 1),
and the emulator's host-cost mode (item 6).

These tests need the CPU emulator's counters (``cupy._emu``, tools/cuda_emu/fake_cupy): they run
with ``tools/cuda_emu/run.sh`` (``TESTS="tests/test_cuda_syncs.py"``) and are skipped on a real
GPU, where the counts can't be taken (use Nsight Systems there). Counted as synchronisations:
stream / device / event syncs, blocking reads (``get``, ``float(a)``, ``bool(a)``, ...) and the
compiled kernels' own ``cudaStreamSynchronize``; as copies: every device-to-host copy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import fastcnn as fc
from fastcnn import _deferred, callbacks, ops, optimizers
from fastcnn.training import NonFiniteLossError, train_step

pytestmark = pytest.mark.cuda


def _seeds_cnn(optimizer: Any = None) -> fc.Sequential:
    """The seeds' CNN, small inputs (the emulator runs one fiber per CUDA thread)."""
    m = fc.models.seeds_cnn((1, 6, 6), 4, seed=0, padding="same")
    m.compile(optimizer=optimizer or optimizers.SGD(0.05, momentum=0.9),
              loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return m.to("cuda")


def _data(n: int = 12, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 1, 6, 6)).astype(np.float32), rng.integers(0, 4, n)


def test_training_step_has_no_sync_and_no_copy(cp: Any, emu: Any) -> None:
    model = _seeds_cnn()
    x, y = _data(4)
    xb, yb = cp.asarray(x), cp.asarray(y)
    acc = model.metrics[0]
    with _deferred.scope(final_check=False):
        train_step(model, xb, yb)  # the first step allocates the momentum buffers
        emu.reset()
        for _ in range(2):
            step = train_step(model, xb, yb)
            acc.update(yb, step.outputs, logits="softmax")
        counts = emu.counts()
        assert counts["launches"] > 0, counts  # the emulated kernels did run
        assert counts["syncs"] == 0 and counts["d2h"] == 0, counts
        assert isinstance(step.loss, cp.ndarray) and step.loss.shape == ()
        emu.reset()
        _deferred.check()  # the one read: every pending check in one copy
        assert emu.counts()["d2h"] == 1, emu.counts()
    assert np.isfinite(float(step.loss))


def test_train_step_outside_fit_reads_the_loss(cp: Any, emu: Any) -> None:
    """Outside fit's scope train_step keeps its contract (a float, checked before the update)."""
    model = _seeds_cnn()
    x, y = _data(4)
    step = train_step(model, cp.asarray(x), cp.asarray(y))
    assert isinstance(step.loss, float)


def _fit_syncs(cp: Any, emu: Any, n: int, monkeypatch: Any) -> tuple[int, int]:
    monkeypatch.setattr("fastcnn._fit_checks.READ_INTERVAL", 1e9)  # reads only at the epoch end
    model = _seeds_cnn()
    x, y = _data(n)
    xd, yd = cp.asarray(x), cp.asarray(y)
    model.fit(xd, yd, batch_size=4, epochs=1, verbose=0, shuffle=False)  # warm: buffers
    emu.reset()
    model.fit(xd, yd, batch_size=4, epochs=1, verbose=0, shuffle=False)
    c = emu.counts()
    return c["syncs"], c["d2h"]


def test_fit_reads_per_epoch_not_per_batch(cp: Any, emu: Any, monkeypatch: Any) -> None:
    few = _fit_syncs(cp, emu, 8, monkeypatch)  # 2 batches
    many = _fit_syncs(cp, emu, 24, monkeypatch)  # 6 batches
    assert few == many, (few, many)  # the same reads whatever the number of steps
    # the checks, the loss, the accuracy (one copy each) and the uploader's close (two event
    # syncs: its pinned buffers)
    assert many[0] <= 5 and many[1] <= 3, many


def test_fit_refresh_reads_at_most_every_interval(cp: Any, emu: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr("fastcnn._fit_checks.READ_INTERVAL", 0.0)  # a read after every batch
    model = _seeds_cnn()
    x, y = _data(12)
    emu.reset()
    model.fit(cp.asarray(x), cp.asarray(y), batch_size=4, epochs=1, verbose=0, shuffle=False)
    assert emu.counts()["syncs"] >= 3  # the interval is what limits the reads


def test_bad_label_raises_at_the_next_read_naming_the_batch(cp: Any, emu: Any,
                                                            monkeypatch: Any) -> None:
    monkeypatch.setattr("fastcnn._fit_checks.READ_INTERVAL", 1e9)
    model = _seeds_cnn()
    x, y = _data(12)
    y[5] = 9  # batch 2 (of 3, batch_size 4)
    with pytest.raises(ValueError, match=r"\[0, 4\).*\(epoch 1, batch 2\)"):
        model.fit(cp.asarray(x), cp.asarray(y), batch_size=4, epochs=1, verbose=0,
                  shuffle=False)
    assert _deferred.pending() == 0 and not _deferred.deferring()


def test_cross_entropy_record_is_deferred_in_a_scope(cp: Any, emu: Any) -> None:
    rng = np.random.default_rng(0)
    logits = cp.asarray(rng.normal(size=(6, 4)).astype(np.float32))
    labels = cp.asarray(np.array([0, 1, 7, 3, 0, 1]))
    with _deferred.scope(where="here", final_check=False):
        emu.reset()
        loss, _ = ops.cross_entropy(logits, labels)
        assert emu.counts()["syncs"] == 0 and emu.counts()["d2h"] == 0
        assert _deferred.pending() == 1
        with pytest.raises(ValueError, match=r"labels\[2\] = 7 is not a class id in "
                                             r"\[0, 4\) \(here\)"):
            _deferred.check()
    assert isinstance(loss, cp.ndarray) and loss.shape == () and np.isnan(float(loss))
    good, _ = ops.cross_entropy(logits, cp.asarray(np.array([0, 1, 2, 3, 0, 1])))
    want, _ = ops.cross_entropy(cp.asnumpy(logits), np.array([0, 1, 2, 3, 0, 1]))
    assert float(good) == pytest.approx(want, rel=1e-6)


def test_fit_loss_equals_the_synced_steps(cp: Any, emu: Any) -> None:
    x, y = _data(12)
    a = _seeds_cnn()
    hist = a.fit(cp.asarray(x), cp.asarray(y), batch_size=4, epochs=2, verbose=0,
                 shuffle=False)
    b = _seeds_cnn()
    for _ in range(2):
        losses = [train_step(b, cp.asarray(x[i:i + 4]), cp.asarray(y[i:i + 4])).loss
                  for i in range(0, 12, 4)]
        assert all(isinstance(v, float) for v in losses)
    # the same running mean, in the same double arithmetic, bit for bit
    running = 0.0
    for v in losses:
        running += v * 4
    assert hist.history["loss"][1] == running / 12
    for pa, pb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(pa, pb)


def test_nonfinite_loss_raises_at_the_next_read(cp: Any, emu: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr("fastcnn._fit_checks.READ_INTERVAL", 1e9)
    x, y = _data(12)
    x[6] = np.nan  # batch 2
    model = _seeds_cnn()
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, batch 2 \(of 3\)"):
        model.fit(cp.asarray(x), cp.asarray(y), batch_size=4, epochs=1, verbose=0,
                  shuffle=False)
    # SGD's kernels skipped batches 2 and 3 on the device: the weights after batch 1
    ref = _seeds_cnn()
    train_step(ref, cp.asarray(x[:4]), cp.asarray(y[:4]))
    for pa, pb in zip(model.get_weights(), ref.get_weights(), strict=True):
        np.testing.assert_array_equal(pa, pb)
    stop = callbacks.TerminateOnNaN()
    hist = _seeds_cnn().fit(cp.asarray(x), cp.asarray(y), batch_size=4, epochs=2, verbose=0,
                            shuffle=False, callbacks=[stop])
    assert stop.stopped == (0, 1) and hist.history.get("loss", []) == []


def test_own_pooling_indices_take_the_trusted_path(cp: Any, emu: Any) -> None:
    rng = np.random.default_rng(0)
    x = cp.asarray(rng.normal(size=(2, 3, 6, 6)).astype(np.float32))
    dy = cp.asarray(rng.normal(size=(2, 3, 3, 3)).astype(np.float32))
    _, idx = ops.max_pool2d(x, 2, return_indices=True)
    emu.reset()
    own = ops.max_pool2d_backward(dy, x, 2, indices=idx)
    assert emu.counts()["syncs"] == 0 and emu.counts()["d2h"] == 0, emu.counts()
    user = ops.max_pool2d_backward(dy, x, 2, indices=idx.copy())  # checked: one copy, a sync
    assert emu.counts()["d2h"] >= 1 and emu.counts()["syncs"] >= 1, emu.counts()
    np.testing.assert_array_equal(cp.asnumpy(own), cp.asnumpy(user))
    _, gidx = ops.global_max_pool2d(x, return_indices=True)
    emu.reset()
    ops.global_max_pool2d_backward(cp.asarray(rng.normal(size=(2, 3)).astype(np.float32)), x,
                                   indices=gidx)
    assert emu.counts()["syncs"] == 0 and emu.counts()["d2h"] == 0, emu.counts()


def test_kernels_off_mode_skips_the_kernels_and_counts(cp: Any, emu: Any) -> None:
    from fastcnn import _native

    cuda = _native.cuda()
    x, y = cp.ones(64, np.float32), cp.zeros(64, np.float32)
    emu.reset()
    assert emu.kernels(False) is True
    cuda.relu(int(x.data.ptr), int(y.data.ptr), 64, 0)
    assert emu.counts()["launches"] == 1
    assert float(y.sum()) == 0.0  # not run
    emu.kernels(True)
    cuda.relu(int(x.data.ptr), int(y.data.ptr), 64, 0)
    assert emu.counts()["launches"] == 2 and float(y.sum()) == 64.0
