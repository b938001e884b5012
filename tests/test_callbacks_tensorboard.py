"""TensorBoard: Keras' layout (log_dir/train, log_dir/validation) and tags, read back from the
event files (TFRecord framing parsed here, events with tensorboardX's protobuf classes)."""

from __future__ import annotations

import builtins
import struct
from pathlib import Path

import numpy as np
import pytest

import fastcnn as fc
from fastcnn import callbacks as C
from fastcnn import layers as L
from fastcnn import optimizers as O

event_pb2 = pytest.importorskip("tensorboardX.proto.event_pb2")


def _events(folder: Path) -> list:
    """Every event of every event file in ``folder`` (TFRecord: u64 length, u32 crc, data,
    u32 crc)."""
    out = []
    files = sorted(folder.glob("events.out.tfevents.*"))
    assert files, f"no event file in {folder}"
    for path in files:
        data = path.read_bytes()
        i = 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i:i + 8])
            out.append(event_pb2.Event.FromString(data[i + 12:i + 12 + n]))
            i += 12 + n + 4
    return out


def _scalars(folder: Path) -> dict[str, dict[int, float]]:
    found: dict[str, dict[int, float]] = {}
    for ev in _events(folder):
        for v in ev.summary.value:
            if v.HasField("simple_value"):
                found.setdefault(v.tag, {})[ev.step] = v.simple_value
    return found


def _tags(folder: Path, kind: str) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for ev in _events(folder):
        for v in ev.summary.value:
            if v.HasField(kind):
                found.setdefault(v.tag, []).append(ev.step)
    return found


def _model() -> fc.Sequential:
    m = fc.Sequential([L.Dense(5, activation="relu"), L.Dense(3, activation="softmax")],
                      input_shape=(4,), seed=0)
    m.compile(O.SGD(learning_rate=0.1), "sparse_categorical_crossentropy", ["accuracy"])
    return m


def _data(n: int = 20):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, 4)).astype(np.float32), rng.integers(0, 3, n)


def _f32(v: float) -> float:
    return float(np.float32(v))


def test_epoch_scalars_match_history(tmp_path: Path) -> None:
    x, y = _data()
    tb = C.TensorBoard(tmp_path / "logs", histogram_freq=2)
    h = _model().fit(x, y, batch_size=4, epochs=3, verbose=0, seed=0, validation_split=0.2,
                     callbacks=[tb, C.LearningRateScheduler(lambda e, lr: 0.1 / (e + 1))])
    train = _scalars(tmp_path / "logs" / "train")
    val = _scalars(tmp_path / "logs" / "validation")
    assert {"epoch_loss", "epoch_accuracy", "epoch_learning_rate"} <= set(train)
    assert set(val) == {"epoch_loss", "epoch_accuracy", "evaluation_loss_vs_iterations",
                        "evaluation_accuracy_vs_iterations"}
    for name in ("loss", "accuracy", "learning_rate"):
        assert train[f"epoch_{name}"] == {e: _f32(v) for e, v in
                                          enumerate(h.history[name])}
    for name in ("loss", "accuracy"):
        assert val[f"epoch_{name}"] == {e: _f32(v) for e, v in
                                        enumerate(h.history[f"val_{name}"])}
        # 16 training samples in batches of 4: 4 steps an epoch
        assert val[f"evaluation_{name}_vs_iterations"] == {
            4 * (e + 1): _f32(v) for e, v in enumerate(h.history[f"val_{name}"])}
    assert not any(t.startswith("batch_") for t in train)  # update_freq="epoch"
    # histograms after epochs 0 and 2 (histogram_freq=2), one per weight
    hist = _tags(tmp_path / "logs" / "train", "histo")
    assert hist == {f"{n}/histogram": [0, 2] for n in
                    ("dense/kernel", "dense/bias", "dense_1/kernel", "dense_1/bias")}
    # write_graph: the model summary as text
    text = [v for ev in _events(tmp_path / "logs" / "train") for v in ev.summary.value
            if v.tag.startswith("model_summary")]
    assert len(text) == 1 and b"Total params" in text[0].tensor.string_val[0]


def test_batch_scalars_with_update_freq(tmp_path: Path) -> None:
    x, y = _data(16)
    seen: list[tuple[int, float]] = []
    rec = C.LambdaCallback(on_train_batch_end=lambda b, logs: seen.append(logs["loss"]))
    _model().fit(x, y, batch_size=4, epochs=2, verbose=0, seed=0,
                 callbacks=[C.TensorBoard(tmp_path / "b", update_freq=3,
                                          write_steps_per_second=True, write_graph=False),
                            rec])
    train = _scalars(tmp_path / "b" / "train")
    # 4 batches an epoch, 8 in all; written at steps 3 and 6 (every 3rd batch, 1-based)
    assert train["batch_loss"] == {3: _f32(seen[2]), 6: _f32(seen[5])}
    assert set(train["batch_steps_per_second"]) == {3, 6}
    assert set(train["epoch_steps_per_second"]) == {0, 1}
    assert all(v > 0 for v in train["epoch_steps_per_second"].values())
    assert not (tmp_path / "b" / "validation").exists()  # no validation, no folder
    every = C.TensorBoard(tmp_path / "c", update_freq="batch", write_graph=False)
    _model().fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[every])
    assert sorted(_scalars(tmp_path / "c" / "train")["batch_loss"]) == [1, 2, 3, 4]


def test_arguments_checked(tmp_path: Path) -> None:
    for kw, pat in (({"update_freq": 0}, "update_freq"), ({"update_freq": "step"}, "update_freq"),
                    ({"histogram_freq": -1}, "histogram_freq"),
                    ({"write_images": True}, "write_images"),
                    ({"profile_batch": 2}, "profile_batch"),
                    ({"embeddings_freq": 1}, "embeddings"), ({"log_dir": ""}, "log_dir")):
        with pytest.raises(ValueError, match=pat):
            C.TensorBoard(**{"log_dir": tmp_path, **kw})
    assert C.TensorBoard.main_rank_only  # only rank 0 writes under fastcnn.distributed


def test_missing_writer_is_an_import_error_at_construction(monkeypatch) -> None:
    real = builtins.__import__

    def no_writer(name, *args, **kwargs):
        if name in ("tensorboardX", "torch.utils.tensorboard"):
            raise ImportError(f"No module named {name!r}")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_writer)
    with pytest.raises(ImportError, match=r'pip install "fastcnn\[tensorboard\]"'):
        C.TensorBoard("logs")


def test_only_rank_zero_writes(tmp_path: Path, monkeypatch) -> None:
    from fastcnn.distributed import _fit as dist

    monkeypatch.setattr(dist, "is_main", lambda: False)  # as on rank 1
    x, y = _data()
    _model().fit(x, y, batch_size=4, epochs=1, verbose=0,
                 callbacks=[C.TensorBoard(tmp_path / "r1")])
    assert not (tmp_path / "r1").exists()
