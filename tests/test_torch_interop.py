"""fastcnn inside PyTorch: fastcnn.torch's operators (forward and gradients against torch's own
in float64, float32 tolerances scaled by the reduction length), torch.compile over them, the
drop-in modules and accelerate(), a training loop that tracks the unchanged model, from_torch /
to_torch, and .safetensors weights shared with PyTorch.

Skipped without torch (and the safetensors tests without safetensors).
"""

from __future__ import annotations

import copy
import subprocess
import sys

import numpy as np
import pytest

import fastcnn as fc
from conftest import check_exact, check_sum_close
from fastcnn import layers as L

torch = pytest.importorskip("torch")
ft = pytest.importorskip("fastcnn.torch")
nn, F = torch.nn, torch.nn.functional


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)


def test_importing_fastcnn_does_not_import_torch() -> None:
    r = _run("import sys, fastcnn; m = fastcnn.Sequential([fastcnn.layers.Dense(2)], (3,)); "
             "m.save_weights('/dev/null'); assert 'torch' not in sys.modules, 'torch imported'")
    assert r.returncode == 0, r.stderr


def test_fastcnn_torch_without_torch_names_the_extra() -> None:
    r = _run("import sys; sys.modules['torch'] = None\n"
             "try:\n    import fastcnn.torch\nexcept ImportError as e:\n    print(e)\n")
    assert r.returncode == 0, r.stderr
    assert 'pip install "fastcnn[torch]"' in r.stdout


# --------------------------------------------------------------------------------------------
# the operators against torch's own


def _grads_vs_torch(fast, ref, arrays: list[np.ndarray], rng: np.random.Generator,
                    lengths: list[int], out_length: int) -> None:
    """Run ``fast`` on float32 tensors and ``ref`` (torch's op) in float64, on the arrays and
    on their absolute values (the sums of |terms|), and compare the output and every input's
    gradient with check_sum_close (``lengths``: each gradient's reduction length)."""
    xs = [torch.tensor(a, requires_grad=True) for a in arrays]
    y = fast(*xs)
    dy = rng.standard_normal(tuple(y.shape)).astype(np.float32)
    grads = torch.autograd.grad(y, xs, torch.from_numpy(dy))
    exact_in = [torch.tensor(a.astype(np.float64), requires_grad=True) for a in arrays]
    abs_in = [torch.tensor(np.abs(a.astype(np.float64)), requires_grad=True) for a in arrays]
    ye, ya = ref(*exact_in), ref(*abs_in)
    ge = torch.autograd.grad(ye, exact_in, torch.tensor(dy.astype(np.float64)))
    ga = torch.autograd.grad(ya, abs_in, torch.tensor(np.abs(dy.astype(np.float64))))
    check_sum_close(y.detach().numpy(), ye.detach().numpy(), ya.detach().numpy(), out_length,
                    "forward")
    for i, (g, e, a, n) in enumerate(zip(grads, ge, ga, lengths, strict=True)):
        check_sum_close(g.numpy(), e.numpy(), a.numpy(), n, f"gradient of input {i}")


@pytest.mark.parametrize("opts", [
    {}, {"stride": 2, "padding": 1}, {"padding": "same", "dilation": 2},
    {"groups": 2, "padding": (1, 2)}, {"stride": (2, 1), "padding": "valid"}])
def test_conv2d_forward_and_gradients_match_torch(rng: np.random.Generator, opts: dict) -> None:
    N, C, H, W, K, R, S = 2, 4, 9, 8, 6, 3, 3
    g = opts.get("groups", 1)
    arrays = [rng.standard_normal(s).astype(np.float32)
              for s in ((N, C, H, W), (K, C // g, R, S), (K,))]
    y = F.conv2d(torch.from_numpy(arrays[0]), torch.from_numpy(arrays[1]), **opts)
    P, Q = y.shape[2:]
    _grads_vs_torch(lambda x, w, b: ft.conv2d(x, w, b, **opts),
                    lambda x, w, b: F.conv2d(x, w, b, **opts), arrays, rng,
                    [K // g * R * S, N * P * Q, N * P * Q], C // g * R * S + 1)


def test_conv2d_unbatched_and_no_bias(rng: np.random.Generator) -> None:
    x = torch.from_numpy(rng.standard_normal((3, 7, 7)).astype(np.float32))
    w = torch.from_numpy(rng.standard_normal((2, 3, 3, 3)).astype(np.float32))
    got, want = ft.conv2d(x, w, padding=1), F.conv2d(x, w, padding=1)
    assert got.shape == want.shape == (2, 7, 7)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("opts", [
    {"kernel_size": 2}, {"kernel_size": 3, "stride": 2, "padding": 1},
    {"kernel_size": (3, 2), "stride": (2, 1), "ceil_mode": True},
    {"kernel_size": 2, "dilation": 2}])
def test_max_pool2d_forward_indices_and_gradient_equal_torch(rng: np.random.Generator,
                                                             opts: dict) -> None:
    a = rng.integers(-4, 5, (2, 3, 9, 8)).astype(np.float32)  # ties: the first maximum wins
    x, xt = torch.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
    y, idx = ft.max_pool2d(x, return_indices=True, **opts)
    yt, idxt = F.max_pool2d(xt, return_indices=True, **opts)
    check_exact(y.detach().numpy(), yt.detach().numpy(), "forward")
    assert torch.equal(idx, idxt)
    dy = torch.from_numpy(rng.integers(-3, 4, tuple(y.shape)).astype(np.float32))
    (dx,), (dxt,) = torch.autograd.grad(y, [x], dy), torch.autograd.grad(yt, [xt], dy)
    check_exact(dx.numpy(), dxt.numpy(), "dx")


def test_relu_forward_and_gradient_equal_torch(rng: np.random.Generator) -> None:
    a = rng.standard_normal((3, 5, 7)).astype(np.float32)
    a[0, 0, :3] = [0.0, -0.0, np.nan]
    x, xt = torch.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
    y, yt = ft.relu(x), torch.relu(xt)
    check_exact(y.detach().numpy(), yt.detach().numpy(), "relu")
    dy = torch.from_numpy(rng.standard_normal(a.shape).astype(np.float32))
    dx, dxt = torch.autograd.grad(y, x, dy)[0], torch.autograd.grad(yt, xt, dy)[0]
    ok = ~np.isnan(a)  # torch's gradient at a NaN input is NaN-dependent; skip that element
    check_exact(dx.numpy()[ok].copy(), dxt.numpy()[ok].copy(), "relu gradient")


@pytest.mark.parametrize("shape", [(5, 7), (2, 3, 7)])
def test_linear_forward_and_gradients_match_torch(rng: np.random.Generator,
                                                  shape: tuple[int, ...]) -> None:
    arrays = [rng.standard_normal(s).astype(np.float32) for s in (shape, (4, 7), (4,))]
    n = int(np.prod(shape[:-1]))
    _grads_vs_torch(ft.linear, F.linear, arrays, rng, [4, n, n], 8)


@pytest.mark.parametrize("soft", [False, True])
def test_cross_entropy_and_its_scaled_gradient_match_torch(rng: np.random.Generator,
                                                           soft: bool) -> None:
    a = (3 * rng.standard_normal((6, 5))).astype(np.float32)
    if soft:
        target = torch.from_numpy(rng.dirichlet(np.ones(5), 6).astype(np.float32))
    else:
        target = torch.from_numpy(rng.integers(0, 5, 6))
    x, xe = torch.tensor(a, requires_grad=True), torch.tensor(a.astype(np.float64),
                                                              requires_grad=True)
    loss = ft.cross_entropy(x, target)
    want = F.cross_entropy(xe, target.double() if soft else target)
    assert loss.dtype == torch.float32 and loss.shape == ()
    assert abs(loss.item() - want.item()) <= 1e-5 * (1 + abs(want.item()))
    (dx,), (dxe,) = (torch.autograd.grad(3.5 * loss, x), torch.autograd.grad(3.5 * want, xe))
    np.testing.assert_allclose(dx.numpy(), dxe.numpy(), rtol=1e-5, atol=1e-6)


def test_backward_computes_only_the_gradients_needed(rng: np.random.Generator,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict] = []
    real_conv, real_linear = fc.ops.conv2d_backward, fc.ops.linear_backward

    def spy(real):
        def wrapped(*a, **k):
            calls.append({n: k[n] for n in ("compute_dx", "compute_dw", "bias")})
            return real(*a, **k)
        return wrapped

    monkeypatch.setattr(fc.ops, "conv2d_backward", spy(real_conv))
    monkeypatch.setattr(fc.ops, "linear_backward", spy(real_linear))
    x = torch.from_numpy(rng.standard_normal((2, 3, 6, 6)).astype(np.float32))
    w = torch.from_numpy(rng.standard_normal((4, 3, 3, 3)).astype(np.float32))
    b = torch.zeros(4)
    w.requires_grad_(True)
    ft.conv2d(x, w, b).sum().backward()  # x and b need no gradient
    assert calls == [{"compute_dx": False, "compute_dw": True, "bias": False}]
    assert w.grad is not None and w.grad.shape == w.shape
    calls.clear()
    x.requires_grad_(True)
    w.requires_grad_(False)
    b.requires_grad_(True)
    ft.conv2d(x, w, b).sum().backward()
    assert calls == [{"compute_dx": True, "compute_dw": False, "bias": True}]
    torch.testing.assert_close(b.grad, torch.full((4,), 2 * 4 * 4.0))
    calls.clear()
    xl = torch.randn(3, 5, requires_grad=True)
    ft.linear(xl, torch.randn(2, 5)).sum().backward()
    assert calls == [{"compute_dx": True, "compute_dw": False, "bias": False}]


def test_bad_inputs_are_clear_errors() -> None:
    with pytest.raises(TypeError, match=r"x must be float32, got torch.float64.*\.float\(\)"):
        ft.relu(torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="padding"):
        ft.conv2d(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 3, 3), padding="full")
    with pytest.raises(ValueError, match="x must be"):
        ft.conv2d(torch.zeros(4, 4), torch.zeros(1, 1, 3, 3))
    with pytest.raises(ValueError, match="no gradient with respect to target"):
        ft.cross_entropy(torch.zeros(2, 3), torch.zeros(2, 3, requires_grad=True))
    with pytest.raises(ValueError, match=r"w has shape \(1, 3, 3, 3\)"):  # fastcnn's check
        ft.conv2d(torch.zeros(1, 2, 4, 4), torch.zeros(1, 3, 3, 3))


def test_meta_tensors_propagate_shapes_through_the_fake_implementations() -> None:
    x = torch.empty(2, 3, 9, 9, device="meta")
    w, b = torch.empty(5, 3, 3, 3, device="meta"), torch.empty(5, device="meta")
    assert ft.conv2d(x, w, b, stride=2, padding="same").shape == (2, 5, 5, 5)
    assert ft.max_pool2d(x, 3, 2, ceil_mode=True).shape == (2, 3, 4, 4)
    assert ft.relu(x).shape == x.shape
    assert ft.linear(torch.empty(4, 7, device="meta"), torch.empty(2, 7, device="meta")).shape \
        == (4, 2)


def test_the_direct_path_and_the_dispatcher_agree(rng: np.random.Generator) -> None:
    """Without gradients the ops skip the dispatcher (a few microseconds instead of tens)."""
    x = torch.from_numpy(rng.standard_normal((2, 3, 8, 8)).astype(np.float32))
    w = torch.from_numpy(rng.standard_normal((4, 3, 3, 3)).astype(np.float32))
    direct = ft.relu(ft.conv2d(x, w, padding=1))
    dispatched = torch.ops.fastcnn.relu(torch.ops.fastcnn.conv2d(x, w, None, [1, 1], [1, 1],
                                                                 False, [1, 1], 1))
    assert torch.equal(direct, dispatched)
    wg = w.clone().requires_grad_()
    with_grad = ft.relu(ft.conv2d(x, wg, padding=1))  # an autograd.Function
    assert with_grad.grad_fn is not None and torch.equal(with_grad.detach(), direct)
    dy = torch.from_numpy(rng.standard_normal(tuple(direct.shape)).astype(np.float32))
    (dw,) = torch.autograd.grad(with_grad, wg, dy)
    registered = torch.ops.fastcnn.relu(torch.ops.fastcnn.conv2d(x, wg, None, [1, 1], [1, 1],
                                                                 False, [1, 1], 1))
    (dw_registered,) = torch.autograd.grad(registered, wg, dy)  # register_autograd's
    assert torch.equal(dw, dw_registered)


# --------------------------------------------------------------------------------------------
# torch.compile


def _small_model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(4 * 4 * 4, 5))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # inside torch's inductor
@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_torch_compile_keeps_the_ops_whole(backend: str) -> None:
    """aot_eager traces forward and backward through the fake implementations; inductor (C++
    code generation with the machine's compiler, ~15 s here) compiles around them."""
    model = _small_model()
    ft.accelerate(model)
    x, y = torch.randn(2, 1, 8, 8), torch.randint(0, 5, (2,))
    eager = ft.cross_entropy(model(x), y)
    ge = torch.autograd.grad(eager, list(model.parameters()))
    torch._dynamo.reset()
    compiled = torch.compile(lambda a, b: ft.cross_entropy(model(a), b), backend=backend,
                             fullgraph=True)
    loss = compiled(x, y)
    gc = torch.autograd.grad(loss, list(model.parameters()))
    torch.testing.assert_close(loss, eager)
    for a, b in zip(gc, ge, strict=True):
        torch.testing.assert_close(a, b)


# --------------------------------------------------------------------------------------------
# modules and accelerate


@pytest.mark.parametrize(("fast", "ref", "args"), [
    ("Conv2d", nn.Conv2d, (3, 4, 3)), ("Linear", nn.Linear, (5, 2)),
    ("MaxPool2d", nn.MaxPool2d, (2,)), ("ReLU", nn.ReLU, ())])
def test_modules_have_torch_nn_state_dict_keys(fast: str, ref: type, args: tuple) -> None:
    mine, theirs = getattr(ft, fast)(*args), ref(*args)
    assert isinstance(mine, ref)
    assert {k: v.shape for k, v in mine.state_dict().items()} == \
        {k: v.shape for k, v in theirs.state_dict().items()}
    assert repr(mine) == repr(theirs)


def test_modules_refuse_what_fastcnn_cannot_do() -> None:
    with pytest.raises(ValueError, match="padding_mode='reflect'"):
        ft.Conv2d(1, 1, 3, padding=1, padding_mode="reflect")
    with pytest.raises(ValueError, match="inplace=True"):
        ft.ReLU(inplace=True)
    with pytest.raises(ValueError, match=r"weight is torch.float64"):
        ft.Linear(2, 3, dtype=torch.float64)


def test_accelerate_swaps_supported_submodules_in_place() -> None:
    torch.manual_seed(0)
    inner = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1, padding_mode="circular"),
                          nn.ReLU(inplace=True))
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), inner, nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(2 * 3 * 3, 4), nn.Sigmoid())
    x = torch.randn(2, 1, 6, 6)
    want = model(x)
    weight = model[0].weight
    same, swapped = ft.accelerate(model)
    assert same is model and swapped == ["0", "1", "3", "5"]
    assert type(model[0]) is ft.Conv2d and type(model[5]) is ft.Linear
    assert type(inner[0]) is nn.Conv2d and type(inner[1]) is nn.ReLU  # left to torch
    assert model[0].weight is weight
    torch.testing.assert_close(model(x), want)
    with pytest.raises(ValueError, match=r"2\.0 \(Conv2d\): padding_mode='circular'"):
        ft.accelerate(model, strict=True)


def test_training_loop_after_accelerate_tracks_the_unchanged_model() -> None:
    ref = _small_model()
    fast = copy.deepcopy(ref)
    _, swapped = ft.accelerate(fast)
    assert swapped == ["0", "1", "2", "4"]
    gen = torch.Generator().manual_seed(1)
    opts = [torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for m in (ref, fast)]
    for step in range(20):
        x = torch.randn(8, 1, 8, 8, generator=gen)
        y = torch.randint(0, 5, (8,), generator=gen)
        losses = []
        for model, opt in zip((ref, fast), opts, strict=True):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert abs(losses[0] - losses[1]) <= 1e-4 * (1 + abs(losses[0])), (step, losses)
    for a, b in zip(ref.parameters(), fast.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------------------------
# from_torch / to_torch


def test_from_torch_and_to_torch_round_trip(rng: np.random.Generator) -> None:
    torch.manual_seed(0)
    tm = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                       nn.Sequential(nn.Conv2d(4, 6, 3, stride=2), nn.ReLU()), nn.Flatten(),
                       nn.Dropout(0.2), nn.Linear(6 * 3 * 3, 10), nn.Softmax(dim=1)).eval()
    model = ft.from_torch(tm, (1, 14, 14))
    assert [type(la).__name__ for la in model.layers] == [
        "Conv2D", "MaxPool2D", "Conv2D", "Flatten", "Dropout", "Dense", "Softmax"]
    assert model.layers[0].activation == "relu"  # the ReLU fused
    x = rng.standard_normal((3, 1, 14, 14)).astype(np.float32)
    want = tm(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(model(x), want, rtol=1e-5, atol=1e-6)
    back = model.to_torch().eval()
    assert list(back.state_dict()) == ["0.weight", "0.bias", "3.weight", "3.bias", "7.weight",
                                       "7.bias"]
    np.testing.assert_allclose(back(torch.from_numpy(x)).detach().numpy(), want, rtol=1e-5,
                               atol=1e-6)


def test_to_torch_writes_asymmetric_same_padding_and_from_torch_reads_it(
        rng: np.random.Generator) -> None:
    model = fc.Sequential([L.Conv2D(3, 2, strides=2, padding="same", activation="relu"),
                           L.MaxPool2D(2, 1, padding="same"), L.Flatten(), L.Dense(5)],
                          input_shape=(2, 7, 7), seed=1)
    tm = ft.to_torch(model)
    assert [type(m).__name__ for m in tm] == ["ZeroPad2d", "Conv2d", "ReLU", "ConstantPad2d",
                                              "MaxPool2d", "Flatten", "Linear"]
    x = rng.standard_normal((2, 2, 7, 7)).astype(np.float32)
    np.testing.assert_allclose(tm(torch.from_numpy(x)).detach().numpy(), model(x), rtol=1e-5,
                               atol=1e-6)
    again = ft.from_torch(tm, (2, 7, 7))
    assert [la.get_config()["padding"] for la in again.layers[:2]] == ["same", "same"]
    np.testing.assert_allclose(again(x), model(x), rtol=0, atol=0)


def test_from_torch_refuses_what_it_cannot_convert() -> None:
    with pytest.raises(ValueError, match=r"\[1\].*padding_mode='reflect'"):
        ft.from_torch(nn.Sequential(nn.Flatten(), nn.Conv2d(1, 1, 3, padding_mode="reflect")),
                      (1, 5, 5))
    with pytest.raises(ValueError, match=r"\[0\].*no fastcnn layer"):
        ft.from_torch(nn.Sequential(nn.ELU()), (3,))
    with pytest.raises(ValueError, match="input_shape"):
        ft.from_torch(nn.Sequential(nn.Conv2d(1, 1, 3)))
    with pytest.raises(ValueError, match="Flatten missing"):
        ft.from_torch(nn.Sequential(nn.Conv2d(1, 1, 3), nn.Linear(9, 2)), (1, 5, 5))
    with pytest.raises(ValueError, match="neither Keras' 'valid' nor 'same'"):
        ft.from_torch(nn.Sequential(nn.MaxPool2d(2, 2, padding=1)), (1, 4, 4))
    with pytest.raises(TypeError, match=r"float64.*module\.float\(\)"):
        ft.from_torch(nn.Sequential(nn.Linear(2, 2).double()))
    model = ft.from_torch(nn.Sequential(nn.Linear(3, 2)))  # input shape from the Linear
    assert model.input_shape == (3,)


# --------------------------------------------------------------------------------------------
# .safetensors weights


def _fc_model(seed: int) -> fc.Sequential:
    return fc.Sequential([L.Conv2D(4, 3, padding="same", activation="relu"), L.MaxPool2D(2),
                          L.Flatten(), L.Dense(6, activation="relu"), L.Dense(3, use_bias=False)],
                         input_shape=(2, 6, 6), seed=seed)


def test_safetensors_round_trip_fastcnn_torch_fastcnn(tmp_path, rng) -> None:
    st_torch = pytest.importorskip("safetensors.torch")
    model = _fc_model(0)
    path = tmp_path / "w.safetensors"
    model.save_weights(path)
    tm = _fc_model(1).to_torch()  # other weights, same architecture
    assert set(st_torch.load_file(path)) == set(tm.state_dict()) == {
        "0.weight", "0.bias", "4.weight", "4.bias", "6.weight"}
    tm.load_state_dict(st_torch.load_file(path))
    x = rng.standard_normal((2, 2, 6, 6)).astype(np.float32)
    np.testing.assert_allclose(tm(torch.from_numpy(x)).detach().numpy(), model(x), rtol=1e-5,
                               atol=1e-6)
    with torch.no_grad():
        for p in tm.parameters():
            p.mul_(0.5)
    st_torch.save_file(tm.state_dict(), tmp_path / "t.safetensors")
    other = _fc_model(2)
    other.load_weights(tmp_path / "t.safetensors")
    np.testing.assert_allclose(other(x), tm(torch.from_numpy(x)).detach().numpy(), rtol=1e-5,
                               atol=1e-6)
    for a, b in zip(other.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b * np.float32(0.5))


def test_safetensors_corrupt_or_mismatched_file_is_a_value_error(tmp_path) -> None:
    st_numpy = pytest.importorskip("safetensors.numpy")
    model = _fc_model(0)
    path = tmp_path / "w.safetensors"
    model.save_weights(path)
    before = model.get_weights()
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    with pytest.raises(ValueError, match=r"tensor '\d\.\w+' is truncated"):
        model.load_weights(path)
    path.write_bytes(b"\x00\x01garbage")
    with pytest.raises(ValueError, match=r"not a readable \.safetensors"):
        model.load_weights(path)
    tensors = st_numpy.load(data)
    tensors["4.weight"] = tensors["4.weight"][:, :-1].copy()
    st_numpy.save_file(tensors, str(path))
    with pytest.raises(ValueError, match=r"tensor '4\.weight' .* has shape \(6, 35\)"):
        model.load_weights(path)
    del tensors["4.weight"]
    st_numpy.save_file(tensors, str(path))
    with pytest.raises(ValueError, match=r"missing tensors \['4\.weight'\]"):
        model.load_weights(path)
    tensors["4.weight"] = np.zeros((6, 36), np.float64)
    st_numpy.save_file(tensors, str(path))
    with pytest.raises(ValueError, match=r"'4\.weight'.*float64"):
        model.load_weights(path)
    for a, b in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(a, b)  # unchanged


def test_safetensors_missing_library_names_the_extra(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    with pytest.raises(ImportError, match=r'pip install "fastcnn\[torch\]"'):
        _fc_model(0).save_weights(tmp_path / "w.safetensors")
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------------------------
# CUDA tensors (DLPack to CuPy): run only where a GPU, CuPy and fastcnn's CUDA module are


@pytest.mark.cuda
def test_cuda_tensors_match_the_cpu(cp, rng: np.random.Generator) -> None:
    if not torch.cuda.is_available():
        pytest.skip("this torch has no CUDA")
    model = _small_model()
    ft.accelerate(model)
    x, y = torch.randn(4, 1, 8, 8), torch.randint(0, 5, (4,))
    loss = ft.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    model.cuda()
    loss_gpu = ft.cross_entropy(model(x.cuda()), y.cuda())
    grads_gpu = torch.autograd.grad(loss_gpu, list(model.parameters()))
    torch.testing.assert_close(loss_gpu.cpu(), loss, rtol=1e-4, atol=1e-5)
    for a, b in zip(grads_gpu, grads, strict=True):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-4, atol=1e-5)


def test_the_torch_ops_benchmark_runs_and_reports_the_crossing() -> None:
    from fastcnn.bench.torch_ops import format_table, torch_ops_benchmark

    rows = torch_ops_benchmark(threads=1, repeats=2, min_sample_s=1e-4, quick=True)
    assert [r["op"] for r in rows][:2] == ["relu", "relu forward + backward"]
    for r in rows:
        assert r["fastcnn.torch_us"] > 0 and r["fastcnn.ops_us"] > 0 and r["torch_us"] > 0
        assert r["crossing_us"] == pytest.approx(r["fastcnn.torch_us"] - r["fastcnn.ops_us"])
    assert "crossing" in format_table(rows).splitlines()[0]
