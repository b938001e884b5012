"""`fastcnn predict MODEL x.npy / x.npz`: arrays of images (NCHW, or NHWC with --data-format
channels_last) predicted in batches, rows named PATH[i], .npz member choice, pickles refused,
wrong layouts reported with the model's channels-last hint, arrays mixed with image folders."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import fastcnn as fc
from fastcnn import trainer
from fastcnn.cli import main

_CLASSES = ["cat", "dog", "owl"]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small RGB 8x8 model for 3 classes, saved with the metadata `train --data` writes."""
    m = fc.models.seeds_cnn((3, 8, 8), 3, seed=1)
    m.metadata = {"class_names": _CLASSES, "color_mode": "rgb", "target_size": [8, 8],
                  "rescale": 1 / 255}
    path = tmp_path_factory.mktemp("model") / "m.npz"
    m.save(path)
    return path


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    """7 NCHW float32 images (distinct enough that the predictions differ row to row)."""
    rng = np.random.default_rng(0)
    return (rng.random((7, 3, 8, 8)) * rng.random((7, 1, 1, 1)) * 4).astype(np.float32)


def _rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def _probs(rows: list[list[str]]) -> dict[str, tuple[str, float]]:
    return {r[0]: (r[1], float(r[2])) for r in rows[1:]}


def _expected(model_file: Path, x: np.ndarray, name: str) -> dict[str, tuple[str, float]]:
    p = fc.load_model(model_file).predict(x)
    return {f"{name}[{i}]": (_CLASSES[int(np.argmax(q))], float(q.max()))
            for i, q in enumerate(p)}


def _assert_same(got: dict[str, tuple[str, float]], want: dict[str, tuple[str, float]]) -> None:
    assert list(got) == list(want)  # the rows' names, in order
    for k, (c, p) in want.items():
        assert got[k][0] == c and got[k][1] == pytest.approx(p, abs=1e-6), k


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("fastcnn: error:")
    return err[-1]


def test_npy_channels_first_rows_named_path_index(model_file: Path, x: np.ndarray,
                                                  tmp_path: Path, capsys) -> None:
    f = tmp_path / "batch.npy"
    np.save(f, x)
    assert main(["predict", str(model_file), str(f), "--csv", "-"]) == 0
    rows = _rows(capsys.readouterr().out)
    assert rows[0] == ["path", "class", "probability"]
    assert [r[0] for r in rows[1:]] == [f"{f}[{i}]" for i in range(7)]
    _assert_same(_probs(rows), _expected(model_file, x, str(f)))


def test_npy_channels_last_with_the_flag_matches_the_transposed_array(
        model_file: Path, x: np.ndarray, tmp_path: Path, capsys) -> None:
    f = tmp_path / "nhwc.npy"
    np.save(f, x.transpose(0, 2, 3, 1))
    assert main(["predict", str(model_file), str(f), "--data-format", "channels_last",
                 "--csv", "-", "--batch-size", "3"]) == 0
    _assert_same(_probs(_rows(capsys.readouterr().out)), _expected(model_file, x, str(f)))


def test_npy_channels_last_without_the_flag_names_the_fix(model_file: Path, x: np.ndarray,
                                                          tmp_path: Path, capsys) -> None:
    f = tmp_path / "nhwc.npy"
    np.save(f, x.transpose(0, 2, 3, 1))
    out = tmp_path / "p.csv"
    assert main(["predict", str(model_file), str(f), "--csv", str(out)]) == 2
    err = _error(capsys)
    assert f"{f} (an array of shape (7, 8, 8, 3)" in err
    assert "look channels-last" in err and "--data-format channels_last" in err
    assert not out.exists()


def test_channels_first_array_with_the_flag_says_drop_it(model_file: Path, x: np.ndarray,
                                                         tmp_path: Path, capsys) -> None:
    f = tmp_path / "nchw.npy"
    np.save(f, x)
    assert main(["predict", str(model_file), str(f), "--data-format", "channels_last"]) == 2
    err = _error(capsys)
    assert str(f) in err and "drop --data-format channels_last" in err
    assert capsys.readouterr().out == ""  # checked before anything is printed


def test_every_array_is_checked_before_any_output(model_file: Path, x: np.ndarray,
                                                  tmp_path: Path, capsys) -> None:
    good, bad = tmp_path / "good.npy", tmp_path / "small.npy"
    np.save(good, x)
    np.save(bad, x[:, :, :6, :6])
    assert main(["predict", str(model_file), str(good), str(bad)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"{bad} (an array of shape (7, 3, 6, 6)" in captured.err
    assert "(N, 3, 8, 8)" in captured.err  # the model's own message


@pytest.mark.parametrize("shape, words", [
    ((3, 8, 8), "for one image save x[None]"),
    ((7, 192), "predict takes a batch of images (N, C, H, W)"),
])
def test_an_array_that_is_not_a_batch_of_images(model_file: Path, tmp_path: Path, capsys,
                                                shape: tuple[int, ...], words: str) -> None:
    f = tmp_path / "a.npy"
    np.save(f, np.zeros(shape, np.float32))
    assert main(["predict", str(model_file), str(f)]) == 2
    err = _error(capsys)
    assert f"{f}: an array of shape {shape}" in err and words in err


def test_npz_uses_x_or_its_only_array(model_file: Path, x: np.ndarray, tmp_path: Path,
                                      capsys) -> None:
    with_x = tmp_path / "with_x.npz"
    np.savez(with_x, y=np.arange(7), x=x, extra=x[:2] * 0)
    one = tmp_path / "one.npz"
    np.savez_compressed(one, images=x[::-1])
    assert main(["predict", str(model_file), str(with_x), str(one), "--csv", "-"]) == 0
    got = _probs(_rows(capsys.readouterr().out))
    want = {**_expected(model_file, x, str(with_x)), **_expected(model_file, x[::-1], str(one))}
    _assert_same(got, want)


def test_npz_with_several_arrays_and_no_x_lists_them(model_file: Path, x: np.ndarray,
                                                     tmp_path: Path, capsys) -> None:
    f = tmp_path / "several.npz"
    np.savez(f, train=x, test=x[:2])
    assert main(["predict", str(model_file), str(f)]) == 2
    err = _error(capsys)
    assert str(f) in err and "named 'x'" in err and "2 array(s): train, test" in err


class _Trap:
    """Unpickling this writes ``path``: the test checks that nothing is unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


@pytest.mark.parametrize("kind", ["npy", "npz", "pickle"])
def test_pickled_data_is_refused_and_never_unpickled(model_file: Path, tmp_path: Path, capsys,
                                                     kind: str) -> None:
    marker = tmp_path / "unpickled"
    objs = np.array([_Trap(marker)], dtype=object)
    if kind == "npy":
        f = tmp_path / "obj.npy"
        np.save(f, objs, allow_pickle=True)
    elif kind == "npz":
        f = tmp_path / "obj.npz"
        np.savez(f, x=objs)
    else:  # a plain pickle that only has the name
        import pickle

        f = tmp_path / "p.npy"
        f.write_bytes(pickle.dumps(objs))
    assert main(["predict", str(model_file), str(f)]) == 2
    err = _error(capsys)
    assert f"{f}: holds" in err and "pickled Python objects" in err and "allow_pickle=False" in err
    assert not marker.exists()


@pytest.mark.parametrize("name, content, words", [
    ("bad.npy", b"just text", "not a NumPy .npy / .npz file"),
    ("bad.npy", None, "dtype <U1"),
    ("cut.npy", "npy", "not a readable .npy file"),
    ("cut.npz", "npz", "not a readable .npy / .npz file"),
])
def test_not_an_array_of_numbers(model_file: Path, x: np.ndarray, tmp_path: Path, capsys,
                                 name: str, content: bytes | str | None, words: str) -> None:
    f = tmp_path / name
    if content is None:
        np.save(f, np.full((2, 3, 8, 8), "a"))
    elif isinstance(content, str):  # a file cut short
        np.savez(f, x=x) if content == "npz" else np.save(f, x)
        f.write_bytes(f.read_bytes()[:300])
    else:
        f.write_bytes(content)
    assert main(["predict", str(model_file), str(f)]) == 2
    err = _error(capsys)
    assert str(f) in err and words in err


def _img(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path)


def test_mixed_with_an_image_folder_in_the_order_given(model_file: Path, x: np.ndarray,
                                                       tmp_path: Path, capsys) -> None:
    folder = tmp_path / "imgs"
    for i in range(3):
        _img(folder / f"{i}.png", 60 * i)
    lone = tmp_path / "lone.png"
    _img(lone, 200)
    f = tmp_path / "nhwc.npy"
    np.save(f, x[:2].transpose(0, 2, 3, 1))
    assert main(["predict", str(model_file), str(folder), str(f), str(lone),
                 "--data-format", "channels_last", "--csv", "-", "--top", "2"]) == 0
    rows = _rows(capsys.readouterr().out)
    assert rows[0] == ["path", "class", "probability", "class_2", "probability_2"]
    assert [r[0] for r in rows[1:]] == [str(folder / f"{i}.png") for i in range(3)] + \
        [f"{f}[0]", f"{f}[1]", str(lone)]
    model = fc.load_model(model_file)
    # the images are decoded channels-first (the flag is for arrays) and rescaled; arrays not
    imgs = np.stack([fc.data.load_image(folder / f"{i}.png") for i in range(3)]) / 255
    want = np.concatenate([model.predict(imgs.astype(np.float32)), model.predict(x[:2]),
                           model.predict(fc.data.load_image(lone)[None] / 255)])
    for r, p in zip(rows[1:], want, strict=True):
        assert r[1] == _CLASSES[int(np.argmax(p))]
        assert float(r[2]) == pytest.approx(float(p.max()), abs=1e-6)


def test_terminal_lines_batches_and_a_file_named_twice(model_file: Path, x: np.ndarray,
                                                       tmp_path: Path, monkeypatch,
                                                       capsys) -> None:
    sizes: list[int] = []
    real = trainer.predict

    def counting(model, xb, *args, **kwargs):
        sizes.append(len(xb))
        return real(model, xb, *args, **kwargs)

    monkeypatch.setattr(trainer, "predict", counting)
    f = tmp_path / "b.NPY"  # any case
    f.write_bytes(_npy_bytes(x[:5]))
    assert main(["predict", str(model_file), str(f), str(f), "--batch-size", "2"]) == 0
    assert sizes == [1, 2, 2, 1]  # the up-front check of one row, then the batches
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split(": ")[0] for ln in lines] == [f"{f}[{i}]" for i in range(5)]
    assert all(ln.split(": ")[1].split(" (")[0] in _CLASSES for ln in lines)


def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def test_an_empty_folder_next_to_an_array_is_a_warning(model_file: Path, x: np.ndarray,
                                                       tmp_path: Path, capsys) -> None:
    empty = tmp_path / "nothing"
    empty.mkdir()
    f = tmp_path / "a.npy"
    np.save(f, x[:2])
    with pytest.warns(fc.data.DataWarning, match="nothing: the folder holds no image files"):
        assert main(["predict", str(model_file), str(empty), str(f)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_an_empty_array_alone_is_an_error(model_file: Path, tmp_path: Path, capsys) -> None:
    f = tmp_path / "none.npy"
    np.save(f, np.zeros((0, 3, 8, 8), np.float32))
    with pytest.warns(fc.data.DataWarning, match="none.npy: the array holds no images"):
        assert main(["predict", str(model_file), str(f)]) == 2
    assert "no images to classify" in _error(capsys)


def test_help_names_the_flag_and_its_scope(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--data-format {channels_first,channels_last}" in text
    assert "images read from files are always decoded to the model's layout" in text
