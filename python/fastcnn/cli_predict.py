"""``fastcnn predict MODEL PATH...``: classify image files, folders and arrays with a saved model.

Each PATH is an array file (below), an image file (read whatever its extension) or a folder,
searched recursively for the image files :class:`fastcnn.data.ImageFolder` reads
(:data:`fastcnn.data.IMAGE_EXTENSIONS`, any case; hidden files and folders skipped), listed in
sorted order. The PATHs keep the order given; a file named twice is classified once. Images are
read as the training pipeline's eval transform reads them (:func:`fastcnn.data.load_image`: the
model's color mode, resized to its input H x W with bilinear filtering, times the saved
``rescale``), and classified ``--batch-size`` at a time (one forward pass per batch).

A PATH ending in ``.npy`` or ``.npz`` (any case) is an array of images, fed to the model as it
is (no resize, no ``rescale``: as ``model.predict(x, data_format=...)``), ``--batch-size`` rows
at a time: a ``.npy`` holds one array, read lazily (memory-mapped); a ``.npz`` its array named
``x``, or its only array (several and no ``x``: an error listing their names). The array is
(N, C, H, W), or (N, H, W, C) with ``--data-format channels_last`` (converted to NCHW once per
batch); ``--data-format`` applies to array files only (images read from files are always
decoded to the model's layout). Its rows are named ``PATH[i]`` in the output. Pickled data and
object arrays are refused (``allow_pickle=False``: unpickling can run code). Every array file is
checked before anything is classified: a shape the model does not take is the model's own error
(which names the channels-last fix), prefixed by the file name. Image and array PATHs mix
freely; the output follows the order of the PATHs.

Output: one line per image, ``PATH: class (probability), ...`` (``--top k`` classes); with
``--csv FILE`` (``-``: stdout) a CSV table instead, one row per image: ``path,class,
probability`` and, with ``--top k``, ``class_2,probability_2, ... class_k,probability_k``.
The CSV file is written whole or not at all.

Unreadable images (corrupt, truncated, not images) are skipped: each one prints
``warning: PATH: cannot read the image (...); skipped`` on stderr (a
:class:`fastcnn.data.DataWarning`) and the others are still classified, with exit status 0.
Only when no image at all could be read is it an error (exit status 2). A PATH that does not
exist, or no image file found at all (and no array file), is an error before anything is read.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TextIO

import numpy as np

from ._layout import DATA_FORMATS
from .cli_io import writable_file

__all__ = ["ARRAY_EXTENSIONS", "add_arguments", "image_paths", "is_array_file", "load_array",
           "run"]

#: the PATH endings read as arrays of images rather than as image files
ARRAY_EXTENSIONS = (".npy", ".npz")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``predict`` sub-command's arguments."""
    p.add_argument("model", metavar="MODEL", help="a model saved by `fastcnn train --out`")
    p.add_argument("images", metavar="PATH", nargs="+",
                   help="image files, folders (searched recursively) and .npy / .npz arrays "
                        "of images")
    p.add_argument("--top", type=int, default=1, help="print the top-k classes (default 1)")
    p.add_argument("--csv", metavar="FILE",
                   help="write the predictions as CSV (one row per image) to FILE; - for stdout")
    p.add_argument("--batch-size", type=int, default=32,
                   help="images per forward pass (default 32)")
    p.add_argument("--data-format", choices=DATA_FORMATS, default="channels_first",
                   help="the layout of .npy / .npz arrays: channels_first (N, C, H, W, the "
                        "default) or channels_last (N, H, W, C); images read from files are "
                        "always decoded to the model's layout")


def image_paths(paths: Sequence[str]) -> list[str]:
    """The image files ``paths`` name: files as given, folders expanded recursively to their
    image files (:data:`fastcnn.data.IMAGE_EXTENSIONS`) in sorted order; duplicates dropped.

    Raises:
        ValueError: a path that does not exist (all of them named), or no image file at all.
    """
    return [f for files in _image_files(paths) for f in files]


def _image_files(paths: Sequence[str], required: bool = True) -> list[list[str]]:
    """:func:`image_paths` per path (a file named before is dropped from later lists);
    ``required=False``: no image file at all is not an error (array files are classified),
    only a warning per empty folder."""
    from .data import IMAGE_EXTENSIONS, DataWarning

    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise ValueError(f"no such file or folder: {', '.join(missing)}")
    exts = " ".join(sorted(IMAGE_EXTENSIONS))
    found: list[list[str]] = []
    seen: set[str] = set()
    empty: list[str] = []
    for p in paths:
        files = sorted(_walk(p, IMAGE_EXTENSIONS)) if os.path.isdir(p) else [p]
        if not files:
            empty.append(p)
        found.append([])
        for f in files:
            key = os.path.realpath(f)
            if key not in seen:
                seen.add(key)
                found[-1].append(f)
    if required and not any(found):
        raise ValueError(f"no image files in {', '.join(paths)} (extensions: {exts})")
    for p in empty:  # the other paths are still classified
        warnings.warn(f"{p}: the folder holds no image files (extensions: {exts})",
                      DataWarning, stacklevel=3)
    return found


def _walk(folder: str, extensions: frozenset[str]) -> Iterator[str]:
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for f in filenames:
            if not f.startswith(".") and os.path.splitext(f)[1].lower() in extensions:
                yield os.path.join(dirpath, f)


def _read(path: str, mode: str, size: tuple[int, int]) -> np.ndarray | Exception:
    """One image (C, H, W) float32 0..255 as the pipeline decodes it, or the exception."""
    from .data import load_image

    try:
        return load_image(path, color_mode=mode, target_size=size)
    except Exception as e:  # any decode failure (PIL raises many kinds): skipped, named
        return e


def _batches(paths: list[str], mode: str, size: tuple[int, int], scale: float,
             batch_size: int) -> Iterator[tuple[list[str], np.ndarray]]:
    """``(paths, x (N, C, H, W) float32)`` of the readable images, ``batch_size`` at a time
    (decoded in threads); a warning names each unreadable one."""
    from .data import DataWarning

    workers = min(8, (os.cpu_count() or 1) + 2)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for i in range(0, len(paths), batch_size):
            chunk = paths[i:i + batch_size]
            ok, imgs = [], []
            for path, img in zip(chunk, pool.map(lambda q: _read(q, mode, size), chunk),
                                 strict=True):
                if isinstance(img, Exception):
                    text = " ".join(str(img).split()) or type(img).__name__
                    warnings.warn(f"{path}: cannot read the image ({text}); skipped",
                                  DataWarning, stacklevel=2)
                    continue
                ok.append(path)
                imgs.append(img)
            if imgs:  # the training pipeline's eval transform: stack, then rescale (float32)
                x = np.stack(imgs).astype(np.float32) * np.float32(scale)
                yield ok, np.ascontiguousarray(x, dtype=np.float32)


def _input_spec(model: Any, meta: dict[str, Any], name: str) -> tuple[str, tuple[int, int]]:
    shape = model.input_shape
    if shape is None or len(shape) != 3:
        raise ValueError(f"{name}: predict needs an image model with input (C, H, W), "
                         f"got input shape {shape}")
    c, h, w = shape
    mode = meta.get("color_mode") or {1: "grayscale", 3: "rgb", 4: "rgba"}.get(c)
    if mode is None:
        raise ValueError(f"{name}: can't read images for {c} input channels")
    return mode, (h, w)


@contextlib.contextmanager
def _csv_out(target: str | None) -> Iterator[TextIO | None]:
    """The CSV stream: None without --csv, stdout for ``-``, else a temporary file next to
    ``target`` that replaces it only when everything went well."""
    if target is None:
        yield None
        return
    if target == "-":
        yield sys.stdout
        return
    folder = os.path.dirname(os.path.abspath(target))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".fastcnn-csv-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
            yield f
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def is_array_file(path: str) -> bool:
    """Whether PATH ``path`` is read as an array (:data:`ARRAY_EXTENSIONS`, any case; not a
    folder)."""
    return os.path.splitext(path)[1].lower() in ARRAY_EXTENSIONS and not os.path.isdir(path)


_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a member first / an empty archive


def load_array(path: str) -> np.ndarray:
    """The array of images in a ``.npy`` file (memory-mapped: read as batches need it) or a
    ``.npz`` file (its array ``x``, or its only array), never unpickled.

    Returns:
        the array as stored, any shape (checked against the model by the caller); bool,
        integer or floating dtype.

    Raises:
        ValueError: not a NumPy file, pickled data or an object array (``allow_pickle=False``),
            a ``.npz`` with no array or several and none named ``x`` (their names listed), or a
            dtype that is not a number.
    """
    with open(path, "rb") as f:
        head = f.read(6)
    refused = (f"{path}: holds pickled Python objects, which fastcnn does not load "
               f"(allow_pickle=False: unpickling can run code); save a numeric array instead, "
               f"e.g. np.save(path, np.asarray(x, dtype=np.float32))")
    try:
        a = _read_array(path, head, refused)
    except (zipfile.BadZipFile, EOFError) as e:  # truncated or corrupt
        raise ValueError(f"{path}: not a readable .npy / .npz file ({e})") from e
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{path}: an array of dtype {a.dtype}; predict takes numbers (bool, "
                         f"integer or floating images)")
    return a


def _read_array(path: str, head: bytes, refused: str) -> np.ndarray:
    """:func:`load_array`'s reading, by the file's first bytes ``head``."""
    if head.startswith(_ZIP_MAGIC):  # our own handle: np.load leaks its own on a corrupt zip
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as z:
            names = list(z.files)
            if "x" in names:
                name = "x"
            elif len(names) == 1:
                name = names[0]
            else:
                listed = ", ".join(names) if names else "none"
                raise ValueError(f"{path}: a .npz of images needs its array named 'x' or a "
                                 f"single array; it holds {len(names)} array(s): {listed}; "
                                 f"save it as np.savez(path, x=images)")
            try:
                a = z[name]
            except ValueError as e:  # an object array
                raise ValueError(refused.replace("holds", f"holds, as {name!r},", 1)) from e
    elif head == _NPY_MAGIC:
        try:
            a = np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError:  # not mappable (an object array, ...): read whole, never unpickled
            try:
                a = np.load(path, allow_pickle=False)
            except ValueError as e:
                if "allow_pickle" in str(e):  # an object array
                    raise ValueError(refused) from e
                raise ValueError(f"{path}: not a readable .npy file ({e})") from e
    elif head[:1] == b"\x80":  # a pickle (protocol 2 and later)
        raise ValueError(refused)
    else:
        raise ValueError(f"{path}: not a NumPy .npy / .npz file (it does not start as one); "
                         f"write arrays with np.save / np.savez")
    return a


def _cli_hint(message: str, data_format: str) -> str:
    """The model's message with the command line's spelling of ``data_format=`` added."""
    if data_format == "channels_first" and 'data_format="channels_last"' in message:
        return f"{message} (on the command line: --data-format channels_last)"
    if data_format == "channels_last" and 'drop data_format="channels_last"' in message:
        return f"{message} (on the command line: drop --data-format channels_last)"
    return message


def _check_array(model: Any, path: str, x: np.ndarray, data_format: str) -> None:
    """ValueError, prefixed by ``path``, when the model does not take ``x`` (N, C, H, W) /
    (N, H, W, C): the model's own check, on the first row (one small forward pass)."""
    layout = "(N, H, W, C)" if data_format == "channels_last" else "(N, C, H, W)"
    if x.ndim != 4:
        fix = "x[None]" if x.ndim == 3 else "an array of images"
        raise ValueError(f"{path}: an array of shape {x.shape}; predict takes a batch of images "
                         f"{layout} (--data-format {data_format}); for one image save {fix}")
    if len(x) == 0:
        return
    try:
        model.predict(np.asarray(x[:1]), batch_size=1, data_format=data_format)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path} (an array of shape {x.shape}, --data-format {data_format}): "
                         f"{_cli_hint(str(e), data_format)}") from e


def _sources(paths: Sequence[str], model: Any, meta: dict[str, Any], name: str,
             data_format: str) -> list[tuple[str, Any]]:
    """The PATHs in order as ``("images", files)`` (runs of image PATHs) and ``("array", (path,
    x))``; every array file loaded and checked against the model; duplicates dropped."""
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise ValueError(f"no such file or folder: {', '.join(missing)}")
    arrays = [p for p in paths if is_array_file(p)]
    image_args = [p for p in paths if not is_array_file(p)]
    lists = _image_files(image_args, required=not arrays) if image_args else []
    if any(lists):
        _input_spec(model, meta, name)  # images need a color mode
    elif model.input_shape is None or len(model.input_shape) != 3:
        raise ValueError(f"{name}: predict needs an image model with input (C, H, W), "
                         f"got input shape {model.input_shape}")
    per_path = iter(lists)  # in the order of the image PATHs
    out: list[tuple[str, Any]] = []
    seen: set[str] = set()
    for p in paths:
        if not is_array_file(p):
            files = next(per_path)  # a file named before is not in the later lists
            if files and out and out[-1][0] == "images":
                out[-1][1].extend(files)
            elif files:
                out.append(("images", list(files)))
            continue
        key = os.path.realpath(p)
        if key in seen:
            continue
        seen.add(key)
        x = load_array(p)
        _check_array(model, p, x, data_format)
        if len(x) == 0:
            from .data import DataWarning

            warnings.warn(f"{p}: the array holds no images (shape {x.shape})", DataWarning,
                          stacklevel=2)
        out.append(("array", (p, x)))
    return out


def _array_batches(path: str, x: np.ndarray, batch_size: int
                   ) -> Iterator[tuple[list[str], np.ndarray]]:
    """``(names PATH[i], rows)`` of an array, ``batch_size`` rows at a time."""
    for i in range(0, len(x), batch_size):
        rows = np.asarray(x[i:i + batch_size])
        yield [f"{path}[{j}]" for j in range(i, i + len(rows))], rows


def run(a: argparse.Namespace) -> int:
    """Run ``fastcnn predict`` (see the module docstring); returns the exit status."""
    from .saving import load_model

    if a.top < 1:
        raise ValueError(f"--top must be >= 1 (the number of classes to print), got {a.top}")
    if a.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {a.batch_size}")
    if a.csv is not None and a.csv != "-":
        writable_file(a.csv, "--csv")
    model = load_model(a.model, compile=False)
    meta = getattr(model, "metadata", None) or {}
    sources = _sources(a.images, model, meta, a.model, a.data_format)
    n_files = sum(len(v) for kind, v in sources if kind == "images")
    n_rows = sum(len(v[1]) for kind, v in sources if kind == "array")
    names = meta.get("class_names")
    rescale = meta.get("rescale", 1 / 255)  # saved by `fastcnn train`; None: raw 0..255
    scale = 1.0 if rescale is None else float(rescale)
    done = 0
    with _csv_out(a.csv) as out:
        writer = None if out is None else csv.writer(out, lineterminator="\n")
        k = 0
        for batch_paths, x, fmt in _all_batches(sources, model, meta, a.model, scale,
                                                 a.batch_size, a.data_format):
            probs = np.asarray(model.predict(x, batch_size=len(x), data_format=fmt))  # one pass
            if k == 0:
                k = min(a.top, probs.shape[1])
                if writer is not None:
                    writer.writerow(["path", "class", "probability",
                                     *[f"{c}_{j}" for j in range(2, k + 1)
                                       for c in ("class", "probability")]])
            for path, p in zip(batch_paths, probs, strict=True):
                best = np.argsort(-p, kind="stable")[:k]
                label = [str(names[i]) if names else str(int(i)) for i in best]
                if writer is None:
                    parts = [f"{c} ({p[i]:.4f})" for c, i in zip(label, best, strict=True)]
                    print(f"{path}: {', '.join(parts)}")
                else:
                    writer.writerow([path, *[v for c, i in zip(label, best, strict=True)
                                             for v in (c, f"{p[i]:.6f}")]])
            done += len(batch_paths)
        if done == 0:
            if n_files:
                raise ValueError(f"none of the {n_files} image file(s) could be read (each is "
                                 f"named in a warning above)")
            raise ValueError("no images to classify: the arrays hold none (each is named in a "
                             "warning above)")
    skipped = n_files + n_rows - done
    if skipped:
        print(f"fastcnn: {skipped} of {n_files} image(s) could not be read and were "
              f"skipped", file=sys.stderr)
    if a.csv is not None and a.csv != "-":
        print(f"wrote the predictions of {done} image(s) to {a.csv}")
    return 0


def _all_batches(sources: list[tuple[str, Any]], model: Any, meta: dict[str, Any], name: str,
                 scale: float, batch_size: int, data_format: str
                 ) -> Iterator[tuple[list[str], np.ndarray, str]]:
    """``(names, x, data_format of x)`` of every source in order: decoded image files (NCHW)
    and array rows (as given, in ``data_format``)."""
    for kind, value in sources:
        if kind == "images":
            mode, size = _input_spec(model, meta, name)
            for paths, x in _batches(value, mode, size, scale, batch_size):
                yield paths, x, "channels_first"
        else:
            for rows_names, x in _array_batches(*value, batch_size):
                yield rows_names, x, data_format
