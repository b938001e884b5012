"""model.save / fastcnn.load_model / save_weights / load_weights: round trips, atomic writes,
and clear errors (model unchanged) for truncated, mismatched and pickled files."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest

import fastcnn as fc
from fastcnn import layers as L
from fastcnn import optimizers as O


def _model(seed: int = 0, units: int = 3) -> fc.Sequential:
    return fc.Sequential([L.Conv2D(4, 3, padding="same", activation="relu"),
                          L.MaxPool2D(2, padding="same"), L.Flatten(), L.Dropout(0.1),
                          L.Dense(units, activation="softmax")], input_shape=(1, 5, 5), seed=seed)


def _data(n: int = 24, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 1, 5, 5)).astype(np.float32), rng.integers(0, 3, n)


def _trained(seed: int = 0) -> fc.Sequential:
    m = _model(seed)
    m.compile(O.Adam(learning_rate=O.ExponentialDecay(0.01, 10, 0.9)),
              "sparse_categorical_crossentropy", ["accuracy", "top_2"])
    x, y = _data()
    m.fit(x, y, batch_size=8, epochs=1, seed=0, verbose=0)
    return m


def _same_weights(a: fc.Sequential, b: fc.Sequential) -> bool:
    return all(p.tobytes() == q.tobytes()
               for p, q in zip(a.get_weights(), b.get_weights(), strict=True))


def test_save_load_roundtrip_and_resume_training(tmp_path):
    model = _trained()
    path = tmp_path / "model.npz"
    model.save(path)
    assert os.listdir(tmp_path) == ["model.npz"]  # no temporary file left behind
    loaded = fc.load_model(path)
    assert loaded.get_config() == model.get_config()
    assert _same_weights(model, loaded)
    x, y = _data(10, seed=5)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert [m.name for m in loaded.metrics] == ["accuracy", "top_2"]
    assert type(loaded.optimizer) is O.Adam and loaded.optimizer.iterations == 3
    assert loaded.optimizer.learning_rate == model.optimizer.learning_rate
    # the optimizer state came along: one more epoch on both gives the same weights
    x, y = _data()
    model.fit(x, y, batch_size=8, epochs=1, seed=1, verbose=0)
    loaded.fit(x, y, batch_size=8, epochs=1, seed=1, verbose=0)
    assert _same_weights(model, loaded)


def test_file_layout(tmp_path):
    path = tmp_path / "m.npz"
    _trained().save(path)
    with np.load(path, allow_pickle=False) as f:
        arch = f["architecture"]
        assert arch.dtype.kind == "U" and arch.shape == ()
        cfg = json.loads(str(arch))
        assert [spec["class_name"] for spec in cfg["layers"]] == [
            "Conv2D", "MaxPool2D", "Flatten", "Dropout", "Dense"]
        assert f["weights/conv2d/kernel"].shape == (4, 1, 3, 3)
        assert "optimizer/m/dense/kernel" in f.files and "optimizer/iterations" in f.files
    assert oct(os.stat(path).st_mode & 0o777) != oct(0o600) or os.umask(0o022) == 0o077


def test_save_replaces_atomically(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    model = _trained()
    model.save(path)
    before = path.read_bytes()

    def broken_savez(f, **arrays):
        f.write(b"PK\x03\x04 partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["m.npz"]
    fc.load_model(path)


def test_save_weights_load_weights(tmp_path):
    a, b = _trained(), _model(seed=1)
    a.save_weights(tmp_path / "w.npz")
    assert not _same_weights(a, b)
    b.load_weights(tmp_path / "w.npz")
    assert _same_weights(a, b)
    # a full model file works for load_weights too
    c = _model(seed=2)
    a.save(tmp_path / "m.npz")
    c.load_weights(tmp_path / "m.npz")
    assert _same_weights(a, c)
    with pytest.raises(ValueError, match="load_weights"):
        fc.load_model(tmp_path / "w.npz")


def _assert_unchanged(model: fc.Sequential, before: list[np.ndarray]) -> None:
    for p, q in zip(model.get_weights(), before, strict=True):
        assert p.tobytes() == q.tobytes()


def test_truncated_file(tmp_path):
    path = tmp_path / "m.npz"
    _trained().save(path)
    data = path.read_bytes()
    target = _model(seed=3)
    before = target.get_weights()
    for cut in (len(data) // 2, len(data) - 10, 30):
        (tmp_path / "cut.npz").write_bytes(data[:cut])
        with pytest.raises(ValueError, match=r"cut\.npz"):
            fc.load_model(tmp_path / "cut.npz")
        with pytest.raises(ValueError, match=r"cut\.npz"):
            target.load_weights(tmp_path / "cut.npz")
        _assert_unchanged(target, before)


def test_mismatched_shapes(tmp_path):
    _model(units=4).save_weights(tmp_path / "w4.npz")
    target = _model(units=3)
    before = target.get_weights()
    with pytest.raises(ValueError, match=r"dense/kernel.*\(4, 36\).*\(3, 36\)"):
        target.load_weights(tmp_path / "w4.npz")
    _assert_unchanged(target, before)


def _rewrite(src, dst, edit) -> None:
    with np.load(src, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    edit(arrays)
    np.savez(dst, **arrays)


@pytest.mark.parametrize(("edit", "match"), [
    (lambda a: a.pop("weights/dense/bias"), "missing weights.*dense/bias"),
    (lambda a: a.__setitem__("weights/dense/bias", a["weights/dense/bias"].astype(np.float64)),
     "dtype float64"),
    (lambda a: a.__setitem__("weights/extra/kernel", np.zeros(3, np.float32)), "unexpected"),
    (lambda a: a.__setitem__("optimizer/m/dense/kernel", np.zeros(3, np.float32)),
     "optimizer state.*shape"),
    (lambda a: a.__setitem__("architecture", np.array("{not json")), "JSON"),
    (lambda a: a.pop("format"), "not a fastcnn file"),
    (lambda a: a.__setitem__("format", np.array("something/9")), "unsupported format"),
])
def test_bad_contents_are_named(tmp_path, edit, match):
    good = tmp_path / "good.npz"
    _trained().save(good)
    bad = tmp_path / "bad.npz"
    _rewrite(good, bad, edit)
    with pytest.raises(ValueError, match=match):
        fc.load_model(bad)


def test_pickled_files_are_refused(tmp_path):
    target = _model()
    before = target.get_weights()
    pkl = tmp_path / "evil.npz"
    pkl.write_bytes(pickle.dumps({"weights/conv2d/kernel": np.zeros(3)}))
    with pytest.raises(ValueError, match=r"evil\.npz"):
        fc.load_model(pkl)
    obj = tmp_path / "obj.npz"
    good = tmp_path / "good.npz"
    target.save(good)
    _rewrite(good, obj, lambda a: a.__setitem__(
        "weights/dense/bias", np.array([1, "x", None], dtype=object)))
    with pytest.raises(ValueError, match="pickled"):
        target.load_weights(obj)
    with pytest.raises(ValueError, match="pickled"):
        fc.load_model(obj)
    _assert_unchanged(target, before)
    np.save(tmp_path / "single.npy", np.zeros(3))
    with pytest.raises(ValueError, match=r"single \.npy"):
        fc.load_model(tmp_path / "single.npy")
    with pytest.raises(FileNotFoundError):
        fc.load_model(tmp_path / "missing.npz")


def test_uncompiled_model_roundtrip(tmp_path):
    m = _model()
    m.save(tmp_path / "m.npz")
    loaded = fc.load_model(tmp_path / "m.npz")
    assert loaded.optimizer is None and _same_weights(m, loaded)


def test_load_weights_matches_by_position_when_names_differ(tmp_path):
    a = _model(seed=1)
    a.save_weights(tmp_path / "w.npz")
    b = fc.Sequential([L.Conv2D(4, 3, padding="same", activation="relu", name="features"),
                       L.MaxPool2D(2, padding="same"), L.Flatten(), L.Dropout(0.1),
                       L.Dense(3, activation="softmax", name="head")], input_shape=(1, 5, 5))
    b.load_weights(tmp_path / "w.npz")
    assert _same_weights(a, b)


def test_files_saved_with_the_old_format_name_still_load(tmp_path) -> None:
    # whole-model files now say "fastcnn.Model/1" (graph models too); files written before
    # graph models existed say "fastcnn.Sequential/1" (the same layout) and load as before
    from fastcnn import _files

    m = _trained()
    path = tmp_path / "m.npz"
    m.save(path)
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    assert str(arrays["format"]) == "fastcnn.Model/1" == _files.MODEL_FORMAT
    arrays["format"] = np.array("fastcnn.Sequential/1")
    old = tmp_path / "old.npz"
    np.savez(old, **arrays)
    x, _ = _data()
    np.testing.assert_array_equal(fc.load_model(old).predict(x), m.predict(x))
    arrays["format"] = np.array("fastcnn.Sequential/2")
    np.savez(old, **arrays)
    with pytest.raises(ValueError, match=r"unsupported format 'fastcnn\.Sequential/2'"):
        fc.load_model(old)
