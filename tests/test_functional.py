"""The functional API: fastcnn.Input, layers called on symbolic tensors, fastcnn.Model for a DAG,
Add and Concatenate.

Gradients of whole graphs are checked against float64 central finite differences of the same
graph run with fastcnn.reference in float64 (:func:`_reference_forward`), and the residual block
against the same network written by hand with fastcnn.ops. Fan-out sums, shared layers, the
fusions inside a graph, summary's "Connected to" column and the errors are tested here; files,
ONNX, fit and PyTorch in test_functional_io.py.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastcnn as fc
from fastcnn import layers as L
from fastcnn import ops
from fastcnn import reference as ref

# --------------------------------------------------------------------------------------------
# helpers: the graph in float64 with the reference ops, and finite differences


def _reference_forward(model: fc.Model, x: np.ndarray,
                       weights: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """``model``'s inference output computed in float64 with :mod:`fastcnn.reference`, node by
    node, from ``weights`` (``"<layer>/<param>"`` -> float64 array; the model's by default)."""
    w = weights or {k: v.astype(np.float64) for k, v in model._all_weights().items()}
    nodes, out = model._nodes()
    vals: list = [None] * len(nodes)
    for i, (layer, ins) in enumerate(nodes):
        if layer is None:
            vals[i] = x.astype(np.float64)
            continue
        a = [vals[j] for j in ins]
        name = layer.name
        if isinstance(layer, L.Conv2D):
            y = ref.conv2d(a[0], w[f"{name}/kernel"], w.get(f"{name}/bias"),
                           stride=layer.strides, padding=layer._pad_arg(),
                           dilation=layer.dilation_rate, groups=layer.groups)
        elif isinstance(layer, L.Dense):
            y = ref.linear(a[0], w[f"{name}/kernel"], w.get(f"{name}/bias"))
        elif isinstance(layer, L.MaxPool2D):
            assert layer._explicit_pad is None
            y = ref.max_pool2d(a[0], layer.pool_size, **layer._pool_kwargs())
        elif isinstance(layer, L.Flatten):
            y = a[0].reshape(a[0].shape[0], -1)
        elif isinstance(layer, L.Add):
            y = a[0] + a[1]
            for extra in a[2:]:
                y = y + extra
        elif isinstance(layer, L.Concatenate):
            y = np.concatenate(a, axis=layer.axis)
        elif isinstance(layer, L.Activation | L.Dense | L.Conv2D):
            y = a[0]
        else:
            raise AssertionError(type(layer))
        act = getattr(layer, "activation", None)
        if act == "relu":
            y = np.maximum(y, 0.0)
        elif act == "sigmoid":
            y = 1.0 / (1.0 + np.exp(-y))
        elif act is not None:
            raise AssertionError(act)
        vals[i] = y
    return vals[out]


def _check_gradients(model: fc.Model, x: np.ndarray, rng: np.random.Generator,
                     per_weight: int = 6, rtol: float = 2e-3) -> None:
    """The model's analytic gradients (float32) of ``sum(out * r)`` against float64 central
    differences of :func:`_reference_forward`, for ``per_weight`` entries of every weight and
    of x."""
    out = model(x, training=True)
    r = rng.standard_normal(out.shape)
    np.testing.assert_allclose(out, _reference_forward(model, x), rtol=1e-4, atol=1e-5)
    dx = model.backward(r.astype(np.float32))
    w64 = {k: v.astype(np.float64) for k, v in model._all_weights().items()}
    grads = {f"{lay.name}/{k}": lay.grads[k] for lay in model.layers for k in lay.params}
    eps = 1e-6

    def loss(weights: dict[str, np.ndarray], xx: np.ndarray) -> float:
        return float((_reference_forward(model, xx, weights) * r).sum())

    for key, p in w64.items():
        for flat in rng.choice(p.size, size=min(per_weight, p.size), replace=False):
            idx = np.unravel_index(flat, p.shape)
            plus, minus = dict(w64), dict(w64)
            plus[key], minus[key] = p.copy(), p.copy()
            plus[key][idx] += eps
            minus[key][idx] -= eps
            fd = (loss(plus, x) - loss(minus, x)) / (2 * eps)
            np.testing.assert_allclose(grads[key][idx], fd, rtol=rtol, atol=1e-4,
                                       err_msg=f"{key}{idx}")
    x64 = x.astype(np.float64)
    for flat in rng.choice(x.size, size=per_weight, replace=False):
        idx = np.unravel_index(flat, x.shape)
        xp, xm = x64.copy(), x64.copy()
        xp[idx] += eps
        xm[idx] -= eps
        fd = (loss(w64, xp) - loss(w64, xm)) / (2 * eps)
        np.testing.assert_allclose(dx[idx], fd, rtol=rtol, atol=1e-4, err_msg=f"x{idx}")


def _residual(channels: int = 3, seed: int = 0, hw: int = 6) -> fc.Model:
    """Conv2D -> ReLU -> Conv2D, Add with the skip, ReLU (the He et al. basic block)."""
    x = fc.Input((channels, hw, hw))
    h = L.Conv2D(channels, 3, padding="same")(x)
    h = L.ReLU()(h)
    h = L.Conv2D(channels, 3, padding="same")(h)
    y = L.ReLU()(L.Add()([h, x]))
    return fc.Model(x, y, seed=seed)


# --------------------------------------------------------------------------------------------
# building


def test_input_and_symbolic_tensors() -> None:
    x = fc.Input((3, 8, 8))
    assert isinstance(x, L.SymbolicTensor) and x.shape == (3, 8, 8)
    assert fc.Input(5).shape == (5,)
    h = L.Conv2D(4, 3)(x)
    assert h.shape == (4, 6, 6) and "(None, 4, 6, 6)" in repr(h)
    with pytest.raises(TypeError, match="holds no data"):
        np.asarray(h)
    for bad in ((3, 0, 8), (), "abc", (3.5, 2), None):
        with pytest.raises(ValueError, match="per-sample shape"):
            fc.Input(bad)


def test_residual_block_structure_and_forward(rng: np.random.Generator) -> None:
    m = _residual()
    assert isinstance(m, fc.Model) and isinstance(m, fc.Functional)
    assert [type(lay).__name__ for lay in m.layers] == [
        "InputLayer", "Conv2D", "ReLU", "Conv2D", "Add", "ReLU"]
    assert [lay.name for lay in m.layers] == [
        "input_layer", "conv2d", "relu", "conv2d_1", "add", "relu_1"]
    assert m.input_shape == (3, 6, 6) and m.output_shape == (3, 6, 6)
    assert m.get_layer("add") is m.layers[4] and m.get_layer(index=0) is m.layers[0]
    assert m.count_params() == 2 * (3 * 3 * 9 + 3)
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    k1, b1, k2, b2 = m.get_weights()
    h = ops.relu(ops.conv2d(x, k1, b1, padding="same"))
    want = ops.relu(ops.conv2d(h, k2, b2, padding="same") + x)
    np.testing.assert_array_equal(m(x), want)
    np.testing.assert_array_equal(m.predict(x, batch_size=1), want)


def test_same_seed_same_weights_and_sequential_is_a_model() -> None:
    a, b = _residual(seed=3), _residual(seed=3)
    for p, q in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(p, q)
    assert any(not np.array_equal(p, q) for p, q in
               zip(a.get_weights(), _residual(seed=4).get_weights(), strict=True))
    s = fc.Sequential([L.Dense(2)])
    assert isinstance(s, fc.Model) and not isinstance(s, fc.Functional)
    assert isinstance(fc.models.seeds_cnn(), fc.Model)


def test_calling_layers_on_arrays_still_works(rng: np.random.Generator) -> None:
    a = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    b = rng.standard_normal((2, 2, 4, 4)).astype(np.float32)
    np.testing.assert_array_equal(L.Add()([a, a]), a + a)
    np.testing.assert_array_equal(L.Concatenate()([a, b]), np.concatenate([a, b], axis=1))
    np.testing.assert_array_equal(L.ReLU()(a), np.maximum(a, 0))


# --------------------------------------------------------------------------------------------
# gradients


def test_residual_block_gradients_match_finite_differences(rng: np.random.Generator) -> None:
    m = _residual()
    _check_gradients(m, rng.standard_normal((2, 3, 6, 6)).astype(np.float32), rng)


def test_residual_block_gradients_match_the_network_written_with_ops(
        rng: np.random.Generator) -> None:
    m = _residual(channels=4, hw=7)
    x = rng.standard_normal((3, 4, 7, 7)).astype(np.float32)
    dy = rng.standard_normal((3, 4, 7, 7)).astype(np.float32)
    y = m(x, training=True)
    dx = m.backward(dy)
    k1, b1, k2, b2 = m.get_weights()
    a1 = ops.relu(ops.conv2d(x, k1, b1, padding="same"))
    s = ops.conv2d(a1, k2, b2, padding="same") + x
    out = ops.relu(s)
    np.testing.assert_array_equal(y, out)
    ds = ops.relu_backward(dy, out)
    da1, dk2, db2 = ops.conv2d_backward(ds, a1, k2, padding="same")
    dz1 = ops.relu_backward(da1, a1)
    dx1, dk1, db1 = ops.conv2d_backward(dz1, x, k1, padding="same")
    got = [lay.grads[k] for lay in m.layers for k in lay.params]
    for g, w in zip(got, [dk1, db1, dk2, db2], strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dx, dx1 + ds, rtol=1e-5, atol=1e-6)


def test_inception_branches_with_concatenate(rng: np.random.Generator) -> None:
    x = fc.Input((3, 6, 6))
    b1 = L.Conv2D(2, 1, activation="relu")(x)
    b2 = L.Conv2D(3, 3, padding="same")(L.Conv2D(2, 1, activation="relu")(x))
    b3 = L.Conv2D(2, 1)(L.MaxPool2D(1)(x))
    y = L.Concatenate()([b1, b2, b3])
    assert y.shape == (7, 6, 6)
    out = L.Dense(4)(L.Flatten()(y))
    m = fc.Model(x, out, seed=1)
    xs = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    _check_gradients(m, xs, rng)


def test_fan_out_into_three_consumers_sums_in_a_fixed_order(rng: np.random.Generator) -> None:
    x = fc.Input((2, 5, 5))
    t = L.Conv2D(3, 3, padding="same")(x)  # t feeds three layers
    a = L.Conv2D(3, 1)(t)
    b = L.ReLU()(t)
    c = L.Conv2D(3, 3, padding="same", activation="sigmoid")(t)
    m = fc.Model(x, L.Add()([a, b, c]), seed=2)
    assert m.get_layer("conv2d")  # the fanned-out tensor's layer
    xs = rng.standard_normal((2, 2, 5, 5)).astype(np.float32)
    _check_gradients(m, xs, rng)
    # the sum into t is (g_a + g_b) + g_c in node order: rebuild it by hand, bitwise
    dy = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    m(xs, training=True)
    m.backward(dy)
    first = [g.copy() for g in (m.get_layer("conv2d").grads["kernel"],)]
    for _ in range(3):  # deterministic
        m(xs, training=True)
        m.backward(dy)
        np.testing.assert_array_equal(m.get_layer("conv2d").grads["kernel"], first[0])
    conv = m.get_layer("conv2d")
    tt = conv.forward(xs)
    ga = ops.conv2d_backward(dy, tt, m.get_layer("conv2d_1").params["kernel"])[0]
    gb = ops.relu_backward(dy, ops.relu(tt))
    c_layer = m.get_layer("conv2d_2")
    c_layer.forward(tt, training=True)
    gc = c_layer.backward(dy)
    gt = (ga + gb) + gc
    want = ops.conv2d_backward(gt, xs, conv.params["kernel"], padding="same")[1]
    np.testing.assert_array_equal(first[0], want)


def test_shared_layer_gets_the_sum_of_its_calls(rng: np.random.Generator) -> None:
    x = fc.Input((4,))
    d = L.Dense(4, activation="sigmoid")
    y = d(d(x))  # the same weights twice
    m = fc.Model(x, L.Dense(3)(y), seed=0)
    assert m.layers.count(d) == 1 and m.count_params() == 20 + 15
    s = m.summary
    lines: list[str] = []
    s(print_fn=lines.append)
    assert any("dense[1][0]" in line for line in lines)  # the second call's tensor
    _check_gradients(m, rng.standard_normal((3, 4)).astype(np.float32), rng)


def test_compute_dx_false_and_frozen_layers(rng: np.random.Generator) -> None:
    m = _residual()
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    dy = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    m(x, training=True)
    m.backward(dy)
    full = [g.copy() for lay in m.layers for g in lay.grads.values()]
    m(x, training=True)
    assert m.backward(dy, compute_dx=False) is None
    for g, w in zip([g for lay in m.layers for g in lay.grads.values()], full, strict=True):
        np.testing.assert_array_equal(g, w)
    m(x, training=True)
    m.backward(dy, accumulate=True)
    np.testing.assert_allclose(m.layers[1].grads["kernel"], 2 * full[0], rtol=1e-6)
    m.layers[1].trainable = False
    before = m.layers[1].get_weights()
    m.compile(fc.optimizers.SGD(0.1), "mse")
    m.train_on_batch(x, dy)
    for a, b in zip(m.layers[1].get_weights(), before, strict=True):
        np.testing.assert_array_equal(a, b)
    assert m.count_params() == 2 * 84
    lines: list[str] = []
    m.summary(print_fn=lines.append)
    assert "Non-trainable params: 84 (336.00 B)" in lines


def test_a_chain_graph_is_bitwise_the_sequential_with_its_fusions(
        rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    """A graph that is a chain trains bitwise like the Sequential of the same layers: the
    Conv2D+ReLU epilogue, the pooled gradient (conv -> max pool, one consumer) and the softmax
    output fused into the cross-entropy all apply."""

    def layers() -> list[L.Layer]:
        return [L.Conv2D(4, 3, activation="relu"), L.MaxPool2D(2), L.Flatten(),
                L.Dense(3, activation="softmax")]

    seq = fc.Sequential(layers(), input_shape=(1, 8, 8), seed=0)
    x = fc.Input((1, 8, 8))
    t = x
    for lay in layers():
        t = lay(t)
    g = fc.Model(x, t, seed=0)
    g.set_weights(seq.get_weights())
    offers: list[int] = []
    real = L.MaxPool2D.offer_pooled_grad

    def spy(self):  # type: ignore[no-untyped-def]
        offer = real(self)
        offers.append(offer is not None)
        return offer

    monkeypatch.setattr(L.MaxPool2D, "offer_pooled_grad", spy)
    for m in (seq, g):
        m.compile(fc.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
        assert m.output_fused
    xs = rng.standard_normal((6, 1, 8, 8)).astype(np.float32)
    ys = rng.integers(0, 3, 6)
    for _ in range(3):
        assert seq.train_on_batch(xs, ys) == g.train_on_batch(xs, ys)
    assert offers == [True] * 6  # both models fused the pooling into the convolution
    for a, b in zip(seq.get_weights(), g.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_no_pooled_gradient_fusion_when_the_conv_output_fans_out(
        rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    x = fc.Input((1, 6, 6))
    c = L.Conv2D(2, 3, padding="same", activation="relu")(x)
    p = L.MaxPool2D(2)(c)
    side = L.MaxPool2D(2)(L.ReLU()(c))  # c has two consumers
    m = fc.Model(x, L.Add()([p, side]), seed=0)
    calls: list[bool] = []
    real = L.MaxPool2D.offer_pooled_grad
    monkeypatch.setattr(L.MaxPool2D, "offer_pooled_grad",
                        lambda self: calls.append(True) or real(self))
    _check_gradients(m, rng.standard_normal((2, 1, 6, 6)).astype(np.float32), rng)
    assert calls == []


# --------------------------------------------------------------------------------------------
# merge layers


def test_add_and_concatenate_shapes_axis_and_messages() -> None:
    a, b = fc.Input((4, 5, 5)), fc.Input((2, 5, 5))
    with pytest.raises(ValueError, match=r"Add.*Inputs have incompatible shapes. Received "
                                         r"shapes \(None, 4, 5, 5\) and \(None, 2, 5, 5\)"):
        L.Add()([a, b])
    with pytest.raises(ValueError, match="list of at least 2 inputs"):
        L.Add()(a)
    with pytest.raises(ValueError, match=r"at least 2 inputs\. Got 1"):
        L.Add()([a])
    assert L.Concatenate()([a, b]).shape == (6, 5, 5)  # axis=1: NCHW channels
    assert L.Concatenate(axis=-1)([a, fc.Input((4, 5, 2))]).shape == (4, 5, 7)
    assert L.Concatenate(axis=-3)([a, b]).shape == (6, 5, 5)
    with pytest.raises(ValueError, match="requires inputs with matching shapes except for the "
                                         "concatenation axis"):
        L.Concatenate(axis=2)([a, b])
    with pytest.raises(ValueError, match="batch axis"):
        L.Concatenate(axis=0)
    with pytest.raises(ValueError, match="out of range"):
        L.Concatenate(axis=4)([a, b])
    with pytest.raises(TypeError, match="takes one tensor, got a list"):
        L.ReLU()([a, b])
    with pytest.raises(ValueError, match="list of inputs"):
        fc.Sequential([L.Add()], input_shape=(3,))


def test_concatenate_backward_slices_per_input(rng: np.random.Generator) -> None:
    a = rng.standard_normal((2, 3, 4)).astype(np.float32)
    b = rng.standard_normal((2, 1, 4)).astype(np.float32)
    cat = L.Concatenate(axis=1)
    y = cat.forward([a, b], training=True)
    da, db = cat.backward(y * 2)
    np.testing.assert_array_equal(da, 2 * a)
    np.testing.assert_array_equal(db, 2 * b)
    assert da.flags.c_contiguous and db.flags.c_contiguous
    add = L.Add()
    add.forward([a, a, a], training=True)
    assert all(g is y for g in add.backward(y))


# --------------------------------------------------------------------------------------------
# summary


def test_summary_has_keras_connected_to_column() -> None:
    m = _residual()
    lines: list[str] = []
    m.summary(print_fn=lines.append)
    text = "\n".join(lines)
    header = next(line for line in lines if line.startswith("Layer (type)"))
    assert header.split()[-2:] == ["Connected", "to"]
    row = {line.split()[0]: line for line in lines if line[:1].isalpha() and " (" in line}
    assert row["input_layer"].rstrip().endswith("-")
    assert row["conv2d"].rstrip().endswith("input_layer[0][0]")
    add = lines.index(next(line for line in lines if line.startswith("add (Add)")))
    assert lines[add].rstrip().endswith("conv2d_1[0][0],")
    assert lines[add + 1].strip() == "input_layer[0][0]"
    assert "Total params: 168" in text
    seq_lines: list[str] = []
    fc.models.seeds_cnn().summary(print_fn=seq_lines.append)
    assert "Connected to" not in "\n".join(seq_lines)


# --------------------------------------------------------------------------------------------
# errors


def test_errors_name_the_layer() -> None:
    x = fc.Input((3, 8, 8))
    conv = L.Conv2D(4, 3, padding="same", name="shared_conv")
    conv(x)
    with pytest.raises(ValueError, match=r"Conv2D\('shared_conv'\) is called on \(None, 3, 6, "
                                         r"6\) but was built for \(None, 3, 8, 8\)"):
        conv(fc.Input((3, 6, 6)))
    with pytest.raises(ValueError, match=r"Dense.*add a Flatten.*calling Dense on the output "
                                         r"\(None, 3, 8, 8\) of InputLayer"):
        L.Dense(3)(x)
    m = fc.Model(x, L.Conv2D(2, 3, name="head")(x))
    with pytest.raises(ValueError, match=r"input layer 'input_layer' expects inputs of shape "
                                         r"\(N, 3, 8, 8\), got \(N, 3, 9, 9\)"):
        m(np.zeros((1, 3, 9, 9), np.float32))
    with pytest.raises(ValueError, match="channels-last"):
        m(np.zeros((1, 8, 8, 3), np.float32))


def test_disconnected_graphs_and_bad_inputs() -> None:
    x1, x2 = fc.Input((4,)), fc.Input((4,))
    y = L.Dense(2)(x2)
    with pytest.raises(ValueError, match=r"graph disconnected.*InputLayer"):
        fc.Model(x1, y)
    with pytest.raises(ValueError, match=r"must be a fastcnn\.Input"):
        fc.Model(y, L.Dense(1)(y))
    # several inputs are supported now (tests/test_functional_multi.py); an unused one is not
    assert len(fc.Model([x1, x2], L.Add()([x1, x2])).inputs) == 2
    with pytest.raises(ValueError, match="not used by any output"):
        fc.Model([x1, x2], L.Dense(1)(x1))
    with pytest.raises(TypeError, match="must be a symbolic tensor"):
        fc.Model(x1, np.zeros(3))
    with pytest.raises(TypeError, match="pass inputs and outputs"):
        fc.Model()
    d = L.Dense(2, name="same")
    with pytest.raises(ValueError, match="duplicate layer name 'same'"):
        fc.Model(x1, L.Add()([d(x1), L.Dense(2, name="same")(x1)]))


def test_a_cycle_is_refused() -> None:
    x = fc.Input((4,))
    m = fc.Model(x, L.Dense(4, name="b")(L.Dense(4, name="a")(x)))
    config = m.get_config()
    specs = {s["config"]["name"]: s for s in config["layers"]}
    specs["a"]["inbound_nodes"] = [[["b", 0, 0]]]  # a <- b <- a
    with pytest.raises(ValueError, match=r"not a DAG.*\['a', 'b'\]"):
        fc.Functional.from_config(config)
    # a node whose input is its own output, made by hand
    t = L.Dense(4, name="loop")(x)
    t.node.inputs[0] = t
    with pytest.raises(ValueError, match=r"not a DAG: Dense\('loop'\)"):
        fc.Model(x, t)
    specs["a"]["inbound_nodes"] = [[["nowhere", 0, 0]]]
    with pytest.raises(ValueError, match="'nowhere', which is not a layer"):
        fc.Functional.from_config(config)


def test_backward_needs_a_training_forward_for_shared_layers(rng: np.random.Generator) -> None:
    x = fc.Input((3,))
    d = L.Dense(3)
    m = fc.Model(x, d(d(x)), seed=0)
    xs = rng.standard_normal((2, 3)).astype(np.float32)
    m(xs, training=True)
    m(xs)  # inference drops the caches
    with pytest.raises(RuntimeError, match="needs a preceding forward"):
        m.backward(np.ones((2, 3), np.float32))


# --------------------------------------------------------------------------------------------
# layering (tests/test_architecture.py's rules, for the new modules)


@pytest.mark.parametrize(("lower", "upper"), [
    ("fastcnn.training", "fastcnn.functional"), ("fastcnn.training", "fastcnn.model_base"),
    ("fastcnn.saving", "fastcnn.functional"), ("fastcnn.saving", "fastcnn.model_base"),
    ("fastcnn.onnx", "fastcnn.functional"), ("fastcnn.onnx", "fastcnn.model_base"),
    ("fastcnn.layers", "fastcnn.functional"), ("fastcnn.layers", "fastcnn.model_base"),
    ("fastcnn.model_base", "fastcnn.functional"), ("fastcnn.model_base", "fastcnn.model"),
    ("fastcnn.functional", "fastcnn.model"), ("fastcnn.layers.symbolic", "fastcnn.layers.base"),
])
def test_the_new_modules_keep_the_one_way_dependencies(lower: str, upper: str) -> None:
    from test_architecture import GRAPH, _reaches

    assert lower in GRAPH and upper in GRAPH
    assert not _reaches(lower, upper), f"{lower} reaches {upper}"
