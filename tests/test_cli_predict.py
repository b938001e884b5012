"""`fastcnn predict MODEL PATH...`: folders searched recursively in sorted order, batched forward
passes, the eval transform's resize, --csv FILE / --csv -, --top columns, unreadable images."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import fastcnn as fc
from fastcnn import trainer
from fastcnn.cli import main
from fastcnn.cli_predict import image_paths

_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(
    [str(Path(fc.__file__).parent.parent), os.environ.get("PYTHONPATH", "")])}
_CLASSES = ["cat", "dog", "owl"]


def _img(path: Path, size: int, value: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = np.clip(value + rng.integers(-30, 30, (size, size, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small RGB 8x8 model for 3 classes, saved with the metadata `train --data` writes."""
    m = fc.models.seeds_cnn((3, 8, 8), 3, seed=1)
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    m.metadata = {"class_names": _CLASSES, "color_mode": "rgb", "target_size": [8, 8],
                  "rescale": 1 / 255}
    path = tmp_path_factory.mktemp("model") / "m.npz"
    m.save(path)
    return path


@pytest.fixture()
def images(tmp_path: Path) -> Path:
    """root/a/*.png, root/a/deep/*.JPG, root/b/*.png (12x12: not the model's 8x8), plus a
    hidden file, a hidden folder and a text file that must be ignored."""
    root = tmp_path / "imgs"
    for i in range(4):
        _img(root / "a" / f"{i}.png", 12, 40 + 40 * i, i)
        _img(root / "b" / f"{i}.png", 12, 200 - 30 * i, 10 + i)
    _img(root / "a" / "deep" / "x.JPG", 12, 90, 20)
    _img(root / "a" / ".hidden.png", 12, 90, 21)
    _img(root / ".cache" / "y.png", 12, 90, 22)
    (root / "b" / "notes.txt").write_text("not an image")
    return root


def _rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_folders_are_searched_recursively_in_sorted_order(images: Path) -> None:
    found = image_paths([str(images)])
    rel = [os.path.relpath(p, images) for p in found]
    assert rel == ["a/0.png", "a/1.png", "a/2.png", "a/3.png", "a/deep/x.JPG",
                   "b/0.png", "b/1.png", "b/2.png", "b/3.png"]
    # files as given, in the order given; a file named twice is listed once
    one = str(images / "b" / "1.png")
    assert image_paths([one, str(images / "b")])[:2] == [one, str(images / "b" / "0.png")]
    assert len(image_paths([one, str(images / "b")])) == 4


def test_csv_rows_match_the_eval_pipeline(model_file: Path, images: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "pred.csv"
    assert main(["predict", str(model_file), str(images), "--csv", str(out), "--top", "2"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote the predictions of 9 image(s) to {out}"
    rows = _rows(out.read_text())
    assert rows[0] == ["path", "class", "probability", "class_2", "probability_2"]
    assert [r[0] for r in rows[1:]] == image_paths([str(images)])
    # the probabilities are those of the training pipeline's eval transform (ImageFolder,
    # resized 12x12 -> 8x8, rescaled), to the 6 printed decimals
    model = fc.load_model(model_file)
    ds = fc.data.ImageFolder(images, target_size=(8, 8), class_mode=None, shuffle=False,
                             rescale=1 / 255, batch_size=64)
    probs = dict(zip(ds.filepaths, model.predict(ds), strict=True))
    for path, c1, p1, c2, p2 in rows[1:]:
        p = probs[path]
        best = np.argsort(-p, kind="stable")[:2]
        assert [c1, c2] == [_CLASSES[i] for i in best]
        np.testing.assert_allclose([float(p1), float(p2)], p[best], atol=1e-6)
        assert float(p1) >= float(p2)


def test_csv_to_stdout_and_top_k(model_file: Path, images: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", str(model_file), str(images / "b"), "--csv", "-", "--top", "5"]) == 0
    rows = _rows(capsys.readouterr().out)  # nothing but the CSV on stdout
    assert rows[0] == ["path", "class", "probability", "class_2", "probability_2",
                       "class_3", "probability_3"]  # --top is capped at the 3 classes
    assert len(rows) == 5 and all(len(r) == 7 for r in rows)
    for r in rows[1:]:
        assert sorted(r[1:7:2]) == sorted(_CLASSES)
        assert abs(sum(float(v) for v in r[2:7:2]) - 1) < 1e-5


def test_one_forward_pass_per_batch(model_file: Path, images: Path, monkeypatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    sizes: list[int] = []
    real = trainer.predict

    def counting(model, x, *args, **kwargs):
        sizes.append(len(x))
        return real(model, x, *args, **kwargs)

    monkeypatch.setattr(trainer, "predict", counting)
    assert main(["predict", str(model_file), str(images), "--batch-size", "4"]) == 0
    assert sizes == [4, 4, 1]
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 9 and all(ln.split(": ")[1].split(" (")[0] in _CLASSES for ln in lines)


def test_unreadable_images_are_skipped_with_a_warning(model_file: Path, images: Path,
                                                      tmp_path: Path, capsys) -> None:
    bad = images / "a" / "broken.png"
    bad.write_bytes(b"not an image")
    out = tmp_path / "p.csv"
    with pytest.warns(fc.data.DataWarning, match="broken.png: cannot read the image"):
        rc = main(["predict", str(model_file), str(images), "--csv", str(out)])
    assert rc == 0  # the readable images are still classified
    rows = _rows(out.read_text())
    assert len(rows) == 10 and str(bad) not in [r[0] for r in rows]
    assert "1 of 10 image(s) could not be read" in capsys.readouterr().err


def test_nothing_readable_is_an_error_and_writes_no_file(model_file: Path, tmp_path: Path,
                                                         capsys) -> None:
    for name in ("x.png", "y.jpg"):
        (tmp_path / name).write_bytes(b"garbage")
    out = tmp_path / "p.csv"
    with pytest.warns(fc.data.DataWarning):
        rc = main(["predict", str(model_file), str(tmp_path / "x.png"), str(tmp_path / "y.jpg"),
                   "--csv", str(out)])
    assert rc == 2 and not out.exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".fastcnn")]  # no temp left
    err = capsys.readouterr().err
    assert "fastcnn: error: none of the 2 image file(s) could be read" in err


@pytest.mark.parametrize("make_args, words", [
    (lambda m, d, t: [m, str(d), "/no/such.png"], "no such file or folder: /no/such.png"),
    (lambda m, d, t: [m, str(t)], "no image files in"),
    (lambda m, d, t: [m, str(d), "--csv", str(t / "missing" / "p.csv")], "--csv"),
    (lambda m, d, t: [m, str(d), "--batch-size", "0"], "--batch-size must be >= 1"),
])
def test_bad_paths_fail_up_front(model_file: Path, images: Path, tmp_path: Path, make_args,
                                 words: str, capsys) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["predict", *make_args(str(model_file), images, empty)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("fastcnn: error:") and words in err[-1]


def test_predict_in_a_pipe_prints_warnings_as_one_line(model_file: Path, images: Path) -> None:
    (images / "b" / "broken.png").write_bytes(b"not an image")
    r = subprocess.run([sys.executable, "-m", "fastcnn", "predict", str(model_file), str(images),
                        "--csv", "-"], capture_output=True, text=True, timeout=120, env=_ENV)
    assert r.returncode == 0, r.stderr
    assert len(_rows(r.stdout)) == 10 and r.stdout.startswith("path,class,probability\n")
    err = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert err[0].startswith("warning: ") and "broken.png" in err[0] and len(err) == 2


def test_an_empty_folder_among_others_is_a_warning(model_file: Path, images: Path,
                                                   tmp_path: Path, capsys) -> None:
    empty = tmp_path / "nothing"
    empty.mkdir()
    with pytest.warns(fc.data.DataWarning, match="nothing: the folder holds no image files"):
        assert main(["predict", str(model_file), str(empty), str(images / "a")]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 5


def test_a_model_saved_without_rescale_reads_raw_pixels(images: Path, tmp_path: Path,
                                                        capsys) -> None:
    m = fc.models.seeds_cnn((1, 12, 12), 2, seed=3)
    m.metadata = {"class_names": ["x", "y"], "color_mode": "grayscale", "rescale": None}
    path = tmp_path / "raw.npz"
    m.save(path)
    one = images / "b" / "0.png"
    assert main(["predict", str(path), str(one), "--csv", "-"]) == 0
    row = _rows(capsys.readouterr().out)[1]
    x = fc.data.load_image(one, color_mode="grayscale")[None]  # 0..255, not rescaled
    p = m.predict(x)[0]
    assert row[1] == ["x", "y"][int(np.argmax(p))]
    assert float(row[2]) == pytest.approx(float(p.max()), abs=1e-6)
