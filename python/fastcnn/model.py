"""fastcnn.Sequential: a Keras-like model over :mod:`fastcnn.layers`.

Inputs and labels
-----------------
``x`` is NCHW (``(N, C, H, W)`` for ``input_shape=(C, H, W)``) or ``(N, features)`` for a flat
``input_shape``. It may have any numeric dtype: every batch is converted with
``np.asarray(x_batch, dtype=np.float32)`` (the ops take float32 only), so a uint8 data set is
converted batch by batch, never all at once. Labels are integer class ids ``(N,)`` or float
one-hot rows ``(N, classes)`` for the cross-entropies, 0/1 targets for binary cross-entropy,
targets of the output's size for MSE.

Training, step by step (what ``fit`` does, and how to reproduce it by hand)
---------------------------------------------------------------------------
``fit(x, y, batch_size, epochs, shuffle=True, seed=s)`` creates ``rng =
np.random.default_rng(s)`` once and, at the start of every epoch, takes ``perm =
rng.permutation(n)`` (``np.arange(n)`` with ``shuffle=False``); batch ``b`` holds the samples
``perm[b * batch_size:(b + 1) * batch_size]``. With ``validation_split`` the last
``n - ceil(n * (1 - validation_split))`` samples are held out first (before shuffling), as Keras
does. For each batch::

    fused = model.output_fused                  # softmax/sigmoid output + matching loss
    out = model(xb, training=True, logits=fused) # logits of the last layer when fused
    loss, dout = model.loss.value_and_grad(out, yb, logits=fused)
    model.backward(dout)                         # writes every layer's grads
    model.optimizer.step(model)                  # in-place update

A hand-written loop doing exactly this gives bitwise the same weights as ``fit`` (see
tests/test_model.py). ``model.backward`` overwrites the gradients (``accumulate=True`` adds to
them); ``optimizer.zero_grad(model)`` zeroes them. It always returns ``dx`` (the ops compute
it together with the weight gradients, so skipping it for the first layer would save nothing).

With a dataset object (anything iterable over ``(x_batch, y_batch)`` with ``__len__`` = number
of batches, e.g. :class:`fastcnn.data.ArrayDataset` / ``ImageFolder``) the dataset decides batch
size and order; ``batch_size``, ``shuffle``, ``seed`` and ``validation_split`` do not apply.

Determinism: ``Sequential(..., seed=s)`` initialises weights from ``np.random.default_rng(s)``
(layers in order) and seeds Dropout masks from it; with the same model seed and fit seed,
training gives the same weights run to run.

Errors and interruption: a NaN or infinite loss raises :class:`NonFiniteLossError` (both a
FloatingPointError and a ValueError) naming the epoch and batch, before that batch changes any
weight. Ctrl-C (SIGINT) during ``fit`` is deferred to the end of the current batch (its update
is completed, never half-applied), then the progress bar is closed, a line saying training was
interrupted is printed, ``on_train_end`` runs and the History of the completed epochs is
returned (``history.interrupted`` is True).

Devices
-------
``model.to("cuda")`` moves every layer's weights and gradients and the optimizer's state to the
GPU as CuPy arrays; ``model.to("cpu")`` moves them back as NumPy arrays; ``model.to("auto")``
picks the GPU when ``fastcnn.info()["cuda_available"]`` (the CUDA module built, CuPy importable,
a device usable), else the CPU, silently. When the GPU can't be used, ``to("cuda")`` stays on
the CPU with one RuntimeWarning saying why (``to("cuda", strict=True)`` raises RuntimeError
instead). ``model.device`` is ``"cpu"`` or ``"cuda"``.

On the GPU, ``fit`` / ``evaluate`` / ``predict`` take NumPy inputs (or datasets yielding them)
and upload each batch, labels included, one batch ahead: with CuPy's pinned memory and streams
the copy of batch i + 1 runs on its own stream while batch i computes (see
:class:`fastcnn._device.BatchUploader`). CuPy inputs are used as they are. A training step
copies only the loss (and each metric's per-batch sum) back to the host. ``predict`` returns a
NumPy array (as Keras does), ``evaluate`` Python floats; ``model(x)`` / ``model.backward(dy)``
(custom loops) take either kind and return arrays on the model's device. A model on the CPU
given CuPy arrays raises TypeError. Weights are saved as NumPy arrays from either device;
``load_model`` returns a model on the CPU (call ``.to("cuda")``). ``get_weights`` returns NumPy
arrays, ``set_weights`` / ``load_weights`` accept NumPy (or CuPy) arrays on either device.

Files
-----
``model.save(path)`` writes one ``.npz`` (exactly at ``path``; no suffix is added) holding
``format``, the architecture as a JSON string in a NumPy unicode array, ``weights/<layer>/
<param>`` arrays, the compile settings (JSON) and ``optimizer/<slot>/<layer>/<param>`` state.
It is written to a temporary file in the same directory and ``os.replace``'d into place, so a
crash never leaves a half-written file. Loading uses ``allow_pickle=False`` and checks every
key, shape and dtype before assigning anything: a truncated, mismatched or pickled file raises
ValueError naming the problem and leaves the model unchanged.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
import tempfile
import threading
import time
import warnings
import zipfile
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
from tqdm import tqdm

from . import _device
from . import callbacks as _callbacks
from . import layers as _layers
from . import losses as _losses
from . import metrics as _metrics
from . import optimizers as _optimizers
from ._device import BatchUploader, assign, host_copy, is_cupy, to_host
from ._device import move as _device_move

__all__ = ["NonFiniteLossError", "Sequential", "load_model"]

MODEL_FORMAT = "fastcnn.Sequential/1"
WEIGHTS_FORMAT = "fastcnn.weights/1"


class NonFiniteLossError(FloatingPointError, ValueError):
    """The training loss became NaN or infinite (raised by ``fit``)."""


# --------------------------------------------------------------------------------------------
# data helpers


def _is_dataset(obj: Any) -> bool:
    return (not isinstance(obj, np.ndarray | list | tuple) and not is_cupy(obj)
            and hasattr(obj, "__iter__") and hasattr(obj, "__len__"))


def _to_float32(x: Any) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(x, dtype=np.float32))


class _ArrayBatches:
    """Batches of ``(x, y)`` arrays in a given order."""

    def __init__(self, x: np.ndarray, y: np.ndarray | None, batch_size: int) -> None:
        self.x, self.y, self.batch_size = x, y, batch_size
        self.order: np.ndarray | None = None

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[np.ndarray, Any]]:
        n, bs = len(self.x), self.batch_size
        for i in range(0, n, bs):
            if self.order is None:
                idx: Any = slice(i, i + bs)
            else:
                idx = self.order[i:i + bs]
            xi = _index_for(self.x, idx)
            yi = None if self.y is None else _index_for(self.y, idx)
            yield self.x[xi], (None if self.y is None else self.y[yi])


def _index_for(a: Any, idx: Any) -> Any:
    """An index for ``a``: a NumPy index array is uploaded when ``a`` is a cupy array."""
    if is_cupy(a) and isinstance(idx, np.ndarray):
        import cupy

        return cupy.asarray(idx)
    return idx


def _xy(item: Any, who: str) -> tuple[Any, Any]:
    """Split a dataset item into ``(x_batch, y_batch)`` with a clear error."""
    if isinstance(item, tuple | list) and len(item) == 2:
        return item[0], item[1]
    raise ValueError(f"{who}: a training dataset must yield (x_batch, y_batch) pairs, got "
                     f"{type(item).__name__}" + (f" of length {len(item)}"
                                                 if isinstance(item, tuple | list) else ""))


def _check_arrays(x: Any, y: Any, who: str) -> tuple[np.ndarray, np.ndarray | None]:
    """``x`` and ``y`` as arrays (NumPy, or CuPy arrays left as they are), checked."""
    x = x if is_cupy(x) else np.asarray(x)
    if x.ndim < 2:
        raise ValueError(f"{who}: x must have a batch axis, got shape {x.shape}")
    if y is not None:
        y = y if is_cupy(y) else np.asarray(y)
        if y.ndim == 0 or len(y) != len(x):
            raise ValueError(f"{who}: x and y must have the same number of samples, got "
                             f"{len(x)} and {y.shape}")
    return x, y


def _check_batch_size(batch_size: Any) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) \
            or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    return int(batch_size)


def _fmt_logs(logs: dict[str, float]) -> str:
    return " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())


# --------------------------------------------------------------------------------------------
# file helpers


def _atomic_savez(path: str | os.PathLike[str], arrays: dict[str, np.ndarray]) -> None:
    """``np.savez`` to a new file in ``path``'s directory, fsync, then ``os.replace``: ``path``
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
            np.savez(f, **arrays)  # type: ignore[arg-type]
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
            np.savez(f, **arrays)  # type: ignore[arg-type]
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
# the model


class Sequential:
    """A linear stack of layers.

    Args:
        layers: layers in order (more can be added with :meth:`add`).
        input_shape: per-sample input shape ``(C, H, W)`` (or ``(features,)``); when given
            the model is built at once, otherwise on the first call / fit from the data.
        seed: seed of the weight initialisation (``np.random.default_rng(seed)``); None gives
            fresh random weights.
        name: shown by :meth:`summary`.
    """

    def __init__(self, layers: Iterable[_layers.Layer] | None = None,
                 input_shape: tuple[int, ...] | None = None, *, seed: int | None = None,
                 name: str = "sequential") -> None:
        self.name = name
        self.seed = seed
        self.layers: list[_layers.Layer] = []
        self.input_shape: tuple[int, ...] | None = None
        self.built = False
        self.optimizer: _optimizers.Optimizer | None = None
        self.loss: _losses.Loss | None = None
        self.metrics: list[_metrics.Metric] = []
        self.stop_training = False
        self.device = "cpu"
        self.history: _callbacks.History | None = None
        #: JSON-serialisable facts saved with the model (e.g. class names and preprocessing,
        #: which ``fastcnn predict`` reads).
        self.metadata: dict[str, Any] = {}
        self._rng = np.random.default_rng(seed)
        for layer in layers or []:
            self.add(layer)
        if input_shape is not None:
            self.build(input_shape)

    # -- structure --------------------------------------------------------------------------
    def add(self, layer: _layers.Layer) -> None:
        """Append a layer (named ``<kind>``, ``<kind>_1``, ... unless it has a name); built at
        once when the model already is."""
        if not isinstance(layer, _layers.Layer):
            raise TypeError(f"Sequential takes fastcnn.layers.Layer objects, got {layer!r}")
        if any(layer is other for other in self.layers):
            raise ValueError(f"{layer!r} is already in the model")
        names = {lay.name for lay in self.layers}
        if layer.name is None:
            base, i = layer.default_name, 0
            cand = base
            while cand in names:
                i += 1
                cand = f"{base}_{i}"
            layer.name = cand
        elif layer.name in names:
            raise ValueError(f"duplicate layer name {layer.name!r}")
        if self.built:
            shape = self.layers[-1].output_shape if self.layers else self.input_shape
            layer.build(shape, self._rng)  # type: ignore[arg-type]
            layer.to_device(self.device)
        self.layers.append(layer)

    def build(self, input_shape: tuple[int, ...], seed: int | None = None) -> None:
        """(Re)create every layer's weights for per-sample ``input_shape``; the generator is
        ``np.random.default_rng(seed)`` (``seed`` defaults to the model's)."""
        shape = tuple(int(s) for s in input_shape)
        if not shape or any(s < 1 for s in shape):
            raise ValueError(f"input_shape must be a tuple of positive ints such as (C, H, W), "
                             f"got {input_shape!r}")
        if not self.layers:
            raise ValueError("the model has no layers")
        self._rng = np.random.default_rng(self.seed if seed is None else seed)
        for layer in self.layers:
            shape = layer.build(shape, self._rng)
            layer.to_device(self.device)  # weights are created on the host
        self.input_shape = tuple(int(s) for s in input_shape)
        self.built = True

    def _require_built(self) -> None:
        if not self.built:
            raise ValueError("the model is not built: pass input_shape=(C, H, W) to "
                             "Sequential or call build(), fit() or the model first")

    def _ensure_built(self, x: np.ndarray) -> None:
        if not self.built:
            self.build(tuple(x.shape[1:]))
        elif tuple(x.shape[1:]) != self.input_shape:
            want = ", ".join(str(s) for s in self.input_shape)  # type: ignore[union-attr]
            raise ValueError(f"expected inputs of shape (N, {want}) for input_shape="
                             f"{self.input_shape}, got {x.shape}")

    @property
    def output_shape(self) -> tuple[int, ...] | None:
        """Per-sample output shape (None before the model is built)."""
        return self.layers[-1].output_shape if self.built else None

    # -- weights ----------------------------------------------------------------------------
    def named_parameters(self) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """Yield ``("<layer>/<param>", param, grad)`` for every trainable weight."""
        for layer in self.layers:
            for k, p, g in layer.named_parameters():
                yield f"{layer.name}/{k}", p, g

    def parameters(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(param, grad)`` pairs of the trainable weights; optimizers update the
        ``param`` arrays in place."""
        for _, p, g in self.named_parameters():
            yield p, g

    def _all_weights(self) -> dict[str, np.ndarray]:
        return {f"{layer.name}/{k}": p for layer in self.layers for k, p in layer.params.items()}

    def get_weights(self) -> list[np.ndarray]:
        """Copies of all weights (trainable or not), layer by layer, as NumPy arrays (also for
        a model on the GPU)."""
        return [host_copy(p) for p in self._all_weights().values()]

    def set_weights(self, weights: list[np.ndarray]) -> None:
        """Assign all weights in :meth:`get_weights` order (every shape checked first)."""
        self._require_built()
        current = list(self._all_weights().items())
        weights = list(weights)
        if len(weights) != len(current):
            raise ValueError(f"set_weights: expected {len(current)} arrays, got {len(weights)}")
        for (k, p), w in zip(current, weights, strict=True):
            shape = tuple(w.shape) if is_cupy(w) else np.shape(w)
            if shape != p.shape:
                raise ValueError(f"set_weights: {k!r} has shape {p.shape}, got {shape}")
        for (_, p), w in zip(current, weights, strict=True):
            assign(p, w)

    def count_params(self) -> int:
        """Number of scalars in all weights (Keras' total)."""
        self._require_built()
        return sum(layer.count_params() for layer in self.layers)

    @property
    def flops(self) -> int:
        """Forward FLOPs per sample (sum over layers)."""
        self._require_built()
        return sum(layer.flops for layer in self.layers)

    # -- summary ----------------------------------------------------------------------------
    def summary(self, print_fn: Any = None) -> None:
        """Print a Keras-style table: layer (type), output shape, params, forward FLOPs per
        sample, then total / trainable / non-trainable parameter counts."""
        self._require_built()
        print_fn = print_fn or print
        rows = [("Layer (type)", "Output Shape", "Param #", "FLOPs")]
        for layer in self.layers:
            shape = "(None, " + ", ".join(str(s) for s in layer.output_shape) + ")"  # type: ignore[union-attr]
            rows.append((f"{layer.name} ({type(layer).__name__})", shape,
                         f"{layer.count_params():,}", f"{layer.flops:,}"))
        widths = [max(len(r[i]) for r in rows) + 3 for i in range(4)]
        width = sum(widths)

        def line(r: tuple[str, ...]) -> str:
            return "".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()

        total = self.count_params()
        trainable = sum(lay.count_params() for lay in self.layers if lay.trainable)
        print_fn(f'Model: "{self.name}"')
        print_fn("_" * width)
        print_fn(line(rows[0]))
        print_fn("=" * width)
        for i, r in enumerate(rows[1:]):
            print_fn(line(r))
            print_fn(("_" if i < len(rows) - 2 else "=") * width)
        print_fn(f"Total params: {total:,} ({_readable_bytes(4 * total)})")
        print_fn(f"Trainable params: {trainable:,} ({_readable_bytes(4 * trainable)})")
        print_fn(f"Non-trainable params: {total - trainable:,} "
                 f"({_readable_bytes(4 * (total - trainable))})")
        print_fn(f"Forward FLOPs per sample: {self.flops:,}")
        print_fn("_" * width)

    # -- running ----------------------------------------------------------------------------
    @property
    def output_fused(self) -> bool:
        """True when the last layer's activation is fused into the compiled loss (softmax
        with a cross-entropy, sigmoid with binary cross-entropy)."""
        if self.loss is None or not self.layers or self.loss.from_logits:
            return False
        last = self.layers[-1]
        act = getattr(last, "activation", None) if last.has_activation else None
        return act is not None and act == self.loss.fused_activation

    def _input(self, x: Any, who: str) -> Any:
        """``x`` as a C-contiguous float32 array: NumPy (converted), or a CuPy array when the
        model is on the GPU (TypeError on the CPU)."""
        if is_cupy(x):
            if self.device != "cuda":
                raise TypeError(f"{who}: got a cupy array but the model is on the CPU; call "
                                f"model.to('cuda') or pass NumPy arrays (cupy.asnumpy)")
            import cupy

            return cupy.ascontiguousarray(x, dtype=np.float32)
        return _to_float32(x)

    def _on_device(self, a: Any) -> Any:
        """``a`` on the model's device (a NumPy array uploaded when the model is on the GPU)."""
        if self.device == "cuda" and a is not None and not is_cupy(a):
            import cupy

            return cupy.asarray(a)
        return a

    def _device_batches(self, pairs: Iterator[tuple[Any, Any]]) -> Iterator[tuple[Any, Any]]:
        """``(x, y)`` batches on the model's device: uploaded one batch ahead on the GPU
        (:class:`fastcnn._device.BatchUploader`), passed through on the CPU."""
        try:
            if self.device != "cuda":
                yield from pairs
                return
            up = BatchUploader()
            try:
                pending = None
                for xb, yb in pairs:
                    started = up.start((xb, yb))  # before batch i's work is queued
                    if pending is not None:
                        yield up.finish(pending)  # type: ignore[misc]
                    pending = started
                if pending is not None:
                    yield up.finish(pending)  # type: ignore[misc]
            finally:
                up.close()
        finally:
            _close_iterator(pairs)

    def _forward(self, x: np.ndarray, training: bool, logits: bool) -> np.ndarray:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            if logits and i == last and layer.has_activation:
                x = layer.forward(x, training, apply_activation=False)  # type: ignore[call-arg]
            else:
                x = layer.forward(x, training)
        return x

    def __call__(self, x: Any, training: bool = False, logits: bool = False) -> np.ndarray:
        """Forward pass: ``x`` (N, *input_shape) -> output (N, *output_shape), float32.

        Args:
            training: cache what :meth:`backward` needs and apply Dropout.
            logits: skip the last layer's activation (return its pre-activation values).
        """
        x = self._input(x, "model(x)")
        self._ensure_built(x)
        return self._forward(self._on_device(x), training, logits)

    def backward(self, dy: Any, accumulate: bool = False,
                 input_grad: bool = True) -> np.ndarray | None:
        """Backward pass after ``model(x, training=True)``: ``dy`` (gradient of the loss with
        respect to that call's output, converted to float32) -> ``dx`` (N, *input_shape).
        Writes each trainable layer's ``grads`` (adds to them with ``accumulate=True``).
        ``input_grad=False`` skips the gradient with respect to the input (the first layer's
        dx, which training doesn't need) and returns None."""
        self._require_built()
        g = self._on_device(self._input(dy, "backward"))
        first = self.layers[0] if self.layers else None
        if first is not None:
            first.need_input_grad = bool(input_grad)
        try:
            i = len(self.layers) - 1
            while i >= 0:
                layer = self.layers[i]
                prev = self.layers[i - 1] if i > 0 else None
                # Conv2D -> MaxPool2D: the pooling's backward runs inside the convolution's
                # (fused with its ReLU's; the full-size gradient never materialised)
                if (isinstance(layer, _layers.MaxPool2D) and isinstance(prev, _layers.Conv2D)
                        and prev.accepts_pooled_grad()):
                    pool = layer.pooled_grad_args()
                    if pool is not None:
                        g = prev.backward(g, accumulate, pool=pool)
                        i -= 2
                        continue
                g = layer.backward(g, accumulate)
                i -= 1
        finally:
            if first is not None:
                first.need_input_grad = True
        return g if input_grad else None

    def predict(self, x: Any, batch_size: int = 32, verbose: int = 0) -> np.ndarray:
        """Outputs (probabilities for a softmax / sigmoid output) for ``x`` (an array or a
        dataset yielding ``(x_batch, y_batch)`` or ``x_batch``), batch by batch.

        Returns:
            float32 NumPy array (N, *output_shape), also for a model on the GPU (its outputs
            are gathered on the device and copied to the host once, at the end).
        """
        outs = []
        for xb, _ in self._eval_batches(x, None, batch_size, "predict", verbose):
            out = self._forward(xb, False, False)
            if is_cupy(out) and (out is xb or out.base is not None):
                out = out.copy()  # a view of an upload buffer, which is reused
            outs.append(out)
        if not outs:
            self._require_built()
            return np.zeros((0, *self.output_shape), dtype=np.float32)  # type: ignore[misc]
        if is_cupy(outs[0]):
            import cupy

            return cupy.asnumpy(cupy.concatenate(outs, axis=0))
        return np.concatenate(outs, axis=0)

    def _eval_batches(self, x: Any, y: Any, batch_size: int, who: str,
                      verbose: int) -> Iterator[tuple[np.ndarray, Any]]:
        if _is_dataset(x):
            if y is not None:
                raise ValueError(f"{who}: y must be None when x is a dataset")
            source: Any = x
        else:
            xa, ya = _check_arrays(x, y, who)
            source = _ArrayBatches(xa, ya, _check_batch_size(batch_size))
        bar = tqdm(total=len(source), desc=who, unit="batch", disable=verbose != 1,
                   file=sys.stdout, leave=True)

        def host_batches(batches: Iterator[Any]) -> Iterator[tuple[Any, Any]]:
            try:
                for item in batches:
                    if isinstance(item, tuple | list) and len(item) == 2:
                        xb, yb = item
                    elif isinstance(item, tuple | list) and len(item) == 1:
                        xb, yb = item[0], None
                    else:
                        xb, yb = item, None
                    xb = self._input(xb, who)
                    self._ensure_built(xb)
                    yield xb, yb
            finally:
                _close_iterator(batches)

        batches = self._device_batches(host_batches(iter(source)))
        try:
            for xb, yb in batches:
                yield xb, yb
                bar.update(1)
        finally:
            bar.close()
            _close_iterator(batches)

    # -- compile / evaluate -----------------------------------------------------------------
    def compile(self, optimizer: Any = "rmsprop", loss: Any = None, metrics: Any = None) -> None:
        """Set the optimizer (object or ``"sgd"``/``"adam"``/``"adamw"``/``"rmsprop"``), the
        loss (``"sparse_categorical_crossentropy"``, ``"categorical_crossentropy"``,
        ``"binary_crossentropy"``, ``"mse"`` or a Loss) and metrics (``["accuracy",
        "top_k", ...]``; see :mod:`fastcnn.metrics`)."""
        if loss is None:
            raise ValueError("compile: a loss is required")
        self.optimizer = _optimizers.get(optimizer)
        self.loss = _losses.get(loss)
        self.metrics = _metrics.get_list(metrics)
        self._check_loss_activation()
        self._place_optimizer_state()

    def _check_loss_activation(self) -> None:
        if self.loss is None or not self.layers:
            return
        last = self.layers[-1]
        act = getattr(last, "activation", None) if last.has_activation else None
        if self.loss.from_logits and act in ("softmax", "sigmoid"):
            raise ValueError(f"the loss has from_logits=True but the last layer "
                             f"{last.name!r} already applies {act!r}; drop one of the two")

    def _require_compiled(self, who: str) -> tuple[_losses.Loss, _optimizers.Optimizer]:
        if self.loss is None or self.optimizer is None:
            raise RuntimeError(f"{who}: call model.compile(optimizer, loss, metrics) first")
        return self.loss, self.optimizer

    def evaluate(self, x: Any, y: Any = None, batch_size: int = 32, verbose: int = 0,
                 return_dict: bool = False) -> float | list[float] | dict[str, float]:
        """Loss and metrics over ``(x, y)`` or a dataset.

        Returns:
            the loss (no metrics), ``[loss, metric, ...]`` in compile order, or a dict
            ``{"loss": ..., "<metric>": ...}`` with ``return_dict=True``.
        """
        self._require_compiled("evaluate")
        logs = self._evaluate_logs(x, y, batch_size, verbose, "evaluate")
        if return_dict:
            return logs
        if not self.metrics:
            return logs["loss"]
        return list(logs.values())

    def _evaluate_logs(self, x: Any, y: Any, batch_size: int, verbose: int,
                       who: str) -> dict[str, float]:
        loss_fn = self.loss
        assert loss_fn is not None
        if not _is_dataset(x) and y is None:
            raise ValueError(f"{who}: y is required with array inputs")
        fused = self.output_fused
        total, count = 0.0, 0
        for m in self.metrics:
            m.reset()
        for xb, yb in self._eval_batches(x, y, batch_size, who, verbose):
            if yb is None:
                raise ValueError(f"{who}: the dataset yielded no labels")
            out = self._forward(xb, False, fused)
            value, _ = loss_fn.value_and_grad(out, yb, logits=fused)
            n = len(xb)
            total += value * n
            count += n
            for m in self.metrics:
                m.update(yb, out, logits=fused or loss_fn.from_logits)
        if count == 0:
            raise ValueError(f"{who}: no samples")
        logs = {"loss": total / count}
        logs.update({m.name: m.result() for m in self.metrics})
        return logs

    # -- fit --------------------------------------------------------------------------------
    def fit(self, x: Any = None, y: Any = None, batch_size: int = 32, epochs: int = 1,
            verbose: int = 1, callbacks: list[_callbacks.Callback] | None = None,
            validation_split: float = 0.0, validation_data: Any = None, shuffle: bool = True,
            seed: int | None = None, initial_epoch: int = 0) -> _callbacks.History:
        """Train for ``epochs`` epochs (see the module docstring for the exact steps).

        Args:
            x, y: arrays (N, *input_shape) and labels (N, ...), or ``x`` a dataset object
                (iterable of ``(x_batch, y_batch)`` with ``__len__``) and ``y`` None.
            batch_size: samples per batch (arrays only).
            epochs: train until this epoch index (``initial_epoch`` to ``epochs - 1``).
            verbose: 0 silent, 1 a tqdm progress bar per epoch with the running loss and
                metrics, 2 one line per epoch.
            callbacks: :mod:`fastcnn.callbacks` objects.
            validation_split: fraction of the arrays held out (the last samples) for
                validation; ignored when ``validation_data`` is given.
            validation_data: ``(x_val, y_val)`` or a dataset, evaluated after every epoch
                (``val_loss``, ``val_<metric>``).
            shuffle: reshuffle the arrays every epoch.
            seed: seed of the shuffling generator (``np.random.default_rng(seed)``).

        Returns:
            :class:`fastcnn.callbacks.History` (also kept as ``model.history``).

        Raises:
            NonFiniteLossError: the loss became NaN / inf (names epoch and batch).
        """
        loss_fn, optimizer = self._require_compiled("fit")
        if isinstance(epochs, bool) or not isinstance(epochs, int | np.integer) or epochs < 0:
            raise ValueError(f"fit: epochs must be an int >= 0, got {epochs!r}")
        if verbose not in (0, 1, 2):
            raise ValueError(f"fit: verbose must be 0, 1 or 2, got {verbose!r}")
        rng = np.random.default_rng(seed)
        train, val = self._fit_sources(x, y, batch_size, validation_split, validation_data)
        array_train = isinstance(train, _ArrayBatches)
        if array_train:
            self._ensure_built(self._input(train.x[:1], "fit"))
        self._check_loss_activation()

        history = _callbacks.History()
        history.params = {"epochs": int(epochs), "steps": len(train),
                          "batch_size": batch_size if array_train else None}
        # History last: it records the keys other callbacks add to the epoch logs
        cbs = _callbacks.CallbackList([*(callbacks or []), history], model=self)
        self.history = history
        self.stop_training = False

        interrupt = {"flag": False}
        old_handler = _install_sigint(interrupt)
        bar: Any = None
        batches: Any = None
        epoch, batch = initial_epoch, -1
        try:
            cbs.on_train_begin({})
            for epoch in range(initial_epoch, epochs):
                if array_train:
                    train.order = (rng.permutation(len(train.x)) if shuffle
                                   else None)
                cbs.on_epoch_begin(epoch, {})
                t0 = time.perf_counter()
                bar = tqdm(total=len(train), desc=f"Epoch {epoch + 1}/{epochs}", unit="batch",
                           disable=verbose != 1, file=sys.stdout, leave=True)
                running = 0.0
                seen = 0
                for m in self.metrics:
                    m.reset()
                batch = -1
                batches = self._device_batches(self._fit_batches(iter(train)))
                for batch, (xb, yb) in enumerate(batches):
                    cbs.on_train_batch_begin(batch, {})
                    fused = self.output_fused
                    out = self._forward(xb, True, fused)
                    value, dout = loss_fn.value_and_grad(out, yb, logits=fused)
                    if not math.isfinite(value):
                        raise NonFiniteLossError(
                            f"the loss became {value} at epoch {epoch + 1}, batch {batch + 1} "
                            f"(of {len(train)}); the weights are those before that batch. "
                            f"Lower the learning rate or check the inputs for NaN/inf.")
                    self.backward(dout, input_grad=False)
                    optimizer.step(self)
                    n = len(xb)
                    running += value * n
                    seen += n
                    for m in self.metrics:
                        m.update(yb, out, logits=fused or loss_fn.from_logits)
                    blogs = {"loss": running / seen, **{m.name: m.result() for m in self.metrics}}
                    bar.set_postfix({k: f"{v:.4f}" for k, v in blogs.items()}, refresh=False)
                    bar.update(1)
                    cbs.on_train_batch_end(batch, blogs)
                    if interrupt["flag"] or self.stop_training:
                        break
                _close_iterator(batches)
                if interrupt["flag"]:
                    break
                if seen == 0:
                    raise ValueError("fit: the training data yielded no batches")
                logs = {"loss": running / seen, **{m.name: m.result() for m in self.metrics}}
                if val is not None:
                    vlogs = self._evaluate_logs(val[0], val[1], batch_size, 0, "validation")
                    logs.update({f"val_{k}": v for k, v in vlogs.items()})
                bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items()}, refresh=True)
                bar.close()
                bar = None
                if verbose == 2:
                    print(f"Epoch {epoch + 1}/{epochs} - {time.perf_counter() - t0:.1f}s - "
                          f"{_fmt_logs(logs)}")
                cbs.on_epoch_end(epoch, logs)
                if interrupt["flag"] or self.stop_training:
                    break
        except KeyboardInterrupt:
            # raised outside our handler's reach (e.g. by a data loader): the batch in flight
            # was not applied (the update itself runs with SIGINT deferred)
            interrupt["flag"] = True
        finally:
            if bar is not None:
                bar.close()
            _close_iterator(batches)
            _restore_sigint(old_handler)
        if interrupt["flag"]:
            history.interrupted = True
            print(f"Training interrupted (Ctrl-C) during epoch {epoch + 1}, after batch "
                  f"{batch + 1}; returning the history of {len(history.epoch)} completed "
                  f"epoch(s).", flush=True)
        cbs.on_train_end({})
        return history

    def _fit_batches(self, batches: Iterator[Any]) -> Iterator[tuple[Any, Any]]:
        """Training items as ``(x float32, y)`` host (or CuPy) arrays, the model built."""
        try:
            for item in batches:
                xb_raw, yb = _xy(item, "fit")
                xb = self._input(xb_raw, "fit")
                self._ensure_built(xb)
                yield xb, yb
        finally:
            _close_iterator(batches)

    def _fit_sources(self, x: Any, y: Any, batch_size: int, validation_split: float,
                     validation_data: Any) -> tuple[Any, tuple[Any, Any] | None]:
        val: tuple[Any, Any] | None = None
        if _is_dataset(x):
            if y is not None:
                raise ValueError("fit: y must be None when x is a dataset (it yields labels)")
            if validation_split:
                raise ValueError("fit: validation_split needs arrays; pass validation_data "
                                 "for a dataset")
            if len(x) == 0:
                raise ValueError("fit: the dataset has no batches")
            train: Any = x
        else:
            if x is None or y is None:
                raise ValueError("fit: pass x and y arrays, or a dataset as x")
            xa, ya = _check_arrays(x, y, "fit")
            assert ya is not None
            bs = _check_batch_size(batch_size)
            if validation_split and validation_data is None:  # validation_data wins (Keras)
                if not 0.0 < float(validation_split) < 1.0:
                    raise ValueError(f"fit: validation_split must be in (0, 1), got "
                                     f"{validation_split}")
                split = math.ceil(len(xa) * (1.0 - float(validation_split)))
                if split == len(xa) or split == 0:
                    raise ValueError(f"fit: validation_split={validation_split} of "
                                     f"{len(xa)} samples leaves an empty set")
                val = (xa[split:], ya[split:])
                xa, ya = xa[:split], ya[:split]
            if len(xa) == 0:
                raise ValueError("fit: no training samples")
            train = _ArrayBatches(xa, ya, bs)
        if validation_data is not None:
            if _is_dataset(validation_data):
                val = (validation_data, None)
            elif isinstance(validation_data, tuple | list) and len(validation_data) == 2:
                xv, yv = _check_arrays(validation_data[0], validation_data[1], "validation")
                val = (xv, yv)
            else:
                raise ValueError("fit: validation_data must be (x_val, y_val) or a dataset")
        return train, val

    # -- device -----------------------------------------------------------------------------
    def to(self, device: str, *, strict: bool = False) -> Sequential:
        """Move the model (weights, gradients, optimizer state) to a device; returns ``self``.

        Args:
            device: ``"cpu"`` (NumPy arrays), ``"cuda"`` (CuPy arrays on the current GPU) or
                ``"auto"`` (the GPU when ``fastcnn.info()["cuda_available"]``, else the CPU,
                without a warning).
            strict: with ``"cuda"``, raise instead of falling back to the CPU.

        Raises:
            ValueError: an unknown device name.
            RuntimeError: ``"cuda"`` with ``strict=True`` and the GPU can't be used (the
                message says why: no CUDA module, no CuPy, no device / driver).

        Warns:
            RuntimeWarning: ``"cuda"`` without ``strict`` when the GPU can't be used (one
                warning saying why; the model stays on the CPU).
        """
        if device not in ("cpu", "cuda", "auto"):
            raise ValueError(f"device must be 'cpu', 'cuda' or 'auto', got {device!r}")
        target = "cpu"
        if device != "cpu":
            reason = _device.cuda_unavailable_reason()  # looked up here: patchable in tests
            if reason is None:
                target = "cuda"
            elif device == "cuda":
                if strict:
                    raise RuntimeError(f"model.to('cuda', strict=True): the GPU can't be "
                                       f"used: {reason}")
                warnings.warn(f"model.to('cuda'): {reason}; the model stays on the CPU",
                              RuntimeWarning, stacklevel=2)
        self.device = target
        for layer in self.layers:
            layer.to_device(target)
        self._place_optimizer_state()
        return self

    def _place_optimizer_state(self) -> None:
        """Move the optimizer's state arrays (not its step counters) to the model's device."""
        if self.optimizer is None:
            return
        for st in self.optimizer.state.values():
            for slot, a in list(st.items()):
                if slot != "step":
                    st[slot] = _device_move(a, self.device)

    # -- saving -----------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """Architecture as a JSON-serialisable dict."""
        return {
            "class_name": "Sequential",
            "name": self.name,
            "seed": self.seed,
            "input_shape": list(self.input_shape) if self.input_shape else None,
            "layers": [{"class_name": type(lay).__name__, "config": lay.get_config()}
                       for lay in self.layers],
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Sequential:
        """Model (built when the config has an input shape) from :meth:`get_config`."""
        if not isinstance(config, dict) or config.get("class_name") != "Sequential":
            raise ValueError("not a Sequential architecture")
        layers = [_layers.deserialize(spec) for spec in config.get("layers", [])]
        shape = config.get("input_shape")
        return cls(layers, input_shape=tuple(shape) if shape else None,
                   seed=config.get("seed"), name=config.get("name", "sequential"))

    def _training_config(self) -> dict[str, Any] | None:
        if self.loss is None or self.optimizer is None:
            return None
        try:
            return {
                "loss": _losses.serialize(self.loss),
                "metrics": [{"class_name": type(m).__name__, "config": m.get_config()}
                            for m in self.metrics],
                "optimizer": _optimizers.serialize(self.optimizer),
            }
        except ValueError as e:
            warnings.warn(f"save: the compile settings are not saved ({e})", UserWarning,
                          stacklevel=3)
            return None

    def save(self, path: str | os.PathLike[str], include_optimizer: bool = True) -> None:
        """Write architecture, weights, compile settings and optimizer state to one ``.npz``
        at ``path`` (atomically: temporary file + ``os.replace``)."""
        self._require_built()
        arrays: dict[str, np.ndarray] = {
            "format": np.array(MODEL_FORMAT),
            "architecture": np.array(json.dumps(self.get_config())),
        }
        for k, p in self._all_weights().items():
            arrays[f"weights/{k}"] = to_host(p)
        if self.metadata:
            try:
                arrays["metadata"] = np.array(json.dumps(self.metadata))
            except TypeError as e:
                raise ValueError(f"save: model.metadata must be JSON-serialisable: {e}") from e
        states = {lay.name: st for lay in self.layers if (st := lay.get_state()) is not None}
        if states:
            arrays["layer_states"] = np.array(json.dumps(states))
        tc = self._training_config()
        if tc is not None:
            arrays["training_config"] = np.array(json.dumps(tc))
            if include_optimizer and self.optimizer is not None:
                for k, v in self.optimizer.get_state().items():
                    arrays[f"optimizer/{k}"] = v
        _atomic_savez(path, arrays)

    def save_weights(self, path: str | os.PathLike[str]) -> None:
        """Write only the weights (``weights/<layer>/<param>``) to one ``.npz``, atomically."""
        self._require_built()
        arrays = {"format": np.array(WEIGHTS_FORMAT)}
        for k, p in self._all_weights().items():
            arrays[f"weights/{k}"] = to_host(p)
        _atomic_savez(path, arrays)

    def _checked_weights(self, arrays: dict[str, np.ndarray],
                         path: Any) -> list[tuple[np.ndarray, np.ndarray]]:
        """Pair every model weight with its array from a file; ValueError before any change.

        Weights are matched by name; when the names differ (a model whose layers were named
        differently) but the file holds the same number of weights with the same shapes in
        the same order, they are matched by position."""
        name = os.fspath(path)
        mine = self._all_weights()
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
        pairs = []
        for k, p in mine.items():
            a = stored[k]
            if a.shape != p.shape:
                raise ValueError(f"{name!r}: weight {k!r} has shape {a.shape}, the model "
                                 f"expects {p.shape}")
            if a.dtype != np.float32:
                raise ValueError(f"{name!r}: weight {k!r} has dtype {a.dtype}, expected "
                                 f"float32")
            pairs.append((p, a))
        return pairs

    def load_weights(self, path: str | os.PathLike[str]) -> None:
        """Load weights saved by :meth:`save_weights` or :meth:`save` (checked first; on any
        error the model is unchanged)."""
        self._require_built()
        arrays = _read_npz(path)
        _format_of(arrays, path)
        for p, a in self._checked_weights(arrays, path):
            assign(p, a)


def _close_iterator(it: Any) -> None:
    """Stop a dataset's epoch iterator early (a background producer thread, a generator)."""
    close = getattr(it, "close", None)
    if callable(close):
        close()


def _readable_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.2f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    return f"{size:.2f} GB"  # pragma: no cover


def _install_sigint(state: dict[str, bool]) -> Any:
    """Defer Ctrl-C to the end of the current batch; returns the handler to restore (or None
    when no handler could be installed, e.g. outside the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    old = signal.getsignal(signal.SIGINT)
    if old is None:  # installed from C; leave it alone
        return None

    def handler(signum: int, frame: Any) -> None:
        state["flag"] = True

    try:
        signal.signal(signal.SIGINT, handler)
    except ValueError:
        return None
    return old


def _restore_sigint(old: Any) -> None:
    if old is not None:
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGINT, old)


def load_model(path: str | os.PathLike[str], compile: bool = True) -> Sequential:
    """Rebuild a model saved by :meth:`Sequential.save`: architecture, weights and (with
    ``compile=True``) optimizer, loss, metrics and optimizer state.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a fastcnn model file, truncated / damaged, pickled data, or any key,
            shape or dtype that does not match the stored architecture.
    """
    arrays = _read_npz(path)
    name = os.fspath(path)
    fmt = _format_of(arrays, path)
    if fmt != MODEL_FORMAT:
        raise ValueError(f"{name!r} holds only weights (save_weights); build the model and "
                         f"call model.load_weights(path) instead")
    arch = _json_field(arrays, "architecture", path)
    try:
        model = Sequential.from_config(arch)
    except (ValueError, TypeError, KeyError) as e:
        raise ValueError(f"{name!r}: bad architecture: {e}") from e
    if not model.built:
        raise ValueError(f"{name!r}: the architecture has no input shape")
    pairs = model._checked_weights(arrays, path)
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
        except (ValueError, TypeError, KeyError) as e:
            raise ValueError(f"{name!r}: bad training_config: {e}") from e
        if opt_state:
            expected = {k: p.shape for k, p, _ in model.named_parameters()}
            try:
                optimizer.set_state(opt_state, expected)
            except ValueError as e:
                raise ValueError(f"{name!r}: {e}") from e
        model.compile(optimizer, loss, metric_objs)
    for p, a in pairs:
        p[...] = a
    for layer, checked in layer_states:
        layer.set_state(checked)
    model.metadata = metadata
    return model
