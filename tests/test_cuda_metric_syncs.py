"""Precision, Recall and AUC on the GPU accumulate on the device (issue 14, item 1): inside
``fit`` a batch reads nothing back, so the reads per epoch don't grow with the batch count;
their values equal the CPU's.

Needs the CPU emulator's counters (``cupy._emu``): run with ``tools/cuda_emu/run.sh``
(``TESTS="tests/test_cuda_metric_syncs.py"``); skipped elsewhere.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import fastcnn as fc
from fastcnn import _deferred
from fastcnn import metrics as M

pytestmark = pytest.mark.cuda


def _metrics() -> list[Any]:
    return [M.Precision(), M.Recall(), M.AUC(num_thresholds=17), M.AUC(curve="PR", name="pr_auc"),
            M.Precision(top_k=1, name="p_top1")]


def _model(device: str) -> fc.Sequential:
    m = fc.Sequential([fc.layers.Dense(3, activation="sigmoid")], input_shape=(5,), seed=0)
    m.compile(fc.optimizers.SGD(0.1), "binary_crossentropy", metrics=_metrics())
    return m.to(device)


def _data(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(n)
    return (rng.standard_normal((n, 5)).astype(np.float32),
            (rng.random((n, 3)) < 0.5).astype(np.float32))


def _fit_reads(cp: Any, emu: Any, n: int, monkeypatch: Any) -> tuple[int, int]:
    monkeypatch.setattr("fastcnn._fit_checks.READ_INTERVAL", 1e9)  # reads only at the epoch end
    model = _model("cuda")
    x, y = _data(n)
    xd, yd = cp.asarray(x), cp.asarray(y)
    model.fit(xd, yd, batch_size=4, epochs=1, verbose=0, shuffle=False)  # warm: buffers
    emu.reset()
    model.fit(xd, yd, batch_size=4, epochs=1, verbose=0, shuffle=False)
    c = emu.counts()
    return c["syncs"], c["d2h"]


def test_confusion_metrics_read_per_epoch_not_per_batch(cp: Any, emu: Any,
                                                        monkeypatch: Any) -> None:
    few = _fit_reads(cp, emu, 8, monkeypatch)  # 2 batches
    many = _fit_reads(cp, emu, 24, monkeypatch)  # 6 batches
    assert few == many, (few, many)


def test_confusion_metrics_in_fit_equal_the_cpu(cp: Any, emu: Any) -> None:
    x, y = _data(24)
    cpu = _model("cpu").fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False).history
    gpu = _model("cuda").fit(cp.asarray(x), cp.asarray(y), batch_size=8, epochs=2, verbose=0,
                             shuffle=False).history
    assert set(gpu) == set(cpu)
    for k in cpu:
        assert all(isinstance(v, float) for v in gpu[k]), (k, gpu[k])
        np.testing.assert_allclose(gpu[k], cpu[k], rtol=1e-5, atol=1e-6, err_msg=k)


@pytest.mark.parametrize("weighted", [False, True])
def test_device_counts_equal_the_host_counts(cp: Any, emu: Any, weighted: bool) -> None:
    rng = np.random.default_rng(0)
    p = rng.random((40, 3))
    ids = rng.integers(0, 3, 40)
    w = rng.random(40) if weighted else None
    for m in [*_metrics(), M.Recall(class_id=2), M.AUC(thresholds=[0.2, 0.5, 0.7])]:
        cpu, gpu = m, type(m)(**m.get_config())
        for lo in (0, 20):
            sw = None if w is None else w[lo:lo + 20]
            b_cpu = cpu.update(ids[lo:lo + 20], p[lo:lo + 20], sample_weight=sw)
            b_gpu = gpu.update(cp.asarray(ids[lo:lo + 20]), cp.asarray(p[lo:lo + 20]),
                               sample_weight=None if sw is None else cp.asarray(sw))
            assert isinstance(b_gpu, float) and b_gpu == pytest.approx(b_cpu, abs=1e-12), m
        assert gpu.result() == pytest.approx(cpu.result(), abs=1e-12), m
        if isinstance(m, M.Precision | M.Recall):
            assert (gpu.true_positives, gpu.false_positives, gpu.false_negatives) == \
                pytest.approx((cpu.true_positives, cpu.false_positives, cpu.false_negatives))
        with _deferred.scope(final_check=False):  # as in fit: the value stays on the device
            v = gpu.update(cp.asarray(ids[:20]), cp.asarray(p[:20]))
            assert isinstance(v, cp.ndarray) and v.shape == (), (m, type(v))
