"""fastcnn.datasets: the bundled digits and the MNIST IDX reader."""

from __future__ import annotations

import gzip
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fastcnn import datasets

# ---------------------------------------------------------------------------- digits


def test_load_digits_default_split() -> None:
    (x_train, y_train), (x_test, y_test) = datasets.load_digits()
    assert x_train.shape == (1438, 1, 8, 8) and x_test.shape == (359, 1, 8, 8)
    assert x_train.dtype == x_test.dtype == np.float32
    assert y_train.dtype == y_test.dtype == np.int64
    x = np.concatenate([x_train, x_test])
    assert x.min() == 0.0 and x.max() == 1.0
    np.testing.assert_array_equal(np.unique(x * 16), np.arange(17))  # counts 0..16 / 16
    counts = np.bincount(np.concatenate([y_train, y_test]))
    assert counts.tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    # Stratified: every class gives round(0.2 n) test images.
    assert np.bincount(y_test).tolist() == [int(np.floor(0.2 * n + 0.5)) for n in counts]


def test_load_digits_is_deterministic_and_disjoint() -> None:
    (a_x, a_y), (b_x, b_y) = datasets.load_digits()
    (c_x, c_y), _ = datasets.load_digits()
    np.testing.assert_array_equal(a_x, c_x)
    np.testing.assert_array_equal(a_y, c_y)
    (_, _), (e_x, _) = datasets.load_digits(seed=1)
    assert not np.array_equal(b_x, e_x)
    (all_x, all_y), (none_x, none_y) = datasets.load_digits(test_size=0.0)
    assert all_x.shape == (1797, 1, 8, 8) and none_x.shape == (0, 1, 8, 8) and len(none_y) == 0
    # Train and test together are the whole set, each image once.
    whole = {row.tobytes() + bytes([lab]) for row, lab in zip(all_x, all_y, strict=True)}
    parts = [row.tobytes() + bytes([lab]) for row, lab in
             zip(np.concatenate([a_x, b_x]), np.concatenate([a_y, b_y]), strict=True)]
    assert set(parts) == whole and len(parts) == 1797


@pytest.mark.parametrize(("kwargs", "match"), [({"test_size": 1.0}, "test_size"),
                                               ({"test_size": -0.1}, "test_size"),
                                               ({"seed": -1}, "seed")])
def test_load_digits_argument_errors(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        datasets.load_digits(**kwargs)  # type: ignore[arg-type]


def test_load_digits_matches_scikit_learn() -> None:
    sk = pytest.importorskip("sklearn.datasets")
    ref = sk.load_digits()
    (x, y), _ = datasets.load_digits(test_size=0.0)
    np.testing.assert_array_equal(x[:, 0] * 16, ref.images)
    np.testing.assert_array_equal(y, ref.target)


def test_load_digits_needs_no_scikit_learn() -> None:
    code = ("import sys\n"
            "from fastcnn import datasets\n"
            "datasets.load_digits()\n"
            "assert 'sklearn' not in sys.modules\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr


# ----------------------------------------------------------------------------- MNIST


def _idx(array: np.ndarray, code: int = 0x08) -> bytes:
    dtype = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[code]
    header = struct.pack(">BBBB", 0, 0, code, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=dtype).tobytes()


@pytest.fixture
def mnist_arrays() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return (rng.integers(0, 256, (7, 28, 28), dtype=np.uint8),
            rng.integers(0, 10, 7, dtype=np.uint8))


def _write(folder: Path, kind: str, images: bytes, labels: bytes, gz: bool,
           sep: str = "-") -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    pack = gzip.compress if gz else (lambda b: b)
    img = folder / f"{kind}-images{sep}idx3-ubyte{suffix}"
    lab = folder / f"{kind}-labels{sep}idx1-ubyte{suffix}"
    img.write_bytes(pack(images))
    lab.write_bytes(pack(labels))
    return img, lab


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("kind", ["train", "t10k"])
def test_load_mnist(tmp_path: Path, mnist_arrays: tuple[np.ndarray, np.ndarray], gz: bool,
                    kind: str) -> None:
    images, labels = mnist_arrays
    _write(tmp_path, kind, _idx(images), _idx(labels), gz)
    x, y = datasets.load_mnist(tmp_path, kind=kind)
    assert x.shape == (7, 1, 28, 28) and x.dtype == np.float32
    assert y.shape == (7,) and y.dtype == np.int64
    np.testing.assert_array_equal(x[:, 0], images.astype(np.float32) / 255)
    np.testing.assert_array_equal(y, labels)
    assert 0.0 <= x.min() and x.max() <= 1.0


def test_load_mnist_dotted_names(tmp_path: Path,
                                 mnist_arrays: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = mnist_arrays
    _write(tmp_path, "train", _idx(images), _idx(labels), gz=False, sep=".")
    x, _ = datasets.load_mnist(str(tmp_path))
    assert x.shape == (7, 1, 28, 28)


def test_load_mnist_missing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        datasets.load_mnist(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        datasets.load_mnist(tmp_path)
    with pytest.raises(ValueError, match="kind"):
        datasets.load_mnist(tmp_path, kind="test")


def test_load_mnist_corrupt_files(tmp_path: Path,
                                  mnist_arrays: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = mnist_arrays
    good_img, good_lab = _idx(images), _idx(labels)

    def check(img: bytes, lab: bytes, match: str, gz: bool = False, bad: str = "images") -> None:
        folder = tmp_path / f"case{len(list(tmp_path.iterdir()))}"
        paths = dict(zip(("images", "labels"), _write(folder, "train", img, lab, gz),
                         strict=True))
        with pytest.raises(ValueError, match=match) as info:
            datasets.load_mnist(folder)
        assert str(paths[bad]) in str(info.value)  # the message names the file

    check(good_img[:-10], good_lab, "truncated IDX data")  # truncated raw
    check(good_img[:-10], good_lab, "truncated IDX data", gz=True)  # truncated data, valid gzip
    check(good_img[:10], good_lab, "truncated IDX header")
    check(good_img + b"\0", good_lab, "trailing bytes")
    check(good_lab, good_img, "magic number")  # swapped files
    check(b"", good_lab, "magic number")
    check(good_img, _idx(labels[:5]), "5 labels")
    check(good_img, _idx(labels.astype(np.int16), 0x0B), "magic number", bad="labels")
    # A gzip stream cut short: the decompressor fails, the message names the file.
    folder = tmp_path / "cut_gzip"
    img, _ = _write(folder, "train", good_img, good_lab, gz=True)
    img.write_bytes(img.read_bytes()[:-30])
    with pytest.raises(ValueError, match="corrupt or truncated gzip") as info:
        datasets.load_mnist(folder)
    assert str(img) in str(info.value)


def test_read_idx_types(tmp_path: Path) -> None:
    for code, dtype in [(0x08, np.uint8), (0x09, np.int8), (0x0B, np.int16),
                        (0x0C, np.int32), (0x0D, np.float32), (0x0E, np.float64)]:
        arr = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
        if code == 0x08:
            arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
        path = tmp_path / f"a{code}.idx"
        path.write_bytes(_idx(arr, code))
        out = datasets.read_idx(path)
        assert out.dtype == np.dtype(dtype) and out.dtype.isnative
        np.testing.assert_array_equal(out, arr)
    bad = tmp_path / "bad.idx"
    bad.write_bytes(b"\0\0\x07\x01\0\0\0\x01\0")
    with pytest.raises(ValueError, match="unknown IDX element type"):
        datasets.read_idx(bad)
    bad.write_bytes(b"PK\x03\x04")
    with pytest.raises(ValueError, match="not an IDX file"):
        datasets.read_idx(bad)
