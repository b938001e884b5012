"""Optimizers (against torch.optim when torch is installed, closed forms otherwise),
learning-rate schedules, optimizer state."""

from __future__ import annotations

import math

import numpy as np
import pytest

import fastcnn as fc
from fastcnn import layers as L
from fastcnn import optimizers as O

SHAPES = [(3, 4), (5,), (2, 1, 3, 3)]


def _params(seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(s).astype(np.float32), np.zeros(s, np.float32)) for s in SHAPES]


def _grads(step: int, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed * 1000 + step)
    return [rng.standard_normal(s).astype(np.float32) for s in SHAPES]


CASES = [
    ("SGD", {"learning_rate": 0.1}, {"lr": 0.1}),
    ("SGD", {"learning_rate": 0.1, "momentum": 0.9}, {"lr": 0.1, "momentum": 0.9}),
    ("SGD", {"learning_rate": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 0.01},
     {"lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 0.01}),
    ("Adam", {"learning_rate": 0.01}, {"lr": 0.01, "eps": 1e-7}),
    ("Adam", {"learning_rate": 0.01, "beta_1": 0.8, "beta_2": 0.99, "weight_decay": 0.1},
     {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-7, "weight_decay": 0.1}),
    ("AdamW", {"learning_rate": 0.01, "weight_decay": 0.1},
     {"lr": 0.01, "eps": 1e-7, "weight_decay": 0.1}),
    ("RMSprop", {"learning_rate": 0.01}, {"lr": 0.01, "alpha": 0.9, "eps": 1e-7}),
    ("RMSprop", {"learning_rate": 0.01, "momentum": 0.5, "centered": True, "weight_decay": 0.01},
     {"lr": 0.01, "alpha": 0.9, "eps": 1e-7, "momentum": 0.5, "centered": True,
      "weight_decay": 0.01}),
]


@pytest.mark.parametrize(("name", "ours", "theirs"), CASES)
def test_matches_torch_optim(name, ours, theirs):
    torch = pytest.importorskip("torch")
    params = _params()
    tparams = [torch.tensor(p.copy(), requires_grad=True) for p, _ in params]
    opt = getattr(O, name)(**ours)
    topt = getattr(torch.optim, name)(tparams, **theirs)
    for step in range(6):
        for (_, g), tp, gs in zip(params, tparams, _grads(step), strict=True):
            g[...] = gs
            tp.grad = torch.tensor(gs)
        opt.step(params)
        topt.step()
    for (p, _), tp in zip(params, tparams, strict=True):
        np.testing.assert_allclose(p, tp.detach().numpy(), rtol=2e-5, atol=2e-6)
    assert opt.iterations == 6


def test_sgd_and_adam_closed_forms():
    (p, g), = [(np.array([1.0, -2.0], np.float32), np.array([0.5, -4.0], np.float32))]
    O.SGD(learning_rate=0.1).step([(p, g)])
    np.testing.assert_allclose(p, [0.95, -1.6], rtol=1e-6)
    # Adam's first step moves each weight by lr * g / (|g| + eps / sqrt(1 - beta_2)) ~ lr sign(g)
    p = np.array([1.0, -2.0], np.float32)
    O.Adam(learning_rate=0.01).step([(p, g)])
    np.testing.assert_allclose(p, [0.99, -1.99], rtol=1e-5)
    # AdamW decays the weight first: p * (1 - lr wd)
    p = np.array([1.0], np.float32)
    O.AdamW(learning_rate=0.1, weight_decay=0.5).step([(p, np.zeros(1, np.float32))])
    np.testing.assert_allclose(p, [0.95], rtol=1e-6)


def test_zero_grad_and_model_parameters():
    model = fc.Sequential([L.Dense(3)], input_shape=(2,), seed=0)
    opt = O.SGD(learning_rate=1.0)
    for _, g in model.parameters():
        g[...] = 1.0
    before = [p.copy() for p, _ in model.parameters()]
    opt.step(model)
    for (p, _), b in zip(model.parameters(), before, strict=True):
        np.testing.assert_allclose(p, b - 1.0)
    opt.zero_grad(model)
    assert all(not g.any() for _, g in model.parameters())
    assert set(opt.state) == {"dense/kernel", "dense/bias"}


def test_frozen_layers_are_not_updated():
    model = fc.Sequential([L.Dense(3, trainable=False), L.Dense(2)], input_shape=(2,), seed=0)
    frozen = model.layers[0].get_weights()
    model.compile(O.SGD(learning_rate=0.5), "mse")
    model.fit(np.ones((4, 2)), np.zeros((4, 2)), epochs=2, verbose=0)
    for a, b in zip(frozen, model.layers[0].get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert set(model.optimizer.state) == {"dense_1/kernel", "dense_1/bias"}


def test_state_roundtrip_continues_identically():
    a, b = _params(), _params()
    opt = O.Adam(learning_rate=0.01)
    for step in range(3):
        for (_, g), gs in zip(a, _grads(step), strict=True):
            g[...] = gs
        opt.step(a)
    state, cfg = opt.get_state(), O.serialize(opt)
    opt2 = O.get(cfg)
    opt2.set_state(state)
    for (pb, _), (pa, _) in zip(b, a, strict=True):
        pb[...] = pa
    for step in range(3, 5):
        for (_, ga), (_, gb), gs in zip(a, b, _grads(step), strict=True):
            ga[...] = gs
            gb[...] = gs
        opt.step(a)
        opt2.step(b)
    for (pa, _), (pb, _) in zip(a, b, strict=True):
        np.testing.assert_array_equal(pa, pb)
    assert opt2.iterations == 5


def test_set_state_rejects_bad_shapes_without_change():
    opt = O.Adam()
    with pytest.raises(ValueError, match="shape"):
        opt.set_state({"iterations": np.array(1), "m/w": np.zeros(3, np.float32)},
                      expected={"w": (4,)})
    assert opt.state == {} and opt.iterations == 0


def test_schedules():
    s = O.StepDecay(1.0, decay_steps=10, decay_rate=0.5)
    assert [s(0), s(9), s(10), s(25)] == [1.0, 1.0, 0.5, 0.25]
    e = O.ExponentialDecay(0.1, decay_steps=100, decay_rate=0.5)
    assert math.isclose(e(50), 0.1 * 0.5**0.5)
    assert math.isclose(O.ExponentialDecay(0.1, 100, 0.5, staircase=True)(150), 0.05)
    c = O.CosineDecay(1.0, decay_steps=10, alpha=0.1)
    assert c(0) == 1.0 and math.isclose(c(10), 0.1) and math.isclose(c(100), 0.1)
    assert math.isclose(c(5), 0.1 + 0.9 * 0.5)
    w = O.CosineDecay(0.0, decay_steps=10, warmup_target=1.0, warmup_steps=5)
    assert math.isclose(w(2), 0.4) and math.isclose(w(5), 1.0)
    assert O.schedules.ExponentialDecay is O.ExponentialDecay


def test_optimizer_follows_schedule_per_step():
    opt = O.SGD(learning_rate=O.StepDecay(1.0, decay_steps=2, decay_rate=0.1))
    p, g = np.zeros(1, np.float32), np.ones(1, np.float32)
    seen = []
    for _ in range(4):
        seen.append(opt.learning_rate)
        opt.step([(p, g)])
    assert seen == pytest.approx([1.0, 1.0, 0.1, 0.1])
    np.testing.assert_allclose(p, [-2.2], rtol=1e-6)
    cfg = O.serialize(opt)
    assert cfg["config"]["learning_rate"]["class_name"] == "StepDecay"
    assert O.get(cfg).learning_rate == 1.0


def test_get_by_name_and_errors():
    assert isinstance(O.get("adam"), O.Adam) and isinstance(O.get("SGD"), O.SGD)
    assert isinstance(O.get("rmsprop"), O.RMSprop) and isinstance(O.get("adamw"), O.AdamW)
    with pytest.raises(ValueError, match="unknown optimizer"):
        O.get("adagrad")
    with pytest.raises(ValueError, match="learning_rate"):
        O.SGD(learning_rate=-1.0)
    with pytest.raises(ValueError, match="nesterov"):
        O.SGD(nesterov=True)


def _numpy_sgd(p, g, st, lr, momentum, nesterov, wd):
    """The SGD formula in NumPy float32, operation by operation (the compiled update's spec)."""
    if wd:
        g = g + np.float32(wd) * p
    if momentum:
        if "buf" not in st:
            buf = st["buf"] = np.array(g, dtype=np.float32, copy=True)
        else:
            buf = st["buf"]
            buf *= np.float32(momentum)
            buf += g
        g = g + np.float32(momentum) * buf if nesterov else buf
    p -= np.float32(lr) * g


def _numpy_adam(p, g, st, lr, t, b1_, b2_, eps, wd, decoupled):
    if wd:
        if decoupled:
            p *= np.float32(1.0 - lr * wd)
        else:
            g = g + np.float32(wd) * p
    b1, b2 = np.float32(b1_), np.float32(b2_)
    m = st.setdefault("m", np.zeros_like(p))
    v = st.setdefault("v", np.zeros_like(p))
    m *= b1
    m += (np.float32(1) - b1) * g
    v *= b2
    v += (np.float32(1) - b2) * (g * g)
    denom = np.sqrt(v) / np.float32(math.sqrt(1.0 - b2_ ** t))
    denom += np.float32(eps)
    p -= np.float32(lr / (1.0 - b1_ ** t)) * (m / denom)


@pytest.mark.parametrize("cfg", [
    ("SGD", {"learning_rate": 0.1}),
    ("SGD", {"learning_rate": 0.1, "momentum": 0.9}),
    ("SGD", {"learning_rate": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 0.01}),
    ("Adam", {"learning_rate": 0.01}),
    ("Adam", {"learning_rate": 0.01, "beta_1": 0.8, "beta_2": 0.99, "weight_decay": 0.1}),
    ("AdamW", {"learning_rate": 0.003, "weight_decay": 0.1, "epsilon": 1e-5}),
], ids=lambda c: f"{c[0]}-{len(c[1])}")
def test_compiled_updates_are_the_numpy_formula_bit_for_bit(cfg: tuple[str, dict]) -> None:
    """SGD / Adam / AdamW steps run in one compiled pass (csrc/cpu/optim.cpp, the twin of the
    CUDA update): bit-identical to the NumPy formula, step after step; specials propagate."""
    name, kw = cfg
    opt = getattr(O, name)(**kw)
    rng = np.random.default_rng(3)
    shapes = [(1000,), (7, 13), (3, 1, 3, 3), (1,)]
    ps = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    ps[0][:4] = [np.inf, -np.inf, np.nan, 0.0]
    mine = [(p.copy(), np.zeros_like(p)) for p in ps]
    ref = [p.copy() for p in ps]
    states: list[dict] = [{} for _ in ps]
    for t in range(1, 5):
        for i, s in enumerate(shapes):
            g = rng.standard_normal(s).astype(np.float32)
            mine[i][1][...] = g
            lr = kw["learning_rate"]
            with np.errstate(all="ignore"):  # inf - inf in the reference is the point
                _reference_step(name, kw, ref[i], g, states[i], lr, t)
        opt.step(mine)
        for (p, _), r in zip(mine, ref, strict=True):
            assert np.array_equal(p.view(np.uint32), r.view(np.uint32)) or \
                np.array_equal(p, r, equal_nan=True), (name, t)


def _reference_step(name: str, kw: dict, p: np.ndarray, g: np.ndarray, st: dict, lr: float,
                    t: int) -> None:
    if name == "SGD":
        _numpy_sgd(p, g.copy(), st, lr, kw.get("momentum", 0.0), kw.get("nesterov", False),
                   kw.get("weight_decay", 0.0))
    else:
        _numpy_adam(p, g.copy(), st, lr, t, kw.get("beta_1", 0.9), kw.get("beta_2", 0.999),
                    kw.get("epsilon", 1e-7), kw.get("weight_decay", 0.0), name == "AdamW")


def test_compiled_update_argument_errors() -> None:
    p, g = np.zeros(4, np.float32), np.ones(4, np.float32)
    with pytest.raises(ValueError, match="in place"):
        fc._cpu.sgd_update(np.zeros((4, 2), np.float32)[:, 0], g, None, lr=0.1, momentum=0.0,
                           nesterov=False, weight_decay=0.0, first=False)
    with pytest.raises(ValueError, match="momentum buffer"):
        fc._cpu.sgd_update(p, g, None, lr=0.1, momentum=0.9, nesterov=False, weight_decay=0.0,
                           first=True)
    with pytest.raises(ValueError, match="elements"):
        fc._cpu.sgd_update(p, g[:3], None, lr=0.1, momentum=0.0, nesterov=False,
                           weight_decay=0.0, first=False)
    ro = np.zeros(4, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        fc._cpu.sgd_update(ro, g, None, lr=0.1, momentum=0.0, nesterov=False, weight_decay=0.0,
                           first=False)
    with pytest.raises(TypeError, match="float32"):
        fc._cpu.sgd_update(p.astype(np.float64), g, None, lr=0.1, momentum=0.0,
                           nesterov=False, weight_decay=0.0, first=False)
