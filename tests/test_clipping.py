"""Gradient clipping on every optimizer: clipnorm, global_clipnorm, clipvalue (Keras' rules)."""

from __future__ import annotations

import numpy as np
import pytest

import fastcnn as fc
from fastcnn import optimizers

OPTIMIZERS = [optimizers.SGD, optimizers.Adam, optimizers.AdamW, optimizers.RMSprop]


def _pairs(seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(s).astype(np.float32),
             (rng.standard_normal(s) * 3).astype(np.float32)) for s in ((4, 3), (5,), (2, 2, 2))]


def _expected_grads(pairs, clipnorm=None, global_clipnorm=None, clipvalue=None):
    """Keras' formulas, written out in float64 NumPy."""
    grads = [g.astype(np.float64) for _, g in pairs]
    if clipnorm is not None:
        return [g * clipnorm / max(np.sqrt((g * g).sum()), clipnorm) for g in grads]
    if global_clipnorm is not None:
        norm = np.sqrt(sum((g * g).sum() for g in grads))
        return [g * global_clipnorm / max(norm, global_clipnorm) for g in grads]
    if clipvalue is not None:
        return [np.clip(g, -clipvalue, clipvalue) for g in grads]
    return grads


@pytest.mark.parametrize("clip", [{"clipnorm": 1.0}, {"global_clipnorm": 2.0},
                                  {"clipvalue": 0.5}])
def test_sgd_step_uses_the_clipped_gradient(clip: dict[str, float]) -> None:
    pairs = _pairs()
    before = [p.copy() for p, _ in pairs]
    grads_before = [g.copy() for _, g in pairs]
    optimizers.SGD(learning_rate=0.1, **clip).step(pairs)
    for (p, g), p0, g0, ge in zip(pairs, before, grads_before, _expected_grads(pairs, **clip),
                                  strict=True):
        np.testing.assert_allclose(p, p0 - 0.1 * ge, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(g, g0)  # the model's gradients are left as they were


def test_clipnorm_is_per_parameter_and_global_is_joint() -> None:
    pairs = _pairs()
    norms = [np.linalg.norm(g.astype(np.float64)) for _, g in pairs]
    assert all(n > 1.0 for n in norms)
    a = _pairs()
    optimizers.SGD(learning_rate=1.0, clipnorm=1.0).step(a)
    for (p, _), (p0, _) in zip(a, pairs, strict=True):  # every step has norm 1 exactly
        assert np.linalg.norm((p0 - p).astype(np.float64)) == pytest.approx(1.0, rel=1e-5)
    b = _pairs()
    optimizers.SGD(learning_rate=1.0, global_clipnorm=1.0).step(b)
    total = np.sqrt(sum(np.sum((p0 - p).astype(np.float64) ** 2)
                        for (p, _), (p0, _) in zip(b, pairs, strict=True)))
    assert total == pytest.approx(1.0, rel=1e-5)
    # the joint rescale keeps the gradients' proportions
    ratios = [(p0 - p).ravel() / g.ravel() for (p, _), (p0, g) in zip(b, pairs, strict=True)]
    assert np.allclose(np.concatenate(ratios), ratios[0][0], rtol=1e-4)


def test_within_the_bound_is_bitwise_unclipped() -> None:
    a, b = _pairs(), _pairs()
    optimizers.Adam(clipnorm=1e6).step(a)
    optimizers.Adam().step(b)
    for (pa, _), (pb, _) in zip(a, b, strict=True):
        np.testing.assert_array_equal(pa, pb)


@pytest.mark.parametrize("cls", OPTIMIZERS)
@pytest.mark.parametrize("clip", [{"clipnorm": 0.3}, {"global_clipnorm": 0.7},
                                  {"clipvalue": 0.2}])
def test_every_optimizer_equals_the_unclipped_one_on_clipped_grads(cls, clip) -> None:
    pairs = _pairs(1)
    clipped = [(p.copy(), ge.astype(np.float32))
               for (p, _), ge in zip(pairs, _expected_grads(pairs, **clip), strict=True)]
    opt, ref = cls(**clip), cls()
    opt.step(pairs)
    ref.step(clipped)
    for (p, _), (q, _) in zip(pairs, clipped, strict=True):
        np.testing.assert_allclose(p, q, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("cls", OPTIMIZERS)
def test_config_roundtrip_and_model_save(cls, tmp_path) -> None:
    opt = cls(clipnorm=0.5, clipvalue=0.1)
    cfg = opt.get_config()
    assert cfg["clipnorm"] == 0.5 and cfg["clipvalue"] == 0.1 and "global_clipnorm" not in cfg
    again = optimizers.get(optimizers.serialize(opt))
    assert (again.clipnorm, again.clipvalue, again.global_clipnorm) == (0.5, 0.1, None)
    assert "clipnorm" not in cls().get_config()  # unset options stay out of the config

    model = fc.Sequential([fc.layers.Dense(3, activation="softmax")], input_shape=(4,), seed=0)
    model.compile(cls(global_clipnorm=1.5), "sparse_categorical_crossentropy")
    path = tmp_path / "m.npz"
    model.save(path)
    loaded = fc.load_model(path)
    assert loaded.optimizer.global_clipnorm == 1.5 and loaded.optimizer.clipnorm is None


def test_errors() -> None:
    with pytest.raises(ValueError, match="only one of clipnorm and global_clipnorm"):
        optimizers.Adam(clipnorm=1.0, global_clipnorm=1.0)
    for bad in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="clipvalue must be a finite number > 0"):
            optimizers.SGD(clipvalue=bad)
    with pytest.raises(TypeError, match="clipnorm must be a number"):
        optimizers.RMSprop(clipnorm="big")
    with pytest.raises(TypeError):
        optimizers.SGD(clip_norm=1.0)  # a misspelt option is not silently ignored


def test_fit_with_clipping_is_deterministic_and_bounded() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 6)).astype(np.float32) * 50  # large inputs, large gradients
    y = rng.integers(0, 3, 64)

    def run(**clip):
        m = fc.Sequential([fc.layers.Dense(8, activation="relu"),
                           fc.layers.Dense(3, activation="softmax")], input_shape=(6,), seed=1)
        m.compile(optimizers.SGD(learning_rate=0.1, **clip), "sparse_categorical_crossentropy")
        w0 = m.get_weights()
        m.fit(x, y, batch_size=64, epochs=1, verbose=0, shuffle=False)
        return w0, m.get_weights()

    w0, w1 = run(global_clipnorm=0.01)
    step = np.sqrt(sum(np.sum((a.astype(np.float64) - b) ** 2) for a, b in zip(w0, w1,
                                                                               strict=True)))
    assert step == pytest.approx(0.1 * 0.01, rel=1e-4)  # lr * the clipped global norm
    _, again = run(global_clipnorm=0.01)
    for a, b in zip(w1, again, strict=True):
        np.testing.assert_array_equal(a, b)


def test_clipping_on_the_gpu_matches_the_cpu() -> None:
    cp = pytest.importorskip("cupy")
    if not fc.cuda_available():
        pytest.skip("no CUDA device")
    for clip in ({"clipnorm": 0.3}, {"global_clipnorm": 0.7}, {"clipvalue": 0.2}):
        host = _pairs(2)
        dev = [(cp.asarray(p), cp.asarray(g)) for p, g in host]
        optimizers.SGD(learning_rate=0.1, **clip).step(host)
        optimizers.SGD(learning_rate=0.1, **clip).step(dev)
        for (p, _), (q, _) in zip(host, dev, strict=True):
            np.testing.assert_allclose(p, cp.asnumpy(q), rtol=1e-6, atol=1e-7)
