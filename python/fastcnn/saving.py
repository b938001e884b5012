"""Model files: an atomic, pickle-free ``.npz`` container; save, save_weights, load_weights and
load_model.

``save(model, path)`` (``model.save(path)``) writes one ``.npz`` (exactly at ``path``; no suffix
is added) holding ``format`` (:data:`MODEL_FORMAT`), the architecture as a JSON string in a
NumPy unicode array, ``weights/<layer>/<param>`` arrays, the compile settings (JSON), the
layers' non-weight state (JSON), ``model.metadata`` (JSON) and ``optimizer/<slot>/<layer>/
<param>`` state; ``save_weights`` writes only ``format`` (:data:`WEIGHTS_FORMAT`) and the
weights. Weights are saved as NumPy arrays from either device. A path ending in
``.safetensors`` uses that format instead (optional: the safetensors package;
:mod:`fastcnn._safetensors_file`): tensors named as the equivalent PyTorch model's state_dict
(:mod:`fastcnn._torch_layout`), and for ``save`` the optimizer state as ``optimizer/...``
tensors and the JSON entries as the header's metadata; ``load_model`` reads it back.

A file is written to a temporary file in the same directory and ``os.replace``'d into place,
so a crash never leaves a half-written file; a failed write (no such directory, no permission,
a full disk) raises the same OSError class naming ``path``, and leaves nothing behind. Loading
uses ``allow_pickle=False`` and checks every key, shape and dtype before assigning anything: a
truncated, mismatched or pickled file raises ValueError naming the problem and leaves the model
unchanged; a file that is not a fastcnn file (text, a pickle, a single .npy) is named and
described, with what a fastcnn file is. :func:`load_model` returns a model on the CPU (call
``.to("cuda")``).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _safetensors_file as _st
from . import layers as _layers
from . import losses as _losses
from . import metrics as _metrics
from . import optimizers as _optimizers
from ._arrays import assign, to_host
from ._files import (
    MODEL_FORMAT,
    MODEL_FORMATS,
    WEIGHTS_FORMAT,
    atomic_write,
    checked_pair,
    read_npz,
    savez_atomic,
)

if TYPE_CHECKING:  # a model is known here only by the methods called on it
    from .model import Sequential

__all__ = ["MODEL_FORMAT", "WEIGHTS_FORMAT", "atomic_write", "load_model", "load_weights",
           "model_from_json", "save", "save_weights"]


# --------------------------------------------------------------------------------------------
# the container (:mod:`fastcnn._files`; .safetensors: :mod:`fastcnn._safetensors_file`)


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
    if fmt in MODEL_FORMATS:
        return MODEL_FORMAT
    if fmt != WEIGHTS_FORMAT:
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
    return [checked_pair(name, f"weight {k!r}", p, stored[k]) for k, p in mine.items()]



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
        fix = {".onnx": "model.export(path) writes ONNX"}
        raise ValueError(f"{who}: {os.fspath(path)!r} names a {_FOREIGN[suffix]} file, which "
                         f"{who} does not write; it writes {' or '.join(('.npz', *allowed))} "
                         f"(any other name is an .npz)"
                         + (f"; {fix[suffix]}" if suffix in fix else ""))


def save(model: Sequential, path: str | os.PathLike[str], include_optimizer: bool = True) -> None:
    """:meth:`fastcnn.Sequential.save`: architecture, weights, compile settings, layer states,
    metadata and (with ``include_optimizer``) optimizer state to one ``.npz``, atomically; a
    ``path`` ending in ``.safetensors`` holds the same in that format
    (:func:`_save_model_safetensors`). A name of another format (``.keras``, ``.h5``, ``.pt``,
    ``.onnx``, ...) is a ValueError, before anything is written."""
    _check_suffix(path, "save", (".safetensors",))
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
    if _st.is_safetensors(path):
        _st.save_model_safetensors(model, path, arrays)
        return
    savez_atomic(path, arrays)


def save_weights(model: Sequential, path: str | os.PathLike[str]) -> None:
    """:meth:`fastcnn.Sequential.save_weights`: only ``format`` and the weights, atomically.

    A ``path`` ending in ``.safetensors`` is written in that format (the safetensors package),
    the tensors named by the state_dict keys of the equivalent ``torch.nn.Sequential``
    (``model.to_torch()``: ``"0.weight"``, ``"0.bias"``, ...), so PyTorch loads it with
    ``load_state_dict(safetensors.torch.load_file(path))``; any other name is an ``.npz``."""
    _check_suffix(path, "save_weights", (".safetensors",))
    model._require_built()
    if _st.is_safetensors(path):
        _st.save_safetensors(model, path)
        return
    savez_atomic(path, {"format": np.array(WEIGHTS_FORMAT), **_weight_arrays(model)})


def load_weights(model: Sequential, path: str | os.PathLike[str]) -> None:
    """:meth:`fastcnn.Sequential.load_weights`: the weights of a :func:`save` or
    :func:`save_weights` file (a ``.safetensors`` one by its torch state_dict keys, e.g. one
    PyTorch wrote with ``safetensors.torch.save_file(module.state_dict(), path)``), all checked
    before any is assigned."""
    model._require_built()
    if _st.is_safetensors(path):
        pairs = _st.load_safetensors(model, path)
    else:
        arrays = read_npz(path)
        _format_of(arrays, path)
        pairs = _checked_weights(model, arrays, path)
    for p, a in pairs:
        assign(p, a)


def load_model(path: str | os.PathLike[str], compile: bool = True, *,
               custom_objects: Mapping[str, type[_layers.Layer]] | None = None) -> Sequential:
    """Rebuild a model saved by :meth:`Sequential.save` (an ``.npz``, or a ``.safetensors``
    file for a name ending so): architecture, weights and (with ``compile=True``) optimizer,
    loss, metrics and optimizer state.

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
    tensors: dict[str, np.ndarray] | None = None  # a .safetensors file's weights
    if _st.is_safetensors(path):
        arrays, tensors = _st.model_safetensors(path)
    else:
        arrays = read_npz(path)
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
    if tensors is not None:
        arrays.update(_st.state_dict_weights(model, tensors, path))
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
