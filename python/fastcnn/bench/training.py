"""The seeds' CNN training step as a whole, and the overhead of the layer API.

The network: Conv 1->32 3x3, ReLU, Conv 32->64 3x3, ReLU, MaxPool 2, Flatten, Dense 9216->128,
ReLU, Dense 128->10, softmax cross-entropy, plain SGD; inputs (N, 1, 28, 28).

One step = forward, loss and its gradient, backward, in-place update, written three times with
the same initial weights and the same batch:

* ``fastcnn``: :mod:`fastcnn.ops` directly (ReLU fused into the convolution and dense
  epilogues as the layers do, pooling indices kept for the backward, no input gradient for the
  first layer), SGD with NumPy in-place ops (``g *= lr; p -= g``).
* ``numpy``: the same with :mod:`fastcnn.reference` (unfused ReLU).
* ``torch``: ``nn.Sequential`` of the same layers with a copy of the weights,
  ``F.cross_entropy``, ``loss.backward()``, ``torch.optim.SGD``.

The GPU benchmark (:mod:`fastcnn.bench.cuda`) runs the same functions on CuPy arrays:
the ops step as is (fastcnn.ops dispatches CuPy arrays to the CUDA kernels; the SGD update's
in-place operators work on either kind), :func:`api_step` over
:mod:`fastcnn.bench.cupy_ref` as the CuPy reference, and :func:`torch_step` with
``device="cuda"`` and ``torch.from_dlpack`` inputs.

The first step's losses are compared (same weights, same batch: they must agree).

FLOPs of a step (for GFLOP/s): forward + weight gradients of the four weighted layers + data
gradients of all but the first (no implementation computes the input gradient: PyTorch's
autograd skips it, the ops and reference steps pass ``compute_dx=False`` as the layers do).

Layer API overhead: ``fastcnn.Sequential.fit`` for one epoch of ``steps`` batches, against a
bare loop of the ops step over the same number of batches, interleaved; overhead =
``median(fit) / median(bare) - 1`` (target < 10 %). It includes everything fit adds: the
shuffle and batch gather, float32 conversion, the loss/metric bookkeeping and the disabled
progress bar.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .. import ops, reference

__all__ = [
    "StepFn",
    "api_step",
    "data",
    "fastcnn_step",
    "fit_and_bare_epoch",
    "init_params",
    "numpy_step",
    "seeds_model",
    "step_flops",
    "torch_step",
]

StepFn = Callable[[Any, Any], float]  # step(x, y) -> loss (NumPy or CuPy arrays)

_SHAPES = {
    "w1": (32, 1, 3, 3), "b1": (32,),
    "w2": (64, 32, 3, 3), "b2": (64,),
    "w3": (128, 9216), "b3": (128,),
    "w4": (10, 128), "b4": (10,),
}


def init_params(seed: int = 0) -> dict[str, np.ndarray]:
    """He-normal weights and zero biases of the seeds' CNN (float32)."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for k, shape in _SHAPES.items():
        if k.startswith("w"):
            fan_in = int(np.prod(shape[1:]))
            out[k] = rng.standard_normal(shape, dtype=np.float32) * np.float32(
                (2.0 / fan_in) ** 0.5)
        else:
            out[k] = np.zeros(shape, dtype=np.float32)
    return out


def step_flops(n: int) -> int:
    """FLOPs of one training step at batch ``n`` (see the module docstring)."""
    conv1 = 2 * n * 32 * 26 * 26 * 1 * 9
    conv2 = 2 * n * 64 * 24 * 24 * 32 * 9
    d1 = 2 * n * 9216 * 128
    d2 = 2 * n * 128 * 10
    return 3 * (conv1 + conv2 + d1 + d2) - conv1


def _sgd(params: dict[str, Any], grads: dict[str, Any], lr: float) -> None:
    """``g *= lr; p -= g`` in place (NumPy or CuPy arrays)."""
    lr32 = np.float32(lr)
    for k, g in grads.items():
        p = params[k]
        g *= lr32
        p -= g


def api_step(api: Any, params: dict[str, Any], lr: float = 1e-3) -> StepFn:
    """``step(x, y) -> loss`` on ``api`` (fastcnn.ops, fastcnn.reference or
    fastcnn.bench.cupy_ref: same signatures); updates ``params`` with SGD."""
    p = params

    def step(x: Any, y: Any) -> float:
        n = x.shape[0]
        a1 = api.conv2d(x, p["w1"], p["b1"], relu=True)
        a2 = api.conv2d(a1, p["w2"], p["b2"], relu=True)
        pooled, idx = api.max_pool2d(a2, 2, return_indices=True)
        f = pooled.reshape(n, -1)
        h = api.linear(f, p["w3"], p["b3"], relu=True)
        logits = api.linear(h, p["w4"], p["b4"])
        loss, dlogits = api.cross_entropy(logits, y)
        dh, dw4, db4 = api.linear_backward(dlogits, h, p["w4"])
        dh = api.relu_backward(dh, h)
        df, dw3, db3 = api.linear_backward(dh, f, p["w3"])
        # the pooling's and the ReLUs' backward fused into the convolutions' (pool_indices:
        # dy is the pooled gradient; relu_y: the fused forward's output)
        da1, dw2, db2 = api.conv2d_backward(df.reshape(pooled.shape), a1, p["w2"], relu_y=a2,
                                            pool_indices=idx, pool_size=2)
        _, dw1, db1 = api.conv2d_backward(da1, x, p["w1"], compute_dx=False, relu_y=a1)
        _sgd(p, {"w1": dw1, "b1": db1, "w2": dw2, "b2": db2, "w3": dw3, "b3": db3,
                 "w4": dw4, "b4": db4}, lr)
        return float(loss)

    return step


def fastcnn_step(params: dict[str, np.ndarray], lr: float = 1e-3) -> StepFn:
    """A step function ``step(x, y) -> loss`` on :mod:`fastcnn.ops` (updates ``params``)."""
    return api_step(ops, params, lr)


def numpy_step(params: dict[str, np.ndarray], lr: float = 1e-3) -> StepFn:
    """The same step on the NumPy reference (:mod:`fastcnn.reference`)."""
    return api_step(reference, params, lr)


def torch_step(torch: Any, params: dict[str, np.ndarray], lr: float = 1e-3, *,
               device: str = "cpu", to_tensor: Callable[[Any], Any] | None = None) -> StepFn:
    """The same step in PyTorch: ``nn.Sequential`` with a copy of ``params`` on ``device``,
    SGD. ``to_tensor`` wraps the step's x and y (default ``torch.from_numpy``;
    ``torch.from_dlpack`` for CuPy arrays)."""
    nn = torch.nn
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(9216, 128), nn.ReLU(), nn.Linear(128, 10))
    with torch.no_grad():
        for i, k in ((0, "1"), (2, "2"), (6, "3"), (8, "4")):
            model[i].weight.copy_(torch.from_numpy(params["w" + k]))
            model[i].bias.copy_(torch.from_numpy(params["b" + k]))
    model.to(device)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    cross_entropy = torch.nn.functional.cross_entropy
    wrap = to_tensor or torch.from_numpy

    def step(x: Any, y: Any) -> float:
        opt.zero_grad(set_to_none=True)
        loss = cross_entropy(model(wrap(x)), wrap(y))
        loss.backward()
        opt.step()
        return float(loss.item())

    return step


def data(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random 28x28 images in [0, 1) and int64 labels 0..9."""
    rng = np.random.default_rng(seed)
    return rng.random((n, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, n, dtype=np.int64)


def seeds_model(seed: int = 0, lr: float = 1e-3) -> Any:
    """The seeds' CNN as ``fastcnn.Sequential``, compiled with SGD and sparse categorical
    cross-entropy. Raises ImportError / AttributeError when the layer API is unavailable."""
    from .. import optimizers
    from ..models import seeds_cnn

    model = seeds_cnn((1, 28, 28), 10, seed=seed)
    model.compile(optimizer=optimizers.SGD(learning_rate=lr),
                  loss="sparse_categorical_crossentropy")
    return model


def fit_and_bare_epoch(batch: int, steps: int) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """Two callables: one ``fit`` epoch of the seeds' model and the bare ops loop over the same
    number of batches (each with its own weights)."""
    x, y = data(batch * steps)
    model = seeds_model()
    bare = fastcnn_step(init_params())

    def fit_epoch() -> Any:
        return model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=True, seed=0)

    def bare_epoch() -> float:
        loss = 0.0
        for i in range(0, batch * steps, batch):
            loss = bare(x[i:i + batch], y[i:i + batch])
        return loss

    return fit_epoch, bare_epoch
