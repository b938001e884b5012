"""Training callbacks: History, EarlyStopping, ModelCheckpoint, LearningRateScheduler,
ReduceLROnPlateau, CSVLogger, TerminateOnNaN, LambdaCallback.

A callback gets ``set_model(model)`` and then, from ``model.fit``:
``on_train_begin(logs)``, ``on_epoch_begin(epoch, logs)``,
``on_train_batch_begin(batch, logs)``, ``on_train_batch_end(batch, logs)`` (``logs`` holds the
running ``loss`` and metrics of the epoch), ``on_epoch_end(epoch, logs)`` (``logs`` holds the
epoch's ``loss``, metrics and ``val_*`` values; a callback may add keys, they go into the
History) and ``on_train_end(logs)``. Epochs and batches are 0-based. Setting
``model.stop_training = True`` ends training after the current batch.

A NaN or infinite batch loss is found by ``train_step`` before that batch changes any weight;
``fit`` then asks ``on_train_batch_nonfinite(batch, logs)`` (``logs["loss"]`` the value):
when a callback returns True (:class:`TerminateOnNaN` does) training ends there cleanly, with
the weights of before that batch and the History of the completed epochs; otherwise ``fit``
raises :class:`fastcnn.NonFiniteLossError`.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from .distributed import _fit as _dist

__all__ = [
    "CSVLogger",
    "Callback",
    "CallbackList",
    "EarlyStopping",
    "History",
    "LambdaCallback",
    "LearningRateScheduler",
    "ModelCheckpoint",
    "ReduceLROnPlateau",
    "TerminateOnNaN",
]

Logs = dict[str, Any]


class Callback:
    """Base class; every hook is a no-op."""

    #: True for callbacks that write files or print (ModelCheckpoint, CSVLogger): under several
    #: ranks (fastcnn.distributed) only rank 0's CallbackList runs them
    main_rank_only: bool = False

    def __init__(self) -> None:
        self.model: Any = None

    def set_model(self, model: Any) -> None:
        """Attach the model being trained."""
        self.model = model

    def on_train_begin(self, logs: Logs | None = None) -> None:
        """Before the first epoch."""

    def on_train_end(self, logs: Logs | None = None) -> None:
        """After the last epoch (also after an interruption by Ctrl-C)."""

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        """Before epoch ``epoch`` (0-based)."""

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        """After epoch ``epoch``, with its results."""

    def on_train_batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        """Before batch ``batch`` of the epoch."""

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        """After batch ``batch`` was applied (weights updated)."""

    def on_train_batch_nonfinite(self, batch: int, logs: Logs | None = None) -> bool:
        """The loss of batch ``batch`` is NaN or infinite (``logs["loss"]``); no weight has
        changed. Return True to end training cleanly here instead of raising
        :class:`fastcnn.NonFiniteLossError` (the default, False)."""
        return False


class CallbackList(Callback):
    """Calls each hook of a list of callbacks in order."""

    def __init__(self, callbacks: list[Callback] | None = None, model: Any = None) -> None:
        super().__init__()
        self.callbacks = list(callbacks or [])
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be fastcnn.callbacks.Callback objects, "
                                f"got {cb!r}")
        if not _dist.is_main():
            self.callbacks = [cb for cb in self.callbacks if not cb.main_rank_only]
        if model is not None:
            self.set_model(model)

    def set_model(self, model):
        super().set_model(model)
        for cb in self.callbacks:
            cb.set_model(model)

    def _dispatch(self, hook: str, *args: Any) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(*args)

    def on_train_begin(self, logs=None):
        self._dispatch("on_train_begin", logs)

    def on_train_end(self, logs=None):
        self._dispatch("on_train_end", logs)

    def on_epoch_begin(self, epoch, logs=None):
        self._dispatch("on_epoch_begin", epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._dispatch("on_epoch_end", epoch, logs)

    def on_train_batch_begin(self, batch, logs=None):
        self._dispatch("on_train_batch_begin", batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self._dispatch("on_train_batch_end", batch, logs)

    def on_train_batch_nonfinite(self, batch, logs=None):
        # every callback is asked (none is skipped because an earlier one said True)
        answers = [bool(cb.on_train_batch_nonfinite(batch, logs)) for cb in self.callbacks]
        return any(answers)


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


class CSVLogger(Callback):
    """Write each epoch's results to a CSV file (Keras' format).

    Args:
        filename: the file; its folder must exist.
        separator: the field separator.
        append: add to an existing file (its header is kept and used for the columns) instead
            of overwriting it.

    The columns are ``epoch`` (0-based, as Keras writes it) and the first epoch's result names,
    sorted (Keras' order); a name missing in a later epoch is written as ``NA``. The file is
    flushed after every epoch (a run stopped early keeps its lines) and closed at the end of
    training. A file that can't be opened raises an OSError naming ``filename``.
    """

    main_rank_only = True

    def __init__(self, filename: str | os.PathLike[str], separator: str = ",",
                 append: bool = False) -> None:
        super().__init__()
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError(f"CSVLogger: separator must be one character, got {separator!r}")
        self.filename = os.fspath(filename)
        self.sep = separator
        self.append = bool(append)
        self.keys: list[str] | None = None
        self._file: io.TextIOBase | None = None
        self._writer: Any = None
        self._header_needed = True

    def _existing_header(self) -> list[str] | None:
        try:
            with open(self.filename, newline="") as f:
                first = f.readline()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise OSError(f"CSVLogger: cannot read {self.filename!r}: {e.strerror or e}") from e
        if not first.strip():
            return None
        return next(csv.reader([first], delimiter=self.sep))

    def on_train_begin(self, logs=None):
        self._close()
        self.keys = None
        self._header_needed = True
        if self.append:
            header = self._existing_header()
            if header is not None:
                self.keys = [k for k in header if k != "epoch"]
                self._header_needed = False
        try:
            self._file = open(self.filename, "a" if self.append else "w",
                              newline="", encoding="utf-8")
        except OSError as e:
            raise OSError(f"CSVLogger: cannot open {self.filename!r} for writing: "
                          f"{e.strerror or e}") from e

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self._file is None:  # used without on_train_begin (a hand-written loop)
            self.on_train_begin()
        assert self._file is not None
        if self.keys is None:
            self.keys = sorted(logs)
        if self._writer is None:
            self._writer = csv.DictWriter(self._file, fieldnames=["epoch", *self.keys],
                                          delimiter=self.sep, extrasaction="ignore")
            if self._header_needed:
                self._writer.writeheader()
        row = {"epoch": epoch, **{k: _csv_value(logs[k]) if k in logs else "NA"
                                  for k in self.keys}}
        try:
            self._writer.writerow(row)
            self._file.flush()
        except OSError as e:
            raise OSError(f"CSVLogger: cannot write to {self.filename!r}: "
                          f"{e.strerror or e}") from e

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file = None
        self._writer = None

    def on_train_end(self, logs=None):
        self._close()


def _csv_value(v: Any) -> Any:
    """A cell: numbers as they are, sequences as ``"[a, b]"`` (Keras' rendering)."""
    if isinstance(v, str):
        return v
    if isinstance(v, list | tuple | np.ndarray) and np.ndim(v) > 0:
        return f"[{', '.join(str(x) for x in np.ravel(v))}]"
    return float(v) if isinstance(v, np.floating | np.integer) else v


class TerminateOnNaN(Callback):
    """End training cleanly at the first NaN or infinite batch loss (Keras' callback).

    Without it ``fit`` raises :class:`fastcnn.NonFiniteLossError`. With it, ``fit`` stops at
    that batch instead: the batch is not applied (the weights, and the optimizer's state, are
    those of before it), the epoch it interrupted is not recorded, ``on_train_end`` runs and
    ``fit`` returns the History of the completed epochs. A line naming the epoch and batch is
    printed. A non-finite running loss seen in ``on_train_batch_end`` (a custom step that
    does not check) also sets ``model.stop_training``.

    Attributes:
        stopped: ``(epoch, batch)`` (0-based) where training was ended, or None.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stopped: tuple[int, int] | None = None
        self._epoch = 0

    def on_train_begin(self, logs=None):
        self.stopped = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def _stop(self, batch: int, loss: Any, applied: bool) -> None:
        self.stopped = (self._epoch, batch)
        self.model.stop_training = True
        state = ("after it was applied" if applied
                 else "the weights are those before this batch")
        print(f"Epoch {self._epoch + 1}, batch {batch + 1}: the loss is {loss}; terminating "
              f"training ({state}).", flush=True)

    def on_train_batch_nonfinite(self, batch, logs=None):
        self._stop(batch, (logs or {}).get("loss", math.nan), applied=False)
        return True

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self._stop(batch, loss, applied=True)


class LambdaCallback(Callback):
    """A callback from plain functions: ``LambdaCallback(on_epoch_end=lambda e, logs: ...)``
    (any of the hook names; missing ones do nothing)."""

    _HOOKS = ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
              "on_train_batch_begin", "on_train_batch_end", "on_train_batch_nonfinite")

    def __init__(self, **hooks: Callable[..., None]) -> None:
        super().__init__()
        for name, fn in hooks.items():
            if name not in self._HOOKS:
                raise ValueError(f"LambdaCallback: unknown hook {name!r}; known: {self._HOOKS}")
            setattr(self, name, fn)
