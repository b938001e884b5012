#!/usr/bin/env python
"""Host time per CUDA op call: what fastcnn's Python adapter and binding cost the CPU for each
launch (argument checks, plans, allocations from CuPy's pool, the pybind11 call), without the
kernels' own time. The target (issue 14, item 6) is at most 10 us per op call.

On the CPU emulator (tools/cuda_emu) the kernels are switched off (``cupy._emu.kernels(False)``:
launches, memsets and device copies return at once, ``cupy.empty`` skips its fill), so the
timing is the host's work alone; run it through the emulator's script, which builds the module
and puts the fake CuPy on the path::

    RUN="benchmarks/run_cuda_host_cost.py" PYTHON=/work/venv-deps/bin/python \\
        bash tools/cuda_emu/run.sh

On a real GPU (``python benchmarks/run_cuda_host_cost.py``) launches are asynchronous, so the
same loop measures the host's cost too as long as the queue does not fill (small shapes; the
stream is synchronised only after each timed loop). Shapes: the seeds' CNN at batch 64 on
28x28 inputs (``--batch``). Each row: the median over ``--repeats`` loops of ``--calls`` calls,
in microseconds per call, of this process's CPU time (``--clock cpu``, the default: a loaded
machine's other processes don't count) or of the wall clock (``--clock wall``); and the Python
function calls one op call makes (counted with a profiler hook, so independent of the load:
fastcnn's own frames, and all frames including CuPy's). The last row is one training step
(train_step inside fit's deferred scope, every op of the seeds' CNN with SGD + momentum), per
step and per op launched. On the emulator a last table splits each op's time by what it asks
of CuPy (allocations, pointer reads, stream reads) and the compiled module, each priced at its
floor, the rest being fastcnn's Python. ``tests/test_cuda_host_cost.py`` runs this on the
emulator and bounds each op's calls and time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}
IDLE_REFERENCE_US = 0.3  # numpy.empty_like of a 32 KB array on an idle desktop core


def per_call(fn: Callable[[], Any], calls: int, repeats: int, sync: Callable[[], None],
             clock: Callable[[], float] = time.process_time) -> float:
    """Median over ``repeats`` loops of ``calls`` calls of ``fn``, in us per call."""
    fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = clock()
        for _ in range(calls):
            fn()
        times.append((clock() - t0) / calls)
        sync()
    return statistics.median(times) * 1e6


def python_calls(fn: Callable[[], Any]) -> tuple[int, int]:
    """(fastcnn's, all) Python function calls that one call of ``fn`` makes (after a first,
    warming call), counted with :func:`sys.setprofile`; the calling lambda itself is not
    counted."""
    import fastcnn

    pkg = os.path.dirname(fastcnn.__file__) + os.sep
    fn()
    own = total = 0

    def hook(frame: Any, event: str, arg: Any) -> None:
        nonlocal own, total
        if event == "call":
            total += 1
            own += frame.f_code.co_filename.startswith(pkg)
    sys.setprofile(hook)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return own, total - 1


PARTS = ("cupy.empty", "stream", "compiled")


def parts(fn: Callable[[], Any]) -> dict[str, int]:
    """What one call of ``fn`` (after a warming call) asks of CuPy and the compiled module,
    counted with :func:`sys.setprofile`: ``cupy.empty`` allocations, current-stream reads and
    calls into ``fastcnn._cuda`` (its functions and its plans' methods). The fake CuPy's
    functions are Python, so this counts on the emulator only (real CuPy's are compiled:
    nothing to see there). Device-pointer reads (``a.data.ptr``) are plain attribute reads
    after an array's first, as in CuPy: no call to count (their ~0.1 us each is in the rest)."""
    import cupy

    fn()
    where = os.path.dirname(cupy.__file__) + os.sep
    names = {"empty": "cupy.empty", "_get_current_stream": "stream"}
    n = dict.fromkeys(PARTS, 0)

    def hook(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            code = frame.f_code
            k = names.get(code.co_name)
            if k is not None and code.co_filename.startswith(where):
                # empty_like / zeros call empty: counted once, at the innermost
                n[k] += 1
        elif event == "c_call" and getattr(arg, "__module__", None) == "fastcnn._cuda":
            n["compiled"] += 1  # a function of the module or a method of one of its plans
    sys.setprofile(hook)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return n


def cases(cp: Any, batch: int) -> list[tuple[str, Callable[[], Any]]]:
    """(name, call) of every op of the seeds' CNN's training step, with its shapes."""
    from fastcnn import _deferred, ops

    rng = np.random.default_rng(0)

    def ce(z: Any, labels: Any) -> Any:
        """cross_entropy as fit calls it: its label check deferred (the record is dropped:
        with the kernels off it holds garbage)."""
        with _deferred.scope(final_check=False):
            r = ops.cross_entropy(z, labels)
        _deferred.discard()
        return r

    def dev(*shape: int) -> Any:
        return cp.asarray(rng.normal(size=shape).astype(np.float32))

    x = dev(batch, 1, 28, 28)
    w1, b1, w2, b2 = dev(32, 1, 3, 3), dev(32), dev(64, 32, 3, 3), dev(64)
    y1 = ops.conv2d(x, w1, b1, relu=True)
    y2 = ops.conv2d(y1, w2, b2, relu=True)
    p, idx = ops.max_pool2d(y2, 2, return_indices=True)
    f = p.reshape(batch, -1)
    wd, bd = dev(128, f.shape[1]), dev(128)
    h = ops.linear(f, wd, bd, relu=True)
    wo, bo = dev(10, 128), dev(10)
    z = ops.linear(h, wo, bo)
    labels = cp.asarray(rng.integers(0, 10, batch))
    dh = dev(batch, 128)
    dp = dev(*p.shape)
    g, buf = dev(*wd.shape), dev(*wd.shape)
    m, v = cp.zeros(wd.shape, np.float32), cp.zeros(wd.shape, np.float32)
    gamma, beta, rmean, rvar = dev(32), dev(32), dev(32), cp.ones(32, np.float32)
    bn_y, bn_mean, bn_invstd = ops.batch_norm(y1, gamma, beta, rmean, rvar, training=True,
                                              relu=True)
    return [
        ("conv2d (relu)", lambda: ops.conv2d(y1, w2, b2, relu=True)),
        ("conv2d_backward (pool + relu)", lambda: ops.conv2d_backward(
            dp, y1, w2, relu_y=y2, pool_indices=idx, pool_size=2, compute_dx=True)),
        ("max_pool2d (indices)", lambda: ops.max_pool2d(y2, 2, return_indices=True)),
        ("max_pool2d_backward (own indices)",
         lambda: ops.max_pool2d_backward(dp, y2, 2, indices=idx)),
        ("batch_norm (training, relu)", lambda: ops.batch_norm(
            y1, gamma, beta, rmean, rvar, training=True, relu=True)),
        ("batch_norm_backward (relu)", lambda: ops.batch_norm_backward(
            y1, y1, gamma, bn_mean, bn_invstd, relu_y=bn_y)),
        ("linear (relu)", lambda: ops.linear(f, wd, bd, relu=True)),
        ("linear_backward", lambda: ops.linear_backward(dh, f, wd)),
        ("relu", lambda: ops.relu(h)),
        ("relu_backward", lambda: ops.relu_backward(dh, h)),
        ("softmax", lambda: ops.softmax(z)),
        ("cross_entropy (labels, in fit's scope)", lambda: ce(z, labels)),
        ("sgd_update (momentum)", lambda: ops.sgd_update(wd, g, buf, lr=0.01, momentum=0.9)),
        ("adam_update", lambda: ops.adam_update(wd, g, m, v, lr=1e-3, beta_1=0.9,
                                                beta_2=0.999, epsilon=1e-7, step=3)),
    ]


def floors(cp: Any, batch: int) -> list[tuple[str, Callable[[], Any]]]:
    """(name, call) of what every op call needs at the least: the bare compiled calls (the
    pybind11 binding with its arguments, validation included), a CuPy allocation and a device
    pointer read. An op's host time can't go below the sum of the ones it makes."""
    from fastcnn import _native

    cuda = _native.cuda()
    x = cp.empty((batch, 32, 26, 26), np.float32)
    w, b = cp.empty((64, 32, 3, 3), np.float32), cp.empty(64, np.float32)
    y = cp.empty((batch, 64, 24, 24), np.float32)
    px, pw, pb, py = x.data.ptr, w.data.ptr, b.data.ptr, y.data.ptr
    xs, ws, bs = x.shape, w.shape, b.shape
    geo = (1, 1, 0, 0, 0, 0, 1, 1, 1)
    fx, fw = cp.empty((batch, 9216), np.float32), cp.empty((128, 9216), np.float32)
    pfx, pfw, fxs, fws = fx.data.ptr, fw.data.ptr, fx.shape, fw.shape
    out = cp.empty((batch, 128), np.float32)
    po = out.data.ptr
    n_ws = int(cuda.linear_plan(fxs, fws, None)["forward_workspace"])
    lws = cp.empty(max(n_ws, 1), np.float32)
    plws = lws.data.ptr
    stream = cp.cuda.get_current_stream
    plan = cuda.Conv2dPlan(xs, ws, bs, *geo)
    conv, n_cws = plan.forward, int(plan.forward_workspace)  # (a split-K at small batches)
    cws = cp.empty(max(n_cws, 1), np.float32)
    pcws = cws.data.ptr
    n_fws = int(cuda.conv2d_plan(xs, ws, bs, *geo)["forward_workspace"])
    return [
        ("bare _cuda.conv2d_forward (20 arguments, 3 shapes)",
         lambda: cuda.conv2d_forward(px, xs, pw, ws, pb, bs, py, pcws, n_fws, *geo, True, 0)),
        ("bare Conv2dPlan.forward (8 integers: the call an op makes)",
         lambda: conv(px, pw, pb, py, pcws, n_cws, True, 0)),
        ("bare _cuda.linear_forward (11 arguments, 3 shapes)",
         lambda: cuda.linear_forward(pfx, fxs, pfw, fws, 0, None, po, plws, n_ws, True, 0)),
        ("bare _cuda.relu (4 arguments)", lambda: cuda.relu(px, py, 1000, 0)),
        ("bare _cuda.sgd_update (11 arguments)",
         lambda: cuda.sgd_update(pfw, pfw, pfw, 1000, 0.1, 0.9, 0.0, False, False, 0, 0)),
        ("cupy.empty of conv2d's output", lambda: cp.empty((batch, 64, 24, 24), np.float32)),
        ("a.data.ptr (one array)", lambda: x.data.ptr),
        ("cupy.cuda.get_current_stream().ptr", lambda: stream().ptr),
    ]


def training_step(cp: Any, batch: int) -> tuple[Callable[[], Any], int]:
    """One deferred training step of the seeds' CNN and the number of launches it makes
    (counted by the emulator; 0 on a real GPU)."""
    import fastcnn as fc
    from fastcnn import _deferred, optimizers
    from fastcnn.training import train_step

    model = fc.models.seeds_cnn((1, 28, 28), 10, seed=0)
    model.compile(optimizer=optimizers.SGD(0.01, momentum=0.9),
                  loss="sparse_categorical_crossentropy")
    model.to("cuda")
    rng = np.random.default_rng(1)
    xb = cp.asarray(rng.normal(size=(batch, 1, 28, 28)).astype(np.float32))
    yb = cp.asarray(rng.integers(0, 10, batch))

    def step() -> None:
        with _deferred.scope(final_check=False):
            train_step(model, xb, yb)
        _deferred.discard()  # meaningless records with the kernels off

    step()
    emu = getattr(cp, "_emu", None)
    if emu is None:
        return step, 0
    emu.reset()
    step()
    return step, int(emu.counts()["launches"])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="cpu",
                    help="cpu: this process's CPU time (default); wall: the wall clock")
    args = ap.parse_args(argv)
    clock = CLOCKS[args.clock]
    import cupy as cp

    emu = getattr(cp, "_emu", None)
    if emu is not None:
        import fastcnn._native

        fastcnn._native.cuda()  # load the module, so that the switch reaches it
        emu.kernels(False)
        sync = lambda: None  # noqa: E731 - nothing runs asynchronously there
        where = "CPU emulator, kernels off"
    else:
        sync = cp.cuda.get_current_stream().synchronize
        where = "GPU (asynchronous launches)"
    rows = [(name, per_call(fn, args.calls, args.repeats, sync, clock), python_calls(fn),
             parts(fn) if emu is not None else None)
            for name, fn in cases(cp, args.batch)]
    step, launches = training_step(cp, args.batch)
    t_step = per_call(step, max(args.calls // 20, 5), args.repeats, sync, clock)
    ref = np.ones((64, 128), np.float32)
    t_empty = per_call(lambda: np.empty_like(ref), args.calls * 10, args.repeats, lambda: None,
                       clock)
    load = " / ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"Host time per op call ({where}; batch {args.batch}; median of {args.repeats} "
          f"loops of {args.calls} calls; {args.clock} time; load average {load} on "
          f"{os.cpu_count()} CPUs). Machine speed reference: numpy.empty_like of a 32 KB "
          f"array took {t_empty:.2f} us (about {IDLE_REFERENCE_US} us on an idle desktop core; "
          "the idle-core estimate scales by that ratio)\n")
    idle = IDLE_REFERENCE_US / t_empty  # this machine's time -> an idle desktop core's
    print(f"| op | us per call | idle-core estimate (x {idle:.2f}) | Python calls: fastcnn "
          "/ all |")
    print("|---|---:|---:|---:|")
    for name, us, (own, total), _ in rows:
        print(f"| {name} | {us:.1f} | {us * idle:.1f} | {own} / {total} |")
    per_launch = f"; {t_step / launches:.1f} us per launch ({launches} launches)" \
        if launches else ""
    print(f"| training step, seeds' CNN, SGD momentum | {t_step:.0f} per step{per_launch} | |")
    print("\nFloors: what an op call can't avoid (the compiled call alone, CuPy's own work)\n")
    print("| call | us per call |")
    print("|---|---:|")
    floor_us = {}
    for name, fn in floors(cp, args.batch):
        floor_us[name] = us = per_call(fn, args.calls, args.repeats, sync, clock)
        print(f"| {name} | {us:.2f} |")
    if emu is not None:
        breakdown(rows, floor_us)


def breakdown(rows: list[Any], floor_us: dict[str, float]) -> None:
    """Each op's time split by what it asks of CuPy and the compiled module (counted by
    :func:`parts`), each priced at its floor above; the rest is fastcnn's Python (the ops'
    door, option normalisation, the adapter's checks and plan lookup)."""
    price = {"cupy.empty": floor_us["cupy.empty of conv2d's output"],
             "stream": floor_us["cupy.cuda.get_current_stream().ptr"],
             "compiled": floor_us["bare Conv2dPlan.forward (8 integers: the call an op makes)"]}
    print("\nWhere each op's time goes (count x floor, us; the rest: fastcnn's Python)\n")
    print("| op | total | " + " | ".join(PARTS) + " | fastcnn's Python |")
    print("|---|---:|" + "---:|" * (len(PARTS) + 1))
    for name, us, _, n in rows:
        cells = [f"{n[k]} x {price[k]:.2f}" for k in PARTS]
        rest = us - sum(n[k] * price[k] for k in PARTS)
        print(f"| {name} | {us:.1f} | " + " | ".join(cells) + f" | {rest:.1f} |")


if __name__ == "__main__":
    main()
