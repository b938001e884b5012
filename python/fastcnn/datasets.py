"""Small ready-made data sets: the bundled 8x8 digits, and MNIST read from its IDX files.

Both return NCHW float32 images scaled to [0, 1] and int64 labels. This module imports only
NumPy (and fastcnn's argument checks; the digits are a package data file, so scikit-learn is
not needed).
"""

from __future__ import annotations

import gzip
import os
import zlib
from importlib import resources

import numpy as np

from ._args import check_int

__all__ = ["load_digits", "load_mnist", "read_idx"]

Split = tuple[np.ndarray, np.ndarray]

_DIGITS_FILE = "data_files/digits.npz"

# IDX element types: code -> big-endian dtype.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def load_digits(test_size: float = 0.2, seed: int = 0) -> tuple[Split, Split]:
    """The 8x8 handwritten digits (UCI optical digits as shipped by scikit-learn, CC BY 4.0).

    1,797 images of 10 classes, bundled with the package. The split is stratified: from
    every class, round(test_size * n_class) images chosen by ``seed`` go to the test set
    (with the defaults, 1,438 training and 359 test images, the same on every machine).
    Both parts keep the original order of the data set.

    Args:
        test_size: fraction of each class held out, in [0, 1); 0 gives an empty test set.
        seed: the choice of test images (an int).

    Returns:
        ``(x_train, y_train), (x_test, y_test)``: x float32 (N, 1, 8, 8) in [0, 1] (the 0..16
        counts divided by 16), y int64 (N,) digit labels 0..9.
    """
    if isinstance(test_size, bool) or not isinstance(test_size, (int, float, np.integer,
                                                                 np.floating)) or not (
            0.0 <= test_size < 1.0):
        raise ValueError(f"test_size must be a number in [0, 1), got {test_size!r}")
    seed = check_int(seed, "seed", minimum=0)
    path = resources.files(__package__ or "fastcnn").joinpath(_DIGITS_FILE)
    with path.open("rb") as f, np.load(f) as data:
        images = np.asarray(data["images"])
        labels = np.asarray(data["labels"])
    x = (images.astype(np.float32) / np.float32(16.0))[:, None, :, :]
    y = labels.astype(np.int64)
    rng = np.random.default_rng(seed)
    is_test = np.zeros(len(y), dtype=bool)
    for c in range(int(y.max()) + 1):
        idx = np.flatnonzero(y == c)
        n_test = int(np.floor(test_size * len(idx) + 0.5))
        is_test[rng.permutation(idx)[:n_test]] = True
    return (x[~is_test], y[~is_test]), (x[is_test], y[is_test])


def _read_bytes(path: str) -> bytes:
    """The file's bytes, gunzipped when it starts with the gzip magic."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise OSError(f"cannot read IDX file {path!r}: {exc}") from exc
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"IDX file {path!r} is a corrupt or truncated gzip file: {exc}") from exc


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one IDX file (the format of the MNIST files), gzipped or not.

    Args:
        path: the file; gzip compression is detected from its content.

    Returns:
        The array, with the shape and element type the header declares (native byte order).

    Raises:
        ValueError naming the file: bad magic number, unknown type, truncated or oversized data.
    """
    path = os.fspath(path)
    return _parse_idx(path, _read_bytes(path))


def _parse_idx(path: str, data: bytes) -> np.ndarray:
    """The array in IDX bytes ``data`` read from ``path`` (for messages)."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path!r} is not an IDX file: bad magic number "
                         f"{data[:4].hex() or '(empty file)'} (expected 0000 + type + ndim)")
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"{path!r}: unknown IDX element type 0x{code:02x} "
                         f"(known: {', '.join(f'0x{c:02x}' for c in _IDX_DTYPES)})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path!r}: truncated IDX header ({len(data)} bytes, {ndim} dims need "
                         f"{header})")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    found = len(data) - header
    if found < expected:
        raise ValueError(f"{path!r}: truncated IDX data: shape {shape} needs {expected} bytes, "
                         f"the file holds {found}")
    if found > expected:
        raise ValueError(f"{path!r}: {found - expected} unexpected trailing bytes after the IDX "
                         f"data of shape {shape}")
    arr = np.frombuffer(data, dtype=dtype, count=expected // dtype.itemsize, offset=header)
    return arr.reshape(shape).astype(dtype.newbyteorder("="))


def _find(directory: str, stem: str) -> str:
    """``directory/stem`` with an optional .gz, also accepting '.' for the '-' before 'idx'."""
    alt = stem.replace("-idx", ".idx")
    names = [stem, stem + ".gz", alt, alt + ".gz"]
    for name in names:
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate):
            return candidate
    raise FileNotFoundError(f"no MNIST file {stem!r} in {directory!r} (looked for "
                            f"{', '.join(names)})")


def load_mnist(path: str | os.PathLike[str], kind: str = "train") -> Split:
    """Read MNIST (or Fashion-MNIST, or any IDX images / labels pair) from a folder.

    Args:
        path: the folder holding ``{kind}-images-idx3-ubyte`` and ``{kind}-labels-idx1-ubyte``,
            each optionally gzipped (``.gz``).
        kind: "train" or "t10k".

    Returns:
        ``(x, y)``: x float32 (N, 1, rows, cols) in [0, 1] (bytes / 255), y int64 (N,).

    Raises:
        FileNotFoundError if a file is missing; ValueError naming the file if its magic number
        (2051 for images, 2049 for labels), sizes or compression are wrong, or the two files
        disagree on N.
    """
    if kind not in ("train", "t10k"):
        raise ValueError(f"kind must be 'train' or 't10k', got {kind!r}")
    directory = os.fspath(path)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"MNIST folder {directory!r} does not exist")
    images_path = _find(directory, f"{kind}-images-idx3-ubyte")
    labels_path = _find(directory, f"{kind}-labels-idx1-ubyte")
    arrays = []
    for file, magic, ndim in ((images_path, 2051, 3), (labels_path, 2049, 1)):
        data = _read_bytes(file)
        head = data[:4]
        if len(head) < 4 or int.from_bytes(head, "big") != magic:
            raise ValueError(f"{file!r}: bad magic number {head.hex() or '(empty file)'}, "
                             f"expected {magic:08x} ({magic}: unsigned bytes, {ndim} dims)")
        arrays.append(_parse_idx(file, data))
    images, labels = arrays
    if len(images) != len(labels):
        raise ValueError(f"{images_path!r} holds {len(images)} images but {labels_path!r} "
                         f"holds {len(labels)} labels")
    x = (images.astype(np.float32) / np.float32(255.0))[:, None, :, :]
    return x, labels.astype(np.int64)
