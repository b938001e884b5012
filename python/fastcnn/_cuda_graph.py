"""The GPU training step as a CUDA graph: :class:`CompiledStep` (``fastcnn.training.CompiledStep``),
which ``fit(..., cuda_graph="auto")`` uses on a CUDA model.

A training step is a few hundred small kernel launches whose host cost (Python, argument checks,
the launch itself) can exceed the GPU's time for them. A CUDA graph records the launches once
and replays them with one call. Per batch shape (inputs, labels, sample weights):

1. the first step runs eagerly (:func:`fastcnn.training.train_step`): CuPy's memory pool then
   holds the step's blocks, the optimizer has its slots, the lazily compiled CuPy kernels exist;
2. the second step is *captured*: ``train_step`` runs on a non-blocking stream that captures
   (``Stream.begin_capture`` in CuPy's relaxed mode), reading static input buffers the batch
   is copied into; every allocation made during the capture goes through an allocator that
   keeps its ``MemoryPointer`` for as long as the graph lives (the pool would otherwise hand a
   block the graph writes to another array), taken from the pool's part for the stream the
   graph is replayed on (the current stream: a dropped graph's blocks are then reused only by
   work queued after its last replay);
3. that step and every later one of the shape copy the batch into the static buffers and
   *replay* the graph on the current stream; nothing in a replay reads the host.

What the graph holds: forward, loss, backward and, for SGD and RMSprop with a constant
learning rate (their kernels' only host scalars), the optimizer update. Adam / AdamW pass the
step's bias corrections as kernel arguments, which a graph would freeze, so their update (one
kernel per parameter) runs eagerly after the replay; so do learning-rate schedules, clipping by
norm (a host read), and any other optimizer. A changed learning rate, optimizer setting,
parameter array or trainable flag re-captures the graph (its signature is checked per step).
The host bookkeeping of the step (``optimizer.iterations``, the per-parameter step counters,
the layers' ``grads``, the deferred device checks with their batch) is redone after each
replay, so a replayed step is bitwise the eager one and ``fit``'s History is the same.

Not captured, the step then runs eagerly: a model with a layer that draws random numbers on
the host (Dropout with ``rate > 0``: the same masks as on the CPU; a graph would replay one
mask), several inputs, several ranks, a CuPy without stream capture; a capture that fails
(something in the step synchronises, reads the device, uploads host data, or raises) is
dropped, and the step runs eagerly from then on, with one warning saying why. At most
:data:`MAX_GRAPHS` shapes are captured; others run eagerly.
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

from . import _deferred
from ._arrays import array_module, is_cupy

__all__ = ["MAX_GRAPHS", "CudaGraphWarning", "GraphStep", "graph_mode"]

#: batch shapes captured per CompiledStep (a full batch and a last partial one, with room)
MAX_GRAPHS = 4


class CudaGraphWarning(UserWarning):
    """The training step runs eagerly instead of as a CUDA graph (the message says why)."""


def graph_mode(model: Any, cuda_graph: Any, who: str = "fit") -> bool:
    """Whether ``fit``'s ``cuda_graph`` argument turns graphs on for ``model``: ``"auto"`` on a
    CUDA model, ``True`` (a CUDA model required), ``False``. Anything else is a ValueError."""
    if cuda_graph == "auto" and not isinstance(cuda_graph, bool):
        return getattr(model, "device", "cpu") == "cuda"
    if cuda_graph is True:
        if getattr(model, "device", "cpu") != "cuda":
            raise ValueError(f"{who}: cuda_graph=True needs a model on the GPU, but the model "
                             f"is on {getattr(model, 'device', 'cpu')!r}; call "
                             f"model.to('cuda') or pass cuda_graph='auto' / False")
        return True
    if cuda_graph is False:
        return False
    raise ValueError(f"{who}: cuda_graph must be 'auto', True or False, got {cuda_graph!r}")


def _walk(layers: Any) -> Any:
    for layer in layers:
        yield layer
        inner = getattr(layer, "layers", None)
        if isinstance(inner, list | tuple):
            yield from _walk(inner)


def _eager_reason(model: Any, x: Any, cupy: Any) -> str | None:
    """Why this model's step can't be a graph (None when it can)."""
    from .distributed import _fit as _dist

    if _dist.active():
        return "training on several ranks (the gradient reduction runs outside a graph)"
    if isinstance(x, list | tuple | dict):
        return "the model takes several inputs (only one input array is captured)"
    if not hasattr(getattr(cupy.cuda, "Stream", None), "begin_capture"):
        return "this CuPy has no stream capture (cupy.cuda.Stream.begin_capture)"
    for layer in _walk(getattr(model, "layers", [])):
        if getattr(layer, "_rng", None) is not None and getattr(layer, "rate", 1.0) > 0:
            return (f"layer {getattr(layer, 'name', layer)!r} draws its random numbers on the "
                    f"host (the same as on the CPU), and a graph would replay one draw")
    return None


def _update_in_graph(opt: Any) -> bool:
    """The optimizer's update is captured when its kernels take no per-step host scalar."""
    from . import optimizers

    return (type(opt) in (optimizers.SGD, optimizers.RMSprop) and opt.schedule is None
            and opt.clipnorm is None and opt.global_clipnorm is None)


def _signature(model: Any, opt: Any, in_graph: bool) -> tuple[Any, ...]:
    """What the captured kernels baked in: re-capture when any of it changes."""
    params = tuple(int(p.data.ptr) for _, p, _ in model.named_parameters())
    trainable = tuple(bool(getattr(la, "trainable", True)) for la in _walk(model.layers))
    okey: Any = None
    if in_graph:
        okey = (opt.learning_rate, repr(sorted(opt.get_config().items())))
    stream = int(_current_stream_ptr())
    return (id(opt), okey, id(model.loss), bool(model.output_fused), params, trainable, stream)


def _current_stream_ptr() -> int:
    import cupy

    return int(cupy.cuda.get_current_stream().ptr)


class _Graph(NamedTuple):
    graph: Any
    stream: Any  # the stream it was captured on
    inputs: tuple[Any, Any, Any]  # the static x, y, sample-weight buffers (w may be None)
    loss: Any
    outputs: Any
    logits: Any
    checks: list[Any]  # the deferred checks queued during the capture (records it rewrites)
    grads: list[tuple[dict[str, Any], dict[str, Any]]]  # each layer's grads after the capture
    keep: list[Any]  # every MemoryPointer allocated during the capture
    guard: Any  # the skip flag the captured optimizer kernels read
    in_graph: bool
    step_keys: list[str]  # optimizer state entries whose step counter a step advances
    signature: tuple[Any, ...]


class GraphStep:
    """:func:`fastcnn.training.train_step` replayed as a CUDA graph per batch shape (see the
    module docstring for what is captured and what runs eagerly).

    ``step = CompiledStep(model)``, then ``step(x, y)`` (or ``step(x, y, sample_weight)``) per
    batch: the same :class:`fastcnn.training.StepResult` as ``train_step``, bitwise. Inside
    ``fit`` (a deferred-check scope) the loss is a 0-d device array and nothing waits for the
    device; called by itself a step reads its loss (a float) and raises
    :class:`fastcnn.training.NonFiniteLossError` for a NaN / inf loss (the SGD / Adam kernels
    skipped the update on the device). ``outputs`` and ``loss`` are copies, not the graph's
    buffers. A model on the CPU always runs eagerly (``fit`` refuses ``cuda_graph=True`` there).

    ``fastcnn.training.CompiledStep`` is this class with fastcnn's own ``train_step``.

    Args:
        model: a compiled model (on the GPU for graphs).
        train_step: ``train_step(model, x, y, sample_weight=None) -> StepResult``.
        result: the StepResult type (``_replace``-able named tuple).
        warn: warn (:class:`CudaGraphWarning`) when the model can't be captured at all (a
            Dropout, several inputs...); a capture that fails always warns, once.

    Attributes:
        captures, replays, eager_steps: counts so far.
        reason: why the step runs eagerly from now on (None while graphs are used).
    """

    def __init__(self, model: Any, train_step: Any, result: Any, warn: bool = True) -> None:
        self.model = model
        self._train_step = train_step
        self._result = result
        self.warn = bool(warn)
        self.captures = self.replays = self.eager_steps = 0
        self.reason: str | None = None
        self._graphs: dict[tuple[Any, ...], _Graph] = {}
        self._warm: set[tuple[Any, ...]] = set()
        self._checked = False

    # -- the step --------------------------------------------------------------------------
    def __call__(self, x: Any, y: Any, sample_weight: Any = None) -> Any:
        train_step = self._train_step
        model = self.model
        if self.reason is not None or getattr(model, "device", "cpu") != "cuda":
            return self._eager(train_step, x, y, sample_weight)
        if _deferred.deferring():
            return self._step(train_step, x, y, sample_weight)
        with _deferred.scope(where="CompiledStep"):  # the checks are read when it closes
            result = self._step(train_step, x, y, sample_weight)
        return result._replace(loss=float(result.loss))

    def _eager(self, train_step: Any, x: Any, y: Any, w: Any) -> Any:
        self.eager_steps += 1
        return train_step(self.model, x, y, sample_weight=w)

    def _step(self, train_step: Any, x: Any, y: Any, w: Any) -> Any:
        model = self.model
        if not self._checked:
            self._checked = True
            import cupy

            reason = _eager_reason(model, x, cupy)
            if reason is not None:
                self._give_up(reason, warn=self.warn)
                return self._eager(train_step, x, y, w)
        model._require_compiled("CompiledStep")
        xd, yd, wd = self._on_device(x, y, w)
        model._ensure_built(xd)
        key = tuple((a.shape, a.dtype.str) if a is not None else None for a in (xd, yd, wd))
        entry = self._graphs.get(key)
        opt = model.optimizer
        if entry is not None and entry.signature != _signature(model, opt, entry.in_graph):
            del self._graphs[key]  # what it baked in changed: capture again
            self._warm.discard(key)
            entry = None
        if entry is None:
            if key not in self._warm or len(self._graphs) >= MAX_GRAPHS:
                self._warm.add(key)
                return self._eager(train_step, xd, yd, wd)  # warms the pool and the slots
            entry = self._capture(train_step, xd, yd, wd)
            if entry is None:
                return self._eager(train_step, xd, yd, wd)
            self._graphs[key] = entry
        return self._replay(entry, xd, yd, wd)

    def _on_device(self, x: Any, y: Any, w: Any) -> tuple[Any, Any, Any]:
        import cupy

        model = self.model
        xd = model._on_device(model._input(x, "CompiledStep"))
        yd = model._targets(y, "CompiledStep")
        yd = yd if is_cupy(yd) else cupy.asarray(yd)
        wd = None if w is None else (w if is_cupy(w) else cupy.asarray(w))
        return xd, yd, wd

    # -- capture ---------------------------------------------------------------------------
    def _capture(self, train_step: Any, xd: Any, yd: Any, wd: Any) -> _Graph | None:
        import cupy

        model = self.model
        opt = model.optimizer
        in_graph = _update_in_graph(opt)
        signature = _signature(model, opt, in_graph)
        inputs = tuple(None if a is None else a.copy() for a in (xd, yd, wd))
        guard = _deferred.guard(cupy)  # made before the capture; the kernels take its address
        iterations = opt.iterations
        steps = {k: st["step"].copy() for k, st in opt.state.items()}
        n_pending = _deferred.pending()
        pool = cupy.get_default_memory_pool()
        keep: list[Any] = []
        home = cupy.cuda.get_current_stream()  # where the graph is replayed

        def allocate(size: int) -> Any:
            # from the replay stream's part of the pool: when the graph is dropped its blocks
            # are reused only by work queued on that stream after its last replay
            with home:
                mem = pool.malloc(size)
            keep.append(mem)
            return mem

        stream = cupy.cuda.Stream(non_blocking=True)
        err: BaseException | None = None
        graph = result = None
        with stream, cupy.cuda.using_allocator(allocate):
            try:
                stream.begin_capture()
            except Exception as e:
                err = e
            else:
                saved_step = opt.__dict__.get("step")
                if not in_graph:
                    opt.step = _skip_update  # the update runs eagerly after each replay
                try:
                    result = train_step(model, inputs[0], inputs[1], sample_weight=inputs[2])
                except Exception as e:
                    err = e
                finally:
                    if saved_step is None:
                        opt.__dict__.pop("step", None)
                    else:
                        opt.step = saved_step
                    try:
                        graph = stream.end_capture()
                    except Exception as e:
                        err = err or e
        # the captured step ran on the host only: its host bookkeeping is redone per replay
        step_keys = [k for k, st in opt.state.items()
                     if k not in steps or int(st["step"]) != int(steps[k])]
        opt.iterations = iterations
        for k, st in opt.state.items():
            if k in steps:
                st["step"][...] = steps[k]
        checks = _deferred._pending[n_pending:]
        del _deferred._pending[n_pending:]
        if err is not None or graph is None:
            self._give_up(f"the capture failed ({type(err).__name__}: {err})", warn=True)
            return None
        self.captures += 1
        grads = [(la.grads, dict(la.grads)) for la in _walk(model.layers)
                 if isinstance(getattr(la, "grads", None), dict) and la.grads]
        return _Graph(graph, stream, inputs, result.loss, result.outputs, result.logits,
                      list(checks), grads, keep, guard, in_graph, step_keys, signature)

    # -- replay ----------------------------------------------------------------------------
    def _replay(self, g: _Graph, xd: Any, yd: Any, wd: Any) -> Any:
        xp = array_module(xd)
        _install_guard(g.guard, xp)
        for buf, a in zip(g.inputs, (xd, yd, wd), strict=True):
            if buf is not None and a is not buf:
                buf[...] = a
        g.graph.launch(xp.cuda.get_current_stream())
        self.replays += 1
        for d, snap in g.grads:  # the layers' grads: the graph's buffers again
            d.update(snap)
        opt = self.model.optimizer
        if g.in_graph:
            opt.iterations += 1
            for k in g.step_keys:
                opt.state[k]["step"] += 1
        else:
            opt.step(self.model)
        for c in g.checks:  # this batch's records (the graph rewrites its own each replay)
            _deferred.defer(c.record.copy(), c.message, c.error)
        return self._result(g.loss.copy(), g.outputs.copy(), g.logits)

    # -- giving up -------------------------------------------------------------------------
    def _give_up(self, reason: str, warn: bool) -> None:
        self.reason = reason
        self._graphs.clear()
        if warn:
            warnings.warn(f"the training step runs eagerly, not as a CUDA graph: {reason}. "
                          f"Pass cuda_graph=False to fit to run it eagerly without this "
                          f"warning.", CudaGraphWarning, stacklevel=4)

    def close(self) -> None:
        """Drop the graphs and their buffers (their memory came from the replay stream's part
        of CuPy's pool, so only work queued after the last replay reuses it)."""
        self._graphs.clear()


def _skip_update(params: Any) -> None:
    """The optimizer's step while capturing a graph that leaves the update out."""


def _install_guard(guard: Any, xp: Any) -> None:
    """Make ``guard`` (the skip flag the graph's optimizer kernels read) the open scope's: a new
    scope (fit's next epoch) starts with it zeroed."""
    current = _deferred._guard
    if current and current[0] is guard:
        return
    if current:  # another flag already in use in this scope: carry its value over
        guard[...] = current[0]
        current[0] = guard
        return
    guard.fill(0)
    current.append(guard)
