"""fastcnn._deferred: deferred device checks (here with NumPy records: the rules, not the GPU;
tests/test_cuda_syncs.py runs them on the CUDA emulator)."""

from __future__ import annotations

import numpy as np
import pytest

from fastcnn import _deferred


def _bad_if_positive(r: np.ndarray) -> str | None:
    return f"bad value {int(r[0])}" if r[0] > 0 else None


@pytest.fixture(autouse=True)
def _clean() -> None:
    _deferred.discard()


def test_outside_a_scope_the_check_is_immediate() -> None:
    assert not _deferred.deferring()
    _deferred.defer(np.array([0]), _bad_if_positive)
    with pytest.raises(ValueError, match=r"^bad value 3$"):
        _deferred.defer(np.array([3]), _bad_if_positive)
    assert _deferred.pending() == 0


def test_in_a_scope_the_first_failure_is_raised_at_the_check_with_where() -> None:
    with _deferred.scope(final_check=False):
        assert _deferred.deferring()
        _deferred.set_where("batch 1")
        _deferred.defer(np.array([0]), _bad_if_positive)
        _deferred.set_where("batch 2")
        _deferred.defer(np.array([5, 9]), _bad_if_positive)
        _deferred.set_where("batch 3")
        _deferred.defer(np.array([7]), _bad_if_positive)
        assert _deferred.pending() == 3
        with pytest.raises(ValueError, match=r"^bad value 5 \(batch 2\)$") as e:
            _deferred.check()
        assert e.value.where == "batch 2"  # type: ignore[attr-defined]
        assert _deferred.pending() == 0  # read once, even when it raised
        _deferred.check()  # nothing left
    assert not _deferred.deferring()


def test_scope_end_checks_and_an_exception_discards() -> None:
    with pytest.raises(ValueError, match="bad value 2"), _deferred.scope():
        _deferred.defer(np.array([2]), _bad_if_positive)
    with pytest.raises(KeyError), _deferred.scope():
        _deferred.defer(np.array([2]), _bad_if_positive)
        raise KeyError("other")
    assert _deferred.pending() == 0 and not _deferred.deferring()


def test_custom_error_and_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    class Mine(Exception):
        def __init__(self, msg: str, rec: np.ndarray) -> None:
            super().__init__(msg)
            self.rec = rec

    monkeypatch.setattr(_deferred, "LIMIT", 3)
    s = _deferred.scope(final_check=False).__enter__()
    _deferred.defer(np.array([0]), _bad_if_positive)
    _deferred.defer(np.array([0]), _bad_if_positive)
    with pytest.raises(Mine) as e:  # the third reaches the limit: read at once
        _deferred.defer(np.array([4]), _bad_if_positive, lambda m, r: Mine(m, r))
    assert list(e.value.rec) == [4]
    s.close()
    s.close()  # idempotent
    assert not _deferred.deferring()


def test_lazy_logs_read_once_on_first_access() -> None:
    calls = []

    def read() -> dict[str, float]:
        calls.append(1)
        return {"loss": 1.5, "accuracy": 0.25}

    logs = _deferred.LazyLogs(["loss", "accuracy"], read)
    assert list(logs) == ["loss", "accuracy"] and len(logs) == 2 and bool(logs)
    assert calls == []  # keys alone read nothing
    assert logs["loss"] == 1.5 and logs.get("accuracy") == 0.25 and dict(logs)["loss"] == 1.5
    assert calls == [1]
    with pytest.raises(KeyError):
        logs["val_loss"]
