"""``.safetensors`` files for :mod:`fastcnn.saving` (the optional safetensors package): the
weights named by the equivalent PyTorch model's state_dict keys (:mod:`fastcnn._torch_layout`),
for ``save_weights`` / ``load_weights``, and whole models (``save`` / ``load_model``): the same
tensors plus ``optimizer/...`` ones, the architecture and training settings as the header's
string metadata.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from ._arrays import to_host
from ._files import (
    MODEL_FORMATS,
    WEIGHTS_FORMAT,
    WHAT_FILE,
    atomic_write,
    checked_pair,
    describe_foreign,
)
from ._torch_layout import state_dict_names

if TYPE_CHECKING:  # a model is known here only by the methods called on it
    from .model import Sequential

__all__ = [
    "is_safetensors",
    "load_safetensors",
    "model_safetensors",
    "read_safetensors",
    "safetensors_numpy",
    "save_model_safetensors",
    "save_safetensors",
    "state_dict_weights",
]

def is_safetensors(path: str | os.PathLike[str]) -> bool:
    return os.fspath(path).endswith(".safetensors")


def safetensors_numpy() -> Any:
    try:
        import safetensors.numpy
    except ImportError as e:
        raise ImportError('.safetensors files need the safetensors package: pip install '
                          '"fastcnn[torch]" (or pip install safetensors)') from e
    return safetensors.numpy


def save_safetensors(model: Sequential, path: str | os.PathLike[str]) -> None:
    st = safetensors_numpy()
    names = state_dict_names(model.layers)  # torch key -> "<layer>/<param>"
    weights = model._all_weights()
    tensors = {key: np.ascontiguousarray(to_host(weights[name])) for key, name in names.items()}
    data = st.save(tensors, metadata={"format": WEIGHTS_FORMAT})
    atomic_write(path, lambda f: f.write(data))


def save_model_safetensors(model: Sequential, path: str | os.PathLike[str],
                            arrays: dict[str, np.ndarray]) -> None:
    """:func:`save`'s entries as one ``.safetensors`` file: the weights as tensors named by the
    state_dict keys :func:`save_weights` uses (``"0.weight"``, ...), the optimizer state as
    ``optimizer/<slot>/<layer>/<param>`` tensors, and the JSON entries (``format``,
    ``architecture``, ``training_config``, ``layer_states``, ``metadata``) as the header's
    string metadata. ``torch``'s ``load_state_dict(load_file(path), strict=False)`` reads the
    weights; :func:`load_model` the whole model. A model without a ``torch.nn.Sequential`` twin
    (a graph model: ``fastcnn.Model``) has its weights named ``weights/<layer>/<param>``, as in
    the ``.npz``."""
    st = safetensors_numpy()
    try:
        by_weight = {w: key for key, w in state_dict_names(model.layers).items()}
    except ValueError:  # no torch.nn.Sequential twin (a graph model): fastcnn's own names
        by_weight = {w: f"weights/{w}" for w in model._all_weights()}
    tensors: dict[str, np.ndarray] = {}
    meta: dict[str, str] = {}
    for k, v in arrays.items():
        if k.startswith("weights/"):
            if k[len("weights/"):] not in by_weight:
                raise ValueError(f"save: {os.fspath(path)!r}: the weight {k[8:]!r} has no "
                                 f"state_dict name; save the model as .npz")
            tensors[by_weight[k[len("weights/"):]]] = np.ascontiguousarray(v)  # weights: >= 1-D
        elif k.startswith("optimizer/"):
            tensors[k] = np.array(v, order="C")  # keeps 0-d (iterations)
        else:
            meta[k] = str(v)
    data = st.save(tensors, metadata=meta)
    atomic_write(path, lambda f: f.write(data))


def _safetensors_metadata(data: bytes) -> dict[str, str]:
    """The string metadata of a ``.safetensors`` byte string's header ({} when it has none or
    the header can't be read: the loader reports that)."""
    if len(data) < 8:
        return {}
    n = int.from_bytes(data[:8], "little")
    try:
        meta = json.loads(data[8:8 + n]).get("__metadata__")
    except (ValueError, UnicodeDecodeError, AttributeError):
        return {}
    return meta if isinstance(meta, dict) else {}


def read_safetensors(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray],
                                                             dict[str, str]]:
    """The tensors and the string metadata of a ``.safetensors`` file; ValueError naming the
    file (and what it looks like) when it is not one."""
    st = safetensors_numpy()
    name = os.fspath(path)
    with open(name, "rb") as fh:
        data = fh.read()
    try:
        stored = st.load(data)
    except Exception as e:  # safetensors raises its own SafetensorError (and others) on damage
        if data[:2] == b"PK":
            raise ValueError(f"{name!r} is not a .safetensors file: it is a zip archive (a "
                             f"fastcnn .npz? give it a name ending in .npz)") from None
        if describe_foreign(data[:64]).startswith(("it is a Python", "it is a text", "it is an",
                                                   "it is a single")):
            raise ValueError(f"{name!r} is not a .safetensors file: "
                             f"{describe_foreign(data[:64])}; {WHAT_FILE}") from None
        raise ValueError(f"{name!r} is not a readable .safetensors file "
                         f"({_safetensors_damage(data)}; {e})") from e
    return stored, _safetensors_metadata(data)


def model_safetensors(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray],
                                                              dict[str, np.ndarray]]:
    """A :func:`save` ``.safetensors`` file as :func:`save`'s ``.npz`` entries (JSON strings
    as NumPy unicode arrays, ``optimizer/...`` arrays) and the weight tensors by their
    state_dict keys (named ``weights/<layer>/<param>`` once the model is built:
    :func:`_state_dict_weights`)."""
    name = os.fspath(path)
    stored, meta = read_safetensors(path)
    if meta.get("format") not in MODEL_FORMATS:
        raise ValueError(f"{name!r} holds only weights (no fastcnn architecture in its "
                         f"metadata: save_weights, or PyTorch's save_file); build the model "
                         f"and call model.load_weights(path) instead")
    arrays: dict[str, np.ndarray] = {k: np.array(v) for k, v in meta.items()}
    arrays.update({k: v for k, v in stored.items() if k.startswith("optimizer/")})
    return arrays, {k: v for k, v in stored.items() if not k.startswith("optimizer/")}


def state_dict_weights(model: Sequential, tensors: dict[str, np.ndarray],
                        path: Any) -> dict[str, np.ndarray]:
    """``{"weights/<layer>/<param>": array}`` from tensors named by ``model``'s state_dict
    keys (or already ``weights/...``: a graph model's file); ValueError naming the missing and
    unexpected ones."""
    if tensors and all(k.startswith("weights/") for k in tensors):
        return tensors  # matched to the model by load_model's own check
    names = state_dict_names(model.layers)
    missing = [k for k in names if k not in tensors]
    extra = sorted(set(tensors) - set(names))
    if missing or extra:
        raise ValueError(f"{os.fspath(path)!r} does not match its architecture: missing "
                         f"tensors {missing}, unexpected tensors {extra}")
    return {f"weights/{w}": tensors[k] for k, w in names.items()}


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


def load_safetensors(model: Sequential,
                      path: str | os.PathLike[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Pair every model weight with its tensor of a ``.safetensors`` file (named by the
    equivalent torch model's state_dict keys); ValueError naming the tensor before any change."""
    name = os.fspath(path)
    stored, meta = read_safetensors(path)
    weights = model._all_weights()
    if meta.get("format") in MODEL_FORMATS:  # a whole model (save): its optimizer state too
        stored = {k: v for k, v in stored.items() if not k.startswith("optimizer/")}
        if stored and all(k.startswith("weights/") for k in stored):  # a graph model's file
            mine = {f"weights/{k}": p for k, p in weights.items()}
            if set(stored) != set(mine):
                raise ValueError(f"{name!r} does not match the model: missing weights "
                                 f"{sorted(set(mine) - set(stored))}, unexpected weights "
                                 f"{sorted(set(stored) - set(mine))}")
            return [checked_pair(name, f"weight {k[8:]!r}", p, stored[k])
                    for k, p in mine.items()]
    names = state_dict_names(model.layers)
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
    return [checked_pair(name, f"tensor {key!r} (weight {wname!r})", weights[wname],
                          stored[key]) for key, wname in names.items()]


