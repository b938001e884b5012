"""Callbacks that watch a monitored epoch result: :class:`EarlyStopping`,
:class:`ModelCheckpoint`, and :func:`resolve_mode` (which way is better), the one rule they
(and :mod:`fastcnn.plot`) share."""

from __future__ import annotations

import math

import numpy as np

from .base import Callback, Logs

__all__ = ["EarlyStopping", "ModelCheckpoint", "resolve_mode"]


def resolve_mode(mode: str, monitor: str) -> str:
    """Whether a better ``monitor`` value is lower (``"min"``) or higher (``"max"``):
    ``mode`` itself unless it is ``"auto"``, which reads the name as Keras does (accuracy,
    top-k, AUC, precision and recall improve upwards, anything else downwards). The one rule
    for every callback that watches a metric, and for ``fastcnn.plot``'s best epoch."""
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode != "auto":
        return mode
    m = monitor.lower()
    if any(s in m for s in ("acc", "top_", "auc", "precision", "recall")):
        return "max"
    return "min"


def _monitored(logs: Logs | None, monitor: str, who: str) -> float:
    logs = logs or {}
    if monitor not in logs:
        raise ValueError(f"{who}: monitor {monitor!r} is not among the epoch's results "
                         f"{sorted(logs)} (val_* values need validation data)")
    return float(logs[monitor])


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved for ``patience`` epochs.

    Args:
        monitor: an epoch result (``"val_loss"``, ``"val_accuracy"``, ``"loss"``, ...).
        min_delta: an improvement must beat the best by more than this.
        patience: epochs without improvement before stopping.
        mode: ``"min"``, ``"max"`` or ``"auto"`` (max for accuracy-like names).
        baseline: training stops unless the monitored value beats this within ``patience``.
        restore_best_weights: at the end of training (stopped early or not), put back the
            weights of the best epoch.
        verbose: 1 prints a line when stopping / restoring.

    Attributes:
        stopped_epoch: the epoch (0-based) training stopped at, 0 if it did not stop early.
        best, best_epoch: the best monitored value and its epoch.
    """

    state_attrs = ("wait", "stopped_epoch", "best", "best_epoch", "best_weights", "_last_epoch")

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0,
                 verbose: int = 0, mode: str = "auto", baseline: float | None = None,
                 restore_best_weights: bool = False) -> None:
        super().__init__()
        self.monitor = monitor
        self.min_delta = abs(float(min_delta))
        self.patience = int(patience)
        self.verbose = verbose
        self.mode = resolve_mode(mode, monitor)
        self.baseline = baseline
        self.restore_best_weights = restore_best_weights
        self._reset()

    def _reset(self) -> None:
        self.wait = 0
        self.stopped_epoch = 0
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch = 0
        self.best_weights: list[np.ndarray] | None = None
        self._last_epoch = -1

    def _better(self, a: float, b: float) -> bool:
        if self.mode == "min":
            return a < b - self.min_delta
        return a > b + self.min_delta

    def on_train_begin(self, logs=None):
        self._reset()

    def on_epoch_end(self, epoch, logs=None):
        current = _monitored(logs, self.monitor, "EarlyStopping")
        self._last_epoch = epoch
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch
        self.wait += 1
        if self._better(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._better(current, self.baseline):
                self.wait = 0
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if (self.restore_best_weights and self.best_weights is not None
                and self.best_epoch != self._last_epoch):
            if self.verbose:
                print(f"Restoring model weights from the end of the best epoch: "
                      f"{self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)


class ModelCheckpoint(Callback):
    """Save the model (or its weights) at the end of each epoch.

    Args:
        filepath: may contain ``str.format`` fields filled from the epoch's results and
            ``epoch`` (1-based), e.g. ``"ckpt-{epoch:02d}-{val_loss:.3f}.npz"``.
        monitor, mode: what "best" means for ``save_best_only``.
        save_best_only: save only when ``monitor`` improves on the best so far.
        save_weights_only: ``model.save_weights`` instead of ``model.save``.
        verbose: 1 prints a line for each save.
    """

    main_rank_only = True
    state_attrs = ("best",)

    def __init__(self, filepath: str, monitor: str = "val_loss", verbose: int = 0,
                 save_best_only: bool = False, save_weights_only: bool = False,
                 mode: str = "auto") -> None:
        super().__init__()
        self.filepath = str(filepath)
        self.monitor = monitor
        self.verbose = verbose
        self.save_best_only = save_best_only
        self.save_weights_only = save_weights_only
        self.mode = resolve_mode(mode, monitor)
        self.best = math.inf if self.mode == "min" else -math.inf

    def on_train_begin(self, logs=None):
        self.best = math.inf if self.mode == "min" else -math.inf

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        path = self.filepath.format(epoch=epoch + 1, **logs)
        if self.save_best_only:
            current = _monitored(logs, self.monitor, "ModelCheckpoint")
            better = current < self.best if self.mode == "min" else current > self.best
            if not better:
                return
            if self.verbose:
                print(f"Epoch {epoch + 1}: {self.monitor} improved from {self.best:.5f} to "
                      f"{current:.5f}, saving model to {path}")
            self.best = current
        elif self.verbose:
            print(f"Epoch {epoch + 1}: saving model to {path}")
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)
