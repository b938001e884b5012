"""BackupAndRestore: a run killed (SIGKILL, a real process) mid-training and started again with
the same fit call ends with bitwise the same weights and History as a run never stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import fastcnn as fc
from fastcnn import callbacks as C
from fastcnn import layers as L
from fastcnn import optimizers as O

PYTHON_DIR = Path(fc.__file__).resolve().parent.parent

# The training script: KILL_AT=k kills the process (SIGKILL, no clean-up at all) at the end of
# its k-th batch (counted across epochs); OUT receives the weights and History at the end.
SCRIPT = textwrap.dedent("""
    import json, os, signal, sys
    import numpy as np
    import fastcnn as fc
    from fastcnn import callbacks as C, layers as L, optimizers as O, data as D

    cfg = json.loads(sys.argv[1])
    kill_at = int(os.environ.get("KILL_AT", "0"))

    class Killer(C.Callback):
        def __init__(self):
            super().__init__()
            self.n = 0
        def on_train_batch_end(self, batch, logs=None):
            self.n += 1
            if self.n == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 1, 6, 6)).astype(np.float32)
    y = rng.integers(0, 3, 60)
    m = fc.Sequential([L.Conv2D(4, 3, padding="same", activation="relu"), L.Flatten(),
                       L.Dropout(0.25), L.Dense(3, activation="softmax")],
                      input_shape=(1, 6, 6), seed=cfg.get("model_seed", 0))
    m.compile(O.Adam(0.01), "sparse_categorical_crossentropy", ["accuracy"])
    cbs = []
    if cfg.get("backup"):
        cbs.append(C.BackupAndRestore(cfg["dir"], **cfg["backup"]))
    if cfg.get("plateau"):
        cbs.append(C.ReduceLROnPlateau("loss", factor=0.5, patience=1, min_delta=1.0))
        cbs.append(C.EarlyStopping("val_loss", patience=10, restore_best_weights=True))
    cbs.append(Killer())
    kw = dict(epochs=cfg.get("epochs", 3), verbose=0, callbacks=cbs)
    if cfg.get("dataset"):
        aug = [D.RandomFlip("horizontal"), D.RandomTranslation(0.2, 0.2)]
        ds = D.ArrayDataset(x[:48], y[:48], batch_size=8, shuffle=True, seed=3, augment=aug)
        val = D.ArrayDataset(x[48:], y[48:], batch_size=8, shuffle=True, seed=4)
        h = m.fit(ds, validation_data=val, steps_per_epoch=cfg.get("steps"), **kw)
    else:
        h = m.fit(x, y, batch_size=8, validation_split=0.2, seed=cfg.get("fit_seed", 1),
                  steps_per_epoch=cfg.get("steps"), **kw)
    np.savez(cfg["out"], *m.get_weights())
    with open(cfg["out"] + ".json", "w") as f:
        json.dump({"history": h.history, "epoch": h.epoch}, f)
""")


def _run(tmp: Path, cfg: dict, kill_at: int = 0) -> subprocess.CompletedProcess:
    script = tmp / "train.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(PYTHON_DIR), "KILL_AT": str(kill_at),
           "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(script), json.dumps(cfg)], env=env,
                          capture_output=True, text=True, timeout=300)


def _result(out: Path) -> tuple[list[np.ndarray], dict]:
    with np.load(out) as f:
        weights = [f[k] for k in f.files]
    return weights, json.loads(Path(str(out) + ".json").read_text())


def _check_resume(tmp_path: Path, cfg: dict, kill_at: int, resumed_cfg: dict | None = None,
                  keep: list[str] | None = None) -> dict:
    ref_out, out = tmp_path / "ref.npz", tmp_path / "res.npz"
    done = _run(tmp_path, {**cfg, "backup": None, "out": str(ref_out)})  # never stopped
    assert done.returncode == 0, done.stderr
    backup = tmp_path / "backup"
    cfg = {**cfg, "dir": str(backup), "out": str(out)}
    killed = _run(tmp_path, cfg, kill_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not out.exists()
    assert sorted(os.listdir(backup)) == (keep or ["backup.npz"])  # no half-written file
    resumed = _run(tmp_path, {**cfg, **(resumed_cfg or {})})
    assert resumed.returncode == 0, resumed.stderr
    w_ref, h_ref = _result(ref_out)
    w, h = _result(out)
    assert len(w) == len(w_ref)
    for a, b in zip(w, w_ref, strict=True):
        np.testing.assert_array_equal(a, b)  # bitwise
    assert h == h_ref
    assert not backup.exists()  # delete_checkpoint: gone after the successful fit
    return h


@pytest.mark.parametrize("save_freq,kill_at", [("epoch", 8), (3, 8), (1, 11), (4, 12)])
def test_killed_run_resumes_bitwise(tmp_path: Path, save_freq, kill_at: int) -> None:
    # 48 training samples in batches of 8: 6 batches an epoch; kill_at=8 is epoch 2, batch 2
    # (mid-epoch, Dropout and shuffling on); kill_at=12 ends an epoch
    h = _check_resume(tmp_path, {"backup": {"save_freq": save_freq}}, kill_at,
                      # another model seed and fit seed: only the backup makes them agree
                      resumed_cfg={"model_seed": 9, "fit_seed": 5})
    assert len(h["epoch"]) == 3 and "val_accuracy" in h["history"]


def test_resumes_dataset_with_augmentation_and_steps(tmp_path: Path) -> None:
    # a fastcnn.data dataset (own shuffle + augmentation) with steps_per_epoch=4 of 6
    # batches: the pass continues across epochs and is replayed up to where it was
    # kill_at=7: the backup of batch 6 ends the short epoch 1 (4 of the pass before it);
    # kill_at=5: the backup after epoch 0 leaves the pass open (4 of its 6 batches used)
    for sub, freq, kill_at in (("a", 1, 7), ("b", "epoch", 5)):
        (tmp_path / sub).mkdir()
        _check_resume(tmp_path / sub, {"backup": {"save_freq": freq}, "dataset": True,
                                       "steps": 4, "epochs": 4}, kill_at)


def test_resumes_callback_state_and_learning_rate(tmp_path: Path) -> None:
    # ReduceLROnPlateau halves the rate every epoch (min_delta=1); EarlyStopping keeps the
    # best weights: their state and the rate come back with the backup
    h = _check_resume(tmp_path, {"backup": {"save_freq": 2}, "plateau": True, "epochs": 4},
                      kill_at=15)
    assert h["history"]["learning_rate"] == [0.01, 0.01, 0.005, 0.0025]


def test_double_checkpoint_falls_back_to_previous_backup(tmp_path: Path) -> None:
    backup = tmp_path / "backup"
    cfg = {"backup": {"save_freq": 2, "double_checkpoint": True}, "dir": str(backup),
           "out": str(tmp_path / "res.npz")}
    assert _run(tmp_path, cfg, 9).returncode == -signal.SIGKILL
    assert sorted(os.listdir(backup)) == ["backup.npz", "backup.npz.bkp"]
    (backup / "backup.npz").write_bytes((backup / "backup.npz").read_bytes()[:100])  # damaged
    resumed = _run(tmp_path, cfg)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from the previous one" in resumed.stderr
    assert _run(tmp_path, {**cfg, "backup": None, "out": str(tmp_path / "ref.npz")}).returncode == 0
    for a, b in zip(_result(tmp_path / "res.npz")[0], _result(tmp_path / "ref.npz")[0],
                    strict=True):
        np.testing.assert_array_equal(a, b)


# -- in one process ----------------------------------------------------------------------------


def _model(units: int = 3, seed: int = 0) -> fc.Sequential:
    m = fc.Sequential([L.Dense(units, activation="softmax")], input_shape=(4,), seed=seed)
    m.compile(O.SGD(learning_rate=0.1), "sparse_categorical_crossentropy", ["accuracy"])
    return m


def _data(n: int = 16):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, 4)).astype(np.float32), rng.integers(0, 3, n)


class _Stop(Exception):
    pass


class _RaiseAt(C.Callback):
    def __init__(self, at: int) -> None:
        super().__init__()
        self.at, self.n = at, 0

    def on_train_batch_end(self, batch, logs=None):
        self.n += 1
        if self.n == self.at:
            raise _Stop


def _interrupted(tmp_path: Path, **kw) -> Path:
    x, y = _data()
    with pytest.raises(_Stop):
        _model().fit(x, y, batch_size=4, epochs=3, verbose=0, seed=0,
                     callbacks=[C.BackupAndRestore(tmp_path / "b", **kw), _RaiseAt(6)])
    return tmp_path / "b"


def test_mismatched_backup_is_a_clear_error(tmp_path: Path) -> None:
    backup = _interrupted(tmp_path)
    x, y = _data()
    other = fc.Sequential([L.Dense(5, activation="relu"), L.Dense(3, activation="softmax")],
                          input_shape=(4,), seed=0)
    other.compile(O.SGD(learning_rate=0.1), "sparse_categorical_crossentropy", ["accuracy"])
    before = other.get_weights()
    with pytest.raises(ValueError, match=r"different model") as e:
        other.fit(x, y, batch_size=4, epochs=3, verbose=0,
                  callbacks=[C.BackupAndRestore(backup)])
    assert str(backup / "backup.npz") in str(e.value)
    for a, b in zip(before, other.get_weights(), strict=True):  # nothing assigned
        np.testing.assert_array_equal(a, b)
    adam = _model()
    adam.compile(O.Adam(0.01), "sparse_categorical_crossentropy", ["accuracy"])
    with pytest.raises(ValueError, match=r"SGD optimizer.*Adam"):
        adam.fit(x, y, batch_size=4, epochs=3, verbose=0, callbacks=[C.BackupAndRestore(backup)])
    with pytest.raises(ValueError, match=r"not a fastcnn backup|damaged"):
        (backup / "backup.npz").write_bytes(b"junk")
        _model().fit(x, y, batch_size=4, epochs=3, verbose=0,
                     callbacks=[C.BackupAndRestore(backup)])


def test_backup_kept_when_asked_or_interrupted(tmp_path: Path) -> None:
    x, y = _data()
    keep = tmp_path / "keep"
    _model().fit(x, y, batch_size=4, epochs=2, verbose=0,
                 callbacks=[C.BackupAndRestore(keep, delete_checkpoint=False)])
    assert (keep / "backup.npz").exists()
    # a finished backup (epoch 2 of 2) resumes at its end: nothing more is trained
    h = _model().fit(x, y, batch_size=4, epochs=2, verbose=0,
                     callbacks=[C.BackupAndRestore(keep)])
    assert h.epoch == [0, 1] and not keep.exists()
    # interrupted (Ctrl-C): the backup stays for the next run
    def interrupt(batch, logs):
        if batch == 1:  # after batch 0's backup
            raise KeyboardInterrupt

    ctrl_c = C.LambdaCallback(on_train_batch_end=interrupt)
    h = _model().fit(x, y, batch_size=4, epochs=2, verbose=0,
                     callbacks=[C.BackupAndRestore(keep, save_freq=1), ctrl_c])
    assert h.interrupted and (keep / "backup.npz").exists()
    # a folder holding other files is kept (only the backup files are removed)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    _model().fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[C.BackupAndRestore(other)])
    assert sorted(os.listdir(other)) == ["notes.txt"]


def test_arguments_checked() -> None:
    for bad in (0, -1, "batch", 1.5, True):
        with pytest.raises(ValueError, match="save_freq"):
            C.BackupAndRestore("d", save_freq=bad)
    with pytest.raises(ValueError, match="backup_dir"):
        C.BackupAndRestore("")
    x, y = _data()
    with pytest.raises(ValueError, match="one"):
        _model().fit(x, y, epochs=1, verbose=0,
                     callbacks=[C.BackupAndRestore("a"), C.BackupAndRestore("b")])
    with pytest.raises(ValueError, match=r"inside model\.fit"):
        C.CallbackList([C.BackupAndRestore("a")], model=_model()).on_train_begin()
    assert fc.callbacks.BackupAndRestore is C.backup.BackupAndRestore


class _Seq:
    """A Keras Sequence of 6 batches."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return 6

    def __getitem__(self, i):
        return self.x[8 * i:8 * i + 8], self.y[8 * i:8 * i + 8]


def _forever(x, y):
    i = 0
    while True:
        j, i = i % 6, i + 1
        yield x[8 * j:8 * j + 8], y[8 * j:8 * j + 8]


@pytest.mark.parametrize("kind", ["sequence", "generator"])
@pytest.mark.parametrize("save_freq,stop_at", [("epoch", 7), (2, 9), (1, 14)])
def test_resumes_sequence_and_generator(tmp_path: Path, kind: str, save_freq,
                                        stop_at: int) -> None:
    # data of one's own is read again and the trained batches skipped; AUC's arrays of counts
    # and Dropout's generator come back mid-epoch
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((48, 4)).astype(np.float32), rng.integers(0, 3, 48)

    def model(seed: int) -> fc.Sequential:
        m = fc.Sequential([L.Dense(8, activation="relu"), L.Dropout(0.3),
                           L.Dense(3, activation="softmax")], input_shape=(4,), seed=seed)
        m.compile(O.Adam(0.01), "sparse_categorical_crossentropy", ["accuracy", "auc"])
        return m

    def data():
        return _Seq(x, y) if kind == "sequence" else _forever(x, y)

    kw = {"epochs": 4, "verbose": 0, "steps_per_epoch": 4 if kind == "generator" else None}
    ref = model(0)
    h_ref = ref.fit(data(), **kw)
    with pytest.raises(_Stop):
        model(0).fit(data(), callbacks=[C.BackupAndRestore(tmp_path, save_freq=save_freq),
                                        _RaiseAt(stop_at)], **kw)
    resumed = model(7)  # other initial weights: only the backup makes them agree
    h = resumed.fit(data(), callbacks=[C.BackupAndRestore(tmp_path, save_freq=save_freq)],
                    **kw)
    assert h.history == h_ref.history
    for a, b in zip(ref.get_weights(), resumed.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
