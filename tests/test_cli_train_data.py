"""`fastcnn train --data`: the default network has a global pooling head (its size does not grow
with --target-size), --model still chooses, the summary names the model and its parameter
count; `--out FILE --no-optimizer` saves without the optimizer state."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

import fastcnn as fc
from fastcnn.cli import DATA_MODEL, main
from fastcnn.models import build


def _folder(root: Path, size: int = 16, n: int = 6) -> Path:
    rng = np.random.default_rng(0)
    for k, name in enumerate(("dark", "light")):
        d = root / name
        d.mkdir(parents=True)
        for i in range(n):
            a = (np.full((size, size, 3), 40 + 150 * k, np.uint8)
                 + rng.integers(0, 20, (size, size, 3), dtype=np.uint8))
            Image.fromarray(a).save(d / f"{i}.png")
    return root


def test_the_default_data_model_does_not_grow_with_the_image_size() -> None:
    counts = {s: build(DATA_MODEL, (3, s, s), 2).count_params() for s in (16, 64, 224)}
    assert len(set(counts.values())) == 1 and counts[64] < 300_000, counts
    assert build("seeds_cnn", (3, 64, 64), 2).count_params() > 7_000_000  # the old default


def test_train_data_defaults_to_the_pooling_model_and_says_so(tmp_path: Path, capsys) -> None:
    root = _folder(tmp_path / "imgs")
    out = tmp_path / "m.npz"
    assert main(["train", "--data", str(root), "--target-size", "16", "16", "--epochs", "1",
                 "--batch-size", "4", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    n = build(DATA_MODEL, (3, 16, 16), 2).count_params()
    assert f"model: {DATA_MODEL}, {n:,} parameters, input 3x16x16, 2 classes" in text
    model = fc.load_model(out)
    assert model.count_params() == n and model.metadata["class_names"] == ["dark", "light"]


def test_model_still_chooses_and_digits_keep_the_seeds_cnn(tmp_path: Path, capsys) -> None:
    root = _folder(tmp_path / "imgs", size=8)
    assert main(["train", "--data", str(root), "--target-size", "8", "8", "--epochs", "1",
                 "--batch-size", "4", "--model", "seeds_cnn"]) == 0
    assert "model: seeds_cnn, " in capsys.readouterr().out
    assert main(["train", "--epochs", "1", "--batch-size", "256"]) == 0
    assert "model: seeds_cnn, 151,306 parameters, input 1x8x8, 10 classes" in \
        capsys.readouterr().out


def test_too_small_images_for_the_default_model_are_a_clear_error(tmp_path: Path,
                                                                   capsys) -> None:
    root = _folder(tmp_path / "imgs", size=4)
    assert main(["train", "--data", str(root), "--target-size", "4", "4", "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fastcnn: error: --model vgg_bn") and "at least 8 8, got 4 4" in err
    assert "--model resnet20" in err and "\n" not in err


def test_no_optimizer_saves_a_smaller_file_that_loads_and_trains_on(tmp_path: Path,
                                                                    capsys) -> None:
    root = _folder(tmp_path / "imgs")
    args = ["train", "--data", str(root), "--target-size", "16", "16", "--epochs", "1",
            "--batch-size", "4", "--quiet", "--validation-split", "0"]
    full, lean = tmp_path / "full.npz", tmp_path / "lean.npz"
    assert main([*args, "--out", str(full)]) == 0
    assert main([*args, "--out", str(lean), "--no-optimizer"]) == 0
    assert "(without the optimizer state)" in capsys.readouterr().out
    with np.load(full) as f, np.load(lean) as g:
        assert any(k.startswith("optimizer/") for k in f.files)
        assert not any(k.startswith("optimizer/") for k in g.files)
        assert {k for k in f.files if not k.startswith("optimizer/")} == set(g.files)
    assert lean.stat().st_size < full.stat().st_size

    a, b = fc.load_model(full), fc.load_model(lean)
    for p, q in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(p, q)  # the same trained weights
    assert b.optimizer is not None and not b.optimizer.get_state().get("iterations")
    ds = fc.data.ImageFolder(root, target_size=(16, 16), class_mode="sparse", batch_size=4,
                             rescale=1 / 255, seed=0)
    b.fit(ds, epochs=1, verbose=0)  # the optimizer state is created afresh, as in Keras
    state = b.optimizer.get_state()
    assert int(np.asarray(state["iterations"])) == len(ds)
    assert {k for k in state if k != "iterations"}


def test_no_optimizer_needs_out(capsys) -> None:
    assert main(["train", "--epochs", "1", "--no-optimizer"]) == 2
    assert "--no-optimizer goes with --out" in capsys.readouterr().err
