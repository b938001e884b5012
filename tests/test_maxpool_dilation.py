"""MaxPool2D(dilation_rate=...): the layer against ``fastcnn.reference.max_pool2d`` (forward and
backward, "valid" and "same", the ops' ceil_mode path and the explicit -inf pad path) and torch's
``nn.MaxPool2d(dilation=...)``; validation and the summary; from_torch / to_torch, ONNX export
(onnxruntime) and load_onnx, save / load round trips; and a training step of a
Conv2D(relu) -> MaxPool2D(dilation_rate=2) stack, whose backward must not take the fused
conv + pool path (that path has no dilation), against the reference ops.

torch / onnx / onnxruntime tests are skipped without them.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

import fastcnn as fc
from fastcnn import layers as L
from fastcnn import reference as R
from fastcnn._geometry import pair, same_padding

RNG = np.random.default_rng


def _pool(x_shape: tuple[int, ...], pool: Any, strides: Any, padding: str, dil: Any,
          seed: int = 0) -> tuple[L.MaxPool2D, np.ndarray]:
    layer = L.MaxPool2D(pool, strides, padding, dilation_rate=dil)
    layer.build(x_shape[1:], RNG(0))
    return layer, RNG(seed).standard_normal(x_shape).astype(np.float32)


def _reference(x: np.ndarray, dy: np.ndarray | None, pool: Any, strides: Any, padding: str,
               dil: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """y and dx by the reference ops, "same" as TensorFlow's padding of the dilated window,
    applied as an explicit -inf pad (independent of the layer's same_plan)."""
    (kh, kw), (dh, dw) = pair(pool, "p"), pair(dil, "d")
    sh, sw = (kh, kw) if strides is None else pair(strides, "s")
    H, W = x.shape[2:]
    t = l = b = r = 0
    if padding == "same":
        t, b = same_padding(H, kh, sh, dh)
        l, r = same_padding(W, kw, sw, dw)
    xp = np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)), constant_values=-np.inf)
    kw_ = {"stride": (sh, sw), "dilation": (dh, dw)}
    y = R.max_pool2d(xp, (kh, kw), **kw_)
    if dy is None:
        return y, None
    dx = R.max_pool2d_backward(dy, xp, (kh, kw), **kw_)
    return y, dx[:, :, t:t + H, l:l + W]


CASES = list(itertools.product(
    [(2, 9, 10), (3, 12, 7)],       # (C, H, W)
    [2, 3, (2, 3)],                 # pool_size
    [None, 1, 2, (3, 1)],           # strides
    ["valid", "same"],
    [2, (1, 2), (3, 2)],            # dilation_rate
))


@pytest.mark.parametrize(("shape", "pool", "strides", "padding", "dil"), CASES)
def test_forward_and_backward_match_the_reference(shape: tuple[int, int, int], pool: Any,
                                                  strides: Any, padding: str,
                                                  dil: Any) -> None:
    layer, x = _pool((2, *shape), pool, strides, padding, dil)
    y = layer.forward(x, training=True)
    dy = RNG(1).standard_normal(y.shape).astype(np.float32)
    want_y, want_dx = _reference(x, dy, pool, strides, padding, dil)
    assert y.shape[1:] == layer.output_shape == want_y.shape[1:]
    np.testing.assert_array_equal(y, want_y)
    np.testing.assert_allclose(layer.backward(dy), want_dx, rtol=1e-6, atol=1e-6)


def test_both_same_paths_are_covered() -> None:
    # ops padding + ceil_mode (one extra row/column of the dilated window at the end) ...
    layer, x = _pool((2, 3, 8, 8), 2, 2, "same", 2)
    assert layer._explicit_pad is None and layer._ceil_mode
    assert layer._pool_kwargs()["dilation"] == (2, 2)
    # ... and an explicit -inf pad: the dilated window's padding exceeds pool_size // 2
    layer2, _ = _pool((2, 3, 8, 8), 3, 1, "same", 2)
    assert layer2._explicit_pad == (2, 2, 2, 2)
    for lay in (layer, layer2):
        y = lay.forward(x, training=True)
        dy = RNG(2).standard_normal(y.shape).astype(np.float32)
        want_y, want_dx = _reference(x, dy, lay.pool_size, lay.strides, "same",
                                     lay.dilation_rate)
        np.testing.assert_array_equal(y, want_y)
        np.testing.assert_allclose(lay.backward(dy), want_dx, rtol=1e-6, atol=1e-6)


def test_dilation_one_is_the_default_and_unchanged() -> None:
    a, x = _pool((2, 3, 9, 9), 3, 2, "same", 1)
    assert L.MaxPool2D(3, 2, "same").dilation_rate == (1, 1)
    np.testing.assert_array_equal(a.forward(x), _reference(x, None, 3, 2, "same", 1)[0])


@pytest.mark.parametrize(("bad", "err", "match"), [
    (0, ValueError, "MaxPool2D: dilation_rate must be >= 1, got 0"),
    ((1, 2, 3), ValueError, r"MaxPool2D: dilation_rate must be an int or a pair \(h, w\)"),
    ("2", TypeError, "MaxPool2D: dilation_rate must be an int or a pair of ints"),
    (1.5, TypeError, "MaxPool2D: dilation_rate must be an int or a pair of ints"),
    ((2, True), TypeError, "MaxPool2D: dilation_rate must be an int or a pair of ints"),
])
def test_bad_dilation_rate_is_a_clear_error(bad: Any, err: type, match: str) -> None:
    with pytest.raises(err, match=match):
        L.MaxPool2D(2, dilation_rate=bad)


def test_a_dilated_window_larger_than_the_input_names_the_layer() -> None:
    with pytest.raises(ValueError, match=r"MaxPool2D\('big'\): the dilated window \(11 along H\) "
                                         r"is larger"):
        fc.Sequential([L.MaxPool2D(3, dilation_rate=5, name="big")], input_shape=(1, 8, 8))


def test_config_and_summary() -> None:
    layer = L.MaxPool2D(3, 1, "valid", dilation_rate=(2, 1))
    cfg = layer.get_config()
    assert cfg["dilation_rate"] == [2, 1]
    assert L.MaxPool2D.from_config(cfg).dilation_rate == (2, 1)
    model = fc.Sequential([L.MaxPool2D(3, 1, dilation_rate=(2, 1))], input_shape=(2, 9, 9))
    lines: list[str] = []
    model.summary(print_fn=lines.append)
    assert model.output_shape == (2, 5, 7)
    assert any("(None, 2, 5, 7)" in line for line in lines), lines


# --------------------------------------------------------------------------------------------
# torch


TORCH_CASES = list(itertools.product([2, 3, (3, 2)], [1, 2, (2, 3)], [2, (2, 1), 3]))


@pytest.mark.parametrize(("pool", "stride", "dil"), TORCH_CASES)
def test_valid_matches_torch_forward_and_backward(pool: Any, stride: Any, dil: Any) -> None:
    torch = pytest.importorskip("torch")
    layer, x = _pool((2, 3, 11, 10), pool, stride, "valid", dil)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.MaxPool2d(pool, stride, dilation=dil)(xt)
    y = layer.forward(x, training=True)
    np.testing.assert_array_equal(y, yt.detach().numpy())
    dy = RNG(3).standard_normal(y.shape).astype(np.float32)
    yt.backward(torch.tensor(dy))
    np.testing.assert_allclose(layer.backward(dy), xt.grad.numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("pool", "stride", "dil", "hw"), [
    (2, 2, 2, 8), (3, 1, 2, 9), (2, 1, 3, 10), (3, 2, (2, 3), 11), ((2, 3), (2, 1), 2, 9)])
def test_same_matches_torch_with_an_explicit_inf_pad(pool: Any, stride: Any, dil: Any,
                                                     hw: int) -> None:
    torch = pytest.importorskip("torch")
    layer, x = _pool((2, 3, hw, hw), pool, stride, "same", dil)
    (kh, kw), (sh, sw), (dh, dw) = layer.pool_size, layer.strides, layer.dilation_rate
    t, b = same_padding(hw, kh, sh, dh)
    le, r = same_padding(hw, kw, sw, dw)
    xt = torch.tensor(x, requires_grad=True)
    padded = torch.nn.functional.pad(xt, (le, r, t, b), value=-float("inf"))
    yt = torch.nn.MaxPool2d(pool, stride, dilation=dil)(padded)
    y = layer.forward(x, training=True)
    np.testing.assert_array_equal(y, yt.detach().numpy())
    dy = RNG(4).standard_normal(y.shape).astype(np.float32)
    yt.backward(torch.tensor(dy))
    np.testing.assert_allclose(layer.backward(dy), xt.grad.numpy(), rtol=1e-6, atol=1e-6)


def _torch_net(torch: Any, pool: Any, hw: int, n_out: int) -> Any:
    torch.manual_seed(0)
    nn = torch.nn
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), pool, nn.Flatten(),
                         nn.LazyLinear(n_out))


@pytest.mark.parametrize(("make", "hw", "padding"), [
    (lambda nn: nn.MaxPool2d(3, 2, dilation=2), 11, "valid"),
    (lambda nn: nn.MaxPool2d((2, 3), (1, 2), dilation=(3, 1)), 10, "valid"),
    # ceil_mode=True on this size is Keras' "same" for the dilated window
    (lambda nn: nn.MaxPool2d(2, 2, dilation=2, ceil_mode=True), 8, "same"),
])
def test_from_torch_and_back(make: Any, hw: int, padding: str) -> None:
    torch = pytest.importorskip("torch")
    ft = pytest.importorskip("fastcnn.torch")
    nn = torch.nn
    net = _torch_net(torch, make(nn), hw, 4)
    x = torch.randn(3, 2, hw, hw)
    want = net(x).detach()  # materialises the LazyLinear
    model = ft.from_torch(net, input_shape=(2, hw, hw))
    pool = model.layers[1]
    assert isinstance(pool, L.MaxPool2D) and pool.padding == padding
    assert pool.dilation_rate == pair(net[2].dilation, "d")
    np.testing.assert_allclose(model.predict(x.numpy(), verbose=0), want.numpy(), rtol=1e-5,
                               atol=1e-5)
    back = ft.to_torch(model)
    pools = [m for m in back.modules() if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 1 and pair(pools[0].dilation, "d") == pool.dilation_rate
    torch.testing.assert_close(back(x), want, rtol=1e-5, atol=1e-5)


def test_to_torch_of_an_explicit_same_pad_and_back() -> None:
    torch = pytest.importorskip("torch")
    ft = pytest.importorskip("fastcnn.torch")
    model = fc.Sequential([L.Conv2D(3, 3, padding="same", activation="relu"),
                           L.MaxPool2D(3, 1, "same", dilation_rate=2), L.Flatten(),
                           L.Dense(4)], input_shape=(2, 9, 9), seed=1)
    assert model.layers[1]._explicit_pad is not None
    net = ft.to_torch(model)
    kinds = [type(m).__name__ for m in net]
    assert "ConstantPad2d" in kinds
    (mp,) = [m for m in net if isinstance(m, torch.nn.MaxPool2d)]
    assert pair(mp.dilation, "d") == (2, 2)
    x = RNG(5).standard_normal((3, 2, 9, 9)).astype(np.float32)
    want = model.predict(x, verbose=0)
    np.testing.assert_allclose(net(torch.tensor(x)).detach().numpy(), want, rtol=1e-5,
                               atol=1e-5)
    again = ft.from_torch(net, input_shape=(2, 9, 9))
    assert again.layers[1].get_config() | {"name": None} == \
        model.layers[1].get_config() | {"name": None}
    np.testing.assert_allclose(again.predict(x, verbose=0), want, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------------
# ONNX


def _cnn(pool: L.MaxPool2D, hw: int) -> fc.Sequential:
    model = fc.Sequential([L.Conv2D(3, 3, padding="same", activation="relu"), pool,
                           L.Flatten(), L.Dense(4)], input_shape=(2, hw, hw), seed=3)
    rng = RNG(7)
    model.set_weights([rng.standard_normal(w.shape).astype(np.float32) * 0.5
                       for w in model.get_weights()])
    return model


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-30))


@pytest.mark.parametrize(("pool", "hw", "pad_node"), [
    (lambda: L.MaxPool2D(3, 2, dilation_rate=2), 11, False),
    (lambda: L.MaxPool2D(2, 2, "same", dilation_rate=2), 8, False),    # ops ceil_mode path
    (lambda: L.MaxPool2D(3, 1, "same", dilation_rate=2), 9, False),    # layer pads explicitly
    # pads >= kernel_shape (onnxruntime refuses those on MaxPool): a Pad of -inf first
    (lambda: L.MaxPool2D(3, 1, "same", dilation_rate=(2, 3)), 9, True),
    (lambda: L.MaxPool2D((2, 3), (1, 2), "same", dilation_rate=(3, 1)), 10, True),
])
def test_onnx_export_runs_in_onnxruntime_and_loads_back(pool: Any, hw: int,
                                                        pad_node: bool) -> None:
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from fastcnn.onnx import load_onnx, to_onnx

    model = _cnn(pool(), hw)
    proto = to_onnx(model)
    (node,) = [n for n in proto.graph.node if n.op_type == "MaxPool"]
    attrs = {a.name: list(a.ints) for a in node.attribute}
    assert attrs["dilations"] == list(model.layers[1].dilation_rate)
    assert ("Pad" in [n.op_type for n in proto.graph.node]) == pad_node
    x = RNG(8).standard_normal((3, 2, hw, hw)).astype(np.float32)
    want = model.predict(x, verbose=0)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    assert _rel(got, want) <= 1e-5
    back = load_onnx(proto)  # the -inf Pad (pad_node) merges back into the MaxPool's padding
    assert [type(lay) for lay in back.layers] == [type(lay) for lay in model.layers]
    bp = back.layers[1]
    assert isinstance(bp, L.MaxPool2D)
    assert (bp.pool_size, bp.strides, bp.padding, bp.dilation_rate) == (
        model.layers[1].pool_size, model.layers[1].strides, model.layers[1].padding,
        model.layers[1].dilation_rate)
    assert _rel(back.predict(x, verbose=0), want) <= 1e-5


def test_load_onnx_reads_dilations_of_a_foreign_maxpool() -> None:
    onnx = pytest.importorskip("onnx")
    from fastcnn.onnx import load_onnx

    h = onnx.helper
    node = h.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 3], strides=[1, 2],
                       dilations=[3, 2], auto_pad="SAME_UPPER")
    graph = h.make_graph([node], "g", [h.make_tensor_value_info("x", 1, ["N", 2, 10, 9])],
                         [h.make_tensor_value_info("y", 1, ["N", 2, 10, 5])])
    proto = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model = load_onnx(proto)
    (pool,) = model.layers
    assert (pool.padding, pool.dilation_rate) == ("same", (3, 2))
    x = RNG(12).standard_normal((2, 2, 10, 9)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(x, verbose=0),
                                  _reference(x, None, (2, 3), (1, 2), "same", (3, 2))[0])


def test_undilated_export_writes_no_dilations() -> None:
    pytest.importorskip("onnx")
    from fastcnn.onnx import to_onnx

    proto = to_onnx(_cnn(L.MaxPool2D(2), 8))
    (node,) = [n for n in proto.graph.node if n.op_type == "MaxPool"]
    assert "dilations" not in {a.name for a in node.attribute}


# --------------------------------------------------------------------------------------------
# saving


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_save_and_load_round_trip(tmp_path: Any, suffix: str) -> None:
    if suffix == ".safetensors":
        pytest.importorskip("safetensors")
    model = _cnn(L.MaxPool2D(3, 1, "same", dilation_rate=(2, 3)), 9)
    path = tmp_path / f"m{suffix}"
    model.save(path)
    back = fc.load_model(path)
    assert back.layers[1].dilation_rate == (2, 3)
    x = RNG(9).standard_normal((2, 2, 9, 9)).astype(np.float32)
    np.testing.assert_array_equal(back.predict(x, verbose=0), model.predict(x, verbose=0))


# --------------------------------------------------------------------------------------------
# training: the Conv2D(relu) -> MaxPool2D(dilation_rate=2) stack


def _reference_grads(x: np.ndarray, w: np.ndarray, b: np.ndarray, dp: np.ndarray,
                     dil: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Unfused: conv (padding 1) -> relu -> max_pool2d(2, dilation) and its backward, by the
    reference ops: (pooled output, dx, dw, db)."""
    y = R.conv2d(x, w, b, padding=1)
    r = R.relu(y)
    p = R.max_pool2d(r, 2, stride=2, dilation=dil)
    dr = R.max_pool2d_backward(dp, r, 2, stride=2, dilation=dil)
    dy = R.relu_backward(dr, r)
    dx, dw, db = R.conv2d_backward(dy, x, w, padding=1)
    return p, dx, dw, db


@pytest.mark.parametrize("dil", [2, (2, 1), 1])
def test_conv_relu_dilated_pool_backward_matches_the_unfused_reference(
        dil: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    model = fc.Sequential([L.Conv2D(4, 3, padding="same", activation="relu"),
                           L.MaxPool2D(2, dilation_rate=dil)], input_shape=(3, 10, 10), seed=0)
    offers: list[bool] = []
    real = L.MaxPool2D.offer_pooled_grad

    def spy(self: L.MaxPool2D) -> Any:
        offer = real(self)
        offers.append(offer is not None)
        return offer

    monkeypatch.setattr(L.MaxPool2D, "offer_pooled_grad", spy)
    rng = RNG(10)
    x = rng.standard_normal((2, 3, 10, 10)).astype(np.float32)
    p = model(x, training=True)
    dp = rng.standard_normal(p.shape).astype(np.float32)
    dx = model.backward(dp)
    conv = model.layers[0]
    want_p, want_dx, want_dw, want_db = _reference_grads(
        x, conv.params["kernel"], conv.params["bias"], dp, dil)
    np.testing.assert_allclose(p, want_p, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx, want_dx, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(conv.grads["kernel"], want_dw, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(conv.grads["bias"], want_db, rtol=1e-4, atol=1e-4)
    # the fused conv + pool backward is offered only without dilation
    assert offers == [pair(dil, "d") == (1, 1)]


def test_a_fit_step_equals_sgd_on_the_reference_gradients() -> None:
    model = fc.Sequential([L.Conv2D(4, 3, padding="same", activation="relu"),
                           L.MaxPool2D(2, dilation_rate=2), L.Flatten()],
                          input_shape=(3, 10, 10), seed=0)
    lr = 0.1
    model.compile(fc.optimizers.SGD(lr), "mse")
    rng = RNG(11)
    x = rng.standard_normal((4, 3, 10, 10)).astype(np.float32)
    t = rng.standard_normal((4, 4 * 4 * 4)).astype(np.float32)
    conv = model.layers[0]
    w0, b0 = conv.params["kernel"].copy(), conv.params["bias"].copy()
    p = R.max_pool2d(R.relu(R.conv2d(x, w0, b0, padding=1)), 2, stride=2, dilation=2)
    pf = p.reshape(len(x), -1)
    dp = (2.0 / pf.size * (pf - t)).astype(np.float32).reshape(p.shape)
    _, _, dw, db = _reference_grads(x, w0, b0, dp, 2)
    loss = model.train_on_batch(x, t)
    assert loss == pytest.approx(float(np.mean((pf - t) ** 2)), rel=1e-5)
    np.testing.assert_allclose(conv.params["kernel"], w0 - lr * dw, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(conv.params["bias"], b0 - lr * db, rtol=1e-5, atol=1e-6)


def test_load_onnx_refuses_a_neg_inf_pad_that_feeds_no_max_pool() -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    from fastcnn.onnx import load_onnx

    pads = numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "p")
    value = numpy_helper.from_array(np.array(-np.inf, np.float32), "v")
    graph = helper.make_graph(
        [helper.make_node("Pad", ["x", "p", "v"], ["padded"], name="pad"),
         helper.make_node("Relu", ["padded"], ["y"], name="relu")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2, 7, 7])], [pads, value])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(ValueError, match=r"node #0 \(Pad 'pad'\): a Pad of -inf that feeds"):
        load_onnx(proto)
    assert onnx is not None

