"""The loss checks of a training step: :class:`NonFiniteLossError`, and on the GPU the
deferred form of its check with ``fit``'s reads of it (:mod:`fastcnn._deferred`).

On the GPU a step inside ``fit`` never waits for the device: :func:`defer_finite` queues the
non-finite-loss check as a device record (and sets the scope's skip flag, so the SGD / Adam
kernels write nothing from a bad batch on); ``fit`` reads the records at most every
:data:`READ_INTERVAL` seconds and at the end of an epoch (:func:`fit_check`), raising the error
with the epoch and batch (:class:`Where`) it was queued at.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from . import _deferred
from ._arrays import array_module

__all__ = ["READ_INTERVAL", "NonFiniteLossError", "Where", "defer_finite", "fit_check"]


class NonFiniteLossError(FloatingPointError, ValueError):
    """The training loss became NaN or infinite (raised by :func:`train_step` and ``fit``,
    before the batch changes any weight). ``loss`` is the offending value."""

    def __init__(self, message: str, loss: float = math.nan) -> None:
        super().__init__(message)
        self.loss = loss


def defer_finite(value: Any) -> None:
    """The non-finite loss check of a GPU step inside fit (:mod:`fastcnn._deferred`): the
    device computes it and sets the scope's skip flag (the built-in optimizers then write
    nothing), :class:`NonFiniteLossError` comes at fit's next read, naming the batch."""
    xp = array_module(value)
    bits = value.astype(np.float64).reshape(1).view(np.int64)
    bad = (~xp.isfinite(value)).reshape(1)
    rec = xp.concatenate([bad.astype(np.int64), bits])
    skip = _deferred.guard(xp)
    if skip is not None:  # the built-in optimizers on the GPU: no update from this step on
        skip |= bad.astype(np.int32)

    def message(r: np.ndarray) -> str | None:
        if not r[0]:
            return None
        return (f"the loss became {float(r[1:2].view(np.float64)[0])}; the weights are those "
                f"before this batch with the built-in optimizers (their GPU updates are "
                f"skipped from it on; a custom optimizer's were applied until fit read it). "
                f"Lower the learning rate or check the inputs for NaN/inf.")

    _deferred.defer(rec, message,
                    lambda msg, r: NonFiniteLossError(msg, float(r[1:2].view(np.float64)[0])))


class Where(NamedTuple):
    """Where a deferred check was queued (fit's epoch and batch, 0-based)."""

    epoch: int
    batch: int

    def __str__(self) -> str:
        return f"epoch {self.epoch + 1}, batch {self.batch + 1}"


#: fit reads the device (loss, metrics, deferred checks) at most this often, in seconds
READ_INTERVAL = 0.1


def fit_check(cbs: Any, epoch: int, batch: int, length: Any) -> bool:
    """fit's read of the deferred device checks; True when a callback ends training at a
    non-finite loss (as for a step that raised it), else a NonFiniteLossError naming the
    batch is raised; other failed checks raise their ValueError naming the batch."""
    try:
        _deferred.check()
    except NonFiniteLossError as e:
        where = getattr(e, "where", None)
        b = where.batch if isinstance(where, Where) else batch
        if cbs.on_train_batch_nonfinite(b, {"loss": e.loss}):
            return True
        raise NonFiniteLossError(
            f"the loss became {e.loss} at epoch {epoch + 1}, batch {b + 1} (of "
            f"{length or '?'}), read at batch {batch + 1} (on the GPU fit reads the loss at "
            f"each progress refresh); the weights are those before that batch with the "
            f"built-in optimizers (their updates were skipped on the device since), a custom "
            f"optimizer applied the batches up to the read. Lower the learning rate or check "
            f"the inputs for NaN/inf.", e.loss) from None
    return False
