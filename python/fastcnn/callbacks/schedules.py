"""Callbacks that set the learning rate: :class:`LearningRateScheduler` (a function of the
epoch) and :class:`ReduceLROnPlateau` (lowered when a monitored result stalls)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .base import Callback
from .monitor import _monitored, resolve_mode

__all__ = ["LearningRateScheduler", "ReduceLROnPlateau"]


class LearningRateScheduler(Callback):
    """Set the optimizer's learning rate at the start of each epoch to
    ``schedule(epoch, lr)`` (epoch 0-based, ``lr`` the current rate); the rate used is added
    to the epoch's results as ``"learning_rate"``. Replaces any step schedule of the
    optimizer by the constant returned."""

    def __init__(self, schedule: Callable[[int, float], float], verbose: int = 0) -> None:
        super().__init__()
        self.schedule = schedule
        self.verbose = verbose

    def on_epoch_begin(self, epoch, logs=None):
        opt = self.model.optimizer
        lr = self.schedule(epoch, float(opt.learning_rate))
        try:
            lr = float(lr)
        except (TypeError, ValueError):
            raise ValueError(f"LearningRateScheduler: the schedule must return a number, "
                             f"got {lr!r}") from None
        opt.learning_rate = lr
        if self.verbose:
            print(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {lr}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(self.model.optimizer.learning_rate)


class ReduceLROnPlateau(Callback):
    """Multiply the optimizer's learning rate by ``factor`` when ``monitor`` has not improved
    for ``patience`` epochs (Keras' arguments, defaults and rules).

    Args:
        monitor: an epoch result (``"val_loss"``, ``"val_accuracy"``, ``"loss"``, ...).
        factor: ``new_lr = max(lr * factor, min_lr)``; in [0, 1).
        patience: epochs without improvement before the rate is reduced.
        verbose: 1 prints a line for each reduction.
        mode: ``"min"``, ``"max"`` or ``"auto"`` (max for accuracy-like names).
        min_delta: an improvement must beat the best by more than this.
        cooldown: epochs to wait after a reduction before counting again.
        min_lr: the rate is never reduced below this (nor reduced once at it).

    The rate of each epoch is added to its results as ``"learning_rate"``. The optimizer's
    learning rate must be a number: with a schedule (a callable) as learning rate,
    ``on_train_begin`` raises a TypeError.

    Attributes:
        best, wait, cooldown_counter: the state of the rule.
    """

    state_attrs = ("best", "wait", "cooldown_counter")

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10,
                 verbose: int = 0, mode: str = "auto", min_delta: float = 1e-4,
                 cooldown: int = 0, min_lr: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= float(factor) < 1.0:
            raise ValueError(f"ReduceLROnPlateau: factor must be in [0, 1) (the rate is "
                             f"multiplied by it), got factor={factor}")
        for nm, v in (("patience", patience), ("cooldown", cooldown)):
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 0:
                raise ValueError(f"ReduceLROnPlateau: {nm} must be an int >= 0, got {v!r}")
        if not float(min_lr) >= 0.0:
            raise ValueError(f"ReduceLROnPlateau: min_lr must be >= 0, got {min_lr!r}")
        self.monitor = monitor
        self.factor = float(factor)
        self.patience = int(patience)
        self.verbose = verbose
        self.mode = resolve_mode(mode, monitor)
        self.min_delta = abs(float(min_delta))
        self.cooldown = int(cooldown)
        self.min_lr = float(min_lr)
        self._reset()

    def _reset(self) -> None:
        self.best = math.inf if self.mode == "min" else -math.inf
        self.wait = 0
        self.cooldown_counter = 0

    def _better(self, a: float, b: float) -> bool:
        if self.mode == "min":
            return a < b - self.min_delta
        return a > b + self.min_delta

    def _optimizer(self) -> Any:
        opt = self.model.optimizer
        if opt.schedule is not None:
            raise TypeError(f"ReduceLROnPlateau: the optimizer's learning rate is the schedule "
                            f"{opt.schedule!r}, which this callback can't lower; give the "
                            f"optimizer a number as learning_rate, or drop the callback")
        return opt

    def on_train_begin(self, logs=None):
        self._optimizer()
        self._reset()

    def on_epoch_end(self, epoch, logs=None):
        opt = self._optimizer()
        if logs is not None:
            logs["learning_rate"] = float(opt.learning_rate)
        current = _monitored(logs, self.monitor, "ReduceLROnPlateau")
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._better(current, self.best):
            self.best = current
            self.wait = 0
        elif self.cooldown_counter == 0:
            self.wait += 1
            if self.wait >= self.patience:
                old = float(opt.learning_rate)
                if old > float(np.float32(self.min_lr)):
                    new = max(old * self.factor, self.min_lr)
                    opt.learning_rate = new
                    if self.verbose:
                        print(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate "
                              f"to {new}.")
                    self.cooldown_counter = self.cooldown
                    self.wait = 0
