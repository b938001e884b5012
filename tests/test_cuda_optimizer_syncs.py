"""RMSprop and gradient clipping on the GPU inside ``fit`` (issue 14, item 1): no host read per
step (clipping's norms stay on the device), and after a non-finite loss RMSprop skips its
updates through the deferred skip flag, as the SGD / Adam kernels do.

Needs the CPU emulator's counters (``cupy._emu``): run with ``tools/cuda_emu/run.sh``
(``TESTS="tests/test_cuda_optimizer_syncs.py"``); skipped elsewhere.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import fastcnn as fc
from fastcnn import optimizers
from fastcnn.optimizers import _scaled
from fastcnn.training import NonFiniteLossError, train_step

pytestmark = pytest.mark.cuda


def _model(opt: Any) -> fc.Sequential:
    m = fc.models.seeds_cnn((1, 6, 6), 4, seed=0, padding="same")
    m.compile(optimizer=opt, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return m.to("cuda")


def _data(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    return rng.normal(size=(n, 1, 6, 6)).astype(np.float32), rng.integers(0, 4, n)


OPTS = {
    "rmsprop": lambda: optimizers.RMSprop(1e-3, momentum=0.5, centered=True),
    "sgd-clipnorm": lambda: optimizers.SGD(0.05, clipnorm=0.01),
    "adam-global-clipnorm": lambda: optimizers.Adam(1e-3, global_clipnorm=0.01),
}


def _fit_reads(cp: Any, emu: Any, n: int, make: Any, monkeypatch: Any) -> tuple[int, int]:
    monkeypatch.setattr("fastcnn._fit_checks.READ_INTERVAL", 1e9)  # reads only at the epoch end
    model = _model(make())
    x, y = _data(n)
    xd, yd = cp.asarray(x), cp.asarray(y)
    model.fit(xd, yd, batch_size=4, epochs=1, verbose=0, shuffle=False)  # warm: buffers
    emu.reset()
    model.fit(xd, yd, batch_size=4, epochs=1, verbose=0, shuffle=False)
    c = emu.counts()
    return c["syncs"], c["d2h"]


@pytest.mark.parametrize("name", OPTS)
def test_reads_per_epoch_not_per_batch(cp: Any, emu: Any, monkeypatch: Any, name: str) -> None:
    few = _fit_reads(cp, emu, 8, OPTS[name], monkeypatch)  # 2 batches
    many = _fit_reads(cp, emu, 24, OPTS[name], monkeypatch)  # 6 batches
    assert few == many, (name, few, many)


def test_rmsprop_skips_updates_after_a_nonfinite_loss(cp: Any, emu: Any,
                                                       monkeypatch: Any) -> None:
    monkeypatch.setattr("fastcnn._fit_checks.READ_INTERVAL", 1e9)
    x, y = _data(12)
    x[6] = np.nan  # batch 2
    model = _model(OPTS["rmsprop"]())
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, batch 2 \(of 3\)"):
        model.fit(cp.asarray(x), cp.asarray(y), batch_size=4, epochs=1, verbose=0,
                  shuffle=False)
    ref = _model(OPTS["rmsprop"]())  # the weights after batch 1 only
    train_step(ref, cp.asarray(x[:4]), cp.asarray(y[:4]))
    for pa, pb in zip(model.get_weights(), ref.get_weights(), strict=True):
        assert np.isfinite(pa).all()
        np.testing.assert_array_equal(pa, pb)


@pytest.mark.parametrize("scale", [0.5, 1.0, 3.0, np.inf, np.nan])
def test_device_clipping_factor_has_the_host_bits(cp: Any, emu: Any, scale: float) -> None:
    rng = np.random.default_rng(2)
    g = rng.normal(size=(7, 5)).astype(np.float32)
    g /= np.float32(np.sqrt(np.sum(g.astype(np.float64) ** 2)))  # norm ~1
    g = (g * np.float32(scale)).astype(np.float32)
    sumsq = np.sum(g.astype(np.float64) ** 2)
    host = _scaled(g, 1.0, sumsq)
    dev = _scaled(cp.asarray(g), 1.0, cp.asarray(sumsq))
    np.testing.assert_array_equal(cp.asnumpy(dev), host)
