"""Up-front checks of the ``fastcnn`` command's output paths (shared by ``train`` and
``predict``): whatever would fail after the work is done is refused before it starts."""

from __future__ import annotations

import os
import tempfile

__all__ = ["writable_dir", "writable_file"]


def writable_file(path: str, option: str) -> None:
    """Fail (ValueError naming ``option`` and ``path``) when ``path`` can't be written: its
    folder missing or read-only, or ``path`` a folder."""
    if os.path.isdir(path):
        raise ValueError(f"{option} {path}: is a folder; give a file name")
    writable_dir(os.path.dirname(os.path.abspath(path)), option, path)


def writable_dir(folder: str, option: str, path: str, create: bool = False) -> None:
    """Fail when files can't be written into ``folder`` (``create``: make it first)."""
    if create:
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as e:
            raise ValueError(f"{option} {path}: cannot create the folder "
                             f"({e.strerror or e})") from None
    if not os.path.isdir(folder):
        raise ValueError(f"{option} {path}: the folder {folder} does not exist"
                         if not os.path.exists(folder) else
                         f"{option} {path}: {folder} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".fastcnn-write-check-")
    except OSError as e:
        raise ValueError(f"{option} {path}: cannot write into {folder} "
                         f"({e.strerror or e})") from None
    os.close(fd)
    os.remove(probe)
