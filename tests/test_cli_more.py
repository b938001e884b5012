"""The `fastcnn` command: --version, `python -m fastcnn`, one line per epoch when piped,
one-line warnings, the summary after Ctrl-C, --top and one-class folders."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import fastcnn as fc
from fastcnn import training
from fastcnn.cli import main

_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(
    [str(Path(fc.__file__).parent.parent), os.environ.get("PYTHONPATH", "")])}


def _run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fastcnn", *args], capture_output=True,
                          text=True, timeout=timeout, env=_ENV)


def _folder(root: Path, classes: tuple[str, ...], n: int = 4, broken: bool = False) -> Path:
    rng = np.random.default_rng(0)
    for k, name in enumerate(classes):
        d = root / name
        d.mkdir(parents=True)
        for i in range(n):
            a = (np.full((8, 8, 3), 40 + 150 * k, np.uint8)
                 + rng.integers(0, 20, (8, 8, 3), dtype=np.uint8))
            Image.fromarray(a).save(d / f"{i}.png")
    if broken:
        (root / classes[-1] / "broken.png").write_bytes(b"not an image")
    return root


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"fastcnn {fc.__version__}"
    r = _run("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"fastcnn {fc.__version__}"


def test_python_m_fastcnn_trains_with_one_line_per_epoch_when_piped() -> None:
    r = _run("train", "--epochs", "2", "--batch-size", "128")
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stdout and "\r" not in r.stderr  # no progress-bar redraws
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("Epoch ")]
    assert [ln.split(" - ")[0] for ln in lines] == ["Epoch 1/2", "Epoch 2/2"]
    assert "val_accuracy:" in lines[0] and "trained 2 epochs" in r.stdout


def test_warnings_are_one_line_and_restored(tmp_path: Path) -> None:
    root = _folder(tmp_path / "imgs", ("a", "b"), broken=True)
    r = _run("train", "--data", str(root), "--target-size", "8", "8", "--epochs", "1",
             "--batch-size", "4", "--validation-split", "0", "--quiet")
    assert r.returncode == 0, r.stderr
    warns = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert warns and all(ln.startswith("warning: ") for ln in warns), r.stderr
    assert any("broken.png" in ln for ln in warns)
    assert ".py:" not in r.stderr and "for item in" not in r.stderr  # no source lines

    before = warnings.formatwarning
    with pytest.warns(fc.data.DataWarning, match="broken.png"):  # still catchable in-process
        assert main(["train", "--data", str(root), "--target-size", "8", "8", "--epochs", "1",
                     "--batch-size", "4", "--validation-split", "0", "--quiet"]) == 0
    assert warnings.formatwarning is before


def test_summary_after_ctrl_c_counts_the_epochs_trained(monkeypatch, capsys) -> None:
    (x, _), _ = fc.datasets.load_digits()
    steps = math.ceil(math.ceil(len(x) * 0.9) / 256)
    calls = {"n": 0}
    real = training.train_step

    def step_then_ctrl_c(model, xb, yb):
        calls["n"] += 1
        if calls["n"] == 2 * steps + 1:  # the first batch of the third epoch
            signal.raise_signal(signal.SIGINT)
        return real(model, xb, yb)

    monkeypatch.setattr(training, "train_step", step_then_ctrl_c)
    rc = main(["train", "--epochs", "20", "--batch-size", "256"])
    out = capsys.readouterr().out
    assert rc == 130
    assert "returning the history of 2 completed epoch(s)" in out
    assert "interrupted: trained 2 of 20 epochs" in out and "trained 20 epochs" not in out
    assert "test accuracy" in out  # the model trained so far is still evaluated


def test_top_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", "no-model.npz", "x.png", "--top", "0"]) == 2
    err = capsys.readouterr().err
    assert "--top must be >= 1" in err and "got 0" in err


def test_one_class_folder_is_an_error(tmp_path: Path, capsys) -> None:
    root = _folder(tmp_path / "only", ("cats",))
    assert main(["train", "--data", str(root), "--target-size", "8", "8", "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fastcnn: error:") and str(root) in err and "'cats'" in err
    assert "at least two" in err and "\n" not in err
