"""The callback protocol: :class:`Callback` (every hook a no-op), :class:`CallbackList` (calls
a list of them in order; under several ranks only rank 0 runs the ``main_rank_only``
ones), and the two small general callbacks :class:`TerminateOnNaN` and
:class:`LambdaCallback`."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ..distributed import _fit as _dist

__all__ = ["Callback", "CallbackList", "LambdaCallback", "Logs", "TerminateOnNaN"]

Logs = dict[str, Any]


class Callback:
    """Base class; every hook is a no-op."""

    #: True for callbacks that write files or print (ModelCheckpoint, CSVLogger): under several
    #: ranks (fastcnn.distributed) only rank 0's CallbackList runs them
    main_rank_only: bool = False
    #: True for callbacks that must see what every other callback did to a batch or epoch
    #: (BackupAndRestore saves it): CallbackList calls them after all the others, History too
    runs_last: bool = False
    #: attribute names of the callback's own state (e.g. EarlyStopping's ``wait`` and
    #: ``best``) that BackupAndRestore saves and puts back on a resumed run; numbers, strings,
    #: None, arrays or lists of arrays
    state_attrs: tuple[str, ...] = ()

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
        self.callbacks = ([cb for cb in self.callbacks if not cb.runs_last]
                          + [cb for cb in self.callbacks if cb.runs_last])
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
