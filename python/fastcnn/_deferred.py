"""Deferred device checks: what the GPU verifies during a training step and the host reads later.

On the GPU a check that needs a value on the host (a class label outside ``[0, classes)``, a
non-finite loss) would cost a device-to-host copy and a synchronisation per call, which stalls
the queue of kernels a training step is made of. Inside :func:`scope` such checks are *deferred*:
the device writes a small int64 record (a few elements; what it found) and :func:`defer` keeps it
with the message to raise and where it was (``"epoch 1, batch 3"``, set by :func:`set_where`);
:func:`check` reads every pending record in one copy and raises the first failure, naming where.
``fit`` calls :func:`check` at each progress-bar refresh (at most ~10 per second) and at the end
of an epoch, so an error surfaces a few batches late but names the batch that caused it.

Outside a scope :func:`defer` reads the record at once (one copy and a synchronisation) and
raises immediately: a direct call of :func:`fastcnn.ops.cross_entropy` on CuPy arrays keeps the
CPU's behaviour (a ValueError from the call itself).

The module imports no array library: records are read with :func:`fastcnn._arrays.to_host`
(``cupy.concatenate`` of the pending records, found through the records' own module).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import numpy as np

from ._arrays import array_module, to_host

__all__ = ["LazyLogs", "check", "defer", "deferring", "discard", "guard", "guard_ptr",
           "pending", "scope", "set_where"]

#: pending records kept before a read is forced (a loop that never reads still reads this often)
LIMIT = 1024

Message = Callable[[np.ndarray], "str | None"]
ErrorFactory = Callable[[str, np.ndarray], BaseException]


def _value_error(message: str, record: np.ndarray) -> BaseException:
    return ValueError(message)


class _Check(NamedTuple):
    record: Any  # a 1-D int64 device array
    message: Message  # host record -> the error's message, or None when the check passed
    error: ErrorFactory
    where: Any  # str(where) is appended to the message; the exception's .where


_scopes: list[list[Any]] = []  # the open scopes, innermost last: [where]
_pending: list[_Check] = []
_guard: list[Any] = []  # the outermost scope's skip flag (a device int32 (1,)), once made


def guard(xp: Any) -> Any:
    """The open scope's skip flag, a device int32 array (1,) made (zero) on first use: the
    optimizer kernels that take it (SGD, Adam on the GPU) write nothing while it is non-zero,
    so a step after a failed check changes no weight until the host reads the checks. None
    outside a scope."""
    if not _scopes:
        return None
    if not _guard:
        _guard.append(xp.zeros(1, dtype=np.int32))
    return _guard[0]


def guard_ptr() -> int:
    """The skip flag's device address, 0 when there is none (outside a scope, or nothing
    set it up yet)."""
    return int(_guard[0].data.ptr) if _guard and _scopes else 0


def deferring() -> bool:
    """True inside :func:`scope` (checks are deferred)."""
    return bool(_scopes)


class scope:  # used like a function: ``with scope(): ...``
    """Defer device checks until :func:`check`. Leaving the scope normally checks what is
    pending (unless ``final_check`` is False: the caller checks); an exception leaving the
    outermost scope discards the pending records instead. ``close(ok)`` leaves it explicitly
    (idempotent), for a loop that can't be one ``with`` block."""

    def __init__(self, where: Any = None, final_check: bool = True) -> None:
        self._entry: list[Any] = [where]
        self._final_check = final_check
        self._open = False

    def __enter__(self) -> scope:
        _scopes.append(self._entry)
        self._open = True
        return self

    def close(self, ok: bool = True) -> None:
        """Leave the scope (see the class docstring); nothing when already left."""
        if not self._open:
            return
        self._open = False
        for i in range(len(_scopes) - 1, -1, -1):
            if _scopes[i] is self._entry:
                del _scopes[i]
                break
        if not _scopes:
            _guard.clear()  # the next outermost scope starts with no flag set
        if not ok:
            if not _scopes:
                discard()
        elif self._final_check:
            check()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.close(exc_type is None)


def set_where(where: Any) -> None:
    """Name the work that follows (e.g. ``"epoch 1, batch 3"``, or any object whose ``str`` is
    that) in the innermost scope's errors; no effect outside a scope."""
    if _scopes:
        _scopes[-1][0] = where


def defer(record: Any, message: Message, error: ErrorFactory = _value_error) -> None:
    """Check ``record`` (a 1-D int64 array the device is filling) later: inside a scope it is
    kept until :func:`check`; outside one it is read now (one copy, a synchronisation).

    Args:
        record: 1-D int64 array (NumPy or CuPy).
        message: called with the record on the host; returns the error message, or None when
            the check passed.
        error: ``error(message, record)`` builds the exception (ValueError by default).
    """
    if not _scopes:
        host = np.asarray(to_host(record))
        msg = message(host)
        if msg is not None:
            raise error(msg, host)
        return
    _pending.append(_Check(record, message, error, _scopes[-1][0]))
    if len(_pending) >= LIMIT:
        check()


def pending() -> int:
    """How many records wait for :func:`check`."""
    return len(_pending)


def discard() -> None:
    """Forget the pending records unread."""
    _pending.clear()


def check() -> None:
    """Read every pending record (one copy to the host) and raise the first failed check's
    error, its message followed by where it happened; the pending list is then empty."""
    if not _pending:
        return
    items = list(_pending)
    _pending.clear()
    xp = array_module(items[0].record)
    host = np.asarray(to_host(xp.concatenate([c.record.ravel() for c in items])))
    off = 0
    for c in items:
        n = int(c.record.size)
        rec = host[off:off + n]
        off += n
        msg = c.message(rec)
        if msg is not None:
            exc = c.error(msg if c.where is None else f"{msg} ({c.where})", rec)
            exc.where = c.where  # type: ignore[attr-defined]
            raise exc


class LazyLogs(Mapping[str, float]):
    """Batch logs whose values are read from the device only when a callback looks at one:
    ``keys`` are known at once, the values come from ``read()``, called once, on the first
    access. The pending checks are not read then (a bad batch shows as NaN values until fit's
    next :func:`check` raises its error)."""

    def __init__(self, keys: list[str], read: Callable[[], dict[str, float]]) -> None:
        self._keys = list(keys)
        self._read = read
        self._values: dict[str, float] | None = None

    def _get(self) -> dict[str, float]:
        if self._values is None:
            self._values = self._read()
        return self._values

    def __getitem__(self, key: str) -> float:
        if key not in self._keys:
            raise KeyError(key)
        return self._get()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"LazyLogs({self._get()!r})"
