"""The end-of-epoch line of ``fit``'s progress bar, fitted to the terminal's width.

While an epoch runs, tqdm draws ``Epoch 1/2:  40%|████  | 4/10 [00:01<00:02, loss=..]`` and
trims it to the terminal. When the epoch ends, the bar's last frame is replaced by one line in
the bar's own ``name=value`` words that keeps the validation metrics visible (Keras' ``12/12 -
2s - loss: ...`` layout; one line, wrapped here)::

    Epoch 1/2 - 12/12 - 2s - loss=0.4321 accuracy=0.8765 val_loss=0.3210
    val_accuracy=0.9012

and, when that is wider than the terminal (``shutil.get_terminal_size``), the first of these
shorter forms that fits: without the step count; compact, with ``accuracy`` written ``acc``
(``Epoch 1/2 2s loss=0.4321 acc=0.8765 ...``); without the training metrics other than the
loss; the validation metrics alone; the same without the word ``Epoch``. The numbers keep
their 4 decimals in every form. (Piped, ``fit(verbose=2)`` prints Keras' ``loss: 0.4321``
lines instead; that is ``training.py``'s.)
"""

from __future__ import annotations

import shutil
from typing import Any

__all__ = ["end_of_epoch_line", "finish_epoch_bar", "terminal_columns"]


def terminal_columns(bar: Any = None) -> int:
    """The width to fit: ``shutil.get_terminal_size`` (``COLUMNS``, else the terminal, else
    80), and no more than the bar's own ``ncols`` when tqdm fixed one."""
    cols = shutil.get_terminal_size((80, 24)).columns
    ncols = getattr(bar, "ncols", None)
    return min(cols, ncols) if ncols else cols


def _seconds(s: float) -> str:
    return f"{s * 1000:.0f}ms" if s < 1 else f"{s:.0f}s"


def _short(name: str) -> str:
    return name.replace("accuracy", "acc")


def end_of_epoch_line(head: str, steps: str, seconds: float, logs: dict[str, float],
                      width: int) -> str:
    """The epoch's summary line, at most ``width`` columns when any form fits (else the
    shortest form, which tqdm trims).

    Args:
        head: ``"Epoch 1/2"``.
        steps: ``"12/12"`` (batches done / per epoch), or ``""``.
        seconds: the epoch's wall time.
        logs: ``{"loss": .., "accuracy": .., "val_loss": .., ...}``, in display order.
        width: the terminal's columns.
    """
    t = _seconds(seconds)
    full = " ".join(f"{k}={v:.4f}" for k, v in logs.items())
    compact = {k: f"{_short(k)}={v:.4f}" for k, v in logs.items()}
    keep = [v for k, v in compact.items() if k == "loss" or k.startswith("val_")]
    val = [v for k, v in compact.items() if k.startswith("val_")]
    forms = [
        " - ".join([head, *([steps] if steps else []), t, full]),
        " - ".join([head, t, full]),
        " ".join([head, t, *compact.values()]),
        " ".join([head, t, *keep]),
        " ".join([head, *(val or keep)]),
        " ".join([head.removeprefix("Epoch "), *(val or keep)]),
    ]
    for line in forms:
        if len(line) <= width:
            return line
    return forms[-1]


def finish_epoch_bar(bar: Any, logs: dict[str, float], seconds: float) -> None:
    """Replace a tqdm epoch bar's last frame by :func:`end_of_epoch_line` and close it (a
    disabled bar is just closed)."""
    if not getattr(bar, "disable", True):
        steps = f"{bar.n}/{bar.total}" if bar.total else f"{bar.n}"
        line = end_of_epoch_line(str(bar.desc).rstrip(": "), steps, seconds, logs,
                                 terminal_columns(bar))
        bar.bar_format = "{desc}"
        bar.set_description_str(line, refresh=False)
    bar.close()
