"""The `fastcnn` command: info, train (digits and an image folder), predict, and clean errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import fastcnn as fc
from fastcnn.cli import main


def test_info_prints_the_build(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for key in ("version", "cpu_isa", "num_threads", "cuda_built", "cuda_available"):
        assert f"{key}:" in out


def test_train_digits_then_predict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model_path = tmp_path / "digits.npz"
    assert main(["train", "--epochs", "2", "--quiet", "--out", str(model_path)]) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out and model_path.exists()
    acc = float(out.split("test accuracy")[1].split()[0])
    assert acc > 0.5  # two epochs already learn most digits
    model = fc.load_model(model_path)
    assert model.metadata["class_names"] == [str(i) for i in range(10)]

    # an 8x8 grayscale image drawn from the test set: predict must name a class
    (_, _), (x_test, _) = fc.datasets.load_digits()
    img = tmp_path / "digit.png"
    Image.fromarray((x_test[0, 0] * 255).astype(np.uint8), mode="L").save(img)
    assert main(["predict", str(model_path), str(img), "--top", "2"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(str(img)) and line.count("(") == 2


def _folder(root: Path, n: int = 6) -> Path:
    rng = np.random.default_rng(0)
    for k, name in enumerate(("circle", "square")):
        d = root / name
        d.mkdir(parents=True)
        for i in range(n):
            a = np.full((12, 12, 3), 40 + 150 * k, np.uint8) + rng.integers(0, 20, (12, 12, 3),
                                                                             dtype=np.uint8)
            Image.fromarray(a).save(d / f"{i}.png")
    (root / "square" / "broken.png").write_bytes(b"not an image")
    return root


def test_train_image_folder_with_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    root = _folder(tmp_path / "imgs")
    png = tmp_path / "curves.png"
    with pytest.warns(fc.data.DataWarning, match="broken.png"):
        rc = main(["train", "--data", str(root), "--target-size", "12", "12", "--epochs", "2",
                   "--batch-size", "4", "--validation-split", "0.25", "--augment", "--quiet",
                   "--plot", str(png)])
    assert rc == 0
    assert png.exists() and png.stat().st_size > 0
    assert "validation accuracy" in capsys.readouterr().out


@pytest.mark.parametrize("argv, words", [
    (["train", "--data", "/no/such/folder"], "/no/such/folder"),
    (["train", "--epochs", "0"], "--epochs"),
    (["predict", "/no/such/model.npz", "x.png"], "model.npz"),
])
def test_errors_are_one_line_and_exit_2(argv: list[str], words: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fastcnn: error:") and words in err and "\n" not in err


def test_console_script_runs_without_traceback() -> None:
    r = subprocess.run([sys.executable, "-m", "fastcnn.cli", "train", "--data", "/no/such"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "fastcnn: error:" in r.stderr
