"""Errors that point at the fix, part 2 (issue 19): ``data_format="channels_last"``, channels-last
arrays checked against the model's input shape (an error where the shape is known, a warning
where it is a guess), cross-entropy label hints that lead to a working call, files that are not
fastcnn files, failed saves, and whole models as ``.safetensors``. Each hint is followed in the
test, and the call it names must work."""

from __future__ import annotations

import errno
import os
import pickle
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import fastcnn as fc
from fastcnn import _files, _layout
from fastcnn import layers as L
from fastcnn.data import DataWarning

RNG = np.random.default_rng(0)
X_NHWC = RNG.standard_normal((12, 16, 16, 3)).astype(np.float32)
X_NCHW = np.ascontiguousarray(X_NHWC.transpose(0, 3, 1, 2))
Y = np.arange(12) % 2


def _model(input_shape: tuple[int, ...] | None = (3, 16, 16), seed: int = 0,
           first: L.Layer | None = None) -> fc.Sequential:
    m = fc.Sequential([first or L.Conv2D(4, 3), L.Flatten(), L.Dense(2, activation="softmax")],
                      input_shape=input_shape, seed=seed)
    m.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    return m


def _weights_equal(a: fc.Sequential, b: fc.Sequential) -> bool:
    return all(np.array_equal(u, v) for u, v in zip(a.get_weights(), b.get_weights(),
                                                     strict=True))


# ----------------------------------------------------------------------------------------------
# 1. data_format="channels_last"
# ----------------------------------------------------------------------------------------------
def test_to_channels_first_is_one_float32_copy_of_the_same_kind() -> None:
    x = RNG.integers(0, 255, (2, 5, 6, 3)).astype(np.uint8)
    out = _layout.to_channels_first(x)
    assert out.shape == (2, 3, 5, 6) and out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, x.transpose(0, 3, 1, 2))
    assert _layout.to_channels_first(x, "channels_first") is x
    assert _layout.to_channels_first(x.tolist()).shape == (2, 3, 5, 6)
    with pytest.raises(ValueError, match=r'"channels_first".*"channels_last".*got \'NHWC\''):
        _layout.to_channels_first(x, "NHWC")
    with pytest.raises(ValueError, match=r"\(N, H, W, C\), got x of shape \(2, 90\)"):
        _layout.to_channels_first(np.zeros((2, 90)))


def test_fit_evaluate_predict_on_channels_last_arrays_equal_the_transposed_ones() -> None:
    a, b = _model(), _model()
    ha = a.fit(X_NHWC, Y, batch_size=4, epochs=2, verbose=0, seed=1, validation_split=0.25,
               data_format="channels_last")
    hb = b.fit(X_NCHW, Y, batch_size=4, epochs=2, verbose=0, seed=1, validation_split=0.25)
    assert ha.history == hb.history and _weights_equal(a, b)
    assert a.evaluate(X_NHWC, Y, data_format="channels_last") == b.evaluate(X_NCHW, Y)
    np.testing.assert_array_equal(a.predict(X_NHWC, data_format="channels_last"),
                                  b.predict(X_NCHW))
    va = a.fit(X_NHWC, Y, verbose=0, seed=2, validation_data=(X_NHWC[:4], Y[:4]),
               data_format="channels_last")
    vb = b.fit(X_NCHW, Y, verbose=0, seed=2, validation_data=(X_NCHW[:4], Y[:4]))
    assert va.history == vb.history and _weights_equal(a, b)


def test_the_on_batch_methods_take_channels_last() -> None:
    a, b = _model(), _model()
    kw = {"data_format": "channels_last"}
    assert a.train_on_batch(X_NHWC, Y, **kw) == b.train_on_batch(X_NCHW, Y)
    assert a.test_on_batch(X_NHWC, Y, **kw) == b.test_on_batch(X_NCHW, Y)
    np.testing.assert_array_equal(a.predict_on_batch(X_NHWC, **kw), b.predict_on_batch(X_NCHW))
    for call in (lambda: a.train_on_batch(X_NHWC, Y, data_format="nchw"),
                 lambda: a.predict_on_batch(X_NHWC, data_format=None)):
        with pytest.raises(ValueError, match=r'"channels_first".*"channels_last"'):
            call()


def test_whole_arrays_are_converted_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, ...]] = []
    real = _layout.to_channels_first

    def counting(x: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(tuple(np.shape(x)))
        return real(x, *args, **kwargs)

    monkeypatch.setattr(_layout, "to_channels_first", counting)
    _model().fit(X_NHWC, Y, batch_size=2, epochs=2, verbose=0, data_format="channels_last")
    assert calls == [X_NHWC.shape]  # once, not per batch nor per epoch


class _Seq:
    """A Keras-style Sequence of NHWC batches that counts its on_epoch_end calls."""

    def __init__(self) -> None:
        self.ends = 0

    def __len__(self) -> int:
        return 3

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return X_NHWC[4 * i:4 * i + 4], Y[4 * i:4 * i + 4]

    def on_epoch_end(self) -> None:
        self.ends += 1


def _gen(x: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for i in range(0, 12, 4):
        yield x[i:i + 4], Y[i:i + 4]


def test_datasets_sequences_and_generators_are_converted_per_batch() -> None:
    ref = _model()
    ref.fit(X_NCHW, Y, batch_size=4, epochs=2, verbose=0, shuffle=False)
    seq = _Seq()
    by_seq = _model()
    by_seq.fit(seq, epochs=2, verbose=0, data_format="channels_last")
    assert seq.ends == 2 and _weights_equal(ref, by_seq)
    ds = fc.data.ArrayDataset(X_NHWC, Y, batch_size=4, shuffle=False)
    by_ds = _model()
    hist = by_ds.fit(ds, epochs=2, verbose=0, data_format="channels_last")
    assert hist.params["steps"] == 3 and _weights_equal(ref, by_ds)
    one = _model()
    one.fit(_gen(X_NHWC), verbose=0, data_format="channels_last",
            validation_data=_gen(X_NHWC))
    ref1 = _model()
    ref1.fit(X_NCHW, Y, batch_size=4, verbose=0, shuffle=False)
    assert _weights_equal(ref1, one)
    np.testing.assert_array_equal(one.predict(_gen(X_NHWC), data_format="channels_last"),
                                  one.predict(X_NCHW))
    assert one.evaluate(_Seq(), data_format="channels_last") == one.evaluate(X_NCHW, Y, 4)


def test_channels_last_on_channels_first_data_says_to_drop_it() -> None:
    m = _model()
    with pytest.raises(ValueError, match=r'x of shape \(N, 3, 16, 16\) is channels-first '
                                         r'already.*drop data_format="channels_last"'):
        m.fit(X_NCHW, Y, verbose=0, data_format="channels_last")
    with pytest.raises(ValueError, match="channels-first already"):
        m.predict(_gen(X_NCHW), data_format="channels_last")


def test_torch_tensors_in_channels_last() -> None:
    torch = pytest.importorskip("torch")
    m = _model()
    out = m.predict(torch.from_numpy(X_NHWC), data_format="channels_last")
    assert isinstance(out, torch.Tensor)
    np.testing.assert_array_equal(out.numpy(), m.predict(X_NCHW))
    t = _layout.to_channels_first(torch.from_numpy(X_NHWC))
    assert isinstance(t, torch.Tensor) and t.is_contiguous() and tuple(t.shape) == (12, 3, 16, 16)
    with pytest.raises(ValueError, match=r"permute\(0, 3, 1, 2\)"):
        m.predict(torch.from_numpy(X_NHWC))


# ----------------------------------------------------------------------------------------------
# 2. channels-last arrays that are a legal NCHW shape
# ----------------------------------------------------------------------------------------------
BOTH = r'transpose\(0, 3, 1, 2\) or data_format="channels_last"'


@pytest.mark.parametrize("call", [
    lambda m: m.fit(X_NHWC, Y, verbose=0),
    lambda m: m.evaluate(X_NHWC, Y),
    lambda m: m.predict(X_NHWC),
    lambda m: m.predict(_gen(X_NHWC)),
    lambda m: m.fit(_Seq(), verbose=0),
    lambda m: m.train_on_batch(X_NHWC, Y),
    lambda m: m.test_on_batch(X_NHWC, Y),
    lambda m: m.predict_on_batch(X_NHWC),
], ids=["fit", "evaluate", "predict", "predict-gen", "fit-seq", "train_on_batch",
        "test_on_batch", "predict_on_batch"])
def test_a_built_model_names_both_fixes(call: Any) -> None:
    m = _model()
    before = m.get_weights()
    with pytest.raises(ValueError, match=r"got \(N, 16, 16, 3\)\. The inputs look channels-last"
                                         r".*" + BOTH):
        call(m)
    assert all(np.array_equal(u, v) for u, v in zip(before, m.get_weights(), strict=True))


def test_the_fixes_the_error_names_work() -> None:
    m = _model()
    m.fit(X_NHWC.transpose(0, 3, 1, 2), Y, verbose=0)
    m.fit(X_NHWC, Y, verbose=0, data_format="channels_last")


def test_channels_last_images_of_another_size_and_functional_models() -> None:
    with pytest.raises(ValueError, match=r"holds the model's 3 channel\(s\).*16x16 images where "
                                         r"the model takes 32x32.*" + BOTH + ", and resize"):
        _model((3, 32, 32)).predict(X_NHWC)
    inp = fc.Input((3, 16, 16))
    out = L.Dense(2, activation="softmax")(L.Flatten()(L.Conv2D(4, 3)(inp)))
    g = fc.Model(inp, out)
    g.compile("sgd", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="channels-last.*" + BOTH):
        g.fit(X_NHWC, Y, verbose=0)
    g.fit(X_NHWC, Y, verbose=0, data_format="channels_last")


def test_an_unbuilt_model_warns_once_and_is_not_blocked() -> None:
    m = _model(None)
    with pytest.warns(DataWarning) as rec:
        m.fit(X_NHWC, Y, batch_size=4, epochs=2, verbose=0)
    assert len(rec) == 1
    msg = str(rec[0].message)
    assert "\n" not in msg and "look like channels-last 16x16 images with 3 channel" in msg
    assert 'x.transpose(0, 3, 1, 2) or data_format="channels_last"' in msg
    assert "input_shape=(16, 16, 3)" in msg and m.input_shape == (16, 16, 3)  # trained as asked
    for call in (lambda m: m.train_on_batch(X_NHWC, Y), lambda m: m.predict_on_batch(X_NHWC),
                 lambda m: m.test_on_batch(X_NHWC, Y), lambda m: m.predict(_gen(X_NHWC))):
        with pytest.warns(DataWarning, match="channels-last"):
            call(_model(None))


@pytest.mark.parametrize(("shape", "first"), [
    ((3, 16, 16), None), ((16, 16, 4), None), ((64, 8, 4), None), ((8, 12, 6), None),
    ((16, 16, 3), L.Flatten()),
])
def test_no_warning_for_channels_first_shapes_or_layout_blind_models(
        shape: tuple[int, ...], first: L.Layer | None) -> None:
    x = np.zeros((4, *shape), np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _model(None, first=first).fit(x, np.zeros(4, np.int64), verbose=0)
        # the fixes the warning names silence it
        _model(None).fit(X_NHWC, Y, verbose=0, data_format="channels_last")
        _model((16, 16, 3)).fit(X_NHWC, Y, verbose=0)


# ----------------------------------------------------------------------------------------------
# 3. cross-entropy label hints lead to a working call
# ----------------------------------------------------------------------------------------------
LOGITS = RNG.standard_normal((4, 3)).astype(np.float32)
IDS = np.array([0, 2, 1, 2])


def test_float_class_ids_suggest_int64_and_that_works() -> None:
    good = fc.ops.cross_entropy(LOGITS, IDS.astype(np.int64))
    for dtype, err in ((np.float64, TypeError), (np.float32, ValueError)):
        labels = IDS.astype(dtype)
        with pytest.raises(err, match=r"labels\.astype\(numpy\.int64\)") as e:
            fc.ops.cross_entropy(LOGITS, labels)
        assert "astype(numpy.float32)" not in str(e.value)
        fixed = eval(_fix(str(e.value)), {"numpy": np, "labels": labels})
        loss, grad = fc.ops.cross_entropy(LOGITS, fixed)
        assert loss == good[0] and np.array_equal(grad, good[1])


def test_float64_probability_rows_suggest_float32_and_that_works() -> None:
    labels = np.eye(3)[IDS]
    with pytest.raises(TypeError, match=r"labels\.astype\(numpy\.float32\)") as e:
        fc.ops.cross_entropy(LOGITS, labels)
    loss, _ = fc.ops.cross_entropy(LOGITS, eval(_fix(str(e.value)), {"numpy": np,
                                                                   "labels": labels}))
    assert np.isclose(loss, fc.ops.cross_entropy(LOGITS, IDS)[0])


def test_labels_of_neither_form_name_both_forms() -> None:
    with pytest.raises(ValueError, match=r"not whole numbers.*probability targets of the "
                                         r"logits' shape \(4, 3\)"):
        fc.ops.cross_entropy(LOGITS, np.array([0.5, 1, 2, 0]))
    with pytest.raises(ValueError, match=r"class ids of shape \(4,\) or float32 probability "
                                         r"targets of shape \(4, 3\)"):
        fc.ops.cross_entropy(LOGITS, np.zeros((4, 2)))


def _fix(msg: str) -> str:
    """The ``labels.astype(...)`` call a message names."""
    start = msg.index("labels.astype(")
    return msg[start:msg.index(")", start) + 1]


def test_the_models_label_hints_lead_to_a_working_fit() -> None:
    x = X_NCHW
    m = _model()
    with pytest.raises(ValueError, match=r"numpy\.eye\(2\)\[ids\]"):
        m.fit(x, np.eye(5)[Y], verbose=0)
    m.fit(x, np.eye(2)[Y], verbose=0)
    with pytest.raises(ValueError, match=r"look 1-based \(1 to 2\): pass y - 1"):
        m.fit(x, Y + 1, verbose=0)
    m.fit(x, Y + 1 - 1, verbose=0)
    names = np.array(["cat", "dog"])[Y]
    with pytest.raises(ValueError, match=r"numpy\.unique\(y, return_inverse=True\)"):
        m.fit(x, names, verbose=0)
    _, ids = np.unique(names, return_inverse=True)
    m.fit(x, ids, verbose=0)
    with pytest.raises(ValueError, match=r"give the last layer 6 units \(Dense\(6\)\)"):
        m.fit(x, Y * 5, verbose=0)
    wide = fc.Sequential([L.Conv2D(4, 3), L.Flatten(), L.Dense(6, activation="softmax")],
                         input_shape=(3, 16, 16), seed=0)
    wide.compile("sgd", "sparse_categorical_crossentropy")
    wide.fit(x, Y * 5, verbose=0)
    with pytest.raises(ValueError, match=r"must be whole numbers.*y\.astype\(numpy\.int64\)"):
        m.fit(x, Y + 0.5, verbose=0)
    with pytest.raises(ValueError, match=r"5 labels for a batch of 4"):
        m.train_on_batch(x[:4], Y[:5])


# ----------------------------------------------------------------------------------------------
# 4. files that are not fastcnn files
# ----------------------------------------------------------------------------------------------
def _foreign_files(tmp: Path) -> dict[str, tuple[Path, str]]:
    text, pkl, npy, empty = tmp / "text.npz", tmp / "model.pkl", tmp / "a.npy", tmp / "e.npz"
    text.write_text("epoch,loss\n1,0.5\n")
    pkl.write_bytes(pickle.dumps({"weights/dense/kernel": [1.0]}))
    np.save(npy, np.zeros(3))
    empty.write_bytes(b"")
    return {"text": (text, "it is a text file \\(it starts with 'epoch,loss'\\)"),
            "pickle": (pkl, "it is a Python pickle"),
            "npy": (npy, r"single \.npy array"), "empty": (empty, "it is empty")}


@pytest.mark.parametrize("kind", ["text", "pickle", "npy", "empty"])
@pytest.mark.parametrize("reader", ["load_model", "load_weights"])
def test_foreign_files_get_fastcnns_message(tmp_path: Path, kind: str, reader: str) -> None:
    path, what = _foreign_files(tmp_path)[kind]
    model = _model()
    with pytest.raises(ValueError) as e:
        fc.load_model(path) if reader == "load_model" else model.load_weights(path)
    msg = str(e.value)
    assert repr(str(path)) in msg and "a fastcnn file is the .npz (zip) archive" in msg, msg
    assert "allow_pickle" not in msg and e.value.__cause__ is None, msg
    assert e.value.__suppress_context__ or e.value.__context__ is None, msg
    assert __import__("re").search(what, msg), msg


def test_pickled_object_arrays_and_torch_checkpoints_are_named(tmp_path: Path) -> None:
    obj = tmp_path / "obj.npz"
    np.savez(obj, format=np.array(_files.MODEL_FORMAT), x=np.array([1, None], dtype=object))
    with pytest.raises(ValueError, match="pickled") as e:
        fc.load_model(obj)
    assert "allow_pickle" not in str(e.value)
    torch = pytest.importorskip("torch")
    pt = tmp_path / "m.npz"
    torch.save({"w": torch.zeros(2)}, pt)
    with pytest.raises(ValueError, match=r"PyTorch checkpoint \(torch\.save\).*from_torch"):
        fc.load_model(pt)


def test_a_text_file_named_safetensors(tmp_path: Path) -> None:
    pytest.importorskip("safetensors")
    path = tmp_path / "w.safetensors"
    path.write_text("not tensors\n")
    for call in (lambda: fc.load_model(path), lambda: _model().load_weights(path)):
        with pytest.raises(ValueError, match=r"not a \.safetensors file: it is a text file"):
            call()


# ----------------------------------------------------------------------------------------------
# 5. failed saves name the user's path and leave nothing
# ----------------------------------------------------------------------------------------------
def _no_tmpfile(monkeypatch: pytest.MonkeyPatch) -> None:
    """Force atomic_write's named-temporary-file path (filesystems without O_TMPFILE)."""
    real = os.open

    def open_(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & getattr(os, "O_TMPFILE", 0) == getattr(os, "O_TMPFILE", -1):
            raise OSError(errno.EOPNOTSUPP, "not supported")
        return real(path, flags, *args, **kwargs)

    monkeypatch.setattr(_files.os, "open", open_)


@pytest.mark.parametrize("tmpfile", [True, False], ids=["O_TMPFILE", "named-temporary"])
def test_saving_into_a_missing_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         tmpfile: bool) -> None:
    if not tmpfile:
        _no_tmpfile(monkeypatch)
    path = tmp_path / "nodir" / "x.npz"
    for call in (lambda: _model().save(path), lambda: _model().save_weights(path)):
        with pytest.raises(FileNotFoundError) as e:
            call()
        msg = str(e.value)
        assert repr(str(path)) in msg and "does not exist" in msg and "makedirs" in msg, msg
        assert ".tmp" not in msg and e.value.__cause__ is None and e.value.__suppress_context__
    assert list(tmp_path.iterdir()) == []
    os.makedirs(path.parent, exist_ok=True)  # the fix the message names
    _model().save(path)


@pytest.mark.parametrize("tmpfile", [True, False], ids=["O_TMPFILE", "named-temporary"])
@pytest.mark.parametrize("name", ["m.npz", "m.safetensors"])
def test_a_full_disk_names_the_path_and_keeps_the_old_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tmpfile: bool, name: str) -> None:
    if name.endswith(".safetensors"):
        pytest.importorskip("safetensors")
    if not tmpfile:
        _no_tmpfile(monkeypatch)
    path = tmp_path / name
    model = _model()
    model.save(path)
    before = path.read_bytes()
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, f: Any) -> None:
            self.f = f

        def write(self, data: Any) -> int:
            self.f.write(bytes(data)[:10])
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, k: str) -> Any:
            return getattr(self.f, k)

        def __enter__(self) -> Full:
            return self

        def __exit__(self, *exc: Any) -> None:
            self.f.close()

    monkeypatch.setattr(_files.os, "fdopen", lambda *a, **k: Full(real_fdopen(*a, **k)))
    with pytest.raises(OSError) as e:
        model.save(path)
    monkeypatch.undo()
    msg = str(e.value)
    assert e.value.errno == errno.ENOSPC and repr(str(path)) in msg and "disk is full" in msg
    assert ".tmp" not in msg
    assert path.read_bytes() == before and os.listdir(tmp_path) == [name]


def test_a_read_only_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_tmpfile(monkeypatch)

    def denied(*args: Any, **kwargs: Any) -> Any:
        raise PermissionError(errno.EACCES, "Permission denied",
                              str(tmp_path / ".m.npz.abc.tmp"))

    monkeypatch.setattr(_files.tempfile, "mkstemp", denied)
    with pytest.raises(PermissionError, match=r"can't write '.*m\.npz': no permission to "
                                              r"write in") as e:
        _model().save(tmp_path / "m.npz")
    assert ".tmp" not in str(e.value) and list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root writes into read-only directories")
def test_a_really_read_only_directory(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(PermissionError, match=r"m\.npz': no permission"):
            _model().save(ro / "m.npz")
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o700)


# ----------------------------------------------------------------------------------------------
# 6. whole models as .safetensors
# ----------------------------------------------------------------------------------------------
def _bn_model(seed: int = 0) -> fc.Sequential:
    m = fc.Sequential([L.Conv2D(4, 3), L.BatchNormalization(), L.MaxPool2D(2), L.Flatten(),
                       L.Dense(2, activation="softmax")], input_shape=(3, 16, 16), seed=seed)
    m.compile(fc.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", ["accuracy"])
    return m


def test_a_safetensors_model_round_trips_bitwise(tmp_path: Path) -> None:
    st = pytest.importorskip("safetensors.numpy")
    m = _bn_model()
    m.fit(X_NCHW, Y, batch_size=4, epochs=2, verbose=0)
    m.metadata = {"classes": ["a", "b"]}
    path, weights = tmp_path / "m.safetensors", tmp_path / "w.safetensors"
    m.save(path)
    m.save_weights(weights)
    assert path.read_bytes()[8:9] == b"{"  # a safetensors header, not an .npz
    back = fc.load_model(path)
    assert type(back) is type(m) and back.get_config() == m.get_config()
    assert back.metadata == m.metadata and back.optimizer.iterations == m.optimizer.iterations
    assert back.predict(X_NCHW).tobytes() == m.predict(X_NCHW).tobytes()
    assert [x.name for x in back.metrics] == [x.name for x in m.metrics]
    m.fit(X_NCHW, Y, batch_size=4, verbose=0, shuffle=False)  # the optimizer state came too
    back.fit(X_NCHW, Y, batch_size=4, verbose=0, shuffle=False)
    assert back.predict(X_NCHW).tobytes() == m.predict(X_NCHW).tobytes()
    # the weights carry save_weights' state_dict names; load_weights reads a model file
    stored = st.load_file(str(path))
    for key, arr in st.load_file(str(weights)).items():
        assert np.array_equal(stored[key], arr)
    other, again = _bn_model(seed=3), fc.load_model(path)
    other.load_weights(path)
    assert _weights_equal(other, again)
    with pytest.raises(ValueError, match=r"holds only weights.*load_weights"):
        fc.load_model(weights)


def test_a_safetensors_model_without_optimizer_and_uncompiled(tmp_path: Path) -> None:
    pytest.importorskip("safetensors")
    m = _bn_model()
    m.save(tmp_path / "a.safetensors", include_optimizer=False)
    back = fc.load_model(tmp_path / "a.safetensors")
    assert back.optimizer.iterations == 0
    bare = fc.Sequential([L.Dense(3)], input_shape=(5,), seed=0)
    bare.save(tmp_path / "b.safetensors")
    again = fc.load_model(tmp_path / "b.safetensors")
    assert again.optimizer is None and _weights_equal(bare, again)


def test_pytorch_reads_the_weights_of_a_safetensors_model(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    st_torch = pytest.importorskip("safetensors.torch")
    m = _bn_model()
    m.save(tmp_path / "m.safetensors")
    module = m.to_torch()
    tensors = st_torch.load_file(str(tmp_path / "m.safetensors"))
    result = module.load_state_dict(tensors, strict=False)
    assert not result.missing_keys
    assert all(k.startswith("optimizer/") for k in result.unexpected_keys)
    module.eval()
    with torch.no_grad():
        out = module(torch.from_numpy(X_NCHW))  # ends with the softmax, as the model
    np.testing.assert_allclose(out.numpy(), m.predict(X_NCHW), atol=1e-5)


def _graph(seed: int) -> fc.Model:
    inp = fc.Input((3, 16, 16))
    a = L.Conv2D(4, 3, padding="same")(inp)
    b = L.Conv2D(4, 1)(inp)
    out = L.Dense(2, activation="softmax")(L.Flatten()(L.Add()([a, b])))
    g = fc.Model(inp, out, seed=seed)
    g.compile("adam", "sparse_categorical_crossentropy")
    return g


def test_a_graph_model_as_safetensors(tmp_path: Path) -> None:
    pytest.importorskip("safetensors")
    from fastcnn import saving

    g = _graph(0)
    g.fit(X_NCHW, Y, verbose=0)
    g.save(tmp_path / "g.safetensors")  # no torch.nn.Sequential twin: fastcnn's own names
    back = fc.load_model(tmp_path / "g.safetensors")
    assert type(back) is type(g)
    assert back.predict(X_NCHW).tobytes() == g.predict(X_NCHW).tobytes()
    other = _graph(5)
    assert not _weights_equal(other, g)
    saving.load_weights(other, tmp_path / "g.safetensors")
    assert _weights_equal(other, g)
