"""The :class:`BackupAndRestore` callback (Keras 3's): back up a ``fit`` run as it goes, so that a
run that was killed resumes from its last backup when the same ``fit`` call is made again.

What a backup holds and how a run is resumed exactly is :mod:`fastcnn.callbacks._fit_state`'s
business; this module decides when to save, where the files go, and writes them atomically.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import _files
from .base import Callback

if TYPE_CHECKING:
    from ._fit_state import FitState

__all__ = ["BackupAndRestore"]

#: the backup's file name in ``backup_dir``; the previous one (``double_checkpoint``) adds .bkp
BACKUP_NAME = "backup.npz"


class BackupAndRestore(Callback):
    """Back up training to ``backup_dir`` during ``fit``, and resume from the backup when
    ``fit`` is called again after the run was killed (Keras 3's callback and arguments).

    Each backup is one ``.npz`` file, ``<backup_dir>/backup.npz``, written atomically (a run
    killed while writing leaves the previous backup whole; see
    :func:`fastcnn.saving.atomic_write`). It holds the weights, the optimizer's state, the
    epoch and batch reached and every random state the run depends on (fit's shuffling, the
    Dropout masks, a :mod:`fastcnn.data` dataset's shuffle and augmentation), the epoch's
    running loss and metrics, the History so far and the state of EarlyStopping /
    ReduceLROnPlateau / ModelCheckpoint (see :mod:`fastcnn.callbacks._fit_state`). When
    ``fit`` starts and a backup exists, all of it is put back and training continues at the
    batch after the backup, so that the run ends with bitwise the same weights and History
    as a run that was never stopped (Keras restarts the interrupted epoch instead). The
    ``initial_epoch`` of that fit call is then ignored, as in Keras.

    Args:
        backup_dir: the folder of the backup (created when needed). Use one folder per run:
            a backup written for another model raises a ValueError naming it.
        save_freq: ``"epoch"`` (after every epoch) or an int ``n``: after every ``n`` batches
            (counted across epochs, as Keras counts them).
        double_checkpoint: keep the previous backup as ``backup.npz.bkp`` too; a backup that
            can't be read (damaged on disk) is then replaced by it, with a warning.
        delete_checkpoint: delete the backup files (and the folder, when empty) at the end of a
            fit that was not interrupted by Ctrl-C.

    Notes:
        Only ``model.fit`` drives it. The model must be built before ``fit`` (Keras' rule:
        an input shape or a ``fastcnn.Input``) when there is a backup to restore. Not under
        ``fastcnn.distributed``. With CSVLogger, pass ``append=True`` so that a resumed run
        adds its epochs to the file. A dataset, Sequence or generator of your own must give
        the same batches when read again (its randomness is not saved).
    """

    runs_last = True  # sees the epoch as History and the other callbacks leave it

    def __init__(self, backup_dir: str | os.PathLike[str], save_freq: str | int = "epoch",
                 double_checkpoint: bool = False, delete_checkpoint: bool = True) -> None:
        super().__init__()
        if not isinstance(backup_dir, str | os.PathLike) or not os.fspath(backup_dir):
            raise ValueError(f"BackupAndRestore: backup_dir must be a folder path, got "
                             f"{backup_dir!r}")
        if save_freq != "epoch" and (isinstance(save_freq, bool)
                                     or not isinstance(save_freq, int | np.integer)
                                     or save_freq < 1):
            raise ValueError(f"BackupAndRestore: save_freq must be 'epoch' or an int >= 1 "
                             f"(batches between backups), got {save_freq!r}")
        self.backup_dir = os.fspath(backup_dir)
        self.save_freq: str | int = save_freq if save_freq == "epoch" else int(save_freq)
        self.double_checkpoint = bool(double_checkpoint)
        self.delete_checkpoint = bool(delete_checkpoint)
        self._state: FitState | None = None  # set by fit (FitState.attach)
        self._batches_since_save = 0

    @property
    def path(self) -> str:
        """The backup file: ``<backup_dir>/backup.npz``."""
        return os.path.join(self.backup_dir, BACKUP_NAME)

    def on_train_begin(self, logs=None):
        if self._state is None:
            raise ValueError("BackupAndRestore works inside model.fit only (it needs fit's "
                             "state to restore a run)")
        self._batches_since_save = 0

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq == "epoch":
            return
        self._batches_since_save += 1
        if self._batches_since_save >= self.save_freq:
            self._batches_since_save = 0
            self._save(at_epoch_end=False)

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self._save(at_epoch_end=True)

    def on_train_end(self, logs=None):
        history = getattr(self.model, "history", None)
        if self.delete_checkpoint and not getattr(history, "interrupted", False):
            for p in (self.path, self.path + ".bkp"):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(p)
            with contextlib.suppress(OSError):
                os.rmdir(self.backup_dir)  # only when empty: never a folder of other files
        self._state = None

    # -- files -------------------------------------------------------------------------------
    def _save(self, at_epoch_end: bool) -> None:
        assert self._state is not None
        meta, arrays = self._state.snapshot(at_epoch_end)
        os.makedirs(self.backup_dir, exist_ok=True)
        if self.double_checkpoint and os.path.exists(self.path):
            with open(self.path, "rb") as f:
                previous = f.read()
            _files.atomic_write(self.path + ".bkp", lambda out: out.write(previous))
        arrays = {"meta": np.array(json.dumps(meta)), **arrays}
        _files.atomic_write(self.path, lambda f: np.savez(f, **arrays))  # type: ignore[arg-type]

    def _load(self) -> tuple[dict[str, Any], dict[str, np.ndarray], str] | None:
        """The backup ``(meta, arrays, path)``, the previous one when the latest can't be
        read, or None when there is none."""
        path = self.path
        if not os.path.exists(path) and not os.path.exists(path + ".bkp"):
            return None
        try:
            return (*_read(path), path)
        except (ValueError, FileNotFoundError) as e:
            if not os.path.exists(path + ".bkp"):
                if isinstance(e, FileNotFoundError):
                    return None
                raise
            warnings.warn(f"BackupAndRestore: the backup {path!r} can't be read ({e}); "
                          f"resuming from the previous one, {path + '.bkp'!r}", UserWarning,
                          stacklevel=2)
            return (*_read(path + ".bkp"), path + ".bkp")


def _read(path: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    try:
        arrays = _files.read_npz(path)
    except ValueError as e:
        raise ValueError(f"BackupAndRestore: {path!r} is not a fastcnn backup ({e})") from None
    try:
        meta = json.loads(str(arrays.pop("meta")[()]))
    except (KeyError, ValueError) as e:
        raise ValueError(f"BackupAndRestore: {path!r} is not a fastcnn backup (no readable "
                         f"'meta' entry: {e!r})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"BackupAndRestore: {path!r} is not a fastcnn backup")
    return meta, arrays
