"""Faults: what fastcnn does when the machine, the process or the data misbehave.

* memory: a request for more memory than the machine has is a clean MemoryError (or a
  ValueError for sizes that can't exist), and the library works normally afterwards;
* fork: a child forked after the kernels ran on several threads can train a model (fit) and
  gets bit for bit the parent's result;
* Ctrl-C: SIGINT sent to a process in the middle of fit() stops it after the current batch; the
  process then saves and evaluates the model normally, and the saved file reproduces it;
* interrupted saves: a full disk (ENOSPC part-way through the write, or at fsync) leaves the
  previous file intact and no temporary file behind; a process SIGKILLed while writing a large
  model leaves the previous file intact -- and, for now, its hidden temporary file (an xfail
  test: test_sigkill_during_save_leaves_no_temp_file);
* pickles: loading an .npz holding pickled objects raises ValueError and never runs the pickle;
* corrupt image folders: truncated, empty, mislabelled and unreadable files (and a folder named
  like an image) are skipped with a DataWarning; training runs to the end.
"""

from __future__ import annotations

import errno
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import fastcnn as fc
import fastcnn.data  # makes fc.data available
from fastcnn import layers as L
from fastcnn import ops

HAS_FORK = "fork" in multiprocessing.get_all_start_methods()


def _run_python(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args],
                          capture_output=True, text=True, timeout=timeout)


# ----------------------------------------------------------------------------------------------
# memory
# ----------------------------------------------------------------------------------------------
def test_conv_output_too_large_for_memory() -> None:
    """A 1x1 image padded by 2^20 on every side with a 1x1 kernel: a (2^21 + 1)^2 output, 16 TiB.
    The sizes are representable, so the allocation is tried and fails: MemoryError."""
    x = np.ones((1, 1, 1, 1), np.float32)
    with pytest.raises((MemoryError, ValueError)) as info:
        ops.conv2d(x, x, padding=2**20)
    assert isinstance(info.value, MemoryError), f"expected MemoryError, got {info.value!r}"
    with pytest.raises((MemoryError, ValueError)):
        ops.conv2d(x, x, np.zeros(1, np.float32), padding=(2**20, 2**20), relu=True)
    assert ops.conv2d(x, x, padding=1).shape == (1, 1, 3, 3)  # still fine afterwards


def test_huge_broadcast_inputs_raise_memory_error() -> None:
    """A zero-stride (2^20, 2^20) view: the binding's contiguous copy (4 TiB) can't be made."""
    big = np.broadcast_to(np.float32(1), (2**20, 2**20))
    with pytest.raises(MemoryError):
        ops.linear(big, np.ones((3, 2**20), np.float32))
    with pytest.raises(MemoryError):
        ops.relu(big)
    with pytest.raises(MemoryError):
        ops.softmax(big)
    with pytest.raises(MemoryError):
        ops.cross_entropy(big, np.zeros(2**20, np.int64))
    with pytest.raises(MemoryError):
        ops.max_pool2d(big.reshape(1, 1, 2**20, 2**20), 2)
    w = np.ones((3, 4), np.float32)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 4), dtype=np.float32)
    np.testing.assert_array_equal(ops.linear(x, w), x @ w.T)  # the library still works


# ----------------------------------------------------------------------------------------------
# fork after the kernels ran
# ----------------------------------------------------------------------------------------------
def _fork_model() -> fc.Sequential:
    m = fc.Sequential([L.Conv2D(8, 3, padding="same", activation="relu"), L.MaxPool2D(2),
                       L.Flatten(), L.Dense(16, activation="relu"),
                       L.Dense(3, activation="softmax")], input_shape=(1, 12, 12), seed=3)
    m.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    return m


def _fork_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(4)
    return rng.standard_normal((64, 1, 12, 12)).astype(np.float32), rng.integers(0, 3, 64)


def _fit_in_child(expected: list[np.ndarray], loss: float) -> None:
    x, y = _fork_data()
    m = _fork_model()
    hist = m.fit(x, y, batch_size=16, epochs=2, verbose=0, seed=5)
    ok = fc.num_threads() == 1 and hist.history["loss"][-1] == loss
    ok = ok and all(a.tobytes() == b.tobytes()
                    for a, b in zip(m.get_weights(), expected, strict=True))
    sys.exit(0 if ok else 3)


@pytest.mark.skipif(not HAS_FORK, reason="no fork on this platform")
def test_fit_in_a_forked_child_after_threaded_kernels() -> None:
    fc.set_num_threads(2)
    x, y = _fork_data()
    m = _fork_model()
    hist = m.fit(x, y, batch_size=16, epochs=2, verbose=0, seed=5)  # libgomp's pool exists now
    expected, loss = m.get_weights(), hist.history["loss"][-1]
    ctx = multiprocessing.get_context("fork")
    p = ctx.Process(target=_fit_in_child, args=(expected, loss))
    with warnings.catch_warnings():  # Python >= 3.12 warns about forking a threaded process
        warnings.simplefilter("ignore", DeprecationWarning)
        p.start()
    p.join(120)
    if p.is_alive():
        p.kill()
        p.join(10)
        pytest.fail("the forked child hung in fit()")
    assert p.exitcode == 0, (f"the forked child exited with {p.exitcode} (3: its fit() differs "
                             "from the parent's)")
    assert fc.num_threads() == 2  # the parent keeps its threads
    again = _fork_model()
    again.fit(x, y, batch_size=16, epochs=2, verbose=0, seed=5)
    assert all(a.tobytes() == b.tobytes() for a, b in zip(again.get_weights(), expected,
                                                          strict=True))


# ----------------------------------------------------------------------------------------------
# Ctrl-C in a real process
# ----------------------------------------------------------------------------------------------
CTRL_C_CHILD = """
import sys
import numpy as np
import fastcnn as fc
from fastcnn import callbacks as C
from fastcnn import layers as L

out, preds = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(0)
x = rng.standard_normal((96, 1, 10, 10)).astype(np.float32)
y = rng.integers(0, 4, 96)
model = fc.Sequential([L.Conv2D(8, 3, activation="relu"), L.MaxPool2D(2), L.Flatten(),
                       L.Dense(4, activation="softmax")], input_shape=(1, 10, 10), seed=0)
model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])

class Ready(C.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if self.model.optimizer.iterations == 5:
            print("READY", flush=True)

hist = model.fit(x, y, batch_size=8, epochs=100000, verbose=0, callbacks=[Ready()], seed=1)
model.save(out)
loss, acc = model.evaluate(x, y)
np.save(preds, model.predict(x))
print("DONE", hist.interrupted, model.optimizer.iterations, loss, acc, flush=True)
"""


def test_sigint_during_fit_in_a_child_process(tmp_path: Path) -> None:
    out, preds = tmp_path / "model.npz", tmp_path / "preds.npy"
    with subprocess.Popen([sys.executable, "-c", CTRL_C_CHILD, str(out), str(preds)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None and proc.stderr is not None
            line = proc.stdout.readline()
            assert line.strip() == "READY", (line, proc.stderr.read() if proc.poll() else "")
            proc.send_signal(signal.SIGINT)
            stdout, stderr = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, f"exit {proc.returncode}\n{stdout}\n{stderr}"
    assert "interrupted" in stdout.lower()
    done = [ln for ln in stdout.splitlines() if ln.startswith("DONE")]
    assert done, stdout
    _, interrupted, iterations, loss, acc = done[0].split()
    assert interrupted == "True" and int(iterations) >= 5
    assert np.isfinite(float(loss)) and 0.0 <= float(acc) <= 1.0
    # the saved model is complete and reproduces the child's predictions exactly
    model = fc.load_model(out)
    assert model.optimizer.iterations == int(iterations)
    x = np.random.default_rng(0).standard_normal((96, 1, 10, 10)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(x), np.load(preds))


# ----------------------------------------------------------------------------------------------
# interrupted saves
# ----------------------------------------------------------------------------------------------
SAVE_LOOP_CHILD = """
import sys
import numpy as np
import fastcnn as fc
from fastcnn import layers as L

path = sys.argv[1]
model = fc.Sequential([L.Flatten(), L.Dense(1500, activation="relu"), L.Dense(1000)],
                      input_shape=(1, 40, 40))
for k in range(1, 1000000):
    model.set_weights([np.full(w.shape, k, np.float32) for w in model.get_weights()])
    model.save(path)
    print("SAVED", k, flush=True)
"""


def _uniform_version(path: Path) -> int:
    """The k of a file written by SAVE_LOOP_CHILD: every weight equals k."""
    model = fc.load_model(path)
    values = {float(v) for w in model.get_weights() for v in np.unique(w)}
    assert len(values) == 1, f"{path.name} mixes versions {sorted(values)[:5]}"
    return int(values.pop())


def _partial_temp_file(directory: Path, pid: int) -> bool:
    """A temporary file of a save holding more than 1 MiB (but not all 24 MB) exists.

    On Linux the save writes an unnamed O_TMPFILE, named only for the instant between its
    ``link`` and ``os.replace``: it is found through the child's ``/proc/<pid>/fd`` while it is
    being written (killing at the named instant would test that instant, not a write)."""
    fds = Path(f"/proc/{pid}/fd")
    if hasattr(os, "O_TMPFILE") and fds.is_dir():
        for fd in fds.iterdir():
            try:
                target = os.readlink(fd)
                if target.startswith(f"{directory}/#") and os.stat(fd).st_size > 1 << 20:
                    return True
            except (FileNotFoundError, PermissionError):  # closed meanwhile
                pass
        return False
    for name in os.listdir(directory):
        if name != "model.npz":
            try:
                if os.path.getsize(directory / name) > 1 << 20:
                    return True
            except FileNotFoundError:  # renamed into place meanwhile
                pass
    return False


def _kill_mid_save(tmp_path: Path) -> tuple[Path, int, list[str]]:
    """Run SAVE_LOOP_CHILD, SIGKILL it while a temporary file is being written."""
    path = tmp_path / "model.npz"
    with subprocess.Popen([sys.executable, "-c", SAVE_LOOP_CHILD, str(path)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None and proc.stderr is not None
            line = proc.stdout.readline()  # the first save is complete
            assert line.startswith("SAVED"), (line, proc.stderr.read() if proc.poll() else "")
            last = int(line.split()[1])
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # the next save is under way: kill it mid-write
                if _partial_temp_file(tmp_path, proc.pid):
                    proc.send_signal(signal.SIGKILL)
                    break
                time.sleep(0.0005)
            else:
                pytest.fail("never saw the temporary file of a save")
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return path, last, sorted(os.listdir(tmp_path))


def test_sigkill_during_save_keeps_the_previous_file(tmp_path: Path) -> None:
    path, last, _ = _kill_mid_save(tmp_path)
    k = _uniform_version(path)  # a complete file, all of one version
    assert k >= last, f"the file went back to version {k} after version {last} was saved"


@pytest.mark.skipif(not hasattr(os, "O_TMPFILE"), reason="needs O_TMPFILE (Linux): elsewhere a "
                    "killed save may leave its hidden temporary file beside the intact target")
def test_sigkill_during_save_leaves_no_temp_file(tmp_path: Path) -> None:
    _, _, names = _kill_mid_save(tmp_path)
    assert names == ["model.npz"], names


class _FullDisk:
    """A file object whose writes fail with ENOSPC once ``budget`` bytes have been written."""

    def __init__(self, f: Any, budget: int) -> None:
        self._f, self._budget = f, budget

    def write(self, b: Any) -> int:
        n = len(memoryview(b).cast("B"))
        if n > self._budget:
            self._f.write(bytes(memoryview(b).cast("B")[: self._budget]))
            self._budget = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._budget -= n
        return self._f.write(b)

    def __enter__(self) -> _FullDisk:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._f.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


def _big_model(seed: int) -> fc.Sequential:
    m = fc.Sequential([L.Flatten(), L.Dense(300, activation="relu"), L.Dense(10)],
                      input_shape=(1, 20, 20), seed=seed)
    m.compile("adam", "sparse_categorical_crossentropy")
    return m


@pytest.mark.parametrize("budget", [0, 100, 300_000])
@pytest.mark.parametrize("what", ["save", "save_weights"])
def test_disk_full_while_saving(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, budget: int,
                                what: str) -> None:
    path = tmp_path / "m.npz"
    old, new = _big_model(0), _big_model(1)
    getattr(old, what)(path)
    before = path.read_bytes()
    real_fdopen = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda *a, **k: _FullDisk(real_fdopen(*a, **k), budget))
    with pytest.raises(OSError) as info:
        getattr(new, what)(path)
    monkeypatch.undo()
    assert info.value.errno == errno.ENOSPC
    assert path.read_bytes() == before, "the previous file changed"
    assert os.listdir(tmp_path) == ["m.npz"], os.listdir(tmp_path)
    # a first save that fails leaves nothing at all
    fresh = tmp_path / "new.npz"
    monkeypatch.setattr(os, "fdopen", lambda *a, **k: _FullDisk(real_fdopen(*a, **k), budget))
    with pytest.raises(OSError):
        getattr(new, what)(fresh)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["m.npz"], os.listdir(tmp_path)
    getattr(new, what)(fresh)  # and the disk "freed", saving works
    assert sorted(os.listdir(tmp_path)) == ["m.npz", "new.npz"]


def test_disk_full_at_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m.npz"
    _big_model(0).save(path)
    before = path.read_bytes()

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError):
        _big_model(1).save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["m.npz"]


# ----------------------------------------------------------------------------------------------
# pickles never run
# ----------------------------------------------------------------------------------------------
class _Payload:
    """Unpickling this creates the directory ``marker`` (a stand-in for arbitrary code)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (os.mkdir, (self.marker,))


def _evil_npz(good: Path, dst: Path, key: str, marker: Path) -> None:
    with np.load(good, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    obj = np.empty(3, dtype=object)
    obj[:] = [_Payload(str(marker)), 1.0, "x"]
    arrays[key] = obj
    np.savez(dst, **arrays)


@pytest.mark.parametrize("key", ["format", "architecture", "weights/dense/kernel",
                                 "optimizer/iterations", "zzz_extra"])
def test_pickled_objects_are_never_loaded(tmp_path: Path, key: str) -> None:
    good = tmp_path / "good.npz"
    model = _big_model(0)
    model.save(good)
    evil, marker = tmp_path / "evil.npz", tmp_path / "PWNED"
    _evil_npz(good, evil, key, marker)
    before = model.get_weights()
    with pytest.raises(ValueError):
        fc.load_model(evil)
    with pytest.raises(ValueError):
        model.load_weights(evil)
    assert not marker.exists(), "loading ran the pickle"
    assert all(a.tobytes() == b.tobytes() for a, b in zip(model.get_weights(), before,
                                                          strict=True))
    # the payload is live: numpy with allow_pickle=True would have run it
    with np.load(evil, allow_pickle=True) as f:
        f[key]
    assert marker.exists()


def test_a_raw_pickle_is_never_loaded(tmp_path: Path) -> None:
    import pickle

    marker = tmp_path / "PWNED"
    path = tmp_path / "model.npz"
    path.write_bytes(pickle.dumps({"weights/dense/kernel": _Payload(str(marker))}))
    with pytest.raises(ValueError):
        fc.load_model(path)
    with pytest.raises(ValueError):
        _big_model(0).load_weights(path)
    npy = tmp_path / "model.npy"
    obj = np.empty(1, dtype=object)
    obj[0] = _Payload(str(marker))
    np.save(npy, obj)
    with pytest.raises(ValueError):
        fc.load_model(npy)
    assert not marker.exists(), "loading ran the pickle"
    # the command line refuses it too, without running it
    result = _run_python("import sys; from fastcnn.cli import main; sys.exit(main())",
                         "predict", str(path), str(tmp_path / "none.png"))
    assert result.returncode != 0 and not marker.exists()
    assert "Traceback" not in result.stderr, result.stderr


# ----------------------------------------------------------------------------------------------
# corrupt image folders
# ----------------------------------------------------------------------------------------------
def _png_bytes(value: int) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def corrupt_root(tmp_path: Path) -> tuple[Path, list[str]]:
    root = tmp_path / "images"
    bad: list[str] = []
    for c, name in enumerate(["cats", "dogs"]):
        (root / name).mkdir(parents=True)
        for i in range(10):
            (root / name / f"ok{i}.png").write_bytes(_png_bytes(40 + 150 * c + i))
    good = _png_bytes(99)
    (root / "cats" / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "cats" / "empty.jpg").write_bytes(b"")
    (root / "dogs" / "notes.png").write_text("this is a text file, not a PNG\n")
    (root / "dogs" / "header_only.png").write_bytes(good[:8])
    (root / "dogs" / "folder.png").mkdir()  # a directory named like an image
    bad += ["cats/truncated.png", "cats/empty.jpg", "dogs/notes.png", "dogs/header_only.png"]
    locked = root / "cats" / "locked.png"
    locked.write_bytes(_png_bytes(7))
    locked.chmod(0)
    if os.geteuid() != 0:  # root reads it anyway
        bad.append("cats/locked.png")
    return root, bad


def test_corrupt_image_folder_does_not_stop_training(corrupt_root: tuple[Path, list[str]]
                                                     ) -> None:
    root, bad = corrupt_root
    kw = dict(target_size=(8, 8), color_mode="grayscale", class_mode="sparse", batch_size=4,
              seed=0, rescale=1 / 255, validation_split=0.25)
    train = fc.data.ImageFolder(root, subset="training", **kw)
    val = fc.data.ImageFolder(root, subset="validation", **kw)
    model = fc.Sequential([L.Conv2D(4, 3, activation="relu"), L.Flatten(),
                           L.Dense(2, activation="softmax")], input_shape=(1, 8, 8), seed=0)
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    with pytest.warns(fc.data.DataWarning) as record:
        hist = model.fit(train, epochs=3, validation_data=val, verbose=0)
    assert not getattr(hist, "interrupted", False)
    assert len(hist.history["loss"]) == 3 and np.isfinite(hist.history["loss"]).all()
    assert np.isfinite(hist.history["val_loss"]).all()
    text = " ".join(str(w.message) for w in record)
    skipped = {os.path.relpath(p, root) for p in [*train.bad_files, *val.bad_files]}
    for name in bad:
        assert name in skipped, f"{name} was not reported as bad: {sorted(skipped)}"
        assert os.path.basename(name) in text
    assert not any("folder.png" in s for s in skipped)
    # with the bad files known, a later evaluation is silent and counts only good images
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.evaluate(val)
    assert sum(len(x) for x, _ in train) + sum(len(x) for x, _ in val) == 20 + (
        0 if "cats/locked.png" in bad else 1)
