"""The :class:`History` callback: what ``fit`` returns, the results of every epoch."""

from __future__ import annotations

from typing import Any

from .base import Callback

__all__ = ["History"]


class History(Callback):
    """What ``fit`` returns.

    Attributes:
        history: ``{"loss": [...], "<metric>": [...], "val_loss": [...], ...}``, one float per
            completed epoch.
        epoch: the epoch indices recorded.
        params: ``{"epochs", "steps", "batch_size"}`` of the fit call.
        interrupted: True when training was stopped by Ctrl-C.
    """

    def __init__(self) -> None:
        super().__init__()
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []
        self.params: dict[str, Any] = {}
        self.interrupted = False

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(float(v))

    def __repr__(self) -> str:
        return f"History(epochs={len(self.epoch)}, keys={list(self.history)})"
