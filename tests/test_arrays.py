"""Any array in, the same kind out (fastcnn._arrays, the ops' conversion, the model's inputs).

* The silent wrong answer of issue 18: a torch tensor given to ``predict`` / ``fit`` was taken
  for a dataset of rows (a tensor has ``__iter__`` and ``__len__``).
* Every op in ``ops.__all__`` takes torch tensors and returns torch tensors, equal to its NumPy
  result; the conversion shares memory both ways (checked at the compiled module's door).
* Mixing kinds on one device, other DLPack objects, tensors that require grad, CUDA arrays
  without the CUDA module or CuPy, device mixes, wrong dtypes: the rules and messages.
* ``dir(fastcnn.ops)`` / ``dir(fastcnn.reference)`` list their public names only.

CUDA tensors can't be made on a machine without a GPU: their path (cupy.from_dlpack on
PyTorch's current stream, torch.from_dlpack back) is covered here only up to the point where a
GPU is needed (a DLPack object that says it lives on CUDA).
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import fastcnn as fc
from fastcnn import _arrays, _native, ops, reference
from fastcnn import layers as L

torch = pytest.importorskip("torch")

RNG = np.random.default_rng(18)


def _f(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


# ------------------------------------------------------------------------------------------------
# the silent wrong answer, and the model API


def test_predict_takes_a_tensor_as_one_array_not_a_dataset_of_rows() -> None:
    model = fc.Sequential([L.Flatten(), L.Dense(3)], seed=0)
    x = torch.randn(5, 4, 6)
    out = model.predict(x)
    assert isinstance(out, torch.Tensor) and tuple(out.shape) == (5, 3)
    ref = model.predict(x.numpy())
    assert isinstance(ref, np.ndarray) and ref.shape == (5, 3)
    np.testing.assert_array_equal(out.numpy(), ref)


def _compiled(seed: int = 0) -> fc.Sequential:
    model = fc.Sequential([L.Flatten(), L.Dense(8, activation="relu"),
                           L.Dense(3, activation="softmax")], input_shape=(4, 6), seed=seed)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def test_fit_and_evaluate_take_tensors_like_arrays() -> None:
    x, y = _f(40, 4, 6), RNG.integers(0, 3, 40)
    a, b = _compiled(), _compiled()
    ha = a.fit(x, y, batch_size=8, epochs=2, verbose=0, seed=1, validation_split=0.25)
    hb = b.fit(torch.from_numpy(x), torch.from_numpy(y), batch_size=8, epochs=2, verbose=0,
               seed=1, validation_split=0.25)
    assert ha.history == hb.history
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)
    assert a.evaluate(x, y) == b.evaluate(torch.from_numpy(x), torch.from_numpy(y))
    assert a.evaluate(x, y) == b.evaluate(x.tolist(), y.tolist())  # lists too


def test_fit_on_a_dataset_of_tensor_batches() -> None:
    x, y = _f(24, 4, 6), RNG.integers(0, 3, 24)

    class Batches:  # a DataLoader-like dataset: (x_batch, y_batch) tensors
        def __len__(self) -> int:
            return 3

        def __iter__(self) -> Any:
            for i in range(0, 24, 8):
                yield torch.from_numpy(x[i:i + 8]), torch.from_numpy(y[i:i + 8])

    a, b = _compiled(), _compiled()
    a.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    b.fit(Batches(), epochs=1, verbose=0)
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)
    assert isinstance(b.predict(Batches()), np.ndarray)  # a dataset gives NumPy, as Keras


def test_call_and_backward_return_the_input_kind() -> None:
    model = _compiled()
    x = _f(5, 4, 6)
    out_np = model(x, training=True)
    dx_np = model.backward(np.ones_like(out_np))
    out_t = model(torch.from_numpy(x), training=True)
    assert isinstance(out_t, torch.Tensor)
    np.testing.assert_array_equal(out_t.numpy(), out_np)
    dx_t = model.backward(torch.ones(5, 3))
    assert isinstance(dx_t, torch.Tensor)
    np.testing.assert_array_equal(dx_t.numpy(), dx_np)
    assert isinstance(model(x.tolist()), np.ndarray)
    assert isinstance(model(torch.from_numpy(x).double()), torch.Tensor)  # converted, any dtype


def test_the_model_refuses_a_tensor_that_requires_grad() -> None:
    model = _compiled()
    x = torch.randn(2, 4, 6, requires_grad=True)
    with pytest.raises(TypeError, match=r"model\(x\): x is a torch tensor that requires grad.*"
                                        r"x\.detach\(\)"):
        model(x)
    with pytest.raises(TypeError, match=r"predict: x .*requires grad"):
        model.predict(x)
    with torch.no_grad():
        assert isinstance(model(x), torch.Tensor)


@pytest.mark.parametrize("obj", [np.zeros((2, 3)), [[1.0, 2.0]], (1.0, 2.0),
                                 torch.zeros(2, 3)])
def test_array_likes_are_not_datasets(obj: Any) -> None:
    from fastcnn._batches import is_dataset as _is_dataset

    assert not _is_dataset(obj)


def test_dataset_detection() -> None:
    from fastcnn._batches import is_dataset as _is_dataset

    class WithArray:  # __array__, __iter__ and __len__: still one array
        def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
            return np.zeros((2, 3), dtype)

        def __iter__(self) -> Any:
            return iter([])

        def __len__(self) -> int:
            return 2

    class Dataset:
        def __iter__(self) -> Any:
            return iter([])

        def __len__(self) -> int:
            return 0

    assert not _is_dataset(WithArray()) and not _is_dataset(_DL(np.zeros(3)))
    assert _is_dataset(Dataset())


# ------------------------------------------------------------------------------------------------
# every op: torch in, torch out, equal to NumPy


def _conv_bw() -> tuple[tuple[Any, ...], dict[str, Any]]:
    x, w = _f(2, 3, 6, 6), _f(4, 3, 3, 3)
    y = ops.conv2d(x, w, relu=True, padding=1)
    _, idx = ops.max_pool2d(y, 2, return_indices=True)
    return (_f(2, 4, 3, 3), x, w), dict(padding=1, relu_y=y, pool_indices=idx, pool_size=2)


def _pool_bw() -> tuple[tuple[Any, ...], dict[str, Any]]:
    x = _f(2, 3, 6, 6)
    _, idx = ops.max_pool2d(x, 2, return_indices=True)
    return (_f(2, 3, 3, 3), x, 2), dict(indices=idx)


#: op -> (positional args, keyword args) of NumPy arrays and options
CASES: dict[str, Callable[[], tuple[tuple[Any, ...], dict[str, Any]]]] = {
    "conv2d": lambda: ((_f(2, 3, 6, 6), _f(4, 3, 3, 3), _f(4)), dict(padding="same")),
    "conv2d_backward": _conv_bw,
    "conv2d_stats": lambda: ((_f(2, 3, 6, 6), _f(4, 3, 3, 3), _f(4)), dict(padding="same")),
    "relu": lambda: ((_f(4, 5),), {}),
    "relu_backward": lambda: ((_f(4, 5), _f(4, 5)), {}),
    "max_pool2d": lambda: ((_f(2, 3, 6, 6), 2), dict(return_indices=True)),
    "max_pool2d_backward": _pool_bw,
    "linear": lambda: ((_f(4, 5), _f(3, 5), _f(3)), dict(relu=True)),
    "linear_backward": lambda: ((_f(4, 3), _f(4, 5), _f(3, 5)), {}),
    "softmax": lambda: ((_f(2, 3, 4),), dict(axis=1)),
    "log_softmax": lambda: ((_f(2, 3, 4),), {}),
    "cross_entropy": lambda: ((_f(4, 5), RNG.integers(0, 5, 4)), {}),
    "sgd_update": lambda: ((_f(6), _f(6), _f(6)), dict(lr=0.1, momentum=0.9)),
    "adam_update": lambda: ((_f(6), _f(6), np.zeros(6, np.float32), np.zeros(6, np.float32)),
                            dict(lr=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7, step=1)),
    # normalization family
    "batch_norm": lambda: ((_f(4, 3, 5), _f(3), _f(3), np.zeros(3, np.float32),
                            np.ones(3, np.float32)), dict(training=True)),
    "batch_norm_backward": lambda: ((_f(4, 3, 5), _f(4, 3, 5), _f(3), _f(3),
                                     np.abs(_f(3)) + np.float32(0.5)), {}),
    # pooling family (issue 17)
    "avg_pool2d": lambda: ((_f(2, 3, 7, 7), 3), dict(stride=2, padding=1, ceil_mode=True)),
    "avg_pool2d_backward": lambda: ((_f(2, 3, 4, 4), _f(2, 3, 7, 7), 3),
                                    dict(stride=2, padding=1, ceil_mode=True)),
    "global_avg_pool2d": lambda: ((_f(2, 3, 5, 5),), {}),
    "global_avg_pool2d_backward": lambda: ((_f(2, 3), _f(2, 3, 5, 5)), {}),
    "global_max_pool2d": lambda: ((_f(2, 3, 5, 5),), dict(return_indices=True)),
    "global_max_pool2d_backward": lambda: ((_f(2, 3), _f(2, 3, 5, 5)), {}),
    # activation family (issue 17)
    "sigmoid": lambda: ((_f(4, 5),), {}),
    "sigmoid_backward": lambda: ((_f(4, 5), _f(4, 5)), {}),
    "tanh": lambda: ((_f(4, 5),), {}),
    "tanh_backward": lambda: ((_f(4, 5), _f(4, 5)), {}),
    "leaky_relu": lambda: ((_f(4, 5), 0.2), {}),
    "leaky_relu_backward": lambda: ((_f(4, 5), _f(4, 5)), dict(negative_slope=0.2)),
    "gelu": lambda: ((_f(4, 5),), dict(approximate="tanh")),
    "gelu_backward": lambda: ((_f(4, 5), _f(4, 5)), {}),
    "silu": lambda: ((_f(4, 5),), {}),
    "silu_backward": lambda: ((_f(4, 5), _f(4, 5)), {}),
}


def test_every_op_has_a_case() -> None:
    assert set(CASES) == set(ops.__all__)


def _to_torch(v: Any) -> Any:
    return torch.from_numpy(v.copy()) if isinstance(v, np.ndarray) else v


def _same(a: Any, b: Any) -> None:
    """``a`` (from tensors) has ``b``'s (from NumPy) structure and values, tensors for arrays."""
    if isinstance(b, tuple):
        assert isinstance(a, tuple) and len(a) == len(b)
        for u, v in zip(a, b, strict=True):
            _same(u, v)
    elif isinstance(b, np.ndarray):
        assert isinstance(a, torch.Tensor), type(a)
        np.testing.assert_array_equal(a.numpy(), b)
        assert a.numpy().dtype == b.dtype
    else:
        assert a == b


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_op_returns_the_input_kind(name: str) -> None:
    args, kwargs = CASES[name]()
    fn = getattr(ops, name)
    t_args = tuple(_to_torch(a) for a in args)
    t_kwargs = {k: _to_torch(v) for k, v in kwargs.items()}
    expected = fn(*args, **kwargs)
    got = fn(*t_args, **t_kwargs)
    _same(got, expected)
    for a, t in zip(args, t_args, strict=True):  # in-place updates reach the tensors
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(t.numpy(), a)
    # keyword array arguments convert too
    if name == "relu":
        _same(ops.relu(x=t_args[0]), expected)


# ------------------------------------------------------------------------------------------------
# zero-copy, both ways


class _Spy:
    """Stands in for ``fastcnn._cpu``: records the data pointers the ops hand it."""

    def __init__(self, cpu: Any) -> None:
        self.cpu = cpu
        self.seen: list[int] = []
        self.results: list[int] = []

    def __getattr__(self, name: str) -> Any:
        real = getattr(self.cpu, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            self.seen += [a.ctypes.data for a in (*args, *kwargs.values())
                          if isinstance(a, np.ndarray)]
            r = real(*args, **kwargs)
            self.results += [v.ctypes.data for v in (r if isinstance(r, tuple) else (r,))
                             if isinstance(v, np.ndarray)]
            return r

        return call


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> _Spy:
    s = _Spy(_native.cpu)
    monkeypatch.setattr(ops._native, "cpu", s)
    return s


def test_tensors_reach_the_kernels_without_a_copy(spy: _Spy) -> None:
    x, w = torch.randn(4, 5), torch.randn(3, 5)
    y = ops.linear(x, w)
    assert spy.seen == [x.data_ptr(), w.data_ptr()]
    assert spy.results == [y.data_ptr()]  # the result tensor is the kernel's array
    spy.seen.clear()
    p, g = torch.randn(6), torch.randn(6)
    ops.sgd_update(p, g, lr=0.5)
    assert spy.seen == [p.data_ptr(), g.data_ptr()]


def test_out_tensor_is_written_in_place_and_returned() -> None:
    x, out = torch.randn(4, 5), torch.empty(4, 5)
    assert ops.relu(x, out=out) is out
    assert torch.equal(out, torch.relu(x))
    assert ops.relu(x, out=x) is x and torch.equal(x, out)  # in place


def test_conversion_shares_memory() -> None:
    t = torch.randn(3, 4)
    v = _arrays.to_backend(t, "x", "test")
    assert isinstance(v, np.ndarray) and v.ctypes.data == t.data_ptr()
    r = np.ones((2, 2), np.float32)
    back = _arrays.restore_kind(r, t)
    assert isinstance(back, torch.Tensor) and back.data_ptr() == r.ctypes.data
    a = np.arange(6, dtype=np.float32)
    d = _arrays.to_backend(_DL(a), "x", "test")
    assert np.shares_memory(d, a)
    xt = torch.randn(3, 4, 6)
    model = fc.Sequential([L.Flatten(), L.Dense(2)], seed=0)
    assert np.shares_memory(model._input(xt, "test"), xt.numpy())  # float32, contiguous


def test_non_contiguous_tensor_gives_the_right_answer() -> None:
    t = torch.randn(5, 4).T  # a transposed view: copied once at the binding
    np.testing.assert_array_equal(ops.relu(t).numpy(), reference.relu(t.numpy()))


# ------------------------------------------------------------------------------------------------
# rules: mixing, other DLPack objects, grad, devices, dtypes


class _DL:
    """A minimal DLPack producer (stands in for JAX / TensorFlow arrays)."""

    def __init__(self, a: np.ndarray, device: tuple[int, int] = (1, 0)) -> None:
        self.a, self.device = a, device

    def __dlpack__(self, **kwargs: Any) -> Any:
        return self.a.__dlpack__(**kwargs)

    def __dlpack_device__(self) -> tuple[int, int]:
        return self.device


def test_numpy_and_cpu_tensors_mix_and_the_first_array_decides() -> None:
    x, w = _f(4, 5), _f(3, 5)
    ref = ops.linear(x, w)
    a = ops.linear(torch.from_numpy(x), w)
    b = ops.linear(x, torch.from_numpy(w))
    assert isinstance(a, torch.Tensor) and isinstance(b, np.ndarray)
    np.testing.assert_array_equal(a.numpy(), ref)
    np.testing.assert_array_equal(b, ref)


def test_other_dlpack_objects_give_numpy() -> None:
    x = _f(4, 5)
    y = ops.relu(_DL(x))
    assert type(y) is np.ndarray
    np.testing.assert_array_equal(y, reference.relu(x))


def test_requires_grad_is_refused_while_autograd_records() -> None:
    x = torch.randn(3, 4, requires_grad=True)
    with pytest.raises(TypeError, match=r"relu: x is a torch tensor that requires grad.*"
                                        r"x\.detach\(\).*fastcnn\.torch"):
        ops.relu(x)
    np.testing.assert_array_equal(ops.relu(x.detach()).numpy(), torch.relu(x).detach().numpy())
    p = torch.nn.Parameter(torch.randn(6))
    g = torch.randn(6)
    expected = (p.detach() - 0.5 * g).numpy()
    with torch.no_grad():  # as for torch's own ops: nothing is recorded, so it is accepted
        ops.sgd_update(p, g, lr=0.5)
    np.testing.assert_array_equal(p.detach().numpy(), expected)


def test_wrong_dtypes_name_the_argument() -> None:
    with pytest.raises(TypeError, match="relu: x has dtype float64"):
        ops.relu(torch.zeros(3, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"linear: w .*bfloat16.*w\.float\(\)"):
        ops.linear(torch.zeros(2, 3), torch.zeros(4, 3, dtype=torch.bfloat16))


def test_tensors_on_other_devices_are_refused() -> None:
    with pytest.raises(TypeError, match=r"relu: x is a torch tensor on meta.*x\.cpu\(\)"):
        ops.relu(torch.zeros(3, device="meta"))


def test_cuda_arrays_without_the_cuda_module(monkeypatch: pytest.MonkeyPatch) -> None:
    gpu = _DL(_f(3), device=(2, 0))  # says it lives on CUDA device 0
    monkeypatch.setattr(_native, "cuda_built", lambda: False)
    with pytest.raises(TypeError, match=r"relu: x is .* on cuda:0, but this fastcnn was built "
                                        r"without its CUDA module; pass x\.cpu\(\)"):
        ops.relu(gpu)
    monkeypatch.setattr(_native, "cuda_built", lambda: True)
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy -> ImportError
    with pytest.raises(TypeError, match=r"relu: x is .*needs CuPy.*fastcnn\[cuda\]"):
        ops.relu(gpu)


def test_arrays_on_two_devices_are_refused() -> None:
    gpu = _DL(_f(4, 5), device=(2, 0))
    with pytest.raises(TypeError, match=r"relu_backward: all arrays must be on one device; dy is "
                                        r"a torch tensor on the CPU but y is a _DL \(DLPack\) on "
                                        r"cuda:0"):
        ops.relu_backward(torch.zeros(4, 5), gpu)


def test_non_arrays_still_get_the_ops_message() -> None:
    with pytest.raises(TypeError, match="must be"):
        ops.relu([1.0, 2.0])
    with pytest.raises(TypeError, match="conv2d: x must be an array of float32"):
        ops.conv2d(types.SimpleNamespace(), torch.zeros(1, 1, 1, 1))


# ------------------------------------------------------------------------------------------------
# the module listings


def test_dir_lists_only_the_public_names() -> None:
    assert dir(ops) == sorted(ops.__all__)
    assert "np" not in dir(ops) and "check_int" not in dir(ops) and "Any" not in dir(ops)
    assert dir(reference) == sorted(reference.__all__)
    assert "np" not in dir(reference)


# ------------------------------------------------------------------------------------------------
# the GPU (cp: skipped unless fastcnn's CUDA backend runs here; the emulator runs these too)


def test_cpu_tensors_and_cupy_arrays_do_not_mix(cp: Any) -> None:
    with pytest.raises(TypeError, match=r"relu_backward: all arrays must be on one device; dy is "
                                        r"a torch tensor on the CPU but y is a cupy array on "
                                        r"cuda:0"):
        ops.relu_backward(torch.zeros(4, 5), cp.zeros((4, 5), dtype=cp.float32))


def test_a_gpu_model_takes_cpu_tensors(cp: Any) -> None:
    cpu = fc.Sequential([L.Flatten(), L.Dense(3)], input_shape=(4, 6), seed=0)
    gpu = fc.Sequential([L.Flatten(), L.Dense(3)], input_shape=(4, 6), seed=0).to("cuda")
    x = _f(5, 4, 6)
    out = gpu.predict(torch.from_numpy(x))
    assert isinstance(out, torch.Tensor) and out.device.type == "cpu"  # the input's device
    np.testing.assert_allclose(out.numpy(), cpu.predict(x), rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match="model is on the CPU"):
        cpu.predict(cp.asarray(x))


def _cuda_torch() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs PyTorch with a usable CUDA device")


def test_cuda_tensors_round_trip_without_a_copy(cp: Any) -> None:
    _cuda_torch()
    x = torch.randn(64, 128, device="cuda")
    assert _arrays.to_backend(x, "x", "test").data.ptr == x.data_ptr()
    y = ops.relu(x)
    assert isinstance(y, torch.Tensor) and y.device == x.device
    assert torch.equal(y, torch.relu(x))
    out = torch.empty_like(x)
    assert ops.relu(x, out=out) is out and torch.equal(out, y)
    w = torch.randn(32, 128, device="cuda")
    torch.testing.assert_close(ops.linear(x, w), x @ w.T, rtol=1e-4, atol=1e-4)


def test_cuda_tensors_run_on_torchs_current_stream(cp: Any) -> None:
    _cuda_torch()
    s = torch.cuda.Stream()
    x = torch.randn(256, 1024, device="cuda")
    torch.cuda.synchronize()
    with torch.cuda.stream(s):
        z = x * 2  # queued on s
        y = ops.relu(z)  # must see z, on s, without a host sync
        expected = torch.relu(z)
    s.synchronize()
    assert torch.equal(y, expected)


def test_a_gpu_model_takes_cuda_tensors(cp: Any) -> None:
    _cuda_torch()
    gpu = fc.Sequential([L.Flatten(), L.Dense(3)], input_shape=(4, 6), seed=0).to("cuda")
    x = torch.randn(5, 4, 6, device="cuda")
    out = gpu.predict(x)
    assert isinstance(out, torch.Tensor) and out.is_cuda
    np.testing.assert_allclose(out.cpu().numpy(), gpu.predict(x.cpu().numpy()), rtol=1e-6)
    assert gpu(x).is_cuda
