"""fastcnn.plot (history, confusion_matrix, mistakes) and `fastcnn train --report / --plot`.

The pictures are rendered for real (PNG through the Agg canvas) and read back: the files are
valid PNGs of a sensible size, and the figures hold the right numbers (cell counts, the best
epoch, the titles of the mistakes). Without matplotlib every function raises ImportError naming
the extra, and the command fails before it trains.
"""

from __future__ import annotations

import builtins
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fastcnn import plot
from fastcnn.cli import _held_out, main


@pytest.fixture
def mpl() -> Any:
    return pytest.importorskip("matplotlib")


def _png(path: Path, min_side: int = 200) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG"
        w, h = im.size
    assert min_side <= w <= 4000 and min_side <= h <= 4000, (w, h)
    return w, h


HIST = {"loss": [1.2, 0.8, 0.6, 0.5, 0.45, 0.44], "accuracy": [0.5, 0.7, 0.8, 0.85, 0.87, 0.9],
        "val_loss": [1.0, 0.7, 0.6, 0.62, 0.65, 0.7],
        "val_accuracy": [0.6, 0.75, 0.8, 0.82, 0.81, 0.8]}


def _best_marker(ax: Any) -> tuple[float, float]:
    (line,) = [ln for ln in ax.get_lines() if (ln.get_gid() or "").startswith("best:")]
    return float(line.get_xdata()[0]), float(line.get_ydata()[0])


# ------------------------------------------------------------------------------------------
# without matplotlib


def test_import_fastcnn_does_not_import_matplotlib() -> None:
    code = ("import sys, fastcnn, fastcnn.plot, fastcnn.cli; "
            "assert 'matplotlib' not in sys.modules, 'matplotlib imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert r.returncode == 0, r.stderr


def _hide_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    real_import = builtins.__import__

    def fake_import(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)


def test_without_matplotlib_the_functions_name_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    _hide_matplotlib(monkeypatch)
    calls = [lambda: plot.history(HIST), lambda: plot.confusion_matrix([0, 1], [0, 1]),
             lambda: plot.mistakes(np.zeros((2, 1, 4, 4)), [0, 1], np.eye(2))]
    for call in calls:
        with pytest.raises(ImportError, match=r'pip install "fastcnn\[plot\]"'):
            call()


@pytest.mark.parametrize("option", ["--plot", "--report"])
def test_cli_without_matplotlib_fails_before_training(
        option: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    _hide_matplotlib(monkeypatch)
    target = tmp_path / ("curves.png" if option == "--plot" else "report")
    assert main(["train", "--epochs", "1", option, str(target)]) == 2
    out, err = capsys.readouterr()
    assert out == ""  # no summary, no epoch: nothing was trained
    assert err.count("\n") == 1 and err.startswith("fastcnn: error:")
    assert option in err and "fastcnn[plot]" in err


# ------------------------------------------------------------------------------------------
# up-front checks of the output paths


@pytest.mark.parametrize("argv, words", [
    (["--out", "/nonexistent/dir/m.npz"], "/nonexistent/dir/m.npz"),
    (["--out", "{file}/m.npz"], "m.npz"),
    (["--plot", "/nonexistent/dir/c.png"], "/nonexistent/dir/c.png"),
    (["--plot", "{tmp}"], "is a folder"),
    (["--report", "{file}"], "is a file"),
    (["--report", "{file}/sub"], "cannot create"),
])
def test_cli_unwritable_outputs_fail_before_training(
        argv: list[str], words: str, tmp_path: Path, mpl: Any,
        capsys: pytest.CaptureFixture[str]) -> None:
    afile = tmp_path / "a_file.txt"
    afile.write_text("x")
    argv = [a.format(file=afile, tmp=tmp_path) for a in argv]
    assert main(["train", "--epochs", "1", *argv]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("fastcnn: error:") and words in err
    assert argv[1] in err  # the user's path, as given


def test_cli_report_with_data_needs_a_validation_split(
        tmp_path: Path, mpl: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--data", str(tmp_path), "--validation-split", "0",
                 "--report", str(tmp_path / "r")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "--validation-split > 0" in err and err.count("\n") == 1


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root writes into read-only folders")
def test_cli_read_only_report_folder(tmp_path: Path, mpl: Any,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        assert main(["train", "--epochs", "1", "--report", str(ro)]) == 2
    finally:
        ro.chmod(0o700)
    out, err = capsys.readouterr()
    assert out == "" and "cannot write into" in err and str(ro) in err


# ------------------------------------------------------------------------------------------
# the command's report


def test_cli_report_writes_the_three_pictures(tmp_path: Path, mpl: Any,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    rep = tmp_path / "new" / "report"  # created
    curves = rep / "curves.png"  # inside the folder --report creates
    assert main(["train", "--epochs", "2", "--quiet", "--report", str(rep),
                 "--plot", str(curves), "--out", str(rep / "m.npz")]) == 0
    out = capsys.readouterr().out
    for name in ("history.png", "confusion.png", "mistakes.png"):
        _png(rep / name)
    _png(curves)
    assert "saved the report to" in out and "359 held-out images" in out


def test_held_out_keeps_the_most_confident_mistakes_batch_by_batch() -> None:
    rng = np.random.default_rng(1)
    x = rng.random((40, 1, 4, 4)).astype(np.float32)
    y = rng.integers(0, 3, 40)
    probs = rng.dirichlet(np.ones(3), 40).astype(np.float32)

    class Model:  # predict() looks the rows up by their first pixel
        def predict(self, xb: np.ndarray, batch_size: int = 32) -> np.ndarray:
            idx = [int(np.flatnonzero(x[:, 0, 0, 0] == v)[0]) for v in xb[:, 0, 0, 0]]
            return probs[idx]

    batches = [(x[i:i + 7], y[i:i + 7]) for i in range(0, 40, 7)]
    yy, pp, mx, my, mp = _held_out(Model(), None, batches, keep=4)
    np.testing.assert_array_equal(yy, y)
    np.testing.assert_array_equal(pp, probs)
    wrong = np.flatnonzero(probs.argmax(1) != y)
    top = wrong[np.argsort(-probs[wrong].max(1), kind="stable")][:4]
    np.testing.assert_array_equal(mx, x[top])
    np.testing.assert_array_equal(my, y[top])
    np.testing.assert_array_equal(mp, probs[top])


# ------------------------------------------------------------------------------------------
# history


def test_history_curves_best_epochs_and_png(tmp_path: Path, mpl: Any) -> None:
    path = tmp_path / "h.png"
    fig = plot.history(HIST, path=path)
    w, h = _png(path)
    assert w > h  # one row of axes
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["loss", "accuracy"]
    loss_ax, acc_ax = axes
    assert _best_marker(loss_ax) == (3.0, 0.6)  # min of val_loss, epoch 3 (1-based)
    assert _best_marker(acc_ax) == (4.0, 0.82)  # max of val_accuracy
    for ax in axes:
        assert ax.get_xlabel() == "epoch" and ax.get_ylabel() in ("loss", "accuracy")
        gids = {ln.get_gid() for ln in ax.get_lines()}
        assert {f"curve:{ax.get_title()}", f"curve:val_{ax.get_title()}"} <= gids
    (train,) = [ln for ln in loss_ax.get_lines() if ln.get_gid() == "curve:loss"]
    np.testing.assert_array_equal(train.get_xdata(), [1, 2, 3, 4, 5, 6])
    np.testing.assert_array_equal(train.get_ydata(), HIST["loss"])


def test_history_object_training_only_learning_rate_and_nan(mpl: Any) -> None:
    from fastcnn.callbacks import History

    hist = History()
    for e, (loss, mae, lr) in enumerate([(2.0, 0.9, 1e-2), (float("nan"), 0.5, 1e-3),
                                         (1.0, 0.7, 1e-4)], start=4):
        hist.on_epoch_end(e, {"loss": loss, "mae": mae, "learning_rate": lr})
    hist.interrupted = True
    fig = plot.history(hist)
    axes = {ax.get_title(): ax for ax in fig.axes if ax.get_visible()}
    assert list(axes) == ["loss", "mae", "learning rate"]
    assert _best_marker(axes["loss"]) == (7.0, 1.0)  # NaN skipped; epochs from History.epoch
    assert _best_marker(axes["mae"]) == (6.0, 0.5)  # loss-like: min, the training curve
    assert not [ln for ln in axes["learning rate"].get_lines() if ln.get_gid() and
                ln.get_gid().startswith("best:")]
    assert axes["learning rate"].get_yscale() == "log"
    assert "interrupted" in fig.get_suptitle()


def test_history_bad_input(mpl: Any) -> None:
    with pytest.raises(ValueError, match="history is empty"):
        plot.history({})
    with pytest.raises(ValueError, match=r"history.*lengths"):
        plot.history({"loss": [1, 2, 3], "val_loss": [1, 2]})
    with pytest.raises(ValueError, match=r"history\['loss'\]"):
        plot.history({"loss": [[1, 2], [3, 4]]})
    with pytest.raises(ValueError, match=r"history\['loss'\]"):
        plot.history({"loss": ["a", "b"]})
    with pytest.raises(TypeError, match="history must be a History"):
        plot.history([1.0, 2.0])


# ------------------------------------------------------------------------------------------
# confusion matrix


def _cell_texts(fig: Any) -> np.ndarray:
    ax = fig.axes[0]
    k = ax.images[0].get_array().shape[0]
    cells = np.empty((k, k), dtype=object)
    for t in ax.texts:
        j, i = t.get_position()
        cells[int(i), int(j)] = t.get_text()
    return cells


def test_confusion_matrix_counts_in_cells_and_png(tmp_path: Path, mpl: Any) -> None:
    y = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 1])
    p = np.array([0, 1, 0, 1, 1, 2, 0, 2, 2, 2])
    expect = np.array([[2, 1, 0], [0, 2, 1], [1, 0, 3]])
    path = tmp_path / "c.png"
    fig = plot.confusion_matrix(y, p, class_names=["cat", "dog", "emu"], path=path)
    _png(path)
    ax = fig.axes[0]
    np.testing.assert_array_equal(np.asarray(ax.images[0].get_array()), expect)
    assert (_cell_texts(fig) == expect.astype(str)).all()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["cat", "dog", "emu"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["cat", "dog", "emu"]
    assert ax.get_xlabel() == "predicted class" and ax.get_ylabel() == "true class"
    assert "accuracy 0.7000 (7 of 10)" in ax.get_title()
    # probabilities and one-hot labels give the same matrix
    probs = np.eye(3)[p] * 0.8 + 0.1
    fig2 = plot.confusion_matrix(np.eye(3)[y], probs)
    np.testing.assert_array_equal(np.asarray(fig2.axes[0].images[0].get_array()), expect)


@pytest.mark.parametrize("normalize, axis", [("true", 1), ("pred", 0), ("all", None)])
def test_confusion_matrix_normalize(normalize: str, axis: int | None, mpl: Any) -> None:
    y = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 1])
    p = np.array([0, 1, 0, 1, 1, 2, 0, 2, 2, 2])
    counts = np.array([[2, 1, 0], [0, 2, 1], [1, 0, 3]], dtype=float)
    fig = plot.confusion_matrix(y, p, normalize=normalize)
    shown = np.asarray(fig.axes[0].images[0].get_array())
    expect = counts / (counts.sum() if axis is None else counts.sum(axis=axis, keepdims=True))
    np.testing.assert_allclose(shown, expect)
    assert (_cell_texts(fig) == np.vectorize(lambda v: f"{v:.2f}")(expect)).all()


def test_confusion_matrix_thirty_classes_is_readable(tmp_path: Path, mpl: Any) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 30, 3000)
    p = np.where(rng.random(3000) < 0.7, y, rng.integers(0, 30, 3000))
    path = tmp_path / "c30.png"
    fig = plot.confusion_matrix(y, p, class_names=[f"class_{i}" for i in range(30)], path=path)
    _png(path, min_side=1000)  # big enough for 900 cells
    assert len(fig.axes[0].texts) == 900
    assert min(t.get_fontsize() for t in fig.axes[0].texts) >= 5.5


def test_confusion_matrix_many_classes_by_colour_only(mpl: Any) -> None:
    y = np.arange(60).repeat(2)
    fig = plot.confusion_matrix(y, y)
    assert not fig.axes[0].texts
    np.testing.assert_array_equal(np.asarray(fig.axes[0].images[0].get_array()),
                                  2 * np.eye(60))


def test_confusion_matrix_bad_input(mpl: Any) -> None:
    with pytest.raises(ValueError, match="normalize"):
        plot.confusion_matrix([0, 1], [0, 1], normalize="rows")
    with pytest.raises(ValueError, match=r"y_pred_or_probs has 3 rows, y_true has 2"):
        plot.confusion_matrix([0, 1], [0, 1, 1])
    with pytest.raises(ValueError, match=r"class_names has 2 names.*3 classes"):
        plot.confusion_matrix([0, 1], np.eye(3)[[0, 1]], class_names=["a", "b"])
    with pytest.raises(ValueError, match=r"class_names has 2 names.*up to 2"):
        plot.confusion_matrix([0, 2], [0, 1], class_names=["a", "b"])
    with pytest.raises(ValueError, match=r"y_true must be labels \(N,\).*\(2, 2, 2\)"):
        plot.confusion_matrix(np.zeros((2, 2, 2)), [0, 1])
    with pytest.raises(ValueError, match="y_true must hold integer class labels"):
        plot.confusion_matrix([0.2, 0.9], [0, 1])
    with pytest.raises(ValueError, match="y_true must hold class labels >= 0"):
        plot.confusion_matrix([-1, 0], [0, 1])
    with pytest.raises(ValueError, match=r"one column must hold sigmoid probabilities"):
        plot.confusion_matrix([0, 2], [[0], [2]])
    with pytest.raises(ValueError, match="y_true is empty"):
        plot.confusion_matrix([], [])


# ------------------------------------------------------------------------------------------
# mistakes


def _mistake_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    x = rng.random((30, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 4, 30)
    probs = rng.dirichlet(np.ones(4) * 0.5, 30)
    return x, y, probs


def test_mistakes_grid_sorted_by_confidence(tmp_path: Path, mpl: Any) -> None:
    x, y, probs = _mistake_case()
    names = ["ant", "bee", "cat", "dog"]
    wrong = np.flatnonzero(probs.argmax(1) != y)
    assert wrong.size > 7
    path = tmp_path / "m.png"
    fig = plot.mistakes(x, y, probs, class_names=names, max_images=7, path=path)
    _png(path)
    axes = [ax for ax in fig.axes if ax.images]
    assert len(axes) == 7 and len(fig.axes) == 7  # the unused grid cells are removed
    order = wrong[np.argsort(-probs[wrong].max(1), kind="stable")][:7]
    for ax, i in zip(axes, order, strict=True):
        pred = int(probs[i].argmax())
        assert ax.get_title() == f"pred {names[pred]} ({probs[i, pred]:.2f})\ntrue {names[y[i]]}"
        np.testing.assert_allclose(np.asarray(ax.images[0].get_array()), x[i, 0], rtol=1e-6)
    confs = [float(ax.get_title().split("(")[1].split(")")[0]) for ax in axes]
    assert confs == sorted(confs, reverse=True)
    assert fig.get_suptitle() == (f"{wrong.size} of 30 images misclassified "
                                  f"(the 7 most confident shown)")


def test_mistakes_rgb_0_255_and_sigmoid(mpl: Any) -> None:
    rng = np.random.default_rng(4)
    x = rng.integers(0, 256, (6, 3, 5, 7)).astype(np.float32)
    p1 = np.array([[0.9], [0.2], [0.7], [0.1], [0.6], [0.4]])  # sigmoid outputs
    y = np.array([0, 0, 1, 0, 0, 0])  # wrong: rows 0 (0.9) and 4 (0.6)
    fig = plot.mistakes(x, y, p1)
    axes = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in axes] == ["pred 1 (0.90)\ntrue 0", "pred 1 (0.60)\ntrue 0"]
    img = np.asarray(axes[0].images[0].get_array())
    assert img.shape == (5, 7, 3)
    np.testing.assert_allclose(img, x[0].transpose(1, 2, 0) / 255, rtol=1e-6)


def test_mistakes_none(mpl: Any) -> None:
    fig = plot.mistakes(np.zeros((3, 1, 4, 4)), [0, 1, 1], np.eye(2)[[0, 1, 1]])
    assert len(fig.axes) == 1 and not fig.axes[0].images
    assert "no misclassified images" in fig.axes[0].texts[0].get_text()
    assert "no mistakes" in fig.get_suptitle()


def test_mistakes_bad_input(mpl: Any) -> None:
    x, y, probs = _mistake_case()
    with pytest.raises(ValueError, match=r"x must be images \(N, C, H, W\).*\(30, 2, 8, 8\)"):
        plot.mistakes(np.zeros((30, 2, 8, 8)), y, probs)
    with pytest.raises(ValueError, match=r"x must be images.*\(30, 8, 8\)"):
        plot.mistakes(x[:, 0], y, probs)
    with pytest.raises(ValueError, match=r"y_true has 29 rows"):
        plot.mistakes(x, y[:29], probs)
    with pytest.raises(ValueError, match=r"probs has 29 rows"):
        plot.mistakes(x, y, probs[:29])
    with pytest.raises(ValueError, match=r"probs must be the model's outputs \(N, K\)"):
        plot.mistakes(x, y, probs.argmax(1))
    with pytest.raises(ValueError, match="max_images must be an int >= 1"):
        plot.mistakes(x, y, probs, max_images=0)
    with pytest.raises(ValueError, match=r"\[0, 1\] or \[0, 255\]"):
        plot.mistakes(x - 0.5, y, probs)
    with pytest.raises(ValueError, match=r"class_names has 3 names.*4 classes"):
        plot.mistakes(x, y, probs, class_names=["a", "b", "c"])


def test_drawing_leaves_pyplot_and_the_backend_alone(tmp_path: Path, mpl: Any) -> None:
    code = (
        "import sys, matplotlib, numpy as np\n"
        "matplotlib.use('svg')\n"
        "from fastcnn import plot\n"
        f"plot.history({HIST!r}, path={str(tmp_path / 'h.png')!r})\n"
        "plot.confusion_matrix([0, 1], [1, 1])\n"
        "plot.mistakes(np.zeros((2, 1, 3, 3)), [0, 1], np.eye(2)[[1, 0]])\n"
        "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend()\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert r.returncode == 0, r.stderr
    _png(tmp_path / "h.png")


def test_plot_needs_no_model_or_training() -> None:
    import ast

    tree = ast.parse(Path(plot.__file__).read_text(encoding="utf-8"))
    ours = {node.module for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.level}
    assert ours == {"callbacks"}, ours  # History's monitor rule, nothing of model / training
