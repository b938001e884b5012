"""``fastcnn predict MODEL PATH...``: classify image files and folders with a saved model.

Each PATH is an image file (read whatever its extension) or a folder, searched recursively for
the image files :class:`fastcnn.data.ImageFolder` reads (:data:`fastcnn.data.IMAGE_EXTENSIONS`,
any case; hidden files and folders skipped), listed in sorted order. The PATHs keep the order
given; a file named twice is classified once. Images are read as the training pipeline's eval
transform reads them (:func:`fastcnn.data.load_image`: the model's color mode, resized to its
input H x W with bilinear filtering, times the saved ``rescale``), and classified
``--batch-size`` at a time (one forward pass per batch).

Output: one line per image, ``PATH: class (probability), ...`` (``--top k`` classes); with
``--csv FILE`` (``-``: stdout) a CSV table instead, one row per image: ``path,class,
probability`` and, with ``--top k``, ``class_2,probability_2, ... class_k,probability_k``.
The CSV file is written whole or not at all.

Unreadable images (corrupt, truncated, not images) are skipped: each one prints
``warning: PATH: cannot read the image (...); skipped`` on stderr (a
:class:`fastcnn.data.DataWarning`) and the others are still classified, with exit status 0.
Only when no image at all could be read is it an error (exit status 2). A PATH that does not
exist, or no image file found at all, is an error before anything is read.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TextIO

import numpy as np

from .cli_io import writable_file

__all__ = ["add_arguments", "image_paths", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``predict`` sub-command's arguments."""
    p.add_argument("model", metavar="MODEL", help="a model saved by `fastcnn train --out`")
    p.add_argument("images", metavar="PATH", nargs="+",
                   help="image files and folders (searched recursively)")
    p.add_argument("--top", type=int, default=1, help="print the top-k classes (default 1)")
    p.add_argument("--csv", metavar="FILE",
                   help="write the predictions as CSV (one row per image) to FILE; - for stdout")
    p.add_argument("--batch-size", type=int, default=32,
                   help="images per forward pass (default 32)")


def image_paths(paths: Sequence[str]) -> list[str]:
    """The image files ``paths`` name: files as given, folders expanded recursively to their
    image files (:data:`fastcnn.data.IMAGE_EXTENSIONS`) in sorted order; duplicates dropped.

    Raises:
        ValueError: a path that does not exist (all of them named), or no image file at all.
    """
    from .data import IMAGE_EXTENSIONS, DataWarning

    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise ValueError(f"no such file or folder: {', '.join(missing)}")
    exts = " ".join(sorted(IMAGE_EXTENSIONS))
    found: list[str] = []
    seen: set[str] = set()
    empty: list[str] = []
    for p in paths:
        files = sorted(_walk(p, IMAGE_EXTENSIONS)) if os.path.isdir(p) else [p]
        if not files:
            empty.append(p)
        for f in files:
            key = os.path.realpath(f)
            if key not in seen:
                seen.add(key)
                found.append(f)
    if not found:
        raise ValueError(f"no image files in {', '.join(paths)} (extensions: {exts})")
    for p in empty:  # the other paths are still classified
        warnings.warn(f"{p}: the folder holds no image files (extensions: {exts})",
                      DataWarning, stacklevel=2)
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
    mode, size = _input_spec(model, meta, a.model)
    paths = image_paths(a.images)
    names = meta.get("class_names")
    rescale = meta.get("rescale", 1 / 255)  # saved by `fastcnn train`; None: raw 0..255
    scale = 1.0 if rescale is None else float(rescale)
    done = 0
    with _csv_out(a.csv) as out:
        writer = None if out is None else csv.writer(out, lineterminator="\n")
        k = 0
        for batch_paths, x in _batches(paths, mode, size, scale, a.batch_size):
            probs = np.asarray(model.predict(x, batch_size=len(x)))  # one forward pass
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
            raise ValueError(f"none of the {len(paths)} image file(s) could be read (each is "
                             f"named in a warning above)")
    skipped = len(paths) - done
    if skipped:
        print(f"fastcnn: {skipped} of {len(paths)} image(s) could not be read and were "
              f"skipped", file=sys.stderr)
    if a.csv is not None and a.csv != "-":
        print(f"wrote the predictions of {done} image(s) to {a.csv}")
    return 0
