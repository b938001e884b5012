"""The :class:`TensorBoard` callback (Keras' arguments and file layout): the epoch results, the
batch results and weight histograms as TensorBoard event files, written with tensorboardX (or
PyTorch's ``torch.utils.tensorboard``), an optional extra: ``pip install "fastcnn[tensorboard]"``.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from .._arrays import to_host
from .base import Callback

__all__ = ["TensorBoard", "summary_writer_class"]

_INSTALL = 'pip install "fastcnn[tensorboard]"'


def summary_writer_class() -> type:
    """tensorboardX's ``SummaryWriter``, else PyTorch's ``torch.utils.tensorboard`` one (which
    needs the tensorboard package); ImportError saying what to install when neither loads."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError as first:
        try:
            from torch.utils.tensorboard import SummaryWriter  # type: ignore[no-redef]
        except ImportError:
            raise ImportError(f"fastcnn.callbacks.TensorBoard writes event files with "
                              f"tensorboardX, which is not installed ({first}); install it "
                              f"with: {_INSTALL}") from None
    return SummaryWriter  # type: ignore[no-any-return]


def _check_int(value: Any, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ValueError(f"TensorBoard: {name} must be an int >= {low}, got {value!r}")
    return int(value)


class TensorBoard(Callback):
    """Write training results for TensorBoard (``tensorboard --logdir logs``), as Keras does.

    Layout: ``<log_dir>/train`` holds the training results, ``<log_dir>/validation`` the
    validation ones. After every epoch ``e`` each result ``<name>`` of the epoch (``loss``,
    ``accuracy``, ...) is the scalar ``epoch_<name>`` at step ``e`` in ``train`` (with
    ``epoch_learning_rate``: the epoch's ``learning_rate`` result when a callback set one,
    else the optimizer's rate), and each ``val_<name>`` is ``epoch_<name>`` in ``validation``,
    with ``evaluation_<name>_vs_iterations`` at step ``optimizer.iterations`` too. Values are
    stored as float32 (TensorBoard's scalars, as Keras writes them).

    Args:
        log_dir: the folder of the event files.
        histogram_freq: every that many epochs (0: never), a histogram of every weight,
            ``<layer>/<weight>/histogram`` (e.g. ``dense/kernel/histogram``) at step ``e`` in
            ``train``.
        write_graph: write the model (TensorBoard has no graph of fastcnn's layers: the
            ``model.summary()`` table is written as the text ``model_summary`` instead).
        write_images: not supported (True is a ValueError).
        write_steps_per_second: add ``epoch_steps_per_second`` (and ``batch_steps_per_second``
            with batch updates): batches per second of wall time.
        update_freq: ``"epoch"``; ``"batch"`` or an int ``n``: also the running results
            ``batch_<name>`` after every (n-th) batch, at step ``optimizer.iterations`` (the
            batches trained so far, 1-based).
        profile_batch: 0 or None only (no profiler: anything else is a ValueError).
        embeddings_freq, embeddings_metadata: 0 and None only (no embedding projector).

    Raises:
        ImportError: neither tensorboardX nor PyTorch's writer can be imported (when the
            callback is made, before any training), naming ``pip install
            "fastcnn[tensorboard]"``.

    Under ``fastcnn.distributed`` only rank 0 writes.
    """

    main_rank_only = True

    def __init__(self, log_dir: str | os.PathLike[str] = "logs", histogram_freq: int = 0,
                 write_graph: bool = True, write_images: bool = False,
                 write_steps_per_second: bool = False, update_freq: str | int = "epoch",
                 profile_batch: int | None = 0, embeddings_freq: int = 0,
                 embeddings_metadata: Any = None) -> None:
        super().__init__()
        if not isinstance(log_dir, str | os.PathLike) or not os.fspath(log_dir):
            raise ValueError(f"TensorBoard: log_dir must be a folder path, got {log_dir!r}")
        self.log_dir = os.fspath(log_dir)
        self.histogram_freq = _check_int(histogram_freq, "histogram_freq", 0)
        self.write_graph = bool(write_graph)
        if write_images:
            raise ValueError("TensorBoard: write_images=True is not supported (fastcnn writes "
                             "weight histograms with histogram_freq, no weight images); "
                             "drop the argument")
        self.write_images = False
        self.write_steps_per_second = bool(write_steps_per_second)
        if update_freq == "batch":
            update_freq = 1
        self.update_freq: str | int = (update_freq if update_freq == "epoch"
                                       else _check_int(update_freq, "update_freq", 1))
        if profile_batch not in (0, None) or isinstance(profile_batch, bool):
            raise ValueError(f"TensorBoard: profile_batch={profile_batch!r} is not supported "
                             f"(fastcnn has no TensorBoard profiler); leave it at 0")
        if embeddings_freq != 0 or embeddings_metadata is not None:
            raise ValueError("TensorBoard: embeddings_freq / embeddings_metadata are not "
                             "supported (no embedding projector); leave them at 0 / None")
        self._writer_class = summary_writer_class()  # ImportError now, before training
        self._writers: dict[str, Any] = {}
        self._epoch_start = 0.0
        self._batch_start = 0.0
        self._epoch_batches = 0

    # -- writers ---------------------------------------------------------------------------
    def _writer(self, which: str) -> Any:
        """The ``train`` / ``validation`` writer, created on first use."""
        w = self._writers.get(which)
        if w is None:
            w = self._writers[which] = self._writer_class(os.path.join(self.log_dir, which))
        return w

    def _close(self) -> None:
        for w in self._writers.values():
            w.close()
        self._writers = {}

    # -- hooks -------------------------------------------------------------------------------
    def on_train_begin(self, logs=None):
        self._close()
        if self.write_graph and getattr(self.model, "built", False):
            lines: list[str] = []
            self.model.summary(print_fn=lines.append)
            # indented: a code block in TensorBoard's markdown text view
            self._writer("train").add_text("model_summary",
                                           "\n".join("    " + ln for ln in lines), 0)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()
        self._epoch_batches = 0

    def on_train_batch_begin(self, batch, logs=None):
        self._batch_start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self._epoch_batches += 1
        if self.update_freq == "epoch":
            return
        step = int(self.model.optimizer.iterations)
        if step % int(self.update_freq):
            return
        w = self._writer("train")
        for name, value in (logs or {}).items():
            w.add_scalar(f"batch_{name}", float(value), step)
        if self.write_steps_per_second:
            dt = time.perf_counter() - self._batch_start
            w.add_scalar("batch_steps_per_second", 1.0 / dt if dt > 0 else 0.0, step)

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        train = {k: v for k, v in logs.items() if not k.startswith("val_")}
        val = {k[len("val_"):]: v for k, v in logs.items() if k.startswith("val_")}
        opt = getattr(self.model, "optimizer", None)
        if opt is not None and "learning_rate" not in train:
            train["learning_rate"] = float(opt.learning_rate)
        if self.write_steps_per_second:
            dt = time.perf_counter() - self._epoch_start
            train["steps_per_second"] = self._epoch_batches / dt if dt > 0 else 0.0
        w = self._writer("train")
        for name, value in train.items():
            w.add_scalar(f"epoch_{name}", float(value), epoch)
        if val:
            v = self._writer("validation")
            iterations = int(opt.iterations) if opt is not None else epoch
            for name, value in val.items():
                v.add_scalar(f"epoch_{name}", float(value), epoch)
                v.add_scalar(f"evaluation_{name}_vs_iterations", float(value), iterations)
        if self.histogram_freq and epoch % self.histogram_freq == 0:
            for layer in self.model.layers:
                for name, p in layer.params.items():
                    w.add_histogram(f"{layer.name}/{name}/histogram",
                                    np.asarray(to_host(p), dtype=np.float64), epoch)
        for writer in self._writers.values():
            writer.flush()

    def on_train_end(self, logs=None):
        self._close()
