"""Input pipelines: image folders and in-memory arrays, batched, shuffled and augmented.

- :class:`ImageFolder` — Keras' ``flow_from_directory``: one sub-folder per class, images
  decoded with Pillow in background threads and prefetched.
- :class:`ArrayDataset` — the same batching protocol over NCHW arrays in memory.
- Augmentations (``aug(batch, rng) -> batch`` on float32 NCHW batches, Keras semantics):
  :class:`RandomFlip`, :class:`RandomRotation`, :class:`RandomZoom`,
  :class:`RandomTranslation`, :class:`RandomCrop`, :class:`CenterCrop`,
  :class:`RandomBrightness`, :class:`RandomContrast`.

Both datasets are iterables: each ``for`` loop over one is an epoch of ``(x, y)`` batches
(``x`` alone without labels), reshuffled reproducibly from ``seed``; ``len(ds)`` is the
number of batches per epoch. This package imports only NumPy, Pillow and fastcnn's pure-Python
argument checks (``fastcnn._args``) and geometry (``fastcnn._geometry``).
"""

from ._pipeline import BatchIterator, DataWarning
from .arrays import ArrayDataset
from .augment import (
    Augmentation,
    CenterCrop,
    RandomBrightness,
    RandomContrast,
    RandomCrop,
    RandomFlip,
    RandomRotation,
    RandomTranslation,
    RandomZoom,
)
from .folder import IMAGE_EXTENSIONS, ImageFolder, load_image

__all__ = [
    "IMAGE_EXTENSIONS",
    "ArrayDataset",
    "Augmentation",
    "BatchIterator",
    "CenterCrop",
    "DataWarning",
    "ImageFolder",
    "RandomBrightness",
    "RandomContrast",
    "RandomCrop",
    "RandomFlip",
    "RandomRotation",
    "RandomTranslation",
    "RandomZoom",
    "load_image",
]
