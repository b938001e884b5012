"""Training parity with PyTorch: the seeds' CNN trained with fastcnn's fit() and with PyTorch,
from the same initial weights, on the same batches in the same order, with the same SGD
recipe, ends with the same weights (float32 tolerance) and the same test accuracy.

This is the "same recipe, same accuracy" check on the bundled digits; MNIST itself can't be
downloaded here (fastcnn.datasets.load_mnist reads it when you have the IDX files).
Skipped without torch.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastcnn as fc
from fastcnn import layers as L

torch = pytest.importorskip("torch")


def _models(seed: int = 0) -> tuple[fc.Sequential, object]:
    model = fc.Sequential([
        L.Conv2D(32, 3, padding="same", activation="relu"),
        L.Conv2D(64, 3, padding="same", activation="relu"),
        L.MaxPool2D(2), L.Flatten(), L.Dense(128, activation="relu"),
        L.Dense(10, activation="softmax")], input_shape=(1, 8, 8), seed=seed)
    nn = torch.nn
    tm = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, padding=1),
                       nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(1024, 128), nn.ReLU(),
                       nn.Linear(128, 10))
    ours = model.get_weights()  # kernel, bias per layer: PyTorch's layouts
    theirs = [p for p in tm.parameters()]
    assert len(ours) == len(theirs)
    with torch.no_grad():
        for t, a in zip(theirs, ours, strict=True):
            assert tuple(t.shape) == a.shape
            t.copy_(torch.from_numpy(a))
    return model, tm


def test_fit_tracks_pytorch_sgd_on_digits() -> None:
    (x, y), (xt, yt) = fc.datasets.load_digits()
    x, y = x[:640], y[:640]
    bs, epochs, lr, seed = 32, 3, 0.05, 7
    model, tm = _models()
    model.compile(fc.optimizers.SGD(learning_rate=lr, momentum=0.9),
                  "sparse_categorical_crossentropy", ["accuracy"])
    hist = model.fit(x, y, batch_size=bs, epochs=epochs, shuffle=True, seed=seed, verbose=0)

    torch.manual_seed(0)
    opt = torch.optim.SGD(tm.parameters(), lr=lr, momentum=0.9)
    rng = np.random.default_rng(seed)  # fit(): one permutation per epoch from this generator
    losses = []
    for _ in range(epochs):
        perm = rng.permutation(len(x))
        total = 0.0
        for i in range(0, len(x), bs):
            idx = perm[i:i + bs]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(tm(torch.from_numpy(x[idx])),
                                                     torch.from_numpy(y[idx]))
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        losses.append(total / len(x))

    # per-epoch mean training loss and the final weights agree to float32 accuracy
    np.testing.assert_allclose(hist.history["loss"], losses, rtol=2e-3)
    for a, t in zip(model.get_weights(), tm.parameters(), strict=True):
        np.testing.assert_allclose(a, t.detach().numpy(), rtol=1e-2, atol=2e-4)
    # ... and so does the held-out accuracy
    ours = model.evaluate(xt, yt, verbose=0)[1]
    with torch.no_grad():
        theirs = (tm(torch.from_numpy(xt)).argmax(1).numpy() == yt).mean()
    assert abs(ours - theirs) <= 2 / len(yt)
    assert ours > 0.85
