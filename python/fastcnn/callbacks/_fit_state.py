"""The state of a ``fit`` run that :class:`~fastcnn.callbacks.BackupAndRestore` saves and puts
back, so that a run killed at any batch and started again with the same ``fit`` call ends with
bitwise the same weights and History as a run that was never stopped.

:class:`FitState` is ``fit``'s side of the link: ``fit`` creates it (:meth:`FitState.attach`)
when its callbacks hold a BackupAndRestore and tells it where training is (:meth:`begin`,
:meth:`epoch_begin`, :meth:`items`, :meth:`batch_end`); the callback asks it for a
:meth:`snapshot` when it saves. A snapshot is a JSON-serialisable ``meta`` dict and named NumPy
arrays, and holds:

* the model's weights (trainable or not: BatchNormalization's moving statistics too) and its
  layers' non-weight state (Dropout's mask generators);
* the optimizer's state (slots, ``iterations``) and its learning rate when it is a number
  (LearningRateScheduler / ReduceLROnPlateau change it);
* where the training data is: the state of its randomness at the start of the current pass
  (``fit``'s shuffling generator for arrays; a :mod:`fastcnn.data` dataset's ``seed`` and
  ``epoch`` counter, which fix its shuffle and augmentation) and how many batches of that pass
  were trained; on resume the pass is replayed from that state and those batches are drawn and
  dropped without training (so augmentation draws are the same too). The validation data's
  state (a :mod:`fastcnn.data` dataset's counter) is saved as it is;
* the epoch and batch reached, the epoch's running loss sum and sample count and every
  metric's accumulators (the attributes its ``reset()`` sets), so a run resumed mid-epoch
  reports the same epoch results;
* the History so far, ``model.stop_training``, and the ``state_attrs`` of the other callbacks
  (EarlyStopping, ReduceLROnPlateau, ModelCheckpoint).

Not restored (documented limits): the randomness of a dataset, Sequence or generator of your
own (it must give the same batches for the same pass; a generator is read again from its
start and the batches already trained are skipped), and a validation pass left open by
``validation_steps`` (it starts again).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from .._arrays import assign, to_host
from .._batches import ArrayBatches, BatchSource, close_iterator
from ..data._pipeline import BatchDataset
from ..distributed import _fit as _dist
from .base import CallbackList

if TYPE_CHECKING:
    from .backup import BackupAndRestore
    from .history import History

__all__ = ["FORMAT", "FitState"]

#: ``meta["format"]`` of a backup
FORMAT = "fastcnn.backup/1"


def _data_state(data: Any) -> Any:
    """The state of a data source's randomness: ``fit``'s shuffling generator, or a
    :mod:`fastcnn.data` dataset's seed and epoch counter; None when it has none we know."""
    if isinstance(data, ArrayBatches):
        return None if data.rng is None else {"shuffle": data.rng.bit_generator.state}
    if isinstance(data, BatchDataset):
        return {"seed": int(data.seed), "epoch": int(data.epoch)}
    return None


def _set_data_state(data: Any, state: Any, what: str, path: str) -> None:
    now = _data_state(data)
    if (now is None) != (state is None) or (now is not None and set(now) != set(state)):
        raise ValueError(f"BackupAndRestore: the backup {path!r} was written for other {what} "
                         f"data (its randomness was {_kind(state)}, this fit's is "
                         f"{_kind(now)}); call fit with the same arguments, or delete the "
                         f"backup to start afresh")
    if state is None:
        return
    if "shuffle" in state:
        data.rng.bit_generator.state = state["shuffle"]
    else:
        data.seed, data.epoch = int(state["seed"]), int(state["epoch"])


def _kind(state: Any) -> str:
    if state is None:
        return "none (no shuffling)"
    return "fit's shuffling generator" if "shuffle" in state else "a fastcnn.data dataset's"


def _reset_attrs(metric: Any) -> list[str]:
    """The attributes ``metric.reset()`` sets: its accumulators (found on a copy, which is
    reset; an attribute reset gives back as the very same object is at its reset value)."""
    probe = copy.copy(metric)
    probe.__dict__ = dict(metric.__dict__)
    probe.reset()
    return [k for k, v in probe.__dict__.items()
            if k not in metric.__dict__ or metric.__dict__[k] is not v]


def _pack(owner: str, values: dict[str, Any], prefix: str,
          arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """JSON for ``values``; arrays (and lists of them) go to ``arrays`` under ``prefix``."""
    out: dict[str, Any] = {}
    for k, v in values.items():
        key = f"{prefix}/{k}"
        if isinstance(v, np.ndarray | np.generic) or hasattr(v, "__cuda_array_interface__"):
            arrays[key] = np.asarray(to_host(v))
            out[k] = {"array": key}
        elif isinstance(v, list | tuple) and v and all(
                isinstance(a, np.ndarray) for a in v):
            for j, a in enumerate(v):
                arrays[f"{key}/{j}"] = to_host(a)
            out[k] = {"arrays": [f"{key}/{j}" for j in range(len(v))]}
        elif v is None or isinstance(v, bool | int | float | str):
            out[k] = v
        else:
            raise TypeError(f"BackupAndRestore: can't back up {owner}'s {k!r}, a "
                            f"{type(v).__name__} (numbers, strings, None and arrays only)")
    return out


def _unpack(packed: dict[str, Any], arrays: dict[str, np.ndarray], path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    try:
        for k, v in packed.items():
            if isinstance(v, dict) and "array" in v:
                a = arrays[v["array"]]
                out[k] = a[()] if a.ndim == 0 else a.copy()
            elif isinstance(v, dict):
                out[k] = [arrays[n].copy() for n in v["arrays"]]
            else:
                out[k] = v
    except KeyError as e:
        raise ValueError(f"BackupAndRestore: the backup {path!r} lacks the array {e}") from None
    return out


class FitState:
    """``fit``'s side of BackupAndRestore (see the module docstring).

    Args:
        backup: the BackupAndRestore among fit's callbacks.
        model: the model being trained.
        train, val: fit's training source and validation source (or None).
        metrics: fit's ``(metric, weighted)`` list.
        history: fit's History.
        callbacks: fit's CallbackList.
    """

    def __init__(self, backup: BackupAndRestore, model: Any, train: BatchSource,
                 val: BatchSource | None, metrics: list[tuple[Any, bool]], history: History,
                 callbacks: CallbackList) -> None:
        self.backup, self.model, self.train, self.val = backup, model, train, val
        self.metrics = [m for m, _ in metrics]
        self.history, self.callbacks = history, callbacks
        self.epoch, self.batch, self.running, self.seen = 0, -1, 0.0, 0
        self.pass_state: Any = None  # the training data's state at the start of this pass
        self.pass_count = 0  # batches drawn from the current pass
        self.epoch_offset = 0  # of those, drawn before this epoch
        self._resume: dict[str, Any] | None = None
        self._resume_arrays: dict[str, np.ndarray] = {}
        self._skip = 0
        train.on_new_pass = self._new_pass

    @classmethod
    def attach(cls, callbacks: CallbackList, model: Any, train: BatchSource,
               val: BatchSource | None, metrics: list[tuple[Any, bool]],
               history: History) -> FitState | None:
        """A FitState linked to the BackupAndRestore among ``callbacks``, or None."""
        from .backup import BackupAndRestore

        found = [cb for cb in callbacks.callbacks if isinstance(cb, BackupAndRestore)]
        if not found:
            return None
        if len(found) > 1:
            raise ValueError(f"fit: {len(found)} BackupAndRestore callbacks; pass one")
        if _dist.active():
            raise ValueError("BackupAndRestore: not supported under fastcnn.distributed "
                             "(several ranks) yet; use ModelCheckpoint there")
        state = cls(found[0], model, train, val, metrics, history, callbacks)
        found[0]._state = state
        return state

    # -- fit's calls -------------------------------------------------------------------------
    def begin(self, initial_epoch: int, epochs: int) -> int:
        """After ``on_train_begin``: put back the backup if there is one; returns the epoch
        to start at (``initial_epoch`` without a backup)."""
        found = self.backup._load()
        if found is None:
            return initial_epoch
        meta, arrays, path = found
        self._restore(meta, arrays, path)
        if meta["stop_training"]:  # stopped (EarlyStopping) right after that backup
            return epochs
        self._resume, self._resume_arrays = meta, arrays
        return int(meta["epoch"])

    def epoch_begin(self, epoch: int) -> tuple[float, int, int]:
        """At an epoch's start (metrics reset): ``(running loss sum, samples, first batch)``,
        the restored ones for the epoch a backup stopped in, else zeros."""
        self.epoch, self.batch = epoch, -1
        r, self._resume = self._resume, None
        if r is None or int(r["epoch"]) != epoch or not r["batch"]:
            return 0.0, 0, 0
        for m, st in zip(self.metrics, r["metrics"], strict=True):
            for k, v in _unpack(st, self._resume_arrays, r["path"]).items():
                setattr(m, k, v)
        lr = r["optimizer"]["learning_rate"]
        if lr is not None:  # again: on_epoch_begin (LearningRateScheduler) ran a second time
            self.model.optimizer.learning_rate = lr
        self._skip = int(r["batch"])
        self.batch = self._skip - 1
        return float(r["running"]), int(r["seen"]), self._skip

    def items(self, items: Iterator[Any]) -> Iterator[Any]:
        """The epoch's raw batches, counted (and the ones a resumed epoch already trained
        drawn and dropped)."""
        skip, self._skip = self._skip, 0
        first = True
        try:
            for item in items:
                if first:
                    self.epoch_offset, first = self.pass_count, False
                self.pass_count += 1
                if skip:
                    skip -= 1
                    continue
                yield item
        finally:
            close_iterator(items)

    def batch_end(self, batch: int, running: float, seen: int) -> None:
        """After batch ``batch`` was applied, before ``on_train_batch_end``."""
        self.batch, self.running, self.seen = batch, running, seen

    def _new_pass(self) -> None:
        self.pass_state = _data_state(self.train.data)
        self.pass_count = 0

    # -- the callback's call -----------------------------------------------------------------
    def snapshot(self, at_epoch_end: bool) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Everything a resumed run needs, as of now: after the epoch ``self.epoch`` ended
        (``at_epoch_end``) or after its batch ``self.batch``."""
        model, opt = self.model, self.model.optimizer
        arrays: dict[str, np.ndarray] = {f"weights/{k}": to_host(p)
                                         for k, p in model._all_weights().items()}
        arrays.update({f"optimizer/{k}": v for k, v in opt.get_state().items()})
        meta: dict[str, Any] = {
            "format": FORMAT,
            "model": {"class": type(model).__name__,
                      "layers": [type(lay).__name__ for lay in model.layers],
                      "weights": {k: list(p.shape) for k, p in model._all_weights().items()}},
            "optimizer": {"class": type(opt).__name__,
                          "learning_rate": None if opt.schedule is not None
                          else float(opt.learning_rate)},
            "layer_states": {lay.name: st for lay in model.layers
                             if (st := lay.get_state()) is not None},
            "history": {"history": self.history.history, "epoch": self.history.epoch},
            "stop_training": bool(model.stop_training),
            "val_data": None if self.val is None else _data_state(self.val.data),
            "callbacks": self._callback_states(arrays),
        }
        pass_open = self.train.steps is not None and self.train._it is not None
        if at_epoch_end:
            meta.update(epoch=self.epoch + 1, batch=0, running=0.0, seen=0, metrics=[])
            meta["train_data"] = ({"pass": self.pass_state, "skip": self.pass_count}
                                  if pass_open else
                                  {"pass": _data_state(self.train.data), "skip": 0})
        else:
            meta.update(epoch=self.epoch, batch=self.batch + 1, running=self.running,
                        seen=self.seen)
            meta["metrics"] = [_pack(m.name, {k: getattr(m, k) for k in _reset_attrs(m)},
                                     f"metrics/{i}", arrays)
                               for i, m in enumerate(self.metrics)]
            meta["train_data"] = {"pass": self.pass_state, "skip": self.epoch_offset}
        return meta, arrays

    def _stateful(self) -> list[Any]:
        from .backup import BackupAndRestore
        from .history import History

        return [cb for cb in self.callbacks.callbacks if cb.state_attrs
                and not isinstance(cb, History | BackupAndRestore)]

    def _callback_states(self, arrays: dict[str, np.ndarray]) -> list[dict[str, Any]]:
        return [{"class": type(cb).__name__,
                 "state": _pack(type(cb).__name__, {k: getattr(cb, k) for k in cb.state_attrs},
                                f"callbacks/{i}", arrays)}
                for i, cb in enumerate(self._stateful())]

    # -- restoring ---------------------------------------------------------------------------
    def _restore(self, meta: dict[str, Any], arrays: dict[str, np.ndarray], path: str) -> None:
        """Check everything against this fit, then assign (nothing changes on a mismatch)."""
        model, opt = self.model, self.model.optimizer
        if meta.get("format") != FORMAT:
            raise ValueError(f"BackupAndRestore: {path!r} is not a fastcnn backup (format "
                             f"{meta.get('format')!r}, expected {FORMAT!r})")
        if not model.built:
            raise ValueError(f"BackupAndRestore: the model must be built before fit to restore "
                             f"the backup {path!r} (give it an input shape, a fastcnn.Input, "
                             f"or call it on a batch first)")
        mine = {"class": type(model).__name__,
                "layers": [type(lay).__name__ for lay in model.layers],
                "weights": {k: list(p.shape) for k, p in model._all_weights().items()}}
        if meta["model"] != mine:
            raise ValueError(f"BackupAndRestore: the backup {path!r} was written for a "
                             f"different model ({_describe(meta['model'])}; this model is "
                             f"{_describe(mine)}); delete the backup or pass another backup_dir")
        if meta["optimizer"]["class"] != type(opt).__name__:
            raise ValueError(f"BackupAndRestore: the backup {path!r} holds the state of a "
                             f"{meta['optimizer']['class']} optimizer, the model is compiled "
                             f"with {type(opt).__name__}; delete the backup or compile the same")
        states = meta["layer_states"]
        by_name = {lay.name: lay for lay in model.layers}
        wanted = {lay.name for lay in model.layers if lay.get_state() is not None}
        if set(states) != wanted:
            raise ValueError(f"BackupAndRestore: the backup {path!r} holds layer states for "
                             f"{sorted(states)}, the model has {sorted(wanted)}")
        try:
            checked = [(by_name[k], by_name[k].check_state(v)) for k, v in states.items()]
        except ValueError as e:
            raise ValueError(f"BackupAndRestore: {path!r}: {e}") from e
        cbs = self._stateful()
        names = [c["class"] for c in meta["callbacks"]]
        if names != [type(cb).__name__ for cb in cbs]:
            raise ValueError(f"BackupAndRestore: the backup {path!r} was written with the "
                             f"stateful callbacks {names}, this fit has "
                             f"{[type(cb).__name__ for cb in cbs]}; pass the same callbacks")
        cb_states = [_unpack(c["state"], arrays, path) for c in meta["callbacks"]]
        if len(meta["metrics"]) not in (0, len(self.metrics)):
            raise ValueError(f"BackupAndRestore: the backup {path!r} has "
                             f"{len(meta['metrics'])} metrics, the model "
                             f"{len(self.metrics)}; compile the same metrics")
        weights = {k[len("weights/"):]: a for k, a in arrays.items() if k.startswith("weights/")}
        for k, p in model._all_weights().items():
            if k not in weights or weights[k].shape != p.shape or weights[k].dtype != np.float32:
                raise ValueError(f"BackupAndRestore: the backup {path!r} lacks the float32 "
                                 f"weight {k!r} of shape {p.shape}")
        opt_state = {k[len("optimizer/"):]: a for k, a in arrays.items()
                     if k.startswith("optimizer/")}
        try:
            opt.set_state(opt_state, {k: p.shape for k, p in model._all_weights().items()})
        except ValueError as e:  # checked before any change
            raise ValueError(f"BackupAndRestore: {path!r}: {e}") from e
        _set_data_state(self.train.data, meta["train_data"]["pass"], "training", path)
        if self.val is not None and meta["val_data"] is not None:
            _set_data_state(self.val.data, meta["val_data"], "validation", path)
        # -- everything checked: assign
        for k, p in model._all_weights().items():
            assign(p, weights[k])
        for layer, st in checked:
            layer.set_state(st)
        if meta["optimizer"]["learning_rate"] is not None:
            opt.learning_rate = meta["optimizer"]["learning_rate"]
        for cb, st in zip(cbs, cb_states, strict=True):
            for k, v in st.items():
                setattr(cb, k, v)
        self.history.history = {k: list(v) for k, v in meta["history"]["history"].items()}
        self.history.epoch = list(meta["history"]["epoch"])
        meta["path"] = path
        skip = int(meta["train_data"]["skip"])
        if skip:  # the pass continues across epochs (steps_per_epoch): replay its start
            self.train._it = self.train._new_pass()
            for _ in range(skip):
                next(self.train._it)
            self.pass_count = skip


def _describe(m: dict[str, Any]) -> str:
    return (f"a {m['class']} of layers {m['layers']} with "
            f"{len(m['weights'])} weights {list(m['weights'].items())[:4]}"
            f"{'...' if len(m['weights']) > 4 else ''}")
