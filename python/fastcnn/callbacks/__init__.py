"""Training callbacks: History, EarlyStopping, ModelCheckpoint, LearningRateScheduler,
ReduceLROnPlateau, CSVLogger, TerminateOnNaN, LambdaCallback, BackupAndRestore, TensorBoard.

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

The callbacks live in modules by concern: ``base`` (the protocol, CallbackList, TerminateOnNaN,
LambdaCallback), ``history``, ``monitor`` (EarlyStopping, ModelCheckpoint, resolve_mode),
``schedules`` (LearningRateScheduler, ReduceLROnPlateau), ``csv_logger``, ``backup``
(BackupAndRestore) and ``tensorboard`` (TensorBoard); every public name is importable from
``fastcnn.callbacks``.
"""

from __future__ import annotations

from .backup import BackupAndRestore
from .base import Callback, CallbackList, LambdaCallback, TerminateOnNaN
from .base import Logs as Logs  # the logs dict type, as before the split
from .csv_logger import CSVLogger
from .history import History
from .monitor import EarlyStopping, ModelCheckpoint
from .monitor import resolve_mode as resolve_mode  # used by fastcnn.plot
from .schedules import LearningRateScheduler, ReduceLROnPlateau
from .tensorboard import TensorBoard

__all__ = [
    "BackupAndRestore",
    "CSVLogger",
    "Callback",
    "CallbackList",
    "EarlyStopping",
    "History",
    "LambdaCallback",
    "LearningRateScheduler",
    "ModelCheckpoint",
    "ReduceLROnPlateau",
    "TensorBoard",
    "TerminateOnNaN",
]
