"""Conv2D -> BatchNormalization in training with the batch statistics gathered in the
convolution's epilogue (issue 17, item 2).

* ``ops.conv2d_stats``: y equal to ``ops.conv2d``'s bit for bit, the per-channel mean and
  biased variance against the float64 reference of that y, on odd shapes (N = 1, 1x1 planes,
  channel tails, a long row, |mean| = 1e3 * std), on every route (FASTCNN_CONV_ROUTE=blocked /
  wide / gemm and the rule) and ISA, bit-identical for 1 and 2 threads.
* ``ops.batch_norm(..., batch_stats=(mean, var))``: the reference's result, the running
  statistics updated as from the batch's own; the errors name the argument.
* The models: a ResNet-20 train step and a Sequential Conv -> BN -> ReLU stack, fused against
  unfused (``FASTCNN_FUSE_BN_STATS=0``): losses, weights and moving statistics close; the pairs
  that must not fuse (a conv with an activation, a frozen BN, a conv read twice, an output
  plane under 16x16) run apart;
  save / load unaffected.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import fastcnn
from fastcnn import layers as L
from fastcnn import ops
from fastcnn import reference as ref
from fastcnn.models import resnet

ROUTE = "FASTCNN_CONV_ROUTE"
FUSE = "FASTCNN_FUSE_BN_STATS"

# (x shape, w shape, options): N = 1 with 1x1 planes and a channel tail, a blocked-size problem
# with channel tails (K = 24: 3 AVX2 blocks, 1.5 AVX-512 ones), a strided odd plane, a grouped
# one (GEMM / wide only), a row longer than a kernel tile (Q = 4200 > 4096: merged pieces), a
# plane whose rows cut into a short last chunk (Q = 30: 35 rows a chunk, P = 40 = 35 + 5).
SHAPES = [
    ((1, 5, 1, 1), (9, 5, 1, 1), {}),
    ((3, 16, 16, 16), (24, 16, 3, 3), {"padding": 1}),
    ((2, 3, 9, 7), (5, 3, 3, 3), {"stride": 2, "padding": "same"}),
    ((2, 8, 6, 6), (6, 4, 3, 3), {"padding": 1, "groups": 2}),
    ((1, 2, 2, 4200), (3, 2, 1, 3), {"padding": (0, 1)}),
    ((2, 4, 40, 30), (17, 4, 1, 1), {}),
]


def _ref_stats(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y64 = y.astype(np.float64).transpose(1, 0, 2, 3).reshape(y.shape[1], -1)
    mean = y64.mean(axis=1)
    return mean, ((y64 - mean[:, None]) ** 2).mean(axis=1)


def _data(rng: np.random.Generator, xs: tuple[int, ...], ws: tuple[int, ...],
          offset: float = 0.0) -> tuple[np.ndarray, ...]:
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    b = (rng.standard_normal(ws[0]) + offset).astype(np.float32)
    return x, w, b


def _check_stats(y: np.ndarray, mean: np.ndarray, var: np.ndarray, what: str) -> None:
    assert mean.dtype == np.float64 and var.dtype == np.float64, what
    rm, rv = _ref_stats(y)
    scale = np.sqrt(rv) + 1e-30
    # float32 lanes inside a chunk (the SIMD bn_stats), float64 across: ~1e-7 of the spread
    assert np.all(np.abs(mean - rm) <= 1e-6 * (scale + 1e-7 * np.abs(rm))), (what, mean, rm)
    np.testing.assert_allclose(var, rv, rtol=2e-6, atol=1e-12, err_msg=what)


@pytest.mark.parametrize("route", [None, "blocked", "wide", "gemm"])
@pytest.mark.parametrize("xs, ws, opts", SHAPES)
def test_stats_against_the_reference(isa: str, rng: np.random.Generator,
                                     monkeypatch: pytest.MonkeyPatch, route: str | None,
                                     xs: tuple[int, ...], ws: tuple[int, ...],
                                     opts: dict[str, Any]) -> None:
    if route is None:
        monkeypatch.delenv(ROUTE, raising=False)
    else:
        monkeypatch.setenv(ROUTE, route)
    x, w, b = _data(rng, xs, ws)
    y, mean, var = ops.conv2d_stats(x, w, b, **opts)
    np.testing.assert_array_equal(y, ops.conv2d(x, w, b, **opts))  # the same forward, same bits
    _check_stats(y, mean, var, f"{isa} {route} {xs} {ws}")
    _, mean_r, var_r = ref.conv2d_stats(x.astype(np.float64), w.astype(np.float64),
                                        b.astype(np.float64), **opts)
    np.testing.assert_allclose(mean, mean_r, atol=1e-4 * (1 + np.abs(mean_r).max()))
    np.testing.assert_allclose(var, var_r, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("route", ["blocked", "gemm"])
def test_large_mean_keeps_float32_accuracy(isa: str, rng: np.random.Generator,
                                           monkeypatch: pytest.MonkeyPatch, route: str) -> None:
    """|mean| = 1e3 * std: E[y^2] - E[y]^2 in float32 would lose every digit of the variance;
    each chunk's centred squares keep it to float32 rounding of y itself."""
    monkeypatch.setenv(ROUTE, route)
    x, w, b = _data(rng, (2, 16, 12, 12), (16, 16, 3, 3))
    w *= np.float32(1.0 / 12.0)  # y's spread ~1
    b = np.full(16, 1.0e3, np.float32) * np.where(np.arange(16) % 2, 1, -1).astype(np.float32)
    y, mean, var = ops.conv2d_stats(x, w, b, padding=1)
    rm, rv = _ref_stats(y)
    assert np.abs(rm).min() > 500 * np.sqrt(rv).max()  # the case asked for
    np.testing.assert_allclose(var, rv, rtol=1e-5)
    np.testing.assert_allclose(mean, rm, rtol=1e-9)


@pytest.mark.parametrize("route", [None, "blocked", "wide", "gemm"])
@pytest.mark.parametrize("xs, ws", [((1, 8, 128, 128), (8, 8, 3, 3)),
                                    ((3, 16, 20, 20), (32, 16, 3, 3))])
def test_bit_identical_for_any_thread_count(rng: np.random.Generator,
                                            monkeypatch: pytest.MonkeyPatch, route: str | None,
                                            xs: tuple[int, ...], ws: tuple[int, ...]) -> None:
    """The blocked form's band depends on the thread count (N = 1, 128 x 128: 32 rows for one
    thread, 16 for two, 8-row chunks); the chunks and their combine do not."""
    if route is not None:
        monkeypatch.setenv(ROUTE, route)
    x, w, b = _data(rng, xs, ws)
    outs = []
    for t in (1, 2):
        fastcnn.set_num_threads(t)
        outs.append(ops.conv2d_stats(x, w, b, padding=1))
    for a, c in zip(outs[0], outs[1], strict=True):
        np.testing.assert_array_equal(a, c)


def test_empty_batch_gives_nan() -> None:
    y, mean, var = ops.conv2d_stats(np.zeros((0, 2, 4, 4), np.float32),
                                    np.ones((3, 2, 3, 3), np.float32))
    assert y.shape == (0, 3, 2, 2) and np.isnan(mean).all() and np.isnan(var).all()


def test_conv2d_stats_checks_its_arguments() -> None:
    x, w = np.ones((1, 2, 4, 4), np.float32), np.ones((3, 2, 3, 3), np.float32)
    with pytest.raises(TypeError, match="conv2d_stats: x has dtype float64"):
        ops.conv2d_stats(x.astype(np.float64), w)
    with pytest.raises(ValueError, match=r"conv2d: w has shape \(3, 5, 3, 3\)"):
        ops.conv2d_stats(x, np.ones((3, 5, 3, 3), np.float32))


# -- batch_norm with given statistics ------------------------------------------------------------


@pytest.mark.parametrize("relu", [False, True])
def test_batch_norm_with_given_stats(isa: str, rng: np.random.Generator, relu: bool) -> None:
    x, w, b = _data(rng, (3, 8, 7, 9), (10, 8, 3, 3), offset=50.0)
    y, mean, var = ops.conv2d_stats(x, w, b, padding="same")
    g, beta = rng.standard_normal(10).astype(np.float32), rng.standard_normal(10).astype(
        np.float32)
    rm, rv = rng.standard_normal(10).astype(np.float32), np.ones(10, np.float32)
    rm2, rv2, rm3, rv3 = rm.copy(), rv.copy(), rm.copy(), rv.copy()
    out, m_out, is_out = ops.batch_norm(y, g, beta, rm, rv, training=True, momentum=0.1,
                                        eps=1e-3, relu=relu, batch_stats=(mean, var))
    e_out, _, e_is = ref.batch_norm(y, g, beta, rm2, rv2, training=True, momentum=0.1,
                                      eps=1e-3, relu=relu, batch_stats=(mean, var))
    np.testing.assert_allclose(out, e_out, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(m_out, mean.astype(np.float32))
    np.testing.assert_allclose(is_out, e_is, rtol=1e-6)
    np.testing.assert_allclose(rm, rm2, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(rv, rv2, rtol=1e-6)
    # against batch_norm's own statistics: the same normalisation to float32 rounding
    own, o_m, o_is = ops.batch_norm(y, g, beta, rm3, rv3, training=True, momentum=0.1, eps=1e-3,
                                    relu=relu)
    np.testing.assert_allclose(out, own, rtol=1e-5, atol=2e-5)
    np.testing.assert_allclose(rm, rm3, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(rv, rv3, rtol=1e-6)
    np.testing.assert_allclose(m_out, o_m, rtol=1e-6)
    np.testing.assert_allclose(is_out, o_is, rtol=1e-6)


def test_batch_norm_given_stats_errors() -> None:
    x = np.ones((2, 3, 4, 4), np.float32)
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    good = (np.zeros(3), np.ones(3))
    for mod in (ops, ref):
        with pytest.raises(ValueError, match=r"batch_stats.*training=True"):
            mod.batch_norm(x, None, None, rm, rv, training=False, batch_stats=good)
        with pytest.raises(TypeError, match="batch_stats must be a pair"):
            mod.batch_norm(x, None, None, rm, rv, training=True, batch_stats=np.zeros(3))
        with pytest.raises(ValueError, match=r"3 channels; expected \(3,\)"):
            mod.batch_norm(x, None, None, rm, rv, training=True,
                           batch_stats=(np.zeros(4), np.ones(4)))
        with pytest.raises(ValueError, match="negative"):
            mod.batch_norm(x, None, None, rm, rv, training=True,
                           batch_stats=(np.zeros(3), -np.ones(3)))
    with pytest.raises(TypeError, match="float64"):
        ops.batch_norm(x, None, None, rm, rv, training=True,
                       batch_stats=(np.zeros(3, np.int64), np.ones(3)))


# -- the models -----------------------------------------------------------------------------------


def _count_stats_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = ops.conv2d_stats

    def counted(*a: Any, **k: Any) -> Any:
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(ops, "conv2d_stats", counted)
    return calls


def _step(model: Any, x: np.ndarray, y: np.ndarray) -> float:
    return float(model.train_on_batch(x, y))


def _moving(model: Any) -> list[np.ndarray]:
    return [lay.params[k].copy() for lay in model.layers
            if isinstance(lay, L.BatchNormalization) for k in ("moving_mean", "moving_variance")]


def test_resnet20_step_fused_vs_unfused(monkeypatch: pytest.MonkeyPatch,
                                        rng: np.random.Generator) -> None:
    x = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, 2)
    runs = []
    for fuse in ("1", "0"):
        monkeypatch.setenv(FUSE, fuse)
        calls = _count_stats_calls(monkeypatch)
        model = resnet(20, seed=3)
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
        losses = [_step(model, x, y) for _ in range(2)]
        runs.append((losses, model.get_weights(), _moving(model), len(calls)))
    (lf, wf, mf, nf), (lu, wu, mu, nu) = runs
    assert nf == 2 * 13 and nu == 0  # the 13 Conv -> BN pairs with >= 16x16 outputs, 2 steps
    # The first loss is a forward of the same weights: float32 rounding only. After a step the
    # network (batch 2: BN's backward divides by small spreads) amplifies rounding: measured,
    # fused vs unfused differ by 1.4e-4 in a weight and 4.6e-5 in the second loss, exactly as
    # much as the unfused step does from itself on an input moved by 1 ulp.
    np.testing.assert_allclose(lf[0], lu[0], rtol=1e-6)
    np.testing.assert_allclose(lf, lu, rtol=1e-4)
    for a, b in zip(mf, mu, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    for a, b in zip(wf, wu, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-3)


def _stack(conv_act: str | None = None, bn_trainable: bool = True, axis: int = 1) -> Any:
    model = fastcnn.Sequential([
        L.Conv2D(8, 3, padding="same", activation=conv_act),
        L.BatchNormalization(axis=axis, trainable=bn_trainable),
        L.Activation("relu"),
        L.Conv2D(6, 3, padding=(1, 2), use_bias=False),  # 16 x 18
        L.BatchNormalization(),
        L.Conv2D(4, 3, strides=2),  # 8 x 9: a plane too small to pay, unfused
        L.BatchNormalization(),
        L.GlobalAveragePooling2D(),
        L.Dense(4, activation="softmax"),
    ], input_shape=(3, 16, 16), seed=1)
    # SGD: Adam would turn the rounding noise of the conv bias' gradient (0 before a BN, in
    # exact arithmetic) into whole steps of lr, fused or not
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    return model


@pytest.mark.parametrize("kw, fused", [({}, 2), ({"axis": -3}, 2), ({"conv_act": "relu"}, 1),
                                       ({"bn_trainable": False}, 1)])
def test_sequential_plans_the_pairs(monkeypatch: pytest.MonkeyPatch, rng: np.random.Generator,
                                    kw: dict[str, Any], fused: int, tmp_path: Any) -> None:
    x = rng.standard_normal((5, 3, 16, 16)).astype(np.float32)
    y = rng.integers(0, 4, 5)
    runs = []
    for fuse in ("1", "0"):
        monkeypatch.setenv(FUSE, fuse)
        calls = _count_stats_calls(monkeypatch)
        model = _stack(**kw)
        losses = [_step(model, x, y) for _ in range(2)]
        runs.append((model, losses, _moving(model), len(calls)))
    (mf, lf, sf, nf), (mu, lu, su, nu) = runs
    assert nf == 2 * fused and nu == 0
    np.testing.assert_allclose(lf, lu, rtol=1e-5)
    for a, b in zip(sf, su, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mf.predict(x, verbose=0), mu.predict(x, verbose=0), rtol=1e-4,
                               atol=1e-6)
    if not kw:  # save / load of a model trained fused
        path = tmp_path / "m.npz"
        mf.save(path)
        back = fastcnn.load_model(path)
        np.testing.assert_array_equal(back.predict(x, verbose=0), mf.predict(x, verbose=0))


def test_functional_fuses_only_a_conv_read_once(monkeypatch: pytest.MonkeyPatch,
                                                rng: np.random.Generator) -> None:
    def build() -> Any:
        inp = fastcnn.Input((4, 16, 16))
        a = L.Conv2D(4, 3, padding="same")(inp)
        t = L.BatchNormalization()(a)  # a is also read by the Add: unfused
        u = L.BatchNormalization()(L.Conv2D(4, 3, padding="same")(t))  # fused
        out = L.Dense(3, activation="softmax")(L.GlobalAveragePooling2D()(L.Add()([a, u])))
        return fastcnn.Model(inp, out, seed=2)

    x = rng.standard_normal((4, 4, 16, 16)).astype(np.float32)
    y = rng.integers(0, 3, 4)
    losses = []
    for fuse in ("1", "0"):
        monkeypatch.setenv(FUSE, fuse)
        calls = _count_stats_calls(monkeypatch)
        model = build()
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
        losses.append([_step(model, x, y) for _ in range(2)])
        assert len(calls) == (2 if fuse == "1" else 0)
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)
