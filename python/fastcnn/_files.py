"""The file container under :mod:`fastcnn.saving`: atomic writes (errors name the user's path,
never the hidden temporary), the pickle-free ``.npz`` reader (files that are not one are named
and described, never with NumPy's ``allow_pickle`` advice), the formats' names and the check
that a stored array fits a weight. Imports no model code.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
import zipfile
from collections.abc import Callable
from typing import BinaryIO

import numpy as np

__all__ = [
    "MODEL_FORMAT",
    "MODEL_FORMATS",
    "WEIGHTS_FORMAT",
    "WHAT_FILE",
    "atomic_write",
    "checked_pair",
    "describe_foreign",
    "read_npz",
    "savez_atomic",
]

#: ``format`` of a file written by :func:`save` (architecture, weights, training state).
MODEL_FORMAT = "fastcnn.Model/1"
#: every ``format`` a whole-model file may carry: files saved before graph models existed
#: say "fastcnn.Sequential/1" (the same layout), and load as before
MODEL_FORMATS = (MODEL_FORMAT, "fastcnn.Sequential/1")
#: ``format`` of a file written by :func:`save_weights` (weights only).
WEIGHTS_FORMAT = "fastcnn.weights/1"


def savez_atomic(path: str | os.PathLike[str], arrays: dict[str, np.ndarray]) -> None:
    """``np.savez`` to ``path`` atomically (:func:`atomic_write`)."""
    atomic_write(path, lambda f: np.savez(f, **arrays))  # type: ignore[arg-type]


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> None:
    """``write(f)`` to ``path`` atomically (:func:`_atomic_write`); an OSError (no such
    directory, no permission, a full disk, ...) is raised again as the same class with a
    message naming ``path`` and the fix, never the hidden temporary file, and leaves nothing
    behind (``path`` keeps its previous content)."""
    try:
        _atomic_write(path, write)
    except OSError as e:
        raise _write_error(e, os.fspath(path)) from None


def _write_error(e: OSError, path: str) -> OSError:
    """``e`` (raised while writing ``path`` or its temporary) as the same OSError class, its
    message naming ``path``."""
    directory = os.path.dirname(os.path.abspath(path))
    why = e.strerror or str(e)
    if e.errno == errno.ENOENT and not os.path.isdir(directory):
        fix = (f"the directory {directory!r} does not exist; create it first "
               f"(os.makedirs({os.path.dirname(path) or '.'!r}, exist_ok=True))")
    elif e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = f"no permission to write in {directory!r} ({why}); choose a writable directory"
    elif e.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = f"the disk is full ({why}); free some space or write elsewhere"
    elif os.path.isdir(path):
        fix = "it is a directory; give a file name inside it"
    else:
        fix = why
    out = type(e)(e.errno, f"can't write {path!r}: {fix}") if e.errno is not None \
        else type(e)(f"can't write {path!r}: {fix}")
    return out


def _atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> None:
    """``write(f)`` to a new file in ``path``'s directory, fsync, then ``os.replace``: ``path``
    is either the previous file or the complete new one, never a half-written mix.

    Where the OS allows it (Linux ``O_TMPFILE``) the data is written to an unnamed file that
    gets a name only once it is complete, so a process killed mid-write leaves nothing behind;
    elsewhere a hidden ``.<name>.*.tmp`` file is used and removed on every error path.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    umask = os.umask(0)
    os.umask(umask)
    fd = -1
    if hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd"):
        try:
            fd = os.open(directory, os.O_TMPFILE | os.O_WRONLY, 0o666 & ~umask)
        except OSError:  # a filesystem without O_TMPFILE: use a named temporary file
            fd = -1
    if fd >= 0:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
            # a name for the finished file (an instant before it replaces `path`); passing a
            # dir_fd makes CPython call linkat(AT_SYMLINK_FOLLOW), which links the open file
            name = f".{os.path.basename(path)}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
            tmp = os.path.join(directory, name)
            dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.link(f"/proc/self/fd/{f.fileno()}", name, dst_dir_fd=dir_fd,
                        follow_symlinks=True)
            finally:
                os.close(dir_fd)
        try:
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp",
                               dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


#: what a fastcnn file is, for the messages about files that are not one
WHAT_FILE = ("a fastcnn file is the .npz (zip) archive model.save / model.save_weights write "
              "(or a .safetensors file)")


def describe_foreign(head: bytes) -> str:
    """What a file that is not a fastcnn ``.npz`` looks like, from its first bytes."""
    if not head:
        return "it is empty"
    if head.startswith(b"\x93NUMPY"):
        return "it is a single .npy array (numpy.save), not an archive"
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return "it is a Python pickle, which fastcnn never writes nor loads"
    if head.startswith(b"\x89HDF"):
        return "it is an HDF5 file (Keras' .h5?)"
    if head.startswith(b"PK"):
        return "it is a zip archive that is truncated or damaged"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "it is not a zip archive"
    if text.strip() and all(c.isprintable() or c.isspace() for c in text):
        first = text.strip().splitlines()[0][:40]
        return f"it is a text file (it starts with {first!r})"
    return "it is not a zip archive"


def read_npz(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` (``allow_pickle=False``), read fully (so CRC errors of a
    damaged file surface here); ValueError naming ``path``, what it looks like and what a
    fastcnn file is for anything else (never NumPy's own advice about ``allow_pickle``)."""
    name = os.fspath(path)
    with open(name, "rb") as fh:  # our handle: closed on every error path
        head = fh.read(64)
        fh.seek(0)
        if not head.startswith(b"PK"):
            raise ValueError(f"{name!r} is not a fastcnn file: {describe_foreign(head)}; "
                             f"{WHAT_FILE}")
        try:
            obj = np.load(fh, allow_pickle=False)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile):
            raise ValueError(f"{name!r} is not a readable fastcnn file: "
                             f"{describe_foreign(head)}; {WHAT_FILE}") from None
        try:
            with obj:
                if any(k.endswith("data.pkl") for k in obj.files):
                    raise ValueError(f"{name!r} is not a fastcnn file: it is a PyTorch "
                                     f"checkpoint (torch.save); load it with torch and convert "
                                     f"the module with fastcnn.from_torch; {WHAT_FILE}")
                return {k: obj[k] for k in obj.files}
        except ValueError as e:
            if str(e).startswith(repr(name)):
                raise
            raise ValueError(f"{name!r} holds pickled (object) data, which fastcnn never "
                             f"writes and refuses to load; {WHAT_FILE}") from None
        except (OSError, EOFError, zipfile.BadZipFile, KeyError) as e:
            raise ValueError(f"{name!r} is truncated or damaged: {e}") from e



def checked_pair(name: str, what: str, p: np.ndarray,
                  a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(p, a)`` when the file's array ``a`` can be assigned to the weight ``p``: the same
    shape and float32; else a ValueError naming the file and ``what`` (the weight or tensor)."""
    if a.shape != p.shape:
        raise ValueError(f"{name!r}: {what} has shape {a.shape}, the model expects {p.shape}")
    if a.dtype != np.float32:
        raise ValueError(f"{name!r}: {what} has dtype {a.dtype}, expected float32")
    return p, a

