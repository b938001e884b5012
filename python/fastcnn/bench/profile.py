"""Per-layer, per-pass profile of one training step, fastcnn against the same layers in PyTorch.

``benchmarks/profile_step.py`` / ``fastcnn bench --profile MODEL``. For a model of
:data:`fastcnn.models.MODELS` (``seeds_cnn``, ``resnet20``, ...) at one batch size:

1. **Capture.** One warm ``train_on_batch`` runs with every :mod:`fastcnn.ops` function replaced
   by a recording wrapper (the layers call ``ops.<name>`` through the module, so nothing in the
   layers changes) and every layer's ``forward`` / ``backward``, the loss's ``value_and_grad``
   and the optimizer's ``step`` wrapped on the instance, to know whose call each op call is.
   Each call is kept with copies of its array arguments (aliasing kept: ``relu(z, out=z)`` stays
   in place). A layer method (or a loss) that calls no op (``Add``, ``Flatten``) is kept as a
   call itself.
2. **Parts.** Each op call becomes one or more rows ``(layer, pass)``: ``conv2d`` -> forward;
   ``conv2d_backward`` -> backward-data (``compute_dw=False``) and weight gradient (dw and db,
   ``compute_dx=False``), timed as two calls (a fused ReLU's or max pool's backward is then
   routed in both; the real step does it once: the unsplit call is timed too, and the report
   gives both sums); the same for ``linear``; batch norm, pooling,
   activation, loss (``cross_entropy``: softmax, loss and gradient in one call); every
   ``sgd_update`` / ``adam_update`` of the step together in one optimizer row. Each row has a
   PyTorch twin on the same arrays (:mod:`fastcnn.bench.profile_torch`: the ATen calls autograd
   makes for that layer, with an unfused ReLU / pooling backward where fastcnn fuses them).
3. **Timing.** The whole fastcnn step (``train_on_batch``), the whole PyTorch step
   (``model.to_torch`` on the same weights: ``zero_grad``, forward, ``cross_entropy``,
   ``backward``, ``optim.SGD.step``) and every row's two calls, interleaved round-robin in one
   process (the order rotated each round, the garbage collector off), at each thread count;
   each sample repeats a call until it lasts ``min_sample_s``; CPU time (``time.process_time``:
   all threads; robust to other processes' load) and wall time; medians over the rounds.
   Framework overhead = step - sum of the rows (the Python around the ops, the glue NumPy
   work of layers that call no op, allocation, cache effects between the ops).

Rates: GFLOP/s = FLOPs / wall time; ``% peak`` = FLOPs / (CPU seconds x the FMA peak of one
thread, ``fastcnn._cpu.probe_fma``), i.e. the per-core efficiency, which equals the wall-time
figure on an idle machine with perfect scaling and is not lowered by time slicing. FLOPs:
convolution 2 N K P Q (C / groups) R S per pass, dense 2 N in out per pass.

Only models compiled here (sparse categorical cross-entropy on logits; SGD with momentum, the
ResNet benchmark's) are profiled; other losses / optimizers are a ValueError.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import _native
from .profile_calls import Call, _all_layers, capture, conv_geometry
from .profile_report import table
from .timing import ThreadControl

__all__ = ["Call", "Part", "build_parts", "capture", "profile_step", "table"]

_OPTIM_OPS = ("sgd_update", "adam_update")


@dataclass
class Part:
    """One row of the profile: a layer's pass, fastcnn's call and PyTorch's twin."""

    layer: str
    layer_class: str
    kind: str  # forward, backward-data, weight gradient, BN, pooling, activation, loss, ...
    what: str
    flop: int
    fastcnn: Callable[[], Any]
    torch: Callable[[], Any] | None = None
    torch_note: str = ""
    call: int = -1  # index of the captured call (a split backward has two rows)
    whole: Callable[[], Any] | None = None  # the unsplit call, on a split call's first row


# ----------------------------------------------------------------------------------------------
# parts
# ----------------------------------------------------------------------------------------------
def _conv_flop(x: np.ndarray, w: np.ndarray, geo: tuple[int, ...]) -> tuple[int, str]:
    n, c, h, wd = x.shape
    kk, cg, r, s = w.shape
    sh, sw, pt, pl, pb, pr, dh, dw, _ = geo
    p = (h + pt + pb - dh * (r - 1) - 1) // sh + 1
    q = (wd + pl + pr - dw * (s - 1) - 1) // sw + 1
    what = f"{c}->{kk} {r}x{s}" + (f" s{sh}" if sh > 1 or sw > 1 else "") + f" @{h}x{wd}"
    return 2 * n * kk * p * q * cg * r * s, what


def _call(c: Call, **override: Any) -> Callable[[], Any]:
    kw = {**c.kwargs, **override}
    return lambda: c.fn(*c.args, **kw)


def _conv_parts(c: Call) -> list[Part]:
    geo = conv_geometry(c)
    if c.op in ("conv2d", "conv2d_stats"):
        flop, what = _conv_flop(c.args[0], c.args[1], geo)
        what += " +relu" if c.kwargs.get("relu") else ""
        what += " +BN stats" if c.op == "conv2d_stats" else ""
        return [Part(c.layer, c.layer_class, "conv forward", what, flop, _call(c))]
    flop, what = _conv_flop(c.args[1], c.args[2], geo)
    k = c.kwargs
    what += (" +relu" if k.get("relu_y") is not None else "") + (
        " +pool" if k.get("pool_indices") is not None else "")
    out = []
    if k.get("compute_dx", True):
        out.append(Part(c.layer, c.layer_class, "conv backward-data", what, flop,
                        _call(c, compute_dw=False, bias=False)))
    if k.get("compute_dw", True):
        out.append(Part(c.layer, c.layer_class, "conv weight gradient", what, flop,
                        _call(c, compute_dx=False, dx_out=None)))
    return _whole(c, out)


def _whole(c: Call, out: list[Part]) -> list[Part]:
    """A backward split into two rows: the first one also carries the call as the step makes
    it (both passes in one call), timed beside them to show what the split costs."""
    if len(out) == 2:
        out[0].whole = _call(c)
    return out


def _linear_parts(c: Call) -> list[Part]:
    if c.op == "linear":
        x, w = c.args[0], c.args[1]
        what = f"{w.shape[1]}->{w.shape[0]}" + (" +relu" if c.kwargs.get("relu") else "")
        return [Part(c.layer, c.layer_class, "dense forward", what,
                     2 * x.shape[0] * w.size, _call(c))]
    x, w = c.args[1], c.args[2]
    what, flop = f"{w.shape[1]}->{w.shape[0]}", 2 * x.shape[0] * w.size
    out = []
    if c.kwargs.get("compute_dx", True):
        out.append(Part(c.layer, c.layer_class, "dense backward-data", what, flop,
                        _call(c, compute_dw=False, bias=False)))
    if c.kwargs.get("compute_dw", True):
        out.append(Part(c.layer, c.layer_class, "dense weight gradient", what, flop,
                        _call(c, compute_dx=False, dx_out=None)))
    return _whole(c, out)


def _shape(a: Any) -> str:
    if isinstance(a, (list, tuple)) and a:
        return f"{len(a)} x " + _shape(a[0])
    return "x".join(str(d) for d in getattr(a, "shape", ()))


_KINDS = {
    "batch_norm": "BN stats + normalise", "batch_norm_backward": "BN backward",
    "cross_entropy": "loss (softmax CE + grad)",
}


def _kind(op: str) -> str:
    if op in _KINDS:
        return _KINDS[op]
    if "pool" in op:
        return "pooling backward" if op.endswith("_backward") else "pooling"
    if op.endswith(".value_and_grad"):
        return "loss (no op: NumPy)"
    if "." in op:
        return f"{op.split('.')[1]} (no op: NumPy)"
    return "activation backward" if op.endswith("_backward") else "activation"


def build_parts(calls: list[Call], torch: Any = None) -> list[Part]:
    """The profile's rows from a capture, in the step's order, each with its PyTorch twin
    (:mod:`fastcnn.bench.profile_torch`) when ``torch`` is given."""
    parts: list[Part] = []
    optim = [c for c in calls if c.op in _OPTIM_OPS]
    for ci, c in enumerate(calls):
        if c.op in _OPTIM_OPS:
            continue
        if c.op.startswith("conv2d"):
            new = _conv_parts(c)
        elif c.op.startswith("linear"):
            new = _linear_parts(c)
        else:
            what = _shape(c.args[0]) if c.args else ""
            if c.op.startswith("batch_norm"):
                what += " +relu" if c.kwargs.get("relu") or c.kwargs.get(
                    "relu_y") is not None else ""
                what += " (stats given)" if c.kwargs.get("batch_stats") is not None else ""
            new = [Part(c.layer, c.layer_class, _kind(c.op), what, 0, _call(c))]
        if torch is not None:
            from .profile_torch import twin

            for p in new:
                p.torch, p.torch_note = twin(torch, c, p.kind)
        for p in new:
            p.call = ci
        parts.extend(new)
    if optim:
        n_el = sum(int(c.args[0].size) for c in optim)

        def update() -> None:
            for c in optim:
                c.fn(*c.args, **c.kwargs)

        p = Part("(optimizer)", optim[0].layer_class, "optimizer update",
                 f"{len(optim)} tensors, {n_el} values", 0, update)
        if torch is not None:
            from .profile_torch import optimizer_twin

            p.torch, p.torch_note = optimizer_twin(torch, optim)
        parts.append(p)
    return parts


# ----------------------------------------------------------------------------------------------
# the model, the steps, the timing
# ----------------------------------------------------------------------------------------------
def _model(name: Any, batch: int, lr: float, momentum: float, seed: int) -> tuple[Any, Any,
                                                                                   Any]:
    """(compiled model, x, y): a :data:`fastcnn.models.MODELS` name built and compiled here,
    or a compiled model (SGD, sparse categorical cross-entropy) used as it is."""
    from .. import optimizers
    from ..models import MODELS, build

    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 2:
        raise ValueError(f"batch: expected an int >= 2 (batch norm needs two samples), "
                         f"got {batch!r}")
    if isinstance(name, str):
        if name not in MODELS:
            raise ValueError(f"model: unknown name {name!r}; expected one of {sorted(MODELS)} "
                             "or a compiled fastcnn model")
        shape = (1, 28, 28) if name == "seeds_cnn" else (3, 32, 32)
        model = build(name, shape, 10, seed=seed)
        model.compile(optimizers.SGD(lr, momentum=momentum), "sparse_categorical_crossentropy")
    else:
        model = name
        opt, loss = getattr(model, "optimizer", None), getattr(model, "loss", None)
        if not isinstance(opt, optimizers.SGD) or type(loss).__name__ != (
                "SparseCategoricalCrossentropy"):
            raise ValueError("model: expected a model compiled with optimizers.SGD and "
                             "'sparse_categorical_crossentropy' (what the PyTorch step "
                             f"mirrors), got optimizer {type(opt).__name__}, loss "
                             f"{type(loss).__name__}")
        shape = tuple(model.input_shape or ())
        if not shape:
            raise ValueError("model: it has no input shape; build it or give it an Input")
    rng = np.random.default_rng(seed + 1)
    x = rng.random((batch, *shape), dtype=np.float32)
    y = rng.integers(0, 10, batch)
    return model, x, y


def _torch_step(torch: Any, model: Any) -> Callable[..., float]:
    """PyTorch's step on ``model.to_torch`` (the same weights): the optimizer's settings."""
    lr = float(model.optimizer.learning_rate)
    momentum, nesterov = model.optimizer.momentum, model.optimizer.nesterov
    wd = model.optimizer.weight_decay
    net = model.to_torch(logits=True) if "logits" in _params(model.to_torch) else model.to_torch()
    if isinstance(net, torch.nn.Sequential) and isinstance(net[-1], torch.nn.Softmax):
        net = net[:-1]  # the loss takes logits, as fastcnn's fused softmax cross-entropy
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum, nesterov=nesterov,
                          weight_decay=wd)
    ce = torch.nn.functional.cross_entropy

    def step(x: Any, y: Any) -> float:
        opt.zero_grad(set_to_none=True)
        loss = ce(net(x), y)
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step


def _fused_layers(model: Any, calls: list[Call]) -> dict[str, str]:
    """Layers that ran no call of their own -> the layer before them (in the model's order)
    that did: an activation fused into its producer's kernel (``+relu`` in that row)."""
    seen = {c.layer for c in calls}
    out: dict[str, str] = {}
    prev = None
    for lay in _all_layers(model):
        if lay.name in seen:
            prev = lay.name
        elif type(lay).__name__ != "InputLayer" and prev is not None:
            out[lay.name] = prev
    return out


def _params(fn: Callable[..., Any]) -> list[str]:
    import inspect

    return list(inspect.signature(fn).parameters)


def _sample(fn: Callable[[], Any], number: int) -> tuple[float, float]:
    """(CPU ms, wall ms) per call over ``number`` back-to-back calls."""
    c0, w0 = time.process_time_ns(), time.perf_counter_ns()
    for _ in range(number):
        fn()
    return ((time.process_time_ns() - c0) * 1e-6 / number,
            (time.perf_counter_ns() - w0) * 1e-6 / number)


def _interleaved(fns: dict[str, Callable[[], Any]], rounds: int, min_sample_s: float,
                 gap_s: float) -> dict[str, tuple[float, float]]:
    """name -> (median CPU ms, median wall ms), round-robin (see the module docstring)."""
    number: dict[str, int] = {}
    for name, fn in fns.items():
        fn()
        _, wall = _sample(fn, 1)
        number[name] = max(1, min(1000, math.ceil(min_sample_s * 1e3 / max(wall, 1e-3))))
    names = list(fns)
    cpu: dict[str, list[float]] = {n: [] for n in names}
    wall_s: dict[str, list[float]] = {n: [] for n in names}
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    try:
        for r in range(rounds):
            k = (r * max(1, len(names) // rounds + 1)) % len(names)
            for name in names[k:] + names[:k]:
                c, w = _sample(fns[name], number[name])
                cpu[name].append(c)
                wall_s[name].append(w)
                if gap_s:
                    time.sleep(gap_s)
    finally:
        if was:
            gc.enable()
    return {n: (float(np.median(cpu[n])), float(np.median(wall_s[n]))) for n in names}


def _fma_peak_1thread() -> float | None:
    """One thread's FMA GFLOP/s per CPU second: ``fastcnn._cpu.probe_fma`` (GFLOP per wall
    second) scaled by the call's wall / CPU time, so that other processes' time slices don't
    lower it; the median of five 0.2 s probes (the scaling is noisy on a loaded machine: the
    best one overshoots). None where the probe isn't built."""
    probe = getattr(_native.cpu, "probe_fma", None)
    if probe is None:
        return None
    rates = []
    for _ in range(5):
        c0, w0 = time.process_time(), time.perf_counter()
        rate = float(probe(seconds=0.2, threads=1))
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        rates.append(rate * wall / cpu if cpu > 0 else rate)
    return float(np.median(rates))


def profile_step(model: Any = "resnet20", batch: int = 128, *, threads: list[int] | None = None,
                 rounds: int = 7, min_sample_s: float = 0.005, gap_s: float = 0.001,
                 torch: Any = None, lr: float = 1e-3, momentum: float = 0.9, seed: int = 0,
                 peak_gflops: float | None = None) -> dict[str, Any]:
    """Profile one training step of ``model`` at ``batch`` (see the module docstring).

    Args:
        model: a :data:`fastcnn.models.MODELS` name (inputs (N, 1, 28, 28) for ``seeds_cnn``,
            (N, 3, 32, 32) otherwise; 10 classes; compiled here with ``SGD(lr, momentum)``),
            or a built model compiled with :class:`fastcnn.optimizers.SGD` and
            ``"sparse_categorical_crossentropy"`` with 10 classes (inputs of its input shape).
        batch: the batch size N (>= 2).
        threads: the thread counts to profile at (default [1]).
        rounds: interleaved rounds (medians over them).
        torch: the torch module for the PyTorch twins, or None (fastcnn only).
        peak_gflops: one thread's FMA peak (default: ``fastcnn._cpu.probe_fma``).

    Returns:
        ``{"schema": "fastcnn.bench.profile/1", "model", "batch", "torch", "peak_gflops_1t",
        "fused": {layer: the layer whose row holds its work}, "runs": [{"threads", "step":
        {"fastcnn": {"cpu_ms", "wall_ms"}, "torch": ...},
        "rows": [{"layer", "class", "kind", "what", "flop", "fastcnn_cpu_ms",
        "fastcnn_wall_ms", "torch_cpu_ms", "torch_wall_ms", "torch_note", "call",
        "fastcnn_whole_cpu_ms"}]}]}`` (``fastcnn_whole_cpu_ms``: on the first row of a backward
        split into two, that call unsplit, as the step makes it).
    """
    threads = threads or [1]
    if rounds < 1 or min_sample_s < 0:
        raise ValueError(f"rounds must be >= 1 and min_sample_s >= 0, got {rounds}, "
                         f"{min_sample_s}")
    net, x, y = _model(model, batch, lr, momentum, seed)
    tc = ThreadControl(torch)
    runs = []
    try:
        tc.set(threads[0])  # also while building: PyTorch's first calls on a loaded machine
        ours = lambda: net.train_on_batch(x, y)  # noqa: E731
        ours()  # the optimizer's state exists: the captured step is a steady one
        theirs = None
        if torch is not None:
            tstep = _torch_step(torch, net)
            tx, ty = torch.from_numpy(x), torch.from_numpy(y)
            theirs = lambda: tstep(tx, ty)  # noqa: E731
        calls = capture(net, ours)
        parts = build_parts(calls, torch)
        peak = peak_gflops or _fma_peak_1thread()
        fused = _fused_layers(net, calls)
        for n in threads:
            tc.set(n)
            fns: dict[str, Callable[[], Any]] = {"step.fastcnn": ours}
            if theirs is not None:
                fns["step.torch"] = theirs
            for i, p in enumerate(parts):
                fns[f"{i}.fastcnn"] = p.fastcnn
                if p.torch is not None:
                    fns[f"{i}.torch"] = p.torch
                if p.whole is not None:
                    fns[f"{i}.whole"] = p.whole
            t = _interleaved(fns, rounds, min_sample_s, gap_s)
            rows = []
            for i, p in enumerate(parts):
                fc, th = t[f"{i}.fastcnn"], t.get(f"{i}.torch")
                rows.append({"layer": p.layer, "class": p.layer_class, "kind": p.kind,
                             "what": p.what, "flop": p.flop, "fastcnn_cpu_ms": fc[0],
                             "fastcnn_wall_ms": fc[1],
                             "torch_cpu_ms": th[0] if th else None,
                             "torch_wall_ms": th[1] if th else None,
                             "torch_note": p.torch_note, "call": p.call,
                             "fastcnn_whole_cpu_ms": t[f"{i}.whole"][0] if p.whole else None})
            step = {k.split(".")[1]: {"cpu_ms": v[0], "wall_ms": v[1]}
                    for k, v in t.items() if k.startswith("step.")}
            runs.append({"threads": n, "step": step, "rows": rows})
    finally:
        tc.restore()
    from .common import loadavg

    return {"schema": "fastcnn.bench.profile/1",
            "model": model if isinstance(model, str) else getattr(model, "name", "model"),
            "batch": batch,
            "isa": _native.cpu.isa(), "torch": (f"torch {torch.__version__}" if torch
                                                is not None else "none"),
            "peak_gflops_1t": peak, "loadavg": loadavg(), "calls": len(calls), "fused": fused,
            "runs": runs}

