"""The :class:`CSVLogger` callback: each epoch's results as a row of a CSV file (Keras'
format)."""

from __future__ import annotations

import csv
import io
import os
from typing import Any

import numpy as np

from .base import Callback

__all__ = ["CSVLogger"]


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
