"""Ready-made models: the one definition of each network the project uses.

* :func:`seeds_cnn` -- the seeds' CNN: two 3x3 ReLU convolutions (32, 64 filters), 2x2 max
  pooling, a 128-unit ReLU dense layer and a softmax classifier. For (1, 28, 28) inputs and 10
  classes it has 1,199,882 parameters (Keras' count) and 4.6 GFLOP per training step at batch
  64. ``fastcnn train`` trains it; the benchmarks time it against PyTorch.
"""

from __future__ import annotations

from . import layers as L
from .model import Sequential

__all__ = ["seeds_cnn"]


def seeds_cnn(input_shape: tuple[int, ...] = (1, 28, 28), classes: int = 10, *,
              seed: int | None = 0, padding: str = "valid") -> Sequential:
    """The seeds' CNN for inputs ``(C, H, W)``, built (weights from
    ``np.random.default_rng(seed)``) and not compiled.

    Args:
        input_shape: per-sample input shape ``(C, H, W)``.
        classes: units of the softmax output layer.
        seed: weight-initialisation seed (None: fresh random weights).
        padding: the convolutions' padding; ``"same"`` keeps the spatial size through them
            (used for the tiny 8x8 digits).

    Returns:
        ``Sequential``: (N, C, H, W) -> (N, classes) probabilities.
    """
    return Sequential([
        L.Conv2D(32, 3, padding=padding, activation="relu"),
        L.Conv2D(64, 3, padding=padding, activation="relu"),
        L.MaxPool2D(2),
        L.Flatten(),
        L.Dense(128, activation="relu"),
        L.Dense(classes, activation="softmax"),
    ], input_shape=tuple(input_shape), seed=seed)
