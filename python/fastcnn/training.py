"""Training: ``fit`` / ``evaluate`` / ``predict`` around one :func:`train_step`.

:class:`fastcnn.trainer.Trainer` gives every model its ``fit`` / ``evaluate`` / ``predict``
methods, which call the functions of the same names here (``evaluate`` / ``predict`` live in
:mod:`fastcnn.evaluation` and are re-exported), and Keras' ``train_on_batch`` (one
:func:`train_step`) / ``test_on_batch`` / ``predict_on_batch``; :func:`train_step` is the one
training step that ``fit`` runs for every batch and that a custom loop can call too.

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
does. For each batch it calls ``train_step(model, xb, yb)``, which does::

    fused = model.output_fused                   # softmax/sigmoid output + matching loss
    out = model(xb, training=True, logits=fused)  # logits of the last layer when fused
    loss, dout = model.loss.value_and_grad(out, yb, logits=fused)
    # a NaN / inf loss raises NonFiniteLossError here, before any weight changes
    model.backward(dout, compute_dx=False)        # writes every layer's grads, skips dx
    model.optimizer.step(model)                   # in-place update

A hand-written loop calling ``train_step`` (or doing those lines) on the same batches gives
bitwise the same weights as ``fit`` (see tests/test_training.py and tests/test_model.py).
``model.backward`` overwrites the gradients (``accumulate=True`` adds to them);
``optimizer.zero_grad(model)`` zeroes them.

With a dataset object (anything iterable over ``(x_batch, y_batch)`` with ``__len__`` = number
of batches, e.g. :class:`fastcnn.data.ArrayDataset` / ``ImageFolder``) the dataset decides batch
size and order; ``batch_size``, ``shuffle``, ``seed`` and ``validation_split`` do not apply.

Generators, Sequences, steps, weights (Keras' arguments and rules)
-----------------------------------------------------------------
``x`` may also be a Keras ``Sequence``-style object (``__getitem__(i)`` + ``__len__``: batches
``x[0] .. x[len - 1]`` each epoch, ``x.on_epoch_end()`` after each) or a Python generator /
iterator of batches. Any batch may be ``(x, y, sample_weight)``. A generator without
``steps_per_epoch`` is consumed until it ends in the first epoch; as it can't be replayed,
training then stops before the next epoch with a UserWarning ("your input ran out of data").
``steps_per_epoch=k`` takes the next ``k`` batches each epoch from a pass that continues across
epochs (Keras 3): an infinite generator needs it; arrays and datasets start a new pass (arrays
reshuffled) when one ends, and an epoch in which a pass ended early is shorter (a warning).
``validation_steps`` does the same for the validation data, ``validation_freq`` (an int n:
every n-th epoch; or a list of 1-based epochs) says after which epochs to validate
(``val_*`` keys appear in the History only for those). ``evaluate`` / ``predict`` take
``steps`` (the number of batches; needed for an infinite generator).

``sample_weight`` (N,) (arrays; a dataset yields it as the third element) weighs each sample's
loss: the batch loss is ``sum(w * l) / batch_size`` (Keras' ``"sum_over_batch_size"``) and the
gradient is the unweighted one with sample ``i``'s row scaled by ``w_i`` (all ones: bitwise the
unweighted training). ``class_weight={class: weight}`` is the same with ``w_i =
class_weight[y_i]`` (class ids or the arg-max of one-hot rows; missing classes weigh 1; not
together with sample weights). As in Keras, ``model.metrics`` are not weighted, the
``model.weighted_metrics`` are; ``train_step(model, x, y, sample_weight=w)`` takes them too.

Determinism: ``Sequential(..., seed=s)`` initialises weights from ``np.random.default_rng(s)``
(layers in order) and seeds Dropout masks from it; with the same model seed and fit seed,
training gives the same weights run to run.

Errors and interruption: a NaN or infinite loss raises :class:`NonFiniteLossError` (both a
FloatingPointError and a ValueError; ``fit``'s names the epoch and batch), before that batch
changes any weight. Ctrl-C (SIGINT) during ``fit`` is deferred to the end of the current batch
(its update is completed, never half-applied), then the progress bar is closed, a line saying
training was interrupted is printed, ``on_train_end`` runs and the History of the completed
epochs is returned (``history.interrupted`` is True).

Devices
-------
Inputs may be NumPy or CuPy arrays, lists, PyTorch tensors or DLPack objects (tensors are viewed
without a copy; :mod:`fastcnn._arrays`); an object is a dataset only when it is not array-like, so a
tensor is one array, never a dataset of rows. On the GPU, ``fit`` / ``evaluate`` / ``predict`` take
host inputs (or datasets yielding them) and upload each batch, labels included, one batch ahead:
with CuPy's pinned memory and streams the copy of batch i + 1 runs on its own stream while batch i
computes (see :class:`fastcnn._device.BatchUploader`). CuPy inputs are used as they are. Inside
``fit`` a GPU training step neither copies anything to the host nor waits for the device: the loss
and the metrics accumulate on the device and the checks (class ids, a non-finite loss) run there
(:mod:`fastcnn._deferred`); ``fit`` reads them at most every 0.1 s (a progress refresh; also what
the callbacks' batch logs read when a callback looks at them) and at the end of each epoch. A
failed check then raises naming its epoch and batch, the batches queued after it applied, except
after a non-finite loss: the built-in optimizers (the SGD / Adam kernels, RMSprop's CuPy
formulas) skip every update from that batch on (a device flag), so the weights are those before
it (a custom optimizer's updates until the read are applied; the host step counters advance).
``train_step`` called by itself reads its loss (a float) and checks it before the update.
``fit`` replays each batch shape's step as one CUDA graph (``cuda_graph="auto"``,
:class:`CompiledStep`; the same bits as the eager step; what runs eagerly and why:
:mod:`fastcnn._cuda_graph`). ``predict`` returns a NumPy array (as Keras does; a torch tensor on
the input's device for a torch tensor), ``evaluate`` Python floats.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
import time
import warnings
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from tqdm import tqdm

from . import _cuda_graph, _deferred, _fit_checks
from . import callbacks as _callbacks
from ._arrays import is_cupy
from ._batches import (
    ArrayBatches,
    check_class_weight,
    check_steps,
    check_validation_freq,
    close_iterator,
    device_batches,
    fit_batches,
    fit_sources,
    validate_now,
)
from ._fit_checks import NonFiniteLossError
from ._outputs import output_weights
from ._progress import finish_epoch_bar
from .callbacks._fit_state import FitState
from .distributed import _fit as _dist  # identity at world size 1
from .evaluation import (
    _all_metrics,
    _array_weights,
    _evaluate_logs,
    _loss,
    _metric_logits,
    _update_metrics,
    evaluate,
    predict,
)

if TYPE_CHECKING:  # the model is known here only by the methods called on it
    from .model import Sequential

__all__ = ["CompiledStep", "CudaGraphWarning", "NonFiniteLossError", "StepResult", "evaluate",
           "fit", "predict", "train_step"]

CudaGraphWarning = _cuda_graph.CudaGraphWarning


class StepResult(NamedTuple):
    """What :func:`train_step` returns."""

    #: the batch's mean loss, a Python float; a 0-d device array on the GPU inside ``fit``
    #: (a :func:`fastcnn._deferred.scope`), read later
    loss: float
    #: the model's output for the batch (N, *output_shape), float32, on the model's device:
    #: the last layer's pre-activation values when ``logits`` is True
    outputs: Any
    #: whether ``outputs`` are logits (``model.output_fused``: the output activation is fused
    #: into the loss); a metric's update is then told the loss's activation (as fit does)
    logits: bool


# --------------------------------------------------------------------------------------------
# one step


def train_step(model: Sequential, x: Any, y: Any, sample_weight: Any = None) -> StepResult:
    """One training step on one batch: forward, loss, backward (without the first layer's dx)
    and the optimizer's in-place update, exactly as ``fit`` runs it for every batch.

    Args:
        model: a compiled :class:`fastcnn.Sequential` (built here from ``x`` if it is not).
        x: the batch's inputs (N, *input_shape), any numeric dtype (converted to float32) and
            NumPy, or CuPy for a model on the GPU (NumPy inputs are uploaded).
        y: the batch's labels (N,) or (N, ...), as the compiled loss takes them.
        sample_weight: None or per-sample weights (N,): the loss is ``sum(w * l) / N`` and
            each sample's gradient is scaled by its weight (Keras' rule).

    Returns:
        :class:`StepResult` ``(loss, outputs, logits)``.

    Raises:
        RuntimeError: the model is not compiled.
        NonFiniteLossError: the loss is NaN or infinite; no gradient is written and no weight
            (nor the optimizer's state) changes.
    """
    loss_fn, optimizer = model._require_compiled("train_step")
    xb = model._input(x, "train_step")
    y = None if y is None else model._targets(y, "train_step")
    sample_weight = output_weights(model, sample_weight, len(xb), "train_step")
    model._ensure_built(xb)
    fused = model.output_fused
    out = model._forward(model._on_device(xb), True, fused)
    value, dout = _loss(loss_fn, out, y, fused, sample_weight)
    value = _dist.step_loss(model, value, len(xb))  # the global batch's, under several ranks
    if is_cupy(value):  # on the GPU inside fit: checked on the device, read at fit's next read
        _fit_checks.defer_finite(value)
    elif not math.isfinite(value):
        raise NonFiniteLossError(f"the loss became {value}; the weights are those before this "
                                 f"batch. Lower the learning rate or check the inputs for "
                                 f"NaN/inf.", value)
    model.backward(dout, compute_dx=False)
    _dist.sync_gradients(model)  # averaged over the ranks (started during the backward)
    _dist.sync_state(model)  # BatchNorm moving statistics: the ranks' average
    optimizer.step(model)
    return StepResult(value, out, fused)


class CompiledStep(_cuda_graph.GraphStep):
    """:func:`train_step` as a CUDA graph per batch shape (what ``fit(..., cuda_graph="auto")``
    runs on a GPU model), for custom loops: ``step = CompiledStep(model)``, then ``step(x, y)``
    or ``step(x, y, sample_weight)`` per batch gives ``train_step``'s :class:`StepResult`,
    bitwise. What is captured, what runs eagerly and why: :mod:`fastcnn._cuda_graph`. ``warn``:
    a :class:`CudaGraphWarning` when the model can't be captured (a failed capture always warns).
    """

    def __init__(self, model: Any, warn: bool = True) -> None:
        super().__init__(model, _train_step_call, StepResult, warn)


def _train_step_call(model: Any, x: Any, y: Any, sample_weight: Any = None) -> StepResult:
    """:func:`train_step` as ``fit`` calls it (looked up at each call: a wrapped one too)."""
    if sample_weight is None:
        return train_step(model, x, y)
    return train_step(model, x, y, sample_weight=sample_weight)


def _batch_logs(running: Any, seen: int, metrics: list[tuple[Any, bool]]) -> dict[str, float]:
    """The running loss and metrics (read from the device on the GPU)."""
    return {"loss": float(running) / seen, **{m.name: m.result() for m, _ in metrics}}


# --------------------------------------------------------------------------------------------
# data helpers


def _fmt_logs(logs: dict[str, float]) -> str:
    return " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())


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


# --------------------------------------------------------------------------------------------
# fit


def fit(model: Sequential, x: Any = None, y: Any = None, batch_size: int = 32, epochs: int = 1,
        verbose: int = 1, callbacks: list[_callbacks.Callback] | None = None,
        validation_split: float = 0.0, validation_data: Any = None, shuffle: bool = True,
        seed: int | None = None, initial_epoch: int = 0, class_weight: Any = None,
        sample_weight: Any = None, steps_per_epoch: int | None = None,
        validation_steps: int | None = None, validation_batch_size: int | None = None,
        validation_freq: Any = 1, cuda_graph: Any = "auto") -> _callbacks.History:
    """:meth:`fastcnn.Sequential.fit` (arguments documented there; the steps in this module's
    docstring): one :func:`train_step` per batch, callbacks, progress bar, validation,
    SIGINT deferred to the end of the batch. Returns the History. ``cuda_graph``: "auto"
    (a CUDA graph per batch shape on a GPU model: :class:`CompiledStep`), True (the same; a
    ValueError on the CPU) or False (every step eager)."""
    loss_fn, _ = model._require_compiled("fit")
    if isinstance(epochs, bool) or not isinstance(epochs, int | np.integer) or epochs < 0:
        raise ValueError(f"fit: epochs must be an int >= 0, got {epochs!r}")
    if verbose not in (0, 1, 2):
        raise ValueError(f"fit: verbose must be 0, 1 or 2, got {verbose!r}")
    cw = check_class_weight(class_weight)
    if cw is not None and sample_weight is not None:
        raise ValueError("fit: pass class_weight or sample_weight, not both (Keras' rule); "
                         "multiply the class weights into the sample weights")
    freq = check_validation_freq(validation_freq)
    graphs = _cuda_graph.graph_mode(model, cuda_graph)
    x, y = model._pack_data(x, y, class_weight)  # several inputs / outputs: Arrays
    sample_weight = _array_weights(model, x, sample_weight, "fit")  # several outputs
    if isinstance(validation_data, tuple | list) and len(validation_data) in (2, 3):
        vx, vy = model._pack_data(*validation_data[:2])
        validation_data = (vx, vy, *(_array_weights(model, vx, w, "validation")
                                     for w in validation_data[2:]))
    verbose = _dist.verbosity(verbose)  # rank 0 prints
    rng = np.random.default_rng(_dist.common_seed(seed))  # one shuffle on every rank
    train, val = fit_sources(
        x, y, batch_size, validation_split, validation_data, sample_weight,
        check_steps(steps_per_epoch, "steps_per_epoch", "fit"),
        check_steps(validation_steps, "validation_steps", "fit"), validation_batch_size)
    if val is not None and val.one_shot and val.steps is None and sum(
            validate_now(freq, e) for e in range(initial_epoch, epochs)) > 1:
        raise ValueError("fit: validation_data is a generator, which can be read once, but "
                         "validation runs after several epochs; pass validation_steps with a "
                         "generator that yields forever, a Sequence or dataset, or arrays")
    array_train = isinstance(train.data, ArrayBatches)
    if array_train:
        train.data.rng = rng if shuffle else None  # a new permutation every pass
        model._ensure_built(model._input(train.data.x[:1], "fit"))
    model._check_loss_activation()
    metrics = _all_metrics(model)

    history = _callbacks.History()
    history.params = {"epochs": int(epochs), "steps": train.length,
                      "batch_size": batch_size if array_train else None}
    # History last: it records the keys other callbacks add to the epoch logs
    cbs = _callbacks.CallbackList([*(callbacks or []), history], model=model)
    model.history = history
    model.stop_training = False
    resume = FitState.attach(cbs, model, train, val, metrics, history)  # BackupAndRestore's

    dist_owned = _dist.begin_fit(model)  # a gradient reducer, under several ranks
    interrupt = {"flag": False}
    old_handler = _install_sigint(interrupt)
    bar: Any = None
    batches: Any = None
    scope: Any = None
    epoch, batch = initial_epoch, -1
    nonfinite = False
    compiled = CompiledStep(model, warn=cuda_graph is True) if graphs else None
    try:
        cbs.on_train_begin({})
        first_epoch = initial_epoch if resume is None else resume.begin(initial_epoch, epochs)
        for epoch in range(first_epoch, epochs):
            if train.exhausted:
                warnings.warn(f"fit: your input ran out of data (a generator can be read "
                              f"once); training stops after {epoch} epoch(s) instead of "
                              f"{epochs}. Pass steps_per_epoch with a generator that yields "
                              f"forever, or a Sequence or dataset", UserWarning, stacklevel=3)
                break
            cbs.on_epoch_begin(epoch, {})
            t0 = time.perf_counter()
            bar = tqdm(total=train.length, desc=f"Epoch {epoch + 1}/{epochs}", unit="batch",
                       disable=verbose != 1, file=sys.stdout, leave=True)
            running = 0.0
            seen = 0
            for m, _ in metrics:
                m.reset()
            batch, first_batch = -1, 0
            items = train.epoch()
            if resume is not None:  # a run restored mid-epoch continues at first_batch
                running, seen, first_batch = resume.epoch_begin(epoch)
                items = resume.items(items)
                bar.update(first_batch)
                batch = first_batch - 1
            batches = device_batches(model, fit_batches(model, items, cw))
            keys = ["loss", *(m.name for m, _ in metrics)]
            last_read = time.perf_counter()
            scope = _deferred.scope(final_check=False).__enter__()  # GPU: no read in a step
            for batch, (xb, yb, wb) in enumerate(batches, first_batch):
                _deferred.set_where(_fit_checks.Where(epoch, batch))
                cbs.on_train_batch_begin(batch, {})
                try:
                    step = (compiled(xb, yb, wb) if compiled is not None  # a CUDA graph
                            else train_step(model, xb, yb) if wb is None  # a wrapped
                            else train_step(model, xb, yb, sample_weight=wb))  # one too
                except NonFiniteLossError as e:
                    if cbs.on_train_batch_nonfinite(batch, {"loss": e.loss}):
                        nonfinite = True  # a callback (TerminateOnNaN) ends training here
                        break
                    raise NonFiniteLossError(
                        f"the loss became {e.loss} at epoch {epoch + 1}, batch {batch + 1} "
                        f"(of {train.length or '?'}); the weights are those before that batch. "
                        f"Lower the learning rate or check the inputs for NaN/inf.",
                        e.loss) from None
                n = _dist.batch_count(model, len(xb))  # the global batch's
                running += step.loss * n
                seen += n
                _update_metrics(metrics, yb, step.outputs,
                                _metric_logits(loss_fn, step.logits), wb)
                blogs = _deferred.LazyLogs(keys, lambda r=running, s=seen: _batch_logs(
                    r, s, metrics))  # read only when looked at
                now = time.perf_counter()
                if now - last_read >= _fit_checks.READ_INTERVAL:  # a refresh: the one read
                    last_read = now
                    if _fit_checks.fit_check(cbs, epoch, batch, train.length):
                        nonfinite = True
                        break
                    if not bar.disable:
                        bar.set_postfix({k: f"{v:.4f}" for k, v in blogs.items()},
                                        refresh=False)
                bar.update(1)
                if resume is not None:
                    resume.batch_end(batch, running, seen)
                cbs.on_train_batch_end(batch, blogs)
                interrupt["flag"], model.stop_training = _dist.agree(interrupt["flag"],
                                                                     model.stop_training)
                if interrupt["flag"] or model.stop_training:
                    break
            close_iterator(batches)
            scope.close()
            if not nonfinite and _fit_checks.fit_check(cbs, epoch, batch, train.length):
                nonfinite = True
            if interrupt["flag"] or nonfinite:
                break
            if seen == 0:
                if train.exhausted:  # a generator ended right at an epoch's start (warned)
                    break
                raise ValueError("fit: the training data yielded no batches")
            _dist.reduce_metrics(metrics)  # the epoch's metrics over all ranks
            logs = _batch_logs(running, seen, metrics)
            if val is not None and validate_now(freq, epoch):
                vlogs = _evaluate_logs(model, val, 0, "validation")
                logs.update({f"val_{k}": v for k, v in vlogs.items()})
            finish_epoch_bar(bar, logs, time.perf_counter() - t0)  # fitted to the terminal
            bar = None
            if verbose == 2:
                print(f"Epoch {epoch + 1}/{epochs} - {time.perf_counter() - t0:.1f}s - "
                      f"{_fmt_logs(logs)}")
            cbs.on_epoch_end(epoch, logs)
            interrupt["flag"], model.stop_training = _dist.agree(interrupt["flag"],
                                                                 model.stop_training)
            if interrupt["flag"] or model.stop_training:
                break
    except KeyboardInterrupt:
        # raised outside our handler's reach (e.g. by a data loader): the batch in flight
        # was not applied (the update itself runs with SIGINT deferred)
        interrupt["flag"] = True
    finally:
        if scope is not None:
            scope.close(ok=False)  # left by an exception: its pending checks are dropped
        if bar is not None:
            bar.close()
        close_iterator(batches)
        train.close()
        if val is not None:
            val.close()
        _restore_sigint(old_handler)
        _dist.end_fit(model, dist_owned)
        if compiled is not None:
            compiled.close()
    if interrupt["flag"]:
        history.interrupted = True
        print(f"Training interrupted (Ctrl-C) during epoch {epoch + 1}, after batch "
              f"{batch + 1}; returning the history of {len(history.epoch)} completed "
              f"epoch(s).", flush=True)
    cbs.on_train_end({})
    return history
