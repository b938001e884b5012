"""The one tensor crossing (fastcnn._arrays.call_converted): fastcnn.ops and fastcnn.torch both
come through it; its CPU fast path keeps every rule of the general path (zero copy, the first
array decides the kind, out= comes back as itself, requires_grad refused while autograd
records, subclasses / odd tensors worded by the general path).

Skipped without torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fastcnn import _arrays, ops

torch = pytest.importorskip("torch")
ft = pytest.importorskip("fastcnn.torch")


@pytest.fixture
def general(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records each call of the general path (by op name)."""
    seen: list[str] = []
    real = _arrays._call_general

    def spy(fn: Any, op: str, *rest: Any) -> Any:
        seen.append(op)
        return real(fn, op, *rest)

    monkeypatch.setattr(_arrays, "_call_general", spy)
    return seen


def test_cpu_tensors_take_the_fast_path_in_ops_and_fastcnn_torch(
        general: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    x, w, b = torch.randn(4, 5), torch.randn(3, 5), torch.nn.Parameter(torch.randn(3))
    with torch.no_grad():
        y = ops.linear(x, w, b)
    assert isinstance(y, torch.Tensor) and torch.allclose(y, x @ w.T + b, atol=1e-5)
    y2, idx = ops.max_pool2d(torch.randn(1, 2, 4, 4), 2, return_indices=True)  # a tuple back
    assert isinstance(y2, torch.Tensor) and isinstance(idx, torch.Tensor)
    assert general == []
    # fastcnn.torch's ops cross through the same function
    calls: list[str] = []
    real = _arrays.call_converted
    monkeypatch.setattr(_arrays, "call_converted",
                        lambda fn, op, *a: calls.append(op) or real(fn, op, *a))
    assert torch.equal(ft.relu(x), torch.relu(x))
    assert calls == ["fastcnn.torch"] and general == []


def test_fast_path_shares_memory_and_gives_out_back() -> None:
    x = torch.randn(2, 3)
    out = torch.empty(2, 3)
    # out given positionally through call_converted: the caller's own tensor comes back
    r = _arrays.call_converted(lambda a, o: ops.relu(a, out=o), "t", ((0, "x"), (1, "out")),
                               (), (x, out), {})
    assert r is out and torch.equal(out, torch.relu(x))
    seen: list[int] = []
    r = _arrays.call_converted(lambda a: seen.append(a.ctypes.data) or a * 2, "t", ((0, "x"),),
                               (), (x,), {})
    assert seen == [x.data_ptr()] and isinstance(r, torch.Tensor)


def test_numpy_first_gives_numpy_and_tensor_first_gives_a_tensor(general: list[str]) -> None:
    a = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    t = torch.from_numpy(a.copy())
    assert type(ops.relu_backward(a, t)) is np.ndarray
    assert isinstance(ops.relu_backward(t, a), torch.Tensor)
    assert general == []


def test_fast_path_refuses_requires_grad_and_torch_ops_detach() -> None:
    x = torch.randn(3, requires_grad=True)
    with pytest.raises(TypeError, match=r"relu: x is a torch tensor that requires grad.*detach"):
        ops.relu(x)
    with torch.no_grad():
        assert torch.equal(ops.relu(x), torch.relu(x.detach()))
    y = ft.relu(x)  # fastcnn.torch records autograd itself
    assert y.requires_grad
    y.sum().backward()
    assert torch.equal(x.grad, (x.detach() > 0).float())


def test_odd_tensors_go_to_the_general_path(general: list[str]) -> None:
    class Sub(torch.Tensor):
        pass

    s = torch.randn(3).as_subclass(Sub)
    y = ops.relu(s)
    assert isinstance(y, torch.Tensor)
    assert np.array_equal(np.asarray(y), np.maximum(s.detach().numpy(), 0))
    assert general == ["relu"]
    with pytest.raises(TypeError, match=r"relu: x .*float"):
        ops.relu(torch.randn(3, dtype=torch.bfloat16))
    with pytest.raises(TypeError, match=r"relu: x is a .*sparse.*to_dense"):
        ops.relu(torch.randn(3).to_sparse())
    with pytest.raises(TypeError, match=r"relu: x is a torch tensor on meta"):
        ops.relu(torch.empty(3, device="meta"))


def test_non_contiguous_tensors_are_right_on_both_doors() -> None:
    x = torch.randn(6, 8)[:, ::2]
    assert torch.equal(ops.relu(x), torch.relu(x))
    assert torch.equal(ft.relu(x), torch.relu(x))
    xs, w = torch.randn(2, 3), torch.randn(3, 4).T  # w: a (4, 3) transposed view
    ref = xs @ w.T
    assert torch.allclose(ops.linear(xs, w), ref, atol=1e-5)
    assert torch.allclose(ft.linear(xs, w), ref, atol=1e-5)


def test_fastcnn_torch_direct_gate_sends_anything_unusual_to_the_full_checks() -> None:
    from fastcnn.torch import _ops as T

    x, w = torch.randn(2, 3), torch.randn(4, 3)
    assert T._direct(x, w, None)
    assert not T._direct(x.double())
    assert not T._direct(torch.empty(3, device="meta"))
    assert not T._direct(x, torch.randn(4, 3, requires_grad=True))
    with torch.no_grad():
        assert T._direct(x, torch.randn(4, 3, requires_grad=True))
    assert not T._direct(x, np.zeros((4, 3), np.float32))
    # and the full checks still word the errors the gate let through
    with pytest.raises(TypeError, match=r"fastcnn.torch.linear: weight must be float32, got "
                                        r"torch.float64"):
        ft.linear(x, w.double())
    with pytest.raises(TypeError, match=r"fastcnn.torch.relu: x must be a torch.Tensor"):
        ft.relu(np.zeros(3, np.float32))


def test_cross_entropy_keeps_a_device_loss_as_a_float32_tensor(monkeypatch) -> None:
    # On CUDA, ops.cross_entropy returns its loss as a 0-d float64 device array (no host read)
    # and the crossing hands it back as a tensor: fastcnn.torch gives it as the float32 0-d
    # loss its schema promises (simulated here on the CPU by the crossing's result).
    from fastcnn.torch import _ops as tops

    logits = torch.randn(4, 3)
    labels = torch.tensor([0, 2, 1, 0])
    real = tops.call

    def device_like(fn: Any, *tensors: Any) -> Any:
        loss, dlogits = real(fn, *tensors)
        return torch.tensor(loss, dtype=torch.float64), dlogits

    monkeypatch.setattr(tops, "call", device_like)
    loss, dlogits = tops._cross_entropy_impl(logits, labels)
    assert loss.dtype == torch.float32 and loss.shape == () and dlogits.shape == (4, 3)
    want = torch.nn.functional.cross_entropy(logits, labels)
    assert float(loss) == pytest.approx(float(want), rel=1e-6)
