"""ImageFolder: batches of images read from one sub-folder per class (Keras'
``flow_from_directory``), decoded with Pillow in background threads."""

from __future__ import annotations

import math
import os
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from PIL import Image

from .._args import check_choice, check_int
from ._pipeline import (
    BatchDataset,
    BatchIterator,
    Produced,
    WorkerPool,
    _Stopped,
    _warn_bad,
    derived_rng,
    wait_future,
)

__all__ = ["IMAGE_EXTENSIONS", "ImageFolder", "load_image"]

#: File extensions (lower case) that are read as images; everything else is ignored.
IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)
COLOR_MODES = {"grayscale": "L", "rgb": "RGB", "rgba": "RGBA"}
CLASS_MODES = ("categorical", "sparse", "binary", None)
INTERPOLATIONS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}
# Modes Pillow converts to L / RGB / RGBA directly; others (CMYK, YCbCr, ...) go through RGB.
_DIRECT_MODES = frozenset({"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX"})
_SPLIT_SEED = 0x5EED  # the validation split does not depend on `seed`; see ImageFolder


def _target_size(target_size: Any) -> tuple[int, int] | None:
    if target_size is None:
        return None
    try:
        h, w = target_size
    except (TypeError, ValueError):
        raise ValueError(f"target_size must be (height, width), got {target_size!r}") from None
    return (check_int(h, "target_size height", minimum=1),
            check_int(w, "target_size width", minimum=1))


def decode_image(path: str, color_mode: str = "rgb",
                 target_size: tuple[int, int] | None = None,
                 interpolation: str = "bilinear") -> np.ndarray:
    """Read one image as a (C, H, W) array with values 0..255: uint8, or float32 for images of
    more than 8 bits (16-bit grayscale is scaled by 255 / 65535)."""
    mode = COLOR_MODES[color_mode]
    resample = INTERPOLATIONS[interpolation]
    with Image.open(path) as img:
        img.load()
        if img.mode in ("I", "F") or img.mode.startswith("I;16"):
            # High bit depth grayscale: scale to 0..255 in float, resize in mode "F".
            arr = np.asarray(img).astype(np.float32)
            if img.mode != "F":
                arr *= np.float32(255.0 / 65535.0)
            if target_size is not None and arr.shape != target_size:
                fimg = Image.fromarray(arr)
                arr = np.asarray(fimg.resize((target_size[1], target_size[0]), resample),
                                 dtype=np.float32)
            chans = [arr] if mode == "L" else [arr] * 3
            if mode == "RGBA":
                chans.append(np.full_like(arr, 255.0))
            return np.stack(chans)
        if img.mode == "P" and "transparency" in img.info:
            img = img.convert("RGBA")  # Pillow asks for this (and warns) otherwise
        elif img.mode not in _DIRECT_MODES:
            img = img.convert("RGB")
        if img.mode != mode:
            img = img.convert(mode)
        if target_size is not None and img.size != (target_size[1], target_size[0]):
            img = img.resize((target_size[1], target_size[0]), resample)
        arr = np.asarray(img)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def load_image(path: str | os.PathLike[str], color_mode: str = "rgb",
               target_size: tuple[int, int] | None = None,
               interpolation: str = "bilinear") -> np.ndarray:
    """Read one image file as ImageFolder does.

    Args:
        path: the image file.
        color_mode: "rgb", "grayscale" or "rgba"; any Pillow mode is converted (palette,
            CMYK, 16-bit grayscale scaled to 8 bits, alpha dropped or added as 255).
        target_size: (height, width) to resize to, or None to keep the size.
        interpolation: "nearest", "bilinear", "bicubic", "lanczos", "box" or "hamming".

    Returns:
        (C, H, W) float32 with values in [0, 255]; C = 1, 3 or 4.
    """
    check_choice(color_mode, COLOR_MODES, "color_mode")
    check_choice(interpolation, INTERPOLATIONS, "interpolation")
    return decode_image(os.fspath(path), color_mode, _target_size(target_size),
                        interpolation).astype(np.float32)


def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _scan_class(root: str, class_dir: str, follow_links: bool) -> list[str]:
    """Image files under ``root/class_dir`` (recursively, hidden entries skipped), as sorted
    paths relative to ``root``. With ``follow_links`` each real directory is visited once, so
    symlink loops end."""
    top = os.path.join(root, class_dir)
    seen: set[str] = set()
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(top, followlinks=follow_links):
        if follow_links:
            real = os.path.realpath(dirpath)
            if real in seen:
                dirnames[:] = []
                continue
            seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = os.path.relpath(dirpath, root)
        found.extend(os.path.join(rel, f) for f in filenames if _is_image_name(f))
    return sorted(found)


class ImageFolder(BatchDataset):
    """Batches of images from ``directory/<class name>/**/<image>`` (Keras' flow_from_directory).

    Each non-hidden sub-folder of ``directory`` is a class; classes are numbered in sorted
    name order (``class_indices``). Images are found recursively in each class folder by
    extension (png jpg jpeg bmp gif tif tiff webp ppm pgm, any case); hidden (dot) files and
    folders and other files are ignored. Files are listed in sorted order per class.

    Iterating gives one epoch: ``(x, y)`` batches, or ``x`` alone when ``class_mode`` is None.

    - x: float32 (N, C, H, W), C = 1 / 3 / 4 for "grayscale" / "rgb" / "rgba"; per batch the
      pixels (0..255) are augmented (``augment``, in order), then multiplied by ``rescale``,
      then standardised (``(x - mean) / std`` per channel).
    - y: "sparse" int64 (N,) class ids; "categorical" float32 (N, classes) one-hot;
      "binary" float32 (N,) of 0 / 1 (exactly two classes).

    Each new iteration is a new epoch; with ``shuffle`` its order is a permutation drawn from
    ``seed`` and the epoch number, so the same seed replays the same sequence of epochs
    (and augmentations). ``len(ds)`` is the number of batches in an epoch; batches are full
    except possibly the last (dropped with ``drop_last``).

    Unreadable files (corrupt, truncated, not really images) are found when first decoded:
    a :class:`~fastcnn.data.DataWarning` names them, the batch is filled from the next files,
    and later epochs (and ``len``) leave them out (``bad_files``).

    Args:
        directory: the root folder.
        target_size: (height, width) every image is resized to.
        color_mode: "rgb", "grayscale" or "rgba"; every Pillow mode (L, RGBA, P, I;16, CMYK,
            ...) is converted to it; 16-bit images are scaled to 0..255.
        class_mode: "categorical", "sparse", "binary" or None.
        batch_size: images per batch.
        shuffle: reshuffle every epoch; False keeps the sorted file order (``filenames``).
        seed: int for reproducible shuffles and augmentations; None draws one at random.
        validation_split: fraction of each class held out, in [0, 1); needs ``subset``.
        subset: "training" or "validation" (needs ``validation_split``). The split takes
            round(validation_split * n) files of every class for validation by a fixed
            pseudo-random choice that does not depend on ``seed``: the two subsets never
            overlap, even when built with different seeds.
        rescale: factor applied after augmentation (e.g. 1 / 255), or None.
        standardize: False; True to subtract / divide by the per-channel mean / std of the
            training files (computed once, on the images after resize and ``rescale``, without
            augmentation; for subset="validation" also from the training files); or a
            ``(mean, std)`` pair of numbers or per-channel sequences, in rescaled units.
        augment: augmentations (``aug(batch, rng) -> batch``), applied per batch in order.
        interpolation: resize filter: "nearest", "bilinear", "bicubic", "lanczos", "box",
            "hamming".
        num_workers: decode threads; None picks min(8, CPUs + 2); 0 decodes in the producer.
        prefetch: batches prepared ahead in the background; 0 makes everything synchronous.
        follow_links: descend into symlinked folders (each real folder once).
        drop_last: drop the last, short batch.
        classes: optional list of class folder names to use, in this label order.

    Attributes:
        class_indices: {class name: label}. classes: int64 (samples,) label per file.
        filenames: file paths relative to ``directory``; filepaths: full paths.
        samples: number of files. num_classes. image_shape: (C, H, W) of one output image.
        bad_files: files found unreadable so far.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        target_size: tuple[int, int] = (256, 256),
        color_mode: str = "rgb",
        class_mode: str | None = "categorical",
        batch_size: int = 32,
        shuffle: bool = True,
        seed: int | None = None,
        validation_split: float = 0.0,
        subset: str | None = None,
        rescale: float | None = None,
        standardize: bool | tuple[Any, Any] = False,
        augment: Any = None,
        interpolation: str = "bilinear",
        num_workers: int | None = None,
        prefetch: int = 2,
        follow_links: bool = False,
        drop_last: bool = False,
        classes: Sequence[str] | None = None,
    ) -> None:
        super().__init__(batch_size=batch_size, shuffle=shuffle, seed=seed, augment=augment,
                         rescale=rescale, drop_last=drop_last, prefetch=prefetch)
        self.directory = os.fspath(directory)
        size = _target_size(target_size)
        if size is None:
            raise ValueError("target_size must be (height, width), got None")
        self.target_size = size
        self.color_mode = check_choice(color_mode, COLOR_MODES, "color_mode")
        self.class_mode = check_choice(class_mode, CLASS_MODES, "class_mode")
        self.interpolation = check_choice(interpolation, INTERPOLATIONS, "interpolation")
        if num_workers is None:
            num_workers = min(8, (os.cpu_count() or 1) + 2)
        self.num_workers = check_int(num_workers, "num_workers", minimum=0)
        self.follow_links = bool(follow_links)
        if isinstance(validation_split, bool) or not isinstance(
                validation_split, (int, float, np.integer, np.floating)) or not (
                0.0 <= validation_split < 1.0):
            raise ValueError(f"validation_split must be a number in [0, 1), got "
                             f"{validation_split!r}")
        self.validation_split = float(validation_split)
        self.subset = check_choice(subset, (None, "training", "validation"), "subset")
        if (self.subset is None) != (self.validation_split == 0.0):
            raise ValueError("validation_split and subset go together: give both (e.g. 0.2 "
                             f"and 'training'), or neither; got validation_split="
                             f"{validation_split!r}, subset={subset!r}")

        names = self._class_names(classes)
        if self.class_mode == "binary" and len(names) != 2:
            raise ValueError(f"class_mode='binary' needs exactly 2 classes, found {len(names)} "
                             f"in {self.directory!r}: {names}")
        self.class_indices: dict[str, int] = {name: i for i, name in enumerate(names)}
        per_class: list[list[str]] = []
        for name in names:
            files = _scan_class(self.directory, name, self.follow_links)
            if not files:
                raise ValueError(f"class folder {os.path.join(self.directory, name)!r} holds "
                                 f"no images (extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})")
            per_class.append(files)
        self._split_files = [self._split(files, label) for label, files in enumerate(per_class)]
        pick = 1 if self.subset == "validation" else 0
        filenames: list[str] = []
        labels: list[int] = []
        for label, parts in enumerate(self._split_files):
            filenames.extend(parts[pick])
            labels.extend([label] * len(parts[pick]))
        if not filenames:
            raise ValueError(f"the {self.subset} subset of {self.directory!r} holds no images "
                             f"(validation_split={self.validation_split})")
        self.filenames = filenames
        self.filepaths = [os.path.join(self.directory, f) for f in filenames]
        self.classes = np.asarray(labels, dtype=np.int64)
        self.samples = len(filenames)
        self.num_classes = len(names)

        self._lock = threading.Lock()
        self._bad: dict[int, BaseException] = {}
        self._active_cache: np.ndarray | None = None
        self._mean: np.ndarray | None = None
        self._std: np.ndarray | None = None
        self._standardize = self._check_standardize(standardize)

    # ----------------------------------------------------------------------------- listing

    def _class_names(self, classes: Sequence[str] | None) -> list[str]:
        if not os.path.isdir(self.directory):
            raise ValueError(f"directory {self.directory!r} does not exist or is not a folder")
        found = sorted(e.name for e in os.scandir(self.directory)
                       if not e.name.startswith(".") and e.is_dir())
        if classes is None:
            if not found:
                raise ValueError(f"directory {self.directory!r} has no class sub-folders "
                                 "(expected directory/<class name>/<images>)")
            return found
        names = [str(c) for c in classes]
        missing = [c for c in names if c not in found]
        if missing or len(set(names)) != len(names) or not names:
            raise ValueError(f"classes must be distinct sub-folders of {self.directory!r}; "
                             f"not found: {missing}, given: {names}")
        return names

    def _split(self, files: list[str], label: int) -> tuple[list[str], list[str]]:
        """(training, validation) files of one class, each in sorted order."""
        if self.validation_split == 0.0:
            return files, []
        n_val = math.floor(self.validation_split * len(files) + 0.5)
        perm = derived_rng(_SPLIT_SEED, 2, label).permutation(len(files))
        val = set(perm[:n_val].tolist())
        return ([f for i, f in enumerate(files) if i not in val],
                [f for i, f in enumerate(files) if i in val])

    # ------------------------------------------------------------------------ bad files

    @property
    def bad_files(self) -> list[str]:
        """Paths found unreadable so far (left out of later epochs)."""
        with self._lock:
            return [self.filepaths[i] for i in sorted(self._bad)]

    def _mark_bad(self, i: int, exc: BaseException) -> bool:
        """Record file i as unreadable; True if it is news."""
        with self._lock:
            if i in self._bad:
                return False
            self._bad[i] = exc
            self._active_cache = None
            return True

    def _active_items(self) -> np.ndarray:
        with self._lock:
            if self._active_cache is None:
                self._active_cache = np.asarray(
                    [i for i in range(self.samples) if i not in self._bad], dtype=np.int64)
            return self._active_cache

    # ---------------------------------------------------------------------- decoding

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one output image (after any cropping augmentation)."""
        c = len(COLOR_MODES[self.color_mode])
        return self._augmented_shape((c, *self.target_size))

    def _load(self, i: int) -> np.ndarray:
        return decode_image(self.filepaths[i], self.color_mode, self.target_size,
                            self.interpolation)

    def _decoded(self, order: Sequence[int] | np.ndarray, stop: threading.Event,
                 pool: WorkerPool | None, window: int) -> Iterator[tuple[int, Any]]:
        """(i, array) for the readable files of ``order``, in order; (i, exception) for the
        others. Keeps up to ``window`` decodes in flight in ``pool``."""
        pending: deque[tuple[int, Any]] = deque()
        pos = 0
        try:
            while True:
                while pool is not None and pos < len(order) and len(pending) < window:
                    i = int(order[pos])
                    pending.append((i, pool.submit(self._load, i)))
                    pos += 1
                result: Any
                if pool is None:
                    if pos == len(order):
                        return
                    if stop.is_set():
                        raise _Stopped
                    i = int(order[pos])
                    pos += 1
                    try:
                        result = self._load(i)
                    except Exception as exc:
                        result = exc
                else:
                    if not pending:
                        return
                    i, fut = pending.popleft()
                    try:
                        result = wait_future(fut, stop)
                    except _Stopped:
                        raise
                    except Exception as exc:
                        result = exc
                yield i, result
        finally:
            for _, fut in pending:
                fut.cancel()

    def _produce(self, order: np.ndarray, epoch: int,
                 stop: threading.Event) -> Iterator[Produced]:
        mean, std = self._stats()
        pool = WorkerPool(self.num_workers) if self.num_workers > 0 else None
        window = max(2 * self.num_workers, self.batch_size * (self.prefetch + 1))
        imgs: list[np.ndarray] = []
        idxs: list[int] = []
        bad: list[tuple[str, BaseException]] = []
        b = 0
        decoded = self._decoded(order, stop, pool, window)
        try:
            for i, arr in decoded:
                if isinstance(arr, BaseException):
                    if self._mark_bad(i, arr):
                        bad.append((self.filepaths[i], arr))
                    continue
                imgs.append(arr)
                idxs.append(i)
                if len(imgs) == self.batch_size:
                    yield self._make_batch(imgs, idxs, epoch, b, mean, std), bad
                    b += 1
                    imgs, idxs, bad = [], [], []
            if imgs and not self.drop_last:
                yield self._make_batch(imgs, idxs, epoch, b, mean, std), bad
            elif bad:
                yield None, bad
        finally:
            decoded.close()  # cancels the decodes still queued, before the pool stops
            if pool is not None:
                pool.close()

    def _make_batch(self, imgs: list[np.ndarray], idxs: list[int], epoch: int, b: int,
                    mean: np.ndarray | None, std: np.ndarray | None) -> Any:
        x = np.stack(imgs).astype(np.float32)
        x = self._transform(x, epoch, b)
        if mean is not None and std is not None:
            x = (x - mean[:, None, None]) / std[:, None, None]
        labels = self.classes[idxs]
        if self.class_mode is None:
            return x
        if self.class_mode == "sparse":
            y = labels.copy()
        elif self.class_mode == "binary":
            y = labels.astype(np.float32)
        else:
            y = np.zeros((len(idxs), self.num_classes), dtype=np.float32)
            y[np.arange(len(idxs)), labels] = 1.0
        return x, y

    # ------------------------------------------------------------------- standardize

    def _check_standardize(self, standardize: Any) -> bool:
        if isinstance(standardize, bool):
            return standardize
        c = len(COLOR_MODES[self.color_mode])
        try:
            mean, std = standardize
            mean = np.broadcast_to(np.asarray(mean, dtype=np.float32), (c,)).copy()
            std = np.broadcast_to(np.asarray(std, dtype=np.float32), (c,)).copy()
        except (TypeError, ValueError):
            raise ValueError(f"standardize must be True, False or a (mean, std) pair of numbers "
                             f"or {c}-channel sequences, got {standardize!r}") from None
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std > 0)):
            raise ValueError(f"standardize needs finite means and positive stds, got "
                             f"{standardize!r}")
        self._mean, self._std = mean, std
        return True

    @property
    def mean(self) -> np.ndarray | None:
        """Per-channel mean (C,) used by ``standardize`` (computed on first use), or None."""
        return self._stats()[0]

    @property
    def std(self) -> np.ndarray | None:
        """Per-channel std (C,) used by ``standardize`` (computed on first use), or None."""
        return self._stats()[1]

    def _stats(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        if not self._standardize:
            return None, None
        if self._mean is None:
            self._compute_stats()
        return self._mean, self._std

    def _compute_stats(self) -> None:
        """Per-channel mean / std over the training files (after resize and rescale)."""
        train = [f for parts in self._split_files for f in parts[0]]
        paths = [os.path.join(self.directory, f) for f in train]
        own = {p: i for i, p in enumerate(self.filepaths)}
        c = len(COLOR_MODES[self.color_mode])
        total = np.zeros(c)
        total_sq = np.zeros(c)
        count = 0
        scale = 1.0 if self.rescale is None else self.rescale
        bad: list[tuple[str, BaseException]] = []
        stop = threading.Event()
        pool = WorkerPool(self.num_workers) if self.num_workers > 0 else None

        def load(j: int) -> np.ndarray:
            return decode_image(paths[j], self.color_mode, self.target_size,
                                self.interpolation)

        pending: deque[tuple[int, Any]] = deque()
        try:
            for j in range(len(paths) + 1):
                if j < len(paths):
                    pending.append((j, pool.submit(load, j) if pool else None))
                while pending and (j == len(paths) or len(pending) > 4 * max(1, self.num_workers)):
                    k, fut = pending.popleft()
                    try:
                        arr = load(k) if fut is None else wait_future(fut, stop)
                    except Exception as exc:
                        bad.append((paths[k], exc))
                        if paths[k] in own:
                            self._mark_bad(own[paths[k]], exc)
                        continue
                    v = arr.reshape(c, -1).astype(np.float64) * scale
                    total += v.sum(axis=1)
                    total_sq += np.square(v).sum(axis=1)
                    count += v.shape[1]
        finally:
            for _, fut in pending:
                if fut is not None:
                    fut.cancel()
            if pool is not None:
                pool.close()
        if bad:
            _warn_bad(bad, stacklevel=4)
        if count == 0:
            raise ValueError(f"standardize=True: no readable training images in "
                             f"{self.directory!r} to compute the mean and std from")
        mean = total / count
        std = np.sqrt(np.maximum(total_sq / count - np.square(mean), 0.0))
        std[std == 0] = 1.0
        self._mean = mean.astype(np.float32)
        self._std = std.astype(np.float32)

    def __iter__(self) -> BatchIterator:
        """Start the next epoch (computes the ``standardize`` statistics first, if needed)."""
        self._stats()
        return super().__iter__()

    def __repr__(self) -> str:
        return (f"ImageFolder({self.directory!r}: {self.samples} images, {self.num_classes} "
                f"classes, batch_size={self.batch_size}, subset={self.subset!r})")
