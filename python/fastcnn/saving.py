"""Model files: an atomic, pickle-free ``.npz`` container; save, save_weights, load_weights and
load_model.

``save(model, path)`` (``model.save(path)``) writes one ``.npz`` (exactly at ``path``; no suffix
is added) holding ``format`` (:data:`MODEL_FORMAT`), the architecture as a JSON string in a
NumPy unicode array, ``weights/<layer>/<param>`` arrays, the compile settings (JSON), the
layers' non-weight state (JSON), ``model.metadata`` (JSON) and ``optimizer/<slot>/<layer>/
<param>`` state; ``save_weights`` writes only ``format`` (:data:`WEIGHTS_FORMAT`) and the
weights. Weights are saved as NumPy arrays from either device. ``save_weights`` /
``load_weights`` with a path ending in ``.safetensors`` use that format instead (optional: the
safetensors package), tensors named as the equivalent PyTorch model's state_dict
(:mod:`fastcnn._torch_layout`).

A file is written to a temporary file in the same directory and ``os.replace``'d into place,
so a crash never leaves a half-written file. Loading uses ``allow_pickle=False`` and checks
every key, shape and dtype before assigning anything: a truncated, mismatched or pickled file
raises ValueError naming the problem and leaves the model unchanged. :func:`load_model` returns
a model on the CPU (call ``.to("cuda")``).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from . import layers as _layers
from . import losses as _losses
from . import metrics as _metrics
from . import optimizers as _optimizers
from ._arrays import assign, to_host
from ._torch_layout import state_dict_names

if TYPE_CHECKING:  # a model is known here only by the methods called on it
    from .model import Sequential

__all__ = ["MODEL_FORMAT", "WEIGHTS_FORMAT", "atomic_write", "load_model", "load_weights",
           "model_from_json", "save", "save_weights"]

#: ``format`` of a file written by :func:`save` (architecture, weights, training state).
MODEL_FORMAT = "fastcnn.Sequential/1"
#: ``format`` of a file written by :func:`save_weights` (weights only).
WEIGHTS_FORMAT = "fastcnn.weights/1"


# --------------------------------------------------------------------------------------------
# the container


def _atomic_savez(path: str | os.PathLike[str], arrays: dict[str, np.ndarray]) -> None:
    """``np.savez`` to ``path`` atomically (:func:`atomic_write`)."""
    atomic_write(path, lambda f: np.savez(f, **arrays))  # type: ignore[arg-type]


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> None:
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


def _read_npz(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` (``allow_pickle=False``), read fully (so CRC errors of a
    damaged file surface here); ValueError naming the problem for anything unreadable."""
    name = os.fspath(path)
    with open(name, "rb") as fh:  # our handle: closed on every error path
        try:
            obj = np.load(fh, allow_pickle=False)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
            raise ValueError(f"{name!r} is not a readable fastcnn .npz file (truncated, "
                             f"damaged or pickled: {e})") from e
        if not hasattr(obj, "files"):
            raise ValueError(f"{name!r} is a single .npy array, not a fastcnn .npz file")
        try:
            with obj:
                return {k: obj[k] for k in obj.files}
        except ValueError as e:
            raise ValueError(f"{name!r} holds pickled (object) data, which fastcnn never "
                             f"writes and refuses to load: {e}") from e
        except (OSError, EOFError, zipfile.BadZipFile, KeyError) as e:
            raise ValueError(f"{name!r} is truncated or damaged: {e}") from e


def _json_field(arrays: dict[str, np.ndarray], key: str, path: Any) -> Any:
    a = arrays.get(key)
    if a is None:
        raise ValueError(f"{os.fspath(path)!r}: missing {key!r}")
    if a.shape != () or a.dtype.kind != "U":
        raise ValueError(f"{os.fspath(path)!r}: {key!r} must be a unicode string, got "
                         f"{a.dtype} {a.shape}")
    try:
        return json.loads(str(a))
    except json.JSONDecodeError as e:
        raise ValueError(f"{os.fspath(path)!r}: {key!r} is not valid JSON: {e}") from e


def _format_of(arrays: dict[str, np.ndarray], path: Any) -> str:
    a = arrays.get("format")
    if a is None or a.shape != () or a.dtype.kind != "U":
        raise ValueError(f"{os.fspath(path)!r} is not a fastcnn file (no 'format' entry)")
    fmt = str(a)
    if fmt not in (MODEL_FORMAT, WEIGHTS_FORMAT):
        raise ValueError(f"{os.fspath(path)!r}: unsupported format {fmt!r}; expected "
                         f"{MODEL_FORMAT!r} or {WEIGHTS_FORMAT!r}")
    return fmt



# --------------------------------------------------------------------------------------------
# a model's parts


def _training_config(model: Sequential) -> dict[str, Any] | None:
    """The compile settings as JSON-serialisable dicts (None when not compiled, or, with a
    warning, when they are custom objects that can't be serialised)."""
    if model.loss is None or model.optimizer is None:
        return None
    try:
        return {
            "loss": _losses.serialize(model.loss),
            "metrics": [{"class_name": type(m).__name__, "config": m.get_config()}
                        for m in model.metrics],
            "weighted_metrics": [{"class_name": type(m).__name__, "config": m.get_config()}
                                 for m in model.weighted_metrics],
            "optimizer": _optimizers.serialize(model.optimizer),
        }
    except ValueError as e:
        warnings.warn(f"save: the compile settings are not saved ({e})", UserWarning,
                      stacklevel=4)  # the caller of Sequential.save
        return None


def _weight_arrays(model: Sequential) -> dict[str, np.ndarray]:
    """``weights/<layer>/<param>`` -> host copy of every weight (trainable or not)."""
    return {f"weights/{k}": to_host(p) for k, p in model._all_weights().items()}


def _checked_weights(model: Sequential, arrays: dict[str, np.ndarray],
                     path: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    """Pair every model weight with its array from a file; ValueError before any change.

    Weights are matched by name; when the names differ (a model whose layers were named
    differently) but the file holds the same number of weights with the same shapes in
    the same order, they are matched by position."""
    name = os.fspath(path)
    mine = model._all_weights()
    stored = {k[len("weights/"):]: v for k, v in arrays.items() if k.startswith("weights/")}
    if set(stored) != set(mine):
        same_order = len(stored) == len(mine) and all(
            a.shape == b.shape for a, b in zip(stored.values(), mine.values(), strict=True))
        if not same_order:
            missing = sorted(set(mine) - set(stored))
            extra = sorted(set(stored) - set(mine))
            raise ValueError(f"{name!r} does not match the model: missing weights "
                             f"{missing}, unexpected weights {extra}")
        stored = dict(zip(mine, stored.values(), strict=True))
    return [_checked_pair(name, f"weight {k!r}", p, stored[k]) for k, p in mine.items()]


def _checked_pair(name: str, what: str, p: np.ndarray,
                  a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(p, a)`` when the file's array ``a`` can be assigned to the weight ``p``: the same
    shape and float32; else a ValueError naming the file and ``what`` (the weight or tensor)."""
    if a.shape != p.shape:
        raise ValueError(f"{name!r}: {what} has shape {a.shape}, the model expects {p.shape}")
    if a.dtype != np.float32:
        raise ValueError(f"{name!r}: {what} has dtype {a.dtype}, expected float32")
    return p, a


# --------------------------------------------------------------------------------------------
# save / load


#: file names fastcnn does not write, and what to use instead
_FOREIGN = {".keras": "Keras", ".h5": "HDF5", ".hdf5": "HDF5", ".pt": "PyTorch",
            ".pth": "PyTorch", ".onnx": "ONNX", ".safetensors": "safetensors"}


def _check_suffix(path: str | os.PathLike[str], who: str, allowed: tuple[str, ...]) -> None:
    """A ValueError before anything is written when ``path`` names a format fastcnn doesn't
    write there (a ``.keras`` file would otherwise silently hold an .npz)."""
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix in _FOREIGN and suffix not in allowed:
        fix = {".onnx": "model.export(path) writes ONNX",
               ".safetensors": "model.save_weights(path) writes the weights as safetensors"}
        raise ValueError(f"{who}: {os.fspath(path)!r} names a {_FOREIGN[suffix]} file, which "
                         f"{who} does not write; it writes {' or '.join(('.npz', *allowed))} "
                         f"(any other name is an .npz)"
                         + (f"; {fix[suffix]}" if suffix in fix else ""))


def save(model: Sequential, path: str | os.PathLike[str], include_optimizer: bool = True) -> None:
    """:meth:`fastcnn.Sequential.save`: architecture, weights, compile settings, layer states,
    metadata and (with ``include_optimizer``) optimizer state to one ``.npz``, atomically.
    A name of another format (``.keras``, ``.h5``, ``.pt``, ``.onnx``, ...) is a ValueError."""
    _check_suffix(path, "save", ())
    model._require_built()
    arrays: dict[str, np.ndarray] = {
        "format": np.array(MODEL_FORMAT),
        "architecture": np.array(json.dumps(model.get_config())),
        **_weight_arrays(model),
    }
    if model.metadata:
        try:
            arrays["metadata"] = np.array(json.dumps(model.metadata))
        except TypeError as e:
            raise ValueError(f"save: model.metadata must be JSON-serialisable: {e}") from e
    states = {lay.name: st for lay in model.layers if (st := lay.get_state()) is not None}
    if states:
        arrays["layer_states"] = np.array(json.dumps(states))
    tc = _training_config(model)
    if tc is not None:
        arrays["training_config"] = np.array(json.dumps(tc))
        if include_optimizer and model.optimizer is not None:
            for k, v in model.optimizer.get_state().items():
                arrays[f"optimizer/{k}"] = v
    _atomic_savez(path, arrays)


def _is_safetensors(path: str | os.PathLike[str]) -> bool:
    return os.fspath(path).endswith(".safetensors")


def _safetensors_numpy() -> Any:
    try:
        import safetensors.numpy
    except ImportError as e:
        raise ImportError('.safetensors files need the safetensors package: pip install '
                          '"fastcnn[torch]" (or pip install safetensors)') from e
    return safetensors.numpy


def _save_safetensors(model: Sequential, path: str | os.PathLike[str]) -> None:
    st = _safetensors_numpy()
    names = state_dict_names(model.layers)  # torch key -> "<layer>/<param>"
    weights = model._all_weights()
    tensors = {key: np.ascontiguousarray(to_host(weights[name])) for key, name in names.items()}
    data = st.save(tensors, metadata={"format": WEIGHTS_FORMAT})
    atomic_write(path, lambda f: f.write(data))


def _safetensors_damage(data: bytes) -> str:
    """What is wrong with an unreadable ``.safetensors`` byte string, naming the first tensor
    whose bytes are missing when the header can be read (8-byte length, JSON header, data)."""
    if len(data) < 8:
        return f"{len(data)} bytes: no header"
    n = int.from_bytes(data[:8], "little")
    try:
        header = json.loads(data[8:8 + n])
    except (ValueError, UnicodeDecodeError):
        return "the header is truncated or damaged"
    size = len(data) - 8 - n
    for key, info in header.items() if isinstance(header, dict) else ():
        if key == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if not offsets or len(offsets) != 2 or offsets[1] > size:
            return f"tensor {key!r} is truncated or damaged"
    return "damaged"


def _load_safetensors(model: Sequential,
                      path: str | os.PathLike[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Pair every model weight with its tensor of a ``.safetensors`` file (named by the
    equivalent torch model's state_dict keys); ValueError naming the tensor before any change."""
    st = _safetensors_numpy()
    name = os.fspath(path)
    with open(name, "rb") as fh:
        data = fh.read()
    try:
        stored = st.load(data)
    except Exception as e:  # safetensors raises its own SafetensorError (and others) on damage
        raise ValueError(f"{name!r} is not a readable .safetensors file "
                         f"({_safetensors_damage(data)}; {e})") from e
    names = state_dict_names(model.layers)
    weights = model._all_weights()
    missing = [k for k in names if k not in stored]
    # BatchNorm's step counter in a file PyTorch wrote (state_dict() has it; fastcnn keeps no
    # twin of it and torch's momentum update does not read it)
    extra = sorted(k for k in set(stored) - set(names) if not (
        k.endswith(".num_batches_tracked") and k[:-len("num_batches_tracked")] + "running_mean"
        in names))
    if missing or extra:
        raise ValueError(f"{name!r} does not match the model: missing tensors {missing}, "
                         f"unexpected tensors {extra} (expected the state_dict keys of "
                         f"model.to_torch(): {list(names)})")
    return [_checked_pair(name, f"tensor {key!r} (weight {wname!r})", weights[wname],
                          stored[key]) for key, wname in names.items()]


def save_weights(model: Sequential, path: str | os.PathLike[str]) -> None:
    """:meth:`fastcnn.Sequential.save_weights`: only ``format`` and the weights, atomically.

    A ``path`` ending in ``.safetensors`` is written in that format (the safetensors package),
    the tensors named by the state_dict keys of the equivalent ``torch.nn.Sequential``
    (``model.to_torch()``: ``"0.weight"``, ``"0.bias"``, ...), so PyTorch loads it with
    ``load_state_dict(safetensors.torch.load_file(path))``; any other name is an ``.npz``."""
    _check_suffix(path, "save_weights", (".safetensors",))
    model._require_built()
    if _is_safetensors(path):
        _save_safetensors(model, path)
        return
    _atomic_savez(path, {"format": np.array(WEIGHTS_FORMAT), **_weight_arrays(model)})


def load_weights(model: Sequential, path: str | os.PathLike[str]) -> None:
    """:meth:`fastcnn.Sequential.load_weights`: the weights of a :func:`save` or
    :func:`save_weights` file (a ``.safetensors`` one by its torch state_dict keys, e.g. one
    PyTorch wrote with ``safetensors.torch.save_file(module.state_dict(), path)``), all checked
    before any is assigned."""
    model._require_built()
    if _is_safetensors(path):
        pairs = _load_safetensors(model, path)
    else:
        arrays = _read_npz(path)
        _format_of(arrays, path)
        pairs = _checked_weights(model, arrays, path)
    for p, a in pairs:
        assign(p, a)


def load_model(path: str | os.PathLike[str], compile: bool = True, *,
               custom_objects: Mapping[str, type[_layers.Layer]] | None = None) -> Sequential:
    """Rebuild a model saved by :meth:`Sequential.save`: architecture, weights and (with
    ``compile=True``) optimizer, loss, metrics and optimizer state.

    Args:
        custom_objects: ``{"Scale": Scale}``: layer classes the file names that are not
            registered with :func:`fastcnn.layers.register_layer` (they win over the registry).

    Raises:
        FileNotFoundError: no such file.
        TypeError: ``compile`` not a bool (``custom_objects`` is passed by keyword), or
            ``custom_objects`` not a dict of layer classes.
        ValueError: not a fastcnn model file, truncated / damaged, pickled data, any key,
            shape or dtype that does not match the stored architecture, or a layer class
            that is neither built in, registered nor in ``custom_objects`` (the message names
            it and says how to register it).
    """
    if not isinstance(compile, bool | np.bool_ | int):
        raise TypeError(f"load_model: compile must be a bool, got {type(compile).__name__}; "
                        f"pass custom_objects={{...}} by keyword")
    custom_objects = _layers.check_custom_objects(custom_objects)  # TypeError, before reading
    arrays = _read_npz(path)
    name = os.fspath(path)
    fmt = _format_of(arrays, path)
    if fmt != MODEL_FORMAT:
        raise ValueError(f"{name!r} holds only weights (save_weights); build the model and "
                         f"call model.load_weights(path) instead")
    arch = _json_field(arrays, "architecture", path)
    try:
        model = _model_class(arch).from_config(arch, custom_objects)
    except (ValueError, TypeError, KeyError) as e:
        raise ValueError(f"{name!r}: bad architecture: {e}") from e
    if not model.built:
        raise ValueError(f"{name!r}: the architecture has no input shape")
    pairs = _checked_weights(model, arrays, path)
    layer_states: list[tuple[_layers.Layer, Any]] = []
    if "layer_states" in arrays:
        states = _json_field(arrays, "layer_states", path)
        by_name = {lay.name: lay for lay in model.layers}
        if not isinstance(states, dict) or not set(states) <= set(by_name):
            raise ValueError(f"{name!r}: 'layer_states' names unknown layers")
        try:
            layer_states = [(by_name[k], by_name[k].check_state(v)) for k, v in states.items()]
        except ValueError as e:
            raise ValueError(f"{name!r}: {e}") from e
    metadata: dict[str, Any] = {}
    if "metadata" in arrays:
        metadata = _json_field(arrays, "metadata", path)
        if not isinstance(metadata, dict):
            raise ValueError(f"{name!r}: 'metadata' is not a JSON object")
    allowed = {"format", "architecture", "training_config", "layer_states", "metadata"}
    extra = [k for k in arrays if k not in allowed and not k.startswith(("weights/",
                                                                          "optimizer/"))]
    if extra:
        raise ValueError(f"{name!r}: unexpected entries {extra}")
    opt_state = {k[len("optimizer/"):]: v for k, v in arrays.items()
                 if k.startswith("optimizer/")}
    if compile and "training_config" in arrays:
        tc = _json_field(arrays, "training_config", path)
        try:
            optimizer = _optimizers.get(tc["optimizer"])
            loss = _losses.get(tc["loss"])
            metric_objs = [_metrics.get(m) for m in tc.get("metrics", [])]
            weighted_objs = [_metrics.get(m) for m in tc.get("weighted_metrics", [])]
        except (ValueError, TypeError, KeyError) as e:
            raise ValueError(f"{name!r}: bad training_config: {e}") from e
        if opt_state:  # frozen layers' weights may have state too (trained, then frozen)
            expected = {k: p.shape for k, p in model._all_weights().items()}
            try:
                optimizer.set_state(opt_state, expected)
            except ValueError as e:
                raise ValueError(f"{name!r}: {e}") from e
        model.compile(optimizer, loss, metric_objs, weighted_objs)
    for p, a in pairs:
        p[...] = a
    for layer, checked in layer_states:
        layer.set_state(checked)
    model.metadata = metadata
    return model


class Saveable:
    """The file methods of a model: :class:`fastcnn.Sequential` inherits them (as it inherits
    :class:`fastcnn.trainer.Trainer`'s), so this module never imports :mod:`fastcnn.model`;
    :func:`load_model` finds the class a file names among this class's subclasses."""

    def save(self, path: str | os.PathLike[str], include_optimizer: bool = True) -> None:
        """Write architecture, weights, compile settings and optimizer state to one ``.npz``
        at ``path``, atomically (temporary file + ``os.replace``; :func:`save`)."""
        save(self, path, include_optimizer)  # type: ignore[arg-type]

    def save_weights(self, path: str | os.PathLike[str]) -> None:
        """Write only the weights (``weights/<layer>/<param>``) to one ``.npz``, atomically."""
        save_weights(self, path)  # type: ignore[arg-type]

    def load_weights(self, path: str | os.PathLike[str]) -> None:
        """Load weights saved by :meth:`save_weights` or :meth:`save` (checked first; on any
        error the model is unchanged)."""
        load_weights(self, path)  # type: ignore[arg-type]

    def to_json(self, **kwargs: Any) -> str:
        """The architecture (``get_config()``: layers, input shape, seed, name; no weights) as
        a JSON string, ``json.dumps(config, **kwargs)`` (Keras' ``to_json``);
        :func:`model_from_json` rebuilds the model from it."""
        return json.dumps(self.get_config(), **kwargs)  # type: ignore[attr-defined]


def model_from_json(json_string: str,
                    custom_objects: Mapping[str, type[_layers.Layer]] | None = None) -> Sequential:
    """A new model from :meth:`Saveable.to_json`'s string (Keras' ``model_from_json``): the
    same layers, built when the architecture has an input shape, with fresh weights drawn
    from its seed (the weights are not in the string: ``load_weights`` them).

    Args:
        json_string: what ``model.to_json()`` returned.
        custom_objects: ``{"Scale": Scale}``, layer classes that are not registered
            (:func:`fastcnn.layers.register_layer`).

    Raises:
        TypeError: ``json_string`` not a string, or ``custom_objects`` not layer classes.
        ValueError: not valid JSON, not a fastcnn architecture, or an unknown layer class
            (the message names it and says how to register it).
    """
    if not isinstance(json_string, str | bytes | bytearray):
        raise TypeError(f"model_from_json: json_string must be the string model.to_json() "
                        f"returned, got {type(json_string).__name__}")
    try:
        config = json.loads(json_string)
    except json.JSONDecodeError as e:
        raise ValueError(f"model_from_json: not valid JSON: {e}") from e
    custom_objects = _layers.check_custom_objects(custom_objects)
    return _model_class(config).from_config(config, custom_objects)


def _model_class(config: Any) -> type[Sequential]:
    """The model class (a :class:`Saveable` subclass) that an architecture config names."""
    name = config.get("class_name") if isinstance(config, dict) else None
    pending: list[type] = list(Saveable.__subclasses__())
    while pending:
        cls = pending.pop()
        if cls.__name__ == name:
            return cls  # type: ignore[return-value]
        pending.extend(cls.__subclasses__())
    raise ValueError(f"not a fastcnn model architecture (class_name {name!r})")
