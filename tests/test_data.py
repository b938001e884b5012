"""fastcnn.data: ImageFolder, ArrayDataset and the augmentations."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import fastcnn as fc
from fastcnn import data  # noqa: F401  (makes fc.data available)

SIZE = (12, 16)  # (height, width) of the stored test images


def _data_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("fastcnn-data")]


def _wait_no_data_threads(timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while _data_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _data_threads(), _data_threads()


def _rgb(value: tuple[int, int, int], size: tuple[int, int] = SIZE) -> Image.Image:
    return Image.fromarray(np.full((*size, 3), value, dtype=np.uint8))


def _code(label: int, index: int) -> tuple[int, int, int]:
    """A uniform colour that identifies (label, index): R = 40 label + 20, G = 9 index + 5."""
    return (40 * label + 20, 9 * index + 5, 77)


@pytest.fixture(scope="module")
def coded_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 classes of lossless RGB PNGs whose colour encodes (label, index); 7 + 5 + 6 files."""
    root = tmp_path_factory.mktemp("coded")
    for label, (name, count) in enumerate([("ant", 7), ("bee", 5), ("cow", 6)]):
        (root / name).mkdir()
        for i in range(count):
            _rgb(_code(label, i)).save(root / name / f"img{i:02d}.png")
    return root


@pytest.fixture(scope="module")
def mixed_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every supported format and Pillow mode, plus files and folders that must be ignored."""
    root = tmp_path_factory.mktemp("mixed")
    a, b = root / "alpha", root / "beta"
    for d in (a, b, a / "nested", a / ".hidden_dir", root / ".hidden_class"):
        d.mkdir()
    _rgb((200, 100, 50)).save(a / "rgb.png")
    _rgb((10, 20, 30)).save(a / "upper.PNG")
    _rgb((1, 2, 3)).save(a / "nested" / "deep.bmp")
    Image.fromarray(np.full(SIZE, 128, np.uint8)).save(a / "gray.png")  # L
    Image.fromarray(np.full((*SIZE, 4), (255, 0, 0, 40), np.uint8)).save(a / "rgba.png")
    pal = Image.new("P", SIZE[::-1], 1)
    pal.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    # Transparency as bytes: Pillow warns unless the image goes through RGBA first.
    pal.save(b / "palette.png", transparency=bytes([0, 200]))
    Image.fromarray(np.full(SIZE, 65535, np.uint16)).save(b / "deep16.png")  # I;16
    Image.new("CMYK", SIZE[::-1], (0, 255, 255, 0)).save(b / "cmyk.jpg")
    _rgb((0, 0, 255)).save(b / "photo.jpeg", quality=95)
    _rgb((9, 9, 9)).save(b / "anim.gif")
    _rgb((9, 9, 9)).save(b / "scan.tiff")
    _rgb((9, 9, 9)).save(b / "web.webp", lossless=True)
    Image.fromarray(np.full(SIZE, 7, np.uint8)).save(b / "plain.pgm")
    _rgb((9, 9, 9)).save(b / "plain.ppm")
    # Ignored: hidden files and folders, other extensions.
    _rgb((9, 9, 9)).save(a / ".hidden.png")
    _rgb((9, 9, 9)).save(a / ".hidden_dir" / "x.png")
    _rgb((9, 9, 9)).save(root / ".hidden_class" / "x.png")
    (a / "notes.txt").write_text("not an image")
    (b / "labels.csv").write_text("1,2,3")
    (root / "README.md").write_text("a file at the top level is not a class")
    # A symlink loop inside a class: alpha/nested/loop -> alpha
    os.symlink(a, a / "nested" / "loop", target_is_directory=True)
    return root


def _expected_mixed() -> list[str]:
    return sorted([os.path.join("alpha", f) for f in
                   ("gray.png", "rgb.png", "rgba.png", "upper.PNG",
                    os.path.join("nested", "deep.bmp"))]) + sorted(
        [os.path.join("beta", f) for f in
         ("palette.png", "deep16.png", "cmyk.jpg", "photo.jpeg", "anim.gif", "scan.tiff",
          "web.webp", "plain.pgm", "plain.ppm")])


# --------------------------------------------------------------------------- listing


def test_listing_ignores_hidden_and_non_images(mixed_root: Path) -> None:
    ds = fc.data.ImageFolder(mixed_root, target_size=SIZE, shuffle=False)
    assert ds.class_indices == {"alpha": 0, "beta": 1}
    assert ds.filenames == _expected_mixed()
    assert ds.samples == len(ds.filenames) == 14
    assert ds.filepaths == [os.path.join(str(mixed_root), f) for f in ds.filenames]
    assert ds.classes.dtype == np.int64
    assert ds.classes.tolist() == [0] * 5 + [1] * 9
    assert ds.num_classes == 2
    assert len(ds) == 1  # batch_size 32


@pytest.mark.parametrize("follow_links", [False, True])
def test_symlink_loop_terminates(mixed_root: Path, follow_links: bool) -> None:
    ds = fc.data.ImageFolder(mixed_root, target_size=SIZE, follow_links=follow_links)
    # Following the loop revisits alpha, which was seen already: nothing is added twice.
    assert ds.filenames == _expected_mixed()


def test_explicit_classes(mixed_root: Path) -> None:
    ds = fc.data.ImageFolder(mixed_root, target_size=SIZE, classes=["beta", "alpha"],
                             shuffle=False)
    assert ds.class_indices == {"beta": 0, "alpha": 1}
    assert ds.classes.tolist() == [0] * 9 + [1] * 5
    with pytest.raises(ValueError, match="gamma"):
        fc.data.ImageFolder(mixed_root, target_size=SIZE, classes=["alpha", "gamma"])


# ------------------------------------------------------------------------ colour modes


@pytest.mark.parametrize(("color_mode", "channels"), [("rgb", 3), ("grayscale", 1), ("rgba", 4)])
def test_every_mode_converts(mixed_root: Path, color_mode: str, channels: int) -> None:
    ds = fc.data.ImageFolder(mixed_root, target_size=(6, 5), color_mode=color_mode,
                             class_mode="sparse", batch_size=4, shuffle=False, num_workers=2)
    xs, ys = zip(*ds, strict=True)
    x = np.concatenate(xs)
    assert [b.shape[0] for b in xs] == [4, 4, 4, 2]
    assert x.shape == (14, channels, 6, 5) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 255.0
    assert np.concatenate(ys).tolist() == ds.classes.tolist()
    assert ds.image_shape == (channels, 6, 5)


def test_load_image_conversions(mixed_root: Path) -> None:
    a, b = mixed_root / "alpha", mixed_root / "beta"
    rgba = fc.data.load_image(a / "rgba.png", "rgba")
    assert rgba.shape == (4, *SIZE) and rgba.dtype == np.float32
    np.testing.assert_array_equal(rgba[:, 0, 0], [255, 0, 0, 40])
    np.testing.assert_array_equal(fc.data.load_image(a / "rgba.png")[:, 0, 0], [255, 0, 0])
    gray = fc.data.load_image(a / "gray.png", "rgba")
    np.testing.assert_array_equal(gray[:, 0, 0], [128, 128, 128, 255])
    # 16-bit grayscale is scaled to 8 bits, in every colour mode and through a resize.
    np.testing.assert_allclose(fc.data.load_image(b / "deep16.png")[:, 0, 0], [255] * 3)
    deep = fc.data.load_image(b / "deep16.png", "grayscale", target_size=(5, 7))
    assert deep.shape == (1, 5, 7)
    np.testing.assert_allclose(deep, 255.0, rtol=1e-6)
    # Palette with transparency, CMYK (red), RGB -> L (ITU-R 601-2).
    np.testing.assert_array_equal(fc.data.load_image(b / "palette.png")[:, 0, 0], [0, 255, 0])
    np.testing.assert_array_equal(fc.data.load_image(b / "palette.png", "rgba")[:, 0, 0],
                                  [0, 255, 0, 200])
    cmyk = fc.data.load_image(b / "cmyk.jpg")[:, 0, 0]
    assert cmyk[0] > 200 and cmyk[1] < 60 and cmyk[2] < 60
    red = fc.data.load_image(a / "rgb.png", "grayscale")
    assert red.shape == (1, *SIZE)
    np.testing.assert_allclose(red[0, 0, 0], round(200 * 0.299 + 100 * 0.587 + 50 * 0.114),
                               atol=1)
    small = fc.data.load_image(a / "rgb.png", target_size=(3, 4), interpolation="nearest")
    assert small.shape == (3, 3, 4)
    np.testing.assert_array_equal(small[:, 1, 1], [200, 100, 50])


# ------------------------------------------------------------------------ class modes


def test_class_modes(coded_root: Path) -> None:
    kw = {"target_size": SIZE, "batch_size": 5, "shuffle": False}
    labels = np.array([0] * 7 + [1] * 5 + [2] * 6)

    x, y = next(iter(fc.data.ImageFolder(coded_root, class_mode="sparse", **kw)))
    assert x.shape == (5, 3, *SIZE) and x.dtype == np.float32
    assert y.dtype == np.int64 and y.shape == (5,)

    ys = [y for _, y in fc.data.ImageFolder(coded_root, class_mode="categorical", **kw)]
    onehot = np.concatenate(ys)
    assert onehot.dtype == np.float32 and onehot.shape == (18, 3)
    np.testing.assert_array_equal(onehot, np.eye(3, dtype=np.float32)[labels])

    batches = list(fc.data.ImageFolder(coded_root, class_mode=None, **kw))
    assert all(isinstance(b, np.ndarray) for b in batches)
    assert [b.shape[0] for b in batches] == [5, 5, 5, 3]

    with pytest.raises(ValueError, match="exactly 2 classes"):
        fc.data.ImageFolder(coded_root, class_mode="binary", **kw)
    ds = fc.data.ImageFolder(coded_root, class_mode="binary", classes=["bee", "cow"], **kw)
    y = np.concatenate([y for _, y in ds])
    assert y.dtype == np.float32 and y.shape == (11,)
    np.testing.assert_array_equal(y, [0] * 5 + [1] * 6)

    with pytest.raises(ValueError, match="class_mode"):
        fc.data.ImageFolder(coded_root, class_mode="onehot", **kw)


def _decode_pairs(x: np.ndarray, y: np.ndarray) -> list[tuple[int, int]]:
    """(label, index) from the colour of each coded image, checked against y."""
    red = np.rint(x[:, 0, 0, 0]).astype(int)
    green = np.rint(x[:, 1, 0, 0]).astype(int)
    labels = (red - 20) // 40
    np.testing.assert_array_equal(labels, y)
    return list(zip(labels.tolist(), ((green - 5) // 9).tolist(), strict=True))


def _epoch(ds: fc.data.ImageFolder) -> list[tuple[int, int]]:
    pairs: list[tuple[int, int]] = []
    for x, y in ds:
        pairs += _decode_pairs(x, y)
    return pairs


def test_shuffle_pairs_and_epochs(coded_root: Path) -> None:
    ds = fc.data.ImageFolder(coded_root, target_size=SIZE, class_mode="sparse", batch_size=4,
                             seed=3)
    everything = sorted((lab, i) for lab, n in enumerate([7, 5, 6]) for i in range(n))
    e0, e1 = _epoch(ds), _epoch(ds)
    assert sorted(e0) == everything and sorted(e1) == everything
    assert e0 != e1 and e0 != everything  # reshuffled every epoch
    again = fc.data.ImageFolder(coded_root, target_size=SIZE, class_mode="sparse",
                                batch_size=4, seed=3)
    assert _epoch(again) == e0 and _epoch(again) == e1  # reproducible sequence of epochs
    other = fc.data.ImageFolder(coded_root, target_size=SIZE, class_mode="sparse",
                                batch_size=4, seed=4)
    assert _epoch(other) != e0
    ds.epoch = 1  # replay an epoch
    assert _epoch(ds) == e1


def test_no_shuffle_keeps_file_order(coded_root: Path) -> None:
    ds = fc.data.ImageFolder(coded_root, target_size=SIZE, class_mode="sparse", batch_size=7,
                             shuffle=False)
    assert _epoch(ds) == [(lab, i) for lab, n in enumerate([7, 5, 6]) for i in range(n)]


def test_drop_last(coded_root: Path) -> None:
    ds = fc.data.ImageFolder(coded_root, target_size=SIZE, batch_size=4, drop_last=True)
    assert len(ds) == 4
    assert [x.shape[0] for x, _ in ds] == [4, 4, 4, 4]


def test_sync_and_threaded_agree(coded_root: Path) -> None:
    kw = {"target_size": (7, 9), "batch_size": 5, "seed": 11,
          "augment": [fc.data.RandomRotation(0.2), fc.data.RandomFlip()]}
    threaded = list(fc.data.ImageFolder(coded_root, num_workers=3, prefetch=2, **kw))
    sync = list(fc.data.ImageFolder(coded_root, num_workers=0, prefetch=0, **kw))
    assert len(threaded) == len(sync) == 4
    for (xa, ya), (xb, yb) in zip(threaded, sync, strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


def test_augment_and_rescale_reproducible(coded_root: Path) -> None:
    def make(seed: int) -> fc.data.ImageFolder:
        return fc.data.ImageFolder(
            coded_root, target_size=SIZE, batch_size=6, seed=seed, rescale=1 / 255,
            augment=[fc.data.RandomFlip("horizontal"), fc.data.RandomZoom(0.3),
                     fc.data.RandomBrightness(0.2), fc.data.RandomCrop(8, 8)])

    a, b, c = make(5), make(5), make(6)
    assert a.image_shape == (3, 8, 8)
    xa = [x for x, _ in a]
    xb = [x for x, _ in b]
    assert all(x.shape[1:] == (3, 8, 8) for x in xa)
    assert all(0.0 <= x.min() and x.max() <= 1.0 for x in xa)
    for u, v in zip(xa, xb, strict=True):
        np.testing.assert_array_equal(u, v)
    assert not all(np.array_equal(u, v) for u, v in zip(xa, [x for x, _ in c], strict=True))
    # The next epoch draws new augmentations.
    assert not all(np.array_equal(u, v) for u, v in zip(xa, [x for x, _ in a], strict=True))


# -------------------------------------------------------------------- validation split


def test_validation_split(coded_root: Path) -> None:
    def subset(name: str, seed: int) -> fc.data.ImageFolder:
        return fc.data.ImageFolder(coded_root, target_size=SIZE, validation_split=0.3,
                                   subset=name, seed=seed)

    train, val = subset("training", 1), subset("validation", 1)
    assert not set(train.filenames) & set(val.filenames)
    assert sorted(train.filenames + val.filenames) == sorted(
        fc.data.ImageFolder(coded_root, target_size=SIZE).filenames)
    # round(0.3 n) per class: 7 -> 2, 5 -> 2 (1.5 rounds up), 6 -> 2
    assert np.bincount(val.classes).tolist() == [2, 2, 2]
    assert np.bincount(train.classes).tolist() == [5, 3, 4]
    assert train.filenames == sorted(train.filenames)
    # Deterministic, and independent of the seed: no overlap even with different seeds.
    assert subset("training", 1).filenames == train.filenames
    assert subset("validation", 99).filenames == val.filenames
    # The validation files are not simply the first ones of each class.
    assert val.filenames != ["ant/img00.png", "ant/img01.png", "bee/img00.png",
                             "bee/img01.png", "cow/img00.png", "cow/img01.png"]
    pairs = _epoch(fc.data.ImageFolder(coded_root, target_size=SIZE, class_mode="sparse",
                                       validation_split=0.3, subset="validation"))
    assert len(pairs) == 6


def test_split_arguments(coded_root: Path) -> None:
    with pytest.raises(ValueError, match="validation_split and subset"):
        fc.data.ImageFolder(coded_root, target_size=SIZE, subset="training")
    with pytest.raises(ValueError, match="validation_split and subset"):
        fc.data.ImageFolder(coded_root, target_size=SIZE, validation_split=0.2)
    with pytest.raises(ValueError, match="validation_split"):
        fc.data.ImageFolder(coded_root, target_size=SIZE, validation_split=1.0,
                            subset="training")
    with pytest.raises(ValueError, match="subset"):
        fc.data.ImageFolder(coded_root, target_size=SIZE, validation_split=0.2, subset="test")


# ------------------------------------------------------------------------ standardize


def test_standardize(coded_root: Path) -> None:
    kw = {"target_size": SIZE, "batch_size": 4, "shuffle": False, "rescale": 1 / 255,
          "validation_split": 0.3}
    train = fc.data.ImageFolder(coded_root, standardize=True, subset="training", **kw)
    plain = fc.data.ImageFolder(coded_root, subset="training", **kw)
    raw = np.concatenate([x for x, _ in plain]).astype(np.float64)
    mean, std = raw.mean(axis=(0, 2, 3)), raw.std(axis=(0, 2, 3))
    np.testing.assert_allclose(train.mean, mean, rtol=1e-5)
    np.testing.assert_allclose(train.std[:2], std[:2], rtol=1e-5)
    assert std[2] == 0 and train.std[2] == 1  # a constant channel is only centred
    z = np.concatenate([x for x, _ in train]).astype(np.float64)
    np.testing.assert_allclose(z.mean(axis=(0, 2, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=(0, 2, 3)), [1.0, 1.0, 0.0], rtol=1e-4, atol=1e-6)
    # The validation subset is standardised with the training statistics.
    val = fc.data.ImageFolder(coded_root, standardize=True, subset="validation", **kw)
    np.testing.assert_allclose(val.mean, train.mean)
    # Given statistics, scalar or per channel.
    given = fc.data.ImageFolder(coded_root, standardize=(0.5, [0.25, 0.5, 1.0]),
                                subset="training", **kw)
    x = next(iter(given))[0]
    np.testing.assert_allclose(x[:, 1], (raw[:4, 1] - 0.5) / 0.5, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="standardize"):
        fc.data.ImageFolder(coded_root, target_size=SIZE, standardize=(0.0, 0.0))


# --------------------------------------------------------------------- bad files


@pytest.fixture
def bad_root(tmp_path: Path) -> Path:
    """2 classes, 10 readable images and 3 bad files (garbage, truncated JPEG, empty)."""
    for label, name in enumerate(["x", "y"]):
        (tmp_path / name).mkdir()
        for i in range(5):
            _rgb(_code(label, i)).save(tmp_path / name / f"ok{i}.png")
    (tmp_path / "x" / "broken.png").write_bytes(b"this is not a png")
    buf = tmp_path / "whole.jpg"
    _rgb((1, 2, 3), size=(64, 64)).save(buf, quality=90)
    (tmp_path / "y" / "cut.jpg").write_bytes(buf.read_bytes()[:300])
    buf.unlink()
    (tmp_path / "y" / "empty.gif").write_bytes(b"")
    return tmp_path


def test_bad_files_warn_once_and_are_dropped(bad_root: Path) -> None:
    ds = fc.data.ImageFolder(bad_root, target_size=SIZE, class_mode="sparse", batch_size=4,
                             seed=0)
    assert ds.samples == 13 and len(ds) == 4
    with pytest.warns(fc.data.DataWarning) as record:
        batches = list(ds)
    text = " ".join(str(w.message) for w in record)
    for name in ("broken.png", "cut.jpg", "empty.gif"):
        assert name in text
    # Each bad file is named in exactly one warning.
    assert sum("broken.png" in str(w.message) for w in record) == 1
    assert [x.shape[0] for x, _ in batches] == [4, 4, 2]  # full batches refilled
    assert sorted(ds.bad_files) == sorted(
        str(bad_root / p) for p in ("x/broken.png", "y/cut.jpg", "y/empty.gif"))
    assert len(ds) == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = list(ds)  # no second warning: the bad files are left out
    assert [x.shape[0] for x, _ in again] == [4, 4, 2]
    pairs = sorted(p for x, y in again for p in _decode_pairs(x, y))
    assert pairs == sorted((lab, i) for lab in range(2) for i in range(5))


@pytest.mark.parametrize("drop_last", [False, True])
def test_bad_file_after_last_batch_still_warns(bad_root: Path, drop_last: bool) -> None:
    (bad_root / "x" / "zz.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    ds = fc.data.ImageFolder(bad_root, target_size=SIZE, batch_size=5, shuffle=False,
                             classes=["x"], drop_last=drop_last)
    with pytest.warns(fc.data.DataWarning) as record:
        assert [x.shape[0] for x, _ in ds] == [5]
    assert [("broken.png" in str(w.message), "zz.png" in str(w.message)) for w in record] == [
        (True, False), (False, True)]


def test_bad_files_found_by_standardize(bad_root: Path) -> None:
    with pytest.warns(fc.data.DataWarning, match="broken.png"):
        ds = fc.data.ImageFolder(bad_root, target_size=SIZE, standardize=True, num_workers=0)
        assert ds.mean is not None
    assert len(ds.bad_files) == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert sum(x.shape[0] for x, _ in ds) == 10


# ------------------------------------------------------------------------ errors


def test_empty_folders_raise(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        fc.data.ImageFolder(tmp_path / "missing")
    with pytest.raises(ValueError, match="no class sub-folders"):
        fc.data.ImageFolder(tmp_path)
    (tmp_path / "full").mkdir()
    _rgb((1, 1, 1)).save(tmp_path / "full" / "a.png")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    (tmp_path / "empty" / ".hidden.png").write_bytes(b"")
    with pytest.raises(ValueError, match="empty' holds no images"):
        fc.data.ImageFolder(tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"target_size": (0, 4)}, "target_size"), ({"target_size": 8}, "target_size"),
     ({"color_mode": "cmyk"}, "color_mode"), ({"batch_size": 0}, "batch_size"),
     ({"interpolation": "cubic"}, "interpolation"), ({"seed": -1}, "seed"),
     ({"num_workers": -1}, "num_workers"), ({"rescale": "1/255"}, "rescale"),
     ({"augment": [3]}, "augment")],
)
def test_argument_errors(coded_root: Path, kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        fc.data.ImageFolder(coded_root, **kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------- clean stopping


def test_early_stop_joins_threads(coded_root: Path) -> None:
    _wait_no_data_threads()
    ds = fc.data.ImageFolder(coded_root, target_size=SIZE, batch_size=2, num_workers=3)
    for _ in ds:
        assert _data_threads()
        break
    _wait_no_data_threads()
    with iter(ds) as it:
        next(it)
    _wait_no_data_threads()
    it = iter(ds)
    next(it)
    it.close()
    it.close()  # idempotent
    with pytest.raises(StopIteration):
        next(it)
    _wait_no_data_threads()
    # An iterator dropped before its first batch.
    iter(ds)
    _wait_no_data_threads()


def test_abandoned_iterator_does_not_hang_exit(coded_root: Path) -> None:
    script = textwrap.dedent(f"""
        import fastcnn as fc
        from fastcnn import data
        ds = data.ImageFolder({str(coded_root)!r}, target_size=(12, 16), batch_size=2,
                              prefetch=1, num_workers=2)
        it = iter(ds)
        next(it)
        keep = [it]  # still alive at exit, producer blocked on a full queue
        print("ok")
    """)
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
    assert time.monotonic() - start < 30


def test_error_in_augmentation_propagates(coded_root: Path) -> None:
    def boom(batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        raise RuntimeError("augmentation failed")

    ds = fc.data.ImageFolder(coded_root, target_size=SIZE, augment=[boom])
    with pytest.raises(RuntimeError, match="augmentation failed"):
        next(iter(ds))
    _wait_no_data_threads()


# ----------------------------------------------------------------------- ArrayDataset


def test_array_dataset_batches() -> None:
    x = np.arange(10 * 2 * 3 * 3, dtype=np.float64).reshape(10, 2, 3, 3)
    y = np.arange(10) * 10
    ds = fc.data.ArrayDataset(x, y, batch_size=4, seed=0)
    assert len(ds) == 3 and ds.samples == 10 and ds.image_shape == (2, 3, 3)
    seen = []
    for xb, yb in ds:
        assert xb.dtype == np.float32 and xb.flags.c_contiguous
        np.testing.assert_array_equal(xb[:, 0, 0, 0] / 18 * 10, yb)  # pairs kept
        seen += yb.tolist()
    assert sorted(seen) == y.tolist() and seen != y.tolist()
    assert np.concatenate([yb for _, yb in ds]).tolist() != seen  # the next epoch reshuffles
    same = fc.data.ArrayDataset(x, y, batch_size=4, seed=0)
    assert np.concatenate([yb for _, yb in same]).tolist() == seen

    ordered = fc.data.ArrayDataset(x, None, batch_size=4, shuffle=False, drop_last=True,
                                   rescale=0.5)
    batches = list(ordered)
    assert len(ordered) == 2 and len(batches) == 2
    np.testing.assert_array_equal(batches[1], x[4:8].astype(np.float32) * 0.5)
    x32 = x.astype(np.float32)
    for xb in fc.data.ArrayDataset(x32, batch_size=4, shuffle=False):
        xb[:] = -1  # batches are copies, never views of x
    assert x32.min() == 0


def test_array_dataset_augment_and_errors() -> None:
    x = np.random.default_rng(0).random((6, 1, 5, 5)).astype(np.float32)
    ds = fc.data.ArrayDataset(x, batch_size=6, shuffle=False, seed=2,
                              augment=fc.data.RandomFlip("vertical"), prefetch=0)
    (xb,) = list(ds)
    for out, src in zip(xb, x, strict=True):
        assert np.array_equal(out, src) or np.array_equal(out, src[:, ::-1])
    assert not np.array_equal(xb, x)
    with pytest.raises(ValueError, match="4-D"):
        fc.data.ArrayDataset(x[0])
    with pytest.raises(ValueError, match="one entry per image"):
        fc.data.ArrayDataset(x, np.zeros(5))


# ------------------------------------------------------------------- augmentations


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _batch(n: int = 4, c: int = 2, h: int = 9, w: int = 9, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).random((n, c, h, w)).astype(np.float32) * 255


def test_flip_exact_and_reproducible() -> None:
    x = _batch(n=64)
    for mode, variants in [
        ("horizontal", lambda im: [im, im[..., ::-1]]),
        ("vertical", lambda im: [im, im[:, ::-1]]),
        ("horizontal_and_vertical",
         lambda im: [im, im[..., ::-1], im[:, ::-1], im[:, ::-1, ::-1]]),
    ]:
        out = fc.data.RandomFlip(mode)(x, _rng(3))
        kinds = set()
        for o, im in zip(out, x, strict=True):
            match = [k for k, v in enumerate(variants(im)) if np.array_equal(o, v)]
            assert match, mode
            kinds.add(match[0])
        assert kinds == set(range(len(variants(x[0])))), mode  # every outcome happens
        np.testing.assert_array_equal(out, fc.data.RandomFlip(mode)(x, _rng(3)))
    assert np.array_equal(x, _batch(n=64))  # input untouched
    with pytest.raises(ValueError, match="mode"):
        fc.data.RandomFlip("diagonal")


@pytest.mark.parametrize(("factor", "k"), [((0.25, 0.25), 1), ((-0.25, -0.25), -1),
                                           ((0.5, 0.5), 2)])
@pytest.mark.parametrize("size", [8, 9])
def test_rotation_quarter_turns(factor: tuple[float, float], k: int, size: int) -> None:
    x = _batch(h=size, w=size)
    for fill_mode in ("constant", "reflect", "nearest", "wrap"):
        out = fc.data.RandomRotation(factor, fill_mode=fill_mode)(x, _rng())
        np.testing.assert_allclose(out, np.rot90(x, k, axes=(2, 3)), atol=1e-3)


def test_rotation_range_and_center() -> None:
    x = np.zeros((32, 1, 11, 11), np.float32)
    x[:, :, 5, 5] = 100.0  # the centre pixel stays put
    x[:, :, 5, 9] = 50.0  # a point right of the centre turns counter-clockwise: upwards
    out = fc.data.RandomRotation((0.0, 0.1), fill_mode="constant")(x, _rng())
    np.testing.assert_allclose(out[:, 0, 5, 5], 100.0, atol=1e-3)
    upper = out[:, 0, :5, :].sum(axis=(1, 2))
    lower = out[:, 0, 6:, :].sum(axis=(1, 2))
    assert np.all(upper >= lower - 1e-3) and upper.sum() > 0
    # Angles are drawn within +-0.1 turn = 36 degrees: the point never reaches the left half.
    out = fc.data.RandomRotation(0.1, fill_mode="constant")(x, _rng())
    assert out[:, 0, :, :4].max() < 1e-3  # (the centre pixel blurs into column 4)


def test_zoom_semantics() -> None:
    ramp = np.tile(np.arange(9, dtype=np.float32), (9, 1))[None, None]  # value = column
    centre = 4.0
    zin = fc.data.RandomZoom((-0.5, -0.5))(ramp, _rng())  # zoom in x2: slope halves
    np.testing.assert_allclose(zin[0, 0, 3], centre + 0.5 * (np.arange(9) - centre), atol=1e-5)
    zout = fc.data.RandomZoom((0.5, 0.5), fill_mode="constant", fill_value=-1)(ramp, _rng())
    np.testing.assert_allclose(zout[0, 0, 3, 2:7], centre + 1.5 * (np.arange(2, 7) - centre),
                               atol=1e-5)
    assert zout[0, 0, 3, 0] == -1 and zout[0, 0, 3, 8] == -1  # outside: the fill value
    # width_factor given: the vertical zoom leaves this column ramp alone when it is 0.
    only_w = fc.data.RandomZoom((0.0, 0.0), (-0.5, -0.5))(ramp, _rng())
    np.testing.assert_allclose(only_w, zin, atol=1e-5)
    x = _batch()
    np.testing.assert_array_equal(fc.data.RandomZoom(0.2)(x, _rng(1)),
                                  fc.data.RandomZoom(0.2)(x, _rng(1)))
    with pytest.raises(ValueError, match="height_factor"):
        fc.data.RandomZoom(1.5)


def test_translation_moves_content() -> None:
    x = np.zeros((1, 1, 8, 8), np.float32)
    x[0, 0, 2, 3] = 1.0
    out = fc.data.RandomTranslation((0.25, 0.25), (0.5, 0.5), fill_mode="constant")(x, _rng())
    expected = np.zeros_like(x)
    expected[0, 0, 4, 7] = 1.0  # 2 rows down, 4 columns right
    np.testing.assert_allclose(out, expected, atol=1e-6)
    out = fc.data.RandomTranslation((-0.25, -0.25), (0, 0), fill_mode="constant")(x, _rng())
    assert out[0, 0, 0, 3] == pytest.approx(1.0)
    # A fractional shift interpolates: half a pixel right splits the dot.
    half = fc.data.RandomTranslation(0, (1 / 16, 1 / 16), fill_mode="constant")(x, _rng())
    np.testing.assert_allclose(half[0, 0, 2, 3:5], [0.5, 0.5], atol=1e-6)


def test_fill_modes() -> None:
    row = np.arange(1, 6, dtype=np.float32)[None, None, None, :]  # [1 2 3 4 5], H = 1
    shift = fc.data.RandomTranslation(0, (0.4, 0.4), fill_mode="constant", fill_value=9)
    np.testing.assert_array_equal(shift(row, _rng())[0, 0, 0], [9, 9, 1, 2, 3])
    expect = {"reflect": [2, 1, 1, 2, 3], "wrap": [4, 5, 1, 2, 3], "nearest": [1, 1, 1, 2, 3]}
    for mode, values in expect.items():
        out = fc.data.RandomTranslation(0, (0.4, 0.4), fill_mode=mode)(row, _rng())
        np.testing.assert_allclose(out[0, 0, 0], values, atol=1e-6, err_msg=mode)
    nearest = fc.data.RandomTranslation(0, (0.28, 0.28), fill_mode="nearest",
                                        interpolation="nearest")(row, _rng())
    np.testing.assert_array_equal(nearest[0, 0, 0], [1, 1, 2, 3, 4])  # 1.4 px rounds to 1
    with pytest.raises(ValueError, match="fill_mode"):
        fc.data.RandomRotation(0.1, fill_mode="mirror")


def test_crops() -> None:
    x = _batch(n=16, h=10, w=12)
    out = fc.data.RandomCrop(4, 5)(x, _rng())
    assert out.shape == (16, 2, 4, 5)
    offsets = set()
    for o, im in zip(out, x, strict=True):
        found = [(t, l) for t in range(7) for l in range(8)
                 if np.array_equal(o, im[:, t:t + 4, l:l + 5])]
        assert found
        offsets.add(found[0])
    assert len(offsets) > 1  # per-image offsets
    np.testing.assert_array_equal(out, fc.data.RandomCrop(4, 5)(x, _rng()))
    centre = fc.data.CenterCrop(4, 5)(x, _rng())
    np.testing.assert_array_equal(centre, x[:, :, 3:7, 3:8])
    assert fc.data.RandomCrop(4, 5).output_shape((2, 10, 12)) == (2, 4, 5)
    with pytest.raises(ValueError, match="at least"):
        fc.data.RandomCrop(11, 5)(x, _rng())


def test_brightness_and_contrast() -> None:
    x = _batch(n=8)
    out = fc.data.RandomBrightness((0.1, 0.1))(x, _rng())
    np.testing.assert_allclose(out, np.clip(x + 25.5, 0, 255), rtol=1e-6)
    unit = fc.data.RandomBrightness((-1.0, -1.0), value_range=(0, 1))
    np.testing.assert_array_equal(unit(x / 255, _rng()), 0.0)
    varied = fc.data.RandomBrightness(0.3)(x, _rng())
    shifts = (varied - x).mean(axis=(1, 2, 3))
    assert np.ptp(shifts) > 0  # one offset per image
    with pytest.raises(ValueError, match="factor"):
        fc.data.RandomBrightness(1.5)

    c = fc.data.RandomContrast((0.5, 0.0))(x, _rng())  # factors in [0.5, 1.0]: no clipping
    mean = x.mean(axis=(2, 3), keepdims=True)
    dev = (x - mean).reshape(8, -1)
    a = ((c - mean).reshape(8, -1) * dev).sum(axis=1) / (dev * dev).sum(axis=1)
    assert np.all((a >= 0.5 - 1e-5) & (a <= 1.0 + 1e-5)) and np.ptp(a) > 0
    np.testing.assert_allclose(c, mean + a[:, None, None, None] * (x - mean), rtol=1e-4,
                               atol=1e-3)  # one factor per image, about each channel's mean
    np.testing.assert_allclose(c.mean(axis=(2, 3)), x.mean(axis=(2, 3)), rtol=1e-4)
    strong = fc.data.RandomContrast((0.0, 3.0))(x, _rng())
    assert strong.min() >= 0 and strong.max() <= 255
    with pytest.raises(ValueError, match="lower"):
        fc.data.RandomContrast(1.5)


@pytest.mark.parametrize("aug", [
    fc.data.RandomFlip("vertical"), fc.data.RandomRotation((-0.1, 0.2), fill_mode="wrap"),
    fc.data.RandomZoom(0.1, (0.0, 0.2), interpolation="nearest"),
    fc.data.RandomTranslation(0.1, 0.2, fill_mode="constant", fill_value=3.0),
    fc.data.RandomCrop(5, 6), fc.data.CenterCrop(4, 4),
    fc.data.RandomBrightness(0.2, value_range=(0, 1)), fc.data.RandomContrast((0.1, 0.4)),
])
def test_config_roundtrip_and_reproducible(aug: fc.data.Augmentation) -> None:
    clone = type(aug).from_config(aug.get_config())
    assert clone.get_config() == aug.get_config()
    assert repr(clone) == repr(aug)
    x = _batch(n=5, h=8, w=10) / 255
    out = aug(x, _rng(7))
    assert out.dtype == np.float32 and out.shape[:2] == (5, 2)
    assert out.shape[1:] == aug.output_shape((2, 8, 10))
    np.testing.assert_array_equal(out, clone(x, _rng(7)))
    np.testing.assert_array_equal(x, _batch(n=5, h=8, w=10) / 255)  # input untouched


def test_augmentation_rejects_bad_batches() -> None:
    with pytest.raises(ValueError, match="4-D"):
        fc.data.RandomFlip()(np.zeros((3, 4, 4), np.float32), _rng())
    with pytest.raises(ValueError, match="factor"):
        fc.data.RandomRotation((0.2, 0.1))
    with pytest.raises(ValueError, match="factor"):
        fc.data.RandomRotation("big")  # type: ignore[arg-type]
