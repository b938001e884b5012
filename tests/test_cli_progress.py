"""fit's end-of-epoch line fits the terminal with the validation metrics visible: the forms of
`_progress.end_of_epoch_line`, and `fastcnn train` in a real 80-column pseudo-terminal."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

import fastcnn as fc
from _pty_run import run_in_pty, screen_lines
from fastcnn._progress import end_of_epoch_line, finish_epoch_bar

_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(
    [str(Path(fc.__file__).parent.parent), os.environ.get("PYTHONPATH", "")])}
_LOGS = {"loss": 0.43217, "accuracy": 0.87654, "val_loss": 0.32101, "val_accuracy": 0.90123}


def test_a_wide_terminal_gets_the_keras_line() -> None:
    assert end_of_epoch_line("Epoch 3/20", "12/12", 2.4, _LOGS, 200) == (
        "Epoch 3/20 - 12/12 - 2s - loss=0.4322 accuracy=0.8765 val_loss=0.3210 "
        "val_accuracy=0.9012")
    assert end_of_epoch_line("Epoch 1/1", "3/3", 0.25, {"loss": 1.0}, 80) == \
        "Epoch 1/1 - 3/3 - 250ms - loss=1.0000"


@pytest.mark.parametrize("width", [100, 90, 80, 70, 60, 50, 40])
def test_narrower_terminals_keep_the_validation_metrics(width: int) -> None:
    line = end_of_epoch_line("Epoch 10/20", "1234/1234", 12.0, _LOGS, width)
    assert len(line) <= width, line
    assert "val_loss" in line and "val_acc" in line and "0.3210" in line and "0.9012" in line
    assert line.startswith("Epoch 10/20" if width >= 50 else "10/20 ")


def test_the_forms_shorten_in_order() -> None:
    lines = [end_of_epoch_line("Epoch 1/2", "12/12", 3.0, _LOGS, w) for w in (200, 80, 70, 60)]
    assert lines[0] == ("Epoch 1/2 - 12/12 - 3s - loss=0.4322 accuracy=0.8765 val_loss=0.3210 "
                        "val_accuracy=0.9012")
    assert lines[1] == ("Epoch 1/2 - 3s - loss=0.4322 accuracy=0.8765 val_loss=0.3210 "
                        "val_accuracy=0.9012")  # exactly 80 columns
    assert lines[2] == "Epoch 1/2 3s loss=0.4322 acc=0.8765 val_loss=0.3210 val_acc=0.9012"
    assert lines[3] == "Epoch 1/2 3s loss=0.4322 val_loss=0.3210 val_acc=0.9012"


def test_finish_epoch_bar_writes_the_line_fitted_to_columns(monkeypatch, capsys) -> None:
    from tqdm import tqdm

    monkeypatch.setenv("COLUMNS", "60")
    bar = tqdm(total=4, desc="Epoch 1/2", file=sys.stdout, ncols=60)
    bar.update(4)
    finish_epoch_bar(bar, _LOGS, 1.0)
    last = capsys.readouterr().out.split("\r")[-1].rstrip("\n").rstrip()
    assert last == "Epoch 1/2 1s loss=0.4322 val_loss=0.3210 val_acc=0.9012"
    off = tqdm(total=1, disable=True)
    finish_epoch_bar(off, _LOGS, 1.0)  # a disabled bar is only closed
    assert capsys.readouterr().out == ""


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")
@pytest.mark.parametrize("columns", [80, 120])
def test_train_in_a_terminal_shows_val_metrics_within_its_width(columns: int) -> None:
    rc, raw = run_in_pty([sys.executable, "-m", "fastcnn", "train", "--epochs", "2",
                          "--batch-size", "128"], columns=columns, env=_ENV)
    assert rc == 0, raw
    assert "\r" in raw  # progress bars were drawn: it is a terminal
    # every frame the terminal was sent fits its width (no wrapped lines)
    frames = [f for ln in raw.replace("\r\n", "\n").split("\n") for f in ln.split("\r")]
    assert max(len(f.rstrip()) for f in frames) <= columns
    ends = [ln.rstrip() for ln in screen_lines(raw) if ln.startswith("Epoch ")]
    assert [ln.split()[1] for ln in ends] == ["1/2", "2/2"]
    for ln in ends:
        assert "val_loss" in ln and "val_acc" in ln and len(ln) <= columns, ln
    if columns >= 120:
        assert "val_accuracy=" in ends[0] and " - 11/11 - " in ends[0]  # the full form
    assert any(ln.startswith("test accuracy") for ln in screen_lines(raw))


def test_fit_verbose_1_ends_each_epoch_with_the_line(monkeypatch, capsys) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    m = fc.models.seeds_cnn((1, 8, 8), 2, seed=0, padding="same")
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x = np.random.default_rng(0).random((8, 1, 8, 8), dtype=np.float32)
    m.fit(x, np.arange(8) % 2, batch_size=4, epochs=1, verbose=1, validation_split=0.5)
    last = capsys.readouterr().out.split("\r")[-1].strip()
    assert last.startswith("Epoch 1/1 - 1/1 - ") and " val_accuracy=" in last
